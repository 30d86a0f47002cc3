"""nptfunc.distributed: collectives on trees, in one process and under ``mpiexec -n 2``.

The in-process tests hide ``mpi4py`` (so MPI is never initialised inside pytest)
and check the one-process semantics; a recording stand-in for a communicator of
two ranks checks the packing (one collective per dtype, on buffers the function
owns). The multi-rank tests start ``mpiexec -n 2 python tests/mpi_checks.py ...``
in a subprocess with a timeout and skip only where ``mpi4py`` is not installed.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import attrs
import numpy as np
import pytest

from nptfunc import distributed, layers, random, tree
from nptfunc.backend import readonly


@pytest.fixture(autouse=True)
def no_mpi4py(monkeypatch):
    """Every in-process test runs as without mpi4py, with a fresh default communicator."""
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `import mpi4py` fail
    monkeypatch.setattr(distributed, "_world", None)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)


@attrs.frozen
class Pair:
    weight: np.ndarray = attrs.field(eq=False)
    bias: np.ndarray | None = attrs.field(eq=False)


def _tree():
    w = readonly(np.arange(6.0).reshape(2, 3))
    return {
        "layer": Pair(w, readonly(np.array([0.5, -1.0], dtype=np.float32))),
        "list": [np.ones((2, 2), dtype=np.float32)[:, ::2], None],  # non-contiguous
        "scalar": np.array(3.0),
        "empty": np.zeros((0, 4)),
        "count": np.array([1, 2], dtype=np.int64),
    }


def _assert_fresh_equal(out, inp):
    assert tree.same_structure(out, inp)
    assert type(out["layer"]) is Pair
    for o, i in zip(tree.tree_leaves(out), tree.tree_leaves(inp), strict=True):
        assert isinstance(o, np.ndarray)
        assert o.dtype == i.dtype and o.shape == i.shape
        np.testing.assert_array_equal(o, i)
        assert not np.shares_memory(o, i)
        assert o.flags.writeable == i.flags.writeable  # read-only stays read-only


# ---------------------------------------------------------------- one process
def test_one_process_without_mpi4py():
    assert distributed.rank() == 0
    assert distributed.world_size() == 1
    assert distributed.is_main() is True
    assert distributed.barrier() is None
    assert "mpi4py is not installed" in repr(distributed.world())


@pytest.mark.parametrize("collective", ["allreduce_sum", "broadcast"])
def test_collectives_are_fresh_equal_copies_in_one_process(collective):
    inp = _tree()
    before = tree.tree_map(np.copy, inp)
    out = getattr(distributed, collective)(inp)
    _assert_fresh_equal(out, inp)
    for i, b in zip(tree.tree_leaves(inp), tree.tree_leaves(before), strict=True):
        np.testing.assert_array_equal(i, b)  # the caller's arrays are untouched


def test_allreduce_mean_in_one_process():
    inp = {k: v for k, v in _tree().items() if k != "count"}
    _assert_fresh_equal(distributed.allreduce_mean(inp), inp)


def test_numbers_and_other_leaves():
    out = distributed.allreduce_sum({"f": 2.5, "i": 3, "n": np.float32(1.5)})
    assert out["f"] == 2.5 and type(out["f"]) is float
    assert out["i"] == 3 and type(out["i"]) is int
    assert out["n"].dtype == np.float32 and out["n"].shape == ()
    k = random.key(7)
    b = distributed.broadcast({"key": k, "step": 4, "name": "adam", "w": np.ones(2)})
    assert b["key"] == k and b["step"] == 4 and b["name"] == "adam"
    assert distributed.allreduce_mean(None) is None
    assert distributed.broadcast(()) == ()


def test_errors_name_the_function_and_the_path():
    with pytest.raises(TypeError, match=r"distributed.allreduce_sum: expected a tree of arrays, "
                                        r"got a leaf of type Key at state.key"):
        distributed.allreduce_sum({"state": {"key": random.key(0)}})
    with pytest.raises(TypeError, match=r"distributed.allreduce_mean: expected arrays of a floating or "
                                        r"complex dtype, got int64 at 1"):
        distributed.allreduce_mean((np.ones(2), np.arange(2)))
    with pytest.raises(TypeError, match=r"distributed.allreduce_sum: expected arrays of a numeric .* "
                                        r"got bool at <root>"):
        distributed.allreduce_sum(np.ones(2, dtype=bool))
    with pytest.raises(TypeError, match=r"allreduce_sum: expected a tree of arrays, got a leaf of type bool"):
        distributed.allreduce_sum([True])
    with pytest.raises(TypeError, match=r"broadcast: expected arrays of a boolean or numeric dtype, got <U1"):
        distributed.broadcast(np.array(["a"]))
    with pytest.raises(ValueError, match=r"distributed.broadcast: expected root to be an int in \[0, 0\], "
                                         r"got 1"):
        distributed.broadcast(np.ones(2), root=1)
    with pytest.raises(TypeError, match=r"distributed.rank: expected comm to be an mpi4py communicator "
                                        r"\(MPI.COMM_WORLD\) or None, got str"):
        distributed.rank("world")


def test_abort_on_exception_does_nothing_without_mpi():
    hook = sys.excepthook
    distributed.abort_on_exception()
    assert sys.excepthook is hook


# ---------------------------------------------- packing, with a recording comm
class RecordingComm:
    """A communicator of two ranks whose other rank holds ``other(buffer)``; it records every call."""

    def __init__(self, rank=0, other=lambda buf: buf):
        self.rank, self.other, self.calls = rank, other, []

    def Get_rank(self):  # noqa: N802
        return self.rank

    def Get_size(self):  # noqa: N802
        return 2

    def Allreduce(self, sendbuf, recvbuf, op):  # noqa: N802
        assert sendbuf is FakeMPI.IN_PLACE and op is FakeMPI.SUM
        self.calls.append(("Allreduce", recvbuf))
        recvbuf += self.other(recvbuf)

    def Bcast(self, buf, root):  # noqa: N802
        self.calls.append(("Bcast", buf))
        if self.rank != root:
            buf[...] = self.other(buf)

    def bcast(self, obj, root):
        self.calls.append(("bcast", obj))
        return obj if self.rank == root else [random.key(99), 6]  # root's key and step


class FakeMPI:
    IN_PLACE = object()
    SUM = object()


@pytest.fixture
def fake_mpi4py(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", types.SimpleNamespace(MPI=FakeMPI))


def _check_buffers(calls, inp, sizes):
    assert [(name, buf.dtype, buf.size) for name, buf in calls] == sizes
    for _, buf in calls:
        assert buf.ndim == 1 and buf.flags.c_contiguous
        for leaf in tree.tree_leaves(inp):
            assert not np.shares_memory(buf, leaf)  # never the caller's arrays


@pytest.mark.usefixtures("fake_mpi4py")
def test_allreduce_makes_one_collective_per_dtype_on_its_own_buffers():
    comm = RecordingComm()
    inp = _tree()
    before = tree.tree_map(np.copy, inp)
    out = distributed.allreduce_sum(inp, comm=comm)
    # in the order of first use (dict keys sorted): int64: count 2; float64: empty 0 + weight 6 + scalar 1;
    # float32: bias 2 + list 2
    _check_buffers(comm.calls, inp, [("Allreduce", np.int64, 2), ("Allreduce", np.float64, 7),
                                     ("Allreduce", np.float32, 4)])
    for o, b in zip(tree.tree_leaves(out), tree.tree_leaves(before), strict=True):
        np.testing.assert_array_equal(o, 2 * b)  # both ranks hold the same values
    for i, b in zip(tree.tree_leaves(inp), tree.tree_leaves(before), strict=True):
        np.testing.assert_array_equal(i, b)
    assert out["layer"].weight.flags.writeable is False and out["count"].flags.writeable is True


@pytest.mark.usefixtures("fake_mpi4py")
def test_allreduce_mean_divides_by_the_world_size():
    comm = RecordingComm(other=lambda buf: buf * 3)  # the other rank holds three times ours
    x = {"a": np.array([1.0, 2.0]), "b": np.array([4.0], dtype=np.float32)}
    out = distributed.allreduce_mean(x, comm=comm)
    np.testing.assert_array_equal(out["a"], [2.0, 4.0])
    np.testing.assert_array_equal(out["b"], np.array([8.0], dtype=np.float32))
    assert out["b"].dtype == np.float32
    assert len(comm.calls) == 2


@pytest.mark.usefixtures("fake_mpi4py")
def test_broadcast_receives_into_its_own_buffers_and_sends_other_leaves_once():
    comm = RecordingComm(rank=1, other=lambda buf: np.full_like(buf, 9))
    inp = {"w": readonly(np.zeros((2, 2))), "b": np.zeros(3, dtype=np.float32), "step": 5, "key": random.key(1)}
    out = distributed.broadcast(inp, root=0, comm=comm)
    assert [name for name, _ in comm.calls] == ["Bcast", "Bcast", "bcast"]
    np.testing.assert_array_equal(out["w"], np.full((2, 2), 9.0))
    np.testing.assert_array_equal(out["b"], np.full(3, 9.0, dtype=np.float32))
    assert out["w"].flags.writeable is False
    assert out["key"] == random.key(99) and out["step"] == 6
    np.testing.assert_array_equal(inp["w"], 0)


@pytest.mark.usefixtures("fake_mpi4py")
def test_no_collective_for_an_empty_tree_or_empty_arrays():
    comm = RecordingComm()
    assert distributed.allreduce_sum({"a": None}, comm=comm) == {"a": None}
    assert distributed.allreduce_sum(np.zeros((0, 3)), comm=comm).shape == (0, 3)
    assert distributed.broadcast([np.zeros(0)], comm=comm)[0].shape == (0,)
    assert comm.calls == []


# ----------------------------------------------------------- under mpiexec -n 2
CHECKS = Path(__file__).resolve().parent / "mpi_checks.py"
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi4py = pytest.mark.skipif(not HAVE_MPI4PY, reason="mpi4py is not installed: pip install -e '.[mpi]'")


def _mpiexec():
    """The mpiexec of this environment (the mpich wheel puts it beside python), else the one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "mpiexec"
    found = str(beside) if beside.is_file() else shutil.which("mpiexec")
    assert found, "mpi4py is installed but no mpiexec was found: pip install -e '.[mpi]' brings MPICH's"
    return found


def _run(args, timeout):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(map(str, args))} still ran after {timeout} s: a rank hangs\n{e.stdout}\n{e.stderr}")


@needs_mpi4py
def test_two_ranks():
    """Collectives; data-parallel steps = one-process steps (float64, 1e-12), SyncBatchNorm's = BatchNorm's
    on the whole batch (running statistics too); the README block; the example."""
    done = _run([_mpiexec(), "-n", "2", sys.executable, str(CHECKS), "ranks"], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in (0, 1):
        for name in ("world", "allreduce", "broadcast", "step mlp sgd", "step cnn adam", "step syncbn sgd",
                     "syncbn uneven", "readme", "example", "all"):
            assert f"rank {rank}: ok {name}" in done.stdout, done.stdout + done.stderr


@needs_mpi4py
def test_a_rank_that_raises_ends_the_job():
    done = _run([_mpiexec(), "-n", "2", sys.executable, str(CHECKS), "raise"], timeout=60)
    assert done.returncode != 0
    assert "ValueError: Linear(in_features=5, out_features=2): expected input of shape (..., 5), got (4, 3)" \
        in done.stderr, done.stderr
    assert "nptfunc.distributed: rank 1 of 2 raised ValueError; aborting every rank" in done.stderr
    assert "unreachable" not in done.stdout


@needs_mpi4py
def test_mpi4py_in_one_process():
    done = _run([sys.executable, str(CHECKS), "single"], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rank 0: ok single" in done.stdout


# ------------------------------------------------- SyncBatchNorm in one process
SYNC_SHAPES = [(5, 3), (2, 3, 4), (2, 3, 4, 5), (2, 3, 2, 3, 2), (3, 2, 1, 2, 1, 2)]


def _sync_pair(C, dtype, **kw):
    torch = pytest.importorskip("torch")
    from conftest import torch_dtype

    return layers.SyncBatchNorm(C, dtype=dtype, **kw), torch.nn.SyncBatchNorm(C, **kw).to(torch_dtype(dtype))


@pytest.mark.parametrize("shape", SYNC_SHAPES, ids=str)
@pytest.mark.parametrize(("momentum", "affine"), [(0.1, True), (None, False)])
def test_sync_batchnorm_in_one_process_matches_torch(shape, momentum, affine, dtype):
    """Without MPI: torch's SyncBatchNorm (a BatchNorm outside a process group), two steps then eval."""
    torch = pytest.importorskip("torch")
    from nptfunc.testing import assert_close, to_torch

    C = shape[1]
    layer, module = _sync_pair(C, dtype, momentum=momentum, affine=affine)
    params, state = layer.init(random.key(0)), layer.init_state(random.key(1))
    if affine:
        kw, kb = random.split(random.key(2))
        params = layers.BatchNormParams(random.normal(kw, (C,), dtype=dtype) + np.asarray(1, dtype),
                                        random.normal(kb, (C,), dtype=dtype))
        with torch.no_grad():
            module.weight.copy_(to_torch(params.weight))
            module.bias.copy_(to_torch(params.bias))
    for step, train in enumerate([True, True, False]):
        x = random.normal(random.key(10 + step), shape, dtype=dtype) * np.asarray(1 + step, dtype)
        dy = random.normal(random.key(20 + step), shape, dtype=dtype)
        module.train(train)
        module.zero_grad(set_to_none=True)
        y, vjp, new_state = layer.apply(params, x, state, train=train)
        xt = to_torch(x).requires_grad_(True)
        yt = module(xt)
        yt.backward(to_torch(dy))
        dparams, dx = vjp(dy)
        assert_close(y, yt, name="y")
        assert_close(dx, xt.grad, atol=1e-5 if dtype == np.float32 else None, name="dx")
        if affine:
            assert_close(dparams.weight, module.weight.grad, name="dweight")
            assert_close(dparams.bias, module.bias.grad, name="dbias")
        else:
            assert dparams is None
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert_close(getattr(new_state, name), getattr(module, name), name=name)
        assert (new_state is state) == (not train)
        state = new_state


def test_sync_batchnorm_in_one_process_is_batchnorm_and_checks_like_torch():
    x = random.normal(random.key(0), (4, 3, 2, 2))
    sync, plain = layers.SyncBatchNorm(3, dtype=np.float64), layers.BatchNorm2d(3, dtype=np.float64)
    params, state = plain.init(random.key(1)), plain.init_state(random.key(2))
    ys, vjps, ss = sync.apply(params, x, state, train=True)
    yp, vjpp, sp = plain.apply(params, x, state, train=True)
    np.testing.assert_allclose(ys, yp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(vjps(x)[1], vjpp(x)[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ss.running_var, sp.running_var, rtol=1e-12)
    y_untracked, _ = layers.SyncBatchNorm(3, track_running_stats=False, dtype=np.float64).apply(params, x)
    np.testing.assert_allclose(y_untracked, yp, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"SyncBatchNorm\(num_features=3\): expected input of shape "
                                         r"\(N, 3, \*\), got \(3,\)"):
        layers.SyncBatchNorm(3).apply(layers.SyncBatchNorm(3).init(random.key(0)), np.ones(3, np.float32),
                                      layers.SyncBatchNorm(3).init_state(random.key(0)), train=True)
    with pytest.raises(ValueError, match=r"SyncBatchNorm\(num_features=3\): expected more than 1 value per "
                                         r"channel over all ranks when training .*got input of shape \(1, 3\)"):
        layers.SyncBatchNorm(3).apply(layers.SyncBatchNorm(3).init(random.key(0)),
                                      np.ones((1, 3), np.float32),
                                      layers.SyncBatchNorm(3).init_state(random.key(0)), train=True)


def test_sync_batchnorm_facade():
    torch = pytest.importorskip("torch")
    from nptfunc import nn

    m = nn.SyncBatchNorm(4, momentum=0.2, dtype=np.float64, key=0)
    assert repr(m) == repr(torch.nn.SyncBatchNorm(4, momentum=0.2))
    assert [name for name, _ in m.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    m(random.normal(random.key(0), (5, 4, 3)))
    assert int(m.num_batches_tracked) == 1 and float(np.abs(m.running_mean).max()) > 0
    with pytest.raises(ValueError, match=r"SyncBatchNorm: bias=False .* is not supported"):
        nn.SyncBatchNorm(4, bias=False)


def test_convert_sync_batchnorm_keeps_parameters_buffers_and_mode_and_ddp_is_identity_in_one_process():
    from nptfunc import nn

    model = nn.Sequential(nn.Linear(4, 3, key=0), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2, key=1))
    model.eval()
    weight, running_mean = model[1].weight, model[1].running_mean
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model and isinstance(model[1], nn.SyncBatchNorm)
    assert model[1].weight is weight and model[1].running_mean is running_mean and not model[1].training
    assert isinstance(nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm2d(3)), nn.SyncBatchNorm)
    model.train()
    x = np.ones((4, 4), np.float32) * np.arange(4, dtype=np.float32)[:, None]
    ddp = nn.parallel.DistributedDataParallel(model)
    assert next(n for n, _ in ddp.named_parameters()) == "module.0.weight"
    ddp(x).sum().backward()
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()  # one process: the averaging is the identity
    for g, p in zip(grads, model.parameters(), strict=True):
        np.testing.assert_array_equal(g, p.grad)
    with pytest.raises(TypeError, match="DistributedDataParallel: expected an nn.Module to wrap, got int"):
        nn.parallel.DistributedDataParallel(3)

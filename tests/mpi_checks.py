"""Checks that need real MPI ranks; ``tests/test_distributed.py`` starts this script itself.

    mpiexec -n 2 python tests/mpi_checks.py ranks   # every multi-rank check, in one MPI start-up
    mpiexec -n 2 python tests/mpi_checks.py raise   # rank 1 raises: the job must end, not hang
    python tests/mpi_checks.py single               # mpi4py in a world of one process

Each passing check prints ``rank R: ok NAME``; a failing one raises, and the
excepthook of ``nptfunc.distributed`` aborts every rank, so the job ends with the
traceback on stderr and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from nptfunc import data, distributed, layers, losses, optim, random, tree
from nptfunc.backend import readonly

ROOT = Path(__file__).resolve().parent.parent
RANK = distributed.rank()
WORLD = distributed.world_size()


def ok(name: str) -> None:
    print(f"rank {RANK}: ok {name}", flush=True)


def assert_same_on_every_rank(t, what: str) -> None:
    """``t`` is the same on every rank: each rank compares it with rank 0's, bit for bit."""
    root = distributed.broadcast(t, root=0)
    for a, b in zip(tree.tree_leaves(t), tree.tree_leaves(root), strict=True):
        assert np.array_equal(a, b), f"{what}: rank {RANK} differs from rank 0"


# ---------------------------------------------------------------- collectives
def check_world() -> None:
    assert WORLD == 2, WORLD
    assert distributed.is_main() == (RANK == 0)
    assert distributed.allreduce_sum(RANK) == 1  # the ranks are 0 and 1
    assert getattr(sys.excepthook, "_nptfunc_abort", False), "the abort hook is installed with > 1 rank"
    distributed.barrier()
    ok("world")


def check_collectives() -> None:
    r = RANK + 1.0
    inp = {
        "w": readonly(np.full((2, 3), r)),
        "b": (np.arange(4, dtype=np.float32) * np.float32(r))[::2],  # non-contiguous float32
        "n": np.array([RANK, 10], dtype=np.int64),
        "c": np.array([1 + 1j]) * r,
        "e": np.zeros((0, 2)),
        "none": None,
    }
    before = tree.tree_map(np.copy, inp)
    total = distributed.allreduce_sum(inp)
    np.testing.assert_array_equal(total["w"], np.full((2, 3), 3.0))
    np.testing.assert_array_equal(total["b"], np.array([0, 6], dtype=np.float32))
    np.testing.assert_array_equal(total["n"], [1, 20])
    np.testing.assert_array_equal(total["c"], [3 + 3j])
    assert total["e"].shape == (0, 2) and total["none"] is None
    assert total["w"].flags.writeable is False and total["b"].flags.writeable is True
    assert total["b"].dtype == np.float32 and total["n"].dtype == np.int64
    mean = distributed.allreduce_mean({k: v for k, v in inp.items() if k != "n"})
    np.testing.assert_array_equal(mean["w"], np.full((2, 3), 1.5))
    np.testing.assert_array_equal(mean["b"], np.array([0, 3], dtype=np.float32))
    for i, b in zip(tree.tree_leaves(inp), tree.tree_leaves(before), strict=True):
        np.testing.assert_array_equal(i, b)  # the caller's arrays are untouched
        for out in tree.tree_leaves(total):
            assert not np.shares_memory(out, i)
    ok("allreduce")

    mine = {"w": np.full(3, float(RANK)), "key": random.key(RANK), "step": RANK, "i": np.arange(2) + RANK}
    got = distributed.broadcast(mine, root=1)
    np.testing.assert_array_equal(got["w"], np.ones(3))
    np.testing.assert_array_equal(got["i"], [1, 2])
    assert got["key"] == random.key(1) and got["step"] == 1
    np.testing.assert_array_equal(mine["w"], np.full(3, float(RANK)))  # not received into the caller's array
    ok("broadcast")


# --------------------------------------------------- one data-parallel step
def check_data_parallel_step(name: str, model: layers.Layer, optimizer: optim.FunctionalOptimizer,
                             x_shape: tuple[int, ...], single_model: layers.Layer | None = None,
                             batch: int = 8, steps: int = 2) -> None:
    """``steps`` data-parallel steps on 2 ranks = the same steps in one process on the whole batches.

    ``single_model`` is the one-process model (default: ``model``): a BatchNorm where
    ``model`` has a SyncBatchNorm. Params and state (running statistics) must agree.
    """
    single_model = model if single_model is None else single_model
    params0 = model.init(random.key(0))
    n_classes = model.output_shape((1, *x_shape))[-1]
    x = random.normal(random.key(1), (batch * steps, *x_shape))
    y = random.generator(random.key(2)).integers(0, n_classes, size=batch * steps)
    loss = losses.CrossEntropyLoss()

    def train(m: layers.Layer, rank: int, world_size: int, reduce):
        params = distributed.broadcast(params0) if world_size > 1 else params0
        state = m.init_state(random.key(4))
        opt_state = optimizer.init(params)
        for xb, yb in data.batches((x, y), batch, key=random.key(3), rank=rank, world_size=world_size):
            assert len(yb) == batch // world_size
            logits, vjp, state = m.apply(params, xb, state, train=True)
            _, loss_vjp = loss.apply(logits, yb)
            grads = reduce(vjp(loss_vjp(1.0))[0])
            opt_state, params = optimizer.update(opt_state, grads)
        return params, state

    parallel = train(model, RANK, WORLD, distributed.allreduce_mean)
    single = train(single_model, 0, 1, lambda g: g)  # each rank computes the one-process run itself
    leaves = zip(tree.tree_flatten_with_path(parallel)[0], tree.tree_leaves(single),
                 tree.tree_leaves((params0, single_model.init_state(random.key(4)))), strict=True)
    for (path, p), s, p0 in leaves:
        if p.dtype == np.int64:  # num_batches_tracked
            assert int(p) == int(s) == steps, (p, s)
            continue
        assert p.dtype == np.float64
        err = float(np.max(np.abs(p - s) / np.maximum(1.0, np.abs(s)), initial=0.0))
        assert err <= 1e-12, f"{name}: {tree.path_str(path)} differs by {err:.2e}"
        assert not np.array_equal(p, p0), f"{name}: {tree.path_str(path)} did not move"
    assert_same_on_every_rank(parallel, name)
    ok(f"step {name}")


def check_data_parallel_steps() -> None:
    f64 = {"dtype": np.float64}
    mlp = layers.Sequential(layers.Linear(5, 16, **f64), layers.Tanh(), layers.Linear(16, 4, **f64))
    check_data_parallel_step("mlp sgd", mlp, optim.sgd(lr=0.1, momentum=0.9), (5,))
    cnn = layers.Sequential(layers.Conv2d(1, 4, 3, padding=1, **f64), layers.ReLU(), layers.MaxPool2d(2),
                            layers.Flatten(), layers.Linear(4 * 3 * 3, 3, **f64))
    check_data_parallel_step("cnn adam", cnn, optim.adam(lr=1e-2), (1, 6, 6))

    def bn_cnn(norm):
        return layers.Sequential(layers.Conv2d(1, 4, 3, padding=1, bias=False, **f64),  # (its grad is 0)
                                 norm(4, momentum=0.3, **f64),
                                 layers.ReLU(), layers.Flatten(), layers.Linear(4 * 4 * 4, 3, **f64))

    check_data_parallel_step("syncbn sgd", bn_cnn(layers.SyncBatchNorm), optim.sgd(lr=0.1, momentum=0.9),
                             (1, 4, 4), single_model=bn_cnn(layers.BatchNorm2d))


def check_sync_batchnorm_uneven_shares() -> None:
    """Rank 0 holds 3 rows, rank 1 5: y, dx, the summed dparams and the running statistics are
    BatchNorm's on the 8 rows together."""
    x = random.normal(random.key(5), (8, 3, 2, 2)) * 2.0 + 1.0
    dy = random.normal(random.key(6), x.shape)
    rows = slice(0, 3) if RANK == 0 else slice(3, 8)
    sync, plain = layers.SyncBatchNorm(3, dtype=np.float64), layers.BatchNorm2d(3, dtype=np.float64)
    params = layers.BatchNormParams(np.array([1.0, 2.0, -0.5]), np.array([0.1, 0.0, 0.3]))
    state = plain.init_state(random.key(0))
    y, vjp, new_state = sync.apply(params, x[rows], state, train=True)
    dparams, dx = vjp(dy[rows])
    y_all, vjp_all, state_all = plain.apply(params, x, state, train=True)
    dparams_all, dx_all = vjp_all(dy)
    np.testing.assert_allclose(y, y_all[rows], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_all[rows], rtol=1e-12, atol=1e-12)
    for a, b in zip(tree.tree_leaves(distributed.allreduce_sum(dparams)), tree.tree_leaves(dparams_all),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(tree.tree_leaves(new_state), tree.tree_leaves(state_all), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    y_eval, _, same = sync.apply(params, x[rows], new_state, train=False)  # evaluation: no collective
    assert same is new_state
    np.testing.assert_allclose(y_eval, plain.apply(params, x, state_all, train=False)[0][rows], rtol=1e-12)
    ok("syncbn uneven")


# ------------------------------------------------ the README's block, the example
def check_readme_block() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Beyond one machine", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), ns)
    assert ns["world"] == 2 and ns["rank"] == RANK
    assert_same_on_every_rank(ns["params"], "README block")
    printed = out.getvalue()
    assert (re.fullmatch(r"loss \d\.\d{3}\n", printed) is not None) == (RANK == 0), printed
    ok("readme")


def check_example() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    import train_digits

    with tempfile.TemporaryDirectory() as tmp:
        path = distributed.broadcast(tmp, root=0)  # rank 0's folder
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = train_digits.main(["--distributed", "--epochs", "2", "--limit", "160", "--no-progress",
                                        "--save", os.path.join(path, "digits.npz")])
        distributed.barrier()
        printed = out.getvalue()
        if RANK == 0:
            assert "data-parallel over 2 ranks: 16 images per rank and step" in printed, printed
            assert re.search(r"^test accuracy: [01]\.\d{3}$", printed, re.M), printed
            assert result["history"]["loss"][1] < result["history"]["loss"][0]  # it learns
            assert os.path.isfile(os.path.join(path, "digits.npz"))
        else:
            assert printed == "" and result["test_acc"] is None, printed  # only rank 0 prints and saves
        distributed.barrier()  # rank 0 removes its folder only after every rank has checked
    ok("example")


# -------------------------------------------------- the facade: DDP, SyncBatchNorm
def check_facade_ddp() -> None:
    """Two facade steps with DistributedDataParallel (and convert_sync_batchnorm) on 2 ranks, each with
    half of every batch, equal the same steps in one process on the whole batches, to 1e-12 (float64)."""
    from nptfunc import nn
    from nptfunc import optim as foptim

    def model(seed_shift: int) -> nn.Module:
        m = nn.Sequential(nn.Linear(5, 6, dtype=np.float64), nn.BatchNorm1d(6, dtype=np.float64), nn.Tanh(),
                          nn.Linear(6, 3, dtype=np.float64), key=7 + seed_shift)
        return m

    batch, steps = 8, 2
    x = random.normal(random.key(1), (batch * steps, 5), dtype=np.float64)
    y = random.generator(random.key(2)).integers(0, 3, size=batch * steps)

    def train(m: nn.Module, rank: int, world: int) -> dict:
        opt = foptim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        crit = nn.CrossEntropyLoss()
        m.train()
        for xb, yb in data.batches((x, y), batch, key=random.key(3), rank=rank, world_size=world):
            opt.zero_grad()
            loss = crit(m(xb), yb)
            loss.backward()
            opt.step()
        return {k: np.asarray(v) for k, v in m.state_dict().items()}

    # ranks start from different keys: the wrapper broadcasts rank 0's parameters and buffers
    ddp = nn.parallel.DistributedDataParallel(nn.SyncBatchNorm.convert_sync_batchnorm(model(RANK)))
    assert isinstance(ddp.module[1], nn.SyncBatchNorm)
    parallel = {k.removeprefix("module."): v for k, v in train(ddp, RANK, WORLD).items()}
    single = train(model(0), 0, 1)
    assert parallel.keys() == single.keys()
    for k, s in single.items():
        p = parallel[k]
        if s.dtype == np.int64:
            assert int(p) == int(s) == steps, (k, p, s)
            continue
        err = float(np.max(np.abs(p - s) / np.maximum(1.0, np.abs(s)), initial=0.0))
        assert err <= 1e-12, f"facade ddp: {k} differs by {err:.2e}"
    assert_same_on_every_rank(parallel, "facade ddp")
    ok("facade ddp + convert_sync_batchnorm")


# ---------------------------------------------------------------------- modes
def ranks() -> None:
    check_world()
    check_collectives()
    check_data_parallel_steps()
    check_sync_batchnorm_uneven_shares()
    check_facade_ddp()
    check_readme_block()
    check_example()
    distributed.barrier()
    ok("all")


def raise_on_one_rank() -> None:
    x = np.ones((4, 3))
    if RANK == 1:
        layers.Linear(5, 2).apply(layers.Linear(5, 2).init(random.key(0)), x)  # bad input on this rank only
    distributed.allreduce_sum(x)  # rank 0 waits here for rank 1, which never comes
    print("unreachable: the job should have been aborted", flush=True)


def single() -> None:
    assert WORLD == 1 and RANK == 0 and distributed.is_main()
    assert type(distributed.world()).__module__.startswith("mpi4py"), distributed.world()
    assert not getattr(sys.excepthook, "_nptfunc_abort", False), "no abort hook in one process"
    w = readonly(np.arange(3.0))
    for f in (distributed.allreduce_sum, distributed.allreduce_mean, distributed.broadcast):
        out = f({"w": w})["w"]
        np.testing.assert_array_equal(out, w)
        assert not np.shares_memory(out, w) and not out.flags.writeable
    distributed.barrier()
    ok("single")


if __name__ == "__main__":
    {"ranks": ranks, "raise": raise_on_one_rank, "single": single}[sys.argv[1]]()

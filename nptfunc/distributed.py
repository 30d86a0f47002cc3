"""Data parallelism on MPI: collectives on trees of arrays, with ``mpi4py`` optional.

Params, gradients and states are trees of arrays, so data-parallel training is a
few collective calls on trees: broadcast the params from rank 0 at the start,
give each rank its own shard of every batch (:func:`nptfunc.data.batches` with
``rank=`` and ``world_size=``), and average the gradients with
:func:`allreduce_mean` before each optimizer update. Every rank then holds the
same params after every step.

* :func:`rank`, :func:`world_size`, :func:`is_main` and :func:`barrier`.
* :func:`broadcast`, :func:`allreduce_sum` and :func:`allreduce_mean` take any
  tree (:mod:`nptfunc.tree`) and return a tree of the same structure. The array
  leaves are packed into one contiguous buffer per dtype, that buffer is moved by
  one upper-case (buffer, no pickling) collective, ``Bcast`` or ``Allreduce``, in
  place, and the results are unpacked into fresh arrays: one collective per
  dtype, never one per leaf (as Horovod and torch's DDP bucket their gradients).
  The caller's arrays are never written; a result leaf is read-only where its
  input leaf was (params stay read-only).

Without ``mpi4py`` installed, or in a world of one process, every function works
unchanged: the rank is 0, the world size 1, and the collectives return equal fresh
copies. So a training script has one path, and ``python train.py`` and
``mpiexec -n 4 python train.py`` run the same code.

Every function takes an optional ``comm``, an ``mpi4py`` communicator; the default
is ``MPI.COMM_WORLD`` (or a one-process stand-in without ``mpi4py``). All ranks of
``comm`` must call a collective together, with trees of the same structure, leaf
shapes and dtypes (as with ``torch.distributed``).

A rank that raises would leave the others waiting forever in their next
collective; :func:`abort_on_exception` installs an excepthook that prints the
traceback to stderr and calls ``MPI.COMM_WORLD.Abort(1)``, which ends every rank.
It is installed automatically the first time the default communicator is found
to have more than one process.

Example (runs as is in one process, and unchanged under ``mpiexec -n 2``):
    >>> import numpy as np
    >>> from nptfunc import distributed
    >>> grads = {"w": np.ones((2, 3)), "b": np.zeros(3, dtype=np.float32)}
    >>> mean = distributed.allreduce_mean(grads)
    >>> float(mean["w"].sum()), mean["b"].dtype
    (6.0, dtype('float32'))
    >>> mean["w"] is grads["w"]
    False
"""

from __future__ import annotations

import sys
import threading
import time
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from nptfunc import tree
from nptfunc._types import PyTree
from nptfunc._validate import check_int
from nptfunc.backend import array_module, readonly
from nptfunc.random import Key

__all__ = [
    "abort_on_exception",
    "allreduce_mean",
    "allreduce_sum",
    "barrier",
    "broadcast",
    "is_main",
    "rank",
    "world",
    "world_size",
]

ABORT_GRACE = 0.5
"""Seconds the abort hook waits after printing, so that the launcher forwards the traceback."""

_Number = (int, float, complex, np.number)


# ------------------------------------------------------------- communicators
def _mpi() -> ModuleType | None:
    """``mpi4py.MPI`` (importing it initialises MPI), or ``None`` without ``mpi4py``."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI


class _OneProcess:
    """The world without ``mpi4py``: one process, rank 0; its collectives are never called."""

    def Get_rank(self) -> int:  # noqa: N802 (mpi4py's names)
        return 0

    def Get_size(self) -> int:  # noqa: N802 (mpi4py's names)
        return 1

    def Barrier(self) -> None:  # noqa: N802 (mpi4py's names)
        pass

    def __repr__(self) -> str:
        return "<one process: mpi4py is not installed>"


_ONE_PROCESS = _OneProcess()
_world: Any = None
_world_lock = threading.Lock()


def world() -> Any:
    """The default communicator: ``mpi4py``'s ``MPI.COMM_WORLD``, or a one-process stand-in.

    The first call imports ``mpi4py`` (which initialises MPI) if it is installed,
    and, when the world has more than one process, installs
    :func:`abort_on_exception`.
    """
    global _world
    with _world_lock:
        if _world is not None:
            return _world
        MPI = _mpi()
        comm = _ONE_PROCESS if MPI is None else MPI.COMM_WORLD
        _world = comm
    if comm.Get_size() > 1:
        _install_abort_hook(comm)
    return comm


def _comm(owner: str, comm: Any) -> Any:
    if comm is None:
        return world()
    if not all(callable(getattr(comm, m, None)) for m in ("Get_rank", "Get_size", "Allreduce", "Bcast")):
        msg = (f"{owner}: expected comm to be an mpi4py communicator (MPI.COMM_WORLD) or None, "
               f"got {type(comm).__name__}")
        raise TypeError(msg)
    return comm


def rank(comm: Any = None) -> int:
    """This process's rank in ``comm`` (default: the world), from 0; 0 without ``mpi4py``."""
    return int(_comm("distributed.rank", comm).Get_rank())


def world_size(comm: Any = None) -> int:
    """How many processes ``comm`` (default: the world) has; 1 without ``mpi4py``."""
    return int(_comm("distributed.world_size", comm).Get_size())


def is_main(comm: Any = None) -> bool:
    """Whether this process is rank 0: the one that prints, saves and plots."""
    return rank(comm) == 0


def barrier(comm: Any = None) -> None:
    """Wait until every rank of ``comm`` has called ``barrier`` (nothing to wait for in one process)."""
    c = _comm("distributed.barrier", comm)
    if c.Get_size() > 1:
        c.Barrier()


# ------------------------------------------------------------------ excepthook
def abort_on_exception() -> None:
    """Make an uncaught exception end every rank instead of leaving the others hanging.

    Installs a ``sys.excepthook`` that first runs the hook it replaces (which
    prints the traceback to stderr), then says which rank failed, waits
    :data:`ABORT_GRACE` seconds (for the launcher to forward that text) and calls
    ``MPI.COMM_WORLD.Abort(1)``: MPI ends every process of the job and
    ``mpiexec`` exits with an error. Installing it twice installs it once;
    without ``mpi4py`` it does nothing (one process ends by itself). :func:`world`
    installs it when the world has more than one process, so a script only needs
    to call this to be explicit.
    """
    _install_abort_hook(world())


def _install_abort_hook(comm: Any) -> None:
    if isinstance(comm, _OneProcess) or getattr(sys.excepthook, "_nptfunc_abort", False):
        return
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        try:
            previous(exc_type, exc, tb)
            print(f"nptfunc.distributed: rank {comm.Get_rank()} of {comm.Get_size()} raised "
                  f"{exc_type.__name__}; aborting every rank", file=sys.stderr)
            sys.stderr.flush()
            # the launcher forwards a rank's stderr through a pipe; Abort tears the job down at
            # once, and under load the traceback's last lines were lost on the way (seen in CI)
            time.sleep(ABORT_GRACE)
        finally:
            comm.Abort(1)

    hook._nptfunc_abort = True  # type: ignore[attr-defined]
    sys.excepthook = hook


# -------------------------------------------------------------- packing trees
def _leaf_array(owner: str, path: tuple[Any, ...], leaf: Any, kinds: str) -> Any:
    """``leaf`` as an array of a dtype kind in ``kinds``, or raise naming the path."""
    if isinstance(leaf, bool) or not ((hasattr(leaf, "dtype") and hasattr(leaf, "shape"))
                                      or isinstance(leaf, _Number)):
        msg = (f"{owner}: expected a tree of arrays, got a leaf of type {type(leaf).__name__} "
               f"at {tree.path_str(path)}")
        raise TypeError(msg)
    a = leaf if hasattr(leaf, "shape") and not isinstance(leaf, np.generic) else np.asarray(leaf)
    if a.dtype.kind not in kinds:
        msg = (f"{owner}: expected arrays of a {_KIND_NAMES[kinds]} dtype, got {a.dtype} "
               f"at {tree.path_str(path)}")
        raise TypeError(msg)
    return a


_SUM_KINDS = "iufc"
_MEAN_KINDS = "fc"
_BCAST_KINDS = "biufc"
_KIND_NAMES = {_SUM_KINDS: "numeric (integer, floating or complex)", _MEAN_KINDS: "floating or complex",
               _BCAST_KINDS: "boolean or numeric"}


def _buckets(arrays: list[Any]) -> dict[np.dtype, list[int]]:
    """The indices of ``arrays`` grouped by dtype (native byte order), in order of first appearance."""
    groups: dict[np.dtype, list[int]] = {}
    for i, a in enumerate(arrays):
        dtype = a.dtype if a.dtype.isnative else a.dtype.newbyteorder("=")
        groups.setdefault(dtype, []).append(i)
    return groups


def _pack(arrays: list[Any], idx: list[int], dtype: np.dtype, fill: bool) -> Any:
    """A fresh 1-D buffer for ``arrays[idx]``, filled with their values if ``fill``."""
    xp = array_module(arrays[idx[0]])
    buf = xp.empty(sum(int(arrays[i].size) for i in idx), dtype=dtype)
    if fill:
        offset = 0
        for i in idx:
            a = arrays[i]
            buf[offset:offset + a.size].reshape(a.shape)[...] = a
            offset += a.size
    return buf


def _unpack(buf: Any, arrays: list[Any], idx: list[int], out: list[Any]) -> None:
    """Views of ``buf`` in the shapes of ``arrays[idx]`` into ``out`` (read-only where the inputs are)."""
    offset = 0
    for i in idx:
        a = arrays[i]
        view = buf[offset:offset + a.size].reshape(a.shape)
        offset += a.size
        out[i] = readonly(view) if isinstance(a, np.ndarray) and not a.flags.writeable else view


def _as_leaf(result: Any, original: Any) -> Any:
    """A Python number stays a Python number of its type; arrays and NumPy scalars come back as arrays."""
    if isinstance(original, (int, float, complex)):
        return type(original)(result.item())
    return result


# ---------------------------------------------------------------- collectives
def _allreduce(owner: str, tree_: PyTree, comm: Any, mean: bool) -> PyTree:
    c = _comm(owner, comm)
    pairs, treedef = tree.tree_flatten_with_path(tree_)
    kinds = _MEAN_KINDS if mean else _SUM_KINDS
    arrays = [_leaf_array(owner, path, leaf, kinds) for path, leaf in pairs]
    size = c.Get_size()
    out: list[Any] = [None] * len(arrays)
    for dtype, idx in _buckets(arrays).items():
        buf = _pack(arrays, idx, dtype, fill=True)
        if size > 1 and buf.size:
            from mpi4py import MPI

            c.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            if mean:
                buf /= size
        _unpack(buf, arrays, idx, out)
    return tree.tree_unflatten(treedef, [_as_leaf(r, leaf) for r, (_, leaf) in zip(out, pairs, strict=True)])


def allreduce_sum(tree_: PyTree, comm: Any = None) -> PyTree:
    """The leafwise sum of ``tree_`` over every rank of ``comm``, on every rank.

    Equivalent to ``torch.distributed.all_reduce(t, op=ReduceOp.SUM)`` on each
    leaf, done with one ``Allreduce`` per dtype on buffers this function owns.

    Args:
        tree_: a tree of arrays (integer, floating or complex; Python numbers
            too), of the same structure, shapes and dtypes on every rank.
        comm: an ``mpi4py`` communicator; ``None`` is the world.

    Returns:
        A tree of the structure of ``tree_`` with fresh arrays of the same shapes
        and dtypes (read-only where the input leaf was; a Python number comes
        back as a number of its type). In one process: equal copies.

    Raises:
        TypeError: a leaf that is not a number or a numeric array (a key, a
            string, a boolean array), named by its path.
    """
    return _allreduce("distributed.allreduce_sum", tree_, comm, mean=False)


def allreduce_mean(tree_: PyTree, comm: Any = None) -> PyTree:
    """The leafwise mean of ``tree_`` over every rank of ``comm``: the sum divided by the world size.

    The gradient averaging of data parallelism, as torch's
    ``DistributedDataParallel`` does it: when each of ``W`` ranks computes the
    mean-reduced loss's gradients on an equal share of a batch, their mean is the
    gradient on the whole batch.

    Args:
        tree_: a tree of floating or complex arrays (or Python floats), of the
            same structure, shapes and dtypes on every rank.
        comm: an ``mpi4py`` communicator; ``None`` is the world.

    Returns:
        A tree of the structure of ``tree_`` with fresh arrays of the same shapes
        and dtypes (read-only where the input leaf was). In one process: equal copies.

    Raises:
        TypeError: a leaf that is not a floating array or number (integers have
            no mean of their dtype), named by its path.
    """
    return _allreduce("distributed.allreduce_mean", tree_, comm, mean=True)


def broadcast(tree_: PyTree, root: int = 0, comm: Any = None) -> PyTree:
    """Rank ``root``'s ``tree_``, on every rank of ``comm``.

    Equivalent to ``torch.distributed.broadcast`` on each leaf: the arrays move
    with one ``Bcast`` per dtype. Other leaves (Python numbers and strings,
    :class:`nptfunc.random.Key`, as an optimizer state's step count or a dropout
    key) are small and go together in one pickled ``bcast``, only if there are any.

    Args:
        tree_: a tree; on the ranks other than ``root`` only its structure and its
            arrays' shapes and dtypes are used, and they must match ``root``'s.
        root: the rank whose values everyone receives.
        comm: an ``mpi4py`` communicator; ``None`` is the world.

    Returns:
        A tree of the structure of ``tree_`` holding ``root``'s values in fresh
        arrays (read-only where this rank's input leaf was). In one process: equal copies.

    Raises:
        ValueError: ``root`` outside ``[0, world size)``.
        TypeError: an array of a dtype other than boolean or numeric.
    """
    owner = "distributed.broadcast"
    c = _comm(owner, comm)
    size = c.Get_size()
    root = check_int(owner, "root", root, minimum=0, maximum=size - 1)
    is_root = c.Get_rank() == root
    pairs, treedef = tree.tree_flatten_with_path(tree_)
    array_at = [i for i, (_, leaf) in enumerate(pairs)
                if hasattr(leaf, "shape") and hasattr(leaf, "dtype") and not isinstance(leaf, Key)]
    arrays = [_leaf_array(owner, pairs[i][0], pairs[i][1], _BCAST_KINDS) for i in array_at]
    results: list[Any] = [None] * len(arrays)
    for dtype, idx in _buckets(arrays).items():
        buf = _pack(arrays, idx, dtype, fill=is_root or size == 1)
        if size > 1 and buf.size:
            c.Bcast(buf, root=root)
        _unpack(buf, arrays, idx, results)
    leaves = [leaf for _, leaf in pairs]
    in_buffers = set(array_at)
    others = [i for i in range(len(pairs)) if i not in in_buffers]
    if others and size > 1:
        received = c.bcast([leaves[i] for i in others] if is_root else None, root=root)
        for i, value in zip(others, received, strict=True):
            leaves[i] = value
    for i, r in zip(array_at, results, strict=True):
        leaves[i] = r
    return tree.tree_unflatten(treedef, leaves)

"""The array module behind layer math.

Layer math never names ``numpy`` directly for its arithmetic: it asks
:func:`array_module` for the module of its inputs, so that another array library
with NumPy's API (CuPy) can later run the same pure functions. NumPy is the default
and the only required backend.

The few tools that have no portable spelling (strided views, scatter-adds,
read-only flags) live here, behind that same lookup, and so does :data:`scratch`,
the pool of reusable buffers for layer internals.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
import weakref
from types import ModuleType
from typing import Any

import numpy as np

from nptfunc._validate import check_int

__all__ = ["ScratchPool", "array_module", "as_strided", "readonly", "scatter_add", "scratch", "sum_at"]

_NUMPY_MODULES = frozenset({"numpy", "builtins"})


def array_module(*arrays: Any) -> ModuleType:
    """Return the array module (``numpy`` or a NumPy-compatible one) of ``arrays``.

    Python scalars, lists and NumPy arrays give ``numpy``; an array whose class
    lives in another top-level package (``cupy.ndarray``) gives that package.
    """
    for a in arrays:
        if a is None:
            continue
        top = type(a).__module__.partition(".")[0]
        if top not in _NUMPY_MODULES:
            return importlib.import_module(top)
    return np


def as_strided(x: Any, shape: tuple[int, ...], strides: tuple[int, ...]) -> Any:
    """A read-only strided view of ``x`` (no copy)."""
    xp = array_module(x)
    return xp.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)


def scatter_add(target: Any, index: Any, values: Any) -> None:
    """``target[index] += values`` with repeated indices accumulated (unbuffered).

    The one in-place primitive of the library; use it only on arrays the caller
    has just allocated itself.
    """
    xp = array_module(target)
    xp.add.at(target, index, values)


def sum_at(shape: tuple[int, ...], flat_index: Any, values: Any) -> Any:
    """A new array of ``shape`` whose flat entry ``i`` sums ``values`` where ``flat_index == i``.

    The out-of-place scatter-add with repeated indices accumulated, through
    ``bincount`` (which sums in float64; the result is cast to ``values``' dtype).
    Measured against ``np.add.at`` into zeros, float32, 2 cores: rows of a
    (1000, 4) table gathered 20000 times 1.8 against 3.7 ms, (1000, 64) x 4096
    6.4 against 7.5 ms, (10000, 512) x 2048 21 against 32 ms; a 1-d table of 1000
    gathered 100000 times 0.32 against 0.63 ms.
    """
    xp = array_module(values)
    size = math.prod(shape)
    out = xp.bincount(flat_index.reshape(-1), weights=values.reshape(-1), minlength=size)
    return out.astype(values.dtype, copy=False).reshape(shape)


def readonly(x: Any) -> Any:
    """A read-only view of ``x`` if it is a NumPy array; anything else unchanged.

    A view, not a copy: the caller's own array keeps its flags, so making a
    parameter read-only never modifies what the caller passed in.
    """
    if isinstance(x, np.ndarray):
        if not x.flags.writeable:
            return x
        v = x.view()
        v.flags.writeable = False
        return v
    return x


def _free_one_block(nbytes: int) -> None:
    """Allocate and free one untouched block of ``nbytes``: glibc's cue that blocks this large are normal.

    glibc serves a large block with its own mapping and, when such a block is freed,
    raises its thresholds (up to 32 MiB): later blocks below that size come from the
    heap, and the heap is trimmed only when twice that much is free at its top. A
    pool buffer is never freed, so it would never give that cue; without it, every
    other large temporary of a training step (the layers' outputs and gradients) is
    unmapped and page-faulted anew each step (LeNet training: ~3,000 faults per step
    and 25% slower; evaluation: 2x slower). The block is never written, so this
    costs no page faults. Other allocators ignore it.
    """
    np.empty(nbytes, dtype=np.uint8)


class ScratchPool:
    """Reusable NumPy buffers for the internals of layer math (never for results).

    A large temporary (a convolution's ``cols``, say) that is allocated afresh on
    every step costs page faults: glibc gives large blocks back to the OS when they
    are freed (or trims the heap), and every new block is faulted in again, page by
    page. For the 32 -> 64 convolution of the benchmark that is ~5,000 faults and
    about 2.5x the step time. The pool keeps such buffers instead, for the next
    call of the same size (and gives glibc the cue a freed block would have given:
    :func:`_free_one_block`).

    Rules for layer code: take a buffer with :meth:`empty`, use it
    only inside the layer, and give it back with :meth:`release` once nothing reads
    it, or with :meth:`release_with` when a vjp closure keeps it (it comes back when
    the closure is garbage-collected). A buffer never reaches the caller: outputs
    and gradients are fresh arrays, so purity is untouched; the pool only changes
    where memory comes from. Other array modules (CuPy has its own pool) get plain
    ``xp.empty``, and :meth:`release` ignores their arrays.

    Idle buffers are kept up to ``max_bytes`` in total (beyond that a released
    buffer is simply dropped); :meth:`clear` drops them all. Thread-safe.
    """

    _ALIGN = 64  # bytes: buffers start on a cache line

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = check_int("ScratchPool", "max_bytes", max_bytes, minimum=0)
        self._idle: dict[int, list[np.ndarray]] = {}
        self._idle_bytes = 0
        self._mine: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    @property
    def idle_bytes(self) -> int:
        """Bytes held in idle buffers."""
        return self._idle_bytes

    def empty(self, xp: ModuleType, shape: tuple[int, ...], dtype: Any) -> Any:
        """An uninitialised buffer of ``shape`` and ``dtype`` (C-contiguous, cache-line aligned)."""
        if xp is not np:
            return xp.empty(shape, dtype=dtype)
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with self._lock:
            idle = self._idle.get(nbytes)
            raw = idle.pop() if idle else None
            if raw is not None:
                self._idle_bytes -= nbytes
        if raw is None:
            _free_one_block(nbytes + self._ALIGN)
            raw = np.empty(nbytes + self._ALIGN, dtype=np.uint8)
            self._mine[id(raw)] = raw
        start = -raw.ctypes.data % self._ALIGN
        return raw[start:start + nbytes].view(dtype).reshape(shape)

    def release(self, *arrays: Any) -> None:
        """Give buffers from :meth:`empty` back; nothing may read or write them afterwards."""
        for a in arrays:
            raw = a
            while isinstance(raw, np.ndarray) and raw.base is not None:
                raw = raw.base
            if not isinstance(raw, np.ndarray) or self._mine.get(id(raw)) is not raw:
                continue  # not from this pool
            nbytes = raw.nbytes - self._ALIGN
            with self._lock:
                idle = self._idle.setdefault(nbytes, [])
                if any(r is raw for r in idle):
                    msg = "ScratchPool.release: buffer released twice"
                    raise RuntimeError(msg)
                if self._idle_bytes + nbytes <= self.max_bytes:
                    idle.append(raw)
                    self._idle_bytes += nbytes

    def release_with(self, owner: Any, *arrays: Any) -> None:
        """:meth:`release` ``arrays`` when ``owner`` (a vjp closure) is garbage-collected."""
        weakref.finalize(owner, self.release, *arrays)

    def clear(self) -> None:
        """Drop every idle buffer (the memory goes back to the allocator)."""
        with self._lock:
            self._idle.clear()
            self._idle_bytes = 0


scratch = ScratchPool()
"""The process-wide :class:`ScratchPool` that layer math takes its temporaries from.

``scratch.max_bytes`` caps its idle buffers (1 GiB); ``scratch.clear()`` drops them.
"""


def _after_fork_in_child() -> None:  # a lock held by another thread at fork() would never be released
    scratch._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

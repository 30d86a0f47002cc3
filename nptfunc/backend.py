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

import contextlib
import importlib
import math
import mmap
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np

from nptfunc._validate import check_int

__all__ = ["ScratchPool", "array_module", "as_strided", "blas_threads", "get_num_threads", "matmul",
           "parallel_copy", "parallel_for", "readonly", "scatter_add", "scratch", "set_num_threads", "sum_at"]

_NUMPY_MODULES = frozenset({"numpy", "builtins"})


def array_module(*arrays: Any) -> ModuleType:
    """Return the array module (``numpy`` or a NumPy-compatible one) of ``arrays``.

    Python scalars, lists and NumPy arrays give ``numpy``; an array whose class
    lives in another top-level package (``cupy.ndarray``) gives that package.
    """
    for a in arrays:
        if a is None or type(a) is np.ndarray:
            continue
        top = type(a).__module__.partition(".")[0]
        if top not in _NUMPY_MODULES:
            return importlib.import_module(top)
    return np


def as_strided(x: Any, shape: tuple[int, ...], strides: tuple[int, ...], offset: int = 0,
               writeable: bool = False) -> Any:
    """A strided view of C-contiguous ``x`` from its element ``offset`` on (no copy).

    Read-only unless ``writeable``.
    """
    xp = array_module(x)
    if offset:
        x = xp.reshape(x, (-1,))[offset:]
    return xp.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=writeable)


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

    The first call cues with glibc's largest threshold instead (just under 32 MiB), so
    that the heap keeps up to twice that at its top: with only the pool's largest
    buffer as the cue (LeNet's ``cols``, 14.5 MB), the temporaries freed during a
    backward pass still went past the trim threshold, and LeNet's step page-faulted
    ~1,450 times (ReLUs, max pooling, BatchNorm), 2 threads, AMD EPYC.
    """
    global _cued
    if not _cued:
        _cued = True
        np.empty(_MAX_CUE, dtype=np.uint8)
    np.empty(nbytes, dtype=np.uint8)


_MAX_CUE = (32 << 20) - (64 << 10)
"""Bytes of the first cue: under glibc's ``DEFAULT_MMAP_THRESHOLD_MAX`` (32 MiB on 64-bit) with room
for the block's header, so that freeing it still raises the thresholds."""
_cued = False


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
        # re-entrant: a vjp closure collected while this thread holds the lock (the garbage
        # collector runs inside any allocation) releases its buffers through a finalizer, which
        # takes the lock again; a plain Lock deadlocked the process there
        self._lock = threading.RLock()

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


# ------------------------------------------------------------------ threads
def _default_threads() -> int:
    """``OMP_NUM_THREADS`` if it is a positive integer (as torch reads it), else the usable CPUs."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_threads = _default_threads()
_pool: _Pool | None = None
_pool_lock = threading.Lock()
_in_worker = threading.local()

MIN_CHUNK = 1 << 16
"""Elements of work below which :func:`parallel_for` does not split (a thread hand-off costs ~50 us)."""


MIN_MATMUL = 1 << 20
"""Multiply-adds per chunk below which :func:`matmul` does not split."""

_blas_limits: Any = None  # threadpoolctl's handle while nptfunc's pool runs BLAS on one thread per worker


def _pin_blas() -> None:
    """BLAS on one thread per call while nptfunc's pool exists (torch runs MKL sequentially in its pool too).

    A threaded BLAS's idle workers spin for ~0.1 s after each call (OpenBLAS: 2^28 cycles),
    holding the cores the pool's elementwise chunks need; measured on LeNet's step,
    2 cores: the pool gained nothing beside spinning OpenBLAS threads and 20% without.
    So BLAS runs single-threaded while the pool exists, and :func:`matmul` splits the
    large products over the pool; :func:`set_num_threads` gives BLAS its old limits back
    when the pool goes.
    """
    global _blas_limits
    if _blas_limits is None:
        from threadpoolctl import threadpool_limits  # the one portable way to reach every loaded BLAS

        _blas_limits = threadpool_limits(limits=1, user_api="blas")


def _unpin_blas() -> None:
    global _blas_limits
    if _blas_limits is not None:
        _blas_limits.restore_original_limits()
        _blas_limits = None


_native = threading.local()
_controller: Any = None


@contextlib.contextmanager
def blas_threads() -> Iterator[None]:
    """A block of many small products in sequence (a recurrent scan) with BLAS's own threads.

    Splitting a product over the pool costs a thread hand-off (~50 us here); an LSTM
    step's ``h @ W_hh^T`` (32 x 256 x 1024) is too short for it, and BLAS's spinning
    workers pick up the next call at once. Inside the block :func:`matmul` does not
    split and BLAS runs :func:`get_num_threads` threads; outside it, as before.
    """
    global _controller
    if _blas_limits is None or getattr(_native, "active", False):
        yield
        return
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    _native.active = True
    try:
        with _controller.limit(limits=_threads, user_api="blas"):
            yield
    finally:
        _native.active = False


def get_num_threads() -> int:
    """The threads layer math uses for its elementwise work (equivalent to ``torch.get_num_threads``)."""
    return _threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for layer math's elementwise work (equivalent to ``torch.set_num_threads``).

    The default is ``OMP_NUM_THREADS`` when it is set, else the CPUs this process may
    run on. While nptfunc's pool exists BLAS runs on one thread per call and
    :func:`matmul` splits large products over the pool (see :func:`_pin_blas`);
    changing the count ends the pool and gives BLAS its former limits back.
    """
    global _threads, _pool
    n = check_int("set_num_threads", "n", n, minimum=1)
    with _pool_lock:
        if n != _threads and _pool is not None:
            _pool.shutdown()
            _pool = None
            _unpin_blas()
        _threads = n


class _Worker:
    """One worker thread of :class:`_Pool`: it waits on a raw lock for one chunk at a time."""

    def __init__(self, name: str) -> None:
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.task: tuple[Callable[[int, int], None], int, int] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        _in_worker.active = True
        while True:
            self.go.acquire()
            task, self.task = self.task, None
            if task is None:  # shutdown
                self.done.release()
                return
            body, lo, hi = task
            try:
                body(lo, hi)
            except BaseException as e:  # re-raised in the caller's thread
                self.error = e
            finally:
                del task, body
                self.done.release()


def _acquire_through_interrupts(lock: Any) -> BaseException | None:
    """``lock.acquire()``, retried after a ``KeyboardInterrupt``; returns the interrupt, if any.

    A worker's chunk runs on whatever happens in the caller: had the caller stopped
    waiting, the chunk's late ``done`` would be taken for the next call's (a notebook
    interrupted in the middle of a step and then run again).
    """
    interrupted = None
    while True:
        try:
            lock.acquire()
        except BaseException as e:  # KeyboardInterrupt: wait on, raise it after
            interrupted = e
        else:
            return interrupted


class _Pool:
    """``threads - 1`` worker threads, woken by raw locks.

    A chunk's hand-off is one lock release and one acquire each way: a no-op split
    through :func:`parallel_for` costs ~25 us here, against ~60 us through
    ``concurrent.futures.ThreadPoolExecutor`` (its queue, its futures and their
    condition variables), and layer math hands off a few dozen chunks per training
    step. One caller at a time: :func:`parallel_for` from a second thread while the
    pool is busy runs its body serially.
    """

    def __init__(self, workers: int) -> None:
        self.busy = threading.Lock()
        self.workers = [_Worker(f"nptfunc_{i}") for i in range(workers)]

    def run(self, body: Callable[[int, int], None], bounds: list[int]) -> bool:
        """Chunk ``bounds[0]:bounds[1]`` on the caller, the others on workers; ``False`` if busy."""
        if not self.busy.acquire(blocking=False):
            return False
        try:
            workers = []  # those started: each is waited for, whatever happens here
            _in_worker.active = True  # the caller's chunk too: a body's own parallel_for runs serially
            try:
                for i, w in enumerate(self.workers[:len(bounds) - 2], 1):
                    w.task = (body, bounds[i], bounds[i + 1])
                    w.go.release()
                    workers.append(w)
                body(bounds[0], bounds[1])
            finally:
                _in_worker.active = False
                errors = []
                for w in workers:
                    interrupted = _acquire_through_interrupts(w.done)
                    if w.error is not None:
                        errors.append(w.error)
                        w.error = None
                    if interrupted is not None:
                        errors.insert(0, interrupted)
            if errors:
                raise errors[0]
        finally:
            self.busy.release()
        return True

    def shutdown(self) -> None:
        """Stop the workers (after the chunks they run)."""
        with self.busy:
            for w in self.workers:
                w.task = None
                w.go.release()
                w.done.acquire()
                w.thread.join()


_blas_warm = 0  # the number of threads whose BLAS buffers have been mapped (see _warm_blas)


def _warm_blas(threads: int) -> None:
    """Write OpenBLAS's packing buffers once, on ``threads`` threads at once (one buffer each).

    OpenBLAS's Haswell GEMM kernels (the ones NumPy runs on AVX2 CPUs of both vendors)
    prefetch past the end of the packed panel of ``B`` in their buffer. Until a call
    has written those pages they are unmapped, and every such prefetch walks the page
    table in vain: a product then runs 2-3x slower, and stays so for every later call
    of the same shape (measured on an AMD EPYC, Zen 1: ``(64, 784) @ (784, 256)``
    single-threaded 2.1 ms, 0.7 ms once a larger product had run; Winograd's
    ``(3136, 32) @ (32, 64)`` x 16 on two threads 7.3 against 3.6 ms). One product
    whose packed ``B`` fills the buffer's ``B`` area (``K >= 2 Q`` rows, ``N >= R``
    columns; ``B`` is an anonymous mapping never written, so it costs no memory)
    maps them for good: a few MB of resident memory and some tens of ms, once.
    Each thread's call runs while the others' do, so that each takes its own buffer;
    if another thread has the pool just then, the threads are left as they are.
    """
    global _blas_warm
    _blas_warm = threads
    # 64 MiB of private zero pages never written: reading them maps no memory (POSIX; elsewhere
    # calloc'd zeros, which most allocators also leave unmapped)
    if hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS"):
        zeros = np.frombuffer(mmap.mmap(-1, 1 << 26, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), np.uint8)
    else:  # pragma: no cover - Windows, or no anonymous mappings
        zeros = np.zeros(1 << 26, np.uint8)
    operands = [(np.zeros((4, 1024), dt), zeros.view(dt).reshape(1024, -1))
                for dt in (np.float32, np.float64)]
    barrier = threading.Barrier(threads) if threads > 1 else None

    def body(lo: int, hi: int) -> None:
        for a, b in operands:
            if barrier is not None:
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait(timeout=10)
            np.matmul(a, b)

    if barrier is None:
        body(0, 1)
    elif _pool is not None:
        _pool.run(body, list(range(threads + 1)))  # one call per thread, or none if busy
    # the mapping goes when its arrays do, at return


def parallel_for(n: int, body: Callable[[int, int], None], work_per_item: int = 1,
                 min_chunk: int | None = None) -> None:
    """Run ``body(lo, hi)`` over chunks covering ``range(n)`` on several threads; return when all are done.

    Up to :func:`get_num_threads` threads, the caller's included. For layer math's
    elementwise passes over large arrays: NumPy's ufuncs and copies release the GIL,
    so chunks along the batch axis run on several cores, as torch's elementwise
    kernels do. Each chunk must write only its own slice; a matmul in a body runs on
    that body's thread (BLAS is single-threaded while the pool exists). The result of
    an elementwise pass never depends on the number of threads.

    Args:
        n: the number of items (the length of the axis the body splits).
        body: ``body(lo, hi)`` does items ``lo:hi``.
        work_per_item: elements per item; the work is split only into chunks of at
            least ``min_chunk`` elements. Called from inside a body, or with one
            thread, it is ``body(0, n)``.
        min_chunk: the least work per chunk (default :data:`MIN_CHUNK`).
    """
    parts = min(_threads, n, max(1, (n * work_per_item) // (MIN_CHUNK if min_chunk is None else min_chunk)))
    if parts <= 1 or getattr(_in_worker, "active", False):
        if n > 0:
            body(0, n)
        return
    pool = _pool
    if pool is None:
        pool = _start_pool()
    if not pool.run(body, [n * i // parts for i in range(parts + 1)]):
        body(0, n)  # another thread has the pool


def _start_pool() -> _Pool:
    """The pool, started on first use (BLAS pinned, its buffers mapped: :func:`_warm_blas`)."""
    global _pool
    with _pool_lock:
        new_pool = _pool is None
        if new_pool:
            _pin_blas()
            _pool = _Pool(_threads - 1)
        pool = _pool
    if new_pool and _blas_warm < _threads:
        _warm_blas(_threads)
    return pool


def matmul(a: Any, b: Any, out: Any = None) -> Any:
    """``np.matmul(a, b, out=out)``, a large product split over nptfunc's threads.

    Layer math calls this for every matrix product. With more than one thread BLAS
    runs single-threaded (see :func:`_pin_blas`), and a product of at least two
    :data:`MIN_MATMUL` multiply-adds is cut into chunks along its batch axis, its
    rows or its columns (never the summed axis), each one BLAS call on one thread.
    BLAS results depend in the last bits on the shapes of the calls, so a product's
    last bits depend on the thread count (as torch's and a threaded BLAS's do).
    """
    if not _blas_warm:
        _warm_blas(1)
    if (_threads == 1 or getattr(_in_worker, "active", False) or getattr(_native, "active", False)
            or not isinstance(a, np.ndarray)
            or not isinstance(b, np.ndarray) or a.ndim < 2 or b.ndim < 2):
        return array_module(a, b).matmul(a, b, out=out)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = () if a.ndim == b.ndim == 2 else np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    work = math.prod(batch) * m * k * n
    if work < 2 * MIN_MATMUL or k != b.shape[-2]:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((*batch, m, n), dtype=np.result_type(a.dtype, b.dtype))
    lead = batch[0] if batch else 1
    if batch and lead >= _threads:  # chunks of the first batch axis
        def body(lo: int, hi: int) -> None:
            np.matmul(a if a.ndim < out.ndim or a.shape[0] == 1 else a[lo:hi],
                      b if b.ndim < out.ndim or b.shape[0] == 1 else b[lo:hi], out=out[lo:hi])

        parallel_for(lead, body, work // lead, min_chunk=MIN_MATMUL)
        return out
    block = 16  # whole BLAS tiles per chunk
    if m >= n:
        def body(lo: int, hi: int) -> None:
            r = slice(lo * block, hi * block)
            np.matmul(a[..., r, :], b, out=out[..., r, :])

        parallel_for(-(-m // block), body, work * block // m, min_chunk=MIN_MATMUL)
    else:
        def body(lo: int, hi: int) -> None:
            c = slice(lo * block, hi * block)
            np.matmul(a, b[..., c], out=out[..., c])

        parallel_for(-(-n // block), body, work * block // n, min_chunk=MIN_MATMUL)
    return out


def parallel_copy(dst: Any, src: Any, axis: int = 0) -> None:
    """``dst[...] = src`` in chunks along ``axis`` on several threads (:func:`parallel_for`).

    ``src`` must have ``dst``'s length along ``axis`` (it may broadcast along the others).
    For the layout copies of layer math (im2col, channels-first <-> channels-last).
    """
    if not isinstance(dst, np.ndarray) or dst.ndim == 0:
        dst[...] = src
        return
    n = dst.shape[axis]
    head = (slice(None),) * axis

    def body(lo: int, hi: int) -> None:
        index = (*head, slice(lo, hi))
        dst[index] = src[index]

    parallel_for(n, body, dst.size // n if n else 0)


def _after_fork_in_child() -> None:  # a lock held by another thread at fork() would never be released
    global _pool, _pool_lock
    scratch._lock = threading.RLock()
    _pool, _pool_lock = None, threading.Lock()  # the parent's worker threads do not exist in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

"""The scratch pool behind layer internals: reuse, alignment, ownership and limits."""

import gc
import threading

import numpy as np
import pytest

from nptfunc.backend import ScratchPool


def test_buffers_are_aligned_contiguous_and_reused():
    pool = ScratchPool()
    a = pool.empty(np, (3, 5), np.float32)
    assert a.shape == (3, 5) and a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable
    assert a.ctypes.data % 64 == 0
    address = a.ctypes.data
    pool.release(a)
    assert pool.idle_bytes == 60
    b = pool.empty(np, (5, 3), np.float32)  # same size: the same memory, any shape
    assert b.ctypes.data == address and pool.idle_bytes == 0
    c = pool.empty(np, (15,), np.float32)  # the only idle buffer is taken: a new one
    assert c.ctypes.data != address


def test_release_of_foreign_arrays_is_ignored_and_double_release_fails():
    pool = ScratchPool()
    pool.release(np.ones(10), None, [1, 2])
    assert pool.idle_bytes == 0
    a = pool.empty(np, (8,), np.float32)
    pool.release(a[2:])  # any view of a buffer gives back the whole buffer
    assert pool.idle_bytes == 32
    with pytest.raises(RuntimeError, match="released twice"):
        pool.release(a)


def test_idle_bytes_are_capped_and_clear_drops_them():
    pool = ScratchPool(max_bytes=100)
    a, b = pool.empty(np, (10,), np.float64), pool.empty(np, (10,), np.float64)
    pool.release(a, b)  # 80 bytes kept, the second would exceed 100
    assert pool.idle_bytes == 80
    pool.clear()
    assert pool.idle_bytes == 0


def test_release_with_gives_buffers_back_when_the_owner_is_collected():
    pool = ScratchPool()
    buf = pool.empty(np, (6,), np.float32)

    def owner() -> None:
        return None

    pool.release_with(owner, buf)
    assert pool.idle_bytes == 0
    del owner, buf
    gc.collect()
    assert pool.idle_bytes == 24


def test_other_array_modules_get_plain_arrays():
    class FakeModule:
        @staticmethod
        def empty(shape, dtype):
            return ("empty", shape, dtype)

    assert ScratchPool().empty(FakeModule, (2,), np.float32) == ("empty", (2,), np.float32)


def test_threads_never_share_a_buffer():
    pool = ScratchPool()
    errors = []

    def work(value: float) -> None:
        for _ in range(200):
            a = pool.empty(np, (64,), np.float64)
            a[...] = value
            if not (a == value).all():
                errors.append(value)
            pool.release(a)

    threads = [threading.Thread(target=work, args=(float(i),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_pool_works_in_a_forked_child_even_if_its_lock_was_held():
    import os
    import signal

    from nptfunc import backend

    with backend.scratch._lock:  # another thread holding the lock at fork() time
        pid = os.fork()
        if pid == 0:  # the child: the pool must not deadlock (an alarm kills it if it does)
            signal.alarm(10)
            code = 1
            try:
                buf = backend.scratch.empty(np, (4,), np.float32)
                backend.scratch.release(buf)
                code = 0
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "1GB"])
def test_max_bytes_must_be_a_nonnegative_int(bad):
    with pytest.raises((ValueError, TypeError), match="ScratchPool: expected max_bytes"):
        ScratchPool(max_bytes=bad)


def test_a_finalizer_run_by_the_gc_while_the_pool_lock_is_held_does_not_deadlock():
    """The gc runs inside any allocation, also one made under the pool's lock; a vjp closure it collects
    then releases its buffers through a finalizer that takes the lock again (a plain Lock deadlocked)."""
    import gc
    import threading

    from nptfunc.backend import ScratchPool

    pool = ScratchPool()

    class Owner:
        pass

    def run() -> None:
        owner = Owner()
        pool.release_with(owner, pool.empty(np, (64,), np.float32))
        with pool._lock:
            del owner
            gc.collect()  # the finalizer releases the buffer on this thread, inside the lock

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "deadlock: the finalizer waited for the lock its own thread holds"
    assert pool.idle_bytes == 64 * 4

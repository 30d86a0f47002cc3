"""Layer math's elementwise passes on several threads (``backend.parallel_for``).

The results must not depend on the number of threads: every test below forces
small arrays to split (``MIN_CHUNK = 1``) and compares 3 threads with 1, bit for
bit. Torch parity of the same code at one chunk is the parity table's.
"""

import threading
import time

import numpy as np
import pytest
import torch

from nptfunc import backend, layers, optim, random, tree


@pytest.fixture
def split_everything(monkeypatch):
    """Chunks down to one element, and a way to run a function at 1 and at 3 threads."""
    monkeypatch.setattr(backend, "MIN_CHUNK", 1)
    before = backend.get_num_threads()

    def at(threads, f):
        backend.set_num_threads(threads)
        try:
            return f()
        finally:
            backend.set_num_threads(before)

    return at


def test_parallel_for_covers_the_range_once_in_order_of_chunks(split_everything):
    seen, names = [], set()

    def body(lo, hi):
        seen.append((lo, hi))
        names.add(threading.current_thread().name)

    split_everything(3, lambda: backend.parallel_for(10, body))
    assert sorted(seen) == [(0, 3), (3, 6), (6, 10)]
    assert any(n.startswith("nptfunc") for n in names) and threading.current_thread().name in names


def test_parallel_for_small_work_nested_calls_and_errors(split_everything, monkeypatch):
    calls = []
    split_everything(3, lambda: backend.parallel_for(0, lambda lo, hi: calls.append((lo, hi))))
    assert calls == []  # nothing to do: the body is not called
    monkeypatch.setattr(backend, "MIN_CHUNK", 100)
    split_everything(3, lambda: backend.parallel_for(8, lambda lo, hi: calls.append((lo, hi)), 10))
    assert calls == [(0, 8)]  # 80 elements of work: one chunk
    monkeypatch.setattr(backend, "MIN_CHUNK", 1)
    inner = []

    def outer(lo, hi):
        backend.parallel_for(4, lambda a, b: inner.append((lo, a, b)))

    split_everything(2, lambda: backend.parallel_for(2, outer))
    assert sorted(inner) == [(0, 0, 4), (1, 0, 4)]  # a body's own parallel_for runs in its thread

    def fails(lo, hi):
        if lo > 0:
            raise ValueError("chunk failed")

    with pytest.raises(ValueError, match="chunk failed"):
        split_everything(3, lambda: backend.parallel_for(9, fails))


@pytest.mark.parametrize(("bad", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                            (True, TypeError), ("2", TypeError)])
def test_set_num_threads_checks_its_argument(bad, error):
    with pytest.raises(error, match="set_num_threads: expected n"):
        backend.set_num_threads(bad)


def _layer_results(layer, x, dy, train=None):
    params = layer.init(random.key(0))
    if layer.stateful:
        y, vjp, state = layer.apply(params, x, layer.init_state(random.key(1)), train=train)
    else:
        (y, vjp), state = layer.apply(params, x), None
    return y, vjp(dy), state


CASES = {
    "relu": (layers.ReLU(), (4, 3, 5, 5)),
    "maxpool-tiles": (layers.MaxPool2d(2), (4, 3, 6, 6)),
    "maxpool-odd": (layers.MaxPool2d(3, stride=2, padding=1), (4, 3, 7, 7)),
    "batchnorm2d": (layers.BatchNorm2d(5), (4, 5, 3, 3)),
    "batchnorm1d-no-affine": (layers.BatchNorm1d(5, affine=False), (4, 5)),
    "conv-shifted": (layers.Conv2d(8, 6, 3, padding=1), (3, 8, 5, 5)),
    "conv-channels-first": (layers.Conv2d(1, 4, 3, padding=1), (3, 1, 9, 9)),
    "conv-channels-last": (layers.Conv2d(6, 4, 3, stride=2), (3, 6, 7, 7)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("train", [True, False])
def test_layers_give_the_same_bits_on_one_and_three_threads(split_everything, case, dtype, train):
    layer, shape = CASES[case]
    layer = layer.with_dtype(dtype)
    x = random.normal(random.key(2), shape, dtype=dtype)
    x[(0,) * (x.ndim - 1)][:2] = 0.0  # ties (a max pool's first maximum; relu's gradient at 0)
    if case.startswith("maxpool"):
        x[1] = np.round(x[1])  # many ties
    y_shape = (layer.output_shape(shape))
    dy = random.normal(random.key(3), y_shape, dtype=dtype)
    one = split_everything(1, lambda: _layer_results(layer, x, dy, train=train))
    three = split_everything(3, lambda: _layer_results(layer, x, dy, train=train))
    for a, b in zip(tree.tree_leaves(one), tree.tree_leaves(three), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("block", [1, 3, 1 << 18])
def test_relu_gradient_with_infinite_cotangents(split_everything, monkeypatch, block, dtype):
    from nptfunc import ops

    monkeypatch.setattr(ops, "_RELU_BLOCK", block)  # blocks of 1 and 3 elements, or one block per chunk
    x = np.array([[-1.0, 2.0, -3.0, 4.0]] * 4, dtype=dtype)
    x[2, 2] = np.nan  # a NaN output passes its gradient, as torch
    dy = np.ones_like(x)
    dy[3, 0] = np.inf  # the exact (np.where) path: 0 where y <= 0, not inf * 0
    dy[1, 3] = -np.inf
    dy[0, 2] = np.nan
    expected = [[0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, -np.inf], [0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]]
    for threads in (1, 4):
        _, (none, dx), _ = split_everything(threads, lambda: _layer_results(layers.ReLU(), x, dy))
        assert none is None
        np.testing.assert_array_equal(dx, expected)
        assert dx.dtype == dtype
        xt = torch.tensor(x, requires_grad=True)
        torch.relu(xt).backward(torch.tensor(dy))
        np.testing.assert_array_equal(dx, xt.grad.numpy())


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_update_gives_the_same_bits_on_one_and_three_threads(split_everything, amsgrad):
    params = {"w": random.normal(random.key(0), (7, 5)), "b": random.normal(random.key(1), (5,))}
    grads = [tree.tree_map(lambda p, k=k: p * (k + 1) - 0.5, params) for k in range(3)]

    def run():
        opt = optim.adam(lr=1e-2, amsgrad=amsgrad)
        state = opt.init(params)
        for g in grads:
            state, p = opt.update(state, g)
        return p

    one, three = split_everything(1, run), split_everything(3, run)
    for a, b in zip(tree.tree_leaves(one), tree.tree_leaves(three), strict=True):
        np.testing.assert_array_equal(a, b)


MATMUL_SHAPES = [((37, 20), (20, 50)),  # rows < columns: split the columns
                 ((50, 20), (20, 37)),  # split the rows
                 ((4, 9, 6), (4, 6, 5)),  # split the batch
                 ((4, 9, 6), (6, 5)),  # b broadcast over the batch
                 ((1, 9, 6), (3, 6, 5)),  # a broadcast over the batch (size 1)
                 ((2, 3, 40, 8), (8, 33))]  # two batch axes, fewer than the threads in the first


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("sa", "sb"), MATMUL_SHAPES)
def test_matmul_splits_a_product_over_the_threads(split_everything, monkeypatch, sa, sb, dtype):
    monkeypatch.setattr(backend, "MIN_MATMUL", 1)
    a = random.normal(random.key(0), sa, dtype=dtype)
    b = random.normal(random.key(1), sb, dtype=dtype)
    expected = np.matmul(a, b)
    got = split_everything(3, lambda: backend.matmul(a, b))
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    out = np.full(expected.shape, np.nan, dtype=dtype)
    assert split_everything(3, lambda: backend.matmul(a, b, out=out)) is out
    np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    assert not np.isnan(out).any()


@pytest.mark.parametrize("case", ["conv-shifted", "conv-channels-first", "conv-channels-last"])
def test_layers_with_split_products_agree_with_one_thread(split_everything, monkeypatch, case):
    monkeypatch.setattr(backend, "MIN_MATMUL", 1)
    layer, shape = CASES[case]
    layer = layer.with_dtype(np.float64)
    x = random.normal(random.key(2), shape, dtype=np.float64)
    dy = random.normal(random.key(3), layer.output_shape(shape), dtype=np.float64)
    one = split_everything(1, lambda: _layer_results(layer, x, dy))
    three = split_everything(3, lambda: _layer_results(layer, x, dy))
    for a, b in zip(tree.tree_leaves(one), tree.tree_leaves(three), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_the_pool_runs_blas_on_one_thread_and_gives_the_limits_back(split_everything):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return {d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"}

    def pooled_then_single():
        backend.parallel_for(4, lambda lo, hi: None)  # the pool starts
        pooled = blas_threads()
        backend.set_num_threads(1)  # the pool goes: BLAS gets its limits back
        return pooled, blas_threads()

    split_everything(1, lambda: None)  # no pool: BLAS as the process set it
    before = blas_threads()
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        assert split_everything(3, pooled_then_single) == ({1}, before)


def test_blas_threads_gives_blas_its_threads_for_a_block_and_matmul_does_not_split(split_everything,
                                                                                   monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(backend, "MIN_MATMUL", 1)

    def blas_threads():
        return {d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"}

    def run():
        backend.parallel_for(4, lambda lo, hi: None)  # the pool starts: BLAS on one thread
        outside = blas_threads()
        splits = []
        monkeypatch.setattr(backend, "parallel_for", lambda *a, **k: splits.append(a))
        with backend.blas_threads():
            inside = blas_threads()
            a, b = np.ones((40, 8)), np.ones((8, 30))
            np.testing.assert_array_equal(backend.matmul(a, b), np.full((40, 30), 8.0))
        monkeypatch.undo()
        return outside, inside, splits, blas_threads()

    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        outside, inside, splits, after = split_everything(2, run)
    assert outside == {1} and inside == {2} and splits == [] and after == {1}


def test_a_new_pool_maps_the_blas_buffers_of_each_of_its_threads_once(split_everything, monkeypatch):
    """``_warm_blas`` runs one product per thread, all at once (one BLAS buffer each), once per pool size."""
    calls = []
    original = backend._warm_blas

    def spy(threads):
        calls.append(threads)
        original(threads)

    monkeypatch.setattr(backend, "_warm_blas", spy)
    monkeypatch.setattr(backend, "_blas_warm", 0)
    split_everything(3, lambda: backend.parallel_for(6, lambda lo, hi: None))
    assert calls == [3] and backend._blas_warm == 3
    split_everything(2, lambda: backend.parallel_for(6, lambda lo, hi: None))  # fewer threads: nothing new
    assert calls == [3]
    seen = set()
    barrier = threading.Barrier(3)

    def body(lo, hi):  # the warm-up's products ran on distinct threads that were all alive at once
        barrier.wait(timeout=10)
        seen.add(threading.current_thread().name)

    split_everything(3, lambda: backend.parallel_for(3, body))
    assert len(seen) == 3


def test_the_warm_up_maps_no_memory_of_its_operands():
    """Its ``B`` is never-written private zero pages: resident memory grows by the BLAS buffers only."""
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    before = rss_mb()
    backend._warm_blas(1)
    assert rss_mb() - before < 32  # the 64 MiB of operands stay unmapped


def test_a_second_caller_runs_serially_while_the_pool_is_busy(split_everything):
    """The pool serves one caller at a time; another thread's parallel_for does its work itself."""
    inside, release = threading.Event(), threading.Event()
    second = []

    def first_body(lo, hi):
        if lo == 0:
            inside.set()
            assert release.wait(timeout=10)

    def other_thread():
        assert inside.wait(timeout=10)
        backend.parallel_for(6, lambda lo, hi: second.append((lo, hi, threading.current_thread().name)))
        release.set()

    def run():
        t = threading.Thread(target=other_thread, name="caller2")
        t.start()
        backend.parallel_for(6, first_body)
        t.join(timeout=10)

    split_everything(3, run)
    assert second == [(0, 6, "caller2")]


def test_the_warm_up_does_not_wait_for_a_busy_pool(split_everything):
    """Another thread holding the pool: the warm-up leaves the threads as they are and returns at once."""
    inside, release = threading.Event(), threading.Event()

    def holder(lo, hi):
        if lo == 0:
            inside.set()
            assert release.wait(timeout=10)

    def run():
        t = threading.Thread(target=lambda: backend.parallel_for(6, holder))
        t.start()
        assert inside.wait(timeout=10)
        start = time.perf_counter()
        backend._warm_blas(3)
        took = time.perf_counter() - start
        release.set()
        t.join(timeout=10)
        return took

    assert split_everything(3, run) < 5  # the barrier's timeout is 10 s


def test_an_interrupt_while_waiting_for_a_chunk_still_waits_for_it(split_everything):
    """A KeyboardInterrupt in the caller's wait: the worker's chunk finishes before the call raises."""
    finished = []

    class FlakyLock:  # the worker's ``done`` lock, interrupted once on the caller's side
        def __init__(self, lock):
            self.lock, self.calls = lock, 0

        def acquire(self):
            self.calls += 1
            if self.calls == 1:
                raise KeyboardInterrupt
            return self.lock.acquire()

        def release(self):
            self.lock.release()

    def body(lo, hi):
        if lo > 0:
            time.sleep(0.05)
            finished.append(lo)

    def run():
        backend.parallel_for(2, lambda lo, hi: None)  # the pool exists
        worker = backend._pool.workers[0]
        real = worker.done
        worker.done = FlakyLock(real)
        try:
            with pytest.raises(KeyboardInterrupt):
                backend.parallel_for(2, body)
            assert finished == [1]  # the chunk ran to its end before the interrupt came out
        finally:
            worker.done = real
        backend.parallel_for(2, body)  # and the next call is not confused by a stale release
        assert finished == [1, 1]

    split_everything(2, run)


def test_set_num_threads_stops_the_old_workers(split_everything):
    """Changing the count ends the pool: its worker threads exit, a new pool has the new count."""
    def workers():
        backend.parallel_for(8, lambda lo, hi: None)  # the pool exists
        return [w.thread for w in backend._pool.workers]

    n = backend.get_num_threads() + 1  # not the count the fixture sets back
    old = split_everything(n + 1, workers)
    assert len(old) == n and not any(t.is_alive() for t in old)  # the fixture set the count back
    assert len(split_everything(n, workers)) == n - 1

import gzip
import struct

import numpy as np
import pytest

from nptfunc import data, random


def _xy(n=10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n) * 10
    return x, y


# -------------------------------------------------------------------- batches
@pytest.mark.parametrize(("n", "bs", "drop_last", "sizes"), [
    (10, 3, False, [3, 3, 3, 1]),
    (10, 3, True, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]),
    (9, 3, False, [3, 3, 3]),
    (2, 5, False, [2]),
    (2, 5, True, []),
])
def test_batches_in_order(n, bs, drop_last, sizes):
    x, y = _xy(n)
    got = list(data.batches((x, y), bs, drop_last=drop_last))
    assert [len(b[0]) for b in got] == sizes
    assert len(data.batches((x, y), bs, drop_last=drop_last)) == len(sizes)
    for i, (xb, yb) in enumerate(got):
        np.testing.assert_array_equal(xb, x[i * bs:(i + 1) * bs])
        np.testing.assert_array_equal(yb, y[i * bs:(i + 1) * bs])
        assert np.shares_memory(xb, x)  # in order: views, no copies


def test_batches_shuffled_cover_every_row_once_and_keep_pairs():
    x, y = _xy(23)
    seen = []
    for xb, yb in data.batches((x, y), 4, key=random.key(0)):
        np.testing.assert_array_equal(xb[:, 0] / 3 * 10, yb)  # rows stay paired
        seen.extend(yb.tolist())
    assert sorted(seen) == y.tolist()
    assert seen != y.tolist()


def test_batches_same_key_same_order_other_key_other_order():
    x, y = _xy(50)
    order = lambda k: np.concatenate([yb for _, yb in data.batches((x, y), 8, key=k)])  # noqa: E731
    np.testing.assert_array_equal(order(random.key(3)), order(random.key(3)))
    assert not np.array_equal(order(random.key(3)), order(random.key(4)))
    b = data.batches((x, y), 8, key=random.key(3))
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in b]),
                                  np.concatenate([yb for _, yb in b]))  # iterating twice: same


def test_batches_shuffled_drop_last_drops_the_short_batch():
    x, y = _xy(10)
    got = list(data.batches((x, y), 4, key=random.key(1), drop_last=True))
    assert [len(yb) for _, yb in got] == [4, 4]
    assert len(set(np.concatenate([yb for _, yb in got]).tolist())) == 8


def test_batches_structures():
    x, y = _xy(5)
    singles = list(data.batches(x, 2))
    assert all(isinstance(b, np.ndarray) for b in singles)
    np.testing.assert_array_equal(singles[-1], x[4:])
    dicts = list(data.batches({"x": x, "y": y}, 2))
    assert set(dicts[0]) == {"x", "y"}
    np.testing.assert_array_equal(dicts[1]["y"], y[2:4])
    lists = list(data.batches([x, y], 5))
    assert isinstance(lists[0], list)


def test_batches_shuffle_false_with_key_keeps_order():
    x, y = _xy(6)
    got = np.concatenate([yb for _, yb in data.batches((x, y), 4, key=random.key(0), shuffle=False)])
    np.testing.assert_array_equal(got, y)


def test_batches_do_not_modify_inputs():
    x, y = _xy(7)
    x0, y0 = x.copy(), y.copy()
    for _ in data.batches((x, y), 3, key=random.key(0)):
        pass
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


def test_batches_errors():
    x, y = _xy(5)
    with pytest.raises(ValueError, match=r"batches: shuffle=True needs a key"):
        data.batches((x, y), 2, shuffle=True)
    with pytest.raises(ValueError, match=r"batches: expected arrays of the same length along axis 0, "
                                         r"got lengths \[5, 4\]"):
        data.batches((x, y[:4]), 2)
    with pytest.raises(ValueError, match=r"batches: expected batch_size to be an int >= 1, got 0"):
        data.batches((x, y), 0)
    with pytest.raises(TypeError, match=r"batches: expected batch_size to be an int >= 1, got float 2.0"):
        data.batches((x, y), 2.0)
    with pytest.raises(TypeError, match=r"batches: expected key to be an nptfunc.random.Key"):
        data.batches((x, y), 2, key=0)
    with pytest.raises(TypeError, match=r"batches: expected arrays to be an array or a tuple, list or "
                                        r"dict of arrays, got a leaf of type int"):
        data.batches((x, 3), 2)
    with pytest.raises(ValueError, match=r"batches: expected arrays with a first \(batch\) axis"):
        data.batches(np.float32(1.0), 2)
    with pytest.raises(ValueError, match=r"batches: expected arrays to hold at least one array"):
        data.batches((), 2)


# ------------------------------------------------------------ train_test_split
def test_train_test_split_partitions_and_is_deterministic():
    x, y = _xy(20)
    (xtr, ytr), (xte, yte) = data.train_test_split((x, y), 0.25, key=random.key(0))
    assert len(yte) == 5 and len(ytr) == 15
    assert sorted(np.concatenate([ytr, yte]).tolist()) == y.tolist()
    np.testing.assert_array_equal(xtr[:, 0] / 3 * 10, ytr)
    (_, ytr2), (_, yte2) = data.train_test_split((x, y), 0.25, key=random.key(0))
    np.testing.assert_array_equal(yte, yte2)
    np.testing.assert_array_equal(ytr, ytr2)
    (_, _), (_, yte3) = data.train_test_split((x, y), 0.25, key=random.key(1))
    assert not np.array_equal(yte, yte3)


def test_train_test_split_rounds_the_test_part_up_as_sklearn():
    x, _ = _xy(10)
    train, test = data.train_test_split(x, 0.21, key=random.key(0))
    assert (len(train), len(test)) == (7, 3)


@pytest.mark.parametrize(("fraction", "error", "match"), [
    (0.0, ValueError, r"train_test_split: expected test_fraction in \(0, 1\), got 0.0"),
    (1.0, ValueError, r"train_test_split: expected test_fraction in \(0, 1\), got 1.0"),
    ("0.5", TypeError, r"train_test_split: expected test_fraction in \(0, 1\), got str '0.5'"),
    (None, TypeError, r"train_test_split: expected test_fraction in \(0, 1\), got NoneType None"),
    (True, TypeError, r"train_test_split: expected test_fraction in \(0, 1\), got bool True"),
    (float("nan"), ValueError, r"train_test_split: expected test_fraction in \(0, 1\), got nan"),
    (0.99, ValueError, r"train_test_split: test_fraction=0.99 of 10 rows leaves 0 for training"),
])
def test_train_test_split_errors(fraction, error, match):
    x, _ = _xy(10)
    with pytest.raises(error, match=match):
        data.train_test_split(x, fraction, key=random.key(0))


def test_train_test_split_needs_a_key():
    x, _ = _xy(10)
    with pytest.raises(TypeError, match=r"train_test_split: expected key to be an nptfunc.random.Key"):
        data.train_test_split(x, 0.5, key=None)


# ------------------------------------------------------------------------- IDX
def _idx_bytes(a: np.ndarray, type_code: int) -> bytes:
    """IDX as the format's description gives it, written independently of the reader."""
    header = bytes([0, 0, type_code, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def _write(path, content: bytes, gz: bool):
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(("dtype", "code"), [
    (np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C),
    (np.float32, 0x0D), (np.float64, 0x0E),
])
def test_read_idx_types(tmp_path, gz, dtype, code):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    path = _write(tmp_path / "a.idx", _idx_bytes(a, code), gz)
    got = data.read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


def test_read_idx_standard_magic_numbers(tmp_path):
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    content = _idx_bytes(images, 0x08)
    assert struct.unpack(">I", content[:4])[0] == 2051
    labels = _idx_bytes(np.array([1, 2, 3], np.uint8), 0x08)
    assert struct.unpack(">I", labels[:4])[0] == 2049
    assert data.read_idx(_write(tmp_path / "l", labels, False)).tolist() == [1, 2, 3]


def test_read_idx_errors(tmp_path):
    bad_magic = _write(tmp_path / "bad", b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", False)
    with pytest.raises(ValueError, match=r"read_idx: .*bad' is not an IDX file"):
        data.read_idx(bad_magic)
    short = _idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3), 0x08)[:-1]
    with pytest.raises(ValueError, match=r"has 5 bytes of data, but its header says shape \(2, 3\)"):
        data.read_idx(_write(tmp_path / "short", short, True))
    with pytest.raises(ValueError, match=r"ends inside its header"):
        data.read_idx(_write(tmp_path / "head", b"\x00\x00\x08\x03\x00\x00", False))
    with pytest.raises(ValueError, match=r"looks gzipped but could not be decompressed"):
        data.read_idx(_write(tmp_path / "broken.gz", b"\x1f\x8b\x08garbage", False))


def _peak_bytes(f):
    import tracemalloc

    tracemalloc.start()
    try:
        f()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_read_idx_stops_at_the_declared_size(tmp_path):
    """A gzip stream that inflates far beyond its header (a zip bomb), or a header that claims a
    pebibyte, is refused after reading at most one byte more than declared: no large allocation."""
    bomb = _write(tmp_path / "bomb.gz", bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(20_000_000), True)
    assert bomb.stat().st_size < 100_000

    def read_bomb():
        with pytest.raises(ValueError, match=r"bomb\.gz' has more than 6 bytes of data, but its header says "
                                             r"shape \(2, 3\) of uint8 \(6 bytes\)"):
            data.read_idx(bomb)

    assert _peak_bytes(read_bomb) < 4_000_000
    huge = _write(tmp_path / "huge", bytes([0, 0, 8, 2, 2, 0, 0, 0, 2, 0, 0, 0]) + b"abc", False)

    def read_huge():
        with pytest.raises(ValueError, match=r"huge' has 3 bytes of data, but its header says shape "
                                             r"\(33554432, 33554432\) of uint8 \(1125899906842624 bytes\)"):
            data.read_idx(huge)

    assert _peak_bytes(read_huge) < 4_000_000


def _write_mnist(folder, n_train=5, n_test=3, gz=True, sep="-"):
    rng = np.random.default_rng(0)
    parts = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        ext = ".gz" if gz else ""
        _write(folder / f"{stem}-images{sep}idx3-ubyte{ext}", _idx_bytes(images, 0x08), gz)
        _write(folder / f"{stem}-labels{sep}idx1-ubyte{ext}", _idx_bytes(labels, 0x08), gz)
        parts[stem] = (images, labels)
    return parts


@pytest.mark.parametrize(("gz", "sep"), [(True, "-"), (False, "-"), (False, ".")])
def test_load_mnist(tmp_path, gz, sep):
    parts = _write_mnist(tmp_path, gz=gz, sep=sep)
    (x_train, y_train), (x_test, y_test) = data.load_mnist(tmp_path)
    np.testing.assert_array_equal(x_train, parts["train"][0])
    np.testing.assert_array_equal(y_train, parts["train"][1])
    np.testing.assert_array_equal(x_test, parts["t10k"][0])
    np.testing.assert_array_equal(y_test, parts["t10k"][1])
    assert x_train.shape == (5, 28, 28) and y_test.shape == (3,)


def test_load_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"load_mnist: .* is not a folder"):
        data.load_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"load_mnist: found none of \['train-images-idx3-ubyte'"):
        data.load_mnist(tmp_path)
    _write_mnist(tmp_path, gz=False)
    _write(tmp_path / "t10k-labels-idx1-ubyte", _idx_bytes(np.zeros(4, np.uint8), 0x08), False)
    with pytest.raises(ValueError, match=r"has 3 images but .* has 4 labels"):
        data.load_mnist(tmp_path)
    _write(tmp_path / "t10k-labels-idx1-ubyte", _idx_bytes(np.zeros((3, 2), np.uint8), 0x08), False)
    with pytest.raises(ValueError, match=r"load_mnist: expected labels \(N,\) of uint8"):
        data.load_mnist(tmp_path)


# ------------------------------------------------------------ sharded batches
@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize(("n", "bs", "world", "drop_last", "local_sizes"), [
    (12, 4, 2, False, [2, 2, 2]),
    (11, 4, 2, False, [2, 2, 1]),   # tail of 3 cut to 2: one row sits the epoch out
    (11, 4, 2, True, [2, 2]),
    (10, 6, 3, False, [2, 1]),      # tail of 4 cut to 3
    (7, 6, 3, False, [2]),          # tail of 1 < 3 ranks: no tail batch
    (5, 4, 4, False, [1]),
    (9, 3, 1, False, [3, 3, 3]),    # one process: unchanged
])
def test_sharded_batches_split_each_global_batch(n, bs, world, drop_last, local_sizes, shuffle):
    x, y = _xy(n)
    key = random.key(5) if shuffle else None
    ranks = [data.batches((x, y), bs, key=key, drop_last=drop_last, rank=r, world_size=world)
             for r in range(world)]
    single = list(data.batches((x, y), bs, key=key, drop_last=drop_last))
    assert [len(b) for b in ranks] == [len(local_sizes)] * world  # every rank takes the same steps
    per_rank = [list(b) for b in ranks]
    seen = []
    for step, size in enumerate(local_sizes):
        shares = [per_rank[r][step] for r in range(world)]
        assert all(len(yb) == size for _, yb in shares)
        for xb, yb in shares:
            np.testing.assert_array_equal(xb[:, 0] / 3 * 10, yb)  # rows stay paired
        joined = np.concatenate([yb for _, yb in shares])
        # the shares, in rank order, are the single-process batch (the tail cut to a multiple of world)
        np.testing.assert_array_equal(joined, single[step][1][:size * world])
        seen.extend(joined.tolist())
    assert len(seen) == len(set(seen))  # disjoint
    assert len(seen) == sum(local_sizes) * world


def test_sharded_batches_shuffle_differs_per_key_and_agrees_across_ranks():
    x, y = _xy(40)
    order = lambda k, r: np.concatenate([yb for _, yb in data.batches((x, y), 8, key=k, rank=r, world_size=2)])  # noqa: E731
    a0, a1 = order(random.key(1), 0), order(random.key(1), 1)
    assert sorted(np.concatenate([a0, a1]).tolist()) == y.tolist()
    assert not np.array_equal(a0, order(random.key(2), 0))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"world_size": 2, "rank": 2}, ValueError, r"batches: expected rank to be an int in \[0, 1\], got 2"),
    ({"world_size": 2, "rank": -1}, ValueError, r"batches: expected rank to be an int in \[0, 1\], got -1"),
    ({"world_size": 0}, ValueError, r"batches: expected world_size to be an int >= 1, got 0"),
    ({"world_size": 2, "rank": True}, TypeError, r"batches: expected rank to be an int .*got bool True"),
    ({"world_size": 3}, ValueError,
     r"batches: expected batch_size \(the global batch\) to be a multiple of world_size=3, got 4"),
])
def test_sharded_batches_errors(kwargs, error, match):
    x, y = _xy(8)
    with pytest.raises(error, match=match):
        data.batches((x, y), 4, **kwargs)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda x: data.batches(x, 2, drop_last="no"), TypeError,
     r"batches: expected drop_last to be a bool \(True or False\), got str 'no'"),
    (lambda x: data.batches(x, 2, drop_last=1), TypeError, r"batches: expected drop_last to be a bool"),
    (lambda x: data.batches(x, 2, key=random.key(0), shuffle=1), TypeError,
     r"batches: expected shuffle to be a bool \(True or False\), got int 1"),
    (lambda x: data.batches(x, True), TypeError, r"batches: expected batch_size to be an int >= 1, got bool"),
    (lambda x: data.Batches(x, 1.5, None, False), TypeError,
     r"Batches: expected batch_size to be an int >= 1, got float 1.5"),
    (lambda x: data.Batches(x, 2, None, None), TypeError, r"Batches: expected drop_last to be a bool"),
    (lambda x: data.read_idx(3), TypeError,
     r"read_idx: expected path to be a str or os.PathLike path, got int 3"),
    (lambda x: data.read_idx(b"/tmp/x"), TypeError, r"read_idx: expected path to be a str or os.PathLike"),
    (lambda x: data.load_mnist(None), TypeError,
     r"load_mnist: expected data_dir to be a str or os.PathLike path, got NoneType None"),
])
def test_helper_arguments_are_checked(call, error, match):
    x, _ = _xy(10)
    with pytest.raises(error, match=match):
        call(x)

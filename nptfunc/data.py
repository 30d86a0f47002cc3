"""The small pieces a training script needs: batches, a split, and MNIST's file format.

* :func:`batches` cuts arrays into minibatches along their first axis, in order
  or shuffled from a key (the same key gives the same order), with ``drop_last``;
  with ``rank=`` and ``world_size=`` it gives each process of a data-parallel job
  its share of every global batch.
* :func:`train_test_split` splits arrays into two parts from a key.
* :func:`read_idx` reads a file in the IDX format of MNIST (gzipped or not) and
  :func:`load_mnist` reads the four standard MNIST files from a folder.

``arrays`` is one array or any tree (:mod:`nptfunc.tree`: a tuple, list or dict)
of arrays that share their first dimension; every function gives back the same
structure, so ``for xb, yb in batches((x, y), 64)`` and
``for b in batches({"x": x, "y": y}, 64)`` both read as they should.

Example:
    >>> import numpy as np
    >>> from nptfunc import data, random
    >>> x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    >>> [yb.tolist() for _, yb in data.batches((x, y), 2)]
    [[0, 1], [2, 3], [4]]
    >>> len(data.batches((x, y), 2, key=random.key(0), drop_last=True))
    2
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Iterator
from typing import IO, Any

import attrs
import numpy as np

from nptfunc import random
from nptfunc._types import Array, PyTree
from nptfunc._validate import bool_field, check_bool, check_int, check_real, int_field
from nptfunc.backend import readonly
from nptfunc.random import Key
from nptfunc.tree import tree_leaves, tree_map

__all__ = ["Batches", "batches", "load_mnist", "read_idx", "train_test_split"]


# ------------------------------------------------------------------ validation
def _length(owner: str, arrays: PyTree) -> int:
    """The shared first dimension of the arrays of ``arrays``, or raise naming ``owner``."""
    leaves = tree_leaves(arrays)
    if not leaves:
        msg = f"{owner}: expected arrays to hold at least one array, got {arrays!r}"
        raise ValueError(msg)
    lengths = []
    for leaf in leaves:
        shape = getattr(leaf, "shape", None)
        if shape is None:
            msg = (f"{owner}: expected arrays to be an array or a tuple, list or dict of arrays, "
                   f"got a leaf of type {type(leaf).__name__}")
            raise TypeError(msg)
        if len(shape) == 0:
            msg = f"{owner}: expected arrays with a first (batch) axis, got a 0-d array"
            raise ValueError(msg)
        lengths.append(shape[0])
    if len(set(lengths)) != 1:
        msg = f"{owner}: expected arrays of the same length along axis 0, got lengths {lengths}"
        raise ValueError(msg)
    return lengths[0]


def _check_key(key: Any, owner: str) -> Key:
    return random.check_key(key, owner, "key to be an nptfunc.random.Key")


def _check_path(owner: str, name: str, value: Any) -> str:
    """``value`` as a ``str`` path (a ``str`` or ``os.PathLike``; an int would open a file descriptor)."""
    if not isinstance(value, (str, os.PathLike)):
        msg = (f"{owner}: expected {name} to be a str or os.PathLike path, "
               f"got {type(value).__name__} {value!r}")
        raise TypeError(msg)
    path = os.fspath(value)
    if not isinstance(path, str):
        msg = f"{owner}: expected {name} to be a str or os.PathLike path, got bytes {path!r}"
        raise TypeError(msg)
    return path


# --------------------------------------------------------------------- batches
@attrs.frozen
class Batches:
    """Minibatches of arrays: an iterable that knows its length (for progress bars).

    Made by :func:`batches`; iterating it twice gives the same batches in the same
    order. Each batch has the structure of ``arrays``: views of the arrays in
    order, copies when shuffled. With ``world_size > 1`` each batch is this
    rank's share of a global batch (see :func:`batches`).

    Attributes:
        arrays: an array or a tree of arrays of one length ``n`` along axis 0.
        batch_size: at most this many rows per global batch (all ranks together).
        order: the row order (``None``: ``0..n-1``).
        drop_last: whether a last, smaller global batch is left out.
        rank: which share of each global batch this iterable gives, in ``[0, world_size)``.
        world_size: how many ranks share each global batch.
    """

    arrays: PyTree = attrs.field(eq=False)
    batch_size: int = int_field()
    order: Array | None = attrs.field(eq=False)
    drop_last: bool = bool_field()
    rank: int = int_field(minimum=0, default=0)
    world_size: int = int_field(default=1)

    @property
    def num_rows(self) -> int:
        """How many rows the arrays have."""
        return _length("batches", self.arrays)

    def _global_sizes(self) -> list[int]:
        """The size of every global batch: full ones, then the tail cut to a multiple of the world size."""
        n, bs = self.num_rows, self.batch_size
        sizes = [bs] * (n // bs)
        tail = n % bs
        tail -= tail % self.world_size
        if tail and not self.drop_last:
            sizes.append(tail)
        return sizes

    def __len__(self) -> int:
        return len(self._global_sizes())

    def __iter__(self) -> Iterator[PyTree]:
        start = 0
        for size in self._global_sizes():
            share = size // self.world_size
            lo = start + self.rank * share
            start += size
            if self.order is None:
                sl = slice(lo, lo + share)
                yield tree_map(lambda a, sl=sl: a[sl], self.arrays)
            else:
                idx = self.order[lo:lo + share]
                yield tree_map(lambda a, idx=idx: a[idx], self.arrays)


def batches(arrays: PyTree, batch_size: int, *, key: Key | None = None, shuffle: bool | None = None,
            drop_last: bool = False, rank: int = 0, world_size: int = 1) -> Batches:
    """Minibatches of ``arrays`` along their first axis.

    Like a ``torch.utils.data.DataLoader`` over in-memory tensors, with the
    shuffle drawn from an explicit key: the same key gives the same order, so
    ``random.fold_in(key, epoch)`` gives each epoch its own.

    **Sharding for data parallelism.** With ``world_size=W`` and ``rank=r``
    (from :mod:`nptfunc.distributed`), ``batch_size`` is the *global* batch: the
    epoch's order is cut into the same global batches as in one process, and
    each global batch into ``W`` equal consecutive shares, of which this rank
    gets share ``r``. Every rank draws the same permutation from the shared key,
    so the shards are disjoint and together cover the global batch, and one
    data-parallel step (gradients averaged with ``allreduce_mean``) is one
    single-process step on the whole global batch. ``batch_size`` must be a
    multiple of ``W``. The tail: a last global batch of ``t < batch_size`` rows
    is cut to ``t - t % W`` rows (its last ``t % W`` rows, at most ``W - 1``, sit
    this epoch out; with a shuffle they are others every epoch), so all ranks
    take the same number of steps with shares of equal size; ``drop_last``
    leaves it out whole. With ``W = 1`` nothing changes.

    Args:
        arrays: an array, or a tuple, list or dict (any :mod:`nptfunc.tree`) of
            arrays with the same length ``n`` along axis 0.
        batch_size: rows per (global) batch (the last batch may have fewer).
        key: the key of the shuffle; the same on every rank.
        shuffle: whether to visit the rows in a random order; ``None`` (the
            default) shuffles exactly when a key is given. ``True`` needs a key.
        drop_last: leave out a last batch smaller than ``batch_size``.
        rank: this process's rank, in ``[0, world_size)``.
        world_size: how many ranks share each global batch.

    Returns:
        A :class:`Batches`: iterate it for batches of the structure of
        ``arrays`` (``batch_size // world_size`` rows each, but for the tail);
        ``len()`` is the number of batches, the same on every rank.

    Raises:
        ValueError: ``shuffle=True`` without a key, arrays of different lengths,
            ``batch_size < 1``, ``world_size < 1``, a rank outside
            ``[0, world_size)``, a ``batch_size`` that is not a multiple of ``world_size``.
        TypeError: a key that is not a :class:`nptfunc.random.Key`, a leaf that is
            not an array, a ``batch_size`` that is not an int, a ``shuffle`` or
            ``drop_last`` that is not a bool.
    """
    n = _length("batches", arrays)
    batch_size = check_int("batches", "batch_size", batch_size)
    drop_last = check_bool("batches", "drop_last", drop_last)
    shuffle = key is not None if shuffle is None else check_bool("batches", "shuffle", shuffle)
    world_size = check_int("batches", "world_size", world_size)
    rank = check_int("batches", "rank", rank, minimum=0, maximum=world_size - 1)
    if batch_size % world_size:
        msg = (f"batches: expected batch_size (the global batch) to be a multiple of "
               f"world_size={world_size}, got {batch_size}")
        raise ValueError(msg)
    if shuffle and key is None:
        msg = ("batches: shuffle=True needs a key (batches(arrays, batch_size, key=random.key(0))): "
               "there is no global random state")
        raise ValueError(msg)
    order = None
    if shuffle:
        order = readonly(random.permutation(_check_key(key, "batches"), n))
    elif key is not None:
        _check_key(key, "batches")
    return Batches(arrays, batch_size, order, drop_last, rank, world_size)


def train_test_split(arrays: PyTree, test_fraction: float, *, key: Key) -> tuple[PyTree, PyTree]:
    """Split the rows of ``arrays`` at random into a train part and a test part.

    The test part has ``ceil(test_fraction * n)`` rows (as scikit-learn's
    ``train_test_split``); both parts keep the random order of the split.

    Args:
        arrays: an array or a tree of arrays with the same length ``n`` along axis 0.
        test_fraction: the share of rows that go to the test part, in ``(0, 1)``.
        key: the key of the split (the same key gives the same split).

    Returns:
        ``(train, test)``, each of the structure of ``arrays``.

    Raises:
        ValueError: a fraction outside ``(0, 1)`` or one that leaves a part empty.
        TypeError: a fraction that is not a real number (a ``bool`` or a string).
    """
    n = _length("train_test_split", arrays)
    test_fraction = check_real("train_test_split", "test_fraction", test_fraction, low=0.0, high=1.0,
                               low_open=True, high_open=True)
    n_test = math.ceil(test_fraction * n)
    if not 0 < n_test < n:
        msg = (f"train_test_split: test_fraction={test_fraction} of {n} rows leaves "
               f"{n - n_test} for training and {n_test} for testing; both need at least one")
        raise ValueError(msg)
    order = random.permutation(_check_key(key, "train_test_split"), n)
    test_idx, train_idx = order[:n_test], order[n_test:]
    return (tree_map(lambda a: a[train_idx], arrays), tree_map(lambda a: a[test_idx], arrays))


# ------------------------------------------------------------------------- IDX
# The IDX format (yann.lecun.com/exdb/mnist): two zero bytes, a type code, the
# number of dimensions, each dimension as a big-endian uint32, then the data in
# C order, big-endian.
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


_CHUNK = 1 << 20


def _read_at_most(f: IO[bytes], n: int) -> bytearray:
    """Up to ``n`` bytes of ``f``, read in chunks, so memory follows the data read and not ``n``."""
    out = bytearray()
    while len(out) < n:
        part = f.read(min(n - len(out), _CHUNK))
        if not part:
            break
        out += part
    return out


def _read_idx(f: IO[bytes], name: str) -> Array:
    head = _read_at_most(f, 4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
        msg = (f"read_idx: {name!r} is not an IDX file (expected the magic number 0x0000TTDD with "
               f"a type code TT in {sorted(hex(t) for t in _IDX_TYPES)}, got {bytes(head).hex()!r})")
        raise ValueError(msg)
    dtype, ndim = _IDX_TYPES[head[2]], head[3]
    dims = _read_at_most(f, 4 * ndim)
    if len(dims) < 4 * ndim:
        msg = f"read_idx: {name!r} ends inside its header ({ndim} dimensions need {4 + 4 * ndim} bytes)"
        raise ValueError(msg)
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    expected = math.prod(shape) * dtype.itemsize
    raw = _read_at_most(f, expected + 1)  # one byte more tells a longer file: never more than that
    if len(raw) != expected:
        got = f"more than {expected}" if len(raw) > expected else str(len(raw))
        msg = (f"read_idx: {name!r} has {got} bytes of data, but its header says "
               f"shape {shape} of {dtype.name} ({expected} bytes)")
        raise ValueError(msg)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> Array:
    """Read one IDX file (MNIST's format), gzipped or not.

    The data is read (and decompressed) in chunks and never beyond the size the
    header declares, so a file longer than its header says, or a gzip stream that
    inflates to far more, is refused after reading one byte too many.

    Args:
        path: the file; gzip compression is detected from its content, not its name.

    Returns:
        The array in native byte order, with the shape and type the header gives
        (``uint8`` ``(N, 28, 28)`` for MNIST images, ``uint8`` ``(N,)`` for labels).

    Raises:
        ValueError: the header is not IDX, or the data is shorter or longer than it says.
        TypeError: ``path`` is not a ``str`` or ``os.PathLike``.
    """
    name = _check_path("read_idx", "path", path)
    with open(name, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            f.seek(0)
            return _read_idx(f, name)
        f.seek(0)
        try:
            with gzip.GzipFile(fileobj=f) as gz:
                return _read_idx(gz, name)
        except (OSError, EOFError, zlib.error) as e:
            msg = f"read_idx: {name!r} looks gzipped but could not be decompressed: {e}"
            raise ValueError(msg) from e


_MNIST_PARTS = {
    "train": ("train-images", "train-labels"),
    "test": ("t10k-images", "t10k-labels"),
}


def _find_mnist_file(data_dir: str, stem: str, dims: int) -> str:
    """The path of one MNIST file: ``train-images-idx3-ubyte`` and the usual variants."""
    names = [f"{stem}{sep}idx{dims}-ubyte{ext}" for sep in ("-", ".") for ext in ("", ".gz")]
    for name in names:
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    msg = f"load_mnist: found none of {names} in {data_dir!r}"
    raise FileNotFoundError(msg)


def _check_mnist(path: str, a: Array, want_ndim: int) -> None:
    if a.ndim != want_ndim or a.dtype != np.uint8:
        what = "images (N, rows, cols)" if want_ndim == 3 else "labels (N,)"
        msg = f"load_mnist: expected {what} of uint8 in {path!r}, got {a.dtype} {a.shape}"
        raise ValueError(msg)


def load_mnist(data_dir: str | os.PathLike[str]) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """Read the four standard MNIST IDX files from a folder (nothing is downloaded).

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each possibly
    ending in ``.gz`` or spelled with a dot before ``idx`` (``train-images.idx3-ubyte``).
    Works as well for Fashion-MNIST, which uses the same files.

    Args:
        data_dir: the folder holding the files.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: images as ``uint8`` arrays
        ``(N, 28, 28)``, labels as ``uint8`` arrays ``(N,)``.

    Raises:
        FileNotFoundError: a file is missing (the message lists the names tried).
        ValueError: a file is not what it should be, or images and labels differ in count.
    """
    data_dir = _check_path("load_mnist", "data_dir", data_dir)
    if not os.path.isdir(data_dir):
        msg = f"load_mnist: {data_dir!r} is not a folder"
        raise FileNotFoundError(msg)
    out = []
    for images_stem, labels_stem in _MNIST_PARTS.values():
        images_path = _find_mnist_file(data_dir, images_stem, 3)
        labels_path = _find_mnist_file(data_dir, labels_stem, 1)
        images, labels = read_idx(images_path), read_idx(labels_path)
        _check_mnist(images_path, images, 3)
        _check_mnist(labels_path, labels, 1)
        if len(images) != len(labels):
            msg = (f"load_mnist: {images_path!r} has {len(images)} images but {labels_path!r} "
                   f"has {len(labels)} labels")
            raise ValueError(msg)
        out.append((images, labels))
    return out[0], out[1]

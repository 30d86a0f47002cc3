"""Explicit, immutable random keys. There is no global random state anywhere.

A :class:`Key` is a value: hashable, comparable, cheap to copy. The same key
always gives the same numbers; :func:`split` derives independent children
deterministically through NumPy's ``SeedSequence`` spawning. A NumPy
``Generator`` is made from a key (by :func:`generator`) inside the function that
needs randomness and never escapes it.

Example:
    >>> from nptfunc import random
    >>> k = random.key(0)
    >>> k_params, k_data = random.split(k)
    >>> random.uniform(k_data, (2,)).shape
    (2,)
"""

from __future__ import annotations

import operator

import attrs
import numpy as np

__all__ = ["Key", "bernoulli", "check_key", "fold_in", "generator", "key", "normal", "permutation", "split",
           "uniform"]

_MAX_SEED = 2**64


def _check_path(value: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(operator.index(v) for v in value)


@attrs.frozen(repr=False)
class Key:
    """An immutable random key: a seed and the path of splits that led to it.

    Build keys with :func:`key` and :func:`split`; do not construct them by hand.
    """

    seed: int = attrs.field(converter=operator.index)
    path: tuple[int, ...] = attrs.field(default=(), converter=_check_path)

    def __repr__(self) -> str:
        return f"Key(seed={self.seed}, path={self.path})"

    def to_array(self) -> np.ndarray:
        """The key as a ``uint64`` array (for saving to a file)."""
        return np.array([self.seed, *self.path], dtype=np.uint64)

    @classmethod
    def from_array(cls, a: np.ndarray) -> Key:
        """The key that :meth:`to_array` wrote."""
        values = [int(v) for v in np.asarray(a, dtype=np.uint64).ravel()]
        if not values:
            msg = "Key.from_array: expected a non-empty uint64 array, got an empty one"
            raise ValueError(msg)
        return cls(values[0], tuple(values[1:]))


def key(seed: int) -> Key:
    """Make a key from a non-negative integer seed.

    Args:
        seed: any integer in ``[0, 2**64)``.

    Returns:
        An immutable, hashable :class:`Key`.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        msg = f"random.key: expected an int seed, got {type(seed).__name__} {seed!r}"
        raise TypeError(msg)
    if not 0 <= int(seed) < _MAX_SEED:
        msg = f"random.key: expected a seed in [0, 2**64), got {seed}"
        raise ValueError(msg)
    return Key(int(seed))


def check_key(k: object, where: str, what: str = "an nptfunc.random.Key") -> Key:
    """Return ``k`` if it is a :class:`Key`, else raise a ``TypeError`` naming ``where``.

    Args:
        k: the value to check.
        where: the function or layer, first in the message.
        what: how the message names the expected value.
    """
    if not isinstance(k, Key):
        msg = f"{where}: expected {what} (random.key(seed)), got {type(k).__name__}"
        raise TypeError(msg)
    return k


def split(k: Key, num: int = 2) -> tuple[Key, ...]:
    """Split a key into ``num`` independent children.

    Args:
        k: the parent key (unchanged; it stays valid).
        num: how many children, at least 1.

    Returns:
        A tuple of ``num`` keys, all different from each other and from ``k``.
    """
    check_key(k, "random.split")
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        msg = f"random.split: expected num to be an int >= 1, got {num!r}"
        raise ValueError(msg)
    return tuple(Key(k.seed, (*k.path, i)) for i in range(int(num)))


def fold_in(k: Key, data: int) -> Key:
    """A new key derived from ``k`` and an integer (a step count, a layer index)."""
    check_key(k, "random.fold_in")
    data = operator.index(data)
    if not 0 <= data < 2**32:
        msg = f"random.fold_in: expected data in [0, 2**32), got {data}"
        raise ValueError(msg)
    return Key(k.seed, (*k.path, 2**32 + data))


def generator(k: Key) -> np.random.Generator:
    """The NumPy ``Generator`` of a key: the one internal way keys become numbers.

    Create it inside the function that needs randomness; never store it.
    """
    check_key(k, "random.generator")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(k.seed, spawn_key=k.path)))


def uniform(k: Key, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0,
            dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Samples from ``U[low, high)`` of the given shape and dtype (float32 by default, as the layers).

    Drawn in float64 and rounded, so a float32 sample is the float64 one rounded.
    """
    out = generator(k).uniform(low, high, size=shape)
    return out.astype(dtype, copy=False)


def normal(k: Key, shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Standard normal samples of the given shape and dtype (float32 by default, as the layers)."""
    return generator(k).standard_normal(size=shape).astype(dtype, copy=False)


def bernoulli(k: Key, p: float, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean array, each element ``True`` with probability ``p``."""
    return generator(k).random(size=shape) < p


def permutation(k: Key, n: int) -> np.ndarray:
    """A random permutation of ``range(n)``."""
    return generator(k).permutation(n)

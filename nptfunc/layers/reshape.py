"""Layers that only change an array's shape."""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from nptfunc._types import VJP, Array
from nptfunc._validate import owner_of
from nptfunc.backend import array_module
from nptfunc.layers.base import Layer, int_field

__all__ = ["Flatten", "Unflatten"]


@attrs.frozen
class Flatten(Layer):
    """Flatten the axes ``start_dim..end_dim`` into one. Equivalent to ``torch.nn.Flatten``.

    Args:
        start_dim: first axis to flatten (default 1: keeps the batch axis).
        end_dim: last axis to flatten (default -1).

    Shapes:
        ``(N, C, H, W) -> (N, C*H*W)`` with the defaults.
    """

    start_dim: int = int_field(minimum=None, default=1)
    end_dim: int = int_field(minimum=None, default=-1)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Merge ``input_shape[start_dim:end_dim + 1]`` into one axis."""
        shape = tuple(input_shape)
        n = max(len(shape), 1)
        start, end = self.start_dim, self.end_dim
        if not (-n <= start < n and -n <= end < n):
            msg = (f"{self.name}: dims out of range for input of shape {shape} "
                   f"(expected -{n} <= dim < {n})")
            raise ValueError(msg)
        start, end = start % n, end % n
        if start > end:
            msg = f"{self.name}: start_dim comes after end_dim for input of shape {shape}"
            raise ValueError(msg)
        if not shape:
            return (1,)
        return (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        y = xp.reshape(x, self.output_shape(x.shape))
        return y, lambda dy: (None, xp.reshape(dy, x.shape))


def _sizes(value: Any, instance: Any, field: attrs.Attribute) -> tuple[int, ...]:
    """``unflattened_size``: a tuple or list of ints >= 0, at most one of them -1 (inferred)."""
    owner = owner_of(instance)
    if not isinstance(value, (tuple, list)) or not value:
        msg = f"{owner}: expected unflattened_size to be a non-empty tuple or list of ints, got {value!r}"
        raise TypeError(msg)
    for v in value:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            msg = f"{owner}: expected unflattened_size to be a tuple of ints, got {value!r}"
            raise TypeError(msg)
        if v < -1:
            msg = f"{owner}: expected the sizes in unflattened_size to be >= 0 (or one -1), got {value!r}"
            raise ValueError(msg)
    if sum(v == -1 for v in value) > 1:
        msg = f"{owner}: expected at most one -1 in unflattened_size, got {value!r}"
        raise ValueError(msg)
    return tuple(int(v) for v in value)


@attrs.frozen
class Unflatten(Layer):
    """Split axis ``dim`` into the axes ``unflattened_size``. Equivalent to ``torch.nn.Unflatten``.

    Args:
        dim: the axis to split (negative counts from the end).
        unflattened_size: the new axes' sizes; their product must be the axis' size
            (one of them may be -1, inferred, as ``torch.Tensor.unflatten``).

    Shapes:
        ``(*, S, *) -> (*, *unflattened_size, *)``, e.g. ``Unflatten(1, (2, 5))``:
        ``(N, 10) -> (N, 2, 5)``.
    """

    dim: int = int_field(minimum=None)
    unflattened_size: tuple[int, ...] = attrs.field(converter=attrs.Converter(
        _sizes, takes_self=True, takes_field=True))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``input_shape`` with axis ``dim`` replaced by ``unflattened_size`` (-1 resolved)."""
        shape = tuple(input_shape)
        n = len(shape)
        if not -n <= self.dim < n:
            msg = (f"{self.name}: dim {self.dim} is out of range for input of shape {shape} "
                   f"(expected -{max(n, 1)} <= dim < {max(n, 1)})")
            raise ValueError(msg)
        d = self.dim % n
        sizes = self.unflattened_size
        known = math.prod(s for s in sizes if s != -1)
        if -1 in sizes:
            if known == 0 or shape[d] % known:
                msg = f"{self.name}: cannot unflatten axis {d} of size {shape[d]} into {sizes}, got {shape}"
                raise ValueError(msg)
            sizes = tuple(shape[d] // known if s == -1 else s for s in sizes)
        elif known != shape[d]:
            msg = (f"{self.name}: expected axis {d} of size {known} (the product of {sizes}), "
                   f"got input of shape {shape}")
            raise ValueError(msg)
        return (*shape[:d], *sizes, *shape[d + 1:])

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        y = xp.reshape(x, self.output_shape(x.shape))
        return y, lambda dy: (None, xp.reshape(dy, x.shape))

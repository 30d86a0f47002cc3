"""Layers that only change an array's shape."""

from __future__ import annotations

import math

import attrs

from nptfunc._types import VJP, Array
from nptfunc.backend import array_module
from nptfunc.layers.base import Layer, int_field

__all__ = ["Flatten"]


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

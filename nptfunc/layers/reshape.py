"""Layers that only change an array's shape."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from nptfunc._types import VJP, Array
from nptfunc.backend import array_module
from nptfunc.layers.base import Layer, as_array, check_int, check_params, elementwise_vjp

__all__ = ["Flatten"]


def _dim(name: str) -> Callable[[Any], int]:
    return lambda value: check_int("Flatten", name, value, minimum=None)


@attrs.frozen
class Flatten(Layer):
    """Flatten the axes ``start_dim..end_dim`` into one. Equivalent to ``torch.nn.Flatten``.

    Args:
        start_dim: first axis to flatten (default 1: keeps the batch axis).
        end_dim: last axis to flatten (default -1).

    Shapes:
        ``(N, C, H, W) -> (N, C*H*W)`` with the defaults.
    """

    start_dim: int = attrs.field(default=1, converter=_dim("start_dim"))
    end_dim: int = attrs.field(default=-1, converter=_dim("end_dim"))

    @property
    def name(self) -> str:  # noqa: D102
        return f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"

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
        check_params(self.name, params, None)
        x = as_array(self.name, x)
        xp = array_module(x)
        y = xp.reshape(x, self.output_shape(x.shape))
        return y, elementwise_vjp(self.name, y.shape, lambda dy: xp.reshape(dy, x.shape))

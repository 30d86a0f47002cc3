"""Elementwise and softmax-style activations: forward and derivative side by side.

Every elementwise activation is one small class: its forward math and its local
derivative, which :func:`_pointwise` turns into ``(y, vjp)``. The derivatives are
written from the output where that is cheaper (ReLU, Sigmoid, Tanh), so the vjp
captures only the output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from types import ModuleType

import attrs
import numpy as np

from nptfunc._types import VJP, Array
from nptfunc.backend import array_module
from nptfunc.layers.base import Layer, choice_field, int_field, real_field

__all__ = ["GELU", "Identity", "LeakyReLU", "LogSoftmax", "ReLU", "Sigmoid", "Softmax", "Tanh",
           "erf"]


def _pointwise(x: Array, forward: Callable[[Array], Array],
               grad: Callable[[Array, Array, Array], Array]) -> tuple[Array, VJP]:
    """``y = forward(x)``; ``vjp(dy) = (None, grad(x, y, dy))``."""
    y = forward(x)
    return y, lambda dy: (None, grad(x, y, dy))


@attrs.frozen
class Identity(Layer):
    """``y = x``. Equivalent to ``torch.nn.Identity``. Shapes: any -> same."""

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        return _pointwise(x, lambda x: x, lambda x, y, dy: dy)


@attrs.frozen
class ReLU(Layer):
    """``y = max(x, 0)``; the gradient at 0 is 0, as torch's. Equivalent to ``torch.nn.ReLU``.

    As torch, ``dx = 0 where y <= 0 else dy``: a NaN input passes its gradient through.
    """

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)

        def grad(x: Array, y: Array, dy: Array) -> Array:
            keep = ~(y <= 0)  # NaN outputs pass their gradient, as torch
            if xp.isfinite(dy).all():
                return dy * keep  # a multiply: np.where on random signs is 10x slower
            return xp.where(keep, dy, 0).astype(dy.dtype, copy=False)  # exact zeros, not inf * 0

        return _pointwise(x, lambda x: _max0(xp, x), grad)


_ROW = 1024


def _max0(xp: ModuleType, x: Array) -> Array:
    """``maximum(x, 0)``, for a contiguous NumPy array as rows of ``_ROW`` against a zero row.

    NumPy's maximum against a scalar is about 3x slower than between two arrays (0.5
    against 0.2 ms on 1.6 M floats here); the zero row makes it array against array.
    The result is the same, NaN included.
    """
    if xp is not np or not x.flags.c_contiguous or x.size < _ROW:
        return xp.maximum(x, 0)
    y = xp.empty_like(x)
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    n = x.size // _ROW * _ROW
    xp.maximum(flat_x[:n].reshape(-1, _ROW), xp.zeros(_ROW, dtype=x.dtype), out=flat_y[:n].reshape(-1, _ROW))
    xp.maximum(flat_x[n:], 0, out=flat_y[n:])
    return y


@attrs.frozen
class LeakyReLU(Layer):
    """``y = x if x > 0 else negative_slope * x``. Equivalent to ``torch.nn.LeakyReLU``.

    Args:
        negative_slope: the slope for ``x <= 0`` (the gradient at 0 uses it, as torch).
    """

    negative_slope: float = real_field(default=0.01)

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        s = self.negative_slope

        def forward(x: Array) -> Array:
            if s == 0:  # inf * 0 would be NaN for x = inf; torch gives inf (and NaN for -inf)
                return _max0(xp, x) + s * xp.minimum(x, 0)
            # exactly torch's "x if x > 0 else s * x": s * x lies below x for x > 0 and above it
            # for x < 0 when s <= 1 (the other way round when s > 1); array-array maximum and
            # minimum are 4x faster than against the scalar 0 (NaN propagates either way)
            sx = xp.multiply(x, s, out=xp.empty_like(x))
            return (xp.maximum if s <= 1 else xp.minimum)(x, sx, out=sx)

        def grad(x: Array, y: Array, dy: Array) -> Array:
            pos = x > 0  # NaN inputs take the negative slope, as torch
            if xp.isfinite(dy).all():
                return dy * pos + (dy * s) * ~pos  # multiplies: np.where on random signs is slow
            return xp.where(pos, dy, dy * s)

        return _pointwise(x, forward, grad)


@attrs.frozen
class Sigmoid(Layer):
    """``y = 1 / (1 + exp(-x))``, torch's formula. Equivalent to ``torch.nn.Sigmoid``.

    For very negative ``x``, ``exp(-x)`` overflows to inf and ``y`` is 0, as torch's
    (below about -88 in float32, -709 in float64; the exact values there are
    subnormal or 0). Four in-place passes: 14x faster than splitting by sign with
    ``np.where``.
    """

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)

        def forward(x: Array) -> Array:
            y = xp.negative(x, out=xp.empty_like(x))  # an array even for 0-d x
            with np.errstate(over="ignore"):  # inf, then y = 1 / inf = 0
                xp.exp(y, out=y)
            y += 1
            return xp.reciprocal(y, out=y)

        return _pointwise(x, forward, lambda x, y, dy: dy * y * (1 - y))


@attrs.frozen
class Tanh(Layer):
    """``y = tanh(x)``; ``dx = dy * (1 - y**2)``. Equivalent to ``torch.nn.Tanh``."""

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        return _pointwise(x, xp.tanh, lambda x, y, dy: dy * (1 - y * y))


@cache
def _erf_impl() -> Callable[[Array], Array]:
    try:  # SciPy's vectorised erf when it is installed (it is not a dependency)
        from scipy.special import erf as scipy_erf
    except ImportError:
        ufunc = np.frompyfunc(math.erf, 1, 1)
        return lambda x: ufunc(x).astype(x.dtype)
    return lambda x: scipy_erf(x).astype(x.dtype, copy=False)


def erf(x: Array) -> Array:
    """The error function, elementwise, in the dtype of ``x``.

    Uses ``scipy.special.erf`` when SciPy is installed, else the standard
    library's ``math.erf`` elementwise (exact, but a Python-level loop).
    """
    return _erf_impl()(x)


@attrs.frozen
class GELU(Layer):
    """``y = x * Phi(x)``, Phi the standard normal CDF. Equivalent to ``torch.nn.GELU``.

    Args:
        approximate: ``'none'`` (exact, through erf) or ``'tanh'``
            (``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))``).
    """

    approximate: str = choice_field(("none", "tanh"), default="none")

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        if self.approximate == "none":
            def forward(x: Array) -> Array:
                return 0.5 * x * (1 + erf(x * (1 / math.sqrt(2))))

            def grad(x: Array, y: Array, dy: Array) -> Array:
                cdf = 0.5 * (1 + erf(x * (1 / math.sqrt(2))))
                pdf = xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
                return dy * (cdf + x * pdf)
        else:
            c = math.sqrt(2 / math.pi)

            def forward(x: Array) -> Array:
                return 0.5 * x * (1 + xp.tanh(c * (x + 0.044715 * x**3)))

            def grad(x: Array, y: Array, dy: Array) -> Array:
                t = xp.tanh(c * (x + 0.044715 * x**3))
                dt = (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
                return dy * (0.5 * (1 + t) + 0.5 * x * dt)

        return _pointwise(x, forward, grad)


def _check_dim(layer: Layer, ndim: int) -> int:
    dim = layer.dim
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        msg = (f"{layer.name}: dim {dim} is out of range for input of rank {ndim} "
               f"(expected -{max(ndim, 1)} <= dim < {max(ndim, 1)})")
        raise ValueError(msg)
    return dim % max(ndim, 1)


@attrs.frozen
class Softmax(Layer):
    """``y = exp(x) / sum(exp(x), dim)``, shifted by the max for stability.

    Equivalent to ``torch.nn.Softmax(dim)``. ``dx = y * (dy - sum(dy * y, dim))``.

    Args:
        dim: the axis to normalise over (torch requires it; so do we).
    """

    dim: int = int_field(minimum=None)

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        d = _check_dim(self, x.ndim)
        if x.ndim == 0:
            y = xp.ones_like(x)
        else:
            e = xp.exp(x - x.max(axis=d, keepdims=True))
            y = e / e.sum(axis=d, keepdims=True)

        def vjp(dy: Array) -> tuple[None, Array]:
            if x.ndim == 0:
                return None, xp.zeros_like(x)
            return None, y * (dy - (dy * y).sum(axis=d, keepdims=True))

        return y, vjp


@attrs.frozen
class LogSoftmax(Layer):
    """``y = x - logsumexp(x, dim)``. Equivalent to ``torch.nn.LogSoftmax(dim)``.

    ``dx = dy - softmax(x) * sum(dy, dim)``.

    Args:
        dim: the axis to normalise over.
    """

    dim: int = int_field(minimum=None)

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        d = _check_dim(self, x.ndim)
        y = xp.zeros_like(x) if x.ndim == 0 else log_softmax(x, d)

        def vjp(dy: Array) -> tuple[None, Array]:
            if x.ndim == 0:
                return None, xp.zeros_like(x)
            return None, dy - xp.exp(y) * dy.sum(axis=d, keepdims=True)

        return y, vjp


def log_softmax(x: Array, axis: int) -> Array:
    """``x - logsumexp(x, axis)``, stable for large magnitudes (shared with the losses)."""
    xp = array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))

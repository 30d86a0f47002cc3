"""Elementwise and softmax-style activations: forward and derivative side by side.

Every elementwise activation is one small class: its forward math and its local
derivative, which :func:`_pointwise` turns into ``(y, vjp)``. Where
:mod:`nptfunc.ops` has the function (ReLU, Sigmoid, Tanh, Softmax, LogSoftmax),
the layer calls the op (:func:`_from_op`), so each derivative is written once;
those capture only their output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from types import ModuleType

import attrs
import numpy as np

from nptfunc import ops
from nptfunc._types import VJP, Array
from nptfunc.backend import array_module
from nptfunc.layers.base import Layer, choice_field, dtype_field, int_field, param_field, real_field
from nptfunc.random import Key

__all__ = ["ELU", "GELU", "Hardsigmoid", "Hardswish", "Hardtanh", "Identity", "LeakyReLU", "LogSoftmax",
           "Mish", "PReLU", "PReLUParams", "ReLU", "ReLU6", "SiLU", "Sigmoid", "Softmax", "Softplus",
           "Softsign", "Tanh", "erf"]


def _pointwise(x: Array, forward: Callable[[Array], Array],
               grad: Callable[[Array, Array, Array], Array]) -> tuple[Array, VJP]:
    """``y = forward(x)``; ``vjp(dy) = (None, grad(x, y, dy))``."""
    y = forward(x)
    return y, lambda dy: (None, grad(x, y, dy))


def _from_op(x: Array, op: Callable[[Array], tuple[Array, Callable]]) -> tuple[Array, VJP]:
    """``(y, vjp)`` of a parameterless layer that is the unary ``op`` of :mod:`nptfunc.ops`."""
    y, op_vjp = op(x)
    return y, lambda dy: (None, op_vjp(dy)[0])


@attrs.frozen
class Identity(Layer):
    """``y = x``. Equivalent to ``torch.nn.Identity``. Shapes: any -> same."""

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        return _pointwise(x, lambda x: x, lambda x, y, dy: dy)


@attrs.frozen
class ReLU(Layer):
    """``y = max(x, 0)``; the gradient at 0 is 0, as torch's. Equivalent to ``torch.nn.ReLU``.

    As torch, ``dx = 0 where y <= 0 else dy``: a NaN input passes its gradient
    through. The math is :func:`nptfunc.ops.relu`.
    """

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        return _from_op(x, ops.relu)


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
                return ops.relu(x)[0] + s * xp.minimum(x, 0)
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

    For very negative ``x``, ``y`` is 0, as torch's. The math (four in-place
    passes, 14x faster than splitting by sign) is :func:`nptfunc.ops.sigmoid`.
    """

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        return _from_op(x, ops.sigmoid)


@attrs.frozen
class Tanh(Layer):
    """``y = tanh(x)``; ``dx = dy * (1 - y**2)``. Equivalent to ``torch.nn.Tanh``."""

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        return _from_op(x, ops.tanh)


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
                with np.errstate(over="ignore", invalid="ignore"):  # NaN at -inf, as torch's
                    return 0.5 * x * (1 + xp.tanh(c * (x + 0.044715 * x**3)))

            def grad(x: Array, y: Array, dy: Array) -> Array:
                with np.errstate(over="ignore", invalid="ignore"):  # NaN at +-inf, as torch's
                    t = xp.tanh(c * (x + 0.044715 * x**3))
                    dt = (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
                    return dy * (0.5 * (1 + t) + 0.5 * x * dt)

        return _pointwise(x, forward, grad)


def _sigmoid(xp: ModuleType, x: Array) -> Array:
    """``1 / (1 + exp(-x))``, 0 where ``exp(-x)`` overflows (as torch)."""
    with np.errstate(over="ignore"):
        return 1 / (1 + xp.exp(-x))


@attrs.frozen
class SiLU(Layer):
    """``y = x * sigmoid(x)`` (swish), torch's ``x / (1 + exp(-x))``. Equivalent to ``torch.nn.SiLU``.

    ``dx = dy * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``, torch's formula (NaN at
    ``x = +-inf``, as torch). Shapes: any -> same.
    """

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)

        def forward(x: Array) -> Array:
            with np.errstate(over="ignore", invalid="ignore"):
                return x / (1 + xp.exp(-x))

        def grad(x: Array, y: Array, dy: Array) -> Array:
            s = _sigmoid(xp, x)
            with np.errstate(invalid="ignore"):
                return dy * s * (1 + x * (1 - s))

        return _pointwise(x, forward, grad)


@attrs.frozen
class ELU(Layer):
    """``y = x if x > 0 else alpha * (exp(x) - 1)``. Equivalent to ``torch.nn.ELU``.

    ``dx = dy if x > 0 else dy * alpha * exp(x)`` (at ``x = 0`` the left side, ``alpha``,
    as torch). Shapes: any -> same.

    Args:
        alpha: the scale of the negative part (any real, as torch).
    """

    alpha: float = real_field(default=1.0)

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        a = self.alpha

        def forward(x: Array) -> Array:
            return xp.where(x > 0, x, a * xp.expm1(xp.minimum(x, 0)))

        def grad(x: Array, y: Array, dy: Array) -> Array:
            return xp.where(x <= 0, dy * (a * xp.exp(xp.minimum(x, 0))), dy)

        return _pointwise(x, forward, grad)


@attrs.frozen
class Softplus(Layer):
    """``y = log(1 + exp(beta * x)) / beta``, and ``y = x`` where ``beta * x > threshold``.

    Equivalent to ``torch.nn.Softplus``; ``dx = dy * z / (z + 1)`` with ``z = exp(beta * x)``
    (``dy`` above the threshold). Shapes: any -> same.

    Args:
        beta: the sharpness (non-zero).
        threshold: above it (in ``beta * x``) the function is the identity.
    """

    beta: float = real_field(default=1.0)
    threshold: float = real_field(default=20.0)

    def __attrs_post_init__(self) -> None:
        if self.beta == 0:
            msg = f"{self.name}: expected beta to be non-zero, got 0.0"
            raise ValueError(msg)

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        b, t = self.beta, self.threshold

        def forward(x: Array) -> Array:
            bx = x * b
            with np.errstate(over="ignore"):
                return xp.where(bx > t, x, xp.log1p(xp.exp(bx)) / b)

        def grad(x: Array, y: Array, dy: Array) -> Array:
            bx = x * b
            with np.errstate(over="ignore", invalid="ignore"):
                z = xp.exp(bx)
                return xp.where(bx > t, dy, dy * z / (z + 1))

        return _pointwise(x, forward, grad)


@attrs.frozen
class Mish(Layer):
    """``y = x * tanh(log(1 + exp(x)))``. Equivalent to ``torch.nn.Mish``.

    ``dx = dy * (t + x * sigmoid(x) * (1 - t**2))`` with ``t = tanh(log1p(exp(x)))``,
    torch's formula. Shapes: any -> same.
    """

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)

        def tsp(x: Array) -> Array:
            with np.errstate(over="ignore"):
                return xp.tanh(xp.log1p(xp.exp(x)))

        def forward(x: Array) -> Array:
            with np.errstate(invalid="ignore"):
                return x * tsp(x)

        def grad(x: Array, y: Array, dy: Array) -> Array:
            t = tsp(x)
            with np.errstate(invalid="ignore"):
                return dy * (t + x * _sigmoid(xp, x) * (1 - t * t))

        return _pointwise(x, forward, grad)


def _clamp(xp: ModuleType, x: Array, low: float, high: float) -> Array:
    """``min(max(x, low), high)``, NaN kept (as torch's clamp)."""
    return xp.minimum(xp.maximum(x, low), high)


@attrs.frozen
class Hardtanh(Layer):
    """``y = clamp(x, min_val, max_val)``. Equivalent to ``torch.nn.Hardtanh``.

    ``dx = 0`` where ``x <= min_val`` or ``x >= max_val`` (at both kinks, as torch),
    else ``dy``. Shapes: any -> same.

    Args:
        min_val: the lower bound.
        max_val: the upper bound (greater than ``min_val``).
    """

    min_val: float = real_field(default=-1.0)
    max_val: float = real_field(default=1.0)

    def __attrs_post_init__(self) -> None:
        if not self.max_val > self.min_val:
            msg = (f"{self.name}: expected max_val to be greater than min_val, "
                   f"got min_val={self.min_val!r} and max_val={self.max_val!r}")
            raise ValueError(msg)

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        lo, hi = self.min_val, self.max_val

        def grad(x: Array, y: Array, dy: Array) -> Array:
            return xp.where((x <= lo) | (x >= hi), 0, dy).astype(dy.dtype, copy=False)

        return _pointwise(x, lambda x: _clamp(xp, x, lo, hi), grad)


@attrs.frozen
class ReLU6(Layer):
    """``y = min(max(x, 0), 6)``: :class:`Hardtanh` on ``[0, 6]``. Equivalent to ``torch.nn.ReLU6``.

    The gradient is 0 at both kinks (``x = 0`` and ``x = 6``), as torch. Shapes: any -> same.
    """

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        return Hardtanh(0.0, 6.0)._apply(params, x)


@attrs.frozen
class Hardsigmoid(Layer):
    """``y = clamp(x + 3, 0, 6) / 6``. Equivalent to ``torch.nn.Hardsigmoid``.

    ``dx = dy / 6`` strictly inside ``(-3, 3)``, else 0. torch multiplies by the
    float32 constant ``1/6`` in every dtype (``0.1666666716...``); so do we, to match
    its float64 gradient to the last digit. Shapes: any -> same.
    """

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        one_sixth = float(np.float32(1.0) / np.float32(6.0))

        def grad(x: Array, y: Array, dy: Array) -> Array:
            return xp.where((x > -3) & (x < 3), dy * one_sixth, 0).astype(dy.dtype, copy=False)

        return _pointwise(x, lambda x: _clamp(xp, x + 3, 0, 6) / 6, grad)


@attrs.frozen
class Hardswish(Layer):
    """``y = x * clamp(x + 3, 0, 6) / 6``. Equivalent to ``torch.nn.Hardswish``.

    ``dx = 0`` for ``x <= -3``, ``dy`` for ``x >= 3``, else ``dy * (x / 3 + 1/2)`` (torch's
    kinks). Shapes: any -> same.
    """

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)

        def grad(x: Array, y: Array, dy: Array) -> Array:
            inner = xp.where(x >= 3, dy, dy * (x / 3 + 0.5))
            return xp.where(x <= -3, 0, inner).astype(dy.dtype, copy=False)

        def forward(x: Array) -> Array:
            with np.errstate(invalid="ignore"):  # -inf * 0 is NaN, as torch's
                return x * _clamp(xp, x + 3, 0, 6) / 6

        return _pointwise(x, forward, grad)


@attrs.frozen
class Softsign(Layer):
    """``y = x / (1 + |x|)``. Equivalent to ``torch.nn.Softsign``.

    torch builds it from ``abs`` and a division, so its gradient is autograd's
    ``dy / a - dy * x * sign(x) / a**2`` with ``a = 1 + |x|`` (NaN at ``x = +-inf``, as
    torch); written the same way here. Shapes: any -> same.
    """

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)

        def forward(x: Array) -> Array:
            with np.errstate(invalid="ignore"):
                return x / (xp.abs(x) + 1)

        def grad(x: Array, y: Array, dy: Array) -> Array:
            a = xp.abs(x) + 1
            with np.errstate(invalid="ignore"):
                return dy / a + (-dy * x / (a * a)) * xp.sign(x)

        return _pointwise(x, forward, grad)


@attrs.frozen
class PReLUParams:
    """Parameters of :class:`PReLU` (torch's name). ``weight``: ``(num_parameters,)``."""

    weight: Array = param_field()


@attrs.frozen
class PReLU(Layer):
    """``y = x if x > 0 else weight * x``, a learned slope per channel. Equivalent to ``torch.nn.PReLU``.

    With ``num_parameters > 1`` the channel axis is axis 1 of the input (which then
    needs at least two axes and ``num_parameters`` channels, as torch); one
    parameter serves inputs of any shape, 0-d included. The gradient at ``x = 0``
    takes the slope (``dx = weight * dy``, ``dweight`` gets ``x * dy = 0``), as torch.

    Args:
        num_parameters: 1 (one slope shared by every channel) or the number of channels.
        init: the initial value of every slope.
        dtype: NumPy float dtype of the parameters (float32 by default).

    Shapes:
        x: ``(N, C, *)`` (any shape when ``num_parameters == 1``) -> the same.
        Params: weight ``(num_parameters,)``.
    """

    params_class = PReLUParams
    num_parameters: int = int_field(default=1)
    init_value: float = real_field(default=0.25, alias="init", label="init")
    dtype: np.dtype = dtype_field()

    def init(self, key: Key) -> PReLUParams:
        """torch's initialisation: every slope ``init`` (no randomness; ``key`` is unused)."""
        return PReLUParams(np.full((self.num_parameters,), self.init_value, dtype=self.dtype))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input's shape; with several slopes, checks that axis 1 has ``num_parameters`` channels."""
        shape = tuple(input_shape)
        if self.num_parameters != 1 and (len(shape) < 2 or shape[1] != self.num_parameters):
            msg = f"{self.name}: expected input of shape (N, {self.num_parameters}, *), got {shape}"
            raise ValueError(msg)
        return shape

    def _apply(self, params: PReLUParams, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        w = params.weight
        if w.shape != (self.num_parameters,):
            msg = f"{self.name}: expected weight of shape ({self.num_parameters},), got {tuple(w.shape)}"
            raise ValueError(msg)
        self.output_shape(x.shape)
        shared = self.num_parameters == 1
        wb = w.reshape(()) if shared else w.reshape((-1,) + (1,) * (x.ndim - 2))
        pos = x > 0
        y = xp.where(pos, x, wb * x)

        def vjp(dy: Array) -> tuple[PReLUParams, Array]:
            dx = xp.where(pos, dy, wb * dy)
            dxw = xp.where(pos, 0, x * dy)  # x * dy where the slope was used
            if shared:
                dw = xp.reshape(dxw.sum(), (1,))
            else:
                dw = xp.swapaxes(dxw, 0, 1).reshape(self.num_parameters, -1).sum(axis=1)
            return PReLUParams(dw.astype(w.dtype, copy=False)), dx

        return y, vjp


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

    Equivalent to ``torch.nn.Softmax(dim)``. ``dx = y * (dy - sum(dy * y, dim))``
    (:func:`nptfunc.ops.softmax`).

    Args:
        dim: the axis to normalise over (torch requires it; so do we).
    """

    dim: int = int_field(minimum=None)

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        d = _check_dim(self, x.ndim)
        return _from_op(x, lambda x: ops.softmax(x, d))


@attrs.frozen
class LogSoftmax(Layer):
    """``y = x - logsumexp(x, dim)``. Equivalent to ``torch.nn.LogSoftmax(dim)``.

    ``dx = dy - softmax(x) * sum(dy, dim)`` (:func:`nptfunc.ops.log_softmax`).

    Args:
        dim: the axis to normalise over.
    """

    dim: int = int_field(minimum=None)

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        d = _check_dim(self, x.ndim)
        return _from_op(x, lambda x: ops.log_softmax(x, d))

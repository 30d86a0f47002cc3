"""Pure differentiable functions: ``f(*inputs, **hyper) -> (y, vjp)``.

``vjp(dy)`` returns a tuple with one cotangent per input, in order (a 1-tuple for
a unary op). Python scalars, integer and boolean inputs get ``None``. Broadcasting
is NumPy's (= torch's); each cotangent is summed back to its input's shape by
:func:`unbroadcast` and comes back in its input's dtype.

Aliasing rule: a cotangent MAY be ``dy`` itself or a view of it (``add`` returns
``dy`` for both inputs; ``reshape`` a view). Nothing here writes into ``dy`` or
into anything a vjp captured, and callers must not write into a cotangent either.

These are the torch-port's stand-ins written on branch ``torchport`` for the ops
the facade's tape needs; branch ``ops`` owns this module (see ``docs/ops.md`` there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nptfunc._types import Array

__all__ = [
    "abs", "add", "amax", "amin", "astype", "clamp", "concatenate", "div", "exp", "expand",
    "getitem", "log", "log_softmax", "masked_fill", "matmul", "max_dim", "maximum", "mean",
    "minimum", "mul", "neg", "pad", "permute", "pow", "relu", "reshape", "sigmoid", "softmax",
    "sqrt", "stack", "sub", "sum", "tanh", "unbroadcast", "where",
]

_builtin_abs = abs
_builtin_sum = sum


def _is_diff(a: Any) -> bool:
    """Whether ``a`` gets a cotangent: a floating array (not a Python scalar or an int array)."""
    return isinstance(a, (np.ndarray, np.generic)) and a.dtype.kind in "fc"


def unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``g`` over the axes broadcasting added or stretched, back to ``shape``."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    stretched = tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    axes = tuple(range(lead)) + stretched
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _cot(g: Array, a: Any) -> Array | None:
    """``g`` as the cotangent of input ``a``: ``None`` for a non-float input, else summed and cast."""
    if not _is_diff(a):
        return None
    g = unbroadcast(g, a.shape)
    return g if g.dtype == a.dtype else g.astype(a.dtype)


def _check_dy(name: str, dy: Any, y: Array) -> Array:
    dy = np.asarray(dy)
    if dy.shape != y.shape:
        msg = f"ops.{name} vjp: expected dy of shape {y.shape} (the output's), got {dy.shape}"
        raise ValueError(msg)
    return dy if dy.dtype == y.dtype or y.dtype.kind not in "fc" else dy.astype(y.dtype)


# -------------------------------------------------------------------- arithmetic
def add(a: Any, b: Any) -> tuple[Array, Callable]:
    """``a + b`` with broadcasting. Equivalent to ``torch.add``."""
    y = np.add(a, b)
    return y, lambda dy: (_cot(dy := _check_dy("add", dy, y), a), _cot(dy, b))


def sub(a: Any, b: Any) -> tuple[Array, Callable]:
    """``a - b`` with broadcasting. Equivalent to ``torch.sub``."""
    y = np.subtract(a, b)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("sub", dy, y)
        return _cot(dy, a), (_cot(-dy, b) if _is_diff(b) else None)
    return y, vjp


def mul(a: Any, b: Any) -> tuple[Array, Callable]:
    """``a * b`` with broadcasting. Equivalent to ``torch.mul``."""
    y = np.multiply(a, b)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("mul", dy, y)
        return (_cot(dy * b, a) if _is_diff(a) else None), (_cot(dy * a, b) if _is_diff(b) else None)
    return y, vjp


def div(a: Any, b: Any) -> tuple[Array, Callable]:
    """``a / b`` with broadcasting. Equivalent to ``torch.div``."""
    y = np.true_divide(a, b)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("div", dy, y)
        da = _cot(dy / b, a) if _is_diff(a) else None
        db = _cot(-dy * y / b, b) if _is_diff(b) else None
        return da, db
    return y, vjp


def neg(a: Array) -> tuple[Array, Callable]:
    """``-a``. Equivalent to ``torch.neg``."""
    y = np.negative(a)
    return y, lambda dy: (-_check_dy("neg", dy, y),)


def pow(a: Any, b: Any) -> tuple[Array, Callable]:
    """``a ** b`` with broadcasting. Equivalent to ``torch.pow``."""
    y = np.power(a, b)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("pow", dy, y)
        da = db = None
        if _is_diff(a):
            bm1 = np.subtract(b, 1)
            da = _cot(np.where(np.equal(b, 0), 0, dy * b * np.power(a, bm1)), a)
        if _is_diff(b):
            with np.errstate(divide="ignore", invalid="ignore"):
                lg = np.where((np.asarray(a) == 0) & (np.asarray(b) >= 0), 0, np.log(a))
            db = _cot(dy * y * lg, b)
        return da, db
    return y, vjp


def matmul(a: Array, b: Array) -> tuple[Array, Callable]:
    """``a @ b`` with NumPy's (= torch's) batching and 1-d rules. Equivalent to ``torch.matmul``."""
    y = np.matmul(a, b)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("matmul", dy, y)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g = dy
        if a.ndim == 1:
            g = np.expand_dims(g, -2)
        if b.ndim == 1:
            g = np.expand_dims(g, -1)
        da = db = None
        if _is_diff(a):
            da = np.matmul(g, np.swapaxes(b2, -1, -2))
            da = unbroadcast(da, a2.shape).reshape(a.shape).astype(a.dtype, copy=False)
        if _is_diff(b):
            db = np.matmul(np.swapaxes(a2, -1, -2), g)
            db = unbroadcast(db, b2.shape).reshape(b.shape).astype(b.dtype, copy=False)
        return da, db
    return y, vjp


# ---------------------------------------------------------------------- pointwise
def exp(a: Array) -> tuple[Array, Callable]:
    """``exp(a)``. Equivalent to ``torch.exp``."""
    y = np.exp(a)
    return y, lambda dy: (_check_dy("exp", dy, y) * y,)


def log(a: Array) -> tuple[Array, Callable]:
    """``log(a)``. Equivalent to ``torch.log``."""
    y = np.log(a)
    return y, lambda dy: (_check_dy("log", dy, y) / a,)


def sqrt(a: Array) -> tuple[Array, Callable]:
    """``sqrt(a)`` (the gradient at 0 is inf, as torch's). Equivalent to ``torch.sqrt``."""
    y = np.sqrt(a)

    def vjp(dy: Array) -> tuple:
        with np.errstate(divide="ignore"):
            return (_check_dy("sqrt", dy, y) / (2 * y),)
    return y, vjp


def tanh(a: Array) -> tuple[Array, Callable]:
    """``tanh(a)``. Equivalent to ``torch.tanh``."""
    y = np.tanh(a)
    return y, lambda dy: (_check_dy("tanh", dy, y) * (1 - y * y),)


def sigmoid(a: Array) -> tuple[Array, Callable]:
    """``1 / (1 + exp(-a))``. Equivalent to ``torch.sigmoid``."""
    with np.errstate(over="ignore"):
        y = 1 / (1 + np.exp(-a))
    return y, lambda dy: (_check_dy("sigmoid", dy, y) * y * (1 - y),)


def relu(a: Array) -> tuple[Array, Callable]:
    """``max(a, 0)`` (gradient 0 at 0, as torch's). Equivalent to ``torch.relu``."""
    y = np.maximum(a, 0)
    return y, lambda dy: (_check_dy("relu", dy, y) * (y > 0),)


def abs(a: Array) -> tuple[Array, Callable]:
    """``|a|`` (gradient 0 at 0, as torch's). Equivalent to ``torch.abs``."""
    y = np.abs(a)
    return y, lambda dy: (_check_dy("abs", dy, y) * np.sign(a),)


def clamp(a: Array, min: Any = None, max: Any = None) -> tuple[Array, Callable]:
    """``a`` limited to ``[min, max]`` (gradient 1 inside and at the bounds), as ``torch.clamp``."""
    y = a
    if min is not None:
        y = np.maximum(y, np.asarray(min, dtype=a.dtype))
    if max is not None:
        y = np.minimum(y, np.asarray(max, dtype=a.dtype))
    y = np.array(y, copy=y is a)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("clamp", dy, y)
        keep = np.ones(a.shape, bool)
        if min is not None:
            keep &= a >= min
        if max is not None:
            keep &= a <= max
        return (dy * keep,)
    return y, vjp


def maximum(a: Any, b: Any) -> tuple[Array, Callable]:
    """Elementwise maximum; a tie splits the gradient in half, as ``torch.maximum``."""
    y = np.maximum(a, b)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("maximum", dy, y)
        wa = (np.greater(a, b) + 0.5 * np.equal(a, b)).astype(y.dtype)
        return (_cot(dy * wa, a) if _is_diff(a) else None), (_cot(dy * (1 - wa), b) if _is_diff(b) else None)
    return y, vjp


def minimum(a: Any, b: Any) -> tuple[Array, Callable]:
    """Elementwise minimum; a tie splits the gradient in half, as ``torch.minimum``."""
    y = np.minimum(a, b)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("minimum", dy, y)
        wa = (np.less(a, b) + 0.5 * np.equal(a, b)).astype(y.dtype)
        return (_cot(dy * wa, a) if _is_diff(a) else None), (_cot(dy * (1 - wa), b) if _is_diff(b) else None)
    return y, vjp


def where(cond: Array, a: Any, b: Any) -> tuple[Array, Callable]:
    """``a`` where ``cond`` else ``b``. Equivalent to ``torch.where``; ``cond`` gets ``None``."""
    y = np.where(cond, a, b)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("where", dy, y)
        zero = np.zeros((), dy.dtype)
        return (None, _cot(np.where(cond, dy, zero), a) if _is_diff(a) else None,
                _cot(np.where(cond, zero, dy), b) if _is_diff(b) else None)
    return y, vjp


def masked_fill(a: Array, mask: Array, value: Any) -> tuple[Array, Callable]:
    """``a`` with ``value`` where ``mask``. Equivalent to ``torch.Tensor.masked_fill``."""
    y = np.where(mask, np.asarray(value, dtype=a.dtype), a)
    return y, lambda dy: (_cot(np.where(mask, 0, _check_dy("masked_fill", dy, y)).astype(y.dtype), a), None)


def astype(a: Array, dtype: Any) -> tuple[Array, Callable]:
    """``a`` cast to ``dtype``; the cotangent is cast back. Equivalent to ``torch.Tensor.to(dtype)``."""
    y = a.astype(dtype)
    return y, lambda dy: (_cot(_check_dy("astype", dy, y), a),)


# -------------------------------------------------------------------- reductions
def _axes(a: Array, axis: Any) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(a.ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    nd = _builtin_abs(a.ndim) or 1
    out = []
    for ax in axes:
        if not -nd <= ax < nd:
            msg = f"ops: axis {ax} is out of range for an array of rank {a.ndim}"
            raise ValueError(msg)
        out.append(int(ax) % nd)
    return tuple(out)


def _expand_back(g: Array, a: Array, axes: tuple[int, ...], keepdims: bool) -> Array:
    if not keepdims and a.ndim:
        g = np.expand_dims(g, axes)
    return np.broadcast_to(g, a.shape)


def sum(a: Array, axis: Any = None, keepdims: bool = False) -> tuple[Array, Callable]:
    """Sum over ``axis``. Equivalent to ``torch.sum(a, dim, keepdim)``."""
    axes = _axes(a, axis)
    y = np.sum(a, axis=axes if a.ndim else None, keepdims=keepdims)
    y = np.asarray(y)
    return y, lambda dy: (_expand_back(_check_dy("sum", dy, y), a, axes, keepdims),)


def mean(a: Array, axis: Any = None, keepdims: bool = False) -> tuple[Array, Callable]:
    """Mean over ``axis``. Equivalent to ``torch.mean(a, dim, keepdim)``."""
    axes = _axes(a, axis)
    y = np.asarray(np.mean(a, axis=axes if a.ndim else None, keepdims=keepdims))
    n = int(np.prod([a.shape[i] for i in axes])) if a.ndim else 1
    return y, lambda dy: (_expand_back(_check_dy("mean", dy, y) / n, a, axes, keepdims),)


def _extreme(name: str, f: Callable, a: Array, axis: Any, keepdims: bool) -> tuple[Array, Callable]:
    axes = _axes(a, axis)
    y = np.asarray(f(a, axis=axes if a.ndim else None, keepdims=keepdims))

    def vjp(dy: Array) -> tuple:
        dy = _check_dy(name, dy, y)
        yk = _expand_back(y, a, axes, keepdims)
        hit = (a == yk)
        count = hit.sum(axis=axes if a.ndim else None, keepdims=True)
        return (_expand_back(dy, a, axes, keepdims) * hit / count,)
    return y, vjp


def amax(a: Array, axis: Any = None, keepdims: bool = False) -> tuple[Array, Callable]:
    """Maximum over ``axis``; ties share the gradient evenly. Equivalent to ``torch.amax``."""
    return _extreme("amax", np.max, a, axis, keepdims)


def amin(a: Array, axis: Any = None, keepdims: bool = False) -> tuple[Array, Callable]:
    """Minimum over ``axis``; ties share the gradient evenly. Equivalent to ``torch.amin``."""
    return _extreme("amin", np.min, a, axis, keepdims)


def max_dim(a: Array, axis: int, keepdims: bool = False, *, largest: bool = True
            ) -> tuple[tuple[Array, Array], Callable]:
    """Values and first indices of the max (or min) over ``axis``; the gradient goes to the index.

    Equivalent to ``torch.max(a, dim, keepdim)`` (``largest=False``: ``torch.min``).
    The vjp takes the cotangent of the values.
    """
    (ax,) = _axes(a, axis)
    idx = np.expand_dims((np.argmax if largest else np.argmin)(a, axis=ax), ax)
    vals = np.take_along_axis(a, idx, ax)
    y = vals if keepdims else np.squeeze(vals, ax)
    ind = idx if keepdims else np.squeeze(idx, ax)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("max_dim", dy, y)
        g = np.zeros(a.shape, y.dtype)
        np.put_along_axis(g, idx, dy if keepdims else np.expand_dims(dy, ax), ax)
        return (g,)
    return (y, ind), vjp


# --------------------------------------------------------------------- structure
def reshape(a: Array, shape: tuple[int, ...]) -> tuple[Array, Callable]:
    """``a`` in another shape (a view where possible). Equivalent to ``torch.reshape``."""
    y = np.reshape(a, shape)
    return y, lambda dy: (_check_dy("reshape", dy, y).reshape(a.shape),)


def permute(a: Array, axes: tuple[int, ...]) -> tuple[Array, Callable]:
    """``a`` with its axes reordered (a view). Equivalent to ``torch.permute``."""
    y = np.transpose(a, axes)
    inv = tuple(np.argsort(axes)) if len(axes) else ()
    return y, lambda dy: (np.transpose(_check_dy("permute", dy, y), inv),)


def expand(a: Array, shape: tuple[int, ...]) -> tuple[Array, Callable]:
    """``a`` broadcast to ``shape`` (a read-only view). Equivalent to ``torch.Tensor.expand``."""
    y = np.broadcast_to(a, shape)
    return y, lambda dy: (_cot(_check_dy("expand", dy, y), a),)


def getitem(a: Array, index: Any) -> tuple[Array, Callable]:
    """``a[index]`` (basic and advanced indexing); repeated indices accumulate in the vjp."""
    y = a[index]
    basic = _is_basic(index)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("getitem", dy, y)
        g = np.zeros(a.shape, y.dtype)
        if basic:
            g[index] = dy
        else:
            np.add.at(g, index, dy)
        return (g,)
    return y, vjp


def _is_basic(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice)) for i in items)


def concatenate(arrays: tuple[Array, ...], axis: int = 0) -> tuple[Array, Callable]:
    """Join ``arrays`` along ``axis``. Equivalent to ``torch.cat``; one cotangent per array."""
    y = np.concatenate(arrays, axis=axis)
    ends = np.cumsum([a.shape[axis] for a in arrays])[:-1]

    def vjp(dy: Array) -> tuple:
        parts = np.split(_check_dy("concatenate", dy, y), ends, axis=axis)
        return tuple(_cot(p, a) for p, a in zip(parts, arrays, strict=True))
    return y, vjp


def stack(arrays: tuple[Array, ...], axis: int = 0) -> tuple[Array, Callable]:
    """Stack ``arrays`` along a new ``axis``. Equivalent to ``torch.stack``; one cotangent per array."""
    y = np.stack(arrays, axis=axis)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("stack", dy, y)
        return tuple(_cot(np.take(dy, i, axis=axis), a) for i, a in enumerate(arrays))
    return y, vjp


def pad(a: Array, pad: tuple[int, ...], mode: str = "constant", value: float = 0.0) -> tuple[Array, Callable]:
    """Constant padding with torch's pad tuple (last axis first, ``(left, right, top, bottom, ...)``).

    Equivalent to ``torch.nn.functional.pad(a, pad, 'constant', value)``; negative pads crop.
    """
    if mode != "constant":
        msg = f"ops.pad: only mode='constant' is available on this branch, got {mode!r}"
        raise NotImplementedError(msg)
    if len(pad) % 2 or len(pad) // 2 > a.ndim:
        msg = f"ops.pad: expected an even-length pad tuple of at most 2 * {a.ndim} ints, got {pad}"
        raise ValueError(msg)
    widths = [(0, 0)] * a.ndim
    for i in range(len(pad) // 2):
        widths[a.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    padded = tuple(n + glo + ghi for n, (glo, ghi) in zip(a.shape, grow, strict=True))
    crop = tuple(slice(-min(lo, 0), m + min(hi, 0)) for (lo, hi), m in zip(widths, padded, strict=True))
    y = np.pad(a, grow, constant_values=value)[crop]

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("pad", dy, y)
        full = np.zeros(padded, y.dtype)
        full[crop] = dy
        back = tuple(slice(gl, gl + n) for (gl, _), n in zip(grow, a.shape, strict=True))
        return (full[back],)
    return y, vjp


# ------------------------------------------------------------------------ softmax
def softmax(a: Array, axis: int) -> tuple[Array, Callable]:
    """``exp(a) / sum(exp(a), axis)``. Equivalent to ``torch.softmax(a, dim)``."""
    e = np.exp(a - np.max(a, axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("softmax", dy, y)
        return (y * (dy - (dy * y).sum(axis=axis, keepdims=True)),)
    return y, vjp


def log_softmax(a: Array, axis: int) -> tuple[Array, Callable]:
    """``a - logsumexp(a, axis)``. Equivalent to ``torch.log_softmax(a, dim)``."""
    m = np.max(a, axis=axis, keepdims=True)
    s = a - m
    y = s - np.log(np.exp(s).sum(axis=axis, keepdims=True))

    def vjp(dy: Array) -> tuple:
        dy = _check_dy("log_softmax", dy, y)
        return (dy - np.exp(y) * dy.sum(axis=axis, keepdims=True),)
    return y, vjp

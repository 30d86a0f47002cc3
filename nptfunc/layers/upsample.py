"""Resampling of the spatial axes: nearest and (bi)linear interpolation, as torch's ``Upsample``.

Along each spatial axis the output is a fixed linear map of the input, an
``(out, in)`` matrix with one entry per row for ``nearest`` and two for
``linear``, whose indices and weights follow torch's index rules exactly
(:func:`taps`). The forward pass applies the matrices one axis after the other
(``H`` as a batched matmul, then ``W`` as one large matmul), the vjp applies their
transposes in the reverse order: no Python loop over pixels and no scatter. A
matmul would turn an infinite value into NaN for its whole row (``inf * 0``), so
non-finite arrays take the gather path (and ``np.add.at`` in the vjp) instead,
which gives torch's values there.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from nptfunc._types import VJP, Array
from nptfunc._validate import check_bool, check_int, check_real, owner_of
from nptfunc.backend import array_module, matmul
from nptfunc.layers.base import Layer, choice_field

__all__ = ["Upsample", "taps"]

MODES = ("nearest", "linear", "bilinear")
_RANK = {"linear": (1,), "bilinear": (2,), "nearest": (1, 2)}


def taps(mode: str, n_in: int, n_out: int, scale_factor: float | None, align_corners: bool,
         dtype: Any, shortcuts: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per output position along one axis: ``(i0, i1, w0, w1)``, ``y[o] = w0 x[i0] + w1 x[i1]``.

    torch's rules (``aten/src/ATen/native/UpSample.h``):

    * ``nearest``: ``i0 = min(floor(o * s), n_in - 1)`` in float32 arithmetic, with
      ``s = 1 / scale_factor`` when a scale factor is given, else ``n_in / n_out``
      ``w1 = 0``. With ``shortcuts``, torch's special cases: ``o`` itself when
      ``n_out == n_in`` and ``o >> 1`` when ``n_out == 2 n_in`` (these differ from the
      formula for a scale factor near 1 or 2: ``scale_factor=1.3`` on 3 pixels). torch
      2.13 takes them in its 2-d forward and backward and in its 1-d backward, but
      not in its 1-d forward; :class:`Upsample` takes them in 2-d only, so that its 1-d
      vjp stays the adjoint of its forward (torch's 1-d gradient disagrees with its own
      forward in those cases).
    * ``linear``: the identity where ``n_out == n_in`` (as torch, even for a scale
      factor of 1.3 on 2 pixels); else the source position ``s * o`` with
      ``align_corners`` (``s = (n_in - 1) / (n_out - 1)``), else
      ``max(s * (o + 1/2) - 1/2, 0)``; ``i0`` its floor, ``i1 = i0 + 1``
      except at the last input, ``w1`` the fraction and ``w0 = 1 - w1``, all in the
      input's dtype.
    """
    o = np.arange(n_out)
    if mode == "nearest":
        f32 = np.float32
        s = f32(1.0 / scale_factor) if scale_factor else f32(n_in) / f32(n_out)
        i0 = np.minimum(np.floor(o.astype(f32) * s).astype(np.int64), n_in - 1)
        if shortcuts and n_out == n_in:
            i0 = o
        elif shortcuts and n_out == 2 * n_in:
            i0 = o >> 1
        return i0, i0, np.ones(n_out, dtype), np.zeros(n_out, dtype)
    dt = np.dtype(dtype).type
    if n_out == n_in:  # torch copies an axis whose size does not change, whatever the scale factor
        return o, o, np.ones(n_out, dtype), np.zeros(n_out, dtype)
    if align_corners:
        s = dt(n_in - 1) / dt(n_out - 1) if n_out > 1 else dt(0)
        src = o.astype(dt) * s
    else:
        s = dt(1.0 / scale_factor) if scale_factor else dt(n_in) / dt(n_out)
        src = np.maximum(s * (o.astype(dt) + dt(0.5)) - dt(0.5), dt(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    w1 = np.clip(src - i0.astype(dt), dt(0), dt(1)).astype(dt)
    i1 = i0 + (i0 < n_in - 1)
    return i0, i1, (dt(1) - w1).astype(dt), w1


def _matrix(t: tuple[np.ndarray, ...], n_in: int, dtype: Any) -> np.ndarray:
    """The ``(out, in)`` interpolation matrix of one axis' taps."""
    i0, i1, w0, w1 = t
    rows = np.arange(i0.size)
    A = np.zeros((i0.size, n_in), dtype)
    A[rows, i0] = w0
    A[rows, i1] += w1
    return A


def _along(x: Array, A: Array, axis: int) -> Array:
    """``x`` with its ``axis`` (the last or second last) mapped by the matrix ``A`` (``(out, in)``)."""
    xp = array_module(x)
    if axis == x.ndim - 1:
        flat = matmul(xp.reshape(x, (-1, x.shape[-1])), xp.asarray(A.T))
        return xp.reshape(flat, (*x.shape[:-1], A.shape[0]))
    return matmul(xp.asarray(A), x)  # the second last axis, batched over the leading ones


def _gather(x: Array, t: tuple[np.ndarray, ...], axis: int) -> Array:
    """``w0 x[i0] + w1 x[i1]`` along ``axis`` (a single take for nearest): torch's arithmetic."""
    xp = array_module(x)
    i0, i1, w0, w1 = t
    shape = [1] * x.ndim
    shape[axis] = -1
    y = xp.take(x, xp.asarray(i0), axis=axis)
    if not w1.any() and (w0 == 1).all():
        return y
    with np.errstate(invalid="ignore"):  # inf * 0 is NaN, as in torch
        return y * xp.reshape(w0, shape) + xp.take(x, xp.asarray(i1), axis=axis) * xp.reshape(w1, shape)


def _scatter(dy: Array, t: tuple[np.ndarray, ...], axis: int, n_in: int) -> Array:
    """The vjp of :func:`_gather` (``np.add.at``: only for non-finite cotangents)."""
    xp = array_module(dy)
    i0, i1, w0, w1 = t
    d = xp.moveaxis(dy, axis, 0)
    shape = (-1,) + (1,) * (dy.ndim - 1)
    dx = xp.zeros((n_in, *d.shape[1:]), dtype=dy.dtype)
    with np.errstate(invalid="ignore"):  # inf * 0 and inf - inf are NaN, as in torch
        xp.add.at(dx, i0, d * xp.reshape(w0, shape))
        if w1.any():
            xp.add.at(dx, i1, d * xp.reshape(w1, shape))
    return xp.moveaxis(dx, 0, axis)


# ------------------------------------------------------------------ arguments
def _size(value: Any, instance: Any, field: attrs.Attribute) -> int | tuple[int, ...] | None:
    """``size``: ``None``, an int >= 1, or a tuple (or list) of them."""
    owner = owner_of(instance)
    if isinstance(value, (tuple, list)):
        return tuple(check_int(owner, "size", v) for v in value)
    return check_int(owner, "size", value, allow_none=True)


def _scale_factor(value: Any, instance: Any, field: attrs.Attribute) -> float | tuple[float, ...] | None:
    """``scale_factor``: ``None``, a real > 0, or a tuple (or list) of them."""
    owner = owner_of(instance)
    if isinstance(value, (tuple, list)):
        return tuple(check_real(owner, "scale_factor", v, low=0.0, low_open=True) for v in value)
    return check_real(owner, "scale_factor", value, low=0.0, low_open=True, allow_none=True)


def _optional_bool(value: Any, instance: Any, field: attrs.Attribute) -> bool | None:
    return None if value is None else check_bool(owner_of(instance), field.name, value)


def _converter(fn: Any) -> Any:
    return attrs.Converter(fn, takes_self=True, takes_field=True)


@attrs.frozen
class Upsample(Layer):
    """Upsampling of 1-d or 2-d signals (or downsampling). Equivalent to ``torch.nn.Upsample``.

    Give exactly one of ``size`` and ``scale_factor``. The output size is ``size``,
    or ``floor(input_size * scale_factor)`` per axis. Index rules, including the
    float32 arithmetic of ``nearest`` and the role of a given ``scale_factor`` in the
    source positions, are torch's (see :func:`taps`).

    Args:
        size: the output's spatial size: an int (every axis) or a tuple, one per axis.
        scale_factor: the multiplier of the spatial size: a real or a tuple, one per axis.
        mode: ``'nearest'`` (1-d or 2-d), ``'linear'`` (1-d) or ``'bilinear'`` (2-d).
        align_corners: for ``linear``/``bilinear`` only: ``True`` maps the corner
            pixels' centres onto each other; ``False`` (the default, ``None``) maps
            the corners of the pixel grids.
        recompute_scale_factor: ``True`` computes the source positions from the
            sizes rather than from ``scale_factor``, as torch.

    Shapes:
        x: ``(N, C, L)`` (``nearest``, ``linear``) or ``(N, C, H, W)`` (``nearest``,
        ``bilinear``) -> ``(N, C, L_out)`` or ``(N, C, H_out, W_out)``.
    """

    size: int | tuple[int, ...] | None = attrs.field(default=None, converter=_converter(_size))
    scale_factor: float | tuple[float, ...] | None = attrs.field(default=None,
                                                                 converter=_converter(_scale_factor))
    mode: str = choice_field(MODES, default="nearest")
    align_corners: bool | None = attrs.field(default=None, converter=_converter(_optional_bool))
    recompute_scale_factor: bool | None = attrs.field(default=None, converter=_converter(_optional_bool))

    def __attrs_post_init__(self) -> None:
        if (self.size is None) == (self.scale_factor is None):
            what = "both were given" if self.size is not None else "neither was given"
            msg = f"{self.name}: expected exactly one of size and scale_factor, {what}"
            raise ValueError(msg)
        if self.mode == "nearest" and self.align_corners is not None:
            msg = (f"{self.name}: align_corners can only be set with mode 'linear' or 'bilinear' (as torch), "
                   f"got mode 'nearest'")
            raise ValueError(msg)
        if self.recompute_scale_factor and self.size is not None:
            msg = f"{self.name}: recompute_scale_factor=True needs scale_factor, not size (as torch)"
            raise ValueError(msg)

    # ------------------------------------------------------------------ shapes
    def _per_axis(self, what: str, value: Any, d: int, shape: tuple[int, ...]) -> tuple[Any, ...]:
        if not isinstance(value, tuple):
            return (value,) * d
        if len(value) != d:
            msg = (f"{self.name}: expected {what} to have {d} entries for input of shape {shape} "
                   f"(one per spatial axis), got {value!r}")
            raise ValueError(msg)
        return value

    def sizes(self, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[float | None, ...]]:
        """The output's spatial size and the scale factors the index rules use, for ``input_shape``.

        The family's shape helper (:meth:`output_shape` and ``apply`` use it).
        """
        shape = tuple(input_shape)
        ranks = _RANK[self.mode]
        if len(shape) - 2 not in ranks:
            pattern = " or ".join({1: "(N, C, L)", 2: "(N, C, H, W)"}[r] for r in ranks)
            msg = f"{self.name}: expected input of shape {pattern}, got {shape}"
            raise ValueError(msg)
        d = len(shape) - 2
        if self.size is not None:
            out = self._per_axis("size", self.size, d, shape)
            scales: tuple[float | None, ...] = (None,) * d
        else:
            factors = self._per_axis("scale_factor", self.scale_factor, d, shape)
            out = tuple(math.floor(n * f) for n, f in zip(shape[2:], factors, strict=True))
            scales = (None,) * d if self.recompute_scale_factor else factors
        if any(n < 1 for n in shape[2:]) or any(n < 1 for n in out):
            msg = (f"{self.name}: expected input and output sizes greater than 0, got input of shape "
                   f"{shape} and output size {out}")
            raise ValueError(msg)
        return out, scales

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, C, *size) -> (N, C, *out)``."""
        return (*tuple(input_shape)[:2], *self.sizes(input_shape)[0])

    # ------------------------------------------------------------------- apply
    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        out, scales = self.sizes(x.shape)
        d = len(out)
        axes = tuple(range(2, 2 + d))
        align = bool(self.align_corners)
        all_taps = [taps(self.mode, n, m, s, align, x.dtype, shortcuts=d == 2)
                    for n, m, s in zip(x.shape[2:], out, scales, strict=True)]
        mats = [_matrix(t, n, x.dtype) for t, n in zip(all_taps, x.shape[2:], strict=True)]
        if self.mode != "nearest" and x.size and bool(xp.isfinite(x).all()):
            y = x
            for ax, A in zip(axes, mats, strict=True):  # H first, on the smaller array
                y = _along(y, A, ax)
        else:  # nearest: one take per axis; non-finite input: torch's arithmetic
            y = x
            for ax, t in zip(axes, all_taps, strict=True):
                y = _gather(y, t, ax)
        y = xp.ascontiguousarray(y)

        def vjp(dy: Array) -> tuple[None, Array]:
            if dy.size and bool(xp.isfinite(dy).all()):
                dx = dy
                for ax, A in zip(reversed(axes), reversed(mats), strict=True):
                    dx = _along(dx, A.T, ax)
            else:
                dx = dy
                for ax, t, n in zip(reversed(axes), reversed(all_taps), reversed(x.shape[2:]), strict=True):
                    dx = _scatter(dx, t, ax, n)
            return None, xp.ascontiguousarray(dx).astype(x.dtype, copy=False)

        return y, vjp

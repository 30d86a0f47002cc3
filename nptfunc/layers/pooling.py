"""Pooling: max and average over sliding windows, and adaptive average pooling.

Max and average pooling share one N-d implementation of the geometry (the windows
helper) and work on strided slices of the (padded) input, one per kernel offset:
``prod(kernel_size)`` vectorised operations, no loop over pixels, no argmax array
in the forward pass.

The commonest max pooling, windows two wide that tile the input (``MaxPool2d(2)``),
runs in cache-sized blocks of window rows instead, its pairs of booleans read as
one ``uint16`` (:func:`_max_pairs`, :func:`_max_pairs_vjp`).

MaxPool's gradient follows torch's CPU kernel exactly: in each window it goes to
the FIRST maximal element in row-major scan order; if the window holds a NaN, the
output is NaN and the gradient goes to the LAST NaN (torch's scan replaces its
running maximum on ``value > max or isnan(value)``); padding never receives it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import attrs
import numpy as np

from nptfunc._types import VJP, Array
from nptfunc._validate import check_int, check_ntuple, owner_of
from nptfunc.backend import array_module, parallel_for, scratch
from nptfunc.layers._windows import Windows, fold, input_pattern, offset_index, pad, unpad
from nptfunc.layers.base import Layer, bool_field, ntuple_field

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "MaxPool1d",
    "MaxPool2d",
    "adaptive_pool_matrix",
    "avg_pool",
    "max_pool",
]

def _check_rank(name: str, shape: tuple[int, ...], d: int) -> None:
    if len(shape) not in (d + 1, d + 2):
        msg = f"{name}: expected input of shape {input_pattern('C', d)}, got {shape}"
        raise ValueError(msg)


def _spatial(cls: type) -> int:
    return cls.num_spatial


def _stride(value: Any, instance: Any, field: attrs.Attribute) -> tuple[int, ...]:
    """``stride``: ``None`` means ``kernel_size``, as torch."""
    if value is None:
        return instance.kernel_size
    return check_ntuple(owner_of(instance), "stride", value, instance.num_spatial)


@attrs.frozen
class _PoolNd(Layer):
    """Shared hyperparameters and shape helper of max and average pooling.

    The subclasses add ``dilation, ceil_mode`` (max) or ``ceil_mode, count_include_pad``
    (average), so that positional arguments follow torch's signatures.
    """

    num_spatial: ClassVar[int] = 2
    has_dilation: ClassVar[bool] = True

    kernel_size: tuple[int, ...] = ntuple_field(_spatial)
    stride: tuple[int, ...] = attrs.field(default=None, converter=attrs.Converter(
        _stride, takes_self=True, takes_field=True))
    padding: tuple[int, ...] = ntuple_field(_spatial, minimum=0, default=0)

    def __attrs_post_init__(self) -> None:
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size, strict=True)):
            msg = (f"{type(self).__name__}(kernel_size={self.kernel_size!r}): padding must be at most half "
                   f"the kernel size (as torch), got padding={self.padding!r}")
            raise ValueError(msg)

    def windows(self, input_shape: tuple[int, ...]) -> Windows:
        """The window geometry for an input of ``input_shape``, or a ``ValueError``.

        The family's shape helper: :meth:`output_shape`, ``apply`` and the tests use it.
        """
        d, shape = self.num_spatial, tuple(input_shape)
        _check_rank(self.name, shape, d)
        dilation = self.dilation if self.has_dilation else (1,) * d
        win = Windows.create(shape[-d:], self.kernel_size, self.stride, dilation, self.padding,
                             self.padding, ceil_mode=self.ceil_mode)
        if any(o < 1 for o in win.out):
            msg = (f"{self.name}: input of spatial size {shape[-d:]} is too small for the (padded, "
                   f"dilated) kernel: output size would be {win.out}; got input of shape {shape}")
            raise ValueError(msg)
        return win

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, C, *size) -> (N, C, *out)``; the batch axis is optional."""
        win = self.windows(input_shape)
        return (*tuple(input_shape)[:-self.num_spatial], *win.out)

    def _pool(self, x: Array, win: Windows) -> tuple[Array, Any]:
        """The family's core: ``(y, vjp(dy) -> dx)`` (max or average pooling)."""
        raise NotImplementedError  # pragma: no cover

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        y, core_vjp = self._pool(x, self.windows(x.shape))
        return y, lambda dy: (None, core_vjp(dy))


# --------------------------------------------------------------------------- max
def max_pool(x: Array, win: Windows) -> tuple[Array, Any]:
    """Max pooling over the last ``win.ndim`` axes of ``x``; no validation.

    Returns:
        ``y`` and ``vjp(dy) -> dx``, with torch's choice of element on ties and NaN.
    """
    xp = array_module(x)
    d = win.ndim
    axes = tuple(range(x.ndim - d, x.ndim))
    xbuf = pad(x, win, axes, value=-math.inf)
    offsets = list(win.offsets())

    def view(buf: Array, offset: Sequence[int]) -> Array:
        return buf[offset_index(win, offset, axes, buf.ndim)]

    first = view(xbuf, offsets[0])
    work = len(offsets) * math.prod(first.shape[1:])
    pairs = _pairs_apply(x, win)
    if pairs:
        y = _max_pairs(x, win)
    else:
        y = xp.empty(first.shape, dtype=x.dtype)

        def forward(lo: int, hi: int) -> None:  # batch items lo:hi (chunks run on several threads)
            yc, bc = y[lo:hi], xbuf[lo:hi]
            yc[...] = first[lo:hi]
            for offset in offsets[1:]:
                xp.maximum(yc, view(bc, offset), out=yc)  # NaN propagates, as in torch

        parallel_for(y.shape[0], forward, work)

    def vjp(dy: Array) -> Array:
        general = False
        if not bool(xp.isfinite(y).all()):  # NaN, or -inf that the padding may tie with
            general = bool(xp.isnan(y).any()) or (win.needs_padding and bool(xp.isneginf(y).any()))
        if general:
            chunks = _max_chunks_general(xbuf, y, dy, win, offsets, view)
        else:
            finite = bool(xp.isfinite(dy).all())
            if pairs and finite:
                return _max_pairs_vjp(x, y, dy, win)
            if win.tiles and not win.needs_padding:  # every input element in one window: write dx directly
                dx = xp.empty(x.shape, dtype=dy.dtype)
                hits, frees = scratch.empty(xp, y.shape, bool), scratch.empty(xp, y.shape, bool)

                def backward(lo: int, hi: int) -> None:
                    dyc, dxc = dy[lo:hi], dx[lo:hi]
                    for offset, hit in _first_maximum(xbuf[lo:hi], y[lo:hi], offsets, view,
                                                      hits[lo:hi], frees[lo:hi]):
                        _select(dyc, hit, finite, out=view(dxc, offset))

                parallel_for(y.shape[0], backward, work)
                scratch.release(hits, frees)
                return dx
            hits = _first_maximum(xbuf, y, offsets, view)
            chunks = ((offset, _select(dy, hit, finite)) for offset, hit in hits)
        dbuf = fold(chunks, win, axes, xbuf.shape, dy.dtype, xp)
        return unpad(dbuf, win, axes)

    return y, vjp


_PAIR_BLOCK_BYTES = 1 << 20
"""Bytes of input a block of :func:`_max_pairs` and :func:`_max_pairs_vjp` works on at a time: its
half a dozen passes then run in the cache (AMD EPYC, LeNet's first ``MaxPool2d(2)`` on
``(64, 32, 28, 28)`` float32, against the strided passes per kernel offset: one thread, forward
4.1 -> 2.7 ms and backward 10.5 -> 7.2 ms; two threads, 3.9 -> 2.9 and 9.5 -> 7.8 ms)."""


_TOWARD_SECOND = np.left_shift if sys.byteorder == "little" else np.right_shift
"""Moves the first byte of a ``uint16`` onto its second."""


def _pairs_apply(x: Array, win: Windows) -> bool:
    """Whether :func:`_max_pairs` applies.

    That is: a C-contiguous NumPy float array, one or two spatial axes, windows that
    tile the input without padding and are two wide along the last axis.
    """
    return (isinstance(x, np.ndarray) and x.flags.c_contiguous and x.dtype.kind == "f" and win.ndim <= 2
            and win.kernel[-1] == 2 and win.tiles and not win.needs_padding and x.size > 0)


def _pair_rows(x: Array, win: Windows) -> tuple[Array, int, int, int]:
    """``x`` as ``(R, kh, W)``: each row of windows (``kh = 1`` for one spatial axis); and ``R, kh, W``."""
    kh = win.kernel[0] if win.ndim == 2 else 1
    W = win.size[-1]
    R = x.size // (kh * W)
    return x.reshape(R, kh, W), R, kh, W


def _block_rows(R: int, kh: int, W: int, itemsize: int) -> int:
    return max(1, min(R, _PAIR_BLOCK_BYTES // (kh * W * itemsize)))


def _repeat_pairs(a: Array, out: Array) -> Array:
    """``out[:, 2j] = out[:, 2j + 1] = a[:, j]``: ``a`` of shape ``(k, n)`` into ``out`` ``(k, 2n)``.

    For 4-byte floats each element's bits go twice into one 8-byte integer (two
    contiguous passes instead of two strided ones).
    """
    if a.itemsize == 4:
        u = out.view(np.uint64)
        np.copyto(u, a.view(np.uint32), casting="unsafe")
        u *= np.uint64(0x1_0000_0001)
    else:
        pairs = out.reshape(a.shape[0], a.shape[1], 2)
        pairs[..., 0] = a
        pairs[..., 1] = a
    return out


def _max_pairs(x: Array, win: Windows) -> Array:
    """Max pooling where :func:`_pairs_apply`, in blocks of window rows.

    Per block: the maximum over a window's ``kh`` rows (contiguous passes), then over
    adjacent pairs (one strided pass).
    """
    xr, R, kh, W = _pair_rows(x, win)
    y = np.empty((*x.shape[:-win.ndim], *win.out), dtype=x.dtype)
    yr = y.reshape(R, W // 2)
    rows = _block_rows(R, kh, W, x.itemsize)

    maxima = scratch.empty(np, (R, W), x.dtype)  # each chunk uses its first block's rows

    def chunk(lo: int, hi: int) -> None:
        m = maxima[lo:lo + min(rows, hi - lo)]
        for s in range(lo, hi, rows):
            e = min(hi, s + rows)
            mb = m[:e - s]
            if kh == 1:
                mb[...] = xr[s:e, 0]
            else:
                np.maximum(xr[s:e, 0], xr[s:e, 1], out=mb)  # NaN propagates, as in torch
            for i in range(2, kh):
                np.maximum(mb, xr[s:e, i], out=mb)
            np.maximum(mb[:, 0::2], mb[:, 1::2], out=yr[s:e])

    parallel_for(R, chunk, kh * W)
    scratch.release(maxima)
    return y


def _max_pairs_vjp(x: Array, y: Array, dy: Array, win: Windows) -> Array:
    """The vjp of :func:`_max_pairs` for finite ``dy`` and ``y`` without NaN, in blocks of window rows.

    Per block: ``eq = x == y`` (``y`` repeated along pairs); each pair of booleans
    read as one ``uint16`` keeps only its first hit (``c & ~(c << 8)``); a row's hits
    are dropped in the windows an earlier row has hit; ``dx = dy * eq``, ``dy``
    repeated along pairs. That is torch's first maximum in row-major order.
    """
    xr, R, kh, W = _pair_rows(x, win)
    Wo = W // 2
    yr, dyr = y.reshape(R, Wo), dy.reshape(R, Wo)
    dx = np.empty(x.shape, dtype=dy.dtype)
    dxr = dx.reshape(R, kh, W)
    rows = _block_rows(R, kh, W, x.itemsize)

    # taken here, not on the workers (see ops._relu_grad); each chunk uses its first block's rows
    reps, reps_dy = scratch.empty(np, (R, W), x.dtype), scratch.empty(np, (R, W), dy.dtype)
    eqs, frees = scratch.empty(np, (R, kh, W), bool), scratch.empty(np, (R, Wo), bool)
    tmps = scratch.empty(np, (R, kh, Wo), np.uint16)

    def chunk(lo: int, hi: int) -> None:
        for s in range(lo, hi, rows):
            e = min(hi, s + rows)
            k = e - s
            rb, eb, tb, fb, rep_dy = (a[lo:lo + k] for a in (reps, eqs, tmps, frees, reps_dy))
            np.equal(xr[s:e], _repeat_pairs(yr[s:e], rb)[:, None, :], out=eb)
            codes = eb.view(np.uint16)  # (k, kh, Wo): a pair's two booleans, the first in the low byte
            _TOWARD_SECOND(codes, 8, out=tb)  # (on a big-endian machine in the high byte)
            np.invert(tb, out=tb)
            np.bitwise_and(codes, tb, out=codes)
            for i in range(1, kh):
                if i == 1:
                    np.equal(codes[:, 0], 0, out=fb)
                np.multiply(codes[:, i], fb, out=codes[:, i])
                if i < kh - 1:
                    np.logical_and(fb, codes[:, i] == 0, out=fb)
            np.multiply(_repeat_pairs(dyr[s:e], rep_dy)[:, None, :], eb, out=dxr[s:e])

    parallel_for(R, chunk, kh * W)
    scratch.release(reps, reps_dy, eqs, frees, tmps)
    return dx


def _select(dy: Array, mask: Array, finite: bool, out: Array | None = None) -> Array:
    """``dy`` where ``mask``, else 0: a multiply when ``dy`` is finite (``np.where`` is 5x slower)."""
    xp = array_module(dy)
    if finite:
        return xp.multiply(dy, mask, out=out)
    chosen = xp.where(mask, dy, xp.zeros((), dtype=dy.dtype))
    if out is None:
        return chosen
    out[...] = chosen
    return out


def _first_maximum(xbuf: Array, y: Array, offsets: list[tuple[int, ...]], view: Any, hit: Array | None = None,
                   free: Array | None = None) -> Iterator[tuple[tuple[int, ...], Array]]:
    """Per offset, where this offset holds its window's first maximum (a reused boolean buffer).

    ``hit`` and ``free`` (booleans of ``y``'s shape) may be given, so that a chunk on a
    worker thread allocates nothing (a worker's malloc arena is trimmed back to the OS).
    """
    xp = array_module(y)
    hit = xp.empty(y.shape, dtype=bool) if hit is None else hit
    started = False  # free: the windows whose maximum has not been found yet
    for t, offset in enumerate(offsets):
        xp.equal(view(xbuf, offset), y, out=hit)
        if started:
            hit &= free
        if t < len(offsets) - 1:
            if not started:
                free = xp.logical_not(hit, out=free)
                started = True
            else:
                xp.logical_xor(free, hit, out=free)
        yield offset, hit


def _max_chunks_general(xbuf: Array, y: Array, dy: Array, win: Windows, offsets: list[tuple[int, ...]],
                        view: Any) -> Iterator[tuple[tuple[int, ...], Array]]:
    """Torch's scan, vectorised over windows: for inputs with NaN or all--inf windows.

    The running maximum starts at -inf with the window's first in-bounds element as
    its index, and moves on ``value > max or isnan(value)``; padding is skipped.
    """
    xp = array_module(dy)
    valid_buf = xp.zeros(win.buffer_size, dtype=bool)
    valid_buf[win.interior()] = True
    best = xp.full(y.shape, -math.inf, dtype=y.dtype)
    chosen = xp.full(y.shape, -1, dtype=np.int64)
    first = xp.full(y.shape, -1, dtype=np.int64)
    for t, offset in enumerate(offsets):
        v = view(xbuf, offset)
        valid = valid_buf[win.offset_slices(offset)]
        upd = ((v > best) | xp.isnan(v)) & valid
        best = xp.where(upd, v, best)
        chosen = xp.where(upd, t, chosen)
        first = xp.where((first < 0) & valid, t, first)
    chosen = xp.where(chosen < 0, first, chosen)
    finite = bool(xp.isfinite(dy).all())
    for t, offset in enumerate(offsets):
        yield offset, _select(dy, chosen == t, finite)


@attrs.frozen
class _MaxPoolNd(_PoolNd):
    """See :class:`MaxPool2d`."""

    dilation: tuple[int, ...] = ntuple_field(_spatial, default=1)
    ceil_mode: bool = bool_field(default=False)

    def _pool(self, x: Array, win: Windows) -> tuple[Array, Any]:
        return max_pool(x, win)


@attrs.frozen
class MaxPool1d(_MaxPoolNd):
    """1-d max pooling over ``(N, C, L)`` or ``(C, L)``. Equivalent to ``torch.nn.MaxPool1d``.

    Arguments as :class:`MaxPool2d`, with one spatial axis.
    """

    num_spatial: ClassVar[int] = 1


@attrs.frozen
class MaxPool2d(_MaxPoolNd):
    """2-d max pooling. Equivalent to ``torch.nn.MaxPool2d`` (without ``return_indices``).

    Args:
        kernel_size: ``k`` or ``(kH, kW)``.
        stride: ``s`` or ``(sH, sW)``; defaults to ``kernel_size``, as in torch.
        padding: implicit ``-inf`` padding on both sides, at most ``kernel_size // 2``.
        dilation: spacing of the window's elements.
        ceil_mode: round the output size up (a last partial window is kept if it starts
            inside the input or the left padding).

    Shapes:
        x: ``(N, C, H, W)`` or ``(C, H, W)`` -> y: ``(N, C, H_out, W_out)`` (or unbatched), with
        ``H_out = floor_or_ceil((H + 2 pH - dH (kH - 1) - 1) / sH) + 1``.

    Ties: the gradient goes to the first maximal element of the window in row-major
    order (torch's CPU rule); a NaN in a window makes the output NaN and the last
    NaN gets the gradient.
    """

    num_spatial: ClassVar[int] = 2


# ----------------------------------------------------------------------- average
def _avg_divisor(win: Windows, count_include_pad: bool, dtype: Any, xp: Any) -> Array:
    """Per output position the divisor of its sum, shape ``win.out`` (torch's rule).

    With ``count_include_pad`` a window counts the padding it covers but not the
    ``ceil_mode`` overhang past the right padding; without it, only input elements.
    Both are separable products of per-axis counts.
    """
    div = np.ones((), dtype=np.float64)
    for n, k, s, lo, hi, o in zip(win.size, win.kernel, win.stride, win.pad_lo, win.pad_hi, win.out,
                                  strict=True):
        start = np.arange(o) * s - lo
        end = np.minimum(start + k, n + hi)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, n)
        div = np.multiply.outer(div, (end - start).astype(np.float64))
    return xp.asarray(div.astype(dtype))


def avg_pool(x: Array, win: Windows, count_include_pad: bool = True) -> tuple[Array, Any]:
    """Average pooling over the last ``win.ndim`` axes of ``x``; no validation.

    Returns:
        ``y`` and ``vjp(dy) -> dx``.
    """
    xp = array_module(x)
    axes = tuple(range(x.ndim - win.ndim, x.ndim))
    xbuf = pad(x, win, axes)
    offsets = list(win.offsets())
    y = xbuf[offset_index(win, offsets[0], axes, xbuf.ndim)].copy()
    for offset in offsets[1:]:
        y += xbuf[offset_index(win, offset, axes, xbuf.ndim)]
    divisor = _avg_divisor(win, count_include_pad, x.dtype, xp)
    y /= divisor

    def vjp(dy: Array) -> Array:
        g = dy / divisor
        dbuf = fold(((offset, g) for offset in offsets), win, axes, xbuf.shape, g.dtype, xp)
        return unpad(dbuf, win, axes)

    return y, vjp


@attrs.frozen
class _AvgPoolNd(_PoolNd):
    """See :class:`AvgPool2d`."""

    has_dilation: ClassVar[bool] = False

    ceil_mode: bool = bool_field(default=False)
    count_include_pad: bool = bool_field(default=True)

    def _pool(self, x: Array, win: Windows) -> tuple[Array, Any]:
        return avg_pool(x, win, self.count_include_pad)


@attrs.frozen
class AvgPool1d(_AvgPoolNd):
    """1-d average pooling over ``(N, C, L)`` or ``(C, L)``. Equivalent to ``torch.nn.AvgPool1d``.

    Arguments as :class:`AvgPool2d`, with one spatial axis.
    """

    num_spatial: ClassVar[int] = 1


@attrs.frozen
class AvgPool2d(_AvgPoolNd):
    """2-d average pooling. Equivalent to ``torch.nn.AvgPool2d`` (without ``divisor_override``).

    Args:
        kernel_size: ``k`` or ``(kH, kW)``.
        stride: ``s`` or ``(sH, sW)``; defaults to ``kernel_size``, as in torch.
        padding: implicit zero padding on both sides, at most ``kernel_size // 2``.
        ceil_mode: round the output size up, as :class:`MaxPool2d`.
        count_include_pad: divide by the window size including the zero padding it
            covers (but not the ``ceil_mode`` overhang past it), else by the number of
            input elements in the window.

    Shapes:
        x: ``(N, C, H, W)`` or ``(C, H, W)`` -> y: ``(N, C, H_out, W_out)`` (or unbatched), with
        ``H_out = floor_or_ceil((H + 2 pH - kH) / sH) + 1``.
    """

    num_spatial: ClassVar[int] = 2


# ---------------------------------------------------------------------- adaptive
def adaptive_pool_matrix(size: int, out: int, dtype: Any) -> np.ndarray:
    """``A`` of shape ``(out, size)``: row ``i`` averages torch's adaptive window ``i``.

    Window ``i`` is ``[floor(i * size / out), ceil((i + 1) * size / out))``.
    """
    i = np.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    pos = np.arange(size)
    inside = (pos >= start[:, None]) & (pos < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _along(x: Array, A: Array, axis: int) -> Array:
    """Contract ``x``'s ``axis`` with ``A``'s second axis: ``x.shape[axis] -> A.shape[0]``."""
    xp = array_module(x)
    return xp.moveaxis(xp.tensordot(x, A, axes=([axis], [1])), -1, axis)


def _output_size(value: Any, instance: Any, field: attrs.Attribute) -> tuple[int | None, ...]:
    """``output_size``: an int, ``None`` or a tuple of them, one per spatial axis."""
    d, owner = instance.num_spatial, owner_of(instance)
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * d
    if len(items) != d:
        msg = f"{owner}: expected output_size to be an int, None or a tuple of {d}, got {value!r}"
        raise ValueError(msg)
    return tuple(check_int(owner, "output_size", v, allow_none=True) for v in items)


@attrs.frozen
class _AdaptiveAvgPoolNd(Layer):
    """See :class:`AdaptiveAvgPool2d`."""

    num_spatial: ClassVar[int] = 2

    output_size: tuple[int | None, ...] = attrs.field(converter=attrs.Converter(
        _output_size, takes_self=True, takes_field=True))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, C, *size) -> (N, C, *output_size)`` (``None`` keeps that axis' size)."""
        d, shape = self.num_spatial, tuple(input_shape)
        _check_rank(self.name, shape, d)
        if any(n < 1 for n in shape[-d:]):
            msg = f"{self.name}: expected a non-empty spatial size, got input of shape {shape}"
            raise ValueError(msg)
        out = tuple(n if o is None else o for n, o in zip(shape[-d:], self.output_size, strict=True))
        return (*shape[:-d], *out)

    def _apply(self, params: None, x: Array) -> tuple[Array, VJP]:
        xp = array_module(x)
        d = self.num_spatial
        y_shape = self.output_shape(x.shape)
        axes = range(x.ndim - d, x.ndim)
        mats = [xp.asarray(adaptive_pool_matrix(n, o, x.dtype))
                for n, o in zip(x.shape[-d:], y_shape[-d:], strict=True)]
        y = x
        for a, A in zip(axes, mats, strict=True):
            y = _along(y, A, a)
        y = xp.ascontiguousarray(y)

        def vjp(dy: Array) -> tuple[None, Array]:
            dx = dy
            for a, A in zip(axes, mats, strict=True):
                dx = _along(dx, A.T, a)
            return None, xp.ascontiguousarray(dx)

        return y, vjp


@attrs.frozen
class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Average pooling to a fixed output length. Equivalent to ``torch.nn.AdaptiveAvgPool1d``.

    Shapes:
        x: ``(N, C, L)`` or ``(C, L)`` -> y: ``(N, C, output_size)`` (or unbatched).
    """

    num_spatial: ClassVar[int] = 1


@attrs.frozen
class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Average pooling to a fixed output size. Equivalent to ``torch.nn.AdaptiveAvgPool2d``.

    Any output size works (torch's windows ``[floor(i*H/H_out), ceil((i+1)*H/H_out))``,
    which overlap when ``H_out`` does not divide ``H``); ``1`` is global average pooling.
    Computed as one small averaging matrix per axis, applied by ``tensordot``.

    Args:
        output_size: ``s``, ``(H_out, W_out)``; ``None`` keeps the input's size on that axis.

    Shapes:
        x: ``(N, C, H, W)`` or ``(C, H, W)`` -> y: ``(N, C, H_out, W_out)`` (or unbatched).
    """

    num_spatial: ClassVar[int] = 2

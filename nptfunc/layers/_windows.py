"""Sliding windows over spatial axes: the helper shared by convolution and pooling.

Everything that convolution and pooling have in common lives here, once:

* the output-size arithmetic (torch's formulas, ``ceil_mode`` included) and the
  description of the expected input (:func:`input_pattern`);
* :class:`Windows`, the geometry of one layer on one input size: per spatial axis
  the kernel, stride, dilation, padding and output size, and the padded buffer
  that holds every window;
* padding into that buffer (:func:`pad`) and its vjp (:func:`unpad`), for a
  constant value or the ``reflect``/``replicate``/``circular`` modes;
* the im2col view (:func:`window_view`, a strided view, no copy) and its adjoint
  col2im (:func:`fold`), which adds one array per kernel offset into a strided
  slice of a fresh buffer: ``prod(kernel_size)`` vectorised adds, no loop over
  pixels and no ``np.add.at``.

Layouts are the caller's: every function takes the positions of the spatial axes,
so convolution works channels-last and pooling channels-first on the same code.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from nptfunc._types import Array
from nptfunc._validate import check_ntuple
from nptfunc.backend import array_module, as_strided

__all__ = [
    "PADDING_MODES",
    "Windows",
    "fold",
    "input_pattern",
    "offset_index",
    "pad",
    "padding_pairs",
    "unpad",
    "window_output_size",
    "window_view",
]

_SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def input_pattern(channels: int | str, d: int) -> str:
    """How an error shows the expected input: ``(N, C, H, W) or (C, H, W)`` for ``d = 2``."""
    sp = ", ".join(_SPATIAL_NAMES[d])
    return f"(N, {channels}, {sp}) or ({channels}, {sp})"


PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
"""torch's ``padding_mode`` names and the matching ``np.pad`` modes."""


def window_output_size(size: int, kernel: int, stride: int, dilation: int, pad_lo: int, pad_hi: int,
                       ceil_mode: bool = False) -> int:
    """The number of windows along one axis, torch's formula (may be ``<= 0`` for a bad config).

    ``floor((size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) / stride) + 1``, with
    ``ceil`` instead of ``floor`` under ``ceil_mode``, where a last window that would
    start in the right padding is dropped (as torch's pooling does).
    """
    span = size + pad_lo + pad_hi - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad_lo:
        out -= 1
    return out


@attrs.frozen
class Windows:
    """The geometry of sliding windows over the ``d`` spatial axes of one input size.

    Window ``o`` along an axis covers the padded positions
    ``o * stride + i * dilation`` for ``i < kernel``; padded position ``p`` is input
    position ``p - pad_lo``. Every attribute is a tuple with one entry per axis.

    Attributes:
        size: the input's spatial size.
        kernel: window size.
        stride: step between windows.
        dilation: step inside a window.
        pad_lo: padding before the input.
        pad_hi: padding after the input, as configured.
        out: number of windows (the output's spatial size).
    """

    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_lo: tuple[int, ...]
    pad_hi: tuple[int, ...]
    out: tuple[int, ...]

    @classmethod
    def create(cls, size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
               dilation: Sequence[int], pad_lo: Sequence[int], pad_hi: Sequence[int], *,
               ceil_mode: bool = False) -> Windows:
        """Compute the output size with :func:`window_output_size` for every axis."""
        out = tuple(window_output_size(*a, ceil_mode=ceil_mode)
                    for a in zip(size, kernel, stride, dilation, pad_lo, pad_hi, strict=True))
        return cls(tuple(size), tuple(kernel), tuple(stride), tuple(dilation), tuple(pad_lo),
                   tuple(pad_hi), out)

    @property
    def ndim(self) -> int:
        """The number of spatial axes."""
        return len(self.size)

    @property
    def padded_size(self) -> tuple[int, ...]:
        """As configured: ``pad_lo + size + pad_hi`` per axis."""
        return tuple(lo + n + hi for lo, n, hi in zip(self.pad_lo, self.size, self.pad_hi, strict=True))

    @property
    def buffer_size(self) -> tuple[int, ...]:
        """The padded buffer: the whole input after ``pad_lo``, and every window's reach.

        Less than :attr:`padded_size` where trailing padding is never read; more
        under ``ceil_mode``, where the last window may overhang the right padding.
        """
        return tuple(max(lo + n, (o - 1) * s + (k - 1) * d + 1)
                     for lo, n, o, s, k, d in zip(self.pad_lo, self.size, self.out, self.stride,
                                                  self.kernel, self.dilation, strict=True))

    @property
    def needs_padding(self) -> bool:
        """Whether the buffer differs from the input (some window reaches outside it)."""
        return any(lo > 0 for lo in self.pad_lo) or self.buffer_size != self.size

    @property
    def disjoint(self) -> bool:
        """Whether no two windows share an input position (each element feeds one output)."""
        return all(s >= (k - 1) * d + 1 for s, k, d in zip(self.stride, self.kernel, self.dilation,
                                                          strict=True))

    @property
    def tiles(self) -> bool:
        """Whether the windows cover the buffer exactly once (e.g. stride = kernel, no dilation gaps)."""
        return all(s == k and (k == 1 or d == 1) and o * s == b
                   for s, k, d, o, b in zip(self.stride, self.kernel, self.dilation, self.out,
                                            self.buffer_size, strict=True))

    def offsets(self) -> Iterator[tuple[int, ...]]:
        """The kernel offsets in row-major order (torch's scan order inside a window)."""
        return itertools.product(*(range(k) for k in self.kernel))

    def offset_slices(self, offset: Sequence[int]) -> tuple[slice, ...]:
        """Per axis, the buffer positions that kernel ``offset`` reads in every window."""
        return tuple(slice(i * d, i * d + (o - 1) * s + 1, s)
                     for i, d, o, s in zip(offset, self.dilation, self.out, self.stride, strict=True))

    def interior(self) -> tuple[slice, ...]:
        """Per axis, where the input sits inside the buffer."""
        return tuple(slice(lo, lo + n) for lo, n in zip(self.pad_lo, self.size, strict=True))


def _full_index(slices: Sequence[slice], axes: Sequence[int], ndim: int) -> tuple[slice, ...]:
    index = [slice(None)] * ndim
    for a, s in zip(axes, slices, strict=True):
        index[a] = s
    return tuple(index)


def offset_index(win: Windows, offset: Sequence[int], axes: Sequence[int], ndim: int) -> tuple[slice, ...]:
    """The index into an ``ndim``-d buffer, spatial at ``axes``, of kernel ``offset``'s positions."""
    return _full_index(win.offset_slices(offset), axes, ndim)


def _pad_widths(win: Windows) -> list[tuple[int, int]]:
    return [(lo, b - lo - n) for lo, n, b in zip(win.pad_lo, win.size, win.buffer_size, strict=True)]


def pad(x: Array, win: Windows, axes: Sequence[int], *, mode: str = "zeros", value: float = 0.0) -> Array:
    """The padded buffer of ``x``: spatial axes at ``axes`` grown to ``win.buffer_size``.

    ``mode`` is a torch padding mode (``zeros`` pads with ``value``). Returns ``x``
    itself, not a copy, when no padding is needed.
    """
    if not win.needs_padding:
        return x
    xp = array_module(x)
    widths = _pad_widths(win)
    if mode == "zeros":
        shape = list(x.shape)
        for a, b in zip(axes, win.buffer_size, strict=True):
            shape[a] = b
        buf = xp.empty(shape, dtype=x.dtype)
        buf[_full_index(win.interior(), axes, x.ndim)] = x
        # fill only the padding: per axis, the slabs before and after the input
        for a, (lo, n) in enumerate(zip(win.pad_lo, win.size, strict=True)):
            inner = [slice(None)] * x.ndim
            for b, (lo_b, n_b) in enumerate(zip(win.pad_lo, win.size, strict=True)):
                if b < a:
                    inner[axes[b]] = slice(lo_b, lo_b + n_b)
            for part in (slice(0, lo), slice(lo + n, None)):
                inner[axes[a]] = part
                buf[tuple(inner)] = value
        return buf
    all_widths = [(0, 0)] * x.ndim
    for a, w in zip(axes, widths, strict=True):
        all_widths[a] = w
    return xp.pad(x, all_widths, mode=PADDING_MODES[mode])


def unpad(dbuf: Array, win: Windows, axes: Sequence[int], *, mode: str = "zeros") -> Array:
    """The vjp of :func:`pad`: the gradient of ``x`` from the gradient of its buffer.

    For ``zeros`` a view of the interior; for the other modes each padded position's
    gradient is added to the input position it copies (a sort and ``add.reduceat``
    per axis, no ``np.add.at``).
    """
    if not win.needs_padding:
        return dbuf
    if mode == "zeros":
        return dbuf[_full_index(win.interior(), axes, dbuf.ndim)]
    xp = array_module(dbuf)
    g = dbuf
    for a, n, w in zip(axes, win.size, _pad_widths(win), strict=True):
        if w == (0, 0):
            continue
        source = np.pad(np.arange(n), w, mode=PADDING_MODES[mode])  # buffer position -> input position
        order = np.argsort(source, kind="stable")
        starts = np.searchsorted(source[order], np.arange(n))
        g = xp.add.reduceat(xp.take(g, xp.asarray(order), axis=a), xp.asarray(starts), axis=a)
    return g


def window_view(buf: Array, win: Windows, axes: Sequence[int], kernel_at: int) -> Array:
    """The im2col view of a padded buffer: a read-only strided view, no copy.

    The spatial axes at ``axes`` become the output's spatial axes, and the kernel
    axes are inserted at position ``kernel_at`` of the result (counted before
    insertion). For a channels-last buffer ``(N, *buffer, C)`` with ``axes=(1..d)``
    and ``kernel_at=d+1`` the view is ``(N, *out, *kernel, C)``.
    """
    shape = list(buf.shape)
    strides = list(buf.strides)
    kshape, kstrides = [], []
    for a, o, s, k, d in zip(axes, win.out, win.stride, win.kernel, win.dilation, strict=True):
        shape[a] = o
        kshape.append(k)
        kstrides.append(buf.strides[a] * d)
        strides[a] = buf.strides[a] * s
    shape[kernel_at:kernel_at] = kshape
    strides[kernel_at:kernel_at] = kstrides
    return as_strided(buf, tuple(shape), tuple(strides))


def fold(chunks: Iterable[tuple[tuple[int, ...], Array]], win: Windows, axes: Sequence[int],
         shape: Sequence[int], dtype: Any, xp: Any = np) -> Array:
    """col2im: a zero buffer of ``shape`` with each ``(offset, chunk)`` added at its offset.

    ``chunks`` yields, per kernel offset, the array of that offset's values at every
    window position (the shape of :func:`offset_index`'s slice); it may be a
    generator, so that each chunk is made just before it is added (and is still in
    cache). Where windows are disjoint the chunks are copied, not added (and where
    they tile the buffer it is not zeroed first).
    """
    buf = xp.empty(tuple(shape), dtype=dtype) if win.tiles else xp.zeros(tuple(shape), dtype=dtype)
    disjoint = win.disjoint
    for offset, chunk in chunks:
        view = buf[offset_index(win, offset, axes, buf.ndim)]
        if disjoint:
            view[...] = chunk
        else:
            view += chunk
    return buf


def padding_pairs(owner: str, padding: Any, win_kernel: Sequence[int], dilation: Sequence[int],
                  n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(pad_lo, pad_hi)`` from an int, a tuple, ``'valid'`` or ``'same'`` (torch's rules).

    ``'same'`` pads ``dilation * (kernel - 1)`` in total per axis, the odd one on the
    right, as torch does.
    """
    if padding == "valid":
        return (0,) * n, (0,) * n
    if padding == "same":
        total = [d * (k - 1) for k, d in zip(win_kernel, dilation, strict=True)]
        lo = tuple(t // 2 for t in total)
        return lo, tuple(t - lo_ for t, lo_ in zip(total, lo, strict=True))
    p = check_ntuple(owner, "padding", padding, n, minimum=0)
    return p, p

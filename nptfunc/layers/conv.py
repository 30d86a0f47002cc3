"""Convolution: one N-d implementation (im2col + one matmul per direction), thin 1-d/2-d variants.

The algorithm (see ``docs/conv.md``):

* forward: pad ``x`` into a buffer, take the strided im2col view of all windows
  (no copy), copy it once into ``cols``, then one (batched) matmul with the weight;
* ``dweight``: one matmul of ``dy`` with the same ``cols``;
* ``dx`` by col2im: per kernel offset, ``dy @ weight[offset]`` added into a strided
  slice of a fresh padded buffer right after it is computed (``prod(kernel)``
  matmuls and vectorised adds; no loop over pixels, no ``np.add.at``), then the
  padding's vjp.

Three internal layouts give the same result; :func:`choose_layout` picks one from
the shapes. Channels-last (``cols`` of shape ``(groups, N*P, K)``) runs one large
matmul per direction and pays a layout copy of ``y`` and ``dy``; channels-first
(``cols`` of shape ``(N, groups, K, P)``) batches over the images and needs no
layout copy, which wins when there are few input channels. Shifted (see
:func:`_conv_shifted`) needs no padded buffer: its forward multiplies strided views of a
few shifted copies of the input (no ``cols``), its vjp copies ``cols`` of shape
``(groups, K, N*P)`` from them; it serves every stride-1 'same' 1-d and 2-d convolution
with many channels, and takes its large temporaries from :data:`nptfunc.backend.scratch`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import attrs
import numpy as np

from nptfunc import backend, random
from nptfunc._types import VJP, Array
from nptfunc._validate import check_ntuple, owner_of
from nptfunc.backend import (
    array_module,
    as_strided,
    get_num_threads,
    matmul,
    parallel_copy,
    parallel_for,
    scratch,
)
from nptfunc.layers._windows import (
    PADDING_MODES,
    Windows,
    fold,
    input_pattern,
    pad,
    padding_pairs,
    unpad,
    window_view,
)
from nptfunc.layers.base import (
    Layer,
    bool_field,
    choice_field,
    dtype_field,
    int_field,
    ntuple_field,
    param_field,
)
from nptfunc.layers.initializers import torch_default_bias, torch_default_weight
from nptfunc.random import Key

__all__ = ["LAYOUTS", "Conv1d", "Conv2d", "ConvParams", "ConvTranspose1d", "ConvTranspose2d",
           "channels_last_is_faster", "choose_layout", "conv", "conv_transpose", "shifted_applies"]

@attrs.frozen
class ConvParams:
    """Parameters of the convolutions (torch's names and shapes).

    Attributes:
        weight: ``(out_channels, in_channels // groups, *kernel_size)``; for the transposed
            convolutions ``(in_channels, out_channels // groups, *kernel_size)``, as torch.
        bias: ``(out_channels,)`` or ``None``.
    """

    weight: Array = param_field()
    bias: Array | None = param_field(default=None)


def _spatial(cls: type) -> int:
    return cls.num_spatial


def _padding(value: Any, instance: Any, field: attrs.Attribute) -> tuple[int, ...] | str:
    """``padding``: ``'valid'``, ``'same'``, an int or a tuple of ints >= 0, one per spatial axis."""
    if isinstance(value, str):
        if value not in ("valid", "same"):
            msg = (f"{owner_of(instance)}: expected padding to be an int, a tuple, 'valid' or 'same', "
                   f"got {value!r}")
            raise ValueError(msg)
        return value
    return check_ntuple(owner_of(instance), "padding", value, instance.num_spatial, minimum=0)


def _init_conv_params(layer: Any, key: Key, fan_in: int) -> ConvParams:
    """torch's default init of a (transposed) convolution.

    Weight and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
    """
    kw, kb = random.split(key)
    weight = torch_default_weight(kw, layer.weight_shape, fan_in, layer.dtype)
    bias = torch_default_bias(kb, (layer.out_channels,), fan_in, layer.dtype) if layer.bias else None
    return ConvParams(weight, bias)


def _apply_batched(layer: Any, params: ConvParams, x: Array, need_dx: bool,
                   core: Callable[[Array, Array, Array | None, Windows], tuple[Array, Any]],
                   ) -> tuple[Array, VJP]:
    """A convolution layer's ``_apply``: ``core(x_batched, W, b, win)`` on batched or unbatched ``x``."""
    W, b = _checked_conv_params(layer, params)
    win = layer.windows(x.shape)
    unbatched = x.ndim == layer.num_spatial + 1
    y, core_vjp = core(x[None] if unbatched else x, W, b, win)
    if unbatched:
        y = y[0]
    has_bias = b is not None

    def vjp(dy: Array) -> tuple[ConvParams, Array | None]:
        dW, db, dx = core_vjp(dy[None] if unbatched else dy, need_dx)
        return ConvParams(dW, db if has_bias else None), dx[0] if unbatched and need_dx else dx

    return y, vjp


def _checked_conv_params(layer: Any, params: ConvParams) -> tuple[Array, Array | None]:
    """``(weight, bias)`` after checking their shapes against the layer's."""
    W, b = params.weight, params.bias
    if tuple(W.shape) != layer.weight_shape or (b is not None and tuple(b.shape) != (layer.out_channels,)):
        msg = (f"{layer.name}: expected weight {layer.weight_shape} and bias ({layer.out_channels},) "
               f"or None, got weight {tuple(W.shape)} and bias {None if b is None else tuple(b.shape)}")
        raise ValueError(msg)
    return W, b


@attrs.frozen
class _ConvNd(Layer):
    """The N-d convolution; subclasses fix ``num_spatial``. See :class:`Conv2d`."""

    num_spatial: ClassVar[int] = 2
    params_class = ConvParams

    in_channels: int = int_field()
    out_channels: int = int_field()
    kernel_size: tuple[int, ...] = ntuple_field(_spatial)
    stride: tuple[int, ...] = ntuple_field(_spatial, default=1)
    padding: tuple[int, ...] | str = attrs.field(default=0, converter=attrs.Converter(
        _padding, takes_self=True, takes_field=True))
    dilation: tuple[int, ...] = ntuple_field(_spatial, default=1)
    groups: int = int_field(default=1)
    bias: bool = bool_field(default=True)
    padding_mode: str = choice_field(tuple(PADDING_MODES), default="zeros")
    dtype: np.dtype = dtype_field()

    def __attrs_post_init__(self) -> None:
        if self.in_channels % self.groups or self.out_channels % self.groups:
            msg = (f"{self.name}: in_channels and out_channels must both be divisible by groups, "
                   f"got groups={self.groups}")
            raise ValueError(msg)
        if self.padding == "same" and self.stride != (1,) * self.num_spatial:
            msg = (f"{self.name}: padding='same' is not supported for strided convolutions "
                   f"(as in torch), got stride={self.stride!r}")
            raise ValueError(msg)

    # ------------------------------------------------------------------ shapes
    def windows(self, input_shape: tuple[int, ...]) -> Windows:
        """The window geometry for an input of ``input_shape``, or a ``ValueError``.

        The family's shape helper: :meth:`output_shape`, ``apply`` and the tests use it.
        """
        d, shape = self.num_spatial, tuple(input_shape)
        if len(shape) not in (d + 1, d + 2) or shape[-d - 1] != self.in_channels:
            msg = f"{self.name}: expected input of shape {input_pattern(self.in_channels, d)}, got {shape}"
            raise ValueError(msg)
        size = shape[-d:]
        lo, hi = padding_pairs(self.name, self.padding, self.kernel_size, self.dilation, d)
        win = Windows.create(size, self.kernel_size, self.stride, self.dilation, lo, hi)
        reach = tuple((k - 1) * dl + 1 for k, dl in zip(self.kernel_size, self.dilation, strict=True))
        if any(p < r for p, r in zip(win.padded_size, reach, strict=True)):
            msg = (f"{self.name}: input of spatial size {size} is {win.padded_size} after padding, smaller "
                   f"than the (dilated) kernel {reach}; got input of shape {shape}")
            raise ValueError(msg)
        if self.padding_mode in ("reflect", "circular"):
            limit_ok = (lambda p, n: p < n) if self.padding_mode == "reflect" else (lambda p, n: p <= n)
            if not all(limit_ok(p, n) for p, n in zip(lo + hi, size + size, strict=True)):
                rule = "smaller than" if self.padding_mode == "reflect" else "at most"
                msg = (f"{self.name}: padding_mode={self.padding_mode!r} needs padding {rule} the input "
                       f"size, "
                       f"got padding {tuple(zip(lo, hi, strict=True))} for input of shape {shape}")
                raise ValueError(msg)
        return win

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, in_channels, *size) -> (N, out_channels, *out)``; the batch axis is optional."""
        win = self.windows(input_shape)
        return (*tuple(input_shape)[:-self.num_spatial - 1], self.out_channels, *win.out)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """``(out_channels, in_channels // groups, *kernel_size)``."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    # -------------------------------------------------------------------- init
    def init(self, key: Key) -> ConvParams:
        """torch's default: weight and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

        ``fan_in = in_channels // groups * prod(kernel_size)``.
        """
        return _init_conv_params(self, key, self.in_channels // self.groups * math.prod(self.kernel_size))

    # ------------------------------------------------------------------- apply
    def _apply(self, params: ConvParams, x: Any, *, need_dx: bool = True) -> tuple[Array, VJP]:
        return _apply_batched(self, params, x, need_dx,
                              lambda xb, W, b, win: conv(xb, W, b, win, self.groups, self.padding_mode))


LAYOUTS = ("shifted", "channels_last", "channels_first")
"""The internal layouts of :func:`conv`; all give the same result (see ``docs/conv.md``)."""

_IN_CACHE = 256 << 10
"""Bytes of output per product in the shifted forward: its partial sums are added while in cache."""


def shifted_applies(win: Windows, padding_mode: str) -> bool:
    """Whether the ``shifted`` layout can run: 1-d or 2-d, stride 1, zero padding, output size = input size.

    That is every 'same' convolution (``3x3`` with padding 1, ``5x5`` with padding 2, ...),
    at any dilation and groups.
    """
    return (win.ndim <= 2 and padding_mode == "zeros" and all(s == 1 for s in win.stride)
            and win.out == win.size)


def channels_last_is_faster(in_per_group: int, win: Windows) -> bool:
    """The many-channels test: compare the contiguous runs that the im2col copy reads.

    Channels-last reads runs of ``kW * C/groups`` elements and pays two layout copies
    (of ``y`` and ``dy``); channels-first reads runs of ``W_out`` elements and needs
    none. Channels-last wins for many channels (32 -> 64 on 14x14: ~30% faster),
    channels-first for few channels on large images (1 -> 32 on 28x28: 2x faster).
    """
    return in_per_group * win.kernel[-1] >= win.out[-1]


def choose_layout(in_per_group: int, win: Windows, padding_mode: str) -> str:
    """The layout :func:`conv` uses by default: one of :data:`LAYOUTS`.

    Few channels per group: ``channels_first`` (no layout copies). Many channels:
    ``shifted`` where it applies (about 30% faster than ``channels_last`` on
    32 -> 64 at 14x14), else ``channels_last``.
    """
    if not channels_last_is_faster(in_per_group, win):
        return "channels_first"
    return "shifted" if shifted_applies(win, padding_mode) else "channels_last"


def conv(x: Array, weight: Array, bias: Array | None, win: Windows, groups: int = 1,
         padding_mode: str = "zeros", layout: str | None = None) -> tuple[Array, Any]:
    """The N-d convolution (cross-correlation, as torch) of a batch; no validation.

    Args:
        x: ``(N, C, *size)``.
        weight: ``(O, C // groups, *kernel)``.
        bias: ``(O,)`` or ``None``.
        win: the geometry from :meth:`Conv2d.windows`.
        groups: the number of channel groups.
        padding_mode: a torch padding mode.
        layout: one of :data:`LAYOUTS` (all give the same result; ``shifted`` only
            where :func:`shifted_applies`); ``None`` chooses by :func:`choose_layout`.

    Returns:
        ``y`` of shape ``(N, O, *win.out)`` (C-contiguous) and
        ``vjp(dy) -> (dweight, dbias, dx)`` (``dbias`` is ``None`` without bias).
    """
    if layout is None:
        layout = choose_layout(x.shape[1] // groups, win, padding_mode)
    if layout not in LAYOUTS:
        msg = f"conv: expected layout to be one of {LAYOUTS} or None, got {layout!r}"
        raise ValueError(msg)
    if layout == "shifted" and not shifted_applies(win, padding_mode):
        msg = (f"conv: the shifted layout needs stride 1, zero padding, output size = input size and 1 or 2 "
               f"spatial axes, got {win}")
        raise ValueError(msg)
    impl = {"shifted": _conv_shifted, "channels_last": _conv_channels_last,
            "channels_first": _conv_channels_first}[layout]
    return impl(x, weight, bias, win, groups, padding_mode)


def _band(off: int, n: int) -> slice | None:
    """The positions ``p < n`` with ``p + off`` outside ``[0, n)``, or ``None`` if there are none."""
    if off < 0:
        return slice(0, min(-off, n))
    if off > 0:
        return slice(max(n - off, 0), n)
    return None


def _zero_band(a: Array, axis: int, band: slice | None, fixed: dict[int, int] | None = None) -> None:
    """``a[..., band at axis, ...] = 0`` (with ``fixed`` axes indexed), unless ``band`` is ``None``."""
    if band is not None:
        index: list[Any] = [slice(None)] * a.ndim
        index[axis] = band
        for ax, i in (fixed or {}).items():
            index[ax] = i
        a[tuple(index)] = 0


def _weight_matrix(weight: Array, bias: Array | None, G: int) -> Array:
    """``(G, O/G, K [+ 1])``: the weight, ``K`` in ``(C/G, *kernel)`` order, then the bias as a column.

    The matrix of the layouts whose ``cols`` hold ``K`` rows and then a row of ones.
    """
    xp = array_module(weight)
    Wm = xp.reshape(weight, (G, weight.shape[0] // G, -1))
    if bias is None:
        return Wm
    return xp.concatenate([Wm, xp.reshape(bias, (G, -1, 1))], axis=2)


class _ThreadBuffers:
    """One scratch buffer per thread of a :func:`parallel_for`, taken from the pool by the caller.

    (Taken on a worker thread, glibc would serve them from that thread's arena, and
    unmap them again each step: page faults; see ``ops._relu_grad``.)
    """

    def __init__(self, xp: Any, n: int, shape: tuple[int, ...], dtype: Any) -> None:
        self._all = scratch.empty(xp, (max(1, min(get_num_threads(), n)), *shape), dtype)
        self._free = list(range(self._all.shape[0]))

    @contextlib.contextmanager
    def take(self) -> Iterator[Array]:
        """One thread's buffer while the ``with`` block runs (``list.pop`` is atomic)."""
        i = self._free.pop()
        try:
            yield self._all[i]
        finally:
            self._free.append(i)

    def release(self) -> None:
        scratch.release(self._all)


def _conv_shifted(x: Array, weight: Array, bias: Array | None, win: Windows, G: int,
                  padding_mode: str) -> tuple[Array, Any]:
    """:func:`conv` by flat shifts, for stride 1 and output size = input size (zero padding; 1-d, 2-d).

    With the batch and spatial axes flattened into one axis of length ``M = N*P``
    (``P`` pixels per image), kernel tap ``t`` reads input position ``m + s_t`` for a
    constant shift ``s_t``. The input is copied into ``kl`` "slots" per channel (``kl``
    taps along the last axis), each image followed by ``g`` rows of zeros (the most rows
    a tap reads above or below an image), slot ``j`` with the columns that tap ``j``
    never reads validly set to zero; so a read that leaves the image reads zero.
    The slots' rows are ``L + dl`` apart in a strided view (``dl`` the last axis's
    dilation) and each channel's data starts ``dl`` later per row, so that row ``j``
    of a channel reads ``j * dl`` further: the ``(kl * C/G, P)`` operand of one row of
    kernel taps for one image is a plain strided matrix (no im2col copy). With bias, a
    row of ones per group follows its channels' slots.

    * forward: per image, one ``(O, kl * C) @ (kl * C, P)`` product per row of taps,
      the first written into ``y`` (the bias in its ones row), the others added (in
      cache, a few images at a time). LeNet's 32 -> 64 forward, fastest of 40 on one
      thread: 11.4 against 13.1 ms for one product over an im2col copy with zeroed bands;
    * ``dweight``: ``cols`` of shape ``(G, K [+ 1], M)``, copied from the slots in the
      vjp (one strided copy; nothing to zero), then one matmul. The copy's runs are
      ``P`` long (the images are apart in the slots): 2.9 ms against the 2.3 of the
      forward's copy before, so evaluation gains and a training step breaks even;
    * ``dx`` (col2im): one matmul per row of taps (the ``kl`` taps that differ only in
      the last axis) giving that row's slice of ``dcols``; its out-of-image rows and
      columns are zeroed and each tap's part is added at ``s_t`` into one flat ``(C, M)``
      buffer (contiguous runs, still in cache). The other layout copies are of ``dy``
      and ``dx`` between ``(N, C, P)`` and ``(C, N, P)``, with runs of ``P``.
    """
    xp = array_module(x, weight)
    d = win.ndim
    N, C = x.shape[:2]
    Cout = weight.shape[0]
    Cg, Og = C // G, Cout // G
    size, kern = win.size, win.kernel
    kl, W = kern[-1], size[-1]
    P = math.prod(size)
    M = N * P
    Kg = Cg * math.prod(kern)
    has_bias = bias is not None
    isz = x.itemsize
    # the slots, in 2-d terms (a 1-d convolution is one row per image)
    H, kh, dh, lo_h = (size[0], kern[0], win.dilation[0], win.pad_lo[0]) if d == 2 else (1, 1, 1, 0)
    dl, lo_w = win.dilation[-1], win.pad_lo[-1]
    g = max(lo_h, win.pad_hi[0]) if d == 2 else 0  # zero rows after each image and before the first
    B = (H + g) * W  # one image's block in a slot
    K1 = Cg * kl + has_bias  # slot rows per group: its channels' slots, then the ones row
    S0 = g * W + lo_w
    L = S0 + G * K1 * dl + N * B + win.pad_hi[-1]
    xw = scratch.empty(xp, (G * K1, L), x.dtype)
    xw[:, :S0 + G * K1 * dl] = 0  # every row's zeros before its first image ...
    xw[:, S0 + N * B:] = 0  # ... and after its last (the data, written next, overlaps both)
    # slots[g, c, j, n, h, w]: channel c of group g, slot j, at S0 + (g*K1 + c*kl)*dl + n*B + h*W + w
    slots = as_strided(xw, (G, Cg, kl, N, H + g, W),
                       (K1 * (L + dl) * isz, kl * (L + dl) * isz, L * isz, B * isz, W * isz, isz), S0,
                       writeable=True)
    x6 = xp.reshape(xp.transpose(xp.reshape(x, (N, G, Cg, H, W)), (1, 2, 0, 3, 4)), (G, Cg, 1, N, H, W))
    parallel_copy(slots[..., :H, :], x6, axis=1)
    if g:
        slots[..., H:, :] = 0
    for j in range(kl):  # the columns tap j never reads validly
        _zero_band(slots, 5, _band(lo_w - j * dl, W), {2: j})
    if has_bias:
        xw[Cg * kl::K1] = 1
    # row i of taps: (G, Og, kl * C/G) weights [+ the bias column]; operands (N, G, K, P)
    w5 = xp.reshape(weight, (G, Og, Cg, kh, kl))
    wr, ops = [], []
    for i in range(kh):
        wi = xp.reshape(w5[:, :, :, i], (G, Og, Cg * kl))
        if has_bias and i == 0:
            wi = xp.concatenate([wi, xp.reshape(bias, (G, Og, 1))], axis=2)
        wr.append(xp.ascontiguousarray(wi))
        ops.append(as_strided(xw, (N, G, wi.shape[2], P), (B * isz, K1 * (L + dl) * isz, (L + dl) * isz, isz),
                              S0 + (i * dh - lo_h) * W - lo_w))
    y = xp.empty((N, Cout, *size), dtype=x.dtype)
    y4 = xp.reshape(y, (N, G, Og, P))
    step = max(1, _IN_CACHE // (Cout * P * isz))  # images per product: the partial sums stay in cache
    sums = _ThreadBuffers(xp, N, (min(step, N) * Cout * P if kh > 1 else 0,), x.dtype)

    def products(lo: int, hi: int) -> None:  # images lo:hi
        with sums.take() as tmp:
            for s in range(lo, hi, step):
                e = min(s + step, hi)
                xp.matmul(wr[0], ops[0][s:e], out=y4[s:e])
                for i in range(1, kh):
                    t = xp.reshape(tmp[:(e - s) * Cout * P], (e - s, G, Og, P))
                    xp.matmul(wr[i], ops[i][s:e], out=t)
                    y4[s:e] += t

    parallel_for(N, products, Cout * Kg * P, min_chunk=backend.MIN_MATMUL)
    sums.release()

    def vjp(dy: Array, need_dx: bool = True) -> tuple[Array, Array | None, Array | None]:
        # cols[g, (c, i, j), (n, h, w)] = the slots at n*B + (h + i*dh - lo_h)*W + w + j*dl - lo_w
        cols = scratch.empty(xp, (G, Kg + has_bias, M), x.dtype)
        if has_bias:
            cols[:, Kg] = 1
        view = as_strided(xw, (G, Cg, kh, kl, N, H, W),
                          (K1 * (L + dl) * isz, kl * (L + dl) * isz, dh * W * isz, (L + dl) * isz,
                           B * isz, W * isz, isz), S0 - lo_h * W - lo_w)
        parallel_copy(xp.reshape(cols[:, :Kg], view.shape), view, axis=1)
        dy_on = scratch.empty(xp, (Cout, N, P), dy.dtype)
        parallel_copy(dy_on, xp.swapaxes(xp.reshape(dy, (N, Cout, P)), 0, 1))
        dy3 = xp.reshape(dy_on, (G, Og, M))
        dWb = matmul(cols, xp.swapaxes(dy3, 1, 2))  # (G, Kg [+ 1], Og)
        scratch.release(cols)
        dW = xp.reshape(xp.ascontiguousarray(xp.swapaxes(dWb[:, :Kg], 1, 2)), weight.shape)
        db = xp.ascontiguousarray(xp.reshape(dWb[:, Kg], (Cout,))) if has_bias else None
        if not need_dx:
            scratch.release(dy_on)
            return dW, db, None
        # dx in the flat (C, M) layout, with margins of S and the last pad's positions
        st = [math.prod(size[a + 1:]) for a in range(d)]  # flat strides of the spatial axes
        offs = [[i * dil - lo for i in range(k)]
                for k, dil, lo in zip(kern, win.dilation, win.pad_lo, strict=True)]
        S = sum(lo * s for lo, s in zip(win.pad_lo, st, strict=True))
        Mg = S + M + sum(hi * s for hi, s in zip(win.pad_hi, st, strict=True))
        # one matmul per row of taps (the kl taps that share tap[:-1]): W_row^T (G, kl*Cg, Og)
        R = math.prod(kern[:-1])
        w_rows = xp.ascontiguousarray(xp.transpose(xp.reshape(weight, (G, Og, Cg, R, kl)), (3, 0, 4, 2, 1)))
        w_rows = xp.reshape(w_rows, (R, G, kl * Cg, Og))
        chunk = scratch.empty(xp, (G, kl, Cg, M), dy.dtype)
        chunk_sp = xp.reshape(chunk, (G, kl, Cg, N, *size))
        rows = list(itertools.product(*(range(k) for k in kern[:-1])))
        bases = [S + sum(offs[a][row[a]] * st[a] for a in range(d - 1)) for row in rows]
        starts = [base + off for base in bases for off in offs[-1]]
        # dx accumulates in dxf at the shifted starts; the first tap is copied in, not added, so
        # only what it leaves uncovered (of what the other taps touch and of [S, S + M)) is zeroed
        dxf = scratch.empty(xp, (C, Mg), dy.dtype)
        first = starts[0]
        dxf[:, min(S, min(starts)):first] = 0
        dxf[:, first + M:max(S + M, max(starts) + M)] = 0
        chunk_cols = xp.reshape(chunk, (G, kl, Cg, M // W, W))
        for r, (row, base) in enumerate(zip(rows, bases, strict=True)):
            matmul(w_rows[r], dy3, out=xp.reshape(chunk, (G, kl * Cg, M)))
            for a in range(d - 1):
                _zero_band(chunk_sp, 4 + a, _band(offs[a][row[a]], size[a]))

            def add_taps(lo: int, hi: int, r: int = r, base: int = base) -> None:  # channels lo:hi
                for j, off in enumerate(offs[-1]):
                    _zero_band(chunk_cols[:, :, lo:hi], 4, _band(off, W), {1: j})
                    target = xp.reshape(dxf[:, base + off:base + off + M], (G, Cg, M))[:, lo:hi]
                    if r == 0 and j == 0:
                        target[...] = chunk[:, j, lo:hi]
                    else:
                        target += chunk[:, j, lo:hi]

            parallel_for(Cg, add_taps, G * kl * M)
        dx = xp.empty((N, C, *size), dtype=dy.dtype)
        parallel_copy(xp.reshape(dx, (N, C, P)), xp.swapaxes(xp.reshape(dxf[:, S:S + M], (C, N, P)), 0, 1))
        scratch.release(dy_on, chunk, dxf)
        return dW, db, dx

    scratch.release_with(vjp, xw)
    return y, vjp


def _conv_channels_first(x: Array, weight: Array, bias: Array | None, win: Windows, G: int,
                         padding_mode: str) -> tuple[Array, Any]:
    """:func:`conv` on ``cols`` of shape ``(N, G, K, P)``: batched matmuls, output already NCHW."""
    xp = array_module(x, weight)
    d = win.ndim
    N, C = x.shape[:2]
    Cout = weight.shape[0]
    Cg, Og = C // G, Cout // G
    P = math.prod(win.out)
    Kg = math.prod(win.kernel) * Cg
    sp = tuple(range(2, d + 2))

    xbuf = pad(x, win, sp, mode=padding_mode)  # (N, C, *buffer)
    view = window_view(xbuf, win, sp, kernel_at=2)  # (N, C, *kernel, *out), no copy
    # cols (N, G, K, P), K ordered (Cg, *kernel) as the weight, plus a row of ones for the bias
    cols = xp.empty((N, G, Kg + (bias is not None), P), dtype=x.dtype)
    if bias is not None:
        cols[:, :, Kg] = 1
    split = (N, G, Cg, *win.kernel, *win.out)  # splitting axes: views of both sides, never copies
    parallel_copy(xp.reshape(cols[:, :, :Kg], split), xp.reshape(view, split))  # the one im2col copy
    Wm = _weight_matrix(weight, bias, G)
    y = xp.reshape(matmul(Wm, cols), (N, Cout, *win.out))  # (N, G, Og, P): already NCHW

    def vjp(dy: Array, need_dx: bool = True) -> tuple[Array, Array | None, Array | None]:
        dy4 = xp.reshape(dy, (N, G, Og, P))
        dWb = xp.sum(matmul(dy4, xp.swapaxes(cols, -1, -2)), axis=0)  # (G, Og, K [+ 1])
        dW = xp.reshape(dWb[..., :Kg], weight.shape)
        db = None if bias is None else xp.reshape(dWb[..., Kg], (Cout,))
        dx = _col2im_channels_first(dy4, weight, win, C, padding_mode) if need_dx else None
        return dW, db, dx

    return y, vjp


def _col2im_channels_first(dy4: Array, weight: Array, win: Windows, C: int, padding_mode: str) -> Array:
    """The input gradient of :func:`conv` (a transposed convolution), channels-first.

    ``dy4``: ``(N, G, O/G, P)``; returns ``dx`` of shape ``(N, C, *win.size)``. Per kernel
    offset one batched matmul ``W_t^T dy``, added into a strided slice of the padded
    buffer (:func:`fold`), then the padding's vjp.
    """
    xp = array_module(dy4, weight)
    N, G, Og, _ = dy4.shape
    Cg = C // G
    sp = tuple(range(2, win.ndim + 2))
    # per kernel offset t: W_t^T (G, Cg, Og), contiguous for the matmul
    w_off = xp.ascontiguousarray(xp.swapaxes(xp.moveaxis(xp.reshape(weight, (G, Og, Cg, -1)), -1, 0),
                                             -1, -2))
    chunk = xp.empty((N, G, Cg, dy4.shape[-1]), dtype=dy4.dtype)

    def chunks() -> Iterator[tuple[tuple[int, ...], Array]]:
        for t, offset in enumerate(win.offsets()):
            matmul(w_off[t], dy4, out=chunk)
            yield offset, xp.reshape(chunk, (N, C, *win.out))

    dbuf = fold(chunks(), win, sp, (N, C, *win.buffer_size), dy4.dtype, xp)
    return xp.ascontiguousarray(unpad(dbuf, win, sp, mode=padding_mode))


def _conv_channels_last(x: Array, weight: Array, bias: Array | None, win: Windows, G: int,
                        padding_mode: str) -> tuple[Array, Any]:
    """:func:`conv` on ``cols`` of shape ``(G, N*P, K)``: one big matmul per direction."""
    xp = array_module(x, weight)
    d = win.ndim
    N, C = x.shape[:2]
    Cout = weight.shape[0]
    Cg, Og = C // G, Cout // G
    M = N * math.prod(win.out)
    Kg = math.prod(win.kernel) * Cg
    sp = tuple(range(1, d + 1))  # spatial axes of the channels-last buffer

    xbuf = pad(xp.moveaxis(x, 1, -1), win, sp, mode=padding_mode)  # (N, *buffer, C)
    view = window_view(xbuf, win, sp, kernel_at=d + 1)  # (N, *out, *kernel, C), no copy
    view = xp.moveaxis(view.reshape(*view.shape[:-1], G, Cg), -2, 0)  # (G, N, *out, *kernel, Cg)
    # cols (G, M, K), K ordered (*kernel, Cg), plus a column of ones for the bias
    cols = xp.empty((G, M, Kg + (bias is not None)), dtype=x.dtype)
    if bias is not None:
        cols[..., Kg] = 1
    # the one im2col copy (the reshape only splits axes: a view, never a copy)
    parallel_copy(xp.reshape(cols[..., :Kg], view.shape), view, axis=1)
    # weight (O, Cg, *k) -> (G, *k, Cg, Og) -> (G, Kg, Og), rows ordered as cols' columns
    w5 = xp.reshape(weight, (G, Og, Cg, *win.kernel))
    Wm = xp.reshape(xp.moveaxis(w5, (1, 2), (-1, -2)), (G, Kg, Og))
    if bias is not None:
        Wm = xp.concatenate([Wm, xp.reshape(bias, (G, 1, Og))], axis=1)
    y2 = matmul(cols, Wm)  # (G, M, Og)
    y = xp.empty((N, Cout, *win.out), dtype=y2.dtype)
    y_src = xp.moveaxis(xp.reshape(y2, (G, N, *win.out, Og)), (0, -1), (1, 2))  # (N, G, Og, *out)
    parallel_copy(xp.reshape(y, (N, G, Og, *win.out)), y_src)

    def vjp(dy: Array, need_dx: bool = True) -> tuple[Array, Array | None, Array | None]:
        dy2 = _channels_last(dy, G)  # copy: channels-last
        dWb = matmul(xp.swapaxes(cols, 1, 2), dy2)  # (G, K [+ 1], Og)
        dW = xp.reshape(xp.moveaxis(xp.reshape(dWb[:, :Kg], (G, *win.kernel, Cg, Og)), (-1, -2), (1, 2)),
                        weight.shape)
        db = None if bias is None else xp.reshape(dWb[:, Kg], (Cout,))
        dx = _col2im_channels_last(dy2, weight, win, N, C, padding_mode) if need_dx else None
        return dW, db, dx

    return y, vjp


def _channels_last(dy: Array, G: int) -> Array:
    """``(N, O, *out) -> (G, N * prod(out), O/G)``: the layout copy of the channels-last matmuls."""
    xp = array_module(dy)
    N, Cout = dy.shape[:2]
    dy5 = xp.reshape(dy, (N, G, Cout // G, *dy.shape[2:]))
    return xp.reshape(xp.moveaxis(dy5, (1, 2), (0, -1)), (G, -1, Cout // G))


def _col2im_channels_last(dy2: Array, weight: Array, win: Windows, N: int, C: int,
                          padding_mode: str) -> Array:
    """The input gradient of :func:`conv` (a transposed convolution), channels-last.

    ``dy2``: ``(G, N * P, O/G)`` (see :func:`_channels_last`); returns ``dx`` of shape
    ``(N, C, *win.size)``. Per kernel offset one matmul ``dy W_t``, added into a strided
    slice of the channels-last padded buffer (:func:`fold`), then the padding's vjp and
    one layout copy back to channels-first.
    """
    xp = array_module(dy2, weight)
    G, M, Og = dy2.shape
    Cg = C // G
    sp = tuple(range(1, win.ndim + 1))
    # per kernel offset t: W_t (G, Og, Cg), contiguous for the matmul
    w_off = xp.ascontiguousarray(xp.moveaxis(xp.reshape(weight, (G, Og, Cg, -1)), -1, 0))
    chunk = xp.empty((G, M, Cg), dtype=dy2.dtype)

    def chunks() -> Iterator[tuple[tuple[int, ...], Array]]:
        for t, offset in enumerate(win.offsets()):
            matmul(dy2, w_off[t], out=chunk)
            yield offset, xp.moveaxis(xp.reshape(chunk, (G, N, *win.out, Cg)), 0, -2)

    dbuf = fold(chunks(), win, sp, (N, *win.buffer_size, G, Cg), dy2.dtype, xp)
    dxl = unpad(xp.reshape(dbuf, (N, *win.buffer_size, C)), win, sp, mode=padding_mode)
    return xp.ascontiguousarray(xp.moveaxis(dxl, -1, 1))


@attrs.frozen
class Conv1d(_ConvNd):
    """1-d convolution (cross-correlation) over ``(N, C, L)``. Equivalent to ``torch.nn.Conv1d``.

    Arguments, defaults and initialisation as :class:`Conv2d`, with one spatial axis.

    Shapes:
        x: ``(N, in_channels, L)`` or ``(in_channels, L)`` -> y: ``(N, out_channels, L_out)``
        (or ``(out_channels, L_out)``).
    """

    num_spatial: ClassVar[int] = 1


@attrs.frozen
class Conv2d(_ConvNd):
    """2-d convolution (cross-correlation, as torch) over ``(N, C, H, W)``.

    Equivalent to ``torch.nn.Conv2d``, with the same default initialisation
    (kaiming-uniform with ``a = sqrt(5)``, i.e. ``U(+-1/sqrt(fan_in))`` for the
    weight and the bias, ``fan_in = in_channels / groups * kH * kW``).

    Args:
        in_channels: ``C`` of the input.
        out_channels: ``C`` of the output.
        kernel_size: ``k`` or ``(kH, kW)``.
        stride: ``s`` or ``(sH, sW)``.
        padding: ``p``, ``(pH, pW)``, ``'valid'`` (no padding) or ``'same'`` (output size =
            input size; stride 1 only; an odd total padding puts the extra one on the
            right/bottom, as torch).
        dilation: ``d`` or ``(dH, dW)``: spacing of the kernel taps.
        groups: split channels into this many independent groups (``groups=in_channels``
            is a depthwise convolution); both channel counts must be divisible by it.
        bias: whether to learn an additive bias.
        padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
        dtype: NumPy float dtype of the parameters (float32 by default).

    Shapes:
        x: ``(N, in_channels, H, W)`` or ``(in_channels, H, W)`` -> y: ``(N, out_channels, H_out, W_out)``
        (or unbatched), with ``H_out = (H + pH_lo + pH_hi - dH * (kH - 1) - 1) // sH + 1``.
        Params: weight ``(out_channels, in_channels // groups, kH, kW)``, bias ``(out_channels,)``.
    """

    num_spatial: ClassVar[int] = 2


# ------------------------------------------------------------ transposed convolution
def conv_transpose(x: Array, weight: Array, bias: Array | None, win: Windows, groups: int = 1,
                   layout: str | None = None) -> tuple[Array, Any]:
    """The N-d transposed convolution of a batch, as the adjoint of :func:`conv`; no validation.

    ``win`` is the geometry of the convolution whose input gradient this is: its
    ``size`` is ``y``'s spatial size and its ``out`` is ``x``'s. The forward pass is that
    convolution's col2im (:func:`_col2im_channels_last` or
    :func:`_col2im_channels_first`); the vjp runs the convolution itself on ``dy``
    (``dx``) and its weight gradient with ``x`` as the cotangent (``dweight``).

    Args:
        x: ``(N, C_in, *win.out)``.
        weight: ``(C_in, C_out // groups, *kernel)``.
        bias: ``(C_out,)`` or ``None``.
        win: as above (zero padding).
        groups: the number of channel groups.
        layout: one of :data:`LAYOUTS` for the convolution of the vjp (the forward runs
            channels-last for ``shifted``); ``None`` chooses by :func:`choose_layout`.

    Returns:
        ``y`` of shape ``(N, C_out, *win.size)`` and ``vjp(dy, need_dx=True) -> (dweight,
        dbias, dx)``.
    """
    xp = array_module(x, weight)
    G = groups
    N, Cin = x.shape[:2]
    Cout = weight.shape[1] * G
    if layout is None:
        layout = choose_layout(weight.shape[1], win, "zeros")
    if layout == "channels_first":
        P = math.prod(x.shape[2:])  # not -1: an empty batch has no size to infer from
        y = _col2im_channels_first(xp.reshape(x, (N, G, Cin // G, P)), weight, win, Cout, "zeros")
    else:
        y = _col2im_channels_last(_channels_last(x, G), weight, win, N, Cout, "zeros")
    if bias is not None:
        y += xp.reshape(bias, (Cout,) + (1,) * win.ndim)  # y is a fresh array

    def vjp(dy: Array, need_dx: bool = True) -> tuple[Array, Array | None, Array | None]:
        dx, conv_vjp = conv(dy, weight, None, win, G, "zeros", layout)
        dW, _, _ = conv_vjp(x, need_dx=False)
        db = None if bias is None else xp.sum(dy, axis=(0, *range(2, dy.ndim)))
        return dW, db, dx if need_dx else None

    return y, vjp


@attrs.frozen
class _ConvTransposeNd(Layer):
    """The N-d transposed convolution; subclasses fix ``num_spatial``. See :class:`ConvTranspose2d`."""

    num_spatial: ClassVar[int] = 2
    params_class = ConvParams

    in_channels: int = int_field()
    out_channels: int = int_field()
    kernel_size: tuple[int, ...] = ntuple_field(_spatial)
    stride: tuple[int, ...] = ntuple_field(_spatial, default=1)
    padding: tuple[int, ...] = ntuple_field(_spatial, minimum=0, default=0)
    output_padding: tuple[int, ...] = ntuple_field(_spatial, minimum=0, default=0)
    groups: int = int_field(default=1)
    bias: bool = bool_field(default=True)
    dilation: tuple[int, ...] = ntuple_field(_spatial, default=1)
    padding_mode: str = choice_field(("zeros",), default="zeros")
    dtype: np.dtype = dtype_field()

    def __attrs_post_init__(self) -> None:
        if self.in_channels % self.groups or self.out_channels % self.groups:
            msg = (f"{self.name}: in_channels and out_channels must both be divisible by groups, "
                   f"got groups={self.groups}")
            raise ValueError(msg)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation, strict=True):
            if op >= s and op >= d:
                msg = (f"{self.name}: output_padding must be smaller than either stride or dilation (as in "
                       f"torch), got output_padding={self.output_padding!r}, stride={self.stride!r}, "
                       f"dilation={self.dilation!r}")
                raise ValueError(msg)

    # ------------------------------------------------------------------ shapes
    def windows(self, input_shape: tuple[int, ...]) -> Windows:
        """The geometry of the adjoint convolution (``size``: the output's, ``out``: the input's).

        The family's shape helper: :meth:`output_shape`, ``apply`` and the tests use it.
        ``size = (L - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``.
        """
        d, shape = self.num_spatial, tuple(input_shape)
        if len(shape) not in (d + 1, d + 2) or shape[-d - 1] != self.in_channels:
            msg = f"{self.name}: expected input of shape {input_pattern(self.in_channels, d)}, got {shape}"
            raise ValueError(msg)
        size_in = shape[-d:]
        size = tuple((n - 1) * s - 2 * p + dl * (k - 1) + op + 1
                     for n, s, p, dl, k, op in zip(size_in, self.stride, self.padding, self.dilation,
                                                   self.kernel_size, self.output_padding, strict=True))
        if any(n < 1 for n in size_in) or any(n < 1 for n in size):
            msg = (f"{self.name}: input of shape {shape} gives an output of spatial size {size}; "
                   f"expected every size >= 1")
            raise ValueError(msg)
        return Windows(size, self.kernel_size, self.stride, self.dilation, self.padding, self.padding,
                       size_in)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, in_channels, *size) -> (N, out_channels, *out)``; the batch axis is optional."""
        win = self.windows(input_shape)
        return (*tuple(input_shape)[:-self.num_spatial - 1], self.out_channels, *win.size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """``(in_channels, out_channels // groups, *kernel_size)``."""
        return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)

    # -------------------------------------------------------------------- init
    def init(self, key: Key) -> ConvParams:
        """torch's default: weight and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

        torch computes ``fan_in`` from the weight's second axis:
        ``fan_in = out_channels // groups * prod(kernel_size)``.
        """
        return _init_conv_params(self, key, self.out_channels // self.groups * math.prod(self.kernel_size))

    # ------------------------------------------------------------------- apply
    def _apply(self, params: ConvParams, x: Any, *, need_dx: bool = True) -> tuple[Array, VJP]:
        return _apply_batched(self, params, x, need_dx,
                              lambda xb, W, b, win: conv_transpose(xb, W, b, win, self.groups))


@attrs.frozen
class ConvTranspose1d(_ConvTransposeNd):
    """1-d transposed convolution over ``(N, C, L)``. Equivalent to ``torch.nn.ConvTranspose1d``.

    Arguments, defaults and initialisation as :class:`ConvTranspose2d`, with one spatial axis.

    Shapes:
        x: ``(N, in_channels, L)`` or ``(in_channels, L)`` -> y: ``(N, out_channels, L_out)``
        (or ``(out_channels, L_out)``).
    """

    num_spatial: ClassVar[int] = 1


@attrs.frozen
class ConvTranspose2d(_ConvTransposeNd):
    """2-d transposed convolution (the adjoint of :class:`Conv2d`) over ``(N, C, H, W)``.

    Equivalent to ``torch.nn.ConvTranspose2d``, with the same arguments (in torch's
    order), the same weight layout and the same default initialisation
    (``U(+-1/sqrt(fan_in))`` for weight and bias, ``fan_in = out_channels / groups * kH * kW``).
    It is written as the input gradient of the convolution with the same geometry,
    and its vjp runs that convolution (see :func:`conv_transpose`).

    Args:
        in_channels: ``C`` of the input.
        out_channels: ``C`` of the output.
        kernel_size: ``k`` or ``(kH, kW)``.
        stride: ``s`` or ``(sH, sW)``.
        padding: ``p`` or ``(pH, pW)``: ``dilation * (kernel_size - 1) - padding`` zeros are
            (in effect) added to both sides of the input.
        output_padding: extra size added to one side of the output (smaller than the
            stride or the dilation), to pick among the input sizes a strided
            convolution maps to the same output size.
        groups: split channels into this many independent groups.
        bias: whether to learn an additive bias.
        dilation: ``d`` or ``(dH, dW)``: spacing of the kernel taps.
        padding_mode: only ``'zeros'`` (as torch).
        dtype: NumPy float dtype of the parameters (float32 by default).

    Shapes:
        x: ``(N, in_channels, H, W)`` or ``(in_channels, H, W)`` -> y: ``(N, out_channels, H_out, W_out)``
        (or unbatched), with ``H_out = (H - 1) * sH - 2 * pH + dH * (kH - 1) + output_padding_H + 1``.
        Params: weight ``(in_channels, out_channels // groups, kH, kW)``, bias ``(out_channels,)``.
    """

    num_spatial: ClassVar[int] = 2

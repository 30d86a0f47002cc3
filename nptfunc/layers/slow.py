"""Deliberately slow loop versions of Conv2d and MaxPool2d: readable references.

They spell out the definitions one output element at a time, with Python loops
over batch, channels and pixels, and take nothing from the fast path but the
hyperparameters, the initialisation and the shape helper (inherited). The tests
use them as a second oracle next to torch, on small inputs; do not train with
them.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from nptfunc._types import VJP, Array
from nptfunc.layers._windows import PADDING_MODES
from nptfunc.layers.conv import Conv2d, ConvParams
from nptfunc.layers.pooling import MaxPool2d

__all__ = ["SlowConv2d", "SlowMaxPool2d"]


@attrs.frozen
class SlowConv2d(Conv2d):
    """:class:`Conv2d` computed by explicit loops (a readable reference, very slow).

    ``y[n, o, i, j] = bias[o] + sum_{c, p, q} x_pad[n, g*Cg + c, i*sH + p*dH, j*sW + q*dW]
    * weight[o, c, p, q]``
    where ``g = o // (out_channels // groups)`` is the output channel's group and
    ``x_pad`` the padded input. Equivalent to ``torch.nn.Conv2d``.
    """

    def _apply(self, params: ConvParams, x: Any) -> tuple[Array, VJP]:
        W, b = np.asarray(params.weight), params.bias
        win = self.windows(x.shape)
        unbatched = x.ndim == 3
        xb = x[None] if unbatched else x
        N, _, H, Wd = xb.shape
        Cout, Cg, kH, kW = W.shape
        Og = Cout // self.groups
        (sH, sW), (dH, dW), (Ho, Wo) = win.stride, win.dilation, win.out
        widths = ((0, 0), (0, 0), (win.pad_lo[0], win.pad_hi[0]), (win.pad_lo[1], win.pad_hi[1]))
        x_pad = np.pad(xb, widths, mode=PADDING_MODES[self.padding_mode])

        def patch(a: Array, n: int, o: int, i: int, j: int) -> Array:
            """The window of output ``(n, o, i, j)`` in an array shaped like ``x_pad`` (a view)."""
            g = o // Og
            return a[n, g * Cg:(g + 1) * Cg, i * sH:i * sH + (kH - 1) * dH + 1:dH,
                     j * sW:j * sW + (kW - 1) * dW + 1:dW]

        y = np.zeros((N, Cout, Ho, Wo), dtype=xb.dtype)
        for n in range(N):
            for o in range(Cout):
                for i in range(Ho):
                    for j in range(Wo):
                        y[n, o, i, j] = np.sum(patch(x_pad, n, o, i, j) * W[o])
                        if b is not None:
                            y[n, o, i, j] += b[o]
        if unbatched:
            y = y[0]

        def vjp(dy: Array) -> tuple[ConvParams, Array]:
            dy = np.asarray(dy)
            dyb = dy[None] if unbatched else dy
            dW_ = np.zeros_like(W)
            dx_pad = np.zeros_like(x_pad)
            for n in range(N):
                for o in range(Cout):
                    for i in range(Ho):
                        for j in range(Wo):
                            dW_[o] += dyb[n, o, i, j] * patch(x_pad, n, o, i, j)
                            patch(dx_pad, n, o, i, j)[...] += dyb[n, o, i, j] * W[o]
            # every padded position copies one input position: send its gradient there
            src_h = np.pad(np.arange(H), widths[2], mode=PADDING_MODES[self.padding_mode])
            src_w = np.pad(np.arange(Wd), widths[3], mode=PADDING_MODES[self.padding_mode])
            dx = np.zeros_like(xb)
            for p in range(x_pad.shape[2]):
                for q in range(x_pad.shape[3]):
                    inside = (win.pad_lo[0] <= p < win.pad_lo[0] + H
                              and win.pad_lo[1] <= q < win.pad_lo[1] + Wd)
                    if inside or self.padding_mode != "zeros":
                        dx[:, :, src_h[p], src_w[q]] += dx_pad[:, :, p, q]
            db = dyb.sum(axis=(0, 2, 3)) if b is not None else None
            return ConvParams(dW_, db), dx[0] if unbatched else dx

        return y, vjp


@attrs.frozen
class SlowMaxPool2d(MaxPool2d):
    """:class:`MaxPool2d` computed by explicit loops: torch's CPU kernel, line by line.

    Each window is scanned in row-major order over its in-bounds elements, starting
    from ``max = -inf`` at the first in-bounds element; the maximum moves on
    ``value > max or isnan(value)``. The gradient goes to the element where it
    stopped. Equivalent to ``torch.nn.MaxPool2d``.
    """

    def _apply(self, params: None, x: Any) -> tuple[Array, VJP]:
        x = np.asarray(x)
        win = self.windows(x.shape)
        lead, (H, W) = x.shape[:-2], x.shape[-2:]
        xs = x.reshape(-1, H, W)
        (kH, kW), (sH, sW), (dH, dW), (pH, pW), (Ho, Wo) = (win.kernel, win.stride, win.dilation,
                                                           win.pad_lo, win.out)
        y = np.empty((xs.shape[0], Ho, Wo), dtype=x.dtype)
        argmax = np.empty((xs.shape[0], Ho, Wo, 2), dtype=np.int64)
        for m in range(xs.shape[0]):
            for i in range(Ho):
                for j in range(Wo):
                    rows = [r for r in range(i * sH - pH, i * sH - pH + (kH - 1) * dH + 1, dH) if 0 <= r < H]
                    cols = [c for c in range(j * sW - pW, j * sW - pW + (kW - 1) * dW + 1, dW) if 0 <= c < W]
                    best, where = -math.inf, (rows[0], cols[0])
                    for r in rows:
                        for c in cols:
                            v = xs[m, r, c]
                            if v > best or math.isnan(v):
                                best, where = v, (r, c)
                    y[m, i, j] = best
                    argmax[m, i, j] = where
        y = y.reshape(*lead, Ho, Wo)

        def vjp(dy: Array) -> tuple[None, Array]:
            dys = np.asarray(dy).reshape(-1, Ho, Wo)
            dx = np.zeros_like(xs)
            for m in range(xs.shape[0]):
                for i in range(Ho):
                    for j in range(Wo):
                        r, c = argmax[m, i, j]
                        dx[m, r, c] += dys[m, i, j]
            return None, dx.reshape(x.shape)

        return y, vjp

"""Normalisation layers: BatchNorm (running statistics as explicit state), LayerNorm, GroupNorm.

All three standardise the input over a set of axes and then scale and shift it
per feature; they differ only in the axes and in how the weight broadcasts:

=============  ==============================  ===================================
layer          normalised over                 weight and bias
=============  ==============================  ===================================
BatchNorm      ``N`` and the spatial axes      ``(C,)``, broadcast as ``(1, C, 1, ...)``
LayerNorm      the trailing ``normalized_shape``  ``normalized_shape``
GroupNorm      each sample's ``C/G`` channels  ``(C,)``, broadcast as ``(1, C, 1, ...)``
               of a group, and spatial axes
=============  ==============================  ===================================

So there is one core, :func:`_normalize`: ``x_hat = (x - mean) / sqrt(var + eps)``
with the biased variance, whose vjp for ``g = dL/dx_hat`` is

    ``dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps)``

(means over the normalised axes), and one helper, :func:`_scale_shift`, for
``y = x_hat * weight + bias`` and its gradients. Evaluation-mode BatchNorm is an
affine map of the running statistics and uses the same helper with
``dx = g / sqrt(running_var + eps)``.

BatchNorm's state is :class:`BatchNormState` (torch's buffer names); a call
returns a new state and never touches the old one. With
``track_running_stats=False`` there are no buffers: the layer is stateless, its
state is ``None`` and it always uses batch statistics, as torch's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import attrs
import numpy as np

from nptfunc import distributed
from nptfunc._types import VJP, Array
from nptfunc._validate import check_int
from nptfunc.backend import array_module, parallel_for, scratch
from nptfunc.layers.base import Layer, bool_field, dtype_field, int_field, param_field, real_field
from nptfunc.random import Key

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormParams",
    "BatchNormState",
    "GroupNorm",
    "GroupNormParams",
    "LayerNorm",
    "LayerNormParams",
    "SyncBatchNorm",
]


# ------------------------------------------------------------------ params and state
@attrs.frozen
class _AffineParams:
    weight: Array = param_field()
    bias: Array | None = param_field(default=None)


@attrs.frozen
class BatchNormParams(_AffineParams):
    """Parameters of :class:`BatchNorm1d`, :class:`BatchNorm2d`, :class:`BatchNorm3d`.

    Attributes:
        weight: ``(num_features,)``, ones at init.
        bias: ``(num_features,)``, zeros at init.
    """


@attrs.frozen
class LayerNormParams(_AffineParams):
    """Parameters of :class:`LayerNorm`.

    Attributes:
        weight: ``normalized_shape``, ones at init.
        bias: ``normalized_shape``, zeros at init, or ``None`` (``bias=False``).
    """


@attrs.frozen
class GroupNormParams(_AffineParams):
    """Parameters of :class:`GroupNorm`.

    Attributes:
        weight: ``(num_channels,)``, ones at init.
        bias: ``(num_channels,)``, zeros at init.
    """


@attrs.frozen
class BatchNormState:
    """The running statistics of a BatchNorm layer, with torch's buffer names.

    Attributes:
        running_mean: ``(num_features,)``, the layer's dtype; zeros at init.
        running_var: ``(num_features,)``, the layer's dtype; ones at init. Updated with
            the unbiased batch variance, as torch's.
        num_batches_tracked: a 0-d ``int64`` array (torch's 0-d int64 buffer), the number
            of training calls so far.
    """

    running_mean: Array = param_field()
    running_var: Array = param_field()
    num_batches_tracked: Array = param_field()


# --------------------------------------------------------------------- validation
def _eps_field() -> Any:
    return real_field(low=0.0, low_open=True, default=1e-5)


def _affine(attribute: str) -> Any:
    """A ``has_params`` property: whether the hyperparameter ``attribute`` (the affine map) is on."""
    return property(lambda self: getattr(self, attribute))


def _check_affine_params(owner: str, params: Any, shape: tuple[int, ...], has_bias: bool = True) -> None:
    """The shapes of an affine params' weight and bias (their class is checked by ``Layer.apply``)."""
    if params is None:
        return
    for name, value in (("weight", params.weight), ("bias", params.bias)):
        if name == "bias" and not has_bias:
            if value is not None:
                msg = f"{owner}: was built with bias=False, expected params.bias None, got an array"
                raise TypeError(msg)
            continue
        if value is None or tuple(value.shape) != shape:
            got = None if value is None else tuple(value.shape)
            msg = f"{owner}: expected params.{name} of shape {shape}, got {got}"
            raise ValueError(msg)


# ------------------------------------------------------------------------ the core
def _normalize(x: Array, axes: tuple[int, ...], eps: float) -> tuple[Array, Array, Array,
                                                                      Callable[[Array], Array]]:
    """Standardise ``x`` over ``axes`` with its own (biased) statistics.

    Returns:
        ``(x_hat, mean, var, dx_from_g)``: ``mean`` and ``var`` keep the reduced axes
        (size 1); ``dx_from_g(g)`` maps ``g = dL/dx_hat`` to ``dL/dx``.
    """
    xp = array_module(x)
    if x.size == 0:
        stat_shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
        zeros = xp.zeros(stat_shape, dtype=x.dtype)
        return xp.zeros_like(x), zeros, zeros, xp.zeros_like
    mean = x.mean(axis=axes, keepdims=True)
    x_hat = x - mean
    var = (x_hat * x_hat).mean(axis=axes, keepdims=True)
    inv_std = 1 / xp.sqrt(var + eps)
    x_hat *= inv_std  # x_hat is our own fresh array

    def dx_from_g(g: Array) -> Array:
        return inv_std * (g - g.mean(axis=axes, keepdims=True)
                          - x_hat * (g * x_hat).mean(axis=axes, keepdims=True))

    return x_hat, mean, var, dx_from_g


def _scale_shift(owner: str, params_class: type, params: _AffineParams | None, x_hat: Array,
                 broadcast_shape: tuple[int, ...], sum_axes: tuple[int, ...],
                 dx_from_g: Callable[[Array], Array]) -> tuple[Array, VJP]:
    """``y = x_hat * weight + bias`` (weight and bias reshaped to ``broadcast_shape``).

    The vjp sums ``dy * x_hat`` and ``dy`` over ``sum_axes`` for the parameter
    gradients and gives ``dx = dx_from_g(dy * weight)``.
    """
    xp = array_module(x_hat)
    weight = None if params is None else params.weight
    bias = None if params is None else params.bias
    w = None if weight is None else xp.reshape(weight, broadcast_shape)
    b = None if bias is None else xp.reshape(bias, broadcast_shape)
    if w is None:
        y = x_hat if b is None else x_hat + b
    else:
        y = x_hat * w
        if b is not None:
            y += b  # y is our own fresh array

    def vjp(dy: Array) -> tuple[Any, Array]:
        dx = dx_from_g(dy if w is None else dy * w)
        return (None if params is None else _affine_grads(params_class, params, dy, x_hat, sum_axes)), dx

    return y, vjp


def _affine_grads(params_class: type, params: _AffineParams, dy: Array, x_hat: Array | None,
                  sum_axes: tuple[int, ...]) -> Any:
    """The params' gradients of ``y = x_hat * weight + bias``: ``dy * x_hat`` and ``dy``, summed.

    Sums over ``sum_axes``; ``x_hat`` may be ``None`` when there is no weight.
    """
    xp = array_module(dy)
    weight, bias = params.weight, params.bias
    dweight = None if weight is None else xp.reshape((dy * x_hat).sum(axis=sum_axes), weight.shape)
    dbias = None if bias is None else xp.reshape(dy.sum(axis=sum_axes), bias.shape)
    return params_class(dweight, dbias)


# ----------------------------------------------------------------------- BatchNorm
def _batch_norm(owner: str, params: BatchNormParams | None, x: Array,
                eps: float) -> tuple[Array, VJP, Array, Array]:
    """Training-mode BatchNorm of non-empty ``(N, C, *spatial)`` input: ``y, vjp, mean, var``.

    The same maths as :func:`_normalize` and :func:`_scale_shift`, in fewer passes:
    the weight is constant over the normalised axes, so the two means of
    ``g = dy * weight`` in the core's vjp become per-channel sums of ``dy`` and of
    ``dy * (x - mean)``; with ``scale = weight / sqrt(var + eps)``

        ``dx = scale * (dy - sum(dy) / n) - (x - mean) * scale * sum(dy * (x - mean)) / (n * (var + eps))``.

    The per-channel sums are ``einsum`` reductions over a ``(N, C, P)`` view (3x
    faster than ``sum`` over axes 0 and 2, and as accurate). The mean is taken in two
    steps, a first estimate ``m0`` and the mean ``r`` of ``x - m0``: for data far from
    zero, ``x - m0`` is exact and ``m0 + r`` is much more accurate than ``m0`` in
    float32 (on data of mean 20 and std 0.5, ``dweight``'s error falls from 4e-4 to
    6e-6; torch, which accumulates in float64, has 1.4e-4). Only ``x - m0`` is
    stored, and ``r`` is folded into the per-channel coefficients. ``mean`` and the
    biased ``var`` come back shaped ``(1, C, 1, ...)``.
    """
    xp = array_module(x)
    N, C = x.shape[:2]
    bshape = (1, C) + (1,) * (x.ndim - 2)
    x3 = xp.reshape(x, (N, C, -1))
    n = x3.shape[0] * x3.shape[2]
    weight = None if params is None else params.weight
    bias = None if params is None else params.bias
    xc, y = scratch.empty(xp, x3.shape, x.dtype), xp.empty(x3.shape, dtype=x.dtype)  # xc: the vjp's
    m0, r, var, inv_std, scale, shift = xp.empty((6, C), dtype=x.dtype)

    def forward(lo: int, hi: int) -> None:  # channels lo:hi (chunks run on several threads)
        c = slice(lo, hi)
        m0[c] = xp.einsum("ncp->c", x3[:, c]) / n
        xp.subtract(x3[:, c], m0[c, None], out=xc[:, c])
        r[c] = xp.einsum("ncp->c", xc[:, c]) / n  # mean = m0 + r
        var[c] = xp.einsum("ncp,ncp->c", xc[:, c], xc[:, c]) / n - r[c] * r[c]
        inv_std[c] = 1 / xp.sqrt(var[c] + eps)
        scale[c] = inv_std[c] if weight is None else inv_std[c] * weight[c]
        shift[c] = -r[c] * scale[c] if bias is None else bias[c] - r[c] * scale[c]
        xp.multiply(xc[:, c], scale[c, None], out=y[:, c])
        y[:, c] += shift[c, None]

    parallel_for(C, forward, n)

    def vjp(dy: Array) -> tuple[BatchNormParams | None, Array]:
        d3 = xp.reshape(dy, (N, C, -1))
        dx, tmp = xp.empty(x3.shape, dtype=dy.dtype), scratch.empty(xp, x3.shape, dy.dtype)
        sum_dy, sum_dy_xc = xp.empty((2, C), dtype=dy.dtype)

        def backward(lo: int, hi: int) -> None:
            c = slice(lo, hi)
            sum_dy[c] = xp.einsum("ncp->c", d3[:, c])
            # sum(dy * (x - mean))
            sum_dy_xc[c] = xp.einsum("ncp,ncp->c", d3[:, c], xc[:, c]) - r[c] * sum_dy[c]
            k = scale[c] * inv_std[c] * inv_std[c] * sum_dy_xc[c] / n
            xp.multiply(d3[:, c], scale[c, None], out=dx[:, c])
            dx[:, c] -= xp.multiply(xc[:, c], k[:, None], out=tmp[:, c])  # no allocation in the chunk
            dx[:, c] += (r[c] * k - scale[c] * sum_dy[c] / n)[:, None]

        parallel_for(C, backward, n)
        scratch.release(tmp)
        dx = xp.reshape(dx, x.shape)
        if params is None:
            return None, dx
        return BatchNormParams(inv_std * sum_dy_xc, None if bias is None else sum_dy), dx

    scratch.release_with(vjp, xc)
    return xp.reshape(y, x.shape), vjp, xp.reshape(m0 + r, bshape), xp.reshape(var, bshape)


def _sync_batch_norm(owner: str, params: BatchNormParams | None, x: Array, eps: float,
                     comm: Any) -> tuple[Array, VJP, Array, Array, int]:
    """Training-mode BatchNorm with the statistics of the global batch, over every rank of ``comm``.

    One ``allreduce_sum`` of the per-channel sums of ``x`` and ``x * x`` and of the
    value count (a float64 buffer of ``2 C + 1``) gives the global mean and biased
    variance; the vjp makes one more, of the per-channel sums of ``dy`` and
    ``dy * (x - mean)``, and then is :func:`_batch_norm`'s with global sums. The
    parameter gradients are this rank's own sums, as torch's: data parallelism
    averages them with the other gradients. With one process this is
    :func:`_batch_norm` up to rounding: the sums are accumulated in float64, and
    the variance is the one-pass ``E[x^2] - E[x]^2``, which loses digits only for
    data far from zero relative to its spread.
    """
    xp = array_module(x)
    N, C = x.shape[:2]
    bshape = (1, C) + (1,) * (x.ndim - 2)
    x3 = xp.reshape(x, (N, C, -1))
    local = xp.empty(2 * C + 1, dtype=np.float64)
    local[:C] = xp.einsum("ncp->c", x3, dtype=np.float64)
    local[C:2 * C] = xp.einsum("ncp,ncp->c", x3, x3, dtype=np.float64)
    local[2 * C] = x3.shape[0] * x3.shape[2]
    total = distributed.allreduce_sum(local, comm=comm)
    n = int(total[2 * C])
    if n == 1:
        msg = (f"{owner}: expected more than 1 value per channel over all ranks when training "
               f"(batch statistics), got input of shape {tuple(x.shape)}")
        raise ValueError(msg)
    mean64 = total[:C] / max(n, 1)
    var64 = xp.maximum(total[C:2 * C] / max(n, 1) - mean64 * mean64, 0.0)
    mean, var = mean64.astype(x.dtype), var64.astype(x.dtype)
    inv_std = 1 / xp.sqrt(var + eps)
    weight = None if params is None else params.weight
    bias = None if params is None else params.bias
    scale = inv_std if weight is None else inv_std * weight
    xc = x3 - mean[:, None]
    y = xc * scale[:, None]
    if bias is not None:
        y += bias[:, None]  # y is our own fresh array

    def vjp(dy: Array) -> tuple[BatchNormParams | None, Array]:
        d3 = xp.reshape(dy, (N, C, -1))
        sums = xp.empty(2 * C, dtype=np.float64)
        sums[:C] = xp.einsum("ncp->c", d3, dtype=np.float64)
        sums[C:] = xp.einsum("ncp,ncp->c", d3, xc, dtype=np.float64)
        local_sum_dy, local_sum_dy_xc = sums[:C].astype(x.dtype), sums[C:].astype(x.dtype)
        total = distributed.allreduce_sum(sums, comm=comm) if n else sums
        sum_dy, sum_dy_xc = total[:C].astype(x.dtype), total[C:].astype(x.dtype)
        k = scale * inv_std * inv_std * sum_dy_xc / max(n, 1)
        dx = d3 * scale[:, None]
        dx -= xc * k[:, None]
        dx -= (scale * sum_dy / max(n, 1))[:, None]
        dx = xp.reshape(dx, x.shape)
        if params is None:
            return None, dx
        return BatchNormParams(inv_std * local_sum_dy_xc, None if bias is None else local_sum_dy), dx

    return xp.reshape(y, x.shape), vjp, xp.reshape(mean, bshape), xp.reshape(var, bshape), n


@attrs.frozen
class _BatchNorm(Layer):
    """Batch normalisation over the batch and spatial axes, per channel (axis 1).

    Subclasses only fix the input ranks (:attr:`ranks`) and their description.
    """

    ranks: ClassVar[tuple[int, ...]] = ()
    shape_text: ClassVar[str] = ""  # "(N, {C}, H, W)"

    state_class = BatchNormState

    num_features: int = int_field()
    eps: float = _eps_field()
    momentum: float | None = real_field(low=0.0, high=1.0, allow_none=True, default=0.1)
    affine: bool = bool_field(default=True)
    track_running_stats: bool = bool_field(default=True)
    dtype: np.dtype = dtype_field()

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        """True when the layer tracks running statistics (its state); else it has none."""
        return self.track_running_stats

    params_class = BatchNormParams
    has_params = _affine("affine")

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape, after checking its rank and channel count."""
        shape = tuple(input_shape)
        if len(shape) not in self.ranks or shape[1] != self.num_features:
            msg = (f"{self.name}: expected input of shape {self.shape_text.format(C=self.num_features)}, "
                   f"got {shape}")
            raise ValueError(msg)
        return shape

    def init(self, key: Key) -> BatchNormParams | None:
        """``weight`` ones and ``bias`` zeros, as torch; ``None`` when ``affine=False``."""
        if not self.affine:
            return None
        return BatchNormParams(np.ones(self.num_features, dtype=self.dtype),
                               np.zeros(self.num_features, dtype=self.dtype))

    def init_state(self, key: Key) -> BatchNormState | None:
        """Running mean zeros, running variance ones, no batches tracked (``None`` if not tracking)."""
        if not self.track_running_stats:
            return None
        return BatchNormState(np.zeros(self.num_features, dtype=self.dtype),
                              np.ones(self.num_features, dtype=self.dtype),
                              np.zeros((), dtype=np.int64))

    # ------------------------------------------------------------------ apply
    def _prepare(self, params: BatchNormParams | None, x: Any,
                 state: BatchNormState | None) -> tuple[Array, tuple[int, ...], tuple[int, ...]]:
        """Check everything; return ``x`` as an array, the reduced axes, the broadcast shape."""
        C = self.num_features
        _check_affine_params(self.name, params, (C,))
        self.output_shape(x.shape)
        if state is not None:
            for name in ("running_mean", "running_var"):
                value = getattr(state, name)
                if tuple(value.shape) != (C,):
                    msg = f"{self.name}: expected state.{name} of shape {(C,)}, got {tuple(value.shape)}"
                    raise ValueError(msg)
        axes = (0, *range(2, x.ndim))
        return x, axes, (1, C) + (1,) * (x.ndim - 2)

    def _check_batch(self, x: Array) -> None:
        if x.size // self.num_features == 1:
            msg = (f"{self.name}: expected more than 1 value per channel when training "
                   f"(batch statistics), got input of shape {tuple(x.shape)}")
            raise ValueError(msg)

    def _batch_stats(self, params: BatchNormParams | None, x: Array, axes: tuple[int, ...],
                     bshape: tuple[int, ...]) -> tuple[Array, VJP, Array, Array, int]:
        """Training-mode normalisation: ``(y, vjp, mean, var, n)``.

        ``mean`` and the biased ``var`` are the batch's, over ``n`` values per channel.
        """
        self._check_batch(x)
        if x.size:
            return (*_batch_norm(self.name, params, x, self.eps), x.size // self.num_features)
        x_hat, mean, var, dx_from_g = _normalize(x, axes, self.eps)
        y, vjp = _scale_shift(self.name, BatchNormParams, params, x_hat, bshape, axes, dx_from_g)
        return y, vjp, mean, var, 0

    def _apply(self, params: BatchNormParams | None, x: Any) -> tuple[Array, VJP]:
        """``track_running_stats=False``: batch statistics in training and evaluation alike."""
        x, axes, bshape = self._prepare(params, x, None)
        y, vjp, _, _, _ = self._batch_stats(params, x, axes, bshape)
        return y, vjp

    def _apply_stateful(self, params: BatchNormParams | None, x: Any, state: BatchNormState,
                        train: bool) -> tuple[Array, VJP, BatchNormState]:
        x, axes, bshape = self._prepare(params, x, state)
        xp = array_module(x)
        if train:
            y, vjp, mean, var, n = self._batch_stats(params, x, axes, bshape)
            return y, vjp, self._updated(state, n, mean, var)
        # torch's evaluation formula, y = x * alpha + beta with per-channel alpha = weight / std and
        # beta = bias - mean * alpha: two passes; x_hat (for the vjp's dweight) only when asked for
        inv_std = 1 / xp.sqrt(xp.reshape(state.running_var, bshape) + self.eps)
        mean = xp.reshape(state.running_mean, bshape)
        w = None if params is None or params.weight is None else xp.reshape(params.weight, bshape)
        b = None if params is None or params.bias is None else xp.reshape(params.bias, bshape)
        alpha = inv_std if w is None else inv_std * w
        beta = -mean * alpha if b is None else b - mean * alpha
        y = xp.empty(x.shape, dtype=x.dtype)

        def chunk(lo: int, hi: int) -> None:  # batch items lo:hi (chunks run on several threads)
            yc = y[lo:hi]
            xp.multiply(x[lo:hi], alpha, out=yc)
            yc += beta

        parallel_for(x.shape[0], chunk, math.prod(x.shape[1:]))

        def vjp(dy: Array) -> tuple[BatchNormParams | None, Array]:
            dx = dy * alpha
            if params is None:
                return None, dx
            x_hat = None if w is None else (x - mean) * inv_std
            return _affine_grads(BatchNormParams, params, dy, x_hat, axes), dx

        return y, vjp, state

    def _updated(self, state: BatchNormState, n: int, mean: Array, var: Array) -> BatchNormState:
        """The running statistics after one training batch of ``n`` values per channel (unbiased variance)."""
        xp = array_module(mean)
        count = xp.asarray(state.num_batches_tracked + 1, dtype=np.int64)
        if n == 0:  # torch leaves the statistics alone on an empty batch, but counts it
            return BatchNormState(state.running_mean, state.running_var, count)
        f = 1.0 / float(count) if self.momentum is None else self.momentum
        batch_mean = xp.reshape(mean, (self.num_features,))
        batch_var = xp.reshape(var, (self.num_features,)) * (n / (n - 1))
        return BatchNormState((1 - f) * state.running_mean + f * batch_mean,
                              (1 - f) * state.running_var + f * batch_var,
                              count)


@attrs.frozen
class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)`` input, per channel.

    Equivalent to ``torch.nn.BatchNorm1d``. In training, ``y = (x - mean) /
    sqrt(var + eps) * weight + bias`` with the batch's mean and biased variance
    over ``N`` (and ``L``), and the new state holds ``running = (1 - momentum) *
    running + momentum * batch`` (the unbiased batch variance for ``running_var``;
    ``momentum=None`` is the cumulative average ``1 / num_batches_tracked``). In
    evaluation the running statistics replace the batch's and the state is
    returned unchanged.

    Args:
        num_features: ``C``, the channel count.
        eps: added to the variance, > 0.
        momentum: in ``[0, 1]``, or ``None`` for the cumulative average.
        affine: learn ``weight`` and ``bias`` (params ``None`` otherwise).
        track_running_stats: keep running statistics as state; without them the
            layer is stateless and always uses batch statistics, as torch's.
        dtype: NumPy float dtype of params and state (float32 by default).

    Shapes:
        x: ``(N, C)`` or ``(N, C, L)`` -> y: the same. Training needs more than one
        value per channel (``N * L > 1``), as torch.

    Example:
        >>> from nptfunc import layers, random
        >>> import numpy as np
        >>> bn = layers.BatchNorm1d(3)
        >>> params, state = bn.init(random.key(0)), bn.init_state(random.key(1))
        >>> y, vjp, state = bn.apply(params, np.ones((4, 3), np.float32), state, train=True)
    """

    ranks = (2, 3)
    shape_text = "(N, {C}) or (N, {C}, L)"


@attrs.frozen
class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` input, per channel.

    Equivalent to ``torch.nn.BatchNorm2d``; see :class:`BatchNorm1d` for the math,
    the arguments and the state.

    Shapes:
        x: ``(N, C, H, W)`` -> y: the same.
    """

    ranks = (4,)
    shape_text = "(N, {C}, H, W)"


@attrs.frozen
class BatchNorm3d(_BatchNorm):
    """Batch normalisation of ``(N, C, D, H, W)`` input, per channel.

    Equivalent to ``torch.nn.BatchNorm3d``; see :class:`BatchNorm1d` for the math,
    the arguments and the state.

    Shapes:
        x: ``(N, C, D, H, W)`` -> y: the same.
    """

    ranks = (5,)
    shape_text = "(N, {C}, D, H, W)"


@attrs.frozen
class SyncBatchNorm(_BatchNorm):
    """Batch normalisation with the statistics of the global batch, over every MPI rank.

    Equivalent to ``torch.nn.SyncBatchNorm``: in training, the mean and variance
    per channel are those of the batches of all ranks together (one
    :func:`nptfunc.distributed.allreduce_sum` of the per-channel sums and squared
    sums in the forward, one of the sums of ``dy`` and ``dy * (x - mean)`` in the
    vjp), so ``y``, ``dx`` and the running statistics are those of a
    :class:`BatchNorm1d`/``2d``/``3d`` on the concatenated global batch, and the
    running statistics stay equal on every rank. The parameter gradients are each
    rank's own, to be averaged with the others (``allreduce_mean``). Evaluation
    uses the running statistics and no collective, as BatchNorm. In one process
    (no ``mpi4py``, or a world of one) it is a BatchNorm.

    Every rank must make the same training calls, as for any collective; without
    running statistics (``track_running_stats=False``) every call, in training and
    evaluation alike, is a collective.

    Args:
        num_features: ``C``, the channel count.
        eps: added to the variance, > 0.
        momentum: in ``[0, 1]``, or ``None`` for the cumulative average.
        affine: learn ``weight`` and ``bias``.
        track_running_stats: keep running statistics as state.
        dtype: NumPy float dtype of params and state (float32 by default).
        comm: the ``mpi4py`` communicator of the ranks that share statistics
            (torch's ``process_group``); ``None`` is the world.

    Shapes:
        x: ``(N, C, *)`` with any number of trailing axes, as torch -> y: the same.
    """

    shape_text = "(N, {C}, *)"

    comm: Any = attrs.field(default=None, kw_only=True, eq=False, repr=False)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape, after checking that it has at least 2 axes and ``num_features`` channels."""
        shape = tuple(input_shape)
        if len(shape) < 2 or shape[1] != self.num_features:
            msg = (f"{self.name}: expected input of shape {self.shape_text.format(C=self.num_features)}, "
                   f"got {shape}")
            raise ValueError(msg)
        return shape

    def _batch_stats(self, params: BatchNormParams | None, x: Array, axes: tuple[int, ...],
                     bshape: tuple[int, ...]) -> tuple[Array, VJP, Array, Array, int]:
        return _sync_batch_norm(self.name, params, x, self.eps, self.comm)


# ----------------------------------------------------------------------- LayerNorm
def _to_shape(value: int | Sequence[int]) -> tuple[int, ...]:
    dims = (value,) if isinstance(value, (int, np.integer)) else value
    try:
        shape = tuple(dims)
    except TypeError as e:
        msg = f"LayerNorm: expected normalized_shape to be an int or a tuple of ints, got {value!r}"
        raise TypeError(msg) from e
    if not shape:
        msg = "LayerNorm: expected normalized_shape to be a non-empty tuple of ints >= 1, got ()"
        raise ValueError(msg)
    return tuple(check_int("LayerNorm", "normalized_shape's entries", d) for d in shape)



@attrs.frozen
class LayerNorm(Layer):
    """Normalisation of each sample over its trailing ``normalized_shape`` axes.

    Equivalent to ``torch.nn.LayerNorm``: ``y = (x - mean) / sqrt(var + eps) *
    weight + bias``, mean and biased variance over the last
    ``len(normalized_shape)`` axes. Stateless; the same in training and evaluation.

    Args:
        normalized_shape: an int or a tuple of ints, the trailing shape of the input.
        eps: added to the variance, > 0.
        elementwise_affine: learn ``weight`` (and ``bias``) of shape
            ``normalized_shape``; params ``None`` otherwise.
        bias: learn ``bias`` too (``params.bias`` is ``None`` otherwise).
        dtype: NumPy float dtype of the params (float32 by default).

    Shapes:
        x: ``(..., *normalized_shape)`` -> y: the same.
    """

    params_class = LayerNormParams
    has_params = _affine("elementwise_affine")

    normalized_shape: tuple[int, ...] = attrs.field(converter=_to_shape)
    eps: float = _eps_field()
    elementwise_affine: bool = bool_field(default=True)
    bias: bool = bool_field(default=True)
    dtype: np.dtype = dtype_field()

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape, after checking its trailing axes."""
        shape, k = tuple(input_shape), len(self.normalized_shape)
        if len(shape) < k or shape[len(shape) - k:] != self.normalized_shape:
            dims = ", ".join(str(d) for d in self.normalized_shape)
            msg = f"{self.name}: expected input of shape (..., {dims}), got {shape}"
            raise ValueError(msg)
        return shape

    def init(self, key: Key) -> LayerNormParams | None:
        """``weight`` ones and ``bias`` zeros, as torch; ``None`` without ``elementwise_affine``."""
        if not self.elementwise_affine:
            return None
        shape = self.normalized_shape
        return LayerNormParams(np.ones(shape, dtype=self.dtype),
                               np.zeros(shape, dtype=self.dtype) if self.bias else None)

    def _apply(self, params: LayerNormParams | None, x: Any) -> tuple[Array, VJP]:
        _check_affine_params(self.name, params, self.normalized_shape, has_bias=self.bias)
        self.output_shape(x.shape)
        lead = x.ndim - len(self.normalized_shape)
        axes = tuple(range(lead, x.ndim))
        x_hat, _, _, dx_from_g = _normalize(x, axes, self.eps)
        return _scale_shift(self.name, LayerNormParams, params, x_hat, self.normalized_shape,
                            tuple(range(lead)), dx_from_g)


# ----------------------------------------------------------------------- GroupNorm
@attrs.frozen
class GroupNorm(Layer):
    """Normalisation of each sample over groups of channels (and the spatial axes).

    Equivalent to ``torch.nn.GroupNorm``: the ``C`` channels are split into
    ``num_groups`` groups of ``C / num_groups`` consecutive channels; each group of
    each sample is standardised with its own mean and biased variance, then scaled
    and shifted per channel. Stateless; the same in training and evaluation.
    ``num_groups=1`` normalises each sample over all its values; ``num_groups=C``
    is instance normalisation with a per-channel affine map.

    Args:
        num_groups: ``G``, dividing ``num_channels``.
        num_channels: ``C``.
        eps: added to the variance, > 0.
        affine: learn ``weight`` and ``bias`` of shape ``(C,)``; params ``None`` otherwise.
        dtype: NumPy float dtype of the params (float32 by default).

    Shapes:
        x: ``(N, C, *)`` -> y: the same.
    """

    params_class = GroupNormParams
    has_params = _affine("affine")

    num_groups: int = int_field()
    num_channels: int = int_field()
    eps: float = _eps_field()
    affine: bool = bool_field(default=True)
    dtype: np.dtype = dtype_field()

    def __attrs_post_init__(self) -> None:
        if self.num_channels % self.num_groups:
            msg = (f"GroupNorm: expected num_channels to be divisible by num_groups, "
                   f"got num_channels={self.num_channels}, num_groups={self.num_groups}")
            raise ValueError(msg)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape, after checking its rank and channel count."""
        shape = tuple(input_shape)
        if len(shape) < 2 or shape[1] != self.num_channels:
            msg = f"{self.name}: expected input of shape (N, {self.num_channels}, *), got {shape}"
            raise ValueError(msg)
        return shape

    def init(self, key: Key) -> GroupNormParams | None:
        """``weight`` ones and ``bias`` zeros, as torch; ``None`` when ``affine=False``."""
        if not self.affine:
            return None
        return GroupNormParams(np.ones(self.num_channels, dtype=self.dtype),
                               np.zeros(self.num_channels, dtype=self.dtype))

    def _apply(self, params: GroupNormParams | None, x: Any) -> tuple[Array, VJP]:
        C, G = self.num_channels, self.num_groups
        _check_affine_params(self.name, params, (C,))
        self.output_shape(x.shape)
        xp = array_module(x)
        grouped = (x.shape[0], G, (C // G) * math.prod(x.shape[2:]))
        xg_hat, _, _, dg_from_g = _normalize(xp.reshape(x, grouped), (2,), self.eps)

        def dx_from_g(g: Array) -> Array:
            return xp.reshape(dg_from_g(xp.reshape(g, grouped)), x.shape)

        bshape = (1, C) + (1,) * (x.ndim - 2)
        return _scale_shift(self.name, GroupNormParams, params, xp.reshape(xg_hat, x.shape), bshape,
                            (0, *range(2, x.ndim)), dx_from_g)

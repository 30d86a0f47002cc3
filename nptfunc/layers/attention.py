"""Attention: the functional scaled dot-product attention and the multi-head attention layer.

One core, :func:`_attend`, computes ``softmax(q k^T * scale + bias) v`` over stacked
matrices (batched matmuls: no loop over batch or heads) and its vjp; the public
:func:`scaled_dot_product_attention` and :class:`MultiheadAttention` both call it.

The vjp of the softmax, with ``P`` the (dropped-out) weights and ``dP = dy v^T``::

    dS = P * (dP - sum(dP * P, -1)),   dq = dS k * scale,   dk = dS^T q * scale,   dv = P^T dy

Masks follow torch, and torch's two functions disagree on what a boolean ``True``
means: for :func:`scaled_dot_product_attention` it marks a position that *takes part*
in attention; for :class:`MultiheadAttention` (``attn_mask``, ``key_padding_mask``) it
marks a position that is *masked out*. A floating mask is added to the scores in both.

A row whose keys are all masked out gives what torch gives: zeros (output and
gradients) in :func:`scaled_dot_product_attention` and in :class:`MultiheadAttention`
with ``need_weights=False`` (torch calls its scaled dot-product attention there), NaN
with ``need_weights=True`` (torch's plain softmax).

Dropout: :func:`scaled_dot_product_attention` takes a ``key`` when ``dropout_p > 0``.
:class:`MultiheadAttention` with ``dropout > 0`` is stateful like
:class:`nptfunc.layers.Dropout`: its state is a :class:`~nptfunc.layers.DropoutState`
whose key each training call advances; with ``dropout == 0`` it is stateless.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from nptfunc import random
from nptfunc._types import VJP, Array
from nptfunc._validate import check_bool, check_real
from nptfunc.backend import array_module, matmul
from nptfunc.layers.base import Layer, bool_field, dtype_field, int_field, param_field, probability_field
from nptfunc.layers.dropout import DropoutState, _advance
from nptfunc.layers.initializers import torch_default_weight
from nptfunc.layers.linear import LinearParams
from nptfunc.random import Key

__all__ = ["MultiheadAttention", "MultiheadAttentionParams", "scaled_dot_product_attention"]


# ------------------------------------------------------------------------ the core
def _softmax_(s: Array, safe: bool) -> Array:
    """Softmax over the last axis, in place in ``s`` (a fresh array), shifted by the row's max.

    A row of only ``-inf`` gives zeros when ``safe`` (torch's scaled dot-product
    attention), NaN otherwise (torch's ``softmax``).
    """
    xp = array_module(s)
    if s.shape[-1] == 0:  # no keys: empty weights, a zero output (as torch's)
        return s
    m = s.max(axis=-1, keepdims=True)
    finite = xp.isfinite(m)
    if not finite.all():
        m[~finite] = 0  # exp(-inf - 0) = 0: the row's sum is 0 below
    s -= m
    xp.exp(s, out=s)
    total = s.sum(axis=-1, keepdims=True)
    if safe:
        total[total == 0] = 1
    with np.errstate(invalid="ignore", divide="ignore"):
        s /= total
    return s


def _attend(q: Array, k: Array, v: Array, bias: Array | None, scale: float, *, safe: bool,
            drop: Array | None) -> tuple[Array, Array, Any]:
    """``y = dropout(softmax(q k^T scale + bias)) v`` over stacked matrices.

    Args:
        q: ``(..., L, E)``.
        k: ``(..., S, E)``, the same leading axes.
        v: ``(..., S, Ev)``, the same leading axes.
        bias: additive, broadcastable to ``(..., L, S)``, or None.
        scale: the factor of the scores.
        safe: fully masked rows give zeros (else NaN).
        drop: the dropout multiplier (``keep / (1 - p)``) of shape ``(..., L, S)``, or None.

    Returns:
        ``(y, weights, vjp)``: ``weights`` the (dropped-out) attention weights
        ``(..., L, S)``; ``vjp(dy, dweights=None) -> (dq, dk, dv)``.
    """
    xp = array_module(q, k, v)
    s = matmul(q * scale, xp.swapaxes(k, -1, -2))
    if bias is not None:
        s += bias
    p = _softmax_(s, safe)
    pd = p if drop is None else p * drop
    y = matmul(pd, v)

    def vjp(dy: Array, dweights: Array | None = None) -> tuple[Array, Array, Array]:
        dv = matmul(xp.swapaxes(pd, -1, -2), dy)
        ds = matmul(dy, xp.swapaxes(v, -1, -2))  # d(pd), then dp, then ds, in place
        if dweights is not None:
            ds += dweights
        if drop is not None:
            ds *= drop
        with np.errstate(invalid="ignore"):  # NaN rows (need_weights with a fully masked row) stay NaN
            ds -= (ds * p).sum(axis=-1, keepdims=True)
            ds *= p
        ds *= scale
        return matmul(ds, k), matmul(xp.swapaxes(ds, -1, -2), q), dv

    return y, pd, vjp


def _dropout_multiplier(key: Key, p: float, shape: tuple[int, ...], dtype: Any) -> Array:
    """``keep / (1 - p)`` in ``dtype`` (zeros when ``p == 1``), as torch's dropout."""
    if p == 1:
        return np.zeros(shape, dtype=dtype)
    return np.asarray(random.bernoulli(key, 1 - p, shape), dtype=dtype) / np.asarray(1 - p, dtype=dtype)


def _causal(L: int, S: int, dtype: Any) -> Array:
    """The additive causal mask of torch: ``-inf`` above the diagonal of ``(L, S)`` (top-left aligned)."""
    return np.where(np.tri(L, S, dtype=bool), 0, -np.inf).astype(dtype)


# ------------------------------------------------------------------ the function
def scaled_dot_product_attention(q: Array, k: Array, v: Array, *, attn_mask: Array | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None,
                                 key: Key | None = None) -> tuple[Array, VJP]:
    """``softmax(q k^T * scale + mask) v`` with its vjp.

    Equivalent to ``torch.nn.functional.scaled_dot_product_attention`` (without
    ``enable_gqa``): a boolean ``attn_mask`` is ``True`` where a query may attend to a
    key; a floating one is added to the scores. A query whose keys are all masked out
    gets zeros (and zero gradients), as torch's.

    Args:
        q: ``(..., L, E)``.
        k: ``(..., S, E)``, the same leading axes as ``q``.
        v: ``(..., S, Ev)``, the same leading axes.
        attn_mask: broadcastable to ``(..., L, S)``, boolean or floating, or None.
        dropout_p: the probability to drop an attention weight (torch applies it
            whenever it is positive; so does this function).
        is_causal: mask out keys after the query (``j > i``, the ``(L, S)`` lower
            triangle is kept, top-left aligned as torch's); not with ``attn_mask``.
        scale: the scores' factor (default ``1 / sqrt(E)``).
        key: the key of the dropout mask, required when ``dropout_p > 0``.

    Returns:
        ``(y, vjp)``: ``y`` of shape ``(..., L, Ev)`` in ``q``'s dtype;
        ``vjp(dy) -> (dq, dk, dv)``.
    """
    owner = "scaled_dot_product_attention"
    q, k, v = (_float_array(owner, n, a) for n, a in (("q", q), ("k", k), ("v", v)))
    if not (q.dtype == k.dtype == v.dtype):
        msg = f"{owner}: expected q, k and v of one dtype, got {q.dtype}, {k.dtype} and {v.dtype}"
        raise TypeError(msg)
    if (q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim or q.shape[:-2] != k.shape[:-2]
            or k.shape[:-2] != v.shape[:-2] or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]):
        msg = (f"{owner}: expected q (..., L, E), k (..., S, E) and v (..., S, Ev) with the same "
               f"leading axes, got {q.shape}, {k.shape} and {v.shape}")
        raise ValueError(msg)
    dropout_p = check_real(owner, "dropout_p", dropout_p, low=0.0, high=1.0)
    is_causal = check_bool(owner, "is_causal", is_causal)
    scale = check_real(owner, "scale", scale, allow_none=True)
    if dropout_p > 0:
        random.check_key(key, owner, "a key (dropout_p > 0)")
    L, S = q.shape[-2], k.shape[-2]
    bias = None
    if is_causal:
        if attn_mask is not None:
            msg = f"{owner}: expected attn_mask None with is_causal=True (torch refuses both), got a mask"
            raise ValueError(msg)
        bias = _causal(L, S, q.dtype)
    elif attn_mask is not None:
        bias = _additive(owner, "attn_mask", attn_mask, q.dtype, allowed=True)
        try:
            np.broadcast_shapes(bias.shape, (*q.shape[:-2], L, S))
        except ValueError:
            msg = f"{owner}: expected attn_mask broadcastable to {(*q.shape[:-2], L, S)}, got {bias.shape}"
            raise ValueError(msg) from None
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    drop = (_dropout_multiplier(key, dropout_p, (*q.shape[:-2], L, S), q.dtype)
            if dropout_p > 0 else None)
    y, _, inner = _attend(q, k, v, bias, scale, safe=True, drop=drop)

    def vjp(dy: Array) -> tuple[Array, Array, Array]:
        dy = np.asarray(dy)
        if dy.shape != y.shape:
            msg = f"{owner} vjp: expected dy of shape {y.shape} (the output's), got {dy.shape}"
            raise ValueError(msg)
        return inner(dy.astype(y.dtype, copy=False))

    return y, vjp


def _float_array(owner: str, name: str, a: Any) -> Array:
    a = np.asarray(a)
    if a.dtype.kind != "f":
        msg = f"{owner}: expected {name} to be a floating array, got dtype {a.dtype}"
        raise TypeError(msg)
    return a


def _additive(owner: str, name: str, mask: Any, dtype: Any, *, allowed: bool) -> Array:
    """A mask as an additive float array: a boolean one gives ``-inf`` where it masks out.

    ``allowed``: whether a boolean ``True`` means "attend" (scaled dot-product
    attention) rather than "masked out" (multi-head attention).
    """
    m = np.asarray(mask)
    if m.dtype == bool:
        return np.where(m if allowed else ~m, 0, -np.inf).astype(dtype)
    if m.dtype.kind != "f":
        msg = f"{owner}: expected {name} to be a boolean or floating array, got dtype {m.dtype}"
        raise TypeError(msg)
    return m.astype(dtype, copy=False)


# ------------------------------------------------------------------- the layer
@attrs.frozen
class MultiheadAttentionParams:
    """Parameters of :class:`MultiheadAttention`, named as torch's.

    Attributes:
        in_proj_weight: ``(3 E, E)``, the packed query, key and value projections
            (when ``kdim == vdim == embed_dim``; else None).
        q_proj_weight: ``(E, E)`` (when kdim or vdim differ; else None).
        k_proj_weight: ``(E, kdim)`` (idem).
        v_proj_weight: ``(E, vdim)`` (idem).
        in_proj_bias: ``(3 E,)`` or None (``bias=False``).
        bias_k: ``(1, 1, E)`` or None (``add_bias_kv=False``).
        bias_v: ``(1, 1, E)`` or None.
        out_proj: the output projection's :class:`~nptfunc.layers.LinearParams`
            (weight ``(E, E)``, bias ``(E,)`` or None).
    """

    in_proj_weight: Array | None = param_field(default=None)
    q_proj_weight: Array | None = param_field(default=None)
    k_proj_weight: Array | None = param_field(default=None)
    v_proj_weight: Array | None = param_field(default=None)
    in_proj_bias: Array | None = param_field(default=None)
    bias_k: Array | None = param_field(default=None)
    bias_v: Array | None = param_field(default=None)
    out_proj: LinearParams | None = attrs.field(default=None)


def _xavier_uniform(key: Key, shape: tuple[int, ...], dtype: Any) -> Array:
    fan_out, fan_in = shape[0], shape[1]
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return random.uniform(key, shape, -bound, bound, dtype=dtype)


@attrs.frozen
class MultiheadAttention(Layer):
    """Multi-head attention over ``num_heads`` heads of width ``embed_dim // num_heads``.

    Equivalent to ``torch.nn.MultiheadAttention``: the same arguments, parameter
    names and layouts (packed ``in_proj_weight`` when ``kdim == vdim == embed_dim``,
    separate ``q/k/v_proj_weight`` otherwise), default initialisation (Xavier-uniform
    projections, zero biases, ``bias_k``/``bias_v`` Xavier-normal) and masks.

    ``apply(params, (query, key, value), attn_mask=None, key_padding_mask=None,
    need_weights=True, average_attn_weights=True, is_causal=False)`` returns
    ``y = (attn_output, attn_weights)``, ``attn_weights`` None unless
    ``need_weights``; ``dx`` is ``(dquery, dkey, dvalue)`` (for self-attention pass
    the same array three times and add the three). The returned weights are
    differentiable, as torch's (``dy`` is then a pair; its second entry may be None).

    Masks, as torch's: a boolean ``True`` masks a position out, a float is added to
    the scores. ``attn_mask``: ``(L, S)`` or ``(N * num_heads, L, S)``
    (``(num_heads, L, S)`` unbatched); ``key_padding_mask``: ``(N, S)`` (``(S,)``
    unbatched). ``is_causal`` is torch's hint: it needs ``attn_mask`` (which should
    be the causal mask); as in torch, without ``key_padding_mask`` and with
    ``need_weights=False`` the causal mask is built and ``attn_mask`` ignored.

    With ``dropout > 0`` the layer is stateful (a :class:`~nptfunc.layers.DropoutState`,
    see :mod:`nptfunc.layers.attention`): call the long form; attention weights are
    dropped in training only. With ``dropout == 0`` it is stateless.

    Args:
        embed_dim: ``E``, the model width (query features and output features).
        num_heads: the number of heads, dividing ``embed_dim``.
        dropout: the drop probability of the attention weights in training.
        bias: learn ``in_proj_bias`` and ``out_proj.bias``.
        add_bias_kv: learn ``bias_k`` and ``bias_v``, appended to the keys and values.
        add_zero_attn: append a zero key and value (after the heads split).
        kdim: key features (default ``embed_dim``).
        vdim: value features (default ``embed_dim``).
        batch_first: inputs and output are ``(N, L, E)`` instead of ``(L, N, E)``.
        dtype: NumPy float dtype of the params (float32 by default).

    Shapes:
        query ``(L, N, E)``, key ``(S, N, kdim)``, value ``(S, N, vdim)`` (batch first:
        ``(N, L, E)``...; unbatched: ``(L, E)``, ``(S, kdim)``, ``(S, vdim)``) ->
        attn_output like query; attn_weights ``(N, L, S')`` (``(N, num_heads, L, S')``
        without averaging; unbatched without ``N``), ``S' = S + add_bias_kv + add_zero_attn``.
    """

    params_class = MultiheadAttentionParams
    state_class = DropoutState

    embed_dim: int = int_field()
    num_heads: int = int_field()
    dropout: float = probability_field(default=0.0)
    bias: bool = bool_field(default=True)
    add_bias_kv: bool = bool_field(default=False)
    add_zero_attn: bool = bool_field(default=False)
    kdim: int | None = int_field(default=None, allow_none=True)
    vdim: int | None = int_field(default=None, allow_none=True)
    batch_first: bool = bool_field(default=False)
    dtype: np.dtype = dtype_field()

    def __attrs_post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            msg = (f"MultiheadAttention: expected embed_dim to be divisible by num_heads, "
                   f"got embed_dim={self.embed_dim}, num_heads={self.num_heads}")
            raise ValueError(msg)

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        """Whether the layer has a dropout key (``dropout > 0``)."""
        return self.dropout > 0

    @property
    def head_dim(self) -> int:
        """``embed_dim // num_heads``."""
        return self.embed_dim // self.num_heads

    @property
    def packed(self) -> bool:
        """Whether the projections are packed in ``in_proj_weight`` (``kdim == vdim == embed_dim``)."""
        return self._kdim == self.embed_dim and self._vdim == self.embed_dim

    @property
    def _kdim(self) -> int:
        return self.embed_dim if self.kdim is None else self.kdim

    @property
    def _vdim(self) -> int:
        return self.embed_dim if self.vdim is None else self.vdim

    # ---------------------------------------------------------------- shapes
    def output_shape(self, input_shape: Any, *, need_weights: bool = True,
                     average_attn_weights: bool = True) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """``((query shape), (weights shape) or None)`` for the shapes of ``(query, key, value)``."""
        shapes = tuple(tuple(s) for s in input_shape) if _is_triple(input_shape) else None
        E, kd, vd = self.embed_dim, self._kdim, self._vdim
        if shapes is None or len({len(s) for s in shapes}) != 1 or len(shapes[0]) not in (2, 3):
            msg = (f"{self.name}: expected input (query, key, value) of shapes (L, N, {E}), (S, N, {kd}), "
                   f"(S, N, {vd}) (batch_first: N first; unbatched: no N), got {input_shape}")
            raise ValueError(msg)
        qs, ks, vs = shapes
        batched = len(qs) == 3
        seq = 1 if self.batch_first and batched else 0
        L, S = qs[seq], ks[seq]
        n = qs[1 - seq] if batched else None
        ok = (qs[-1] == E and ks[-1] == kd and vs[-1] == vd and vs[seq] == S
              and (not batched or ks[1 - seq] == n == vs[1 - seq]))
        if not ok:
            lay = ("(N, L, {}), (N, S, {}), (N, S, {})" if self.batch_first else
                   "(L, N, {}), (S, N, {}), (S, N, {})") if batched else "(L, {}), (S, {}), (S, {})"
            msg = f"{self.name}: expected input of shapes {lay.format(E, kd, vd)}, got {input_shape}"
            raise ValueError(msg)
        if not need_weights:
            return qs, None
        s_ext = S + int(self.add_bias_kv) + int(self.add_zero_attn)
        w = (L, s_ext) if average_attn_weights else (self.num_heads, L, s_ext)
        return qs, ((n, *w) if batched else w)

    # ------------------------------------------------------------------ init
    def init(self, key: Key) -> MultiheadAttentionParams:
        """torch's ``_reset_parameters``: Xavier-uniform projections, zero biases.

        ``out_proj.weight`` keeps ``Linear``'s default (Kaiming-uniform, ``a = sqrt(5)``);
        ``bias_k`` and ``bias_v`` are Xavier-normal (standard deviation ``1/sqrt(E)``).
        """
        E, dt = self.embed_dim, self.dtype
        k_in, k_q, k_k, k_v, k_out, k_bk, k_bv = random.split(key, 7)
        kw: dict[str, Any] = {}
        if self.packed:
            kw["in_proj_weight"] = _xavier_uniform(k_in, (3 * E, E), dt)
        else:
            kw["q_proj_weight"] = _xavier_uniform(k_q, (E, E), dt)
            kw["k_proj_weight"] = _xavier_uniform(k_k, (E, self._kdim), dt)
            kw["v_proj_weight"] = _xavier_uniform(k_v, (E, self._vdim), dt)
        if self.bias:
            kw["in_proj_bias"] = np.zeros(3 * E, dtype=dt)
        if self.add_bias_kv:
            std = math.sqrt(2.0 / (E + E))
            kw["bias_k"] = (random.normal(k_bk, (1, 1, E), dtype=np.float64) * std).astype(dt)
            kw["bias_v"] = (random.normal(k_bv, (1, 1, E), dtype=np.float64) * std).astype(dt)
        out = LinearParams(torch_default_weight(k_out, (E, E), E, dt),
                           np.zeros(E, dtype=dt) if self.bias else None)
        return MultiheadAttentionParams(**kw, out_proj=out)

    def init_state(self, key: Key) -> DropoutState | None:
        """A :class:`~nptfunc.layers.DropoutState` holding ``key`` when ``dropout > 0``, else None."""
        return DropoutState(key) if self.stateful else None

    # ----------------------------------------------------------------- apply
    def _apply(self, params: MultiheadAttentionParams, x: tuple[Array, Array, Array], *,
               attn_mask: Array | None = None, key_padding_mask: Array | None = None,
               need_weights: bool = True, average_attn_weights: bool = True, is_causal: bool = False,
               need_dx: bool = True) -> tuple[tuple[Array, Array | None], VJP]:
        return self._attention(params, x, None, attn_mask, key_padding_mask, need_weights,
                               average_attn_weights, is_causal, need_dx)

    def _apply_stateful(self, params: MultiheadAttentionParams, x: tuple[Array, Array, Array],
                        state: DropoutState, train: bool, *, attn_mask: Array | None = None,
                        key_padding_mask: Array | None = None, need_weights: bool = True,
                        average_attn_weights: bool = True, is_causal: bool = False,
                        need_dx: bool = True) -> tuple[tuple[Array, Array | None], VJP, DropoutState]:
        if not train:
            return (*self._attention(params, x, None, attn_mask, key_padding_mask, need_weights,
                                     average_attn_weights, is_causal, need_dx), state)
        k_mask, k_next = _advance(state.key)
        y, vjp = self._attention(params, x, k_mask, attn_mask, key_padding_mask, need_weights,
                                 average_attn_weights, is_causal, need_dx)
        return y, vjp, DropoutState(k_next)

    def _weights(self, params: MultiheadAttentionParams) -> tuple[Array, Array, Array]:
        if self.packed:
            W, E = params.in_proj_weight, self.embed_dim
            if W is None:
                msg = "expected params with in_proj_weight (kdim == vdim == embed_dim), got None"
                raise ValueError(msg)
            return W[:E], W[E:2 * E], W[2 * E:]
        ws = (params.q_proj_weight, params.k_proj_weight, params.v_proj_weight)
        if any(w is None for w in ws):
            msg = "expected params with q_proj_weight, k_proj_weight and v_proj_weight (kdim or vdim differ)"
            raise ValueError(msg)
        return ws  # type: ignore[return-value]

    def _mask(self, name: str, mask: Any, dtype: Any, expected: tuple[tuple[int, ...], ...],
              pad: int) -> Array | None:
        """A mask as an additive array, checked against the allowed shapes, zero-padded by ``pad`` keys."""
        if mask is None:
            return None
        m = _additive(self.name, name, mask, dtype, allowed=False)
        if m.shape not in expected:
            msg = f"expected {name} of shape {' or '.join(map(str, expected))}, got {m.shape}"
            raise ValueError(msg)
        if pad:
            m = np.concatenate([m, np.zeros((*m.shape[:-1], pad), dtype=dtype)], axis=-1)
        return m

    def _attention(self, params: MultiheadAttentionParams, x: Any, drop_key: Key | None, attn_mask: Any,
                   key_padding_mask: Any, need_weights: Any, average_attn_weights: Any, is_causal: Any,
                   need_dx: bool) -> tuple[tuple[Array, Array | None], VJP]:
        need_weights = check_bool(self.name, "need_weights", need_weights)
        average = check_bool(self.name, "average_attn_weights", average_attn_weights)
        is_causal = check_bool(self.name, "is_causal", is_causal)
        if not isinstance(x, tuple) or len(x) != 3 or any(a is None for a in x):
            got = f"a tuple of length {len(x)}" if isinstance(x, tuple) else type(x).__name__
            msg = f"expected x = (query, key, value), a tuple of three arrays, got {got}"
            raise TypeError(msg)
        self.output_shape(tuple(a.shape for a in x))
        xp = array_module(*x)
        E, H, hd = self.embed_dim, self.num_heads, self.head_dim
        batched = x[0].ndim == 3
        # the input's own layout, (T, N, F) or (N, T, F) (unbatched: (T, 1, F)): the projections are
        # 2-D products on it, and only the heads' split and merge move data
        seq_first = not (batched and self.batch_first)
        q_in, k_in, v_in = x if batched else (a[:, None] for a in x)
        t_ax = 0 if seq_first else 1
        N, L, S0 = q_in.shape[1 - t_ax], q_in.shape[t_ax], k_in.shape[t_ax]
        dt = q_in.dtype
        Wq, Wk, Wv = self._weights(params)
        b_in = params.in_proj_bias
        flat = [xp.reshape(a, (-1, a.shape[-1])) for a in (q_in, k_in, v_in)]
        if self.packed and x[0] is x[1] is x[2]:  # self-attention: one product for q, k and v
            qkv = matmul(flat[0], params.in_proj_weight.T)
            if b_in is not None:
                qkv += b_in
            q2, k2, v2 = qkv[:, :E], qkv[:, E:2 * E], qkv[:, 2 * E:]
        else:
            q2, k2, v2 = (matmul(a, W.T) for a, W in zip(flat, (Wq, Wk, Wv), strict=True))
            if b_in is not None:
                q2, k2, v2 = q2 + b_in[:E], k2 + b_in[E:2 * E], v2 + b_in[2 * E:]

        def native(a2: Array, t: int) -> Array:  # (T * N, E) -> (T, N, E) or (N, T, E)
            return xp.reshape(a2, (t, N, E) if seq_first else (N, t, E))

        k3, v3 = native(k2, S0), native(v2, S0)
        extra = 0
        if params.bias_k is not None:
            one = (1, N, E) if seq_first else (N, 1, E)
            k3 = xp.concatenate([k3, xp.broadcast_to(params.bias_k.reshape(1, 1, E), one)], axis=t_ax)
            v3 = xp.concatenate([v3, xp.broadcast_to(params.bias_v.reshape(1, 1, E), one)], axis=t_ax)
            extra += 1
        S = S0 + extra

        def heads(a: Array) -> Array:  # (T, N, E) or (N, T, E) -> (N, H, T, hd), a view
            if seq_first:
                return a.reshape(a.shape[0], N, H, hd).transpose(1, 2, 0, 3)
            return a.reshape(N, a.shape[1], H, hd).transpose(0, 2, 1, 3)

        def merge(a: Array) -> Array:  # (N, H, T, hd) -> (T * N, E) or (N * T, E)
            return xp.reshape(a.transpose(2, 0, 1, 3) if seq_first else a.transpose(0, 2, 1, 3), (-1, E))

        qh, kh, vh = heads(native(q2, L)), heads(k3), heads(v3)
        if self.add_zero_attn:
            zeros = xp.zeros((N, H, 1, hd), dtype=dt)
            kh, vh = xp.concatenate([kh, zeros], axis=2), xp.concatenate([vh, zeros], axis=2)
            extra += 1
            S += 1
        # masks: (L, S) or (N*H, L, S) for attn_mask, (N, S) for key_padding_mask (unbatched: no N)
        am_shapes = ((L, S0), (H, L, S0)) if not batched else ((L, S0), (N * H, L, S0))
        kpm_shapes = ((S0,),) if not batched else ((N, S0),)
        am = self._mask("attn_mask", attn_mask, dt, am_shapes, extra)
        kpm = self._mask("key_padding_mask", key_padding_mask, dt, kpm_shapes, extra)
        if is_causal and am is None:
            msg = "is_causal=True needs attn_mask (torch's hint: the mask should be the causal one)"
            raise ValueError(msg)
        if is_causal and kpm is None and not need_weights:
            bias = _causal(L, S, dt)  # torch then uses its causal mask, not attn_mask
        else:
            bias = None
            if am is not None:
                bias = am if am.ndim == 2 else xp.reshape(am, (N, H, L, S))
            if kpm is not None:
                kb = xp.reshape(kpm, (N, 1, 1, S))
                bias = kb if bias is None else bias + kb
        drop = (_dropout_multiplier(drop_key, self.dropout, (N, H, L, S), dt)
                if drop_key is not None and self.dropout > 0 else None)
        o, pd, attend_vjp = _attend(qh, kh, vh, bias, 1 / math.sqrt(hd), safe=not need_weights, drop=drop)
        o2 = merge(o)
        Wo, bo = params.out_proj.weight, params.out_proj.bias
        out = matmul(o2, Wo.T)
        if bo is not None:
            out += bo
        out = native(out, L)
        weights = None
        if need_weights:
            weights = pd.mean(axis=1) if average else pd
            if not batched:
                weights = weights[0]
        y = (out if batched else out[:, 0], weights)

        def vjp(dy: tuple[Array, Array | None]) -> tuple[MultiheadAttentionParams, Any]:
            d_out, d_w = dy
            d_out2 = xp.reshape(d_out, (-1, E))
            d_out_proj = LinearParams(matmul(d_out2.T, o2), d_out2.sum(axis=0) if bo is not None else None)
            do = heads(native(matmul(d_out2, Wo), L))
            dpd = None
            if need_weights and d_w is not None:
                dw = d_w[None] if not batched else d_w
                dpd = xp.broadcast_to(dw[:, None] / H, (N, H, L, S)) if average else dw
            dqh, dkh, dvh = attend_vjp(do, dpd)
            if self.add_zero_attn:
                dkh, dvh = dkh[:, :, :-1], dvh[:, :, :-1]
            dq2, dk2, dv2 = merge(dqh), merge(dkh), merge(dvh)
            dbias_k = dbias_v = None
            if params.bias_k is not None:  # the appended key and value are the last along T
                dk3, dv3 = native(dk2, S0 + 1), native(dv2, S0 + 1)
                last = (-1,) if seq_first else (slice(None), -1)
                dbias_k = xp.reshape(dk3[last].sum(axis=0), (1, 1, E))
                dbias_v = xp.reshape(dv3[last].sum(axis=0), (1, 1, E))
                rest = slice(None, -1) if seq_first else (slice(None), slice(None, -1))
                dk2, dv2 = xp.reshape(dk3[rest], (-1, E)), xp.reshape(dv3[rest], (-1, E))
            grads, dxs = [], []
            for d2, a2, a, W in zip((dq2, dk2, dv2), flat, (q_in, k_in, v_in), (Wq, Wk, Wv), strict=True):
                grads.append((matmul(d2.T, a2), d2.sum(axis=0)))
                if need_dx:
                    da = xp.reshape(matmul(d2, W), a.shape)
                    dxs.append(da if batched else da[:, 0])
                else:
                    dxs.append(None)
            kw: dict[str, Any] = {}
            if self.packed:
                kw["in_proj_weight"] = xp.concatenate([g for g, _ in grads], axis=0)
            else:
                kw["q_proj_weight"], kw["k_proj_weight"], kw["v_proj_weight"] = (g for g, _ in grads)
            if b_in is not None:
                kw["in_proj_bias"] = xp.concatenate([b for _, b in grads])
            if dbias_k is not None:
                kw["bias_k"], kw["bias_v"] = dbias_k, dbias_v
            return MultiheadAttentionParams(**kw, out_proj=d_out_proj), tuple(dxs)

        return y, vjp


def _is_triple(shapes: Any) -> bool:
    return isinstance(shapes, tuple) and len(shapes) == 3 and all(isinstance(s, tuple) for s in shapes)

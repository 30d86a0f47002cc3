"""Transformer blocks, composed from MultiheadAttention, Linear, LayerNorm, Dropout and an activation.

No new math: each block calls its children's ``apply`` and runs their vjps in
reverse; a value used twice (the residual stream, the memory read by every
decoder layer, the query, key and value of self-attention) gets the sum of its
cotangents.

Dropout with keys: a block with ``dropout > 0`` is stateful, its state one
:class:`~nptfunc.layers.DropoutState`. A training call splits the state's key into
one key per dropout site (the attention weights, the feed-forward dropout,
``dropout1``, ``dropout2``...; one per layer for a stack) and returns the state with
the next key, exactly as :class:`~nptfunc.layers.Dropout` does. An evaluation call
drops nothing and returns the state unchanged. With ``dropout == 0`` the blocks are
stateless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from nptfunc import random
from nptfunc._types import VJP, Array
from nptfunc.layers.activation import GELU, ReLU
from nptfunc.layers.attention import MultiheadAttention, MultiheadAttentionParams
from nptfunc.layers.base import Layer, bool_field, dtype_field, int_field, probability_field, real_field
from nptfunc.layers.dropout import Dropout, DropoutState, _advance
from nptfunc.layers.linear import Linear, LinearParams
from nptfunc.layers.normalization import LayerNorm, LayerNormParams
from nptfunc.random import Key

__all__ = [
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerDecoderLayerParams",
    "TransformerDecoderParams",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TransformerEncoderLayerParams",
    "TransformerEncoderParams",
]


# ------------------------------------------------------------------ helpers
def _activation(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    owner = type(instance).__name__
    if isinstance(value, str):
        if value not in ("relu", "gelu"):
            msg = f"{owner}: expected activation 'relu', 'gelu' or an activation layer, got {value!r}"
            raise ValueError(msg)
    elif not isinstance(value, Layer) or value.params_class is not None or value.stateful:
        msg = (f"{owner}: expected activation 'relu', 'gelu' or an activation layer without parameters "
               f"(nptfunc.layers.ReLU(), GELU('tanh'), ...), got {value!r}")
        raise TypeError(msg)


class _Keys:
    """The dropout keys of one call: ``next()`` gives the next site's key (None when not dropping)."""

    def __init__(self, key: Key | None, n: int) -> None:
        self._keys = iter(random.split(key, n)) if key is not None else None

    def next(self) -> Key | None:
        return next(self._keys) if self._keys is not None else None


def _call(layer: Layer, params: Any, x: Any, key: Key | None, need_dx: bool = True,
          **kw: Any) -> tuple[Any, VJP]:
    """``layer.apply`` in training with ``key`` (a stateful child), else in evaluation."""
    if layer.stateful:
        train = key is not None
        y, vjp, _ = layer.apply(params, x, DropoutState(key if train else random.key(0)), train=train,
                                need_dx=need_dx, **kw)
        return y, vjp
    return layer.apply(params, x, need_dx=need_dx, **kw)


def _dropout(p: float, x: Array, key: Key | None) -> tuple[Array, Callable[[Array], Array]]:
    """``Dropout(p)`` in training with ``key``; the identity without a key or with ``p == 0``."""
    if key is None or p == 0:
        return x, lambda dy: dy
    y, vjp = _call(Dropout(p), None, x, key)
    return y, lambda dy: vjp(dy)[1]


def _attention_block(attn: MultiheadAttention, params: MultiheadAttentionParams, q: Array, kv: Array,
                     keys: _Keys, p: float, self_attention: bool, **masks: Any) -> tuple[Array, VJP]:
    """``dropout(attn(q, kv, kv)[0])``; vjp ``dy -> (dparams, dq, dkv)`` (``dkv`` None for self-attention)."""
    (y, _), attn_vjp = _call(attn, params, (q, kv, kv), keys.next(), need_weights=False, **masks)
    y, drop_vjp = _dropout(p, y, keys.next())

    def vjp(dy: Array) -> tuple[MultiheadAttentionParams, Array, Array | None]:
        dparams, (dq, dk, dv) = attn_vjp((drop_vjp(dy), None))
        if self_attention:
            return dparams, dq + dk + dv, None
        return dparams, dq, dk + dv

    return y, vjp


def _feed_forward(layer: Any, p1: LinearParams, p2: LinearParams, x: Array, keys: _Keys) -> tuple[Array, VJP]:
    """``dropout2(linear2(dropout(activation(linear1(x)))))``; vjp ``dy -> ((dlinear1, dlinear2), dx)``."""
    a, vjp1 = layer.linear1.apply(p1, x)
    b, vjp_act = layer.activation_layer.apply(None, a)
    c, vjp_drop = _dropout(layer.dropout, b, keys.next())
    d, vjp2 = layer.linear2.apply(p2, c)
    y, vjp_drop2 = _dropout(layer.dropout, d, keys.next())

    def vjp(dy: Array) -> tuple[tuple[LinearParams, LinearParams], Array]:
        dp2, dc = vjp2(vjp_drop2(dy))
        _, da = vjp_act(vjp_drop(dc))
        dp1, dx = vjp1(da)
        return (dp1, dp2), dx

    return y, vjp


def _residual_norm(norm: LayerNorm, params: LayerNormParams, norm_first: bool, x: Array,
                   block: Callable[[Array], tuple[Array, VJP]]) -> tuple[Array, VJP]:
    """``x + block(norm(x))`` (norm first) or ``norm(x + block(x))``; vjp ``dy -> (dnorm, dblock, dx)``.

    ``block``'s vjp returns ``(dparams, dx)`` or ``(dparams, dx, dother)``; ``dother``
    (the memory's cotangent of a cross-attention block) comes back as a fourth value.
    """
    if norm_first:
        n, norm_vjp = norm.apply(params, x)
        b, block_vjp = block(n)
        y = x + b

        def vjp_first(dy: Array) -> tuple[Any, ...]:
            dblock, dn, *other = block_vjp(dy)
            dnorm, dx = norm_vjp(dn)
            return (dnorm, dblock, dx + dy, *other)

        return y, vjp_first
    b, block_vjp = block(x)
    y, norm_vjp = norm.apply(params, x + b)

    def vjp_after(dy: Array) -> tuple[Any, ...]:
        dnorm, dh = norm_vjp(dy)
        dblock, dx, *other = block_vjp(dh)
        return (dnorm, dblock, dx + dh, *other)

    return y, vjp_after


def _seq_shape(layer: Any, shape: tuple[int, ...], what: str) -> tuple[int, ...]:
    E = layer.d_model
    if len(shape) not in (2, 3) or shape[-1] != E:
        lay = f"(N, S, {E})" if layer.batch_first else f"(S, N, {E})"
        msg = f"{layer.name}: expected {what} of shape {lay} or (S, {E}) unbatched, got {tuple(shape)}"
        raise ValueError(msg)
    return tuple(shape)


# ------------------------------------------------------------- the layers' fields
@attrs.frozen
class _Block(Layer):
    """The fields and children shared by the encoder and decoder layers."""

    state_class = DropoutState

    d_model: int = int_field()
    nhead: int = int_field()
    dim_feedforward: int = int_field(default=2048)
    dropout: float = probability_field(default=0.1)
    activation: Any = attrs.field(default="relu", validator=_activation)
    layer_norm_eps: float = real_field(default=1e-5, low=0.0, low_open=True)
    batch_first: bool = bool_field(default=False)
    norm_first: bool = bool_field(default=False)
    bias: bool = bool_field(default=True)
    dtype: np.dtype = dtype_field()

    def __attrs_post_init__(self) -> None:
        if self.d_model % self.nhead:
            msg = (f"{type(self).__name__}: expected d_model to be divisible by nhead, "
                   f"got d_model={self.d_model}, nhead={self.nhead}")
            raise ValueError(msg)

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        """Whether the block drops out (``dropout > 0``): it then carries a dropout key."""
        return self.dropout > 0

    def init_state(self, key: Key) -> DropoutState | None:
        """A :class:`~nptfunc.layers.DropoutState` holding ``key`` when ``dropout > 0``, else None."""
        return DropoutState(key) if self.stateful else None

    # children, built from the fields (torch's submodule names)
    @property
    def self_attn(self) -> MultiheadAttention:
        """The self-attention (torch's ``self_attn``)."""
        return MultiheadAttention(self.d_model, self.nhead, dropout=self.dropout, bias=self.bias,
                                  batch_first=self.batch_first, dtype=self.dtype)

    @property
    def linear1(self) -> Linear:
        """``d_model -> dim_feedforward``."""
        return Linear(self.d_model, self.dim_feedforward, bias=self.bias, dtype=self.dtype)

    @property
    def linear2(self) -> Linear:
        """``dim_feedforward -> d_model``."""
        return Linear(self.dim_feedforward, self.d_model, bias=self.bias, dtype=self.dtype)

    @property
    def norm(self) -> LayerNorm:
        """The layer norm of ``norm1``, ``norm2`` (and ``norm3``)."""
        return LayerNorm(self.d_model, eps=self.layer_norm_eps, bias=self.bias, dtype=self.dtype)

    @property
    def activation_layer(self) -> Layer:
        """The activation as a layer (``'relu'`` -> ``ReLU()``, ``'gelu'`` -> ``GELU()``)."""
        if isinstance(self.activation, str):
            return ReLU() if self.activation == "relu" else GELU()
        return self.activation

    def _drop_keys(self, state: DropoutState | None, train: bool,
                   n: int) -> tuple[_Keys, DropoutState | None]:
        if not train or not self.stateful:
            return _Keys(None, n), state
        k_mask, k_next = _advance(state.key)
        return _Keys(k_mask, n), DropoutState(k_next)


# ------------------------------------------------------------------- encoder layer
@attrs.frozen
class TransformerEncoderLayerParams:
    """Parameters of :class:`TransformerEncoderLayer`, named as torch's submodules."""

    self_attn: MultiheadAttentionParams
    linear1: LinearParams
    linear2: LinearParams
    norm1: LayerNormParams
    norm2: LayerNormParams


@attrs.frozen
class TransformerEncoderLayer(_Block):
    """Self-attention and a feed-forward network, each with a residual connection and a layer norm.

    Equivalent to ``torch.nn.TransformerEncoderLayer``, with the same arguments,
    parameter names (``self_attn.in_proj_weight``, ``linear1.weight``, ``norm2.bias``...),
    default initialisation and forward::

        x = norm1(x + dropout1(self_attn(x, x, x)))         # norm_first: x + dropout1(self_attn(norm1(x)))
        x = norm2(x + dropout2(linear2(dropout(act(linear1(x))))))   # idem with norm2

    ``apply(params, src, attn_mask=None, key_padding_mask=None, is_causal=False)``:
    torch's ``src_mask``, ``src_key_padding_mask`` and ``is_causal`` (see
    :class:`~nptfunc.layers.MultiheadAttention` for the mask conventions).

    Args:
        d_model: the model width ``E``.
        nhead: attention heads, dividing ``d_model``.
        dim_feedforward: the feed-forward network's hidden width.
        dropout: the drop probability of every dropout (attention weights included);
            ``> 0`` makes the layer stateful (see :mod:`nptfunc.layers.transformer`).
        activation: ``'relu'``, ``'gelu'`` or an activation layer without parameters.
        layer_norm_eps: the layer norms' ``eps``.
        batch_first: ``(N, S, E)`` instead of ``(S, N, E)``.
        norm_first: normalise before each block instead of after the residual sum.
        bias: biases in the linear maps, the attention and the layer norms.
        dtype: NumPy float dtype of the params (float32 by default).

    Shapes:
        src: ``(S, N, E)`` (batch first ``(N, S, E)``, unbatched ``(S, E)``) -> y: the same.
    """

    params_class = TransformerEncoderLayerParams

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input's shape, ``(S, N, d_model)``, ``(N, S, d_model)`` or ``(S, d_model)``."""
        return _seq_shape(self, tuple(input_shape), "src")

    def init(self, key: Key) -> TransformerEncoderLayerParams:
        """torch's defaults: the attention's, ``Linear``'s, and ones/zeros for the norms."""
        k_sa, k1, k2 = random.split(key, 3)
        norm = self.norm.init(key)
        return TransformerEncoderLayerParams(self.self_attn.init(k_sa), self.linear1.init(k1),
                                             self.linear2.init(k2), norm, norm)

    def _apply(self, params: TransformerEncoderLayerParams, x: Array, *, attn_mask: Any = None,
               key_padding_mask: Any = None, is_causal: bool = False,
               need_dx: bool = True) -> tuple[Array, VJP]:
        return self._forward(params, x, _Keys(None, 4), attn_mask, key_padding_mask, is_causal)

    def _apply_stateful(self, params: TransformerEncoderLayerParams, x: Array, state: DropoutState,
                        train: bool, *, attn_mask: Any = None, key_padding_mask: Any = None,
                        is_causal: bool = False, need_dx: bool = True) -> tuple[Array, VJP, DropoutState]:
        keys, new_state = self._drop_keys(state, train, 4)
        return (*self._forward(params, x, keys, attn_mask, key_padding_mask, is_causal), new_state)

    def _forward(self, params: TransformerEncoderLayerParams, x: Array, keys: _Keys, attn_mask: Any,
                 key_padding_mask: Any, is_causal: bool) -> tuple[Array, VJP]:
        self.output_shape(x.shape)
        norm = self.norm

        def sa(h: Array) -> tuple[Array, VJP]:
            return _attention_block(self.self_attn, params.self_attn, h, h, keys, self.dropout, True,
                                    attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                    is_causal=is_causal)

        def ff(h: Array) -> tuple[Array, VJP]:
            return _feed_forward(self, params.linear1, params.linear2, h, keys)

        h, vjp_sa = _residual_norm(norm, params.norm1, self.norm_first, x, sa)
        y, vjp_ff = _residual_norm(norm, params.norm2, self.norm_first, h, ff)

        def vjp(dy: Array) -> tuple[TransformerEncoderLayerParams, Array]:
            dnorm2, (dl1, dl2), dh = vjp_ff(dy)
            dnorm1, dsa, dx, _ = vjp_sa(dh)
            return TransformerEncoderLayerParams(dsa, dl1, dl2, dnorm1, dnorm2), dx

        return y, vjp


# ------------------------------------------------------------------- decoder layer
@attrs.frozen
class TransformerDecoderLayerParams:
    """Parameters of :class:`TransformerDecoderLayer`, named as torch's submodules."""

    self_attn: MultiheadAttentionParams
    multihead_attn: MultiheadAttentionParams
    linear1: LinearParams
    linear2: LinearParams
    norm1: LayerNormParams
    norm2: LayerNormParams
    norm3: LayerNormParams


@attrs.frozen
class TransformerDecoderLayer(_Block):
    """Self-attention, cross-attention on the memory and a feed-forward network.

    Equivalent to ``torch.nn.TransformerDecoderLayer`` (arguments, parameter names
    ``self_attn.*``, ``multihead_attn.*``, ``linear1``, ``linear2``, ``norm1..3``,
    initialisation, forward)::

        x = norm1(x + dropout1(self_attn(x, x, x)))
        x = norm2(x + dropout2(multihead_attn(x, memory, memory)))
        x = norm3(x + dropout3(linear2(dropout(act(linear1(x))))))
        # norm_first: x + block(norm_i(x)) for each block

    The input is ``x = (tgt, memory)`` and ``dx = (dtgt, dmemory)``.
    ``apply(params, (tgt, memory), tgt_mask=None, memory_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=False,
    memory_is_causal=False)`` as torch's forward. See
    :class:`TransformerEncoderLayer` for the arguments.

    Shapes:
        tgt ``(T, N, E)``, memory ``(S, N, E)`` (batch first ``(N, T, E)``, ``(N, S, E)``;
        unbatched without ``N``) -> y: like tgt.
    """

    params_class = TransformerDecoderLayerParams

    @property
    def multihead_attn(self) -> MultiheadAttention:
        """The cross-attention on the memory (torch's ``multihead_attn``)."""
        return self.self_attn

    def output_shape(self, input_shape: Any) -> tuple[int, ...]:
        """The shape of tgt, given those of ``(tgt, memory)``."""
        if not (isinstance(input_shape, tuple) and len(input_shape) == 2
                and all(isinstance(s, tuple) for s in input_shape)):
            msg = f"{self.name}: expected input (tgt, memory), a pair of shapes, got {input_shape}"
            raise ValueError(msg)
        tgt, mem = (_seq_shape(self, s, w) for s, w in zip(input_shape, ("tgt", "memory"), strict=True))
        b = 0 if self.batch_first else 1
        if len(tgt) != len(mem) or (len(tgt) == 3 and tgt[b] != mem[b]):
            msg = f"{self.name}: expected tgt and memory with the same batch size, got {tgt} and {mem}"
            raise ValueError(msg)
        return tgt

    def init(self, key: Key) -> TransformerDecoderLayerParams:
        """torch's defaults: the attentions', ``Linear``'s, and ones/zeros for the norms."""
        k_sa, k_mha, k1, k2 = random.split(key, 4)
        norm = self.norm.init(key)
        return TransformerDecoderLayerParams(self.self_attn.init(k_sa), self.multihead_attn.init(k_mha),
                                             self.linear1.init(k1), self.linear2.init(k2), norm, norm, norm)

    def _apply(self, params: TransformerDecoderLayerParams, x: tuple[Array, Array], *,
               tgt_mask: Any = None, memory_mask: Any = None, tgt_key_padding_mask: Any = None,
               memory_key_padding_mask: Any = None, tgt_is_causal: bool = False,
               memory_is_causal: bool = False, need_dx: bool = True) -> tuple[Array, VJP]:
        return self._forward(params, x, _Keys(None, 6), tgt_mask, memory_mask, tgt_key_padding_mask,
                             memory_key_padding_mask, tgt_is_causal, memory_is_causal)

    def _apply_stateful(self, params: TransformerDecoderLayerParams, x: tuple[Array, Array],
                        state: DropoutState, train: bool, *, tgt_mask: Any = None, memory_mask: Any = None,
                        tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                        tgt_is_causal: bool = False, memory_is_causal: bool = False,
                        need_dx: bool = True) -> tuple[Array, VJP, DropoutState]:
        keys, new_state = self._drop_keys(state, train, 6)
        return (*self._forward(params, x, keys, tgt_mask, memory_mask, tgt_key_padding_mask,
                               memory_key_padding_mask, tgt_is_causal, memory_is_causal), new_state)

    def _forward(self, params: TransformerDecoderLayerParams, x: Any, keys: _Keys, tgt_mask: Any,
                 memory_mask: Any, tgt_kpm: Any, memory_kpm: Any, tgt_is_causal: bool,
                 memory_is_causal: bool) -> tuple[Array, VJP]:
        if not isinstance(x, tuple) or len(x) != 2 or any(a is None for a in x):
            got = f"a tuple of length {len(x)}" if isinstance(x, tuple) else type(x).__name__
            msg = f"expected x = (tgt, memory), a tuple of two arrays, got {got}"
            raise TypeError(msg)
        self.output_shape((x[0].shape, x[1].shape))
        tgt, memory = x
        norm = self.norm

        def sa(h: Array) -> tuple[Array, VJP]:
            return _attention_block(self.self_attn, params.self_attn, h, h, keys, self.dropout, True,
                                    attn_mask=tgt_mask, key_padding_mask=tgt_kpm, is_causal=tgt_is_causal)

        def mha(h: Array) -> tuple[Array, VJP]:
            return _attention_block(self.multihead_attn, params.multihead_attn, h, memory, keys, self.dropout,
                                    False, attn_mask=memory_mask, key_padding_mask=memory_kpm,
                                    is_causal=memory_is_causal)

        def ff(h: Array) -> tuple[Array, VJP]:
            return _feed_forward(self, params.linear1, params.linear2, h, keys)

        h1, vjp_sa = _residual_norm(norm, params.norm1, self.norm_first, tgt, sa)
        h2, vjp_mha = _residual_norm(norm, params.norm2, self.norm_first, h1, mha)
        y, vjp_ff = _residual_norm(norm, params.norm3, self.norm_first, h2, ff)

        def vjp(dy: Array) -> tuple[TransformerDecoderLayerParams, tuple[Array, Array]]:
            dnorm3, (dl1, dl2), dh2 = vjp_ff(dy)
            dnorm2, dmha, dh1, dmem = vjp_mha(dh2)
            dnorm1, dsa, dtgt, _ = vjp_sa(dh1)
            return TransformerDecoderLayerParams(dsa, dmha, dl1, dl2, dnorm1, dnorm2, dnorm3), (dtgt, dmem)

        return y, vjp


# ------------------------------------------------------------------------- stacks
@attrs.frozen
class TransformerEncoderParams:
    """Parameters of :class:`TransformerEncoder`: ``layers.0.self_attn.in_proj_weight``... and ``norm.*``."""

    layers: tuple[TransformerEncoderLayerParams, ...]
    norm: LayerNormParams | None = None


@attrs.frozen
class TransformerDecoderParams:
    """Parameters of :class:`TransformerDecoder`: ``layers.0.multihead_attn.*``..., ``norm.*``."""

    layers: tuple[TransformerDecoderLayerParams, ...]
    norm: LayerNormParams | None = None


def _instance_of(cls: type | tuple[type, ...], what: str) -> Callable[[Any, attrs.Attribute, Any], None]:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, cls):
            msg = f"{type(instance).__name__}: expected {attribute.name} to be {what}, got {value!r}"
            raise TypeError(msg)

    return check


@attrs.frozen
class _Stack(Layer):
    """``num_layers`` copies of one layer, then an optional final norm."""

    state_class = DropoutState

    @property
    def layer(self) -> Any:
        """The repeated layer (torch's ``encoder_layer`` or ``decoder_layer``)."""
        raise NotImplementedError  # pragma: no cover

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        """Whether the layers drop out."""
        return self.layer.stateful

    @property
    def name(self) -> str:
        norm = "" if self.norm is None else f", norm={self.norm.name}"
        return f"{type(self).__name__}({self.layer.name}, num_layers={self.num_layers}{norm})"

    def with_dtype(self, dtype: Any) -> _Stack:
        """The same stack with its layer's and norm's params of ``dtype``."""
        norm = None if self.norm is None else self.norm.with_dtype(dtype)
        return type(self)(self.layer.with_dtype(dtype), self.num_layers, norm)

    def output_shape(self, input_shape: Any) -> tuple[int, ...]:
        """The layer's shape helper (the stack keeps the shape)."""
        return self.layer.output_shape(input_shape)

    def init(self, key: Key) -> Any:
        """The layer's params repeated ``num_layers`` times, as torch's clones; the norm's ones/zeros.

        torch deep-copies the layer it is given, so all layers start from the same
        weights; so do these.
        """
        p = self.layer.init(key)
        norm = None if self.norm is None else self.norm.init(key)
        return self.params_class((p,) * self.num_layers, norm)

    def init_state(self, key: Key) -> DropoutState | None:
        """A :class:`~nptfunc.layers.DropoutState` holding ``key`` when the layers drop out, else None."""
        return DropoutState(key) if self.stateful else None

    def _check_layers(self, params: Any) -> None:
        if not isinstance(params.layers, tuple) or len(params.layers) != self.num_layers:
            msg = f"expected params.layers to be a tuple of {self.num_layers} layers' params"
            raise TypeError(msg)

    def _run(self, params: Any, x: Any, state: DropoutState | None, train: bool, need_dx: bool,
             kw: dict[str, Any]) -> tuple[Array, VJP, DropoutState | None]:
        self._check_layers(params)
        keys: tuple[Key | None, ...] = (None,) * self.num_layers
        new_state = state
        if train and self.stateful:
            k_mask, k_next = _advance(state.key)
            keys, new_state = random.split(k_mask, self.num_layers), DropoutState(k_next)
        memory = x[1] if isinstance(x, tuple) else None
        h = x[0] if isinstance(x, tuple) else x
        vjps = []
        for p, k in zip(params.layers, keys, strict=True):
            inp = h if memory is None else (h, memory)
            h, vjp = _call(self.layer, p, inp, k, **kw)
            vjps.append(vjp)
        norm_vjp = None
        if self.norm is not None:
            h, norm_vjp = self.norm.apply(params.norm, h)

        def vjp(dy: Array) -> tuple[Any, Any]:
            dnorm = None
            if norm_vjp is not None:
                dnorm, dy = norm_vjp(dy)
            dlayers, dmem = [], None
            for layer_vjp in reversed(vjps):
                dp, dx = layer_vjp(dy)
                if memory is not None:
                    dy, dm = dx
                    dmem = dm if dmem is None else dmem + dm
                else:
                    dy = dx
                dlayers.append(dp)
            dx = dy if memory is None else (dy, dmem)
            return self.params_class(tuple(reversed(dlayers)), dnorm), dx

        return h, vjp, new_state


@attrs.frozen
class TransformerEncoder(_Stack):
    """A stack of ``num_layers`` :class:`TransformerEncoderLayer` (then ``norm``, if given).

    Equivalent to ``torch.nn.TransformerEncoder`` (parameter names ``layers.0.*``,
    ``norm.*``; its nested-tensor fast path computes the same function).
    ``apply(params, src, mask=None, src_key_padding_mask=None, is_causal=False)`` as
    torch's forward; every layer gets the same masks.

    Args:
        encoder_layer: the :class:`TransformerEncoderLayer` to repeat.
        num_layers: how many.
        norm: a :class:`~nptfunc.layers.LayerNorm` applied at the end, or None.

    Shapes:
        src: as the layer's -> y: the same.
    """

    params_class = TransformerEncoderParams

    encoder_layer: TransformerEncoderLayer = attrs.field(
        validator=_instance_of(TransformerEncoderLayer, "a TransformerEncoderLayer"))
    num_layers: int = int_field()
    norm: LayerNorm | None = attrs.field(default=None, validator=_instance_of((LayerNorm, type(None)),
                                                                               "a LayerNorm or None"))

    @property
    def layer(self) -> TransformerEncoderLayer:  # noqa: D102
        return self.encoder_layer

    def _apply(self, params: TransformerEncoderParams, x: Array, *, mask: Any = None,
               src_key_padding_mask: Any = None, is_causal: bool = False,
               need_dx: bool = True) -> tuple[Array, VJP]:
        return self._run(params, x, None, False, need_dx, self._kw(mask, src_key_padding_mask, is_causal))[:2]

    def _apply_stateful(self, params: TransformerEncoderParams, x: Array, state: DropoutState, train: bool, *,
                        mask: Any = None, src_key_padding_mask: Any = None, is_causal: bool = False,
                        need_dx: bool = True) -> tuple[Array, VJP, DropoutState]:
        return self._run(params, x, state, train, need_dx, self._kw(mask, src_key_padding_mask, is_causal))

    @staticmethod
    def _kw(mask: Any, kpm: Any, is_causal: bool) -> dict[str, Any]:
        return {"attn_mask": mask, "key_padding_mask": kpm, "is_causal": is_causal}


@attrs.frozen
class TransformerDecoder(_Stack):
    """A stack of ``num_layers`` :class:`TransformerDecoderLayer` (then ``norm``, if given).

    Equivalent to ``torch.nn.TransformerDecoder``. ``x = (tgt, memory)``; every layer
    reads the same memory, whose gradient is the sum of theirs. ``apply(params,
    (tgt, memory), tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``.

    Args:
        decoder_layer: the :class:`TransformerDecoderLayer` to repeat.
        num_layers: how many.
        norm: a :class:`~nptfunc.layers.LayerNorm` applied at the end, or None.

    Shapes:
        tgt, memory: as the layer's -> y: like tgt.
    """

    params_class = TransformerDecoderParams

    decoder_layer: TransformerDecoderLayer = attrs.field(
        validator=_instance_of(TransformerDecoderLayer, "a TransformerDecoderLayer"))
    num_layers: int = int_field()
    norm: LayerNorm | None = attrs.field(default=None, validator=_instance_of((LayerNorm, type(None)),
                                                                               "a LayerNorm or None"))

    @property
    def layer(self) -> TransformerDecoderLayer:  # noqa: D102
        return self.decoder_layer

    def _apply(self, params: TransformerDecoderParams, x: tuple[Array, Array], *, tgt_mask: Any = None,
               memory_mask: Any = None, tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
               tgt_is_causal: bool = False, memory_is_causal: bool = False,
               need_dx: bool = True) -> tuple[Array, VJP]:
        kw = {"tgt_mask": tgt_mask, "memory_mask": memory_mask, "tgt_key_padding_mask": tgt_key_padding_mask,
              "memory_key_padding_mask": memory_key_padding_mask, "tgt_is_causal": tgt_is_causal,
              "memory_is_causal": memory_is_causal}
        return self._run(params, x, None, False, need_dx, kw)[:2]

    def _apply_stateful(self, params: TransformerDecoderParams, x: tuple[Array, Array], state: DropoutState,
                        train: bool, *, tgt_mask: Any = None, memory_mask: Any = None,
                        tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                        tgt_is_causal: bool = False, memory_is_causal: bool = False,
                        need_dx: bool = True) -> tuple[Array, VJP, DropoutState]:
        kw = {"tgt_mask": tgt_mask, "memory_mask": memory_mask, "tgt_key_padding_mask": tgt_key_padding_mask,
              "memory_key_padding_mask": memory_key_padding_mask, "tgt_is_causal": tgt_is_causal,
              "memory_is_causal": memory_is_causal}
        return self._run(params, x, state, train, need_dx, kw)

"""Facade classes of attention and the transformer blocks, one thin class per core layer.

Each class builds the core layer (:mod:`nptfunc.layers.attention`,
:mod:`nptfunc.layers.transformer`) from torch's constructor arguments and calls it
with torch's forward signature; :class:`FunctionalModule` holds the params (named
as torch's: ``in_proj_weight``, ``self_attn.out_proj.weight``, ``layers.0.norm1.bias``),
the dropout key and the vjp of the last call.
"""

from __future__ import annotations

from typing import Any

from nptfunc import layers
from nptfunc._types import Array
from nptfunc.nn._layers import KeyLike, _device, _dtype
from nptfunc.nn._module import FunctionalModule

__all__ = [
    "MultiheadAttention",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
]


def _call(module: FunctionalModule, x: Any, **extras: Any) -> Any:
    """``module.layer.apply(params, x, state, train=module.training, **extras)``; keeps state and vjp.

    :meth:`FunctionalModule.forward` with the layer's keyword arguments (masks).
    """
    y, vjp, new_state = module.layer.apply(module._params(), x, module._state(), train=module.training,
                                           **extras)
    module._store_state(new_state)
    module.__dict__["_vjp"] = vjp
    return y


def _core(owner: str, what: str, module: Any, cls: type) -> Any:
    """The core layer inside a facade module (``nn.LayerNorm`` -> ``layers.LayerNorm``) or the core layer."""
    layer = getattr(module, "layer", module)
    if not isinstance(layer, cls):
        msg = f"{owner}: expected {what} to be an nn.{cls.__name__}, got {type(module).__name__}"
        raise TypeError(msg)
    return layer


def _activation(activation: Any) -> Any:
    """``'relu'``/``'gelu'``, a core activation layer, or a facade activation's (``nn.GELU()``)."""
    if isinstance(activation, str):
        return activation
    return getattr(activation, "layer", activation)


class MultiheadAttention(FunctionalModule):
    """Multi-head attention, as ``torch.nn.MultiheadAttention``; see ``layers.MultiheadAttention``.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False) -> (attn_output,
    attn_weights)``; ``backward(d_attn_output)`` (or a pair with the weights'
    cotangent) returns ``(dquery, dkey, dvalue)``.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device: Any = None, dtype: Any = None,
                 *, key: KeyLike = None) -> None:
        _device("MultiheadAttention", device)
        super().__init__(layers.MultiheadAttention(
            embed_dim, num_heads, dropout=dropout, bias=bias, add_bias_kv=add_bias_kv,
            add_zero_attn=add_zero_attn, kdim=kdim, vdim=vdim, batch_first=batch_first,
            dtype=_dtype("MultiheadAttention", dtype)), key=key)

    def forward(self, query: Array, key: Array, value: Array, key_padding_mask: Array | None = None,
                need_weights: bool = True, attn_mask: Array | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Array, Array | None]:
        """torch's forward: ``(attn_output, attn_weights or None)``."""
        return _call(self, (query, key, value), key_padding_mask=key_padding_mask, need_weights=need_weights,
                     attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)

    def backward(self, dy: Any) -> Any:
        """``dy`` for attn_output (or ``(d_attn_output, d_attn_weights)``) -> ``(dquery, dkey, dvalue)``."""
        return super().backward(dy if isinstance(dy, tuple) else (dy, None))


class TransformerEncoderLayer(FunctionalModule):
    """Self-attention and feed-forward block, as ``torch.nn.TransformerEncoderLayer``.

    See :class:`nptfunc.layers.TransformerEncoderLayer`. ``activation`` is ``'relu'``,
    ``'gelu'``, or an activation module (``nn.GELU()``, ``nn.Tanh()``).
    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Any = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device: Any = None, dtype: Any = None,
                 *, key: KeyLike = None) -> None:
        _device("TransformerEncoderLayer", device)
        super().__init__(layers.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, _activation(activation),
            layer_norm_eps, batch_first, norm_first, bias, dtype=_dtype("TransformerEncoderLayer", dtype)),
            key=key)

    def forward(self, src: Array, src_mask: Array | None = None, src_key_padding_mask: Array | None = None,
                is_causal: bool = False) -> Array:
        """torch's forward."""
        return _call(self, src, attn_mask=src_mask, key_padding_mask=src_key_padding_mask,
                     is_causal=is_causal)


class TransformerDecoderLayer(FunctionalModule):
    """Self-attention, cross-attention and feed-forward block, as ``torch.nn.TransformerDecoderLayer``.

    See :class:`nptfunc.layers.TransformerDecoderLayer`. ``forward(tgt, memory,
    tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``;
    ``backward(dy)`` returns ``(dtgt, dmemory)``.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Any = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device: Any = None, dtype: Any = None,
                 *, key: KeyLike = None) -> None:
        _device("TransformerDecoderLayer", device)
        super().__init__(layers.TransformerDecoderLayer(
            d_model, nhead, dim_feedforward, dropout, _activation(activation),
            layer_norm_eps, batch_first, norm_first, bias, dtype=_dtype("TransformerDecoderLayer", dtype)),
            key=key)

    def forward(self, tgt: Array, memory: Array, tgt_mask: Array | None = None,
                memory_mask: Array | None = None, tgt_key_padding_mask: Array | None = None,
                memory_key_padding_mask: Array | None = None,
                tgt_is_causal: bool = False, memory_is_causal: bool = False) -> Array:
        """torch's forward."""
        return _call(self, (tgt, memory), tgt_mask=tgt_mask, memory_mask=memory_mask,
                     tgt_key_padding_mask=tgt_key_padding_mask,
                     memory_key_padding_mask=memory_key_padding_mask,
                     tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)


class TransformerEncoder(FunctionalModule):
    """``num_layers`` copies of an encoder layer, then ``norm``, as ``torch.nn.TransformerEncoder``.

    As torch, the copies start from ``encoder_layer``'s current weights (torch deep-copies
    it); ``key`` seeds the dropout masks. ``enable_nested_tensor`` and ``mask_check`` are
    accepted (torch's fast-path switches; the result is the same). ``forward(src, mask=None,
    src_key_padding_mask=None, is_causal=None)``.
    """

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Any = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True, *, key: KeyLike = None) -> None:
        layer = _core("TransformerEncoder", "encoder_layer", encoder_layer, layers.TransformerEncoderLayer)
        core_norm = None if norm is None else _core("TransformerEncoder", "norm", norm, layers.LayerNorm)
        core = layers.TransformerEncoder(layer, num_layers, norm=core_norm)
        params = None
        if isinstance(encoder_layer, FunctionalModule):
            norm_params = None if norm is None else norm.params
            params = layers.TransformerEncoderParams((encoder_layer.params,) * core.num_layers, norm_params)
        super().__init__(core, key=key, params=params)

    def forward(self, src: Array, mask: Array | None = None, src_key_padding_mask: Array | None = None,
                is_causal: bool | None = None) -> Array:
        """torch's forward (``is_causal=None`` is ``False``: the mask given is used)."""
        return _call(self, src, mask=mask, src_key_padding_mask=src_key_padding_mask,
                     is_causal=bool(is_causal))


class TransformerDecoder(FunctionalModule):
    """``num_layers`` copies of a decoder layer, then ``norm``, as ``torch.nn.TransformerDecoder``.

    As torch, the copies start from ``decoder_layer``'s current weights; ``key`` seeds the dropout masks.
    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False)``;
    ``backward(dy)`` returns ``(dtgt, dmemory)``.
    """

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Any = None, *,
                 key: KeyLike = None) -> None:
        layer = _core("TransformerDecoder", "decoder_layer", decoder_layer, layers.TransformerDecoderLayer)
        core_norm = None if norm is None else _core("TransformerDecoder", "norm", norm, layers.LayerNorm)
        core = layers.TransformerDecoder(layer, num_layers, norm=core_norm)
        params = None
        if isinstance(decoder_layer, FunctionalModule):
            norm_params = None if norm is None else norm.params
            params = layers.TransformerDecoderParams((decoder_layer.params,) * core.num_layers, norm_params)
        super().__init__(core, key=key, params=params)

    def forward(self, tgt: Array, memory: Array, tgt_mask: Array | None = None,
                memory_mask: Array | None = None, tgt_key_padding_mask: Array | None = None,
                memory_key_padding_mask: Array | None = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Array:
        """torch's forward (``tgt_is_causal=None`` is ``False``: the mask given is used)."""
        return _call(self, (tgt, memory), tgt_mask=tgt_mask, memory_mask=memory_mask,
                     tgt_key_padding_mask=tgt_key_padding_mask,
                     memory_key_padding_mask=memory_key_padding_mask,
                     tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal)

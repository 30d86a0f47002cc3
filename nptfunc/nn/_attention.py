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
from nptfunc.nn._functional_module import FunctionalModule
from nptfunc.nn._layers import KeyLike, _device, _dtype
from nptfunc.nn._module import on_tape
from nptfunc.nn._tape import _mode, run_backward
from nptfunc.nn._tensor import Tensor, as_tensor, record
from nptfunc.tree import tree_flatten

__all__ = [
    "MultiheadAttention",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
]


def _array(a: Any) -> Any:
    return a._data if isinstance(a, Tensor) else a


def _call(module: FunctionalModule, x: Any, **extras: Any) -> Any:
    """:meth:`FunctionalModule.forward` with the layer's keyword arguments (masks, flags).

    Keeps the new state and records the call on the tape; a tuple output
    ``(attn_output, attn_weights)`` gives one node per tensor, each running the
    layer's vjp with the other output's cotangent zero.
    """
    several = isinstance(x, tuple)
    xs = x if several else (x,)
    params = [module._parameters[n] for n in module.__dict__["_params_def"][1]]
    kw = {k: _array(v) for k, v in extras.items()}
    if not (_mode.enabled and any(isinstance(a, Tensor) and a.requires_grad for a in xs)):
        kw["need_dx"] = False  # nothing consumes dx: the core skips computing it
    arrays = tuple(_array(a) for a in xs)
    y, vjp, new_state = module.layer.apply(module._params(), arrays if several else arrays[0],
                                           module._state(), train=module.training, **kw)
    module._store_state(new_state)
    outs = y if isinstance(y, tuple) else (y,)
    if not _mode.enabled:
        wrapped = tuple(None if o is None else Tensor._wrap(o) for o in outs)
        return wrapped if isinstance(y, tuple) else wrapped[0]

    def node(i: int) -> Any:
        def node_vjp(d: Array) -> tuple[Any, ...]:
            dy = tuple(d if j == i else None for j in range(len(outs))) if isinstance(y, tuple) else d
            dparams, dx = vjp(dy)
            return (*(dx if several else (dx,)), *tree_flatten(dparams)[0])
        return node_vjp

    name = module._get_name()
    recorded = tuple(None if o is None else record(name, o, node(i), (*xs, *params))
                     for i, o in enumerate(outs))
    return recorded if isinstance(y, tuple) else recorded[0]


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

    @on_tape
    def backward(self, dy: Any) -> Any:
        """``dy`` for attn_output (or ``(d_attn_output, d_attn_weights)``) -> ``(dquery, dkey, dvalue)``.

        Runs the tape from the last call's outputs back to its inputs (parameter
        gradients accumulate in ``.grad``), as :meth:`nn.Module.backward`.
        """
        last = self.__dict__["_last"]
        out = None if last is None else last[1]
        if not isinstance(out, tuple) or not isinstance(out[0], Tensor) or out[0].grad_fn is None:
            msg = ("MultiheadAttention.backward: no recorded forward pass to backpropagate through; call "
                   "the module on an input first (outside no_grad)")
            raise RuntimeError(msg)
        args, out = last
        dys = dy if isinstance(dy, tuple) else (dy, None)
        roots, grads = [], []
        for o, d in zip(out, dys, strict=True):
            if o is not None and d is not None:
                roots.append(o)
                grads.append(as_tensor(d)._data.astype(o.dtype, copy=False))
        inputs = [a for a in args if isinstance(a, Tensor)]
        return tuple(run_backward(roots, grads, capture=inputs))


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

"""``nn.functional``: torch's functions, each the core's math recorded as one tape node.

Each function calls a layer of :mod:`nptfunc.layers`, a loss of
:mod:`nptfunc.losses` or ops of :mod:`nptfunc.ops` and records their vjp; none
has a derivative of its own. Layers are built once per set of hyperparameters
(a small cache), so a call costs the layer's math and one node.
``F.dropout`` without a module draws its mask from the facade's seeded key
stream (:func:`nptfunc.torch.manual_seed`).

Equivalent to ``torch.nn.functional``: every function of issue 15's list, each
checked against torch (forward and every gradient, float32 and float64) in
``tests/test_functional.py``. ``interpolate`` covers 1-d and 2-d nearest, linear
and bilinear (``layers.Upsample``); ``scaled_dot_product_attention`` gives no
gradient to a floating ``attn_mask`` (torch does).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from nptfunc import layers, losses, ops
from nptfunc._types import Array
from nptfunc.layers.conv import ConvParams
from nptfunc.layers.embedding import EmbeddingParams
from nptfunc.layers.normalization import BatchNormParams, BatchNormState, GroupNormParams, LayerNormParams
from nptfunc.nn._seed import next_key
from nptfunc.nn._tape import _mode
from nptfunc.nn._tensor import Tensor, as_tensor, record, to_array
from nptfunc.tree import tree_flatten

__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "avg_pool1d", "avg_pool2d", "batch_norm",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "conv1d", "conv2d", "cross_entropy", "dropout", "elu",
    "embedding", "gelu", "group_norm", "interpolate", "l1_loss", "layer_norm", "leaky_relu", "linear",
    "log_softmax", "max_pool1d", "max_pool2d", "mse_loss", "nll_loss", "one_hot", "pad", "relu",
    "scaled_dot_product_attention", "sigmoid", "silu", "softmax", "tanh",
]


@lru_cache(maxsize=512)
def _layer(cls: type, *args: Any, **kwargs: Any) -> Any:
    return cls(*args, **kwargs)


def _run(name: str, layer: Any, x: Any, params: Any = None, param_tensors: tuple[Any, ...] = ()) -> Tensor:
    """``layer.apply(params, x)`` recorded as one node (inputs ``x`` and ``param_tensors``)."""
    xa = x._data if isinstance(x, Tensor) else to_array(x)
    y, vjp = layer.apply(params, xa, need_dx=isinstance(x, Tensor) and x.requires_grad and _mode.enabled)

    def node_vjp(dy: Array) -> tuple[Any, ...]:
        dparams, dx = vjp(dy)
        return (dx, *tree_flatten(dparams)[0])
    return record(name, y, node_vjp, (x, *param_tensors))


def _op(name: str, f: Any, *inputs: Any, **hyper: Any) -> Tensor:
    y, vjp = f(*(i._data if isinstance(i, Tensor) else i for i in inputs), **hyper)
    return record(name, y, vjp, inputs)


def _data(x: Any) -> Any:
    return None if x is None else (x._data if isinstance(x, Tensor) else to_array(x))


# ------------------------------------------------------------------ activations
def relu(input: Any, inplace: bool = False) -> Tensor:
    """``max(x, 0)``: the core's ``layers.ReLU``. Equivalent to ``torch.nn.functional.relu``."""
    return _run("relu", _layer(layers.ReLU), input)


def leaky_relu(input: Any, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``layers.LeakyReLU``. Equivalent to ``torch.nn.functional.leaky_relu``."""
    return _run("leaky_relu", _layer(layers.LeakyReLU, negative_slope), input)


def gelu(input: Any, approximate: str = "none") -> Tensor:
    """``layers.GELU``. Equivalent to ``torch.nn.functional.gelu``."""
    return _run("gelu", _layer(layers.GELU, approximate), input)


def sigmoid(input: Any) -> Tensor:
    """``layers.Sigmoid``. Equivalent to ``torch.sigmoid``."""
    return _run("sigmoid", _layer(layers.Sigmoid), input)


def tanh(input: Any) -> Tensor:
    """``layers.Tanh``. Equivalent to ``torch.tanh``."""
    return _run("tanh", _layer(layers.Tanh), input)


def silu(input: Any, inplace: bool = False) -> Tensor:
    """``x * sigmoid(x)`` from two ops. Equivalent to ``torch.nn.functional.silu``."""
    x = as_tensor(input)
    return x * sigmoid(x)


def elu(input: Any, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``x if x > 0 else alpha * (exp(x) - 1)`` from ops. Equivalent to ``torch.nn.functional.elu``."""
    x = as_tensor(input)
    neg = (x.clamp(max=0.0).exp() - 1) * alpha
    return _op("elu", ops.where, x._data > 0, x, neg)


def _softmax_dim(x: Any, dim: int | None) -> int:
    return (0 if np.ndim(x) in (0, 1, 3) else 1) if dim is None else dim


def softmax(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """``layers.Softmax(dim)``. Equivalent to ``torch.nn.functional.softmax``."""
    x = input if dtype is None else as_tensor(input).to(dtype)
    return _run("softmax", _layer(layers.Softmax, _softmax_dim(x, dim)), x)


def log_softmax(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """``layers.LogSoftmax(dim)``. Equivalent to ``torch.nn.functional.log_softmax``."""
    x = input if dtype is None else as_tensor(input).to(dtype)
    return _run("log_softmax", _layer(layers.LogSoftmax, _softmax_dim(x, dim)), x)


def dropout(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """``layers.Dropout(p)`` with a key from the facade's seeded stream. Equivalent to ``F.dropout``.

    In a module, prefer ``nn.Dropout`` (its masks come from the module's key).
    """
    layer = _layer(layers.Dropout, p)
    if not training or p == 0:
        return as_tensor(input)
    xa = _data(input)
    y, vjp, _ = layer.apply(None, xa, layer.init_state(next_key()), train=True)
    return record("dropout", y, lambda dy: (vjp(dy)[1],), (input,))


# ----------------------------------------------------------------- affine, conv
def linear(input: Any, weight: Any, bias: Any = None) -> Tensor:
    """``x @ weight.T + bias`` from ops. Equivalent to ``torch.nn.functional.linear``."""
    y = as_tensor(input) @ as_tensor(weight).t()
    return y if bias is None else y + bias


def _conv(cls: type, name: str, input: Any, weight: Any, bias: Any, stride: Any, padding: Any,
          dilation: Any, groups: int) -> Tensor:
    w = _data(weight)
    out_ch, in_per_group, *kernel = w.shape
    layer = _layer(cls, in_per_group * groups, out_ch, tuple(kernel), _hashable(stride), _hashable(padding),
                   _hashable(dilation), groups, bias is not None, dtype=w.dtype)
    params = ConvParams(w, _data(bias))
    tensors = (weight,) if bias is None else (weight, bias)
    return _run(name, layer, input, params, tensors)


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def conv1d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1) -> Tensor:
    """``layers.Conv1d``. Equivalent to ``torch.nn.functional.conv1d``."""
    return _conv(layers.Conv1d, "conv1d", input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1) -> Tensor:
    """``layers.Conv2d``. Equivalent to ``torch.nn.functional.conv2d``."""
    return _conv(layers.Conv2d, "conv2d", input, weight, bias, stride, padding, dilation, groups)


# ---------------------------------------------------------------------- pooling
def _pool(cls: type, name: str, input: Any, kernel_size: Any, stride: Any, padding: Any,
          **kwargs: Any) -> Tensor:
    stride = None if stride is None or (isinstance(stride, (tuple, list)) and not stride) else stride
    layer = _layer(cls, _hashable(kernel_size), _hashable(stride), _hashable(padding), **kwargs)
    return _run(name, layer, input)


def max_pool1d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Tensor:
    """``layers.MaxPool1d``. Equivalent to ``torch.nn.functional.max_pool1d``."""
    _no_indices("max_pool1d", return_indices)
    return _pool(layers.MaxPool1d, "max_pool1d", input, kernel_size, stride, padding,
                 dilation=_hashable(dilation), ceil_mode=ceil_mode)


def max_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Tensor:
    """``layers.MaxPool2d``. Equivalent to ``torch.nn.functional.max_pool2d``."""
    _no_indices("max_pool2d", return_indices)
    return _pool(layers.MaxPool2d, "max_pool2d", input, kernel_size, stride, padding,
                 dilation=_hashable(dilation), ceil_mode=ceil_mode)


def _no_indices(name: str, return_indices: bool) -> None:
    if return_indices:
        msg = f"{name}: return_indices=True is not supported"
        raise ValueError(msg)


def avg_pool1d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """``layers.AvgPool1d``. Equivalent to ``torch.nn.functional.avg_pool1d``."""
    return _pool(layers.AvgPool1d, "avg_pool1d", input, kernel_size, stride, padding, ceil_mode=ceil_mode,
                 count_include_pad=count_include_pad)


def avg_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """``layers.AvgPool2d``. Equivalent to ``torch.nn.functional.avg_pool2d``."""
    if divisor_override is not None:
        msg = f"avg_pool2d: divisor_override is not supported, got {divisor_override!r}"
        raise ValueError(msg)
    return _pool(layers.AvgPool2d, "avg_pool2d", input, kernel_size, stride, padding, ceil_mode=ceil_mode,
                 count_include_pad=count_include_pad)


def adaptive_avg_pool1d(input: Any, output_size: Any) -> Tensor:
    """``layers.AdaptiveAvgPool1d``. Equivalent to ``torch.nn.functional.adaptive_avg_pool1d``."""
    return _run("adaptive_avg_pool1d", _layer(layers.AdaptiveAvgPool1d, _hashable(output_size)), input)


def adaptive_avg_pool2d(input: Any, output_size: Any) -> Tensor:
    """``layers.AdaptiveAvgPool2d``. Equivalent to ``torch.nn.functional.adaptive_avg_pool2d``."""
    return _run("adaptive_avg_pool2d", _layer(layers.AdaptiveAvgPool2d, _hashable(output_size)), input)


# ---------------------------------------------------------------- normalisation
_BATCH_NORMS = {2: layers.BatchNorm1d, 3: layers.BatchNorm1d, 4: layers.BatchNorm2d, 5: layers.BatchNorm3d}


def batch_norm(input: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """``layers.BatchNorm1d/2d/3d`` by the input's rank. Equivalent to ``torch.nn.functional.batch_norm``.

    In training mode the running statistics (tensors) get their new values, as
    torch's: their arrays are replaced, not written into.
    """
    x = as_tensor(input)
    cls = _BATCH_NORMS.get(x.ndim)
    if cls is None:
        msg = f"batch_norm: expected input of rank 2 to 5 (N, C, ...), got shape {x.shape}"
        raise ValueError(msg)
    c = x.shape[1]
    affine = weight is not None or bias is not None
    tensors: tuple[Any, ...] = ()
    params = None
    if affine:
        weight = Tensor._wrap(np.ones(c, x.dtype)) if weight is None else weight
        bias = Tensor._wrap(np.zeros(c, x.dtype)) if bias is None else bias
        tensors, params = (weight, bias), BatchNormParams(_data(weight), _data(bias))
    if running_mean is None or running_var is None:
        if not training:
            msg = "batch_norm: running_mean and running_var are needed when training=False"
            raise ValueError(msg)
        return _run("batch_norm", _layer(cls, c, eps, momentum, affine, False, dtype=x.dtype), x, params,
                    tensors)
    layer = _layer(cls, c, eps, momentum, affine, True, dtype=x.dtype)
    state = BatchNormState(_data(running_mean), _data(running_var), np.asarray(0, np.int64))
    y, vjp, new_state = layer.apply(params, x._data, state, train=training,
                                    need_dx=x.requires_grad and _mode.enabled)
    if training:
        for t, value in ((running_mean, new_state.running_mean), (running_var, new_state.running_var)):
            if not isinstance(t, Tensor):
                msg = (f"batch_norm: training=True updates the running statistics: pass them as tensors "
                       f"(buffers), got {type(t).__name__}")
                raise TypeError(msg)
            t.data = value
            t._version += 1

    def node_vjp(dy: Array) -> tuple[Any, ...]:
        dparams, dx = vjp(dy)
        return (dx, *tree_flatten(dparams)[0])
    return record("batch_norm", y, node_vjp, (x, *tensors))


def layer_norm(input: Any, normalized_shape: Any, weight: Any = None, bias: Any = None,
               eps: float = 1e-5) -> Tensor:
    """``layers.LayerNorm``. Equivalent to ``torch.nn.functional.layer_norm``."""
    x = as_tensor(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if weight is None:
        weight = Tensor._wrap(np.ones(shape, x.dtype))
    layer = _layer(layers.LayerNorm, shape, eps, True, bias is not None, dtype=x.dtype)
    tensors = (weight,) if bias is None else (weight, bias)
    return _run("layer_norm", layer, x, LayerNormParams(_data(weight), _data(bias)), tensors)


def group_norm(input: Any, num_groups: int, weight: Any = None, bias: Any = None,
               eps: float = 1e-5) -> Tensor:
    """``layers.GroupNorm``. Equivalent to ``torch.nn.functional.group_norm``."""
    x = as_tensor(input)
    c = x.shape[1]
    weight = Tensor._wrap(np.ones(c, x.dtype)) if weight is None else weight
    bias = Tensor._wrap(np.zeros(c, x.dtype)) if bias is None else bias
    layer = _layer(layers.GroupNorm, num_groups, c, eps, True, dtype=x.dtype)
    return _run("group_norm", layer, x, GroupNormParams(_data(weight), _data(bias)), (weight, bias))


# ----------------------------------------------------------------------- shapes
def pad(input: Any, pad: Any, mode: str = "constant", value: float | None = None) -> Tensor:
    """``ops.pad``. Equivalent to ``torch.nn.functional.pad``."""
    return _op("pad", ops.pad, input, pad=tuple(pad), mode=mode, value=0.0 if value is None else value)


def one_hot(tensor: Any, num_classes: int = -1) -> Tensor:
    """``ops.one_hot`` (int64, no gradient). Equivalent to ``torch.nn.functional.one_hot``."""
    return Tensor._wrap(ops.one_hot(_data(tensor), num_classes))


# ------------------------------------------------------------------------ losses
def _loss(name: str, loss: Any, input: Any, target: Any) -> Tensor:
    value, vjp = loss.apply(_data(input), _data(target))
    if not _mode.enabled:
        return Tensor._wrap(value)
    return record(name, value, lambda g: (vjp(g),), (input,))


def _reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    if size_average is None and reduce is None:
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


def cross_entropy(input: Any, target: Any, weight: Any = None, size_average: bool | None = None,
                  ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """``losses.CrossEntropyLoss``. Equivalent to ``torch.nn.functional.cross_entropy``."""
    return _loss("cross_entropy", losses.CrossEntropyLoss(
        weight=_data(weight), ignore_index=ignore_index, label_smoothing=label_smoothing,
        reduction=_reduction(size_average, reduce, reduction)), input, target)


def nll_loss(input: Any, target: Any, weight: Any = None, size_average: bool | None = None,
             ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """``losses.NLLLoss``. Equivalent to ``torch.nn.functional.nll_loss``."""
    return _loss("nll_loss", losses.NLLLoss(weight=_data(weight), ignore_index=ignore_index,
                                            reduction=_reduction(size_average, reduce, reduction)),
                 input, target)


def mse_loss(input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None,
             reduction: str = "mean") -> Tensor:
    """``losses.MSELoss``. Equivalent to ``torch.nn.functional.mse_loss``."""
    return _loss("mse_loss", losses.MSELoss(reduction=_reduction(size_average, reduce, reduction)),
                 input, target)


def l1_loss(input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None,
            reduction: str = "mean") -> Tensor:
    """``losses.L1Loss``. Equivalent to ``torch.nn.functional.l1_loss``."""
    return _loss("l1_loss", losses.L1Loss(reduction=_reduction(size_average, reduce, reduction)),
                 input, target)


def binary_cross_entropy(input: Any, target: Any, weight: Any = None, size_average: bool | None = None,
                         reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """``losses.BCELoss``. Equivalent to ``torch.nn.functional.binary_cross_entropy``."""
    return _loss("binary_cross_entropy", losses.BCELoss(
        weight=_data(weight), reduction=_reduction(size_average, reduce, reduction)), input, target)


def binary_cross_entropy_with_logits(input: Any, target: Any, weight: Any = None,
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean", pos_weight: Any = None) -> Tensor:
    """``losses.BCEWithLogitsLoss``. Equivalent to ``F.binary_cross_entropy_with_logits``."""
    return _loss("binary_cross_entropy_with_logits", losses.BCEWithLogitsLoss(
        weight=_data(weight), pos_weight=_data(pos_weight),
        reduction=_reduction(size_average, reduce, reduction)), input, target)


# ------------------------------------------------------- embedding, attention, resampling
def embedding(input: Any, weight: Any, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """``layers.Embedding`` with the given ``weight``. Equivalent to ``torch.nn.functional.embedding``.

    ``input`` holds integer indices of any shape; the gradient goes to ``weight``
    only (the padding row gets none, as torch's).
    """
    w = _data(weight)
    layer = _layer(layers.Embedding, w.shape[0], w.shape[1], padding_idx, max_norm, norm_type,
                   scale_grad_by_freq, sparse, dtype=w.dtype)
    idx = input._data if isinstance(input, Tensor) else to_array(input)
    y, vjp = layer.apply(EmbeddingParams(w), idx, need_dx=False)
    return record("embedding", y, lambda dy: (None, vjp(dy)[0].weight), (input, weight))


def scaled_dot_product_attention(query: Any, key: Any, value: Any, attn_mask: Any = None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None) -> Tensor:
    """The core's attention. Equivalent to ``torch.nn.functional.scaled_dot_product_attention``.

    A boolean ``attn_mask`` is ``True`` where a query may attend; a floating one is
    added to the scores. Dropout draws its mask from the facade's key stream
    (:func:`nptfunc.torch.manual_seed`).
    """
    mask = None if attn_mask is None else _data(attn_mask)
    k = next_key() if dropout_p > 0 else None
    y, vjp = layers.scaled_dot_product_attention(_data(query), _data(key), _data(value), attn_mask=mask,
                                                 dropout_p=dropout_p, is_causal=is_causal, scale=scale, key=k)
    return record("scaled_dot_product_attention", y, vjp, (query, key, value))


def interpolate(input: Any, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """``layers.Upsample``. Equivalent to ``torch.nn.functional.interpolate`` for 1-d and 2-d input.

    Modes ``'nearest'``, ``'linear'`` and ``'bilinear'`` (with and without
    ``align_corners``); ``antialias=True`` is refused with a ``ValueError``.
    """
    if antialias:
        msg = "nn.functional.interpolate: antialias=True is not supported (it is a downsampling filter)"
        raise ValueError(msg)
    layer = _layer(layers.Upsample, _hashable(size), _hashable(scale_factor), mode, align_corners,
                   recompute_scale_factor)
    return _run("interpolate", layer, input)

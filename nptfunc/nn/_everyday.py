"""Facade classes of issue 13's layers, and of the core's 1-d convolution and pooling.

As in :mod:`nptfunc.nn._layers`: each class builds the functional layer from
torch's constructor arguments and prints itself as torch does; everything else is
:class:`~nptfunc.nn.FunctionalModule`'s. ``inplace=`` is accepted where torch has it
(the output is always a new array); hyperparameters given as ints print as given,
as torch's do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nptfunc import layers
from nptfunc._validate import check_bool
from nptfunc.nn._functional_module import FunctionalModule
from nptfunc.nn._layers import Conv2d, KeyLike, MaxPool2d, _device, _dtype

__all__ = [
    "ELU",
    "AdaptiveAvgPool1d",
    "AvgPool1d",
    "Conv1d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "Embedding",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "MaxPool1d",
    "Mish",
    "PReLU",
    "ReLU6",
    "SiLU",
    "Softplus",
    "Softsign",
    "Unflatten",
    "Upsample",
]


# -------------------------------------------------------------------- activations
class _Inplace(FunctionalModule):
    """A parameterless activation with torch's ``inplace`` argument (shown when True)."""

    layer_class: type = layers.SiLU

    def __init__(self, inplace: bool = False, *, key: KeyLike = None) -> None:
        super().__init__(self.layer_class(), key=key)
        self.inplace = check_bool(type(self).__name__, "inplace", inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class SiLU(_Inplace):
    """``x * sigmoid(x)``, as ``torch.nn.SiLU``; see :class:`nptfunc.layers.SiLU`."""

    layer_class = layers.SiLU


class Mish(_Inplace):
    """``x * tanh(softplus(x))``, as ``torch.nn.Mish``; see :class:`nptfunc.layers.Mish`."""

    layer_class = layers.Mish


class ReLU6(_Inplace):
    """``min(max(x, 0), 6)``, as ``torch.nn.ReLU6``; see :class:`nptfunc.layers.ReLU6`."""

    layer_class = layers.ReLU6


class Hardswish(_Inplace):
    """``x * relu6(x + 3) / 6``, as ``torch.nn.Hardswish`` (whose repr never shows ``inplace``)."""

    layer_class = layers.Hardswish

    def extra_repr(self) -> str:
        return ""


class Hardsigmoid(_Inplace):
    """``relu6(x + 3) / 6``, as ``torch.nn.Hardsigmoid`` (whose repr never shows ``inplace``)."""

    layer_class = layers.Hardsigmoid

    def extra_repr(self) -> str:
        return ""


class Softsign(FunctionalModule):
    """``x / (1 + |x|)``, as ``torch.nn.Softsign``."""

    def __init__(self, *, key: KeyLike = None) -> None:
        super().__init__(layers.Softsign(), key=key)

    def extra_repr(self) -> str:
        return ""


class ELU(FunctionalModule):
    """``x if x > 0 else alpha * (exp(x) - 1)``, as ``torch.nn.ELU``."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False, *, key: KeyLike = None) -> None:
        super().__init__(layers.ELU(alpha), key=key)
        self.__dict__["alpha"] = alpha
        self.inplace = check_bool(type(self).__name__, "inplace", inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Softplus(FunctionalModule):
    """``log(1 + exp(beta * x)) / beta`` (linear above ``threshold``), as ``torch.nn.Softplus``."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0, *, key: KeyLike = None) -> None:
        super().__init__(layers.Softplus(beta, threshold), key=key)
        self.__dict__.update(beta=beta, threshold=threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(FunctionalModule):
    """``clamp(x, min_val, max_val)``, as ``torch.nn.Hardtanh``."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False, *,
                 key: KeyLike = None) -> None:
        super().__init__(layers.Hardtanh(min_val, max_val), key=key)
        self.__dict__.update(min_val=min_val, max_val=max_val)
        self.inplace = check_bool(type(self).__name__, "inplace", inplace)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + (", inplace=True" if self.inplace else "")


class PReLU(FunctionalModule):
    """``x if x > 0 else weight * x`` with learned slopes (parameter ``weight``), as ``torch.nn.PReLU``."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device: Any = None, dtype: Any = None, *,
                 key: KeyLike = None) -> None:
        _device("PReLU", device)
        super().__init__(layers.PReLU(num_parameters, init=init, dtype=_dtype("PReLU", dtype)), key=key)
        self.__dict__["init"] = init

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


# ---------------------------------------------------------------- lookup, reshape
class Embedding(FunctionalModule):
    """A lookup table of ``num_embeddings`` rows (parameter ``weight``), as ``torch.nn.Embedding``.

    Takes integer index arrays of any shape; ``max_norm`` and ``sparse=True`` are
    refused (see :class:`nptfunc.layers.Embedding`). ``_weight`` gives the initial
    weight and ``_freeze=True`` makes it not require gradients, as torch's.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Any = None, _freeze: bool = False, device: Any = None,
                 dtype: Any = None, *, key: KeyLike = None) -> None:
        _device("Embedding", device)
        layer = layers.Embedding(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
                                 scale_grad_by_freq, sparse, dtype=_dtype("Embedding", dtype))
        freeze = check_bool("Embedding", "_freeze", _freeze)
        params = None
        if _weight is not None:
            try:
                weight = np.array(_weight.detach().cpu().numpy() if hasattr(_weight, "detach") else _weight,
                                  dtype=layer.dtype)
            except (TypeError, ValueError):
                msg = (f"Embedding: expected _weight to be None or an array of shape ({num_embeddings}, "
                       f"{embedding_dim}), got {type(_weight).__name__} {_weight!r}")
                raise TypeError(msg) from None
            if weight.shape != (num_embeddings, embedding_dim):
                msg = (f"Embedding: expected _weight of shape ({num_embeddings}, {embedding_dim}), "
                       f"got {weight.shape}")
                raise ValueError(msg)
            params = layers.EmbeddingParams(weight)
        super().__init__(layer, key=key, params=params)
        self.__dict__["padding_idx"] = layer.padding_row  # torch keeps it counted from the start
        if freeze:
            self.weight.requires_grad_(False)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq:
            s += ", scale_grad_by_freq=True"
        return s


class Unflatten(FunctionalModule):
    """Split axis ``dim`` into ``unflattened_size``, as ``torch.nn.Unflatten``."""

    def __init__(self, dim: int, unflattened_size: tuple[int, ...] | list[int], *,
                 key: KeyLike = None) -> None:
        super().__init__(layers.Unflatten(dim, unflattened_size), key=key)
        self.__dict__["unflattened_size"] = unflattened_size

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


# --------------------------------------------------- convolution, pooling, resampling
class Conv1d(Conv2d):
    """1-d convolution (cross-correlation), as ``torch.nn.Conv1d``; see :class:`nptfunc.layers.Conv1d`.

    Shapes: ``(N, C_in, L) -> (N, C_out, L_out)`` (or unbatched).
    """

    layer_class = layers.Conv1d


class _ConvTranspose(FunctionalModule):
    layer_class: type = layers.ConvTranspose2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...],
                 stride: int | tuple[int, ...] = 1, padding: int | tuple[int, ...] = 0,
                 output_padding: int | tuple[int, ...] = 0, groups: int = 1, bias: bool = True,
                 dilation: int | tuple[int, ...] = 1, padding_mode: str = "zeros", device: Any = None,
                 dtype: Any = None, *, key: KeyLike = None) -> None:
        owner = self.layer_class.__name__
        _device(owner, device)
        layer = self.layer_class(in_channels, out_channels, kernel_size, stride, padding, output_padding,
                                 groups, bias, dilation, padding_mode, dtype=_dtype(owner, dtype))
        super().__init__(layer, key=key)

    def extra_repr(self) -> str:  # torch's text: only the non-default settings after stride
        d = len(self.kernel_size)
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * d:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * d:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * d:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class ConvTranspose1d(_ConvTranspose):
    """1-d transposed convolution, as ``torch.nn.ConvTranspose1d``; see ``layers.ConvTranspose1d``."""

    layer_class = layers.ConvTranspose1d


class ConvTranspose2d(_ConvTranspose):
    """2-d transposed convolution, as ``torch.nn.ConvTranspose2d`` (:class:`nptfunc.layers.ConvTranspose2d`).

    Shapes: ``(N, C_in, H, W) -> (N, C_out, H_out, W_out)`` (or unbatched).
    """

    layer_class = layers.ConvTranspose2d


class MaxPool1d(MaxPool2d):
    """1-d max pooling, as ``torch.nn.MaxPool1d`` (``return_indices`` is not supported)."""

    layer_class = layers.MaxPool1d


class AvgPool1d(FunctionalModule):
    """1-d average pooling, as ``torch.nn.AvgPool1d``.

    As torch, the hyperparameters are kept as 1-tuples (``kernel_size=(3,)``).
    """

    def __init__(self, kernel_size: int | tuple[int], stride: int | tuple[int] | None = None,
                 padding: int | tuple[int] = 0, ceil_mode: bool = False, count_include_pad: bool = True, *,
                 key: KeyLike = None) -> None:
        super().__init__(layers.AvgPool1d(kernel_size, stride, padding, ceil_mode=ceil_mode,
                                          count_include_pad=count_include_pad), key=key)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool1d(FunctionalModule):
    """Average pooling to a fixed output length, as ``torch.nn.AdaptiveAvgPool1d``."""

    def __init__(self, output_size: int | tuple[int], *, key: KeyLike = None) -> None:
        super().__init__(layers.AdaptiveAvgPool1d(output_size), key=key)
        self.__dict__["output_size"] = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Upsample(FunctionalModule):
    """Nearest or (bi)linear resampling of 1-d or 2-d signals, as ``torch.nn.Upsample``.

    See :class:`nptfunc.layers.Upsample`. ``scale_factor`` is kept as a float (or a
    tuple of floats) and ``size`` as given, as torch's.
    """

    def __init__(self, size: int | tuple[int, ...] | None = None,
                 scale_factor: float | tuple[float, ...] | None = None, mode: str = "nearest",
                 align_corners: bool | None = None, recompute_scale_factor: bool | None = None, *,
                 key: KeyLike = None) -> None:
        super().__init__(layers.Upsample(size, scale_factor, mode, align_corners, recompute_scale_factor),
                         key=key)
        self.__dict__["size"] = size

    def extra_repr(self) -> str:
        if self.scale_factor is not None:
            return f"scale_factor={self.scale_factor!r}, mode={self.mode!r}"
        return f"size={self.size!r}, mode={self.mode!r}"

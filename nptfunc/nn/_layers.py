"""One thin facade class per layer of the core, with torch's constructor and repr.

Each class only builds the functional layer from torch's arguments and says how
to print itself (torch's ``extra_repr``); :class:`FunctionalModule` does the rest.
Every constructor also takes ``dtype=`` (a NumPy float dtype, float32 by default;
``torch.float64`` is understood too) and ``key=`` (see :func:`as_key`).
Hyperparameters read through to the layer (``linear.in_features``, ``bn.eps``)
and cannot be assigned: build a new module instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nptfunc import layers
from nptfunc._validate import check_bool, check_float_dtype
from nptfunc.nn._functional_module import FunctionalModule
from nptfunc.nn._module import Module
from nptfunc.random import Key

__all__ = [
    "GELU",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "Conv2d",
    "Dropout",
    "Dropout2d",
    "Flatten",
    "GroupNorm",
    "Identity",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MaxPool2d",
    "ReLU",
    "Sigmoid",
    "SlowConv2d",
    "SlowMaxPool2d",
    "Softmax",
    "SyncBatchNorm",
    "Tanh",
]

KeyLike = Key | int | None


def _dtype(owner: str, dtype: Any) -> np.dtype:
    """A NumPy float dtype from ``None`` (float32), a NumPy dtype or a torch dtype."""
    return np.dtype(np.float32) if dtype is None else check_float_dtype(owner, "dtype", dtype)


def _device(owner: str, device: Any) -> None:
    if device is not None and str(device) != "cpu":
        msg = f"{owner}: nptfunc runs on the CPU with NumPy; expected device None or 'cpu', got {device!r}"
        raise ValueError(msg)


def _no_bias_option(owner: str, bias: bool) -> None:
    if not check_bool(owner, "bias", bias):
        msg = (f"{owner}: bias=False (torch 2.13's affine weight without a bias) is not supported "
               f"by the core layer")
        raise ValueError(msg)


def _inplace(inplace: bool) -> str:
    return "inplace=True" if inplace else ""


# ------------------------------------------------------------------------- affine
class Linear(FunctionalModule):
    """``y = x @ weight.T + bias``, as ``torch.nn.Linear``; see :class:`nptfunc.layers.Linear`.

    Shapes: ``(..., in_features) -> (..., out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: Any = None,
                 dtype: Any = None, *, key: KeyLike = None) -> None:
        _device("Linear", device)
        super().__init__(layers.Linear(in_features, out_features, bias=bias,
                                       dtype=_dtype("Linear", dtype)), key=key)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Identity(FunctionalModule):
    """``y = x``, as ``torch.nn.Identity`` (its arguments are ignored, as torch's)."""

    def __init__(self, *args: Any, key: KeyLike = None, **kwargs: Any) -> None:
        super().__init__(layers.Identity(), key=key)

    def extra_repr(self) -> str:
        return ""


class Flatten(FunctionalModule):
    """Flatten axes ``start_dim..end_dim``, as ``torch.nn.Flatten``."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1, *, key: KeyLike = None) -> None:
        super().__init__(layers.Flatten(start_dim, end_dim), key=key)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


# -------------------------------------------------------------------- activations
class ReLU(FunctionalModule):
    """``max(x, 0)``, as ``torch.nn.ReLU``. ``inplace`` is accepted; the output is always new."""

    def __init__(self, inplace: bool = False, *, key: KeyLike = None) -> None:
        super().__init__(layers.ReLU(), key=key)
        self.inplace = check_bool(type(self).__name__, "inplace", inplace)

    def extra_repr(self) -> str:
        return _inplace(self.inplace)


class LeakyReLU(FunctionalModule):
    """``x if x > 0 else negative_slope * x``, as ``torch.nn.LeakyReLU``."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False, *,
                 key: KeyLike = None) -> None:
        super().__init__(layers.LeakyReLU(negative_slope), key=key)
        self.inplace = check_bool(type(self).__name__, "inplace", inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Sigmoid(FunctionalModule):
    """``1 / (1 + exp(-x))``, as ``torch.nn.Sigmoid``."""

    def __init__(self, *, key: KeyLike = None) -> None:
        super().__init__(layers.Sigmoid(), key=key)

    def extra_repr(self) -> str:
        return ""


class Tanh(FunctionalModule):
    """``tanh(x)``, as ``torch.nn.Tanh``."""

    def __init__(self, *, key: KeyLike = None) -> None:
        super().__init__(layers.Tanh(), key=key)

    def extra_repr(self) -> str:
        return ""


class GELU(FunctionalModule):
    """``x * Phi(x)``, as ``torch.nn.GELU(approximate='none' | 'tanh')``."""

    def __init__(self, approximate: str = "none", *, key: KeyLike = None) -> None:
        super().__init__(layers.GELU(approximate), key=key)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


def _implicit_softmax_dim(ndim: int) -> int:
    """torch's legacy choice of axis when ``dim=None``: 0 for ranks 0, 1 and 3, else 1."""
    return 0 if ndim in (0, 1, 3) else 1


class _SoftmaxLike(FunctionalModule):
    layer_class: type = layers.Softmax

    def __init__(self, dim: int | None = None, *, key: KeyLike = None) -> None:
        super().__init__(self.layer_class(1 if dim is None else dim), key=key)
        self.__dict__["dim"] = dim

    def forward(self, x: Any) -> Any:
        """As the functional layer; ``dim=None`` picks the axis as torch does (axis 1 for ``(N, C)``)."""
        if self.dim is None:
            dim = _implicit_softmax_dim(np.ndim(x))
            if self.layer.dim != dim:
                self.__dict__["layer"] = self.layer_class(dim)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_SoftmaxLike):
    """``exp(x) / sum(exp(x), dim)``, as ``torch.nn.Softmax(dim)``.

    ``dim=None`` (the reference project's ``nn.Softmax()``) uses torch's legacy
    rule: axis 0 for inputs of rank 0, 1 or 3, else axis 1.
    """

    layer_class = layers.Softmax


class LogSoftmax(_SoftmaxLike):
    """``x - logsumexp(x, dim)``, as ``torch.nn.LogSoftmax(dim)`` (``dim=None`` as :class:`Softmax`)."""

    layer_class = layers.LogSoftmax


# ------------------------------------------------------------------ normalisation
class _BatchNorm(FunctionalModule):
    layer_class: type = layers.BatchNorm1d

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device: Any = None,
                 dtype: Any = None, *, bias: bool = True, key: KeyLike = None) -> None:
        owner = self.layer_class.__name__
        _device(owner, device)
        _no_bias_option(owner, bias)
        super().__init__(self.layer_class(num_features, eps, momentum, affine, track_running_stats,
                                          dtype=_dtype(owner, dtype)), key=key)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)``, as ``torch.nn.BatchNorm1d``.

    Buffers ``running_mean``, ``running_var``, ``num_batches_tracked`` (torch's
    names), updated by every training-mode forward.
    """

    layer_class = layers.BatchNorm1d


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)``, as ``torch.nn.BatchNorm2d``."""

    layer_class = layers.BatchNorm2d


class BatchNorm3d(_BatchNorm):
    """Batch normalisation of ``(N, C, D, H, W)``, as ``torch.nn.BatchNorm3d``."""

    layer_class = layers.BatchNorm3d


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation with the statistics of all MPI ranks, as ``torch.nn.SyncBatchNorm``.

    Input ``(N, C, *)``. In training the mean and variance are those of the
    batches of every rank of ``process_group`` together (an ``mpi4py``
    communicator; ``None`` is the world), so every rank normalises with, and
    keeps as buffers, the statistics of the global batch; see
    :class:`nptfunc.layers.SyncBatchNorm`. In one process it is a BatchNorm.
    """

    layer_class = layers.SyncBatchNorm

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_group: Any = None,
                 device: Any = None, dtype: Any = None, *, bias: bool = True, key: KeyLike = None) -> None:
        owner = "SyncBatchNorm"
        _device(owner, device)
        _no_bias_option(owner, bias)
        FunctionalModule.__init__(self, layers.SyncBatchNorm(
            num_features, eps, momentum, affine, track_running_stats, dtype=_dtype(owner, dtype),
            comm=process_group), key=key)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any = None) -> Module:
        """``module`` with every BatchNorm1d/2d/3d below it replaced by a :class:`SyncBatchNorm`.

        As torch's: the new layers take over the old ones' hyperparameters, their
        ``Parameter`` objects (so an optimizer built before still updates them) and
        their buffers, and keep the training mode; a BatchNorm given directly is
        returned converted, anything else is changed in place and returned.
        """
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            old = module.layer
            new = cls(old.num_features, old.eps, old.momentum, old.affine, old.track_running_stats,
                      process_group, dtype=old.dtype, key=0)
            for name, p in module._parameters.items():
                new._parameters[name] = p
            for name, b in module._buffers.items():
                new._buffers[name] = b
            new.__dict__["_state_def"] = module.__dict__["_state_def"]
            new.train(module.training)
            return new
        for name, child in list(module._modules.items()):
            if child is not None:
                module._modules[name] = cls.convert_sync_batchnorm(child, process_group)
        return module


class LayerNorm(FunctionalModule):
    """Normalisation over the trailing ``normalized_shape`` axes, as ``torch.nn.LayerNorm``."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device: Any = None,
                 dtype: Any = None, *, key: KeyLike = None) -> None:
        _device("LayerNorm", device)
        super().__init__(layers.LayerNorm(normalized_shape, eps, elementwise_affine, bias,
                                          dtype=_dtype("LayerNorm", dtype)), key=key)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class GroupNorm(FunctionalModule):
    """Normalisation over groups of channels, as ``torch.nn.GroupNorm``."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device: Any = None, dtype: Any = None, *, bias: bool = True, key: KeyLike = None) -> None:
        _device("GroupNorm", device)
        _no_bias_option("GroupNorm", bias)
        super().__init__(layers.GroupNorm(num_groups, num_channels, eps, affine,
                                          dtype=_dtype("GroupNorm", dtype)), key=key)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.affine}")


# ------------------------------------------------------------------------ dropout
class _DropoutLike(FunctionalModule):
    layer_class: type = layers.Dropout

    def __init__(self, p: float = 0.5, inplace: bool = False, *, key: KeyLike = None) -> None:
        super().__init__(self.layer_class(p), key=key)
        self.inplace = check_bool(type(self).__name__, "inplace", inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutLike):
    """Zero each element with probability ``p`` in training mode, as ``torch.nn.Dropout``.

    The masks come from the module's key (``key=``), which advances at every
    training-mode call; the key is not part of ``state_dict()`` (as torch's RNG).
    ``inplace`` is accepted; the output is always a new array.
    """

    layer_class = layers.Dropout


class Dropout2d(_DropoutLike):
    """Zero whole channels of ``(N, C, H, W)`` with probability ``p``, as ``torch.nn.Dropout2d``."""

    layer_class = layers.Dropout2d


# -------------------------------------------------------------- convolution, pooling
class Conv2d(FunctionalModule):
    """2-d convolution (cross-correlation), as ``torch.nn.Conv2d``; see :class:`nptfunc.layers.Conv2d`.

    Shapes: ``(N, C_in, H, W) -> (N, C_out, H_out, W_out)`` (or unbatched).
    """

    layer_class: type = layers.Conv2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: str | int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None, *,
                 key: KeyLike = None) -> None:
        owner = self.layer_class.__name__
        _device(owner, device)
        super().__init__(self.layer_class(in_channels, out_channels, kernel_size, stride, padding, dilation,
                                          groups, bias, padding_mode, dtype=_dtype(owner, dtype)), key=key)

    def extra_repr(self) -> str:  # torch's text: only the non-default settings after stride
        d = len(self.kernel_size)
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * d:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * d:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class SlowConv2d(Conv2d):
    """The reference project's loop-by-loop :class:`Conv2d` (:class:`nptfunc.layers.SlowConv2d`); slow."""

    layer_class = layers.SlowConv2d


class MaxPool2d(FunctionalModule):
    """2-d max pooling, as ``torch.nn.MaxPool2d`` (``return_indices`` is not supported).

    The hyperparameters are kept as given (``kernel_size=2``), as torch's.
    """

    layer_class: type = layers.MaxPool2d

    def __init__(self, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] | None = None,
                 padding: int | tuple[int, ...] = 0, dilation: int | tuple[int, ...] = 1,
                 return_indices: bool = False, ceil_mode: bool = False, *, key: KeyLike = None) -> None:
        owner = self.layer_class.__name__
        if check_bool(owner, "return_indices", return_indices):
            msg = f"{owner}: return_indices=True is not supported"
            raise ValueError(msg)
        super().__init__(self.layer_class(kernel_size, stride, padding, dilation, ceil_mode=ceil_mode),
                         key=key)
        self.__dict__.update(kernel_size=kernel_size, stride=kernel_size if stride is None else stride,
                             padding=padding, dilation=dilation, return_indices=return_indices,
                             ceil_mode=ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class SlowMaxPool2d(MaxPool2d):
    """The reference project's loop-by-loop :class:`MaxPool2d` (``layers.SlowMaxPool2d``); slow."""

    layer_class = layers.SlowMaxPool2d


class AvgPool2d(FunctionalModule):
    """2-d average pooling, as ``torch.nn.AvgPool2d`` (``divisor_override`` is not supported)."""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None, *, key: KeyLike = None) -> None:
        if divisor_override is not None:
            msg = f"AvgPool2d: divisor_override is not supported, got {divisor_override!r}"
            raise ValueError(msg)
        super().__init__(layers.AvgPool2d(kernel_size, stride, padding, ceil_mode=ceil_mode,
                                          count_include_pad=count_include_pad), key=key)
        self.__dict__.update(kernel_size=kernel_size, stride=kernel_size if stride is None else stride,
                             padding=padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                             divisor_override=divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(FunctionalModule):
    """Average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d``."""

    def __init__(self, output_size: int | tuple[int | None, ...] | None, *, key: KeyLike = None) -> None:
        super().__init__(layers.AdaptiveAvgPool2d(output_size), key=key)
        self.__dict__["output_size"] = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

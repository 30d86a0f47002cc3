"""The one table of layers: every row is checked against torch, by finite differences and for the contract.

A row gives an id, the layer (an instance, rebuilt in each dtype through its
``dtype`` field, or a factory ``dtype -> layer``), a factory ``dtype -> torch
module`` or None, the input shapes (or an input factory ``(key, dtype) -> x``) and,
where needed, a params factory, apply kwargs, a torch adapter, tolerances, the
training modes and the dtypes. ``tests/test_parity.py`` runs every row through
:func:`nptfunc.testing.check_layer` in float32 and float64, and the contract tests
over every row. Adding a layer to the test suite is adding a row here.

Family test files keep their edge cases (ties, NaN, layouts, errors); where they
rerun rows in another setting (conv's internal layouts, max pooling on ties) they
take them from here. torch is imported only when a row's module is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
from scale_layer import Scale

from nptfunc import layers as L
from nptfunc import ops, random
from nptfunc.testing import (
    LayerCall,
    assert_layer_matches_torch,
    check_layer,
    default_tolerance,
    make_inputs,
    torch_dtype,
    with_dtype,
)
from nptfunc.tree import tree_flatten, tree_unflatten

F32, F64 = np.float32, np.float64


@attrs.frozen
class Row:
    """One layer configuration and its input, as :func:`nptfunc.testing.check_layer` takes them."""

    id: str
    layer: Any
    torch: Callable[[Any], Any] | None
    input_shapes: Any = None
    inputs: Callable[[random.Key, Any], Any] | None = None
    params: Callable[[Any, random.Key], Any] | None = None
    kwargs: Any = None
    torch_call: Callable[..., Any] | None = None
    train: tuple[bool, ...] | None = None  # default: (True, False) if the layer is stateful, else (True,)
    steps: int = 2
    atol: Any = None
    finite_differences: bool = True
    dtypes: tuple[Any, ...] = (F32, F64)

    def make(self, dtype: Any) -> Any:
        """The layer in ``dtype``."""
        return with_dtype(self.layer, dtype)

    def modes(self) -> tuple[bool, ...]:
        """The training modes to check: a stateless layer's vjp does not depend on the mode."""
        if self.train is not None:
            return self.train
        return (True, False) if self.make(F64).stateful else (True,)

    def check(self, dtype: Any) -> None:
        """Run the row through ``check_layer`` in one dtype."""
        check_layer(self.layer, self.torch, self.input_shapes, dtypes=(dtype,), inputs=self.inputs,
                    params=self.params, kwargs=self.kwargs, torch_call=self.torch_call, train=self.modes(),
                    steps=self.steps, atol=self.atol, finite_differences=self.finite_differences)

    def example(self, dtype: Any, key: random.Key | None = None) -> tuple[Any, Any, Any, Any]:
        """``(layer, params, state, x)`` for one call in ``dtype``."""
        layer = self.make(dtype)
        kp, ks, kx = random.split(key if key is not None else random.key(0), 3)
        params = layer.init(kp) if self.params is None else self.params(layer, kp)
        return layer, params, layer.init_state(ks), make_inputs(kx, dtype, self.input_shapes, self.inputs)

    def compare_with_torch(self, dtype: Any, inputs: Callable[[random.Key, Any], Any] | None = None,
                           train: bool = True) -> tuple[Any, Any, Any]:
        """One call against torch (no contract, no finite differences), optionally on other inputs."""
        layer, params, state, x = self.example(dtype)
        if inputs is not None:
            x = inputs(random.key(1), dtype)
        return assert_layer_matches_torch(layer, params, self.torch(dtype), x, state=state, train=train,
                                          atol=self.atol, kwargs=self.kwargs, torch_call=self.torch_call)


def tm(name: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """A factory ``dtype -> torch.nn.<name>(*args, **kwargs)`` in that dtype (torch imported when called)."""

    def make(dtype: Any) -> Any:
        import torch

        return getattr(torch.nn, name)(*args, **kwargs).to(torch_dtype(dtype))

    return make


def scaled(shape: tuple[int, ...], scale: float = 1.0, shift: float = 0.0,
           zero_first: bool = False) -> Callable[[random.Key, Any], Any]:
    """An input factory: ``normal * scale + shift`` (with ``x[..., 0] = 0``, a ReLU kink, if asked)."""

    def make(key: random.Key, dtype: Any) -> Any:
        x = random.normal(key, shape, dtype=dtype) * np.asarray(scale, dtype) + np.asarray(shift, dtype)
        if zero_first:
            x[..., 0] = 0.0
        return x

    return make


def perturbed_params(layer: Any, key: random.Key) -> Any:
    """``layer.init`` plus standard normal noise: weights that are not ones, biases not zeros."""
    leaves, treedef = tree_flatten(layer.init(key))
    keys = random.split(random.fold_in(key, 1), max(len(leaves), 1))
    return tree_unflatten(treedef, [a + random.normal(k, a.shape, dtype=a.dtype)
                                    for k, a in zip(keys, leaves, strict=False)])


def dx_atol(x_groups: np.ndarray, g: np.ndarray, eps: float) -> float:
    """The absolute tolerance of a normalisation's dx: relative to its terms, not to itself.

    ``dx = (g - mean(g) - x_hat * mean(g * x_hat)) / std`` cancels: with two values
    per group the exact result is about ``eps / var`` times its terms (with one, it
    is 0), and float32 (torch's as well as ours) keeps only rounding noise of it. So
    the tolerance is the dtype's relative one times the terms' size
    ``max|g| / min(std)``, ``g = dy * weight``, ``x_groups`` the input with the
    normalised values along its last axis (see docs/design.md).
    """
    std = np.sqrt(x_groups.astype(np.float64).var(axis=-1) + eps)
    return default_tolerance(x_groups.dtype) * float(np.abs(g).max(initial=0.0)) / float(std.min(initial=np.inf))


def bn_dx_atol(call: LayerCall) -> float | None:
    """BatchNorm's dx tolerance in training (batch statistics), at the scale of its terms."""
    if not call.train:
        return None
    x, params = call.x, call.params
    channels_last = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1]).T
    g = call.dy if params is None else call.dy * params.weight.reshape((1, -1) + (1,) * (x.ndim - 2))
    return dx_atol(channels_last, g, call.layer.eps)


def _sh(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "0d"


TABLE: list[Row] = []

# ------------------------------------------------------------------ linear and containers
TABLE += [Row(f"linear-{_sh(shape)}{'' if bias else '-nobias'}", L.Linear(4, 5, bias=bias),
              tm("Linear", 4, 5, bias=bias), shape)
          for shape in [(1, 4), (7, 4), (2, 3, 4), (4,), (2, 1, 3, 4)] for bias in (True, False)]


def _quiet(factory: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A torch factory with torch's 'Initializing zero-element tensors is a no-op' warning silenced."""
    def make(dtype: Any) -> Any:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return factory(dtype)

    return make


# zero-size edges torch handles: no input features, no output features, an empty batch
TABLE += [Row(f"linear-{i}-{o}-{_sh(shape)}", L.Linear(i, o), _quiet(tm("Linear", i, o)), shape)
          for i, o, shape in [(0, 3, (2, 0)), (4, 0, (2, 4)), (4, 3, (0, 4)), (0, 0, (3, 0))]]
TABLE += [
    Row("linear-4-3", L.Linear(4, 3), tm("Linear", 4, 3), (2, 4)),
    Row("linear-nobias-3d", L.Linear(4, 3, bias=False), tm("Linear", 4, 3, bias=False), (2, 5, 4)),
]


def _torch_sequential(*modules: tuple[Any, ...]) -> Callable[[Any], Any]:
    def make(dtype: Any) -> Any:
        import torch

        return torch.nn.Sequential(*(getattr(torch.nn, m[0])(*m[1:]) for m in modules)).to(torch_dtype(dtype))

    return make


TABLE += [
    Row("sequential", lambda dt: L.Sequential(L.Linear(4, 5, dtype=dt), L.ReLU(), L.Linear(5, 2, dtype=dt)),
        _torch_sequential(("Linear", 4, 5), ("ReLU",), ("Linear", 5, 2)), (3, 4)),
    Row("sequential-mlp", lambda dt: L.Sequential(
        L.Linear(6, 8, dtype=dt), L.ReLU(), L.Linear(8, 8, dtype=dt), L.Tanh(), L.Linear(8, 3, dtype=dt),
        L.LogSoftmax(-1)),
        _torch_sequential(("Linear", 6, 8), ("ReLU",), ("Linear", 8, 8), ("Tanh",), ("Linear", 8, 3),
                          ("LogSoftmax", -1)), (5, 6)),
]

# ------------------------------------------------------------------------- activations
# (id, layer, torch module name and arguments, smooth: finite differences apply at the kink x = 0)
ACTIVATIONS = [
    ("relu", L.ReLU(), ("ReLU",), False),
    ("leaky_relu", L.LeakyReLU(), ("LeakyReLU",), False),
    ("leaky_relu-0.1", L.LeakyReLU(0.1), ("LeakyReLU", 0.1), False),
    ("leaky_relu-0.2", L.LeakyReLU(0.2), ("LeakyReLU", 0.2), False),
    ("leaky_relu-0", L.LeakyReLU(0.0), ("LeakyReLU", 0.0), False),
    ("leaky_relu--0.5", L.LeakyReLU(-0.5), ("LeakyReLU", -0.5), False),
    ("leaky_relu-1.5", L.LeakyReLU(1.5), ("LeakyReLU", 1.5), False),
    ("sigmoid", L.Sigmoid(), ("Sigmoid",), True),
    ("tanh", L.Tanh(), ("Tanh",), True),
    ("gelu", L.GELU(), ("GELU",), True),
    ("gelu-tanh", L.GELU("tanh"), ("GELU", "tanh"), True),
    ("identity", L.Identity(), ("Identity",), True),
    ("softmax--1", L.Softmax(-1), ("Softmax", -1), True),
    ("softmax-0", L.Softmax(0), ("Softmax", 0), True),
    ("softmax-1", L.Softmax(1), ("Softmax", 1), True),
    ("log_softmax--1", L.LogSoftmax(-1), ("LogSoftmax", -1), True),
    ("log_softmax-1", L.LogSoftmax(1), ("LogSoftmax", 1), True),
    ("flatten", L.Flatten(), ("Flatten",), True),
    ("flatten-0-1", L.Flatten(0, 1), ("Flatten", 0, 1), True),
    ("flatten--2--1", L.Flatten(-2, -1), ("Flatten", -2, -1), True),
]
# every activation on three shapes, at scale 1 and 30, with zeros at the kink of ReLU-like functions;
# finite differences at scale 1 for the smooth ones
TABLE += [Row(f"{name}-{_sh(shape)}-x{scale:g}", layer, tm(*module), inputs=scaled(shape, scale, zero_first=True),
              finite_differences=smooth and scale == 1.0)
          for name, layer, module, smooth in ACTIVATIONS
          for shape in [(1, 5), (3, 4, 5), (2, 3, 1, 4)] for scale in (1.0, 30.0)]
TABLE += [  # the shapes of the earlier contract table (normal input: no value at a kink)
    Row("relu-2x3", L.ReLU(), tm("ReLU"), (2, 3)),
    Row("leaky_relu-0.1-2x3", L.LeakyReLU(0.1), tm("LeakyReLU", 0.1), (2, 3)),
    Row("sigmoid-2x3", L.Sigmoid(), tm("Sigmoid"), (2, 3)),
    Row("tanh-2x3", L.Tanh(), tm("Tanh"), (2, 3)),
    Row("gelu-2x3", L.GELU(), tm("GELU"), (2, 3)),
    Row("gelu-tanh-2x3", L.GELU("tanh"), tm("GELU", "tanh"), (2, 3)),
    Row("identity-2x3", L.Identity(), tm("Identity"), (2, 3)),
    Row("softmax-1-2x3x2", L.Softmax(1), tm("Softmax", 1), (2, 3, 2)),
    Row("log_softmax--1-2x3", L.LogSoftmax(-1), tm("LogSoftmax", -1), (2, 3)),
    Row("flatten-2x3x2x2", L.Flatten(), tm("Flatten"), (2, 3, 2, 2)),
]

def _torch_scale(features: int) -> Callable[[Any], Any]:
    """torch's side of docs/design.md's worked example: ``x * weight`` with a parameter named ``weight``."""

    def make(dtype: Any) -> Any:
        import torch

        class TorchScale(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.weight = torch.nn.Parameter(torch.ones(features))

            def forward(self, x: Any) -> Any:
                return x * self.weight

        return TorchScale().to(torch_dtype(dtype))

    return make


# docs/design.md's worked example of writing a layer, with weights that are not ones
TABLE += [Row("scale", Scale(3), _torch_scale(3), (2, 5, 3), params=perturbed_params),
          Row("scale-1d", Scale(4), _torch_scale(4), (4,), params=perturbed_params)]

# --------------------------------------------------------------------------- convolution
# (in_channels, out_channels, kwargs, input shape)
CONV2D_CASES = {
    "k3-pad1": (3, 4, dict(kernel_size=3, padding=1), (2, 3, 6, 6)),
    "k1": (3, 5, dict(kernel_size=1), (2, 3, 4, 5)),
    "nonsquare-k": (2, 3, dict(kernel_size=(2, 3)), (2, 2, 6, 7)),
    "nonsquare-k-stride-pad": (2, 3, dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 2)), (2, 2, 7, 6)),
    "stride2-odd": (3, 4, dict(kernel_size=3, stride=2), (2, 3, 9, 7)),
    "stride3-k2-pad1": (2, 2, dict(kernel_size=2, stride=3, padding=1), (2, 2, 8, 8)),
    "dilation2": (2, 3, dict(kernel_size=3, dilation=2, padding=1), (2, 2, 9, 8)),
    "dilation-pair-stride": (2, 3, dict(kernel_size=(2, 3), dilation=(3, 1), stride=2), (2, 2, 9, 9)),
    "same-k3": (3, 4, dict(kernel_size=3, padding="same"), (2, 3, 5, 6)),
    "same-even-k4": (2, 3, dict(kernel_size=4, padding="same"), (2, 2, 7, 6)),
    "same-even-k-dilated": (2, 3, dict(kernel_size=(2, 4), dilation=(3, 1), padding="same"), (2, 2, 8, 7)),
    "valid": (2, 3, dict(kernel_size=3, padding="valid"), (2, 2, 5, 5)),
    "groups2": (4, 6, dict(kernel_size=3, groups=2, padding=1), (2, 4, 5, 5)),
    "groups3-stride": (6, 3, dict(kernel_size=(3, 2), groups=3, stride=2), (2, 6, 7, 6)),
    "depthwise": (4, 4, dict(kernel_size=3, groups=4, padding=1), (2, 4, 6, 6)),
    "depthwise-multiplier": (3, 6, dict(kernel_size=3, groups=3), (2, 3, 5, 6)),
    "one-channel": (1, 4, dict(kernel_size=3, padding=1), (3, 1, 5, 7)),
    "one-channel-out": (3, 1, dict(kernel_size=2), (2, 3, 5, 5)),
    "batch1": (2, 3, dict(kernel_size=3), (1, 2, 5, 5)),
    "kernel-is-input": (2, 3, dict(kernel_size=(4, 5)), (2, 2, 4, 5)),
    "kernel-fits-padding": (1, 2, dict(kernel_size=5, padding=2), (2, 1, 1, 1)),
    "no-bias": (3, 4, dict(kernel_size=3, bias=False, stride=2, padding=1), (2, 3, 6, 5)),
    "reflect": (2, 3, dict(kernel_size=3, padding=(1, 2), padding_mode="reflect"), (2, 2, 5, 6)),
    "replicate": (2, 3, dict(kernel_size=3, padding=2, padding_mode="replicate", stride=2), (2, 2, 5, 6)),
    "circular": (2, 3, dict(kernel_size=(3, 2), padding=(2, 1), padding_mode="circular"), (2, 2, 4, 5)),
    "circular-same": (2, 2, dict(kernel_size=4, padding="same", padding_mode="circular"), (2, 2, 5, 5)),
    # 'same' geometries for the shifted layout: taps reaching past the whole image, wide kernels
    "same-dilation-past-input": (2, 3, dict(kernel_size=3, dilation=5, padding=5), (2, 2, 4, 4)),
    "same-wide-k": (3, 2, dict(kernel_size=(3, 5), padding=(1, 2)), (2, 3, 4, 6)),
    "same-groups-no-bias": (4, 6, dict(kernel_size=3, padding=1, groups=2, bias=False), (3, 4, 5, 3)),
    "same-one-row": (2, 2, dict(kernel_size=3, padding=1), (2, 2, 1, 5)),
}
CONV2D_UNBATCHED = ["k3-pad1", "groups3-stride", "same-even-k4", "reflect"]
CONV1D_CASES = {
    "k3-pad1": (3, 4, dict(kernel_size=3, padding=1), (2, 3, 8)),
    "stride2-dilation2": (2, 3, dict(kernel_size=3, stride=2, dilation=2, padding=2), (2, 2, 11)),
    "same-even": (2, 3, dict(kernel_size=4, padding="same", dilation=1), (2, 2, 7)),
    "depthwise": (4, 4, dict(kernel_size=2, groups=4), (2, 4, 5)),
    "one-channel-batch1": (1, 2, dict(kernel_size=5), (1, 1, 9)),
    "replicate": (2, 2, dict(kernel_size=3, padding=2, padding_mode="replicate"), (2, 2, 5)),
    "unbatched": (2, 3, dict(kernel_size=3, padding=1, padding_mode="circular"), (2, 6)),
    "same-k5": (3, 2, dict(kernel_size=5, padding=2), (3, 3, 6)),
}


def _conv(dims: int, case: tuple[Any, ...], unbatched: bool = False) -> tuple[Any, Any, tuple[int, ...]]:
    in_ch, out_ch, kwargs, shape = case
    name = f"Conv{dims}d"
    return getattr(L, name)(in_ch, out_ch, **kwargs), tm(name, in_ch, out_ch, **kwargs), \
        shape[1:] if unbatched else shape


TABLE += [Row(f"conv2d-{name}", *_conv(2, case)) for name, case in CONV2D_CASES.items()]
TABLE += [Row(f"conv2d-unbatched-{name}", *_conv(2, CONV2D_CASES[name], unbatched=True))
          for name in CONV2D_UNBATCHED]
TABLE += [Row(f"conv1d-{name}", *_conv(1, case)) for name, case in CONV1D_CASES.items()]
TABLE += [
    # a size where BLAS blocking kicks in: float32 sums over 288 terms stay within tolerance
    Row("conv2d-larger-float32", *_conv(2, (32, 16, dict(kernel_size=3, padding=1), (4, 32, 14, 14))),
        finite_differences=False, dtypes=(F32,)),
    # the earlier contract table's convolutions
    Row("conv2d-2-3-k3", *_conv(2, (2, 3, dict(kernel_size=3, padding=1), (2, 2, 5, 5)))),
    Row("conv2d-groups-stride", *_conv(2, (4, 4, dict(kernel_size=(3, 2), stride=2, groups=2), (1, 4, 7, 6)))),
    Row("conv2d-unbatched-dilated", *_conv(2, (1, 2, dict(kernel_size=2, dilation=2), (1, 1, 6, 6)), True)),
    Row("conv1d-2-3-k3", *_conv(1, (2, 3, dict(kernel_size=3, padding=1), (2, 2, 7)))),
]
CONV_ROWS = [r for r in TABLE if r.id.startswith(("conv1d-", "conv2d-"))]

# ------------------------------------------------------------------------------ pooling
# kwargs, input shape
MAX2D_CASES = {
    "k2": (dict(kernel_size=2), (2, 3, 6, 6)),
    "k2-odd-size": (dict(kernel_size=2), (2, 3, 7, 5)),
    "k3-s2-p1": (dict(kernel_size=3, stride=2, padding=1), (2, 2, 7, 8)),
    "k3-s1-overlap": (dict(kernel_size=3, stride=1), (2, 2, 5, 6)),
    "nonsquare": (dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)), (2, 2, 6, 7)),
    "stride-gt-kernel": (dict(kernel_size=2, stride=3), (2, 2, 8, 7)),
    "dilation": (dict(kernel_size=2, dilation=2, padding=1), (2, 2, 7, 7)),
    "dilation-pair": (dict(kernel_size=(3, 2), dilation=(1, 3), stride=(2, 1)), (2, 2, 7, 8)),
    "ceil": (dict(kernel_size=2, ceil_mode=True), (2, 2, 7, 5)),
    "ceil-k3-s2-p1": (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (2, 2, 8, 6)),
    "ceil-dropped-window": (dict(kernel_size=2, stride=2, padding=1, ceil_mode=True), (2, 2, 4, 5)),
    "ceil-dilated": (dict(kernel_size=3, stride=2, dilation=2, padding=1, ceil_mode=True), (2, 1, 8, 9)),
    "batch1-one-channel": (dict(kernel_size=3, stride=2), (1, 1, 7, 7)),
    "kernel-is-input": (dict(kernel_size=(4, 5)), (2, 2, 4, 5)),
    "k3x2": (dict(kernel_size=(3, 2)), (2, 3, 6, 8)),  # the pairs path with three rows per window
    "k1x2": (dict(kernel_size=(1, 2)), (2, 2, 3, 6)),  # ... and one
}
MAX1D_CASES = {
    "k2": (dict(kernel_size=2), (2, 3, 9)),
    "k2-even": (dict(kernel_size=2), (2, 3, 10)),
    "k3-s2-p1-ceil": (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (2, 2, 10)),
    "dilated-overlap": (dict(kernel_size=3, stride=1, dilation=2, padding=1), (1, 2, 9)),
    "unbatched": (dict(kernel_size=4, stride=3, padding=2), (3, 11)),
}
AVG2D_CASES = {
    "k2": (dict(kernel_size=2), (2, 3, 6, 6)),
    "k3-s2-p1": (dict(kernel_size=3, stride=2, padding=1), (2, 2, 7, 8)),
    "overlap": (dict(kernel_size=3, stride=1, padding=1), (2, 2, 5, 6)),
    "nonsquare": (dict(kernel_size=(2, 4), stride=(3, 1), padding=(1, 2)), (2, 2, 7, 6)),
    "ceil": (dict(kernel_size=2, ceil_mode=True), (2, 2, 7, 5)),
    "ceil-k3-s2-p1": (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (2, 2, 8, 6)),
    "ceil-dropped-window": (dict(kernel_size=2, stride=2, padding=1, ceil_mode=True), (2, 2, 4, 5)),
    "ceil-overhang-past-padding": (dict(kernel_size=4, stride=3, padding=2, ceil_mode=True), (2, 1, 6, 8)),
    "stride-gt-kernel": (dict(kernel_size=2, stride=3), (1, 1, 8, 7)),
}
AVG1D_CASES = {
    "k3": (dict(kernel_size=3), (2, 3, 10)),
    "ceil-exclude-pad": (dict(kernel_size=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False),
                         (2, 2, 11)),
    "ceil": (dict(kernel_size=4, stride=3, padding=2, ceil_mode=True), (2, 2, 11)),
    "unbatched": (dict(kernel_size=2, stride=1, padding=1), (3, 6)),
}
ADAPTIVE2D_CASES = [
    (1, (2, 3, 5, 7)),  # global average pooling
    (2, (2, 3, 8, 6)),
    ((2, 3), (2, 2, 4, 9)),
    ((3, 4), (2, 2, 7, 10)),  # not dividing: overlapping windows
    ((None, 2), (2, 2, 5, 6)),
    ((5, 6), (1, 1, 5, 6)),  # identity
    ((4, 1), (3, 5, 5)),  # unbatched
]
ADAPTIVE1D_CASES = [(1, (2, 3, 8)), (3, (2, 2, 9)), (4, (2, 7)), (5, (1, 2, 3))]


def _kw(kwargs: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in kwargs.items())


def _pool(name: str, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    return getattr(L, name)(**kwargs), tm(name, **kwargs)


# max pooling is differentiable away from ties: normal input has none (test_pooling checks ties)
TABLE += [Row(f"maxpool2d-{name}{suffix}", *_pool("MaxPool2d", kwargs), shape[k:])
          for name, (kwargs, shape) in MAX2D_CASES.items() for k, suffix in ((0, ""), (1, "-unbatched"))]
TABLE += [Row(f"maxpool1d-{name}", *_pool("MaxPool1d", kwargs), shape) for name, (kwargs, shape) in
          MAX1D_CASES.items()]
TABLE += [Row(f"avgpool2d-{name}-cip{int(cip)}{suffix}", *_pool("AvgPool2d", dict(kwargs, count_include_pad=cip)),
              shape[k:])
          for name, (kwargs, shape) in AVG2D_CASES.items() for cip in (True, False)
          for k, suffix in ((0, ""), (1, "-unbatched"))]
TABLE += [Row(f"avgpool1d-{name}", *_pool("AvgPool1d", kwargs), shape) for name, (kwargs, shape) in
          AVG1D_CASES.items()]
TABLE += [Row(f"adaptive_avgpool2d-{size}-{_sh(shape)}", *_pool("AdaptiveAvgPool2d", dict(output_size=size)),
              shape) for size, shape in ADAPTIVE2D_CASES]
TABLE += [Row(f"adaptive_avgpool1d-{size}-{_sh(shape)}", *_pool("AdaptiveAvgPool1d", dict(output_size=size)),
              shape) for size, shape in ADAPTIVE1D_CASES]
TABLE += [  # the earlier contract table's pooling layers
    Row("maxpool2d-2", *_pool("MaxPool2d", dict(kernel_size=2)), (2, 3, 6, 6)),
    Row("maxpool2d-ceil-pad", *_pool("MaxPool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        (1, 2, 7, 7)),
    Row("avgpool2d-2", *_pool("AvgPool2d", dict(kernel_size=2)), (2, 3, 6, 6)),
    Row("avgpool2d-pad", *_pool("AvgPool2d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
        (1, 2, 7, 7)),
    Row("adaptive_avgpool2d-1", *_pool("AdaptiveAvgPool2d", dict(output_size=1)), (2, 3, 4, 4)),
]
MAXPOOL_ROWS = [r for r in TABLE if r.id.startswith(("maxpool1d-", "maxpool2d-"))]

# ------------------------------------------------------------------------ normalization
BN_CASES = [
    ("BatchNorm1d", (2, 3)),
    ("BatchNorm1d", (7, 3)),
    ("BatchNorm1d", (2, 3, 5)),
    ("BatchNorm1d", (3, 4, 1)),
    ("BatchNorm2d", (2, 3, 4, 5)),
    ("BatchNorm2d", (3, 2, 1, 7)),
    ("BatchNorm2d", (5, 1, 3, 3)),
    ("BatchNorm3d", (2, 3, 2, 3, 1)),
]
# four training steps threading the state (running statistics against torch's buffers after each),
# then evaluation with the statistics they produced; the input far from zero mean and unit scale
TABLE += [Row(f"{name.lower()}-{_sh(shape)}-m{momentum}{'' if affine else '-noaffine'}",
              getattr(L, name)(shape[1], momentum=momentum, affine=affine),
              tm(name, shape[1], momentum=momentum, affine=affine), inputs=scaled(shape, 2.0, -1.5),
              params=perturbed_params if affine else None, steps=4, atol={"dx": bn_dx_atol})
          for name, shape in BN_CASES for momentum in (0.1, 0.3, None) for affine in (True, False)]
# without running statistics: stateless, batch statistics in training and evaluation alike
TABLE += [Row(f"{name.lower()}-{_sh(shape)}-untracked{'' if affine else '-noaffine'}",
              getattr(L, name)(shape[1], track_running_stats=False, affine=affine),
              tm(name, shape[1], track_running_stats=False, affine=affine), inputs=scaled(shape, 3.0, 1.0),
              params=perturbed_params if affine else None, atol={"dx": bn_dx_atol}, train=(True, False))
          for name, shape in [("BatchNorm1d", (5, 3)), ("BatchNorm2d", (2, 3, 2, 2))] for affine in (True, False)]

LN_CASES = [
    (5, (2, 5)),
    (5, (3, 4, 5)),
    ((5,), (7, 5)),
    ((4, 5), (2, 4, 5)),
    ((4, 5), (3, 2, 4, 5)),
    ((3, 4, 5), (2, 3, 4, 5)),
    ((3, 4, 5), (3, 4, 5)),
    ((1, 3), (2, 1, 3)),
]
TABLE += [Row(f"layernorm-{normalized}-{_sh(shape)}-{'affine' if affine else 'plain'}{'' if bias else '-nobias'}",
              L.LayerNorm(normalized, elementwise_affine=affine, bias=bias),
              tm("LayerNorm", normalized, elementwise_affine=affine, bias=bias), inputs=scaled(shape, 2.0, 1.0),
              params=perturbed_params)
          for normalized, shape in LN_CASES for affine, bias in [(True, True), (True, False), (False, True)]]
GN_CASES = [  # groups 1, C and in between; groups of 1 and 2 values are in test_normalization
    (1, 6, (2, 6)),
    (2, 6, (5, 6)),
    (6, 6, (2, 6, 3)),
    (2, 6, (3, 6, 4, 5)),
    (1, 4, (2, 4, 3, 3)),
    (4, 4, (2, 4, 3, 2)),
    (3, 3, (3, 3, 2, 2)),
]
TABLE += [Row(f"groupnorm-{groups}-{channels}-{_sh(shape)}{'' if affine else '-noaffine'}",
              L.GroupNorm(groups, channels, affine=affine), tm("GroupNorm", groups, channels, affine=affine),
              inputs=scaled(shape, 2.0, -1.0), params=perturbed_params)
          for groups, channels, shape in GN_CASES for affine in (True, False)]
TABLE += [  # the earlier contract table's normalisations, with torch's initial params
    Row("batchnorm1d-3", L.BatchNorm1d(3), tm("BatchNorm1d", 3), (4, 3), atol={"dx": bn_dx_atol}),
    Row("batchnorm2d-3", L.BatchNorm2d(3), tm("BatchNorm2d", 3), (2, 3, 2, 2), atol={"dx": bn_dx_atol}),
    Row("layernorm-3x2", L.LayerNorm((3, 2)), tm("LayerNorm", (3, 2)), (2, 3, 2)),
    Row("groupnorm-2-4", L.GroupNorm(2, 4), tm("GroupNorm", 2, 4), (2, 4, 3)),
]

# ------------------------------------------------------------------------------ dropout
# masks cannot be compared with torch's generator: p = 0 and 1 (no random numbers) and evaluation can
TABLE += [Row(f"{name.lower()}-p{p:g}", getattr(L, name)(p), tm(name, p), (2, 3, 2, 2))
          for name in ("Dropout", "Dropout2d") for p in (0.0, 1.0)]
TABLE += [
    Row("dropout-0.3", L.Dropout(0.3), None, (4, 5)),
    Row("dropout2d-0.5", L.Dropout2d(0.5), None, (2, 3, 2, 2)),
    Row("dropout-0.5-eval", L.Dropout(0.5), tm("Dropout", 0.5), (2, 3, 4, 5), train=(False,)),
    Row("dropout2d-0.5-eval", L.Dropout2d(0.5), tm("Dropout2d", 0.5), (2, 3, 4, 5), train=(False,)),
]

# ------------------------------------------------------------------------- combinators
# The blocks of docs/design.md's "Combinators" section, built with no vjp written by hand, against torch
# twins whose state_dict keys are the combinators' tree paths (a Residual is transparent).
def _torch_combinators() -> Any:
    import torch

    class Residual(torch.nn.Sequential):  # x + body(x), keeping body's keys
        def forward(self, x: Any) -> Any:
            return x + super().forward(x)

    class Parallel(torch.nn.ModuleList):  # the same input to each branch, a tuple out
        def forward(self, x: Any) -> Any:
            return tuple(m(x) for m in self)

    class Add(torch.nn.Module):
        def forward(self, *xs: Any) -> Any:
            xs = xs[0] if len(xs) == 1 and isinstance(xs[0], tuple) else xs
            return sum(xs[1:], xs[0])

    class Concatenate(torch.nn.Module):
        def __init__(self, axis: int) -> None:
            super().__init__()
            self.axis = axis

        def forward(self, xs: Any) -> Any:
            return torch.cat(xs, self.axis)

    return torch.nn, Residual, Parallel, Add, Concatenate


def basic_block(lib: Any, cin: int, cout: int, stride: int = 1, dtype: Any = F32) -> Any:
    """A ResNet BasicBlock: conv-bn-relu-conv-bn, plus the identity (or a 1x1 projection), then relu."""
    if lib is L:
        nn, Residual, Parallel, Add = L, L.Residual, L.Parallel, L.Add
        kw = {"dtype": dtype}
    else:
        nn, Residual, Parallel, Add, _ = _torch_combinators()
        kw = {}

    def body() -> list[Any]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False, **kw), nn.BatchNorm2d(cout, **kw), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False, **kw), nn.BatchNorm2d(cout, **kw)]

    if stride == 1 and cin == cout:
        return nn.Sequential(Residual(*body()) if lib is not L else Residual(nn.Sequential(*body())), nn.ReLU())
    shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False, **kw), nn.BatchNorm2d(cout, **kw))
    branches = (nn.Sequential(*body()), shortcut)
    return nn.Sequential(Parallel(branches) if lib is not L else Parallel(*branches), Add(), nn.ReLU())


def inception_block(lib: Any, cin: int, dtype: Any = F32) -> Any:
    """An Inception-like two-branch block: a 1x1 and a 3x3 branch, joined on the channels."""
    if lib is L:
        nn, Parallel, Concatenate, kw = L, L.Parallel, L.Concatenate, {"dtype": dtype}
    else:
        nn, _, Parallel, _, Concatenate = _torch_combinators()
        kw = {}
    branches = (nn.Sequential(nn.Conv2d(cin, 3, 1, **kw), nn.ReLU()),
                nn.Sequential(nn.Conv2d(cin, 2, 3, padding=1, **kw), nn.ReLU()))
    return nn.Sequential(Parallel(branches) if lib is not L else Parallel(*branches), Concatenate(1))


def _torch_block(make: Callable[..., Any], *args: Any) -> Callable[[Any], Any]:
    def build(dtype: Any) -> Any:
        import torch

        return make(torch, *args).to(torch_dtype(dtype))

    return build


TABLE += [
    Row("residual-mlp", lambda dt: L.Residual(L.Sequential(L.Linear(4, 4, dtype=dt), L.Tanh(),
                                                         L.Linear(4, 4, dtype=dt))),
        lambda dt: _torch_combinators()[1](*[m.to(torch_dtype(dt)) for m in (
            _torch_combinators()[0].Linear(4, 4), _torch_combinators()[0].Tanh(),
            _torch_combinators()[0].Linear(4, 4))]), (3, 4)),
    Row("parallel-concatenate", lambda dt: L.Sequential(L.Parallel(L.Linear(4, 3, dtype=dt), L.Linear(4, 2, dtype=dt)),
                                                        L.Concatenate(-1)),
        lambda dt: _torch_combinators()[0].Sequential(
            _torch_combinators()[2]([_torch_combinators()[0].Linear(4, 3), _torch_combinators()[0].Linear(4, 2)]),
            _torch_combinators()[4](-1)).to(torch_dtype(dt)), (3, 4)),
    Row("fanout-add", L.Sequential(L.FanOut(3), L.Add()),
        lambda dt: _torch_combinators()[0].Sequential(
            _torch_combinators()[2]([_torch_combinators()[0].Identity()] * 3), _torch_combinators()[3]()),
        (2, 3)),
    Row("add-broadcast", L.Add(), lambda dt: _torch_combinators()[3](), ((2, 3), (1, 3), (3,))),
    Row("lambda-mul", L.Lambda(ops.mul), None, ((2, 3), (2, 3))),
    Row("resnet-basicblock", lambda dt: basic_block(L, 3, 3, dtype=dt), _torch_block(basic_block, 3, 3),
        (2, 3, 5, 5)),
    Row("resnet-basicblock-projection", lambda dt: basic_block(L, 2, 4, 2, dtype=dt),
        _torch_block(basic_block, 2, 4, 2), (2, 2, 6, 6)),
    Row("inception-two-branch", lambda dt: inception_block(L, 2, dtype=dt), _torch_block(inception_block, 2),
        (2, 2, 5, 4)),
]

# ---------------------------------------------------------------------------- recurrent
def nested(shapes: Any) -> Callable[[random.Key, Any], Any]:
    """An input factory: standard normal arrays in the nested tuple structure of ``shapes``."""

    def make(key: random.Key, dtype: Any) -> Any:
        if all(isinstance(d, int) for d in shapes):
            return random.normal(key, shapes, dtype=dtype)
        return tuple(nested(s)(k, dtype) for s, k in zip(shapes, random.split(key, len(shapes)), strict=True))

    return make


# ------------------------------------------------------------- issue 13: the everyday layers
# (id, layer, torch module name and arguments, finite differences apply with a zero at x[..., 0])
ACTIVATIONS_13 = [
    ("silu", L.SiLU(), ("SiLU",), True),
    ("elu", L.ELU(), ("ELU",), False),  # C1 only at 0: the adjoint test sees its curvature jump
    ("elu-0.5", L.ELU(0.5), ("ELU", 0.5), False),
    ("softplus", L.Softplus(), ("Softplus",), True),
    ("softplus-2-10", L.Softplus(2.0, 10.0), ("Softplus", 2.0, 10.0), True),
    ("mish", L.Mish(), ("Mish",), True),
    ("hardtanh", L.Hardtanh(), ("Hardtanh",), True),
    ("hardtanh-0-2", L.Hardtanh(0.0, 2.0), ("Hardtanh", 0.0, 2.0), False),
    ("relu6", L.ReLU6(), ("ReLU6",), False),
    ("hardswish", L.Hardswish(), ("Hardswish",), True),
    ("hardsigmoid", L.Hardsigmoid(), ("Hardsigmoid",), True),
    ("softsign", L.Softsign(), ("Softsign",), False),  # C1 only at 0, as ELU
]
# scale 1 and 4 (the kinks at +-3 and 6, Softplus' threshold 10 / beta = 5), zeros at x[..., 0]
TABLE += [Row(f"{name}-{_sh(shape)}-x{scale:g}", layer, tm(*module), inputs=scaled(shape, scale, zero_first=True),
              finite_differences=smooth and scale == 1.0)
          for name, layer, module, smooth in ACTIVATIONS_13
          for shape in [(1, 5), (3, 4, 5)] for scale in (1.0, 4.0)]
TABLE += [Row(f"prelu-{n}-{_sh(shape)}", L.PReLU(n), tm("PReLU", n), inputs=scaled(shape, zero_first=True),
              params=perturbed_params, finite_differences=False)
          for n, shape in [(1, (2, 3)), (3, (2, 3, 4)), (2, (2, 2, 3, 3))]]
TABLE += [Row("prelu-1-0d", L.PReLU(), tm("PReLU"), (), params=perturbed_params)]
TABLE += [Row("prelu-3-fd", L.PReLU(3), tm("PReLU", 3), (2, 3, 2), params=perturbed_params)]


def _indices(shape: tuple[int, ...], n: int, dtype: Any = np.int64) -> Callable[[random.Key, Any], Any]:
    """An input factory: integer indices in ``[0, n)``."""

    def make(key: random.Key, _: Any) -> Any:
        return random.generator(key).integers(0, n, size=shape).astype(dtype)

    return make


def _rnn_input(kind: str, kw: dict[str, Any], hidden: bool, layout: str) -> Any:
    """Input shapes of a recurrent layer (T = 4, N = 2, input_size = 3, hidden_size = 5)."""
    cell = kind.endswith("Cell")
    h = kw.get("proj_size") or 5
    n = 1 if cell else kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    batch = {"batched": (2,), "unbatched": ()}[layout]
    if cell:
        x, hs, cs = (*batch, 3), (*batch, h), (*batch, 5)
    else:
        x = (4, *batch, 3) if not kw.get("batch_first") else (*batch, 4, 3)
        hs, cs = (n, *batch, h), (n, *batch, 5)
    if not hidden:
        return x
    return (x, (hs, cs)) if kind.startswith("LSTM") else (x, hs)


# (class name, kwargs, with initial states, layout)
RNN_CASES = [
    ("RNNCell", {}, False, "batched"),
    ("RNNCell", dict(nonlinearity="relu"), True, "batched"),
    ("RNNCell", dict(bias=False), True, "unbatched"),
    ("LSTMCell", {}, False, "batched"),
    ("LSTMCell", {}, True, "batched"),
    ("LSTMCell", dict(bias=False), True, "unbatched"),
    ("GRUCell", {}, False, "batched"),
    ("GRUCell", {}, True, "batched"),
    ("GRUCell", dict(bias=False), True, "unbatched"),
    ("LSTM", dict(num_layers=2, bidirectional=True), False, "batched"),
    ("LSTM", dict(num_layers=2, bidirectional=True), True, "batched"),
    ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True), True, "batched"),
    ("LSTM", dict(num_layers=2, bidirectional=True), True, "unbatched"),
    ("LSTM", dict(bias=False), True, "batched"),
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=3), True, "batched"),
    ("LSTM", dict(num_layers=2, proj_size=2, batch_first=True), True, "batched"),
    ("LSTM", dict(bidirectional=True, proj_size=4), True, "unbatched"),
    ("GRU", dict(num_layers=2), False, "batched"),
    ("GRU", dict(num_layers=2), True, "batched"),
    ("GRU", dict(num_layers=2, batch_first=True), True, "batched"),
    ("GRU", dict(num_layers=2, bidirectional=True), True, "unbatched"),
    ("GRU", dict(bidirectional=True, bias=False), True, "batched"),
    ("RNN", {}, False, "batched"),
    ("RNN", dict(num_layers=2, bidirectional=True), True, "batched"),
    ("RNN", dict(nonlinearity="relu", num_layers=2, batch_first=True), True, "batched"),
    ("RNN", dict(nonlinearity="relu", bidirectional=True), True, "unbatched"),
]
TABLE += [Row(f"{kind.lower()}-{_kw(kw) or 'default'}-{'hx' if hidden else 'nohx'}-{layout}",
              getattr(L, kind)(3, 5, **kw), tm(kind, 3, 5, **kw), inputs=nested(_rnn_input(kind, kw, hidden, layout)))
          for kind, kw, hidden, layout in RNN_CASES]
# dropout between layers: masks from the state's key in training (contract and finite differences with a
# fixed mask; test_recurrent checks the masks); evaluation is dropout-free and matches torch
TABLE += [Row(f"{kind.lower()}-dropout0.4{suffix}", getattr(L, kind)(3, 5, num_layers=2, dropout=0.4, **kw),
              tm(kind, 3, 5, num_layers=2, dropout=0.4, **kw) if not train else None,
              inputs=nested(_rnn_input(kind, dict(num_layers=2, **kw), True, "batched")), train=train)
          for kind, kw in [("LSTM", dict(bidirectional=True)), ("GRU", {}), ("RNN", dict(batch_first=True))]
          for train, suffix in [((True, False), ""), ((False,), "-eval")]]
TABLE += [Row(f"embedding-{_sh(shape)}-pad{pad}{'-freq' if freq else ''}",
              L.Embedding(7, 4, padding_idx=pad, scale_grad_by_freq=freq),
              tm("Embedding", 7, 4, padding_idx=pad, scale_grad_by_freq=freq), inputs=_indices(shape, 7, dt),
              params=perturbed_params, finite_differences=pad is None and not freq)  # as torch, on purpose not
          # the derivative: the padding row gets no gradient, scale_grad_by_freq divides by the counts
          for shape, pad, freq, dt in [((5,), None, False, np.int64), ((3, 4), 2, False, np.int64),
                                       ((2, 3, 4), -1, True, np.int32), ((), 0, False, np.int64),
                                       ((6, 10), None, True, np.int64)]]
TABLE += [Row(f"unflatten-{dim}-{sizes}", L.Unflatten(dim, sizes), tm("Unflatten", dim, sizes), shape)
          for dim, sizes, shape in [(1, (2, 3), (2, 6, 2)), (-1, (2, -1), (3, 8)), (0, (1, 3, 1), (3, 2))]]

# (in_channels, out_channels, kwargs, input shape)
CONV_TRANSPOSE2D_CASES = {
    "k3": (2, 3, dict(kernel_size=3), (2, 2, 4, 5)),
    "k4-s2-p1": (4, 2, dict(kernel_size=4, stride=2, padding=1), (2, 4, 3, 4)),
    "k3-s2-p1-op1": (2, 3, dict(kernel_size=3, stride=2, padding=1, output_padding=1), (2, 2, 4, 3)),
    "nonsquare-stride-op": (2, 2, dict(kernel_size=(3, 2), stride=(3, 2), padding=(1, 0), output_padding=(2, 1)),
                            (2, 2, 3, 4)),
    "dilation-op-below-dilation": (2, 3, dict(kernel_size=2, dilation=3, output_padding=2), (1, 2, 4, 4)),
    "groups2-no-bias": (4, 6, dict(kernel_size=3, groups=2, stride=2, bias=False), (2, 4, 3, 3)),
    "depthwise": (3, 3, dict(kernel_size=3, groups=3, padding=1), (2, 3, 4, 4)),
    "same-geometry": (3, 2, dict(kernel_size=3, padding=1), (2, 3, 5, 4)),
    "k1-s2-op1": (2, 2, dict(kernel_size=1, stride=2, output_padding=1), (2, 2, 3, 3)),
}
CONV_TRANSPOSE1D_CASES = {
    "k3-s2": (2, 3, dict(kernel_size=3, stride=2), (2, 2, 5)),
    "k4-s3-p2-op2-dilated": (3, 2, dict(kernel_size=4, stride=3, padding=2, output_padding=2, dilation=2),
                             (2, 3, 4)),
    "groups-unbatched": (4, 2, dict(kernel_size=2, groups=2), (4, 6)),
}
TABLE += [Row(f"conv_transpose{d}d-{name}", getattr(L, f"ConvTranspose{d}d")(c_in, c_out, **kw),
              tm(f"ConvTranspose{d}d", c_in, c_out, **kw), shape, params=perturbed_params)
          for d, cases in ((2, CONV_TRANSPOSE2D_CASES), (1, CONV_TRANSPOSE1D_CASES))
          for name, (c_in, c_out, kw, shape) in cases.items()]
TABLE += [Row("conv_transpose2d-unbatched", L.ConvTranspose2d(2, 3, 3, stride=2),
              tm("ConvTranspose2d", 2, 3, 3, stride=2), (2, 3, 3))]

# (mode, align_corners, resize, spatial shape)
UPSAMPLE_CASES = [
    ("nearest", None, dict(scale_factor=2), (3, 4)),
    ("nearest", None, dict(scale_factor=1.5), (3, 4)),
    ("nearest", None, dict(size=(5, 3)), (3, 4)),
    ("nearest", None, dict(scale_factor=3), (4,)),
    ("nearest", None, dict(size=7), (3,)),
    ("bilinear", None, dict(scale_factor=2), (3, 4)),
    ("bilinear", False, dict(scale_factor=(1.5, 2.5)), (3, 4)),
    ("bilinear", True, dict(scale_factor=2), (3, 4)),
    ("bilinear", True, dict(size=(2, 7)), (3, 4)),
    ("bilinear", None, dict(size=(2, 3)), (5, 4)),  # downsampling
    ("linear", None, dict(scale_factor=2), (5,)),
    ("linear", True, dict(size=9), (4,)),
    ("linear", False, dict(scale_factor=2.5, recompute_scale_factor=True), (4,)),
]
TABLE += [Row(f"upsample-{mode}-{'ac' if ac else 'hp'}-{_kw(resize)}-{_sh(spatial)}",
              L.Upsample(**resize, mode=mode, align_corners=ac), tm("Upsample", **resize, mode=mode, align_corners=ac),
              (2, 3, *spatial))
          for mode, ac, resize, spatial in UPSAMPLE_CASES]

# ---------------------------------------------------------------------------- attention
# perturbed params: torch's init has zero biases, which would leave their gradient paths untested
_CAUSAL_3x5 = np.triu(np.ones((3, 5), bool), 1)
_PAD_2x5 = np.array([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], bool)
_MHA_QKV = ((3, 2, 8), (5, 2, 8), (5, 2, 8))


def _float_masks(key: random.Key, dtype: Any) -> dict[str, Any]:
    """A float attention mask per head ``(N * H, L, S)`` and a float padding mask ``(N, S)``."""
    k1, k2 = random.split(key)
    return {"attn_mask": random.normal(k1, (4, 3, 5), dtype=dtype),
            "key_padding_mask": np.where(_PAD_2x5, -np.inf, random.normal(k2, (2, 5), dtype=dtype)).astype(dtype)}


def _mha(**kwargs: Any) -> tuple[Any, Callable[[Any], Any]]:
    return L.MultiheadAttention(**kwargs), tm("MultiheadAttention", **kwargs)


TABLE += [
    Row("mha-8-2", *_mha(embed_dim=8, num_heads=2), _MHA_QKV, params=perturbed_params),
    Row("mha-8-2-self-1x1", *_mha(embed_dim=8, num_heads=2), ((1, 1, 8),) * 3, params=perturbed_params),
    Row("mha-kvdims-biaskv-zeroattn-batchfirst",
        *_mha(embed_dim=8, num_heads=2, kdim=3, vdim=5, add_bias_kv=True, add_zero_attn=True, batch_first=True),
        ((2, 3, 8), (2, 5, 3), (2, 5, 5)), params=perturbed_params),
    Row("mha-unbatched-nobias-per-head-weights", *_mha(embed_dim=8, num_heads=4, bias=False),
        ((3, 8), (5, 8), (5, 8)), params=perturbed_params, kwargs={"average_attn_weights": False}),
    Row("mha-unbatched-masks", *_mha(embed_dim=8, num_heads=2, add_bias_kv=True),
        ((3, 8), (5, 8), (5, 8)), params=perturbed_params,
        kwargs={"attn_mask": _CAUSAL_3x5, "key_padding_mask": np.array([0, 0, 0, 0, 1], bool)}),
    Row("mha-bool-masks-no-weights", *_mha(embed_dim=8, num_heads=2), _MHA_QKV, params=perturbed_params,
        kwargs={"attn_mask": _CAUSAL_3x5, "key_padding_mask": _PAD_2x5, "need_weights": False}),
    Row("mha-bool-masks-biaskv-zeroattn", *_mha(embed_dim=8, num_heads=2, add_bias_kv=True, add_zero_attn=True),
        _MHA_QKV, params=perturbed_params, kwargs={"attn_mask": _CAUSAL_3x5, "key_padding_mask": _PAD_2x5}),
    Row("mha-float-masks", *_mha(embed_dim=8, num_heads=2), _MHA_QKV, params=perturbed_params,
        kwargs=_float_masks),
    Row("mha-is-causal-no-weights", *_mha(embed_dim=8, num_heads=2), ((3, 2, 8),) * 3, params=perturbed_params,
        kwargs={"attn_mask": np.triu(np.ones((3, 3), bool), 1), "is_causal": True, "need_weights": False}),
    Row("mha-is-causal-with-padding", *_mha(embed_dim=8, num_heads=2, batch_first=True), ((2, 3, 8),) * 3,
        params=perturbed_params, kwargs={"attn_mask": np.triu(np.ones((3, 3), bool), 1), "is_causal": True,
                                          "key_padding_mask": np.array([[0, 0, 1], [0, 0, 0]], bool)}),
    # dropout: torch's masks cannot be matched; evaluation can, training is checked for the contract
    Row("mha-dropout-eval", *_mha(embed_dim=8, num_heads=2, dropout=0.5), _MHA_QKV, params=perturbed_params,
        train=(False,)),
    Row("mha-dropout-train", L.MultiheadAttention(8, 2, dropout=0.3), None, _MHA_QKV, params=perturbed_params,
        kwargs={"need_weights": False}),
]

# -------------------------------------------------------------------------- transformers
# weights near torch's init (noise 0.2): with N(0, 1) noise the blocks' float32 gradients lose digits to
# cancellation in torch as in ours (both then differ from the float64 result by more than 1e-5 relative)
def near_init_params(layer: Any, key: random.Key) -> Any:
    """``layer.init`` plus normal noise of standard deviation 0.2."""
    leaves, treedef = tree_flatten(layer.init(key))
    keys = random.split(random.fold_in(key, 1), max(len(leaves), 1))
    return tree_unflatten(treedef, [a + np.asarray(0.2, a.dtype) * random.normal(k, a.shape, dtype=a.dtype)
                                    for k, a in zip(keys, leaves, strict=False)])


def _torch_activation(activation: Any) -> Any:
    if isinstance(activation, L.Layer):  # a function: torch's deep copies replace an activation module by relu
        import torch

        return {"Tanh": torch.tanh, "GELU": torch.nn.functional.gelu}[type(activation).__name__]
    return activation


def _block(kind: str, *args: Any, **kwargs: Any) -> tuple[Any, Callable[[Any], Any]]:
    layer = getattr(L, f"Transformer{kind}Layer")(*args, **kwargs)

    def make(dtype: Any) -> Any:
        import torch

        kw = dict(kwargs, activation=_torch_activation(kwargs.get("activation", "relu")))
        return getattr(torch.nn, f"Transformer{kind}Layer")(*args, **kw).to(torch_dtype(dtype))

    return layer, make


def _stack(kind: str, num_layers: int, norm: bool, *args: Any, **kwargs: Any) -> tuple[Any, Callable[[Any], Any]]:
    block, make_block = _block(kind, *args, **kwargs)
    d_model = args[0]
    layer = getattr(L, f"Transformer{kind}")(block, num_layers, norm=L.LayerNorm(d_model) if norm else None)

    def make(dtype: Any) -> Any:
        import torch

        extra = {"enable_nested_tensor": False} if kind == "Encoder" else {}
        return getattr(torch.nn, f"Transformer{kind}")(
            make_block(dtype), num_layers, norm=torch.nn.LayerNorm(d_model) if norm else None,
            **extra).to(torch_dtype(dtype))

    return layer, make


def _encoder_layer_call(module: Any, x: Any, attn_mask: Any = None, key_padding_mask: Any = None,
                        is_causal: bool = False) -> Any:
    return module(x, src_mask=attn_mask, src_key_padding_mask=key_padding_mask, is_causal=is_causal)


_CAUSAL_3 = np.triu(np.ones((3, 3), bool), 1)
_PAD_2x3 = np.array([[0, 0, 1], [0, 0, 0]], bool)
_PAD_2x4 = np.array([[0, 0, 1, 1], [0, 0, 0, 0]], bool)
_TGT_MEM = ((3, 2, 8), (4, 2, 8))
_P = near_init_params
# finite differences on one row per stack (every leaf of a stack costs two forward passes per coordinate)
TABLE += [
    Row("encoder-layer-post-relu", *_block("Encoder", 8, 2, 16, dropout=0.0), (3, 2, 8), params=_P),
    Row("encoder-layer-normfirst-gelu-batchfirst-masks",
        *_block("Encoder", 8, 2, 16, dropout=0.0, activation="gelu", norm_first=True, batch_first=True),
        (2, 3, 8), params=_P, kwargs={"attn_mask": _CAUSAL_3, "key_padding_mask": _PAD_2x3},
        torch_call=_encoder_layer_call),
    Row("encoder-layer-nobias-tanh-unbatched-causal",
        *_block("Encoder", 8, 4, 6, dropout=0.0, activation=L.Tanh(), bias=False, layer_norm_eps=1e-3),
        (3, 8), params=_P, kwargs={"attn_mask": _CAUSAL_3, "is_causal": True}, torch_call=_encoder_layer_call),
    Row("encoder-layer-dropout-eval", *_block("Encoder", 8, 2, 16), (3, 2, 8), params=_P, train=(False,)),
    Row("encoder-layer-dropout-train", _block("Encoder", 8, 2, 16, dropout=0.2)[0], None, (3, 2, 8), params=_P),
    Row("decoder-layer-post-relu-masks", *_block("Decoder", 8, 2, 16, dropout=0.0), _TGT_MEM, params=_P,
        kwargs={"tgt_mask": _CAUSAL_3, "memory_key_padding_mask": _PAD_2x4, "tgt_key_padding_mask": _PAD_2x3}),
    Row("decoder-layer-normfirst-gelu-batchfirst",
        *_block("Decoder", 8, 2, 16, dropout=0.0, activation="gelu", norm_first=True, batch_first=True),
        ((2, 3, 8), (2, 4, 8)), params=_P, kwargs={"memory_mask": np.array([[0, 1, 0, 0]] * 3, bool)}),
    Row("decoder-layer-unbatched-nobias", *_block("Decoder", 8, 2, 16, dropout=0.0, bias=False),
        ((3, 8), (4, 8)), params=_P, kwargs={"tgt_mask": _CAUSAL_3, "tgt_is_causal": True}),
    Row("decoder-layer-dropout-eval", *_block("Decoder", 8, 2, 16), _TGT_MEM, params=_P, train=(False,)),
    Row("decoder-layer-dropout-train", _block("Decoder", 8, 2, 16, dropout=0.2)[0], None, _TGT_MEM, params=_P),
    Row("encoder-2-layers-norm-masks", *_stack("Encoder", 2, True, 8, 2, 16, dropout=0.0), (3, 2, 8), params=_P,
        kwargs={"mask": _CAUSAL_3, "src_key_padding_mask": _PAD_2x3}, finite_differences=False),
    Row("encoder-2-layers-normfirst-batchfirst",
        *_stack("Encoder", 2, False, 8, 2, 16, dropout=0.0, norm_first=True, batch_first=True), (2, 3, 8),
        params=_P, kwargs={"mask": _CAUSAL_3, "is_causal": True}),
    Row("encoder-2-layers-dropout-train", _stack("Encoder", 2, True, 8, 2, 16, dropout=0.2)[0], None, (3, 2, 8),
        params=_P, finite_differences=False),
    Row("decoder-2-layers-norm-masks", *_stack("Decoder", 2, True, 8, 2, 16, dropout=0.0), _TGT_MEM, params=_P,
        kwargs={"tgt_mask": _CAUSAL_3, "memory_key_padding_mask": _PAD_2x4}),
    Row("decoder-2-layers-dropout-eval", *_stack("Decoder", 2, False, 8, 2, 16), _TGT_MEM, params=_P,
        train=(False,), finite_differences=False),
]


# ---------------------------------------------------- positions, and combinators passing masks on
def _torch_position_embedding(n: int, dim: int) -> Callable[[Any], Any]:
    """torch's twin of ``PositionEmbedding(n, dim)``: ``nn.Embedding`` of ``arange(T)``, expanded."""

    def make(dtype: Any) -> Any:
        import torch

        class PositionEmbedding(torch.nn.Embedding):
            def forward(self, x: Any) -> Any:
                rows = super().forward(torch.arange(x.shape[-1]))
                return rows.expand(*x.shape, self.embedding_dim)

        return PositionEmbedding(n, dim).to(torch_dtype(dtype))

    return make


TABLE += [Row(f"position-embedding-{_sh(shape)}", L.PositionEmbedding(7, 4), _torch_position_embedding(7, 4),
              inputs=_indices(shape, 50, dt))
          for shape, dt in [((5,), np.int64), ((3, 7), np.int64), ((2, 3, 1), np.int32), ((4, 0), np.int64),
                            ((0, 3), np.int64)]]


def _torch_masked(kind: str) -> Any:
    """torch twins of Sequential/Residual/Parallel that pass the masks to their TransformerEncoderLayers."""
    import torch

    def run(m: Any, x: Any, attn_mask: Any, is_causal: bool) -> Any:
        if isinstance(m, torch.nn.TransformerEncoderLayer):
            return m(x, src_mask=attn_mask, is_causal=is_causal)
        if isinstance(m, (torch.nn.Sequential, torch.nn.ModuleList)):
            return m(x, attn_mask=attn_mask, is_causal=is_causal)
        return m(x)

    class Sequential(torch.nn.Sequential):
        def forward(self, x: Any, attn_mask: Any = None, is_causal: bool = False) -> Any:
            for m in self:
                x = run(m, x, attn_mask, is_causal)
            return x

    class Residual(Sequential):  # x + body(x), keeping body's keys
        def forward(self, x: Any, attn_mask: Any = None, is_causal: bool = False) -> Any:
            return x + super().forward(x, attn_mask, is_causal)

    class Parallel(torch.nn.ModuleList):  # the same input to each branch, a tuple out
        def forward(self, x: Any, attn_mask: Any = None, is_causal: bool = False) -> Any:
            return tuple(run(m, x, attn_mask, is_causal) for m in self)

    return {"Sequential": Sequential, "Residual": Residual, "Parallel": Parallel}[kind]


def _tel(lib: Any, dtype: Any, dropout: float = 0.0) -> Any:
    """A pre-LayerNorm, batch-first TransformerEncoderLayer(8, 2, 16), ours or torch's."""
    if lib is L:
        return L.TransformerEncoderLayer(8, 2, 16, dropout=dropout, norm_first=True, batch_first=True, dtype=dtype)
    return lib.nn.TransformerEncoderLayer(8, 2, 16, dropout=dropout, norm_first=True, batch_first=True)


def _masked_twin(build: Callable[[Any, Any], Any]) -> Callable[[Any], Any]:
    def make(dtype: Any) -> Any:
        import torch

        return build(torch, dtype).to(torch_dtype(dtype))

    return make


def _two_blocks(lib: Any, dtype: Any) -> Any:
    if lib is L:
        return L.Sequential(_tel(L, dtype), _tel(L, dtype), L.LayerNorm(8, dtype=dtype))
    return _torch_masked("Sequential")(_tel(lib, dtype), _tel(lib, dtype), lib.nn.LayerNorm(8))


def _residual_block(lib: Any, dtype: Any) -> Any:
    if lib is L:
        return L.Residual(L.Sequential(L.LayerNorm(8, dtype=dtype), _tel(L, dtype)))
    return _torch_masked("Residual")(lib.nn.LayerNorm(8), _tel(lib, dtype))


def _parallel_block(lib: Any, dtype: Any) -> Any:  # the mask reaches the block, not the Linear
    if lib is L:
        return L.Sequential(L.Parallel(_tel(L, dtype), L.Linear(8, 8, dtype=dtype)), L.Add())
    nn, _, _, Add, _ = _torch_combinators()
    return _torch_masked("Sequential")(_torch_masked("Parallel")([_tel(lib, dtype), nn.Linear(8, 8)]), Add())


def _tiny_gpt(lib: Any, dtype: Any, dropout: float = 0.0) -> Any:
    """The char LM of examples/train_charlm.py in small: positions, two blocks, a final norm and a head."""
    if lib is L:
        return L.Sequential(L.Parallel(L.Embedding(11, 8, dtype=dtype), L.PositionEmbedding(5, 8, dtype=dtype)),
                            L.Add(), _tel(L, dtype, dropout), _tel(L, dtype, dropout),
                            L.LayerNorm(8, dtype=dtype), L.Linear(8, 11, dtype=dtype))
    _, _, _, Add, _ = _torch_combinators()
    position = _torch_position_embedding(5, 8)(dtype)
    return _torch_masked("Sequential")(
        _torch_masked("Parallel")([lib.nn.Embedding(11, 8), position]), Add(), _tel(lib, dtype, dropout),
        _tel(lib, dtype, dropout), lib.nn.LayerNorm(8), lib.nn.Linear(8, 11))


_CAUSAL_4 = np.triu(np.ones((4, 4), bool), 1)
_MASKS = {"attn_mask": _CAUSAL_4, "is_causal": True}
TABLE += [
    Row("sequential-2-encoder-layers-layernorm-causal", lambda dt: _two_blocks(L, dt), _masked_twin(_two_blocks),
        (2, 4, 8), params=_P, kwargs=_MASKS),
    Row("sequential-encoder-layers-float-mask", lambda dt: _two_blocks(L, dt), _masked_twin(_two_blocks),
        (2, 4, 8), params=_P, finite_differences=False,
        kwargs=lambda key, dt: {"attn_mask": random.normal(key, (4, 4), dtype=dt)}),
    Row("residual-causal", lambda dt: _residual_block(L, dt), _masked_twin(_residual_block), (2, 4, 8),
        params=_P, kwargs=_MASKS),
    Row("parallel-add-causal", lambda dt: _parallel_block(L, dt), _masked_twin(_parallel_block), (2, 4, 8),
        params=_P, kwargs=_MASKS),
    Row("tiny-gpt-causal", lambda dt: _tiny_gpt(L, dt), _masked_twin(_tiny_gpt), inputs=_indices((3, 4), 11),
        params=_P, kwargs=_MASKS),
    Row("tiny-gpt-dropout-eval", lambda dt: _tiny_gpt(L, dt, 0.3),
        _masked_twin(lambda lib, dt: _tiny_gpt(lib, dt, 0.3)), inputs=_indices((3, 4), 11), params=_P,
        kwargs=_MASKS, train=(False,), finite_differences=False),
    Row("tiny-gpt-dropout-train", lambda dt: _tiny_gpt(L, dt, 0.3), None, inputs=_indices((3, 4), 11), params=_P,
        kwargs=_MASKS),
]

IDS = [r.id for r in TABLE]
assert len(set(IDS)) == len(IDS), "row ids must be unique"

"""One table of all layers, driving the contract and property tests.

Each entry: an id, a factory ``dtype -> layer`` and an input shape. Add every new
layer here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nptfunc import layers as L
from nptfunc import tree

Entry = tuple[str, Callable[..., L.Layer], tuple[int, ...]]

TABLE: list[Entry] = [
    ("linear", lambda dt: L.Linear(4, 3, dtype=dt), (2, 4)),
    ("linear-nobias-3d", lambda dt: L.Linear(4, 3, bias=False, dtype=dt), (2, 5, 4)),
    ("relu", lambda dt: L.ReLU(), (2, 3)),
    ("leaky_relu", lambda dt: L.LeakyReLU(0.1), (2, 3)),
    ("sigmoid", lambda dt: L.Sigmoid(), (2, 3)),
    ("tanh", lambda dt: L.Tanh(), (2, 3)),
    ("gelu", lambda dt: L.GELU(), (2, 3)),
    ("gelu-tanh", lambda dt: L.GELU("tanh"), (2, 3)),
    ("identity", lambda dt: L.Identity(), (2, 3)),
    ("softmax", lambda dt: L.Softmax(1), (2, 3, 2)),
    ("log_softmax", lambda dt: L.LogSoftmax(-1), (2, 3)),
    ("flatten", lambda dt: L.Flatten(), (2, 3, 2, 2)),
    ("sequential", lambda dt: L.Sequential(L.Linear(4, 5, dtype=dt), L.ReLU(), L.Linear(5, 2, dtype=dt)),
     (3, 4)),
]


def _optional(entries: list[Entry]) -> None:
    TABLE.extend(entries)


# Layers of the other families, when present.
if hasattr(L, "Conv2d"):
    _optional([
        ("conv2d", lambda dt: L.Conv2d(2, 3, 3, padding=1, dtype=dt), (2, 2, 5, 5)),
        ("conv2d-groups-stride", lambda dt: L.Conv2d(4, 4, (3, 2), stride=2, groups=2, dtype=dt), (1, 4, 7, 6)),
        ("conv2d-unbatched-dilated", lambda dt: L.Conv2d(1, 2, 2, dilation=2, dtype=dt), (1, 6, 6)),
    ])
if hasattr(L, "Conv1d"):
    _optional([("conv1d", lambda dt: L.Conv1d(2, 3, 3, padding=1, dtype=dt), (2, 2, 7))])
if hasattr(L, "ConvTranspose2d"):
    _optional([
        ("conv_transpose2d", lambda dt: L.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1,
                                                          dtype=dt), (2, 2, 3, 4)),
        ("conv_transpose2d-groups-unbatched", lambda dt: L.ConvTranspose2d(4, 2, (2, 3), groups=2, bias=False,
                                                                           dtype=dt), (4, 3, 3)),
        ("conv_transpose1d-dilated", lambda dt: L.ConvTranspose1d(2, 3, 3, dilation=2, padding=1, dtype=dt),
         (2, 2, 5)),
    ])
if hasattr(L, "MaxPool2d"):
    _optional([
        ("maxpool2d", lambda dt: L.MaxPool2d(2), (2, 3, 6, 6)),
        ("maxpool2d-ceil-pad", lambda dt: L.MaxPool2d(3, 2, padding=1, ceil_mode=True), (1, 2, 7, 7)),
        ("avgpool2d", lambda dt: L.AvgPool2d(2), (2, 3, 6, 6)),
        ("avgpool2d-pad", lambda dt: L.AvgPool2d(3, 2, padding=1, count_include_pad=False), (1, 2, 7, 7)),
        ("adaptive_avgpool2d", lambda dt: L.AdaptiveAvgPool2d(1), (2, 3, 4, 4)),
    ])
if hasattr(L, "BatchNorm2d"):
    _optional([
        ("batchnorm1d", lambda dt: L.BatchNorm1d(3, dtype=dt), (4, 3)),
        ("batchnorm2d", lambda dt: L.BatchNorm2d(3, dtype=dt), (2, 3, 2, 2)),
        ("layernorm", lambda dt: L.LayerNorm((3, 2), dtype=dt), (2, 3, 2)),
        ("groupnorm", lambda dt: L.GroupNorm(2, 4, dtype=dt), (2, 4, 3)),
    ])
# issue 13: the new activations
_optional([
    ("silu", lambda dt: L.SiLU(), (2, 3)),
    ("elu", lambda dt: L.ELU(0.5), (2, 3)),
    ("softplus", lambda dt: L.Softplus(2.0, 1.0), (2, 3)),
    ("mish", lambda dt: L.Mish(), (2, 3)),
    ("hardtanh", lambda dt: L.Hardtanh(-0.5, 0.5), (2, 3)),
    ("hardswish", lambda dt: L.Hardswish(), (2, 3)),
    ("hardsigmoid", lambda dt: L.Hardsigmoid(), (2, 3)),
    ("relu6", lambda dt: L.ReLU6(), (2, 3)),
    ("softsign", lambda dt: L.Softsign(), (2, 3)),
    ("prelu", lambda dt: L.PReLU(dtype=dt), (2, 3)),
    ("prelu-channels", lambda dt: L.PReLU(3, dtype=dt), (2, 3, 2)),
    ("unflatten", lambda dt: L.Unflatten(1, (2, 3)), (2, 6, 2)),
    ("upsample-nearest2d", lambda dt: L.Upsample(scale_factor=2), (2, 3, 2, 3)),
    ("upsample-nearest1d-size", lambda dt: L.Upsample(size=5), (2, 3, 3)),
    ("upsample-bilinear", lambda dt: L.Upsample(scale_factor=1.5, mode="bilinear"), (2, 2, 3, 4)),
    ("upsample-bilinear-corners", lambda dt: L.Upsample(size=(4, 5), mode="bilinear", align_corners=True),
     (1, 2, 3, 2)),
    ("upsample-linear", lambda dt: L.Upsample(scale_factor=2, mode="linear"), (2, 3, 4)),
])
if hasattr(L, "Dropout"):
    _optional([
        ("dropout", lambda dt: L.Dropout(0.3), (4, 5)),
        ("dropout2d", lambda dt: L.Dropout2d(0.5), (2, 3, 2, 2)),
    ])


def run(layer, params, x, state, train=True):
    """Call any layer of the table: the long form if it is stateful, else the short one (state passes)."""
    if layer.stateful:
        return layer.apply(params, x, state, train=train)
    y, vjp = layer.apply(params, x)
    return y, vjp, state


def copy_tree(t):
    """A deep copy of a tree's arrays (to compare with after a call)."""
    return tree.tree_map(lambda a: a.copy() if isinstance(a, np.ndarray) else a, t)

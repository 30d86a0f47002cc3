"""Layers: immutable hyperparameters with pure ``init`` and ``apply`` (see ``base``)."""

from nptfunc.layers.activation import (
    GELU,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from nptfunc.layers.base import Layer
from nptfunc.layers.containers import Sequential
from nptfunc.layers.dropout import Dropout, Dropout2d, DropoutState
from nptfunc.layers.linear import Linear, LinearParams
from nptfunc.layers.normalization import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    BatchNormParams,
    BatchNormState,
    GroupNorm,
    GroupNormParams,
    LayerNorm,
    LayerNormParams,
)
from nptfunc.layers.reshape import Flatten

__all__ = [
    "GELU",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormParams",
    "BatchNormState",
    "Dropout",
    "Dropout2d",
    "DropoutState",
    "Flatten",
    "GroupNorm",
    "GroupNormParams",
    "Identity",
    "Layer",
    "LayerNorm",
    "LayerNormParams",
    "LeakyReLU",
    "Linear",
    "LinearParams",
    "LogSoftmax",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
]

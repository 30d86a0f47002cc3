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
from nptfunc.layers.linear import Linear, LinearParams
from nptfunc.layers.reshape import Flatten

__all__ = [
    "GELU",
    "Flatten",
    "Identity",
    "Layer",
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

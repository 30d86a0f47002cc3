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
from nptfunc.layers.attention import (
    MultiheadAttention,
    MultiheadAttentionParams,
    scaled_dot_product_attention,
)
from nptfunc.layers.base import Layer
from nptfunc.layers.containers import Add, Concatenate, FanOut, Lambda, Parallel, Residual, Sequential
from nptfunc.layers.conv import Conv1d, Conv2d, ConvParams
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
    SyncBatchNorm,
)
from nptfunc.layers.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from nptfunc.layers.reshape import Flatten
from nptfunc.layers.slow import SlowConv2d, SlowMaxPool2d
from nptfunc.layers.transformer import (
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerDecoderLayerParams,
    TransformerDecoderParams,
    TransformerEncoder,
    TransformerEncoderLayer,
    TransformerEncoderLayerParams,
    TransformerEncoderParams,
)

__all__ = [
    "GELU",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "Add",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormParams",
    "BatchNormState",
    "Concatenate",
    "Conv1d",
    "Conv2d",
    "ConvParams",
    "Dropout",
    "Dropout2d",
    "DropoutState",
    "FanOut",
    "Flatten",
    "GroupNorm",
    "GroupNormParams",
    "Identity",
    "Lambda",
    "Layer",
    "LayerNorm",
    "LayerNormParams",
    "LeakyReLU",
    "Linear",
    "LinearParams",
    "LogSoftmax",
    "MaxPool1d",
    "MaxPool2d",
    "MultiheadAttention",
    "MultiheadAttentionParams",
    "Parallel",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "SlowConv2d",
    "SlowMaxPool2d",
    "Softmax",
    "SyncBatchNorm",
    "Tanh",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerDecoderLayerParams",
    "TransformerDecoderParams",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TransformerEncoderLayerParams",
    "TransformerEncoderParams",
    "scaled_dot_product_attention",
]

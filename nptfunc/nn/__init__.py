"""The PyTorch-like facade: modules that hold arrays and call the functional core.

``from nptfunc import nn`` gives torch's names (``nn.Linear``, ``nn.Sequential``,
``nn.CrossEntropyLoss``, ``nn.Module``, ``nn.Parameter``) and the reference
project's (``nn.Variable``, ``nn.Net``). See ``docs/facade.md``.
"""

from nptfunc.nn import functional, init, parallel, utils
from nptfunc.nn._attention import (
    MultiheadAttention,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from nptfunc.nn._containers import ModuleDict, ModuleList, Net, ParameterList, Sequential
from nptfunc.nn._functional_module import FunctionalModule
from nptfunc.nn._layers import (
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    Conv2d,
    Dropout,
    Dropout2d,
    Flatten,
    GroupNorm,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    Sigmoid,
    SlowConv2d,
    SlowMaxPool2d,
    Softmax,
    SyncBatchNorm,
    Tanh,
)
from nptfunc.nn._losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    FunctionalLoss,
    L1Loss,
    LossValue,
    MSELoss,
    NLLLoss,
    ProbabilitiesCrossEntropyLoss,
)
from nptfunc.nn._module import IncompatibleKeys, Module
from nptfunc.nn._parameter import Parameter
from nptfunc.nn._tensor import Tensor

Variable = Parameter
"""The reference project's name for :class:`Parameter`."""

__all__ = [
    "GELU",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Dropout2d",
    "Flatten",
    "FunctionalLoss",
    "FunctionalModule",
    "GroupNorm",
    "Identity",
    "IncompatibleKeys",
    "L1Loss",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "LossValue",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ModuleDict",
    "ModuleList",
    "MultiheadAttention",
    "NLLLoss",
    "Net",
    "Parameter",
    "ParameterList",
    "ProbabilitiesCrossEntropyLoss",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SlowConv2d",
    "SlowMaxPool2d",
    "Softmax",
    "SyncBatchNorm",
    "Tanh",
    "Tensor",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "Variable",
    "functional",
    "init",
    "parallel",
    "utils",
]

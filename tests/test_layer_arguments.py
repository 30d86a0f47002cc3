"""Every constructor argument of every public layer is checked (issue: hardening, item 1).

For each layer class of ``nptfunc.layers`` and each of its arguments, a table of
bad values is tried: ``None``, a string, a bool, NaN, infinity, a negative and a
fractional number, and an empty tuple. Each must be either refused with a
``TypeError``/``ValueError`` whose message names the class and the argument, or
accepted unchanged (``None`` for ``momentum``, ``-1`` for ``dim``, ``1.5`` for a
slope are meaningful): an accepted value may be normalised into a tuple of
itself, never mangled (``1.5`` silently becoming ``1``). A new layer class must
get a row of valid arguments here, or the completeness test fails.
"""

import math

import attrs
import pytest

from nptfunc import layers, ops

VALID: dict[str, tuple[tuple, dict]] = {
    "GELU": ((), {}), "AdaptiveAvgPool1d": ((2,), {}), "AdaptiveAvgPool2d": ((2,), {}), "Add": ((), {}),
    "AvgPool1d": ((2,), {}), "AvgPool2d": ((2,), {}), "BatchNorm1d": ((3,), {}), "BatchNorm2d": ((3,), {}),
    "BatchNorm3d": ((3,), {}), "Concatenate": ((), {}), "Conv1d": ((2, 4, 3), {}), "Conv2d": ((2, 4, 3), {}),
    "Dropout": ((), {}), "Dropout2d": ((), {}), "FanOut": ((2,), {}), "Flatten": ((), {}),
    "GroupNorm": ((2, 4), {}), "Identity": ((), {}), "Lambda": ((ops.relu,), {}), "LayerNorm": ((3,), {}),
    "LeakyReLU": ((), {}), "Linear": ((3, 2), {}), "LogSoftmax": ((1,), {}), "MaxPool1d": ((2,), {}),
    "MaxPool2d": ((2,), {}), "Parallel": ((layers.ReLU(),), {}), "ReLU": ((), {}),
    "Residual": ((layers.ReLU(),), {}), "Sequential": ((layers.ReLU(),), {}), "Sigmoid": ((), {}),
    "SlowConv2d": ((2, 4, 3), {}), "SlowMaxPool2d": ((2,), {}), "Softmax": ((1,), {}),
    "SyncBatchNorm": ((3,), {}), "Tanh": ((), {}),
    "RNN": ((3, 4), {}), "LSTM": ((3, 4), {}), "GRU": ((3, 4), {}),
    "RNNCell": ((3, 4), {}), "LSTMCell": ((3, 4), {}), "GRUCell": ((3, 4), {}),
    # issue 13
    "ConvTranspose1d": ((2, 4, 3), {}), "ConvTranspose2d": ((2, 4, 3), {}), "ELU": ((), {}),
    "Embedding": ((5, 3), {}), "PositionEmbedding": ((5, 3), {}), "Hardsigmoid": ((), {}), "Hardswish": ((), {}), "Hardtanh": ((), {}),
    "Mish": ((), {}), "PReLU": ((), {}), "ReLU6": ((), {}), "SiLU": ((), {}), "Softplus": ((), {}),
    "Softsign": ((), {}), "Unflatten": ((1, (2, 3)), {}), "Upsample": ((), {"scale_factor": 2}),
    "MultiheadAttention": ((4, 2), {}), "TransformerEncoderLayer": ((4, 2), {}),
    "TransformerDecoderLayer": ((4, 2), {}),
    "TransformerEncoder": ((layers.TransformerEncoderLayer(4, 2), 2), {}),
    "TransformerDecoder": ((layers.TransformerDecoderLayer(4, 2), 2), {}),
}
BAD = [None, "a", True, math.nan, math.inf, -1, 1.5, ()]
NOT_WALKED = {"Layer"}  # the base class
# Arguments whose values are layers or functions, checked by their own tests (test_combinators).
SKIP_FIELDS = {("Lambda", "fn"), ("Lambda", "kwargs"), ("Residual", "layer"), ("SyncBatchNorm", "comm"),
               ("Sequential", "layers"), ("Parallel", "layers")}


def _classes():
    for name in layers.__all__:
        cls = getattr(layers, name)
        if isinstance(cls, type) and issubclass(cls, layers.Layer) and name not in NOT_WALKED:
            yield name, cls


def test_every_public_layer_has_valid_arguments_here():
    missing = sorted(name for name, _ in _classes() if name not in VALID)
    assert not missing, f"add a row of valid arguments for {missing}"


CASES = [(name, f.name, bad) for name, cls in _classes() if name in VALID and attrs.has(cls)
         for f in attrs.fields(cls) if f.init and (name, f.name) not in SKIP_FIELDS
         for bad in BAD]


def _same(stored, bad) -> bool:
    if isinstance(stored, tuple) and not isinstance(bad, tuple):
        return all(_same(s, bad) for s in stored)
    if isinstance(bad, float) and math.isnan(bad):
        return isinstance(stored, float) and math.isnan(stored)
    return type(stored) is type(bad) or ((isinstance(stored, float) and not isinstance(bad, bool)
                                         and isinstance(bad, (int, float))) and stored == bad)


@pytest.mark.parametrize(("name", "field", "bad"), CASES, ids=[f"{n}-{f}-{b!r}" for n, f, b in CASES])
def test_a_bad_argument_is_refused_naming_the_class_and_argument_or_kept(name, field, bad):
    cls = getattr(layers, name)
    args, kwargs = VALID[name]
    names = [f.name for f in attrs.fields(cls) if f.init]
    call_kwargs = dict(zip(names, args, strict=False)) | kwargs | {field: bad}
    try:
        layer = cls(**call_kwargs)
    except (TypeError, ValueError) as e:
        message = str(e)
        assert message.startswith(name), message
        label = field.lstrip("_")
        assert label in message, message
        return
    stored = getattr(layer, field)
    if bad is None:  # None accepted means something (a default: stride = kernel_size, momentum = average)
        return
    assert _same(stored, bad), f"{name}({field}={bad!r}) was accepted but stored as {stored!r}"

"""``nn.init``: torch's initialisers, drawing from keys.

Each ``*_`` function replaces the tensor's array with a new one drawn from
``key=`` (a :class:`nptfunc.random.Key` or an int seed) or, without one, from the
facade's seeded key stream (:func:`nptfunc.torch.manual_seed`). The formulas
(gains, fans, bounds) are torch's. Equivalent to ``torch.nn.init``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nptfunc import random
from nptfunc._validate import check_choice, check_real
from nptfunc.nn._seed import as_key
from nptfunc.nn._tensor import Tensor

__all__ = [
    "calculate_gain", "constant_", "kaiming_normal_", "kaiming_uniform_", "normal_", "ones_", "uniform_",
    "xavier_normal_", "xavier_uniform_", "zeros_",
]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for ``nonlinearity``. Equivalent to ``torch.nn.init.calculate_gain``."""
    check_choice("calculate_gain", "nonlinearity", nonlinearity,
                 (*_LINEAR, "tanh", "relu", "leaky_relu", "selu"))
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4
    slope = 0.01 if param is None else check_real("calculate_gain", "param", param)
    return math.sqrt(2.0 / (1 + slope**2))


def _fans(owner: str, tensor: Tensor) -> tuple[int, int]:
    shape = tensor.shape
    if len(shape) < 2:
        msg = f"{owner}: fan in and fan out need a tensor of at least 2 dimensions, got shape {shape}"
        raise ValueError(msg)
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _set(owner: str, tensor: Any, value: np.ndarray) -> Any:
    if not isinstance(tensor, Tensor):
        msg = f"{owner}: expected an nn.Parameter or a tensor, got {type(tensor).__name__}"
        raise TypeError(msg)
    tensor.data = value.astype(tensor.dtype, copy=False)
    tensor._version += 1
    return tensor


def _check(owner: str, tensor: Any) -> Tensor:
    if not isinstance(tensor, Tensor):
        msg = f"{owner}: expected an nn.Parameter or a tensor, got {type(tensor).__name__}"
        raise TypeError(msg)
    return tensor


def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0, *, key: Any = None) -> Any:
    """Values from ``U(a, b)``. Equivalent to ``torch.nn.init.uniform_``."""
    t = _check("uniform_", tensor)
    k = as_key(key, "uniform_")
    return _set("uniform_", t, random.uniform(k, t.shape, a, b, dtype=np.float64))


def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, *, key: Any = None) -> Any:
    """Values from ``N(mean, std**2)``. Equivalent to ``torch.nn.init.normal_``."""
    t = _check("normal_", tensor)
    k = as_key(key, "normal_")
    return _set("normal_", t, mean + std * random.normal(k, t.shape, dtype=np.float64))


def constant_(tensor: Any, val: float) -> Any:
    """Every value ``val``. Equivalent to ``torch.nn.init.constant_``."""
    t = _check("constant_", tensor)
    return _set("constant_", t, np.full(t.shape, val))


def zeros_(tensor: Any) -> Any:
    """Zeros. Equivalent to ``torch.nn.init.zeros_``."""
    return constant_(tensor, 0.0)


def ones_(tensor: Any) -> Any:
    """Ones. Equivalent to ``torch.nn.init.ones_``."""
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor: Any, gain: float = 1.0, *, key: Any = None) -> Any:
    """``U(-b, b)``, ``b = gain * sqrt(6 / (fan_in + fan_out))``, as ``torch.nn.init.xavier_uniform_``."""
    fan_in, fan_out = _fans("xavier_uniform_", _check("xavier_uniform_", tensor))
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, key=key)


def xavier_normal_(tensor: Any, gain: float = 1.0, *, key: Any = None) -> Any:
    """``N(0, s**2)``, ``s = gain * sqrt(2 / (fan_in + fan_out))``, as ``torch.nn.init.xavier_normal_``."""
    fan_in, fan_out = _fans("xavier_normal_", _check("xavier_normal_", tensor))
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), key=key)


def _kaiming_std(owner: str, tensor: Any, a: float, mode: str, nonlinearity: str) -> float:
    check_choice(owner, "mode", mode, ("fan_in", "fan_out"))
    fan_in, fan_out = _fans(owner, _check(owner, tensor))
    return calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def kaiming_uniform_(tensor: Any, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     *, key: Any = None) -> Any:
    """``U(-b, b)``, ``b = sqrt(3) * gain / sqrt(fan)``. Equivalent to ``torch.nn.init.kaiming_uniform_``."""
    bound = math.sqrt(3.0) * _kaiming_std("kaiming_uniform_", tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, key=key)


def kaiming_normal_(tensor: Any, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    *, key: Any = None) -> Any:
    """``N(0, std**2)``, ``std = gain / sqrt(fan)``. Equivalent to ``torch.nn.init.kaiming_normal_``."""
    return normal_(tensor, 0.0, _kaiming_std("kaiming_normal_", tensor, a, mode, nonlinearity), key=key)

"""Default initialisation schemes, following torch's distributions."""

from __future__ import annotations

import math

import numpy as np

from nptfunc import random
from nptfunc._types import Array
from nptfunc.random import Key

__all__ = ["kaiming_uniform", "torch_default_bias", "torch_default_weight"]


def kaiming_uniform(key: Key, shape: tuple[int, ...], fan_in: int, a: float,
                    dtype: np.dtype) -> Array:
    """``U(-b, b)`` with ``b = gain * sqrt(3 / fan_in)``, ``gain = sqrt(2 / (1 + a**2))``.

    Equivalent to ``torch.nn.init.kaiming_uniform_(w, a=a)`` (leaky_relu, fan_in mode).
    """
    gain = math.sqrt(2.0 / (1.0 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in) if fan_in > 0 else 0.0
    return random.uniform(key, shape, -bound, bound, dtype=dtype)


def torch_default_weight(key: Key, shape: tuple[int, ...], fan_in: int, dtype: np.dtype) -> Array:
    """torch's default weight init of Linear and Conv: kaiming-uniform with ``a = sqrt(5)``.

    That is ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
    """
    return kaiming_uniform(key, shape, fan_in, math.sqrt(5.0), dtype)


def torch_default_bias(key: Key, shape: tuple[int, ...], fan_in: int, dtype: np.dtype) -> Array:
    """torch's default bias init of Linear and Conv: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return random.uniform(key, shape, -bound, bound, dtype=dtype)

"""Hyperparameter checks shared by every floor: one message shape everywhere.

``{owner}: expected {name} {allowed}, got {value}``, a ``TypeError`` for a value of
the wrong kind and a ``ValueError`` for one out of range. Each check returns the
value as a plain Python ``int`` or ``float`` (Python floats keep float32
arithmetic float32: NumPy treats them as weak scalars).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_int", "check_real"]


def check_int(owner: str, name: str, value: Any, *, minimum: int | None = 1) -> int:
    """``value`` as an ``int >= minimum`` (any int when ``minimum`` is ``None``), or raise."""
    allowed = "to be an int" if minimum is None else f"to be an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        msg = f"{owner}: expected {name} {allowed}, got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    if minimum is not None and value < minimum:
        msg = f"{owner}: expected {name} {allowed}, got {value}"
        raise ValueError(msg)
    return int(value)


def check_real(owner: str, name: str, value: Any, *, low: float | None = None,
               high: float | None = None, low_open: bool = False, high_open: bool = False,
               allow_none: bool = False) -> float | None:
    """``value`` as a float within the bounds (NaN never is), or raise naming ``owner``.

    Args:
        owner: the class or function, first in the message.
        name: the argument.
        value: what was given.
        low: the lower bound, if any.
        high: the upper bound, if any.
        low_open: whether ``low`` itself is excluded.
        high_open: whether ``high`` itself is excluded.
        allow_none: whether ``None`` is allowed (and returned as is).
    """
    if low is not None and high is not None:
        allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        allowed = f"{'<' if high_open else '<='} {high:g}"
    else:
        allowed = "a real number"
    if allow_none:
        if value is None:
            return None
        allowed += " or None"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"{owner}: expected {name} {allowed}, got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    v = float(value)
    ok = not math.isnan(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        msg = f"{owner}: expected {name} {allowed}, got {value!r}"
        raise ValueError(msg)
    return v

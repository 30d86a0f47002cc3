"""The array module behind layer math.

Layer math never names ``numpy`` directly for its arithmetic: it asks
:func:`array_module` for the module of its inputs, so that another array library
with NumPy's API (CuPy) can later run the same pure functions. NumPy is the default
and the only required backend.

The few tools that have no portable spelling (strided views, scatter-adds,
read-only flags) live here, behind that same lookup.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["array_module", "as_strided", "readonly", "scatter_add", "sliding_windows"]

_NUMPY_MODULES = frozenset({"numpy", "builtins"})


def array_module(*arrays: Any) -> ModuleType:
    """Return the array module (``numpy`` or a NumPy-compatible one) of ``arrays``.

    Python scalars, lists and NumPy arrays give ``numpy``; an array whose class
    lives in another top-level package (``cupy.ndarray``) gives that package.
    """
    for a in arrays:
        if a is None:
            continue
        top = type(a).__module__.partition(".")[0]
        if top not in _NUMPY_MODULES:
            return importlib.import_module(top)
    return np


def as_strided(x: Any, shape: tuple[int, ...], strides: tuple[int, ...]) -> Any:
    """A read-only strided view of ``x`` (no copy)."""
    xp = array_module(x)
    return xp.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)


def sliding_windows(x: Any, window_shape: tuple[int, ...], axis: tuple[int, ...]) -> Any:
    """A read-only view of all sliding windows of ``x`` over ``axis`` (no copy)."""
    xp = array_module(x)
    return xp.lib.stride_tricks.sliding_window_view(x, window_shape, axis=axis)


def scatter_add(target: Any, index: Any, values: Any) -> None:
    """``target[index] += values`` with repeated indices accumulated (unbuffered).

    The one in-place primitive of the library; use it only on arrays the caller
    has just allocated itself.
    """
    xp = array_module(target)
    xp.add.at(target, index, values)


def readonly(x: Any) -> Any:
    """A read-only view of ``x`` if it is a NumPy array; anything else unchanged.

    A view, not a copy: the caller's own array keeps its flags, so making a
    parameter read-only never modifies what the caller passed in.
    """
    if isinstance(x, np.ndarray):
        if not x.flags.writeable:
            return x
        v = x.view()
        v.flags.writeable = False
        return v
    return x

"""Argument checks shared by every floor: one mechanism, one message shape everywhere.

``{owner}: expected {name} {allowed}, got {value}``: a ``TypeError`` for a value of
the wrong kind (a ``bool`` is not an int, a string is not a number, ``None`` only
where it means something) and a ``ValueError`` for one out of range (NaN and the
infinities are out of every range unless a bound says otherwise).

Two spellings of the same checks:

* functions, ``check_int(owner, name, value, ...)`` and friends, for factories and
  plain classes (optimizers, schedules, the facade): each returns the value
  normalised (a plain Python ``int``, ``float``, ``bool`` or tuple of ints;
  Python floats keep float32 arithmetic float32, since NumPy treats them as weak
  scalars);
* attrs fields, ``int_field(...)`` and friends, for frozen attrs classes (layers,
  losses): the same check as the field's converter, naming the class and the
  field, so a class declares its arguments and never validates them by hand.

Example:
    >>> import attrs
    >>> @attrs.frozen
    ... class Pool:
    ...     size: int = int_field(minimum=1)
    ...     p: float = probability_field(default=0.5)
    >>> Pool(2, p=1)
    Pool(size=2, p=1.0)
    >>> Pool(0)
    Traceback (most recent call last):
    ...
    ValueError: Pool: expected size to be an int >= 1, got 0
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

__all__ = [
    "as_array",
    "bool_field",
    "check_bool",
    "check_choice",
    "check_float_dtype",
    "check_int",
    "check_ntuple",
    "check_real",
    "choice_field",
    "dtype_field",
    "int_field",
    "ntuple_field",
    "owner_of",
    "probability_field",
    "real_field",
]


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def owner_of(instance: Any) -> str:
    """How an error names the class being built: its class name."""
    return type(instance).__name__


# ------------------------------------------------------------------------ checks
def check_int(owner: str, name: str, value: Any, *, minimum: int | None = 1,
              maximum: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as a Python ``int`` in ``[minimum, maximum]``, or raise naming ``owner``.

    Args:
        owner: the class or function, first in the message.
        name: the argument.
        value: what was given (a Python or NumPy integer; never a ``bool``).
        minimum: the smallest allowed value, or ``None`` for no lower bound.
        maximum: the largest allowed value, or ``None``.
        allow_none: whether ``None`` is allowed (and returned as is).
    """
    if minimum is not None and maximum is not None:
        allowed = f"to be an int in [{minimum}, {maximum}]"
    elif minimum is not None:
        allowed = f"to be an int >= {minimum}"
    elif maximum is not None:
        allowed = f"to be an int <= {maximum}"
    else:
        allowed = "to be an int"
    if allow_none:
        if value is None:
            return None
        allowed += " or None"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        msg = f"{owner}: expected {name} {allowed}, got {_got(value)}"
        raise TypeError(msg)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        msg = f"{owner}: expected {name} {allowed}, got {value}"
        raise ValueError(msg)
    return int(value)


def check_real(owner: str, name: str, value: Any, *, low: float | None = None,
               high: float | None = None, low_open: bool = False, high_open: bool = False,
               allow_none: bool = False, allow_inf: bool = False) -> float | None:
    """``value`` as a Python ``float`` within the bounds, or raise naming ``owner``.

    NaN is never allowed; the infinities only with ``allow_inf`` (and the bounds).

    Args:
        owner: the class or function, first in the message.
        name: the argument.
        value: what was given (a real number; never a ``bool`` or a string).
        low: the lower bound, if any.
        high: the upper bound, if any.
        low_open: whether ``low`` itself is excluded.
        high_open: whether ``high`` itself is excluded.
        allow_none: whether ``None`` is allowed (and returned as is).
        allow_inf: whether ``inf``/``-inf`` are allowed (within the bounds).
    """
    if low is not None and high is not None:
        allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        allowed = f"{'<' if high_open else '<='} {high:g}"
    else:
        allowed = "to be a real number" if allow_inf else "to be a finite real number"
    if allow_none:
        if value is None:
            return None
        allowed += " or None"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        msg = f"{owner}: expected {name} {allowed}, got {_got(value)}"
        raise TypeError(msg)
    v = float(value)
    ok = not math.isnan(v) and (allow_inf or math.isfinite(v))
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        msg = f"{owner}: expected {name} {allowed}, got {value!r}"
        raise ValueError(msg)
    return v


def check_bool(owner: str, name: str, value: Any) -> bool:
    """``value`` as a Python ``bool`` (a ``bool`` or NumPy ``bool_``; ``0``/``1`` are not), or raise."""
    if not isinstance(value, (bool, np.bool_)):
        msg = f"{owner}: expected {name} to be a bool (True or False), got {_got(value)}"
        raise TypeError(msg)
    return bool(value)


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices`` (compared by type and value), or raise."""
    texts = [repr(c) for c in choices]
    allowed = " or ".join(texts) if len(texts) <= 2 else f"one of {', '.join(texts)}"
    if not isinstance(value, tuple({type(c) for c in choices})) or isinstance(value, (bool, np.bool_)):
        msg = f"{owner}: expected {name} to be {allowed}, got {_got(value)}"
        raise TypeError(msg)
    if value not in choices:
        msg = f"{owner}: expected {name} to be {allowed}, got {value!r}"
        raise ValueError(msg)
    return value


def check_ntuple(owner: str, name: str, value: Any, n: int, *, minimum: int | None = 1) -> tuple[int, ...]:
    """``value`` (an int, or a tuple or list of ``n`` ints) as a tuple of ``n`` ints ``>= minimum``."""
    allowed = f"an int or a tuple of {n} ints"
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(items) != n:
        msg = f"{owner}: expected {name} to be {allowed}, got {value!r}"
        raise ValueError(msg)
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            msg = f"{owner}: expected {name} to be an int or a tuple of {n} ints, got {value!r}"
            raise TypeError(msg)
        if minimum is not None and v < minimum:
            msg = f"{owner}: expected {name} to be >= {minimum}, got {value!r}"
            raise ValueError(msg)
    return tuple(int(v) for v in items)


def check_float_dtype(owner: str, name: str, value: Any) -> np.dtype:
    """A NumPy floating dtype from a NumPy dtype, a type, a string or a torch dtype, or raise."""
    given = value
    if type(value).__module__.startswith("torch"):
        value = str(value).removeprefix("torch.")
    try:
        with warnings.catch_warnings():  # a deprecated alias ('a') is simply not a floating dtype
            warnings.simplefilter("ignore", DeprecationWarning)
            dt = np.dtype(value) if value is not None else None
    except TypeError:
        dt = None
    if dt is None or dt.kind != "f":
        msg = (f"{owner}: expected {name} to be a NumPy floating dtype (np.float32, np.float64), "
               f"got {given!r}")
        raise TypeError(msg)
    return dt


def as_array(owner: str, x: Any, dtype: Any = None) -> Any:
    """A numeric input as an array, never a copy of an array that is already fine.

    Lists and scalars are converted; strings, object, complex and other non-real
    input are a ``TypeError``. Integer and boolean input is cast to ``dtype`` when
    given, else to float32; floating input keeps its dtype.
    """
    if isinstance(x, (str, bytes)):
        msg = f"{owner}: expected a numeric array, got {type(x).__name__} {x!r}"
        raise TypeError(msg)
    if not hasattr(x, "dtype"):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as e:
            msg = f"{owner}: could not convert input of type {type(x).__name__} to an array: {e}"
            raise TypeError(msg) from e
    kind = x.dtype.kind
    if kind in "biu":
        return x.astype(dtype if dtype is not None else np.float32)
    if kind != "f":
        msg = f"{owner}: expected a floating or integer array, got dtype {x.dtype}"
        raise TypeError(msg)
    return x


# ------------------------------------------------------------------------ fields
def _label(field: attrs.Attribute) -> str:
    """How messages name a field: its ``label`` metadata (``"p (the drop probability)"``), else its name."""
    return field.metadata.get("label", field.name.lstrip("_"))


def _field(check: Callable[[str, str, Any], Any], *, label: str | None = None, **kwargs: Any) -> Any:
    """An attrs field whose converter runs ``check(owner, name, value)``.

    ``label`` is how messages name the argument, when its name alone says too little.
    """

    def convert(value: Any, instance: Any, field: attrs.Attribute) -> Any:
        return check(owner_of(instance), _label(field), value)

    if label is not None:
        kwargs["metadata"] = {**kwargs.get("metadata", {}), "label": label}
    return attrs.field(converter=attrs.Converter(convert, takes_self=True, takes_field=True), **kwargs)


def int_field(*, minimum: int | None = 1, maximum: int | None = None, allow_none: bool = False,
              **kwargs: Any) -> Any:
    """An int argument (see :func:`check_int`); ``kwargs`` go to ``attrs.field`` (``default=``...)."""
    return _field(lambda o, n, v: check_int(o, n, v, minimum=minimum, maximum=maximum,
                                            allow_none=allow_none), **kwargs)


def real_field(*, low: float | None = None, high: float | None = None, low_open: bool = False,
               high_open: bool = False, allow_none: bool = False, allow_inf: bool = False,
               **kwargs: Any) -> Any:
    """A real argument, stored as a Python float (see :func:`check_real`)."""
    return _field(lambda o, n, v: check_real(o, n, v, low=low, high=high, low_open=low_open,
                                             high_open=high_open, allow_none=allow_none,
                                             allow_inf=allow_inf), **kwargs)


def probability_field(**kwargs: Any) -> Any:
    """A probability in ``[0, 1]``, stored as a Python float."""
    return real_field(low=0.0, high=1.0, **kwargs)


def bool_field(**kwargs: Any) -> Any:
    """A ``bool`` argument (``0``, ``1`` and strings are refused; see :func:`check_bool`)."""
    return _field(check_bool, **kwargs)


def choice_field(choices: Sequence[Any], **kwargs: Any) -> Any:
    """One of ``choices`` (strings, usually)."""
    options = tuple(choices)
    return _field(lambda o, n, v: check_choice(o, n, v, options), **kwargs)


def ntuple_field(n: int | Callable[[Any], int], *, minimum: int | None = 1, **kwargs: Any) -> Any:
    """An int or a tuple of ``n`` ints, stored as a tuple of ``n`` ints.

    Args:
        n: the length, or a function of the instance's class giving it (a class
            attribute such as the number of spatial axes).
        minimum: the smallest allowed entry.
        kwargs: for ``attrs.field``.
    """

    def convert(value: Any, instance: Any, field: attrs.Attribute) -> tuple[int, ...]:
        length = n(type(instance)) if callable(n) else n
        return check_ntuple(owner_of(instance), _label(field), value, length, minimum=minimum)

    return attrs.field(converter=attrs.Converter(convert, takes_self=True, takes_field=True), **kwargs)


def dtype_field(**kwargs: Any) -> Any:
    """The ``dtype`` argument: a NumPy floating dtype, float32 by default (keyword-only)."""
    kwargs.setdefault("default", np.dtype(np.float32))
    kwargs.setdefault("kw_only", True)
    return _field(check_float_dtype, **kwargs)

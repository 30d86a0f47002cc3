"""The layer contract's machinery: the base class, param fields and shared validation.

The contract itself is written down once, in :class:`nptfunc._types.LayerProtocol`
and ``docs/design.md``. In short:

* ``init(key) -> params`` and ``init_state(key) -> state``;
* the short form ``apply(params, x) -> (y, vjp)`` for layers without state;
* the long form ``apply(params, x, state, *, train) -> (y, vjp, new_state)``,
  which every layer accepts;
* ``vjp(dy) -> (dparams, dx)`` with ``dparams`` shaped like ``params``.

A subclass writes its math in one of two hooks, and :meth:`Layer.apply` turns it
into both forms:

* a stateless layer overrides ``_apply(params, x) -> (y, vjp)``;
* a stateful layer sets ``stateful = True`` and overrides
  ``_apply_stateful(params, x, state, train) -> (y, vjp, new_state)``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import numpy as np

from nptfunc import random
from nptfunc._types import VJP, Array, Params, State
from nptfunc._validate import check_int, check_real
from nptfunc.backend import array_module, readonly
from nptfunc.random import Key

__all__ = [
    "Layer",
    "as_array",
    "check_cotangent",
    "check_dtype",
    "check_int",
    "check_key",
    "check_params",
    "check_real",
    "dtype_field",
    "param_field",
]

_NOTHING: Any = object()


def _array_eq_key(x: Any) -> Any:
    """Make arrays comparable by value inside attrs ``__eq__`` and ``__hash__``."""
    if isinstance(x, np.ndarray):
        return ("ndarray", x.shape, x.dtype.str, x.tobytes())
    return x


def param_field(**kwargs: Any) -> Any:
    """An attrs field for an array in a params or state class.

    The array is stored as a read-only view (the caller's array keeps its flags),
    and compared by value.
    """
    return attrs.field(converter=readonly, eq=_array_eq_key, **kwargs)


def _to_float_dtype(value: Any) -> np.dtype:
    try:
        dt = np.dtype(value)
    except TypeError as e:
        msg = f"dtype: expected a NumPy floating dtype (float32, float64), got {value!r}"
        raise TypeError(msg) from e
    if not np.issubdtype(dt, np.floating):
        msg = f"dtype: expected a NumPy floating dtype (float32, float64), got {dt}"
        raise TypeError(msg)
    return dt


def dtype_field() -> Any:
    """The ``dtype`` hyperparameter: a NumPy floating dtype, float32 by default."""
    return attrs.field(default=np.float32, converter=_to_float_dtype, kw_only=True)


def check_key(owner: str, key: Any) -> Key:
    """Raise a ``TypeError`` unless ``key`` (given to ``owner.init``) is a :class:`nptfunc.random.Key`."""
    return random.check_key(key, f"{owner}.init")


def check_params(owner: str, params: Any, cls: type | None) -> None:
    """Raise a ``TypeError`` unless ``params`` is an instance of ``cls`` (``None`` if none)."""
    if cls is None:
        if params is not None:
            msg = f"{owner}: has no parameters, expected params None, got {type(params).__name__}"
            raise TypeError(msg)
        return
    if not isinstance(params, cls):
        msg = (f"{owner}: expected params of class {cls.__name__} (from {owner}.init), "
               f"got {type(params).__name__}")
        raise TypeError(msg)


def as_array(owner: str, x: Any, dtype: np.dtype | None = None) -> Array:
    """The input of a layer as an array, never a copy of an array that is already fine.

    Lists and scalars are converted; strings, object arrays and other non-numeric
    input are a ``TypeError``. Integer and boolean input is cast to ``dtype`` when
    given (the layer's parameter dtype), else to the default float32; float input
    keeps its dtype.
    """
    if isinstance(x, (str, bytes)):
        msg = f"{owner}: expected a numeric array, got {type(x).__name__} {x!r}"
        raise TypeError(msg)
    xp = array_module(x)
    if not hasattr(x, "dtype"):
        try:
            x = xp.asarray(x)
        except (ValueError, TypeError) as e:
            msg = f"{owner}: could not convert input of type {type(x).__name__} to an array: {e}"
            raise TypeError(msg) from e
    kind = x.dtype.kind
    if kind in "biu":
        return x.astype(dtype if dtype is not None else np.float32)
    if kind not in "f":
        msg = f"{owner}: expected a floating or integer array, got dtype {x.dtype}"
        raise TypeError(msg)
    return x


def check_dtype(owner: str, x: Array, dtype: np.dtype) -> None:
    """Raise a ``TypeError`` if ``x`` and the parameters have different float dtypes (as torch)."""
    if x.dtype != dtype:
        msg = (f"{owner}: expected input of dtype {np.dtype(dtype)} (the parameters' dtype), "
               f"got {x.dtype}; convert one of them with .astype(...)")
        raise TypeError(msg)


def check_cotangent(owner: str, dy: Any, shape: tuple[int, ...], dtype: Any = None) -> Array:
    """Check the cotangent given to a vjp: its shape must be the output's."""
    xp = array_module(dy)
    if not hasattr(dy, "shape"):
        dy = xp.asarray(dy, dtype=dtype)
    if tuple(dy.shape) != tuple(shape):
        msg = f"{owner} vjp: expected dy of shape {tuple(shape)} (the output's), got {tuple(dy.shape)}"
        raise ValueError(msg)
    return dy


@attrs.frozen
class Layer:
    """Base class of all layers: immutable hyperparameters, pure functions.

    See the module docstring for the two hooks a subclass overrides.
    """

    stateful: ClassVar[bool] = False
    params_class: ClassVar[type | None] = None

    @property
    def name(self) -> str:
        """The layer's short description for error messages, e.g. ``Linear(4, 3)``."""
        return type(self).__name__

    # ----------------------------------------------------------------- init
    def init(self, key: Key) -> Params:
        """Draw fresh parameters from ``key`` (``None`` for a layer without any)."""
        check_key(self.name, key)
        return None

    def init_state(self, key: Key) -> State:
        """The initial state (``None`` for a stateless layer)."""
        check_key(self.name, key)
        return None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for an input of ``input_shape`` (shape-preserving by default)."""
        return tuple(input_shape)

    # ----------------------------------------------------------------- apply
    def apply(self, params: Params, x: Any, state: State = _NOTHING, *,
              train: bool | None = None) -> tuple[Any, ...]:
        """Run the layer.

        Short form ``apply(params, x) -> (y, vjp)`` for layers without state; long
        form ``apply(params, x, state, train=...) -> (y, vjp, new_state)`` for all.

        Args:
            params: from :meth:`init`.
            x: the input; see the layer's docstring for its shape.
            state: from :meth:`init_state` or a previous long-form call.
            train: training mode (batch statistics, dropout) or evaluation mode.

        Returns:
            ``(y, vjp)`` or ``(y, vjp, new_state)``, where ``vjp(dy) -> (dparams, dx)``.
        """
        if state is _NOTHING and train is None:
            if self.stateful:
                msg = (f"{self.name} is stateful: call apply(params, x, state, train=True|False) "
                       f"with state from init_state(key)")
                raise TypeError(msg)
            return self._apply(params, x)
        if state is _NOTHING or train is None:
            msg = (f"{self.name}.apply: the long form needs both state and train: "
                   f"apply(params, x, state, train=True|False)")
            raise TypeError(msg)
        if not isinstance(train, (bool, np.bool_)):
            msg = f"{self.name}.apply: expected train to be a bool, got {train!r}"
            raise TypeError(msg)
        if self.stateful:
            return self._apply_stateful(params, x, state, bool(train))
        y, vjp = self._apply(params, x)
        return y, vjp, state

    def _apply(self, params: Params, x: Any) -> tuple[Array, VJP]:
        raise NotImplementedError  # pragma: no cover

    def _apply_stateful(self, params: Params, x: Any, state: State,
                        train: bool) -> tuple[Array, VJP, State]:
        raise NotImplementedError  # pragma: no cover


def elementwise_vjp(owner: str, y_shape: tuple[int, ...],
                    local_grad: Callable[[Array], Array]) -> VJP:
    """The vjp of a parameterless layer: checks ``dy`` against ``y_shape``, returns ``local_grad(dy)``."""

    def vjp(dy: Array) -> tuple[None, Array]:
        dy = check_cotangent(owner, dy, y_shape)
        return None, local_grad(dy)

    return vjp


def index(owner: str, name: str, value: Any) -> int:
    """``operator.index`` with an error that names the owner and argument."""
    try:
        return operator.index(value)
    except TypeError as e:
        msg = f"{owner}: expected {name} to be an int, got {value!r}"
        raise TypeError(msg) from e

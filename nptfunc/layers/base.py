"""The layer contract, enforced once: the base class every layer derives from.

The contract itself is written down in :class:`nptfunc._types.LayerProtocol` and
``docs/design.md``. In short:

* ``init(key) -> params`` and ``init_state(key) -> state``;
* the short form ``apply(params, x) -> (y, vjp)`` for layers without state;
* the long form ``apply(params, x, state, *, train) -> (y, vjp, new_state)``,
  which every layer accepts;
* ``vjp(dy) -> (dparams, dx)`` with ``dparams`` shaped like ``params`` and ``dx``
  like ``x`` (a tuple of arrays when ``x`` is one).

A subclass writes only its math:

* ``init(key)`` (and ``init_state(key)`` for a stateful layer): the key is checked
  before they run;
* a stateless layer overrides ``_apply(params, x) -> (y, vjp)``;
* a stateful layer sets ``stateful = True`` and overrides
  ``_apply_stateful(params, x, state, train) -> (y, vjp, new_state)``;
* the inner ``vjp(dy)`` returns ``(dparams, dx)``.

:meth:`Layer.apply` does everything else, for every layer: it checks ``params``
(and ``state``) against the declared ``params_class`` (and ``state_class``),
converts the input (lists, scalars, integers) and casts a floating input of
another dtype to the params' dtype, and wraps the vjp so that ``dy`` is checked
against the output's shape and cast to its dtype, and ``dx`` comes back in the
input's dtype. Hyperparameters are validated by the field helpers of
:mod:`nptfunc._validate`; :attr:`Layer.name` is derived from the fields.

Two optional keywords a hook may declare, which :meth:`Layer.apply` then passes:

* ``need_dx``: ``False`` when nothing consumes ``dx`` (the first layer of a model
  fed with data). The wrapped vjp returns ``dx = None`` whatever the hook does; a
  hook that declares the keyword may skip computing it.
* any other keyword-only argument (an attention mask, say): the non-differentiable
  extras of ``apply(params, x, ..., **extras)``. :attr:`Layer.apply_extras` is the
  set of them; a combinator's hooks take ``**extras`` and its ``apply_extras`` is
  the union of its children's, each child getting exactly the extras it accepts.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import numpy as np

from nptfunc._types import VJP, Params, State
from nptfunc._validate import (  # noqa: F401  (re-exported for layer modules)
    as_array,
    bool_field,
    check_int,
    check_real,
    choice_field,
    dtype_field,
    int_field,
    ntuple_field,
    probability_field,
    real_field,
)
from nptfunc.backend import array_module, readonly
from nptfunc.random import Key

__all__ = ["Layer", "param_field"]

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


# ------------------------------------------------------------------ the name
def _format(value: Any) -> str:
    if isinstance(value, np.dtype):
        return str(value)
    if isinstance(value, type) and issubclass(value, np.generic):
        return np.dtype(value).name
    return repr(value)


def _is_default(field: attrs.Attribute, value: Any) -> bool:
    default = field.default
    if default is attrs.NOTHING:
        return False
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory() if not default.takes_self else _NOTHING
    try:
        if isinstance(value, tuple) and not isinstance(default, tuple):
            return all(bool(v == default) for v in value)
        return bool(value == default)
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------- conversion
def _float_dtype(tree: Any) -> np.dtype | None:
    """The dtype of the first floating array in a params or state tree (``None`` if none)."""
    if tree is None:
        return None
    for name in ("weight", "running_mean"):  # the common cases, without a tree walk
        a = getattr(tree, name, None)
        if a is not None and getattr(a, "dtype", None) is not None and a.dtype.kind == "f":
            return a.dtype
    from nptfunc.tree import tree_leaves

    for a in tree_leaves(tree):
        dt = getattr(a, "dtype", None)
        if dt is not None and dt.kind == "f":
            return dt
    return None


def _hook_keywords(fn: Callable[..., Any]) -> frozenset[str]:
    params = inspect.signature(fn).parameters.values()
    return frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _checked_init(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
    """Wrap a subclass's ``init``/``init_state`` so that its key is checked first."""

    @functools.wraps(fn)
    def init(self: Layer, key: Key) -> Any:
        if not isinstance(key, Key):
            msg = (f"{self.name}.{what}: expected an nptfunc.random.Key (random.key(seed)), "
                   f"got {type(key).__name__}")
            raise TypeError(msg)
        return fn(self, key)

    init._checks_key = True  # type: ignore[attr-defined]
    return init


@attrs.frozen
class Layer:
    """Base class of all layers: immutable hyperparameters, pure functions.

    See the module docstring for what a subclass writes and what this class does
    for it.

    Class attributes a subclass may set:
        stateful: whether the layer has state (the long form is then required).
        params_class: the class of ``init``'s params (``None``: no params).
        state_class: the class of ``init_state``'s state, checked by ``apply``.
        integer_input: keep integer input as it is (indices), instead of casting
            it to the params' dtype.
        casts_input: whether ``apply`` converts the input (containers leave it to
            their children).
    """

    stateful: ClassVar[bool] = False
    has_params: ClassVar[bool] = True  # a property where it depends on hyperparameters (affine=False)
    params_class: ClassVar[type | None] = None
    state_class: ClassVar[type | None] = None
    integer_input: ClassVar[bool] = False
    casts_input: ClassVar[bool] = True
    _hook_kw: ClassVar[frozenset[str]] = frozenset()  # the hooks' keyword-only extras (need_dx aside)
    _hook_need_dx: ClassVar[bool] = False  # whether a hook declares need_dx

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for what in ("init", "init_state"):
            fn = cls.__dict__.get(what)
            if fn is not None and not getattr(fn, "_checks_key", False):
                setattr(cls, what, _checked_init(fn, what))
        keywords = _hook_keywords(cls._apply) | _hook_keywords(cls._apply_stateful)
        cls._hook_kw = keywords - {"need_dx"}
        cls._hook_need_dx = "need_dx" in keywords

    # ------------------------------------------------------------------ name
    @property
    def name(self) -> str:
        """The layer's description for messages: ``Linear(in_features=4, out_features=3)``.

        Its required fields and those that differ from their defaults; a layer whose
        fields are all at their defaults shows its first one (``Dropout(p=0.5)``).
        """
        fields = [f for f in attrs.fields(type(self)) if f.init and f.repr]
        if not fields:
            return type(self).__name__
        shown = [f for f in fields if not _is_default(f, getattr(self, f.name))] or fields[:1]
        inner = ", ".join(f"{f.name}={_format(getattr(self, f.name))}" for f in shown)
        return f"{type(self).__name__}({inner})"

    @property
    def apply_extras(self) -> frozenset[str]:
        """The keyword extras :meth:`apply` accepts (masks): its hooks' keyword-only parameters.

        ``need_dx`` is not one (it is :meth:`apply`'s own flag). A combinator
        accepts the extras of any of its children.
        """
        return self._hook_kw

    # ----------------------------------------------------------------- init
    def init(self, key: Key) -> Params:
        """Draw fresh parameters from ``key`` (``None`` for a layer without any)."""
        return None

    def init_state(self, key: Key) -> State:
        """The initial state (``None`` for a stateless layer)."""
        return None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for an input of ``input_shape`` (shape-preserving by default)."""
        return tuple(input_shape)

    def with_dtype(self, dtype: Any) -> Layer:
        """The same layer with params (and state) of ``dtype`` (itself if it has no dtype)."""
        if "dtype" in attrs.fields_dict(type(self)):
            return attrs.evolve(self, dtype=dtype)
        return self

    # ----------------------------------------------------------------- apply
    def apply(self, params: Params, x: Any, state: State = _NOTHING, *, train: bool | None = None,
              need_dx: bool = True, **extras: Any) -> tuple[Any, ...]:
        """Run the layer.

        Short form ``apply(params, x) -> (y, vjp)`` for layers without state; long
        form ``apply(params, x, state, train=...) -> (y, vjp, new_state)`` for all.

        Args:
            params: from :meth:`init`.
            x: the input (an array, or a tuple of arrays for layers with several);
                see the layer's docstring for its shape. A floating input of another
                dtype than the params is cast to theirs (``dx`` comes back in the
                input's dtype); integer and boolean input is cast to the params' dtype.
            state: from :meth:`init_state` or a previous long-form call.
            train: training mode (batch statistics, dropout) or evaluation mode.
            need_dx: ``False`` when nothing consumes ``dx``: the vjp then returns
                ``dx = None`` (and may skip computing it).
            extras: non-differentiable inputs of layers that take them (masks).

        Returns:
            ``(y, vjp)`` or ``(y, vjp, new_state)``, where ``vjp(dy) -> (dparams, dx)``.
        """
        long_form = state is not _NOTHING or train is not None
        if long_form:
            if state is _NOTHING or train is None:
                msg = (f"{self.name}.apply: the long form needs both state and train: "
                       f"apply(params, x, state, train=True|False)")
                raise TypeError(msg)
            if not isinstance(train, (bool, np.bool_)):
                msg = f"{self.name}.apply: expected train to be a bool, got {train!r}"
                raise TypeError(msg)
        elif self.stateful:
            msg = (f"{self.name} is stateful: call apply(params, x, state, train=True|False) "
                   f"with state from init_state(key)")
            raise TypeError(msg)
        self._check_class("params", params, self.params_class if self.has_params else None)
        kw = self._keywords(extras, need_dx)
        if self.casts_input:
            x, x_dtypes = self._input(x, params, state)
        try:
            if self.stateful:
                self._check_class("state", state, self.state_class)
                y, vjp, new_state = self._apply_stateful(params, x, state, bool(train), **kw)
            else:
                y, vjp = self._apply(params, x, **kw)
                new_state = state
        except (ValueError, TypeError) as e:
            self._name_error(e)
        vjp = self._wrap_vjp(vjp, y, x_dtypes if self.casts_input else None, need_dx)
        return (y, vjp, new_state) if long_form else (y, vjp)

    def _apply(self, params: Params, x: Any) -> tuple[Any, VJP]:
        raise NotImplementedError  # pragma: no cover

    def _apply_stateful(self, params: Params, x: Any, state: State,
                        train: bool) -> tuple[Any, VJP, State]:
        raise NotImplementedError  # pragma: no cover

    # ------------------------------------------------------ the enforcement
    def _name_error(self, e: Exception) -> None:
        """Re-raise ``e``, prefixed with the layer's name unless it already names the layer."""
        if type(e) not in (ValueError, TypeError) or str(e).startswith(type(self).__name__):
            raise e
        msg = f"{self.name}: {e}"
        raise type(e)(msg) from e

    def _check_class(self, what: str, value: Any, cls: type | None) -> None:
        if cls is None:
            if value is not None:
                what_text = "parameters" if what == "params" else what
                msg = f"{self.name}: has no {what_text}, expected {what} None, got {type(value).__name__}"
                raise TypeError(msg)
        elif not isinstance(value, cls):
            source = "init" if what == "params" else "init_state"
            msg = (f"{self.name}: expected {what} of class {cls.__name__} (from {self.name}.{source}), "
                   f"got {type(value).__name__}")
            raise TypeError(msg)

    def _keywords(self, extras: dict[str, Any], need_dx: bool) -> dict[str, Any]:
        if extras:
            accepted = self.apply_extras
            for k in extras:
                if k not in accepted:
                    msg = f"{self.name}.apply: got an unexpected keyword argument {k!r}"
                    raise TypeError(msg)
        if self._hook_need_dx:
            return {**extras, "need_dx": bool(need_dx)}
        return extras

    def _input(self, x: Any, params: Params, state: State) -> tuple[Any, Any]:
        """``x`` converted (see :meth:`apply`), and its dtypes before conversion."""
        dtype = _float_dtype(params)
        if dtype is None and state is not _NOTHING:
            dtype = _float_dtype(state)
        return self._convert(x, dtype)

    def _convert(self, x: Any, dtype: np.dtype | None) -> tuple[Any, Any]:
        """One input or a (nested) tuple of them converted, and the dtypes before conversion."""
        if isinstance(x, tuple):  # nested too: an LSTM's (input, (h0, c0))
            pairs = [self._convert(a, dtype) for a in x]
            return tuple(a for a, _ in pairs), tuple(d for _, d in pairs)
        return self._one_input(x, dtype)

    def _one_input(self, x: Any, dtype: np.dtype | None) -> tuple[Any, np.dtype | None]:
        x_dtype = getattr(x, "dtype", None)
        if x_dtype is not None and x_dtype.kind == "f" and hasattr(x, "shape"):  # the common case, fast
            return (x if dtype is None or x_dtype == dtype else x.astype(dtype)), x_dtype
        if x is None:
            return None, None
        if self.integer_input and getattr(x, "dtype", np.dtype(float)).kind in "biu":
            return x, None
        x0 = x if hasattr(x, "dtype") else None
        x = as_array(self.name, x, dtype or getattr(self, "dtype", None))
        if x0 is None or x0.dtype.kind != "f":
            return x, None
        return (x if dtype is None or x.dtype == dtype else x.astype(dtype)), x.dtype

    def _wrap_vjp(self, inner: VJP, y: Any, x_dtypes: Any, need_dx: bool) -> VJP:
        """The vjp the caller gets: ``dy`` checked and cast, ``dx`` in the input's dtype."""

        def vjp(dy: Any) -> tuple[Params, Any]:
            dparams, dx = inner(self._cotangent(dy, y))
            if not need_dx:
                return dparams, None
            if x_dtypes is not None:
                dx = _cast_like(dx, x_dtypes)
            return dparams, dx

        return vjp

    def _cotangent(self, dy: Any, y: Any) -> Any:
        if dy is None and isinstance(y, tuple):  # a tuple output nothing used (an LSTM's (h_n, c_n))
            dy = (None,) * len(y)
        if isinstance(y, tuple):
            if not isinstance(dy, tuple) or len(dy) != len(y):
                msg = (f"{self.name} vjp: expected dy to be a tuple of {len(y)} arrays (the output's), "
                       f"got {type(dy).__name__}")
                raise TypeError(msg)
            return tuple(None if o is None else self._cotangent(d, o) for d, o in zip(dy, y, strict=True))
        xp = array_module(y)
        if dy is None:  # an output nothing used
            return xp.zeros_like(y)
        if not hasattr(dy, "shape"):
            dy = xp.asarray(dy, dtype=y.dtype)
        if dy.shape != y.shape:
            msg = (f"{self.name} vjp: expected dy of shape {tuple(y.shape)} (the output's), "
                   f"got {tuple(dy.shape)}")
            raise ValueError(msg)
        if dy.dtype != y.dtype:
            if dy.dtype.kind not in "biuf":
                msg = f"{self.name} vjp: expected a real floating dy, got dtype {dy.dtype}"
                raise TypeError(msg)
            dy = dy.astype(y.dtype)
        return dy


def _cast_like(dx: Any, dtypes: Any) -> Any:
    """``dx`` (an array or a tuple of them) cast to the input's dtypes where they differ."""
    if isinstance(dtypes, tuple):
        return tuple(_cast_like(d, t) for d, t in zip(dx, dtypes, strict=True))
    if dx is None or dtypes is None or dx.dtype == dtypes:
        return dx
    return dx.astype(dtypes)

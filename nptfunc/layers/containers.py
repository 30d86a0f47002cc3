"""Combinators: layers made of layers, with no vjp written by hand.

As in thinc and stax, a combinator's vjp only reuses its children's closures:
``Sequential`` runs them in reverse; where a value is used twice (``Residual``,
``Parallel``, ``FanOut``) the cotangents reaching it are summed into a new array
(never into a cotangent someone else owns). Tuples of arrays are valid inputs and
outputs of the contract, so a child may take or return several arrays:

* :class:`Sequential` (``chain``): children one after another; an intermediate
  value may be a tuple;
* :class:`Residual` (``x + f(x)``);
* :class:`Parallel` (the same input to each child, a tuple out) and
  :class:`FanOut` (``n`` copies of the input);
* :class:`Add` and :class:`Concatenate` (a tuple in, one array out);
* :class:`Lambda`: any pure function of :mod:`nptfunc.ops` as a parameterless layer.

Keyword extras of ``apply`` (masks) pass through ``Sequential``, ``Parallel`` and
``Residual``: a combinator accepts every extra one of its children accepts
(:attr:`~nptfunc.layers.Layer.apply_extras`, the union computed when it is built)
and gives each child exactly those it accepts; an extra none accepts is a
``TypeError`` naming the combinator.

Params and state of ``Sequential`` and ``Parallel`` are tuples with one entry per
child, so the tree paths are torch's ``state_dict`` keys of the same
``nn.Sequential`` (``0.weight``); a ``Residual`` is transparent: its params and
state are its child's (``Residual(Linear(4, 4))`` has ``weight``, ``bias``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from nptfunc import ops, random
from nptfunc._types import VJP, Array, Params, State
from nptfunc.layers.activation import ReLU
from nptfunc.layers.base import Layer, int_field
from nptfunc.layers.pooling import _MaxPoolNd
from nptfunc.random import Key

__all__ = ["Add", "Concatenate", "FanOut", "Lambda", "Parallel", "Residual", "Sequential"]


def _check_children(instance: Any, attribute: attrs.Attribute, value: tuple) -> None:
    for i, layer in enumerate(value):
        if not isinstance(layer, Layer):
            msg = (f"{type(instance).__name__}: expected layers (nptfunc.layers.Layer), got "
                   f"{type(layer).__name__} at position {i}")
            raise TypeError(msg)


def _call(layer: Layer, params: Params, x: Any, state: State, train: bool | None,
          need_dx: bool, extras: dict[str, Any]) -> tuple[Any, VJP, State]:
    """A child's long form when it is stateful (or ``train`` is given), else its short form.

    The child gets exactly the ``extras`` it accepts (see :attr:`Layer.apply_extras`).
    """
    if extras:
        accepted = layer.apply_extras
        extras = {k: v for k, v in extras.items() if k in accepted}
    if train is None:
        y, vjp = layer.apply(params, x, need_dx=need_dx, **extras)
        return y, vjp, state
    return layer.apply(params, x, state, train=train, need_dx=need_dx, **extras)


def pool_first(layer: Any, following: Any) -> bool:
    """Whether ``layer`` then ``following`` may run in the other order: a ReLU, then a max pooling.

    ``max(relu(a), relu(b)) = relu(max(a, b))`` (ReLU never reorders values), so
    pooling first gives the same output from a ReLU over a fraction of the values
    (a quarter after ``MaxPool2d(2)``). The gradients are the same too: where the
    two orders pick different elements of a window (ties among the values the ReLU
    sets to 0), the ReLU's gradient is 0 in both; a NaN is the window's maximum
    either way, and passes its gradient through either ReLU. Only the sign of a
    zero output may differ.
    """
    return type(layer) is ReLU and isinstance(following, _MaxPoolNd)


def _children_extras(layers: tuple[Layer, ...]) -> frozenset[str]:
    """The extras any of ``layers`` accepts: what a combinator of them accepts.

    (attrs computes it before the validator refuses a child that is not a layer.)
    """
    return frozenset().union(*(layer.apply_extras for layer in layers if isinstance(layer, Layer)))


def _sum(a: Any, b: Any) -> Any:
    """``a + b`` for cotangents (arrays, tuples of them, ``None`` for none): always a new array."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, tuple):
        return tuple(_sum(u, v) for u, v in zip(a, b, strict=True))
    return a + b


class _position:  # noqa: N801 (a context manager used as a function: ``with _position(...)``)
    """Prefix a child's ValueError or TypeError with its position: ``Sequential[2]: Linear(...): ...``.

    A class, not a generator: it runs around every child's forward and vjp.
    """

    __slots__ = ("i", "owner")

    def __init__(self, owner: str, i: int) -> None:
        self.owner, self.i = owner, i

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        if kind is ValueError or kind is TypeError:
            msg = f"{self.owner}[{self.i}]: {e}"
            raise kind(msg) from e


@attrs.frozen(init=False)
class _Children(Layer):
    """A combinator of several children: params and state are tuples with one entry each."""

    casts_input = False

    layers: tuple[Layer, ...] = attrs.field(validator=_check_children)
    _extras: frozenset[str] = attrs.field(init=False, eq=False, repr=False)

    @_extras.default
    def _extras_default(self) -> frozenset[str]:
        return _children_extras(self.layers)

    def __init__(self, *layers: Layer) -> None:
        self.__attrs_init__(tuple(layers))

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"{type(self).__name__}({inner}\n)" if self.layers else f"{type(self).__name__}()"

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        """Whether any child is stateful."""
        return any(layer.stateful for layer in self.layers)

    @property
    def apply_extras(self) -> frozenset[str]:
        """The extras any child accepts (masks); each child gets those it accepts."""
        return self._extras

    def with_dtype(self, dtype: Any) -> _Children:
        """The same combinator with every child's params of ``dtype``."""
        return type(self)(*(layer.with_dtype(dtype) for layer in self.layers))

    def _keys(self, key: Key) -> tuple[Key, ...]:
        return random.split(key, len(self.layers)) if self.layers else ()

    def init(self, key: Key) -> tuple[Params, ...]:
        """A tuple of the children's params, child ``i`` drawn from ``split(key, n)[i]``."""
        return tuple(layer.init(k) for layer, k in zip(self.layers, self._keys(key), strict=True))

    def init_state(self, key: Key) -> tuple[State, ...]:
        """A tuple of the children's states, child ``i`` from ``split(key, n)[i]``."""
        return tuple(layer.init_state(k)
                     for layer, k in zip(self.layers, self._keys(key), strict=True))

    def _check_class(self, what: str, value: Any, cls: type | None) -> None:
        if not isinstance(value, tuple) or len(value) != len(self.layers):
            got = (f"tuple of length {len(value)}" if isinstance(value, tuple)
                   else type(value).__name__)
            owner = type(self).__name__
            msg = (f"{owner}: expected {what} to be a tuple of length {len(self.layers)} "
                   f"(one entry per layer, from {owner}.init{'_state' if what == 'state' else ''}),"
                   f" got {got}")
            raise TypeError(msg)

    def _apply(self, params: tuple[Params, ...], x: Any, *, need_dx: bool = True,
               **extras: Any) -> tuple[Any, VJP]:
        y, vjp, _ = self._run(params, x, (None,) * len(self.layers), None, need_dx, extras)
        return y, vjp

    def _apply_stateful(self, params: tuple[Params, ...], x: Any, state: tuple[State, ...], train: bool,
                        *, need_dx: bool = True, **extras: Any) -> tuple[Any, VJP, tuple[State, ...]]:
        y, vjp, new_state = self._run(params, x, state, train, need_dx, extras)
        if all(a is b for a, b in zip(new_state, state, strict=True)):
            new_state = state  # nothing changed (evaluation): the state itself, as the contract says
        return y, vjp, new_state

    def _run(self, params: tuple[Params, ...], x: Any, state: tuple[State, ...], train: bool | None,
             need_dx: bool, extras: dict[str, Any]) -> tuple[Any, VJP, tuple[State, ...]]:
        raise NotImplementedError  # pragma: no cover


@attrs.frozen(init=False, repr=False)  # _Children's torch-like repr
class Sequential(_Children):
    """Layers applied one after the other; the vjp runs theirs in reverse (thinc's ``chain``).

    Equivalent to ``torch.nn.Sequential``. Params and state are tuples with one
    entry per child (so torch's ``state_dict`` keys ``0.weight``, ``1.running_mean``
    are the paths of the leaves). ``init`` and ``init_state`` split the key into one
    child key per position, so adding a layer at the end changes no other
    layer's random stream. An intermediate value may be a tuple of arrays (a child
    returning several, the next taking them). ``need_dx=False`` reaches the first
    child, and passes on through leading children without params (a ``Flatten``
    before the first ``Linear``): their vjps never run, and the first child with
    params skips its ``dx``. Keyword extras (masks) reach every child that accepts them.
    A ``ReLU`` followed by a max pooling runs as the pooling, then the ReLU, on the
    pooled values only: the same output and gradients (:func:`pool_first`).

    Example:
        >>> from nptfunc import layers, random
        >>> model = layers.Sequential(layers.Linear(4, 8), layers.ReLU(), layers.Linear(8, 2))
        >>> params = model.init(random.key(0))
    """

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The children's shape helpers, composed."""
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def _run(self, params: tuple[Params, ...], x: Any, state: tuple[State, ...], train: bool | None,
             need_dx: bool, extras: dict[str, Any]) -> tuple[Any, VJP, tuple[State, ...]]:
        vjps, new_state = [], []
        skip = 0  # the leading children that neither have params nor need dx: their vjps never run
        children = self.layers
        i = 0
        while i < len(children):
            layer, p, s = children[i], params[i], state[i]
            need = need_dx or i > skip
            if i + 1 < len(children) and pool_first(layer, children[i + 1]):
                # the pooling (child i + 1) first, then the ReLU (child i); their vjps in that order
                skip += not need
                need_next = need_dx or i + 1 > skip
                skip += not need_next
                with _position("Sequential", i + 1):
                    x, vjp_pool, s_pool = _call(children[i + 1], params[i + 1], x, state[i + 1], train, need,
                                                extras)
                with _position("Sequential", i):
                    x, vjp_relu, s = _call(layer, p, x, s, train, need_next, extras)
                vjps += [vjp_pool, vjp_relu]
                new_state += [s, s_pool]
                i += 2
                continue
            with _position("Sequential", i):
                x, vjp, s = _call(layer, p, x, s, train, need, extras)
            if not need and p is None:
                skip += 1
            vjps.append(vjp)
            new_state.append(s)
            i += 1

        def chain_vjp(dy: Any) -> tuple[tuple[Params, ...], Any]:
            dparams = []
            for i in reversed(range(skip, len(vjps))):
                with _position("Sequential", i):
                    dp, dy = vjps[i](dy)
                dparams.append(dp)
            return (None,) * skip + tuple(reversed(dparams)), None if skip else dy

        return x, chain_vjp, tuple(new_state)


@attrs.frozen(init=False, repr=False)
class Parallel(_Children):
    """The same input to every child; the output is the tuple of theirs (stax's ``parallel`` of a FanOut).

    ``dx`` is the sum of the children's input cotangents. Params and state are
    tuples with one entry per child. Follow it with :class:`Add` or
    :class:`Concatenate` to merge the branches (an Inception block).

    Shapes:
        x: whatever every child takes -> a tuple of the children's outputs.
    """

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:  # type: ignore[override]
        """The tuple of the children's output shapes."""
        return tuple(layer.output_shape(input_shape) for layer in self.layers)

    def _run(self, params: tuple[Params, ...], x: Any, state: tuple[State, ...], train: bool | None,
             need_dx: bool, extras: dict[str, Any]) -> tuple[Any, VJP, tuple[State, ...]]:
        outs = []
        for i, (layer, p, s) in enumerate(zip(self.layers, params, state, strict=True)):
            with _position("Parallel", i):
                outs.append(_call(layer, p, x, s, train, need_dx, extras))
        ys, vjps, new_state = zip(*outs, strict=True) if outs else ((), (), ())

        def vjp(dy: tuple[Any, ...]) -> tuple[tuple[Params, ...], Any]:
            dparams, dx = [], None
            for i, (child_vjp, d) in enumerate(zip(vjps, dy, strict=True)):
                with _position("Parallel", i):
                    dp, dxi = child_vjp(d)
                dparams.append(dp)
                dx = _sum(dx, dxi)
            return tuple(dparams), dx

        return tuple(ys), vjp, tuple(new_state)


@attrs.frozen
class Residual(Layer):
    """``y = x + f(x)``: a skip connection around one layer (often a :class:`Sequential`).

    The vjp is ``dx = dy + f's dx``; ``f`` must keep the input's shape. The params
    and state are ``f``'s own (a transparent wrapper: ``Residual(Linear(4, 4))``
    has the leaves ``weight`` and ``bias``).

    Args:
        layer: ``f``.

    Shapes:
        x: whatever ``f`` takes and returns unchanged in shape -> y: the same.
    """

    layer: Layer = attrs.field(validator=attrs.validators.instance_of(Layer))

    @property
    def name(self) -> str:  # noqa: D102
        return f"Residual({self.layer.name})"

    @property
    def apply_extras(self) -> frozenset[str]:
        """``f``'s extras (masks), passed on to it."""
        return self.layer.apply_extras

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        """Whether ``f`` is stateful."""
        return self.layer.stateful

    def _check_class(self, what: str, value: Any, cls: type | None) -> None:
        pass  # f's apply checks its own params and state

    def with_dtype(self, dtype: Any) -> Residual:
        """The same block with ``f``'s params of ``dtype``."""
        return Residual(self.layer.with_dtype(dtype))

    def init(self, key: Key) -> Params:
        """``f``'s params."""
        return self.layer.init(key)

    def init_state(self, key: Key) -> State:
        """``f``'s state."""
        return self.layer.init_state(key)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input's shape, which ``f`` must keep."""
        out = self.layer.output_shape(input_shape)
        if tuple(out) != tuple(input_shape):
            msg = f"{self.name}: f must keep the input's shape {tuple(input_shape)}, but gives {tuple(out)}"
            raise ValueError(msg)
        return tuple(input_shape)

    def _apply(self, params: Params, x: Any, *, need_dx: bool = True, **extras: Any) -> tuple[Any, VJP]:
        y, vjp, _ = self._run(params, x, None, None, need_dx, extras)
        return y, vjp

    def _apply_stateful(self, params: Params, x: Any, state: State, train: bool,
                        *, need_dx: bool = True, **extras: Any) -> tuple[Any, VJP, State]:
        return self._run(params, x, state, train, need_dx, extras)

    def _run(self, params: Params, x: Any, state: State, train: bool | None,
             need_dx: bool, extras: dict[str, Any]) -> tuple[Any, VJP, State]:
        fx, f_vjp, new_state = _call(self.layer, params, x, state, train, need_dx, extras)
        if getattr(fx, "shape", None) != x.shape:
            got = getattr(fx, "shape", type(fx).__name__)
            msg = f"{self.name}: f must keep the input's shape {x.shape}, but gives {got}"
            raise ValueError(msg)
        y, add_vjp = ops.add(x, fx)

        def vjp(dy: Array) -> tuple[Params, Array | None]:
            _, dfx = add_vjp(dy)
            dparams, df_dx = f_vjp(dfx)
            return dparams, (None if df_dx is None else dy + df_dx)

        return y, vjp, new_state


@attrs.frozen
class FanOut(Layer):
    """``n`` copies of the input, as a tuple (stax's ``FanOut``); the vjp sums the cotangents.

    Args:
        n: how many copies, >= 1.

    Shapes:
        x: any -> a tuple of ``n`` arrays of x's shape.
    """

    n: int = int_field()

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:  # type: ignore[override]
        """``n`` times the input's shape."""
        return (tuple(input_shape),) * self.n

    def _apply(self, params: None, x: Any) -> tuple[tuple[Any, ...], VJP]:
        def vjp(dy: tuple[Any, ...]) -> tuple[None, Any]:
            dx = None
            for d in dy:
                dx = _sum(dx, d)
            return None, dx

        return (x,) * self.n, vjp


def _tuple_input(layer: Layer, x: Any) -> tuple[Any, ...]:
    if not isinstance(x, tuple) or not x:
        msg = (f"{layer.name}: expected a non-empty tuple of arrays (from Parallel or FanOut), "
               f"got {type(x).__name__}")
        raise TypeError(msg)
    return x


@attrs.frozen
class Add(Layer):
    """The sum of a tuple of arrays, broadcasting (stax's ``FanInSum``); each cotangent reduced to its input.

    Shapes:
        x: a tuple of arrays that broadcast together -> y: their broadcast shape.
    """

    def output_shape(self, input_shape: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:  # type: ignore[override]
        """The broadcast shape of the inputs' shapes."""
        try:
            return tuple(np.broadcast_shapes(*(tuple(s) for s in input_shape)))
        except ValueError as e:
            msg = f"{self.name}: the inputs' shapes {tuple(input_shape)} do not broadcast together"
            raise ValueError(msg) from e

    def _apply(self, params: None, x: Any) -> tuple[Array, VJP]:
        xs = _tuple_input(self, x)
        y, vjps = xs[0], []
        for a in xs[1:]:
            y, v = ops.add(y, a)
            vjps.append(v)

        def vjp(dy: Array) -> tuple[None, tuple[Any, ...]]:
            ds = []
            for v in reversed(vjps):
                dy, db = v(dy)
                ds.append(db)
            return None, (dy, *reversed(ds))

        return y, vjp


@attrs.frozen
class Concatenate(Layer):
    """A tuple of arrays joined along ``axis`` (stax's ``FanInConcat``, torch's ``cat``).

    Args:
        axis: the axis to join along (negative counts from the end); 1 by default, the channels.

    Shapes:
        x: a tuple of arrays equal in every axis but ``axis`` -> y: joined.
    """

    axis: int = int_field(minimum=None, default=1)

    def output_shape(self, input_shape: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:  # type: ignore[override]
        """The inputs' shapes joined along ``axis``."""
        return ops.concatenate(*(np.empty(s, np.float32) for s in input_shape), axis=self.axis)[0].shape

    def _apply(self, params: None, x: Any) -> tuple[Array, VJP]:
        y, cat_vjp = ops.concatenate(*_tuple_input(self, x), axis=self.axis)
        return y, lambda dy: (None, tuple(cat_vjp(dy)))


def _check_fn(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not callable(value):
        msg = f"Lambda: expected fn to be a function f(*inputs) -> (y, vjp) of nptfunc.ops, got {value!r}"
        raise TypeError(msg)


@attrs.frozen
class Lambda(Layer):
    """A pure function ``f(*inputs, **hyper) -> (y, vjp)`` of :mod:`nptfunc.ops` as a parameterless layer.

    ``Lambda(ops.relu)``, ``Lambda(ops.mul)`` on a tuple of two arrays,
    ``Lambda(ops.permute, {"axes": (0, 2, 1)})``. A tuple input is spread over
    the function's arguments; its vjp's tuple of cotangents becomes ``dx`` (a
    tuple for a tuple input).

    Args:
        fn: the function.
        kwargs: its hyperparameters, a mapping (kept as a sorted tuple of pairs).
    """

    fn: Callable[..., Any] = attrs.field(validator=_check_fn)
    kwargs: tuple[tuple[str, Any], ...] = attrs.field(
        default=(), converter=lambda d: tuple(sorted(dict(d).items())))

    def output_shape(self, input_shape: Any) -> Any:
        """The function's output shape, from a call on zeros of the input's shape(s)."""
        many = bool(input_shape) and isinstance(input_shape[0], tuple)
        args = [np.zeros(s, np.float32) for s in (input_shape if many else (input_shape,))]
        y = self.fn(*args, **dict(self.kwargs))[0]
        return tuple(tuple(a.shape) for a in y) if isinstance(y, tuple) else tuple(y.shape)

    @property
    def name(self) -> str:  # noqa: D102
        fn = getattr(self.fn, "__qualname__", repr(self.fn))
        extra = "".join(f", {k}={v!r}" for k, v in self.kwargs)
        return f"Lambda({fn}{extra})"

    def _apply(self, params: None, x: Any) -> tuple[Any, VJP]:
        args = x if isinstance(x, tuple) else (x,)
        y, f_vjp = self.fn(*args, **dict(self.kwargs))

        def vjp(dy: Any) -> tuple[None, Any]:
            ds = tuple(f_vjp(dy))
            return None, ds if isinstance(x, tuple) else ds[0]

        return y, vjp

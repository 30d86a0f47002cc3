"""Combinators: layers made of layers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import attrs

from nptfunc import random
from nptfunc._types import VJP, Array, Params, State
from nptfunc.layers.base import Layer
from nptfunc.random import Key

__all__ = ["Sequential"]


def _check_children(instance: Sequential, attribute: attrs.Attribute, value: tuple) -> None:
    for i, layer in enumerate(value):
        if not isinstance(layer, Layer):
            msg = (f"Sequential: expected layers (nptfunc.layers.Layer), got "
                   f"{type(layer).__name__} at position {i}")
            raise TypeError(msg)


@attrs.frozen(init=False)
class Sequential(Layer):
    """Layers applied one after the other; the vjp runs theirs in reverse.

    Equivalent to ``torch.nn.Sequential``. Params and state are tuples with one
    entry per child (so torch's ``state_dict`` keys ``0.weight``, ``1.running_mean``
    are the paths of the leaves). ``init`` and ``init_state`` split the key into one
    child key per position, so adding a layer at the end changes no other
    layer's random stream.

    Example:
        >>> from nptfunc import layers, random
        >>> model = layers.Sequential(layers.Linear(4, 8), layers.ReLU(), layers.Linear(8, 2))
        >>> params = model.init(random.key(0))
    """

    casts_input = False

    layers: tuple[Layer, ...] = attrs.field(validator=_check_children)

    def __init__(self, *layers: Layer) -> None:
        self.__attrs_init__(tuple(layers))

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)" if self.layers else "Sequential()"

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        """Whether any child is stateful."""
        return any(layer.stateful for layer in self.layers)

    @property
    def name(self) -> str:  # noqa: D102
        return "Sequential"

    def with_dtype(self, dtype: Any) -> Sequential:
        """The same model with every child's params of ``dtype``."""
        return Sequential(*(layer.with_dtype(dtype) for layer in self.layers))

    def _keys(self, key: Key) -> tuple[Key, ...]:
        return random.split(key, len(self.layers)) if self.layers else ()

    def init(self, key: Key) -> tuple[Params, ...]:
        """A tuple of the children's params, child ``i`` drawn from ``split(key, n)[i]``."""
        return tuple(layer.init(k) for layer, k in zip(self.layers, self._keys(key), strict=True))

    def init_state(self, key: Key) -> tuple[State, ...]:
        """A tuple of the children's states, child ``i`` from ``split(key, n)[i]``."""
        return tuple(layer.init_state(k)
                     for layer, k in zip(self.layers, self._keys(key), strict=True))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The children's shape helpers, composed."""
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def _check_class(self, what: str, value: Any, cls: type | None) -> None:
        self._check_tuple(what, value)

    def _check_tuple(self, what: str, value: Any) -> None:
        if not isinstance(value, tuple) or len(value) != len(self.layers):
            got = (f"tuple of length {len(value)}" if isinstance(value, tuple)
                   else type(value).__name__)
            msg = (f"Sequential: expected {what} to be a tuple of length {len(self.layers)} "
                   f"(one entry per layer, from Sequential.init{'_state' if what == 'state' else ''}),"
                   f" got {got}")
            raise TypeError(msg)

    def _apply(self, params: tuple[Params, ...], x: Array, *, need_dx: bool = True) -> tuple[Array, VJP]:
        vjps = []
        for i, (layer, p) in enumerate(zip(self.layers, params, strict=True)):
            with _position(i):
                x, vjp = layer.apply(p, x, need_dx=need_dx or i > 0)
            vjps.append(vjp)
        return x, _chain_vjp(vjps)

    def _apply_stateful(self, params: tuple[Params, ...], x: Array, state: tuple[State, ...],
                        train: bool, *, need_dx: bool = True) -> tuple[Array, VJP, tuple[State, ...]]:
        vjps, new_state = [], []
        for i, (layer, p, s) in enumerate(zip(self.layers, params, state, strict=True)):
            with _position(i):
                x, vjp, s = layer.apply(p, x, s, train=train, need_dx=need_dx or i > 0)
            vjps.append(vjp)
            new_state.append(s)
        return x, _chain_vjp(vjps), tuple(new_state)


def _chain_vjp(vjps: list[VJP]) -> VJP:
    def vjp(dy: Array) -> tuple[tuple[Params, ...], Array]:
        dparams = []
        for i in reversed(range(len(vjps))):
            with _position(i):
                dp, dy = vjps[i](dy)
            dparams.append(dp)
        return tuple(reversed(dparams)), dy

    return vjp


@contextlib.contextmanager
def _position(i: int) -> Iterator[None]:
    """Prefix a child's ValueError or TypeError with its position: ``Sequential[2]: Linear(...): ...``."""
    try:
        yield
    except (ValueError, TypeError) as e:
        if type(e) not in (ValueError, TypeError):
            raise
        msg = f"Sequential[{i}]: {e}"
        raise type(e)(msg) from e

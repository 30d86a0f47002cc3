"""Dropout with its random key carried in the layer's state.

There is no global random state: a dropout layer's state is a
:class:`DropoutState` holding a :class:`nptfunc.random.Key`. A training call
splits it, draws the mask from the first child and returns the state holding the
next key, so the same state always gives the same mask and consecutive states
give independent ones. An evaluation call is the identity and returns the state
unchanged.

``p`` is the probability to *drop*, as in torch: kept values are scaled by
``1 / (1 - p)`` so the expectation is unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np

from nptfunc import random
from nptfunc._types import VJP, Array
from nptfunc.backend import array_module
from nptfunc.layers.base import Layer, probability_field
from nptfunc.random import Key

__all__ = ["Dropout", "Dropout2d", "DropoutState"]


@attrs.frozen
class DropoutState:
    """The state of :class:`Dropout` and :class:`Dropout2d`.

    Attributes:
        key: the key the next training call draws its mask from.
    """

    key: Key = attrs.field(validator=attrs.validators.instance_of(Key))


def _advance(key: Key) -> tuple[Key, Key]:
    """``(mask key, next key)`` from a dropout state's key.

    The next key is re-rooted: a fresh 64-bit seed with an empty path, drawn from
    the second child of ``key``. Keys made only by :func:`random.split` grow their
    path by one entry per step, and a path of ``n`` entries costs ``O(n)`` to turn
    into a generator (and to save), so a long training run would slow down
    quadratically; a re-rooted key stays the same size forever.
    """
    k_mask, k_next = random.split(key)
    seed = int.from_bytes(random.generator(k_next).bytes(8), "little")
    return k_mask, random.key(seed)


@attrs.frozen
class _Dropout(Layer):
    """Shared by :class:`Dropout` and :class:`Dropout2d`: they differ in the mask's shape."""

    stateful: ClassVar[bool] = True
    state_class = DropoutState

    p: float = probability_field(default=0.5, label="p (the drop probability)")

    def mask_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the mask for an input of ``input_shape`` (broadcast against it)."""
        raise NotImplementedError  # pragma: no cover

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape (after the family's checks)."""
        self.mask_shape(input_shape)
        return tuple(input_shape)

    def init_state(self, key: Key) -> DropoutState:
        """The state holding ``key``, the key of the first mask's parent."""
        return DropoutState(key)

    def _apply_stateful(self, params: None, x: Any, state: DropoutState,
                        train: bool) -> tuple[Array, VJP, DropoutState]:
        shape = self.mask_shape(x.shape)
        if not train or self.p == 0:
            new_state = state if not train else DropoutState(_advance(state.key)[1])
            return x, lambda dy: (None, dy), new_state
        xp = array_module(x)
        k_mask, k_next = _advance(state.key)
        if self.p == 1:
            noise = xp.zeros(shape, dtype=x.dtype)  # torch: x * 0 (so inf and nan give nan)
        else:
            keep = random.bernoulli(k_mask, 1 - self.p, shape)
            noise = xp.asarray(keep, dtype=x.dtype) / (1 - self.p)  # in x's dtype, as torch's noise
        y = _times(x, noise)
        return y, lambda dy: (None, _times(dy, noise)), DropoutState(k_next)


def _times(a: Array, b: Array) -> Array:
    """``a * b``; a dropped inf or nan gives nan, as torch's, without NumPy's warning."""
    with np.errstate(invalid="ignore"):
        return a * b


@attrs.frozen
class Dropout(_Dropout):
    """Zero each element with probability ``p`` in training, scale the rest by ``1 / (1 - p)``.

    Equivalent to ``torch.nn.Dropout``: in evaluation it is the identity (and the
    state is returned unchanged); ``p=0`` is the identity, ``p=1`` gives zeros
    (``x * 0``: infinities and NaNs become NaN, as torch's). The vjp applies the
    same mask: ``dx = dy * mask / (1 - p)``. Stateful: the mask comes from the key
    in the state (see the module docstring), so call the long form
    ``apply(None, x, state, train=...)``.

    Args:
        p: the probability to drop an element, in ``[0, 1]``.

    Shapes:
        x: any -> y: the same.

    Example:
        >>> from nptfunc import layers, random
        >>> import numpy as np
        >>> drop = layers.Dropout(0.5)
        >>> state = drop.init_state(random.key(0))
        >>> y, vjp, state = drop.apply(None, np.ones((2, 4), np.float32), state, train=True)
    """

    def mask_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """One mask entry per element: the input's shape."""
        return tuple(input_shape)


@attrs.frozen
class Dropout2d(_Dropout):
    """Zero whole channels with probability ``p`` in training, scale the rest by ``1 / (1 - p)``.

    Equivalent to ``torch.nn.Dropout2d`` on ``(N, C, H, W)`` input: the mask has
    shape ``(N, C, 1, 1)``. A 3-D input is an unbatched ``(C, H, W)``, as torch's
    documentation states (mask ``(C, 1, 1)``). torch 2.13 itself still warns and
    treats 3-D input as ``(N, C, L)`` (1-D channel dropout), a behaviour it has
    announced it will change; use a 4-D input ``(N, C, 1, L)`` for that. Other
    ranks, which torch deprecates, are a ``ValueError``. See :class:`Dropout` for
    the rest.

    Args:
        p: the probability to drop a channel, in ``[0, 1]``.

    Shapes:
        x: ``(N, C, H, W)`` or ``(C, H, W)`` -> y: the same.
    """

    def mask_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, C, 1, 1)`` for ``(N, C, H, W)``, ``(C, 1, 1)`` for ``(C, H, W)``."""
        shape = tuple(input_shape)
        if len(shape) not in (3, 4):
            msg = f"{self.name}: expected input of shape (N, C, H, W) or (C, H, W), got {shape}"
            raise ValueError(msg)
        return (*shape[:-2], 1, 1)

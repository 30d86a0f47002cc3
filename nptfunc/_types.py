"""The shared vocabulary: type aliases and Protocols every other module imports.

Nothing here computes anything; it only names the shapes of values and callables
that flow between floors of the library (see ``docs/design.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np

Array: TypeAlias = np.ndarray
"""An array of the backend in use (NumPy by default)."""

PyTree: TypeAlias = Any
"""A nest of attrs classes, tuples, lists, dicts and ``None`` with arrays as leaves."""

Params: TypeAlias = PyTree
"""A layer's parameters: a frozen attrs tree (``None`` for a layer without parameters)."""

State: TypeAlias = PyTree
"""A layer's state: BatchNorm statistics, dropout keys (``None`` for a stateless layer)."""

Schedule: TypeAlias = Callable[[int], float]
"""A learning-rate schedule: ``step -> lr``, step 0 being the first update."""

ScalarOrSchedule: TypeAlias = "float | Schedule"


class VJP(Protocol):
    """A layer's vector-Jacobian product: ``vjp(dy) -> (dparams, dx)``."""

    def __call__(self, dy: Array, /) -> tuple[Params, Array]: ...


class LossVJP(Protocol):
    """A loss's vector-Jacobian product: ``vjp(dloss) -> dinput``."""

    def __call__(self, dloss: Array | float = 1.0, /) -> Array: ...


@runtime_checkable
class LayerProtocol(Protocol):
    """The layer contract, written down once.

    A layer is an immutable object that holds only hyperparameters. Its math is a
    pair of pure functions:

    * ``init(key) -> params``: a frozen attrs tree whose arrays are read-only and
      whose field names are torch's parameter names (``weight``, ``bias``); a layer
      without parameters returns ``None``.
    * ``apply(params, x) -> (y, vjp)``: the short form, for layers and containers
      without state. ``vjp(dy) -> (dparams, dx)``, where ``dparams`` has the same
      tree structure and classes as ``params`` and ``dx`` the shape of ``x``.
    * ``init_state(key) -> state`` and the long form
      ``apply(params, x, state, *, train) -> (y, vjp, new_state)``: every layer
      accepts it; a stateless layer returns its (empty, ``None``) state unchanged,
      so containers treat all children alike. Calling a stateful layer in the short
      form is a ``TypeError``.
    * ``output_shape(input_shape) -> shape``: the layer family's shape helper,
      used by ``init``, ``apply`` and the tests alike.

    Nothing is mutated: not ``x``, not ``params``, not ``state``, not ``dy``. Calling
    ``vjp`` twice gives the same result.
    """

    def init(self, key: Any) -> Params: ...

    def init_state(self, key: Any) -> State: ...

    def apply(self, params: Params, x: Array, *args: Any, **kwargs: Any) -> tuple[Any, ...]: ...

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]: ...

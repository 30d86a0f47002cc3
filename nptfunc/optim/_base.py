"""The optimizer machinery: transforms, the optimizer that applies them, its state.

Two levels, as in optax:

* A :class:`GradientTransformation` turns gradients into updates:
  ``init(params) -> state`` and ``update(updates, state, params, step) -> (updates, state)``.
  It is a small immutable pair of pure functions; its state is a frozen attrs
  record of arrays (and numbers) declared next to its factory. ``step`` is the
  index of the update being made (0 for the first), the one step count of an
  optimizer, kept in :class:`OptState` and handed down to every transform that
  needs it (bias corrections, schedules), so no transform keeps a counter of its own.
* An :class:`Optimizer` applies a transform (usually a chain of them) to params:
  ``init(params) -> OptState`` and ``update(opt_state, grads) -> (opt_state, params)``.
  :class:`OptState` holds the step count, the current params and the transforms'
  states: a tree of attrs classes, tuples, ints, floats and arrays, with no
  callables, so it can be saved and restored.

Nothing is mutated: not the params, grads or state given to ``update``; every
array in a new state (and the new params) is fresh and read-only.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from nptfunc._types import Params, PyTree, Schedule
from nptfunc.backend import array_module, readonly
from nptfunc.tree import (
    assert_same_structure,
    path_str,
    tree_flatten,
    tree_flatten_with_path,
    tree_leaves,
    tree_map,
    tree_unflatten,
)

__all__ = [
    "GradientTransformation",
    "OptState",
    "Optimizer",
    "Updates",
    "chain",
    "tree_map_multi",
]

Updates = PyTree
"""Gradients on their way to becoming the additive change of the params (same tree)."""

InitFn = Callable[[Params], PyTree]
UpdateFn = Callable[[Updates, PyTree, Params, int], tuple[Updates, PyTree]]


def tree_map_multi(f: Callable[..., tuple[Any, ...]], n: int, tree: PyTree,
                   *rest: PyTree) -> tuple[PyTree, ...]:
    """Like :func:`nptfunc.tree.tree_map` for an ``f`` that returns ``n`` values per leaf.

    Returns ``n`` trees of the structure of ``tree``: the per-array rules of the
    optimizers return the update and the new buffers at once, and this lifts
    them to trees.

    Raises:
        TypeError: naming the path where a tree of ``rest`` differs from ``tree``.
    """
    leaves, treedef = tree_flatten(tree)
    others = []
    for i, r in enumerate(rest):
        assert_same_structure(tree, r, what=f"tree_map_multi: tree 0 and tree {i + 1}")
        others.append(tree_leaves(r))
    outs = [f(*xs) for xs in zip(leaves, *others, strict=True)]
    return tuple(tree_unflatten(treedef, [o[k] for o in outs]) for k in range(n))


@attrs.frozen(repr=False)
class GradientTransformation:
    """A gradient transformation: a pair of pure functions and a name.

    Attributes:
        init: ``init(params) -> state``, the transform's initial state (``None``
            for a stateless transform).
        update: ``update(updates, state, params, step) -> (updates, state)``:
            ``updates`` has the structure of ``params`` (the current params,
            before this update), ``step`` is the index of this update (0 first).
        name: how it prints, e.g. ``clip_grad_norm(max_norm=1)``.
    """

    init: InitFn
    update: UpdateFn
    name: str = "transform"

    def __repr__(self) -> str:
        return self.name


def _stateless(name: str, fn: Callable[[Updates, Params, int], Updates]) -> GradientTransformation:
    """A transform without state from ``fn(updates, params, step) -> updates``."""

    def update(updates: Updates, state: None, params: Params, step: int) -> tuple[Updates, None]:
        return fn(updates, params, step), None

    return GradientTransformation(lambda params: None, update, name)


def chain_transforms(transforms: list[GradientTransformation],
                     name: str | None = None) -> GradientTransformation:
    """One transform running ``transforms`` in order; its state is the tuple of theirs."""
    parts = tuple(transforms)

    def init(params: Params) -> tuple[PyTree, ...]:
        return tuple(t.init(params) for t in parts)

    def update(updates: Updates, state: tuple[PyTree, ...], params: Params,
               step: int) -> tuple[Updates, tuple[PyTree, ...]]:
        if not isinstance(state, tuple) or len(state) != len(parts):
            msg = (f"{text}: expected a state tuple of {len(parts)} transform states "
                   f"(from init), got {type(state).__name__}")
            raise TypeError(msg)
        new_states = []
        for t, s in zip(parts, state, strict=True):
            updates, s = t.update(updates, s, params, step)
            new_states.append(s)
        return updates, tuple(new_states)

    text = name if name is not None else f"chain({', '.join(map(repr, parts))})"
    return GradientTransformation(init, update, text)


# ---------------------------------------------------------------------- state
@attrs.frozen(eq=False)
class OptState:
    """An optimizer's whole state: a tree of plain leaves (no callables).

    Compare two states with :func:`nptfunc.testing.leaves_equal` (``==`` is identity).
    Save and restore one with :func:`nptfunc.io.save` and :func:`nptfunc.io.load`.

    Attributes:
        step: how many updates have been made; the next update is step ``step``
            and uses ``optimizer.learning_rate(step)``.
        params: the current params (read-only arrays, the structure given to ``init``).
        transform_state: the transforms' states (a tuple for a chain).
    """

    step: int = attrs.field(converter=operator.index)
    params: Params
    transform_state: PyTree


def _own(path: tuple[Any, ...], x: Any) -> Any:
    """A read-only copy of a params leaf, which must be a floating array."""
    xp = array_module(x)
    a = xp.array(x, copy=True)
    if a.dtype.kind != "f":
        msg = (f"Optimizer.init: expected floating-point params, got dtype {a.dtype} "
               f"at {path_str(path)}")
        raise TypeError(msg)
    return readonly(a)


@attrs.frozen(repr=False)
class Optimizer:
    """An optimizer: a transform applied to params, with the step count.

    Build one with a factory (:func:`nptfunc.optim.adam`, ...) or :func:`chain`;
    it holds only hyperparameters and pure functions.

    Attributes:
        transform: the gradient transformation (a chain for the named optimizers).
        learning_rate: the schedule of the base learning rate (what torch calls
            ``param_groups[i]["lr"]``), ``learning_rate(step)`` being the rate of
            update ``step``; ``None`` when the transform has no learning rate.
        hyperparams: the arguments the factory was called with (read-only), so a
            copy with one of them changed is ``factory(**{**opt.hyperparams, "lr": x})``.
        name: the factory's name, for messages (``"adam"``, ``"chain"``).
    """

    transform: GradientTransformation
    learning_rate: Schedule | None = None
    hyperparams: Mapping[str, Any] = attrs.field(factory=dict, converter=MappingProxyType,
                                                 eq=False)
    name: str = "optimizer"

    def __repr__(self) -> str:
        return self.transform.name

    def init(self, params: Params) -> OptState:
        """The state before the first update: step 0, a read-only copy of ``params``.

        Args:
            params: any tree (attrs params of a model, dicts, tuples) of floating arrays.
        """
        pairs, treedef = tree_flatten_with_path(params)
        own = tree_unflatten(treedef, [_own(p, x) for p, x in pairs])
        return OptState(0, own, _frozen(self.transform.init(own)))

    def update(self, opt_state: OptState, grads: PyTree) -> tuple[OptState, Params]:
        """Make one update.

        Args:
            opt_state: from :meth:`init` or a previous :meth:`update`.
            grads: the gradients of the loss at ``opt_state.params``, same tree
                structure and shapes; cast to the params' dtypes.

        Returns:
            ``(new_opt_state, new_params)``, ``new_params`` being ``new_opt_state.params``.

        Raises:
            TypeError: ``opt_state`` is not an :class:`OptState`, or ``grads`` and the
                params differ in structure (naming the first place).
            ValueError: a gradient's shape differs from its param's.
        """
        if not isinstance(opt_state, OptState):
            msg = (f"{self.name}.update: expected an OptState (from init) as first argument, "
                   f"got {type(opt_state).__name__}")
            raise TypeError(msg)
        params = opt_state.params
        assert_same_structure(params, grads, what=f"{self.name}.update: params and grads")
        pairs, treedef = tree_flatten_with_path(params)
        g_leaves = [_as_grad(self.name, path, p, g)
                    for (path, p), g in zip(pairs, tree_leaves(grads), strict=True)]
        grads = tree_unflatten(treedef, g_leaves)
        updates, inner = self.transform.update(grads, opt_state.transform_state, params,
                                               opt_state.step)
        new_params = tree_map(_apply_update, params, updates)
        return OptState(opt_state.step + 1, new_params, _frozen(inner)), new_params


def _as_grad(owner: str, path: tuple[Any, ...], p: Any, g: Any) -> Any:
    xp = array_module(p)
    g = xp.asarray(g)
    if g.shape != p.shape:
        msg = (f"{owner}.update: expected the gradient at {path_str(path)} to have its param's "
               f"shape {tuple(p.shape)}, got {tuple(g.shape)}")
        raise ValueError(msg)
    return g if g.dtype == p.dtype else g.astype(p.dtype)


def _apply_update(p: Any, u: Any) -> Any:
    return readonly(p + (u if u.dtype == p.dtype else u.astype(p.dtype)))


def _frozen(state: PyTree) -> PyTree:
    """The state with every array leaf read-only (numbers left as they are)."""
    return tree_map(readonly, state)


def chain(*parts: GradientTransformation | Optimizer) -> Optimizer:
    """An optimizer running transforms and optimizers one after another.

    ``chain(clip_grad_norm(1.0), sgd(lr=0.1))`` clips the gradients, then lets
    SGD turn them into updates. An optimizer given as a part contributes its
    transform; the chain's :attr:`Optimizer.learning_rate` is that of the last
    such optimizer. The chain's state is the tuple of its parts' states.

    Args:
        parts: transforms (:func:`clip_grad_norm`, ...) and optimizers
            (:func:`sgd`, ...), at least one.

    Raises:
        TypeError: a part is neither.
    """
    if not parts:
        msg = "chain: expected at least one transform or optimizer, got none"
        raise TypeError(msg)
    transforms = []
    lr = None
    for i, p in enumerate(parts):
        if isinstance(p, Optimizer):
            transforms.append(p.transform)
            lr = p.learning_rate if p.learning_rate is not None else lr
        elif isinstance(p, GradientTransformation):
            transforms.append(p)
        else:
            msg = (f"chain: expected GradientTransformations or Optimizers, got "
                   f"{type(p).__name__} at position {i}")
            raise TypeError(msg)
    return Optimizer(chain_transforms(transforms), learning_rate=lr, name="chain")


def make_optimizer(name: str, hyperparams: dict[str, Any], learning_rate: Schedule,
                   transforms: list[GradientTransformation]) -> Optimizer:
    """A named optimizer (``adam(...)``) from its pieces; prints as its call."""
    text = ", ".join(f"{k}={v!r}" for k, v in hyperparams.items())
    return Optimizer(chain_transforms(transforms, f"{name}({text})"),
                     learning_rate=learning_rate, hyperparams=hyperparams, name=name)

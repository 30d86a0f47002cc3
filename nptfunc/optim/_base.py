"""The optimizer machinery: transforms, the optimizer that applies them, its state.

Two levels, as in optax:

* A :class:`GradientTransformation` turns gradients into updates:
  ``init(params) -> state`` and ``update(updates, state, params, step) -> (updates, state)``.
  It is a small immutable pair of pure functions; its state is a frozen attrs
  record of arrays (and numbers) declared next to its factory. ``step`` is the
  index of the update being made (0 for the first), the one step count of an
  optimizer, kept in :class:`OptState` and handed down to every transform that
  needs it (bias corrections, schedules), so no transform keeps a counter of its own.
* A :class:`FunctionalOptimizer` applies a transform (usually a chain of them) to params:
  ``init(params) -> OptState`` and ``update(opt_state, grads) -> (opt_state, params)``.
  :class:`OptState` holds the step count, the current params and the transforms'
  states: a tree of attrs classes, tuples, ints, floats and arrays, with no
  callables, so it can be saved and restored.

**Leaves.** The optimizer flattens the params and the gradients once per update
and hands the transforms their *leaves*: a tuple of arrays in the order of
:func:`nptfunc.tree.tree_leaves`, or the array itself when the params are one
array. A transform's per-array buffers are kept the same way (``exp_avg`` is a
tuple of arrays, one per param leaf, as torch keeps a state per parameter; for
one array it is an array). Per-array rules are lifted to leaves with
:func:`map_leaves` and :func:`lift_rule`; no transform walks a tree.

**Ownership.** Nothing is mutated: not the params, grads or state given to
``update``, and every array in a new state (and the new params) is fresh and
read-only. Within one update the arrays a transform has just allocated may be
reused: every array the optimizer keeps is read-only, and it hands the
gradients to the transforms as read-only views, so an update array that is
*writeable* was allocated by an earlier transform of this same update and
nothing else refers to it. The next transform, and the final ``params + updates``,
may write into it (:func:`writable`) instead of allocating another. In return a
transform declared with ``fresh_outputs=True`` (all of this library's) returns
as updates only arrays it has just allocated or read-only ones (never a
writeable array it also keeps, e.g. in its state), and keeps only read-only
arrays in its state (:func:`lift_rule` makes them so). The updates and state of
any other transform are made read-only by the chain or optimizer running it, so
a transform written without regard for all this is safe, only slower.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import numpy as np

from nptfunc._types import Params, PyTree, Schedule
from nptfunc._validate import bool_field
from nptfunc.backend import array_module, readonly
from nptfunc.optim import _fused as fused
from nptfunc.tree import (
    assert_same_structure,
    path_str,
    tree_flatten,
    tree_flatten_with_path,
    tree_map,
    tree_structure,
    tree_unflatten,
)

__all__ = [
    "FunctionalOptimizer",
    "GradientTransformation",
    "OptState",
    "Updates",
    "chain",
    "lift_rule",
    "map_leaves",
    "writable",
]

Updates = PyTree
"""Gradients on their way to becoming the additive change of the params (the params' leaves)."""

InitFn = Callable[[Params], PyTree]
UpdateFn = Callable[[Updates, PyTree, Params, int], tuple[Updates, PyTree]]

_ONE_ARRAY = tree_structure(0.0)  # the structure of params that are a single array


# ------------------------------------------------------------------ leaves
def _as_leaves(leaves: list[Any], treedef: Any) -> Any:
    """What the transforms see of a flattened tree: the tuple of leaves, or the one array."""
    return leaves[0] if treedef == _ONE_ARRAY else tuple(leaves)


def _describe(leaves: Any) -> str:
    if isinstance(leaves, tuple):
        return f"a tuple of {len(leaves)} arrays"
    return "one array" if hasattr(leaves, "shape") else f"a {type(leaves).__name__}"


def _check_fits(leaves: Any, rest: tuple[Any, ...]) -> None:
    """Raise if a tree of ``rest`` is not leaves of the form of ``leaves``."""
    for r in rest:
        if isinstance(r, tuple) != isinstance(leaves, tuple) or (
                isinstance(r, tuple) and len(r) != len(leaves)):
            msg = (f"optimizer: a state buffer or the params hold {_describe(r)} where the updates "
                   f"hold {_describe(leaves)} (a state from other params, or from another optimizer?)")
            raise TypeError(msg)


def map_leaves(f: Callable[..., Any], leaves: Any, *rest: Any) -> Any:
    """Apply ``f`` array by array over the leaves a transform is given (and others like them).

    Args:
        f: ``f(x, *r) -> y`` for one array.
        leaves: a tuple of arrays, or one array (see the module's docstring).
        rest: more leaves of the same form (params, buffers).

    Raises:
        TypeError: a tree of ``rest`` does not have the form of ``leaves``.
    """
    _check_fits(leaves, rest)
    if not isinstance(leaves, tuple):
        return _call(f, (leaves, *rest))
    return tuple(_call(f, xs) for xs in zip(leaves, *rest, strict=True))


def _call(f: Callable[..., Any], xs: tuple[Any, ...]) -> Any:
    """``f(*xs)``; a 0-d array goes in as shape ``(1,)`` and comes back 0-d.

    (NumPy's ufuncs turn 0-d arrays into scalars, which ``out=`` and in-place
    arithmetic cannot take.)
    """
    if getattr(xs[0], "ndim", None) != 0:
        return f(*xs)
    out = f(*(x.reshape(1) if getattr(x, "ndim", None) == 0 else x for x in xs))

    def back(y: Any) -> Any:
        return y.reshape(()) if getattr(y, "shape", None) == (1,) else y

    return tuple(back(y) for y in out) if isinstance(out, tuple) else back(out)


def lift_rule(rule: Callable[..., tuple[Any, ...]], n: int, updates: Any,
              *rest: Any) -> tuple[Any, ...]:
    """Apply a per-array update rule to the leaves; the new buffers come back read-only.

    Args:
        rule: ``rule(u, *r) -> (u_new, buffer_1, ..., buffer_{n-1})`` for one array.
        n: how many values ``rule`` returns.
        updates: the updates' leaves (a tuple of arrays, or one array).
        rest: the buffers (and params) the rule reads, leaves of the same form.

    Returns:
        ``(updates, buffer_1, ..., buffer_{n-1})``, each leaves of the form of
        ``updates``; the buffers are read-only (they go into the new state).
    """
    if not isinstance(updates, tuple):
        out = map_leaves(rule, updates, *rest)
        return (out[0], *(readonly(b) for b in out[1:]))
    outs = map_leaves(rule, updates, *rest)
    return (tuple(o[0] for o in outs),
            *(tuple(readonly(o[k]) for o in outs) for k in range(1, n)))


def writable(x: Any) -> bool:
    """Whether an update array may be written into (see "Ownership" in the module's docstring).

    ``True`` only for a writeable NumPy array: one an earlier transform of this
    update allocated. Arrays of other array modules are never written into.
    """
    flags = getattr(x, "flags", None)
    return bool(getattr(flags, "writeable", False))


def _check_callable(name: str, value: Any) -> None:
    if not callable(value):
        msg = (f"GradientTransformation: expected {name} to be a function, got "
               f"{type(value).__name__} {value!r}")
        raise TypeError(msg)


def _check_optional_callable(name: str, value: Any) -> None:
    if value is not None:
        _check_callable(name, value)


def _check_str(name: str, value: Any) -> None:
    if not isinstance(value, str):
        msg = f"GradientTransformation: expected {name} to be a str, got {type(value).__name__} {value!r}"
        raise TypeError(msg)


@attrs.frozen(repr=False)
class GradientTransformation:
    """A gradient transformation: a pair of pure functions and a name.

    Attributes:
        init: ``init(params) -> state``, the transform's initial state (``None``
            for a stateless transform).
        update: ``update(updates, state, params, step) -> (updates, state)``:
            ``updates`` and ``params`` (the current params, before this update)
            are the params' leaves (a tuple of arrays, or one array: see the
            module's docstring), ``step`` is the index of this update (0 first).
            It may write into the writeable arrays of ``updates`` (see "Ownership"
            in the module's docstring).
        name: how it prints, e.g. ``clip_grad_norm(max_norm=1)``.
        fresh_outputs: ``update`` returns as updates only arrays it has just
            allocated or read-only ones, and only read-only arrays in its state.
            ``False`` (the default): the chain or optimizer running it makes them
            read-only itself.
        elementwise: each entry of the updates depends only on the same entry of
            the gradients, params and per-array buffers (and on reductions over all
            of them, as a global norm), and ``init`` keeps one buffer shaped like
            each param per buffer kind. The optimizer may then give it all the
            leaves of one dtype as one flat buffer (see :mod:`nptfunc.optim._fused`).
            ``False`` (the default): it always gets one array per param leaf.
        scale_of: for a transform that only multiplies the updates by a number at
            each step (:func:`scale_by_learning_rate`): ``scale_of(step)``, that number.
        apply_scaled: an elementwise transform's update followed by ``params + s * updates``
            in one pass over the flat buffers:
            ``apply_scaled(updates, state, params, step, s) -> (new_params, state)``, the
            same numbers as :attr:`update` then the scale then the sum (new params fresh
            and writeable, their own memory). The fused path uses it for a chain ending
            in this transform and one with ``scale_of`` (Adam's update, then the
            learning rate: the params change in the same pass as the moments).
        parts: the transforms a chain runs, in order (empty for any other).
    """

    init: InitFn = attrs.field(validator=lambda self, a, v: _check_callable("init", v))
    update: UpdateFn = attrs.field(validator=lambda self, a, v: _check_callable("update", v))
    name: str = attrs.field(default="transform", validator=lambda self, a, v: _check_str("name", v))
    fresh_outputs: bool = bool_field(default=False)
    elementwise: bool = bool_field(default=False)
    scale_of: Callable[[int], float] | None = attrs.field(
        default=None, kw_only=True, validator=lambda self, a, v: _check_optional_callable("scale_of", v))
    apply_scaled: Callable[..., tuple[Any, Any]] | None = attrs.field(
        default=None, kw_only=True, validator=lambda self, a, v: _check_optional_callable("apply_scaled", v))
    parts: tuple[GradientTransformation, ...] = attrs.field(default=(), kw_only=True, converter=tuple)

    def __repr__(self) -> str:
        return self.name


def _stateless(name: str, fn: Callable[[Updates, Params, int], Updates],
               fresh_outputs: bool = False, elementwise: bool = False,
               scale_of: Callable[[int], float] | None = None) -> GradientTransformation:
    """A transform without state from ``fn(updates, params, step) -> updates``."""

    def update(updates: Updates, state: None, params: Params, step: int) -> tuple[Updates, None]:
        return fn(updates, params, step), None

    return GradientTransformation(lambda params: None, update, name, fresh_outputs, elementwise,
                                  scale_of=scale_of)


def _run(t: GradientTransformation, updates: Updates, state: PyTree, params: Params,
         step: int) -> tuple[Updates, PyTree]:
    """``t.update``, with its outputs made read-only unless it declares ``fresh_outputs``."""
    updates, state = t.update(updates, state, params, step)
    if not t.fresh_outputs:
        updates, state = map_leaves(readonly, updates), _frozen(state)
    return updates, state


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
            updates, s = _run(t, updates, s, params, step)
            new_states.append(s)
        return updates, tuple(new_states)

    text = name if name is not None else f"chain({', '.join(map(repr, parts))})"
    return GradientTransformation(init, update, text, fresh_outputs=True,
                                  elementwise=all(t.elementwise for t in parts), parts=parts)


def _folds_tail(t: GradientTransformation) -> bool:
    """Whether ``t`` is a chain whose last two parts (in a chain ending it, too) make one ``apply_scaled``."""
    parts = t.parts
    if parts and parts[-1].parts:
        return _folds_tail(parts[-1])
    return len(parts) >= 2 and parts[-1].scale_of is not None and parts[-2].apply_scaled is not None


def arrays(updates: Updates) -> Updates:
    """``updates`` with each :class:`~nptfunc.optim._fused.Pieces` made into its array."""
    if isinstance(updates, tuple) and any(isinstance(u, fused.Pieces) for u in updates):
        return tuple(u.array() if isinstance(u, fused.Pieces) else u for u in updates)
    return updates


def _apply_folded(t: GradientTransformation, updates: Updates, state: tuple[PyTree, ...], params: Params,
                  step: int) -> tuple[Params, tuple[PyTree, ...]]:
    """``params`` plus the chain ``t``'s updates, its last two parts run as one ``apply_scaled``.

    Returns:
        ``(new_params, new_state)``; the new params are fresh writeable arrays.
    """
    parts, states = t.parts, list(state)
    nested = bool(parts[-1].parts)
    takes_pieces = nested or getattr(parts[-2].apply_scaled, "takes_pieces", False)
    if (parts[:-1] if nested else parts[:-2]) or not takes_pieces:
        updates = arrays(updates)
    for i, part in enumerate(parts[:-1] if nested else parts[:-2]):
        updates, states[i] = _run(part, updates, states[i], params, step)
    if nested:
        new_params, states[-1] = _apply_folded(parts[-1], updates, states[-1], params, step)
    else:
        last = parts[-2]
        new_params, s = last.apply_scaled(updates, states[-2], params, step, parts[-1].scale_of(step))
        states[-2] = s if last.fresh_outputs else _frozen(s)
    return new_params, tuple(states)


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
    # the fused path's memory of the views it made (not a tree field: not saved, not compared)
    _record: fused.Record | None = attrs.field(default=None, init=False, repr=False)

    def __reduce__(self) -> tuple[Any, ...]:
        # copies and pickles leave the fused path's memory behind: their arrays are new objects
        return (OptState, (self.step, self.params, self.transform_state))


def _check_transform(value: Any) -> None:
    if not isinstance(value, GradientTransformation):
        msg = (f"FunctionalOptimizer: expected transform to be a GradientTransformation, got "
               f"{type(value).__name__} {value!r}")
        raise TypeError(msg)


def _check_callable_lr(value: Any) -> None:
    if not callable(value):
        msg = (f"FunctionalOptimizer: expected learning_rate to be a schedule (step -> lr) or None, "
               f"got {type(value).__name__} {value!r}")
        raise TypeError(msg)


def _check_floating(path: tuple[Any, ...], x: Any) -> None:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        dtype = array_module(x).asarray(x).dtype
    if dtype.kind != "f":
        msg = (f"FunctionalOptimizer.init: expected floating-point params, got dtype {dtype} "
               f"at {path_str(path)}")
        raise TypeError(msg)


def _own(path: tuple[Any, ...], x: Any) -> Any:
    """A read-only copy of a params leaf, which must be a floating array."""
    return readonly(array_module(x).array(x, copy=True))


@attrs.frozen(repr=False)
class FunctionalOptimizer:
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

    transform: GradientTransformation = attrs.field(validator=lambda self, a, v: _check_transform(v))
    learning_rate: Schedule | None = attrs.field(
        default=None, validator=lambda self, a, v: v is None or _check_callable_lr(v))
    hyperparams: Mapping[str, Any] = attrs.field(factory=dict, converter=MappingProxyType,
                                                 eq=False)
    name: str = "optimizer"
    # layouts of the fused path by params signature (a cache: no part of the optimizer's value)
    _layouts: dict[Any, Any] = attrs.field(factory=dict, init=False, repr=False, eq=False)

    def __repr__(self) -> str:
        return self.transform.name

    def init(self, params: Params) -> OptState:
        """The state before the first update: step 0, a read-only copy of ``params``.

        Args:
            params: any tree (attrs params of a model, dicts, tuples) of floating arrays.
        """
        pairs, treedef = tree_flatten_with_path(params)
        for path, x in pairs:
            _check_floating(path, x)
        layout = self._layout(treedef, [x for _, x in pairs])
        if layout is None:
            leaves = [_own(p, x) for p, x in pairs]
            inner = self.transform.init(_as_leaves(leaves, treedef))
            return OptState(0, tree_unflatten(treedef, leaves), _frozen(inner))
        flat = fused.flat_params(layout, [x for _, x in pairs])
        f_state = _frozen(self.transform.init(flat))
        return self._fused_state(0, treedef, layout, flat, f_state)

    def _layout(self, treedef: Any, p_leaves: list[Any]) -> fused.Layout | None:
        """The fused layout for these params, or ``None`` for the per-array path."""
        if not self.transform.elementwise or treedef == _ONE_ARRAY or not all(
                type(p) is np.ndarray for p in p_leaves):
            return None
        key = (treedef, tuple((p.shape, p.dtype) for p in p_leaves))
        layout = self._layouts.get(key, False)
        if layout is False:
            if len(self._layouts) > 16:  # params of many signatures: keep the cache small
                self._layouts.clear()
            layout = self._layouts[key] = fused.layout_of(self.transform.init, p_leaves)
        return layout

    def _fused_state(self, step: int, treedef: Any, layout: fused.Layout, flat: tuple[Any, ...],
                     f_state: Any) -> OptState:
        """The state as the user sees it (views per param leaf), remembering its flat buffers."""
        f_leaves, f_treedef = tree_flatten(f_state)
        if f_treedef != layout.fused.treedef:
            msg = (f"{self.name}.update: the transform's state changed structure during an update "
                   f"({layout.fused.treedef} to {f_treedef}); it cannot be elementwise")
            raise TypeError(msg)
        for x in f_leaves:  # every buffer here is this library's own (fresh, or from an earlier one)
            if type(x) is np.ndarray:
                owner = x if x.base is None else x.base
                if owner.flags.writeable and owner.flags.owndata:
                    owner.flags.writeable = False  # read-only at the root, not only through views
        p_leaves = [v for g, buf in zip(layout.groups, flat, strict=True) for v in fused.split(buf, g)]
        order = [i for g in layout.groups for i in g.index]
        leaves = [None] * len(p_leaves)
        for i, v in zip(order, p_leaves, strict=True):
            leaves[i] = v
        s_leaves = fused.from_fused(layout, f_leaves)
        inner = tree_unflatten(layout.leaves.treedef, s_leaves)
        # (a params class whose converter copies or views would only cost the next update a copy)
        state = OptState(step, tree_unflatten(treedef, leaves), inner)
        object.__setattr__(state, "_record", fused.Record(layout, tuple(leaves), flat, inner,
                                                          tuple(s_leaves), tuple(f_leaves), f_state))
        return state

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
        p_leaves, treedef = tree_flatten(params)
        g_leaves, g_treedef = tree_flatten(grads)
        if g_treedef != treedef:
            assert_same_structure(params, grads, what=f"{self.name}.update: params and grads")
        owner = f"{self.name}.update"
        g_leaves = [check_grad(owner, lambda i=i: path_str(tree_flatten_with_path(params)[0][i][0]), p, g)
                    for i, (p, g) in enumerate(zip(p_leaves, g_leaves, strict=True))]
        record = opt_state._record
        if record is not None and record.params_match(p_leaves):  # the views of the last update
            if opt_state.transform_state is record.state:  # an immutable tree: its leaves are too
                return self._fused_update(opt_state, treedef, record.layout, record.flat_params,
                                          g_leaves, record.f_state)
            layout = record.layout
        else:
            layout = self._layout(treedef, p_leaves)
        if layout is not None:
            s_leaves, s_treedef = tree_flatten(opt_state.transform_state)
            if s_treedef == layout.leaves.treedef:
                flat = (record.params_for(layout, p_leaves) if record is not None else None) \
                    or fused.flat_params(layout, p_leaves)
                f_leaves = (record.state_for(layout, s_leaves) if record is not None else None) \
                    or fused.to_fused(layout, s_leaves)
                f_state = tree_unflatten(layout.fused.treedef, list(f_leaves))
                return self._fused_update(opt_state, treedef, layout, flat, g_leaves, f_state)
        p_leaves = [readonly(p) for p in p_leaves]
        g_leaves = [readonly(g) if g.dtype == p.dtype else g.astype(p.dtype)
                    for p, g in zip(p_leaves, g_leaves, strict=True)]
        updates, inner = _run(self.transform, _as_leaves(g_leaves, treedef), opt_state.transform_state,
                              _as_leaves(p_leaves, treedef), opt_state.step)
        u_leaves = updates if isinstance(updates, tuple) else (updates,)
        new_params = tree_unflatten(treedef, [_apply_update(p, u)
                                              for p, u in zip(p_leaves, u_leaves, strict=True)])
        return OptState(opt_state.step + 1, new_params, inner), new_params

    def _fused_update(self, opt_state: OptState, treedef: Any, layout: fused.Layout, flat: tuple[Any, ...],
                      g_leaves: list[Any], f_state: Any) -> tuple[OptState, Params]:
        """One update over one flat buffer per dtype (see :mod:`nptfunc.optim._fused`)."""
        folds = _folds_tail(self.transform)
        gather = fused.Pieces.of if folds else fused.concat  # pieces: copied in by the chunks that use them
        grads = tuple(gather([g_leaves[i] for i in g.index], g) for g in layout.groups)
        step = opt_state.step
        if folds:  # the last update and the params' change in one pass
            new_flat, inner = _apply_folded(self.transform, grads, f_state, flat, step)
            for p in new_flat:
                p.flags.writeable = False
        else:
            updates, inner = _run(self.transform, grads, f_state, flat, step)
            new_flat = tuple(_apply_update(p, u, own=True) for p, u in zip(flat, updates, strict=True))
        state = self._fused_state(step + 1, treedef, layout, new_flat, inner)
        return state, state.params


def check_grad(owner: str, where: Callable[[], str], p: Any, g: Any) -> Any:
    """``g`` as an array if it is a gradient for the param ``p`` (its shape, a real dtype), or raise.

    Args:
        owner: names the caller in the message (``"adam.update"``, ``"Adam.step"``).
        where: returns the name of the param (called only to build a message).
        p: the param (an array).
        g: its gradient (an array, or anything ``asarray`` takes).

    Raises:
        TypeError: a complex gradient (its imaginary part would be dropped), or a
            dtype that is not a real number (bool, object, strings).
        ValueError: another shape than the param's.
    """
    if type(g) is not np.ndarray or type(p) is not np.ndarray:
        g = array_module(p).asarray(g)
    if g.dtype.kind not in "fiu":
        what = ("complex (its imaginary part would be dropped)" if g.dtype.kind == "c"
                else "not a real number")
        msg = (f"{owner}: expected a real gradient for the param at {where()} (dtype {p.dtype}), "
               f"got dtype {g.dtype}: {what}")
        raise TypeError(msg)
    if g.shape != p.shape:
        msg = (f"{owner}: expected the gradient at {where()} to have its "
               f"param's shape {tuple(p.shape)}, got {tuple(g.shape)}")
        raise ValueError(msg)
    return g


def _apply_update(p: Any, u: Any, own: bool = False) -> Any:
    """``p + u``, read-only; written into ``u`` when the update owns it.

    With ``own``, the result is a NumPy array nothing else refers to, made
    read-only itself (not only through a view), so views of it are read-only too.
    """
    if u.dtype != p.dtype:
        u = u.astype(p.dtype)
    if writable(u) and (not own or u.base is None):
        u += p
    else:
        u = p + u
    if own:
        u.flags.writeable = False
        return u
    return readonly(u)


def _frozen(state: PyTree) -> PyTree:
    """The state with every array leaf read-only (numbers left as they are)."""
    return tree_map(readonly, state)


def chain(*parts: GradientTransformation | FunctionalOptimizer) -> FunctionalOptimizer:
    """An optimizer running transforms and optimizers one after another.

    ``chain(clip_grad_norm(1.0), sgd(lr=0.1))`` clips the gradients, then lets
    SGD turn them into updates. An optimizer given as a part contributes its
    transform; the chain's :attr:`FunctionalOptimizer.learning_rate` is that of the last
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
        if isinstance(p, FunctionalOptimizer):
            transforms.append(p.transform)
            lr = p.learning_rate if p.learning_rate is not None else lr
        elif isinstance(p, GradientTransformation):
            transforms.append(p)
        else:
            msg = (f"chain: expected GradientTransformations or Optimizers, got "
                   f"{type(p).__name__} at position {i}")
            raise TypeError(msg)
    return FunctionalOptimizer(chain_transforms(transforms), learning_rate=lr, name="chain")


def make_optimizer(name: str, hyperparams: dict[str, Any], learning_rate: Schedule,
                   transforms: list[GradientTransformation]) -> FunctionalOptimizer:
    """A named optimizer (``adam(...)``) from its pieces; prints as its call."""
    text = ", ".join(f"{k}={v!r}" for k, v in hyperparams.items())
    return FunctionalOptimizer(chain_transforms(transforms, f"{name}({text})"),
                     learning_rate=learning_rate, hyperparams=hyperparams, name=name)

"""The torch-like optimizer classes: thin shells over the functional optimizers.

``optim.Adam(model.parameters(), lr=1e-3)`` keeps one functional optimizer
``optim.adam(...)`` per param group, built once and rebuilt only when a
hyperparameter other than ``lr`` changes (its learning rate is a schedule that
reads ``param_groups[i]["lr"]`` at each update, so a rate set by hand or by a
scheduler is used at once). Each ``step()`` checks every gradient first, then
runs one functional ``update`` per group over all of the group's parameters
that have a gradient: on the fused path (see :mod:`nptfunc.optim._fused`) that is
a handful of passes over one flat buffer per dtype. The new values go into
``.data`` (the array is replaced, never written into). A parameter whose
``.grad`` is ``None`` is skipped, as in torch.

Parameters are stepped in *cohorts*: the parameters of a group that were
stepped together so far and share a step count, with one functional state.
``optimizer.state[p]`` shows each parameter's own :class:`~nptfunc.optim.OptState`
(as torch keeps ``optimizer.state[p]``), cut out of its cohort's state.

The facade touches a parameter only through ``.data`` (read, and replaced),
``.grad``, ``.requires_grad``, ``.dtype`` and ``.shape``. All update math is the
functional optimizers'; nothing here computes anything.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np

from nptfunc._validate import check_bool
from nptfunc.nn._parameter import Parameter
from nptfunc.optim import _fused as fused
from nptfunc.optim._base import FunctionalOptimizer, OptState, check_grad
from nptfunc.optim._optimizers import (
    adadelta,
    adagrad,
    adam,
    adamax,
    adamw,
    momentum,
    nadam,
    radam,
    rmsprop,
    sgd,
)
from nptfunc.tree import same_structure, tree_leaves, tree_structure, tree_unflatten

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Momentum", "NAdam", "Optimizer", "RAdam",
           "RMSProp", "RMSprop"]


def _check_lr(owner: str, lr: Any) -> float:
    if type(lr) is float:  # the usual case, without the ABC check below
        return lr
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        msg = (f"{owner}: expected lr to be a float (vary it with optim.lr_scheduler, or use the "
               f"functional optimizers for a schedule), got {lr!r}")
        raise TypeError(msg)
    return lr


# torch's implementation switches: accepted for torch's signatures; ``None`` means "choose".
_SWITCHES = {"foreach": True, "fused": True, "capturable": False, "differentiable": False}


def _check_switches(owner: str, group: dict[str, Any]) -> None:
    for name, none_ok in _SWITCHES.items():
        if name in group and not (none_ok and group[name] is None):
            try:
                check_bool(owner, name, group[name])
            except TypeError as e:
                if none_ok:
                    msg = f"{owner}: expected {name} to be a bool or None, got {group[name]!r}"
                    raise TypeError(msg) from None
                raise e from None


class _GroupLR:
    """A group's learning rate as a schedule: ``param_groups[i]["lr"]`` at the time of the update."""

    __slots__ = ("group",)

    def __init__(self, group: dict[str, Any]) -> None:
        self.group = group

    def __call__(self, step: int) -> float:
        return float(self.group["lr"])

    def __repr__(self) -> str:
        return "param_group['lr']"


def _same(a: tuple[Any, ...], b: Any) -> bool:
    """Whether two tuples hold the same objects (by identity, not by ``==``)."""
    return isinstance(b, tuple) and len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _with_params(state: OptState, params: tuple[Any, ...]) -> OptState:
    """``state`` with other param values (the fused path then copies them in once)."""
    new = OptState(state.step, params, state.transform_state)
    object.__setattr__(new, "_record", state._record)
    return new


class _Cohort:
    """Parameters of one group stepped together, with one functional state over them."""

    __slots__ = ("opt", "params", "state")

    def __init__(self, params: tuple[Parameter, ...], opt: FunctionalOptimizer, state: OptState) -> None:
        self.params, self.opt, self.state = params, opt, state


class Optimizer:
    """Base class of the torch-like optimizers, as ``torch.optim.Optimizer``.

    Subclasses name their functional factory and the hyperparameters it takes.

    Args:
        params: ``model.parameters()``, ``model.named_parameters()``, or torch-style
            param groups: a list of dicts with ``"params"`` and per-group
            hyperparameters (the others come from ``defaults``).
        defaults: the hyperparameters of every group that does not set its own.

    Attributes:
        param_groups: a list of dicts, ``{"params": [Parameter, ...], "lr": ..., ...}``.
        defaults: the constructor's hyperparameters.
    """

    factory: ClassVar[Callable[..., FunctionalOptimizer]]
    hyperparams: ClassVar[tuple[str, ...]] = ()  # the factory's arguments, by the group's names
    renamed: ClassVar[dict[str, str]] = {}  # group name -> factory argument, where they differ

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self._cohorts: dict[int, list[_Cohort]] = {}  # group index -> its cohorts
        # group index -> (the group, its hyperparameters but lr, the functional optimizer built for them)
        self._built: dict[int, tuple[dict[str, Any], tuple[Any, ...], FunctionalOptimizer]] = {}
        if isinstance(params, (Parameter, dict)):
            params = [params]
        groups = list(params)
        if not groups:
            msg = f"{type(self).__name__}: got an empty parameter list"
            raise ValueError(msg)
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------- groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group: ``{"params": [...], <hyperparameter>: value, ...}``."""
        owner = type(self).__name__
        if not isinstance(param_group, dict) or "params" not in param_group:
            msg = f"{owner}.add_param_group: expected a dict with a 'params' entry, got {param_group!r}"
            raise TypeError(msg)
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        if params and all(isinstance(p, tuple) and len(p) == 2 for p in params):  # named_parameters()
            group["param_names"] = [name for name, _ in params]
            params = [p for _, p in params]
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                msg = (f"{owner}: can only optimize nn.Parameter objects (model.parameters()), got "
                       f"{type(p).__name__} at position {i}")
                raise TypeError(msg)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or existing & {id(p) for p in params}:
            msg = f"{owner}: some parameters appear more than once (in one group or in several)"
            raise ValueError(msg)
        group["params"] = params
        for name, value in self.defaults.items():
            group.setdefault(name, value)
        _check_switches(owner, group)
        self._functional(group)  # checks the hyperparameters now, as torch does
        self.param_groups.append(group)

    def _functional(self, group: dict[str, Any], index: int | None = None) -> FunctionalOptimizer:
        """The functional optimizer for the group's current hyperparameters.

        Built once per group and rebuilt only when a hyperparameter other than
        ``lr`` changed; its learning rate reads ``group["lr"]`` at each update.

        Raises:
            TypeError, ValueError: a bad hyperparameter, naming this class and the argument.
        """
        owner = type(self).__name__
        _check_lr(owner, group["lr"])
        if not math.isfinite(group["lr"]) or group["lr"] < 0:
            msg = f"{owner}: expected lr >= 0, got {group['lr']!r}"
            raise ValueError(msg)
        key = tuple(group[k] for k in self.hyperparams if k != "lr")
        built = self._built.get(index) if index is not None else None
        if built is not None and built[0] is group and built[1] == key:
            return built[2]
        factory = type(self).factory
        kwargs = {self.renamed.get(k, k): group[k] for k in self.hyperparams}
        try:
            factory(**kwargs)  # the values as given, checked and named
        except (TypeError, ValueError) as e:  # name the class, not the factory it calls
            text = str(e)
            prefix = f"{factory.__name__}: "
            if text.startswith(prefix):
                text = text[len(prefix):]
                for ours, theirs in self.renamed.items():
                    text = text.replace(f"expected {theirs} ", f"expected {ours} ")
            raise type(e)(f"{owner}: {text}") from None
        opt = factory(**{**kwargs, "lr": _GroupLR(group)})
        if index is not None:
            self._built[index] = (group, key, opt)
        return opt

    # --------------------------------------------------------------------- steps
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters: ``None`` (torch's default) or zeros."""
        set_to_none = check_bool(f"{type(self).__name__}.zero_grad", "set_to_none", set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None if set_to_none or p.grad is None else np.zeros_like(p.grad)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient.

        Args:
            closure: optional, re-evaluates the model and returns the loss (torch's).

        Returns:
            The closure's loss, or ``None``.
        """
        owner = f"{type(self).__name__}.step"
        if closure is not None and not callable(closure):
            msg = f"{owner}: expected closure to be a function returning the loss, or None, got {closure!r}"
            raise TypeError(msg)
        loss = closure() if closure is not None else None
        # everything is checked before any parameter changes (all or nothing)
        plan = []
        for gi, group in enumerate(self.param_groups):
            opt = self._functional(group, gi)
            active, grads = [], []
            for i, p in enumerate(group["params"]):
                if p.grad is None or not p.requires_grad:
                    continue
                active.append(p)
                grads.append(check_grad(owner, lambda gi=gi, i=i: f"param_groups[{gi}]['params'][{i}]",
                                        p.data, p.grad))
            plan.append((gi, opt, tuple(active), tuple(grads)))
        for gi, opt, active, grads in plan:
            if active:
                self._step_group(gi, opt, active, grads)
        return loss

    def _step_group(self, gi: int, opt: FunctionalOptimizer, active: tuple[Parameter, ...],
                    grads: tuple[Any, ...]) -> None:
        cohorts = self._cohorts.get(gi, [])
        if len(cohorts) == 1 and _same(cohorts[0].params, active) and cohorts[0].opt is opt:
            todo = cohorts  # the usual step: the same parameters as last time, one update
        else:
            todo, cohorts = self._regroup(opt, active, cohorts)
            self._cohorts[gi] = cohorts
        position = {id(p): i for i, p in enumerate(active)}  # by identity: a tensor's == is elementwise
        for c in todo:
            g = grads if len(todo) == 1 else tuple(grads[position[id(p)]] for p in c.params)
            st = c.state
            values = tuple(p.data for p in c.params)
            if not _same(values, st.params):  # a value set by hand since: use it
                st = _with_params(st, values)
            c.state, new = c.opt.update(st, g)
            for p, a in zip(c.params, new, strict=True):
                p.data = a

    def _regroup(self, opt: FunctionalOptimizer, active: tuple[Parameter, ...],
                 cohorts: list[_Cohort]) -> tuple[list[_Cohort], list[_Cohort]]:
        """New cohorts: the active parameters by step count, and the others each alone.

        Returns:
            ``(to step, all)``.
        """
        own = {id(p): (p, st) for c in cohorts for p, st in zip(c.params, self._split(c), strict=True)}
        expected = None
        by_step: dict[int, list[tuple[Parameter, OptState]]] = {}
        for p in active:
            _, st = own.pop(id(p), (p, None))
            if st is None:
                st = opt.init(p.data)
            else:
                if expected is None:
                    expected = tree_structure(opt.init(np.zeros((), p.dtype)).transform_state)
                if tree_structure(st.transform_state) != expected:
                    # a hyperparameter changed the state's form (SGD's momentum set from 0 on)
                    st = OptState(st.step, st.params, opt.init(p.data).transform_state)
            by_step.setdefault(st.step, []).append((p, st))
        todo = [self._merge(opt, items) for items in by_step.values()]
        idle = [self._merge(self._opt_of(cohorts, p), [(p, st)]) for p, st in own.values()]
        return todo, todo + idle

    @staticmethod
    def _opt_of(cohorts: list[_Cohort], p: Parameter) -> FunctionalOptimizer:
        return next(c.opt for c in cohorts if any(q is p for q in c.params))

    @staticmethod
    def _forms(opt: FunctionalOptimizer, n: int) -> tuple[fused.Form, fused.Form]:
        nform = fused.form_of(opt.transform.init, n)
        bare = fused.form_of(opt.transform.init, 1, bare=True)
        if nform is None or bare is None:  # not the case for this library's optimizers
            msg = f"{opt.name}: its state does not keep one buffer per parameter; cannot step it per group"
            raise TypeError(msg)
        return nform, bare

    def _split(self, c: _Cohort) -> list[OptState]:
        """Each parameter's own state (of one bare array), cut out of its cohort's state."""
        nform, bare = self._forms(c.opt, len(c.params))
        leaves = tree_leaves(c.state.transform_state)
        return [OptState(c.state.step, a,
                         tree_unflatten(bare.treedef, fused.split_state(nform, bare, leaves, i)))
                for i, a in enumerate(c.state.params)]

    def _merge(self, opt: FunctionalOptimizer, items: list[tuple[Parameter, OptState]]) -> _Cohort:
        """One cohort from parameters' own states (all of one step count)."""
        nform, bare = self._forms(opt, len(items))
        leaves = fused.merge_states(nform, bare, [tree_leaves(st.transform_state) for _, st in items])
        state = OptState(items[0][1].step, tuple(p.data for p, _ in items),
                         tree_unflatten(nform.treedef, leaves))
        return _Cohort(tuple(p for p, _ in items), opt, state)

    @property
    def state(self) -> dict[Parameter, OptState]:
        """``{Parameter: OptState}`` for every parameter stepped so far, as torch's ``optimizer.state``.

        Each is the parameter's own state (of its one array), as the functional
        optimizer over that array would have it; its arrays are read-only views
        into the state of the parameters stepped together with it.
        """
        return {p: st for cs in self._cohorts.values() for c in cs
                for p, st in zip(c.params, self._split(c), strict=True)}

    # ---------------------------------------------------------------- state dicts
    def _all_params(self) -> list[Parameter]:
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``{"state": {index: ...}, "param_groups": [{..., "params": [index, ...]}]}``.

        Parameters are numbered across groups in order; each state entry is
        ``{"step": int, "transform_state": <the functional optimizer's state>}``
        (the parameter values are not included). :func:`nptfunc.save` writes it.
        """
        params = self._all_params()
        own = {id(p): st for p, st in self.state.items()}
        state = {i: {"step": own[id(p)].step, "transform_state": own[id(p)].transform_state}
                 for i, p in enumerate(params) if id(p) in own}
        groups, start = [], 0
        for g in self.param_groups:
            n = len(g["params"])
            groups.append({**{k: v for k, v in g.items() if k != "params"},
                           "params": list(range(start, start + n))})
            start += n
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and per-parameter state from :meth:`state_dict`.

        Raises:
            ValueError: if the groups or their sizes differ, or a parameter's saved
                state does not fit this optimizer (naming the parameter's index).
        """
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            found = (f"a dict with keys {sorted(map(str, state_dict))}" if isinstance(state_dict, dict)
                     else type(state_dict).__name__)
            msg = f"{owner}: expected a dict with 'state' and 'param_groups' (from state_dict()), got {found}"
            raise ValueError(msg)
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not all(
                isinstance(g, dict) and isinstance(g.get("params"), (list, tuple)) for g in saved_groups):
            msg = (f"{owner}: expected 'param_groups' to be a list of dicts with a 'params' list, "
                   f"got {saved_groups!r}")
            raise ValueError(msg)
        if not isinstance(saved_state, dict):
            msg = f"{owner}: expected 'state' to be a dict {{index: entry}}, got {type(saved_state).__name__}"
            raise ValueError(msg)
        if len(saved_groups) != len(self.param_groups):
            msg = (f"{owner}: the saved state has {len(saved_groups)} parameter groups, this "
                   f"optimizer has {len(self.param_groups)}")
            raise ValueError(msg)
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            if len(saved["params"]) != len(group["params"]):
                msg = (f"{owner}: parameter group {i} has {len(group['params'])} parameters, the "
                       f"saved one {len(saved['params'])}")
                raise ValueError(msg)
        index = {}
        for saved, group in zip(saved_groups, self.param_groups, strict=True):
            index.update(zip(saved["params"], group["params"], strict=True))
        groups = [{**group, **{k: v for k, v in saved.items() if k != "params"}, "params": group["params"]}
                  for saved, group in zip(saved_groups, self.param_groups, strict=True)]
        opts = [self._functional(g) for g in groups]  # the saved hyperparameters are checked too
        new_state: list[list[tuple[Parameter, OptState]]] = [[] for _ in groups]
        for i, entry in saved_state.items():
            if not isinstance(entry, dict) or set(entry) != {"step", "transform_state"}:
                found = (f"keys {sorted(map(str, entry))}" if isinstance(entry, dict)
                         else f"a {type(entry).__name__}")
                msg = (f"{owner}: expected the saved state of parameter {i!r} to have the keys 'step' "
                       f"and 'transform_state' (from this library's state_dict()), got {found}; a "
                       f"state dict of another library (torch.optim's) cannot be loaded")
                raise ValueError(msg)
            if i not in index:
                msg = f"{owner}: the saved state names parameter {i!r}, which no saved group has"
                raise ValueError(msg)
            step = entry["step"]
            if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) or step < 0:
                msg = f"{owner}: expected the saved step of parameter {i} to be an int >= 0, got {step!r}"
                raise ValueError(msg)
            p = index[i]
            gi = next(k for k, g in enumerate(groups) if any(q is p for q in g["params"]))
            expected = opts[gi].init(p.data).transform_state
            saved = entry["transform_state"]
            if not same_structure(saved, expected) or any(
                    np.shape(a) != np.shape(b)
                    or (isinstance(b, np.ndarray) and np.asarray(a).dtype.kind != "f")
                    for a, b in zip(tree_leaves(saved), tree_leaves(expected), strict=True)):
                msg = (f"{owner}: the saved state of parameter {i} does not fit this optimizer "
                       f"(another optimizer, or a parameter of another shape)")
                raise ValueError(msg)
            new_state[gi].append((p, OptState(int(step), p.data, saved)))
        self.param_groups = groups
        self._built = {}
        self._cohorts = {gi: [self._merge(opt, [item]) for item in items]
                         for gi, (opt, items) in enumerate(zip(opts, new_state, strict=True))}

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {group[k]}" for k in sorted(group) if k not in ("params", "param_names"))
        return "\n".join(lines) + "\n)"


# ------------------------------------------------------------------- the classes
class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``; the math is :func:`nptfunc.optim.sgd`.

    ``foreach``, ``differentiable`` and ``fused`` are accepted (and ignored) for torch's signature.
    """

    factory = staticmethod(sgd)
    hyperparams = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
                                  "foreach": foreach, "differentiable": differentiable, "fused": fused})


class Momentum(Optimizer):
    """The reference project's momentum: ``v = alpha * v + lr * g``, ``p -= v``.

    The math is :func:`nptfunc.optim.momentum` (its ``beta`` is ``alpha`` here).
    """

    factory = staticmethod(momentum)
    hyperparams = ("lr", "alpha")
    renamed: ClassVar[dict[str, str]] = {"alpha": "beta"}

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, alpha: float = 0.9) -> None:
        super().__init__(params, {"lr": lr, "alpha": alpha})


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``; the math is :func:`nptfunc.optim.rmsprop`.

    Also exported as ``RMSProp``, the reference project's name.
    """

    factory = staticmethod(rmsprop)
    hyperparams = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                                  "momentum": momentum, "centered": centered, "capturable": capturable,
                                  "foreach": foreach, "maximize": maximize,
                                  "differentiable": differentiable})


RMSProp = RMSprop


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad``; the math is :func:`nptfunc.optim.adagrad`."""

    factory = staticmethod(adagrad)
    hyperparams = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0, eps: float = 1e-10,
                 foreach: bool | None = None, *, maximize: bool = False, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        super().__init__(params, {"lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay,
                                  "initial_accumulator_value": initial_accumulator_value, "eps": eps,
                                  "foreach": foreach, "maximize": maximize,
                                  "differentiable": differentiable, "fused": fused})


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam``; the math is :func:`nptfunc.optim.adam`."""

    factory = staticmethod(adam)
    hyperparams = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
                                  "capturable": capturable, "differentiable": differentiable,
                                  "fused": fused, "decoupled_weight_decay": decoupled_weight_decay})


class AdamW(Optimizer):
    """AdamW, as ``torch.optim.AdamW``; the math is :func:`nptfunc.optim.adamw`."""

    factory = staticmethod(adamw)
    hyperparams = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
                                  "capturable": capturable, "differentiable": differentiable,
                                  "fused": fused})


class RAdam(Optimizer):
    """RAdam, as ``torch.optim.RAdam``; the math is :func:`nptfunc.optim.radam`."""

    factory = staticmethod(radam)
    hyperparams = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "maximize")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, decoupled_weight_decay: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "decoupled_weight_decay": decoupled_weight_decay, "foreach": foreach,
                                  "maximize": maximize, "capturable": capturable,
                                  "differentiable": differentiable})


class NAdam(Optimizer):
    """NAdam, as ``torch.optim.NAdam``; the math is :func:`nptfunc.optim.nadam`."""

    factory = staticmethod(nadam)
    hyperparams = ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay",
                   "maximize")

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "momentum_decay": momentum_decay,
                                  "decoupled_weight_decay": decoupled_weight_decay, "foreach": foreach,
                                  "maximize": maximize, "capturable": capturable,
                                  "differentiable": differentiable})


class Adamax(Optimizer):
    """Adamax, as ``torch.optim.Adamax``; the math is :func:`nptfunc.optim.adamax`."""

    factory = staticmethod(adamax)
    hyperparams = ("lr", "betas", "eps", "weight_decay", "maximize")

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, capturable: bool = False) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "foreach": foreach, "maximize": maximize,
                                  "differentiable": differentiable, "capturable": capturable})


class Adadelta(Optimizer):
    """Adadelta, as ``torch.optim.Adadelta``; the math is :func:`nptfunc.optim.adadelta`."""

    factory = staticmethod(adadelta)
    hyperparams = ("lr", "rho", "eps", "weight_decay", "maximize")

    def __init__(self, params: Iterable[Any], lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: bool | None = None, *, capturable: bool = False,
                 maximize: bool = False, differentiable: bool = False) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay,
                                  "foreach": foreach, "capturable": capturable, "maximize": maximize,
                                  "differentiable": differentiable})

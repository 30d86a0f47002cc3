"""torch's learning-rate schedulers over the torch-like optimizers, built on :mod:`nptfunc.schedules`.

A scheduler turns each group's base learning rate into a schedule (a pure
``step -> lr`` function of :mod:`nptfunc.schedules`) and, at each ``step()``,
writes ``schedule(last_epoch)`` into ``optimizer.param_groups[i]["lr"]``, which
the optimizer reads at its next ``step()``. The semantics are torch's: the
constructor sets ``initial_lr`` in each group and makes the first step
(``last_epoch = 0``), and after ``n`` calls of ``step()`` the rate is the
schedule's value at ``n``.

One difference: torch computes most rates recursively from the group's current
``lr``; these use the closed forms, so two schedulers on one optimizer do not
compose (the last to step wins), and an ``lr`` set by hand is overwritten at the
next ``step()`` rather than scaled.

Example:
    >>> from nptfunc import nn, optim
    >>> model = nn.Linear(4, 2, key=0)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    >>> for _ in range(3):
    ...     opt.step()
    ...     sched.step()
    >>> sched.get_last_lr()
    [0.05]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nptfunc import schedules
from nptfunc._types import Schedule
from nptfunc._validate import check_bool, check_choice, check_int, check_real
from nptfunc.optim._torch_like import Optimizer

__all__ = [
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExpoLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "StepLR",
    "TimeBasedLR",
]


class LRScheduler:
    """Base class: sets ``param_groups[i]["lr"] = schedule_i(last_epoch)`` at each step.

    A subclass defines :meth:`schedule`, the schedule of one group given its base
    learning rate (and its index).

    Args:
        optimizer: a torch-like optimizer (``optim.Adam(...)``).
        last_epoch: ``-1`` to start; else the index of the last step made before
            (resuming), which needs ``initial_lr`` in every group, as torch.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        owner = type(self).__name__
        _check_optimizer(owner, optimizer)
        last_epoch = check_int(owner, "last_epoch", last_epoch, minimum=-1)
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                msg = (f"{owner}: param 'initial_lr' is not specified in param_groups[{i}] when "
                       f"resuming (last_epoch={last_epoch}); create the scheduler with last_epoch=-1")
                raise KeyError(msg)
        self.base_lrs: list[float] = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._build()
        self.step()

    def _build(self) -> None:
        self._schedules = [self.schedule(lr, i) for i, lr in enumerate(self.base_lrs)]

    def schedule(self, base_lr: float, index: int) -> Schedule:
        """The schedule of group ``index`` with base rate ``base_lr``; subclasses define it."""
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        """The rates of the current step, ``schedule_i(last_epoch)``."""
        return [float(s(self.last_epoch)) for s in self._schedules]

    def get_last_lr(self) -> list[float]:
        """The rates the last ``step()`` set."""
        return list(self._last_lr)

    def step(self, epoch: int | None = None) -> None:
        """Advance one step (or jump to ``epoch``) and write the new rates into the optimizer."""
        epoch = check_int(f"{type(self).__name__}.step", "epoch", epoch, minimum=0, allow_none=True)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = lrs

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer and the schedule functions (rebuilt on load)."""
        return {k: v for k, v in vars(self).items()
                if k not in ("optimizer", "_schedules") and not callable(v)
                and not (isinstance(v, list) and any(callable(x) for x in v))}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (the optimizer's rates are set at the next ``step()``)."""
        self.__dict__.update(state_dict)
        self._build()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, last_lr={self._last_lr})"


def _check_optimizer(owner: str, optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        msg = (f"{owner}: expected a torch-like optimizer (optim.SGD, optim.Adam, ...), got "
               f"{type(optimizer).__name__}")
        raise TypeError(msg)


def _positive(owner: str, name: str, value: Any) -> float:
    return check_real(owner, name, value, low=0.0, low_open=True)


def _nonneg(owner: str, name: str, value: Any) -> float:
    return check_real(owner, name, value, low=0.0)


def _per_group(owner: str, name: str, value: Any, n: int,
               check: Callable[[str, str, Any], Any] | None = None) -> list[Any]:
    """One value per param group: a list of ``n``, or one value for all (as torch); each checked."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            msg = f"{owner}: expected {n} values of {name} (one per param group), got {len(value)}"
            raise ValueError(msg)
        values = list(value)
    else:
        values = [value] * n
    return values if check is None else [check(owner, name, v) for v in values]


def _momentum(owner: str, name: str, value: Any) -> float:
    return check_real(owner, name, value, low=0.0, high=1.0)


class ConstantLR(LRScheduler):
    """``lr * factor`` for the first ``total_iters`` steps, then ``lr``, as torch's ``ConstantLR``."""

    def __init__(self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        self.factor = check_real("ConstantLR", "factor", factor, low=0.0, high=1.0)
        self.total_iters = check_int("ConstantLR", "total_iters", total_iters, minimum=0)
        super().__init__(optimizer, last_epoch)

    def schedule(self, base_lr: float, index: int) -> Schedule:  # noqa: D102
        if self.total_iters <= 0:
            return schedules.constant(base_lr)
        return schedules.join([base_lr * self.factor, base_lr], [self.total_iters])


class LinearLR(LRScheduler):
    """A linear ramp of the factor on ``lr``, as torch's ``LinearLR`` (:func:`nptfunc.schedules.linear`)."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        owner = "LinearLR"
        self.start_factor = check_real(owner, "start_factor", start_factor, low=0.0, high=1.0,
                                       low_open=True)
        self.end_factor = check_real(owner, "end_factor", end_factor, low=0.0, high=1.0)
        self.total_iters = check_int(owner, "total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def schedule(self, base_lr: float, index: int) -> Schedule:  # noqa: D102
        return schedules.linear(base_lr, self.start_factor, self.end_factor, self.total_iters)


class ExponentialLR(LRScheduler):
    """``lr * gamma**t``, as torch's ``ExponentialLR`` (:func:`nptfunc.schedules.exponential`)."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = _positive("ExponentialLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def schedule(self, base_lr: float, index: int) -> Schedule:  # noqa: D102
        return schedules.exponential(base_lr, self.gamma)


class StepLR(LRScheduler):
    """``lr * gamma**(t // step_size)``, as torch's ``StepLR`` (:func:`nptfunc.schedules.step`)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.step_size = check_int("StepLR", "step_size", step_size)
        self.gamma = _positive("StepLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def schedule(self, base_lr: float, index: int) -> Schedule:  # noqa: D102
        return schedules.step(base_lr, self.step_size, self.gamma)


class MultiStepLR(LRScheduler):
    """Decay by ``gamma`` at each milestone, as torch's ``MultiStepLR`` (``schedules.multistep``)."""

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
            msg = f"MultiStepLR: expected milestones to be a list of ints >= 1, got {milestones!r}"
            raise TypeError(msg)
        self.milestones = [check_int("MultiStepLR", "each milestone", m) for m in milestones]
        self.gamma = _positive("MultiStepLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def schedule(self, base_lr: float, index: int) -> Schedule:  # noqa: D102
        return schedules.multistep(base_lr, self.milestones, self.gamma)


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing to ``eta_min`` over ``T_max`` steps, as torch's ``CosineAnnealingLR``.

    The closed form (:func:`nptfunc.schedules.cosine`) agrees with torch's
    recursion to rounding.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = check_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = _nonneg("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def schedule(self, base_lr: float, index: int) -> Schedule:  # noqa: D102
        return schedules.cosine(base_lr, self.T_max, self.eta_min)


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing with warm restarts (SGDR), as torch's ``CosineAnnealingWarmRestarts``.

    The closed form is :func:`nptfunc.schedules.cosine_warm_restarts`; ``step(epoch)``
    takes whole epochs only (torch also accepts fractions of one).
    """

    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.T_0 = check_int("CosineAnnealingWarmRestarts", "T_0", T_0)
        self.T_mult = check_int("CosineAnnealingWarmRestarts", "T_mult", T_mult)
        self.eta_min = _nonneg("CosineAnnealingWarmRestarts", "eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def schedule(self, base_lr: float, index: int) -> Schedule:  # noqa: D102
        return schedules.cosine_warm_restarts(base_lr, self.T_0, self.T_mult, self.eta_min)


class LambdaLR(LRScheduler):
    """``lr * lr_lambda(t)``, as torch's ``LambdaLR`` (one function, or one per group).

    The functions are not in :meth:`state_dict` (as torch's plain functions).
    """

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
                 last_epoch: int = -1) -> None:
        fns = _per_group("LambdaLR", "lr_lambda", lr_lambda, len(optimizer.param_groups))
        for f in fns:
            if not callable(f):
                msg = f"LambdaLR: expected lr_lambda to be a function of the step, got {f!r}"
                raise TypeError(msg)
        self.lr_lambdas = fns
        super().__init__(optimizer, last_epoch)

    def schedule(self, base_lr: float, index: int) -> Schedule:  # noqa: D102
        f = self.lr_lambdas[index]
        return lambda t: base_lr * float(f(t))


class TimeBasedLR(LRScheduler):
    """``lr / (1 + k * t)``, the reference project's ``TimeBasedLR`` (``schedules.time_based``)."""

    def __init__(self, optimizer: Optimizer, k: float, last_epoch: int = -1) -> None:
        self.k = _nonneg("TimeBasedLR", "k", k)
        super().__init__(optimizer, last_epoch)

    def schedule(self, base_lr: float, index: int) -> Schedule:  # noqa: D102
        return schedules.time_based(base_lr, self.k)


class ExpoLR(LRScheduler):
    """``lr / k**t``, the reference project's ``ExpoLR`` (:func:`nptfunc.schedules.inverse_exponential`)."""

    def __init__(self, optimizer: Optimizer, k: float, last_epoch: int = -1) -> None:
        self.k = _positive("ExpoLR", "k", k)
        super().__init__(optimizer, last_epoch)

    def schedule(self, base_lr: float, index: int) -> Schedule:  # noqa: D102
        return schedules.inverse_exponential(base_lr, self.k)


class OneCycleLR(LRScheduler):
    """The 1cycle policy, as torch's ``OneCycleLR`` (:func:`nptfunc.schedules.one_cycle`).

    With ``cycle_momentum`` (torch's default), the optimizer's ``momentum`` (or
    ``betas[0]``) cycles inversely to the rate between ``max_momentum`` and
    ``base_momentum``, on the same schedule shape. Steps past ``total_steps``
    hold the final rate (torch raises an error instead).
    """

    def __init__(self, optimizer: Optimizer, max_lr: float | list[float], total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float | list[float] = 0.85, max_momentum: float | list[float] = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        owner = "OneCycleLR"
        _check_optimizer(owner, optimizer)
        groups = optimizer.param_groups
        total_steps = check_int(owner, "total_steps", total_steps, minimum=2, allow_none=True)
        epochs = check_int(owner, "epochs", epochs, allow_none=True)
        steps_per_epoch = check_int(owner, "steps_per_epoch", steps_per_epoch, allow_none=True)
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                msg = f"{owner}: expected total_steps, or both epochs and steps_per_epoch"
                raise ValueError(msg)
            total_steps = check_int(owner, "epochs * steps_per_epoch", epochs * steps_per_epoch,
                                    minimum=2)
        self.total_steps = total_steps
        div_factor = _positive(owner, "div_factor", div_factor)
        final_div_factor = _positive(owner, "final_div_factor", final_div_factor)
        self.cycle = {"pct_start": check_real(owner, "pct_start", pct_start, low=0.0, high=1.0,
                                              low_open=True, high_open=True),
                      "anneal_strategy": check_choice(owner, "anneal_strategy", anneal_strategy,
                                                      ("cos", "linear")),
                      "div_factor": div_factor, "final_div_factor": final_div_factor,
                      "three_phase": check_bool(owner, "three_phase", three_phase)}
        schedules.one_cycle(1.0, total_steps, **self.cycle)  # a phase without steps: raise now
        max_lrs = _per_group(owner, "max_lr", max_lr, len(groups), _nonneg)
        if last_epoch == -1:
            for g, m in zip(groups, max_lrs, strict=True):  # torch: initial_lr = max_lr / div_factor
                g["initial_lr"] = m / div_factor
                g["max_lr"] = m
                g["min_lr"] = g["initial_lr"] / final_div_factor
        self.cycle_momentum = check_bool(owner, "cycle_momentum", cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                msg = f"{owner}: the optimizer must have momentum or betas for cycle_momentum=True"
                raise ValueError(msg)
            self.use_beta1 = "betas" in optimizer.defaults
            base_ms = _per_group(owner, "base_momentum", base_momentum, len(groups), _momentum)
            max_ms = _per_group(owner, "max_momentum", max_momentum, len(groups), _momentum)
            if last_epoch == -1:
                for g, lo, hi in zip(groups, base_ms, max_ms, strict=True):
                    g["base_momentum"], g["max_momentum"] = lo, hi
        super().__init__(optimizer, last_epoch)

    def schedule(self, base_lr: float, index: int) -> Schedule:  # noqa: D102
        max_lr = self.optimizer.param_groups[index]["max_lr"]
        return schedules.one_cycle(max_lr, self.total_steps, **self.cycle)

    def _position(self) -> Schedule:
        """How far up the cycle a step is: 0 at the start (and end), 1 at the peak.

        The one-cycle schedule from 0.5 to 1 and back, rescaled to [0, 1]
        (the shape does not depend on the rates).
        """
        rate = schedules.one_cycle(1.0, self.total_steps, **{**self.cycle, "div_factor": 2.0,
                                                              "final_div_factor": 1.0})
        return lambda t: 2.0 * rate(t) - 1.0

    def step(self, epoch: int | None = None) -> None:
        """Set the rates (and momenta) of the next step."""
        super().step(epoch)
        if not self.cycle_momentum:
            return
        position = self._position()(self.last_epoch)
        for g in self.optimizer.param_groups:
            m = g["max_momentum"] - (g["max_momentum"] - g["base_momentum"]) * position
            if self.use_beta1:
                g["betas"] = (m, *g["betas"][1:])
            else:
                g["momentum"] = m



class ReduceLROnPlateau(LRScheduler):
    """Divide the rates by ``1 / factor`` when a metric has stopped improving, as torch's.

    Unlike the other schedulers the rate is not a function of the step count but
    of the metrics given to :meth:`step`: after more than ``patience`` steps without
    an improvement of the best metric (by ``threshold``, relative or absolute), every
    group's rate becomes ``max(lr * factor, min_lr)`` (unless that changes it by no
    more than ``eps``), then ``cooldown`` steps pass before bad steps count again.
    It reads and writes ``param_groups[i]["lr"]``, so it composes with a rate set by hand.

    Args:
        optimizer: a torch-like optimizer.
        mode: ``"min"`` (the metric should decrease) or ``"max"``.
        factor: the factor on the rate at each reduction, in ``(0, 1)``.
        patience: how many steps without improvement are tolerated, an int ``>= 0``.
        threshold: the least improvement that counts, ``>= 0``.
        threshold_mode: ``"rel"`` (``best * (1 -+ threshold)``) or ``"abs"`` (``best -+ threshold``).
        cooldown: steps to wait after a reduction, an int ``>= 0``.
        min_lr: the smallest rate, ``>= 0``, or one per group.
        eps: the smallest change of a rate that is made, ``>= 0``.
    """

    has_last_epoch = False  # torch's constructor has no last_epoch

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float | list[float] = 0.0, eps: float = 1e-8) -> None:
        owner = "ReduceLROnPlateau"
        _check_optimizer(owner, optimizer)
        self.mode = check_choice(owner, "mode", mode, ("min", "max"))
        self.factor = check_real(owner, "factor", factor, low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = check_int(owner, "patience", patience, minimum=0)
        self.threshold = _nonneg(owner, "threshold", threshold)
        self.threshold_mode = check_choice(owner, "threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = check_int(owner, "cooldown", cooldown, minimum=0)
        self.min_lrs = _per_group(owner, "min_lr", min_lr, len(optimizer.param_groups), _nonneg)
        self.eps = _nonneg(owner, "eps", eps)
        self.optimizer = optimizer
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [float(g["lr"]) for g in optimizer.param_groups]

    def _build(self) -> None:
        pass  # no schedule: the rates follow the metrics

    def get_lr(self) -> list[float]:
        """The current rates of the groups."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def _is_better(self, a: float) -> bool:
        rel = self.threshold_mode == "rel"
        if self.mode == "min":
            return a < (self.best * (1.0 - self.threshold) if rel else self.best - self.threshold)
        return a > (self.best * (1.0 + self.threshold) if rel else self.best + self.threshold)

    def step(self, metrics: float, epoch: int | None = None) -> None:  # type: ignore[override]
        """Take the metric of the epoch just ended (a real number) and reduce the rates if due."""
        owner = "ReduceLROnPlateau.step"
        if isinstance(metrics, np.ndarray) and metrics.size == 1:
            metrics = metrics.reshape(()).item()
        if isinstance(metrics, (bool, np.bool_)) or not isinstance(metrics, numbers.Real):
            msg = f"{owner}: expected metrics to be a real number (the loss), got {type(metrics).__name__}"
            raise TypeError(msg)
        current = float(metrics)  # NaN counts as no improvement, as in torch
        epoch = check_int(owner, "epoch", epoch, minimum=0, allow_none=True)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
                old = float(group["lr"])
                new = max(old * self.factor, min_lr)
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self.get_lr()

    def __repr__(self) -> str:
        return f"ReduceLROnPlateau(mode={self.mode!r}, best={self.best}, last_lr={self._last_lr})"

"""Learning-rate schedules: pure functions of the step count.

A schedule is a callable ``schedule(step) -> lr`` (a Python ``float``), where
``step`` counts the updates already made: step 0 is the first update. Each
factory below checks its arguments when it is called and returns the schedule;
calling a schedule has no side effects, so it can be evaluated at any step, in
any order, any number of times.

Every optimizer of :mod:`nptfunc.optim` takes ``lr`` as a float or a schedule;
:func:`as_schedule` is the one place that turns the first into the second.

Where torch has a counterpart, ``schedule(t)`` equals the learning rate that
torch's optimizer uses for update ``t``, i.e. ``optimizer.param_groups[0]["lr"]``
read before the ``t``-th call of ``scheduler.step()``. torch computes most of
them recursively (``lr_t = f(lr_{t-1})``); the closed forms used here agree
with those to rounding.

Example:
    >>> from nptfunc import schedules
    >>> s = schedules.warmup(schedules.cosine(0.1, T_max=90), warmup_steps=10)
    >>> round(s(0), 6), round(s(10), 6), round(s(100), 6)
    (0.0, 0.1, 0.0)
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from nptfunc._types import ScalarOrSchedule, Schedule
from nptfunc._validate import check_bool, check_choice, check_int, check_real

__all__ = [
    "as_schedule",
    "constant",
    "cosine",
    "cosine_warm_restarts",
    "exponential",
    "inverse_exponential",
    "join",
    "linear",
    "linear_decay",
    "multistep",
    "one_cycle",
    "step",
    "time_based",
    "warmup",
]


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


@attrs.frozen(repr=False, eq=False)
class _Schedule:
    """A schedule with a readable repr, e.g. ``cosine(lr=0.1, T_max=90, eta_min=0)``."""

    fn: Callable[[int], float]
    description: str

    def __call__(self, step: int) -> float:
        return float(self.fn(step))

    def __repr__(self) -> str:
        return self.description


def _schedule(name: str, fn: Callable[[int], float], **args: Any) -> Schedule:
    text = ", ".join(f"{k}={_fmt(v)}" for k, v in args.items())
    return _Schedule(fn, f"{name}({text})")


def as_schedule(lr: ScalarOrSchedule, owner: str = "as_schedule", name: str = "lr") -> Schedule:
    """Normalise a learning rate given as a float or a schedule into a schedule.

    The one helper every optimizer uses for its ``lr``: a callable is returned as
    it is; a number must be ``>= 0`` and becomes :func:`constant`.

    Args:
        lr: a float ``>= 0`` or a callable ``step -> lr``.
        owner: the factory to name in error messages (``"adam"``).
        name: the argument to name in error messages.

    Raises:
        ValueError: a negative (or NaN) number.
        TypeError: neither a number nor a callable.
    """
    if callable(lr):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
        msg = f"{owner}: expected {name} to be a float >= 0 or a schedule, got {type(lr).__name__} {lr!r}"
        raise TypeError(msg)
    value = check_real(owner, name, lr, low=0.0)
    return _schedule("constant", lambda t: value, lr=value)


def _interpolate(start: float, end: float, pct: float) -> float:
    """``start + (end - start) * pct``: the one linear ramp (warm-ups, LinearLR, one-cycle)."""
    return (end - start) * pct + start


def _cosine_anneal(start: float, end: float, pct: float) -> float:
    """Half a cosine from ``start`` (pct 0) to ``end`` (pct 1)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


# ------------------------------------------------------------------- schedules
def constant(lr: float) -> Schedule:
    """The same learning rate at every step: ``lr_t = lr``.

    Equivalent to no torch scheduler at all (or ``LambdaLR(opt, lambda t: 1.0)``).

    Args:
        lr: the learning rate, ``>= 0``.
    """
    return as_schedule(lr, "constant")


def exponential(lr: float, gamma: float) -> Schedule:
    """Decay by ``gamma`` every step: ``lr_t = lr * gamma**t``.

    Equivalent to `torch.optim.lr_scheduler.ExponentialLR`.

    Args:
        lr: the initial learning rate, ``>= 0``.
        gamma: the factor per step, ``> 0``.
    """
    lr = check_real("exponential", "lr", lr, low=0.0)
    gamma = check_real("exponential", "gamma", gamma, low=0.0, low_open=True)
    return _schedule("exponential", lambda t: lr * gamma**t, lr=lr, gamma=gamma)


def step(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """Decay by ``gamma`` every ``step_size`` steps: ``lr_t = lr * gamma**(t // step_size)``.

    Equivalent to `torch.optim.lr_scheduler.StepLR`.

    Args:
        lr: the initial learning rate, ``>= 0``.
        step_size: the period of the decay, an int ``>= 1``.
        gamma: the factor per period, ``> 0``.
    """
    lr = check_real("step", "lr", lr, low=0.0)
    step_size = check_int("step", "step_size", step_size)
    gamma = check_real("step", "gamma", gamma, low=0.0, low_open=True)
    return _schedule("step", lambda t: lr * gamma ** (t // step_size),
                     lr=lr, step_size=step_size, gamma=gamma)


def multistep(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """Decay by ``gamma`` at each milestone: ``lr_t = lr * gamma**(number of milestones <= t)``.

    A milestone listed twice counts twice, as in torch.

    Equivalent to `torch.optim.lr_scheduler.MultiStepLR`.

    Args:
        lr: the initial learning rate, ``>= 0``.
        milestones: steps (ints ``>= 1``, in any order) from which the next factor applies.
        gamma: the factor per milestone, ``> 0``.
    """
    lr = check_real("multistep", "lr", lr, low=0.0)
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        msg = f"multistep: expected milestones to be a sequence of ints, got {milestones!r}"
        raise TypeError(msg)
    points = tuple(sorted(check_int("multistep", "each milestone", m) for m in milestones))
    gamma = check_real("multistep", "gamma", gamma, low=0.0, low_open=True)
    return _schedule("multistep", lambda t: lr * gamma ** bisect.bisect_right(points, t),
                     lr=lr, milestones=points, gamma=gamma)


def linear(lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
           total_iters: int = 5) -> Schedule:
    """Ramp the factor on ``lr`` linearly from ``start_factor`` to ``end_factor``, then hold.

    ``lr_t = lr * (start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters)``

    Equivalent to `torch.optim.lr_scheduler.LinearLR` (and checked as torch checks).

    Args:
        lr: the base learning rate, ``>= 0``.
        start_factor: the factor at step 0, in ``(0, 1]``.
        end_factor: the factor from step ``total_iters`` on, in ``[0, 1]``.
        total_iters: the length of the ramp, an int ``>= 1``.
    """
    lr = check_real("linear", "lr", lr, low=0.0)
    start_factor = check_real("linear", "start_factor", start_factor, low=0.0, high=1.0,
                               low_open=True)
    end_factor = check_real("linear", "end_factor", end_factor, low=0.0, high=1.0)
    total_iters = check_int("linear", "total_iters", total_iters)

    def schedule(t: int) -> float:
        return lr * _interpolate(start_factor, end_factor, min(t, total_iters) / total_iters)

    return _schedule("linear", schedule, lr=lr, start_factor=start_factor,
                     end_factor=end_factor, total_iters=total_iters)


def cosine(lr: float, T_max: int, eta_min: float = 0.0) -> Schedule:
    """Cosine annealing from ``lr`` to ``eta_min`` over ``T_max`` steps.

    ``lr_t = eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``

    This is torch's closed form, and like torch's scheduler it continues the
    cosine past ``T_max``: the rate climbs back to ``lr`` at ``2 * T_max`` and so
    on, periodically (it does not hold ``eta_min``; use :func:`join` with
    :func:`constant` for that).

    Equivalent to `torch.optim.lr_scheduler.CosineAnnealingLR`, whose recursive
    form agrees with this one to rounding at every step, before and past ``T_max``
    (within 1e-13 relative over 100 steps, also for ``T_max`` < 100).

    Args:
        lr: the initial learning rate, ``>= 0``.
        T_max: the number of steps from ``lr`` down to ``eta_min``, an int ``>= 1``.
        eta_min: the minimum learning rate, ``>= 0``.
    """
    lr = check_real("cosine", "lr", lr, low=0.0)
    T_max = check_int("cosine", "T_max", T_max)
    eta_min = check_real("cosine", "eta_min", eta_min, low=0.0)
    return _schedule("cosine", lambda t: eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t / T_max)) / 2,
                     lr=lr, T_max=T_max, eta_min=eta_min)


def cosine_warm_restarts(lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> Schedule:
    """Cosine annealing from ``lr`` to ``eta_min``, restarted at ``lr`` after each period.

    The first period has ``T_0`` steps, each next one ``T_mult`` times as many.
    Within a period of ``T_i`` steps, at its step ``T_cur``:
    ``lr_t = eta_min + (lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``. The period
    is found with integer arithmetic, so restarts fall on exactly the steps torch's do.

    Equivalent to `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` (stepped
    without an epoch argument).

    Args:
        lr: the learning rate at the start of each period, ``>= 0``.
        T_0: the length of the first period, an int ``>= 1``.
        T_mult: the growth of the period at each restart, an int ``>= 1``.
        eta_min: the minimum learning rate, ``>= 0``.
    """
    owner = "cosine_warm_restarts"
    lr = check_real(owner, "lr", lr, low=0.0)
    T_0 = check_int(owner, "T_0", T_0)
    T_mult = check_int(owner, "T_mult", T_mult)
    eta_min = check_real(owner, "eta_min", eta_min, low=0.0)

    def schedule(t: int) -> float:
        if T_mult == 1:
            t_cur, t_i = t % T_0, T_0
        else:  # periods T_0, T_0 T_mult, ...: at most log(t) of them
            t_cur, t_i = t, T_0
            while t_cur >= t_i:
                t_cur -= t_i
                t_i *= T_mult
        return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2

    return _schedule(owner, schedule, lr=lr, T_0=T_0, T_mult=T_mult, eta_min=eta_min)


def one_cycle(max_lr: float, total_steps: int, pct_start: float = 0.3,
              anneal_strategy: str = "cos", div_factor: float = 25.0,
              final_div_factor: float = 1e4, three_phase: bool = False) -> Schedule:
    """The 1cycle policy: up from ``max_lr / div_factor`` to ``max_lr``, then down far below.

    With ``initial = max_lr / div_factor`` and ``min = initial / final_div_factor``,
    two phases (default) anneal ``initial -> max_lr`` over steps
    ``[0, pct_start * total_steps - 1]`` and ``max_lr -> min`` until step
    ``total_steps - 1``; ``three_phase=True`` anneals ``initial -> max_lr -> initial``
    symmetrically and then ``initial -> min``. ``anneal_strategy`` is ``"cos"``
    (half cosines) or ``"linear"``. Steps from ``total_steps`` on hold the final
    value (torch raises an error there instead).

    Equivalent to `torch.optim.lr_scheduler.OneCycleLR` with ``total_steps`` given.
    torch's momentum cycling (``cycle_momentum``) is not part of a learning-rate
    schedule and is left out: the optimizer's momentum or ``betas[0]`` stays fixed.

    Args:
        max_lr: the peak learning rate, ``>= 0``.
        total_steps: the length of the cycle, an int ``>= 2``.
        pct_start: the fraction of the cycle spent increasing, in ``(0, 1)``.
        anneal_strategy: ``"cos"`` or ``"linear"``.
        div_factor: ``max_lr / initial``, ``> 0``.
        final_div_factor: ``initial / min``, ``> 0``.
        three_phase: use torch's three-phase variant.
    """
    owner = "one_cycle"
    max_lr = check_real(owner, "max_lr", max_lr, low=0.0)
    total_steps = check_int(owner, "total_steps", total_steps, minimum=2)
    pct_start = check_real(owner, "pct_start", pct_start, low=0.0, high=1.0, low_open=True,
                            high_open=True)
    anneal_strategy = check_choice(owner, "anneal_strategy", anneal_strategy, ("cos", "linear"))
    three_phase = check_bool(owner, "three_phase", three_phase)
    div_factor = check_real(owner, "div_factor", div_factor, low=0.0, low_open=True)
    final_div_factor = check_real(owner, "final_div_factor", final_div_factor, low=0.0,
                                   low_open=True)
    initial = max_lr / div_factor
    final = initial / final_div_factor
    up = float(pct_start * total_steps) - 1
    if three_phase:
        phases = [(up, initial, max_lr), (float(2 * pct_start * total_steps) - 2, max_lr, initial),
                  (total_steps - 1, initial, final)]
    else:
        phases = [(up, initial, max_lr), (total_steps - 1, max_lr, final)]
    starts = [0.0] + [end for end, _, _ in phases[:-1]]
    if any(end <= start for (end, _, _), start in zip(phases, starts, strict=True)):
        msg = (f"{owner}: pct_start={pct_start:g} with total_steps={total_steps} leaves a phase "
               f"of the cycle without steps (phase ends at {[p[0] for p in phases]}); "
               f"use more steps or a pct_start nearer 0.5")
        raise ValueError(msg)
    anneal = _cosine_anneal if anneal_strategy == "cos" else _interpolate

    def schedule(t: int) -> float:
        t = min(t, total_steps - 1)
        for (end, lo, hi), start in zip(phases, starts, strict=True):
            if t <= end:
                return anneal(lo, hi, (t - start) / (end - start))
        return final  # not reached: t <= total_steps - 1 == the last phase's end

    return _schedule(owner, schedule, max_lr=max_lr, total_steps=total_steps,
                     pct_start=pct_start, anneal_strategy=anneal_strategy,
                     div_factor=div_factor, final_div_factor=final_div_factor,
                     three_phase=three_phase)


def join(schedules: Sequence[ScalarOrSchedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules`` one after another, each restarted from its own step 0.

    Schedule ``i`` runs for steps ``boundaries[i-1] <= t < boundaries[i]`` and is
    called with ``t - boundaries[i-1]``.

    Equivalent to `torch.optim.lr_scheduler.SequentialLR` (``milestones=boundaries``).

    Args:
        schedules: schedules or floats (a float is :func:`constant`), at least one.
        boundaries: strictly increasing ints ``>= 1``, one fewer than ``schedules``.
    """
    for name, value in (("schedules", schedules), ("boundaries", boundaries)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            msg = f"join: expected {name} to be a list, got {type(value).__name__} {value!r}"
            raise TypeError(msg)
    parts = tuple(as_schedule(s, "join", f"schedules[{i}]") for i, s in enumerate(schedules))
    points = tuple(check_int("join", "each boundary", b) for b in boundaries)
    if not parts or len(points) != len(parts) - 1:
        msg = (f"join: expected one boundary fewer than schedules, got {len(parts)} schedules "
               f"and {len(points)} boundaries")
        raise ValueError(msg)
    if any(b <= a for a, b in itertools.pairwise(points)):
        msg = f"join: expected strictly increasing boundaries, got {points}"
        raise ValueError(msg)
    offsets = (0, *points)

    def schedule(t: int) -> float:
        i = bisect.bisect_right(points, t)
        return parts[i](t - offsets[i])

    return _schedule("join", schedule, schedules=list(parts), boundaries=points)


def warmup(schedule: ScalarOrSchedule, warmup_steps: int, start_factor: float = 0.0) -> Schedule:
    """A linear warm-up to ``schedule(0)``, then ``schedule`` from its step 0.

    For ``t < warmup_steps``:
    ``lr_t = schedule(0) * (start_factor + (1 - start_factor) * t / warmup_steps)``;
    after that ``lr_t = schedule(t - warmup_steps)``.

    Equivalent to torch's ``SequentialLR([LinearLR(opt, start_factor, 1.0, warmup_steps),
    other], milestones=[warmup_steps])`` (torch needs ``start_factor > 0``).

    Args:
        schedule: the schedule (or float) to warm up to.
        warmup_steps: the length of the warm-up, an int ``>= 1``.
        start_factor: the fraction of ``schedule(0)`` used at step 0, in ``[0, 1]``.
    """
    after = as_schedule(schedule, "warmup", "schedule")
    warmup_steps = check_int("warmup", "warmup_steps", warmup_steps)
    start_factor = check_real("warmup", "start_factor", start_factor, low=0.0, high=1.0)

    def ramp(t: int) -> float:
        return after(0) * _interpolate(start_factor, 1.0, t / warmup_steps)

    joined = join([ramp, after], [warmup_steps])
    return _schedule("warmup", joined, schedule=after, warmup_steps=warmup_steps,
                     start_factor=start_factor)


def time_based(lr: float, k: float) -> Schedule:
    """Time-based decay: ``lr_t = lr / (1 + k * t)``.

    The reference project's ``TimeBasedLR``; torch has no named counterpart
    (``LambdaLR(opt, lambda t: 1 / (1 + k * t))``).

    Args:
        lr: the initial learning rate, ``>= 0``.
        k: the decay rate, ``>= 0``.
    """
    lr = check_real("time_based", "lr", lr, low=0.0)
    k = check_real("time_based", "k", k, low=0.0)
    return _schedule("time_based", lambda t: lr / (1 + k * t), lr=lr, k=k)


def inverse_exponential(lr: float, k: float) -> Schedule:
    """Exponential decay by a divisor: ``lr_t = lr / k**t``.

    The reference project's ``ExpoLR``; the same as ``exponential(lr, 1 / k)`` up to rounding.

    Args:
        lr: the initial learning rate, ``>= 0``.
        k: the divisor per step, ``> 0`` (``k > 1`` decays).
    """
    lr = check_real("inverse_exponential", "lr", lr, low=0.0)
    k = check_real("inverse_exponential", "k", k, low=0.0, low_open=True)
    return _schedule("inverse_exponential", lambda t: lr / k**t, lr=lr, k=k)


def linear_decay(lr: float, k: float) -> Schedule:
    """Linear decay to zero: ``lr_t = max(lr - k * t, 0)``.

    The reference project's ``LinearLR`` (not torch's :func:`linear`, which ramps a factor).

    Args:
        lr: the initial learning rate, ``>= 0``.
        k: the decrease per step, ``>= 0``.
    """
    lr = check_real("linear_decay", "lr", lr, low=0.0)
    k = check_real("linear_decay", "k", k, low=0.0)
    return _schedule("linear_decay", lambda t: max(lr - k * t, 0.0), lr=lr, k=k)

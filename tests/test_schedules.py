"""Every schedule against its torch lr_scheduler counterpart, step by step for 100 steps."""

import math
import warnings

import numpy as np
import pytest
import torch

from nptfunc import schedules as S

N_STEPS = 100
BASE = 0.1


def torch_lrs(make_scheduler, base_lr=BASE, n=N_STEPS):
    """The lr torch's optimizer uses for updates 0..n-1 (read before scheduler.step())."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr, momentum=0.9)
    with warnings.catch_warnings():
        # SequentialLR calls step(0) on its children, which torch itself deprecates.
        warnings.filterwarnings("ignore", message=".*epoch parameter.*", category=UserWarning)
        sched = make_scheduler(opt)
        lrs = []
        for _ in range(n):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return np.array(lrs)


def ours(schedule, n=N_STEPS):
    values = [schedule(t) for t in range(n)]
    assert all(type(v) is float for v in values)
    return np.array(values)


L = torch.optim.lr_scheduler

CASES = [
    ("exponential", S.exponential(BASE, 0.95), lambda o: L.ExponentialLR(o, 0.95)),
    ("step", S.step(BASE, 7), lambda o: L.StepLR(o, 7)),
    ("step_gamma", S.step(BASE, 10, gamma=0.5), lambda o: L.StepLR(o, 10, gamma=0.5)),
    ("multistep", S.multistep(BASE, [60, 10, 30, 30], gamma=0.5),
     lambda o: L.MultiStepLR(o, [60, 10, 30, 30], gamma=0.5)),
    ("linear_default", S.linear(BASE), lambda o: L.LinearLR(o)),
    ("linear_down", S.linear(BASE, 1.0, 0.05, total_iters=40),
     lambda o: L.LinearLR(o, 1.0, 0.05, total_iters=40)),
    ("cosine_100", S.cosine(BASE, 100), lambda o: L.CosineAnnealingLR(o, 100)),
    ("cosine_eta_min", S.cosine(BASE, 120, eta_min=1e-3),
     lambda o: L.CosineAnnealingLR(o, 120, eta_min=1e-3)),
    # T_max < 100: both continue the cosine periodically past T_max
    ("cosine_periodic", S.cosine(BASE, 30, eta_min=1e-3),
     lambda o: L.CosineAnnealingLR(o, 30, eta_min=1e-3)),
    ("cosine_short", S.cosine(BASE, 7), lambda o: L.CosineAnnealingLR(o, 7)),
    ("one_cycle", S.one_cycle(1.0, N_STEPS), lambda o: L.OneCycleLR(o, 1.0, total_steps=N_STEPS)),
    ("one_cycle_linear", S.one_cycle(0.5, N_STEPS, pct_start=0.25, anneal_strategy="linear",
                                     div_factor=10.0, final_div_factor=100.0),
     lambda o: L.OneCycleLR(o, 0.5, total_steps=N_STEPS, pct_start=0.25,
                            anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0)),
    ("one_cycle_three_phase", S.one_cycle(0.3, N_STEPS, pct_start=0.4, three_phase=True),
     lambda o: L.OneCycleLR(o, 0.3, total_steps=N_STEPS, pct_start=0.4, three_phase=True)),
    ("one_cycle_odd", S.one_cycle(0.3, 101, pct_start=0.33),
     lambda o: L.OneCycleLR(o, 0.3, total_steps=101, pct_start=0.33)),
    ("join", S.join([S.linear(BASE, 0.1, 1.0, 10), S.exponential(BASE, 0.9)], [10]),
     lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, 10), L.ExponentialLR(o, 0.9)], [10])),
    ("join_three", S.join([S.constant(BASE), S.step(BASE, 5, 0.5), S.cosine(BASE, 20)], [15, 50]),
     lambda o: L.SequentialLR(o, [L.LambdaLR(o, lambda t: 1.0), L.StepLR(o, 5, 0.5),
                                  L.CosineAnnealingLR(o, 20)], [15, 50])),
    ("warmup", S.warmup(S.cosine(BASE, 80), 20, start_factor=0.1),
     lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, 20), L.CosineAnnealingLR(o, 80)], [20])),
    ("constant", S.constant(BASE), lambda o: L.LambdaLR(o, lambda t: 1.0)),
    ("time_based", S.time_based(BASE, 0.05), lambda o: L.LambdaLR(o, lambda t: 1 / (1 + 0.05 * t))),
    ("inverse_exponential", S.inverse_exponential(BASE, 1.05),
     lambda o: L.ExponentialLR(o, 1 / 1.05)),
    ("linear_decay", S.linear_decay(BASE, 0.0015),
     lambda o: L.LambdaLR(o, lambda t: max(BASE - 0.0015 * t, 0.0) / BASE)),
]


@pytest.mark.parametrize(("name", "schedule", "make"), CASES, ids=[c[0] for c in CASES])
def test_matches_torch(name, schedule, make):
    expected = torch_lrs(make)
    np.testing.assert_allclose(ours(schedule), expected, rtol=1e-12, atol=1e-16)


def test_cases_change_over_time():
    """A comparison with torch that cannot fail is no test: the schedules must move."""
    for name, schedule, _ in CASES:
        if name != "constant":
            assert len(set(ours(schedule))) > 2, name


def test_closed_forms():
    assert S.exponential(2.0, 0.5)(3) == 0.25
    assert S.step(1.0, 3, gamma=0.5)(5) == 0.5
    assert S.step(1.0, 3, gamma=0.5)(6) == 0.25
    assert S.multistep(1.0, [2, 4], gamma=0.1)(1) == 1.0
    assert math.isclose(S.multistep(1.0, [2, 4], gamma=0.1)(4), 0.01)
    assert S.time_based(1.0, 0.5)(2) == 0.5
    assert S.inverse_exponential(1.0, 2.0)(3) == 0.125
    assert S.linear_decay(1.0, 0.25)(2) == 0.5
    assert S.linear_decay(1.0, 0.25)(10) == 0.0
    assert math.isclose(S.cosine(1.0, 10)(5), 0.5)
    assert math.isclose(S.cosine(1.0, 10)(20), 1.0)  # periodic past T_max, as torch
    assert S.linear(1.0, 0.5, 1.0, total_iters=4)(2) == 0.75
    assert S.linear(1.0, 0.5, 1.0, total_iters=4)(100) == 1.0


def test_warmup_from_zero_and_float():
    s = S.warmup(0.2, 4)
    assert [round(s(t), 12) for t in range(6)] == [0.0, 0.05, 0.1, 0.15, 0.2, 0.2]


def test_one_cycle_holds_final_value_after_total_steps():
    s = S.one_cycle(1.0, 50)
    final = 1.0 / 25 / 1e4
    assert math.isclose(s(49), final)
    assert s(50) == s(49) == s(1000)


def test_schedules_are_pure():
    s = S.warmup(S.one_cycle(0.5, 40), 10)
    forward = [s(t) for t in range(60)]
    backward = [s(t) for t in reversed(range(60))][::-1]
    assert forward == backward


def test_as_schedule():
    f = S.cosine(1.0, 10)
    assert S.as_schedule(f) is f
    g = lambda t: 0.5  # noqa: E731
    assert S.as_schedule(g) is g
    c = S.as_schedule(0.3)
    assert c(0) == c(1000) == 0.3
    assert S.as_schedule(1)(5) == 1.0
    with pytest.raises(ValueError, match=r"adam: expected lr >= 0, got -0\.1"):
        S.as_schedule(-0.1, "adam")
    with pytest.raises(ValueError, match="expected lr >= 0, got nan"):
        S.as_schedule(float("nan"))
    with pytest.raises(TypeError, match="expected lr to be a float >= 0 or a schedule, got str"):
        S.as_schedule("0.1")


def test_repr():
    assert repr(S.cosine(0.1, 10)) == "cosine(lr=0.1, T_max=10, eta_min=0)"
    assert repr(S.multistep(1.0, [5, 2])) == "multistep(lr=1, milestones=(2, 5), gamma=0.1)"


BAD = [
    (lambda: S.constant(-1.0), ValueError, r"constant: expected lr >= 0, got -1\.0"),
    (lambda: S.exponential(0.1, 0.0), ValueError, r"exponential: expected gamma > 0, got 0\.0"),
    (lambda: S.exponential(-0.1, 0.9), ValueError, "exponential: expected lr >= 0"),
    (lambda: S.step(0.1, 0), ValueError, "step: expected step_size to be an int >= 1, got 0"),
    (lambda: S.step(0.1, 2.5), TypeError, "step: expected step_size to be an int >= 1, got float"),
    (lambda: S.multistep(0.1, [3, 0]), ValueError, "multistep: expected each milestone"),
    (lambda: S.multistep(0.1, 5), TypeError, "multistep: expected milestones to be a sequence"),
    (lambda: S.linear(0.1, start_factor=0.0), ValueError,
     r"linear: expected start_factor in \(0, 1\], got 0\.0"),
    (lambda: S.linear(0.1, end_factor=1.5), ValueError, r"linear: expected end_factor in \[0, 1\]"),
    (lambda: S.linear(0.1, total_iters=0), ValueError, "linear: expected total_iters"),
    (lambda: S.cosine(0.1, 0), ValueError, "cosine: expected T_max to be an int >= 1"),
    (lambda: S.cosine(0.1, 10, eta_min=-1.0), ValueError, "cosine: expected eta_min >= 0"),
    (lambda: S.one_cycle(0.1, 1), ValueError, "one_cycle: expected total_steps to be an int >= 2"),
    (lambda: S.one_cycle(0.1, 100, pct_start=1.0), ValueError,
     r"one_cycle: expected pct_start in \(0, 1\)"),
    (lambda: S.one_cycle(0.1, 100, anneal_strategy="exp"), ValueError,
     "one_cycle: expected anneal_strategy to be 'cos' or 'linear', got 'exp'"),
    (lambda: S.one_cycle(0.1, 100, div_factor=0.0), ValueError, "one_cycle: expected div_factor > 0"),
    (lambda: S.one_cycle(0.1, 3, pct_start=0.3), ValueError, "leaves a phase of the cycle without steps"),
    (lambda: S.one_cycle(0.1, 10, pct_start=0.6, three_phase=True), ValueError,
     "leaves a phase of the cycle without steps"),
    (lambda: S.join([S.constant(0.1)], [5]), ValueError,
     "join: expected one boundary fewer than schedules, got 1 schedules and 1 boundaries"),
    (lambda: S.join([0.1, 0.2, 0.3], [5, 5]), ValueError, "join: expected strictly increasing"),
    (lambda: S.join([0.1, -0.2], [5]), ValueError, r"join: expected schedules\[1\] >= 0"),
    (lambda: S.warmup(0.1, 0), ValueError, "warmup: expected warmup_steps to be an int >= 1"),
    (lambda: S.warmup(0.1, 5, start_factor=2.0), ValueError, r"warmup: expected start_factor in \[0, 1\]"),
    (lambda: S.time_based(0.1, -1.0), ValueError, "time_based: expected k >= 0"),
    (lambda: S.inverse_exponential(0.1, 0.0), ValueError, "inverse_exponential: expected k > 0"),
    (lambda: S.linear_decay(0.1, -0.1), ValueError, "linear_decay: expected k >= 0"),
    (lambda: S.exponential(0.1, True), TypeError, "exponential: expected gamma > 0, got bool"),
]


@pytest.mark.parametrize(("make", "error", "match"), BAD, ids=[b[2][:40] for b in BAD])
def test_invalid_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()

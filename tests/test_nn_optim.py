"""The torch-like optimizer classes and lr_scheduler against torch.optim, and their state dicts."""

import numpy as np
import pytest
import torch

from nptfunc import io, nn, optim, random
from nptfunc.testing import assert_close, leaves_equal

F64 = np.float64
SHAPES = [(3, 4), (3,), (2, 2, 2)]


def _params(seed=0):
    return [nn.Parameter(random.normal(random.key(seed + i), s, dtype=F64)) for i, s in enumerate(SHAPES)]


def _grads(step):
    """A fixed, varying sequence of gradients (the same for both libraries)."""
    return [random.normal(random.fold_in(random.key(100 + i), step), s, dtype=F64)
            for i, s in enumerate(SHAPES)]


def _torch_params(params):
    return [torch.tensor(p.data.copy(), requires_grad=True) for p in params]


def _run_both(ours, theirs, params, tparams, steps, after_step=None):
    for t in range(steps):
        for p, tp, g in zip(params, tparams, _grads(t), strict=True):
            p.grad = g
            tp.grad = torch.tensor(g)
        ours.step()
        theirs.step()
        if after_step is not None:
            after_step(t)
        for i, (p, tp) in enumerate(zip(params, tparams, strict=True)):
            assert_close(p.data, tp, name=f"param {i} after step {t}")


CASES = [
    (optim.SGD, torch.optim.SGD, {"lr": 0.1}),
    (optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "maximize": True}),
    (optim.RMSprop, torch.optim.RMSprop, {"lr": 0.01}),
    (optim.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True,
                                          "weight_decay": 0.1}),
    (optim.Adagrad, torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    (optim.Adam, torch.optim.Adam, {"lr": 0.01}),
    (optim.Adam, torch.optim.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    (optim.Adam, torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    (optim.AdamW, torch.optim.AdamW, {"lr": 0.01}),
    (optim.AdamW, torch.optim.AdamW, {"lr": 0.01, "betas": (0.8, 0.99), "amsgrad": True}),
    (optim.RAdam, torch.optim.RAdam, {"lr": 0.01}),
    (optim.RAdam, torch.optim.RAdam, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    (optim.NAdam, torch.optim.NAdam, {"lr": 0.01, "weight_decay": 0.01}),
    (optim.Adamax, torch.optim.Adamax, {"lr": 0.01}),
    (optim.Adamax, torch.optim.Adamax, {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.1, "maximize": True}),
    (optim.Adadelta, torch.optim.Adadelta, {}),
    (optim.Adadelta, torch.optim.Adadelta, {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.1}),
]


@pytest.fixture
def torch_float64_scalars():
    """torch keeps NAdam's mu_product in its default dtype: make that float64 as ours."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize(("ours_cls", "torch_cls", "kwargs"), CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_optimizers_match_torch(ours_cls, torch_cls, kwargs, torch_float64_scalars):
    params = _params()
    tparams = _torch_params(params)
    _run_both(ours_cls(params, **kwargs), torch_cls(tparams, **kwargs), params, tparams, 30)


def test_reference_momentum_and_rmsprop_alias():
    params = _params()
    tparams = _torch_params(params)
    _run_both(optim.Momentum(params, lr=0.05, alpha=0.9), torch.optim.SGD(tparams, lr=0.05, momentum=0.9),
              params, tparams, 20)
    assert optim.RMSProp is optim.RMSprop
    opt = optim.RMSProp(_params(), 0.01, 0.9)  # the reference project's positional call
    assert opt.param_groups[0]["alpha"] == 0.9


def test_facade_step_equals_the_functional_optimizer():
    params = _params()
    start = [p.data for p in params]
    opt = optim.Adam(params, lr=0.01, weight_decay=0.1)
    f = optim.adam(lr=0.01, weight_decay=0.1)
    states = [f.init(a) for a in start]
    for t in range(5):
        for p, g in zip(params, _grads(t), strict=True):
            p.grad = g
        opt.step()
        for i, g in enumerate(_grads(t)):
            states[i], new = f.update(states[i], g)
            assert np.array_equal(params[i].data, new)
    assert all(leaves_equal(opt.state[p].transform_state, s.transform_state)
               for p, s in zip(params, states, strict=True))
    assert start[0] is not params[0].data  # .data replaced, not written into
    assert np.array_equal(start[0], random.normal(random.key(0), SHAPES[0], dtype=F64))


def test_param_groups_and_lr_changes_are_read_at_each_step():
    params = _params()
    tparams = _torch_params(params)
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.1, "betas": (0.5, 0.9)}]
    tgroups = [{"params": tparams[:2]}, {"params": tparams[2:], "lr": 0.1, "betas": (0.5, 0.9)}]
    ours, theirs = optim.Adam(groups, lr=0.01), torch.optim.Adam(tgroups, lr=0.01)
    assert ours.param_groups[1]["betas"] == (0.5, 0.9) and ours.param_groups[0]["betas"] == (0.9, 0.999)

    def change(t):
        if t == 4:
            for g in (*ours.param_groups, *theirs.param_groups):
                g["lr"] *= 0.5
        if t == 7:
            ours.param_groups[0]["betas"] = theirs.param_groups[0]["betas"] = (0.7, 0.95)

    _run_both(ours, theirs, params, tparams, 12, change)


def test_parameters_without_gradient_are_skipped():
    params = _params()
    tparams = _torch_params(params)
    ours, theirs = optim.Adam(params, lr=0.1), torch.optim.Adam(tparams, lr=0.1)
    for t in range(6):
        for i, (p, tp, g) in enumerate(zip(params, tparams, _grads(t), strict=True)):
            skip = i == 1 and t < 3
            p.grad = None if skip else g
            tp.grad = None if skip else torch.tensor(g)
        ours.step()
        theirs.step()
        assert (params[1] in ours.state) == (t >= 3)
    for p, tp in zip(params, tparams, strict=True):
        assert_close(p.data, tp)
    params[0].requires_grad_(False)
    before = params[0].data
    params[0].grad = np.ones(SHAPES[0])
    ours.step()
    assert params[0].data is before


def test_sgd_momentum_switched_on_later():
    params = _params()
    tparams = _torch_params(params)
    ours, theirs = optim.SGD(params, lr=0.1), torch.optim.SGD(tparams, lr=0.1)

    def switch(t):
        if t == 2:
            ours.param_groups[0]["momentum"] = theirs.param_groups[0]["momentum"] = 0.9

    _run_both(ours, theirs, params, tparams, 6, switch)


def test_named_parameters_zero_grad_closure_and_repr():
    model = nn.Sequential(nn.Linear(2, 3, key=0))
    opt = optim.SGD(model.named_parameters(), lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["0.weight", "0.bias"]
    for p in model.parameters():
        p.grad = np.ones(p.shape, np.float32)
    opt.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert opt.step(lambda: 3.5) == 3.5
    text = repr(optim.Adam(model.parameters()))
    assert text.startswith("Adam (\nParameter Group 0\n    amsgrad: False\n    betas: (0.9, 0.999)\n")
    assert text.endswith("    weight_decay: 0\n)")


def test_optimizer_errors():
    with pytest.raises(ValueError, match="Adam: got an empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match=r"can only optimize nn\.Parameter objects.*got ndarray at position 0"):
        optim.SGD([np.zeros(2)], lr=0.1)
    p = nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="appear more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="appear more than once"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(TypeError, match="expected lr to be a float"):
        optim.SGD([p], lr="fast")
    with pytest.raises(ValueError, match=r"Adam: expected betas\[0\]"):
        optim.Adam([p], betas=(1.5, 0.9))
    with pytest.raises(TypeError, match="expected a dict with a 'params' entry"):
        optim.SGD([p], lr=0.1).add_param_group([p])


def test_state_dict_resume_is_exact(tmp_path):
    def make(seed=0):
        params = _params(seed)
        opt = optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.05}], lr=0.01,
                         amsgrad=True)
        return params, opt

    def train(params, opt, steps):
        for t in steps:
            for p, g in zip(params, _grads(t), strict=True):
                p.grad = g
            opt.step()

    ref_params, ref_opt = make()
    train(ref_params, ref_opt, range(10))

    params, opt = make()
    train(params, opt, range(5))
    io.save({"model": [p.data for p in params], "optimizer": opt.state_dict()},
                    tmp_path / "ckpt.npz")
    sd = opt.state_dict()
    assert set(sd["state"]) == {0, 1, 2} and sd["param_groups"][1]["params"] == [1, 2]
    assert sd["state"][0]["step"] == 5

    params2, opt2 = make(seed=50)
    ckpt = io.load(tmp_path / "ckpt.npz")
    for p, a in zip(params2, ckpt["model"], strict=True):
        p.data = a
    opt2.load_state_dict(ckpt["optimizer"])
    assert opt2.param_groups[1]["lr"] == 0.05
    train(params2, opt2, range(5, 10))
    for p, q in zip(params2, ref_params, strict=True):
        assert np.array_equal(p.data, q.data)


def test_load_state_dict_errors():
    params = _params()
    opt = optim.Adam(params)
    for p, g in zip(params, _grads(0), strict=True):
        p.grad = g
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="the saved state has 1 parameter groups, this optimizer has 2"):
        optim.Adam([{"params": params[:1]}, {"params": params[1:]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="parameter group 0 has 2 parameters, the saved one 3"):
        optim.Adam(params[:2]).load_state_dict(sd)
    with pytest.raises(ValueError, match="saved state of parameter 0 does not fit"):
        optim.SGD(params, lr=0.1, momentum=0.9).load_state_dict(sd)
    other = [nn.Parameter(np.zeros((5,))), *params[1:]]
    with pytest.raises(ValueError, match="saved state of parameter 0 does not fit"):
        optim.Adam(other).load_state_dict(sd)
    with pytest.raises(ValueError, match="expected a dict with 'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


# ------------------------------------------------------------------- lr_scheduler
L, TL = optim.lr_scheduler, torch.optim.lr_scheduler

SCHEDULERS = [
    ("ConstantLR", {}),
    ("ConstantLR", {"factor": 0.5, "total_iters": 30}),
    ("LinearLR", {}),
    ("LinearLR", {"start_factor": 0.1, "end_factor": 0.5, "total_iters": 40}),
    ("ExponentialLR", {"gamma": 0.97}),
    ("StepLR", {"step_size": 7, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [10, 30, 30, 75], "gamma": 0.3}),
    ("CosineAnnealingLR", {"T_max": 40, "eta_min": 0.001}),
    ("CosineAnnealingLR", {"T_max": 150}),
    ("LambdaLR", {"lr_lambda": lambda t: 0.95**t + 0.1 * (t % 3)}),
    ("CosineAnnealingWarmRestarts", {"T_0": 10}),
    ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2, "eta_min": 0.01}),
    ("CosineAnnealingWarmRestarts", {"T_0": 7, "T_mult": 3}),
]


def _two_groups():
    params = _params()
    return ([{"params": params[:1]}, {"params": params[1:], "lr": 0.3}],
            [{"params": [torch.zeros(1, requires_grad=True)]},
             {"params": [torch.zeros(1, requires_grad=True)], "lr": 0.3}])


@pytest.mark.parametrize(("name", "kwargs"), SCHEDULERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULERS)])
def test_schedulers_match_torch_for_120_steps(name, kwargs):
    groups, tgroups = _two_groups()
    ours_opt, theirs_opt = optim.SGD(groups, lr=0.1, momentum=0.9), torch.optim.SGD(tgroups, lr=0.1, momentum=0.9)
    ours, theirs = getattr(L, name)(ours_opt, **kwargs), getattr(TL, name)(theirs_opt, **kwargs)
    for t in range(120):
        assert_close(np.array(ours.get_last_lr()), np.array(theirs.get_last_lr()), rtol=1e-12,
                     atol=1e-15, name=f"lr at step {t}")
        assert [g["lr"] for g in ours_opt.param_groups] == ours.get_last_lr()
        assert ours_opt.param_groups[0]["initial_lr"] == 0.1
        ours_opt.step()
        theirs_opt.step()
        ours.step()
        theirs.step()


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize(("opt_name", "anneal"), [("SGD", "cos"), ("Adam", "linear")])
def test_one_cycle_matches_torch_with_momentum_cycling(opt_name, anneal, three_phase):
    groups, tgroups = _two_groups()
    kw = {"lr": 0.1, "momentum": 0.9} if opt_name == "SGD" else {"lr": 0.1}
    ours_opt, theirs_opt = getattr(optim, opt_name)(groups, **kw), getattr(torch.optim, opt_name)(tgroups, **kw)
    args = {"max_lr": [0.5, 1.0], "total_steps": 120, "anneal_strategy": anneal, "three_phase": three_phase}
    ours, theirs = L.OneCycleLR(ours_opt, **args), TL.OneCycleLR(theirs_opt, **args)
    key = "momentum" if opt_name == "SGD" else "betas"
    for t in range(119):
        assert_close(np.array(ours.get_last_lr()), np.array(theirs.get_last_lr()), rtol=1e-12, atol=1e-15,
                     name=f"lr at step {t}")
        for g, tg in zip(ours_opt.param_groups, theirs_opt.param_groups, strict=True):
            assert_close(np.array(g[key]), np.array(tg[key]), rtol=1e-12, name=f"{key} at step {t}")
        ours_opt.step()
        theirs_opt.step()
        ours.step()
        theirs.step()


def test_one_cycle_from_epochs_and_errors():
    opt = optim.Adam(_params(), lr=0.1)
    sched = L.OneCycleLR(opt, max_lr=0.2, epochs=3, steps_per_epoch=10, cycle_momentum=False)
    assert sched.total_steps == 30 and opt.param_groups[0]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="expected total_steps, or both epochs and steps_per_epoch"):
        L.OneCycleLR(opt, max_lr=0.2)
    with pytest.raises(ValueError, match="must have momentum or betas"):
        L.OneCycleLR(optim.Momentum(_params(), lr=0.1), max_lr=0.2, total_steps=10)


def test_reference_schedulers():
    opt = optim.SGD(_params(), lr=0.2)
    time_based, lrs = L.TimeBasedLR(opt, k=0.5), []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        time_based.step()
    assert_close(np.array(lrs), 0.2 / (1 + 0.5 * np.arange(5)), rtol=1e-15)
    opt = optim.SGD(_params(), lr=0.2)
    expo, lrs = L.ExpoLR(opt, k=2.0), []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        expo.step()
    assert_close(np.array(lrs), 0.2 / 2.0 ** np.arange(5), rtol=1e-15)


def test_scheduler_state_dict_resume_and_errors():
    opt = optim.SGD(_params(), lr=0.1)
    sched = L.StepLR(opt, step_size=3, gamma=0.5)
    for _ in range(4):
        sched.step()
    sd = sched.state_dict()
    assert sd["last_epoch"] == 4 and "optimizer" not in sd
    opt2 = optim.SGD(_params(), lr=0.1)
    sched2 = L.StepLR(opt2, step_size=3, gamma=0.5)
    sched2.load_state_dict(sd)
    sched.step()
    sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr() == [0.05]
    lam = L.LambdaLR(optim.SGD(_params(), lr=0.1), lambda t: 1.0)
    assert "lr_lambdas" not in lam.state_dict()
    with pytest.raises(TypeError, match="expected a torch-like optimizer"):
        L.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), step_size=2)
    with pytest.raises(KeyError, match="'initial_lr' is not specified in param_groups"):
        L.StepLR(optim.SGD(_params(), lr=0.1), step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="expected 1 values of lr_lambda"):
        L.LambdaLR(optim.SGD(_params(), lr=0.1), [lambda t: 1.0, lambda t: 1.0])
    with pytest.raises(ValueError, match=r"ConstantLR: expected factor in \[0, 1\]"):
        L.ConstantLR(optim.SGD(_params(), lr=0.1), factor=2.0)
    with pytest.raises(ValueError, match="StepLR: expected step_size"):
        L.StepLR(optim.SGD(_params(), lr=0.1), step_size=0)


def test_optimizer_names_are_distinct():
    """optim.Optimizer is the torch-like base (as torch's); the functional class has its own name."""
    assert issubclass(optim.Adam, optim.Optimizer)
    assert isinstance(optim.adam(), optim.FunctionalOptimizer)
    assert not isinstance(optim.adam(), optim.Optimizer)
    assert optim.Optimizer is not optim.FunctionalOptimizer


@pytest.mark.parametrize("kwargs", [
    {},
    {"mode": "max", "factor": 0.5, "patience": 2, "threshold": 0.05, "cooldown": 2},
    {"patience": 0, "threshold_mode": "abs", "threshold": 0.01, "min_lr": [0.02, 0.001]},
    {"factor": 0.5, "patience": 1, "eps": 0.04},
])
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    groups, tgroups = _two_groups()
    ours_opt, theirs_opt = optim.SGD(groups, lr=0.1), torch.optim.SGD(tgroups, lr=0.1)
    ours, theirs = L.ReduceLROnPlateau(ours_opt, **kwargs), TL.ReduceLROnPlateau(theirs_opt, **kwargs)
    # a metric that improves, stalls, wiggles within the thresholds, then improves again
    metrics = [1.0, 0.9, 0.9, 0.95, 0.899, 0.9, 0.9, 0.9, 0.5, 0.51, 0.52, 0.5, 0.49, 0.7, float("nan"),
               0.7, 0.7, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    lrs = []
    for t, m in enumerate(metrics):
        ours.step(np.float64(m) if t % 2 else m)
        theirs.step(m)
        assert ours.get_last_lr() == theirs.get_last_lr(), f"step {t}"
        assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in theirs_opt.param_groups]
        assert (ours.best, ours.num_bad_epochs) == (theirs.best, theirs.num_bad_epochs) or np.isnan(m)
        lrs.append(ours.get_last_lr()[0])
    assert len(set(lrs)) > 1  # the rate was reduced at least once: the comparison can fail
    with pytest.raises(TypeError, match="ReduceLROnPlateau.step: expected metrics to be a real number"):
        ours.step("0.1")


def test_reduce_lr_on_plateau_state_dict():
    opt = optim.SGD(_params(), lr=0.1)
    sched = L.ReduceLROnPlateau(opt, patience=0)
    sched.step(1.0)
    sched.step(2.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    sd = sched.state_dict()
    opt2 = optim.SGD(_params(), lr=0.01)
    sched2 = L.ReduceLROnPlateau(opt2, patience=0)
    sched2.load_state_dict(sd)
    assert sched2.best == 1.0 and sched2.last_epoch == 2
    sched2.step(3.0)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.001)


def test_gradients_coming_and_going_match_torch(torch_float64_scalars):
    """Parameters stepped together, apart and together again keep torch's per-parameter steps."""
    params = _params()
    tparams = _torch_params(params)
    ours, theirs = optim.Adam(params, lr=0.05, amsgrad=True), torch.optim.Adam(tparams, lr=0.05, amsgrad=True)
    skip = {2: {1}, 3: {1, 2}, 5: {0}, 7: {0, 1, 2}}
    for t in range(10):
        for i, (p, tp, g) in enumerate(zip(params, tparams, _grads(t), strict=True)):
            off = i in skip.get(t, ())
            p.grad = None if off else g
            tp.grad = None if off else torch.tensor(g)
        ours.step()
        theirs.step()
        for i, (p, tp) in enumerate(zip(params, tparams, strict=True)):
            assert_close(p.data, tp, name=f"param {i} after step {t}")
            assert ours.state[p].step == int(theirs.state[tp]["step"])
            assert_close(ours.state[p].transform_state[0].exp_avg, theirs.state[tp]["exp_avg"])


def test_one_functional_optimizer_per_group_and_one_buffer(monkeypatch):
    built = []

    def counting(**kw):
        built.append(kw)
        return optim.adam(**kw)

    monkeypatch.setattr(optim.Adam, "factory", staticmethod(counting))
    params = _params()
    opt = optim.Adam(params, lr=0.1)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    n = len(built)
    for t in range(6):
        for p, g in zip(params, _grads(t), strict=True):
            p.grad = g
        opt.step()
        sched.step()
    assert len(built) == n + 2  # built once (checked, then with the group's lr), not per param or step
    # the new values are views into one buffer (the fused update)
    assert params[0].data.base is not None and params[0].data.base is params[2].data.base
    opt.param_groups[0]["betas"] = (0.5, 0.9)  # another hyperparameter: rebuilt once
    opt.step()
    opt.step()
    assert len(built) == n + 4
    assert opt.state[params[0]].step == 8

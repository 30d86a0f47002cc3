"""Every argument of every public optimizer, transform, schedule and scheduler, with bad values.

Each row names a callable, the owner its errors must name, the arguments that make
it valid, and a kind per argument; each kind lists bad values with the error they
must raise. The error names the owner and the argument (``Adam: expected eps ...``).
Then: gradients are checked before anything changes, and foreign state dicts are refused.
"""

import math
import re

import numpy as np
import pytest

from nptfunc import nn, optim
from nptfunc import schedules as S
from nptfunc.testing import leaves_equal

L = optim.lr_scheduler
NAN, INF = math.nan, math.inf

# kind -> [(bad value, error)]
NUMBER_TYPES = [(True, TypeError), ("0.1", TypeError), (None, TypeError), (np.array([0.1]), TypeError)]
REAL = [*NUMBER_TYPES, (NAN, ValueError), (INF, ValueError)]
NONNEG = [*REAL, (-1.0, ValueError), (-INF, ValueError)]
POS = [*NONNEG, (0.0, ValueError)]
UNIT = [*REAL, (-0.1, ValueError), (1.5, ValueError)]  # [0, 1]
UNIT_OPEN = [*UNIT, (1.0, ValueError)]  # [0, 1)
FACTOR = [*UNIT, (0.0, ValueError)]  # (0, 1]
OPEN_UNIT = [*UNIT_OPEN, (0.0, ValueError)]  # (0, 1)
BOOL = [(1, TypeError), (0, TypeError), ("yes", TypeError), (None, TypeError)]
BOOL_OR_NONE = [(1, TypeError), ("yes", TypeError)]
INT_TYPES = [(2.5, TypeError), (True, TypeError), ("3", TypeError), (np.float64(3.0), TypeError)]
INT_POS = [*INT_TYPES, (None, TypeError), (0, ValueError), (-1, ValueError)]
INT_POS_OR_NONE = [*INT_TYPES, (0, ValueError)]
INT_NONNEG = [*INT_TYPES, (None, TypeError), (-1, ValueError)]
INT_2 = [*INT_POS, (1, ValueError)]
LAST_EPOCH = [*INT_TYPES, (None, TypeError), (-2, ValueError)]
LR = [*NONNEG]  # a float >= 0 (or a schedule, for the functional ones)
CHOICE = [("exp", ValueError), (1, TypeError), (None, TypeError)]

ADAM_LIKE = {"lr": LR, "eps": NONNEG, "weight_decay": NONNEG, "maximize": BOOL}
SWITCHES = {"foreach": BOOL_OR_NONE, "differentiable": BOOL}

FUNCTIONAL = [
    (optim.sgd, "sgd", {"lr": 0.1}, {"lr": LR, "momentum": NONNEG, "dampening": UNIT,
                                     "weight_decay": NONNEG, "nesterov": BOOL, "maximize": BOOL}),
    (optim.momentum, "momentum", {"lr": 0.1}, {"lr": LR, "beta": UNIT_OPEN}),
    (optim.rmsprop, "rmsprop", {}, {"lr": LR, "alpha": UNIT_OPEN, "eps": NONNEG, "weight_decay": NONNEG,
                                    "momentum": NONNEG, "centered": BOOL, "maximize": BOOL}),
    (optim.adagrad, "adagrad", {}, {"lr": LR, "lr_decay": NONNEG, "weight_decay": NONNEG,
                                    "initial_accumulator_value": NONNEG, "eps": NONNEG, "maximize": BOOL}),
    (optim.adam, "adam", {}, {**ADAM_LIKE, "amsgrad": BOOL, "decoupled_weight_decay": BOOL}),
    (optim.adamw, "adamw", {}, {**ADAM_LIKE, "amsgrad": BOOL}),
    (optim.radam, "radam", {}, {**ADAM_LIKE, "decoupled_weight_decay": BOOL}),
    (optim.nadam, "nadam", {}, {**ADAM_LIKE, "momentum_decay": NONNEG, "decoupled_weight_decay": BOOL}),
    (optim.adamax, "adamax", {}, ADAM_LIKE),
    (optim.adadelta, "adadelta", {}, {"lr": LR, "rho": UNIT, "eps": NONNEG, "weight_decay": NONNEG,
                                      "maximize": BOOL}),
    # transforms
    (optim.scale, "scale", {"factor": 1.0}, {"factor": REAL}),
    (optim.scale_by_learning_rate, "scale_by_learning_rate", {"lr": 0.1}, {"lr": LR, "flip_sign": BOOL}),
    (optim.add_decayed_weights, "add_decayed_weights", {"weight_decay": 0.1}, {"weight_decay": NONNEG}),
    (optim.decoupled_weight_decay, "decoupled_weight_decay", {"weight_decay": 0.1, "lr": 0.1},
     {"weight_decay": NONNEG, "lr": LR}),
    (optim.clip_grad_value, "clip_grad_value", {"clip_value": 1.0}, {"clip_value": NONNEG}),
    (optim.clip_grad_norm, "clip_grad_norm", {"max_norm": 1.0},
     {"max_norm": NONNEG, "norm_type": [*NUMBER_TYPES, (NAN, ValueError), (0.0, ValueError),
                                        (-INF, ValueError)]}),
    (optim.trace, "trace", {"momentum": 0.9}, {"momentum": NONNEG, "dampening": UNIT, "nesterov": BOOL}),
    (optim.scale_by_rms, "scale_by_rms", {}, {"alpha": UNIT_OPEN, "eps": NONNEG, "centered": BOOL}),
    (optim.scale_by_adagrad, "scale_by_adagrad", {}, {"initial_accumulator_value": NONNEG, "eps": NONNEG}),
    (optim.scale_by_adam, "scale_by_adam", {}, {"b1": UNIT_OPEN, "b2": UNIT_OPEN, "eps": NONNEG,
                                                "amsgrad": BOOL}),
    (optim.scale_by_radam, "scale_by_radam", {}, {"b1": UNIT_OPEN, "b2": UNIT_OPEN, "eps": NONNEG}),
    (optim.scale_by_nadam, "scale_by_nadam", {}, {"b1": UNIT_OPEN, "b2": UNIT_OPEN, "eps": NONNEG,
                                                  "momentum_decay": NONNEG}),
    (optim.scale_by_adamax, "scale_by_adamax", {}, {"b1": UNIT_OPEN, "b2": UNIT_OPEN, "eps": NONNEG}),
    (optim.scale_by_adadelta, "scale_by_adadelta", {}, {"rho": UNIT, "eps": NONNEG}),
    # schedules
    (S.constant, "constant", {"lr": 0.1}, {"lr": LR}),
    (S.exponential, "exponential", {"lr": 0.1, "gamma": 0.9}, {"lr": LR, "gamma": POS}),
    (S.step, "step", {"lr": 0.1, "step_size": 2}, {"lr": LR, "step_size": INT_POS, "gamma": POS}),
    (S.multistep, "multistep", {"lr": 0.1, "milestones": [2]}, {"lr": LR, "gamma": POS}),
    (S.linear, "linear", {"lr": 0.1}, {"lr": LR, "start_factor": FACTOR, "end_factor": UNIT,
                                       "total_iters": INT_POS}),
    (S.cosine, "cosine", {"lr": 0.1, "T_max": 10}, {"lr": LR, "T_max": INT_POS, "eta_min": NONNEG}),
    (S.cosine_warm_restarts, "cosine_warm_restarts", {"lr": 0.1, "T_0": 10},
     {"lr": LR, "T_0": INT_POS, "T_mult": INT_POS, "eta_min": NONNEG}),
    (S.one_cycle, "one_cycle", {"max_lr": 0.1, "total_steps": 100},
     {"max_lr": LR, "total_steps": INT_2, "pct_start": OPEN_UNIT, "anneal_strategy": CHOICE,
      "div_factor": POS, "final_div_factor": POS, "three_phase": BOOL}),
    (S.warmup, "warmup", {"schedule": 0.1, "warmup_steps": 5}, {"warmup_steps": INT_POS, "start_factor": UNIT}),
    (S.time_based, "time_based", {"lr": 0.1, "k": 0.1}, {"lr": LR, "k": NONNEG}),
    (S.inverse_exponential, "inverse_exponential", {"lr": 0.1, "k": 2.0}, {"lr": LR, "k": POS}),
    (S.linear_decay, "linear_decay", {"lr": 0.1, "k": 0.1}, {"lr": LR, "k": NONNEG}),
]


def _params():
    return [nn.Parameter(np.zeros(3)), nn.Parameter(np.zeros((2, 2)))]


def _torch_like(cls):
    return lambda **kw: cls(_params(), **kw)


TORCH_ADAM_LIKE = {**ADAM_LIKE, **SWITCHES, "capturable": BOOL}
TORCH_LIKE = [
    (optim.SGD, {"lr": 0.1}, {"lr": LR, "momentum": NONNEG, "dampening": UNIT, "weight_decay": NONNEG,
                              "nesterov": BOOL, "maximize": BOOL, **SWITCHES, "fused": BOOL_OR_NONE}),
    (optim.Momentum, {}, {"lr": LR, "alpha": UNIT_OPEN}),
    (optim.RMSprop, {}, {"lr": LR, "alpha": UNIT_OPEN, "eps": NONNEG, "weight_decay": NONNEG,
                         "momentum": NONNEG, "centered": BOOL, "maximize": BOOL, "capturable": BOOL,
                         **SWITCHES}),
    (optim.Adagrad, {}, {"lr": LR, "lr_decay": NONNEG, "weight_decay": NONNEG,
                         "initial_accumulator_value": NONNEG, "eps": NONNEG, "maximize": BOOL,
                         **SWITCHES, "fused": BOOL_OR_NONE}),
    (optim.Adam, {}, {**TORCH_ADAM_LIKE, "amsgrad": BOOL, "decoupled_weight_decay": BOOL,
                      "fused": BOOL_OR_NONE}),
    (optim.AdamW, {}, {**TORCH_ADAM_LIKE, "amsgrad": BOOL, "fused": BOOL_OR_NONE}),
    (optim.RAdam, {}, {**TORCH_ADAM_LIKE, "decoupled_weight_decay": BOOL}),
    (optim.NAdam, {}, {**TORCH_ADAM_LIKE, "momentum_decay": NONNEG, "decoupled_weight_decay": BOOL}),
    (optim.Adamax, {}, TORCH_ADAM_LIKE),
    (optim.Adadelta, {}, {"lr": LR, "rho": UNIT, "eps": NONNEG, "weight_decay": NONNEG, "maximize": BOOL,
                          "capturable": BOOL, **SWITCHES}),
]


def _scheduler(cls, **opt_kw):
    def make(**kw):
        return cls(optim.SGD(_params(), lr=0.1, momentum=0.9, **opt_kw), **kw)
    return make


SCHEDULERS = [
    (L.ConstantLR, {}, {"factor": UNIT, "total_iters": INT_NONNEG}),
    (L.LinearLR, {}, {"start_factor": FACTOR, "end_factor": UNIT, "total_iters": INT_POS}),
    (L.ExponentialLR, {"gamma": 0.9}, {"gamma": POS}),
    (L.StepLR, {"step_size": 2}, {"step_size": INT_POS, "gamma": POS}),
    (L.MultiStepLR, {"milestones": [2]}, {"gamma": POS}),
    (L.CosineAnnealingLR, {"T_max": 10}, {"T_max": INT_POS, "eta_min": NONNEG}),
    (L.CosineAnnealingWarmRestarts, {"T_0": 10}, {"T_0": INT_POS, "T_mult": INT_POS, "eta_min": NONNEG}),
    (L.TimeBasedLR, {"k": 0.1}, {"k": NONNEG}),
    (L.ExpoLR, {"k": 2.0}, {"k": POS}),
    (L.LambdaLR, {"lr_lambda": lambda t: 1.0}, {}),
    (L.OneCycleLR, {"max_lr": 0.1, "total_steps": 100},
     {"max_lr": NONNEG, "total_steps": [*INT_TYPES, (1, ValueError)], "pct_start": OPEN_UNIT,
      "anneal_strategy": CHOICE, "cycle_momentum": BOOL, "base_momentum": UNIT, "max_momentum": UNIT,
      "div_factor": POS, "final_div_factor": POS, "three_phase": BOOL}),
    (L.ReduceLROnPlateau, {}, {"mode": [("low", ValueError), (None, TypeError)],
                              "factor": [*REAL, (0.0, ValueError), (1.0, ValueError)],
                              "patience": INT_NONNEG, "threshold": NONNEG,
                              "threshold_mode": [("relative", ValueError), (1, TypeError)],
                              "cooldown": INT_NONNEG, "min_lr": NONNEG, "eps": NONNEG}),
]

ROWS = [(make, owner, base, arg, values)
        for make, owner, base, args in FUNCTIONAL for arg, values in args.items()]
ROWS += [(_torch_like(cls), cls.__name__, base, arg, values)
         for cls, base, args in TORCH_LIKE for arg, values in args.items()]
ROWS += [(_scheduler(cls), cls.__name__, base, arg, values)
         for cls, base, args in SCHEDULERS
         for arg, values in {**args, "last_epoch": LAST_EPOCH}.items()
         if getattr(cls, "has_last_epoch", True) or arg != "last_epoch"]


@pytest.mark.parametrize(("make", "owner", "base", "arg", "values"), ROWS, ids=[f"{r[1]}-{r[3]}" for r in ROWS])
def test_bad_argument_names_owner_and_argument(make, owner, base, arg, values):
    make(**base)  # the row is valid without the bad value
    for bad, error in values:
        with pytest.raises(error, match=rf"^{re.escape(owner)}: expected {re.escape(arg)}\b"):
            make(**{**base, arg: bad})


def test_every_public_optimizer_schedule_and_scheduler_has_a_row():
    covered = {owner for _, owner, *_ in ROWS}
    public_optim = {name for name in optim.__all__ if callable(getattr(optim, name))
                    and name[0].islower() and name not in ("chain", "lr_scheduler")}
    public_classes = {name for name in optim.__all__ if isinstance(getattr(optim, name), type)
                      and issubclass(getattr(optim, name), optim.Optimizer)
                      and getattr(optim, name) is not optim.Optimizer and name != "RMSProp"}
    public_schedules = {name for name in S.__all__ if name not in ("as_schedule", "join")}
    public_schedulers = {name for name in L.__all__ if name != "LRScheduler"}
    missing = (public_optim | public_classes | public_schedules | public_schedulers) - covered
    assert not missing


@pytest.mark.parametrize(("make", "arg"), [
    (lambda b: optim.adam(betas=b), "adam: expected betas"),
    (lambda b: optim.Adam(_params(), betas=b), "Adam: expected betas"),
    (lambda b: optim.Adamax(_params(), betas=b), "Adamax: expected betas"),
])
def test_betas(make, arg):
    for bad, error, where in [((0.9, 1.0), ValueError, r"\[1\]"), ((True, 0.9), TypeError, r"\[0\]"),
                              (("0.9", 0.9), TypeError, r"\[0\]"), ((NAN, 0.9), ValueError, r"\[0\]"),
                              (0.9, TypeError, ""), ((0.9,), TypeError, ""), ("ab", TypeError, "")]:
        with pytest.raises(error, match=f"^{arg}{where}"):
            make(bad)


def test_schedulers_ask_for_sequences_and_functions():
    opt = optim.SGD(_params(), lr=0.1)
    with pytest.raises(TypeError, match="MultiStepLR: expected milestones"):
        L.MultiStepLR(opt, milestones=3)
    with pytest.raises(ValueError, match="MultiStepLR: expected each milestone"):
        L.MultiStepLR(opt, milestones=[0])
    with pytest.raises(TypeError, match="MultiStepLR: expected each milestone"):
        L.MultiStepLR(opt, milestones=[2.5])
    with pytest.raises(TypeError, match="LambdaLR: expected lr_lambda"):
        L.LambdaLR(opt, lr_lambda=0.5)
    with pytest.raises(TypeError, match=r"OneCycleLR: expected epochs to be an int >= 1 or None, got float 2\.5"):
        L.OneCycleLR(opt, max_lr=0.1, epochs=2.5, steps_per_epoch=10)
    with pytest.raises(TypeError, match="OneCycleLR: expected steps_per_epoch"):
        L.OneCycleLR(opt, max_lr=0.1, epochs=2, steps_per_epoch="10")
    with pytest.raises(TypeError, match="ConstantLR: expected total_iters to be an int >= 0, got NoneType"):
        L.ConstantLR(opt, total_iters=None)
    with pytest.raises(TypeError, match="StepLR.step: expected epoch"):
        L.StepLR(opt, step_size=2).step(1.5)


def test_facade_methods_check_their_arguments():
    opt = optim.SGD(_params(), lr=0.1)
    with pytest.raises(TypeError, match="SGD.zero_grad: expected set_to_none to be a bool"):
        opt.zero_grad(set_to_none=0)
    with pytest.raises(TypeError, match="SGD.step: expected closure"):
        opt.step(closure=3)
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="SGD: expected lr >= 0"):
        opt.step()


# ------------------------------------------------------------------ gradients
def test_functional_update_checks_every_gradient_first():
    opt = optim.adam()
    state = opt.init({"a": np.zeros(3), "b": np.zeros(2)})
    with pytest.raises(TypeError, match=r"adam.update: expected a real gradient for the param at b "
                                        r"\(dtype float64\), got dtype complex128: complex"):
        opt.update(state, {"a": np.ones(3), "b": np.ones(2) + 1j})
    with pytest.raises(TypeError, match="adam.update: expected a real gradient for the param at a"):
        opt.update(state, {"a": np.ones(3, bool), "b": np.ones(2)})
    with pytest.raises(TypeError, match="adam.update: expected a real gradient"):
        opt.update(state, {"a": np.array(["x", "y", "z"]), "b": np.ones(2)})
    with pytest.raises(ValueError, match=r"adam.update: expected the gradient at b to have its param's "
                                         r"shape \(2,\), got \(3,\)"):
        opt.update(state, {"a": np.ones(3), "b": np.ones(3)})
    # integer gradients are numbers: cast as torch casts them
    _, params = opt.update(state, {"a": np.ones(3, int), "b": np.ones(2, np.float32)})
    assert params["a"].dtype == np.float64


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
@pytest.mark.parametrize(("bad", "error", "match"), [
    (np.ones(5), ValueError, r"expected the gradient at param_groups\[1\]\['params'\]\[0\] to have its "
                             r"param's shape \(2, 2\), got \(5,\)"),
    (np.ones((2, 2)) * 1j, TypeError, r"expected a real gradient for the param at "
                                      r"param_groups\[1\]\['params'\]\[0\] \(dtype float64\), got dtype "
                                      r"complex128"),
])
def test_facade_step_is_all_or_nothing(cls, bad, error, match):
    params = [*_params(), nn.Parameter(np.zeros(4))]
    extra = {"momentum": 0.9} if cls is optim.SGD else {}
    opt = cls([{"params": params[:1]}, {"params": params[1:]}], lr=0.1, **extra)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    before = [p.data for p in params]
    states = {p: opt.state[p] for p in params}
    params[0].grad = np.full(3, 2.0)
    params[1].grad = bad
    with pytest.raises(error, match=f"{cls.__name__}.step: {match}"):
        opt.step()
    assert all(p.data is b for p, b in zip(params, before, strict=True))
    assert all(opt.state[p].step == states[p].step == 1 for p in params)
    assert all(leaves_equal(opt.state[p], states[p]) for p in params)


# --------------------------------------------------------------- state dicts
def test_load_state_dict_refuses_torch_state_dict():
    torch = pytest.importorskip("torch")
    topt = torch.optim.Adam([torch.zeros(3, requires_grad=True)], lr=0.1)
    sd = topt.state_dict()  # the state of a step, as torch keeps it (its step() is slow to import)
    sd["state"][0] = {"step": torch.tensor(1.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}
    opt = optim.Adam([nn.Parameter(np.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: expected the saved state of parameter 0 "
                                         r"to have the keys 'step' and 'transform_state' .*got keys "
                                         r"\['exp_avg', 'exp_avg_sq', 'step'\]"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.1 and not opt.state


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda sd: sd.update(state=[1]), "expected 'state' to be a dict"),
    (lambda sd: sd.update(param_groups={"params": [0]}), "expected 'param_groups' to be a list of dicts"),
    (lambda sd: sd["state"][0].update(step=-1), "expected the saved step of parameter 0 to be an int >= 0"),
    (lambda sd: sd["state"][0].update(step=1.5), "expected the saved step of parameter 0"),
    (lambda sd: sd["param_groups"][0].update(lr="x"), "Adam: expected lr to be a float"),
    (lambda sd: sd["param_groups"][0].update(betas=(2.0, 0.9)), r"Adam: expected betas\[0\]"),
    (lambda sd: sd.update(extra=1), r"expected a dict with 'state' and 'param_groups' .*got a dict with "
                                    r"keys \['extra', 'param_groups', 'state'\]"),
    (lambda sd: sd["state"].update({7: sd["state"][0]}), "names parameter 7, which no saved group has"),
])
def test_load_state_dict_checks_everything_before_assigning(mutate, match):
    params = [nn.Parameter(np.zeros(3))]
    opt = optim.Adam(params, lr=0.1)
    params[0].grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    sd["state"] = {k: dict(v) for k, v in sd["state"].items()}
    sd["param_groups"] = [dict(g) for g in sd["param_groups"]]
    mutate(sd)
    before = opt.state[params[0]]
    with pytest.raises((ValueError, TypeError), match=match):
        opt.load_state_dict(sd)
    assert leaves_equal(opt.state[params[0]], before) and opt.param_groups[0]["lr"] == 0.1


def test_building_blocks_check_their_arguments():
    with pytest.raises(TypeError, match="GradientTransformation: expected init to be a function, got int 1"):
        optim.GradientTransformation(1, lambda u, s, p, t: (u, s))
    with pytest.raises(TypeError, match="GradientTransformation: expected elementwise to be a bool"):
        optim.GradientTransformation(print, print, elementwise=1)
    with pytest.raises(TypeError, match="FunctionalOptimizer: expected transform to be a GradientTransformation"):
        optim.FunctionalOptimizer("adam")
    with pytest.raises(TypeError, match="FunctionalOptimizer: expected learning_rate to be a schedule"):
        optim.FunctionalOptimizer(optim.scale(1.0), learning_rate=0.1)
    with pytest.raises(TypeError, match="join: expected schedules to be a list, got int 5"):
        S.join(5, [1])
    with pytest.raises(TypeError, match="join: expected boundaries to be a list"):
        S.join([0.1, 0.2], 3)
    with pytest.raises(TypeError, match=r"join: expected schedules\[1\] to be a float >= 0 or a schedule"):
        S.join([0.1, "a"], [1])

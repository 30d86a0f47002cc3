"""Every optimizer and option against torch.optim: 50 steps on a small regression model."""

import contextlib

import attrs
import numpy as np
import pytest
import torch

from nptfunc import optim, random
from nptfunc import schedules as S
from nptfunc.layers.base import param_field
from nptfunc.testing import assert_close, leaves_equal
from nptfunc.tree import tree_flatten, tree_leaves, tree_map, tree_unflatten

N_STEPS = 50
LR_SCHED = torch.optim.lr_scheduler


# ------------------------------------------------------------------ the model
def make_data(dtype, seed=0, scale=1.0):
    kx, kw, kn = random.split(random.key(seed), 3)
    x = random.normal(kx, (16, 4), dtype=np.float64) * scale
    w_true = random.normal(kw, (3, 4), dtype=np.float64)
    y = x @ w_true.T + 0.1 * random.normal(kn, (16, 3), dtype=np.float64)
    return x.astype(dtype), y.astype(dtype)


def init_params(dtype, seed=1):
    kw, kb = random.split(random.key(seed))
    return {"weight": (0.5 * random.normal(kw, (3, 4), dtype=np.float64)).astype(dtype),
            "bias": (0.5 * random.normal(kb, (3,), dtype=np.float64)).astype(dtype)}


def grads_of(weight, bias, x, y):
    """Gradient of 0.5 * mean_n ||x_n W^T + b - y_n||^2, the same function for both sides."""
    r = x @ weight.T + bias - y
    return r.T @ x / len(x), r.mean(axis=0)


@contextlib.contextmanager
def torch_float64_scalars():
    """torch keeps NAdam's mu_product (and step counts) in its default dtype: make it float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def run_torch(torch_cls, kwargs, dtype, scheduler=None, n=N_STEPS, clip=None, data_scale=1.0):
    x, y = make_data(dtype, scale=data_scale)
    p0 = init_params(dtype)
    with torch_float64_scalars():
        w = torch.tensor(p0["weight"], requires_grad=True)
        b = torch.tensor(p0["bias"], requires_grad=True)
        opt = torch_cls([w, b], **kwargs)
        sched = scheduler(opt) if scheduler is not None else None
        for _ in range(n):
            gw, gb = grads_of(w.detach().numpy(), b.detach().numpy(), x, y)
            w.grad, b.grad = torch.tensor(gw), torch.tensor(gb)
            if clip is not None:
                clip([w, b])
            opt.step()
            if sched is not None:
                sched.step()
    return {"weight": w.detach().numpy().copy(), "bias": b.detach().numpy().copy()}


def run_ours(opt, dtype, n=N_STEPS, data_scale=1.0, params=None):
    x, y = make_data(dtype, scale=data_scale)
    state = opt.init(init_params(dtype) if params is None else params)
    for _ in range(n):
        gw, gb = grads_of(state.params["weight"], state.params["bias"], x, y)
        state, _ = opt.update(state, {"weight": gw, "bias": gb})
    return state


def assert_params_close(ours, theirs, rtol=None):
    for k in ("weight", "bias"):
        assert ours[k].dtype == theirs[k].dtype, k
        assert_close(ours[k], theirs[k], rtol=rtol, name=k)


# --------------------------------------------------------- every option vs torch
T = torch.optim
CASES = [
    ("sgd", T.SGD, {"lr": 0.1}),
    ("sgd", T.SGD, {"lr": 0.1, "momentum": 0.9}),
    ("sgd", T.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.5}),
    ("sgd", T.SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("sgd", T.SGD, {"lr": 0.1, "weight_decay": 0.1}),
    ("sgd", T.SGD, {"lr": 0.02, "maximize": True}),
    ("sgd", T.SGD, {"lr": 0.02, "momentum": 0.5, "nesterov": True, "weight_decay": 0.05,
                    "maximize": True}),
    ("rmsprop", T.RMSprop, {"lr": 0.01}),
    ("rmsprop", T.RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}),
    ("rmsprop", T.RMSprop, {"lr": 0.01, "centered": True}),
    ("rmsprop", T.RMSprop, {"lr": 0.005, "momentum": 0.9}),
    ("rmsprop", T.RMSprop, {"lr": 0.01, "weight_decay": 0.1}),
    ("rmsprop", T.RMSprop, {"lr": 0.01, "maximize": True}),
    ("rmsprop", T.RMSprop, {"lr": 0.005, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("adagrad", T.Adagrad, {"lr": 0.1}),
    ("adagrad", T.Adagrad, {"lr": 0.1, "lr_decay": 0.05}),
    ("adagrad", T.Adagrad, {"lr": 0.1, "weight_decay": 0.1}),
    ("adagrad", T.Adagrad, {"lr": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-6}),
    ("adagrad", T.Adagrad, {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.05, "maximize": True}),
    ("adam", T.Adam, {"lr": 0.01}),
    ("adam", T.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("adam", T.Adam, {"lr": 0.01, "amsgrad": True}),
    ("adam", T.Adam, {"lr": 0.01, "weight_decay": 0.1}),
    ("adam", T.Adam, {"lr": 0.01, "maximize": True}),
    ("adam", T.Adam, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("adam", T.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("adamw", T.AdamW, {"lr": 0.01}),
    ("adamw", T.AdamW, {"lr": 0.01, "weight_decay": 0.3, "amsgrad": True}),
    ("adamw", T.AdamW, {"lr": 0.01, "maximize": True}),
    ("radam", T.RAdam, {"lr": 0.01}),
    ("radam", T.RAdam, {"lr": 0.01, "betas": (0.9, 0.9)}),
    ("radam", T.RAdam, {"lr": 0.01, "weight_decay": 0.1}),
    ("radam", T.RAdam, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("radam", T.RAdam, {"lr": 0.01, "maximize": True}),
    ("nadam", T.NAdam, {"lr": 0.01}),
    ("nadam", T.NAdam, {"lr": 0.01, "momentum_decay": 0.05}),
    ("nadam", T.NAdam, {"lr": 0.01, "weight_decay": 0.1}),
    ("nadam", T.NAdam, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("nadam", T.NAdam, {"lr": 0.01, "maximize": True}),
    ("adamax", T.Adamax, {"lr": 0.01}),
    ("adamax", T.Adamax, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-3}),
    ("adamax", T.Adamax, {"lr": 0.01, "weight_decay": 0.1, "maximize": True}),
    ("adadelta", T.Adadelta, {"lr": 1.0}),
    ("adadelta", T.Adadelta, {"lr": 0.5, "rho": 0.5, "eps": 1e-3}),
    ("adadelta", T.Adadelta, {"lr": 1.0, "weight_decay": 0.1, "maximize": True}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, _, kw in CASES]


@pytest.mark.parametrize(("name", "torch_cls", "kwargs"), CASES, ids=IDS)
def test_matches_torch_float64(name, torch_cls, kwargs):
    state = run_ours(getattr(optim, name)(**kwargs), np.float64)
    expected = run_torch(torch_cls, kwargs, np.float64)
    assert state.step == N_STEPS
    assert_params_close(state.params, expected)
    # the run moved the params far from where they started: the comparison can fail
    start = init_params(np.float64)
    assert np.abs(expected["weight"] - start["weight"]).max() > 0.05


FLOAT32_CASES = [c for c in CASES if len(c[2]) == 1 or "amsgrad" in c[2] or "centered" in c[2]]


@pytest.mark.parametrize(("name", "torch_cls", "kwargs"), FLOAT32_CASES,
                         ids=[IDS[CASES.index(c)] for c in FLOAT32_CASES])
def test_matches_torch_float32(name, torch_cls, kwargs):
    state = run_ours(getattr(optim, name)(**kwargs), np.float32)
    expected = run_torch(torch_cls, kwargs, np.float32)
    assert_params_close(state.params, expected)
    assert all(leaf.dtype == np.float32 for leaf in tree_leaves(state.transform_state)
               if isinstance(leaf, np.ndarray))


# ------------------------------------------------------------ schedules as lr
# (name, torch class, options, our schedule, torch's base lr, torch's scheduler)
SCHEDULED = [
    ("sgd", T.SGD, {"momentum": 0.9, "nesterov": True}, S.step(0.1, 7, 0.5), 0.1,
     lambda o: LR_SCHED.StepLR(o, 7, 0.5)),
    ("sgd", T.SGD, {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
     S.one_cycle(0.2, N_STEPS), 0.2,
     lambda o: LR_SCHED.OneCycleLR(o, 0.2, total_steps=N_STEPS, cycle_momentum=False)),
    ("rmsprop", T.RMSprop, {"centered": True, "momentum": 0.5}, S.exponential(0.01, 0.97), 0.01,
     lambda o: LR_SCHED.ExponentialLR(o, 0.97)),
    ("adagrad", T.Adagrad, {"lr_decay": 0.02}, S.cosine(0.2, 20, eta_min=0.01), 0.2,
     lambda o: LR_SCHED.CosineAnnealingLR(o, 20, eta_min=0.01)),
    ("adam", T.Adam, {"amsgrad": True, "weight_decay": 0.05}, S.multistep(0.02, [10, 25]), 0.02,
     lambda o: LR_SCHED.MultiStepLR(o, [10, 25])),
    ("adamw", T.AdamW, {"weight_decay": 0.1}, S.warmup(S.cosine(0.02, 40), 10, start_factor=0.1),
     0.02, lambda o: LR_SCHED.SequentialLR(o, [LR_SCHED.LinearLR(o, 0.1, 1.0, 10),
                                               LR_SCHED.CosineAnnealingLR(o, 40)], [10])),
    ("radam", T.RAdam, {"weight_decay": 0.1, "decoupled_weight_decay": True},
     S.linear(0.02, 0.25, 1.0, 20), 0.02, lambda o: LR_SCHED.LinearLR(o, 0.25, 1.0, 20)),
    ("nadam", T.NAdam, {"weight_decay": 0.1, "decoupled_weight_decay": True},
     S.time_based(0.02, 0.1), 0.02, lambda o: LR_SCHED.LambdaLR(o, lambda t: 1 / (1 + 0.1 * t))),
]


@pytest.mark.filterwarnings("ignore:The epoch parameter:UserWarning")  # torch's SequentialLR
@pytest.mark.parametrize(("name", "torch_cls", "kwargs", "schedule", "torch_lr", "make"), SCHEDULED,
                         ids=[f"{c[0]}-{c[3]!r}" for c in SCHEDULED])
def test_schedule_as_lr_matches_torch(name, torch_cls, kwargs, schedule, torch_lr, make):
    opt = getattr(optim, name)(lr=schedule, **kwargs)
    assert opt.learning_rate is schedule
    state = run_ours(opt, np.float64)
    expected = run_torch(torch_cls, {"lr": torch_lr, **kwargs}, np.float64, scheduler=make)
    assert_params_close(state.params, expected)
    # the schedule mattered: a constant lr ends elsewhere
    constant = run_torch(torch_cls, {"lr": torch_lr, **kwargs}, np.float64)
    assert not np.allclose(constant["weight"], expected["weight"], rtol=1e-6)


def test_momentum_heavy_ball():
    # constant lr: torch's SGD with momentum
    state = run_ours(optim.momentum(0.05, beta=0.8), np.float64)
    assert_params_close(state.params, run_torch(T.SGD, {"lr": 0.05, "momentum": 0.8}, np.float64))
    # with a schedule the lr sits inside the velocity: v <- beta v + lr_t g; p <- p - v
    sched = S.step(0.05, 5, 0.5)
    state = run_ours(optim.momentum(sched, beta=0.8), np.float64)
    x, y = make_data(np.float64)
    p = init_params(np.float64)
    w, b = p["weight"].copy(), p["bias"].copy()
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for t in range(N_STEPS):
        gw, gb = grads_of(w, b, x, y)
        vw, vb = 0.8 * vw + sched(t) * gw, 0.8 * vb + sched(t) * gb
        w, b = w - vw, b - vb
    assert_params_close(state.params, {"weight": w, "bias": b})


# ------------------------------------------------------------------ clipping
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_chain_clip_grad_norm_sgd_matches_torch(norm_type):
    opt = optim.chain(optim.clip_grad_norm(1.0, norm_type=norm_type), optim.sgd(lr=0.1))
    assert opt.learning_rate(3) == 0.1
    state = run_ours(opt, np.float64, data_scale=3.0)

    def clip(ps):
        torch.nn.utils.clip_grad_norm_(ps, 1.0, norm_type=norm_type)

    expected = run_torch(T.SGD, {"lr": 0.1}, np.float64, clip=clip, data_scale=3.0)
    assert_params_close(state.params, expected)
    # clipping was active: without it the result differs
    unclipped = run_torch(T.SGD, {"lr": 0.1}, np.float64, data_scale=3.0)
    assert not np.allclose(expected["weight"], unclipped["weight"])


def test_chain_clip_grad_value_adam_matches_torch():
    opt = optim.chain(optim.clip_grad_value(0.5), optim.adam(lr=0.01, amsgrad=True))
    state = run_ours(opt, np.float64, data_scale=3.0)

    def clip(ps):
        torch.nn.utils.clip_grad_value_(ps, 0.5)

    expected = run_torch(T.Adam, {"lr": 0.01, "amsgrad": True}, np.float64, clip=clip,
                         data_scale=3.0)
    assert_params_close(state.params, expected)


def test_clip_grad_norm_leaves_small_gradients():
    opt = optim.chain(optim.clip_grad_norm(100.0), optim.sgd(lr=1.0))
    state = opt.init({"w": np.zeros(2)})
    _, params = opt.update(state, {"w": np.array([3.0, 4.0])})
    np.testing.assert_array_equal(params["w"], [-3.0, -4.0])
    clipped = optim.chain(optim.clip_grad_norm(1.0), optim.sgd(lr=1.0))
    _, params = clipped.update(clipped.init({"w": np.zeros(2)}), {"w": np.array([3.0, 4.0])})
    np.testing.assert_allclose(params["w"], [-0.6, -0.8], rtol=1e-6)


def test_sgdw_from_pieces():
    """Decoupled weight decay as a piece after an optimizer: p <- p(1 - lr wd) - lr g."""
    opt = optim.chain(optim.sgd(lr=0.1), optim.decoupled_weight_decay(0.5, lr=0.1))
    state = opt.init({"w": np.array([2.0])})
    _, params = opt.update(state, {"w": np.array([1.0])})
    np.testing.assert_allclose(params["w"], [2.0 * (1 - 0.1 * 0.5) - 0.1 * 1.0], rtol=1e-15)


def test_nested_chain():
    inner = optim.chain(optim.clip_grad_value(0.1), optim.sgd(lr=0.5))
    outer = optim.chain(optim.clip_grad_norm(10.0), inner)
    assert outer.learning_rate(0) == 0.5
    state = outer.init({"w": np.zeros(3)})
    state, params = outer.update(state, {"w": np.array([1.0, -0.05, 0.0])})
    np.testing.assert_allclose(params["w"], [-0.05, 0.025, 0.0])
    assert isinstance(state.transform_state, tuple) and len(state.transform_state) == 2


# ----------------------------------------------------------- trees and dtypes
@attrs.frozen
class LinearParams:
    weight: np.ndarray = param_field()
    bias: np.ndarray = param_field()


def _update_tree(opt, params, make_grads, n=10):
    state = opt.init(params)
    for _ in range(n):
        state, params = opt.update(state, make_grads(params))
    return state


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "nadam"])
def test_any_tree_of_params(name):
    opt = getattr(optim, name)(lr=0.01, **({"momentum": 0.9} if name == "sgd" else {}))
    x, y = make_data(np.float64)
    p = init_params(np.float64)

    def g_dict(q):
        gw, gb = grads_of(q["weight"], q["bias"], x, y)
        return {"weight": gw, "bias": gb}

    def g_tuple(q):
        return grads_of(q[0], q[1], x, y)

    def g_attrs(q):
        return LinearParams(*grads_of(q.weight, q.bias, x, y))

    def g_nested(q):
        gw, gb = grads_of(q["layer"][0], q["layer"][1], x, y)
        return {"layer": [gw, gb], "frozen": None}

    a = _update_tree(opt, p, g_dict)
    b = _update_tree(opt, (p["weight"], p["bias"]), g_tuple)
    c = _update_tree(opt, LinearParams(p["weight"], p["bias"]), g_attrs)
    d = _update_tree(opt, {"layer": [p["weight"], p["bias"]], "frozen": None}, g_nested)
    assert isinstance(c.params, LinearParams)
    assert d.params["frozen"] is None
    expected = [a.params["weight"], a.params["bias"]]
    for s in (b, c, d):
        for got, exp in zip(tree_leaves(s.params), expected, strict=True):
            np.testing.assert_array_equal(got, exp)


def test_float32_params_stay_float32():
    p = init_params(np.float32)
    # float64 gradients and NumPy-scalar hyperparameters must not promote anything
    opt = optim.adam(lr=np.float64(0.01), betas=(np.float64(0.9), 0.999), weight_decay=np.float64(0.1))
    state = opt.init(p)
    grads = {"weight": np.ones((3, 4)), "bias": np.ones(3)}
    for _ in range(3):
        state, params = opt.update(state, grads)
    for leaf in tree_leaves((params, state.transform_state)):
        if isinstance(leaf, np.ndarray):
            assert leaf.dtype == np.float32
    sched_opt = optim.sgd(lr=lambda t: np.float64(0.1) / (t + 1), momentum=0.9)
    _, params = sched_opt.update(sched_opt.init(p), grads)
    assert all(leaf.dtype == np.float32 for leaf in tree_leaves(params))


ALL_OPTIMIZERS = [
    optim.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True),
    optim.momentum(0.1),
    optim.rmsprop(centered=True, momentum=0.9, weight_decay=0.1),
    optim.adagrad(lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.1),
    optim.adam(amsgrad=True, weight_decay=0.1, maximize=True),
    optim.adamw(amsgrad=True),
    optim.radam(weight_decay=0.1, decoupled_weight_decay=True),
    optim.nadam(weight_decay=0.1),
    optim.adamax(weight_decay=0.1),
    optim.adadelta(weight_decay=0.1, maximize=True),
    optim.chain(optim.clip_grad_norm(0.5), optim.clip_grad_value(0.1), optim.adam()),
]


@pytest.mark.parametrize("opt", ALL_OPTIMIZERS, ids=[o.name for o in ALL_OPTIMIZERS])
def test_update_does_not_modify_inputs(opt):
    x, y = make_data(np.float64)
    state = opt.init(init_params(np.float64))
    for _ in range(3):  # a state with non-trivial buffers
        gw, gb = grads_of(state.params["weight"], state.params["bias"], x, y)
        state, _ = opt.update(state, {"weight": gw, "bias": gb})
    grads = {"weight": np.full((3, 4), 0.3), "bias": np.full(3, -0.2)}
    before = tree_map(lambda a: np.array(a, copy=True), (state, grads))
    new_state, params = opt.update(state, grads)
    opt.update(state, grads)
    assert leaves_equal((state, grads), before)
    assert new_state.params is params
    assert new_state.step == state.step + 1
    # every array in the new state is read-only
    for leaf in tree_leaves(new_state):
        if isinstance(leaf, np.ndarray):
            assert not leaf.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                leaf[...] = 0


def test_init_copies_params():
    p = {"w": np.array([1.0, 2.0])}
    state = optim.sgd(0.1).init(p)
    p["w"][0] = 100.0
    np.testing.assert_array_equal(state.params["w"], [1.0, 2.0])
    assert p["w"].flags.writeable


def test_state_holds_only_plain_leaves():
    for opt in ALL_OPTIMIZERS:
        state = opt.init(init_params(np.float64))
        state, _ = opt.update(state, tree_map(np.ones_like, state.params))
        for leaf in tree_leaves(state):
            assert isinstance(leaf, (np.ndarray, int, float)), (opt.name, type(leaf))


# --------------------------------------------------------------- save/resume
def _train(opt, state, steps, x, y):
    for _ in range(steps):
        gw, gb = grads_of(state.params["weight"], state.params["bias"], x, y)
        state, _ = opt.update(state, {"weight": gw, "bias": gb})
    return state


RESUME_OPTIMIZERS = [
    optim.adam(lr=S.cosine(0.01, 30), amsgrad=True, weight_decay=0.1),
    optim.nadam(lr=0.01),
    optim.chain(optim.clip_grad_norm(1.0), optim.sgd(S.step(0.1, 5), momentum=0.9)),
]


@pytest.mark.parametrize("opt", RESUME_OPTIMIZERS, ids=[o.name for o in RESUME_OPTIMIZERS])
def test_resume_from_saved_leaves(opt, tmp_path):
    """Flatten the state to .npz without pickle, rebuild it, and resume bit-identically."""
    x, y = make_data(np.float64)
    straight = _train(opt, opt.init(init_params(np.float64)), 30, x, y)
    half = _train(opt, opt.init(init_params(np.float64)), 12, x, y)
    leaves, treedef = tree_flatten(half)
    np.savez(tmp_path / "state.npz", *[np.asarray(leaf) for leaf in leaves])
    with np.load(tmp_path / "state.npz", allow_pickle=False) as f:
        loaded = [f[f"arr_{i}"] for i in range(len(leaves))]
    loaded = [type(orig)(a.item()) if isinstance(orig, (int, float)) else a
              for orig, a in zip(leaves, loaded, strict=True)]
    restored = tree_unflatten(treedef, loaded)
    resumed = _train(opt, restored, 18, x, y)
    assert resumed.step == straight.step == 30
    assert leaves_equal(resumed, straight)


@pytest.mark.parametrize("opt", RESUME_OPTIMIZERS, ids=[o.name for o in RESUME_OPTIMIZERS])
def test_resume_with_nptfunc_io(opt, tmp_path):
    io = pytest.importorskip("nptfunc.io", reason="nptfunc.io (save/load) is not written yet")
    x, y = make_data(np.float64)
    straight = _train(opt, opt.init(init_params(np.float64)), 30, x, y)
    half = _train(opt, opt.init(init_params(np.float64)), 12, x, y)
    io.save(half, tmp_path / "state.npz")
    restored = io.load(tmp_path / "state.npz")
    assert isinstance(restored, optim.OptState)
    resumed = _train(opt, restored, 18, x, y)
    assert leaves_equal(resumed, straight)


# ------------------------------------------------------------------- reading
def test_learning_rate_and_hyperparams():
    opt = optim.adam(lr=S.step(0.1, 2), betas=(0.8, 0.9))
    assert [opt.learning_rate(t) for t in range(5)] == [0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1, 0.1 * 0.1**2]
    assert opt.hyperparams["betas"] == (0.8, 0.9)
    twin = optim.adam(**{**opt.hyperparams, "lr": 0.5})
    assert twin.learning_rate(10) == 0.5
    # a rebuilt optimizer continues from the same state
    state = opt.init({"w": np.zeros(2)})
    state, _ = opt.update(state, {"w": np.ones(2)})
    state, _ = twin.update(state, {"w": np.ones(2)})
    assert state.step == 2
    assert repr(optim.sgd(0.1)).startswith("sgd(lr=0.1, momentum=0.0")
    assert repr(optim.clip_grad_norm(1.0)) == "clip_grad_norm(max_norm=1, norm_type=2)"
    assert optim.chain(optim.clip_grad_value(1.0)).learning_rate is None


# -------------------------------------------------------------------- errors
BAD = [
    (lambda: optim.sgd(-0.1), ValueError, r"sgd: expected lr >= 0, got -0\.1"),
    (lambda: optim.sgd(0.1, momentum=-0.9), ValueError, "sgd: expected momentum >= 0"),
    (lambda: optim.sgd(0.1, nesterov=True), ValueError,
     "sgd: nesterov=True needs momentum > 0 and dampening == 0, got momentum=0, dampening=0"),
    (lambda: optim.sgd(0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     "sgd: nesterov=True needs momentum > 0 and dampening == 0"),
    (lambda: optim.sgd(0.1, weight_decay=-1e-4), ValueError, "sgd: expected weight_decay >= 0"),
    (lambda: optim.sgd(0.1, dampening=1.5), ValueError, r"sgd: expected dampening in \[0, 1\]"),
    (lambda: optim.sgd("fast"), TypeError, "sgd: expected lr to be a float >= 0 or a schedule"),
    (lambda: optim.momentum(0.1, beta=1.0), ValueError, r"momentum: expected beta in \[0, 1\)"),
    (lambda: optim.rmsprop(eps=-1e-8), ValueError, "rmsprop: expected eps >= 0"),
    (lambda: optim.rmsprop(alpha=1.0), ValueError, r"rmsprop: expected alpha in \[0, 1\)"),
    (lambda: optim.rmsprop(momentum=-0.1), ValueError, "rmsprop: expected momentum >= 0"),
    (lambda: optim.adagrad(lr_decay=-0.1), ValueError, "adagrad: expected lr_decay >= 0"),
    (lambda: optim.adagrad(initial_accumulator_value=-1.0), ValueError,
     "adagrad: expected initial_accumulator_value >= 0"),
    (lambda: optim.adam(betas=(0.9, 1.0)), ValueError,
     r"adam: expected betas\[1\] in \[0, 1\), got 1\.0"),
    (lambda: optim.adam(betas=(-0.1, 0.999)), ValueError, r"adam: expected betas\[0\] in \[0, 1\)"),
    (lambda: optim.adam(betas=0.9), TypeError, r"adam: expected betas to be a pair"),
    (lambda: optim.adam(eps=-1.0), ValueError, "adam: expected eps >= 0"),
    (lambda: optim.adam(lr=-1e-3), ValueError, "adam: expected lr >= 0"),
    (lambda: optim.adamw(weight_decay=-0.01), ValueError, "adamw: expected weight_decay >= 0"),
    (lambda: optim.radam(betas=(0.9, 1.5)), ValueError, r"radam: expected betas\[1\] in \[0, 1\)"),
    (lambda: optim.nadam(momentum_decay=-1.0), ValueError, "nadam: expected momentum_decay >= 0"),
    (lambda: optim.nadam(eps=float("nan")), ValueError, "nadam: expected eps >= 0, got nan"),
    (lambda: optim.clip_grad_norm(-1.0), ValueError, "clip_grad_norm: expected max_norm >= 0"),
    (lambda: optim.clip_grad_norm(1.0, norm_type=0.0), ValueError,
     "clip_grad_norm: expected norm_type > 0"),
    (lambda: optim.clip_grad_value(-1.0), ValueError, "clip_grad_value: expected clip_value >= 0"),
    (lambda: optim.chain(), TypeError, "chain: expected at least one"),
    (lambda: optim.chain(optim.sgd(0.1), "adam"), TypeError,
     "chain: expected GradientTransformations or Optimizers, got str at position 1"),
]


@pytest.mark.parametrize(("make", "error", "match"), BAD, ids=[b[2][:45] for b in BAD])
def test_invalid_hyperparameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_update_errors():
    opt = optim.adam()
    state = opt.init({"weight": np.zeros((3, 4)), "bias": np.zeros(3)})
    with pytest.raises(TypeError, match=r"adam.update: params and grads differ in structure"):
        opt.update(state, {"weight": np.zeros((3, 4))})
    with pytest.raises(ValueError, match=r"adam.update: expected the gradient at weight to have its "
                                         r"param's shape \(3, 4\), got \(4, 3\)"):
        opt.update(state, {"weight": np.zeros((4, 3)), "bias": np.zeros(3)})
    with pytest.raises(TypeError, match="adam.update: expected an OptState"):
        opt.update({"weight": np.zeros((3, 4)), "bias": np.zeros(3)}, state)
    with pytest.raises(TypeError, match="Optimizer.init: expected floating-point params, got dtype int64 at w"):
        opt.init({"w": np.arange(3)})


# ------------------------------------------------------------------ ownership
def _writeable_copy(tree):
    return tree_map(lambda a: np.array(a, copy=True) if isinstance(a, np.ndarray) else a, tree)


@pytest.mark.parametrize("opt", ALL_OPTIMIZERS, ids=[o.name for o in ALL_OPTIMIZERS])
def test_writeable_incoming_state_is_not_modified(opt):
    """A state whose arrays are writeable (as np.load gives them) is still never written into."""
    x, y = make_data(np.float64)
    state = opt.init(init_params(np.float64))
    for _ in range(2):
        gw, gb = grads_of(state.params["weight"], state.params["bias"], x, y)
        state, _ = opt.update(state, {"weight": gw, "bias": gb})
    loaded = _writeable_copy(state)
    before = _writeable_copy(loaded)
    grads = {"weight": np.full((3, 4), 0.3), "bias": np.full(3, -0.2)}
    new_state, _ = opt.update(loaded, grads)
    assert leaves_equal(loaded, before)
    assert leaves_equal(new_state, opt.update(state, grads)[0])


@pytest.mark.parametrize("opt", ALL_OPTIMIZERS, ids=[o.name for o in ALL_OPTIMIZERS])
def test_reused_gradient_buffer_does_not_alias_the_state(opt):
    """A caller that writes its next gradients into the same buffer must not change the state."""
    state = opt.init(init_params(np.float64))
    grads = {"weight": np.full((3, 4), 0.3), "bias": np.full(3, -0.2)}
    new_state, _ = opt.update(state, grads)
    snapshot = _writeable_copy(new_state)
    grads["weight"][...] = 123.0
    grads["bias"][...] = -7.0
    assert leaves_equal(new_state, snapshot)


def test_user_transform_that_returns_its_own_buffer_is_safe():
    """A transform written without regard for ownership (its update is its state) stays correct."""

    def init(params):
        return tree_map(np.zeros_like, params)

    def update(updates, state, params, step):
        buf = tree_map(lambda u, s: np.add(u, s), updates, state)  # writeable, kept AND returned
        return buf, buf

    running_sum = optim.GradientTransformation(init, update, name="running_sum")
    opt = optim.chain(running_sum, optim.sgd(0.5))
    state = opt.init({"w": np.ones(2)})
    g = {"w": np.array([1.0, 2.0])}
    state, params = opt.update(state, g)
    np.testing.assert_array_equal(tree_leaves(state.transform_state)[0], [1.0, 2.0])
    state, params = opt.update(state, g)
    np.testing.assert_array_equal(tree_leaves(state.transform_state)[0], [2.0, 4.0])
    # p1 = 1 - 0.5 * [1, 2]; p2 = p1 - 0.5 * [2, 4]
    np.testing.assert_array_equal(params["w"], [1.0 - 0.5 - 1.0, 1.0 - 1.0 - 2.0])


# ------------------------------------------------------------------ the fused path
MIXED = {"a": np.linspace(-1, 1, 12).reshape(3, 4), "b": np.linspace(0, 2, 3).astype(np.float32),
         "c": np.linspace(1, 2, 5), "d": np.zeros((2, 0, 3), np.float32), "e": np.full((), 0.5, np.float32)}


def _grads_for(params, t):
    return {k: np.cos(np.arange(v.size) + t).reshape(v.shape).astype(v.dtype) for k, v in params.items()}


@pytest.mark.parametrize("opt", ALL_OPTIMIZERS[:-1], ids=[o.name for o in ALL_OPTIMIZERS[:-1]])
def test_fused_update_equals_one_array_at_a_time(opt):
    """All leaves in one flat buffer per dtype give bit for bit what each leaf alone gives."""
    state = opt.init(MIXED)
    alone = {k: opt.init(v) for k, v in MIXED.items()}  # one-array params: the per-array path
    for t in range(4):
        g = _grads_for(MIXED, t)
        state, params = opt.update(state, g)
        for k in MIXED:
            alone[k], p = opt.update(alone[k], g[k])
            assert params[k].dtype == MIXED[k].dtype and params[k].shape == MIXED[k].shape
            np.testing.assert_array_equal(params[k], p)
    # each buffer kind is one read-only flat buffer per dtype, seen as views shaped like the params
    leaves = [x for x in tree_leaves(state.transform_state) if isinstance(x, np.ndarray)]
    for leaf in leaves + tree_leaves(state.params):
        assert not leaf.flags.writeable and leaf.base is not None and not leaf.base.flags.writeable
    bases = {id(state.params[k].base) for k in ("a", "c")}
    assert len(bases) == 1 and state.params["a"].base is not state.params["b"].base


FOLDING = [optim.adam(lr=0.1), optim.adam(lr=0.1, amsgrad=True, weight_decay=0.1, maximize=True),
           optim.chain(optim.clip_grad_norm(0.5), optim.adam(lr=lambda t: 0.1 / (t + 1)))]


@pytest.mark.parametrize("opt", FOLDING, ids=[repr(o) for o in FOLDING])
def test_fused_adam_changes_the_params_in_its_own_pass_with_the_same_numbers(opt, monkeypatch):
    """Adam then the learning rate (also at the end of a chain inside a chain) run as one
    ``apply_scaled`` on the fused path: bit for bit the numbers of the pieces run one after the other."""
    from nptfunc.optim import _base

    assert _base._folds_tail(opt.transform)
    folded, params = opt.init(MIXED), {}
    for t in range(4):
        folded, params[t] = opt.update(folded, _grads_for(MIXED, t))
    monkeypatch.setattr(_base, "_folds_tail", lambda t: False)
    state = opt.init(MIXED)
    for t in range(4):
        state, p = opt.update(state, _grads_for(MIXED, t))
        for k in MIXED:
            np.testing.assert_array_equal(params[t][k], p[k])
    for a, b in zip(tree_leaves(folded.transform_state), tree_leaves(state.transform_state), strict=True):
        np.testing.assert_array_equal(a, b)
    for leaf in tree_leaves(folded.params) + tree_leaves(folded.transform_state):
        if isinstance(leaf, np.ndarray):
            assert not leaf.flags.writeable and not leaf.base.flags.writeable


@pytest.mark.parametrize("amsgrad", [False, True])
def test_fused_adam_in_cache_sized_blocks_equals_one_array_at_a_time(amsgrad, monkeypatch):
    """Leaves of many blocks (float32 and float64; blocks made small, so on any thread count)
    give bit for bit what each gives alone (a 2-D array alone takes the unchunked rule)."""
    from nptfunc import backend
    from nptfunc.optim import _transforms

    monkeypatch.setattr(_transforms, "_BLOCK_BYTES", 1 << 12)
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((300, 700)).astype(np.float32), "v": rng.standard_normal((3, 40000))}
    assert all(p.nbytes > 5 * backend.get_num_threads() * (1 << 12) for p in params.values())
    opt = optim.adam(lr=0.01, amsgrad=amsgrad)
    state, alone = opt.init(params), {k: opt.init(v) for k, v in params.items()}
    for t in range(3):
        g = {k: np.cos(v * (t + 1)).astype(v.dtype) for k, v in params.items()}
        state, new = opt.update(state, g)
        for k in params:
            alone[k], p = opt.update(alone[k], g[k])
            np.testing.assert_array_equal(new[k], p)


def test_gradient_pieces_copy_any_range_of_their_buffer():
    """The fused Adam copies the gradients in chunk by chunk (``Pieces``): any range, across
    leaves, past empty ones, cast to the buffer's dtype, equals the concatenated buffer's."""
    from nptfunc.optim import _fused

    leaves = [np.arange(5.0), np.zeros(0), np.arange(3.0) + 10, np.zeros((0, 2)), np.arange(4.0).reshape(2, 2) + 20]
    sizes = [a.size for a in leaves]
    group = _fused.Group(np.dtype(np.float32), tuple(range(len(leaves))), tuple(np.cumsum([0, *sizes[:-1]])),
                         tuple(sizes), tuple(a.shape for a in leaves), sum(sizes))
    pieces = _fused.Pieces.of(leaves, group)
    whole = pieces.array()
    np.testing.assert_array_equal(whole, np.concatenate([a.ravel() for a in leaves]).astype(np.float32))
    assert whole.dtype == np.float32 and pieces.shape == whole.shape
    for lo in range(group.total + 1):
        for hi in range(lo, group.total + 1):
            out = np.full(hi - lo, -1, np.float32)
            pieces.copy_into(out, lo, hi)
            np.testing.assert_array_equal(out, whole[lo:hi])


def test_only_a_scale_after_an_apply_scaled_is_folded():
    from nptfunc.optim import _base

    assert not _base._folds_tail(optim.adamw().transform)  # decoupled weight decay comes after the scale
    assert not _base._folds_tail(optim.sgd(0.1, momentum=0.9).transform)
    assert not _base._folds_tail(optim.scale_by_adam())
    with pytest.raises(TypeError, match="expected scale_of to be a function"):
        optim.GradientTransformation(lambda p: None, lambda u, s, p, t: (u, s), scale_of=0.5)
    with pytest.raises(TypeError, match="expected apply_scaled to be a function"):
        optim.GradientTransformation(lambda p: None, lambda u, s, p, t: (u, s), apply_scaled="no")


def test_fused_state_rebuilt_by_hand_is_not_trusted():
    """Views of the last update swapped between leaves of one shape are read as they are."""
    opt = optim.adam(lr=0.1)
    params = {"x": np.array([1.0, 2.0]), "y": np.array([-3.0, 5.0])}
    state = opt.init(params)
    state, _ = opt.update(state, {"x": np.ones(2), "y": -np.ones(2)})
    m = state.transform_state[0].exp_avg
    swapped = optim.OptState(state.step, {"x": state.params["y"], "y": state.params["x"]},
                             (type(state.transform_state[0])(
                                 (m[1], m[0]), state.transform_state[0].exp_avg_sq[::-1], None),
                              *state.transform_state[1:]))
    copied = tree_map(lambda a: np.array(a, copy=True) if isinstance(a, np.ndarray) else a, swapped)
    g = {"x": np.array([0.5, -0.5]), "y": np.array([2.0, 1.0])}
    assert leaves_equal(opt.update(swapped, g)[1], opt.update(copied, g)[1])
    # and an old state replays to the same result
    assert leaves_equal(opt.update(state, g)[1], opt.update(state, g)[1])


def test_copied_or_pickled_state_is_read_as_it_is():
    """A deep copy (writeable arrays) changed in place updates from its own values."""
    import copy
    import pickle

    opt = optim.adam(lr=0.1)
    state = opt.init({"a": np.ones(3), "b": np.ones(2)})
    g = {"a": np.ones(3), "b": np.ones(2)}
    state, _ = opt.update(state, g)
    twin = copy.deepcopy(state)
    twin.params["a"][...] = 100.0
    twin.transform_state[0].exp_avg[0][...] = 0.0
    by_hand = tree_map(lambda x: np.array(x, copy=True) if isinstance(x, np.ndarray) else x, twin)
    assert leaves_equal(opt.update(twin, g), opt.update(by_hand, g))
    assert leaves_equal(opt.update(pickle.loads(pickle.dumps(state)), g), opt.update(state, g))

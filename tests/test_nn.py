"""The nn facade: Parameter, Module, FunctionalModule, Sequential, Net, losses, LossValue."""

import pathlib
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch

from nptfunc import convert, layers, nn, random
from nptfunc.nn._tape import no_grad
from nptfunc.testing import assert_close, leaves_equal

F64 = np.float64


def _x(shape, seed=0, dtype=F64):
    return random.normal(random.key(seed), shape, dtype=dtype)


def _mlp(key=0, dtype=F64):
    return nn.Sequential(nn.Linear(4, 8, dtype=dtype), nn.BatchNorm1d(8, dtype=dtype), nn.ReLU(),
                         nn.Linear(8, 3, dtype=dtype), key=key)


def _assert_grads_match(model, tm):
    """Every parameter gradient equal to torch's, to 1e-10 of the largest gradient.

    (The first Linear's bias has a zero gradient up to rounding: BatchNorm removes it.)
    """
    named = list(model.named_parameters())
    scale = max(float(np.abs(p.grad).max()) for _, p in named)
    for (n, p), (tn, tp) in zip(named, tm.named_parameters(), strict=True):
        assert n.endswith(tn)
        assert_close(p.grad, tp.grad, atol=1e-10 * scale, name=n)


def _torch_mlp():
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 3)).double()


# ----------------------------------------------------------------------- Parameter
def test_parameter_data_grad_and_alias():
    assert nn.Variable is nn.Parameter
    w = np.ones((2, 3), np.float32)
    p = nn.Parameter(w)
    assert p.grad is None and p.requires_grad and p.shape == (2, 3) and p.dtype == np.float32
    assert p.data is w  # shared, as torch's (nptfunc itself never writes into .data)
    fc = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="read-only"):
        fc.weight.data -= 1  # the core's arrays are read-only: assign a new array instead
    fc.weight.data = fc.weight.data - 1
    assert np.asarray(p) is p.data and p.numel() == 6 and p.size() == (2, 3) and p.size(1) == 3
    p.data = np.full((2, 3), 5.0, np.float32)
    assert repr(p).startswith("Parameter containing:\narray([[5., 5., 5.]")
    with pytest.raises(TypeError, match="expected a floating-point array, got dtype int64"):
        nn.Parameter(np.arange(3))


def test_parameter_grad_accumulates_until_zero_grad():
    fc = nn.Linear(3, 2, dtype=F64, key=1)
    x1, x2 = _x((4, 3), 1), _x((5, 3), 2)
    dy1, dy2 = _x((4, 2), 3), _x((5, 2), 4)
    fc(x1)
    fc.backward(dy1)
    g1 = fc.weight.grad.copy()
    fc(x2)
    fc.backward(dy2)
    assert_close(fc.weight.grad, g1 + dy2.T @ x2)
    assert_close(fc.bias.grad, dy1.sum(0) + dy2.sum(0))
    assert np.array_equal(g1, dy1.T @ x1)
    fc.zero_grad(set_to_none=False)
    assert np.all(fc.weight.grad == 0)
    fc.zero_grad()
    assert fc.weight.grad is None and fc.bias.grad is None


def test_frozen_parameters_get_no_gradient():
    fc = nn.Linear(3, 2, dtype=F64, key=1)
    fc.weight.requires_grad_(False)
    fc(_x((4, 3)))
    fc.backward(np.ones((4, 2)))
    assert fc.weight.grad is None and fc.bias.grad is not None
    assert repr(fc.weight).endswith("requires_grad=False")
    fc.requires_grad_(False)
    assert not any(p.requires_grad for p in fc.parameters())


# ------------------------------------------------------------- facade = the core
def test_facade_and_core_give_identical_numbers():
    key = random.key(7)
    model = _mlp(key)
    core = layers.Sequential(layers.Linear(4, 8, dtype=F64), layers.BatchNorm1d(8, dtype=F64),
                             layers.ReLU(), layers.Linear(8, 3, dtype=F64))
    k_params, k_state = random.split(key)
    params, state = core.init(k_params), core.init_state(k_state)
    assert leaves_equal(model[0].params, params[0]) and leaves_equal(model[1].state, state[1])
    for train in (True, False, True):
        model.train(train)
        x, dy = _x((6, 4), 10 + train), _x((6, 3), 20 + train)
        y = model(x)
        y_core, vjp, state = core.apply(params, x, state, train=train)
        assert np.array_equal(y, y_core)
        model.zero_grad()
        dx = model.backward(dy)
        dparams, dx_core = vjp(dy)
        assert np.array_equal(dx, dx_core)
        for i in (0, 1, 3):
            assert leaves_equal(model[i].params, params[i])
            grads = [p.grad for p in model[i].parameters()]
            assert all(np.array_equal(g, d) for g, d in zip(grads, [dparams[i].weight, dparams[i].bias],
                                                             strict=True))
        assert leaves_equal(model[1].state, state[1])


def test_functional_module_wraps_any_layer_with_the_same_key_rule():
    key = random.key(3)
    core = layers.Sequential(layers.Linear(4, 8), layers.Tanh(), layers.Linear(8, 2))
    wrapped = nn.FunctionalModule(core, key=key)
    facade = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), key=key)
    assert list(wrapped.state_dict()) == list(facade.state_dict()) == ["0.weight", "0.bias", "2.weight",
                                                                       "2.bias"]
    for k in wrapped.state_dict():
        assert np.array_equal(wrapped.state_dict()[k], facade.state_dict()[k])
    assert leaves_equal(wrapped.params, core.init(random.split(key)[0]))
    x = _x((5, 4), dtype=np.float32)
    assert np.array_equal(wrapped(x), facade(x))
    assert repr(wrapped).startswith("FunctionalModule(\n  Sequential(\n    (0): Linear(in_features=4")
    assert repr(nn.FunctionalModule(layers.Tanh())) == "FunctionalModule(Tanh())"


def test_keys_seeds_and_fresh_entropy():
    a, b = nn.Linear(4, 3, key=5), nn.Linear(4, 3, key=5)
    assert np.array_equal(a.weight.data, b.weight.data)
    assert np.array_equal(nn.Linear(4, 3, key=random.key(5)).weight.data, a.weight.data)
    c, d = nn.Linear(4, 3), nn.Linear(4, 3)  # no key: a fresh seed each, like torch
    assert not np.array_equal(c.weight.data, d.weight.data)
    c.reset_parameters(5)
    assert np.array_equal(c.weight.data, a.weight.data)
    with pytest.raises(TypeError, match=r"Linear: expected key to be an nptfunc\.random\.Key, an int seed"):
        nn.Linear(4, 3, key="seed")


def test_dropout_masks_follow_the_key_and_eval_is_identity():
    x = np.ones((4, 50))
    a, b = nn.Dropout(0.5, key=1), nn.Dropout(0.5, key=1)
    ya, yb = a(x), b(x)
    assert np.array_equal(ya, yb) and set(np.unique(ya)) <= {0.0, 2.0}
    assert not np.array_equal(a(x), ya)  # the key advances at every training call
    a.eval()
    assert np.array_equal(a(x), x)
    assert a.state_dict() == {}


# ---------------------------------------------------------------- state dicts
def test_state_dict_keys_and_values_match_torch():
    model, tm = _mlp(), _torch_mlp()
    sd, tsd = model.state_dict(), tm.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        assert sd[k].shape == tuple(tsd[k].shape) and sd[k].dtype == tsd[k].numpy().dtype, k
    assert sd["1.num_batches_tracked"].dtype == np.int64 and sd["1.num_batches_tracked"].shape == ()
    assert not sd["0.weight"].flags.writeable
    assert model.state_dict(keep_vars=True)["0.weight"] is model[0].weight
    assert [n for n, _ in model.named_buffers()] == [n for n, _ in tm.named_buffers()]


@pytest.mark.parametrize("train", [True, False])
def test_torch_weights_give_the_same_outputs_both_ways(train):
    tm = _torch_mlp()
    with torch.no_grad():  # non-trivial running statistics
        tm[1].running_mean.uniform_(-1, 1)
        tm[1].running_var.uniform_(0.5, 2)
    model = _mlp()
    model.load_state_dict(tm.state_dict())  # tensors are accepted directly
    model.train(train)
    tm.train(train)
    x = _x((6, 4), 3)
    assert_close(model(x), tm(torch.tensor(x)), name="y")
    # the reverse: ours into a fresh torch model, through the documented helper
    tm2 = _torch_mlp()
    tm2.load_state_dict(convert.state_dict_to_torch(model.state_dict()))
    for k, v in tm2.state_dict().items():
        assert np.array_equal(v.numpy(), model.state_dict()[k]), k
    tm2.train(train)
    assert_close(model(x), tm2(torch.tensor(x)), name="y (reverse)")
    for k, v in tm2.state_dict().items():
        assert_close(model.state_dict()[k], v, name=k)


def test_load_state_dict_casts_to_the_model_dtype():
    model = _mlp(dtype=np.float32)
    sd = {k: (v.astype(F64) if v.dtype.kind == "f" else v) for k, v in _mlp(key=1).state_dict().items()}
    model.load_state_dict(sd)
    assert model[0].weight.dtype == np.float32 and model[1].running_mean.dtype == np.float32
    assert_close(model[0].weight.data, sd["0.weight"].astype(np.float32))


def test_load_state_dict_errors_name_the_keys():
    model = _mlp()
    sd = dict(model.state_dict())
    bad = {**sd, "0.weight": np.zeros((8, 5))}
    with pytest.raises(ValueError, match=r"size mismatch for 0\.weight: copying a param with shape \(8, 5\) "
                                         r"from checkpoint, the shape in current model is \(8, 4\)"):
        model.load_state_dict(bad)
    missing = {k: v for k, v in sd.items() if k != "1.running_var"}
    with pytest.raises(ValueError, match=r'Missing key\(s\) in state_dict: "1\.running_var"'):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r'Unexpected key\(s\) in state_dict: "5\.weight"'):
        model.load_state_dict({**sd, "5.weight": np.ones(1)})
    result = model.load_state_dict({**missing, "5.weight": np.ones(1)}, strict=False)
    assert result == nn.IncompatibleKeys(["1.running_var"], ["5.weight"])
    with pytest.raises(ValueError, match=r"size mismatch for 0\.weight"):
        model.load_state_dict(bad, strict=False)  # shapes are checked even when not strict
    with pytest.raises(TypeError, match="expected a mapping"):
        model.load_state_dict([("0.weight", np.ones(1))])
    before = model[0].weight.data.copy()
    with pytest.raises(ValueError):
        model.load_state_dict({**bad, "3.weight": np.zeros((3, 8))})
    assert np.array_equal(model[0].weight.data, before)  # nothing written on error


def test_state_dict_taken_earlier_keeps_its_values():
    model = _mlp()
    sd = model.state_dict()
    w = sd["0.weight"].copy()
    model.load_state_dict({k: (v * 0 if v.dtype.kind == "f" else v) for k, v in sd.items()})
    assert np.array_equal(sd["0.weight"], w)


def test_convert_tree_helpers():
    core = layers.Sequential(layers.Linear(4, 8), layers.BatchNorm1d(8), layers.Dropout(0.1))
    params, state = core.init(random.key(0)), core.init_state(random.key(1))
    sd = convert.state_dict_from_tree(params, state)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.1))
    assert list(sd) == list(tm.state_dict())
    tsd = convert.state_dict_from_torch(tm.state_dict())
    p2, s2 = convert.tree_from_state_dict(tsd, params), convert.tree_from_state_dict(tsd, state)
    assert np.array_equal(p2[0].weight, tm[0].weight.detach().numpy())
    assert s2[2] == state[2]  # the dropout key is kept
    with pytest.raises(ValueError, match=r"missing key '0\.bias'"):
        convert.tree_from_state_dict({"0.weight": tsd["0.weight"]}, params)
    with pytest.raises(ValueError, match=r"tree_from_state_dict: size mismatch for 0\.weight: copying a param with "
                                         r"shape \(2,\) from checkpoint, the shape in current model is \(8, 4\)"):
        convert.tree_from_state_dict({**tsd, "0.weight": np.ones(2)}, params)
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['1\.running_mean'"):
        convert.tree_from_state_dict(tsd, params, strict=True)
    with pytest.raises(TypeError, match="expected a mapping"):
        convert.state_dict_from_torch(3)


# ------------------------------------------------------------------ repr, modes
def test_repr_matches_torch():
    pairs = [
        (nn.Linear(3, 2, bias=False), torch.nn.Linear(3, 2, bias=False)),
        (nn.BatchNorm1d(3, momentum=None), torch.nn.BatchNorm1d(3, momentum=None)),
        (nn.BatchNorm2d(3, affine=False), torch.nn.BatchNorm2d(3, affine=False)),
        (nn.LayerNorm(5), torch.nn.LayerNorm(5)),
        (nn.LayerNorm((2, 3), elementwise_affine=False, bias=False),
         torch.nn.LayerNorm((2, 3), elementwise_affine=False, bias=False)),
        (nn.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4)),
        (nn.LeakyReLU(0.2, True), torch.nn.LeakyReLU(0.2, True)),
        (nn.GELU("tanh"), torch.nn.GELU("tanh")),
        (nn.Softmax(), torch.nn.Softmax()),
        (nn.LogSoftmax(1), torch.nn.LogSoftmax(1)),
        (nn.Identity(3, x=1), torch.nn.Identity(3, x=1)),
        (nn.Flatten(), torch.nn.Flatten()),
        (nn.Dropout2d(0.3), torch.nn.Dropout2d(0.3)),
        (nn.ReLU(), torch.nn.ReLU()),
        (nn.Sigmoid(), torch.nn.Sigmoid()),
        (nn.Tanh(), torch.nn.Tanh()),
        (nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()),
        (nn.MSELoss(), torch.nn.MSELoss()),
        (_mlp(), _torch_mlp()),
        (nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Dropout()),
         torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()), torch.nn.Dropout())),
        (nn.Sequential(), torch.nn.Sequential()),
    ]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


def test_train_eval_propagate_and_validate():
    model = nn.Net(_mlp(), nn.CrossEntropyLoss())
    assert model.training and all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(TypeError, match="expected mode to be a bool"):
        model.train("no")


def test_double_float_and_to():
    model = _mlp(dtype=np.float32)
    x = _x((5, 4), dtype=np.float32)
    model(x)
    model.backward(np.ones((5, 3), np.float32))
    assert model.double() is model
    assert all(p.dtype == F64 and p.grad.dtype == F64 for p in model.parameters())
    assert model[1].running_mean.dtype == F64 and model[1].num_batches_tracked.dtype == np.int64
    assert model[0].layer.dtype == F64
    assert model(x.astype(F64)).dtype == F64
    with pytest.raises(RuntimeError, match="no forward pass"):
        nn.Linear(2, 2).double().backward(np.ones((1, 2)))
    model.float()
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert model.to("cpu") is model and model.to(np.float64, device="cpu")[0].weight.dtype == F64
    with pytest.raises(TypeError, match="expected a floating dtype, got int64"):
        model.to(np.int64)
    wrapped = nn.FunctionalModule(layers.Sequential(layers.Linear(2, 3), layers.ReLU())).double()
    assert wrapped.layer.layers[0].dtype == F64 and wrapped(np.ones((1, 2))).dtype == F64


def test_constructor_dtype_and_device():
    assert nn.Linear(2, 3).weight.dtype == np.float32
    assert nn.Linear(2, 3, dtype=torch.float64).weight.dtype == F64
    assert nn.BatchNorm2d(3, dtype="float64").running_var.dtype == F64
    assert nn.Linear(2, 3, device="cpu").weight.dtype == np.float32
    with pytest.raises(TypeError, match="Linear: expected dtype to be a NumPy floating dtype"):
        nn.Linear(2, 3, dtype=np.int32)
    with pytest.raises(ValueError, match="expected device None or 'cpu', got 'cuda'"):
        nn.Linear(2, 3, device="cuda")
    with pytest.raises(ValueError, match="BatchNorm1d: bias=False"):
        nn.BatchNorm1d(3, bias=False)


def test_hyperparameters_read_through_and_are_fixed():
    fc = nn.Linear(4, 3, bias=False)
    assert fc.in_features == 4 and fc.out_features == 3 and fc.bias is None
    assert nn.BatchNorm1d(3, eps=1e-3).eps == 1e-3
    with pytest.raises(AttributeError, match="the layer is fixed at construction"):
        fc.layer = layers.Linear(2, 2)
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'kernel_size'"):
        _ = fc.kernel_size
    with pytest.raises(TypeError, match=r"cannot assign a ndarray as parameter 'weight'.*set \.weight\.data"):
        fc.weight = np.ones((3, 4))


# -------------------------------------------------------------- user modules
class _TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8, dtype=F64, key=1)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(8, 2, dtype=F64, key=2)
        self.scale = nn.Parameter(np.array([2.0]))
        self.register_buffer("seen", np.zeros(1))
        self.register_buffer("scratch", np.zeros(1), persistent=False)
        self.note = "plain attribute"

    def forward(self, x):
        self.h = self.fc2(self.act(self.fc1(x)))
        return self.h * self.scale.data

    def backward(self, dy):
        self.scale.accumulate_grad(np.array([np.sum(dy * self.h)]))
        return self.fc1.backward(self.act.backward(self.fc2.backward(dy * self.scale.data)))


def test_hand_written_module():
    m = _TwoLayers()
    assert [n for n, _ in m.named_parameters()] == ["scale", "fc1.weight", "fc1.bias", "fc2.weight",
                                                     "fc2.bias"]
    assert list(m.state_dict()) == ["scale", "seen", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "fc2"]
    assert len(list(m.modules())) == 4 and m.note == "plain attribute"
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    tm.load_state_dict({"0.weight": torch.tensor(m.fc1.weight.data), "0.bias": torch.tensor(m.fc1.bias.data),
                        "2.weight": torch.tensor(m.fc2.weight.data), "2.bias": torch.tensor(m.fc2.bias.data)})
    x = _x((3, 4))
    loss = nn.MSELoss()(m(x), np.zeros((3, 2)))
    loss.backward()
    xt = torch.tensor(x)
    scale = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    torch.nn.functional.mse_loss(tm(xt) * scale, torch.zeros(3, 2, dtype=torch.float64)).backward()
    assert_close(m.fc1.weight.grad, tm[0].weight.grad)
    assert_close(m.scale.grad, scale.grad)
    del m.scratch
    assert "scratch" not in dict(m.named_buffers())


def test_module_registration_errors():
    class Early(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"cannot assign 'fc' before Module\.__init__\(\)"):
        Early()
    m = nn.Module()
    with pytest.raises(NotImplementedError, match="forward is not defined"):
        m(np.ones(2))
    with pytest.raises(NotImplementedError, match="backward is not defined"):
        m.backward(np.ones(2))
    with pytest.raises(TypeError, match="expected an nn.Parameter or None for 'w', got ndarray"):
        m.register_parameter("w", np.ones(2))
    with pytest.raises(TypeError, match="expected an nn.Module for 'c', got int"):
        m.add_module("c", 3)
    m.child = nn.ReLU()
    with pytest.raises(TypeError, match="cannot assign a int as child module 'child'"):
        m.child = 3
    m.child = None
    assert list(m.children()) == []


def test_backward_before_forward_is_an_error_that_says_so():
    with pytest.raises(RuntimeError, match=r"Linear\.backward: no forward pass to backpropagate through"):
        nn.Linear(2, 2).backward(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match=r"Sequential\.backward: no forward pass"):
        nn.Sequential(nn.Linear(2, 2)).backward(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match=r"CrossEntropyLoss\.backward: no loss computed yet"):
        nn.CrossEntropyLoss().backward()
    with pytest.raises(RuntimeError, match=r"CrossEntropyLoss\.backward: no loss computed yet"):
        nn.Net(nn.Linear(2, 2), nn.CrossEntropyLoss()).backward()


# ------------------------------------------------------------------ Sequential
def test_sequential_container_protocol():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    s = nn.Sequential(a, b)
    assert len(s) == 2 and s[0] is a and s[-1] is b and list(s) == [a, b]
    assert s.append(c) is s and s[2] is c and len(s) == 3
    tail = s[1:]
    assert isinstance(tail, nn.Sequential) and list(tail) == [b, c]
    assert [n for n, _ in tail.named_children()] == ["1", "2"]  # torch keeps the names
    s.extend([nn.Sigmoid()])
    assert len(s) == 4
    with pytest.raises(IndexError, match="index 7 is out of range for 4 modules"):
        s[7]
    named = nn.Sequential(OrderedDict(fc=nn.Linear(2, 2), act=layers.ReLU()))
    assert isinstance(named.act, nn.FunctionalModule) and list(named.state_dict()) == ["fc.weight", "fc.bias"]
    with pytest.raises(TypeError, match="Sequential: expected an nn.Module or a functional layer, got str"):
        nn.Sequential("relu")
    shared = nn.Linear(2, 2)
    assert len(list(nn.Sequential(shared, shared).parameters())) == 2  # each parameter once


# ------------------------------------------------------------ losses, LossValue
def _loss_cases():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 4))
    probs = 1 / (1 + np.exp(-rng.standard_normal((5, 4))))
    targets = np.array([0, 3, 1, 2, 3])
    w = rng.uniform(0.5, 2, 4)
    return [
        (nn.MSELoss(), torch.nn.MSELoss(), logits, probs),
        (nn.L1Loss(reduction="sum"), torch.nn.L1Loss(reduction="sum"), logits, probs),
        (nn.CrossEntropyLoss(weight=w, label_smoothing=0.1),
         torch.nn.CrossEntropyLoss(weight=torch.tensor(w), label_smoothing=0.1), logits, targets),
        (nn.NLLLoss(ignore_index=1), torch.nn.NLLLoss(ignore_index=1), logits, targets),
        (nn.BCELoss(weight=w), torch.nn.BCELoss(weight=torch.tensor(w)), probs, probs.round()),
        (nn.BCEWithLogitsLoss(pos_weight=w), torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w)),
         logits, probs.round()),
    ]


@pytest.mark.parametrize("case", range(6))
def test_losses_match_torch_in_both_styles(case):
    ours, theirs, x, t = _loss_cases()[case]
    value = ours(x, t)
    xt = torch.tensor(x, requires_grad=True)
    vt = theirs(xt, torch.tensor(t))
    vt.backward()
    assert_close(value.item(), vt.item())
    assert_close(ours.backward(), xt.grad)  # the reference project's criterion.backward()
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_legacy_reduction_arguments():
    assert nn.MSELoss(reduce=False).reduction == "none"
    assert nn.MSELoss(size_average=False).reduction == "sum"
    assert nn.L1Loss(size_average=True, reduce=True).reduction == "mean"
    assert nn.CrossEntropyLoss(reduction="sum").reduction == "sum"


def test_loss_buffers_follow_dtype_casts():
    crit = nn.CrossEntropyLoss(weight=[1.0, 2.0], dtype=np.float32)
    assert crit.weight.dtype == np.float32
    crit.double()
    assert crit.weight.dtype == F64
    assert crit(np.zeros((1, 2)), np.array([1])).dtype == F64


def test_loss_value_is_a_scalar_for_the_loop():
    crit = nn.CrossEntropyLoss()
    loss = crit(np.zeros((2, 4)), np.array([1, 2]))
    assert isinstance(loss.item(), float) and abs(loss.item() - np.log(4)) < 1e-6
    assert float(loss) == loss.item() and f"{loss:.3f}" == f"{np.log(4):.3f}"
    assert np.asarray(loss).shape == () and loss.shape == () and loss.ndim == 0
    assert repr(loss).startswith("tensor(1.38") and "grad_fn=<CrossEntropyLossBackward>" in repr(loss)
    assert isinstance(loss, nn.Tensor) and nn.LossValue is nn.Tensor
    per = nn.CrossEntropyLoss(reduction="none")(np.zeros((2, 4)), np.array([1, 2]))
    with pytest.raises(ValueError, match=r"only a tensor with one element.*shape \(2,\)"):
        per.item()
    assert abs((loss + 1).item() - (np.log(4) + 1)) < 1e-6  # a loss is a tensor: arithmetic is recorded


def test_loss_backward_runs_the_outermost_module():
    model, tm = _mlp(), _torch_mlp()
    model.load_state_dict(tm.state_dict())
    x, y = _x((6, 4)), np.array([0, 1, 2, 0, 1, 2])
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    torch.nn.CrossEntropyLoss()(tm(torch.tensor(x)), torch.tensor(y)).backward()
    _assert_grads_match(model, tm)
    # reduction='none' needs an explicit gradient, as torch
    per = nn.CrossEntropyLoss(reduction="none")(model(x), y)
    with pytest.raises(RuntimeError, match=r"implied only for a tensor with one element.*pass gradient="):
        per.backward()
    model.zero_grad()
    per.backward(np.full(6, 1 / 6))
    _assert_grads_match(model, tm)


def test_loss_backward_on_the_tape_follows_torch():
    """What the tape changed: any input traces back; a graph is freed by its backward, as torch's."""
    model, crit = _mlp(), nn.CrossEntropyLoss()
    tm = _torch_mlp()
    model.load_state_dict(tm.state_dict())
    x, y = _x((6, 4)), np.array([0, 1, 2, 0, 1, 2])
    out = model(x)
    loss = crit(out, y)
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        crit(out, y).backward()  # the model's part of the graph was freed, as torch's
    out1 = model(x)
    loss1 = crit(out1, y)
    model(x)  # a second forward before backward: the first graph is still whole
    model.zero_grad()
    loss1.backward()
    torch.nn.CrossEntropyLoss()(tm(torch.tensor(x)), torch.tensor(y)).backward()
    _assert_grads_match(model, tm)
    model.zero_grad()
    tm.zero_grad()
    crit(model(x)[:, :2] * 2.0, y % 2).backward()  # a slice and arithmetic: recorded on the tape
    torch.nn.CrossEntropyLoss()(tm(torch.tensor(x))[:, :2] * 2.0, torch.tensor(y % 2)).backward()
    _assert_grads_match(model, tm)
    with pytest.raises(RuntimeError, match="does not require grad"), no_grad():
        crit(model(x), y).backward()


def test_net_reference_loop_step():
    tm = _torch_mlp()
    net = nn.Net(_mlp(), nn.CrossEntropyLoss())
    net.module.load_state_dict(tm.state_dict())
    assert list(net.state_dict())[:2] == ["module.0.weight", "module.0.bias"]
    assert repr(net).startswith("Net(\n  (module): Sequential(\n") and repr(net).endswith(
        "(cost): CrossEntropyLoss()\n)")
    x, y = _x((6, 4)), np.array([0, 1, 2, 0, 1, 2])
    pred = net(x)
    loss = net.loss(pred, y)
    net.zero_grad()
    dx = net.backward()
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.CrossEntropyLoss()(tm(xt), torch.tensor(y))
    lt.backward()
    assert_close(loss.item(), lt.item())
    assert_close(dx, xt.grad)
    _assert_grads_match(net, tm)
    # loss.backward() also works through the Net (the outermost module)
    net.zero_grad()
    net.loss(net(x), y).backward()
    assert_close(net.module[0].weight.grad, tm[0].weight.grad)
    # key= re-draws the module's parameters as module.reset_parameters(key)
    a, b = nn.Net(_mlp(), nn.MSELoss(), key=3), _mlp().reset_parameters(3)
    assert np.array_equal(a.module[0].weight.data, b[0].weight.data)
    assert isinstance(nn.Net(layers.Linear(2, 2), layers_loss := nn.MSELoss()).cost, nn.MSELoss)
    assert layers_loss is not None


def test_softmax_implicit_dim_follows_torch():
    for shape in [(5,), (3, 4), (2, 3, 4), (2, 3, 4, 5)]:
        x = _x(shape)
        with pytest.warns(UserWarning, match="Implicit dimension choice"):
            expected = torch.nn.Softmax()(torch.tensor(x))
        assert_close(nn.Softmax()(x), expected)
    assert_close(nn.LogSoftmax(dim=-1)(_x((2, 3))), torch.nn.LogSoftmax(dim=-1)(torch.tensor(_x((2, 3)))))


# ------------------------------------------------- every facade class against torch
FACADES = [
    ("Linear", lambda m: m.Linear(5, 3), (4, 5)),
    ("Conv2d", lambda m: m.Conv2d(2, 4, 3, stride=2, padding=1), (2, 2, 7, 7)),
    ("Conv2d-same", lambda m: m.Conv2d(2, 4, (3, 2), padding="same", dilation=2, groups=2, bias=False),
     (2, 2, 6, 6)),
    ("Conv2d-reflect", lambda m: m.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), (1, 1, 5, 5)),
    ("MaxPool2d", lambda m: m.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 7, 6)),
    ("AvgPool2d", lambda m: m.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 6)),
    ("AdaptiveAvgPool2d", lambda m: m.AdaptiveAvgPool2d((3, None)), (2, 3, 7, 6)),
    ("BatchNorm1d", lambda m: m.BatchNorm1d(4), (6, 4)),
    ("BatchNorm2d", lambda m: m.BatchNorm2d(3, momentum=None), (2, 3, 4, 4)),
    ("LayerNorm", lambda m: m.LayerNorm([5, 6]), (2, 3, 5, 6)),
    ("GroupNorm", lambda m: m.GroupNorm(2, 4), (2, 4, 3, 3)),
    ("Dropout", lambda m: m.Dropout(0.0), (3, 4)),
    ("Dropout2d", lambda m: m.Dropout2d(1.0), (2, 3, 2, 2)),
    ("Flatten", lambda m: m.Flatten(0, 1), (2, 3, 4)),
    ("Identity", lambda m: m.Identity(), (2, 3)),
    ("GELU", lambda m: m.GELU(), (2, 3)),
    ("LeakyReLU", lambda m: m.LeakyReLU(0.3), (2, 3)),
    ("Sigmoid", lambda m: m.Sigmoid(), (2, 3)),
    ("Tanh", lambda m: m.Tanh(), (2, 3)),
    ("Softmax", lambda m: m.Softmax(dim=0), (2, 3)),
    ("LogSoftmax", lambda m: m.LogSoftmax(dim=1), (2, 3)),
]


@pytest.mark.parametrize(("name", "make", "shape"), FACADES, ids=[f[0] for f in FACADES])
def test_every_facade_class_matches_torch(name, make, shape):
    ours, theirs = make(nn).double(), make(torch.nn).double()
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x, dy_seed = _x(shape, 1), 2
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    y = ours(x)
    assert_close(y, yt, name="y")
    dy = _x(y.shape, dy_seed)
    yt.backward(torch.tensor(dy))
    assert_close(ours.backward(dy), xt.grad, name="dx")
    for (n, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert_close(p.grad, tp.grad, name=n)
    for k, v in theirs.state_dict().items():
        assert_close(ours.state_dict()[k], v, name=k)


@pytest.mark.parametrize(("slow", "fast"), [(lambda m: m.SlowConv2d(2, 3, 3, padding=1, stride=2), "Conv2d"),
                                            (lambda m: m.SlowMaxPool2d(2, padding=1), "MaxPool2d")])
def test_reference_slow_layers(slow, fast):
    ours = slow(nn).double()
    theirs = getattr(torch.nn, fast)(*((2, 3, 3) if fast == "Conv2d" else (2,)),
                                     **({"padding": 1, "stride": 2} if fast == "Conv2d" else {"padding": 1}))
    theirs.double()
    assert repr(ours) == "Slow" + repr(theirs)
    ours.load_state_dict(theirs.state_dict())
    x = _x((2, 2, 5, 5))
    assert_close(ours(x), theirs(torch.tensor(x)))


def test_unsupported_torch_options_are_clear_errors():
    with pytest.raises(ValueError, match="MaxPool2d: return_indices=True is not supported"):
        nn.MaxPool2d(2, return_indices=True)
    with pytest.raises(ValueError, match="AvgPool2d: divisor_override is not supported"):
        nn.AvgPool2d(2, divisor_override=3)


# ------------------------------------------------- the README's three styles run
DOC = pathlib.Path(__file__).parents[1] / "README.md"


def test_readme_three_styles_run_and_the_torch_loop_is_torch(capsys):
    section = DOC.read_text().split("## Three styles", 1)[1].split("\n## ", 1)[0]
    data, functional, reference, torch_loop = re.findall(r"```python\n(.*?)```", section, re.S)
    ns: dict = {}
    exec(compile(data, "README.md", "exec"), ns)
    runs = []
    for block in (functional, reference, torch_loop):
        run = dict(ns)
        exec(compile(block, "README.md", "exec"), run)
        runs.append(run)
    assert np.isfinite(float(runs[0]["loss"])) and np.isfinite(runs[1]["loss"].item())
    assert runs[0]["opt_state"].step == len(ns["batches"])
    # the same loop with torch's imports, on tensors: it is torch's loop
    assert "from nptfunc import nn, optim" in torch_loop
    tns = {"batches": [(torch.tensor(x), torch.tensor(y)) for x, y in ns["batches"]]}
    exec(compile(torch_loop.replace("from nptfunc import nn, optim", "from torch import nn, optim"),
                 "README.md", "exec"), tns)
    assert list(tns["weights"]) == list(runs[2]["weights"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 2 and all(line.startswith("last loss ") for line in printed)

"""``nn.functional``, ``nn.init``, ``nn.utils``, the containers and ``utils.data`` against torch."""

import numpy as np
import pytest

import nptfunc.torch as nt
from nptfunc import nn, random
from nptfunc.nn import functional as F
from nptfunc.nn._tensor import Tensor
from nptfunc.testing import assert_close

torch = pytest.importorskip("torch")
TF = torch.nn.functional

# name -> (call(F, *inputs), input shapes; inputs after the first float ones may be int targets)
CASES = {
    "relu": (lambda f, x: f.relu(x), [(3, 4)]),
    "leaky_relu": (lambda f, x: f.leaky_relu(x, 0.2), [(3, 4)]),
    "gelu": (lambda f, x: f.gelu(x), [(3, 4)]),
    "gelu_tanh": (lambda f, x: f.gelu(x, approximate="tanh"), [(3, 4)]),
    "silu": (lambda f, x: f.silu(x), [(3, 4)]),
    "elu": (lambda f, x: f.elu(x, 0.7), [(3, 4)]),
    "sigmoid": (lambda f, x: f.sigmoid(x), [(3, 4)]),
    "tanh": (lambda f, x: f.tanh(x), [(3, 4)]),
    "softmax": (lambda f, x: f.softmax(x, dim=0), [(3, 4)]),
    "log_softmax": (lambda f, x: f.log_softmax(x, dim=-1), [(3, 4)]),
    "linear": (lambda f, x, w, b: f.linear(x, w, b), [(5, 3), (4, 3), (4,)]),
    "conv1d": (lambda f, x, w, b: f.conv1d(x, w, b, stride=2, padding=1), [(2, 3, 9), (4, 3, 3), (4,)]),
    "conv2d": (lambda f, x, w: f.conv2d(x, w, padding=1, dilation=2), [(2, 2, 6, 6), (4, 2, 3, 3)]),
    "conv2d_groups": (lambda f, x, w, b: f.conv2d(x, w, b, groups=2), [(2, 4, 5, 5), (4, 2, 3, 3), (4,)]),
    "max_pool1d": (lambda f, x: f.max_pool1d(x, 2), [(2, 3, 8)]),
    "max_pool2d": (lambda f, x: f.max_pool2d(x, 3, 2, 1), [(2, 3, 7, 7)]),
    "avg_pool1d": (lambda f, x: f.avg_pool1d(x, 3, 2), [(2, 3, 9)]),
    "avg_pool2d": (lambda f, x: f.avg_pool2d(x, 2), [(2, 3, 6, 6)]),
    "adaptive_avg_pool2d": (lambda f, x: f.adaptive_avg_pool2d(x, (2, 3)), [(2, 3, 5, 7)]),
    "layer_norm": (lambda f, x, w, b: f.layer_norm(x, (4,), w, b), [(3, 4), (4,), (4,)]),
    "group_norm": (lambda f, x, w, b: f.group_norm(x, 2, w, b), [(2, 4, 3), (4,), (4,)]),
    "pad": (lambda f, x: f.pad(x, (1, 2, 0, 1)), [(2, 3, 4)]),
    "interpolate": (lambda f, x: f.interpolate(x, scale_factor=2)[..., :3] + f.interpolate(x, size=(6, 3)),
                    [(2, 3, 3, 3)]),
    "interpolate_bilinear": (lambda f, x: f.interpolate(x, size=(5, 4), mode="bilinear")
                             + f.interpolate(x, size=(5, 4), mode="bilinear", align_corners=True),
                             [(2, 3, 3, 2)]),
    "interpolate_linear": (lambda f, x: f.interpolate(x, scale_factor=1.5, mode="linear"), [(2, 3, 4)]),
    "sdpa_causal": (lambda f, q, k, v: f.scaled_dot_product_attention(q, k, v, is_causal=True),
                    [(2, 3, 4, 5), (2, 3, 4, 5), (2, 3, 4, 6)]),
    "sdpa_mask_scale": (lambda f, q, k, v, m: f.scaled_dot_product_attention(q, k, v, attn_mask=m.detach(),
                                                                                       scale=0.3),
                        [(2, 4, 5), (2, 6, 5), (2, 6, 3), (4, 6)]),
    "embedding": (lambda f, w: f.embedding((torch.tensor if f is TF else np.asarray)([[0, 2, 2], [3, 1, 0]]), w,
                                           padding_idx=1), [(4, 3)]),
    "batch_norm_train": (lambda f, x, w, b: f.batch_norm(x, None, None, w, b, training=True), [(4, 3, 5), (3,),
                                                                                                 (3,)]),
    "batch_norm_eval": (lambda f, x, m, v: f.batch_norm(x, m.detach(), (v * v + 0.5).detach()),
                        [(4, 3, 2, 2), (3,), (3,)]),
    "mse_loss": (lambda f, x, t: f.mse_loss(x, t), [(3, 4), (3, 4)]),
    "l1_loss": (lambda f, x, t: f.l1_loss(x, t, reduction="sum"), [(3, 4), (3, 4)]),
    "bce_logits": (lambda f, x, t: f.binary_cross_entropy_with_logits(x, t), [(3, 4), (3, 4)]),
    "cross_entropy": (lambda f, x, t: f.cross_entropy(x, t, label_smoothing=0.1), [(5, 4), "classes"]),
    "nll_loss": (lambda f, x, t: f.nll_loss(f.log_softmax(x, dim=1), t, reduction="sum"), [(5, 4), "classes"]),
}


def _make(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        out.append(rng.integers(0, 4, 5) if s == "classes" else rng.standard_normal(s).astype(dtype))
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_functional_matches_torch_forward_and_every_gradient(name, dtype):
    f, shapes = CASES[name]
    arrays = _make(shapes, dtype)
    if name == "bce_logits":
        arrays[1] = (arrays[1] > 0).astype(dtype)
    ours = [Tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    theirs = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    y, yt = f(F, *ours), f(TF, *theirs)
    assert y.dtype == dtype
    assert_close(y, yt.detach(), name="y")
    g = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    y.backward(g)
    yt.backward(torch.tensor(g))
    differentiable = ours[:1] if name.endswith(("loss", "logits", "entropy")) else ours  # no target grads
    for i, (t, tt) in enumerate(zip(differentiable, theirs, strict=False)):
        if tt.grad is not None:
            assert_close(t.grad, tt.grad, name=f"grad {i}")


def test_batch_norm_updates_running_statistics_as_torch():
    x = np.random.default_rng(0).standard_normal((6, 3))
    ours = [Tensor(np.zeros(3)), Tensor(np.ones(3))]
    theirs = [torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)]
    F.batch_norm(Tensor(x), *ours, training=True, momentum=0.3)
    TF.batch_norm(torch.tensor(x), *theirs, training=True, momentum=0.3)
    for a, b in zip(ours, theirs, strict=True):
        assert_close(a, b)
    with pytest.raises(TypeError, match="pass them as tensors"):
        F.batch_norm(Tensor(x), np.zeros(3), np.ones(3), training=True)


def test_dropout_uses_the_seeded_stream_and_missing_layers_are_clear():
    x = Tensor(np.ones((4, 50)), requires_grad=True)
    nt.manual_seed(3)
    a = F.dropout(x, 0.5)
    nt.manual_seed(3)
    b = F.dropout(x, 0.5)
    assert np.array_equal(a.data, b.data) and set(np.unique(a.data)) == {0.0, 2.0}
    a.sum().backward()
    assert np.array_equal(x.grad, a.data)
    assert F.dropout(x, 0.5, training=False) is x


def test_module_list_dict_parameter_list_follow_torch():
    layers = nn.ModuleList([nn.Linear(2, 3), nn.ReLU()])
    layers.append(nn.Linear(3, 1))
    assert len(layers) == 3 and isinstance(layers[-1], nn.Linear) and len(layers[1:]) == 2
    d = nn.ModuleDict({"a": nn.Linear(2, 2)})
    d["b"] = nn.Tanh()
    assert list(d) == ["a", "b"] and "a" in d
    ps = nn.ParameterList([np.ones(2), np.zeros(3)])
    owner = nn.Module()
    owner.layers, owner.d, owner.ps = layers, d, ps
    assert [n for n, _ in owner.named_parameters()] == [
        "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias", "d.a.weight", "d.a.bias",
        "ps.0", "ps.1"]
    assert [n for n, _ in owner.named_parameters()] == [
        n for n, _ in _torch_owner().named_parameters()]


def _torch_owner():
    owner = torch.nn.Module()
    owner.layers = torch.nn.ModuleList([torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)])
    owner.d = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2), "b": torch.nn.Tanh()})
    owner.ps = torch.nn.ParameterList([torch.ones(2), torch.zeros(3)])
    return owner


@pytest.mark.parametrize(("init", "args", "bound"), [
    ("kaiming_uniform_", {"a": 5 ** 0.5}, lambda fi, fo: (1 / fi) ** 0.5),
    ("xavier_uniform_", {"gain": 2.0}, lambda fi, fo: 2.0 * (6 / (fi + fo)) ** 0.5),
    ("uniform_", {"a": -0.3, "b": 0.3}, lambda fi, fo: 0.3),
])
def test_init_draws_from_keys_within_torchs_bounds(init, args, bound):
    p = nn.Parameter(np.zeros((64, 32, 3, 3), np.float32))
    getattr(nn.init, init)(p, **args, key=random.key(0))
    fan_in, fan_out = 32 * 9, 64 * 9
    b = bound(fan_in, fan_out)
    assert p.dtype == np.float32 and np.abs(p.data).max() <= b and np.abs(p.data).max() > 0.95 * b
    q = nn.Parameter(np.zeros((64, 32, 3, 3), np.float32))
    getattr(nn.init, init)(q, **args, key=random.key(0))
    assert np.array_equal(p.data, q.data)
    assert abs(nn.init.calculate_gain("leaky_relu", 0.2) - torch.nn.init.calculate_gain("leaky_relu", 0.2)) < 1e-12
    nn.init.zeros_(p)
    assert not p.data.any()
    with pytest.raises(ValueError, match="kaiming_uniform_: fan in and fan out need a tensor of at least 2"):
        nn.init.kaiming_uniform_(nn.Parameter(np.zeros(3)))


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_and_value_match_torch(norm_type):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(s) for s in ((3, 4), (5,))]
    ours = [nn.Parameter(np.zeros(g.shape)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for p, tp, g in zip(ours, theirs, grads, strict=True):
        p.grad, tp.grad = g.copy(), torch.tensor(g)
    total = nn.utils.clip_grad_norm_(ours, 0.5, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, 0.5, norm_type)
    assert_close(total, ttotal.item())
    for p, tp in zip(ours, theirs, strict=True):
        assert_close(p.grad, tp.grad)
    nn.utils.clip_grad_value_(ours, 0.01)
    torch.nn.utils.clip_grad_value_(theirs, 0.01)
    for p, tp in zip(ours, theirs, strict=True):
        assert_close(p.grad, tp.grad)


def test_data_loader_batches_shuffles_from_keys_and_drops_last():
    x, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    ds = nt.utils.data.TensorDataset(nt.from_numpy(x), nt.from_numpy(y))
    plain = nt.utils.data.DataLoader(ds, batch_size=4)
    assert len(plain) == 3 and [len(b[1]) for b in plain] == [4, 4, 2]
    assert np.array_equal(next(iter(plain))[0].data, x[:4])
    dropped = nt.utils.data.DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(b[1]) for b in dropped] == [4, 4]
    shuffled = nt.utils.data.DataLoader(ds, batch_size=10, shuffle=True, key=7)
    first, second = (next(iter(shuffled))[1].data for _ in range(2))
    assert sorted(first) == list(range(10)) and not np.array_equal(first, second)  # a new order per epoch
    again = nt.utils.data.DataLoader(ds, batch_size=10, shuffle=True, key=7)
    assert np.array_equal(next(iter(again))[1].data, first)
    with pytest.raises(ValueError, match="TensorDataset: size mismatch"):
        nt.utils.data.TensorDataset(np.zeros(3), np.zeros(4))


def test_top_level_names_follow_torch(tmp_path):
    assert nt.tensor([1.0, 2.0]).dtype == nt.float32 and nt.tensor([1, 2]).dtype == nt.long
    assert nt.arange(4).dtype == nt.int64 and nt.zeros(2, 3).shape == (2, 3)
    nt.manual_seed(0)
    a = nt.randn(3)
    nt.manual_seed(0)
    assert np.array_equal(a.data, nt.randn(3).data)
    x = nt.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = nt.cat([x, x * 2], dim=1).sum() + nt.stack([x, x]).mean() + nt.where(x > 2, x, 0.0).sum()
    y.backward()
    xt = torch.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    (torch.cat([xt, xt * 2], dim=1).sum() + torch.stack([xt, xt]).mean()
     + torch.where(xt > 2, xt, 0.0).sum()).backward()
    assert_close(x.grad, xt.grad)
    assert nt.flatten(x, 0).shape == (6,) and str(nt.device("cpu")) == "cpu"
    with pytest.raises(ValueError, match="no GPU backend"):
        nt.zeros(2, device="cuda")
    nt.save(nn.Linear(2, 2, key=0).state_dict(), tmp_path / "mnist_cnn.pt")
    assert set(nt.load(tmp_path / "mnist_cnn.pt")) == {"weight", "bias"}
    with nt.no_grad():
        assert (x * 2).grad_fn is None

"""A ReLU followed by a max pooling runs as the pooling, then the ReLU (``containers.pool_first``).

The swap must be invisible: torch's outputs and every gradient, on data made to
break it (windows of ties, of exact zeros, of negatives only, NaN and infinities),
for 1-d and 2-d pooling with padding, strides, dilation and ceil_mode, in float32
and float64, in the core's ``layers.Sequential`` and the facade's chained
``nn.Sequential``.
"""

import numpy as np
import pytest

from nptfunc import layers, nn, random
from nptfunc.layers import activation
from nptfunc.layers.containers import pool_first

torch = pytest.importorskip("torch")

TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-10, "atol": 1e-12}}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}

POOLS = [  # (ours, torch's, input shape without the batch)
    (layers.MaxPool2d(2), torch.nn.MaxPool2d(2), (3, 6, 6)),
    (layers.MaxPool2d(3, stride=2, padding=1), torch.nn.MaxPool2d(3, stride=2, padding=1), (3, 7, 5)),
    (layers.MaxPool2d(2, dilation=2, ceil_mode=True), torch.nn.MaxPool2d(2, dilation=2, ceil_mode=True),
     (2, 7, 7)),
    (layers.MaxPool1d(2), torch.nn.MaxPool1d(2), (3, 8)),
    (layers.MaxPool1d(3, stride=1, padding=1), torch.nn.MaxPool1d(3, stride=1, padding=1), (2, 9)),
]


@pytest.fixture
def relu_inputs(monkeypatch):
    """The shapes of the inputs ReLU's math sees, in order."""
    seen = []
    original = activation.ReLU._apply

    def spy(self, params, x):
        seen.append(x.shape)
        return original(self, params, x)

    monkeypatch.setattr(activation.ReLU, "_apply", spy)
    return seen


def _hostile(shape, dtype, seed):
    """Values in {-2, -1, -0, 0, 1, 2} (ties everywhere), with NaN and +-inf sprinkled in."""
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([-2.0, -1.0, -0.0, 0.0, 1.0, 2.0]), size=shape).astype(dtype)
    flat = x.reshape(-1)
    idx = rng.permutation(flat.size)
    flat[idx[:2]] = np.nan
    flat[idx[2:4]] = np.inf
    flat[idx[4:7]] = -np.inf
    return x


def _run_both(ours, theirs, x, dy, dtype):
    params, state = ours.init(random.key(0)), ours.init_state(random.key(1))
    y, vjp, _ = ours.apply(params, x, state, train=True)
    dparams, dx = vjp(dy)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = theirs.to(TORCH_DTYPE[dtype])(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])
    return dparams


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("pool", "t_pool", "shape"), POOLS)
def test_relu_then_max_pool_matches_torch_on_ties_zeros_nan_and_infinities(pool, t_pool, shape, dtype):
    ours = layers.Sequential(layers.ReLU(), pool)
    assert pool_first(ours.layers[0], ours.layers[1])
    theirs = torch.nn.Sequential(torch.nn.ReLU(), t_pool)
    for seed in range(4):
        x = _hostile((4, *shape), dtype, seed)
        y_shape = ours.output_shape(x.shape)
        dy = random.normal(random.key(seed), y_shape, dtype=dtype)
        _run_both(ours, theirs, x, dy, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_pooling_runs_first_on_the_full_input_and_the_relu_on_the_pooled_values(dtype, relu_inputs):
    model = layers.Sequential(layers.Conv2d(1, 2, 3, padding=1, dtype=dtype), layers.ReLU(), layers.MaxPool2d(2),
                              layers.Flatten(), layers.Linear(2 * 3 * 3, 4, dtype=dtype), layers.ReLU())
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    x = random.normal(random.key(2), (3, 1, 6, 6), dtype=dtype)
    model.apply(params, x, state, train=True)
    assert relu_inputs == [(3, 2, 3, 3), (3, 4)]  # the first ReLU sees the pooled values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("need_dx", [True, False])
def test_a_cnn_with_the_pattern_matches_torch_in_its_params_and_input_gradients(dtype, need_dx):
    ours = layers.Sequential(layers.ReLU(), layers.MaxPool2d(2), layers.Conv2d(2, 3, 3, padding=1, dtype=dtype),
                             layers.ReLU(), layers.MaxPool2d(2), layers.Flatten(),
                             layers.Linear(3 * 2 * 2, 2, dtype=dtype))
    theirs = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(2, 3, 3, padding=1),
                                 torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(3 * 2 * 2, 2)).to(TORCH_DTYPE[dtype])
    params, state = ours.init(random.key(0)), ours.init_state(random.key(1))
    with torch.no_grad():
        theirs[2].weight.copy_(torch.from_numpy(np.array(params[2].weight)))
        theirs[2].bias.copy_(torch.from_numpy(np.array(params[2].bias)))
        theirs[6].weight.copy_(torch.from_numpy(np.array(params[6].weight)))
        theirs[6].bias.copy_(torch.from_numpy(np.array(params[6].bias)))
    x = _hostile((4, 2, 8, 8), dtype, 7)
    x[np.isnan(x) | np.isinf(x)] = 0.5  # finite: NaN would reach every parameter gradient
    dy = random.normal(random.key(3), (4, 2), dtype=dtype)
    y, vjp, _ = ours.apply(params, x, state, train=True, need_dx=need_dx)
    dparams, dx = vjp(dy)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = theirs(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(dparams[2].weight, theirs[2].weight.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(dparams[2].bias, theirs[2].bias.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(dparams[6].weight, theirs[6].weight.grad.numpy(), **TOL[dtype])
    if need_dx:
        np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])
    else:
        assert dx is None


def test_other_activations_and_poolings_keep_their_order():
    assert not pool_first(layers.LeakyReLU(), layers.MaxPool2d(2))
    assert not pool_first(layers.ReLU(), layers.AvgPool2d(2))
    assert not pool_first(layers.MaxPool2d(2), layers.ReLU())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_facade_chain_swaps_too_and_a_childs_backward_still_replays_its_own_call(dtype):
    ours = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(2 * 3 * 3, 3, dtype=dtype), key=0)
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                 torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 3, 3)).to(TORCH_DTYPE[dtype])
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    x = random.normal(random.key(1), (4, 1, 6, 6), dtype=dtype)
    y = np.array([0, 2, 1, 1])
    out = ours(x)
    t_out = theirs(torch.from_numpy(x))
    np.testing.assert_allclose(out.data, t_out.detach().numpy(), **TOL[dtype])
    nn.CrossEntropyLoss()(out, y).backward(retain_graph=True)
    torch.nn.CrossEntropyLoss()(t_out, torch.from_numpy(y)).backward()
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), **TOL[dtype], err_msg=name)
    for child in (1, 2):  # the ReLU's and the pooling's own calls, on their own inputs
        t_in = theirs[:child](torch.from_numpy(x)).detach().requires_grad_()
        t_y = theirs[child](t_in)
        dy = random.normal(random.key(child), tuple(t_y.shape), dtype=dtype)
        dx = ours[child].backward(dy)
        t_y.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(dx, t_in.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_facade_chain_pools_first_and_module_backward_recomputes_the_skipped_dx(dtype, relu_inputs):
    ours = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 3, dtype=dtype), key=0)
    theirs = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(2 * 3 * 3, 3)).to(TORCH_DTYPE[dtype])
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    x = _hostile((4, 2, 6, 6), dtype, 3)
    x[np.isnan(x) | np.isinf(x)] = -0.5
    dy = random.normal(random.key(4), (4, 3), dtype=dtype)
    out = ours(x)
    assert relu_inputs == [(4, 2, 3, 3)]
    dx = ours.backward(dy)  # the input's dx was skipped in the forward (a proxy): recomputed on the input
    xt = torch.from_numpy(x.copy()).requires_grad_()
    t_out = theirs(xt)
    t_out.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(out.data, t_out.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(ours[3].weight.grad, theirs[3].weight.grad.numpy(), **TOL[dtype])

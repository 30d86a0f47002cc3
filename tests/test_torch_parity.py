"""End-to-end: the same training, written once, run with torch and with nptfunc's facade.

The torch loop below takes the ``nn`` and ``optim`` modules as arguments: the one
function trains a torch model (``torch.nn``, ``torch.optim``) and an nptfunc
model (``nptfunc.nn``, ``nptfunc.optim``); only the imports differ. From the same
initial weights, in float64, the parameters and running statistics agree to 1e-8
after 20 steps of Adam with a StepLR; so do those of the reference project's
``nn.Net`` loop.
"""

import numpy as np
import pytest
import torch

from nptfunc import convert, layers, nn, optim, random
from nptfunc.testing import assert_close, leaves_equal

STEPS = 20


def build(nn_module):
    """The model of the issue's Done-when, written once for either library."""
    return nn_module.Sequential(
        nn_module.Conv2d(1, 4, 3, padding=1),
        nn_module.BatchNorm2d(4),
        nn_module.ReLU(),
        nn_module.MaxPool2d(2),
        nn_module.Dropout(0.0),
        nn_module.Flatten(),
        nn_module.Linear(4 * 4 * 4, 10),
    ).double()


def batches(as_tensor):
    """20 batches of (8, 1, 8, 8) images and integer labels, the same for both libraries."""
    out = []
    for t in range(STEPS):
        k = random.fold_in(random.key(42), t)
        x = random.normal(k, (8, 1, 8, 8), dtype=np.float64)
        y = random.permutation(random.fold_in(k, 1), 10)[:8].astype(np.int64)
        out.append((torch.tensor(x), torch.tensor(y)) if as_tensor else (x, y))
    return out


def torch_style_training(nn_module, optim_module, model, data):
    """A torch MNIST-style loop; ported by changing only the imports."""
    criterion = nn_module.CrossEntropyLoss()
    optimizer = optim_module.Adam(model.parameters(), lr=1e-2)
    scheduler = optim_module.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    model.train()
    losses = []
    for x, y in data:
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out, y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    model.eval()
    return losses, optimizer.param_groups[0]["lr"]


def reference_style_training(model, data):
    """The reference project's loop: nn.Net, net.loss, net.backward()."""
    net = nn.Net(model, nn.CrossEntropyLoss())
    optimizer = optim.Adam(net.parameters(), lr=1e-2)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    net.train()
    losses = []
    for x, y in data:
        pred = net(x)
        loss = net.loss(pred, y)
        optimizer.zero_grad()
        net.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    net.eval()
    return losses


def _assert_same_state(model, tmodel):
    sd, tsd = model.state_dict(), tmodel.state_dict()
    assert list(sd) == list(tsd)
    for k, v in tsd.items():
        if v.dtype == torch.int64:
            assert int(sd[k]) == int(v), k
        else:
            assert_close(sd[k], v, rtol=1e-8, name=k)


@pytest.fixture(scope="module")
def torch_run():
    torch.manual_seed(0)
    tmodel = build(torch.nn)
    start = convert.state_dict_from_torch(tmodel.state_dict())
    losses, lr = torch_style_training(torch.nn, torch.optim, tmodel, batches(as_tensor=True))
    return start, tmodel, losses, lr


def test_torch_loop_ports_by_changing_the_imports(torch_run):
    start, tmodel, tlosses, tlr = torch_run
    model = build(nn)
    model.load_state_dict(start)
    losses, lr = torch_style_training(nn, optim, model, batches(as_tensor=False))
    assert lr == pytest.approx(tlr) and tlr == pytest.approx(1e-2 * 0.5**4)
    assert_close(np.array(losses), np.array(tlosses), rtol=1e-8, name="losses")
    _assert_same_state(model, tmodel)
    assert int(model.state_dict()["1.num_batches_tracked"]) == STEPS
    x = batches(as_tensor=False)[0][0]
    assert_close(model(x), tmodel(torch.tensor(x)), rtol=1e-8, name="eval output")


def test_reference_net_loop_matches_torch(torch_run):
    start, tmodel, tlosses, _ = torch_run
    model = build(nn)
    model.load_state_dict(start)
    losses = reference_style_training(model, batches(as_tensor=False))
    assert_close(np.array(losses), np.array(tlosses), rtol=1e-8, name="losses")
    _assert_same_state(model, tmodel)


def test_issue_example_architecture_with_radam():
    """The issue's nn.Net example (smaller images) with RAdam, 5 steps, against torch."""

    def arch(m):
        return m.Sequential(m.Conv2d(1, 16, 3, padding=1), m.Flatten(), m.Linear(16 * 6 * 6, 32),
                            m.BatchNorm1d(32), m.Tanh(), m.Linear(32, 10)).double()

    torch.manual_seed(1)
    tmodel = arch(torch.nn)
    net = nn.Net(arch(nn), nn.CrossEntropyLoss())
    net.module.load_state_dict(tmodel.state_dict())
    optimizer = optim.RAdam(net.parameters(), lr=1e-3)
    toptimizer = torch.optim.RAdam(tmodel.parameters(), lr=1e-3)
    for t in range(5):
        k = random.fold_in(random.key(7), t)
        x, y = random.normal(k, (6, 1, 6, 6), dtype=np.float64), random.permutation(random.fold_in(k, 1), 10)[:6]
        pred = net(x)
        loss = net.loss(pred, y)
        optimizer.zero_grad()
        net.backward()
        optimizer.step()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(y))
        toptimizer.zero_grad()
        tloss.backward()
        toptimizer.step()
        assert_close(loss.item(), tloss.item(), rtol=1e-8)
    _assert_same_state(net.module, tmodel)


def test_conv_model_facade_and_core_identical_and_reprs_match():
    key = random.key(5)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, dtype=np.float64), nn.BatchNorm2d(4, dtype=np.float64),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(64, 10, dtype=np.float64), key=key)
    core = layers.Sequential(*(m.layer for m in model))
    k_params, k_state = random.split(key)
    params, state = core.init(k_params), core.init_state(k_state)
    assert all(leaves_equal(m.params, p) for m, p in zip(model, params, strict=True))
    x, dy = random.normal(random.key(1), (3, 1, 8, 8), dtype=np.float64), random.normal(random.key(2), (3, 10), dtype=np.float64)
    y = model(x)
    y_core, vjp, new_state = core.apply(params, x, state, train=True)
    assert np.array_equal(y, y_core)  # the same dropout mask: the same key
    assert np.array_equal(model.backward(dy), vjp(dy)[1])
    dparams = vjp(dy)[0]
    assert np.array_equal(model[0].weight.grad, dparams[0].weight)
    assert leaves_equal(model[1].state, new_state[1]) and model[4].state == new_state[4]
    assert repr(build(nn)) == repr(build(torch.nn))
    assert list(build(nn).state_dict()) == list(build(torch.nn).state_dict())

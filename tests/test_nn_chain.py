"""``nn.Sequential`` of functional modules runs as one tape node (``run_chain``), as torch computes.

The chain must give what calling each child in turn gives: torch's outputs, parameter
and input gradients, BatchNorm statistics, each child's own training flag, the skipped
``dx`` recomputed for ``module.backward(dy)``, and ``child.backward(dy)`` after a
chained forward (the child's call replayed). Anything else in a Sequential (a custom
module) keeps the per-child path.
"""

import numpy as np
import pytest

import nptfunc.torch as nt
from nptfunc import nn, random
from nptfunc.nn._functional_module import chainable

torch = pytest.importorskip("torch")

TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-10, "atol": 1e-12}}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def _cnn(dtype):
    ours = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, dtype=dtype), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5, dtype=dtype), nn.Tanh(),
                         nn.Linear(5, 3, dtype=dtype), key=0)
    theirs = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                 torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 5),
                                 torch.nn.Tanh(), torch.nn.Linear(5, 3)).to(TORCH_DTYPE[dtype])
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    return ours, theirs


def _check_grads(ours, theirs, dtype):
    for (name, p), (tname, tp) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert name == tname
        if tp.grad is None:
            assert p.grad is None, name
        else:
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), **TOL[dtype], err_msg=name)


def _data(dtype, n=4):
    x = random.normal(random.key(1), (n, 2, 6, 6), dtype=dtype)
    y = np.array([0, 2, 1, 1, 0, 2][:n])
    return x, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_sequential_of_functional_modules_is_one_node_and_matches_torch(dtype):
    ours, theirs = _cnn(dtype)
    assert chainable(list(ours))
    x, y = _data(dtype)
    for _ in range(2):  # the second step runs on the first one's statistics
        out = ours(x)
        t_out = theirs(torch.from_numpy(x))
        assert out.grad_fn is not None and out.grad_fn.inputs[0].shape == x.shape  # one node from the input
        assert len(out.grad_fn.inputs) == 1 + len(list(ours.parameters()))
        np.testing.assert_allclose(out.data, t_out.detach().numpy(), **TOL[dtype])
        for m in (ours, theirs):
            m.zero_grad()
        nn.CrossEntropyLoss()(out, y).backward()
        torch.nn.CrossEntropyLoss()(t_out, torch.from_numpy(y)).backward()
        _check_grads(ours, theirs, dtype)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            np.testing.assert_allclose(getattr(ours[1], name), getattr(theirs[1], name).numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_child_keeps_its_own_training_flag(dtype):
    ours, theirs = _cnn(dtype)
    ours[1].eval()
    theirs[1].eval()
    x, y = _data(dtype)
    out = ours(x)
    t_out = theirs(torch.from_numpy(x))
    np.testing.assert_allclose(out.data, t_out.detach().numpy(), **TOL[dtype])
    nn.CrossEntropyLoss()(out, y).backward()
    torch.nn.CrossEntropyLoss()(t_out, torch.from_numpy(y)).backward()
    _check_grads(ours, theirs, dtype)
    assert int(ours[1].num_batches_tracked) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_module_backward_of_the_chain_gives_dx_and_the_gradients(dtype):
    ours, theirs = _cnn(dtype)
    x, _ = _data(dtype)
    dy = random.normal(random.key(3), (4, 3), dtype=dtype)
    ours(x)
    dx = ours.backward(dy)
    xt = torch.from_numpy(x).requires_grad_()
    theirs(xt).backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])
    _check_grads(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_input_that_requires_grad_gets_its_gradient(dtype):
    ours, theirs = _cnn(dtype)
    x, y = _data(dtype)
    xp = nn.Parameter(x)
    nn.CrossEntropyLoss()(ours(xp), y).backward()
    xt = torch.from_numpy(x).requires_grad_()
    torch.nn.CrossEntropyLoss()(theirs(xt), torch.from_numpy(y)).backward()
    np.testing.assert_allclose(xp.grad, xt.grad.numpy(), **TOL[dtype])
    _check_grads(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("child", [0, 1, 3, 5, 7])
def test_child_backward_after_a_chained_forward_replays_that_call(dtype, child):
    ours, theirs = _cnn(dtype)
    x, _ = _data(dtype)
    out = ours(x)
    # torch: the child alone, on the input it had in the whole forward
    t_in = theirs[:child](torch.from_numpy(x)).detach().requires_grad_()
    t_out = theirs[child](t_in)
    dy = random.normal(random.key(4), tuple(t_out.shape), dtype=dtype)
    dx = ours[child].backward(dy)
    t_out.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, t_in.grad.numpy(), **TOL[dtype])
    for (name, p), tp in zip(ours[child].named_parameters(), theirs[child].parameters(), strict=True):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), **TOL[dtype], err_msg=name)
    others = [p for i, m in enumerate(ours) if i != child for p in m.parameters()]
    assert all(p.grad is None for p in others)
    assert int(ours[1].num_batches_tracked) == 1  # the replay does not update the statistics again
    assert out.grad_fn is not None


def test_a_child_used_twice_sums_its_gradients():
    lin = nn.Linear(4, 4, dtype=np.float64, key=0)
    ours = nn.Sequential(lin, nn.Tanh(), lin)
    t_lin = torch.nn.Linear(4, 4).double()
    t_lin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in lin.state_dict().items()})
    theirs = torch.nn.Sequential(t_lin, torch.nn.Tanh(), t_lin)
    x = random.normal(random.key(1), (3, 4), dtype=np.float64)
    ours(x).sum().backward()
    theirs(torch.from_numpy(x)).sum().backward()
    np.testing.assert_allclose(lin.weight.grad, t_lin.weight.grad.numpy(), **TOL[np.float64])
    np.testing.assert_allclose(lin.bias.grad, t_lin.bias.grad.numpy(), **TOL[np.float64])


@pytest.mark.parametrize("frozen", [0, 5])
def test_frozen_parameters_get_no_gradient_and_the_rest_match_torch(frozen):
    ours, theirs = _cnn(np.float64)
    for m in (ours[frozen], theirs[frozen]):
        for p in m.parameters():
            p.requires_grad_(False)
    x, y = _data(np.float64)
    nn.CrossEntropyLoss()(ours(x), y).backward()
    torch.nn.CrossEntropyLoss()(theirs(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    _check_grads(ours, theirs, np.float64)


def test_under_no_grad_the_chain_records_nothing_and_gives_the_same_values():
    ours, theirs = _cnn(np.float64)
    ours.eval()
    theirs.eval()
    x, _ = _data(np.float64)
    with nt.no_grad():
        out = ours(x)
    assert out.grad_fn is None and not out.requires_grad
    np.testing.assert_allclose(out.data, theirs(torch.from_numpy(x)).detach().numpy(), **TOL[np.float64])


def test_a_custom_module_keeps_the_per_child_path():
    class Twice(nn.Module):
        def forward(self, x):
            return x * 2

    ours = nn.Sequential(nn.Linear(3, 2, dtype=np.float64, key=0), Twice())
    assert not chainable(list(ours))
    x = random.normal(random.key(1), (4, 3), dtype=np.float64)
    out = ours(x)
    assert out.grad_fn.inputs[0].grad_fn is not None  # a node per child
    out.sum().backward()
    np.testing.assert_allclose(ours[0].weight.grad, 2 * np.ones((4, 2)).T @ x, **TOL[np.float64])


def test_a_backward_that_frees_the_chain_frees_each_childs_call_too():
    ours, _ = _cnn(np.float64)
    x, y = _data(np.float64)
    nn.CrossEntropyLoss()(ours(x), y).backward()
    assert all(m.__dict__["_last"].x is None for m in ours)  # no activations held after the pass
    with pytest.raises(RuntimeError, match=r"Linear.backward: trying to backward through the graph a second time"):
        ours[5].backward(np.ones((4, 5)))


def test_with_retain_graph_a_child_can_still_replay_its_call():
    ours, theirs = _cnn(np.float64)
    x, y = _data(np.float64)
    nn.CrossEntropyLoss()(ours(x), y).backward(retain_graph=True)
    t_in = theirs[:7](torch.from_numpy(x)).detach().requires_grad_()
    dy = random.normal(random.key(5), (4, 3), dtype=np.float64)
    dx = ours[7].backward(dy)
    theirs[7](t_in).backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, t_in.grad.numpy(), **TOL[np.float64])


def test_a_training_step_leaves_no_activation_alive_without_the_cycle_collector(monkeypatch):
    import gc
    import weakref

    from nptfunc import layers

    alive = []
    original = layers.Linear._apply

    def spy(self, params, x, *, need_dx=True):
        y, vjp = original(self, params, x, need_dx=need_dx)
        alive.append(weakref.ref(y))
        return y, vjp

    monkeypatch.setattr(layers.Linear, "_apply", spy)
    ours, _ = _cnn(np.float64)
    x, y = _data(np.float64)
    gc.disable()
    try:
        loss = nn.CrossEntropyLoss()(ours(x), y)
        loss.backward()
        del loss
        assert len(alive) == 2
        # the last Linear's output is the loss's input (kept by the Sequential's last call until its
        # next forward, as any module keeps its output); the first one's is gone
        assert alive[0]() is None
    finally:
        gc.enable()


def _embedding_model(dtype):
    ours = nn.Sequential(nn.Embedding(5, 3, dtype=dtype), nn.Flatten(), nn.Linear(6, 2, dtype=dtype), key=0)
    theirs = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Flatten(),
                                 torch.nn.Linear(6, 2)).to(TORCH_DTYPE[dtype])
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    return ours, theirs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_chain_on_indices_with_nothing_that_requires_grad_gives_torchs_values(dtype):
    ours, theirs = _embedding_model(dtype)
    for m in (ours, theirs):
        for p in m.parameters():
            p.requires_grad_(False)
    ids = np.array([[1, 2], [3, 4], [0, 0]])
    out = ours(ids)
    assert out.grad_fn is None
    np.testing.assert_allclose(out.data, theirs(torch.from_numpy(ids)).numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_embedding_childs_backward_after_a_chained_forward_gives_no_dx_and_torchs_gradient(dtype):
    ours, theirs = _embedding_model(dtype)
    ids = np.array([[1, 2], [3, 1], [0, 0]])
    ours(ids)
    dy = random.normal(random.key(6), (3, 2, 3), dtype=dtype)
    assert ours[0].backward(dy) is None  # indices have no gradient
    theirs[0](torch.from_numpy(ids)).backward(torch.from_numpy(dy))
    np.testing.assert_allclose(ours[0].weight.grad, theirs[0].weight.grad.numpy(), **TOL[dtype])

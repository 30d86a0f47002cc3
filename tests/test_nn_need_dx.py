"""The facade skips the input gradient nobody uses, and recomputes it for module.backward.

Module inputs are proxies that require grad (so that ``module.backward(dy)`` can return
``dx``). In a torch-style loop nothing reads a proxy's gradient, so the first layers
are applied with ``need_dx=False``; ``module.backward(dy)`` re-applies them (same
params, input and state: the same dropout mask) to get it.
"""

import numpy as np
import pytest

from nptfunc import layers, nn, random, tree

torch = pytest.importorskip("torch")


@pytest.fixture
def linear_spy(monkeypatch):
    seen = []
    original = layers.Linear._apply

    def spy(self, params, x, *, need_dx=True):
        seen.append(need_dx)
        return original(self, params, x, need_dx=need_dx)

    monkeypatch.setattr(layers.Linear, "_apply", spy)
    return seen


def _model():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6, dtype=np.float64), nn.Dropout(0.5),
                         nn.BatchNorm1d(6, dtype=np.float64), nn.ReLU(), nn.Linear(6, 3, dtype=np.float64),
                         key=0)


def test_a_torch_style_loop_skips_the_first_layers_dx_and_matches_torch(linear_spy):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6, dtype=np.float64), nn.ReLU(),
                          nn.Linear(6, 3, dtype=np.float64), key=0)
    twin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.ReLU(),
                               torch.nn.Linear(6, 3)).double()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    x = random.normal(random.key(1), (5, 3, 4), dtype=np.float64)
    y = np.array([0, 2, 1, 1, 0])
    nn.CrossEntropyLoss()(model(x), y).backward()
    torch.nn.CrossEntropyLoss()(twin(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    assert linear_spy == [False, True]  # the first Linear's input is made from the proxy only
    for (name, p), (tname, tp) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        assert name == tname
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_module_backward_recomputes_the_skipped_dx_with_the_same_mask_and_one_state_update(linear_spy):
    model = _model()
    model.train()
    x = random.normal(random.key(1), (5, 3, 4), dtype=np.float64)
    dy = random.normal(random.key(2), (5, 3), dtype=np.float64)
    core = layers.Sequential(*(m.layer for m in model))
    params = tuple(m.params for m in model)
    state = tuple(m.state for m in model)
    y = model(x)
    dx = model.backward(dy)
    assert linear_spy[:2] == [False, True] and linear_spy[2:] == [True]  # the re-application asks for dx
    y_core, vjp, new_state = core.apply(params, x, state, train=True)
    np.testing.assert_array_equal(y.data, y_core)  # the same dropout mask
    dparams, dx_core = vjp(dy)
    np.testing.assert_array_equal(dx, dx_core)
    for m, dp in zip(model, dparams, strict=True):
        for (name, p), g in zip(m.named_parameters(), tree.tree_leaves(dp), strict=True):
            np.testing.assert_array_equal(p.grad, g, err_msg=name)
    assert int(model[3].num_batches_tracked) == 1  # the re-application's state is dropped
    np.testing.assert_array_equal(model[3].running_mean, new_state[3].running_mean)


def test_a_layer_called_on_a_tensor_that_requires_grad_still_gives_dx(linear_spy):
    lin = nn.Linear(4, 2, dtype=np.float64)
    x = nn.Parameter(random.normal(random.key(0), (3, 4), dtype=np.float64))
    lin(x).sum().backward()
    assert linear_spy == [True]
    np.testing.assert_allclose(x.grad, np.ones((3, 2)) @ np.asarray(lin.weight.data))

"""A Sequential with stateful children, through the long form, against torch over several steps."""

import numpy as np
import pytest
import torch
from conftest import torch_dtype

from nptfunc import layers, random, tree
from nptfunc.testing import assert_close, assert_layer_matches_torch, leaves_equal, params_to_torch, to_torch

Conv2d = layers.Conv2d

N, C_IN, C, HW, OUT = 3, 3, 4, 5, 6
DROP = 3  # the Dropout's position in the model


def _model(dtype):
    # no bias before BatchNorm (as usual): in training its gradient is exactly 0, and comparing
    # two roundings of 0 with a relative tolerance means nothing
    return layers.Sequential(Conv2d(C_IN, C, 3, padding=1, bias=False, dtype=dtype), layers.BatchNorm2d(C, dtype=dtype),
                             layers.ReLU(), layers.Dropout(0.3), layers.Flatten(),
                             layers.Linear(C * HW * HW, OUT, dtype=dtype))


class FixedMaskDropout(torch.nn.Module):
    """torch's Dropout with a given noise (``mask / (1 - p)``) in training; the identity in evaluation."""

    def __init__(self):
        super().__init__()
        self.noise = None

    def forward(self, x):
        return x * self.noise if self.training else x


def _torch_model(dtype):
    return torch.nn.Sequential(torch.nn.Conv2d(C_IN, C, 3, padding=1, bias=False), torch.nn.BatchNorm2d(C), torch.nn.ReLU(),
                               FixedMaskDropout(), torch.nn.Flatten(),
                               torch.nn.Linear(C * HW * HW, OUT)).to(torch_dtype(dtype))


def _x(shape, dtype, seed):
    return random.normal(random.key(seed), shape, dtype=dtype)


def _dropout_noise(model, state, dtype):
    """The noise our Dropout applies with ``state``: the same state gives the same mask."""
    ones = np.ones((N, C, HW, HW), dtype)
    noise, _, _ = model[DROP].apply(None, ones, state[DROP], train=True)
    assert 0 < (noise == 0).sum() < noise.size
    return noise


def _compare(model, params, state, module, x, dy, train):
    module.train(train)
    module.zero_grad(set_to_none=True)
    y, vjp, new_state = model.apply(params, x, state, train=train)
    xt = to_torch(x).requires_grad_(True)
    yt = module(xt)
    yt.backward(to_torch(dy))
    assert_close(y, yt, name="y")
    dparams, dx = vjp(dy)
    assert_close(dx, xt.grad, name="dx")
    named = dict(module.named_parameters())
    paths = [tree.path_str(p) for p, _ in tree.tree_flatten_with_path(dparams)[0]]
    assert sorted(paths) == sorted(named)  # every torch parameter has its gradient
    for path, g in tree.tree_flatten_with_path(dparams)[0]:
        assert_close(g, named[tree.path_str(path)].grad, name=f"d{tree.path_str(path)}")
    buffers = dict(module.named_buffers())
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert_close(getattr(new_state[1], name), buffers[f"1.{name}"], name=f"1.{name}")
    return y, dparams, new_state


def test_training_and_evaluation_steps_match_torch(dtype):
    model, module = _model(dtype), _torch_model(dtype)
    k_params, k_state = random.split(random.key(0))
    params, state = model.init(k_params), model.init_state(k_state)
    assert state[0] is None and state[2] is None and state[4] is None and state[5] is None
    assert isinstance(state[1], layers.BatchNormState) and isinstance(state[3], layers.DropoutState)
    params_to_torch(params, module, state)
    lr = np.asarray(0.1, dtype)
    for step in range(3):
        x, dy = _x((N, C_IN, HW, HW), dtype, step), _x((N, OUT), dtype, 100 + step)
        module[DROP].noise = to_torch(_dropout_noise(model, state, dtype))
        state0 = state
        y, dparams, state = _compare(model, params, state, module, x, dy, train=True)
        assert int(state[1].num_batches_tracked) == step + 1
        assert state[DROP] != state0[DROP]  # the next key
        # replaying the step from the old state gives the same result: nothing was mutated
        y_again, _, state_again = model.apply(params, x, state0, train=True)
        np.testing.assert_array_equal(y, y_again)
        assert leaves_equal(state, state_again)
        # one SGD step on both sides
        params = tree.tree_map(lambda p, g: p - lr * g, params, dparams)
        with torch.no_grad():
            for p in module.parameters():
                p -= 0.1 * p.grad
    # evaluation: running statistics, no dropout, the state comes back unchanged
    x, dy = _x((N, C_IN, HW, HW), dtype, 50), _x((N, OUT), dtype, 51)
    _, _, eval_state = _compare(model, params, state, module, x, dy, train=False)
    assert all(new is old for new, old in zip(eval_state, state, strict=True))


def test_stateful_sequential_refuses_the_short_form():
    model = _model(np.float32)
    with pytest.raises(TypeError, match=r"Sequential is stateful: call apply\(params, x, state, train=True\|False\)"):
        model.apply(model.init(random.key(0)), np.ones((N, C_IN, HW, HW), np.float32))
    assert model.stateful
    stateless = layers.Sequential(layers.Linear(3, 3), layers.BatchNorm1d(3, track_running_stats=False))
    assert not stateless.stateful
    y, _ = stateless.apply(stateless.init(random.key(0)), np.ones((2, 3), np.float32))
    assert y.shape == (2, 3)


def test_adding_a_layer_keeps_the_other_streams():
    """Keys are split per child: a child's params and state depend only on its position."""
    k = random.key(7)
    short = layers.Sequential(layers.BatchNorm1d(4), layers.Dropout(0.5))
    long = layers.Sequential(layers.BatchNorm1d(4), layers.Dropout(0.5), layers.Linear(4, 4), layers.Dropout(0.5))
    s_short, s_long = short.init_state(k), long.init_state(k)
    assert s_short[1] == s_long[1] and s_short[0] == s_long[0]
    assert s_long[1] != s_long[3]  # two dropout layers, two streams
    x = np.ones((50, 4), np.float32)
    y_short, _, _ = short.apply(short.init(k), x, s_short, train=True)
    (y_prefix, _, _) = layers.Sequential(*long.layers[:2]).apply(long.init(k)[:2], x, s_long[:2], train=True)
    np.testing.assert_array_equal(y_short, y_prefix)
    masks = [long.layers[i].apply(None, x, s_long[i], train=True)[0] != 0 for i in (1, 3)]
    assert not np.array_equal(*masks)


def test_nested_sequential_threads_nested_state_against_torch(dtype):
    model = layers.Sequential(layers.Sequential(layers.Linear(3, 4, bias=False, dtype=dtype),
                                                layers.BatchNorm1d(4, momentum=None, dtype=dtype)), layers.ReLU())
    module = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.BatchNorm1d(4, momentum=None)),
                                 torch.nn.ReLU()).to(torch_dtype(dtype))
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    assert isinstance(state[0][1], layers.BatchNormState)
    for step in range(3):
        module.zero_grad(set_to_none=True)
        x = _x((5, 3), dtype, step) + np.asarray(step, dtype)
        assert_layer_matches_torch(model, params, module, x, state=state, train=True)  # compares 0.1.running_*
        _, _, state = model.apply(params, x, state, train=True)
    assert int(state[0][1].num_batches_tracked) == 3
    module.zero_grad(set_to_none=True)
    assert_layer_matches_torch(model, params, module, _x((2, 3), dtype, 9), state=state, train=False)

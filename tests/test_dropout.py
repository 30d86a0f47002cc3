"""Dropout and Dropout2d: semantics (masks cannot be compared with torch's RNG), edge cases as torch."""

import math

import numpy as np
import pytest
import torch

from nptfunc import layers, random
from nptfunc.testing import to_torch

KEY = random.key(0)


def _x(shape, dtype=np.float64, seed=0):
    return random.normal(random.key(seed), shape, dtype=dtype)


def _scale(p, dtype):
    """torch's factor: ``1 / (1 - p)`` computed in the input's dtype."""
    return np.asarray(1, dtype) / np.asarray(1 - p, dtype)


def _within_sigmas(count, n, p, sigmas=5.0):
    """Whether ``count`` successes of ``n`` Bernoulli(p) trials lie within ``sigmas`` standard deviations."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_training_semantics(p, dtype):
    layer = layers.Dropout(p)
    state = layer.init_state(KEY)
    x = _x((400, 250), dtype)  # no exact zeros in a normal sample
    assert np.all(x != 0)
    y, vjp, new_state = layer.apply(None, x, state, train=True)
    assert y.dtype == dtype and y.shape == x.shape
    dropped = y == 0
    assert _within_sigmas(int(dropped.sum()), x.size, p)
    # kept values are exactly torch's x * (1 / (1 - p)) in the input's dtype, dropped exactly 0
    np.testing.assert_array_equal(y[~dropped], x[~dropped] * _scale(p, dtype))
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - p), rtol=4 * np.finfo(dtype).eps)
    # the vjp applies the same mask
    dy = _x(x.shape, dtype, seed=1)
    dparams, dx = vjp(dy)
    assert dparams is None and dx.dtype == dtype
    np.testing.assert_array_equal(dx, np.where(dropped, 0, dy * _scale(p, dtype)))
    assert new_state != state


def test_dropout_matches_torch_in_distribution():
    """The same drop rate and the same kept value as torch, on a large input."""
    p, n = 0.3, 200_000
    x = np.full(n, 2.0, np.float32)
    y, _, _ = layers.Dropout(p).apply(None, x, layers.Dropout(p).init_state(KEY), train=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yt = torch.nn.Dropout(p)(to_torch(x)).numpy()
    assert set(np.unique(y)) == set(np.unique(yt))  # {0, 2 * (1 / 0.7)} in float32, bitwise
    assert _within_sigmas(int((y == 0).sum()), n, p) and _within_sigmas(int((yt == 0).sum()), n, p)


def test_same_state_same_mask_next_state_new_mask():
    layer = layers.Dropout(0.5)
    x = np.ones((64, 64), np.float32)
    s0 = layer.init_state(KEY)
    y0, _, s1 = layer.apply(None, x, s0, train=True)
    y0_again, _, s1_again = layer.apply(None, x, s0, train=True)
    np.testing.assert_array_equal(y0, y0_again)
    assert s1 == s1_again and s1 != s0
    assert s0 == layer.init_state(KEY)  # the old state is untouched
    masks, state = [y0 != 0], s1
    for _ in range(4):
        y, _, state = layer.apply(None, x, state, train=True)
        masks.append(y != 0)
    for i in range(len(masks)):
        for j in range(i):
            agree = int((masks[i] == masks[j]).sum())
            assert _within_sigmas(agree, x.size, 0.5)  # independent masks agree half the time
    # a different key gives a different mask; the mask does not depend on the values
    y_other, _, _ = layer.apply(None, x, layer.init_state(random.key(1)), train=True)
    assert not np.array_equal(y_other != 0, masks[0])
    y_values, _, _ = layer.apply(None, 3 * x, s0, train=True)
    np.testing.assert_array_equal(y_values != 0, masks[0])


def test_keys_stay_small_over_many_steps():
    """The next key is re-rooted, so a long run does not grow (or slow down) the state."""
    layer = layers.Dropout(0.5)
    state = layer.init_state(random.split(KEY, 3)[2])
    seen = set()
    for _ in range(200):
        _, _, state = layer.apply(None, np.ones(3, np.float32), state, train=True)
        assert len(state.key.path) == 0
        seen.add(state.key)
    assert len(seen) == 200


@pytest.mark.parametrize("layer", [layers.Dropout(0.5), layers.Dropout2d(0.5)], ids=repr)
def test_eval_is_identity_and_keeps_the_state(layer, dtype):
    state = layer.init_state(KEY)
    x = _x((2, 3, 4, 5), dtype)
    y, vjp, new_state = layer.apply(None, x, state, train=False)
    np.testing.assert_array_equal(y, x)
    assert new_state is state
    dy = _x(x.shape, dtype, seed=1)
    dparams, dx = vjp(dy)
    assert dparams is None
    np.testing.assert_array_equal(dx, dy)
    module = (torch.nn.Dropout(0.5) if isinstance(layer, layers.Dropout) else torch.nn.Dropout2d(0.5)).eval()
    np.testing.assert_array_equal(module(to_torch(x)).numpy(), y)


@pytest.mark.parametrize("module_class", [torch.nn.Dropout, torch.nn.Dropout2d])
@pytest.mark.parametrize("p", [0.0, 1.0])
def test_p_zero_and_one_match_torch(module_class, p, dtype):
    layer = getattr(layers, module_class.__name__)(p)
    x = _x((2, 3, 2, 2), dtype)
    x[0, 0, 0, 0], x[0, 1, 0, 0], x[1, 2, 1, 1] = np.inf, -np.inf, np.nan
    dy = _x(x.shape, dtype, seed=1)
    state = layer.init_state(KEY)
    y, vjp, new_state = layer.apply(None, x, state, train=True)
    _, dx = vjp(dy)
    xt = to_torch(x).requires_grad_(True)
    yt = module_class(p)(xt)  # p = 0 and p = 1 draw no random numbers in torch
    yt.backward(to_torch(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())  # p = 1: x * 0, so inf and nan give nan
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    assert y.dtype == dx.dtype == dtype
    assert new_state != state  # every training call advances the key


@pytest.mark.parametrize("layer", [layers.Dropout(0.5), layers.Dropout2d(0.5)], ids=repr)
def test_empty_input(layer):
    state = layer.init_state(KEY)
    for train in (True, False):
        y, vjp, _ = layer.apply(None, np.zeros((0, 3, 2, 2), np.float32), state, train=train)
        assert y.shape == (0, 3, 2, 2)
        assert vjp(np.zeros_like(y))[1].shape == (0, 3, 2, 2)


def test_integer_input_is_cast_to_float32():
    y, _, _ = layers.Dropout(0.5).apply(None, np.arange(6).reshape(2, 3), layers.Dropout().init_state(KEY),
                                        train=True)
    assert y.dtype == np.float32


# ------------------------------------------------------------------------ Dropout2d
@pytest.mark.parametrize(("shape", "mask_shape"), [((40, 50, 3, 2), (40, 50, 1, 1)), ((200, 4, 1), (200, 1, 1)),
                                                   ((6, 7, 5, 5), (6, 7, 1, 1))])
@pytest.mark.parametrize("p", [0.25, 0.6])
def test_dropout2d_drops_whole_channels(shape, mask_shape, p, dtype):
    layer = layers.Dropout2d(p)
    assert layer.mask_shape(shape) == mask_shape
    x = _x(shape, dtype)
    y, vjp, _ = layer.apply(None, x, layer.init_state(KEY), train=True)
    dropped = y == 0
    channel_dropped = dropped.all(axis=(-2, -1), keepdims=True)
    np.testing.assert_array_equal(dropped, np.broadcast_to(channel_dropped, shape))  # all or nothing
    n_channels = math.prod(mask_shape)
    if n_channels >= 1000:
        assert _within_sigmas(int(channel_dropped.sum()), n_channels, p)
    else:
        assert 0 < channel_dropped.sum() < n_channels
    np.testing.assert_array_equal(y[~dropped], x[~dropped] * _scale(p, dtype))
    dy = _x(shape, dtype, seed=1)
    _, dx = vjp(dy)
    np.testing.assert_array_equal(dx, np.where(dropped, 0, dy * _scale(p, dtype)))


def test_dropout2d_unbatched_input_drops_channels_of_dim_0():
    """(C, H, W) input: C channels (torch's documented meaning; torch 2.13 warns and uses (N, C, L))."""
    layer = layers.Dropout2d(0.5)
    y, _, _ = layer.apply(None, np.ones((1000, 2, 3), np.float32), layer.init_state(KEY), train=True)
    per_channel = (y == 0).reshape(1000, -1)
    assert np.all(per_channel.all(axis=1) | ~per_channel.any(axis=1))
    assert _within_sigmas(int(per_channel.all(axis=1).sum()), 1000, 0.5)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("factory", "exc", "match"), [
    (lambda: layers.Dropout(-0.1), ValueError,
     r"Dropout: expected p \(the drop probability\) in \[0, 1\], got -0.1"),
    (lambda: layers.Dropout(1.5), ValueError, r"Dropout: expected p .* in \[0, 1\], got 1.5"),
    (lambda: layers.Dropout2d(2), ValueError, r"Dropout2d: expected p .* in \[0, 1\], got 2"),
    (lambda: layers.Dropout(True), TypeError, r"Dropout: expected p .* got bool True"),
    (lambda: layers.Dropout("0.5"), TypeError, r"Dropout: expected p .* got str '0.5'"),
    (lambda: layers.Dropout(float("nan")), ValueError, r"Dropout: expected p .* got nan"),
])
def test_bad_p(factory, exc, match):
    with pytest.raises(exc, match=match):
        factory()


def test_p_is_stored_as_a_float():
    assert layers.Dropout(1).p == 1.0 and isinstance(layers.Dropout(1).p, float)
    assert layers.Dropout(1) == layers.Dropout(1.0)


def test_apply_errors():
    layer = layers.Dropout(0.5)
    state = layer.init_state(KEY)
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"Dropout\(p=0.5\) is stateful: call apply\(params, x, state, "
                                        r"train=True\|False\) with state from init_state\(key\)"):
        layer.apply(None, x)
    with pytest.raises(TypeError, match=r"Dropout\(p=0.5\): expected state of class DropoutState "
                                        r"\(from Dropout\(p=0.5\).init_state\), got Key"):
        layer.apply(None, x, KEY, train=True)
    with pytest.raises(TypeError, match=r"has no parameters, expected params None"):
        layer.apply(np.ones(3), x, state, train=True)
    with pytest.raises(TypeError, match=r"Dropout\(p=0.5\).init_state: expected an nptfunc.random.Key"):
        layer.init_state(0)
    with pytest.raises(TypeError):
        layers.DropoutState(0)
    with pytest.raises(ValueError, match=r"vjp: expected dy of shape \(2, 3\) \(the output's\), got \(3, 2\)"):
        layer.apply(None, x, state, train=True)[1](np.ones((3, 2), np.float32))


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4, 5, 6), (3,)])
def test_dropout2d_wrong_rank(shape):
    layer = layers.Dropout2d(0.5)
    with pytest.raises(ValueError, match=rf"Dropout2d\(p=0.5\): expected input of shape \(N, C, H, W\) or "
                                         rf"\(C, H, W\), got {re_tuple(shape)}"):
        layer.apply(None, np.ones(shape, np.float32), layer.init_state(KEY), train=False)


def re_tuple(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")

"""Linear, activations, Flatten and Sequential: init, edge cases and specials (torch parity: tests/parity_table.py)."""

import warnings

import numpy as np
import pytest
import torch

from nptfunc import layers, random
from nptfunc.testing import assert_layer_matches_torch, check_adjoint, check_vjp


def _x(shape, dtype, seed=0, scale=1.0):
    return random.normal(random.key(seed), shape, dtype=dtype) * np.asarray(scale, dtype)


def test_linear_vjp_finite_differences():
    layer = layers.Linear(3, 2, dtype=np.float64)
    params = layer.init(random.key(0))
    check_vjp(layer, params, _x((4, 3), np.float64))
    check_adjoint(layer, params, _x((2, 2, 3), np.float64))


def test_linear_init_distribution():
    layer = layers.Linear(50, 400)
    p = layer.init(random.key(3))
    bound = 1 / np.sqrt(50)
    for a in (p.weight, p.bias):
        assert a.dtype == np.float32
        assert np.abs(a).max() <= bound
        assert np.abs(a).max() > 0.95 * bound
    w = p.weight.ravel()
    # uniform on [-b, b]: mean 0, variance b^2/3, quartiles at -b/2, b/2
    assert abs(w.mean()) < 0.01 * bound
    assert abs(w.var() / (bound**2 / 3) - 1) < 0.03
    np.testing.assert_allclose(np.quantile(w, [0.25, 0.75]), [-bound / 2, bound / 2], atol=0.02 * bound)
    # torch's own init has the same bound
    tw = torch.nn.Linear(50, 400).weight.detach().numpy()
    assert np.abs(tw).max() <= bound + 1e-7


def test_init_same_key_same_params_and_readonly():
    layer = layers.Linear(3, 2)
    a, b = layer.init(random.key(0)), layer.init(random.key(0))
    assert a == b
    assert a != layer.init(random.key(1))
    with pytest.raises(ValueError, match="read-only"):
        a.weight[0, 0] = 1.0


@pytest.mark.parametrize("layer", [layers.Softmax(-1), layers.LogSoftmax(-1), layers.Sigmoid()])
def test_large_logits_are_finite(layer):
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]])
    y, vjp = layer.apply(None, x)
    _, dx = vjp(np.ones_like(y))
    assert np.isfinite(y).all() and np.isfinite(dx).all()


@pytest.mark.parametrize("shape", [(3, 1000), (4, 512), (2, 3, 700)])
def test_relu_on_large_arrays_matches_torch_with_specials(shape, dtype):
    """ReLU's row-wise path (arrays of 1,024 or more elements, with a tail) keeps torch's NaN and inf."""
    x = _x(shape, dtype)
    flat = x.reshape(-1)
    flat[[0, 5, -1, -3]] = [np.nan, -np.inf, np.inf, np.nan]
    y, _, _ = assert_layer_matches_torch(layers.ReLU(), None, torch.nn.ReLU(), x)
    assert y.flags.c_contiguous and y.dtype == dtype
    y_strided, _ = layers.ReLU().apply(None, x[:, ::2])  # not contiguous: the plain path
    np.testing.assert_array_equal(y_strided, y[:, ::2])


def test_sigmoid_matches_torch_exactly_at_the_extremes(dtype):
    """torch's formula: 0 where exp(-x) overflows (no warning), 1 for large x, NaN stays NaN."""
    x = np.array([-1e4, -720.0, -700.0, -100.0, -88.5, -87.0, -20.0, -0.0, 20.0, 100.0, np.inf, -np.inf,
                  np.nan], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's default error state: no overflow warning may escape
        y, vjp = layers.Sigmoid().apply(None, x)
        vjp(np.ones_like(y))
    expected = torch.sigmoid(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(y[finite], expected[finite], rtol=2 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("layer", [layers.Softmax(1), layers.LogSoftmax(0), layers.GELU(), layers.Sigmoid()])
def test_activation_vjp_finite_differences(layer):
    check_vjp(layer, None, _x((3, 4), np.float64))


def _mlp(dtype):
    return layers.Sequential(layers.Linear(6, 8, dtype=dtype), layers.ReLU(), layers.Linear(8, 8, dtype=dtype),
                             layers.Tanh(), layers.Linear(8, 3, dtype=dtype), layers.LogSoftmax(-1))


def test_sequential_keys_per_child():
    """Adding a layer at the end does not change the other layers' params."""
    a = layers.Sequential(layers.Linear(3, 4), layers.ReLU())
    b = layers.Sequential(layers.Linear(3, 4), layers.ReLU(), layers.Linear(4, 2))
    pa, pb = a.init(random.key(0)), b.init(random.key(0))
    assert pa[0] == pb[0]


def test_sequential_long_form_without_state():
    model = _mlp(np.float64)
    params = model.init(random.key(0))
    state = model.init_state(random.key(1))
    assert state == (None,) * 6
    x = _x((2, 6), np.float64)
    y1, _ = model.apply(params, x)
    y2, _, s2 = model.apply(params, x, state, train=True)
    np.testing.assert_array_equal(y1, y2)
    assert s2 == state


def test_empty_sequential_is_identity():
    y, vjp = layers.Sequential().apply((), np.ones(3))
    assert vjp(np.full(3, 2.0))[0] == ()
    np.testing.assert_array_equal(vjp(np.full(3, 2.0))[1], 2.0)
    np.testing.assert_array_equal(y, 1.0)

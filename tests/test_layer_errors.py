"""Bad input and bad hyperparameters give errors that name the layer, the expectation and what came."""

import numpy as np
import pytest

from nptfunc import layers, random

KEY = random.key(0)


@pytest.mark.parametrize(("factory", "exc", "match"), [
    (lambda: layers.Linear(0.5, 3), TypeError, r"Linear: expected in_features to be an int >= 0, got float 0.5"),
    (lambda: layers.Linear(3, -1), ValueError, r"Linear: expected out_features to be an int >= 0, got -1"),
    (lambda: layers.Linear(3, 2, dtype=np.int32), TypeError, r"Linear: expected dtype to be a NumPy floating dtype"),
    (lambda: layers.Linear(3, 2, dtype="banana"), TypeError, r"Linear: expected dtype to be a NumPy floating dtype"),
    (lambda: layers.GELU("fast"), ValueError, r"GELU: expected approximate to be 'none' or 'tanh', got 'fast'"),
    (lambda: layers.Softmax(1.5), TypeError, r"Softmax: expected dim to be an int, got float 1.5"),
    (lambda: layers.Flatten("a"), TypeError, r"Flatten: expected start_dim to be an int, got str 'a'"),
    (lambda: layers.Sequential(layers.ReLU(), lambda x: x), TypeError,
     r"Sequential: expected layers \(nptfunc.layers.Layer\), got function at position 1"),
])
def test_bad_hyperparameters(factory, exc, match):
    with pytest.raises(exc, match=match):
        factory()


def test_linear_wrong_in_features():
    layer = layers.Linear(4, 3)
    with pytest.raises(ValueError, match=r"Linear\(in_features=4, out_features=3\): expected input of shape "
                                         r"\(\.\.\., 4\), got \(8, 3\)"):
        layer.apply(layer.init(KEY), np.ones((8, 3), np.float32))


def test_linear_scalar_input():
    layer = layers.Linear(4, 3)
    with pytest.raises(ValueError, match=r"expected input of shape \(\.\.\., 4\), got \(\)"):
        layer.apply(layer.init(KEY), np.float32(1.0))


def test_float64_input_to_float32_layer_is_cast_and_dx_comes_back_float64():
    """The dtype policy (docs/design.md): input cast to the params' dtype, dx in the input's dtype."""
    layer = layers.Linear(4, 3)  # float32 params
    params = layer.init(KEY)
    x = random.normal(KEY, (2, 4), dtype=np.float64)
    y, vjp = layer.apply(params, x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, layer.apply(params, x.astype(np.float32))[0])
    dparams, dx = vjp(np.ones((2, 3)))  # a float64 cotangent is cast to y's dtype
    assert dx.dtype == np.float64 and dparams.weight.dtype == np.float32 and dparams.bias.dtype == np.float32


def test_integer_input_is_cast_to_the_params_dtype():
    layer = layers.Linear(2, 1, dtype=np.float64)
    params = layer.init(KEY)
    y, _ = layer.apply(params, np.array([[1, 2]]))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, [[params.weight[0, 0] + 2 * params.weight[0, 1] + params.bias[0]]])
    y, _ = layers.ReLU().apply(None, [[1, -2]])
    assert y.dtype == np.float32


@pytest.mark.parametrize("bad", ["abc", np.array(["a"]), np.array([object()], dtype=object), {"a": 1}])
def test_non_numeric_input(bad):
    with pytest.raises(TypeError, match=r"ReLU: "):
        layers.ReLU().apply(None, bad)


def test_wrong_params():
    layer = layers.Linear(4, 3)
    with pytest.raises(TypeError, match=r"expected params of class LinearParams"):
        layer.apply({"weight": np.ones((3, 4))}, np.ones((1, 4), np.float32))
    with pytest.raises(TypeError, match=r"ReLU: has no parameters, expected params None"):
        layers.ReLU().apply(layer.init(KEY), np.ones(3))


def test_vjp_checks_dy_shape():
    layer = layers.Linear(4, 3)
    y, vjp = layer.apply(layer.init(KEY), np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"Linear\(in_features=4, out_features=3\) vjp: expected dy of shape "
                                         r"\(2, 3\) \(the output's\), got \(3, 2\)"):
        vjp(np.ones((3, 2), np.float32))
    _, vjp = layers.Tanh().apply(None, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"Tanh vjp: expected dy of shape \(2, 4\)"):
        vjp(np.ones(8))


def test_softmax_dim_out_of_range():
    with pytest.raises(ValueError, match=r"Softmax\(dim=2\): dim 2 is out of range for input of rank 2"):
        layers.Softmax(2).apply(None, np.ones((2, 3)))


def test_flatten_dims_out_of_order():
    with pytest.raises(ValueError, match=r"start_dim comes after end_dim"):
        layers.Flatten(2, 1).apply(None, np.ones((2, 3, 4)))


def test_init_needs_a_key():
    with pytest.raises(TypeError, match=r"Linear\(in_features=4, out_features=3\)\.init: expected an "
                                        r"nptfunc.random.Key"):
        layers.Linear(4, 3).init(0)


def test_sequential_params_must_be_its_tuple():
    model = layers.Sequential(layers.Linear(2, 2), layers.ReLU())
    with pytest.raises(TypeError, match=r"Sequential: expected params to be a tuple of length 2"):
        model.apply(model.init(KEY)[0], np.ones((1, 2), np.float32))


def test_long_form_needs_both_state_and_train():
    with pytest.raises(TypeError, match=r"the long form needs both state and train"):
        layers.ReLU().apply(None, np.ones(2), None)
    with pytest.raises(TypeError, match=r"expected train to be a bool"):
        layers.ReLU().apply(None, np.ones(2), None, train="yes")

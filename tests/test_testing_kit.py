"""The torch-comparison kit must fail on wrong layers, or it proves nothing."""

import attrs
import numpy as np
import pytest
import torch

from nptfunc import layers, random
from nptfunc.layers.base import Layer
from nptfunc.testing import (
    assert_close,
    assert_layer_matches_torch,
    check_adjoint,
    check_vjp,
    params_from_torch,
    params_to_torch,
)


@attrs.frozen
class WrongTanh(Layer):
    """Tanh whose vjp forgets the square: dx = dy * (1 - y)."""

    def _apply(self, params, x):
        y = np.tanh(x)

        def vjp(dy):
            return None, dy * (1 - y)

        return y, vjp


@attrs.frozen
class TransposedLinear(layers.Linear):
    """Linear whose weight gradient is transposed-and-reshaped: a classic bug."""

    def _apply(self, params, x):
        y, vjp = super()._apply(params, x)

        def wrong(dy):
            dp, dx = vjp(dy)
            return attrs.evolve(dp, weight=dp.weight.T.reshape(dp.weight.shape)), dx

        return y, wrong


X = random.normal(random.key(7), (3, 4), dtype=np.float64)


def test_check_vjp_catches_a_wrong_input_gradient():
    check_vjp(layers.Tanh(), None, X)
    with pytest.raises(AssertionError, match="dx: not close"):
        check_vjp(WrongTanh(), None, X)


def test_check_vjp_catches_a_wrong_param_gradient():
    layer = TransposedLinear(4, 4, dtype=np.float64)
    with pytest.raises(AssertionError, match="dweight: not close"):
        check_vjp(layer, layer.init(random.key(1)), X)


def test_check_adjoint_catches_a_wrong_vjp():
    check_adjoint(layers.Tanh(), None, X)
    with pytest.raises(AssertionError, match="adjoint check failed"):
        check_adjoint(WrongTanh(), None, X)


def test_torch_comparison_catches_a_wrong_vjp():
    with pytest.raises(AssertionError, match="dx: not close"):
        assert_layer_matches_torch(WrongTanh(), None, torch.nn.Tanh().double(), X)
    layer = TransposedLinear(4, 4, dtype=np.float64)
    with pytest.raises(AssertionError, match="dweight: not close"):
        assert_layer_matches_torch(layer, layer.init(random.key(1)), torch.nn.Linear(4, 4).double(), X)


def test_torch_comparison_catches_a_wrong_forward():
    layer = layers.LeakyReLU(0.1)
    with pytest.raises(AssertionError, match="y: not close"):
        assert_layer_matches_torch(layer, None, torch.nn.LeakyReLU(0.2).double(), X)


def test_params_roundtrip_through_torch():
    model = layers.Sequential(layers.Linear(4, 3, dtype=np.float64), layers.ReLU(),
                              layers.Linear(3, 2, dtype=np.float64))
    params = model.init(random.key(0))
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).double()
    params_to_torch(params, module)
    back = params_from_torch(module, like=params)
    assert back == params


def test_assert_close_tolerances():
    assert_close(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-12]))
    with pytest.raises(AssertionError, match="not close"):
        assert_close(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-6]))
    assert_close(np.float32([1.0, 2.0]), np.float32([1.0, 2.0 + 1e-6]))
    with pytest.raises(AssertionError, match="shape"):
        assert_close(np.ones(2), np.ones(3))
    with pytest.raises(AssertionError, match="non-finite match: False"):
        assert_close(np.array([np.nan, 1.0]), np.array([1.0, 1.0]))

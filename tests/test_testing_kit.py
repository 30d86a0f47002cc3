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
    check_layer,
    check_vjp,
    params_from_torch,
    params_to_torch,
    torch_dtype,
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


# ------------------------------------------------------------------ check_layer
class _Protocol:
    """The layer protocol written out by hand, without the base class that enforces the contract.

    The layers below break the contract in ways the base class would prevent: the
    runner must catch them in a user's hand-written layer.
    """

    stateful = False

    def init(self, key):
        return None

    def init_state(self, key):
        return None

    def output_shape(self, shape):
        return shape

    def apply(self, params, x, state=None, *, train=None, **kwargs):
        y, vjp = self.forward(params, x, **kwargs)
        return (y, vjp) if train is None else (y, vjp, state)


def _checked(dy, shape):
    if np.shape(dy) != shape:
        msg = f"vjp: expected dy of shape {shape}, got {np.shape(dy)}"
        raise ValueError(msg)
    return dy


@attrs.frozen
class SumAndProduct(Layer):
    """A tuple in, a tuple out: ``(a, b) -> (a + b, a * b)``."""

    def output_shape(self, shapes):
        return (shapes[0], shapes[0])

    def _apply(self, params, x):
        a, b = x

        def vjp(dy):
            ds, dp = dy
            return None, (ds + dp * b, ds + dp * a)

        return (a + b, a * b), vjp


class TorchSumAndProduct(torch.nn.Module):
    def forward(self, a, b):
        return a + b, a * b


@attrs.frozen
class EmbeddingParams:
    weight: np.ndarray = layers.base.param_field()


@attrs.frozen
class Embedding(Layer):
    """Integer indices in, no dx out."""

    params_class = EmbeddingParams
    integer_input = True
    num: int
    dim: int
    dtype: type = np.float32

    def init(self, key):
        return EmbeddingParams(random.normal(key, (self.num, self.dim), dtype=self.dtype))

    def output_shape(self, shape):
        return (*shape, self.dim)

    def _apply(self, params, idx):
        def vjp(dy):
            dw = np.zeros_like(params.weight)
            np.add.at(dw, idx, dy)
            return EmbeddingParams(dw), None

        return params.weight[idx], vjp


@attrs.frozen
class MaskedScale(Layer):
    """``where(mask, 0, 2 x)`` with the mask a keyword argument."""

    def _apply(self, params, x, *, mask):
        return np.where(mask, 0, 2 * x), lambda dy: (None, np.where(mask, 0, 2 * dy))


class TorchMaskedScale(torch.nn.Module):
    def forward(self, x, keep):
        return torch.where(keep, 2 * x, 0)


def _mask(key, dtype):
    return {"mask": random.generator(key).random((3, 4)) < 0.3}


def test_check_layer_with_tuple_input_and_output():
    check_layer(SumAndProduct(), lambda dt: TorchSumAndProduct(), ((2, 3), (2, 3)))


def test_check_layer_with_integer_input():
    def indices(key, dtype):
        return random.generator(key).integers(0, 5, size=(2, 3))

    check_layer(Embedding(5, 4), lambda dt: torch.nn.Embedding(5, 4).to(torch_dtype(dt)), inputs=indices)


def test_check_layer_with_keyword_arguments_and_a_torch_adapter():
    check_layer(MaskedScale(), lambda dt: TorchMaskedScale(), (3, 4), kwargs=_mask,
                torch_call=lambda module, x, mask: module(x, keep=mask.logical_not()))
    with pytest.raises(AssertionError, match="y: not close"):  # the adapter matters: the mask inverted
        check_layer(MaskedScale(), lambda dt: TorchMaskedScale(), (3, 4), kwargs=_mask,
                    torch_call=lambda module, x, mask: module(x, keep=mask))


def test_check_layer_on_a_stateful_layer_against_torch():
    check_layer(layers.BatchNorm1d(3, momentum=None), torch.nn.BatchNorm1d(3, momentum=None), (4, 3), steps=3)


def test_check_layer_catches_a_wrong_vjp():
    with pytest.raises(AssertionError, match="dx: not close"):
        check_layer(WrongTanh(), torch.nn.Tanh(), (3, 4), dtypes=(np.float32,))
    with pytest.raises(AssertionError, match="dx: not close"):  # without torch: finite differences
        check_layer(WrongTanh(), None, (3, 4), dtypes=(np.float64,))
    with pytest.raises(AssertionError, match="dweight: not close"):
        check_layer(TransposedLinear(4, 4), torch.nn.Linear(4, 4), (3, 4), dtypes=(np.float32,))


@attrs.frozen
class Mutating(_Protocol):
    def forward(self, params, x):
        y = np.tanh(x)
        x[...] = 0

        return y, lambda dy: (None, _checked(dy, y.shape) * (1 - y**2))


@attrs.frozen
class WideGradient(_Protocol):
    """dx in float64 whatever x's dtype."""

    def forward(self, params, x):
        return x, lambda dy: (None, np.asarray(_checked(dy, x.shape), dtype=np.float64))


@attrs.frozen
class WrongShapeHelper(_Protocol):
    def output_shape(self, shape):
        return (*shape, 1)

    def forward(self, params, x):
        return x, lambda dy: (None, _checked(dy, x.shape))


@attrs.frozen
class LooseVjp(_Protocol):
    """Accepts a dy of any shape with enough elements."""

    def forward(self, params, x):
        return x, lambda dy: (None, np.ravel(dy)[:x.size].reshape(x.shape))


@pytest.mark.parametrize(("layer", "match"), [
    (Mutating(), "modified params, state, x"),
    (WideGradient(), r"dx: float64\(3, 4\), expected float32\(3, 4\)"),
    (WrongShapeHelper(), r"output shape \(3, 4\) != output_shape"),
    (LooseVjp(), "a dy of the wrong shape was accepted"),
])
def test_check_layer_catches_contract_violations(layer, match):
    with pytest.raises(AssertionError, match=match):
        check_layer(layer, None, (3, 4), dtypes=(np.float32,))

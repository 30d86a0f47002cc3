"""The activations of issue 13 against torch 2.13: values and gradients, at the kinks and boundaries too."""

import numpy as np
import pytest

from nptfunc import layers, random
from nptfunc.testing import assert_close, assert_layer_matches_torch, check_vjp, to_torch

torch = pytest.importorskip("torch")

ACTIVATIONS = [
    (layers.SiLU(), lambda: torch.nn.SiLU()),
    (layers.ELU(), lambda: torch.nn.ELU()),
    (layers.ELU(alpha=0.3), lambda: torch.nn.ELU(0.3)),
    (layers.ELU(alpha=-0.5), lambda: torch.nn.ELU(-0.5)),
    (layers.Softplus(), lambda: torch.nn.Softplus()),
    (layers.Softplus(beta=2.0, threshold=10.0), lambda: torch.nn.Softplus(2.0, 10.0)),
    (layers.Softplus(beta=-1.5, threshold=3.0), lambda: torch.nn.Softplus(-1.5, 3.0)),
    (layers.Mish(), lambda: torch.nn.Mish()),
    (layers.Hardtanh(), lambda: torch.nn.Hardtanh()),
    (layers.Hardtanh(0.0, 2.0), lambda: torch.nn.Hardtanh(0.0, 2.0)),
    (layers.Hardswish(), lambda: torch.nn.Hardswish()),
    (layers.Hardsigmoid(), lambda: torch.nn.Hardsigmoid()),
    (layers.ReLU6(), lambda: torch.nn.ReLU6()),
    (layers.Softsign(), lambda: torch.nn.Softsign()),
    (layers.GELU("tanh"), lambda: torch.nn.GELU("tanh")),
]
IDS = [a[0].name for a in ACTIVATIONS]

# every kink and threshold of the table (0, +-1, +-3, 2, 6, beta * x = threshold), just beside them,
# and the far tails where exp overflows
KINKS = np.array([-800.0, -40.0, -20.0, -6.0, -3.0, -2.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 2.0, 3.0, 5.0, 6.0,
                  6.5, 9.999, 10.0, 10.001, 19.99, 20.0, 20.01, 40.0, 800.0])


def _module(make, dtype):
    return make().to(torch.float64 if dtype == np.float64 else torch.float32)


@pytest.mark.parametrize(("layer", "make"), ACTIVATIONS, ids=IDS)
def test_matches_torch_at_kinks_and_tails(layer, make, dtype):
    x = KINKS.astype(dtype)
    y, _, dx = assert_layer_matches_torch(layer, None, _module(make, dtype), x, dy=np.ones_like(x))
    assert y.dtype == dtype and dx.dtype == dtype


@pytest.mark.parametrize(("layer", "make"), ACTIVATIONS, ids=IDS)
@pytest.mark.parametrize("shape", [(), (0, 3), (1,), (2, 3, 4)])
def test_matches_torch_on_random_input(layer, make, shape, dtype):
    x = 4 * random.normal(random.key(1), shape, dtype=dtype)
    y, _, dx = assert_layer_matches_torch(layer, None, _module(make, dtype), x)
    assert y.shape == layer.output_shape(shape) == dx.shape


@pytest.mark.parametrize(("layer", "make"), ACTIVATIONS, ids=IDS)
def test_non_contiguous_input(layer, make):
    x = 3 * random.normal(random.key(2), (4, 6), dtype=np.float64)[:, ::2].T
    assert not x.flags.c_contiguous
    assert_layer_matches_torch(layer, None, _module(make, np.float64), x)


@pytest.mark.parametrize(("layer", "make"), ACTIVATIONS, ids=IDS)
def test_infinite_input_like_torch(layer, make):
    """+-inf give torch's values and gradients (NaN where torch's formula gives NaN); NaN stays NaN."""
    x = np.array([-np.inf, np.inf, np.nan, 1.0])
    with np.errstate(all="raise"):  # no warning may escape
        y, vjp = layer.apply(None, x)
        _, dx = vjp(np.ones_like(x))
    xt = to_torch(x).requires_grad_(True)
    yt = make().double()(xt)
    yt.sum().backward()
    assert_close(y, yt, name="y")
    # torch's NaN gradient differs between its scalar and vectorised loops: compare the rest
    assert_close(dx[:2], xt.grad[:2], name="dx")
    assert dx[3] == pytest.approx(float(xt.grad[3]), rel=1e-12)


def test_hardsigmoid_uses_torchs_float32_one_sixth_in_float64():
    _, vjp = layers.Hardsigmoid().apply(None, np.zeros(2))
    assert vjp(np.ones(2))[1][0] == float(np.float32(1 / 6)) != 1 / 6


@pytest.mark.parametrize("layer", [a[0] for a in ACTIVATIONS], ids=IDS)
def test_finite_differences(layer):
    x = 3 * random.normal(random.key(3), (3, 4), dtype=np.float64)
    check_vjp(layer, None, x)


# ------------------------------------------------------------------------ PReLU
@pytest.mark.parametrize(("num_parameters", "shape"), [(1, (2, 3, 4)), (3, (2, 3, 4)), (3, (2, 3)),
                                                       (1, ()), (1, (5,)), (2, (1, 2, 2, 3)), (2, (0, 2, 3))])
def test_prelu_matches_torch(num_parameters, shape, dtype):
    layer = layers.PReLU(num_parameters, dtype=dtype)
    params = layers.PReLUParams(random.normal(random.key(0), (num_parameters,), dtype=dtype))
    x = random.normal(random.key(1), shape, dtype=dtype)
    x = np.where(np.abs(x) < 0.3, 0, x).astype(dtype)  # some exact zeros: the slope's side
    module = _module(lambda: torch.nn.PReLU(num_parameters), dtype)
    y, dparams, dx = assert_layer_matches_torch(layer, params, module, x)
    assert dparams.weight.dtype == dtype and dparams.weight.shape == (num_parameters,)


def test_prelu_init_and_names(dtype):
    layer = layers.PReLU(4, init=0.1, dtype=dtype)
    params = layer.init(random.key(0))
    module = torch.nn.PReLU(4, init=0.1)
    assert list(module.state_dict()) == ["weight"]
    np.testing.assert_allclose(params.weight, module.weight.detach().numpy())
    assert params.weight.dtype == dtype and not params.weight.flags.writeable
    assert layers.PReLU().init(random.key(0)).weight.tolist() == [0.25]


def test_prelu_finite_differences():
    layer = layers.PReLU(3, dtype=np.float64)
    params = layers.PReLUParams(np.array([0.2, -0.5, 1.5]))
    check_vjp(layer, params, random.normal(random.key(4), (2, 3, 2), dtype=np.float64))


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: layers.ELU(alpha="1"), TypeError, r"ELU: expected alpha to be a finite real number, got str '1'"),
    (lambda: layers.Softplus(beta=0), ValueError, r"Softplus\(beta=0.0\): expected beta to be non-zero"),
    (lambda: layers.Softplus(threshold=float("nan")), ValueError, r"Softplus: expected threshold"),
    (lambda: layers.Hardtanh(1.0, 1.0), ValueError,
     r"Hardtanh\(min_val=1.0\): expected max_val to be greater than min_val, got min_val=1.0 and max_val=1.0"),
    (lambda: layers.Hardtanh(min_val=True), TypeError, r"Hardtanh: expected min_val"),
    (lambda: layers.PReLU(0), ValueError, r"PReLU: expected num_parameters to be an int >= 1, got 0"),
    (lambda: layers.PReLU(init="a"), TypeError, r"PReLU: expected init to be a finite real number"),
])
def test_bad_hyperparameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_prelu_bad_input_and_params():
    layer = layers.PReLU(3, dtype=np.float64)
    params = layer.init(random.key(0))
    with pytest.raises(ValueError, match=r"PReLU\(num_parameters=3, dtype=float64\): expected input of shape \(N, 3, \*\), "
                                         r"got \(2, 4\)"):
        layer.apply(params, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"PReLU\(num_parameters=3, dtype=float64\): expected input of shape \(N, 3, \*\), got \(3,\)"):
        layer.apply(params, np.ones(3))
    with pytest.raises(ValueError, match=r"PReLU\(num_parameters=3, dtype=float64\): expected weight of shape \(3,\), got \(2,\)"):
        layer.apply(layers.PReLUParams(np.ones(2)), np.ones((2, 3)))

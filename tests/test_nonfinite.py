"""NaN and inf propagate through forward and backward as they do in torch: no masking, no crash."""

import numpy as np
import pytest
import torch

from nptfunc import layers as L
from nptfunc import random
from nptfunc.testing import assert_close, params_to_torch, to_torch

CASES = [
    ("linear", lambda: L.Linear(4, 3, dtype=np.float64), lambda: torch.nn.Linear(4, 3), (3, 4)),
    ("relu", L.ReLU, torch.nn.ReLU, (3, 4)),
    ("leaky_relu", L.LeakyReLU, torch.nn.LeakyReLU, (3, 4)),
    ("leaky_relu_steep", lambda: L.LeakyReLU(1.5), lambda: torch.nn.LeakyReLU(1.5), (3, 4)),
    ("leaky_relu_flat", lambda: L.LeakyReLU(0.0), lambda: torch.nn.LeakyReLU(0.0), (3, 4)),
    ("sigmoid", L.Sigmoid, torch.nn.Sigmoid, (3, 4)),
    ("tanh", L.Tanh, torch.nn.Tanh, (3, 4)),
    ("gelu", L.GELU, torch.nn.GELU, (3, 4)),
    ("softmax", lambda: L.Softmax(-1), lambda: torch.nn.Softmax(-1), (3, 4)),
    ("log_softmax", lambda: L.LogSoftmax(-1), lambda: torch.nn.LogSoftmax(-1), (3, 4)),
    ("flatten", L.Flatten, torch.nn.Flatten, (3, 2, 2)),
    ("layernorm", lambda: L.LayerNorm(4, dtype=np.float64), lambda: torch.nn.LayerNorm(4), (3, 4)),
    ("batchnorm1d", lambda: L.BatchNorm1d(4, dtype=np.float64), lambda: torch.nn.BatchNorm1d(4), (3, 4)),
]
if hasattr(L, "Conv2d"):
    CASES.append(("conv2d", lambda: L.Conv2d(2, 3, 3, padding=1, dtype=np.float64),
                  lambda: torch.nn.Conv2d(2, 3, 3, padding=1), (2, 2, 4, 4)))
if hasattr(L, "MaxPool2d"):
    CASES += [("maxpool2d", lambda: L.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2), (2, 2, 4, 4)),
              ("avgpool2d", lambda: L.AvgPool2d(2), lambda: torch.nn.AvgPool2d(2), (2, 2, 4, 4))]


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("name", "make", "make_torch", "shape"), CASES, ids=[c[0] for c in CASES])
def test_nonfinite_input_propagates_like_torch(name, make, make_torch, shape, special):
    layer, module = make(), make_torch().double()
    params = layer.init(random.key(0))
    state = layer.init_state(random.key(1))
    params_to_torch(params, module, state)
    x = random.normal(random.key(2), shape, dtype=np.float64)
    x.reshape(-1)[1] = special
    with np.errstate(all="ignore"):
        if layer.stateful:
            y, vjp, _ = layer.apply(params, x, state, train=True)
        else:
            y, vjp = layer.apply(params, x)
        dy = random.normal(random.key(3), y.shape, dtype=np.float64)
        dparams, dx = vjp(dy)
    xt = to_torch(x).requires_grad_(True)
    module.train(True)
    yt = module(xt)
    yt.backward(to_torch(dy))
    assert_close(y, yt, name="y")
    assert_close(dx, xt.grad, name="dx")
    named = dict(module.named_parameters())
    if dparams is not None:
        for field in ("weight", "bias"):
            if getattr(dparams, field, None) is not None:
                assert_close(getattr(dparams, field), named[field].grad, name=f"d{field}")


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("layer", "module"), [(L.ReLU(), torch.nn.ReLU()), (L.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2)),
                                               (L.Tanh(), torch.nn.Tanh())], ids=["relu", "leaky_relu", "tanh"])
def test_nonfinite_cotangent_like_torch(layer, module, special):
    """Where the local derivative is 0, torch's gradient is an exact 0 even for an infinite dy."""
    x = np.array([[-1.0, 0.0, 2.0, np.nan], [3.0, -2.0, 0.5, -0.1]])
    dy = np.array([[special, special, special, 1.0], [1.0, special, 2.0, special]])
    y, vjp = layer.apply(None, x)
    with np.errstate(all="ignore"):
        _, dx = vjp(dy)
    xt = to_torch(x).requires_grad_(True)
    module(xt).backward(to_torch(dy))
    assert_close(dx, xt.grad)

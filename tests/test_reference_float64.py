"""The reference project's layer tests feed float64 NumPy arrays to float32 layers: that works here.

NumPyTorch's tests build a layer, draw ``x`` with NumPy (float64), copy the weights
into the torch twin (float32), and compare ``forward`` and ``backward(dy)``. Under
the dtype policy (docs/design.md) the float64 input is cast to the parameters'
float32, ``backward`` returns ``dx`` in float64 (the input's dtype) and the
parameter gradients stay float32, as torch's.
"""

import numpy as np
import pytest

from nptfunc import convert, nn
from nptfunc.testing import assert_close, to_numpy

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(("make", "make_torch", "x_shape"), [
    (lambda: nn.Linear(5, 3, key=0), lambda: torch.nn.Linear(5, 3), (4, 5)),
    (lambda: nn.Conv2d(2, 3, 3, padding=1, key=0), lambda: torch.nn.Conv2d(2, 3, 3, padding=1), (2, 2, 6, 6)),
])
def test_float64_input_to_a_float32_layer_as_the_reference_tests_do(make, make_torch, x_shape):
    rng = np.random.default_rng(0)
    layer, twin = make(), make_torch()
    twin.load_state_dict(convert.state_dict_to_torch(layer.state_dict()))
    x = rng.standard_normal(x_shape)  # float64, as np.random.randn gives
    y = layer(x)
    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    yt = twin(xt)
    assert_close(np.asarray(y), yt)
    assert np.asarray(y).dtype == np.float32
    dy = rng.standard_normal(tuple(yt.shape))  # float64 too
    dx = layer.backward(dy)
    yt.backward(torch.tensor(dy, dtype=torch.float32))
    assert np.asarray(dx).dtype == np.float64
    assert_close(np.asarray(dx), to_numpy(xt.grad).astype(np.float64), rtol=1e-5)
    for name, p in layer.named_parameters():
        assert p.grad.dtype == np.float32
        assert_close(np.asarray(p.grad), dict(twin.named_parameters())[name].grad)

"""Softmax and LogSoftmax layers and modules over an empty axis against torch (ops: tests/test_ops.py)."""

import numpy as np
import pytest

from nptfunc import layers, nn
from nptfunc.testing import assert_close, to_torch

torch = pytest.importorskip("torch")

SHAPES = [((2, 0), -1), ((0, 0), 1), ((0,), 0), ((2, 0, 3), 1), ((0, 3), 0), ((0, 3), 1)]


@pytest.mark.parametrize(("ours", "theirs"), [(layers.Softmax, torch.nn.Softmax),
                                              (layers.LogSoftmax, torch.nn.LogSoftmax)])
@pytest.mark.parametrize(("shape", "axis"), SHAPES, ids=str)
def test_layers_and_modules_over_an_empty_axis(ours, theirs, shape, axis):
    x = np.zeros(shape, np.float32)
    y, vjp = ours(dim=axis).apply(None, x)
    _, dx = vjp(np.ones(shape, np.float32))
    xt = to_torch(x).requires_grad_(True)
    yt = theirs(dim=axis)(xt)
    yt.backward(torch.ones_like(yt))
    assert_close(y, yt)
    assert_close(dx, xt.grad)
    module = getattr(nn, ours.__name__)(dim=axis)
    assert_close(module(x), yt)

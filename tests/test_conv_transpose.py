"""ConvTranspose1d/2d against torch 2.13: output, input gradient, weight and bias gradients."""

import math

import numpy as np
import pytest

from nptfunc import layers as L
from nptfunc import random
from nptfunc.layers.conv import LAYOUTS, conv_transpose, shifted_applies
from nptfunc.testing import assert_close, assert_layer_matches_torch, check_vjp, leaves_equal, to_torch

torch = pytest.importorskip("torch")

CONFIGS = [
    dict(kernel_size=3),
    dict(kernel_size=3, stride=2),
    dict(kernel_size=4, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, output_padding=1),
    dict(kernel_size=3, stride=3, padding=2, dilation=2, output_padding=1),
    dict(kernel_size=2, dilation=3, output_padding=2),  # output_padding >= stride, < dilation
    dict(kernel_size=3, groups=2),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), groups=2, bias=False),
    dict(kernel_size=3, padding=1),  # 'same' geometry: the vjp's convolution may run shifted
    dict(kernel_size=1, stride=2, output_padding=1),  # positions no tap reaches: bias only
    dict(kernel_size=(1, 3), padding=(0, 2)),
]


def _kwargs(cfg, d):
    return {k: (v[0] if isinstance(v, tuple) and d == 1 else v) for k, v in cfg.items()}


def _pair(d, c_in, c_out, cfg, dtype):
    kw = _kwargs(cfg, d)
    layer = getattr(L, f"ConvTranspose{d}d")(c_in, c_out, **kw, dtype=dtype)
    module = getattr(torch.nn, f"ConvTranspose{d}d")(c_in, c_out, **kw)
    return layer, module.to(torch.float64 if dtype == np.float64 else torch.float32)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("batch", [(2,), (), (0,)], ids=["batched", "unbatched", "empty"])
def test_matches_torch(cfg, d, batch, dtype):
    layer, module = _pair(d, 4, 6, cfg, dtype)
    params = layer.init(random.key(0))
    x = random.normal(random.key(1), (*batch, 4, *(5,) * d), dtype=dtype)
    y, dparams, dx = assert_layer_matches_torch(layer, params, module, x)
    assert y.shape == layer.output_shape(x.shape) == tuple(module(to_torch(x)).shape)
    assert y.dtype == dx.dtype == dparams.weight.dtype == dtype


LAYOUT_CASES = [(layout, dict(kernel_size=3, padding=1)) for layout in LAYOUTS] + [
    (layout, dict(kernel_size=4, stride=2, padding=1, groups=2)) for layout in LAYOUTS if layout != "shifted"]


@pytest.mark.parametrize(("layout", "cfg"), LAYOUT_CASES)
def test_every_layout_gives_the_same_result(layout, cfg):
    layer = L.ConvTranspose2d(4, 6, **cfg, dtype=np.float64)
    params = layer.init(random.key(0))
    x = random.normal(random.key(1), (2, 4, 5, 6), dtype=np.float64)
    win = layer.windows(x.shape)
    assert shifted_applies(win, "zeros") == (cfg.get("stride", 1) == 1)
    y_ref, vjp_ref = layer.apply(params, x)
    y, vjp = conv_transpose(x, params.weight, params.bias, win, layer.groups, layout)
    dy = random.normal(random.key(2), y.shape, dtype=np.float64)
    assert_close(y, y_ref)
    (dW, db, dx), (dparams_ref, dx_ref) = vjp(dy), vjp_ref(dy)
    assert_close(dx, dx_ref)
    assert_close(dW, dparams_ref.weight)
    assert_close(db, dparams_ref.bias)
    assert vjp(dy, need_dx=False)[2] is None


def test_need_dx_false_skips_dx_and_keeps_the_gradients():
    layer = L.ConvTranspose2d(3, 2, 3, stride=2, dtype=np.float64)
    params = layer.init(random.key(0))
    x = random.normal(random.key(1), (2, 3, 4, 4), dtype=np.float64)
    dy = random.normal(random.key(2), layer.output_shape(x.shape), dtype=np.float64)
    dparams, dx = layer.apply(params, x, need_dx=False)[1](dy)
    assert dx is None
    assert leaves_equal(dparams, layer.apply(params, x)[1](dy)[0])


@pytest.mark.parametrize("cfg", [dict(kernel_size=3, stride=2, padding=1, output_padding=1),
                                 dict(kernel_size=2, dilation=2, groups=2, bias=False)])
def test_finite_differences(cfg):
    layer = L.ConvTranspose2d(2, 4, **cfg, dtype=np.float64)
    params = layer.init(random.key(0))
    check_vjp(layer, params, random.normal(random.key(1), (1, 2, 3, 3), dtype=np.float64))


def test_non_contiguous_input():
    layer, module = _pair(2, 3, 2, dict(kernel_size=3, stride=2), np.float64)
    x = random.normal(random.key(1), (2, 4, 3, 5), dtype=np.float64).transpose(0, 2, 3, 1)[:, :, :, ::2]
    assert x.shape == (2, 3, 5, 2) and not x.flags.c_contiguous
    assert_layer_matches_torch(layer, layer.init(random.key(0)), module, x)


@pytest.mark.parametrize("d", [1, 2])
def test_init_follows_torch(d):
    """U(+-1/sqrt(fan_in)), fan_in = out_channels / groups * prod(kernel), as torch's reset_parameters."""
    layer = getattr(L, f"ConvTranspose{d}d")(8, 6, 3, groups=2)
    params = layer.init(random.key(0))
    module = getattr(torch.nn, f"ConvTranspose{d}d")(8, 6, 3, groups=2)
    assert params.weight.shape == tuple(module.weight.shape) == (8, 3, *(3,) * d)
    assert list(module.state_dict()) == ["weight", "bias"]
    bound = 1 / math.sqrt(3 * 3**d)
    for ours, theirs in ((params.weight, module.weight), (params.bias, module.bias)):
        assert np.abs(ours).max() <= bound and np.abs(theirs.detach().numpy()).max() <= bound
    assert np.abs(params.weight).max() > 0.9 * bound  # the whole range is used (72 or 216 draws)
    assert params.weight.dtype == np.float32 and not params.weight.flags.writeable
    assert layer.init(random.key(0)) == params
    assert L.ConvTranspose2d(2, 2, 1, bias=False).init(random.key(0)).bias is None


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: L.ConvTranspose2d(3, 4, 3, groups=2), ValueError,
     r"ConvTranspose2d\(.*groups=2\): in_channels and out_channels must both be divisible by groups"),
    (lambda: L.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2), ValueError,
     r"output_padding must be smaller than either stride or dilation"),
    (lambda: L.ConvTranspose1d(2, 2, 3, padding_mode="reflect"), ValueError,
     r"ConvTranspose1d: expected padding_mode to be 'zeros', got 'reflect'"),
    (lambda: L.ConvTranspose2d(2, 2, (3, 3, 3)), ValueError,
     r"ConvTranspose2d: expected kernel_size to be an int or a tuple of 2 ints"),
    (lambda: L.ConvTranspose2d(2, 2, 3, padding=-1), ValueError, r"expected padding to be >= 0"),
    (lambda: L.ConvTranspose2d(2, 2, 3, padding="same"), TypeError, r"expected padding to be an int"),
])
def test_bad_hyperparameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_input():
    layer = L.ConvTranspose2d(3, 2, 3, padding=3, dtype=np.float64)
    params = layer.init(random.key(0))
    with pytest.raises(ValueError, match=r"ConvTranspose2d\(.*\): expected input of shape \(N, 3, H, W\) or "
                                         r"\(3, H, W\), got \(2, 4, 5, 5\)"):
        layer.apply(params, np.ones((2, 4, 5, 5)))
    with pytest.raises(ValueError, match=r"input of shape \(1, 3, 2, 2\) gives an output of spatial size "
                                         r"\(-2, -2\); expected every size >= 1"):
        layer.apply(params, np.ones((1, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"expected weight \(3, 2, 3, 3\) and bias \(2,\) or None, "
                                         r"got weight \(2, 3, 3, 3\)"):
        layer.apply(L.ConvParams(np.ones((2, 3, 3, 3)), np.ones(2)), np.ones((1, 3, 4, 4)))

"""Upsample against torch 2.13: nearest, linear and bilinear, with and without align_corners."""

import numpy as np
import pytest

from nptfunc import layers as L
from nptfunc import random
from nptfunc.layers.upsample import taps
from nptfunc.testing import assert_close, assert_layer_matches_torch, check_vjp, to_torch

torch = pytest.importorskip("torch")

MODES = [("nearest", 1, None), ("nearest", 2, None), ("linear", 1, None), ("linear", 1, True),
         ("linear", 1, False), ("bilinear", 2, None), ("bilinear", 2, True), ("bilinear", 2, False)]
SIZES = [dict(scale_factor=2), dict(scale_factor=1.5), dict(scale_factor=1.3),
         dict(scale_factor=0.5), dict(scale_factor=0.7), dict(scale_factor=1), dict(size=7), dict(size=1),
         dict(scale_factor=2.5, recompute_scale_factor=True)]


def _ids(v):
    return ",".join(f"{k}={w}" for k, w in v.items()) if isinstance(v, dict) else str(v)


@pytest.mark.parametrize(("mode", "d", "align_corners"), MODES, ids=_ids)
@pytest.mark.parametrize("kw", SIZES, ids=_ids)
@pytest.mark.parametrize("spatial", [(5, 6), (1, 1), (2, 3)], ids=_ids)
def test_matches_torch(mode, d, align_corners, kw, spatial, dtype):
    layer = L.Upsample(**kw, mode=mode, align_corners=align_corners)
    module = torch.nn.Upsample(**kw, mode=mode, align_corners=align_corners)
    x = random.normal(random.key(1), (2, 3, *spatial[:d]), dtype=dtype)
    try:
        out = module(to_torch(x))
    except RuntimeError:  # torch refuses an output of size 0; so do we
        with pytest.raises(ValueError, match=r"expected input and output sizes greater than 0"):
            layer.apply(None, x)
        return
    if mode == "nearest" and d == 1 and _torch_1d_backward_differs(spatial[0], kw):
        # torch's 1-d nearest backward takes shortcuts its forward does not (see upsample.taps):
        # the forward matches torch, the gradient is the adjoint of that forward
        y, vjp = layer.apply(None, x)
        assert_close(y, out, name="y")
        check_vjp(layer, None, x.astype(np.float64))
        return
    y, _, dx = assert_layer_matches_torch(layer, None, module, x)
    assert y.shape == layer.output_shape(x.shape) == tuple(out.shape)
    assert y.dtype == dx.dtype == dtype and y.flags.c_contiguous


def _torch_1d_backward_differs(n, kw):
    sf = kw.get("scale_factor")
    if sf is None or kw.get("recompute_scale_factor"):
        return False
    out = int(np.floor(n * sf))
    return (out == n and sf != 1) or (out == 2 * n and sf != 2)


def test_nearest_1d_gradient_is_the_adjoint_where_torch_shortcuts():
    """scale_factor=1.3 on 3 samples: torch's forward reads [0, 0, 1], its backward acts as the identity."""
    x = np.arange(3.0).reshape(1, 1, 3)
    y, vjp = L.Upsample(scale_factor=1.3).apply(None, x)
    assert y.ravel().tolist() == [0.0, 0.0, 1.0]
    assert vjp(np.array([[[1.0, 2.0, 3.0]]]))[1].ravel().tolist() == [3.0, 3.0, 0.0]
    y2, _ = L.Upsample(scale_factor=1.3).apply(None, np.broadcast_to(x[..., None, :], (1, 1, 3, 3)))
    assert y2[0, 0, 0].tolist() == [0.0, 1.0, 2.0]  # 2-d: torch's shortcut


@pytest.mark.parametrize(("mode", "d", "align_corners"), MODES, ids=_ids)
def test_per_axis_sizes_and_factors(mode, d, align_corners):
    for kw in (dict(scale_factor=(2.0, 1.5)[:d]), dict(size=(3, 8)[:d])):
        layer = L.Upsample(**kw, mode=mode, align_corners=align_corners)
        module = torch.nn.Upsample(**kw, mode=mode, align_corners=align_corners)
        x = random.normal(random.key(2), (1, 2, *(4, 5)[:d]), dtype=np.float64)
        assert_layer_matches_torch(layer, None, module, x)


@pytest.mark.parametrize(("mode", "d", "align_corners"), MODES, ids=_ids)
def test_empty_batch_and_non_contiguous_input(mode, d, align_corners):
    layer = L.Upsample(scale_factor=2, mode=mode, align_corners=align_corners)
    module = torch.nn.Upsample(scale_factor=2, mode=mode, align_corners=align_corners)
    assert_layer_matches_torch(layer, None, module, np.zeros((0, 2, *(3, 4)[:d])))
    x = random.normal(random.key(3), (3, 2, *(4, 5)[:d]), dtype=np.float64)
    x = np.swapaxes(x, 0, 1)
    assert not x.flags.c_contiguous
    assert_layer_matches_torch(layer, None, module, x)


@pytest.mark.parametrize(("mode", "d", "align_corners"), MODES, ids=_ids)
@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
def test_non_finite_values_like_torch(mode, d, align_corners, special):
    """An infinite input or cotangent spoils only the outputs that read it (no NaN rows from a matmul)."""
    layer = L.Upsample(scale_factor=2, mode=mode, align_corners=align_corners)
    module = torch.nn.Upsample(scale_factor=2, mode=mode, align_corners=align_corners)
    x = random.normal(random.key(4), (1, 2, *(3, 4)[:d]), dtype=np.float64)
    x.reshape(-1)[1] = special
    y, vjp = layer.apply(None, x)
    dy = random.normal(random.key(5), y.shape, dtype=np.float64)
    dy.reshape(-1)[3] = special
    with np.errstate(all="raise"):
        y, vjp = layer.apply(None, x)
    with np.errstate(all="raise"):  # no warning escapes the layer
        _, dx = vjp(dy)
    xt = to_torch(x).requires_grad_(True)
    yt = module(xt)
    yt.backward(to_torch(dy))
    assert_close(y, yt, name="y")
    assert_close(dx, xt.grad, name="dx")


@pytest.mark.parametrize(("mode", "d", "align_corners"), MODES, ids=_ids)
def test_finite_differences(mode, d, align_corners):
    layer = L.Upsample(scale_factor=1.7, mode=mode, align_corners=align_corners)
    check_vjp(layer, None, random.normal(random.key(6), (1, 2, *(3, 4)[:d]), dtype=np.float64))


def test_taps_follow_torchs_index_rules():
    # nearest: floor(o * in/out) in float32, clamped; with a scale factor, 1 / scale_factor is the step
    assert taps("nearest", 5, 7, None, False, np.float32)[0].tolist() == [0, 0, 1, 2, 2, 3, 4]
    assert taps("nearest", 5, 7, 1.5, False, np.float32)[0].tolist() == [0, 0, 1, 2, 2, 3, 4]
    assert taps("nearest", 4, 5, 1.3, False, np.float32)[0].tolist() == [0, 0, 1, 2, 3]
    assert taps("nearest", 5, 10, 2.1, False, np.float32, shortcuts=False)[0].tolist() == [0, 0, 0, 1, 1, 2, 2,
                                                                                            3, 3, 4]
    assert taps("nearest", 5, 10, 2.1, False, np.float32)[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # linear, half-pixel centres, clamped at 0: x2 gives weights 1/4 and 3/4
    i0, i1, w0, w1 = taps("linear", 3, 6, 2.0, False, np.float64)
    assert i0.tolist() == [0, 0, 0, 1, 1, 2] and i1.tolist() == [1, 1, 1, 2, 2, 2]
    np.testing.assert_allclose(w1, [0.0, 0.25, 0.75, 0.25, 0.75, 0.25])  # the last: both taps on pixel 2
    np.testing.assert_allclose(w0 + w1, 1.0)
    # align_corners: the end points coincide
    i0, _, _, w1 = taps("linear", 3, 5, None, True, np.float64)
    assert i0.tolist() == [0, 0, 1, 1, 2] and w1.tolist() == [0.0, 0.5, 0.0, 0.5, 0.0]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(), ValueError, r"Upsample\(size=None\): expected exactly one of size and scale_factor, neither was given"),
    (dict(size=2, scale_factor=2), ValueError, r"exactly one of size and scale_factor, both were given"),
    (dict(scale_factor=2, align_corners=True), ValueError,
     r"Upsample\(scale_factor=2.0, align_corners=True\): align_corners can only be set with mode 'linear' or "
     r"'bilinear' \(as torch\), got mode 'nearest'"),
    (dict(scale_factor=2, mode="bicubic"), ValueError,
     r"Upsample: expected mode to be one of 'nearest', 'linear', 'bilinear', got 'bicubic'"),
    (dict(scale_factor=0), ValueError, r"Upsample: expected scale_factor > 0 or None, got 0"),
    (dict(scale_factor="2"), TypeError, r"Upsample: expected scale_factor > 0 or None, got str '2'"),
    (dict(size=0), ValueError, r"Upsample: expected size to be an int >= 1 or None, got 0"),
    (dict(size=(2, 2.5)), TypeError, r"Upsample: expected size to be an int >= 1, got float 2.5"),
    (dict(scale_factor=2, mode="linear", align_corners=1), TypeError,
     r"Upsample: expected align_corners to be a bool \(True or False\), got int 1"),
    (dict(size=4, recompute_scale_factor=True), ValueError, r"recompute_scale_factor=True needs scale_factor"),
])
def test_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        L.Upsample(**kwargs)


@pytest.mark.parametrize(("kwargs", "shape", "match"), [
    (dict(scale_factor=2, mode="bilinear"), (1, 2, 3),
     r"Upsample\(scale_factor=2.0, mode='bilinear'\): expected input of shape \(N, C, H, W\), got \(1, 2, 3\)"),
    (dict(scale_factor=2, mode="linear"), (1, 2, 3, 3), r"expected input of shape \(N, C, L\), got \(1, 2, 3, 3\)"),
    (dict(scale_factor=2), (1, 2, 3, 3, 3),
     r"expected input of shape \(N, C, L\) or \(N, C, H, W\), got \(1, 2, 3, 3, 3\)"),
    (dict(size=(2, 3)), (1, 2, 3),
     r"expected size to have 1 entries for input of shape \(1, 2, 3\) \(one per spatial axis\), got \(2, 3\)"),
    (dict(scale_factor=0.4), (1, 2, 2), r"expected input and output sizes greater than 0, got input of shape "
                                        r"\(1, 2, 2\) and output size \(0,\)"),
])
def test_bad_input(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        L.Upsample(**kwargs).apply(None, np.ones(shape))

"""Conv1d and Conv2d: the table's cases in every internal layout, the slow reference, init and errors."""

import numpy as np
import pytest
import torch
from conftest import torch_dtype
from hypothesis import given, settings
from hypothesis import strategies as st
from parity_table import CONV2D_CASES, CONV_ROWS

from nptfunc import backend, layers, random
from nptfunc.layers import conv as conv_module
from nptfunc.layers._windows import Windows, window_output_size
from nptfunc.testing import assert_close, assert_layer_matches_torch, check_adjoint, check_vjp

# torch warns that 'same' with an even kernel copies the input; the warning is torch's business
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


@pytest.fixture(params=conv_module.LAYOUTS)
def layout(request, monkeypatch):
    """Force one of the internal layouts (all must match torch); ``shifted`` where it applies.

    Scratch buffers come filled with NaN, so reading one before writing it fails the test.
    """
    forced = request.param
    monkeypatch.setattr(backend.scratch, "empty", lambda xp, shape, dtype: xp.full(shape, np.nan, dtype))

    def choose(in_per_group, win, padding_mode):
        if forced == "shifted" and not conv_module.shifted_applies(win, padding_mode):
            return "channels_last"
        return forced

    monkeypatch.setattr(conv_module, "choose_layout", choose)
    return forced


def _x(shape, dtype, seed=0):
    return random.normal(random.key(seed), shape, dtype=dtype)


def _match(layer_cls, torch_cls, in_ch, out_ch, kwargs, shape, dtype, seed=0):
    layer = layer_cls(in_ch, out_ch, dtype=dtype, **kwargs)
    params = layer.init(random.key(seed))
    module = torch_cls(in_ch, out_ch, **kwargs).to(torch_dtype(dtype))
    x = _x(shape, dtype, seed + 1)
    y, dparams, dx = assert_layer_matches_torch(layer, params, module, x)
    assert y.shape == layer.output_shape(shape)
    assert y.dtype == dtype and dx.dtype == dtype and dparams.weight.dtype == dtype
    assert y.flags.c_contiguous and dx.flags.c_contiguous
    return layer, params, x


@pytest.mark.parametrize(("row", "dtype"), [pytest.param(row, dtype, id=f"{row.id}-{np.dtype(dtype).name}")
                                            for row in CONV_ROWS for dtype in row.dtypes])
def test_conv_rows_match_torch_in_every_layout(row, dtype, layout):
    """The table's convolutions (tests/parity_table.py) against torch in each internal layout."""
    y, _, dx = row.compare_with_torch(dtype)
    assert y.flags.c_contiguous and dx.flags.c_contiguous


# ----------------------------------------------------------------- slow reference
SLOW_CASES = ["k3-pad1", "nonsquare-k-stride-pad", "dilation-pair-stride", "same-even-k4", "groups2",
              "depthwise-multiplier", "one-channel", "no-bias", "reflect", "replicate", "circular"]


@pytest.mark.parametrize("case", SLOW_CASES)
def test_slow_conv2d_matches_fast(case, layout):
    in_ch, out_ch, kwargs, shape = CONV2D_CASES[case]
    fast = layers.Conv2d(in_ch, out_ch, dtype=np.float64, **kwargs)
    slow = layers.SlowConv2d(in_ch, out_ch, dtype=np.float64, **kwargs)
    params = fast.init(random.key(3))
    x = _x(shape, np.float64, 4)
    y, vjp = fast.apply(params, x)
    ys, vjps = slow.apply(params, x)
    assert_close(ys, y, name="y")
    dy = _x(y.shape, np.float64, 5)
    (dp, dx), (dps, dxs) = vjp(dy), vjps(dy)
    assert_close(dxs, dx, name="dx")
    assert_close(dps.weight, dp.weight, name="dweight")
    if dp.bias is None:
        assert dps.bias is None
    else:
        assert_close(dps.bias, dp.bias, name="dbias")


def test_slow_conv2d_matches_torch_unbatched():
    _match(layers.SlowConv2d, torch.nn.Conv2d, 2, 3, dict(kernel_size=(2, 3), stride=(1, 2), padding=1),
           (2, 5, 6), np.float64)


# ------------------------------------------------------------------ finite differences
@pytest.mark.parametrize(("kwargs", "shape"), [
    (dict(kernel_size=3, padding=1, stride=2), (2, 2, 5, 4)),
    (dict(kernel_size=2, groups=2, dilation=2, padding_mode="reflect", padding=1), (1, 2, 4, 5)),
])
def test_conv2d_vjp_finite_differences(kwargs, shape, layout):
    layer = layers.Conv2d(2, 2, dtype=np.float64, **kwargs)
    params = layer.init(random.key(0))
    check_vjp(layer, params, _x(shape, np.float64))
    check_adjoint(layer, params, _x(shape, np.float64, 1))


# ------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("size", [1, 2, 5, 8, 13])
@pytest.mark.parametrize(("k", "s", "d", "p"), [(1, 1, 1, 0), (3, 1, 1, 1), (3, 2, 1, 0), (2, 3, 2, 2),
                                                (5, 2, 1, 2)])
def test_window_output_size_is_torch_formula(size, k, s, d, p):
    layer = layers.Conv1d(1, 1, k, stride=s, dilation=d, padding=p)
    t = torch.nn.Conv1d(1, 1, k, stride=s, dilation=d, padding=p)
    if size + 2 * p < d * (k - 1) + 1:
        with pytest.raises(ValueError, match="smaller than the \\(dilated\\) kernel"):
            layer.output_shape((1, 1, size))
        with pytest.raises(RuntimeError):
            t(torch.zeros(1, 1, size))
        return
    expected = tuple(t(torch.zeros(1, 1, size)).shape)
    assert layer.output_shape((1, 1, size)) == expected
    assert window_output_size(size, k, s, d, p, p) == expected[-1]


def test_layout_heuristic():
    win = layers.Conv2d(1, 32, 3, padding=1).windows((64, 1, 28, 28))
    assert conv_module.choose_layout(1, win, "zeros") == "channels_first"
    win = layers.Conv2d(32, 64, 3, padding=1).windows((2, 32, 14, 14))
    assert conv_module.choose_layout(32, win, "zeros") == "shifted"
    assert conv_module.choose_layout(32, win, "reflect") == "channels_last"
    win = layers.Conv2d(32, 64, 3, padding=1, stride=2).windows((2, 32, 14, 14))
    assert conv_module.choose_layout(32, win, "zeros") == "channels_last"


@pytest.mark.parametrize(("kwargs", "applies"), [
    (dict(kernel_size=3, padding=1), True), (dict(kernel_size=4, padding="same"), True),
    (dict(kernel_size=3, padding=2, dilation=2), True), (dict(kernel_size=1), True),
    (dict(kernel_size=3), False), (dict(kernel_size=3, padding=1, stride=2), False),
    (dict(kernel_size=3, padding=2), False)])
def test_shifted_applies_to_same_size_stride_1(kwargs, applies):
    win = layers.Conv2d(2, 2, **kwargs).windows((1, 2, 6, 6))
    assert conv_module.shifted_applies(win, "zeros") is applies
    assert not conv_module.shifted_applies(win, "circular")
    if not applies:
        x = np.zeros((1, 2, 6, 6))
        w = np.zeros((2, 2, *win.kernel))
        with pytest.raises(ValueError, match="shifted layout needs stride 1"):
            conv_module.conv(x, w, None, win, layout="shifted")
    with pytest.raises(ValueError, match=r"conv: expected layout to be one of .* got 'channels-last'"):
        conv_module.conv(np.zeros((1, 2, 6, 6)), np.zeros((2, 2, *win.kernel)), None, win, layout="channels-last")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_3d_same_convolution_takes_another_layout_and_matches_torch(dtype):
    """The shifted layout serves 1-d and 2-d only: a 3-d 'same' convolution runs channels-last, as torch."""
    win = Windows.create((3, 4, 5), (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    assert not conv_module.shifted_applies(win, "zeros")
    assert conv_module.choose_layout(8, win, "zeros") == "channels_last"
    x, w, b = _x((2, 8, 3, 4, 5), dtype, 1), _x((6, 8, 3, 3, 3), dtype, 2), _x((6,), dtype, 3)
    dy = _x((2, 6, 3, 4, 5), dtype, 4)
    with pytest.raises(ValueError, match="1 or 2 spatial axes"):
        conv_module.conv(x, w, b, win, layout="shifted")
    y, vjp = conv_module.conv(x, w, b, win)
    dw, db, dx = vjp(dy)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv3d(tx, tw, tb, padding=1)
    ty.backward(torch.tensor(dy))
    for ours, theirs in ((y, ty), (dw, tw.grad), (db, tb.grad), (dx, tx.grad)):
        assert_close(ours, theirs.detach().numpy())


def test_same_padding_is_asymmetric_as_torch():
    win = layers.Conv2d(1, 1, (4, 3), padding="same", dilation=(1, 2)).windows((1, 1, 6, 6))
    assert win.pad_lo == (1, 2) and win.pad_hi == (2, 2)
    assert win.out == (6, 6)
    assert isinstance(win, Windows)


def test_hyperparameters_normalised_to_tuples():
    layer = layers.Conv2d(2, 4, 3, stride=2, padding=1, dilation=(1, 2))
    assert layer.kernel_size == (3, 3) and layer.stride == (2, 2) and layer.padding == (1, 1)
    assert layer.dilation == (1, 2)
    assert layers.Conv2d(2, 4, 3, padding="same").padding == "same"
    assert layer == layers.Conv2d(2, 4, (3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 2))


# -------------------------------------------------------------------------- init
@pytest.mark.parametrize(("in_ch", "out_ch", "k", "groups"), [(16, 64, 3, 1), (32, 64, (3, 5), 4)])
def test_conv2d_init_distribution(in_ch, out_ch, k, groups):
    layer = layers.Conv2d(in_ch, out_ch, k, groups=groups)
    p = layer.init(random.key(7))
    kk = (k, k) if isinstance(k, int) else k
    fan_in = in_ch // groups * kk[0] * kk[1]
    bound = 1 / np.sqrt(fan_in)
    assert p.weight.shape == (out_ch, in_ch // groups, *kk)
    assert p.bias.shape == (out_ch,)
    assert p.weight.dtype == np.float32 and p.bias.dtype == np.float32
    for a in (p.weight, p.bias):
        assert np.abs(a).max() <= bound
    w = p.weight.ravel()
    assert np.abs(w).max() > 0.98 * bound
    assert abs(w.mean()) < 0.02 * bound
    assert abs(w.var() / (bound**2 / 3) - 1) < 0.05
    np.testing.assert_allclose(np.quantile(w, [0.25, 0.75]), [-bound / 2, bound / 2], atol=0.03 * bound)
    # torch's own init has the same shapes and bound
    tw = torch.nn.Conv2d(in_ch, out_ch, k, groups=groups).weight.detach().numpy()
    assert tw.shape == p.weight.shape and np.abs(tw).max() <= bound + 1e-7
    # keys: same key same params, another key other params
    assert np.array_equal(layer.init(random.key(7)).weight, p.weight)
    assert not np.array_equal(layer.init(random.key(8)).weight, p.weight)


def test_init_without_bias_and_float64():
    p = layers.Conv1d(3, 2, 4, bias=False, dtype=np.float64).init(random.key(0))
    assert p.bias is None and p.weight.shape == (2, 3, 4) and p.weight.dtype == np.float64
    assert not p.weight.flags.writeable


# ------------------------------------------------------------------ purity
def test_conv_does_not_mutate_and_vjp_repeats(layout):
    layer = layers.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", dtype=np.float64)
    params = layer.init(random.key(0))
    x = _x((2, 2, 5, 5), np.float64)
    x.flags.writeable = False
    x0 = x.copy()
    y, vjp = layer.apply(params, x)
    dy = _x(y.shape, np.float64, 1)
    dy0 = dy.copy()
    (dp1, dx1), (dp2, dx2) = vjp(dy), vjp(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(dp1.weight, dp2.weight)


def test_scratch_buffers_never_leak_into_results(layout):
    """Results stay intact while later calls reuse the internal buffers, and a vjp can run late."""
    layer = layers.Conv2d(3, 4, 3, padding=1, dtype=np.float64)
    params = layer.init(random.key(0))
    x1, x2 = _x((2, 3, 5, 6), np.float64, 1), _x((2, 3, 5, 6), np.float64, 2)
    dy = _x((2, 4, 5, 6), np.float64, 3)
    y1, vjp1 = layer.apply(params, x1)
    dp1, dx1 = vjp1(dy)
    copies = [a.copy() for a in (y1, dx1, dp1.weight, dp1.bias)]
    y2, vjp2 = layer.apply(params, x2)
    del vjp1  # its buffers go back to the pool, and the next calls take them
    for _ in range(3):
        y3, vjp3 = layer.apply(params, x1)
        vjp3(dy)
    dp2, dx2 = vjp2(dy)
    for a, c in zip((y1, dx1, dp1.weight, dp1.bias), copies, strict=True):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(y3, y1)
    fresh_y2, fresh_vjp2 = layers.Conv2d(3, 4, 3, padding=1, dtype=np.float64).apply(params, x2)
    np.testing.assert_array_equal(y2, fresh_y2)
    np.testing.assert_array_equal(dx2, fresh_vjp2(dy)[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("in_ch", "out_ch", "kwargs", "shape"), [
    (6, 4, dict(kernel_size=3, padding=1), (7, 6, 5, 6)),
    (4, 6, dict(kernel_size=(3, 2), padding="same", dilation=(2, 1), groups=2), (5, 4, 6, 5)),
    (4, 4, dict(kernel_size=5, padding=2, bias=False), (5, 4, 3, 4)),
])
def test_shifted_forward_in_image_chunks_on_three_threads_matches_torch(monkeypatch, in_ch, out_ch, kwargs,
                                                                         shape, dtype):
    """The shifted forward's per-image products: one image per product (its partial sums in a
    per-thread buffer), the images split over 3 threads, scratch buffers filled with NaN."""
    monkeypatch.setattr(backend.scratch, "empty", lambda xp, shape, dtype: xp.full(shape, np.nan, dtype))
    monkeypatch.setattr(conv_module, "choose_layout", lambda *_: "shifted")
    monkeypatch.setattr(conv_module, "_IN_CACHE", 1)
    monkeypatch.setattr(backend, "MIN_MATMUL", 1)
    monkeypatch.setattr(backend, "MIN_CHUNK", 1)
    before = backend.get_num_threads()
    backend.set_num_threads(3)
    try:
        _match(layers.Conv2d, torch.nn.Conv2d, in_ch, out_ch, kwargs, shape, dtype)
    finally:
        backend.set_num_threads(before)


@pytest.mark.parametrize(("where", "dtype"), [("x", np.float32), ("x", np.float64), ("dy", np.float64)])
def test_conv_nonfinite_at_image_borders_matches_torch(layout, where, dtype):
    """NaN and inf in the first/last rows and columns: reads that leave an image must see zero padding.

    With an infinite ``dy`` at a border, a padding zero times inf is NaN in ``dweight``
    in torch's float64 convolution (and ours); torch's float32 (oneDNN) kernel skips
    the padding instead, so that case is compared in float64 only.
    """
    layer = layers.Conv2d(2, 3, 3, padding=1, dtype=dtype)
    params = layer.init(random.key(0))
    x = _x((2, 2, 4, 5), dtype, 1)
    dy = _x((2, 3, 4, 5), dtype, 2)
    if where == "x":
        x[0, 0, 0, -1], x[0, 1, 1, 0], x[0, 0, -1, 2], x[1, 1, 0, 0], x[1, 0, 2, -1] = (
            np.inf, np.nan, -np.inf, np.inf, np.nan)
    else:
        dy[0, 0, 0, -1], dy[1, 2, -1, 0], dy[0, 1, 1, 0] = np.inf, np.nan, -np.inf
    module = torch.nn.Conv2d(2, 3, 3, padding=1).to(torch_dtype(dtype))
    with np.errstate(all="ignore"):
        assert_layer_matches_torch(layer, params, module, x, dy=dy)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, padding=1), dict(kernel_size=3, stride=2)])
def test_empty_batch_matches_torch(layout, kwargs):
    layer = layers.Conv2d(3, 4, dtype=np.float64, **kwargs)
    params = layer.init(random.key(0))
    module = torch.nn.Conv2d(3, 4, **kwargs).double()
    y, dparams, dx = assert_layer_matches_torch(layer, params, module, np.zeros((0, 3, 5, 5)))
    assert y.shape == (0, 4, *layer.output_shape((1, 3, 5, 5))[2:]) and dx.shape == (0, 3, 5, 5)
    np.testing.assert_array_equal(dparams.weight, 0.0)


def test_integer_input_is_cast_to_param_dtype():
    layer = layers.Conv2d(1, 2, 2, dtype=np.float64)
    y, _ = layer.apply(layer.init(random.key(0)), np.arange(9).reshape(1, 1, 3, 3))
    assert y.dtype == np.float64


# ------------------------------------------------------------------------ errors
def test_wrong_channel_count_message():
    layer = layers.Conv2d(3, 8, 3)
    params = layer.init(random.key(0))
    with pytest.raises(ValueError, match=r"Conv2d\(in_channels=3, out_channels=8, kernel_size=\(3, 3\)\): "
                                         r"expected input of shape \(N, 3, H, W\) or \(3, H, W\), "
                                         r"got \(8, 4, 5, 5\)"):
        layer.apply(params, np.zeros((8, 4, 5, 5), np.float32))


@pytest.mark.parametrize("shape", [(5, 5), (1, 1, 3, 5, 5), (3,)])
def test_wrong_rank(shape):
    layer = layers.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\) or \(3, H, W\)"):
        layer.apply(layer.init(random.key(0)), np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, L\) or \(3, L\)"):
        layers.Conv1d(3, 8, 3).output_shape(shape)


def test_kernel_larger_than_padded_input():
    layer = layers.Conv2d(1, 1, (3, 5), padding=1)
    with pytest.raises(ValueError, match=r"input of spatial size \(2, 2\) is \(4, 4\) after padding, "
                                         r"smaller than the \(dilated\) kernel \(3, 5\)"):
        layer.apply(layer.init(random.key(0)), np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"smaller than the \(dilated\) kernel \(5,\)"):
        layers.Conv1d(1, 1, 3, dilation=2).output_shape((1, 1, 4))


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    ((3, 4, 3), dict(groups=2), "in_channels and out_channels must both be divisible by groups, got groups=2"),
    ((4, 6, 3), dict(groups=4), "divisible by groups, got groups=4"),
    ((4, 4, 3), dict(groups=0), "expected groups to be an int >= 1, got 0"),
    ((3, 4, 3), dict(padding="same", stride=2), "padding='same' is not supported for strided convolutions"),
    ((3, 4, 3), dict(padding="full"), "expected padding to be an int, a tuple, 'valid' or 'same', got 'full'"),
    ((3, 4, 3), dict(padding=-1), "expected padding to be >= 0, got -1"),
    ((3, 4, 0), dict(), "expected kernel_size to be >= 1, got 0"),
    ((3, 4, (3, 3, 3)), dict(), "expected kernel_size to be an int or a tuple of 2 ints"),
    ((3, 4, 3), dict(stride=0), "expected stride to be >= 1, got 0"),
    ((3, 4, 3), dict(dilation=(1, 0)), r"expected dilation to be >= 1, got \(1, 0\)"),
    ((3, 4, 3), dict(padding_mode="mirror"), "expected padding_mode to be one of .*'circular'.*got 'mirror'"),
    ((0, 4, 3), dict(), "expected in_channels to be an int >= 1, got 0"),
])
def test_bad_configurations(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        layers.Conv2d(*args, **kwargs)


def test_bad_types():
    with pytest.raises(TypeError, match="expected kernel_size to be an int or a tuple of 2 ints, got 2.5"):
        layers.Conv2d(1, 1, 2.5)
    with pytest.raises(TypeError, match="expected in_channels to be an int"):
        layers.Conv2d("3", 1, 2)


def test_padding_too_large_for_mode():
    with pytest.raises(ValueError, match="padding_mode='reflect' needs padding smaller than the input size"):
        layers.Conv2d(1, 1, 3, padding=3, padding_mode="reflect").output_shape((1, 1, 3, 8))
    with pytest.raises(ValueError, match="padding_mode='circular' needs padding at most the input size"):
        layers.Conv1d(1, 1, 3, padding=4, padding_mode="circular").output_shape((1, 1, 3))
    # the limits themselves are fine, as in torch
    for mode, p in (("reflect", 2), ("circular", 3)):
        _match(layers.Conv1d, torch.nn.Conv1d, 1, 1, dict(kernel_size=3, padding=p, padding_mode=mode),
               (1, 1, 3), np.float64)


def test_dtype_params_and_cotangent_errors():
    layer = layers.Conv2d(2, 3, 3)
    params = layer.init(random.key(0))
    y64, vjp64 = layer.apply(params, np.zeros((1, 2, 4, 4)))  # float64 input: cast, dx in float64
    assert y64.dtype == np.float32 and vjp64(np.ones(y64.shape))[1].dtype == np.float64
    with pytest.raises(TypeError, match="expected params of class ConvParams"):
        layer.apply(None, np.zeros((1, 2, 4, 4), np.float32))
    other = layers.Conv2d(2, 3, 2).init(random.key(0))
    with pytest.raises(ValueError, match=r"expected weight \(3, 2, 3, 3\) and bias \(3,\) or None, "
                                         r"got weight \(3, 2, 2, 2\)"):
        layer.apply(other, np.zeros((1, 2, 4, 4), np.float32))
    _, vjp = layer.apply(params, np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"vjp: expected dy of shape \(1, 3, 2, 2\)"):
        vjp(np.zeros((1, 3, 2, 3), np.float32))


# ------------------------------------------------------------- the shifted layout, by property
@settings(max_examples=60, deadline=None, derandomize=True)
@given(d=st.integers(1, 2), groups=st.integers(1, 2), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
       data=st.data())
def test_shifted_layout_equals_channels_last_on_same_convolutions(d, groups, c_in, c_out, data):
    """Any 'same' geometry (odd or even kernels, dilation past the image): both layouts agree to 1e-12."""
    kernel = tuple(data.draw(st.integers(1, 4)) for _ in range(d))
    dilation = tuple(data.draw(st.integers(1, 3)) for _ in range(d))
    size = tuple(data.draw(st.integers(1, 6)) for _ in range(d))
    cls = layers.Conv1d if d == 1 else layers.Conv2d
    layer = cls(groups * c_in, groups * c_out, kernel, padding="same", dilation=dilation, groups=groups,
                bias=data.draw(st.booleans()), dtype=np.float64)
    shape = (data.draw(st.integers(1, 3)), groups * c_in, *size)
    win = layer.windows(shape)
    assert conv_module.shifted_applies(win, "zeros")
    seed = data.draw(st.integers(0, 2**16))
    params = layer.init(random.key(seed))
    x, dy = _x(shape, np.float64, seed + 1), _x(layer.output_shape(shape), np.float64, seed + 2)
    results = []
    for name in ("shifted", "channels_last"):
        y, vjp = conv_module.conv(x, params.weight, params.bias, win, groups, layout=name)
        results.append((y, *vjp(dy)))
    for got, want in zip(*results, strict=True):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

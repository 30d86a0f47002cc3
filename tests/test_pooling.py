"""Pooling: MaxPool's tie and NaN rules (the table's max poolings on ties), divisors, the slow reference, errors.

The plain torch comparisons are rows of tests/parity_table.py.
"""

import numpy as np
import pytest
import torch
from parity_table import MAX2D_CASES, MAXPOOL_ROWS

from nptfunc import layers, random
from nptfunc.testing import assert_close, assert_layer_matches_torch, check_vjp


def _x(shape, dtype, seed=0):
    return random.normal(random.key(seed), shape, dtype=dtype)


def _ints(shape, dtype, seed=0, high=3):
    """Integer-valued floats: windows full of ties."""
    return random.generator(random.key(seed)).integers(-high, high + 1, size=shape).astype(dtype)


def _match(layer, module, x):
    y, dparams, dx = assert_layer_matches_torch(layer, None, module, x)
    assert dparams is None
    assert y.shape == layer.output_shape(x.shape)
    assert y.dtype == x.dtype and dx.dtype == x.dtype
    return y, dx


@pytest.mark.parametrize("row", MAXPOOL_ROWS, ids=[row.id for row in MAXPOOL_ROWS])
def test_maxpool_rows_match_torch_on_ties(row, dtype):
    """The table's max poolings (tests/parity_table.py) on integer-valued input: windows full of ties."""
    x = _ints(row.example(dtype)[3].shape, dtype, high=1 if row.id.startswith("maxpool1d") else 3)
    _match(row.make(dtype), row.torch(dtype), x)


def test_maxpool_tie_goes_to_first_in_row_major_order():
    x = np.zeros((1, 1, 4, 4), np.float32)
    y, vjp = layers.MaxPool2d(2).apply(None, x)
    _, dx = vjp(np.ones_like(y))
    expected = np.zeros((4, 4), np.float32)
    expected[0::2, 0::2] = 1  # the top-left element of every window
    np.testing.assert_array_equal(dx[0, 0], expected)
    # overlapping windows over a constant row: window i starts at i, so its first element is i
    _, vjp = layers.MaxPool1d(3, stride=1).apply(None, np.ones((1, 5), np.float64))
    np.testing.assert_array_equal(vjp(np.array([[1.0, 10.0, 100.0]]))[1], [[1.0, 10.0, 100.0, 0, 0]])
    # a tie between the second row's first element and the first row's last: the first row wins
    x = np.array([[[[0.0, 5.0], [5.0, 1.0]]]])
    _, vjp = layers.MaxPool2d(2).apply(None, x)
    np.testing.assert_array_equal(vjp(np.ones((1, 1, 1, 1)))[1], [[[[0.0, 1.0], [0.0, 0.0]]]])


@pytest.mark.parametrize("block_bytes", [1, 200, 1 << 20])
@pytest.mark.parametrize(("cls", "kwargs", "shape"), [
    (layers.MaxPool2d, dict(kernel_size=2), (3, 4, 8, 10)),
    (layers.MaxPool2d, dict(kernel_size=(3, 2)), (2, 3, 9, 6)),
    (layers.MaxPool2d, dict(kernel_size=(1, 2), stride=(1, 2)), (2, 2, 5, 8)),
    (layers.MaxPool2d, dict(kernel_size=2), (3, 8, 4)),  # unbatched
    (layers.MaxPool1d, dict(kernel_size=2), (3, 4, 12)),
])
def test_maxpool_pairs_path_in_blocks_matches_torch_on_ties(monkeypatch, block_bytes, cls, kwargs, shape, dtype):
    """Windows two wide that tile the input run in blocks of rows (pooling._max_pairs): any block size."""
    from nptfunc.layers import pooling
    monkeypatch.setattr(pooling, "_PAIR_BLOCK_BYTES", block_bytes)
    layer = cls(**kwargs)
    x = _ints(shape, dtype, high=1)  # three values: most windows hold ties
    assert pooling._pairs_apply(x, layer.windows(x.shape))
    torch_cls = getattr(torch.nn, cls.__name__)
    _match(layer, torch_cls(**kwargs), x)
    # and when -inf fills windows, and +inf ties
    x[0, ..., :2] = -np.inf
    x[-1, ..., -1] = np.inf
    _match(layer, torch_cls(**kwargs), x)


def test_maxpool_pairs_path_takes_no_part_of_a_strided_input():
    """A non-contiguous input takes the general path, with the same result."""
    from nptfunc.layers import pooling
    x = _ints((2, 3, 8, 12), np.float64, high=1)[..., ::2]
    layer = layers.MaxPool2d(2)
    assert not pooling._pairs_apply(x, layer.windows(x.shape))
    _match(layer, torch.nn.MaxPool2d(2), x)


def _nonfinite(shape, dtype):
    x = _ints(shape, dtype, seed=3)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 2, 2] = np.nan  # two NaN in one window
    x[0, 0, 0, 3] = np.nan
    x[1, 1, :3, :3] = -np.inf  # windows of only -inf, touching the padding
    x[1, 0] = -np.inf
    x[0, 1, 0, :] = np.inf
    return x


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                                    dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)])
def test_maxpool_nan_and_infinities_match_torch(kwargs, dtype):
    x = _nonfinite((2, 2, 6, 7), dtype)
    y, dx = _match(layers.MaxPool2d(**kwargs), torch.nn.MaxPool2d(**kwargs), x)
    assert np.isnan(y).any() and np.isneginf(y).any()
    # the slow reference, torch's loop written out, agrees too
    ys, vjp_s = layers.SlowMaxPool2d(**kwargs).apply(None, x)
    dy = _x(y.shape, dtype, 1)
    _, vjp = layers.MaxPool2d(**kwargs).apply(None, x)
    np.testing.assert_array_equal(ys, y)
    assert_close(vjp_s(dy)[1], vjp(dy)[1])  # overlapping windows sum in another order


def test_maxpool_nan_gradient_goes_to_last_nan():
    x = np.array([[[[np.nan, 3.0], [np.nan, 1.0]]]])
    y, vjp = layers.MaxPool2d(2).apply(None, x)
    assert np.isnan(y).all()
    np.testing.assert_array_equal(vjp(np.ones((1, 1, 1, 1)))[1], [[[[0.0, 0.0], [1.0, 0.0]]]])


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1)])
def test_maxpool_infinite_cotangent_stays_where_it_is_sent(kwargs):
    """An inf in dy reaches only the chosen element (0 * inf elsewhere would be NaN)."""
    x = _x((1, 2, 4, 6), np.float64)
    layer = layers.MaxPool2d(**kwargs)
    y, _ = layer.apply(None, x)
    dy = np.ones_like(y)
    dy[0, 0, 0, 0] = np.inf
    dy[0, 1, 1, 1] = np.nan
    _, _, dx = assert_layer_matches_torch(layer, None, torch.nn.MaxPool2d(**kwargs), x, dy=dy)
    assert np.isposinf(dx).sum() == 1 and np.isnan(dx).sum() == 1


@pytest.mark.parametrize("case", ["k2-odd-size", "k3-s2-p1", "nonsquare", "dilation-pair", "ceil-k3-s2-p1",
                                  "ceil-dropped-window", "stride-gt-kernel"])
@pytest.mark.parametrize("values", ["normal", "ties"])
def test_slow_maxpool2d_matches_fast(case, values):
    kwargs, shape = MAX2D_CASES[case]
    x = _x(shape, np.float64) if values == "normal" else _ints(shape, np.float64, high=1)
    y, vjp = layers.MaxPool2d(**kwargs).apply(None, x)
    ys, vjp_s = layers.SlowMaxPool2d(**kwargs).apply(None, x)
    np.testing.assert_array_equal(ys, y)
    dy = _x(y.shape, np.float64, 1)
    assert_close(vjp_s(dy)[1], vjp(dy)[1])


def test_maxpool_does_not_mutate_and_works_on_readonly_input():
    x = _ints((2, 2, 5, 5), np.float64)
    x.flags.writeable = False
    x0 = x.copy()
    y, vjp = layers.MaxPool2d(3, 2, padding=1).apply(None, x)
    dy = _x(y.shape, np.float64)
    dy0 = dy.copy()
    _, dx1 = vjp(dy)
    _, dx2 = vjp(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)
    np.testing.assert_array_equal(dx1, dx2)


# ----------------------------------------------------------------------- average
def test_avgpool_divisor_rules():
    """Explicit values: a 3x3 window of ones at a corner, with and without the padding counted."""
    x = np.ones((1, 1, 4, 4))
    y_in, _ = layers.AvgPool2d(3, 2, padding=1).apply(None, x)
    y_ex, _ = layers.AvgPool2d(3, 2, padding=1, count_include_pad=False).apply(None, x)
    np.testing.assert_allclose(y_in[0, 0], [[4 / 9, 6 / 9], [6 / 9, 1.0]])
    np.testing.assert_allclose(y_ex[0, 0], np.ones((2, 2)))
    # ceil_mode overhang past the right padding is not counted: 1-d length 5, k=4, s=3, p=1
    y, _ = layers.AvgPool1d(4, 3, padding=1, ceil_mode=True).apply(None, np.ones((1, 5)))
    # windows [-1, 3) -> 3 inputs / 4; [2, 6) -> 3 inputs + 1 padding, overhang (6) dropped -> 3 / 4
    np.testing.assert_allclose(y, [[3 / 4, 3 / 4]])


def test_avgpool_vjp_finite_differences():
    check_vjp(layers.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False), None,
              _x((1, 2, 5, 6), np.float64))


# ---------------------------------------------------------------------- adaptive
def test_adaptive_global_pool_is_mean_and_equals_avgpool_when_dividing():
    x = _x((2, 3, 6, 4), np.float64)
    y, _ = layers.AdaptiveAvgPool2d(1).apply(None, x)
    assert_close(y, x.mean(axis=(2, 3), keepdims=True))
    y2, _ = layers.AdaptiveAvgPool2d((3, 2)).apply(None, x)
    y3, _ = layers.AvgPool2d(2).apply(None, x)
    assert_close(y2, y3)


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize("cls", [layers.MaxPool2d, layers.AvgPool2d])
def test_pool_padding_larger_than_half_kernel(cls):
    with pytest.raises(ValueError, match=r"padding must be at most half the kernel size \(as torch\), "
                                         r"got padding=\(2, 2\)"):
        cls(3, padding=2)
    with pytest.raises(ValueError, match=r"padding=\(0, 2\)"):
        cls((2, 3), padding=(0, 2))
    cls(4, padding=2)  # exactly half is fine


def test_maxpool_padding_rule_ignores_dilation_as_torch():
    with pytest.raises(ValueError, match="at most half the kernel size"):
        layers.MaxPool2d(3, padding=2, dilation=2)
    with pytest.raises(RuntimeError, match="pad should be"):
        torch.nn.MaxPool2d(3, padding=2, dilation=2)(torch.zeros(1, 1, 9, 9))


@pytest.mark.parametrize("layer", [layers.MaxPool2d(2), layers.AvgPool2d(2), layers.AdaptiveAvgPool2d(2)])
@pytest.mark.parametrize("shape", [(4, 4), (1, 1, 1, 4, 4)])
def test_pool2d_wrong_rank(layer, shape):
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, H, W\) or \(C, H, W\), got"):
        layer.apply(None, np.zeros(shape, np.float32))


def test_pool1d_wrong_rank():
    with pytest.raises(ValueError, match=r"MaxPool1d\(.*\): expected input of shape \(N, C, L\) or \(C, L\), "
                                         r"got \(2, 2, 4, 4\)"):
        layers.MaxPool1d(2).apply(None, np.zeros((2, 2, 4, 4)))


def test_pool_input_too_small():
    with pytest.raises(ValueError, match=r"input of spatial size \(1, 5\) is too small .* output size would be "
                                         r"\(0, 2\)"):
        layers.MaxPool2d(2).apply(None, np.zeros((1, 1, 1, 5)))
    with pytest.raises(ValueError, match="too small"):
        layers.AvgPool1d(3).output_shape((1, 2))


@pytest.mark.parametrize(("make", "match", "exc"), [
    (lambda: layers.MaxPool2d(0), "expected kernel_size to be >= 1", ValueError),
    (lambda: layers.MaxPool2d(2, stride=0), "expected stride to be >= 1", ValueError),
    (lambda: layers.MaxPool2d(2, dilation=0), "expected dilation to be >= 1", ValueError),
    (lambda: layers.AvgPool2d((2, 2, 2)), "expected kernel_size to be an int or a tuple of 2 ints", ValueError),
    (lambda: layers.MaxPool1d(2, padding=-1), "expected padding to be >= 0", ValueError),
    (lambda: layers.AvgPool2d(2.0), "expected kernel_size to be an int", TypeError),
    (lambda: layers.AdaptiveAvgPool2d((2, 2, 2)), "expected output_size to be an int, None or a tuple of 2",
     ValueError),
    (lambda: layers.AdaptiveAvgPool2d(0), "expected output_size to be an int >= 1 or None, got 0", ValueError),
])
def test_bad_pool_configurations(make, match, exc):
    with pytest.raises(exc, match=match):
        make()


def test_positional_arguments_follow_torch():
    assert layers.MaxPool2d(3, 2, 1, 2, True) == layers.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True)
    assert layers.AvgPool2d(3, 2, 1, True, False) == layers.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                                                      count_include_pad=False)


def test_pool_defaults_and_cotangent_check():
    layer = layers.MaxPool2d(3)
    assert layer.stride == (3, 3) and layer.padding == (0, 0) and layer.dilation == (1, 1)
    assert layers.AvgPool2d((2, 3)).stride == (2, 3)
    _, vjp = layer.apply(None, np.zeros((1, 1, 6, 6)))
    with pytest.raises(ValueError, match=r"vjp: expected dy of shape \(1, 1, 2, 2\)"):
        vjp(np.zeros((1, 1, 2, 3)))
    with pytest.raises(TypeError, match="has no parameters"):
        layer.apply(object(), np.zeros((1, 1, 6, 6)))

"""Every layer of the table against torch, by finite differences and for the contract; property tests.

``parity_table.TABLE`` holds the rows; :func:`nptfunc.testing.check_layer` checks a
row in one call (see its docstring for what it checks). The hypothesis tests at the
end draw shapes and hyperparameters of every family in their valid ranges.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parity_table import TABLE
from scale_layer import Scale

from nptfunc import layers as L
from nptfunc import random, tree
from nptfunc.testing import assert_close, call_layer, check_contract, check_vjp, leaves_equal

# torch warns that 'same' padding with an even kernel copies the input; the warning is torch's business
pytestmark = [pytest.mark.filterwarnings("ignore:Using padding='same'"),
              pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")]

CASES = [pytest.param(row, dtype, id=f"{row.id}-{np.dtype(dtype).name}")
         for row in TABLE for dtype in row.dtypes]


@pytest.mark.parametrize(("row", "dtype"), CASES)
def test_row(row, dtype):
    if row.torch is not None:
        pytest.importorskip("torch")
    row.check(dtype)


# one row per distinct layer for the checks that do not depend on the input's values; rows with plain
# input shapes first (the earlier contract table's rows are among them)
def _distinct(rows):
    seen, out = set(), []
    for row in sorted(rows, key=lambda r: r.inputs is not None):
        k = repr(row.make(np.float64))
        if k not in seen:
            seen.add(k)
            out.append(row)
    return out


DISTINCT = _distinct(TABLE)
DISTINCT_IDS = [row.id for row in DISTINCT]
STATEFUL = [row for row in DISTINCT if row.make(np.float64).stateful]


@pytest.mark.parametrize("row", STATEFUL, ids=[row.id for row in STATEFUL])
def test_short_form_of_stateful_layer_is_a_type_error(row):
    layer, params, _, x = row.example(np.float64)
    with pytest.raises(TypeError, match=r"is stateful: call apply\(params, x, state, train=True\|False\)"):
        layer.apply(params, x)


@pytest.mark.parametrize("row", DISTINCT, ids=DISTINCT_IDS)
def test_layers_are_immutable_and_hashable(row):
    layer = row.make(np.float32)
    with pytest.raises(AttributeError):
        layer.dtype = np.float64
    assert row.make(np.float32) == layer
    hash(layer)


def _bad_shapes(shape):
    yield ()
    yield (*shape, 2)
    yield shape[1:] or (3,)
    for i in range(len(shape)):
        yield tuple(d + 1 if j == i else d for j, d in enumerate(shape))
    yield tuple(0 if j == 0 else d for j, d in enumerate(shape))


# Layers with a tuple of inputs (recurrent layers given initial states) test their bad shapes in their family
# file; a tuple of outputs is compared array by array.
BAD_SHAPE_CASES = [row for row in DISTINCT if not isinstance(row.example(np.float64)[3], tuple)]


@pytest.mark.parametrize("row", BAD_SHAPE_CASES, ids=[row.id for row in BAD_SHAPE_CASES])
def test_bad_input_shapes_fail_clearly_or_work(row):
    """A wrong shape is either valid (as in torch) or a ValueError/TypeError naming the layer."""
    layer, params, state, x = row.example(np.float64)
    cls = type(layer).__name__
    for bad in _bad_shapes(x.shape):
        x = np.ones(bad)
        try:
            y, vjp, _ = call_layer(layer, params, x, state)
        except (ValueError, TypeError) as e:
            assert cls in str(e), f"{bad}: {e}"
            continue
        assert tree.tree_map(np.shape, y) == layer.output_shape(bad)
        with np.errstate(all="ignore"):
            _, dx = vjp(tree.tree_map(np.ones_like, y))
        assert dx.shape == bad


@pytest.mark.parametrize("row", DISTINCT, ids=DISTINCT_IDS)
def test_vjp_rejects_wrong_dy_shape(row):
    layer, params, state, x = row.example(np.float64)
    y, vjp, _ = call_layer(layer, params, x, state)
    wrong = tree.tree_map(lambda a: np.ones((*a.shape, 2)), y)  # every output array (a tuple's too)
    with pytest.raises(ValueError, match=r"vjp: expected dy of shape"):
        vjp(wrong)


# ------------------------------------------------------------------- property tests
SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

dims = st.integers(1, 4)


@st.composite
def shapes(draw, min_rank=1, max_rank=4):
    return tuple(draw(st.lists(dims, min_size=min_rank, max_size=max_rank)))


@st.composite
def linear_case(draw):
    n_in, n_out = draw(dims), draw(dims)
    lead = draw(shapes(0, 2))
    return L.Linear(n_in, n_out, bias=draw(st.booleans()), dtype=np.float64), (*lead, n_in)


@st.composite
def activation_case(draw):
    shape = draw(shapes())
    rank = len(shape)
    layer = draw(st.sampled_from([
        L.ReLU(), L.LeakyReLU(draw(st.floats(0.0, 1.0))), L.Sigmoid(), L.Tanh(), L.GELU(), L.GELU("tanh"),
        L.Identity(), L.Softmax(draw(st.integers(-rank, rank - 1))), L.LogSoftmax(draw(st.integers(-rank, rank - 1))),
        L.SiLU(), L.ELU(draw(st.floats(-2.0, 2.0))), L.Mish(), L.Softsign(), L.Hardswish(), L.Hardsigmoid(),
        L.Softplus(draw(st.sampled_from([0.5, 1.0, 3.0])), draw(st.sampled_from([1.0, 20.0]))),
        L.Hardtanh(-draw(st.floats(0.1, 2.0)), draw(st.floats(0.1, 2.0))), L.ReLU6(),
    ]))
    if draw(st.booleans()):
        channels = shape[1] if rank >= 2 else 1
        layer = L.PReLU(draw(st.sampled_from([1, channels])), init=draw(st.floats(-1.0, 1.0)), dtype=np.float64)
    return layer, shape


@st.composite
def flatten_case(draw):
    shape = draw(shapes())
    n = len(shape)
    start = draw(st.integers(0, n - 1))
    end = draw(st.integers(start, n - 1))
    if draw(st.booleans()):  # its inverse: split one axis into two
        d = draw(st.integers(0, n - 1))
        a = draw(st.integers(1, 3))
        shape = (*shape[:d], a * shape[d], *shape[d + 1:])
        return L.Unflatten(d - n if draw(st.booleans()) else d, (a, -1 if draw(st.booleans()) else shape[d] // a)), shape
    return L.Flatten(start - n if draw(st.booleans()) else start, end), shape


@st.composite
def norm_case(draw):
    kind = draw(st.sampled_from(["bn1d", "bn2d", "ln", "gn"]))
    n = draw(st.integers(2, 4))
    c = draw(dims)
    if kind == "bn1d":
        shape = (n, c) if draw(st.booleans()) else (n, c, draw(dims))
        return L.BatchNorm1d(c, momentum=draw(st.sampled_from([0.1, 0.5, None])), dtype=np.float64), shape
    if kind == "bn2d":
        return L.BatchNorm2d(c, affine=draw(st.booleans()), dtype=np.float64), (n, c, draw(dims), draw(dims))
    if kind == "ln":
        shape = draw(shapes(1, 3))
        k = draw(st.integers(1, len(shape)))
        return L.LayerNorm(shape[-k:], bias=draw(st.booleans()), dtype=np.float64), (n, *shape)
    groups = draw(dims)
    return L.GroupNorm(groups, groups * c, dtype=np.float64), (n, groups * c, draw(dims))


@st.composite
def dropout_case(draw):
    p = draw(st.sampled_from([0.0, 0.3, 0.5, 0.9]))
    if draw(st.booleans()):
        return L.Dropout(p), draw(shapes())
    return L.Dropout2d(p), (draw(dims), draw(dims), draw(dims), draw(dims))


@st.composite
def conv_case(draw):
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = draw(st.integers(1, 2))
    stride = draw(st.integers(1, 2))
    padding = draw(st.integers(0, 2))
    h = draw(st.integers(dilation * (k[0] - 1) + 1, 6))
    w = draw(st.integers(dilation * (k[1] - 1) + 1, 6))
    layer = L.Conv2d(c_in, c_out, k, stride=stride, padding=padding, dilation=dilation, groups=groups,
                     bias=draw(st.booleans()), dtype=np.float64)
    return layer, (draw(st.integers(1, 2)), c_in, h, w)


@st.composite
def conv_transpose_case(draw):
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation, stride = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    padding = draw(st.integers(0, 1))
    output_padding = draw(st.integers(0, max(stride, dilation) - 1))
    h, w = draw(st.integers(1 + 2 * padding, 4)), draw(st.integers(1 + 2 * padding, 4))  # output >= 1
    layer = L.ConvTranspose2d(c_in, c_out, k, stride=stride, padding=padding, output_padding=output_padding,
                              groups=groups, bias=draw(st.booleans()), dilation=dilation, dtype=np.float64)
    return layer, (draw(st.integers(1, 2)), c_in, h, w)


@st.composite
def upsample_case(draw):
    mode = draw(st.sampled_from(["nearest", "linear", "bilinear"]))
    d = {"linear": 1, "bilinear": 2}.get(mode, draw(st.integers(1, 2)))
    align = None if mode == "nearest" else draw(st.sampled_from([None, True, False]))
    shape = (draw(st.integers(1, 2)), draw(dims), *(draw(dims) for _ in range(d)))
    if draw(st.booleans()):
        return L.Upsample(size=tuple(draw(dims) for _ in range(d)), mode=mode, align_corners=align), shape
    factor = draw(st.sampled_from([1.0, 1.5, 2.0, 2.5, 3.0]))
    return L.Upsample(scale_factor=factor, mode=mode, align_corners=align), shape


@st.composite
def pool_case(draw):
    k = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, k // 2))
    ceil = draw(st.booleans())
    shape = (draw(st.integers(1, 2)), draw(dims), draw(st.integers(k, 7)), draw(st.integers(k, 7)))
    layer = draw(st.sampled_from([
        L.MaxPool2d(k, stride, padding=padding, ceil_mode=ceil),
        L.AvgPool2d(k, stride, padding=padding, ceil_mode=ceil, count_include_pad=draw(st.booleans())),
    ]))
    return layer, shape


@st.composite
def scale_case(draw):
    features = draw(dims)
    return Scale(features, dtype=np.float64), (*draw(shapes(0, 3)), features)


any_case = st.one_of(linear_case(), activation_case(), flatten_case(), norm_case(), dropout_case(), conv_case(),
                     pool_case(), scale_case(), upsample_case(), conv_transpose_case())


def _setup(case, seed):
    layer, shape = case
    kp, ks, kx = random.split(random.key(seed), 3)
    x = random.normal(kx, shape, dtype=np.float64)
    return layer, layer.init(kp), layer.init_state(ks), x


@SETTINGS
@given(case=any_case, seed=st.integers(0, 2**32 - 1), train=st.booleans())
def test_contract_and_equal_keys_give_equal_results(case, seed, train):
    """The contract (nothing mutated, shapes, structures, replay) on every drawn case; equal keys agree."""
    layer, params, state, x = _setup(case, seed)
    check_contract(layer, params, x, state=state, train=train, key=random.key(seed + 1), dtype=np.float64)
    y, vjp, new_state = call_layer(layer, params, x, state, train)
    dy = random.normal(random.key(seed + 1), y.shape, dtype=np.float64)
    layer2, params2, state2, x2 = _setup(case, seed)
    y2, vjp2, new_state2 = call_layer(layer2, params2, x2, state2, train)
    assert leaves_equal((params, y, new_state, vjp(dy)), (params2, y2, new_state2, vjp2(dy)))


@SETTINGS
@given(case=any_case, seed=st.integers(0, 2**32 - 1), a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_vjp_is_linear_in_dy(case, seed, a, b):
    layer, params, state, x = _setup(case, seed)
    y, vjp, _ = call_layer(layer, params, x, state)
    k1, k2 = random.split(random.key(seed + 2))
    dy1, dy2 = random.normal(k1, y.shape, dtype=np.float64), random.normal(k2, y.shape, dtype=np.float64)
    combined = vjp(a * dy1 + b * dy2)
    separate = tree.tree_map(lambda u, v: a * u + b * v, vjp(dy1), vjp(dy2))
    for got, want in zip(tree.tree_leaves(combined), tree.tree_leaves(separate), strict=True):
        assert_close(got, want, rtol=1e-9, atol=1e-9 * (1 + float(np.abs(want).max(initial=0))))


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=any_case, seed=st.integers(0, 2**32 - 1), train=st.booleans())
def test_finite_differences_agree_with_vjp(case, seed, train):
    layer, params, state, x = _setup(case, seed)
    if type(layer).__name__ == "MaxPool2d":
        # keep windows free of near-ties so that the max is differentiable at x
        x = x + np.arange(x.size).reshape(x.shape) * 0.05
    check_vjp(layer, params, x, state=state if layer.stateful else None, train=train,
              key=random.key(seed + 3), rtol=1e-5, atol=1e-7)



ZERO_CASES = [row for row in DISTINCT if row.torch is not None and row.inputs is None
              and row.input_shapes and all(isinstance(d, int) for d in row.input_shapes)
              and len(row.input_shapes) >= 2 and "unbatched" not in row.id and not row.kwargs]


@pytest.mark.parametrize("row", ZERO_CASES, ids=[row.id for row in ZERO_CASES])
def test_an_empty_batch_behaves_as_torch(row):
    """Zero-size edges (hardening, item 3): an empty batch, forward and vjp, as torch's, in every family.

    Where torch refuses the empty input, so must we (a ValueError or TypeError naming the layer). Rows
    whose axis 0 is not a batch (unbatched input) or whose masks are shaped for the batch are left out.
    """
    import torch

    shape = (0, *row.input_shapes[1:])
    empty = np.zeros(shape, np.float64)
    module = row.torch(np.float64)
    module.train(False)
    try:
        with torch.no_grad():
            module(torch.zeros(shape, dtype=torch.float64))
    except (RuntimeError, ValueError, IndexError):
        layer, params, state, _ = row.example(np.float64)
        with pytest.raises((ValueError, TypeError), match=type(layer).__name__):
            call_layer(layer, params, empty, state, False)
        return
    row.compare_with_torch(np.float64, inputs=lambda key, dtype: np.zeros(shape, dtype), train=False)

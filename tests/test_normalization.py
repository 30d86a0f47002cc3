"""BatchNorm, LayerNorm, GroupNorm: long reductions, loaded statistics, groups of one or two values, errors.

The plain torch comparisons (BatchNorm over several training steps, then evaluation) are rows of
tests/parity_table.py.
"""

import io

import numpy as np
import pytest
import torch
from conftest import torch_dtype
from parity_table import bn_dx_atol, dx_atol

from nptfunc import layers, random, tree
from nptfunc.testing import (
    assert_close,
    assert_layer_matches_torch,
    check_adjoint,
    check_vjp,
    default_tolerance,
    to_torch,
)

KEY = random.key(0)


def _x(shape, dtype, seed=0, scale=1.0, shift=0.0):
    x = random.normal(random.key(seed), shape, dtype=dtype)
    return x * np.asarray(scale, dtype) + np.asarray(shift, dtype)


def _affine(cls, shape, dtype, seed=10, bias=True):
    """Random (not ones/zeros) weight and bias, so every gradient path is exercised."""
    kw, kb = random.split(random.key(seed))
    return cls(random.normal(kw, shape, dtype=dtype) + np.asarray(1, dtype),
               random.normal(kb, shape, dtype=dtype) if bias else None)


# ------------------------------------------------------------------------ BatchNorm
def _bn_pair(name, C, dtype, **kw):
    layer = getattr(layers, name)(C, dtype=dtype, **kw)
    module = getattr(torch.nn, name)(C, **kw).to(torch_dtype(dtype))
    return layer, module


def _sum_atol(call):
    """dweight = sum over the batch of dy * x_hat: compared at the scale of its terms.

    torch on one thread (tests/conftest.py) sums float32 in order and keeps about
    eps * sum|terms| of it (4e-4 on 256 values of 20 where ours is within 6e-6).
    """
    x = call.x.astype(np.float64)
    axes = (0, *range(2, x.ndim))
    x_hat = (x - x.mean(axis=axes, keepdims=True)) / x.std(axis=axes, keepdims=True)
    return default_tolerance(call.x.dtype) * float(np.abs(call.dy * x_hat).sum(axis=axes).max())


@pytest.mark.parametrize(("name", "shape"), [("BatchNorm2d", (32, 8, 14, 14)), ("BatchNorm1d", (256, 16))])
def test_batchnorm_large_batch_with_offset_matches_torch(name, shape, dtype):
    """Long per-channel reductions (6,272 values) on data far from zero mean: sums and variance hold up."""
    C = shape[1]
    layer, module = _bn_pair(name, C, dtype)
    params = _affine(layers.BatchNormParams, (C,), dtype)
    x = _x(shape, dtype, seed=3, scale=0.5, shift=20.0)
    _, _, new_state = layer.apply(params, x, layer.init_state(KEY), train=True)
    assert new_state.num_batches_tracked.dtype == np.int64 and new_state.num_batches_tracked.shape == ()
    assert_layer_matches_torch(layer, params, module, x, state=layer.init_state(KEY), train=True,
                               dy=_x(shape, dtype, seed=4), atol={"dx": bn_dx_atol, "dweight": _sum_atol})


@pytest.mark.parametrize(("name", "shape"), [("BatchNorm1d", (1, 3)), ("BatchNorm1d", (4, 3, 2)),
                                             ("BatchNorm2d", (1, 3, 1, 1)), ("BatchNorm2d", (2, 3, 3, 2))])
def test_batchnorm_eval_with_loaded_statistics_matches_torch(name, shape, dtype):
    """Evaluation with arbitrary running statistics (loaded into torch by the kit)."""
    C = shape[1]
    layer, module = _bn_pair(name, C, dtype)
    params = _affine(layers.BatchNormParams, (C,), dtype)
    kv, km = random.split(random.key(3))
    state = layers.BatchNormState(random.normal(km, (C,), dtype=dtype),
                                  random.uniform(kv, (C,), 0.2, 3.0, dtype=dtype), np.asarray(7))
    _, _, new_state = layer.apply(params, _x(shape, dtype), state, train=False)
    assert new_state is state
    assert_layer_matches_torch(layer, params, module, _x(shape, dtype), state=state, train=False)


@pytest.mark.parametrize("name", ["BatchNorm1d", "BatchNorm2d"])
def test_batchnorm_without_running_stats_is_stateless(name):
    """Its torch comparison (batch statistics in training and evaluation) is a row of the parity table."""
    layer = getattr(layers, name)(3, track_running_stats=False)
    assert not layer.stateful and layer.init_state(KEY) is None


@pytest.mark.parametrize(("name", "shape"), [("BatchNorm1d", (1, 3)), ("BatchNorm1d", (1, 3, 1)),
                                             ("BatchNorm2d", (1, 3, 1, 1))])
def test_batchnorm_one_value_per_channel_in_training_is_an_error_as_torch(name, shape):
    layer, module = _bn_pair(name, 3, np.float32)
    x = np.ones(shape, np.float32)
    state = layer.init_state(KEY)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        module.train()(to_torch(x))
    with pytest.raises(ValueError, match=rf"{name}\(num_features=3\): expected more than 1 value per "
                                         r"channel when training .*got input of shape \(1, 3"):
        layer.apply(layer.init(KEY), x, state, train=True)
    layer.apply(layer.init(KEY), x, state, train=False)  # evaluation is fine, as torch's
    untracked, module = _bn_pair(name, 3, np.float32, track_running_stats=False)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        module.eval()(to_torch(x))  # without running stats torch uses (and checks) the batch
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        untracked.apply(untracked.init(KEY), x)


def test_batchnorm_empty_batch_counts_but_keeps_statistics_as_torch():
    layer, module = _bn_pair("BatchNorm1d", 3, np.float64, momentum=None)
    params = _affine(layers.BatchNormParams, (3,), np.float64)
    state = layers.BatchNormState(np.full(3, 2.0), np.full(3, 3.0), np.asarray(4))
    x = np.zeros((0, 3))
    y, _, _ = assert_layer_matches_torch(layer, params, module, x, state=state, train=True)
    _, _, new_state = layer.apply(params, x, state, train=True)
    assert y.shape == (0, 3)
    np.testing.assert_array_equal(new_state.running_mean, 2.0)
    np.testing.assert_array_equal(new_state.running_var, 3.0)
    assert int(new_state.num_batches_tracked) == 5 == int(module.num_batches_tracked)


def test_batchnorm_init_matches_torch(dtype):
    layer, module = _bn_pair("BatchNorm2d", 4, dtype)
    params, state = layer.init(KEY), layer.init_state(KEY)
    assert params.weight.dtype == dtype and state.running_var.dtype == dtype
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(getattr(params, name), getattr(module, name).detach().numpy())
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_array_equal(getattr(state, name), getattr(module, name).numpy())
    assert state.num_batches_tracked.dtype == module.num_batches_tracked.numpy().dtype == np.int64
    for leaf in tree.tree_leaves((params, state)):
        assert not leaf.flags.writeable
    assert layers.BatchNorm2d(4, affine=False).init(KEY) is None


def test_batchnorm_state_is_not_mutated_and_replays():
    layer = layers.BatchNorm2d(3, momentum=None, dtype=np.float64)
    params = layer.init(KEY)
    state0 = layer.init_state(KEY)
    x = _x((4, 3, 2, 2), np.float64, shift=5.0)
    y1, _, s1 = layer.apply(params, x, state0, train=True)
    y2, _, s2 = layer.apply(params, x, s1, train=True)
    np.testing.assert_array_equal(state0.running_mean, 0.0)
    np.testing.assert_array_equal(state0.running_var, 1.0)
    assert int(state0.num_batches_tracked) == 0
    y1_again, _, s1_again = layer.apply(params, x, state0, train=True)
    np.testing.assert_array_equal(y1, y1_again)
    assert s1 == s1_again and s1 != s2
    # cumulative average: after two equal batches the running mean is the batch mean
    np.testing.assert_allclose(s2.running_mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)


def test_batchnorm_state_saves_to_npz():
    layer = layers.BatchNorm1d(3)
    _, _, state = layer.apply(layer.init(KEY), _x((4, 3), np.float32), layer.init_state(KEY), train=True)
    pairs, treedef = tree.tree_flatten_with_path(state)
    buf = io.BytesIO()
    np.savez(buf, **{tree.path_str(p): leaf for p, leaf in pairs})
    buf.seek(0)
    with np.load(buf) as f:
        loaded = tree.tree_unflatten(treedef, [f[tree.path_str(p)] for p, _ in pairs])
    assert loaded == state
    assert loaded.num_batches_tracked.dtype == np.int64


def test_batchnorm_vjp_finite_differences():
    layer = layers.BatchNorm1d(3, dtype=np.float64)
    params = _affine(layers.BatchNormParams, (3,), np.float64)
    state = layers.BatchNormState(np.array([0.1, -0.2, 0.3]), np.array([0.5, 1.5, 2.0]), np.asarray(1))
    x = _x((4, 3, 2), np.float64)
    for train in (True, False):
        check_vjp(layer, params, x, state=state, train=train)
        check_adjoint(layer, params, x, state=state, train=train)


def test_batchnorm_integer_input_is_cast():
    layer = layers.BatchNorm1d(2, dtype=np.float64)
    y, _, _ = layer.apply(layer.init(KEY), np.array([[1, 2], [3, 5]]), layer.init_state(KEY), train=True)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, [[-1, -1], [1, 1]], rtol=1e-5)


# ------------------------------------------------------------------------ LayerNorm
def test_layernorm_init_matches_torch():
    layer = layers.LayerNorm((2, 3))
    params = layer.init(KEY)
    module = torch.nn.LayerNorm((2, 3))
    np.testing.assert_array_equal(params.weight, module.weight.detach().numpy())
    np.testing.assert_array_equal(params.bias, module.bias.detach().numpy())
    assert layers.LayerNorm(3, bias=False).init(KEY).bias is None
    assert layers.LayerNorm(3, elementwise_affine=False).init(KEY) is None
    assert layers.LayerNorm(3) == layers.LayerNorm((3,))
    assert not layers.LayerNorm(3).stateful


def test_layernorm_vjp_finite_differences():
    layer = layers.LayerNorm((2, 3), dtype=np.float64)
    params = _affine(layers.LayerNormParams, (2, 3), np.float64)
    check_vjp(layer, params, _x((2, 2, 3), np.float64))
    check_adjoint(layer, params, _x((4, 2, 3), np.float64))


# ------------------------------------------------------------------------ GroupNorm
@pytest.mark.parametrize(("layer", "module", "shape", "groups"), [
    (lambda dt: layers.GroupNorm(3, 6, dtype=dt), lambda: torch.nn.GroupNorm(3, 6), (5, 6), (5, 3, 2)),
    (lambda dt: layers.GroupNorm(3, 3, dtype=dt), lambda: torch.nn.GroupNorm(3, 3), (3, 3, 1, 1), (3, 3, 1)),
    (lambda dt: layers.GroupNorm(4, 4, dtype=dt), lambda: torch.nn.GroupNorm(4, 4), (2, 4, 2), (2, 4, 2)),
    (lambda dt: layers.LayerNorm(1, dtype=dt), lambda: torch.nn.LayerNorm(1), (4, 1), (4, 1)),
    (lambda dt: layers.LayerNorm((1, 2), dtype=dt), lambda: torch.nn.LayerNorm((1, 2)), (3, 1, 2), (3, 2)),
], ids=["gn-pairs", "gn-singletons", "gn-pairs-3d", "ln-singletons", "ln-pairs"])
def test_norms_over_one_or_two_values_match_torch(layer, module, shape, groups, dtype):
    """Groups of one or two values: dx is (nearly) zero, compared at the scale of its terms."""
    layer, module = layer(dtype), module().to(torch_dtype(dtype))
    params = _affine(type(layer.init(KEY)), layer.init(KEY).weight.shape, dtype)
    x, dy = _x(shape, dtype, scale=2.0), _x(shape, dtype, seed=1)
    with torch.no_grad():
        module.weight.copy_(to_torch(params.weight))
        module.bias.copy_(to_torch(params.bias))
    y, vjp = layer.apply(params, x)
    xt = to_torch(x).requires_grad_(True)
    yt = module(xt)
    yt.backward(to_torch(dy))
    dparams, dx = vjp(dy)
    # torch rounds x - mean(x) of a single value to about an ulp of x, then scales it by
    # 1/sqrt(eps); ours is exactly 0 (checked below), so allow torch that much
    y_atol = (4 * np.finfo(dtype).eps * float(np.abs(x).max() * np.abs(params.weight).max()) / np.sqrt(layer.eps)
              if groups[-1] == 1 else None)
    assert_close(y, yt, atol=y_atol, name="y")
    weight = params.weight.reshape((1, -1) + (1,) * (x.ndim - 2)) if isinstance(
        layer, layers.GroupNorm) else params.weight
    assert_close(dx, xt.grad, atol=dx_atol(x.reshape(groups), dy * weight, layer.eps), name="dx")
    # dweight = sum(dy * x_hat), x_hat of size <= 1 here: its terms are at most |dy|
    assert_close(dparams.weight, module.weight.grad, atol=default_tolerance(dtype) * float(np.abs(dy).sum()),
                 name="dweight")
    assert_close(dparams.bias, module.bias.grad, name="dbias")
    if groups[-1] == 1:  # x - mean(x) is exactly 0 for a single value: so are y - bias and dx
        np.testing.assert_array_equal(dx, 0.0)
        bias = params.bias.reshape(weight.shape) if isinstance(layer, layers.GroupNorm) else params.bias
        np.testing.assert_array_equal(y, np.broadcast_to(bias, y.shape))


def test_groupnorm_init_and_vjp_finite_differences():
    layer = layers.GroupNorm(2, 4, dtype=np.float64)
    params = layer.init(KEY)
    module = torch.nn.GroupNorm(2, 4)
    np.testing.assert_array_equal(params.weight, module.weight.detach().numpy())
    np.testing.assert_array_equal(params.bias, module.bias.detach().numpy())
    assert layers.GroupNorm(2, 4, affine=False).init(KEY) is None
    params = _affine(layers.GroupNormParams, (4,), np.float64)
    check_vjp(layer, params, _x((2, 4, 3), np.float64))
    check_adjoint(layer, params, _x((3, 4, 2, 2), np.float64))


def test_norms_on_empty_batches_match_torch():
    assert_layer_matches_torch(layers.LayerNorm(4, dtype=np.float64),
                               _affine(layers.LayerNormParams, (4,), np.float64),
                               torch.nn.LayerNorm(4).double(), np.zeros((0, 4)))
    assert_layer_matches_torch(layers.GroupNorm(2, 4, dtype=np.float64),
                               _affine(layers.GroupNormParams, (4,), np.float64),
                               torch.nn.GroupNorm(2, 4).double(), np.zeros((0, 4, 3)))


def test_constant_input_gives_bias_and_finite_gradients():
    for layer in (layers.LayerNorm(4), layers.GroupNorm(2, 4)):
        params = layer.init(KEY)
        y, vjp = layer.apply(params, np.full((2, 4), 3.0, np.float32))
        np.testing.assert_array_equal(y, 0.0)
        dparams, dx = vjp(np.ones((2, 4), np.float32))
        assert np.isfinite(dx).all() and np.isfinite(dparams.weight).all()


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("factory", "exc", "match"), [
    (lambda: layers.BatchNorm1d(0), ValueError, r"BatchNorm1d: expected num_features to be an int >= 1, got 0"),
    (lambda: layers.BatchNorm2d(2.0), TypeError, r"BatchNorm2d: expected num_features to be an int >= 1, got float 2.0"),
    (lambda: layers.BatchNorm2d(2, eps=0), ValueError, r"BatchNorm2d: expected eps > 0, got 0"),
    (lambda: layers.BatchNorm2d(2, eps=-1e-5), ValueError, r"expected eps > 0, got -1e-05"),
    (lambda: layers.BatchNorm2d(2, eps="a"), TypeError, r"expected eps > 0, got str 'a'"),
    (lambda: layers.BatchNorm1d(2, momentum=1.5), ValueError,
     r"BatchNorm1d: expected momentum in \[0, 1\] or None, got 1.5"),
    (lambda: layers.BatchNorm1d(2, momentum=-0.1), ValueError, r"momentum .* got -0.1"),
    (lambda: layers.BatchNorm1d(2, momentum="0.1"), TypeError, r"momentum .* got str '0.1'"),
    (lambda: layers.BatchNorm1d(2, dtype=np.int64), TypeError, r"BatchNorm1d: expected dtype to be a NumPy floating dtype"),
    (lambda: layers.LayerNorm(0), ValueError, r"LayerNorm: expected normalized_shape's entries to be an int >= 1"),
    (lambda: layers.LayerNorm(()), ValueError, r"LayerNorm: expected normalized_shape to be a non-empty tuple"),
    (lambda: layers.LayerNorm(2.5), TypeError, r"LayerNorm: expected normalized_shape to be an int or a tuple"),
    (lambda: layers.LayerNorm(3, eps=0.0), ValueError, r"LayerNorm: expected eps > 0, got 0.0"),
    (lambda: layers.GroupNorm(4, 6), ValueError,
     r"GroupNorm: expected num_channels to be divisible by num_groups, got num_channels=6, num_groups=4"),
    (lambda: layers.GroupNorm(0, 6), ValueError, r"GroupNorm: expected num_groups to be an int >= 1, got 0"),
    (lambda: layers.GroupNorm(2, 6, eps=-1.0), ValueError, r"GroupNorm: expected eps > 0"),
])
def test_bad_hyperparameters(factory, exc, match):
    with pytest.raises(exc, match=match):
        factory()


@pytest.mark.parametrize(("layer", "shape", "match"), [
    (layers.BatchNorm1d(3), (8, 4), r"BatchNorm1d\(num_features=3\): expected input of shape \(N, 3\) or "
                                    r"\(N, 3, L\), got \(8, 4\)"),
    (layers.BatchNorm1d(3), (3,), r"expected input of shape \(N, 3\) or \(N, 3, L\), got \(3,\)"),
    (layers.BatchNorm2d(3), (8, 4, 5, 5), r"BatchNorm2d\(num_features=3\): expected input of shape "
                                          r"\(N, 3, H, W\), got \(8, 4, 5, 5\)"),
    (layers.BatchNorm2d(3), (3, 5, 5), r"expected input of shape \(N, 3, H, W\), got \(3, 5, 5\)"),
    (layers.LayerNorm((3, 4)), (2, 4, 3), r"LayerNorm\(normalized_shape=\(3, 4\)\): expected input of shape "
                                          r"\(\.\.\., 3, 4\), got \(2, 4, 3\)"),
    (layers.LayerNorm((3, 4)), (4,), r"expected input of shape \(\.\.\., 3, 4\), got \(4,\)"),
    (layers.GroupNorm(2, 4), (2, 6), r"GroupNorm\(num_groups=2, num_channels=4\): expected input of shape "
                                     r"\(N, 4, \*\), got \(2, 6\)"),
    (layers.GroupNorm(2, 4), (4,), r"expected input of shape \(N, 4, \*\), got \(4,\)"),
])
def test_wrong_input_shapes(layer, shape, match):
    params, state = layer.init(KEY), layer.init_state(KEY)
    with pytest.raises(ValueError, match=match):
        layer.apply(params, np.ones(shape, np.float32), state, train=True)


def test_batchnorm_apply_errors():
    layer = layers.BatchNorm1d(3)
    params, state = layer.init(KEY), layer.init_state(KEY)
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"BatchNorm1d\(num_features=3\) is stateful: call apply\(params, x, "
                                        r"state, train=True\|False\)"):
        layer.apply(params, x)
    with pytest.raises(TypeError, match=r"expected state of class BatchNormState .*got tuple"):
        layer.apply(params, x, (), train=True)
    with pytest.raises(TypeError, match=r"expected params of class BatchNormParams .*got LayerNormParams"):
        layer.apply(layers.LayerNormParams(params.weight, params.bias), x, state, train=True)
    with pytest.raises(ValueError, match=r"expected params.weight of shape \(3,\), got \(4,\)"):
        layer.apply(layers.BatchNormParams(np.ones(4, np.float32), params.bias), x, state, train=True)
    with pytest.raises(ValueError, match=r"expected state.running_var of shape \(3,\), got \(2,\)"):
        layer.apply(params, x, layers.BatchNormState(state.running_mean, np.ones(2, np.float32),
                                                     state.num_batches_tracked), train=True)
    y64, vjp64, _ = layer.apply(params, x.astype(np.float64), state, train=True)  # cast, as the policy says
    assert y64.dtype == np.float32 and vjp64(np.ones((2, 3)))[1].dtype == np.float64
    with pytest.raises(TypeError, match=r"has no parameters, expected params None"):
        layers.BatchNorm1d(3, affine=False).apply(params, x, state, train=True)
    with pytest.raises(ValueError, match=r"vjp: expected dy of shape \(2, 3\) \(the output's\), got \(3,\)"):
        layer.apply(params, x, state, train=True)[1](np.ones(3, np.float32))


def test_layernorm_bias_false_refuses_a_bias():
    layer = layers.LayerNorm(3, bias=False)
    with pytest.raises(TypeError, match=r"was built with bias=False, expected params.bias None"):
        layer.apply(layers.LayerNormParams(np.ones(3, np.float32), np.zeros(3, np.float32)),
                    np.ones((2, 3), np.float32))

"""Embedding and Unflatten against torch 2.13, with the contract checks for integer input."""

import numpy as np
import pytest

from nptfunc import convert, random
from nptfunc import layers as L
from nptfunc.testing import assert_close, assert_layer_matches_torch, leaves_equal, params_to_torch, to_torch

torch = pytest.importorskip("torch")


def _indices(shape, n, seed=0, dtype=np.int64):
    return random.generator(random.key(seed)).integers(0, n, size=shape).astype(dtype)


def _compare(layer, params, module, x, dtype):
    """y and dweight against torch's, for integer input (which torch cannot differentiate)."""
    params_to_torch(params, module)
    y, vjp = layer.apply(params, x)
    yt = module(torch.from_numpy(x.astype(np.int64)))  # torch takes int64/int32 only; we take uint too
    assert_close(y, yt, name="y")
    dy = random.normal(random.key(7), y.shape, dtype=dtype)
    dparams, dx = vjp(dy)
    yt.backward(to_torch(dy))
    assert dx is None
    assert_close(dparams.weight, module.weight.grad, name="dweight")
    assert dparams.weight.dtype == dtype and y.dtype == dtype
    return y, dparams


@pytest.mark.parametrize("shape", [(), (5,), (2, 3), (2, 0, 3), (4, 3, 2)])
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32, np.uint8])
@pytest.mark.parametrize("padding_idx", [None, 0, 3, -1])
def test_matches_torch(shape, index_dtype, padding_idx, dtype):
    layer = L.Embedding(6, 4, padding_idx=padding_idx, dtype=dtype)
    params = layer.init(random.key(1))
    x = _indices(shape, 6, dtype=index_dtype)
    module = torch.nn.Embedding(6, 4, padding_idx=padding_idx).to(torch.float64 if dtype == np.float64
                                                                    else torch.float32)
    y, _ = _compare(layer, params, module, x, dtype)
    assert y.shape == layer.output_shape(shape) == (*shape, 4)


def test_repeated_indices_and_scale_grad_by_freq(dtype):
    x = np.array([[1, 1, 1, 4], [4, 0, 1, 2]])
    for scale in (False, True):
        layer = L.Embedding(5, 3, padding_idx=2, scale_grad_by_freq=scale, dtype=dtype)
        module = torch.nn.Embedding(5, 3, padding_idx=2, scale_grad_by_freq=scale).to(
            torch.float64 if dtype == np.float64 else torch.float32)
        _, dparams = _compare(layer, layer.init(random.key(0)), module, x, dtype)
        assert not dparams.weight[2].any() and not dparams.weight[3].any()


def test_many_indices_scatter_add(dtype):
    """A large batch over a small table: every row hit many times (the sort-and-reduceat path)."""
    layer = L.Embedding(7, 5, dtype=dtype)
    module = torch.nn.Embedding(7, 5).to(torch.float64 if dtype == np.float64 else torch.float32)
    _compare(layer, layer.init(random.key(0)), module, _indices((40, 30), 7, seed=3), dtype)


def test_init_is_standard_normal_with_zero_padding_row():
    layer = L.Embedding(4000, 50, padding_idx=5)
    w = layer.init(random.key(0)).weight
    assert w.dtype == np.float32 and not w.flags.writeable
    assert not w[5].any()
    rest = np.delete(w, 5, axis=0)
    assert abs(rest.mean()) < 0.01 and abs(rest.std() - 1) < 0.01
    assert leaves_equal(layer.init(random.key(0)), layer.init(random.key(0)))
    assert not np.array_equal(layer.init(random.key(1)).weight, w)


def test_contract_for_integer_input(dtype):
    """Inputs, params and dy untouched; repeatable vjp; linear in dy; gradient structure of params."""
    layer = L.Embedding(5, 3, padding_idx=1, dtype=dtype)
    params = layer.init(random.key(0))
    x = _indices((3, 4), 5)
    x0, w0 = x.copy(), params.weight.copy()
    y, vjp = layer.apply(params, x)
    dy1, dy2 = random.normal(random.key(1), y.shape, dtype=dtype), random.normal(random.key(2), y.shape, dtype=dtype)
    dy0 = dy1.copy()
    g1, g2, g12 = vjp(dy1)[0], vjp(dy2)[0], vjp(2 * dy1 - dy2)[0]
    assert leaves_equal(vjp(dy1), (g1, None))
    assert_close(g12.weight, 2 * g1.weight - g2.weight)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy1, dy0)
    np.testing.assert_array_equal(params.weight, w0)
    assert type(g1) is L.EmbeddingParams
    y2, _, state = layer.apply(params, x, None, train=True)
    np.testing.assert_array_equal(y, y2)
    assert state is None


def test_state_dict_round_trip_with_torch():
    layer = L.Embedding(6, 2, padding_idx=0, dtype=np.float64)
    module = torch.nn.Embedding(6, 2, padding_idx=0).double()
    params = convert.tree_from_state_dict(module.state_dict(), layer.init(random.key(0)))
    np.testing.assert_array_equal(params.weight, module.weight.detach().numpy())
    assert list(convert.state_dict_from_tree(params)) == list(module.state_dict()) == ["weight"]


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: L.Embedding(5, 3, max_norm=1.0), ValueError, r"Embedding\(.*\): max_norm is not supported"),
    (lambda: L.Embedding(5, 3, padding_idx=5), ValueError,
     r"expected padding_idx to be None or in \[-5, 5\), got 5"),
    (lambda: L.Embedding(5, 3, padding_idx=-6), ValueError, r"padding_idx to be None or in \[-5, 5\), got -6"),
    (lambda: L.Embedding(5, 3, sparse=True), ValueError, r"sparse=True is not supported"),
    (lambda: L.Embedding(0, 3), ValueError, r"Embedding: expected num_embeddings to be an int >= 1, got 0"),
    (lambda: L.Embedding(5, 3.0), TypeError, r"Embedding: expected embedding_dim to be an int"),
])
def test_bad_hyperparameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_indices():
    layer = L.Embedding(5, 3, dtype=np.float64)
    params = layer.init(random.key(0))
    with pytest.raises(ValueError, match=r"Embedding\(.*\): index 5 is out of range, expected indices in \[0, 5\)"):
        layer.apply(params, np.array([0, 5]))
    with pytest.raises(ValueError, match=r"index -1 is out of range"):
        layer.apply(params, np.array([[-1, 2]]))
    with pytest.raises(TypeError, match=r"Embedding\(.*\): expected integer indices \(an int array\), got dtype float64"):
        layer.apply(params, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match=r"expected integer indices \(an int array\), got dtype bool"):
        layer.apply(params, np.array([True]))
    with pytest.raises(ValueError, match=r"Embedding\(.*\): expected weight of shape \(5, 3\), got \(4, 3\)"):
        layer.apply(L.EmbeddingParams(np.zeros((4, 3))), np.array([0]))


# --------------------------------------------------------------------- Unflatten
@pytest.mark.parametrize(("dim", "sizes", "shape"), [
    (1, (2, 5), (3, 10)), (-1, (2, 3), (4, 6)), (0, (2, -1), (6, 2)), (1, (1,), (2, 1, 3)),
    (-2, (3, 1, 2), (2, 6, 2)), (1, (0, 4), (2, 0)), (0, (2, 2), (4,)),
])
def test_unflatten_matches_torch(dim, sizes, shape, dtype):
    layer = L.Unflatten(dim, sizes)
    x = random.normal(random.key(0), shape, dtype=dtype)
    y, _, dx = assert_layer_matches_torch(layer, None, torch.nn.Unflatten(dim, sizes), x)
    assert y.shape == layer.output_shape(shape)
    np.testing.assert_array_equal(L.Unflatten(dim, list(sizes)).apply(None, x)[0], y)


def test_unflatten_non_contiguous_input():
    x = random.normal(random.key(0), (6, 4), dtype=np.float64).T  # (4, 6), not contiguous
    assert_layer_matches_torch(L.Unflatten(1, (3, 2)), None, torch.nn.Unflatten(1, (3, 2)), x)


@pytest.mark.parametrize(("make", "shape", "error", "match"), [
    (lambda: L.Unflatten(1, (2, 4)), (3, 10), ValueError,
     r"Unflatten\(dim=1, unflattened_size=\(2, 4\)\): expected axis 1 of size 8 \(the product of \(2, 4\)\), "
     r"got input of shape \(3, 10\)"),
    (lambda: L.Unflatten(2, (2, 5)), (3, 10), ValueError, r"dim 2 is out of range for input of shape \(3, 10\)"),
    (lambda: L.Unflatten(1, (3, -1)), (3, 10), ValueError, r"cannot unflatten axis 1 of size 10 into \(3, -1\)"),
])
def test_unflatten_bad_input(make, shape, error, match):
    with pytest.raises(error, match=match):
        make().apply(None, np.ones(shape))


@pytest.mark.parametrize(("args", "error", "match"), [
    ((1, 6), TypeError, r"Unflatten: expected unflattened_size to be a non-empty tuple or list of ints, got 6"),
    ((1, ()), TypeError, r"non-empty tuple"),
    ((1, (2, 3.0)), TypeError, r"Unflatten: expected unflattened_size to be a tuple of ints, got \(2, 3.0\)"),
    ((1, (-1, -1)), ValueError, r"at most one -1"),
    ((1, (2, -3)), ValueError, r"to be >= 0 \(or one -1\)"),
    ((1.0, (2, 3)), TypeError, r"Unflatten: expected dim to be an int"),
])
def test_unflatten_bad_hyperparameters(args, error, match):
    with pytest.raises(error, match=match):
        L.Unflatten(*args)


# ----------------------------------------------------------------------- PositionEmbedding
# torch parity: the parity table's rows position-embedding-* (nn.Embedding of arange(T), expanded)
def test_position_embedding_is_the_first_rows_broadcast_and_sums_its_cotangent():
    layer = L.PositionEmbedding(6, 3, dtype=np.float64)
    params = layer.init(random.key(0))
    x = np.full((2, 5, 4), 99, np.int32)  # the values are not read, only the last axis' length
    y, vjp = layer.apply(params, x)
    assert y.shape == (2, 5, 4, 3) and not y.flags.writeable
    np.testing.assert_array_equal(y, np.broadcast_to(params.weight[:4], (2, 5, 4, 3)))
    dy = random.normal(random.key(1), y.shape, dtype=np.float64)
    dparams, dx = vjp(dy)
    assert dx is None
    np.testing.assert_allclose(dparams.weight[:4], dy.sum(axis=(0, 1)))
    np.testing.assert_array_equal(dparams.weight[4:], 0)


def test_position_embedding_init_is_standard_normal():
    w = L.PositionEmbedding(500, 40).init(random.key(0)).weight
    assert w.dtype == np.float32 and w.shape == (500, 40)
    assert abs(float(w.mean())) < 0.02 and abs(float(w.std()) - 1) < 0.02


@pytest.mark.parametrize(("x", "error", "match"), [
    (np.zeros((2, 7), np.int64), ValueError, r"PositionEmbedding\(.*\): expected at most 6 positions .* got 7"),
    (np.zeros((2, 3), np.float32), TypeError, r"PositionEmbedding\(.*\): expected integer .* got dtype float32"),
    (np.int64(3), ValueError, r"PositionEmbedding\(.*\): expected input of shape \(\.\.\., T\) .* got shape \(\)"),
])
def test_position_embedding_bad_input(x, error, match):
    layer = L.PositionEmbedding(6, 3)
    with pytest.raises(error, match=match):
        layer.apply(layer.init(random.key(0)), x)


def test_position_embedding_bad_params_and_hyperparameters():
    layer = L.PositionEmbedding(6, 3)
    with pytest.raises(ValueError, match=r"PositionEmbedding\(.*\): expected weight of shape \(6, 3\), got \(5, 3\)"):
        layer.apply(L.EmbeddingParams(np.zeros((5, 3), np.float32)), np.zeros((1, 2), np.int64))
    with pytest.raises(ValueError, match=r"PositionEmbedding: .*num_positions"):
        L.PositionEmbedding(0, 3)

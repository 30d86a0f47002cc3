"""Attention beyond the parity table: the functional SDPA, fully masked rows, dropout, init, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nptfunc import layers as L
from nptfunc import random, tree
from nptfunc.testing import (
    assert_close,
    call_layer,
    check_contract,
    check_vjp,
    leaves_equal,
    to_numpy,
    to_torch,
)

F32, F64 = np.float32, np.float64


def _qkv(dtype, q=(2, 3, 4, 5), k=(2, 3, 6, 5), v=(2, 3, 6, 7), seed=0):
    ks = random.split(random.key(seed), 3)
    return tuple(random.normal(kk, s, dtype=dtype) for kk, s in zip(ks, (q, k, v), strict=True))


SDPA_CASES = {
    "plain": {},
    "causal": {"is_causal": True},
    "bool-mask-broadcast": {"attn_mask": np.random.default_rng(0).random((4, 6)) > 0.3},
    "float-mask": {"attn_mask": np.random.default_rng(1).standard_normal((3, 4, 6))},
    "scale": {"scale": 0.3},
    "fully-masked-row": {"attn_mask": np.array([[1] * 6, [0] * 6, [1, 0] * 3, [0] * 5 + [1]], bool)},
}


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("case", SDPA_CASES, ids=list(SDPA_CASES))
def test_sdpa_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    kw = dict(SDPA_CASES[case])
    if "attn_mask" in kw and kw["attn_mask"].dtype.kind == "f":
        kw["attn_mask"] = kw["attn_mask"].astype(dtype)
    q, k, v = _qkv(dtype)
    y, vjp = L.scaled_dot_product_attention(q, k, v, **kw)
    qt, kt, vt = (to_torch(a).requires_grad_(True) for a in (q, k, v))
    yt = torch.nn.functional.scaled_dot_product_attention(
        qt, kt, vt, **{n: to_torch(a) if isinstance(a, np.ndarray) else a for n, a in kw.items()})
    dy = random.normal(random.key(5), y.shape, dtype=dtype)
    yt.backward(to_torch(dy))
    assert y.dtype == dtype
    assert_close(y, yt, name="y")
    for d, t, n in zip(vjp(dy), (qt, kt, vt), "qkv", strict=True):
        assert d.dtype == dtype
        assert_close(d, t.grad, name=f"d{n}")
    if case == "fully-masked-row":
        assert np.all(y[..., 1, :] == 0)


def test_sdpa_finite_differences_and_no_mutation():
    q, k, v = _qkv(F64, (1, 2, 3), (1, 4, 3), (1, 4, 2))
    mask = np.array([[1, 1, 0, 1], [0, 1, 1, 1]], bool)
    before = [a.copy() for a in (q, k, v)]
    y, vjp = L.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    dy = random.normal(random.key(3), y.shape, dtype=F64)
    dq, dk, dv = vjp(dy)
    for a, b in zip((q, k, v), before, strict=True):
        np.testing.assert_array_equal(a, b)
    from nptfunc.testing import numerical_vjp
    for i, d in enumerate((dq, dk, dv)):
        def f(a, i=i):
            args = [q, k, v]
            args[i] = a
            return L.scaled_dot_product_attention(*args, attn_mask=mask)[0]
        assert_close(d, numerical_vjp(f, (q, k, v)[i], dy), rtol=1e-6, atol=1e-8)


def test_sdpa_dropout_statistics_and_keys():
    q, k, v = _qkv(F64, (2, 8, 4), (2, 16, 4), (2, 16, 3))
    v1 = np.ones_like(v)
    # with v = 1 every output is the sum of the dropped-out weights: mean 1, scattered by the mask
    ys = [L.scaled_dot_product_attention(q, k, v1, dropout_p=0.5, key=random.key(i))[0] for i in range(20)]
    assert abs(np.mean(ys) - 1) < 0.1
    assert np.std(ys) > 0.1
    y1, vjp1 = L.scaled_dot_product_attention(q, k, v, dropout_p=0.5, key=random.key(0))
    y2, _ = L.scaled_dot_product_attention(q, k, v, dropout_p=0.5, key=random.key(0))
    np.testing.assert_array_equal(y1, y2)
    y0, _ = L.scaled_dot_product_attention(q, k, v, dropout_p=1.0, key=random.key(0))
    assert np.all(y0 == 0)
    # the vjp uses the same mask: linear in dy and the adjoint of the fixed-mask map in v
    dy = random.normal(random.key(9), y1.shape, dtype=F64)
    w = random.normal(random.key(10), v.shape, dtype=F64)
    y_w, _ = L.scaled_dot_product_attention(q, k, v + w, dropout_p=0.5, key=random.key(0))
    assert np.isclose(np.vdot(dy, y_w - y1), np.vdot(vjp1(dy)[2], w))


@pytest.mark.parametrize(("kwargs", "err", "match"), [
    ({"dropout_p": 0.5}, TypeError, r"scaled_dot_product_attention: expected a key \(dropout_p > 0\)"),
    ({"dropout_p": 1.5}, ValueError, r"scaled_dot_product_attention: .*dropout_p"),
    ({"is_causal": True, "attn_mask": np.ones((4, 6), bool)}, ValueError, r"attn_mask None with is_causal=True"),
    ({"attn_mask": np.ones((5, 6), bool)}, ValueError, r"attn_mask broadcastable to \(2, 3, 4, 6\), got \(5, 6\)"),
    ({"attn_mask": np.ones((4, 6), int)}, TypeError, r"attn_mask to be a boolean or floating array, got dtype int"),
    ({"is_causal": 1}, TypeError, r"scaled_dot_product_attention: .*is_causal"),
])
def test_sdpa_errors(kwargs, err, match):
    q, k, v = _qkv(F64)
    with pytest.raises(err, match=match):
        L.scaled_dot_product_attention(q, k, v, **kwargs)


def test_sdpa_shape_and_dtype_errors():
    q, k, v = _qkv(F64)
    with pytest.raises(ValueError, match=r"expected q \(\.\.\., L, E\), k \(\.\.\., S, E\) and v"):
        L.scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(TypeError, match=r"q, k and v of one dtype"):
        L.scaled_dot_product_attention(q, k.astype(F32), v)
    with pytest.raises(TypeError, match=r"expected q to be a floating array"):
        L.scaled_dot_product_attention(np.ones((2, 2), int), k, v)


# --------------------------------------------------------------------- MultiheadAttention
def _mha_inputs(dtype, shapes=((3, 2, 8), (5, 2, 8), (5, 2, 8))):
    return tuple(random.normal(k, s, dtype=dtype) for k, s in zip(random.split(random.key(7), 3), shapes,
                                                                  strict=True))


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_fully_masked_row_as_torch(need_weights):
    """A batch whose keys are all padded: torch's softmax gives NaN, its SDPA (need_weights=False) zeros."""
    torch = pytest.importorskip("torch")
    layer = L.MultiheadAttention(8, 2, dtype=F64)
    params = layer.init(random.key(0))
    x = _mha_inputs(F64)
    kpm = np.zeros((2, 5), bool)
    kpm[0] = True
    (y, w), vjp = layer.apply(params, x, key_padding_mask=kpm, need_weights=need_weights)
    tm = torch.nn.MultiheadAttention(8, 2, dtype=torch.float64)
    from nptfunc.testing import params_to_torch
    params_to_torch(params, tm)
    yt, wt = tm(*(to_torch(a) for a in x), key_padding_mask=to_torch(kpm), need_weights=need_weights)
    assert_close(y, yt)
    if need_weights:
        assert np.isnan(y[:, 0]).all() and np.isfinite(y[:, 1]).all()
        assert_close(w, wt)
    else:
        assert w is None and wt is None
        np.testing.assert_array_equal(y[:, 0], np.broadcast_to(params.out_proj.bias, (3, 8)))
        dparams, dx = vjp((np.ones_like(y), None))
        assert np.isfinite(dparams.in_proj_weight).all()
        assert np.all(dx[1][:, 0] == 0)  # no key of batch 0 was attended to


def test_mha_init_matches_torch_distributions_and_names():
    """Our init and torch's (seeded) against the schemes' standard deviations and bounds."""
    torch = pytest.importorskip("torch")
    E = 64
    from nptfunc.convert import state_dict_from_tree
    sd = state_dict_from_tree(L.MultiheadAttention(E, 4, add_bias_kv=True, dtype=F64).init(random.key(0)))
    torch.manual_seed(0)
    tsd = {k: to_numpy(v) for k, v in torch.nn.MultiheadAttention(E, 4, add_bias_kv=True).state_dict().items()}
    assert sorted(sd) == sorted(tsd)
    xavier = np.sqrt(6 / (E + 3 * E))  # in_proj_weight (3E, E): uniform bound
    kaiming = 1 / np.sqrt(E)  # out_proj.weight, Linear's default
    # name: (uniform bound or None for normal, standard deviation, relative tolerance of the sample std)
    schemes = {"in_proj_weight": (xavier, xavier / np.sqrt(3), 0.03), "out_proj.weight": (kaiming, kaiming / np.sqrt(3),
               0.05), "bias_k": (None, np.sqrt(1 / E), 0.3), "bias_v": (None, np.sqrt(1 / E), 0.3)}
    for ours_or_torch in (sd, tsd):
        for name, (bound, std, tol) in schemes.items():
            a = ours_or_torch[name]
            assert abs(a.std() - std) < tol * std, name
            if bound is not None:
                assert 0.95 * bound < np.abs(a).max() <= bound, name
        for name in ("in_proj_bias", "out_proj.bias"):
            assert np.all(ours_or_torch[name] == 0)
    separate = L.MultiheadAttention(8, 2, kdim=3, vdim=5, bias=False).init(random.key(0))
    assert sorted(state_dict_from_tree(separate)) == sorted(
        torch.nn.MultiheadAttention(8, 2, kdim=3, vdim=5, bias=False).state_dict())


def test_mha_dropout_train_and_eval():
    layer = L.MultiheadAttention(8, 2, dropout=0.5, dtype=F64)
    assert layer.stateful and not L.MultiheadAttention(8, 2).stateful
    params, state = layer.init(random.key(0)), layer.init_state(random.key(1))
    x = _mha_inputs(F64)
    (y_eval, _), _, s_eval = layer.apply(params, x, state, train=False)
    assert s_eval is state
    (y1, w1), _, s1 = layer.apply(params, x, state, train=True)
    (y2, _), _, s2 = layer.apply(params, x, s1, train=True)
    (y1b, _), _, _ = layer.apply(params, x, state, train=True)
    np.testing.assert_array_equal(y1, y1b)  # the same state gives the same mask
    assert not np.allclose(y1, y_eval) and not np.allclose(y1, y2)
    assert s1 != state and s2 != s1
    # the returned weights are the dropped-out ones (as torch's): zeros or 2x, per head
    (_, wh), _, _ = layer.apply(params, x, state, train=True, average_attn_weights=False)
    (_, we), _ = L.MultiheadAttention(8, 2, dtype=F64).apply(params, x, average_attn_weights=False)
    ratio = wh / we
    assert np.all(np.isclose(ratio, 0) | np.isclose(ratio, 2))
    assert 0.3 < np.mean(np.isclose(ratio, 0)) < 0.7
    check_vjp(layer, params, x, state=state, train=True, dy=None)


@pytest.mark.parametrize(("kwargs", "err", "match"), [
    ({"attn_mask": np.ones((3, 4), bool)}, ValueError, r"expected attn_mask of shape \(3, 5\) or \(4, 3, 5\), got \(3, 4\)"),
    ({"key_padding_mask": np.ones((5,), bool)}, ValueError, r"expected key_padding_mask of shape \(2, 5\)"),
    ({"key_padding_mask": np.ones((2, 5), int)}, TypeError, r"key_padding_mask to be a boolean or floating"),
    ({"is_causal": True}, ValueError, r"is_causal=True needs attn_mask"),
    ({"need_weights": 1}, TypeError, r"need_weights"),
    ({"mask": None}, TypeError, r"unexpected keyword argument 'mask'"),
])
def test_mha_apply_errors_name_the_layer(kwargs, err, match):
    layer = L.MultiheadAttention(8, 2, dtype=F64)
    with pytest.raises(err, match=r"MultiheadAttention\(embed_dim=8, num_heads=2.*" + match):
        layer.apply(layer.init(random.key(0)), _mha_inputs(F64), **kwargs)


@pytest.mark.parametrize("shapes", [
    ((3, 2, 8), (5, 2, 8)),
    ((3, 2, 8), (5, 2, 8), (4, 2, 8)),
    ((3, 2, 8), (5, 3, 8), (5, 3, 8)),
    ((3, 2, 7), (5, 2, 8), (5, 2, 8)),
    ((3, 8), (5, 2, 8), (5, 2, 8)),
    ((2, 3, 2, 8), (2, 5, 2, 8), (2, 5, 2, 8)),
])
def test_mha_bad_input_shapes(shapes):
    layer = L.MultiheadAttention(8, 2, dtype=F64)
    x = tuple(np.ones(s) for s in shapes)
    with pytest.raises((ValueError, TypeError), match=r"MultiheadAttention\(embed_dim=8, num_heads=2, dtype=float64\): expected"):
        layer.apply(layer.init(random.key(0)), x)


def test_mha_constructor_errors():
    with pytest.raises(ValueError, match=r"MultiheadAttention: expected embed_dim to be divisible by num_heads, "
                                         r"got embed_dim=8, num_heads=3"):
        L.MultiheadAttention(8, 3)
    with pytest.raises(ValueError, match=r"MultiheadAttention: .*dropout"):
        L.MultiheadAttention(8, 2, dropout=1.5)
    with pytest.raises(TypeError, match=r"MultiheadAttention: .*kdim"):
        L.MultiheadAttention(8, 2, kdim=2.0)


# ------------------------------------------------------------------------ property tests
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def attention_case(draw):
    """A random attention or transformer layer (float64), its input, apply kwargs and a training flag."""
    heads = draw(st.integers(1, 3))
    E = heads * draw(st.integers(1, 3))
    batched, batch_first = draw(st.booleans()), draw(st.booleans())
    N, L_, S = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["mha", "encoder_layer", "decoder_layer", "encoder"]))

    def shape(t, f):
        if not batched:
            return (t, f)
        return (N, t, f) if batch_first else (t, N, f)

    kw = {}
    if kind == "mha":
        kdim, vdim = draw(st.sampled_from([(None, None), (2, 3)]))
        layer = L.MultiheadAttention(E, heads, dropout=draw(st.sampled_from([0.0, 0.4])), bias=draw(st.booleans()),
                                     add_bias_kv=draw(st.booleans()), add_zero_attn=draw(st.booleans()),
                                     kdim=kdim, vdim=vdim, batch_first=batch_first, dtype=F64)
        shapes = (shape(L_, E), shape(S, kdim or E), shape(S, vdim or E))
        kw = {"need_weights": draw(st.booleans()), "average_attn_weights": draw(st.booleans())}
        if draw(st.booleans()):
            kw["attn_mask"] = np.triu(np.ones((L_, S), bool), 1)
        if draw(st.booleans()):  # pad the last key of the first sequence (never a whole row: no NaN)
            kpm = np.zeros((N, S) if batched else (S,), bool)
            if S > 1:
                kpm[..., -1] = True
            kw["key_padding_mask"] = kpm
    else:
        common = dict(dim_feedforward=draw(st.integers(1, 5)), dropout=draw(st.sampled_from([0.0, 0.3])),
                      activation=draw(st.sampled_from(["relu", "gelu", L.Tanh()])), batch_first=batch_first,
                      norm_first=draw(st.booleans()), bias=draw(st.booleans()), dtype=F64)
        if kind == "decoder_layer":
            layer = L.TransformerDecoderLayer(E, heads, **common)
            shapes = (shape(L_, E), shape(S, E))
        else:
            block = L.TransformerEncoderLayer(E, heads, **common)
            layer = block if kind == "encoder_layer" else L.TransformerEncoder(block, 2, norm=L.LayerNorm(E, dtype=F64))
            shapes = shape(L_, E)
    return layer, shapes, kw, draw(st.booleans())


def _attention_setup(case, seed):
    layer, shapes, kw, train = case
    kp, ks, kx = random.split(random.key(seed), 3)
    params = layer.init(kp)
    params = tree.tree_map(lambda a: a + 0.3 * random.normal(random.fold_in(kx, a.size), a.shape, dtype=a.dtype),
                           params)
    if isinstance(shapes[0], tuple):
        x = tuple(random.normal(k, s, dtype=F64) for k, s in zip(random.split(kx, len(shapes)), shapes,
                                                                  strict=True))
    else:
        x = random.normal(kx, shapes, dtype=F64)
    return layer, params, layer.init_state(ks), x, kw, train


def _dy(key, y):
    leaves, treedef = tree.tree_flatten(y)
    return tree.tree_unflatten(treedef, [random.normal(k, a.shape, dtype=F64)
                                         for k, a in zip(random.split(key, len(leaves)), leaves, strict=True)])


@PROPERTY
@given(case=attention_case(), seed=st.integers(0, 2**32 - 1))
def test_attention_contract_determinism_and_linearity(case, seed):
    """No mutation, shapes, replay (check_contract); equal keys agree; the vjp is linear in dy."""
    layer, params, state, x, kw, train = _attention_setup(case, seed)
    check_contract(layer, params, x, state=state, train=train, key=random.key(seed + 1), kwargs=kw, dtype=F64)
    y, vjp, new_state = call_layer(layer, params, x, state, train, kw)
    layer2, params2, state2, x2, _, _ = _attention_setup(case, seed)
    y2, vjp2, new_state2 = call_layer(layer2, params2, x2, state2, train, kw)
    k1, k2 = random.split(random.key(seed + 2))
    dy1, dy2 = _dy(k1, y), _dy(k2, y)
    assert leaves_equal((y, new_state, vjp(dy1)), (y2, new_state2, vjp2(dy1)))
    a, b = 1.7, -0.6
    combined = vjp(tree.tree_map(lambda u, v: a * u + b * v, dy1, dy2))
    separate = tree.tree_map(lambda u, v: a * u + b * v, vjp(dy1), vjp(dy2))
    for got, want in zip(tree.tree_leaves(combined), tree.tree_leaves(separate), strict=True):
        assert_close(got, want, rtol=1e-9, atol=1e-9 * (1 + float(np.abs(want).max(initial=0))))


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=attention_case(), seed=st.integers(0, 2**32 - 1))
def test_attention_finite_differences(case, seed):
    """The vjp against float64 central differences (a few coordinates per leaf), dropout masks fixed by the state."""
    layer, params, state, x, kw, train = _attention_setup(case, seed)
    check_vjp(layer, params, x, state=state if layer.stateful else None, train=train, kwargs=kw,
              key=random.key(seed + 3), rtol=1e-5, atol=1e-7, max_coords=4)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize(("L_", "S"), [(3, 0), (0, 3), (0, 0)])
def test_empty_sequences_as_torch(L_, S, need_weights):
    """No keys: empty weights and the output projection's bias (torch's); no queries: empty output."""
    torch = pytest.importorskip("torch")
    from nptfunc.testing import assert_layer_matches_torch

    layer = L.MultiheadAttention(4, 2, dtype=F64)
    params = tree.tree_map(lambda a: a + 1.0, layer.init(random.key(0)))  # non-zero biases
    x = (np.ones((L_, 2, 4)), np.ones((S, 2, 4)), np.ones((S, 2, 4)))
    (y, _), _, _ = assert_layer_matches_torch(layer, params, torch.nn.MultiheadAttention(4, 2, dtype=torch.float64),
                                              x, kwargs={"need_weights": need_weights})
    np.testing.assert_array_equal(y, np.broadcast_to(params.out_proj.bias, (L_, 2, 4)))
    q, k = np.ones((2, L_, 4)), np.ones((2, S, 4))
    y, vjp = L.scaled_dot_product_attention(q, k, k)
    assert y.shape == (2, L_, 4) and np.all(y == 0)
    assert [d.shape for d in vjp(np.ones_like(y))] == [q.shape, k.shape, k.shape]

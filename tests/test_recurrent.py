"""Recurrent layers beyond the parity table: torch's weights through convert, layouts, dropout masks, errors.

The table (``tests/parity_table.py``) checks every configuration's forward, dx and
every dparam against torch, finite differences and the contract; here are the
issue's done-when cases with torch's own initial weights loaded through
:mod:`nptfunc.convert`, the state dict both ways, the dropout between layers,
non-contiguous input, and the error messages.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nptfunc import convert, random, tree
from nptfunc import layers as L
from nptfunc.testing import (
    assert_close,
    assert_layer_matches_torch,
    call_layer,
    check_contract,
    check_vjp,
    leaves_equal,
    torch_dtype,
)

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

F32, F64 = np.float32, np.float64


def _normal(seed, shape, dtype):
    return random.normal(random.key(seed), shape, dtype=dtype)


# (nptfunc layer, torch module, input, hx) in torch's layout, time-major, batch 3, sequence 6
def _done_when_cases(dtype):
    t, n = 6, 3
    lstm_kw = dict(num_layers=2, bidirectional=True)
    return {
        "lstm-2l-bi": (L.LSTM(4, 5, **lstm_kw, dtype=dtype), torch.nn.LSTM(4, 5, **lstm_kw),
                       (t, n, 4), ((4, n, 5), (4, n, 5))),
        "lstm-2l-bi-proj": (L.LSTM(4, 5, proj_size=3, **lstm_kw, dtype=dtype),
                            torch.nn.LSTM(4, 5, proj_size=3, **lstm_kw), (t, n, 4), ((4, n, 3), (4, n, 5))),
        "gru-2l": (L.GRU(4, 5, num_layers=2, dtype=dtype), torch.nn.GRU(4, 5, num_layers=2), (t, n, 4),
                   (2, n, 5)),
        "rnn-tanh": (L.RNN(4, 5, num_layers=2, dtype=dtype), torch.nn.RNN(4, 5, num_layers=2), (t, n, 4),
                     (2, n, 5)),
        "rnn-relu": (L.RNN(4, 5, nonlinearity="relu", dtype=dtype), torch.nn.RNN(4, 5, nonlinearity="relu"),
                     (t, n, 4), (1, n, 5)),
    }


def _make_x(input_shape, hx_shapes, dtype, layout):
    x = _normal(1, input_shape, dtype)
    hx = (tuple(_normal(2 + i, s, dtype) for i, s in enumerate(hx_shapes)) if isinstance(hx_shapes[0], tuple)
          else _normal(2, hx_shapes, dtype))
    if layout == "batch_first":
        x = np.ascontiguousarray(x.transpose(1, 0, 2))
    elif layout == "unbatched":
        x = x[:, 0]
        hx = tuple(h[:, 0] for h in hx) if isinstance(hx, tuple) else hx[:, 0]
    return (x, hx)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("layout", ["time_major", "batch_first", "unbatched"])
@pytest.mark.parametrize("case", ["lstm-2l-bi", "lstm-2l-bi-proj", "gru-2l", "rnn-tanh", "rnn-relu"])
def test_torch_weights_through_convert(case, layout, dtype):
    """torch's own initial weights, loaded through convert: outputs, final states, every gradient."""
    torch.manual_seed(0)
    layer, module, input_shape, hx_shapes = _done_when_cases(dtype)[case]
    if layout == "batch_first":
        layer = type(layer)(**{**_fields(layer), "batch_first": True})
        module = type(module)(**{**_torch_kwargs(module), "batch_first": True})
    module = module.to(torch_dtype(dtype))
    params = convert.tree_from_state_dict(convert.state_dict_from_torch(module.state_dict()),
                                          layer.init(random.key(0)), strict=True)
    assert sorted(params) == sorted(module.state_dict())
    x = _make_x(input_shape, hx_shapes, dtype, layout)
    y, dparams, dx = assert_layer_matches_torch(layer, params, module, x, key=random.key(3))
    assert dx[0].shape == x[0].shape
    # and back: our params as a torch state dict are torch's, key for key and value for value
    sd = convert.state_dict_to_torch(convert.state_dict_from_tree(params))
    assert sd.keys() == module.state_dict().keys()
    for k, v in module.state_dict().items():
        assert torch.equal(sd[k], v)


def _fields(layer):
    import attrs

    return {f.name: getattr(layer, f.name) for f in attrs.fields(type(layer))}


def _torch_kwargs(module):
    kw = dict(input_size=module.input_size, hidden_size=module.hidden_size, num_layers=module.num_layers,
              bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
              bidirectional=module.bidirectional)
    if isinstance(module, torch.nn.LSTM):
        kw["proj_size"] = module.proj_size
    if isinstance(module, torch.nn.RNN):
        kw["nonlinearity"] = module.nonlinearity
    return kw


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_with_torch_weights(kind):
    torch.manual_seed(1)
    module = getattr(torch.nn, kind)(3, 4).double()
    layer = getattr(L, kind)(3, 4, dtype=F64)
    params = convert.tree_from_state_dict(module.state_dict(), layer.init(random.key(0)), strict=True)
    h = _normal(2, (5, 4), F64)
    hx = (h, _normal(3, (5, 4), F64)) if kind == "LSTMCell" else h
    assert_layer_matches_torch(layer, params, module, (_normal(1, (5, 3), F64), hx))


def test_init_distribution_and_names_match_torch():
    layer = L.LSTM(3, 16, num_layers=2, bidirectional=True, proj_size=4, dtype=F64)
    params = layer.init(random.key(0))
    module = torch.nn.LSTM(3, 16, num_layers=2, bidirectional=True, proj_size=4)
    assert list(layer.param_shapes()) == list(module.state_dict())
    for name, t in module.state_dict().items():
        assert params[name].shape == tuple(t.shape)
        assert not params[name].flags.writeable
    leaves = np.concatenate([a.ravel() for a in params.values()])
    bound = 1 / np.sqrt(16)
    assert np.abs(leaves).max() <= bound
    assert np.abs(leaves).max() > 0.95 * bound  # uniform over the whole interval
    assert abs(leaves.mean()) < 0.01 and abs(leaves.std() - bound / np.sqrt(3)) < 0.01


def test_non_contiguous_input():
    layer = L.GRU(3, 4, bidirectional=True, dtype=F64)
    module = torch.nn.GRU(3, 4, bidirectional=True).double()
    params = convert.tree_from_state_dict(module.state_dict(), layer.init(random.key(0)))
    x = _normal(0, (5, 4, 6), F64)[:, ::2, ::2]  # (5, 2, 3), strided
    assert not x.flags.c_contiguous
    assert_layer_matches_torch(layer, params, module, x)


# ------------------------------------------------------------------------ dropout
def _lstm_dropout(p, dtype=F64):
    return L.LSTM(3, 4, num_layers=3, dropout=p, dtype=dtype)


def test_dropout_makes_the_layer_stateful_only_when_positive():
    assert not L.LSTM(3, 4, num_layers=2).stateful
    assert L.LSTM(3, 4, num_layers=2).init_state(random.key(0)) is None
    layer = _lstm_dropout(0.5)
    assert layer.stateful
    assert isinstance(layer.init_state(random.key(0)), L.DropoutState)


def test_dropout_masks_come_from_the_state_key():
    layer = _lstm_dropout(0.5)
    params = layer.init(random.key(0))
    x = _normal(1, (5, 2, 3), F64)
    state = layer.init_state(random.key(1))
    y1, _, s1 = layer.apply(params, x, state, train=True)
    y1b, _, s1b = layer.apply(params, x, state, train=True)
    y2, _, _ = layer.apply(params, x, s1, train=True)
    y3, _, _ = layer.apply(params, x, layer.init_state(random.key(2)), train=True)
    assert np.array_equal(y1[0], y1b[0]) and s1 == s1b  # the same state, the same masks
    assert not np.allclose(y1[0], y2[0]) and not np.allclose(y1[0], y3[0])
    ye, _, se = layer.apply(params, x, state, train=False)
    assert se is state  # evaluation: no dropout, state unchanged
    yn, _ = L.LSTM(3, 4, num_layers=3, dtype=F64).apply(params, x)
    assert_close(ye[0], yn[0])
    assert not np.allclose(y1[0], ye[0])


def test_dropout_one_matches_torch_in_training():
    """p = 1 drops every value between layers: deterministic, so torch's training mode can be compared."""
    torch.manual_seed(0)
    module = torch.nn.GRU(3, 4, num_layers=2, dropout=1.0).double()
    layer = L.GRU(3, 4, num_layers=2, dropout=1.0, dtype=F64)
    params = convert.tree_from_state_dict(module.state_dict(), layer.init(random.key(0)))
    x = (_normal(1, (5, 2, 3), F64), _normal(2, (2, 2, 4), F64))
    assert_layer_matches_torch(layer, params, module, x, state=layer.init_state(random.key(0)), train=True)


def test_dropout_mask_fraction():
    """Drive the layer's mask through an input gradient: with W_hh = 0 layer 1 is elementwise in its input."""
    p = 0.3
    layer = L.RNN(64, 64, num_layers=2, dropout=p, nonlinearity="relu", bias=False, dtype=F64)
    eye = np.eye(64)
    params = {"weight_ih_l0": eye, "weight_hh_l0": np.zeros((64, 64)),
              "weight_ih_l1": eye, "weight_hh_l1": np.zeros((64, 64))}
    x = np.abs(_normal(1, (20, 8, 64), F64)) + 0.1  # positive: ReLU is the identity
    (out, _), _, _ = layer.apply(params, x, layer.init_state(random.key(7)), train=True)
    ratio = out / x  # the mask: 0 or 1 / (1 - p)
    kept = ratio != 0
    assert_close(ratio[kept], np.full(kept.sum(), 1 / (1 - p)))
    assert abs(1 - kept.mean() - p) < 0.02  # 10240 draws


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("make", "match"), [
    (lambda: L.LSTM(3, 4, proj_size=4), r"LSTM: expected proj_size smaller than hidden_size=4, got 4"),
    (lambda: L.LSTM(3, 4, proj_size=-1), r"LSTM.*proj_size"),
    (lambda: L.RNN(3, 4, nonlinearity="sigmoid"), r"RNN.*nonlinearity.*sigmoid"),
    (lambda: L.GRU(3, 4, dropout=1.5), r"GRU.*dropout"),
    (lambda: L.GRU(3, 0), r"GRU.*hidden_size"),
    (lambda: L.LSTM(3, 4, num_layers=0), r"LSTM.*num_layers"),
    (lambda: L.LSTM(3, 4, bidirectional=1), r"LSTM.*bidirectional"),
    (lambda: L.GRUCell(3, 4, bias="yes"), r"GRUCell.*bias"),
    (lambda: L.RNNCell(3, 4, nonlinearity="gelu"), r"RNNCell.*nonlinearity"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def _lstm():
    layer = L.LSTM(3, 4, num_layers=2, dtype=F64)
    return layer, layer.init(random.key(0))


@pytest.mark.parametrize(("x", "error", "match"), [
    (np.ones((5, 2, 4)), ValueError, r"LSTM\(input_size=3, hidden_size=4, num_layers=2, dtype=float64\): "
                                     r"expected input of shape \(L, N, 3\) or \(L, 3\), got \(5, 2, 4\)"),
    (np.ones((5, 2, 1, 3)), ValueError, r"expected input of shape"),
    ((np.ones((5, 2, 3)), (np.ones((2, 2, 4)), np.ones((2, 3, 4)))), ValueError,
     r"LSTM.*expected c0 of shape \(2, 2, 4\), got \(2, 3, 4\)"),
    ((np.ones((5, 2, 3)), (np.ones((1, 2, 4)), np.ones((2, 2, 4)))), ValueError,
     r"expected h0 of shape \(2, 2, 4\), got \(1, 2, 4\)"),
    ((np.ones((5, 3)), (np.ones((2, 2, 4)), np.ones((2, 2, 4)))), ValueError,
     r"expected h0 of shape \(2, 4\), got \(2, 2, 4\)"),
    ((np.ones((5, 2, 3)), np.ones((2, 2, 4))), TypeError, r"LSTM.*expected hx = \(h0, c0\)"),
    ((np.ones((5, 2, 3)), None, None), TypeError, r"LSTM.*expected x = input or \(input, hx\)"),
])
def test_bad_inputs(x, error, match):
    layer, params = _lstm()
    with pytest.raises(error, match=match):
        layer.apply(params, x)


def test_gru_hx_must_be_one_array():
    layer = L.GRU(3, 4, dtype=F64)
    with pytest.raises(TypeError, match=r"GRU.*expected hx to be one array h0"):
        layer.apply(layer.init(random.key(0)), (np.ones((5, 2, 3)), (np.ones((1, 2, 4)),)))


def test_cell_bad_hidden_shape():
    layer = L.GRUCell(3, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"GRUCell\(input_size=3, hidden_size=4, dtype=float64\): "
                                         r"expected h0 of shape \(2, 4\), got \(3, 4\)"):
        layer.apply(layer.init(random.key(0)), (np.ones((2, 3)), np.ones((3, 4))))


def test_bad_params_keys_and_shapes():
    layer, params = _lstm()
    missing = {k: v for k, v in params.items() if k != "bias_hh_l1"}
    with pytest.raises(ValueError, match=r"LSTM.*missing \['bias_hh_l1'\], unexpected \[\]"):
        layer.apply(missing, np.ones((5, 2, 3)))
    bad = {**params, "weight_hh_l0": np.ones((16, 3))}
    with pytest.raises(ValueError, match=r"LSTM.*params\['weight_hh_l0'\] of shape \(16, 4\), got \(16, 3\)"):
        layer.apply(bad, np.ones((5, 2, 3)))
    with pytest.raises(TypeError, match=r"LSTM.*expected params of class dict"):
        layer.apply(tuple(params.values()), np.ones((5, 2, 3)))


def test_float32_input_to_float64_layer_and_no_dx():
    layer, params = _lstm()
    x = (_normal(0, (5, 2, 3), F32), (_normal(1, (2, 2, 4), F32), _normal(2, (2, 2, 4), F32)))
    y, vjp = layer.apply(params, x)
    assert y[0].dtype == F64
    dy = (np.ones_like(y[0]), (np.ones_like(y[1][0]), None))
    dparams, dx = vjp(dy)
    assert dx[0].dtype == F32 and dx[1][0].dtype == F32 and dx[1][1].dtype == F32
    _, vjp2 = layer.apply(params, x, need_dx=False)
    dparams2, dx2 = vjp2(dy)
    assert dx2 is None
    assert all(np.array_equal(dparams[k], dparams2[k]) for k in dparams)


def test_hidden_state_of_none_is_zeros():
    layer = L.GRU(3, 4, num_layers=2, dtype=F64)
    params = layer.init(random.key(0))
    x = _normal(0, (5, 2, 3), F64)
    y0, _ = layer.apply(params, x)
    y1, vjp = layer.apply(params, (x, None))
    y2, _ = layer.apply(params, (x, np.zeros((2, 2, 4))))
    assert np.array_equal(y0[0], y1[0]) and np.array_equal(y0[0], y2[0])
    _, dx = vjp((np.ones_like(y1[0]), np.ones_like(y1[1])))
    assert dx[1] is None and dx[0].shape == x.shape


def test_call_layer_works_on_stateless_and_stateful():
    for layer in (L.RNN(3, 4, num_layers=2, dtype=F64), L.RNN(3, 4, num_layers=2, dropout=0.2, dtype=F64)):
        params = layer.init(random.key(0))
        y, _, _ = call_layer(layer, params, np.ones((2, 1, 3)), layer.init_state(random.key(1)))
        assert y[0].shape == (2, 1, 4) and y[1].shape == (2, 1, 4)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_empty_batch_matches_torch(kind):
    module = getattr(torch.nn, kind)(3, 4, num_layers=2, bidirectional=True).double()
    layer = getattr(L, kind)(3, 4, num_layers=2, bidirectional=True, dtype=F64)
    params = convert.tree_from_state_dict(module.state_dict(), layer.init(random.key(0)))
    assert_layer_matches_torch(layer, params, module, np.zeros((4, 0, 3)))


def test_empty_batch_cell():
    layer = L.LSTMCell(3, 4, dtype=F64)
    (h, c), vjp = layer.apply(layer.init(random.key(0)), np.zeros((0, 3)))
    assert h.shape == c.shape == (0, 4)
    dparams, dx = vjp((h, c))
    assert dx.shape == (0, 3) and not dparams.weight_ih.any()


@pytest.mark.parametrize(("layer", "shape"), [(L.LSTM(3, 4), (0, 2, 3)), (L.GRU(3, 4, batch_first=True), (2, 0, 3)),
                                              (L.RNN(3, 4), (0, 3))])
def test_empty_sequence_is_an_error_as_in_torch(layer, shape):
    with pytest.raises(ValueError, match=r"expected a sequence of length > 0 \(as torch\), got input of shape"):
        layer.apply(layer.init(random.key(0)), np.zeros(shape, np.float32))


# ------------------------------------------------------------------- property tests
@st.composite
def recurrent_case(draw):
    """A recurrent layer of any kind and configuration, and its x (input, maybe with initial states)."""
    kind = draw(st.sampled_from(["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]))
    n_in, hidden = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(st.sampled_from([(), (1,), (2,)]))
    kw = dict(bias=draw(st.booleans()))
    if kind in ("RNN", "RNNCell"):
        kw["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    if kind.endswith("Cell"):
        layer = getattr(L, kind)(n_in, hidden, **kw, dtype=F64)
        shapes = ((*batch, n_in), (*batch, hidden), (*batch, hidden))
    else:
        kw.update(num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
                  batch_first=draw(st.booleans()))
        if kind == "LSTM" and hidden > 1 and draw(st.booleans()):
            kw["proj_size"] = draw(st.integers(1, hidden - 1))
        layer = getattr(L, kind)(n_in, hidden, **kw, dtype=F64)
        t, states = draw(st.integers(1, 3)), kw["num_layers"] * (2 if kw["bidirectional"] else 1)
        x = (*batch, t, n_in) if kw["batch_first"] and batch else (t, *batch, n_in)
        shapes = (x, (states, *batch, kw.get("proj_size") or hidden), (states, *batch, hidden))
    return layer, shapes, draw(st.booleans())


def _x_of(layer, shapes, with_hx, seed):
    k = random.split(random.key(seed), 3)
    inp, h, c = (random.normal(ki, s, dtype=F64) for ki, s in zip(k, shapes, strict=True))
    if not with_hx:
        return inp
    return (inp, (h, c)) if type(layer).__name__.startswith("LSTM") else (inp, h)


PROPERTY = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(case=recurrent_case(), seed=st.integers(0, 2**32 - 1))
def test_contract_determinism_and_linearity(case, seed):
    layer, shapes, with_hx = case
    params = layer.init(random.key(seed))
    x = _x_of(layer, shapes, with_hx, seed + 1)
    check_contract(layer, params, x, key=random.key(seed + 2), dtype=F64)
    y, vjp = layer.apply(params, x)
    y2, vjp2 = layer.apply(layer.init(random.key(seed)), _x_of(layer, shapes, with_hx, seed + 1))
    leaves, treedef = tree.tree_flatten(y)
    k1, k2 = random.split(random.key(seed + 3))
    dy1 = tree.tree_unflatten(treedef, [random.normal(k, a.shape, dtype=F64)
                                        for k, a in zip(random.split(k1, len(leaves)), leaves, strict=True)])
    dy2 = tree.tree_unflatten(treedef, [random.normal(k, a.shape, dtype=F64)
                                        for k, a in zip(random.split(k2, len(leaves)), leaves, strict=True)])
    assert leaves_equal((y, vjp(dy1)), (y2, vjp2(dy1)))
    a, b = 1.5, -0.7
    combined = vjp(tree.tree_map(lambda u, v: a * u + b * v, dy1, dy2))
    separate = tree.tree_map(lambda u, v: a * u + b * v, vjp(dy1), vjp(dy2))
    for got, want in zip(tree.tree_leaves(combined), tree.tree_leaves(separate), strict=True):
        assert_close(got, want, rtol=1e-9, atol=1e-9 * (1 + float(np.abs(want).max(initial=0))))


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=recurrent_case(), seed=st.integers(0, 2**32 - 1))
def test_finite_differences_on_tiny_cases(case, seed):
    layer, shapes, with_hx = case
    check_vjp(layer, layer.init(random.key(seed)), _x_of(layer, shapes, with_hx, seed + 1),
              key=random.key(seed + 2), rtol=1e-5, atol=1e-7)


def test_params_and_state_save_and_load(tmp_path):
    from nptfunc import io

    layer = L.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, dropout=0.2)
    cell = L.GRUCell(3, 4)
    obj = {"lstm": layer.init(random.key(0)), "state": layer.init_state(random.key(1)),
           "cell": cell.init(random.key(2))}
    io.save(obj, tmp_path / "m.npz")
    back = io.load(tmp_path / "m.npz")
    assert leaves_equal(back, obj) and back["state"] == obj["state"]
    assert isinstance(back["cell"], L.RNNCellParams) and sorted(back["lstm"]) == sorted(obj["lstm"])


def test_none_cotangent_for_the_final_states():
    """``dy = (d_output, None)``: the final states are not used (zeros), for the LSTM's pair too."""
    layer, params = _lstm()
    x = _normal(0, (5, 2, 3), F64)
    y, vjp = layer.apply(params, x)
    dout = _normal(1, y[0].shape, F64)
    zeros = (np.zeros_like(y[1][0]), np.zeros_like(y[1][1]))
    assert leaves_equal(vjp((dout, None)), vjp((dout, zeros)))
    assert leaves_equal(vjp((dout, (None, zeros[1]))), vjp((dout, zeros)))

"""The facade's attention and transformer modules: torch's signatures, state dicts both ways, gradients."""

from __future__ import annotations

import numpy as np
import pytest

from nptfunc import convert, nn, random
from nptfunc.testing import assert_close, to_torch

torch = pytest.importorskip("torch")


def _randn(seed, shape, dtype=np.float64):
    return random.normal(random.key(seed), shape, dtype=dtype)


def _load_from_torch(module, tmodule):
    assert module.load_state_dict(convert.state_dict_from_torch(tmodule.state_dict())) == (
        nn.IncompatibleKeys([], []))


def _check_grads(module, tmodule):
    grads = {name: p.grad for name, p in module.named_parameters()}
    tgrads = {name: p.grad for name, p in tmodule.named_parameters()}
    assert sorted(grads) == sorted(tgrads)
    for name, g in grads.items():
        assert_close(g, tgrads[name], name=f"d{name}")


@pytest.mark.parametrize("kwargs", [{}, {"kdim": 3, "vdim": 5, "add_bias_kv": True, "batch_first": True}],
                         ids=["packed", "separate-biaskv-batchfirst"])
def test_multihead_attention_module(kwargs):
    m = nn.MultiheadAttention(8, 2, dtype=np.float64, key=0, **kwargs)
    tm = torch.nn.MultiheadAttention(8, 2, dtype=torch.float64, **kwargs)
    assert sorted(m.state_dict()) == sorted(tm.state_dict())
    _load_from_torch(m, tm)
    kd, vd = kwargs.get("kdim", 8), kwargs.get("vdim", 8)
    shapes = ((2, 3, 8), (2, 5, kd), (2, 5, vd)) if kwargs else ((3, 2, 8), (5, 2, kd), (5, 2, vd))
    q, k, v = (_randn(i, s) for i, s in enumerate(shapes))
    kpm = np.array([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], bool)
    out, w = m(q, k, v, key_padding_mask=kpm)
    qt, kt, vt = (to_torch(a).requires_grad_(True) for a in (q, k, v))
    out_t, w_t = tm(qt, kt, vt, key_padding_mask=to_torch(kpm))
    assert_close(out, out_t)
    assert_close(w, w_t)
    dy = _randn(9, out.shape)
    dq, dk, dv = m.backward(dy)
    out_t.backward(to_torch(dy))
    for d, t in zip((dq, dk, dv), (qt, kt, vt), strict=True):
        assert_close(d, t.grad)
    _check_grads(m, tm)
    tm2 = torch.nn.MultiheadAttention(8, 2, dtype=torch.float64, **kwargs)
    tm2.load_state_dict(convert.state_dict_to_torch(m.state_dict()))
    for key, value in tm.state_dict().items():
        assert torch.equal(value, tm2.state_dict()[key])


def test_transformer_encoder_module_matches_torch():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=nn.GELU(), norm_first=True,
                                       dtype=np.float64, key=1)
    model = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(8, dtype=np.float64), key=2)
    tlayer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=torch.nn.functional.gelu,
                                              norm_first=True, dtype=torch.float64)
    tmodel = torch.nn.TransformerEncoder(tlayer, 2, norm=torch.nn.LayerNorm(8, dtype=torch.float64),
                                         enable_nested_tensor=False)
    assert sorted(model.state_dict()) == sorted(tmodel.state_dict())
    # as torch's deep copies, the stack starts from the layer's weights
    np.testing.assert_array_equal(model.state_dict()["layers.1.linear1.weight"], layer.state_dict()["linear1.weight"])
    _load_from_torch(model, tmodel)
    src = _randn(3, (4, 2, 8))
    mask = np.triu(np.ones((4, 4), bool), 1)
    kpm = np.array([[0, 0, 0, 1], [0, 0, 0, 0]], bool)
    y = model(src, mask=mask, src_key_padding_mask=kpm)
    xt = to_torch(src).requires_grad_(True)
    yt = tmodel(xt, mask=to_torch(mask), src_key_padding_mask=to_torch(kpm))
    assert_close(y, yt)
    dy = _randn(4, y.shape)
    dx = model.backward(dy)
    yt.backward(to_torch(dy))
    assert_close(dx, xt.grad)
    _check_grads(model, tmodel)


def test_transformer_decoder_module_matches_torch():
    model = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, dtype=np.float64, key=1), 2)
    tmodel = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0,
                                                                          dtype=torch.float64), 2)
    _load_from_torch(model, tmodel)
    tgt, memory = _randn(5, (3, 2, 8)), _randn(6, (4, 2, 8))
    mask = np.triu(np.ones((3, 3), bool), 1)
    y = model(tgt, memory, tgt_mask=mask)
    tt, mt = to_torch(tgt).requires_grad_(True), to_torch(memory).requires_grad_(True)
    yt = tmodel(tt, mt, tgt_mask=to_torch(mask))
    assert_close(y, yt)
    dy = _randn(7, y.shape)
    dtgt, dmem = model.backward(dy)
    yt.backward(to_torch(dy))
    assert_close(dtgt, tt.grad)
    assert_close(dmem, mt.grad)
    _check_grads(model, tmodel)


def test_dropout_in_the_modules_follows_train_and_eval():
    model = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5, key=0)
    x = _randn(1, (3, 2, 8), np.float32)
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))
    model.train()
    assert not np.allclose(model(x), model(x))  # the key advances at every training call


def test_module_argument_errors():
    with pytest.raises(TypeError, match=r"TransformerEncoder: expected encoder_layer to be an "
                                        r"nn.TransformerEncoderLayer, got Linear"):
        nn.TransformerEncoder(nn.Linear(2, 2), 2)
    with pytest.raises(TypeError, match=r"TransformerDecoder: expected norm to be an nn.LayerNorm, got Linear"):
        nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2), 2, norm=nn.Linear(8, 8))
    with pytest.raises(ValueError, match=r"MultiheadAttention: nptfunc runs on the CPU"):
        nn.MultiheadAttention(8, 2, device="cuda")

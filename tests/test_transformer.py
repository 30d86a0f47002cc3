"""Transformer blocks beyond the parity table: torch's weights through convert, dropout, init, errors."""

from __future__ import annotations

import numpy as np
import pytest

from nptfunc import convert, random
from nptfunc import layers as L
from nptfunc.testing import assert_close, to_torch

F32, F64 = np.float32, np.float64


def _torch_encoder(torch, dtype, perturb):
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1)
    model = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(16), enable_nested_tensor=False)
    model = model.to(dtype)
    if perturb:  # distinct layers, non-zero biases, norms away from ones (torch's clones start equal)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=dtype))
    return model


@pytest.mark.parametrize("perturb", [False, True], ids=["torch-init", "perturbed"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_two_layer_encoder_with_torch_weights_through_convert(dtype, perturb):
    """Issue 14's done-when: torch's weights via convert, causal + padding masks; y and every gradient."""
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, np.dtype(dtype).name)
    tm = _torch_encoder(torch, tdt, perturb)
    model = L.TransformerEncoder(L.TransformerEncoderLayer(16, 4, 32, dropout=0.1, dtype=dtype), 2,
                                 norm=L.LayerNorm(16, dtype=dtype))
    params = convert.tree_from_state_dict(convert.state_dict_from_torch(tm.state_dict()),
                                          model.init(random.key(0)), strict=True)
    S, N = 5, 3
    src = random.normal(random.key(1), (S, N, 16), dtype=dtype)
    causal = np.triu(np.ones((S, S), bool), 1)
    padding = np.zeros((N, S), bool)
    padding[0, 3:] = True
    padding[2, 4] = True
    # training mode with dropout would draw torch's masks: compare in evaluation (dropout off)
    y, vjp, _ = model.apply(params, src, model.init_state(random.key(2)), train=False, mask=causal,
                            src_key_padding_mask=padding, is_causal=True)
    tm.eval()
    xt = to_torch(src).requires_grad_(True)
    yt = tm(xt, mask=to_torch(causal), src_key_padding_mask=to_torch(padding), is_causal=True)
    assert_close(y, yt, name="y")
    dy = random.normal(random.key(3), y.shape, dtype=dtype)
    dparams, dx = vjp(dy)
    yt.backward(to_torch(dy))
    assert_close(dx, xt.grad, name="dx")
    grads = convert.state_dict_from_tree(dparams)
    named = dict(tm.named_parameters())
    assert sorted(grads) == sorted(named)
    for name, g in grads.items():
        assert_close(g, named[name].grad, name=f"d{name}")
    # and back: our params into a fresh torch model give the same state dict
    tm2 = _torch_encoder(torch, tdt, not perturb)
    tm2.load_state_dict(convert.state_dict_to_torch(convert.state_dict_from_tree(params)))
    for k, v in tm.state_dict().items():
        assert torch.equal(v, tm2.state_dict()[k])


def test_state_dict_keys_match_torch():
    torch = pytest.importorskip("torch")
    dec = L.TransformerDecoder(L.TransformerDecoderLayer(8, 2, 16, bias=False), 2, norm=L.LayerNorm(8))
    tdec = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(8, 2, 16, bias=False), 2,
                                       norm=torch.nn.LayerNorm(8))
    sd = convert.state_dict_from_tree(dec.init(random.key(0)))
    assert sorted(sd) == sorted(tdec.state_dict())
    assert all(sd[k].shape == tuple(v.shape) for k, v in tdec.state_dict().items())


def test_stack_layers_start_equal_as_torch_clones():
    enc = L.TransformerEncoder(L.TransformerEncoderLayer(8, 2, 16), 3)
    p = enc.init(random.key(0))
    assert p.layers[0] == p.layers[1] == p.layers[2] and p.norm is None
    assert not np.all(p.layers[0].linear1.weight == 0)


@pytest.mark.parametrize("model", [
    L.TransformerEncoderLayer(8, 2, 16, dropout=0.3, dtype=F64),
    L.TransformerEncoder(L.TransformerEncoderLayer(8, 2, 16, dropout=0.3, dtype=F64), 2),
], ids=["layer", "stack"])
def test_dropout_train_differs_from_eval_and_state_advances(model):
    assert model.stateful
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    x = random.normal(random.key(2), (4, 2, 8), dtype=F64)
    y_eval, _, s_eval = model.apply(params, x, state, train=False)
    assert s_eval is state
    y1, _, s1 = model.apply(params, x, state, train=True)
    y1b, _, _ = model.apply(params, x, state, train=True)
    y2, _, s2 = model.apply(params, x, s1, train=True)
    np.testing.assert_array_equal(y1, y1b)
    assert not np.allclose(y1, y_eval) and not np.allclose(y1, y2) and s1 != state != s2
    with pytest.raises(TypeError, match=r"is stateful: call apply\(params, x, state, train=True\|False\)"):
        model.apply(params, x)


def test_dropout_zero_is_stateless_and_equals_eval():
    p = L.TransformerEncoderLayer(8, 2, 16, dropout=0.0, dtype=F64).init(random.key(0))
    x = random.normal(random.key(2), (4, 2, 8), dtype=F64)
    y0, _ = L.TransformerEncoderLayer(8, 2, 16, dropout=0.0, dtype=F64).apply(p, x)
    layer = L.TransformerEncoderLayer(8, 2, 16, dtype=F64)
    y_eval, _, _ = layer.apply(p, x, layer.init_state(random.key(1)), train=False)
    np.testing.assert_array_equal(y0, y_eval)
    assert layer.init_state(random.key(1)) is not None
    assert L.TransformerEncoderLayer(8, 2, 16, dropout=0.0).init_state(random.key(1)) is None


def test_decoder_memory_gradient_sums_over_layers():
    dec = L.TransformerDecoder(L.TransformerDecoderLayer(8, 2, 16, dropout=0.0, dtype=F64), 2)
    p = dec.init(random.key(0))
    tgt, mem = (random.normal(k, s, dtype=F64) for k, s in zip(random.split(random.key(1)),
                                                               ((3, 2, 8), (4, 2, 8)), strict=True))
    y, vjp = dec.apply(p, (tgt, mem))
    dy = random.normal(random.key(3), y.shape, dtype=F64)
    _, (_, dmem) = vjp(dy)
    eps = 1e-6
    v = random.normal(random.key(4), mem.shape, dtype=F64)
    jv = (dec.apply(p, (tgt, mem + eps * v))[0] - dec.apply(p, (tgt, mem - eps * v))[0]) / (2 * eps)
    assert np.isclose(np.vdot(dy, jv), np.vdot(dmem, v), rtol=1e-6)


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: expected d_model to be divisible by nhead, "
                                         r"got d_model=8, nhead=3"):
        L.TransformerEncoderLayer(8, 3)
    with pytest.raises(ValueError, match=r"TransformerDecoderLayer: expected activation 'relu', 'gelu' or an "
                                         r"activation layer, got 'tanh'"):
        L.TransformerDecoderLayer(8, 2, activation="tanh")
    with pytest.raises(TypeError, match=r"TransformerEncoderLayer: expected activation .* without parameters"):
        L.TransformerEncoderLayer(8, 2, activation=L.Linear(8, 8))
    with pytest.raises(TypeError, match=r"TransformerEncoderLayer: expected activation"):
        L.TransformerEncoderLayer(8, 2, activation=np.tanh)
    with pytest.raises(TypeError, match=r"TransformerEncoder: expected encoder_layer to be a "
                                        r"TransformerEncoderLayer, got TransformerDecoderLayer"):
        L.TransformerEncoder(L.TransformerDecoderLayer(8, 2), 2)
    with pytest.raises(TypeError, match=r"TransformerDecoder: expected norm to be a LayerNorm or None"):
        L.TransformerDecoder(L.TransformerDecoderLayer(8, 2), 2, norm="layernorm")
    with pytest.raises(ValueError, match=r"TransformerEncoder: .*num_layers"):
        L.TransformerEncoder(L.TransformerEncoderLayer(8, 2), 0)


def test_apply_errors_name_the_layer():
    layer = L.TransformerEncoderLayer(8, 2, 16, dropout=0.0, dtype=F64)
    p = layer.init(random.key(0))
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer\(d_model=8, .*\): expected src of shape "
                                         r"\(S, N, 8\) or \(S, 8\) unbatched, got \(3, 2, 7\)"):
        layer.apply(p, np.ones((3, 2, 7)))
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer\(d_model=8.*MultiheadAttention.*attn_mask"):
        layer.apply(p, np.ones((3, 2, 8)), attn_mask=np.ones((2, 2), bool))
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'src_mask'"):
        layer.apply(p, np.ones((3, 2, 8)), src_mask=None)
    dec = L.TransformerDecoderLayer(8, 2, 16, dropout=0.0, dtype=F64)
    with pytest.raises(ValueError, match=r"TransformerDecoderLayer\(.*\): expected tgt and memory with the same "
                                         r"batch size, got \(3, 2, 8\) and \(4, 3, 8\)"):
        dec.apply(dec.init(random.key(0)), (np.ones((3, 2, 8)), np.ones((4, 3, 8))))
    with pytest.raises(TypeError, match=r"TransformerDecoderLayer\(.*\): expected x = \(tgt, memory\), a tuple "
                                        r"of two arrays, got ndarray"):
        dec.apply(dec.init(random.key(0)), np.ones((3, 2, 8)))
    enc = L.TransformerEncoder(layer, 2)
    with pytest.raises(TypeError, match=r"TransformerEncoder\(.*\): expected params.layers to be a tuple of 2"):
        enc.apply(L.TransformerEncoderParams((p,)), np.ones((3, 2, 8)))

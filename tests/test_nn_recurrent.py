"""The recurrent facade classes: torch's constructors, forward(input, hx), repr, state dicts, gradients."""

from __future__ import annotations

import numpy as np
import pytest

from nptfunc import convert, nn, random
from nptfunc.testing import assert_close, to_torch
from nptfunc.tree import tree_flatten, tree_leaves, tree_unflatten

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

F64 = np.float64


def _x(shape, seed):
    return random.normal(random.key(seed), shape, dtype=F64)


CONFIGS = [
    ("LSTM", (3, 4), dict(num_layers=2, bidirectional=True, proj_size=2, batch_first=True, bias=False)),
    ("LSTM", (3, 4), dict(num_layers=2, dropout=0.1)),
    ("GRU", (3, 4), dict(num_layers=2, bidirectional=True)),
    ("RNN", (3, 4), dict(nonlinearity="relu", num_layers=2)),
    ("RNNCell", (3, 4), dict(nonlinearity="relu", bias=False)),
    ("LSTMCell", (3, 4), {}),
    ("GRUCell", (3, 4), dict(bias=False)),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), CONFIGS, ids=[c[0] + str(i) for i, c in enumerate(CONFIGS)])
def test_repr_and_state_dict_keys_match_torch(name, args, kwargs):
    ours, theirs = getattr(nn, name)(*args, **kwargs, key=0), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    assert (ours.input_size, ours.hidden_size) == (theirs.input_size, theirs.hidden_size)


def _hx(name, kwargs, n, batched=True):
    cell = name.endswith("Cell")
    d = 2 if kwargs.get("bidirectional") else 1
    lead = () if cell else (kwargs.get("num_layers", 1) * d,)
    b = (n,) if batched else ()
    h = _x((*lead, *b, kwargs.get("proj_size") or 4), 10)
    return (h, _x((*lead, *b, 4), 11)) if name.startswith("LSTM") else h


@pytest.mark.parametrize(("name", "args", "kwargs"), CONFIGS, ids=[c[0] + str(i) for i, c in enumerate(CONFIGS)])
@pytest.mark.parametrize("with_hx", [False, True])
def test_forward_backward_match_torch(name, args, kwargs, with_hx):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(*args, **kwargs).double().eval()  # eval: no dropout
    ours = getattr(nn, name)(*args, **kwargs, dtype=F64, key=0).eval()
    ours.load_state_dict(theirs.state_dict())
    cell = name.endswith("Cell")
    x = _x((2, 3) if cell else (2, 5, 3) if kwargs.get("batch_first") else (5, 2, 3), 1)
    hx = _hx(name, kwargs, 2) if with_hx else None
    xt = to_torch(x).requires_grad_(True)
    hxt = None if hx is None else (tuple(to_torch(h).requires_grad_(True) for h in hx) if isinstance(hx, tuple)
                                   else to_torch(hx).requires_grad_(True))
    y, yt = ours(x, hx), theirs(xt, hxt)
    leaves, treedef = tree_flatten(y)
    leaves_t = tree_leaves(yt)
    dys = [_x(a.shape, 20 + i) for i, a in enumerate(leaves)]
    for a, t in zip(leaves, leaves_t, strict=True):
        assert_close(a, t)
    torch.autograd.backward(leaves_t, [to_torch(d) for d in dys])
    dy = tree_unflatten(treedef, dys)
    dx = ours.backward(dy)
    assert_close(dx if hx is None else dx[0], xt.grad)
    if hx is not None:
        for d, t in zip(dx[1] if isinstance(hx, tuple) else (dx[1],),
                        hxt if isinstance(hxt, tuple) else (hxt,), strict=True):
            assert_close(d, t.grad)
    named = dict(theirs.named_parameters())
    for k, p in ours.named_parameters():
        assert_close(p.grad, named[k].grad, name=k)


def test_state_dict_goes_back_to_torch():
    ours = nn.LSTM(3, 4, num_layers=2, bidirectional=True, key=1)
    theirs = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    theirs.load_state_dict(convert.state_dict_to_torch(ours.state_dict()))
    for k, v in theirs.state_dict().items():
        assert np.array_equal(v.numpy(), ours.state_dict()[k])


def test_dropout_uses_the_module_key_in_training():
    a, b = nn.GRU(3, 4, num_layers=2, dropout=0.5, key=0), nn.GRU(3, 4, num_layers=2, dropout=0.5, key=0)
    x = _x((5, 2, 3), 1).astype(np.float32)
    y1, y2 = a(x)[0], b(x)[0]
    assert np.array_equal(y1, y2)  # the same key, the same masks
    assert not np.array_equal(a(x)[0], y1)  # the key advanced
    a.eval()
    assert np.array_equal(a(x)[0], a(x)[0])


def test_bad_device():
    with pytest.raises(ValueError, match=r"LSTM: nptfunc runs on the CPU"):
        nn.LSTM(3, 4, device="cuda")


def test_backward_through_the_output_only():
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(3, 4, num_layers=2).double()
    ours = nn.LSTM(3, 4, num_layers=2, dtype=F64, key=0)
    ours.load_state_dict(theirs.state_dict())
    x, dout = _x((5, 2, 3), 1), _x((5, 2, 4), 2)
    xt = to_torch(x).requires_grad_(True)
    ours(x)
    dx = ours.backward((dout, None))
    theirs(xt)[0].backward(to_torch(dout))
    assert_close(dx, xt.grad)
    assert_close(ours.weight_hh_l1.grad, theirs.weight_hh_l1.grad)


def test_an_lstm_in_a_torch_style_loss_backward_matches_torch():
    """The tape: both outputs of a two-layer LSTM feed one loss; every gradient as torch's (float64)."""
    import nptfunc.torch as ntorch

    torch.manual_seed(0)
    theirs = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    ours = nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=F64, key=0)
    ours.load_state_dict(theirs.state_dict())
    x = _x((5, 2, 3), 1)
    xt = to_torch(x).requires_grad_(True)
    xo = ntorch.tensor(x, requires_grad=True)
    out, (h, c) = ours(xo)
    (out.tanh().sum() + (h * c).sum()).backward()
    out_t, (h_t, c_t) = theirs(xt)
    (out_t.tanh().sum() + (h_t * c_t).sum()).backward()
    assert_close(xo.grad, xt.grad)
    named = dict(theirs.named_parameters())
    for k, p in ours.named_parameters():
        assert_close(p.grad, named[k].grad, name=k)

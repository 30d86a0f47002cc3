"""The facade classes of issue 13's layers (and the core's 1-d conv and pooling) against torch's modules."""

import numpy as np
import pytest

from nptfunc import nn, random
from nptfunc.testing import assert_close

torch = pytest.importorskip("torch")


def _x(shape, seed=0):
    return random.normal(random.key(seed), shape, dtype=np.float64)


# name, constructor (called with nn or torch.nn), input shape
FACADES = [
    ("SiLU", lambda m: m.SiLU(), (2, 3)),
    ("SiLU-inplace", lambda m: m.SiLU(inplace=True), (2, 3)),
    ("ELU", lambda m: m.ELU(2, True), (2, 3)),
    ("Softplus", lambda m: m.Softplus(2, 1), (2, 3)),
    ("Mish", lambda m: m.Mish(True), (2, 3)),
    ("Hardtanh", lambda m: m.Hardtanh(-2, 0.5), (2, 3)),
    ("Hardswish", lambda m: m.Hardswish(True), (2, 3)),
    ("Hardsigmoid", lambda m: m.Hardsigmoid(), (2, 3)),
    ("ReLU6", lambda m: m.ReLU6(True), (2, 3)),
    ("Softsign", lambda m: m.Softsign(), (2, 3)),
    ("PReLU", lambda m: m.PReLU(), (2, 3)),
    ("PReLU-channels", lambda m: m.PReLU(3, 0.1), (2, 3, 4)),
    ("Unflatten", lambda m: m.Unflatten(1, [2, 3]), (2, 6)),
    ("Conv1d", lambda m: m.Conv1d(2, 4, 3, stride=2, padding=1, groups=2, bias=False), (2, 2, 7)),
    ("Conv1d-same", lambda m: m.Conv1d(2, 3, 3, padding="same", dilation=2, padding_mode="circular"), (2, 2, 7)),
    ("ConvTranspose1d", lambda m: m.ConvTranspose1d(2, 4, 3, stride=2, output_padding=1, groups=2), (2, 2, 5)),
    ("ConvTranspose2d", lambda m: m.ConvTranspose2d(3, 2, (3, 2), stride=2, padding=1, dilation=2, bias=False),
     (2, 3, 4, 5)),
    ("MaxPool1d", lambda m: m.MaxPool1d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 8)),
    ("AvgPool1d", lambda m: m.AvgPool1d(3, 2, 1, count_include_pad=False), (2, 3, 8)),
    ("AdaptiveAvgPool1d", lambda m: m.AdaptiveAvgPool1d(3), (2, 3, 8)),
    ("Upsample-nearest", lambda m: m.Upsample(scale_factor=2), (2, 3, 4, 4)),
    ("Upsample-bilinear", lambda m: m.Upsample(size=(5, 7), mode="bilinear", align_corners=True), (2, 3, 3, 4)),
    ("Upsample-linear", lambda m: m.Upsample(scale_factor=(1.5,), mode="linear"), (2, 3, 4)),
]


@pytest.mark.parametrize(("name", "make", "shape"), FACADES, ids=[f[0] for f in FACADES])
def test_every_facade_class_matches_torch(name, make, shape):
    ours, theirs = make(nn).double(), make(torch.nn).double()
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = _x(shape, 1)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt.clone())  # not the leaf itself: torch refuses in-place ops (inplace=True) on it
    y = ours(x)
    assert_close(y, yt, name="y")
    dy = _x(y.shape, 2)
    yt.backward(torch.tensor(dy))
    assert_close(ours.backward(dy), xt.grad, name="dx")
    for (n, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert_close(p.grad, tp.grad, name=n)


def test_embedding_facade():
    ours = nn.Embedding(6, 3, padding_idx=-2, dtype=np.float64)
    theirs = torch.nn.Embedding(6, 3, padding_idx=-2).double()
    assert repr(ours) == repr(theirs) == "Embedding(6, 3, padding_idx=4)"
    assert ours.padding_idx == theirs.padding_idx == 4
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    assert not ours.weight.data[4].any()
    ours.load_state_dict(theirs.state_dict())
    x = np.array([[0, 4, 5], [5, 5, 1]])
    y, yt = ours(x), theirs(torch.tensor(x))
    assert_close(y, yt)
    dy = _x(y.shape)
    assert ours.backward(dy) is None
    yt.backward(torch.tensor(dy))
    assert_close(ours.weight.grad, theirs.weight.grad)


def test_embedding_facade_weight_and_freeze():
    w = np.arange(6.0).reshape(3, 2)
    emb = nn.Embedding(3, 2, _weight=w, _freeze=True)
    np.testing.assert_array_equal(emb.weight.data, w)
    assert emb.weight.data.dtype == np.float32 and not emb.weight.requires_grad
    assert nn.Embedding(3, 2, _weight=torch.ones(3, 2)).weight.requires_grad
    with pytest.raises(ValueError, match=r"Embedding: expected _weight of shape \(3, 2\), got \(2, 2\)"):
        nn.Embedding(3, 2, _weight=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"Embedding\(.*\): max_norm is not supported"):
        nn.Embedding(3, 2, max_norm=1.0)


def test_new_facades_draw_from_keys():
    a, b = nn.ConvTranspose2d(2, 3, 3, key=1), nn.ConvTranspose2d(2, 3, 3, key=1)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert a.weight.data.shape == (2, 3, 3, 3)
    assert not np.array_equal(a.weight.data, nn.ConvTranspose2d(2, 3, 3, key=2).weight.data)
    assert nn.PReLU(2, init=0.5).weight.data.tolist() == [0.5, 0.5]


def test_facade_errors_name_the_class():
    with pytest.raises(ValueError, match=r"ConvTranspose2d: nptfunc runs on the CPU"):
        nn.ConvTranspose2d(2, 2, 3, device="cuda")
    with pytest.raises(ValueError, match=r"MaxPool1d: return_indices=True is not supported"):
        nn.MaxPool1d(2, return_indices=True)
    with pytest.raises(ValueError, match=r"Upsample\(size=None\): expected exactly one of size and scale_factor"):
        nn.Upsample()

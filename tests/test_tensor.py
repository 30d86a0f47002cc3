"""The facade's tensor and tape: every gradient against torch's autograd."""

import numpy as np
import pytest

from nptfunc import nn
from nptfunc.nn._tape import no_grad
from nptfunc.nn._tensor import Tensor
from nptfunc.testing import assert_close

torch = pytest.importorskip("torch")

# Each expression is written once and run on nptfunc tensors and on torch tensors.
EXPRESSIONS = {
    "arith": (lambda a, b: (a * b + a / (b * b + 1) - 2 * a - b ** 2 + (-a) ** 3).sum(), (3, 4), (3, 4)),
    "broadcast": (lambda a, b: (a * b + b - a / 2).mean(), (3, 1), (1, 4)),
    "scalar_0d": (lambda a, b: (a * b).sum(), (), (2, 3)),
    "matmul": (lambda a, b: (a @ b).tanh().sum(), (2, 3, 4), (4, 5)),
    "matvec": (lambda a, b: (a @ b).sigmoid().sum(), (3, 4), (4,)),
    "pointwise": (lambda a, b: (a.exp() + (b * b + 1).log() + (b * b + 0.5).sqrt() + a.relu()
                                + b.abs() + a.clamp(-0.5, 0.5)).sum(), (2, 5), (2, 5)),
    "reductions": (lambda a, b: a.sum(dim=1).mean() + a.mean(dim=(0, 2), keepdim=True).sum()
                   + b.max() + b.min(dim=0).values.sum() + a.amax(dim=-1).sum(), (2, 3, 4), (3, 4)),
    "shapes": (lambda a, b: (a.view(6, 4).t() @ b.reshape(6, 2)).sum()
               + a.permute(2, 0, 1).flatten(1).sum(dim=0).mean()
               + a.transpose(0, 2).unsqueeze(1).squeeze(1).contiguous()[1].sum()
               + b.view(3, 1, 4).expand(3, 5, 4).sum(), (2, 3, 4), (3, 4)),
    "index": (lambda a, b: a[1:, ::2].sum() + (a[:, 1] * b[0, :3]).sum() + a[a > 0].sum()
              + a[[0, 0, 2]].sum(), (3, 4), (2, 4)),
    "softmax": (lambda a, b: (a.softmax(dim=1) * b).sum() + (a.log_softmax(-1) * b).sum(), (3, 4), (3, 4)),
    "masked": (lambda a, b: a.masked_fill(b > 0, 0.5).pow(2).sum() + a.maximum(b).sum(), (3, 4), (3, 4)),
    "reused": (lambda a, b: (a * a + a * b + a).sum() + (a.exp() * a).sum(), (4,), (4,)),
}


def _inputs(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(EXPRESSIONS))
def test_expressions_match_torch_forward_and_every_gradient(name, dtype):
    f, *shapes = EXPRESSIONS[name]
    arrays = _inputs(shapes, dtype)
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, yt = f(*ours), f(*theirs)
    assert y.dtype == dtype
    assert_close(y, yt.detach(), name="y")
    y.backward()
    yt.backward()
    for i, (t, tt) in enumerate(zip(ours, theirs, strict=True)):
        assert t.grad.dtype == dtype
        assert_close(t.grad, tt.grad, name=f"grad {i}")


def test_leaf_grads_accumulate_non_leaf_grads_are_not_kept():
    a = Tensor(np.arange(3.0), requires_grad=True)
    h = a * 2
    (h * h).sum().backward()
    (a.sum() * 3).backward()
    assert np.array_equal(a.grad, 8 * np.arange(3.0) + 3)
    assert h.grad is None and not h.is_leaf and a.is_leaf and h.grad_fn is not None
    assert repr(h.grad_fn) == "<mulBackward>"


def test_grads_own_their_memory_though_the_tape_hands_vjp_results_over_without_a_copy():
    """``.grad`` takes a vjp's fresh result as it is, but never the caller's array, a view of it,
    or an array another leaf has taken: each ``.grad`` can be changed in place on its own."""
    a, b = nn.Tensor(np.ones(3), requires_grad=True), nn.Tensor(np.full(3, 2.0), requires_grad=True)
    g = np.arange(3.0)
    a.backward(g)  # the caller's cotangent straight into a leaf
    assert not np.shares_memory(a.grad, g)
    c = nn.Tensor(np.ones((2, 3)), requires_grad=True)
    gv = np.arange(6.0)
    c.reshape(6).backward(gv)  # a view of it through reshape's vjp
    assert not np.shares_memory(c.grad, gv)
    (a + b).sum().backward()  # one cotangent for two leaves
    assert not np.shares_memory(a.grad, b.grad)
    fc = nn.Linear(3, 2, key=0)
    x = np.ones((4, 3))
    fc(x).sum().backward()
    w_grad, b_grad = fc.weight.grad.copy(), fc.bias.grad.copy()
    fc.weight.grad *= 0  # in place, as clip_grad_norm_ does
    assert_close(fc.bias.grad, b_grad)
    assert_close(np.ones((2, 3)) * 4, w_grad)  # sum over the batch of ones
    assert not np.shares_memory(fc.weight.grad, x)
    fc.zero_grad()
    fc(x).sum().backward()  # a fresh pass: fresh grads, nothing kept from the first
    assert_close(fc.weight.grad, w_grad)


def test_a_layers_fresh_dparams_become_grad_without_a_copy():
    """Params trees hold read-only views (param_field), so a layer's fresh dparams arrive as views of
    arrays nothing else holds: ``.grad`` is that array itself, writeable; a view of a bigger array
    (or of the caller's) is still copied."""
    import attrs
    from scale_layer import Scale, ScaleParams

    made = []

    @attrs.frozen
    class Recording(Scale):
        def _apply(self, params, x):
            y, vjp = super()._apply(params, x)

            def recording_vjp(dy):
                dparams, dx = vjp(dy)
                made.append(dparams.weight.base)  # the fresh array under the read-only view
                return dparams, dx

            return y, recording_vjp

    m = nn.FunctionalModule(Recording(3, dtype=np.float64))
    x = nn.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    m(x).sum().backward()
    assert m.weight.grad is made[0] and m.weight.grad.flags.writeable
    assert_close(m.weight.grad, np.array([3.0, 5.0, 7.0]))

    big = np.arange(6.0)

    @attrs.frozen
    class Sliced(Scale):
        def _apply(self, params, x):
            y, vjp = super()._apply(params, x)
            return y, lambda dy: (ScaleParams(big[:3]), vjp(dy)[1])  # a view of a part of an array

    s = nn.FunctionalModule(Sliced(3, dtype=np.float64))
    s(x).sum().backward()
    assert not np.shares_memory(s.weight.grad, big)


def test_every_layers_fresh_dparams_are_taken_without_a_copy(monkeypatch):
    """The ids of arrays already taken stay reserved for the whole pass: a dparams view freed after
    it was sent once lent its id to the next layer's, which was then copied for nothing."""
    from nptfunc.nn import _tensor

    flags = []
    accumulate = _tensor.Tensor.accumulate_grad

    def recording(self, g, *, fresh=False):
        flags.append((self.shape, fresh))
        return accumulate(self, g, fresh=fresh)

    monkeypatch.setattr(_tensor.Tensor, "accumulate_grad", recording)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256, key=0), nn.ReLU(), nn.Linear(256, 10, key=1))
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    for _ in range(3):
        model.zero_grad()
        model(x).sum().backward()
    assert len(flags) == 12 and all(fresh for _, fresh in flags), flags


def test_no_grad_records_nothing_as_context_and_decorator():
    a = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        y = a * 2
    assert not y.requires_grad and y.grad_fn is None

    @no_grad()
    def f(x):
        return x * 2

    assert f(a).grad_fn is None and (a * 2).grad_fn is not None


def test_in_place_changes_are_errors_not_wrong_gradients():
    w = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"add_: in-place operations on a tensor that requires grad"):
        w.add_(1)
    x = Tensor(np.arange(3.0))
    y = (w * x).sum()
    x.add_(1)  # x was saved for w's gradient
    with pytest.raises(RuntimeError, match=r"modified by an in-place operation.*version 0 -> 1"):
        y.backward()
    with no_grad():
        w.mul_(2)  # allowed where nothing is recorded (nn.init does this)
    assert np.array_equal(w.data, [2.0, 2.0, 2.0])


def test_unsupported_autograd_features_are_clear_errors():
    a = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(NotImplementedError, match="higher-order gradients"):
        (a * a).sum().backward(create_graph=True)
    with pytest.raises(RuntimeError, match="implied only for a tensor with one element"):
        (a * a).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).sum().backward()
    with pytest.raises(TypeError, match="numpy.sin has no gradient on the tape"):
        np.sin(a)
    assert isinstance(np.multiply(np.ones(2), a), Tensor)  # NumPy arithmetic stays on the tape
    with pytest.raises(ValueError, match="no GPU backend"):
        a.to("cuda")
    with pytest.raises(ValueError, match=r"Linear\.to: nptfunc runs on the CPU with NumPy \(there is no GPU"):
        nn.Linear(2, 2).to("cuda:0")
    y = (a * a).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert np.array_equal(a.grad, [4.0, 4.0])


def _block(lib_nn, **kw):
    """Residual sum, one activation instance called three times, a shared submodule."""

    class Block(lib_nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = lib_nn.Conv2d(2, 2, 3, padding=1, **kw)
            self.act = lib_nn.ReLU()
            self.fc = lib_nn.Linear(8, 8, **kw)

        def forward(self, x):
            h = self.act(self.conv(x)) + x
            h = self.act(self.conv(h))
            z = h.flatten(1)[:, :8]
            return self.act(self.fc(self.fc(z)) + z).sum(dim=1)

    return Block()


def test_modules_called_several_times_shared_and_residual_match_torch():
    ours, theirs = _block(nn, dtype=np.float64), _block(torch.nn).double()
    ours.load_state_dict(theirs.state_dict())
    x = _inputs([(3, 2, 4, 4)], np.float64)[0]
    y, yt = ours(x), theirs(torch.tensor(x))
    assert_close(y, yt.detach())
    g = _inputs([(3,)], np.float64, 1)[0]
    y.backward(g)
    yt.backward(torch.tensor(g))
    for (name, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert_close(p.grad, tp.grad, name=name)

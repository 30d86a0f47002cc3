"""Every loss against torch: value and input gradient, all reductions, float32 and float64."""

import numpy as np
import pytest
import torch

from nptfunc import losses, random
from nptfunc.testing import assert_close, assert_loss_matches_torch, to_torch

REDUCTIONS = ["mean", "sum", "none"]


def _x(shape, dtype, seed=0, scale=1.0):
    return random.normal(random.key(seed), shape, dtype=dtype) * np.asarray(scale, dtype)


def _targets(shape, n_classes, seed=1):
    return random.generator(random.key(seed)).integers(0, n_classes, size=shape)


def _kwargs_to_torch(kw):
    return {k: (to_torch(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}


CE_OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"weight": np.array([0.5, 2.0, 1.0, 3.0])},
    {"ignore_index": 2},
    {"ignore_index": 1, "weight": np.array([0.5, 2.0, 1.0, 3.0]), "label_smoothing": 0.25},
]


@pytest.mark.parametrize("opts", CE_OPTIONS, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("x_shape", "t_shape"), [((5, 4), (5,)), ((1, 4), (1,)), ((3, 4, 2, 3), (3, 2, 3)),
                                                  ((4,), ())])
def test_cross_entropy_class_indices(opts, reduction, x_shape, t_shape, dtype):
    opts = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    x = _x(x_shape, dtype, scale=3.0)
    t = np.asarray(_targets(t_shape, 4))
    ours = losses.CrossEntropyLoss(reduction=reduction, **opts)
    theirs = torch.nn.CrossEntropyLoss(reduction=reduction, **_kwargs_to_torch(opts))
    dloss = None if reduction != "none" else _x(t_shape, dtype, seed=7)
    value, dx = assert_loss_matches_torch(ours, theirs, x, t, dloss=dloss)
    assert value.dtype == dtype and dx.dtype == dtype


@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.2}, {"weight": np.array([1.0, 2.0, 0.5])}], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities(opts, reduction, dtype):
    opts = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    x = _x((4, 3, 2), dtype, scale=2.0)
    p = np.exp(_x((4, 3, 2), dtype, seed=3))
    p = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
    assert_loss_matches_torch(losses.CrossEntropyLoss(reduction=reduction, **opts),
                              torch.nn.CrossEntropyLoss(reduction=reduction, **_kwargs_to_torch(opts)), x, p,
                              dloss=None if reduction != "none" else _x((4, 2), dtype, seed=9))


def test_cross_entropy_extreme_logits_are_stable():
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]])
    t = np.array([1, 2])
    value, dx = assert_loss_matches_torch(losses.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), x, t)
    assert np.isfinite(value) and np.isfinite(dx).all()


def test_cross_entropy_all_ignored_gives_nan_as_torch():
    x = _x((2, 3), np.float64)
    t = np.array([-100, -100])
    value, _ = losses.CrossEntropyLoss().apply(x, t)
    tv = torch.nn.CrossEntropyLoss()(to_torch(x), to_torch(t))
    assert np.isnan(value) and torch.isnan(tv)


@pytest.mark.parametrize("opts", [{}, {"weight": np.array([0.5, 2.0, 1.0])}, {"ignore_index": 0}], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("x_shape", "t_shape"), [((5, 3), (5,)), ((2, 3, 4), (2, 4)), ((3,), ())])
def test_nll(opts, reduction, x_shape, t_shape, dtype):
    opts = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    x = _x(x_shape, dtype)
    t = np.asarray(_targets(t_shape, 3))
    assert_loss_matches_torch(losses.NLLLoss(reduction=reduction, **opts),
                              torch.nn.NLLLoss(reduction=reduction, **_kwargs_to_torch(opts)), x, t,
                              dloss=None if reduction != "none" else _x(t_shape, dtype, seed=4))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("ours", "theirs"), [(losses.MSELoss, torch.nn.MSELoss), (losses.L1Loss, torch.nn.L1Loss)])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
def test_regression_losses(ours, theirs, reduction, shape, dtype):
    x = _x(shape, dtype)
    t = _x(shape, dtype, seed=1)
    t.ravel()[0] = x.ravel()[0]  # L1's kink: torch's sign(0) = 0
    assert_loss_matches_torch(ours(reduction=reduction), theirs(reduction=reduction), x, t,
                              dloss=None if reduction != "none" else _x(shape, dtype, seed=2))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce(reduction, weighted, dtype):
    p = 1 / (1 + np.exp(-_x((4, 3), dtype, scale=3.0)))
    p[0, 0], p[0, 1] = 0.0, 1.0  # the clamps at log(0)
    t = (random.uniform(random.key(5), (4, 3)) > 0.5).astype(dtype)
    w = np.abs(_x((3,), dtype, seed=6)) if weighted else None
    assert_loss_matches_torch(losses.BCELoss(weight=w, reduction=reduction),
                              torch.nn.BCELoss(weight=None if w is None else to_torch(w), reduction=reduction),
                              p, t, dloss=None if reduction != "none" else _x((4, 3), dtype, seed=8))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", ["plain", "weight", "pos_weight", "both"])
def test_bce_with_logits(reduction, opts, dtype):
    x = _x((5, 3), dtype, scale=10.0)
    x[0] = [1000.0, -1000.0, 0.0]
    t = random.uniform(random.key(5), (5, 3)).astype(dtype)
    kw = {}
    if opts in ("weight", "both"):
        kw["weight"] = np.abs(_x((5, 1), dtype, seed=6))
    if opts in ("pos_weight", "both"):
        kw["pos_weight"] = np.abs(_x((3,), dtype, seed=7))
    value, dx = assert_loss_matches_torch(
        losses.BCEWithLogitsLoss(reduction=reduction, **kw),
        torch.nn.BCEWithLogitsLoss(reduction=reduction, **_kwargs_to_torch(kw)), x, t,
        dloss=None if reduction != "none" else _x((5, 3), dtype, seed=8))
    assert np.isfinite(value).all() and np.isfinite(dx).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1}, {"weight": np.array([1.0, 0.5, 2.0])}], ids=str)
@pytest.mark.parametrize("prob_target", [False, True])
def test_probabilities_cross_entropy(reduction, opts, prob_target, dtype):
    """The reference project's loss on probabilities, against its formula run through torch's autograd."""
    p = np.exp(_x((6, 3), dtype))
    p /= p.sum(axis=1, keepdims=True)
    t = np.asarray(_targets((6,), 3))
    onehot = np.eye(3, dtype=dtype)[t]
    if prob_target:
        onehot = np.exp(_x((6, 3), dtype, seed=11))
        onehot /= onehot.sum(axis=1, keepdims=True)
    opts = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    value, vjp = losses.ProbabilitiesCrossEntropyLoss(reduction=reduction, **opts).apply(
        p, onehot if prob_target else t)
    eps = opts.get("label_smoothing", 0.0)
    A = to_torch(onehot * (1 - eps) + eps / 3)
    if "weight" in opts:
        A = A * to_torch(opts["weight"])
    pt = to_torch(p).requires_grad_(True)
    per_sample = -(A * torch.log(pt)).sum(dim=1)
    tv = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    assert_close(value, tv)
    g = np.ones(np.shape(value), dtype=dtype)
    tv.backward(to_torch(g))
    assert_close(vjp(g), pt.grad)


@pytest.mark.parametrize(("loss", "args", "exc", "match"), [
    (losses.MSELoss(), (np.ones(3), np.ones(4)), ValueError, r"MSELoss: expected target of the input's shape \(3,\)"),
    (losses.CrossEntropyLoss(), (np.ones((2, 3)), np.array([0, 3])), ValueError,
     r"target class indices must be in \[0, 3\)"),
    (losses.CrossEntropyLoss(), (np.ones((2, 3)), np.array([0, 1, 2])), ValueError,
     r"expected class-index target of shape \(2,\)"),
    (losses.CrossEntropyLoss(), (np.ones((2, 3)), np.array([0.5, 1.0])), ValueError,
     r"CrossEntropyLoss: expected target of the input's shape \(2, 3\)"),
    (losses.NLLLoss(), (np.ones((2, 3)), np.array(["a", "b"])), TypeError, "expected integer class indices"),
    (losses.CrossEntropyLoss(weight=np.ones(2)), (np.ones((2, 3)), np.array([0, 1])), ValueError,
     r"expected weight of shape \(3,\)"),
    (losses.BCELoss(), (np.array([0.5, 1.5]), np.array([0.0, 1.0])), ValueError, r"input values in \[0, 1\]"),
    (losses.MSELoss(), ("abc", np.ones(3)), TypeError, "MSELoss: expected a numeric array"),
    (losses.CrossEntropyLoss(), (np.float64(1.0), np.array(0)), ValueError, "got a scalar"),
])
def test_loss_errors(loss, args, exc, match):
    with pytest.raises(exc, match=match):
        loss.apply(*args)


@pytest.mark.parametrize(("factory", "match"), [
    (lambda: losses.MSELoss(reduction="avg"), "MSELoss: expected reduction to be one of 'mean', 'sum', 'none'"),
    (lambda: losses.CrossEntropyLoss(label_smoothing=1.5), r"expected label_smoothing in \[0, 1\], got 1.5"),
])
def test_loss_hyperparameter_errors(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_loss_vjp_checks_dloss_shape():
    _, vjp = losses.MSELoss(reduction="none").apply(np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"MSELoss vjp: expected dloss of shape \(3,\)"):
        vjp(np.ones(4))


def test_losses_do_not_modify_inputs():
    x = _x((4, 3), np.float64)
    t = np.array([0, 2, 1, 1])
    x0, t0 = x.copy(), t.copy()
    _, vjp = losses.CrossEntropyLoss(label_smoothing=0.1).apply(x, t)
    g = np.array(1.0)
    vjp(g)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(t, t0)
    assert g == 1.0

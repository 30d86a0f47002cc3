"""Every loss against torch: value and input gradient, all reductions, float32 and float64."""

import attrs
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


@pytest.mark.parametrize("ignore_index", [-100, 0, 2, 99])
@pytest.mark.parametrize("target_dtype", [np.int64, np.int32, np.uint8])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_rows_path_matches_torch(ignore_index, target_dtype, reduction, dtype):
    # (N, C) logits and 1-D targets take a shorter path unless a target may be ignored: targets 1 and 3
    # with ignore_index 2 lie around it (the general path), with -100 or 99 outside (the short path)
    x = _x((6, 5), dtype, scale=3.0)
    t = np.array([1, 3, 3, 1, 0 if ignore_index == 0 else 3, 1], dtype=target_dtype)
    ours = losses.CrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)
    theirs = torch.nn.CrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)
    value, dx = assert_loss_matches_torch(ours, theirs, x, t.astype(np.int64), dloss=np.asarray(2.5, dtype))
    value2, vjp = ours.apply(x, t)  # the narrow target dtypes give the same numbers
    np.testing.assert_array_equal(value2, value)
    np.testing.assert_array_equal(vjp(np.asarray(2.5, dtype)), dx)
    assert value.dtype == dtype and dx.dtype == dtype


def test_cross_entropy_rows_path_checks_dloss_and_targets():
    x = _x((3, 4), np.float32)
    _, vjp = losses.CrossEntropyLoss().apply(x, np.array([0, 1, 3]))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss vjp: expected dloss of shape \(\)"):
        vjp(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"must be in \[0, 4\)"):
        losses.CrossEntropyLoss().apply(x, np.array([0, 4, 1]))


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


# ------------------------------------------------------------------ masked classes
NEG_INF = -np.inf


def _masked_logits(dtype):
    """Logits with -inf on classes other than the target (a common way to mask classes)."""
    x = _x((5, 4), dtype, scale=3.0)
    x[0, [1, 3]] = NEG_INF
    x[1, 0] = NEG_INF
    x[2, 2] = NEG_INF  # in a sample whose target is ignored below
    x[4, :3] = NEG_INF  # only the target is left
    return x, np.array([0, 2, 1, 1, 3])


MASKED_OPTIONS = [
    {},
    {"weight": np.array([0.5, 2.0, 1.0, 3.0])},
    {"ignore_index": 1},
    {"label_smoothing": 0.1},  # torch: an infinite loss, finite gradients
    {"label_smoothing": 0.2, "weight": np.array([0.5, 2.0, 1.0, 3.0]), "ignore_index": 1},
    {"label_smoothing": 0.1, "weight": np.array([1.0, 0.0, 1.0, 1.0])},  # torch: 0 * -inf, nan
]


@pytest.mark.parametrize("opts", MASKED_OPTIONS, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_with_masked_logits_matches_torch(opts, reduction, dtype):
    opts = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    x, t = _masked_logits(dtype)
    dloss = None if reduction != "none" else _x((5,), dtype, seed=7)
    value, dx = assert_loss_matches_torch(
        losses.CrossEntropyLoss(reduction=reduction, **opts),
        torch.nn.CrossEntropyLoss(reduction=reduction, **_kwargs_to_torch(opts)), x, t, dloss=dloss)
    assert np.isfinite(dx).all()
    if not opts.get("label_smoothing"):
        assert np.isfinite(value).all()


def test_cross_entropy_with_masked_logits_over_spatial_axes(dtype):
    x = _x((2, 4, 3), dtype, scale=2.0)
    t = np.array([[0, 1, 2], [3, 3, 1]])
    x[0, 3, :] = NEG_INF  # class 3 masked wherever it is not the target
    x[1, 0, 2] = NEG_INF
    value, dx = assert_loss_matches_torch(losses.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), x, t)
    assert np.isfinite(value) and np.isfinite(dx).all()


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy_probabilities_with_masked_logits_matches_torch(smoothing, dtype):
    """torch sums target * log p here, so a zero probability on a masked class gives nan (or inf with
    smoothing) in the loss but finite gradients; ours the same."""
    x, _ = _masked_logits(dtype)
    p = np.where(np.isfinite(x), np.exp(_x((5, 4), dtype, seed=3)), 0).astype(dtype)
    p /= p.sum(axis=1, keepdims=True)
    _, dx = assert_loss_matches_torch(losses.CrossEntropyLoss(label_smoothing=smoothing, reduction="none"),
                                      torch.nn.CrossEntropyLoss(label_smoothing=smoothing, reduction="none"),
                                      x, p)
    assert np.isfinite(dx).all()


def _reference_probabilities_ce(p, A, reduction):
    """The reference project's formula through torch's autograd, with log's argument kept off the
    classes that carry no target mass (where the formula has no term)."""
    pt = to_torch(p).requires_grad_(True)
    At = to_torch(A)
    per_sample = -(At * torch.log(torch.where(At != 0, pt, torch.ones_like(pt)))).sum(dim=1)
    tv = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    return pt, tv


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", [{}, {"weight": np.array([1.0, 0.5, 2.0, 1.5])}, {"label_smoothing": 0.1}],
                         ids=str)
def test_probabilities_cross_entropy_with_zero_probabilities(reduction, opts, dtype):
    x, t = _masked_logits(dtype)
    p = np.where(np.isfinite(x), np.exp(_x((5, 4), dtype, seed=3)), 0).astype(dtype)
    p /= p.sum(axis=1, keepdims=True)
    opts = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    value, vjp = losses.ProbabilitiesCrossEntropyLoss(reduction=reduction, **opts).apply(p, t)
    eps = opts.get("label_smoothing", 0.0)
    A = np.eye(4, dtype=dtype)[t] * (1 - eps) + eps / 4
    if "weight" in opts:
        A = A * opts["weight"]
    pt, tv = _reference_probabilities_ce(p, A, reduction)
    assert_close(value, tv)
    g = np.ones(np.shape(value), dtype=dtype)
    tv.backward(to_torch(g))
    assert_close(vjp(g), pt.grad)
    if not eps:  # without smoothing no term touches a zero probability: finite, and 0 where masked
        assert np.isfinite(value).all() and np.all(vjp(g)[p == 0] == 0)
        nll = torch.nn.functional.nll_loss(torch.log(to_torch(p)), to_torch(t), reduction=reduction,
                                           weight=None if "weight" not in opts else to_torch(opts["weight"]))
        if "weight" not in opts or reduction != "mean":  # the reference's mean is over samples
            assert_close(value, nll)


# ------------------------------------------------------------------ zero-size axes
_ZERO_SIZE_INDEX_CASES = [
    (shapes, reduction, smoothing)
    for shapes in [((0, 3), (0,)), ((0, 0), (0,)), ((2, 3, 0), (2, 0)), ((0, 3, 2), (0, 2))]
    for reduction in REDUCTIONS for smoothing in (0.0, 0.1)
    if not (shapes[0] == (0, 0) and smoothing and reduction == "sum")  # differs: see the test below
]


@pytest.mark.parametrize(("shapes", "reduction", "smoothing"), _ZERO_SIZE_INDEX_CASES, ids=str)
def test_cross_entropy_zero_size_class_indices(shapes, reduction, smoothing):
    x_shape, t_shape = shapes
    x = np.zeros(x_shape)
    t = np.zeros(t_shape, dtype=np.int64)
    assert_loss_matches_torch(losses.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing),
                              torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing), x, t)


def test_cross_entropy_summed_over_no_samples_and_no_classes_with_smoothing_is_zero():
    """The one zero-size case where we differ from torch, on purpose: torch's class-index path adds
    (0.1 / 0) * (a sum over no samples) = inf * 0 = nan; a sum over no samples is 0 here, as without
    smoothing (and as torch's own probability path gives)."""
    x, t = np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    value, vjp = losses.CrossEntropyLoss(reduction="sum", label_smoothing=0.1).apply(x, t)
    theirs = torch.nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.1)(to_torch(x), to_torch(t))
    assert value == 0.0 and torch.isnan(theirs) and vjp(np.array(1.0)).shape == (0, 0)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(0, 3), (2, 0), (0, 0), (0,), (2, 3, 0), (2, 0, 3)])
def test_cross_entropy_zero_size_probabilities(shape, reduction, smoothing):
    x = np.zeros(shape)
    assert_loss_matches_torch(losses.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing),
                              torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing), x,
                              np.zeros(shape))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("x_shape", "t_shape"), [((0, 3), (0,)), ((0, 0), (0,)), ((2, 3, 0), (2, 0))])
def test_nll_zero_size(x_shape, t_shape, reduction):
    assert_loss_matches_torch(losses.NLLLoss(reduction=reduction), torch.nn.NLLLoss(reduction=reduction),
                              np.zeros(x_shape), np.zeros(t_shape, dtype=np.int64))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(0, 3), (2, 0), (0, 0)])
def test_probabilities_cross_entropy_zero_size(shape, reduction):
    p = np.zeros(shape)
    value, vjp = losses.ProbabilitiesCrossEntropyLoss(reduction=reduction).apply(p, p)
    pt, tv = _reference_probabilities_ce(p, p, reduction)
    assert_close(value, tv)
    tv.backward(to_torch(np.ones(np.shape(value))))
    assert_close(vjp(np.ones(np.shape(value))), pt.grad)


@pytest.mark.parametrize("loss", [losses.CrossEntropyLoss(), losses.NLLLoss()], ids=lambda loss: loss.name)
def test_class_indices_into_an_empty_class_axis_are_out_of_range(loss):
    with pytest.raises(ValueError, match=r"target class indices must be in \[0, 0\)"):
        loss.apply(np.zeros((2, 0)), np.zeros(2, dtype=np.int64))  # torch: IndexError, out of bounds


# ------------------------------------------------------------------ constructor arguments
_BAD_WEIGHTS = [
    (np.array(["a"]), TypeError, r"expected {name} to be None or a .*numeric array.*, got an array of dtype <U1"),
    ("abc", TypeError, r"expected {name} to be None or a .*numeric array.*, got str 'abc'"),
    (np.array([True, False]), TypeError, r"expected {name} .*, got an array of dtype bool"),
    ([1.0, None], TypeError, r"expected {name} .*, got an array of dtype object"),
    (np.array([1 + 2j]), TypeError, r"expected {name} .*, got an array of dtype complex128"),
    ([[1.0], [1.0, 2.0]], TypeError, r"expected {name} to be None or a .*numeric array.*, got list"),
]
BAD_ARGUMENTS = {
    "reduction": [
        (None, TypeError, r"expected reduction to be one of 'mean', 'sum', 'none', got NoneType None"),
        ("avg", ValueError, r"expected reduction to be one of 'mean', 'sum', 'none', got 'avg'"),
        (1, TypeError, r"expected reduction to be one of .*, got int 1"),
        (True, TypeError, r"expected reduction to be one of .*, got bool True"),
    ],
    "ignore_index": [
        (1.5, TypeError, r"expected ignore_index to be an int, got float 1.5"),
        ("1", TypeError, r"expected ignore_index to be an int, got str '1'"),
        (None, TypeError, r"expected ignore_index to be an int, got NoneType None"),
        (True, TypeError, r"expected ignore_index to be an int, got bool True"),
        (np.float64(2.0), TypeError, r"expected ignore_index to be an int, got float64"),
    ],
    "label_smoothing": [
        ("0.1", TypeError, r"expected label_smoothing in \[0, 1\], got str '0.1'"),
        (None, TypeError, r"expected label_smoothing in \[0, 1\], got NoneType None"),
        (True, TypeError, r"expected label_smoothing in \[0, 1\], got bool True"),
        (1.5, ValueError, r"expected label_smoothing in \[0, 1\], got 1.5"),
        (-0.1, ValueError, r"expected label_smoothing in \[0, 1\], got -0.1"),
        (float("nan"), ValueError, r"expected label_smoothing in \[0, 1\], got nan"),
    ],
    "weight": _BAD_WEIGHTS,
    "pos_weight": _BAD_WEIGHTS,
}
LOSS_CLASSES = [losses.MSELoss, losses.L1Loss, losses.CrossEntropyLoss, losses.NLLLoss, losses.BCELoss,
                losses.BCEWithLogitsLoss, losses.ProbabilitiesCrossEntropyLoss]
_CASES = [(cls, f.name, *bad) for cls in LOSS_CLASSES for f in attrs.fields(cls)
          for bad in BAD_ARGUMENTS[f.name]]


@pytest.mark.parametrize(("cls", "name", "value", "error", "match"), _CASES,
                         ids=[f"{c[0].__name__}-{c[1]}-{c[2]!r}" for c in _CASES])
def test_every_loss_argument_is_checked(cls, name, value, error, match):
    """Every argument of every loss (the table must know each one) refuses bad values, naming both."""
    with pytest.raises(error, match=rf"^{cls.__name__}: " + match.replace("{name}", name)):
        cls(**{name: value})


def test_losses_accept_and_normalise_good_arguments():
    ce = losses.CrossEntropyLoss(weight=[1, 2, 3], ignore_index=np.int64(-1), label_smoothing=np.float32(0.5))
    assert type(ce.ignore_index) is int and type(ce.label_smoothing) is float and ce.label_smoothing == 0.5
    assert ce.weight.dtype.kind == "i" and not ce.weight.flags.writeable
    assert losses.CrossEntropyLoss(label_smoothing=1) == losses.CrossEntropyLoss(label_smoothing=1.0)
    assert losses.BCELoss(weight=2.0).weight.shape == ()  # a broadcastable weight may be 0-d


@pytest.mark.parametrize("cls", [losses.CrossEntropyLoss, losses.NLLLoss, losses.ProbabilitiesCrossEntropyLoss])
def test_class_weights_are_one_per_class(cls):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: expected weight to be None or a 1-D numeric array "
                                         r"\(one weight per class\), got shape \(2, 2\)"):
        cls(weight=np.ones((2, 2)))

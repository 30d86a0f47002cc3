"""nptfunc.ops against torch: forward, every input gradient, dtypes, edge values and errors.

One table (``CASES``) of ops with their torch equivalents drives the main test;
each case is run in float32 and float64, checks every cotangent's value, shape and
dtype (``None`` exactly for inputs without a gradient), and that neither the
inputs nor ``dy`` were modified.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nptfunc import ops
from nptfunc.testing import assert_close, numerical_vjp  # noqa: F401

torch = pytest.importorskip("torch")
F = torch.nn.functional
nan, inf = float("nan"), float("inf")


# ------------------------------------------------------------------ input makers
def rand(*shape: int) -> Callable:
    """A standard-normal float array of ``shape`` in the test's dtype."""
    return lambda rng, dt: rng.standard_normal(shape).astype(dt)


def pos(*shape: int) -> Callable:
    """Positive floats in [0.5, 2]."""
    return lambda rng, dt: rng.uniform(0.5, 2.0, shape).astype(dt)


def noncontig(*shape: int) -> Callable:
    """A float array of ``shape`` that is a transposed (non-contiguous) view."""
    return lambda rng, dt: rng.standard_normal(shape[::-1]).astype(dt).T


def fixed(values: Any) -> Callable:
    """Fixed float values (ties, zeros, NaN) in the test's dtype."""
    return lambda rng, dt: np.array(values, dtype=dt)


def const(value: Any) -> Callable:
    """A value used as is: a Python number, or an int or bool array."""
    return lambda rng, dt: value


def mask(*shape: int) -> Callable:
    return lambda rng, dt: np.random.default_rng(7).random(shape) < 0.5


@dataclasses.dataclass
class Case:
    id: str
    op: Callable
    ref: Callable
    inputs: list

    def __repr__(self) -> str:
        return self.id


def case(id: str, op: Callable, ref: Callable, *inputs: Callable) -> Any:
    return pytest.param(Case(id, op, ref, list(inputs)), id=id)


BROADCAST = [  # (id, a, b)
    ("same", rand(2, 3), rand(2, 3)),
    ("3x1_1x4", rand(3, 1), rand(1, 4)),
    ("0d_2x3", rand(), rand(2, 3)),
    ("2x3_0d", rand(2, 3), rand()),
    ("lead", rand(4), rand(2, 3, 4)),
    ("noncontig", noncontig(3, 4), rand(3, 4)),
    ("empty", rand(0, 3), rand(1, 3)),
    ("scalar_b", rand(2, 3), const(1.5)),
    ("scalar_a", const(-2.0), rand(2, 3)),
    ("int_scalar_b", rand(2, 3), const(3)),
]

BINARY = [
    ("add", ops.add, torch.add),
    ("sub", ops.sub, torch.sub),
    ("mul", ops.mul, torch.mul),
    ("div", ops.div, torch.div),
    ("maximum", ops.maximum, lambda a, b: torch.maximum(*_tensors(a, b))),
    ("minimum", ops.minimum, lambda a, b: torch.minimum(*_tensors(a, b))),
]


def _tensors(a: Any, b: Any) -> tuple:
    """torch.maximum takes tensors only: wrap a Python number as torch would wrap it."""
    like = a if torch.is_tensor(a) else b
    return tuple(v if torch.is_tensor(v) else torch.tensor(v, dtype=like.dtype) for v in (a, b))


def _binary_cases() -> list:
    out = []
    for name, op, ref in BINARY:
        for bid, a, b in BROADCAST:
            if name in ("div",) and bid == "scalar_a":
                out.append(case(f"{name}-{bid}", op, ref, a, pos(2, 3)))
            else:
                out.append(case(f"{name}-{bid}", op, ref, a, b))
    return out


def _values(result: Any) -> Any:
    """``((values, indices), vjp)`` of ``max_with_indices`` as ``(values, vjp)``."""
    (values, _), vjp = result
    return values, vjp


def _only(result: Any, *positions: int) -> Any:
    """An op's ``(y, vjp)`` with the vjp's cotangents restricted to ``positions``."""
    y, vjp = result
    return y, lambda dy: tuple(vjp(dy)[i] for i in positions)


def _idx(i: Any) -> Callable:
    return lambda x: x[i]


CASES = [
    *_binary_cases(),
    case("pow-tensor", ops.pow, torch.pow, pos(3, 1), rand(1, 4)),
    case("pow-scalar-exp", ops.pow, torch.pow, rand(2, 3), const(3)),
    case("pow-scalar-exp-frac", ops.pow, torch.pow, pos(2, 3), const(0.5)),
    case("pow-scalar-base", ops.pow, torch.pow, const(2.0), rand(2, 3)),
    case("pow-edges", ops.pow, torch.pow, fixed([0.0, 0.0, -2.0, -2.0, 0.0, 2.0, 0.0]),
      fixed([0.0, 2.0, 2.0, 0.5, -1.0, 0.0, 0.5])),
    case("pow-zero-base-scalar", ops.pow, torch.pow, const(0.0), fixed([0.0, 2.0, -1.0])),
    case("pow-neg-base-scalar", ops.pow, torch.pow, const(-2.0), fixed([0.0, 2.0, 0.5])),
    case("pow-exp-0", ops.pow, torch.pow, fixed([0.0, -2.0, 3.0]), const(0)),
    case("neg", ops.neg, torch.neg, rand(2, 3)),
    case("exp", ops.exp, torch.exp, rand(2, 3)),
    case("exp-0d", ops.exp, torch.exp, rand()),
    case("log", ops.log, torch.log, pos(2, 3)),
    case("log-edges", ops.log, torch.log, fixed([0.0, -1.0, inf])),
    case("sqrt", ops.sqrt, torch.sqrt, pos(4)),
    case("sqrt-0", ops.sqrt, torch.sqrt, fixed([0.0, 4.0])),
    case("tanh", ops.tanh, torch.tanh, noncontig(3, 4)),
    case("sigmoid", ops.sigmoid, torch.sigmoid, rand(2, 3)),
    case("sigmoid-far", ops.sigmoid, torch.sigmoid, fixed([-800.0, -100.0, 0.0, 100.0, 800.0])),
    case("relu", ops.relu, torch.relu, rand(3, 4)),
    case("relu-edges", ops.relu, torch.relu, fixed([0.0, -1.0, nan, 2.0, -0.0])),
    case("relu-big", ops.relu, torch.relu, rand(3, 700)),
    case("abs", ops.abs, torch.abs, rand(2, 3)),
    case("abs-edges", ops.abs, torch.abs, fixed([0.0, -1.0, nan, -0.0])),
    case("clamp-both", lambda x: ops.clamp(x, -0.5, 0.5), lambda x: torch.clamp(x, -0.5, 0.5), rand(3, 4)),
    case("clamp-bounds", lambda x: ops.clamp(x, -1.0, 1.0), lambda x: torch.clamp(x, -1.0, 1.0),
      fixed([-1.0, 1.0, 0.0, 2.0, -3.0, nan])),
    case("clamp-min", lambda x: ops.clamp(x, min=0.1), lambda x: torch.clamp(x, min=0.1), rand(5)),
    case("clamp-max", lambda x: ops.clamp(x, max=0.1), lambda x: torch.clamp(x, max=0.1), rand(5)),
    case("clamp-arrays", ops.clamp, torch.clamp, fixed([-2.0, -1.0, 0.0, 1.0, 2.0, nan]),
      fixed([-1.0, -1.0, -1.0, -1.0, -1.0, -1.0]), fixed([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])),
    case("clamp-arrays-bcast", ops.clamp, torch.clamp, rand(3, 4), rand(3, 1), pos(4)),
    case("clamp-min>max", ops.clamp, torch.clamp, fixed([-1.0, 1.0, 0.0, 2.0]), fixed([1.0, 1.0, 1.0, 1.0]),
      fixed([0.0, 0.0, 0.0, 0.0])),
    case("clamp-min-array", lambda x, lo: ops.clamp(x, lo), lambda x, lo: torch.clamp(x, lo), rand(3, 4), rand(4)),
    case("clamp-max-array", lambda x, hi: _only(ops.clamp(x, max=hi), 0, 2), lambda x, hi: torch.clamp(x, max=hi),
      rand(3, 4), rand(3, 1)),
    case("where", ops.where, torch.where, mask(3, 4), rand(3, 4), rand(3, 4)),
    case("where-bcast", ops.where, torch.where, mask(3, 1), rand(1, 4), rand(3, 4)),
    case("where-scalar", ops.where, torch.where, mask(2, 3), rand(2, 3), const(0.5)),
    case("maximum-ties", ops.maximum, torch.maximum, fixed([1.0, 2.0, nan, 1.0]), fixed([1.0, 1.0, 1.0, nan])),
    case("minimum-ties", ops.minimum, torch.minimum, fixed([1.0, 2.0, nan, 1.0]), fixed([1.0, 1.0, 1.0, nan])),
    case("masked_fill", lambda x, m: ops.masked_fill(x, m, -1.5), lambda x, m: x.masked_fill(m, -1.5),
      rand(3, 4), mask(3, 4)),
    case("masked_fill-bcast", lambda x, m: ops.masked_fill(x, m, -inf), lambda x, m: x.masked_fill(m, -inf),
      rand(3, 4), mask(1, 4)),
    case("masked_fill-0d-value", ops.masked_fill, torch.masked_fill, rand(3, 4), mask(3, 4), rand()),
    # matmul, with NumPy's and torch's 1-d rules
    case("matmul-2d", ops.matmul, torch.matmul, rand(3, 4), rand(4, 5)),
    case("matmul-batched", ops.matmul, torch.matmul, rand(2, 3, 4), rand(2, 4, 5)),
    case("matmul-batch-bcast", ops.matmul, torch.matmul, rand(2, 1, 3, 4), rand(3, 4, 2)),
    case("matmul-batched-a", ops.matmul, torch.matmul, rand(2, 3, 4), rand(4, 5)),
    case("matmul-batched-b", ops.matmul, torch.matmul, rand(3, 4), rand(2, 4, 5)),
    case("matmul-1d-1d", ops.matmul, torch.matmul, rand(4), rand(4)),
    case("matmul-1d-2d", ops.matmul, torch.matmul, rand(4), rand(4, 5)),
    case("matmul-2d-1d", ops.matmul, torch.matmul, rand(3, 4), rand(4)),
    case("matmul-1d-3d", ops.matmul, torch.matmul, rand(4), rand(2, 4, 5)),
    case("matmul-3d-1d", ops.matmul, torch.matmul, rand(2, 3, 4), rand(4)),
    case("matmul-noncontig", ops.matmul, torch.matmul, noncontig(3, 4), noncontig(4, 2)),
    case("matmul-empty", ops.matmul, torch.matmul, rand(0, 4), rand(4, 2)),
    # reductions
    case("sum-all", ops.sum, torch.sum, rand(2, 3)),
    case("sum-axis", lambda x: ops.sum(x, 1), lambda x: torch.sum(x, 1), rand(2, 3, 4)),
    case("sum-neg-axis-keep", lambda x: ops.sum(x, -1, keepdims=True), lambda x: torch.sum(x, -1, keepdim=True),
      rand(2, 3)),
    case("sum-tuple", lambda x: ops.sum(x, (0, 2)), lambda x: torch.sum(x, (0, 2)), noncontig(2, 3, 4)),
    case("sum-empty-tuple", lambda x: ops.sum(x, ()), lambda x: torch.sum(x, ()), rand(2, 3)),
    case("sum-0d", lambda x: ops.sum(x, 0), lambda x: torch.sum(x, 0), rand()),
    case("sum-empty-axis", lambda x: ops.sum(x, 0), lambda x: torch.sum(x, 0), rand(0, 3)),
    case("mean-all", ops.mean, torch.mean, rand(2, 3)),
    case("mean-axis-keep", lambda x: ops.mean(x, (0, -1), keepdims=True),
      lambda x: torch.mean(x, (0, -1), keepdim=True), rand(2, 3, 4)),
    case("mean-empty-axis", lambda x: ops.mean(x, 0), lambda x: torch.mean(x, 0), rand(0, 3)),
    case("var", lambda x: ops.var(x, 1), lambda x: torch.var(x, 1), rand(3, 5)),
    case("var-correction0-keep", lambda x: ops.var(x, (0, 1), correction=0, keepdims=True),
      lambda x: torch.var(x, (0, 1), correction=0, keepdim=True), rand(2, 3, 4)),
    case("var-all", ops.var, torch.var, rand(4, 3)),
    case("std", lambda x: ops.std(x, -1), lambda x: torch.std(x, -1), rand(3, 5)),
    case("std-correction0-all", lambda x: ops.std(x, correction=0), lambda x: torch.std(x, correction=0),
      rand(3, 5)),
    case("max-all", ops.max, torch.amax, rand(3, 4)),
    case("max-axis", lambda x: ops.max(x, 1), lambda x: torch.amax(x, 1), rand(3, 4)),
    case("max-ties", lambda x: ops.max(x, 1), lambda x: torch.amax(x, 1), fixed([[1.0, 3, 3], [2, 2, 1]])),
    case("max-ties-all-keep", lambda x: ops.max(x, keepdims=True), lambda x: torch.amax(x, (0, 1), keepdim=True),
      fixed([[1.0, 3, 3], [3, 2, 1]])),
    case("max-nan", lambda x: ops.max(x, -1), lambda x: torch.amax(x, -1), fixed([[1.0, nan, 3], [1, 2, 3]])),
    case("min-tuple", lambda x: ops.min(x, (0, 2)), lambda x: torch.amin(x, (0, 2)), rand(2, 3, 4)),
    case("min-ties", lambda x: ops.min(x, 0), lambda x: torch.amin(x, 0), fixed([[1.0, 3], [1, 2], [1, 5]])),
    case("max_with_indices", lambda x: _values(ops.max_with_indices(x, 1)), lambda x: torch.max(x, 1).values,
      fixed([[1.0, 3, 3], [2, 2, 1]])),
    case("max_with_indices-keep-neg", lambda x: _values(ops.max_with_indices(x, -2, keepdims=True)),
      lambda x: torch.max(x, -2, keepdim=True).values, rand(2, 3, 4)),
    case("min_with_indices", lambda x: _values(ops.min_with_indices(x, 0)), lambda x: torch.min(x, 0).values,
      fixed([[1.0, 3], [1, 2], [0, 5]])),
    # softmax
    case("softmax", lambda x: ops.softmax(x, 1), lambda x: torch.softmax(x, 1), rand(2, 3, 4)),
    case("softmax-neg", lambda x: ops.softmax(x, -1), lambda x: torch.softmax(x, -1), noncontig(3, 5)),
    case("softmax-0d", lambda x: ops.softmax(x, 0), lambda x: torch.softmax(x, 0), rand()),
    case("softmax-large", lambda x: ops.softmax(x, -1), lambda x: torch.softmax(x, -1),
      fixed([[1000.0, 0.0, -1000.0]])),
    case("log_softmax", lambda x: ops.log_softmax(x, 0), lambda x: torch.log_softmax(x, 0), rand(3, 4)),
    case("log_softmax-0d", lambda x: ops.log_softmax(x, -1), lambda x: torch.log_softmax(x, -1), rand()),
    case("log_softmax-large", lambda x: ops.log_softmax(x, -1), lambda x: torch.log_softmax(x, -1),
      fixed([[1000.0, 0.0, -1000.0]])),
    # shapes
    case("reshape", lambda x: ops.reshape(x, (4, -1)), lambda x: torch.reshape(x, (4, -1)), rand(2, 3, 2)),
    case("reshape-noncontig", lambda x: ops.reshape(x, (-1,)), lambda x: torch.reshape(x, (-1,)),
      noncontig(3, 4)),
    case("reshape-0d", lambda x: ops.reshape(x, (1, 1)), lambda x: torch.reshape(x, (1, 1)), rand()),
    case("permute", lambda x: ops.permute(x, (2, 0, 1)), lambda x: x.permute(2, 0, 1), rand(2, 3, 4)),
    case("permute-neg", lambda x: ops.permute(x, (-1, 0)), lambda x: x.permute(-1, 0), rand(2, 3)),
    case("transpose", lambda x: ops.transpose(x, 0, -1), lambda x: torch.transpose(x, 0, -1), rand(2, 3, 4)),
    case("squeeze-all", ops.squeeze, torch.squeeze, rand(1, 3, 1)),
    case("squeeze-axis", lambda x: ops.squeeze(x, -1), lambda x: torch.squeeze(x, -1), rand(1, 3, 1)),
    case("squeeze-not-1", lambda x: ops.squeeze(x, 1), lambda x: torch.squeeze(x, 1), rand(1, 3, 1)),
    case("squeeze-tuple", lambda x: ops.squeeze(x, (0, 2)), lambda x: torch.squeeze(x, (0, 2)), rand(1, 3, 1)),
    case("unsqueeze", lambda x: ops.unsqueeze(x, -1), lambda x: torch.unsqueeze(x, -1), rand(2, 3)),
    case("unsqueeze-0", lambda x: ops.unsqueeze(x, 0), lambda x: torch.unsqueeze(x, 0), rand()),
    case("expand", lambda x: ops.expand(x, 2, -1, 4), lambda x: x.expand(2, -1, 4), rand(3, 1)),
    case("expand-tuple", lambda x: ops.expand(x, (3, 4)), lambda x: x.expand((3, 4)), rand()),
    case("broadcast_to", lambda x: ops.broadcast_to(x, (2, 3, 4)), lambda x: torch.broadcast_to(x, (2, 3, 4)),
      rand(1, 4)),
    case("astype-f64", lambda x: ops.astype(x, np.float64), lambda x: x.to(torch.float64), rand(2, 3)),
    case("astype-f32", lambda x: ops.astype(x, np.float32), lambda x: x.to(torch.float32), rand(2, 3)),
    # indexing
    case("getitem-basic", lambda x: ops.getitem(x, (slice(1, None), None, Ellipsis, 0)),
      _idx((slice(1, None), None, Ellipsis, 0)), rand(3, 4, 2)),
    case("getitem-step", lambda x: ops.getitem(x, (slice(None, None, 2), -1)), _idx((slice(None, None, 2), -1)),
      rand(5, 3)),
    case("getitem-int", lambda x: ops.getitem(x, 1), _idx(1), rand(3, 4)),
    case("getitem-repeated", lambda x: ops.getitem(x, np.array([0, 2, 0, 0, -1])),
      _idx(torch.tensor([0, 2, 0, 0, -1])), rand(4, 3)),
    case("getitem-list", lambda x: ops.getitem(x, [1, 1, 0]), _idx([1, 1, 0]), rand(3, 2)),
    case("getitem-2d-indices", lambda x: ops.getitem(x, np.array([[0, 1], [1, 1]])),
      _idx(torch.tensor([[0, 1], [1, 1]])), rand(3, 2)),
    case("getitem-two-arrays", lambda x: ops.getitem(x, (np.array([0, 0, 2]), slice(None), np.array([1, 1, 0]))),
      _idx((torch.tensor([0, 0, 2]), slice(None), torch.tensor([1, 1, 0]))), rand(3, 4, 2)),
    case("getitem-slice-then-array", lambda x: ops.getitem(x, (slice(None), np.array([2, 2, 0]))),
      _idx((slice(None), torch.tensor([2, 2, 0]))), noncontig(2, 3)),
    case("getitem-bool", lambda x: ops.getitem(x, np.array([True, False, True])),
      _idx(torch.tensor([True, False, True])), rand(3, 4)),
    case("getitem-bool-2d", lambda x: ops.getitem(x, np.arange(12).reshape(3, 4) % 3 == 0),
      _idx(torch.arange(12).reshape(3, 4) % 3 == 0), rand(3, 4)),
    case("getitem-empty", lambda x: ops.getitem(x, np.array([], dtype=np.int64)),
      _idx(torch.tensor([], dtype=torch.int64)), rand(3, 4)),
    # joining
    case("concatenate", lambda a, b, c: ops.concatenate(a, b, c, axis=1), lambda a, b, c: torch.cat([a, b, c], 1),
      rand(2, 3), rand(2, 0), rand(2, 1)),
    case("concatenate-neg", lambda a, b: ops.concatenate(a, b, axis=-1), lambda a, b: torch.cat([a, b], -1),
      noncontig(2, 3), rand(2, 2)),
    case("stack", lambda a, b: ops.stack(a, b, axis=1), lambda a, b: torch.stack([a, b], 1), rand(2, 3), rand(2, 3)),
    case("stack-last", lambda a, b: ops.stack(a, b, axis=-1), lambda a, b: torch.stack([a, b], -1), rand(3),
      noncontig(3)),
    case("stack-0d", lambda a, b: ops.stack(a, b), lambda a, b: torch.stack([a, b]), rand(), rand()),
]

PAD_CASES = [
    ((2, 5), (1, 2), "constant"),
    ((2, 3, 4), (1, 0, 2, 1), "constant"),
    ((2, 3, 4), (-1, 2, 0, -1), "constant"),
    ((3,), (2, 2), "constant"),
    ((2, 3, 4), (1, 1, 1, 1, 1, 1), "constant"),
    ((2, 5), (2, 3), "reflect"),
    ((1, 2, 4, 5), (3, 1, 2, 3), "reflect"),
    ((1, 1, 3, 4, 3), (1, 2, 2, 1, 2, 1), "reflect"),
    ((2, 3), (2, 4), "replicate"),
    ((2, 2, 3, 4), (3, 1, 0, 2), "replicate"),
    ((2, 4), (4, 3), "circular"),
    ((1, 2, 3, 4), (1, 2, 3, 0), "circular"),
    ((1, 2, 5), (-1, 2), "reflect"),
    ((1, 2, 5), (2, -2), "replicate"),
    ((1, 2, 5), (-2, 3), "circular"),
]
for shape, p, mode in PAD_CASES:
    value = 0.5 if mode == "constant" else 0.0
    CASES.append(case(f"pad-{mode}-{len(shape)}d-{p}",
                   lambda x, p=p, mode=mode, value=value: ops.pad(x, p, mode, value),
                   lambda x, p=p, mode=mode, value=value: F.pad(x, p, mode=mode,
                                                                value=value if mode == "constant" else None),
                   noncontig(*shape)))


# ------------------------------------------------------------------------ runner
def _to_torch(v: Any, dt: Any) -> Any:
    if isinstance(v, np.ndarray):
        t = torch.tensor(np.array(v))
        return t.requires_grad_(True) if v.dtype.kind == "f" else t
    return v


def _copy(v: Any) -> Any:
    return v.copy() if isinstance(v, np.ndarray) else v


def run_case(case: Case, dt: Any, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    inputs = [make(rng, dt) for make in case.inputs]
    before = [_copy(v) for v in inputs]
    y, vjp = case.op(*inputs)
    t_inputs = [_to_torch(v, dt) for v in inputs]
    yt = case.ref(*t_inputs)
    assert_close(y, yt, name="y")
    assert y.dtype == yt.detach().numpy().dtype, (y.dtype, yt.dtype)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(y.dtype)
    dy_before = dy.copy()
    grads = vjp(dy)
    assert isinstance(grads, tuple) and len(grads) >= len(inputs)
    assert all(g is None for g in grads[len(inputs):])  # bounds or values the case fixed as numbers
    grads = grads[:len(inputs)]
    if yt.requires_grad:
        yt.backward(torch.tensor(dy))
    for i, (v, g, t) in enumerate(zip(inputs, grads, t_inputs, strict=True)):
        if not (isinstance(v, np.ndarray) and v.dtype.kind == "f"):
            assert g is None, f"input {i}: expected no cotangent, got {type(g)}"
            continue
        assert g.shape == v.shape and g.dtype == v.dtype, (i, g.shape, v.shape, g.dtype, v.dtype)
        expected = t.grad if t.grad is not None else torch.zeros_like(t)
        assert_close(g, expected, name=f"d{i}")
    for v, b in zip(inputs, before, strict=True):  # nothing the caller passed in is modified
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, b)
    np.testing.assert_array_equal(dy, dy_before)
    again = vjp(dy)[:len(inputs)]  # a vjp called twice gives the same result
    for g, h in zip(grads, again, strict=True):
        assert (g is None) == (h is None)
        if g is not None:
            np.testing.assert_array_equal(g, h)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's var/std on one element warns
@pytest.mark.parametrize("case", CASES)
def test_op_matches_torch(case: Case, dtype: Any) -> None:
    run_case(case, dtype)

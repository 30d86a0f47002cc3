"""nptfunc.ops against torch: forward, every input gradient, dtypes, edge values and errors.

One table (``CASES``) of ops with their torch equivalents drives the main test;
each case is run in float32 and float64, checks every cotangent's value, shape and
dtype (``None`` exactly for inputs without a gradient), and that neither the
inputs nor ``dy`` were modified.
"""

from __future__ import annotations

import dataclasses
import gc
import re
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nptfunc import ops
from nptfunc.testing import assert_close, numerical_vjp

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


SAME_RULE = ("sub", "maximum", "minimum")


def _binary_cases() -> list:
    out = []
    for name, op, ref in BINARY:
        for bid, a, b in BROADCAST:
            if name in SAME_RULE and bid not in ("3x1_1x4", "0d_2x3", "scalar_a", "noncontig"):
                continue  # the broadcasting plumbing is shared: all shapes for add, mul, div only
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
    case("var-one-element", lambda x: ops.var(x, 1), lambda x: torch.var(x, 1), rand(2, 1)),
    case("var-correction2", lambda x: ops.var(x, 1, correction=2), lambda x: torch.var(x, 1, correction=2),
         fixed([[1.0, 2.0], [3.0, 3.0]])),
    case("std-constant", lambda x: ops.std(x, -1), lambda x: torch.std(x, -1), fixed([[1.0, 1.0, 1.0], [1, 2, 4]])),
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
    case("squeeze-empty-tuple", lambda x: ops.squeeze(x, ()), lambda x: torch.squeeze(x, ()), rand(1, 3, 1)),
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
    case("getitem-pairs", lambda x: ops.getitem(x, (np.arange(4) % 2, np.array([2, 0, 2, -1]))),
         _idx((torch.arange(4) % 2, torch.tensor([2, 0, 2, -1]))), rand(2, 3)),
    case("getitem-pairs-rows", lambda x: ops.getitem(x, ([[0], [1]], np.array([1, 1, 0]), slice(None))),
         _idx((torch.tensor([[0], [1]]), torch.tensor([1, 1, 0]), slice(None))), rand(2, 3, 2)),
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
    ((1, 2, 5), (-4, 2), "reflect"),  # torch maps output j to input j - left, reflected: no crop-then-pad
    ((1, 3, 4, 5), (-2, 3, 1, -4), "reflect"),
    ((1, 1, 3), (-4, 2), "replicate"),
    ((2, 3, 2), (2, 2), "circular"),
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
    assert type(y) is np.ndarray  # never a NumPy scalar: a 0-d result is an array input of the next op
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
        assert type(g) is np.ndarray and g.shape == v.shape and g.dtype == v.dtype, (i, type(g), g.shape, v.dtype)
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


# ------------------------------------------------------------------ other outputs
@pytest.mark.parametrize("fn", ["max", "min"])
@pytest.mark.parametrize("axis,keepdims", [(1, False), (-1, True), (0, False)])
def test_with_indices_match_torch(fn, axis, keepdims):
    x = np.array([[1.0, 3, 3, nan], [2, 2, 1, 0], [5, -1, 5, 0]])
    (values, indices), vjp = getattr(ops, f"{fn}_with_indices")(x, axis, keepdims=keepdims)
    ref = getattr(torch, fn)(torch.tensor(x), axis, keepdim=keepdims)
    assert_close(values, ref.values)
    np.testing.assert_array_equal(indices, ref.indices.numpy())
    assert indices.dtype == np.int64


def test_with_indices_0d():
    (v, i), vjp = ops.max_with_indices(np.float64(2.5), 0)
    assert v.shape == () and i.shape == () and v == 2.5 and i == 0
    assert vjp(np.float64(3.0))[0] == 3.0


@pytest.mark.parametrize("sections,axis", [(2, 0), (3, -1), ([1, 0, 3], -1), (4, 1), ([2, 1], 0)])
def test_split_matches_torch(sections, axis, dtype):
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(dtype)
    parts, vjp = ops.split(x, sections, axis)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.split(xt, sections, axis)
    assert len(parts) == len(ref)
    for p, r in zip(parts, ref, strict=True):
        assert_close(p, r)
    dys = [np.full(p.shape, i + 1.0, dtype=dtype) if i != 1 else None for i, p in enumerate(parts)]
    (dx,) = vjp(tuple(dys))
    torch.autograd.backward([r for r, d in zip(ref, dys, strict=True) if d is not None],
                            [torch.tensor(d) for d in dys if d is not None])
    assert dx.dtype == dtype
    assert_close(dx, xt.grad)


@pytest.mark.parametrize("num_classes", [-1, 5])
def test_one_hot_matches_torch(num_classes):
    idx = np.array([[0, 3], [1, 1]])
    y = ops.one_hot(idx, num_classes)
    ref = F.one_hot(torch.tensor(idx), num_classes).numpy()
    assert y.dtype == ref.dtype == np.int64
    np.testing.assert_array_equal(y, ref)


# ------------------------------------------------------------------------ dtypes
PROMOTION = [
    (np.ones(3, np.float32), 2.5),
    (np.ones(3, np.float32), np.ones(3, np.float64)),
    (np.ones(3, np.float32), np.float64(2.0)),  # a NumPy scalar counts as a Python number
    (np.ones(3, np.float32), np.array(2.0)),
    (np.ones(3, np.int32), 2.5),
    (np.ones(3, np.int64), np.ones(3, np.float32)),
    (np.ones(3, np.int32), np.array(2.0)),
    (np.ones(3, np.int32), np.array(2)),
    (np.ones(3, np.bool_), 2),
    (np.ones(3, np.bool_), np.ones(3, np.bool_)),
    (np.ones(3, np.uint8), np.ones(3, np.int8)),
    (np.ones(3, np.int32), 3),
    (np.ones((), np.float32), np.ones(2, np.float16)),
]


@pytest.mark.parametrize("name,a,b", [
    (name, a, b) for name in ("add", "mul", "sub", "div", "maximum") for a, b in PROMOTION
    if not (name == "sub" and a.dtype == bool)  # torch refuses bool subtraction (tested below)
    and not (name == "maximum" and not isinstance(b, np.ndarray))  # torch.maximum takes tensors only
])
def test_result_dtype_as_torch(name, a, b):
    y, vjp = getattr(ops, name)(a, b)
    ta = torch.tensor(a)
    tb = torch.tensor(b) if isinstance(b, np.ndarray) else b.item() if isinstance(b, np.generic) else b
    yt = getattr(torch, name)(ta, tb)
    assert y.dtype == yt.numpy().dtype, (y.dtype, yt.dtype)
    assert_close(y, yt)
    grads = vjp(np.ones(y.shape, y.dtype))
    for v, g in zip((a, b), grads, strict=True):
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            assert g.dtype == v.dtype and g.shape == v.shape
        else:
            assert g is None


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid"])
def test_integer_input_computes_in_float32(name):
    x = np.array([1, 2, 3], np.int64)
    y, vjp = getattr(ops, name)(x)
    yt = getattr(torch, name)(torch.tensor(x))
    assert y.dtype == np.float32 == yt.numpy().dtype
    assert_close(y, yt)
    assert vjp(np.ones(3, np.float32)) == (None,)


def test_integer_division_is_true_division_in_float32():
    y, _ = ops.div(np.array([1, 2, 3]), 2)
    yt = torch.div(torch.tensor([1, 2, 3]), 2)
    assert y.dtype == np.float32 == yt.numpy().dtype
    assert_close(y, yt)


def test_integer_sum_is_int64_without_gradient():
    y, vjp = ops.sum(np.array([[1, 2], [3, 4]], np.int32), 0)
    assert y.dtype == np.int64 and vjp(np.ones(2, np.int64)) == (None,)


def test_dy_is_cast_to_output_dtype():
    x = np.ones((2, 2), np.float32)
    for y, vjp in (ops.exp(x), ops.sum(x, 0), ops.getitem(x, [0, 0]), ops.reshape(x, (4,))):
        (dx,) = vjp(np.ones(y.shape, np.float64))
        assert dx.dtype == np.float32


def test_python_number_dy_for_0d_output():
    y, vjp = ops.sum(np.arange(3.0))
    (dx,) = vjp(1.0)
    np.testing.assert_array_equal(dx, np.ones(3))


def test_add_may_alias_dy():
    y, vjp = ops.add(np.ones(3), np.ones(3))
    dy = np.ones(3)
    da, db = vjp(dy)
    assert da is dy and db is dy  # documented: cotangents may alias dy


# --------------------------------------------------------------- finite differences
FD = [
    ("div", lambda a, b: ops.div(a, b), [(3, 1), (1, 4)]),
    ("pow", lambda a, b: ops.pow(a, b), [(2, 3), (2, 3)]),
    ("matmul", lambda a, b: ops.matmul(a, b), [(2, 3, 4), (4,)]),
    ("std", lambda a: ops.std(a, (0, 2)), [(2, 3, 4)]),
    ("log_softmax", lambda a: ops.log_softmax(a, 1), [(2, 5)]),
    ("pad-reflect", lambda a: ops.pad(a, (2, 1, 1, 2), "reflect"), [(1, 3, 4)]),
    ("getitem", lambda a: ops.getitem(a, (np.array([0, 1, 0]), np.array([2, 2, 2]))), [(2, 3)]),
]


@pytest.mark.parametrize("name,f,shapes", FD, ids=[c[0] for c in FD])
def test_vjp_finite_differences(name, f, shapes):
    rng = np.random.default_rng(3)
    xs = [rng.uniform(0.5, 1.5, s) for s in shapes]
    y, vjp = f(*xs)
    dy = rng.standard_normal(y.shape)
    grads = vjp(dy)
    for i in range(len(xs)):
        def fi(v, i=i):
            args = [*xs]
            args[i] = v
            return f(*args)[0]

        assert_close(grads[i], numerical_vjp(fi, xs[i], dy), rtol=1e-6, atol=1e-8, name=f"d{i}")


# ------------------------------------------------------------------------ errors
ERRORS = [
    (lambda: ops.add(np.ones((2, 3)), np.ones((4,))), ValueError,
     r"ops\.add: shapes \(2, 3\), \(4,\) do not broadcast together"),
    (lambda: ops.where(np.ones((2, 1), bool), np.ones(3), np.ones(4)), ValueError,
     r"ops\.where: shapes \(2, 1\), \(3,\), \(4,\) do not broadcast together"),
    (lambda: ops.pow(np.arange(3), -1), ValueError, r"ops\.pow: Integers to negative integer powers are not allowed"),
    (lambda: ops.mul(np.ones(2), "a"), TypeError, r"ops\.mul: expected b to be an array or a Python number"),
    (lambda: ops.exp(np.array(["a"])), TypeError, r"ops\.exp: expected x to be a real or boolean array"),
    (lambda: ops.sum(np.ones((2, 3)), 2), ValueError,
     r"ops\.sum: axis 2 is out of range for an array of rank 2 \(expected -2 <= axis < 2\)"),
    (lambda: ops.mean(np.ones((2, 3)), (0, -2)), ValueError, r"ops\.mean: axis \(0, -2\) repeats an axis"),
    (lambda: ops.max(np.ones((2, 3)), 1.0), TypeError, r"ops\.max: expected axis to be an int, got float 1\.0"),
    (lambda: ops.max(np.ones((0, 3)), 0), ValueError, r"ops\.max: cannot reduce over an empty axis"),
    (lambda: ops.softmax(np.ones(3), True), TypeError, r"ops\.softmax: expected axis to be an int"),
    (lambda: ops.reshape(np.ones(6), (4, -1)), ValueError,
     r"ops\.reshape: cannot reshape an array of shape \(6,\) \(size 6\) into shape \(4, -1\)"),
    (lambda: ops.permute(np.ones((2, 3)), (0, 0)), ValueError, r"ops\.permute: expected axes to be a permutation"),
    (lambda: ops.expand(np.ones((3, 2)), 3, 4), ValueError, r"ops\.expand: cannot broadcast an array of shape"),
    (lambda: ops.matmul(np.ones((2, 3)), np.ones((4, 2))), ValueError,
     r"ops\.matmul: shapes \(2, 3\) and \(4, 2\) do not match"),
    (lambda: ops.matmul(np.ones(3, np.float32), np.ones(3)), TypeError, r"ops\.matmul: expected a and b of the same dtype"),
    (lambda: ops.matmul(np.ones(3), np.float64(1)), ValueError, r"ops\.matmul: expected a and b with at least one axis"),
    (lambda: ops.where(np.ones(3), np.ones(3), 0.0), TypeError, r"ops\.where: expected cond to be a bool array"),
    (lambda: ops.masked_fill(np.ones(3), np.ones(3, bool), np.ones(2)), ValueError,
     r"ops\.masked_fill: expected value to be a number or a 0-d array"),
    (lambda: ops.clamp(np.ones(3)), ValueError, r"ops\.clamp: expected at least one of min and max"),
    (lambda: ops.getitem(np.ones(3), np.array([0.5])), TypeError, r"ops\.getitem: expected integer or bool index"),
    (lambda: ops.getitem(np.ones(3), 1.0), TypeError, r"ops\.getitem: expected an index of ints"),
    (lambda: ops.getitem(np.ones(3), 5), IndexError, r"ops\.getitem: index 5 is out of range"),
    (lambda: ops.pad(np.ones((2, 3)), (1,)), ValueError, r"ops\.pad: expected pad of even length"),
    (lambda: ops.pad(np.ones((2, 3)), (1, 1, 1, 1, 1, 1)), ValueError, r"ops\.pad: expected pad of even length"),
    (lambda: ops.pad(np.ones((2, 3)), (3, 0), "reflect"), ValueError, r"ops\.pad: reflect padding must be smaller"),
    (lambda: ops.pad(np.ones((1, 3)), (-1, 1), "circular"), ValueError,
     r"ops\.pad: circular padding must be in \[0, size of the axis\]"),
    (lambda: ops.pad(np.ones((1, 3)), (-2, -1), "replicate"), ValueError,
     r"ops\.pad: pad \(-2, -1\) leaves axis 1 of size 3 with size 0"),
    (lambda: ops.pad(np.ones(3), (1, 1), "replicate"), ValueError, r"ops\.pad: mode 'replicate' pads the last"),
    (lambda: ops.pad(np.ones((2, 3)), (1, 1), "wrap"), ValueError, r"ops\.pad: expected mode to be one of"),
    (lambda: ops.pad(np.ones((2, 3)), 1), TypeError, r"ops\.pad: expected pad to be a tuple of ints"),
    (lambda: ops.pad(np.ones((2, 3)), (1.5, 1)), TypeError, r"ops\.pad: expected pad to be an int"),
    (lambda: ops.concatenate([np.ones(2), np.ones(2)]), TypeError, r"ops\.concatenate: pass the arrays as separate"),
    (lambda: ops.concatenate(np.ones((2, 2)), np.ones((3, 3))), ValueError,
     r"ops\.concatenate: shapes \(2, 2\), \(3, 3\) differ outside axis 0"),
    (lambda: ops.stack(np.ones(2), np.ones(3)), ValueError, r"ops\.stack: expected arrays of equal shape"),
    (lambda: ops.split(np.ones(4), [1, 2]), ValueError, r"ops\.split: expected sections summing to 4"),
    (lambda: ops.split(np.ones(4), 0), ValueError, r"ops\.split: expected split_size_or_sections to be an int >= 1"),
    (lambda: ops.one_hot(np.array([0, 3]), 3), ValueError, r"ops\.one_hot: expected indices < num_classes=3"),
    (lambda: ops.one_hot(np.array([0.0]), 3), TypeError, r"ops\.one_hot: expected integer indices"),
    (lambda: ops.astype(np.ones(2), "U3"), TypeError, r"ops\.astype: expected a real or bool dtype"),
    (lambda: ops.var(np.ones(2), correction="1"), TypeError, r"ops\.var: expected correction to be a finite real number, got str '1'"),
    (lambda: ops.sub(np.ones(2, bool), 1), TypeError, r"ops\.sub: subtraction of a bool array is not supported"),
    (lambda: ops.sub(1.0, np.ones(2, bool)), TypeError, r"ops\.sub: subtraction of a bool array is not supported"),
    (lambda: ops.neg(np.ones(2, bool)), TypeError, r"ops\.neg: negation of a bool array"),
]


@pytest.mark.parametrize("call,error,match", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_errors_name_the_op_and_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("name,make", [
    ("add", lambda: ops.add(np.ones((2, 3)), 1.0)),
    ("sum", lambda: ops.sum(np.ones((2, 3)), 0)),
    ("getitem", lambda: ops.getitem(np.ones((2, 3)), [0, 0])),
    ("matmul", lambda: ops.matmul(np.ones((2, 3)), np.ones(3))),
])
def test_vjp_checks_dy_shape(name, make):
    y, vjp = make()
    shape = re.escape(str(y.shape))
    with pytest.raises(ValueError, match=rf"ops\.{name} vjp: expected dy of shape {shape} \(the output's\), got"):
        vjp(np.ones((*y.shape, 2)))


def test_split_vjp_checks_its_cotangents():
    parts, vjp = ops.split(np.ones(4), 2)
    with pytest.raises(ValueError, match=r"ops\.split vjp: expected a tuple of 2 cotangents"):
        vjp(np.ones(2))
    with pytest.raises(ValueError, match=r"ops\.split vjp: expected dy of shape \(2,\)"):
        vjp((np.ones(3), None))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (2, 0, 4)])
def test_softmax_over_an_empty_axis_is_empty_as_torch(name, shape, dtype):
    x = np.ones(shape, dtype)
    for axis in range(len(shape)):
        y, vjp = getattr(ops, name)(x, axis)
        yt = getattr(torch, name)(torch.tensor(x), axis)
        assert y.shape == tuple(yt.shape) and y.dtype == x.dtype
        (dx,) = vjp(np.ones(shape, dtype))
        assert dx.shape == shape


@pytest.mark.parametrize("name,f", [
    ("exp", ops.exp), ("tanh", ops.tanh), ("sigmoid", ops.sigmoid), ("relu", ops.relu), ("sqrt", ops.sqrt),
    ("softmax", lambda x: ops.softmax(x, 0)), ("log_softmax", lambda x: ops.log_softmax(x, -1)),
    ("sum", lambda x: ops.sum(x, 0)), ("mean", ops.mean), ("var", lambda x: ops.var(x, 1)),
    ("max_with_indices", lambda x: ops.max_with_indices(x, 0)), ("reshape", lambda x: ops.reshape(x, (-1,))),
    ("getitem", lambda x: ops.getitem(x, [0, 0])), ("split", lambda x: ops.split(x, 1)),
    ("pad", lambda x: ops.pad(x, (1, 1), "reflect")), ("add", lambda x: ops.add(x, 1.0)),
])
def test_vjp_does_not_keep_the_input(name, f):
    """A vjp captures what it needs (the output, shapes, indices), not an input it does not use."""
    x = np.random.default_rng(0).uniform(0.5, 1.5, (2, 3))
    ref = weakref.ref(x)
    out, vjp = f(x)
    del out, x
    gc.collect()
    assert ref() is None
    assert vjp is not None

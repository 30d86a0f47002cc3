"""The vjp-checking and torch-comparison kit, public for users who write layers.

:func:`check_layer` runs everything below in one call, in float32 and float64:
``check_layer(my_layer, torch_module, input_shapes)``. The project's own layers
are rows of one table run through it (``tests/parity_table.py``).

Four kinds of check, each usable on any object that follows the layer contract
(``init``/``apply``/vjp), the library's own or a user's:

* :func:`check_contract`: the contract of ``docs/design.md`` on one call (shapes,
  structures and dtypes of the gradients, nothing mutated, replay, the dtype
  policy, a wrong ``dy`` refused).

* :func:`check_vjp`: float64 central finite differences against the vjp, for the
  input gradient and every parameter gradient.
* :func:`check_adjoint`: the dot-product test ``<dy, J v> = <J^T dy, v>`` along a
  random direction ``v`` over input and params together (``J v`` by finite
  differences), which catches a transposed or mis-scaled vjp cheaply.
* :func:`assert_layer_matches_torch` / :func:`assert_loss_matches_torch`: the
  same weights in an nptfunc layer and a torch module give the same output,
  input gradient, parameter gradients (and new running statistics).

Parameter paths map to torch names by :func:`nptfunc.tree.path_str`: the params
of ``Sequential(Linear, ReLU, Linear)`` have leaves ``0.weight``, ``0.bias``,
``2.weight``, ``2.bias``, exactly the keys of the torch module's ``state_dict``.

torch is imported only by the torch helpers (it is a test dependency, not a
run-time one).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from nptfunc import random
from nptfunc._types import Array, Params, PyTree, State
from nptfunc.convert import to_numpy, tree_from_state_dict
from nptfunc.tree import (
    path_str,
    same_structure,
    tree_flatten,
    tree_flatten_with_path,
    tree_leaves,
    tree_map,
    tree_unflatten,
)

__all__ = [
    "LayerCall",
    "assert_close",
    "assert_layer_matches_torch",
    "assert_loss_matches_torch",
    "call_layer",
    "check_adjoint",
    "check_contract",
    "check_layer",
    "check_vjp",
    "copy_tree",
    "default_tolerance",
    "leaves_equal",
    "make_inputs",
    "numerical_vjp",
    "params_from_torch",
    "params_to_torch",
    "to_numpy",
    "to_torch",
    "torch_dtype",
    "with_dtype",
]


# ---------------------------------------------------------------------- closeness
def default_tolerance(dtype: Any) -> float:
    """Relative tolerance by dtype: 1e-10 for float64, 1e-5 for float32 (2e-3 for float16)."""
    dt = np.dtype(dtype)
    return {8: 1e-10, 4: 1e-5, 2: 2e-3}.get(dt.itemsize, 1e-10)


def assert_close(actual: Any, expected: Any, *, rtol: float | None = None, atol: float | None = None,
                 name: str = "value") -> None:
    """Assert ``|actual - expected| <= atol + rtol * |expected|`` elementwise, shapes equal.

    By default ``rtol`` comes from the dtype of ``expected`` and ``atol = rtol * max|expected|``,
    so tolerances are relative to the array's scale (sums of many terms may lose
    precision on small entries). NaNs must sit at the same places.
    """
    a = to_numpy(actual)
    e = to_numpy(expected)
    if a.shape != e.shape:
        msg = f"{name}: shape {a.shape} != expected {e.shape}"
        raise AssertionError(msg)
    if rtol is None:
        rtol = default_tolerance(e.dtype if e.dtype.kind == "f" else a.dtype)
    finite = np.isfinite(e)
    if atol is None:
        atol = rtol * float(np.max(np.abs(e[finite]), initial=0.0))
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    same_nonfinite = np.array_equal(np.isnan(a64), np.isnan(e64)) and np.array_equal(
        a64[~finite & ~np.isnan(e64)], e64[~finite & ~np.isnan(e64)])
    with np.errstate(invalid="ignore"):  # inf - inf where expected is non-finite: not compared here
        err = np.abs(a64 - e64)
    ok = err[finite] <= atol + rtol * np.abs(e64[finite])
    if not (same_nonfinite and ok.all()):
        worst = float(np.max(err[finite], initial=0.0))
        msg = (f"{name}: not close (rtol={rtol:g}, atol={atol:g}); max abs error {worst:g}, "
               f"{int((~ok).sum())} of {ok.size} elements off; non-finite match: {same_nonfinite}")
        raise AssertionError(msg)


# ------------------------------------------------------------------- layer calls
def call_layer(layer: Any, params: Params, x: Any, state: State = None, train: bool = True,
               kwargs: Mapping[str, Any] | None = None) -> tuple[Any, Any, State]:
    """Call any layer as ``(y, vjp, new_state)``: the long form if it is stateful, else the short one.

    A stateless layer's ``state`` passes through unchanged; ``kwargs`` (masks and other
    non-differentiable arguments) go to ``apply`` as keywords.
    """
    kw = dict(kwargs or {})
    if getattr(layer, "stateful", False):
        return layer.apply(params, x, state, train=train, **kw)
    y, vjp = layer.apply(params, x, **kw)
    return y, vjp, state


def copy_tree(tree: PyTree) -> PyTree:
    """A copy of a tree whose arrays are fresh copies (to compare with after a call)."""
    return tree_map(lambda a: a.copy() if isinstance(a, np.ndarray) else a, tree)


def leaves_equal(a: PyTree, b: PyTree) -> bool:
    """Whether two trees have equal structure and bitwise-equal leaves."""
    la, ta = tree_flatten(a)
    lb, tb = tree_flatten(b)
    return ta == tb and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True))


def _is_float(a: Any) -> bool:
    return hasattr(a, "dtype") and np.dtype(a.dtype).kind == "f"


def _at(tree: Any, path: tuple[Any, ...]) -> Any:
    """The subtree of ``tree`` at ``path`` (a path of :func:`nptfunc.tree.tree_flatten_with_path`)."""
    for p in path:
        tree = tree[p] if isinstance(tree, (tuple, list, dict)) else getattr(tree, p)
    return tree


def _name(prefix: str, path: tuple[Any, ...]) -> str:
    return f"{prefix}.{path_str(path)}" if path else prefix


def _shapes(tree: Any) -> Any:
    return tree_map(lambda a: tuple(np.shape(a)), tree)


def _random_like(key: random.Key, tree: Any, dtype: Any = None) -> Any:
    """Standard normal arrays shaped like the floating leaves of ``tree`` (in ``dtype`` or theirs)."""
    leaves, treedef = tree_flatten(tree)
    keys = random.split(key, max(len(leaves), 1))
    return tree_unflatten(treedef, [
        random.normal(k, np.shape(a), dtype=dtype or a.dtype) if _is_float(a) else np.zeros_like(a)
        for k, a in zip(keys, leaves, strict=False)])


def _as_float64(tree: Any) -> Any:
    return tree_map(lambda a: np.asarray(a, dtype=np.float64) if _is_float(a) else a, tree)


def _vdot(a: Any, b: Any) -> float:
    """``sum(a * b)`` over the floating leaves of two trees of the same structure."""
    return sum(float(np.vdot(np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)))
               for u, v in zip(tree_leaves(a), tree_leaves(b), strict=True) if _is_float(u))


# ------------------------------------------------------------- finite differences
def numerical_vjp(f: Callable[[Array], Any], x: Array, dy: Any, eps: float = 1e-6,
                  indices: Sequence[int] | None = None) -> Array:
    """``d <dy, f(x)> / dx`` by central differences, element by element (float64, small x).

    ``f`` may return a tuple of arrays (``dy`` is then a tuple too). With ``indices``
    (flat positions in ``x``) only those elements are differentiated; the others are 0.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size) if indices is None else indices:
        old = flat[i]
        flat[i] = old + eps
        up = _vdot(dy, f(x.copy()))
        flat[i] = old - eps
        down = _vdot(dy, f(x.copy()))
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def _sample(key: random.Key, size: int, max_coords: int | None) -> np.ndarray | None:
    if max_coords is None or size <= max_coords:
        return None
    return np.sort(random.generator(key).choice(size, max_coords, replace=False))


def check_vjp(layer: Any, params: Params, x: Any, *, state: State = None, train: bool = False,
              dy: Any = None, key: random.Key | None = None, eps: float = 1e-6,
              rtol: float = 1e-6, atol: float = 1e-8, kwargs: Mapping[str, Any] | None = None,
              max_coords: int | None = None) -> None:
    """Compare the vjp with float64 finite differences, for ``dx`` and every ``dparams`` leaf.

    Params, ``x`` and ``dy`` are cast to float64 (integer inputs, such as indices, are
    left alone and get no ``dx``). ``x`` may be a tuple of arrays, and the output a
    tuple. For a stateful layer, pass its ``state`` and ``train`` (the same state is
    used for every evaluation, so a dropout mask stays fixed). With ``max_coords``,
    at most that many randomly chosen elements of each leaf are differentiated.
    """
    key = key if key is not None else random.key(0)
    k_dy, k_coords = random.split(key)
    params64, x64 = _as_float64(params), _as_float64(x)
    y, vjp, _ = call_layer(layer, params64, x64, state, train, kwargs)
    dy = _random_like(k_dy, y, np.float64) if dy is None else _as_float64(dy)
    dparams, dx = vjp(dy)

    def compare(name: str, got: Any, leaf: Array, f: Callable[[Array], Any], k: random.Key) -> None:
        idx = _sample(k, np.size(leaf), max_coords)
        want = numerical_vjp(f, leaf, dy, eps, idx)
        got = np.asarray(got)
        if idx is not None:
            got, want = got.reshape(-1)[idx], want.reshape(-1)[idx]
        assert_close(got, want, rtol=rtol, atol=atol, name=name)

    x_leaves, x_def = tree_flatten(x64)
    x_paths = [p for p, _ in tree_flatten_with_path(x64)[0]]
    p_leaves, p_def = tree_flatten(params64)
    keys = random.split(k_coords, len(x_leaves) + len(p_leaves) + 1)
    for i, (path, leaf) in enumerate(zip(x_paths, x_leaves, strict=True)):
        if not _is_float(leaf):
            continue

        def f_x(v: Array, i: int = i) -> Any:
            new = [*x_leaves]
            new[i] = v
            return call_layer(layer, params64, tree_unflatten(x_def, new), state, train, kwargs)[0]

        compare(_name("dx", path), _at(dx, path), leaf, f_x, keys[i])
    for i, (path, dleaf) in enumerate(tree_flatten_with_path(dparams)[0]):
        def f_p(p: Array, i: int = i) -> Any:
            new = [*p_leaves]
            new[i] = p
            return call_layer(layer, tree_unflatten(p_def, new), x64, state, train, kwargs)[0]

        compare(f"d{path_str(path)}", dleaf, p_leaves[i], f_p, keys[len(x_leaves) + i])


def check_adjoint(layer: Any, params: Params, x: Any, *, state: State = None,
                  train: bool = False, key: random.Key | None = None, eps: float = 1e-6,
                  rtol: float = 1e-6, kwargs: Mapping[str, Any] | None = None) -> None:
    """The dot-product test ``<dy, J v> == <vjp(dy), v>`` over input and params (float64).

    ``v`` is a random direction over the floating leaves of ``x`` and of the params.
    """
    key = key if key is not None else random.key(0)
    k_dy, k_vx, k_vp = random.split(key, 3)
    params64, x64 = _as_float64(params), _as_float64(x)
    y, vjp, _ = call_layer(layer, params64, x64, state, train, kwargs)
    dy = _random_like(k_dy, y, np.float64)
    vx = _random_like(k_vx, x64)
    vp = _random_like(k_vp, params64)

    def step(a: Any, v: Any, t: float) -> Any:
        return tree_map(lambda u, w: u + t * w if _is_float(u) else u, a, v)

    def f(t: float) -> Any:
        return call_layer(layer, step(params64, vp, t), step(x64, vx, t), state, train, kwargs)[0]

    jv = tree_map(lambda u, w: (u - w) / (2 * eps), f(eps), f(-eps))
    dparams, dx = vjp(dy)
    lhs = _vdot(dy, jv)
    rhs = _vdot(dparams, vp) + sum(_vdot(_at(dx, path), leaf) for path, leaf in tree_flatten_with_path(vx)[0]
                                   if _is_float(leaf))
    if not abs(lhs - rhs) <= rtol * max(abs(lhs), abs(rhs), 1.0):
        msg = f"adjoint check failed: <dy, J v> = {lhs!r} but <J^T dy, v> = {rhs!r}"
        raise AssertionError(msg)


# ----------------------------------------------------------------------- contract
def _check_init(layer: Any, key: random.Key, dtype: Any) -> None:
    params = layer.init(key)
    if not leaves_equal(params, layer.init(key)):
        msg = f"{layer!r}.init: the same key gave different params"
        raise AssertionError(msg)
    for path, leaf in tree_flatten_with_path(params)[0]:
        if getattr(getattr(leaf, "flags", None), "writeable", False):
            msg = f"{layer!r}.init: param {path_str(path)} is writeable (params must be read-only)"
            raise AssertionError(msg)
        if dtype is not None and _is_float(leaf) and leaf.dtype != dtype:
            msg = f"{layer!r}.init: param {path_str(path)} has dtype {leaf.dtype}, expected {np.dtype(dtype)}"
            raise AssertionError(msg)


def _fail(layer: Any, what: str) -> None:
    msg = f"{layer!r}: {what}"
    raise AssertionError(msg)


def _shape_kwargs(layer: Any, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keyword arguments of ``apply`` that ``layer.output_shape`` also declares (``need_weights``)."""
    if not kwargs:
        return {}
    declared = inspect.signature(layer.output_shape).parameters
    return {k: v for k, v in kwargs.items()
            if k in declared and declared[k].kind is inspect.Parameter.KEYWORD_ONLY}


def check_contract(layer: Any, params: Params, x: Any, *, state: State = None, train: bool = True,
                   key: random.Key | None = None, kwargs: Mapping[str, Any] | None = None,
                   dtype: Any = None) -> None:
    """Check the layer contract of ``docs/design.md`` on one call.

    The output has the shape of ``layer.output_shape`` (called with the tree of
    input shapes) and, if ``dtype`` is given, its floating leaves have that dtype;
    ``dparams`` has the structure, classes, shapes and dtypes of ``params``; ``dx``
    has the shape and dtype of every floating leaf of ``x``; the vjp is repeatable;
    nothing is mutated (params, state, ``x``, ``kwargs``, ``dy``); the new state
    has the structure, shapes and dtypes of the old one, and an evaluation call
    returns the old one itself; replaying the call with the old state gives the
    same output and new state; the long form works (a stateless layer's gives the
    short form's output and returns its state unchanged); a ``dy`` of the wrong
    shape is a ``ValueError``. The dtype policy: a floating input of the other
    float dtype (float32 for float64 and back) gets its ``dx`` in its own dtype and
    ``dparams`` in the params' dtype. With ``need_dx=False`` (where ``apply`` takes
    it) the vjp gives the same ``dparams`` and ``dx = None``.
    """
    key = key if key is not None else random.key(0)
    before = copy_tree((params, state, x, dict(kwargs or {})))
    y, vjp, new_state = call_layer(layer, params, x, state, train, kwargs)
    declared = layer.output_shape(_shapes(x), **_shape_kwargs(layer, kwargs))
    if _shapes(y) != declared:
        _fail(layer, f"output shape {_shapes(y)} != output_shape(...) = {declared}")
    for path, leaf in tree_flatten_with_path(y)[0]:
        if dtype is not None and _is_float(leaf) and leaf.dtype != dtype:
            _fail(layer, f"{_name('y', path)} has dtype {leaf.dtype}, expected {np.dtype(dtype)}")
    dy = _random_like(key, y)
    dy0 = copy_tree(dy)
    dparams, dx = vjp(dy)
    if not same_structure(dparams, params):
        _fail(layer, f"dparams ({type(dparams).__name__}) has not the structure of params "
                     f"({type(params).__name__})")
    for (path, g), p in zip(tree_flatten_with_path(dparams)[0], tree_leaves(params), strict=True):
        if np.shape(g) != np.shape(p) or g.dtype != p.dtype:
            _fail(layer, f"d{path_str(path)}: {g.dtype}{np.shape(g)}, expected {p.dtype}{np.shape(p)}")
    x_paths = tree_flatten_with_path(x)[0]
    if all(_is_float(leaf) for _, leaf in x_paths) and not same_structure(dx, x):
        _fail(layer, "dx has not the structure of x")
    for path, leaf in x_paths:
        if _is_float(leaf):
            d = _at(dx, path)
            if np.shape(d) != np.shape(leaf) or d.dtype != leaf.dtype:
                _fail(layer, f"{_name('dx', path)}: {d.dtype}{np.shape(d)}, "
                             f"expected {leaf.dtype}{np.shape(leaf)}")
    if not leaves_equal((dparams, dx), vjp(dy)):
        _fail(layer, "the vjp gave a different result when called again")
    if not leaves_equal((params, state, x, dict(kwargs or {})), before):
        _fail(layer, "apply or its vjp modified params, state, x or a keyword argument")
    if not leaves_equal(dy, dy0):
        _fail(layer, "the vjp modified dy")
    if getattr(layer, "stateful", False):
        if not train and new_state is not state:
            _fail(layer, "an evaluation call must return its state unchanged (the same object)")
        if not same_structure(new_state, state):
            _fail(layer, "the new state has not the structure of the state")
        for (path, s1), s0 in zip(tree_flatten_with_path(new_state)[0], tree_leaves(state), strict=True):
            if isinstance(s0, np.ndarray) and (np.shape(s1) != s0.shape or s1.dtype != s0.dtype):
                _fail(layer, f"new state {path_str(path)}: {s1.dtype}{np.shape(s1)}, "
                             f"expected {s0.dtype}{s0.shape}")
    y2, _, new_state2 = call_layer(layer, params, x, state, train, kwargs)
    if not leaves_equal((y, new_state), (y2, new_state2)):
        _fail(layer, "replaying the call with the old state gave another output or state")
    y_long, _, s_long = layer.apply(params, x, state, train=train, **dict(kwargs or {}))
    if _shapes(y_long) != _shapes(y):
        _fail(layer, "the long form gave another output shape")
    if not getattr(layer, "stateful", False) and not leaves_equal(y_long, y):
        _fail(layer, "a stateless layer's long form gave another output than its short form")
    if not getattr(layer, "stateful", False) and s_long is not state:
        _fail(layer, "a stateless layer's long form must return its state unchanged")
    wrong = tree_map(lambda a: np.zeros((*np.shape(a), 2), dtype=getattr(a, "dtype", np.float64)), dy)
    try:
        vjp(wrong)
    except ValueError:
        pass
    else:
        _fail(layer, "a dy of the wrong shape was accepted (expected a ValueError)")
    _check_dtype_policy(layer, params, x, state, train, kwargs, dy)
    if "need_dx" in inspect.signature(layer.apply).parameters:
        _, vjp_no_dx, _ = call_layer(layer, params, x, state, train, {**dict(kwargs or {}), "need_dx": False})
        dparams_no_dx, no_dx = vjp_no_dx(dy)
        if no_dx is not None or not leaves_equal(dparams_no_dx, dparams):
            _fail(layer, "apply(..., need_dx=False): expected the same dparams and dx None")


def _check_dtype_policy(layer: Any, params: Params, x: Any, state: State, train: bool,
                        kwargs: Mapping[str, Any] | None, dy: Any) -> None:
    """A floating input of the other float dtype (float32 <-> float64) gets its ``dx`` in its own dtype."""
    other = {np.dtype(np.float32): np.float64, np.dtype(np.float64): np.float32}
    if not any(_is_float(a) and a.dtype in other for a in tree_leaves(x)):
        return
    x_other = tree_map(lambda a: a.astype(other[a.dtype]) if _is_float(a) and a.dtype in other else a, x)
    _, vjp, _ = call_layer(layer, params, x_other, state, train, kwargs)
    dparams, dx = vjp(dy)
    for path, leaf in tree_flatten_with_path(x_other)[0]:
        if _is_float(leaf) and _at(dx, path).dtype != leaf.dtype:
            _fail(layer, f"{_name('dx', path)} of a {leaf.dtype} input came back {_at(dx, path).dtype}")
    for (path, g), p in zip(tree_flatten_with_path(dparams)[0], tree_leaves(params), strict=True):
        if g.dtype != p.dtype:
            _fail(layer, f"d{path_str(path)} is {g.dtype} for an input of the other dtype, "
                         f"expected the params' {p.dtype}")


# ------------------------------------------------------------------------- torch
def to_torch(a: Any) -> Any:
    """A torch tensor holding a copy of ``a`` (same dtype)."""
    import torch

    return torch.tensor(np.array(a))


def torch_dtype(dtype: Any) -> Any:
    """The torch dtype of a NumPy dtype (``np.float32 -> torch.float32``)."""
    import torch

    return getattr(torch, np.dtype(dtype).name)


def params_to_torch(params: Params, module: Any, state: State | None = None) -> None:
    """Copy ``params`` (and the array leaves of ``state``) into a torch module, by path.

    Every params leaf must have a torch parameter of the same name and shape;
    state leaves are copied where the module has a buffer of that name.
    """
    import torch

    sd = module.state_dict()
    with torch.no_grad():
        for path, leaf in tree_flatten_with_path(params)[0]:
            name = path_str(path)
            if name not in sd:
                msg = f"params_to_torch: torch module has no parameter {name!r} (it has {list(sd)})"
                raise KeyError(msg)
            if tuple(sd[name].shape) != tuple(np.shape(leaf)):
                msg = f"params_to_torch: {name}: shape {np.shape(leaf)} vs torch {tuple(sd[name].shape)}"
                raise ValueError(msg)
            sd[name].copy_(to_torch(leaf).to(sd[name].dtype))
        if state is not None:
            for path, leaf in tree_flatten_with_path(state)[0]:
                name = path_str(path)
                if name in sd and isinstance(leaf, (np.ndarray, int, float, np.generic)):
                    sd[name].copy_(torch.as_tensor(np.array(leaf)).to(sd[name].dtype))


def params_from_torch(module: Any, like: Params) -> Params:
    """A params tree shaped like ``like`` holding a torch module's parameter values.

    :func:`nptfunc.convert.tree_from_state_dict` on the module's state dict.
    """
    return tree_from_state_dict(module.state_dict(), like)


@attrs.frozen
class LayerCall:
    """What a tolerance function of :func:`check_layer` sees: one call, its inputs and ``dy``."""

    layer: Any
    params: Params
    x: Any
    state: State
    train: bool
    dy: Any


Tolerance = float | Callable[[LayerCall], float] | None


def _tolerance(tol: float | Mapping[str, Tolerance] | None, name: str, call: LayerCall) -> float | None:
    if isinstance(tol, Mapping):
        tol = tol.get(name)
    return tol(call) if callable(tol) else tol


def _torch_call(module: Any, x: Any, kwargs: Mapping[str, Any], torch_call: Callable[..., Any] | None) -> Any:
    kw = {k: to_torch(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    args = tuple(x) if isinstance(x, tuple) else (x,)
    if torch_call is not None:
        return torch_call(module, *args, **kw)
    return module(*args, **kw)


def _compare_with_torch(layer: Any, params: Params, module: Any, x: Any, *, state: State, train: bool,
                        dy: Any, key: random.Key | None, rtol: float | None,
                        atol: float | Mapping[str, Tolerance] | None, kwargs: Mapping[str, Any] | None,
                        torch_call: Callable[..., Any] | None) -> tuple[Any, Any, Any, State]:
    import torch

    params_to_torch(params, module, state)
    module.zero_grad(set_to_none=True)  # a reused module must not accumulate earlier gradients
    module.train(train)
    y, vjp, new_state = call_layer(layer, params, x, state, train, kwargs)
    xt = tree_map(lambda a: to_torch(a).requires_grad_(_is_float(a)), x)
    yt = _torch_call(module, xt, dict(kwargs or {}), torch_call)
    if dy is None:
        dy = _random_like(key if key is not None else random.key(1), y)
    call = LayerCall(layer, params, x, state, train, dy)
    y_paths, yt_leaves = tree_flatten_with_path(y)[0], tree_leaves(yt)
    if len(y_paths) != len(yt_leaves):
        msg = f"y: {len(y_paths)} output arrays, torch gave {len(yt_leaves)}"
        raise AssertionError(msg)
    for (path, leaf), t in zip(y_paths, yt_leaves, strict=True):
        name = _name("y", path)
        assert_close(leaf, t, rtol=rtol, atol=_tolerance(atol, name, call), name=name)
    dparams, dx = vjp(dy)
    pairs = [(t, to_torch(d).to(t.dtype)) for t, d in zip(yt_leaves, tree_leaves(dy), strict=True)
             if t.requires_grad]
    if pairs:
        torch.autograd.backward([t for t, _ in pairs], [d for _, d in pairs])
    for path, t in tree_flatten_with_path(xt)[0]:
        if t.requires_grad:
            name = _name("dx", path)
            grad = t.grad if t.grad is not None else torch.zeros_like(t)
            assert_close(_at(dx, path), grad, rtol=rtol, atol=_tolerance(atol, name, call), name=name)
    named = dict(module.named_parameters())
    for path, dleaf in tree_flatten_with_path(dparams)[0]:
        name = f"d{path_str(path)}"
        grad = named[path_str(path)].grad
        assert_close(dleaf, grad if grad is not None else torch.zeros_like(named[path_str(path)]), rtol=rtol,
                     atol=_tolerance(atol, name, call), name=name)
    if new_state is not None:
        buffers = dict(module.named_buffers())
        for path, leaf in tree_flatten_with_path(new_state)[0]:
            name = path_str(path)
            if name in buffers:
                assert_close(np.asarray(leaf), buffers[name], rtol=rtol, atol=_tolerance(atol, name, call),
                             name=name)
    return y, dparams, dx, new_state


def assert_layer_matches_torch(layer: Any, params: Params, module: Any, x: Any, *,
                               state: State | None = None, train: bool = True,
                               dy: Any = None, key: random.Key | None = None,
                               rtol: float | None = None,
                               atol: float | Mapping[str, Tolerance] | None = None,
                               kwargs: Mapping[str, Any] | None = None,
                               torch_call: Callable[..., Any] | None = None) -> tuple[Any, Any, Any]:
    """Assert an nptfunc layer and a torch module agree: ``y``, ``dx``, every param gradient.

    ``params`` are copied into ``module`` first (by torch name), ``module`` is put
    in training or evaluation mode by ``train``, both run on ``x``, both
    backpropagate the same ``dy`` (random from ``key`` if not given). With
    ``state``, the new state's running statistics are compared with the module's
    buffers after the forward pass (after the state's values have been loaded).

    ``x`` may be a tuple of arrays (torch gets them as positional arguments) and the
    output a tuple (compared leaf by leaf; ``dy`` is then a tuple). ``kwargs`` go to
    both ``apply`` and torch's forward (arrays as tensors), or to
    ``torch_call(module, *inputs, **kwargs) -> outputs`` when given. ``atol`` is a
    number or a mapping from a compared name (``"y"``, ``"dx"``, ``"dweight"``,
    ``"running_mean"``, ``"y.0"`` for a tuple's first output) to a number or to a
    function of the :class:`LayerCall` (for tolerances at the scale of a result's terms).

    Returns:
        ``(y, dparams, dx)`` of the nptfunc layer.
    """
    x = x if isinstance(x, tuple) else np.asarray(x)
    y, dparams, dx, _ = _compare_with_torch(layer, params, module, x, state=state, train=train, dy=dy,
                                            key=key, rtol=rtol, atol=atol, kwargs=kwargs,
                                            torch_call=torch_call)
    return y, dparams, dx


def assert_loss_matches_torch(loss: Any, torch_loss: Any, input: Any, target: Any, *,
                              dloss: Any = None, rtol: float | None = None) -> tuple[Array, Array]:
    """Assert an nptfunc loss and a torch loss agree on the value and the input gradient.

    Returns:
        ``(loss_value, dinput)`` of the nptfunc loss.
    """
    input = np.asarray(input)
    value, vjp = loss.apply(input, target)
    xt = to_torch(input).requires_grad_(True)
    tt = to_torch(target)
    vt = torch_loss(xt, tt)
    assert_close(value, vt, rtol=rtol, name="loss")
    if dloss is None:
        dloss = np.ones(np.shape(value), dtype=input.dtype)
    dx = vjp(dloss)
    vt.backward(to_torch(np.asarray(dloss, dtype=input.dtype)))
    assert_close(dx, xt.grad, rtol=rtol, name="dinput")
    return value, dx


# ----------------------------------------------------------------- the one call
def _is_shape(s: Any) -> bool:
    return isinstance(s, tuple) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in s)


def make_inputs(key: random.Key, dtype: Any, input_shapes: Any = None,
                inputs: Callable[[random.Key, Any], Any] | None = None) -> Any:
    """Standard normal input of ``input_shapes`` (a shape, or a tuple of shapes for a tuple of inputs).

    Or ``inputs(key, dtype)`` when that factory is given (integer indices, masks, special values).
    """
    if inputs is not None:
        return inputs(key, dtype)
    if _is_shape(input_shapes):
        return random.normal(key, input_shapes, dtype=dtype)
    if isinstance(input_shapes, tuple) and all(_is_shape(s) for s in input_shapes):
        return tuple(random.normal(k, s, dtype=dtype)
                     for k, s in zip(random.split(key, len(input_shapes)), input_shapes, strict=True))
    msg = f"check_layer: expected input_shapes to be a shape or a tuple of shapes, got {input_shapes!r}"
    raise TypeError(msg)


def with_dtype(layer: Any, dtype: Any) -> Any:
    """``layer`` in ``dtype``: ``layer.with_dtype(dtype)``, or its ``dtype`` field replaced.

    A factory ``dtype -> layer`` is called; a layer with neither (no parameters, or a
    container) is returned as it is.
    """
    if not hasattr(layer, "apply"):
        return layer(dtype)  # a factory dtype -> layer
    if hasattr(layer, "with_dtype"):
        return layer.with_dtype(dtype)
    if attrs.has(type(layer)) and "dtype" in attrs.fields_dict(type(layer)):
        return attrs.evolve(layer, dtype=dtype)
    return layer


def _module_for(module: Any, dtype: Any) -> Any:
    if module is None:
        return None
    if hasattr(module, "state_dict"):
        return copy.deepcopy(module).to(torch_dtype(dtype))
    return module(dtype)  # a factory dtype -> module


def check_layer(layer: Any, torch_module: Any = None, input_shapes: Any = None, *,
                dtypes: Sequence[Any] = (np.float32, np.float64),
                inputs: Callable[[random.Key, Any], Any] | None = None,
                params: Callable[[Any, random.Key], Params] | None = None,
                kwargs: Mapping[str, Any] | Callable[[random.Key, Any], Mapping[str, Any]] | None = None,
                torch_call: Callable[..., Any] | None = None,
                train: Sequence[bool] = (True, False), steps: int = 2,
                rtol: float | None = None, atol: float | Mapping[str, Tolerance] | None = None,
                finite_differences: bool = True, max_coords: int | None = 12,
                key: random.Key | None = None) -> None:
    """Check a layer in one call: against torch, by finite differences, and the layer contract.

    For each dtype of ``dtypes`` (the layer is rebuilt in it: ``layer.with_dtype``
    or its ``dtype`` field; or pass a factory ``dtype -> layer``):

    * the contract (:func:`check_contract`): ``init`` is pure and gives read-only
      params in the dtype; output shape, structures, shapes and dtypes of the
      gradients; nothing mutated; replay; the long form; a wrong ``dy`` shape;
    * with ``torch_module`` (a module, converted to the dtype, or a factory ``dtype
      -> module``): the params are copied into it by path (torch's ``state_dict``
      keys), and ``y``, ``dx`` for every floating input, every ``dparams`` leaf and
      the new state's running statistics must match torch at the dtype's tolerance
      (:func:`default_tolerance`: 1e-5 for float32, 1e-10 for float64);
    * in float64, the vjp against finite differences (:func:`check_vjp`, at most
      ``max_coords`` elements per leaf) and the adjoint test (:func:`check_adjoint`).

    Each mode of ``train`` is checked in order; a stateful layer runs ``steps``
    training calls, each on new input and threading its state, before evaluating
    with the state they produced.

    Args:
        layer: the layer (or a factory ``dtype -> layer``).
        torch_module: the torch module to compare with (or a factory ``dtype -> module``), or None.
        input_shapes: ``x``'s shape, or a tuple of shapes when ``x`` is a tuple of arrays.
        dtypes: the floating dtypes to check.
        inputs: instead of ``input_shapes``, a factory ``(key, dtype) -> x`` (integer
            indices, special values, scaled input).
        params: a factory ``(layer, key) -> params`` instead of ``layer.init`` (to
            exercise every gradient path with weights that are not ones and zeros).
        kwargs: non-differentiable keyword arguments of ``apply`` and torch's forward
            (masks), or a factory ``(key, dtype) -> kwargs``.
        torch_call: ``torch_call(module, *inputs, **kwargs) -> outputs`` when torch's
            forward takes its arguments differently.
        train: the modes to check.
        steps: training calls of a stateful layer per check.
        rtol: relative tolerance of the torch comparison (default: by dtype).
        atol: absolute tolerance, a number or a mapping from a compared name (``"y"``,
            ``"dx"``, ``"dweight"``) to a number or a function of the :class:`LayerCall`.
        finite_differences: whether to check the vjp by finite differences (not at kinks).
        max_coords: elements per leaf checked by finite differences (None: all).
        key: the key for params, state, input and ``dy``.

    Example:
        >>> check_layer(layers.Linear(4, 3), torch.nn.Linear(4, 3), (2, 4))  # doctest: +SKIP
    """
    key = key if key is not None else random.key(0)
    for dtype in dtypes:
        _check_layer_at(with_dtype(layer, dtype), _module_for(torch_module, dtype), np.dtype(dtype),
                        input_shapes=input_shapes, inputs=inputs, params=params, kwargs=kwargs,
                        torch_call=torch_call, train=tuple(train), steps=steps, rtol=rtol, atol=atol,
                        finite_differences=finite_differences, max_coords=max_coords, key=key)


def _check_layer_at(layer: Any, module: Any, dtype: np.dtype, *, input_shapes: Any, inputs: Any,
                    params: Any, kwargs: Any, torch_call: Any, train: tuple[bool, ...], steps: int,
                    rtol: float | None, atol: Any, finite_differences: bool, max_coords: int | None,
                    key: random.Key) -> None:
    k_params, k_state, k_run = random.split(key, 3)
    _check_init(layer, k_params, dtype)
    p = layer.init(k_params) if params is None else params(layer, k_params)
    state = layer.init_state(k_state)
    stateful = getattr(layer, "stateful", False)
    for m, mode in enumerate(train):
        for step in range(steps if stateful and mode else 1):
            k_x, k_kw, k_dy, k_fd = random.split(random.fold_in(k_run, 100 * m + step), 4)
            x = make_inputs(k_x, dtype, input_shapes, inputs)
            kw = kwargs(k_kw, dtype) if callable(kwargs) else kwargs
            first = step == 0 and (stateful or m == 0)  # a stateless layer's vjp does not depend on train
            if first:
                check_contract(layer, p, x, state=state, train=mode, key=k_dy, kwargs=kw, dtype=dtype)
            if first and finite_differences and dtype == np.float64:
                check_vjp(layer, p, x, state=state, train=mode, key=k_fd, kwargs=kw, max_coords=max_coords)
                check_adjoint(layer, p, x, state=state, train=mode, key=k_fd, kwargs=kw)
            if module is not None:
                *_, new_state = _compare_with_torch(layer, p, module, x, state=state, train=mode, dy=None,
                                                    key=k_dy, rtol=rtol, atol=atol, kwargs=kw,
                                                    torch_call=torch_call)
            else:
                new_state = call_layer(layer, p, x, state, mode, kw)[2]
            state = new_state

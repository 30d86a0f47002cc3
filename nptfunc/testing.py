"""The vjp-checking and torch-comparison kit, public for users who write layers.

Three kinds of check, each usable on any object that follows the layer contract
(``init``/``apply``/vjp), the library's own or a user's:

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

from collections.abc import Callable
from typing import Any

import numpy as np

from nptfunc import random
from nptfunc._types import Array, Params, PyTree, State
from nptfunc.convert import to_numpy, tree_from_state_dict
from nptfunc.tree import (
    path_str,
    tree_flatten,
    tree_flatten_with_path,
    tree_map,
    tree_unflatten,
)

__all__ = [
    "assert_close",
    "assert_layer_matches_torch",
    "assert_loss_matches_torch",
    "check_adjoint",
    "check_vjp",
    "default_tolerance",
    "leaves_equal",
    "numerical_vjp",
    "params_from_torch",
    "params_to_torch",
    "to_numpy",
    "to_torch",
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
def _call(layer: Any, params: Params, x: Array, state: State | None, train: bool) -> tuple[Array, Any]:
    if state is None and not getattr(layer, "stateful", False):
        return layer.apply(params, x)
    y, vjp, _ = layer.apply(params, x, state, train=train)
    return y, vjp


def _random_like(key: random.Key, a: Array) -> Array:
    return random.normal(key, a.shape, dtype=a.dtype)


def numerical_vjp(f: Callable[[Array], Array], x: Array, dy: Array, eps: float = 1e-6) -> Array:
    """``d <dy, f(x)> / dx`` by central differences, element by element (float64, small x)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = np.vdot(dy, f(x.copy()))
        flat[i] = old - eps
        down = np.vdot(dy, f(x.copy()))
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def check_vjp(layer: Any, params: Params, x: Array, *, state: State | None = None, train: bool = False,
              dy: Array | None = None, key: random.Key | None = None, eps: float = 1e-6,
              rtol: float = 1e-6, atol: float = 1e-8) -> None:
    """Compare the vjp with float64 finite differences, for ``dx`` and every ``dparams`` leaf.

    Params, ``x`` and ``dy`` are cast to float64. For a stateful layer, pass its
    ``state`` and ``train`` (the same state is used for every evaluation, so a
    dropout mask stays fixed).
    """
    key = key if key is not None else random.key(0)
    params64 = tree_map(lambda a: np.asarray(a, dtype=np.float64), params)
    x64 = np.asarray(x, dtype=np.float64)
    y, vjp = _call(layer, params64, x64, state, train)
    dy = _random_like(key, np.asarray(y)) if dy is None else np.asarray(dy, dtype=np.float64)
    dparams, dx = vjp(dy)

    def f_x(xx: Array) -> Array:
        return _call(layer, params64, xx, state, train)[0]

    assert_close(dx, numerical_vjp(f_x, x64, dy, eps), rtol=rtol, atol=atol, name="dx")
    leaves, treedef = tree_flatten(params64)
    dleaves = tree_flatten_with_path(dparams)[0]
    for i, (path, dleaf) in enumerate(dleaves):
        def f_p(p: Array, i: int = i) -> Array:
            new = [*leaves]
            new[i] = p
            return _call(layer, tree_unflatten(treedef, new), x64, state, train)[0]

        assert_close(dleaf, numerical_vjp(f_p, leaves[i], dy, eps), rtol=rtol, atol=atol,
                     name=f"d{path_str(path)}")


def check_adjoint(layer: Any, params: Params, x: Array, *, state: State | None = None,
                  train: bool = False, key: random.Key | None = None, eps: float = 1e-6,
                  rtol: float = 1e-6) -> None:
    """The dot-product test ``<dy, J v> == <vjp(dy), v>`` over input and params (float64)."""
    key = key if key is not None else random.key(0)
    k_dy, k_vx, k_vp = random.split(key, 3)
    params64 = tree_map(lambda a: np.asarray(a, dtype=np.float64), params)
    x64 = np.asarray(x, dtype=np.float64)
    y, vjp = _call(layer, params64, x64, state, train)
    dy = _random_like(k_dy, np.asarray(y))
    vx = _random_like(k_vx, x64)
    leaves, treedef = tree_flatten(params64)
    vp = [_random_like(k, leaf) for k, leaf in zip(random.split(k_vp, max(len(leaves), 1)), leaves,
                                                    strict=False)]

    def f(t: float) -> Array:
        p = tree_unflatten(treedef, [leaf + t * v for leaf, v in zip(leaves, vp, strict=True)])
        return _call(layer, p, x64 + t * vx, state, train)[0]

    jv = (f(eps) - f(-eps)) / (2 * eps)
    dparams, dx = vjp(dy)
    lhs = float(np.vdot(dy, jv))
    rhs = float(np.vdot(dx, vx)) + sum(float(np.vdot(d, v)) for d, v in
                                       zip(tree_flatten(dparams)[0], vp, strict=True))
    if not abs(lhs - rhs) <= rtol * max(abs(lhs), abs(rhs), 1.0):
        msg = f"adjoint check failed: <dy, J v> = {lhs!r} but <J^T dy, v> = {rhs!r}"
        raise AssertionError(msg)


# ------------------------------------------------------------------------- torch
def to_torch(a: Any) -> Any:
    """A torch tensor holding a copy of ``a`` (same dtype)."""
    import torch

    return torch.tensor(np.array(a))


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


def assert_layer_matches_torch(layer: Any, params: Params, module: Any, x: Any, *,
                               state: State | None = None, train: bool = True,
                               dy: Any = None, key: random.Key | None = None,
                               rtol: float | None = None) -> tuple[Array, Any, Array]:
    """Assert an nptfunc layer and a torch module agree: ``y``, ``dx``, every param gradient.

    ``params`` are copied into ``module`` first (by torch name), ``module`` is put
    in training or evaluation mode by ``train``, both run on ``x``, both
    backpropagate the same ``dy`` (random from ``key`` if not given). With
    ``state``, the new state's running statistics are compared with the module's
    buffers after the forward pass (after the state's values have been loaded).

    Returns:
        ``(y, dparams, dx)`` of the nptfunc layer.
    """
    import torch

    x = np.asarray(x)
    params_to_torch(params, module, state)
    module.zero_grad(set_to_none=True)  # a reused module must not accumulate earlier gradients
    module.train(train)
    if state is None and not getattr(layer, "stateful", False):
        y, vjp = layer.apply(params, x)
        new_state = None
    else:
        y, vjp, new_state = layer.apply(params, x, state, train=train)
    xt = to_torch(x).requires_grad_(True)
    yt = module(xt)
    assert_close(y, yt, rtol=rtol, name="y")
    if dy is None:
        dy = _random_like(key if key is not None else random.key(1), np.asarray(y))
    dparams, dx = vjp(dy)
    yt.backward(to_torch(dy).to(yt.dtype))
    assert_close(dx, xt.grad if xt.grad is not None else torch.zeros_like(xt), rtol=rtol, name="dx")
    named = dict(module.named_parameters())
    for path, dleaf in tree_flatten_with_path(dparams)[0]:
        name = path_str(path)
        grad = named[name].grad
        assert_close(dleaf, grad if grad is not None else torch.zeros_like(named[name]), rtol=rtol,
                     name=f"d{name}")
    if new_state is not None:
        buffers = dict(module.named_buffers())
        for path, leaf in tree_flatten_with_path(new_state)[0]:
            name = path_str(path)
            if name in buffers:
                assert_close(np.asarray(leaf), buffers[name], rtol=rtol, name=name)
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


def leaves_equal(a: PyTree, b: PyTree) -> bool:
    """Whether two trees have equal structure and bitwise-equal leaves."""
    la, ta = tree_flatten(a)
    lb, tb = tree_flatten(b)
    return ta == tb and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True))

"""``import nptfunc.torch as torch``: run PyTorch programs with only their imports changed.

The port rule: replace ``torch`` by ``nptfunc.torch`` in the import lines, and
nothing else::

    import nptfunc.torch as torch
    import nptfunc.torch.nn as nn
    import nptfunc.torch.nn.functional as F
    import nptfunc.torch.optim as optim
    from nptfunc.torch.optim.lr_scheduler import StepLR
    from nptfunc.torch.utils.data import DataLoader, TensorDataset

``nptfunc.torch.nn`` *is* :mod:`nptfunc.nn` and ``nptfunc.torch.optim`` *is*
:mod:`nptfunc.optim` (one facade, two import paths). This module adds the
top-level names model code and training loops use: tensor creation, ``cat``,
``stack``, ``flatten``, ``where``, ``no_grad``, ``manual_seed``, ``device``,
dtypes, ``save``/``load``. See ``docs/facade.md``.

Randomness: ``randn``, ``rand``, ``randint``, ``randperm``, modules built without
``key=``, ``F.dropout`` and a shuffling ``DataLoader`` without a key draw from
the facade's key stream, which :func:`manual_seed` starts. That stream is the
facade's one piece of global state; the functional core never reads it.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np

from nptfunc import io, nn, ops, optim, random
from nptfunc.nn._seed import initial_seed, manual_seed, next_key
from nptfunc.nn._tape import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from nptfunc.nn._tensor import Tensor, as_dtype, check_device, device, record, to_array
from nptfunc.nn._tensor import as_tensor as _as_tensor
from nptfunc.nn.functional import log_softmax, relu, softmax
from nptfunc.optim import lr_scheduler
from nptfunc.torch import utils

__all__ = [
    "Size", "Tensor", "abs", "arange", "argmax", "as_tensor", "bool", "cat", "clamp", "cuda", "device",
    "double", "empty", "enable_grad", "exp", "eye", "flatten", "float", "float16", "float32", "float64",
    "from_numpy", "full", "full_like", "initial_seed", "int", "int32", "int64", "is_grad_enabled",
    "is_tensor", "linspace", "load", "log", "log_softmax", "long", "manual_seed", "matmul", "max", "maximum",
    "mean", "min", "minimum", "nn", "no_grad", "ones", "ones_like", "optim", "rand", "randint", "randn",
    "randperm", "relu", "save", "set_grad_enabled", "sigmoid", "softmax", "sqrt", "stack", "sum", "tanh",
    "tensor", "uint8", "utils", "where", "zeros", "zeros_like",
]

# one facade, two import paths: nptfunc.torch.nn IS nptfunc.nn (and so on)
for _name, _module in {"nn": nn, "nn.functional": nn.functional, "nn.init": nn.init, "nn.utils": nn.utils,
                       "optim": optim, "optim.lr_scheduler": lr_scheduler}.items():
    sys.modules[f"{__name__}.{_name}"] = _module

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
float16 = np.dtype(np.float16)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
uint8 = np.dtype(np.uint8)
bool = np.dtype(np.bool_)
float = float32
double = float64
long = int64
int = int32
Size = tuple

_DEFAULT_FLOAT = float32


class _NoAccelerator(types.SimpleNamespace):
    """``torch.cuda`` / ``torch.backends.mps`` / ``torch.accelerator``: nothing is available."""

    def is_available(self) -> bool:
        return False

    def device_count(self) -> int:
        return 0


cuda = _NoAccelerator()
accelerator = _NoAccelerator()
backends = types.SimpleNamespace(mps=_NoAccelerator(), cudnn=types.SimpleNamespace(deterministic=False,
                                                                                    benchmark=False))


def is_tensor(obj: Any) -> bool:
    """Whether ``obj`` is a :class:`Tensor`."""
    return isinstance(obj, Tensor)


# ------------------------------------------------------------------ creation
def _finish(a: np.ndarray, dtype: Any, requires_grad: bool, device_: Any, owner: str) -> Tensor:
    check_device(owner, device_)
    if dtype is not None:
        a = a.astype(as_dtype(owner, dtype), copy=False)
    return Tensor(a, requires_grad=requires_grad)


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data``; Python floats give float32, as torch's."""
    src = data._data if isinstance(data, Tensor) else data
    a = np.array(to_array(src))
    if dtype is None and not isinstance(src, np.ndarray) and a.dtype == np.float64:
        a = a.astype(_DEFAULT_FLOAT)
    return _finish(a, dtype, requires_grad, device, "tensor")


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """``data`` as a tensor, sharing memory where it can (a tensor as it is), as ``torch.as_tensor``."""
    check_device("as_tensor", device)
    t = _as_tensor(data) if isinstance(data, (Tensor, np.ndarray)) else tensor(data)
    return t if dtype is None else t.to(dtype)


def from_numpy(a: np.ndarray) -> Tensor:
    """A tensor sharing ``a``'s memory and dtype."""
    if not isinstance(a, np.ndarray):
        msg = f"from_numpy: expected np.ndarray, got {type(a).__name__}"
        raise TypeError(msg)
    return Tensor._wrap(a)


def _size(size: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of ``size`` (float32 by default)."""
    return _finish(np.zeros(_size(size), dtype or _DEFAULT_FLOAT), None, requires_grad, device, "zeros")


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of ``size`` (float32 by default)."""
    return _finish(np.ones(_size(size), dtype or _DEFAULT_FLOAT), None, requires_grad, device, "ones")


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of ``size`` (torch leaves them uninitialised)."""
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size: Any, fill_value: Any, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """``fill_value`` everywhere; a Python float gives float32."""
    a = np.full(tuple(size), fill_value)
    if dtype is None and a.dtype == np.float64:
        a = a.astype(_DEFAULT_FLOAT)
    return _finish(a, dtype, requires_grad, device, "full")


def zeros_like(input: Any, dtype: Any = None, requires_grad: bool = False, **kwargs: Any) -> Tensor:
    """Zeros of ``input``'s shape and dtype."""
    return _finish(np.zeros_like(to_array(input)), dtype, requires_grad, kwargs.get("device"), "zeros_like")


def ones_like(input: Any, dtype: Any = None, requires_grad: bool = False, **kwargs: Any) -> Tensor:
    """Ones of ``input``'s shape and dtype."""
    return _finish(np.ones_like(to_array(input)), dtype, requires_grad, kwargs.get("device"), "ones_like")


def full_like(input: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False,
              **kwargs: Any) -> Tensor:
    """``fill_value`` in ``input``'s shape and dtype."""
    return _finish(np.full_like(to_array(input), fill_value), dtype, requires_grad, kwargs.get("device"),
                   "full_like")


def arange(start: Any, end: Any = None, step: Any = 1, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    """``start, start + step, ...`` below ``end``: int64 for integers, float32 for floats, as torch's."""
    a = np.arange(start, end, step) if end is not None else np.arange(start)
    if dtype is None:
        a = a.astype(np.int64 if a.dtype.kind in "iu" else _DEFAULT_FLOAT)
    return _finish(a, dtype, requires_grad, device, "arange")


def linspace(start: Any, end: Any, steps: int, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` (float32 by default)."""
    return _finish(np.linspace(start, end, steps), dtype or _DEFAULT_FLOAT, requires_grad, device, "linspace")


def eye(n: int, m: int | None = None, dtype: Any = None, device: Any = None,
        requires_grad: bool = False) -> Tensor:
    """The identity matrix (float32 by default)."""
    return _finish(np.eye(n, m), dtype or _DEFAULT_FLOAT, requires_grad, device, "eye")


def _key(generator: Any) -> random.Key:
    return next_key() if generator is None else nn._seed.as_key(generator, "generator")


def randn(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False,
          generator: Any = None) -> Tensor:
    """Standard normal values from the seeded key stream (or ``generator=``, a key or seed)."""
    a = random.normal(_key(generator), _size(size), dtype=np.float64)
    return _finish(a, dtype or _DEFAULT_FLOAT, requires_grad, device, "randn")


def rand(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False,
         generator: Any = None) -> Tensor:
    """Values from ``U(0, 1)`` from the seeded key stream (or ``generator=``)."""
    a = random.uniform(_key(generator), _size(size), dtype=np.float64)
    return _finish(a, dtype or _DEFAULT_FLOAT, requires_grad, device, "rand")


def randint(low: Any, high: Any = None, size: Any = (), dtype: Any = None, device: Any = None,
            generator: Any = None, requires_grad: bool = False) -> Tensor:
    """Integers in ``[low, high)`` (int64) from the seeded key stream (or ``generator=``)."""
    if high is None:
        low, high = 0, low
    a = random.generator(_key(generator)).integers(low, high, size=tuple(size), dtype=np.int64)
    return _finish(a, dtype, requires_grad, device, "randint")


def randperm(n: Any, dtype: Any = None, device: Any = None, generator: Any = None,
             requires_grad: bool = False) -> Tensor:
    """A random permutation of ``0..n-1`` (int64) from the seeded key stream (or ``generator=``)."""
    return _finish(random.permutation(_key(generator), n).astype(np.int64), dtype, requires_grad, device,
                   "randperm")


# ------------------------------------------------------------- combinations
def cat(tensors: Any, dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Join tensors along ``dim`` (``ops.concatenate``). Equivalent to ``torch.cat``."""
    ts = tuple(tensors)
    y, vjp = ops.concatenate(*(to_array(t) for t in ts), axis=dim if axis is None else axis)
    return record("cat", y, vjp, ts)


concat = cat


def stack(tensors: Any, dim: int = 0) -> Tensor:
    """Stack tensors along a new ``dim`` (``ops.stack``). Equivalent to ``torch.stack``."""
    ts = tuple(tensors)
    y, vjp = ops.stack(*(to_array(t) for t in ts), axis=dim)
    return record("stack", y, vjp, ts)


def where(condition: Any, input: Any, other: Any) -> Tensor:
    """``input`` where ``condition`` else ``other`` (``ops.where``). Equivalent to ``torch.where``."""
    def arg(v: Any) -> Any:
        return v._data if isinstance(v, Tensor) else v
    y, vjp = ops.where(to_array(condition), arg(input), arg(other))
    return record("where", y, vjp, (None, input, other))


def flatten(input: Any, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Equivalent to ``torch.flatten``."""
    return _as_tensor(input).flatten(start_dim, end_dim)


def _method(name: str) -> Any:
    def f(input: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(_as_tensor(input), name)(*args, **kwargs)
    f.__name__ = name
    f.__doc__ = f"Equivalent to ``torch.{name}``: ``input.{name}(...)``."
    return f


exp, log, sqrt, tanh, sigmoid, abs, clamp = (_method(n) for n in
                                             ("exp", "log", "sqrt", "tanh", "sigmoid", "abs", "clamp"))
sum, mean, max, min, argmax, argmin = (_method(n) for n in
                                       ("sum", "mean", "max", "min", "argmax", "argmin"))
matmul, maximum, minimum, reshape, permute, transpose, squeeze, unsqueeze = (
    _method(n) for n in ("matmul", "maximum", "minimum", "reshape", "permute", "transpose", "squeeze",
                         "unsqueeze"))


# --------------------------------------------------------------- save, load
def save(obj: Any, f: Any, **kwargs: Any) -> None:
    """Write a state dict (or any tree of arrays) as nptfunc's safe ``.npz``, exactly at ``f``.

    Any file name works (``"mnist_cnn.pt"``); tensors are stored as arrays. No pickle.
    """
    io.save(_arrays(obj), f)


def load(f: Any, map_location: Any = None, weights_only: Any = None, **kwargs: Any) -> Any:
    """Read what :func:`save` wrote (arrays, not tensors: ``load_state_dict`` takes them)."""
    return io.load(f)


def _arrays(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj._data
    if isinstance(obj, dict):
        return {k: _arrays(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_arrays(v) for v in obj)
    return obj

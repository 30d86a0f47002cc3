"""``Tensor``: a thin wrapper around an ndarray that records core vjps on the tape.

Every differentiable method calls one function of :mod:`nptfunc.ops` (or a layer
of the core) and, when grad mode is on and an input requires grad, records that
function's vjp in a :class:`~nptfunc.nn._tape.Node`. The tensor adds no derivative
of its own. Why a wrapper and not an ndarray subclass: every NumPy function
would silently return a subclass instance without a tape link (a wrong gradient,
not an error); a wrapper only does what it defines, and ``__array__`` /
``__array_ufunc__`` make it usable wherever NumPy expects an array.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from nptfunc import ops
from nptfunc._types import Array
from nptfunc.convert import to_numpy
from nptfunc.nn._tape import Node, _mode, run_backward

__all__ = ["Tensor", "as_tensor", "check_device", "device", "record", "to_array"]


to_array = to_numpy
"""A NumPy array from a tensor (its array, via ``__array__``), an array, a list or a torch tensor."""


def check_device(owner: str, device: Any) -> None:
    """Accept ``None``, ``'cpu'`` or a cpu :class:`nptfunc.torch.device`; anything else is a ValueError."""
    if device is not None and str(device) not in ("cpu", "cpu:0"):
        msg = (f"{owner}: nptfunc runs on the CPU with NumPy (there is no GPU backend); expected device "
               f"None or 'cpu', got {device!r}")
        raise ValueError(msg)


class device:  # noqa: N801 - torch's name
    """A device name, as ``torch.device``; only ``'cpu'`` exists (there is no GPU backend)."""

    __slots__ = ("index", "type")

    def __init__(self, type: str, index: int | None = None) -> None:
        name = str(type)
        kind, _, idx = name.partition(":")
        self.type = kind
        self.index = int(idx) if idx else index

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type={self.type!r})" if self.index is None else \
            f"device(type={self.type!r}, index={self.index})"

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def _is_float(a: Array) -> bool:
    return a.dtype.kind in "fc"


def record(name: str, y: Array, vjp: Callable[[Array], Sequence[Any]], inputs: tuple[Any, ...]) -> Tensor:
    """``y`` as a tensor; with grad mode on and a floating input that requires grad, linked by a node."""
    out = _new(Tensor)
    out._data = y if type(y) is np.ndarray else np.asarray(y)  # NumPy gives scalars for 0-d results
    out.grad = None
    out._version = 0
    out._proxy = False
    out.requires_grad = False
    out._node = None
    if _mode.enabled and out._data.dtype.kind in "fc":
        for t in inputs:
            if isinstance(t, Tensor) and t.requires_grad:
                out.requires_grad = True
                out._node = Node(name, vjp, tuple([t if isinstance(t, Tensor) else None for t in inputs]))
                break
    return out


_new = object.__new__


def _unary(name: str, f: Callable) -> Callable:
    def method(self: Tensor) -> Tensor:
        y, vjp = f(self._data)
        return record(name, y, vjp, (self,))
    method.__name__ = name
    method.__doc__ = f"Equivalent to ``torch.Tensor.{name}`` (the core's ``ops.{f.__name__}``)."
    return method


def _arg(x: Any) -> Any:
    """An op argument: a tensor's array, a number as it is, anything else as an array."""
    if isinstance(x, Tensor):
        return x._data
    if isinstance(x, (numbers.Number, np.ndarray)):
        return x
    return to_array(x)


def _binary(name: str, f: Callable, reflected: bool = False) -> Callable:
    def method(self: Tensor, other: Any) -> Tensor:
        a, b = (other, self) if reflected else (self, other)
        y, vjp = f(_arg(a), _arg(b))
        return record(name, y, vjp, (a, b))
    method.__name__ = name
    return method


def _compare(f: Callable) -> Callable:
    def method(self: Tensor, other: Any) -> Tensor:
        return Tensor._wrap(f(self._data, _arg(other)))
    return method


def _dims(args: tuple[Any, ...]) -> tuple[int, ...]:
    """``(2, 3)`` from ``f(2, 3)`` or ``f((2, 3))`` (torch accepts both)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(int(a) for a in args[0])
    return tuple(int(a) for a in args)


def _dim_arg(dim: Any, axis: Any) -> Any:
    return axis if dim is None else dim


class MinMax(NamedTuple):
    """``(values, indices)``, as torch's ``max(dim)`` returns."""

    values: Tensor
    indices: Tensor


_NP_DTYPES = {"float32": np.float32, "float64": np.float64, "float": np.float32, "double": np.float64,
              "int64": np.int64, "long": np.int64, "int32": np.int32, "int": np.int32, "bool": np.bool_,
              "float16": np.float16, "half": np.float16, "uint8": np.uint8, "int8": np.int8,
              "int16": np.int16}


def as_dtype(owner: str, dtype: Any) -> np.dtype:
    """A NumPy dtype from a NumPy dtype, a type, a name, or a torch dtype."""
    if type(dtype).__module__.startswith("torch"):
        dtype = str(dtype).removeprefix("torch.")
    if isinstance(dtype, str) and dtype in _NP_DTYPES:
        dtype = _NP_DTYPES[dtype]
    try:
        return np.dtype(dtype)
    except TypeError:
        msg = f"{owner}: expected a dtype (float32, float64, int64, ...), got {dtype!r}"
        raise TypeError(msg) from None


class Tensor:
    """An array with an optional gradient link, as ``torch.Tensor``.

    ``.data`` is the NumPy array (nptfunc never writes into it: operations make
    new arrays), ``.grad`` an array of the tensor's shape and dtype once a backward
    reached it (leaves only), ``.grad_fn`` the tape node that made it (``None`` for
    a leaf). Arithmetic, indexing, reductions and shape methods follow torch's
    semantics and broadcasting; each records the vjp of one core function.

    Args:
        data: an array, a nested list or a number (kept as an array of its dtype).
        requires_grad: whether ``backward`` accumulates into this leaf's ``.grad``.
    """

    __slots__ = ("__weakref__", "_data", "_node", "_proxy", "_version", "grad", "requires_grad")
    __array_priority__ = 1000.0

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        a = to_array(data)
        if requires_grad and not _is_float(a):
            msg = f"Tensor: only floating tensors can require gradients, got dtype {a.dtype}"
            raise RuntimeError(msg)
        self._data = a
        self.grad: Array | None = None
        self.requires_grad = bool(requires_grad)
        self._node: Node | None = None
        self._version = 0
        self._proxy = False

    @classmethod
    def _wrap(cls, a: Any) -> Tensor:
        """A leaf tensor (no grad) around ``a``, without checks."""
        t = Tensor.__new__(Tensor)
        t._data = a if isinstance(a, np.ndarray) else np.asarray(a)
        t.grad = None
        t.requires_grad = False
        t._node = None
        t._version = 0
        t._proxy = False
        return t

    # ------------------------------------------------------------- the array
    @property
    def data(self) -> Array:
        """The value as a NumPy array (replace it, do not write into it)."""
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = to_array(value)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape (a tuple; torch's ``torch.Size`` is one too)."""
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype (``nptfunc.torch.float32`` is ``np.float32``)."""
        return self._data.dtype

    @property
    def ndim(self) -> int:
        """The number of axes."""
        return self._data.ndim

    @property
    def device(self) -> Any:
        """Always the CPU."""
        return device("cpu")

    @property
    def is_leaf(self) -> bool:
        """Whether no recorded operation made this tensor."""
        return self._node is None

    @property
    def grad_fn(self) -> Node | None:
        """The tape node that made this tensor, ``None`` for a leaf."""
        return self._node

    def dim(self) -> int:
        """The number of axes (``torch.Tensor.dim``)."""
        return self._data.ndim

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        """The shape, or the length of axis ``dim`` (``torch.Tensor.size``)."""
        return self._data.shape if dim is None else self._data.shape[dim]

    def numel(self) -> int:
        """The number of elements (``torch.Tensor.numel``)."""
        return int(self._data.size)

    def __len__(self) -> int:
        if not self._data.ndim:
            msg = "Tensor: len() of a 0-d tensor"
            raise TypeError(msg)
        return self._data.shape[0]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Array:
        if copy:
            return np.array(self._data, dtype=dtype)
        return np.asarray(self._data, dtype=dtype)

    def numpy(self) -> Array:
        """The NumPy array (shared, as torch's); an error for a tensor that requires grad."""
        if self.requires_grad:
            msg = ("Tensor.numpy: can't call numpy() on a tensor that requires grad; "
                   "use tensor.detach().numpy()")
            raise RuntimeError(msg)
        return self._data

    def item(self) -> Any:
        """The value as a Python number (a tensor with one element)."""
        if self._data.size != 1:
            msg = (f"Tensor.item: only a tensor with one element converts to a Python number; this "
                   f"one has shape {self._data.shape}")
            raise ValueError(msg)
        return self._data.reshape(()).item()

    def tolist(self) -> Any:
        """The value as nested Python lists."""
        return self._data.tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            msg = (f"Tensor: only integer tensors of one element can be used as an index, "
                   f"got {self._data.dtype}")
            raise TypeError(msg)
        return int(self.item())

    def __bool__(self) -> bool:
        if self._data.size != 1:
            msg = (f"Tensor: the truth value of a tensor with {self._data.size} elements is ambiguous; "
                   f"use .any() or .all()")
            raise RuntimeError(msg)
        return bool(self._data.reshape(()))

    def __format__(self, spec: str) -> str:
        if self._data.size == 1 and spec:
            return format(self.item(), spec)
        return format(str(self), spec)

    def __repr__(self) -> str:
        body = np.array2string(self._data, separator=", ", prefix="tensor(")
        extra = "" if self._data.dtype in (np.float32, np.int64, np.bool_) else f", dtype={self._data.dtype}"
        if self._node is not None:
            extra += f", grad_fn={self._node!r}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __hash__ = object.__hash__

    # -------------------------------------------------------------- autograd
    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set :attr:`requires_grad` on a leaf and return ``self``, as torch."""
        if not isinstance(requires_grad, bool):
            msg = f"Tensor.requires_grad_: expected a bool, got {requires_grad!r}"
            raise TypeError(msg)
        if self._node is not None and not requires_grad:
            msg = ("Tensor.requires_grad_: you can only change requires_grad flags of leaf tensors; "
                   "use .detach() for a tensor without a gradient link")
            raise RuntimeError(msg)
        if requires_grad and not _is_float(self._data):
            msg = (f"Tensor.requires_grad_: only floating tensors can require gradients, "
                   f"got {self._data.dtype}")
            raise RuntimeError(msg)
        self.requires_grad = requires_grad
        return self

    def detach(self) -> Tensor:
        """The same array without a gradient link (shared, as torch's)."""
        return Tensor._wrap(self._data)

    def accumulate_grad(self, g: Any, *, fresh: bool = False) -> None:
        """Add ``g`` (of this tensor's shape) into :attr:`grad`; nothing if it does not require grad.

        The sum is a new array, in this tensor's dtype: a ``.grad`` array taken
        earlier is not changed. ``g`` is copied unless ``fresh`` says that nothing
        else refers to it (the tape's vjp results), so that ``.grad`` never shares
        memory with the caller's arrays.
        """
        if not self.requires_grad:
            return
        g = to_array(g)
        if g.shape != self._data.shape:
            msg = (f"{type(self).__name__}: gradient of shape {g.shape} for a "
                   f"{type(self).__name__.lower()} of shape {self._data.shape}")
            raise ValueError(msg)
        if self.grad is None:
            self.grad = g if fresh and g.dtype == self._data.dtype else np.array(g, dtype=self._data.dtype)
        else:
            total = self.grad + g
            self.grad = total if total.dtype == self._data.dtype else total.astype(self._data.dtype)

    def backward(self, gradient: Any = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs: Any = None) -> None:
        """Accumulate the gradient of this tensor into every leaf that requires grad.

        Args:
            gradient: the cotangent, of this tensor's shape; 1 by default (only for a
                tensor with one element, as torch).
            retain_graph: keep the graph's saved values for another backward
                (by default they are freed, as torch's).
            create_graph: higher-order gradients are not supported (an error).
            inputs: not supported (an error).

        Raises:
            RuntimeError: for a tensor that does not require grad, a graph already
                freed, a saved tensor changed in place, or an implied gradient of a
                tensor with several elements.
        """
        if create_graph or inputs is not None:
            msg = ("Tensor.backward: higher-order gradients (create_graph=True) and inputs= are not "
                   "supported: the tape records the core's vjps, which are not themselves recorded")
            raise NotImplementedError(msg)
        if not self.requires_grad:
            msg = ("Tensor.backward: element 0 of tensors does not require grad and does not have a "
                   "grad_fn (nothing that requires grad was used, or it ran under no_grad)")
            raise RuntimeError(msg)
        if gradient is None:
            if self._data.size != 1:
                msg = (f"Tensor.backward: a gradient can be implied only for a tensor with one element; "
                       f"this one has shape {self._data.shape}: pass gradient=")
                raise RuntimeError(msg)
            g = np.ones(self._data.shape, self._data.dtype)
        else:
            g = to_array(gradient)
            if g.shape != self._data.shape:
                msg = f"Tensor.backward: expected gradient of shape {self._data.shape}, got {g.shape}"
                raise ValueError(msg)
            g = g.astype(self._data.dtype, copy=False)
        run_backward([self], [g], retain_graph=bool(retain_graph))

    def retain_grad(self) -> None:
        """Not supported: non-leaf gradients are not kept (an error says so)."""
        msg = ("Tensor.retain_grad: non-leaf gradients are not kept; make the tensor a leaf "
               "(detach().requires_grad_())")
        raise NotImplementedError(msg)

    # ------------------------------------------------------------ in place
    def _in_place(self, name: str, new: Array) -> Tensor:
        if self.requires_grad and _mode.enabled:
            msg = (f"Tensor.{name}: in-place operations on a tensor that requires grad are not supported "
                   f"(the tape could not differentiate them); use the out-of-place {name.rstrip('_')}, "
                   f"or run it under no_grad()")
            raise RuntimeError(msg)
        self._data = np.asarray(new, dtype=self._data.dtype)
        self._version += 1
        return self

    def zero_(self) -> Tensor:
        """Set every element to 0 (replaces the array; see :meth:`_in_place`)."""
        return self._in_place("zero_", np.zeros_like(self._data))

    def fill_(self, value: Any) -> Tensor:
        """Set every element to ``value``."""
        return self._in_place("fill_", np.full_like(self._data, value))

    def copy_(self, src: Any) -> Tensor:
        """Set the value to ``src`` (broadcast to this shape)."""
        return self._in_place("copy_", np.broadcast_to(to_array(src), self._data.shape))

    def add_(self, other: Any, alpha: float = 1) -> Tensor:
        """``self += alpha * other``."""
        return self._in_place("add_", self._data + alpha * to_array(other))

    def sub_(self, other: Any, alpha: float = 1) -> Tensor:
        """``self -= alpha * other``."""
        return self._in_place("sub_", self._data - alpha * to_array(other))

    def mul_(self, other: Any) -> Tensor:
        """``self *= other``."""
        return self._in_place("mul_", self._data * to_array(other))

    def div_(self, other: Any) -> Tensor:
        """``self /= other``."""
        return self._in_place("div_", self._data / to_array(other))

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:
        """Clamp in place."""
        return self._in_place("clamp_", np.clip(self._data, min, max))

    def masked_fill_(self, mask: Any, value: Any) -> Tensor:
        """``self[mask] = value``."""
        return self._in_place("masked_fill_", np.where(to_array(mask), value, self._data))

    def __setitem__(self, index: Any, value: Any) -> None:
        new = np.array(self._data)
        new[_index(index)] = to_array(value)
        self._in_place("__setitem__", new)

    def __iadd__(self, other: Any) -> Tensor:
        return self._in_place("__iadd__", self._data + to_array(other))

    def __isub__(self, other: Any) -> Tensor:
        return self._in_place("__isub__", self._data - to_array(other))

    def __imul__(self, other: Any) -> Tensor:
        return self._in_place("__imul__", self._data * to_array(other))

    def __itruediv__(self, other: Any) -> Tensor:
        return self._in_place("__itruediv__", self._data / to_array(other))

    # ----------------------------------------------------------- arithmetic
    __add__ = _binary("add", ops.add)
    __radd__ = _binary("add", ops.add, reflected=True)
    __sub__ = _binary("sub", ops.sub)
    __rsub__ = _binary("sub", ops.sub, reflected=True)
    __mul__ = _binary("mul", ops.mul)
    __rmul__ = _binary("mul", ops.mul, reflected=True)
    __truediv__ = _binary("div", ops.div)
    __rtruediv__ = _binary("div", ops.div, reflected=True)
    __pow__ = _binary("pow", ops.pow)
    __rpow__ = _binary("pow", ops.pow, reflected=True)
    __matmul__ = _binary("matmul", ops.matmul)
    __rmatmul__ = _binary("matmul", ops.matmul, reflected=True)
    add = _binary("add", ops.add)
    sub = _binary("sub", ops.sub)
    mul = _binary("mul", ops.mul)
    div = _binary("div", ops.div)
    pow = _binary("pow", ops.pow)
    matmul = _binary("matmul", ops.matmul)
    maximum = _binary("maximum", ops.maximum)
    minimum = _binary("minimum", ops.minimum)

    def __neg__(self) -> Tensor:
        y, vjp = ops.neg(self._data)
        return record("neg", y, vjp, (self,))

    neg = __neg__

    def __pos__(self) -> Tensor:
        return self

    exp = _unary("exp", ops.exp)
    log = _unary("log", ops.log)
    sqrt = _unary("sqrt", ops.sqrt)
    tanh = _unary("tanh", ops.tanh)
    sigmoid = _unary("sigmoid", ops.sigmoid)
    relu = _unary("relu", ops.relu)
    abs = _unary("abs", ops.abs)
    __abs__ = abs

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        """``self`` limited to ``[min, max]``. Equivalent to ``torch.Tensor.clamp``."""
        y, vjp = ops.clamp(self._data, _arg(min) if min is not None else None,
                           _arg(max) if max is not None else None)
        return record("clamp", y, vjp, (self, min, max))

    clip = clamp

    def masked_fill(self, mask: Any, value: Any) -> Tensor:
        """``value`` where ``mask``, else ``self``. Equivalent to ``torch.Tensor.masked_fill``."""
        y, vjp = ops.masked_fill(self._data, _arg(mask), _arg(value))
        return record("masked_fill", y, vjp, (self, None, value))

    def softmax(self, dim: int) -> Tensor:
        """Equivalent to ``torch.Tensor.softmax(dim)``."""
        y, vjp = ops.softmax(self._data, dim)
        return record("softmax", y, vjp, (self,))

    def log_softmax(self, dim: int) -> Tensor:
        """Equivalent to ``torch.Tensor.log_softmax(dim)``."""
        y, vjp = ops.log_softmax(self._data, dim)
        return record("log_softmax", y, vjp, (self,))

    # ----------------------------------------------------------- comparisons
    __eq__ = _compare(np.equal)  # type: ignore[assignment]
    __ne__ = _compare(np.not_equal)  # type: ignore[assignment]
    __lt__ = _compare(np.less)
    __le__ = _compare(np.less_equal)
    __gt__ = _compare(np.greater)
    __ge__ = _compare(np.greater_equal)
    eq = _compare(np.equal)
    ne = _compare(np.not_equal)
    lt = _compare(np.less)
    le = _compare(np.less_equal)
    gt = _compare(np.greater)
    ge = _compare(np.greater_equal)

    def __invert__(self) -> Tensor:
        return Tensor._wrap(np.invert(self._data))

    def __and__(self, other: Any) -> Tensor:
        return Tensor._wrap(np.bitwise_and(self._data, _arg(other)))

    def __or__(self, other: Any) -> Tensor:
        return Tensor._wrap(np.bitwise_or(self._data, _arg(other)))

    def any(self, dim: int | None = None, keepdim: bool = False, *, axis: Any = None,
               keepdims: bool | None = None) -> Tensor:
        """Whether any element is true (over ``dim``)."""
        return Tensor._wrap(np.any(self._data, axis=_dim_arg(dim, axis),
                                   keepdims=keepdim if keepdims is None else keepdims))

    def all(self, dim: int | None = None, keepdim: bool = False, *, axis: Any = None,
               keepdims: bool | None = None) -> Tensor:
        """Whether every element is true (over ``dim``)."""
        return Tensor._wrap(np.all(self._data, axis=_dim_arg(dim, axis),
                                   keepdims=keepdim if keepdims is None else keepdims))

    # ------------------------------------------------------------ reductions
    def sum(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None, axis: Any = None,
            keepdims: bool | None = None, out: None = None) -> Tensor:
        """Sum over ``dim`` (all axes by default). Equivalent to ``torch.Tensor.sum``.

        Booleans and integers sum to int64, as torch's.
        """
        a = self._data
        if dtype is not None:
            a = a.astype(as_dtype("Tensor.sum", dtype))
        elif a.dtype.kind in "biu":
            a = a.astype(np.int64)
        y, vjp = ops.sum(a, axis=_dim_arg(dim, axis), keepdims=keepdim if keepdims is None else keepdims)
        return record("sum", y, vjp, (self,))

    def mean(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None, axis: Any = None,
             keepdims: bool | None = None, out: None = None) -> Tensor:
        """Mean over ``dim`` (all axes by default). Equivalent to ``torch.Tensor.mean``."""
        if not _is_float(self._data):
            msg = f"Tensor.mean: expected a floating tensor, got dtype {self._data.dtype}; use .float() first"
            raise TypeError(msg)
        y, vjp = ops.mean(self._data, axis=_dim_arg(dim, axis),
                          keepdims=keepdim if keepdims is None else keepdims)
        return record("mean", y, vjp, (self,))

    def _extreme(self, name: str, largest: bool, dim: Any, keepdim: bool) -> Any:
        if isinstance(dim, Tensor):
            return self.maximum(dim) if largest else self.minimum(dim)
        if dim is None:
            y, vjp = (ops.max if largest else ops.min)(self._data)
            return record(name, y, vjp, (self,))
        (y, idx), vjp = (ops.max_with_indices if largest else ops.min_with_indices)(self._data, dim,
                                                                                         keepdims=keepdim)
        return MinMax(record(name, y, vjp, (self,)), Tensor._wrap(idx))

    def max(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None,
            keepdims: bool | None = None) -> Any:
        """The maximum; with ``dim``, ``(values, indices)``; with a tensor, the elementwise maximum."""
        return self._extreme("max", True, _dim_arg(dim, axis),
                             keepdim if keepdims is None else keepdims)

    def min(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None,
            keepdims: bool | None = None) -> Any:
        """The minimum; with ``dim``, ``(values, indices)``; with a tensor, the elementwise minimum."""
        return self._extreme("min", False, _dim_arg(dim, axis),
                             keepdim if keepdims is None else keepdims)

    def amax(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None,
             keepdims: bool | None = None) -> Tensor:
        """Maximum over ``dim``; ties share the gradient. Equivalent to ``torch.amax``."""
        y, vjp = ops.max(self._data, axis=_dim_arg(dim, axis),
                           keepdims=keepdim if keepdims is None else keepdims)
        return record("amax", y, vjp, (self,))

    def amin(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None,
             keepdims: bool | None = None) -> Tensor:
        """Minimum over ``dim``; ties share the gradient. Equivalent to ``torch.amin``."""
        y, vjp = ops.min(self._data, axis=_dim_arg(dim, axis),
                           keepdims=keepdim if keepdims is None else keepdims)
        return record("amin", y, vjp, (self,))

    def argmax(self, dim: int | None = None, keepdim: bool = False, *, axis: Any = None,
               keepdims: bool | None = None) -> Tensor:
        """Index of the maximum (of the flattened tensor without ``dim``), as int64."""
        dim, keepdim = _dim_arg(dim, axis), keepdim if keepdims is None else keepdims
        if dim is None:
            return Tensor._wrap(np.asarray(np.argmax(self._data), np.int64))
        return Tensor._wrap(np.argmax(self._data, axis=dim, keepdims=keepdim).astype(np.int64))

    def argmin(self, dim: int | None = None, keepdim: bool = False, *, axis: Any = None,
               keepdims: bool | None = None) -> Tensor:
        """Index of the minimum (of the flattened tensor without ``dim``), as int64."""
        dim, keepdim = _dim_arg(dim, axis), keepdim if keepdims is None else keepdims
        if dim is None:
            return Tensor._wrap(np.asarray(np.argmin(self._data), np.int64))
        return Tensor._wrap(np.argmin(self._data, axis=dim, keepdims=keepdim).astype(np.int64))

    # ------------------------------------------------------------ structure
    def reshape(self, *shape: Any) -> Tensor:
        """The same elements in ``shape`` (one ``-1`` allowed). Equivalent to ``torch.Tensor.reshape``."""
        y, vjp = ops.reshape(self._data, _dims(shape))
        return record("reshape", y, vjp, (self,))

    view = reshape

    def view_as(self, other: Any) -> Tensor:
        """``self.view(other.shape)``."""
        return self.reshape(tuple(np.shape(other)))

    reshape_as = view_as

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Axes ``start_dim..end_dim`` flattened into one. Equivalent to ``torch.flatten``."""
        shape = self._data.shape
        nd = max(len(shape), 1)
        s, e = start_dim % nd, end_dim % nd
        if s > e:
            msg = f"Tensor.flatten: start_dim {start_dim} comes after end_dim {end_dim}"
            raise ValueError(msg)
        if not shape:
            return self.reshape(1)
        middle = int(np.prod(shape[s:e + 1]))
        return self.reshape(*shape[:s], middle, *shape[e + 1:])

    def permute(self, *dims: Any) -> Tensor:
        """Axes in the order ``dims``. Equivalent to ``torch.Tensor.permute``."""
        y, vjp = ops.permute(self._data, _dims(dims))
        return record("permute", y, vjp, (self,))

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Axes ``dim0`` and ``dim1`` swapped. Equivalent to ``torch.Tensor.transpose``."""
        axes = list(range(self._data.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return self.permute(*axes)

    def t(self) -> Tensor:
        """The transpose of a matrix (a vector as it is). Equivalent to ``torch.Tensor.t``."""
        if self._data.ndim < 2:
            return self
        if self._data.ndim > 2:
            msg = f"Tensor.t: expects a tensor with <= 2 dimensions, got {self._data.ndim}; use transpose()"
            raise ValueError(msg)
        return self.transpose(0, 1)

    @property
    def T(self) -> Tensor:  # noqa: N802 - torch's name
        """All axes reversed."""
        return self.permute(*reversed(range(self._data.ndim)))

    def unsqueeze(self, dim: int) -> Tensor:
        """A new axis of length 1 at ``dim``. Equivalent to ``torch.Tensor.unsqueeze``."""
        shape = list(self._data.shape)
        shape.insert(dim % (len(shape) + 1), 1)
        return self.reshape(tuple(shape))

    def squeeze(self, dim: Any = None) -> Tensor:
        """Axes of length 1 removed (only ``dim``'s, if given). Equivalent to ``torch.Tensor.squeeze``."""
        shape = self._data.shape
        if dim is None:
            keep = [n for n in shape if n != 1]
        else:
            dims = {d % max(len(shape), 1) for d in ((dim,) if isinstance(dim, int) else dim)}
            keep = [n for i, n in enumerate(shape) if i not in dims or n != 1]
        return self.reshape(tuple(keep))

    def contiguous(self) -> Tensor:
        """``self`` (NumPy handles strides)."""
        return self

    def clone(self) -> Tensor:
        """A copy that stays on the tape. Equivalent to ``torch.Tensor.clone``."""
        y, vjp = ops.mul(self._data, 1)
        return record("clone", np.array(y), vjp, (self, None))

    def expand(self, *sizes: Any) -> Tensor:
        """A broadcast view to ``sizes`` (``-1`` keeps an axis). Equivalent to ``torch.Tensor.expand``."""
        sizes = _dims(sizes)
        lead = len(sizes) - self._data.ndim
        shape = tuple(s if s != -1 else self._data.shape[i - lead] for i, s in enumerate(sizes))
        y, vjp = ops.expand(self._data, *shape)
        return record("expand", y, vjp, (self,))

    def expand_as(self, other: Any) -> Tensor:
        """``self.expand(other.shape)``."""
        return self.expand(tuple(np.shape(other)))

    def __getitem__(self, index: Any) -> Tensor:
        y, vjp = ops.getitem(self._data, _index(index))
        return record("getitem", y, vjp, (self,))

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))

    # ----------------------------------------------------------- conversions
    def to(self, *args: Any, dtype: Any = None, device: Any = None, **kwargs: Any) -> Tensor:
        """``to(dtype)``, ``to(device)``, ``to(other)``: a cast on the tape; the CPU is the only device."""
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif a is None:
                continue
            elif isinstance(a, str) or type(a).__name__ == "device":
                device = a
            else:
                dtype = a
        check_device("Tensor.to", device)
        if dtype is None:
            return self
        return self.type(dtype)

    def type(self, dtype: Any) -> Tensor:
        """``self`` cast to ``dtype`` (floating casts stay on the tape)."""
        dt = as_dtype("Tensor.to", dtype)
        if dt == self._data.dtype:
            return self
        y, vjp = ops.astype(self._data, dt)
        return record("to", y, vjp, (self,))

    def type_as(self, other: Any) -> Tensor:
        """``self`` cast to ``other``'s dtype."""
        return self.type(np.asarray(other).dtype if not isinstance(other, Tensor) else other.dtype)

    def cpu(self) -> Tensor:
        """``self``: tensors live on the CPU."""
        return self

    def cuda(self, *args: Any, **kwargs: Any) -> Tensor:
        """An error: there is no GPU backend."""
        check_device("Tensor.cuda", "cuda")
        return self

    def float(self) -> Tensor:
        """Cast to float32."""
        return self.type(np.float32)

    def double(self) -> Tensor:
        """Cast to float64."""
        return self.type(np.float64)

    def long(self) -> Tensor:
        """Cast to int64 (no gradient)."""
        return Tensor._wrap(self._data.astype(np.int64))

    def int(self) -> Tensor:
        """Cast to int32 (no gradient)."""
        return Tensor._wrap(self._data.astype(np.int32))

    def bool(self) -> Tensor:
        """Cast to bool (no gradient)."""
        return Tensor._wrap(self._data.astype(np.bool_))

    # ----------------------------------------------------- NumPy interplay
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """NumPy ufuncs on tensors: the arithmetic ones go on the tape; others compute detached arrays."""
        if method == "__call__" and not kwargs:
            op = _UFUNC_OPS.get(ufunc)
            if op is not None and len(inputs) == 2:
                y, vjp = op(_arg(inputs[0]), _arg(inputs[1]))
                return record(ufunc.__name__, y, vjp, inputs)
            if op is not None and len(inputs) == 1:
                y, vjp = op(_arg(inputs[0]))
                return record(ufunc.__name__, y, vjp, inputs)
        if _mode.enabled and any(isinstance(t, Tensor) and t.requires_grad for t in inputs):
            msg = (f"Tensor: numpy.{ufunc.__name__} has no gradient on the tape; use a tensor method, or "
                   f"apply it to tensor.detach()")
            raise TypeError(msg)
        arrays = [t._data if isinstance(t, Tensor) else t for t in inputs]
        return getattr(ufunc, method)(*arrays, **kwargs)


_UFUNC_OPS: dict[np.ufunc, Callable] = {
    np.add: ops.add, np.subtract: ops.sub, np.multiply: ops.mul, np.true_divide: ops.div,
    np.power: ops.pow, np.matmul: ops.matmul, np.negative: ops.neg, np.exp: ops.exp, np.log: ops.log,
    np.sqrt: ops.sqrt, np.tanh: ops.tanh, np.absolute: ops.abs, np.maximum: ops.maximum,
    np.minimum: ops.minimum,
}


def _index(index: Any) -> Any:
    """An index with tensors replaced by their arrays."""
    if isinstance(index, Tensor):
        return index._data
    if isinstance(index, tuple):
        return tuple(i._data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray([i._data if isinstance(i, Tensor) else i for i in index])
    return index


def as_tensor(x: Any) -> Tensor:
    """``x`` as it is if a tensor, else a leaf tensor around its array (no copy)."""
    if isinstance(x, Tensor):
        return x
    return Tensor._wrap(to_array(x))

"""``nn.Parameter``: an array the facade optimises, with its accumulated gradient."""

from __future__ import annotations

from typing import Any

import numpy as np

from nptfunc._types import Array
from nptfunc.convert import to_numpy as _to_array  # arrays, lists, torch tensors (bfloat16 too)

__all__ = ["Parameter"]


class Parameter:
    """An optimisable array: ``.data`` holds its value, ``.grad`` its gradient.

    Equivalent to ``torch.nn.Parameter`` (and to the reference project's
    ``nn.Variable``). ``.grad`` is ``None`` until the first backward; every
    ``module.backward`` *adds* its gradient to ``.grad`` until ``zero_grad()``, as
    in torch.

    nptfunc never writes into ``.data``: the optimizers and ``load_state_dict``
    replace it with a new array, so an array taken from ``.data`` earlier keeps
    its value, and the arrays a forward pass captured for its backward stay
    valid. ``.data`` is often read-only (the functional core's arrays are): to
    change a value by hand, assign a new array (``p.data = p.data - 0.1 * p.grad``)
    rather than writing in place.

    Args:
        data: the initial value (kept as given, not copied, as torch's).
        requires_grad: ``False`` freezes the parameter: backward leaves its
            ``.grad`` alone and optimizers skip it.

    Example:
        >>> import numpy as np
        >>> p = Parameter(np.zeros(3))
        >>> p.grad is None
        True
    """

    __slots__ = ("_data", "grad", "requires_grad")

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        a = _to_array(data)
        if a.dtype.kind not in "fc":
            msg = f"Parameter: expected a floating-point array, got dtype {a.dtype}"
            raise TypeError(msg)
        self._data = a
        self.grad: Array | None = None
        self.requires_grad = bool(requires_grad)

    @property
    def data(self) -> Array:
        """The current value."""
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = _to_array(value)

    @property
    def shape(self) -> tuple[int, ...]:
        """The value's shape."""
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        """The value's dtype."""
        return self._data.dtype

    @property
    def ndim(self) -> int:
        """The value's number of axes."""
        return self._data.ndim

    def numel(self) -> int:
        """The number of elements (``torch.Tensor.numel``)."""
        return int(self._data.size)

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        """The shape, or the length of axis ``dim`` (``torch.Tensor.size``)."""
        return self._data.shape if dim is None else self._data.shape[dim]

    def requires_grad_(self, requires_grad: bool = True) -> Parameter:
        """Set :attr:`requires_grad` in place and return ``self``, as torch."""
        self.requires_grad = bool(requires_grad)
        return self

    def accumulate_grad(self, g: Array) -> None:
        """Add ``g`` (of the value's shape) to :attr:`grad`, which starts as ``None``.

        Does nothing when :attr:`requires_grad` is ``False``. The sum is a new
        array: a ``.grad`` array taken earlier is not changed.
        """
        if not self.requires_grad:
            return
        if tuple(np.shape(g)) != self._data.shape:
            msg = f"Parameter: gradient of shape {np.shape(g)} for a parameter of shape {self._data.shape}"
            raise ValueError(msg)
        self.grad = np.array(g, dtype=self._data.dtype) if self.grad is None else self.grad + g

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Array:
        if copy:
            return np.array(self._data, dtype=dtype)
        return np.asarray(self._data, dtype=dtype)

    def __repr__(self) -> str:
        flag = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter containing:\n{self._data!r}{flag}"

"""``nn.Parameter``: a leaf tensor the facade optimises, with its accumulated gradient."""

from __future__ import annotations

from typing import Any

from nptfunc.nn._tensor import Tensor, to_array

__all__ = ["Parameter"]

_to_array = to_array  # the name the facade modules import


class Parameter(Tensor):
    """An optimisable leaf tensor: ``.data`` holds its value, ``.grad`` its gradient.

    Equivalent to ``torch.nn.Parameter`` (and to the reference project's
    ``nn.Variable``). ``.grad`` is ``None`` until the first backward; every backward
    *adds* its gradient to ``.grad`` until ``zero_grad()``, as in torch.

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

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        a = to_array(data)
        if a.dtype.kind not in "fc":
            msg = f"Parameter: expected a floating-point array, got dtype {a.dtype}"
            raise TypeError(msg)
        super().__init__(a, requires_grad=bool(requires_grad))

    def __repr__(self) -> str:
        flag = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter containing:\n{self._data!r}{flag}"

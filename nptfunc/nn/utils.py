"""``nn.utils``: gradient clipping over parameters' ``.grad``. Equivalent to ``torch.nn.utils``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from nptfunc._validate import check_real
from nptfunc.nn._tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters: Any) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def clip_grad_norm_(parameters: Iterable[Any] | Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: Any = None) -> float:
    """Rescale the ``.grad`` arrays so that their total norm is at most ``max_norm``.

    The total norm is the norm of the per-parameter norms; the factor is
    ``min(max_norm / (total + 1e-6), 1)``, as torch's. Each ``.grad`` is replaced,
    not written into. Equivalent to ``torch.nn.utils.clip_grad_norm_``.

    Returns:
        The total norm before clipping.
    """
    max_norm = check_real("clip_grad_norm_", "max_norm", max_norm, low=0.0)
    order = check_real("clip_grad_norm_", "norm_type", norm_type, low=0.0, low_open=True, allow_inf=True)
    params = _grads(parameters)
    if not params:
        return 0.0
    norms = [float(np.linalg.norm(p.grad.ravel(), ord=order)) for p in params]
    total = max(norms) if math.isinf(order) else sum(n**order for n in norms) ** (1 / order)
    if error_if_nonfinite and not math.isfinite(total):
        msg = f"clip_grad_norm_: the total norm of order {order} of the gradients is non-finite ({total})"
        raise RuntimeError(msg)
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for p in params:
            p.grad = p.grad * np.asarray(coef, p.grad.dtype)
    return total


def clip_grad_value_(parameters: Iterable[Any] | Any, clip_value: float, foreach: Any = None) -> None:
    """Clip every ``.grad`` entry to ``[-clip_value, clip_value]`` (replacing the arrays).

    Equivalent to ``torch.nn.utils.clip_grad_value_``.
    """
    c = check_real("clip_grad_value_", "clip_value", clip_value, low=0.0)
    for p in _grads(parameters):
        p.grad = np.clip(p.grad, -c, c)

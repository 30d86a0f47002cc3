"""Loss modules: each a core loss of :mod:`nptfunc.losses`, recorded as one tape node.

Calling a criterion returns a :class:`~nptfunc.nn.Tensor` (torch's style:
``loss.item()``, ``loss.backward()``, arithmetic on losses); the node's vjp is
the core loss's own. The reference project's style, ``criterion.backward()``,
returns the gradient of the last call's loss with respect to its input.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from nptfunc import losses
from nptfunc._types import Array
from nptfunc.nn._functional_module import ForwardsFields
from nptfunc.nn._module import Module, on_tape
from nptfunc.nn._parameter import _to_array
from nptfunc.nn._tape import _mode
from nptfunc.nn._tensor import Tensor, record

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "FunctionalLoss",
    "L1Loss",
    "LossValue",
    "MSELoss",
    "NLLLoss",
    "ProbabilitiesCrossEntropyLoss",
]

LossValue = Tensor
"""What a criterion returns: a tensor (the name of earlier versions, kept as an alias)."""


def _reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """torch's legacy ``size_average``/``reduce`` arguments turned into ``reduction``."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


class FunctionalLoss(ForwardsFields, Module):
    """Any loss of :mod:`nptfunc.losses` as a criterion module.

    ``criterion(input, target)`` returns a scalar tensor on the tape;
    ``criterion.backward(dloss=1.0)`` returns the gradient with respect to the
    last call's input (the reference project's style). The loss's array
    hyperparameters (``weight``, ``pos_weight``) are buffers, as in torch, so they
    are in ``state_dict()`` and follow ``.double()``.

    Args:
        loss: a loss object with ``apply(input, target) -> (loss, vjp)``.
    """

    wrapped = "loss_fn"

    def __init__(self, loss: Any) -> None:
        super().__init__()
        if not hasattr(loss, "apply"):
            msg = f"FunctionalLoss: expected a loss with apply(input, target), got {type(loss).__name__}"
            raise TypeError(msg)
        self.__dict__["loss_fn"] = loss
        self.__dict__["_vjp"] = None
        self.__dict__["_array_fields"] = ()
        if attrs.has(type(loss)):
            names = tuple(f.name for f in attrs.fields(type(loss))
                          if isinstance(getattr(loss, f.name), np.ndarray))
            for name in names:
                self.register_buffer(name, np.array(getattr(loss, name)))
            self.__dict__["_array_fields"] = names

    def _core(self) -> Any:
        names = self.__dict__["_array_fields"]
        if not names:
            return self.loss_fn
        return attrs.evolve(self.loss_fn, **{n: self._buffers[n] for n in names})

    def forward(self, input: Any, target: Any) -> Tensor:
        """The loss of ``input`` against ``target`` (see the wrapped loss for shapes), on the tape."""
        x = input._data if isinstance(input, Tensor) else input
        value, vjp = self._core().apply(x, _to_array(target))
        self.__dict__["_vjp"] = vjp
        if not _mode.enabled:
            return Tensor._wrap(value)
        return record(self._get_name(), value, lambda g: (vjp(g),), (input,))

    @on_tape
    def backward(self, dloss: Any = 1.0) -> Array:
        """The gradient of the last call's loss with respect to its input."""
        vjp = self.__dict__["_vjp"]
        if vjp is None:
            msg = (f"{self._get_name()}.backward: no loss computed yet; call the criterion on "
                   f"(input, target) first")
            raise RuntimeError(msg)
        return vjp(dloss)

    def extra_repr(self) -> str:
        """The wrapped loss's repr (named subclasses print nothing, as torch's)."""
        return repr(self.loss_fn) if type(self) is FunctionalLoss else ""


def _weight(value: Any, dtype: Any) -> Array | None:
    if value is None:
        return None
    a = _to_array(value)
    return a.astype(dtype) if dtype is not None else a


class MSELoss(FunctionalLoss):
    """Mean squared error, as ``torch.nn.MSELoss(size_average, reduce, reduction)``."""

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean") -> None:
        super().__init__(losses.MSELoss(reduction=_reduction(size_average, reduce, reduction)))


class L1Loss(FunctionalLoss):
    """Mean absolute error, as ``torch.nn.L1Loss(size_average, reduce, reduction)``."""

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean") -> None:
        super().__init__(losses.L1Loss(reduction=_reduction(size_average, reduce, reduction)))


class CrossEntropyLoss(FunctionalLoss):
    """Cross-entropy on logits, as ``torch.nn.CrossEntropyLoss``.

    Args:
        weight: ``(C,)`` class weights or ``None``.
        size_average: torch's legacy argument (use ``reduction``).
        ignore_index: targets equal to it are ignored.
        reduce: torch's legacy argument (use ``reduction``).
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        label_smoothing: in ``[0, 1]``.
        dtype: NumPy dtype to store ``weight`` in (it follows the input's anyway).
    """

    def __init__(self, weight: Any = None, size_average: bool | None = None, ignore_index: int = -100,
                 reduce: bool | None = None, reduction: str = "mean", label_smoothing: float = 0.0,
                 *, dtype: Any = None) -> None:
        super().__init__(losses.CrossEntropyLoss(
            weight=_weight(weight, dtype), ignore_index=ignore_index, label_smoothing=label_smoothing,
            reduction=_reduction(size_average, reduce, reduction)))


class NLLLoss(FunctionalLoss):
    """Negative log-likelihood on log-probabilities, as ``torch.nn.NLLLoss``.

    Args: as :class:`CrossEntropyLoss` without ``label_smoothing``.
    """

    def __init__(self, weight: Any = None, size_average: bool | None = None, ignore_index: int = -100,
                 reduce: bool | None = None, reduction: str = "mean", *, dtype: Any = None) -> None:
        super().__init__(losses.NLLLoss(
            weight=_weight(weight, dtype), ignore_index=ignore_index,
            reduction=_reduction(size_average, reduce, reduction)))


class BCELoss(FunctionalLoss):
    """Binary cross-entropy on probabilities, as ``torch.nn.BCELoss``.

    Args:
        weight: broadcastable to the input, or ``None``.
        size_average: torch's legacy argument (use ``reduction``).
        reduce: torch's legacy argument (use ``reduction``).
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        dtype: NumPy dtype to store ``weight`` in.
    """

    def __init__(self, weight: Any = None, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean", *, dtype: Any = None) -> None:
        super().__init__(losses.BCELoss(weight=_weight(weight, dtype),
                                        reduction=_reduction(size_average, reduce, reduction)))


class BCEWithLogitsLoss(FunctionalLoss):
    """Sigmoid and binary cross-entropy in one stable step, as ``torch.nn.BCEWithLogitsLoss``.

    Args: as :class:`BCELoss`, plus ``pos_weight`` (weight of positive examples).
    """

    def __init__(self, weight: Any = None, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean", pos_weight: Any = None, *, dtype: Any = None) -> None:
        super().__init__(losses.BCEWithLogitsLoss(
            weight=_weight(weight, dtype), pos_weight=_weight(pos_weight, dtype),
            reduction=_reduction(size_average, reduce, reduction)))


class ProbabilitiesCrossEntropyLoss(FunctionalLoss):
    """The reference project's cross-entropy, on probabilities (after a Softmax).

    Args:
        weight: ``(C,)`` class weights or ``None``.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        label_smoothing: in ``[0, 1]``.
        dtype: NumPy dtype to store ``weight`` in.
    """

    def __init__(self, weight: Any = None, reduction: str = "mean", label_smoothing: float = 0.0,
                 *, dtype: Any = None) -> None:
        super().__init__(losses.ProbabilitiesCrossEntropyLoss(
            weight=_weight(weight, dtype), reduction=reduction, label_smoothing=label_smoothing))

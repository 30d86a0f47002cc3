"""Loss modules and ``LossValue``, the scalar that makes ``loss.backward()`` work.

A criterion module wraps a loss of :mod:`nptfunc.losses`. Calling it returns a
:class:`LossValue`; the reference project's style is ``criterion.backward()``
(returns the gradient with respect to the criterion's input), torch's is
``loss.backward()``.

How ``loss.backward()`` finds the model: every module call remembers the array it
returned, the outermost module last (``nn.Module.__call__``). The criterion looks
up which module returned exactly the array it was given and records it, with the
call counts of that module's whole subtree. ``loss.backward()`` then runs
``model.backward(criterion_vjp(1.0))``. Its limits, each a clear error:

* the criterion's input must be the very array a module call returned (not a
  slice, a copy or an array computed from it);
* one model output into one criterion per step: no module of the model (nor the
  criterion) may have been called again since, and the same output cannot be
  backpropagated through a second loss;
* ``backward()`` runs once per loss value;
* a loss with several elements (``reduction='none'``) needs ``gradient=``.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from nptfunc import losses
from nptfunc._types import Array, LossVJP
from nptfunc.nn._module import Module, producer_of
from nptfunc.nn._parameter import _to_array

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


class LossValue:
    """The value of a criterion call: an array with ``item()`` and ``backward()``.

    Like a torch scalar tensor for the needs of a training loop: ``loss.item()``,
    ``float(loss)``, ``f"{loss:.4f}"``, ``np.asarray(loss)``, ``loss.backward()``.
    It does no arithmetic: combine gradients by hand
    (``model.backward(crit_a.backward() + crit_b.backward())``) to train on a sum
    of losses.
    """

    __slots__ = ("_criterion", "_done", "_producer", "_snapshot", "_value", "_vjp")

    def __init__(self, value: Array, vjp: LossVJP, criterion: Module, producer: Module | None) -> None:
        self._value = value
        self._vjp = vjp
        self._criterion = criterion
        self._producer = producer
        self._snapshot = None if producer is None else producer._snapshot()
        self._done = False

    @property
    def shape(self) -> tuple[int, ...]:
        """The loss's shape: ``()`` unless ``reduction='none'``."""
        return self._value.shape

    @property
    def dtype(self) -> np.dtype:
        """The loss's dtype (the input's)."""
        return self._value.dtype

    @property
    def ndim(self) -> int:
        """The loss's number of axes."""
        return self._value.ndim

    def numpy(self) -> Array:
        """A copy of the value as a NumPy array."""
        return np.array(self._value)

    def detach(self) -> Array:
        """The value as a (read-only) NumPy array, without the backward link."""
        v = self._value.view()
        v.flags.writeable = False
        return v

    def item(self) -> float:
        """The value as a Python float (for a loss with one element)."""
        if self._value.size != 1:
            msg = (f"LossValue.item: only a loss with one element converts to a Python number; this "
                   f"one has shape {self._value.shape} (reduction='none')")
            raise ValueError(msg)
        return float(self._value.reshape(()))

    def __float__(self) -> float:
        return self.item()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Array:
        return np.array(self._value, dtype=dtype) if copy else np.asarray(self._value, dtype=dtype)

    def __format__(self, spec: str) -> str:
        return format(self.item(), spec) if self._value.size == 1 else format(str(self), spec)

    def __repr__(self) -> str:
        return f"LossValue({np.array2string(self._value)}, criterion={type(self._criterion).__name__})"

    def backward(self, gradient: Any = None) -> None:
        """Backpropagate the loss into the model that produced the criterion's input.

        Runs ``model.backward(dinput)``, which adds every parameter gradient into
        its ``Parameter.grad``. See the module docstring for the limits.

        Args:
            gradient: the cotangent of the loss, of its shape; 1 by default (only
                for a loss with one element, as torch).

        Raises:
            RuntimeError: for a second call, an input no module returned, a model
                called again since, or an output already backpropagated.
        """
        name = type(self._criterion).__name__
        if self._done:
            msg = (f"LossValue.backward: backward() was already called on this {name} value; "
                   f"compute the loss again (forward, criterion) before another backward")
            raise RuntimeError(msg)
        if gradient is None:
            if self._value.size != 1:
                msg = (f"LossValue.backward: a gradient can be implied only for a loss with one "
                       f"element; this one has shape {self._value.shape}: pass gradient=")
                raise RuntimeError(msg)
            gradient = np.ones(self._value.shape, dtype=self._value.dtype)
        producer = self._producer
        if producer is None:
            msg = (f"LossValue.backward: the input of this {name} was not returned by an nn.Module "
                   f"call (a slice, a copy or a computed array cannot be traced back); "
                   f"backpropagate by hand: model.backward(criterion.backward())")
            raise RuntimeError(msg)
        if producer._snapshot() != self._snapshot:
            msg = (f"LossValue.backward: {type(producer).__name__} (or a module inside it) was called "
                   f"again after producing this loss's input, so its backward would use the later "
                   f"call; the facade supports one model output into one criterion per step")
            raise RuntimeError(msg)
        if producer.__dict__["_backpropagated"] == self._snapshot:
            msg = (f"LossValue.backward: this output of {type(producer).__name__} was already "
                   f"backpropagated through another loss; the facade supports one criterion per "
                   f"model output and step (sum the gradients by hand: "
                   f"model.backward(crit_a.backward() + crit_b.backward()))")
            raise RuntimeError(msg)
        producer.backward(self._vjp(gradient))
        producer.__dict__["_backpropagated"] = self._snapshot
        self._done = True


def _reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """torch's legacy ``size_average``/``reduce`` arguments turned into ``reduction``."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


class FunctionalLoss(Module):
    """Any loss of :mod:`nptfunc.losses` as a criterion module.

    ``criterion(input, target)`` returns a :class:`LossValue`;
    ``criterion.backward(dloss=1.0)`` returns the gradient with respect to the
    last call's input (the reference project's style). The loss's array
    hyperparameters (``weight``, ``pos_weight``) are buffers, as in torch, so they
    are in ``state_dict()`` and follow ``.double()``.

    Args:
        loss: a loss object with ``apply(input, target) -> (loss, vjp)``.
    """

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

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            loss = self.__dict__.get("loss_fn")
            if loss is not None and attrs.has(type(loss)) and name in attrs.fields_dict(type(loss)):
                return getattr(loss, name)  # reduction, ignore_index, ...
            raise

    def _core(self) -> Any:
        names = self.__dict__["_array_fields"]
        if not names:
            return self.loss_fn
        return attrs.evolve(self.loss_fn, **{n: self._buffers[n] for n in names})

    def forward(self, input: Any, target: Any) -> LossValue:
        """The loss of ``input`` against ``target`` (see the wrapped loss for shapes)."""
        value, vjp = self._core().apply(input, target)
        self.__dict__["_vjp"] = vjp
        return LossValue(value, vjp, self, producer_of(input))

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

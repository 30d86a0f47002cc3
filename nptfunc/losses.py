"""Losses with torch's semantics: ``apply(input, target) -> (loss, vjp)``.

``vjp(dloss=1.0) -> dinput``: the gradient of the loss with respect to the input
(targets get none). ``dloss`` has the loss's shape: a scalar for the ``'mean'``
and ``'sum'`` reductions, the per-element shape for ``'none'``.

Every reduction goes through :func:`_reduce`, and every cross-entropy (on logits
with class indices or class probabilities, with weights and label smoothing)
through one rule: a per-sample loss ``l = -sum_c A[c] * log p[c]`` whose
gradient on the logits is ``(sum_c A[c]) * softmax - A``. The loss itself is
summed as torch sums it, so a class masked with a ``-inf`` logit (``log p = -inf``)
adds nothing unless torch's formula multiplies it: class-index targets pick the
target's log-probability (``0 * -inf`` never happens), label smoothing adds
``-inf`` for it (an infinite loss with a finite gradient, as torch).

Every constructor argument is checked by the shared field helpers
(:mod:`nptfunc._validate`): the error names the class and the argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from nptfunc._types import Array, LossVJP
from nptfunc._validate import as_array, choice_field, int_field, owner_of, probability_field
from nptfunc.backend import array_module, readonly
from nptfunc.layers.base import _array_eq_key
from nptfunc.ops import _log_softmax, log_softmax

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "L1Loss",
    "Loss",
    "MSELoss",
    "NLLLoss",
    "ProbabilitiesCrossEntropyLoss",
]

_REDUCTIONS = ("mean", "sum", "none")
_BCE_EPSILON = np.float32(1e-12)  # torch's clamp in BCE's gradient is a float32 constant


def _weight_field(*, per_class: bool = False) -> Any:
    """An optional numeric array argument (``weight``, ``pos_weight``), stored read-only.

    Args:
        per_class: whether it is one weight per class (a 1-D array).
    """

    def convert(value: Any, instance: Any, field: attrs.Attribute) -> Any:
        if value is None:
            return None
        owner, name = owner_of(instance), field.name
        expected = "a 1-D numeric array (one weight per class)" if per_class else "a numeric array"
        if isinstance(value, (str, bytes)):
            msg = f"{owner}: expected {name} to be None or {expected}, got {type(value).__name__} {value!r}"
            raise TypeError(msg)
        try:
            a = np.asarray(value)
        except (TypeError, ValueError) as e:
            msg = f"{owner}: expected {name} to be None or {expected}, got {type(value).__name__}: {e}"
            raise TypeError(msg) from e
        if a.dtype.kind not in "iuf":
            msg = f"{owner}: expected {name} to be None or {expected}, got an array of dtype {a.dtype}"
            raise TypeError(msg)
        if per_class and a.ndim != 1:
            msg = f"{owner}: expected {name} to be None or {expected}, got shape {a.shape}"
            raise ValueError(msg)
        return readonly(a)

    converter = attrs.Converter(convert, takes_self=True, takes_field=True)
    return attrs.field(default=None, converter=converter, eq=_array_eq_key, kw_only=True)


@attrs.frozen
class Loss:
    """Base class of the losses: holds the reduction, validates it, reduces."""

    reduction: str = choice_field(_REDUCTIONS, default="mean", kw_only=True)

    @property
    def name(self) -> str:
        """The loss's name for error messages."""
        return type(self).__name__

    def __call__(self, input: Any, target: Any) -> tuple[Array, LossVJP]:
        """Same as :meth:`apply`."""
        return self.apply(input, target)

    def apply(self, input: Any, target: Any) -> tuple[Array, LossVJP]:
        """The loss and its vjp. See the class docstring for shapes."""
        raise NotImplementedError  # pragma: no cover

    # -- shared pieces -------------------------------------------------------
    def _input(self, x: Any) -> Array:
        return as_array(self.name, x)

    def _same_shape_target(self, x: Array, t: Any) -> Array:
        t = as_array(self.name, t, x.dtype)
        if t.shape != x.shape:
            msg = (f"{self.name}: expected target of the input's shape {x.shape}, "
                   f"got {t.shape}")
            raise ValueError(msg)
        return t.astype(x.dtype, copy=False)

    def _reduce(self, per_elem: Array, divisor: Any,
                grad: Callable[[Array], Array]) -> tuple[Array, LossVJP]:
        """Reduce ``per_elem``; ``grad(g)`` maps a per-element cotangent to ``dinput``.

        Args:
            per_elem: the unreduced loss.
            divisor: what ``'mean'`` divides the sum by.
            grad: the input gradient for a cotangent ``g`` of ``per_elem``'s shape.
        """
        xp = array_module(per_elem)
        dtype = per_elem.dtype
        if self.reduction == "none":
            loss = per_elem
        else:
            loss = per_elem.sum()
            if self.reduction == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 is nan, as torch
                    loss = loss / divisor
            loss = xp.asarray(loss, dtype=dtype)
        shape = loss.shape

        def vjp(dloss: Any = 1.0) -> Array:
            g = xp.asarray(dloss, dtype=dtype)
            if g.shape != shape:
                msg = f"{self.name} vjp: expected dloss of shape {shape} (the loss's), got {g.shape}"
                raise ValueError(msg)
            if self.reduction == "none":
                return grad(g)
            if self.reduction == "mean":
                # a mean over nothing (all targets ignored) is nan, and so is its gradient, as torch
                with np.errstate(invalid="ignore", divide="ignore"):
                    g = g / xp.asarray(divisor, dtype=dtype)
                    return grad(xp.broadcast_to(g, per_elem.shape))
            return grad(xp.broadcast_to(g, per_elem.shape))

        return loss, vjp


@attrs.frozen
class MSELoss(Loss):
    """``(input - target)**2``, reduced. Equivalent to ``torch.nn.MSELoss``.

    Shapes: input and target of any one shape.
    """

    def apply(self, input: Any, target: Any) -> tuple[Array, LossVJP]:  # noqa: D102
        x = self._input(input)
        t = self._same_shape_target(x, target)
        diff = x - t
        return self._reduce(diff * diff, diff.size, lambda g: 2 * diff * g)


@attrs.frozen
class L1Loss(Loss):
    """``|input - target|``, reduced; the gradient at 0 is 0. Equivalent to ``torch.nn.L1Loss``."""

    def apply(self, input: Any, target: Any) -> tuple[Array, LossVJP]:  # noqa: D102
        x = self._input(input)
        t = self._same_shape_target(x, target)
        diff = x - t
        xp = array_module(x)
        return self._reduce(xp.abs(diff), diff.size, lambda g: xp.sign(diff) * g)


def _class_weight(loss: Loss, weight: Array | None, n_classes: int, dtype: np.dtype) -> Array | None:
    if weight is None:
        return None
    if weight.shape != (n_classes,):
        msg = f"{loss.name}: expected weight of shape ({n_classes},) (one per class), got {weight.shape}"
        raise ValueError(msg)
    return weight.astype(dtype, copy=False)


def _move_class_axis_last(x: Array) -> Array:
    """``(N, C, d1, ...) -> (N, d1, ..., C)`` (a view); ``(C,)`` stays."""
    xp = array_module(x)
    return xp.moveaxis(x, 1, -1) if x.ndim >= 3 else x  # (N, C) has it last already


def _move_class_axis_back(x: Array) -> Array:
    xp = array_module(x)
    return xp.moveaxis(x, -1, 1) if x.ndim >= 3 else x


def _uniform_share(eps: float, n_classes: int) -> float:
    """``eps / C``, label smoothing's share per class, divided as torch does (``inf`` when ``C = 0``)."""
    if n_classes == 0:
        return math.inf if eps > 0 else 0.0
    return eps / n_classes


def _num_samples(xl: Array) -> int:
    """How many samples an input with the class axis last holds (``(N, d1, ..., C)``: ``N * d1 * ...``)."""
    return math.prod(xl.shape[:-1])


def _class_input(loss: Loss, input: Any) -> tuple[Array, Array, Array | None]:
    """``(x, x with the class axis last, the class weight)`` of a class-scoring loss's input."""
    x = loss._input(input)
    if x.ndim < 1:
        msg = f"{loss.name}: expected input of shape (N, C, ...) or (C,), got a scalar"
        raise ValueError(msg)
    xl = _move_class_axis_last(x)
    return x, xl, _class_weight(loss, loss.weight, xl.shape[-1], x.dtype)


def _is_index_target(target: Any) -> bool:
    """Whether a target holds class indices (integers), not class probabilities (floats)."""
    kind = target.dtype.kind if hasattr(target, "dtype") else np.asarray(target).dtype.kind
    return kind in "iu"


def _class_targets(loss: Loss, x: Array, target: Any, ignore_index: int) -> tuple[Array, Array]:
    """Validate integer class targets; return (targets with ignored set to 0, keep mask).

    Shapes (class axis last): x ``(..., C)``, targets ``(...)``.
    """
    t = np.asarray(target) if not hasattr(target, "dtype") else target
    n_classes = x.shape[-1]
    if t.dtype.kind not in "iu":
        msg = (f"{loss.name}: expected integer class indices as target, got dtype {t.dtype}"
               " (float targets of the input's shape are class probabilities)")
        raise TypeError(msg)
    if t.shape != x.shape[:-1]:
        msg = (f"{loss.name}: expected class-index target of shape {x.shape[:-1]} "
               f"for input of shape {_move_class_axis_back(x).shape}, got {t.shape}")
        raise ValueError(msg)
    xp = array_module(x)
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= n_classes))
    if bool(bad.any()):
        msg = (f"{loss.name}: target class indices must be in [0, {n_classes}) or equal "
               f"ignore_index={ignore_index}, got {t[bad].ravel()[:5].tolist()}")
        raise ValueError(msg)
    return xp.where(keep, t, 0), keep


@attrs.frozen
class CrossEntropyLoss(Loss):
    """Cross-entropy on logits (log-softmax inside), as ``torch.nn.CrossEntropyLoss``.

    Args:
        weight: ``(C,)`` per-class weights, or ``None``.
        ignore_index: class-index targets equal to it contribute nothing (and
            are not counted by ``'mean'``).
        reduction: ``'mean'`` (weighted mean over non-ignored targets), ``'sum'``
            or ``'none'``.
        label_smoothing: in ``[0, 1]``; mixes the target with the uniform distribution.

    Shapes:
        input: ``(N, C)``, ``(N, C, d1, ...)`` or unbatched ``(C,)``: logits.
        target: integer class indices ``(N)``, ``(N, d1, ...)`` or ``()``; or
        float class probabilities of the input's shape.
        loss: scalar, or the target's batch shape with ``reduction='none'``.
    """

    weight: Array | None = _weight_field(per_class=True)
    ignore_index: int = int_field(minimum=None, default=-100, kw_only=True)
    label_smoothing: float = probability_field(default=0.0, kw_only=True)

    def apply(self, input: Any, target: Any) -> tuple[Array, LossVJP]:  # noqa: D102
        x, xl, w = _class_input(self, input)
        if w is None and self.label_smoothing == 0 and _is_index_target(target):
            return self._apply_indices(xl, target)
        A, keep, loss_of = self._coefficients(xl, target, w)
        logp = log_softmax(xl, -1)[0]  # an empty class axis gives an empty result
        per_elem, divisor = loss_of(logp)
        xp = array_module(x)

        def grad(g: Array) -> Array:
            p = xp.exp(logp)
            d = g[..., None] * (A.sum(axis=-1, keepdims=True) * p - A)
            if keep is not None:  # ignored targets get an exact zero, even when the mean is nan
                d = xp.where(keep[..., None], d, 0)
            return _move_class_axis_back(d)

        return self._reduce(per_elem, divisor, grad)

    def _apply_indices(self, xl: Array, target: Any) -> tuple[Array, LossVJP]:
        """The common case, class indices without weights or smoothing, in a few small passes.

        ``loss = -log p[t]``; ``dx = g * (softmax - onehot(t))``, zero for ignored targets.
        """
        if (type(xl) is np.ndarray and xl.ndim == 2 and type(target) is np.ndarray and target.ndim == 1
                and target.dtype.kind in "iu" and 0 < xl.shape[0] == target.shape[0] and xl.shape[1] > 0
                and self.reduction != "none"):
            lo, hi = int(target.min()), int(target.max())
            if lo >= 0 and hi < xl.shape[1] and not lo <= self.ignore_index <= hi:
                return self._apply_rows(xl, target)
        xp = array_module(xl)
        idx, keep = _class_targets(self, xl, target, self.ignore_index)
        all_kept = bool(keep.all())
        logp = log_softmax(xl, -1)[0]  # an empty class axis gives an empty result
        picked = xp.take_along_axis(logp, idx[..., None], axis=-1)[..., 0]
        per_elem = -picked if all_kept else xp.where(keep, -picked, xp.zeros((), dtype=xl.dtype))
        divisor = xp.asarray(keep.sum() if not all_kept else keep.size, dtype=xl.dtype)

        def grad(g: Array) -> Array:
            d = xp.exp(logp, out=xp.empty(logp.shape, dtype=logp.dtype))  # C-contiguous: flat is a view
            d *= g[..., None]
            if d.size:
                flat = xp.reshape(d, (-1, d.shape[-1]))
                rows = xp.arange(flat.shape[0])
                flat[rows, xp.reshape(idx, (-1,))] -= xp.reshape(g, (-1,))  # distinct rows: no repeats
            if not all_kept:  # ignored targets get an exact zero, even when the mean is nan
                d = xp.where(keep[..., None], d, 0)
            return _move_class_axis_back(d)

        return self._reduce(per_elem, divisor, grad)

    def _apply_rows(self, x: np.ndarray, target: np.ndarray) -> tuple[Array, LossVJP]:
        """:meth:`_apply_indices` for ``(N, C)`` logits and ``N`` valid targets, none ignored, reduced.

        The same arithmetic in fewer NumPy calls: the training loop's loss, every step.
        """
        dtype = x.dtype
        rows = np.arange(x.shape[0])
        logp = _log_softmax(np, x, 1)
        loss = -logp[rows, target]
        loss = loss.sum()
        divisor = np.asarray(x.shape[0], dtype=dtype)
        if self.reduction == "mean":
            loss = loss / divisor
        loss = np.asarray(loss, dtype=dtype)
        mean = self.reduction == "mean"

        def vjp(dloss: Any = 1.0) -> Array:
            g = np.asarray(dloss, dtype=dtype)
            if g.shape != ():
                msg = f"{self.name} vjp: expected dloss of shape () (the loss's), got {g.shape}"
                raise ValueError(msg)
            if mean:
                g = g / divisor
            d = np.exp(logp)
            d *= g
            d[rows, target] -= g
            return d

        return loss, vjp

    def _coefficients(self, xl: Array, target: Any, w: Array | None) -> tuple[Array, Array | None, Any]:
        """``A`` (the gradient is ``sum(A) softmax - A``), the kept targets, and ``loss_of``.

        ``loss_of(logp) -> (per-sample loss, the mean's divisor)`` sums the loss
        the way torch does: ``-sum_c A[c] log p[c]`` for class probabilities (where
        ``0 * -inf`` is nan in torch too); for class indices the target's
        ``-w[t] log p[t]``, plus with label smoothing ``-sum_c w[c] log p[c]`` over
        every class, zero for ignored targets.
        """
        xp = array_module(xl)
        n_classes = xl.shape[-1]
        eps = self.label_smoothing
        is_probs = (hasattr(target, "dtype") and target.dtype.kind == "f") or (
            not hasattr(target, "dtype") and np.asarray(target).dtype.kind == "f")
        if is_probs:
            t = self._same_shape_target(_move_class_axis_back(xl), target)
            t = _move_class_axis_last(t)
            if eps > 0:
                t = t * (1 - eps) + _uniform_share(eps, n_classes)
            A = t * w if w is not None else t
            # torch divides by input.numel() / C: nan for an empty class axis
            divisor = _num_samples(xl) if n_classes else math.nan

            def loss_of_probabilities(logp: Array) -> tuple[Array, Any]:
                with np.errstate(invalid="ignore"):  # 0 * -inf is nan, as in torch's sum
                    return -(A * logp).sum(axis=-1), divisor

            return A, None, loss_of_probabilities
        idx, keep = _class_targets(self, xl, target, self.ignore_index)
        wc = w if w is not None else xp.ones(n_classes, dtype=xl.dtype)
        wt = wc[idx] * keep  # each target's weight, 0 where ignored
        onehot = (idx[..., None] == xp.arange(n_classes)).astype(xl.dtype)
        share = _uniform_share(eps, n_classes)
        A = ((1 - eps) * onehot * wc + share * wc) * keep[..., None]

        def loss_of(logp: Array) -> tuple[Array, Array]:
            picked = xp.take_along_axis(logp, idx[..., None], axis=-1)[..., 0]
            with np.errstate(invalid="ignore"):  # a zero weight on a -inf log p: nan, as torch
                per_elem = xp.where(keep, -(wc[idx] * picked), 0)
                if eps > 0:
                    smooth = xp.where(keep, -(logp * wc).sum(axis=-1), 0)
                    per_elem = (1 - eps) * per_elem + share * smooth
            return per_elem, wt.sum()

        return A, keep, loss_of


@attrs.frozen
class NLLLoss(Loss):
    """Negative log-likelihood on log-probabilities, as ``torch.nn.NLLLoss``.

    Args:
        weight: ``(C,)`` per-class weights, or ``None``.
        ignore_index: targets equal to it contribute nothing.
        reduction: ``'mean'`` (weighted mean), ``'sum'`` or ``'none'``.

    Shapes:
        input: ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``: log-probabilities.
        target: integer class indices ``(N)``, ``(N, d1, ...)`` or ``()``.
    """

    weight: Array | None = _weight_field(per_class=True)
    ignore_index: int = int_field(minimum=None, default=-100, kw_only=True)

    def apply(self, input: Any, target: Any) -> tuple[Array, LossVJP]:  # noqa: D102
        x, xl, w = _class_input(self, input)
        n_classes = xl.shape[-1]
        xp = array_module(x)
        idx, keep = _class_targets(self, xl, target, self.ignore_index)
        wc = w if w is not None else xp.ones(n_classes, dtype=x.dtype)
        wt = wc[idx] * keep
        picked = xp.take_along_axis(xl, idx[..., None], axis=-1)[..., 0]
        onehot = idx[..., None] == xp.arange(n_classes)

        def grad(g: Array) -> Array:
            d = xp.where(keep, -(g * wt), 0)  # exact zeros for ignored targets, as torch
            return _move_class_axis_back(d[..., None] * onehot)

        return self._reduce(-wt * picked, wt.sum(), grad)


@attrs.frozen
class BCELoss(Loss):
    """Binary cross-entropy on probabilities, as ``torch.nn.BCELoss``.

    ``l = -w (t log x + (1 - t) log(1 - x))`` with each log clamped at -100, as
    torch; the gradient is torch's ``w (x - t) / max(x (1 - x), 1e-12)``.

    Args:
        weight: broadcastable to the input, or ``None``.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.

    Shapes: input and target of one shape, input values in ``[0, 1]``.
    """

    weight: Array | None = _weight_field()

    def apply(self, input: Any, target: Any) -> tuple[Array, LossVJP]:  # noqa: D102
        x = self._input(input)
        t = self._same_shape_target(x, target)
        xp = array_module(x)
        if bool(((x < 0) | (x > 1)).any()):
            msg = f"{self.name}: expected input values in [0, 1] (probabilities), got values outside"
            raise ValueError(msg)
        w = _broadcast_weight(self, self.weight, x)
        with np.errstate(divide="ignore"):
            log_x = xp.maximum(xp.log(x), -100)
            log_1mx = xp.maximum(xp.log(1 - x), -100)
        per_elem = -(t * log_x + (1 - t) * log_1mx)
        if w is not None:
            per_elem = per_elem * w

        def grad(g: Array) -> Array:
            d = g * (x - t) / xp.maximum((1 - x) * x, _BCE_EPSILON.astype(x.dtype))
            return d * w if w is not None else d

        return self._reduce(per_elem, x.size, grad)


def _broadcast_weight(loss: Loss, weight: Array | None, x: Array) -> Array | None:
    if weight is None:
        return None
    try:
        np.broadcast_shapes(weight.shape, x.shape)
    except ValueError:
        msg = f"{loss.name}: weight of shape {weight.shape} does not broadcast to the input's {x.shape}"
        raise ValueError(msg) from None
    return weight.astype(x.dtype, copy=False)


@attrs.frozen
class BCEWithLogitsLoss(Loss):
    """Sigmoid + binary cross-entropy in one stable step, as ``torch.nn.BCEWithLogitsLoss``.

    ``l = w ((1 - t) x + (1 + (pw - 1) t) log(1 + exp(-x)))``, computed without overflow.

    Args:
        weight: broadcastable to the input, or ``None``.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        pos_weight: weight of positive examples, broadcastable along the last axis.

    Shapes: input (logits) and target of one shape.
    """

    weight: Array | None = _weight_field()
    pos_weight: Array | None = _weight_field()

    def apply(self, input: Any, target: Any) -> tuple[Array, LossVJP]:  # noqa: D102
        x = self._input(input)
        t = self._same_shape_target(x, target)
        xp = array_module(x)
        w = _broadcast_weight(self, self.weight, x)
        pw = _broadcast_weight(self, self.pos_weight, x)
        softplus_neg = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)  # log(1 + exp(-x))
        log_weight = 1 + (pw - 1) * t if pw is not None else None
        per_elem = (1 - t) * x + (softplus_neg if log_weight is None else log_weight * softplus_neg)
        if w is not None:
            per_elem = per_elem * w
        e = xp.exp(-xp.abs(x))
        sig_neg = xp.where(x >= 0, e / (1 + e), 1 / (1 + e))  # sigmoid(-x)

        def grad(g: Array) -> Array:
            d = (1 - t) - (sig_neg if log_weight is None else log_weight * sig_neg)
            d = g * d
            return d * w if w is not None else d

        return self._reduce(per_elem, x.size, grad)


@attrs.frozen
class ProbabilitiesCrossEntropyLoss(Loss):
    """The reference project's cross-entropy: on probabilities, not logits.

    The input has already been through a Softmax: ``l = -sum_c A[c] log p[c]`` with
    ``A = w * target`` (one-hot of class indices, or given class probabilities),
    mixed with the uniform distribution by ``label_smoothing``. No clamping: a zero
    probability on a target class gives ``inf``, as ``log(0)`` does; a class with
    no target mass (``A[c] = 0``) is left out of the sum, so a zero probability
    there (a masked class) gives a finite loss and a zero gradient. Prefer
    :class:`CrossEntropyLoss` on logits: it is exact and stable.

    Args:
        weight: ``(C,)`` per-class weights, or ``None``.
        reduction: ``'mean'`` (over samples), ``'sum'`` or ``'none'``.
        label_smoothing: in ``[0, 1]``.

    Shapes: as :class:`CrossEntropyLoss`; the gradient is ``-A / p`` (0 where ``A`` is 0).
    """

    weight: Array | None = _weight_field(per_class=True)
    label_smoothing: float = probability_field(default=0.0, kw_only=True)

    def apply(self, input: Any, target: Any) -> tuple[Array, LossVJP]:  # noqa: D102
        p, pl, w = _class_input(self, input)
        n_classes = pl.shape[-1]
        xp = array_module(p)
        t = target if hasattr(target, "dtype") else np.asarray(target)
        if t.dtype.kind == "f":
            A = _move_class_axis_last(self._same_shape_target(p, t))
        else:
            idx, _ = _class_targets(self, pl, t, ignore_index=-(2**62))
            A = (idx[..., None] == xp.arange(n_classes)).astype(p.dtype)
        eps = self.label_smoothing
        if eps > 0:
            A = A * (1 - eps) + _uniform_share(eps, n_classes)
        if w is not None:
            A = A * w
        # A class with no target mass is not part of the loss: its probability may be 0
        # (a masked class) without a 0 * log(0) in the loss or a 0 / 0 in the gradient.
        used = A != 0
        p_used = xp.where(used, pl, 1)
        with np.errstate(divide="ignore"):
            per_elem = -(A * xp.log(p_used)).sum(axis=-1)

        def grad(g: Array) -> Array:
            with np.errstate(divide="ignore", invalid="ignore"):  # a zero probability of a target: -inf
                return _move_class_axis_back(-(g[..., None] * A) / p_used)

        return self._reduce(per_elem, _num_samples(pl), grad)

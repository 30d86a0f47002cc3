"""Gradient transformations: the pieces the optimizers are built from.

Each piece is a factory returning a :class:`~nptfunc.optim.GradientTransformation`;
a piece with state declares its state record right above its factory. Each
update rule is written once, for one array (the ``_..._rule`` functions), and
lifted to the params' leaves with :func:`~nptfunc.optim._base.map_leaves` or
:func:`~nptfunc.optim._base.lift_rule`.

The rules compute in torch's order of operations, in place where they can: they
allocate each array they return (new buffers, the update) once and write the
rest of the arithmetic into it (``m = g - m_old; m *= 1 - b1; m += m_old``), and
a stateless piece writes into the updates it is given when the update owns them
(:func:`~nptfunc.optim._base.writable`). No rule writes into anything else.

Hyperparameters are Python floats, so float32 params keep float32 arithmetic
(NumPy treats Python scalars as weak); per-step scalars (learning rate, bias
corrections) are Python floats too.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from nptfunc._types import Array, Params, ScalarOrSchedule
from nptfunc._validate import check_bool, check_real
from nptfunc.backend import array_module, parallel_for, readonly
from nptfunc.optim._base import (
    GradientTransformation,
    Updates,
    _stateless,
    arrays,
    lift_rule,
    map_leaves,
    writable,
)
from nptfunc.optim._fused import Pieces
from nptfunc.schedules import as_schedule

__all__ = [
    "AdadeltaState",
    "AdagradState",
    "AdamState",
    "AdamaxState",
    "NAdamState",
    "RMSpropState",
    "TraceState",
    "add_decayed_weights",
    "clip_grad_norm",
    "clip_grad_value",
    "decoupled_weight_decay",
    "scale",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_learning_rate",
    "scale_by_nadam",
    "scale_by_radam",
    "scale_by_rms",
    "trace",
]


def _beta(owner: str, name: str, value: Any) -> float:
    return check_real(owner, name, value, low=0.0, high=1.0, high_open=True)


def _nonneg(owner: str, name: str, value: Any) -> float:
    return check_real(owner, name, value, low=0.0)


def _piece(init: Any, update: Any, name: str) -> GradientTransformation:
    """A transform of this module: each follows the ownership rule and is elementwise."""
    return GradientTransformation(init, update, name, fresh_outputs=True, elementwise=True)


def _stateless_piece(name: str, fn: Any, scale_of: Any = None) -> GradientTransformation:
    return _stateless(name, fn, fresh_outputs=True, elementwise=True, scale_of=scale_of)


def _full_like(leaves: Params, value: float) -> Params:
    return map_leaves(lambda x: array_module(x).full_like(x, value), leaves)


def _zeros_like(leaves: Params) -> Params:
    return _full_like(leaves, 0.0)


def _scaled(x: Array, s: float) -> Array:
    """``s * x``, written into ``x`` when the update owns it."""
    if writable(x):
        x *= s
        return x
    return s * x


def _plus_scaled(x: Array, s: float, p: Array) -> Array:
    """``x + s * p`` in one new array."""
    out = array_module(p).multiply(p, s)
    out += x
    return out


# ----------------------------------------------------------- stateless pieces
def scale(factor: float) -> GradientTransformation:
    """Multiply the updates by a constant: ``u <- factor * u`` (``scale(-1.0)`` is torch's ``maximize``)."""
    factor = check_real("scale", "factor", factor)
    return _stateless_piece(f"scale(factor={factor:g})",
                            lambda u, params, step: map_leaves(lambda x: _scaled(x, factor), u),
                            lambda step: factor)


def scale_by_learning_rate(lr: ScalarOrSchedule, *, flip_sign: bool = True) -> GradientTransformation:
    """Multiply the updates by the learning rate of this step: ``u <- -lr(t) * u``.

    The last piece of every named optimizer: it turns a descent direction into
    the change of the params. ``flip_sign=False`` gives ``u <- lr(t) * u``.
    """
    schedule = as_schedule(lr, "scale_by_learning_rate")
    flip_sign = check_bool("scale_by_learning_rate", "flip_sign", flip_sign)
    sign = -1.0 if flip_sign else 1.0

    def scale_of(step: int) -> float:
        return sign * float(schedule(step))

    def fn(u: Updates, params: Params, step: int) -> Updates:
        s = scale_of(step)
        return map_leaves(lambda x: _scaled(x, s), u)

    return _stateless_piece(f"scale_by_learning_rate(lr={lr!r}, flip_sign={flip_sign})", fn, scale_of)


def add_decayed_weights(weight_decay: float) -> GradientTransformation:
    """Add the params times ``weight_decay`` to the updates: ``u <- u + weight_decay * p``.

    Placed before the other pieces this is torch's (L2, coupled) ``weight_decay``,
    added to the gradient; placed after an adaptive scaling and before
    :func:`scale_by_learning_rate` it is decoupled decay (see :func:`decoupled_weight_decay`).
    """
    wd = _nonneg("add_decayed_weights", "weight_decay", weight_decay)
    return _stateless_piece(
        f"add_decayed_weights(weight_decay={wd:g})",
        lambda u, params, step: map_leaves(lambda x, p: _plus_scaled(x, wd, p), u, params))


def decoupled_weight_decay(weight_decay: float, lr: ScalarOrSchedule) -> GradientTransformation:
    """Decoupled weight decay (AdamW's): ``p <- p * (1 - lr(t) * weight_decay)``.

    As an update: ``u <- u - lr(t) * weight_decay * p``, with ``p`` the params before
    this step. It adds to the change of the params, so it goes last in a chain,
    after :func:`scale_by_learning_rate` (the end of every named optimizer):
    ``chain(sgd(lr), decoupled_weight_decay(wd, lr))`` is SGDW. torch applies the
    decay before the step; as the step does not depend on the decayed params, the
    result is the same.
    """
    wd = _nonneg("decoupled_weight_decay", "weight_decay", weight_decay)
    schedule = as_schedule(lr, "decoupled_weight_decay")

    def fn(u: Updates, params: Params, step: int) -> Updates:
        c = -float(schedule(step)) * wd
        return map_leaves(lambda x, p: _plus_scaled(x, c, p), u, params)

    return _stateless_piece(f"decoupled_weight_decay(weight_decay={wd:g}, lr={lr!r})", fn)


def clip_grad_value(clip_value: float) -> GradientTransformation:
    """Clip every entry of the gradients to ``[-clip_value, clip_value]``.

    Equivalent to `torch.nn.utils.clip_grad_value_`.
    """
    c = _nonneg("clip_grad_value", "clip_value", clip_value)

    def clip(x: Array) -> Array:
        return array_module(x).clip(x, -c, c, out=x if writable(x) else None)

    return _stateless_piece(f"clip_grad_value(clip_value={c:g})",
                            lambda u, params, step: map_leaves(clip, u))


def clip_grad_norm(max_norm: float, norm_type: float = 2.0) -> GradientTransformation:
    """Rescale the gradients so that their total norm is at most about ``max_norm``.

    The norm is taken over all leaves together (the norm of the leaves' norms), and
    the gradients are multiplied by ``min(max_norm / (total_norm + 1e-6), 1)``.

    Equivalent to `torch.nn.utils.clip_grad_norm_` (``error_if_nonfinite=False``).

    Args:
        max_norm: the largest total norm, ``>= 0``.
        norm_type: the order of the norm, ``> 0`` or ``math.inf``.
    """
    c = _nonneg("clip_grad_norm", "max_norm", max_norm)
    order = check_real("clip_grad_norm", "norm_type", norm_type, low=0.0, low_open=True, allow_inf=True)

    def leaf_norm(x: Array) -> float:
        xp = array_module(x)
        return float(xp.linalg.norm(xp.ravel(x), ord=order))

    def fn(u: Updates, params: Params, step: int) -> Updates:
        norms = [leaf_norm(x) for x in (u if isinstance(u, tuple) else (u,))]
        if not norms:
            return u
        total = max(norms) if math.isinf(order) else sum(n**order for n in norms) ** (1 / order)
        coef = min(c / (total + 1e-6), 1.0)
        return map_leaves(lambda x: _scaled(x, coef), u)

    return _stateless_piece(f"clip_grad_norm(max_norm={c:g}, norm_type={order:g})", fn)


# -------------------------------------------------------------------- momentum
@attrs.frozen(eq=False)
class TraceState:
    """The state of :func:`trace`: the momentum buffer (torch's ``momentum_buffer``)."""

    momentum_buffer: Params


def _trace_rule(g: Array, buf: Array, *, first: bool, momentum: float, dampening: float,
                nesterov: bool) -> tuple[Array, Array]:
    xp = array_module(g)
    if first:  # torch's clone of the gradient (no copy when this update owns it)
        new = g if writable(g) else xp.array(g, copy=True)
    else:  # momentum * buf + (1 - dampening) * g
        new = xp.multiply(buf, momentum)
        new += g if dampening == 0 else (1 - dampening) * g  # (1 - 0) * g is g: skip that pass
    new = readonly(new)  # kept in the state: read-only before it is also the update
    if not nesterov:
        return new, new
    out = xp.multiply(new, momentum)  # g + momentum * buf
    out += g
    return out, new


def trace(momentum: float, dampening: float = 0.0, nesterov: bool = False) -> GradientTransformation:
    r"""SGD's momentum: a running sum of the updates.

    .. math::

        b_1 = g_1, \qquad b_t = \mu b_{t-1} + (1 - \tau) g_t, \qquad
        u_t = g_t + \mu b_t \ \text{(nesterov)}, \quad u_t = b_t \ \text{(else)}

    As torch, the first buffer is the update itself (no dampening on the first step).

    Args:
        momentum: ``mu``, ``>= 0``.
        dampening: ``tau``, in ``[0, 1]``.
        nesterov: use Nesterov's look-ahead (needs ``momentum > 0`` and ``dampening == 0``).
    """
    momentum, dampening = _check_momentum("trace", momentum, dampening, nesterov)

    def update(u: Updates, state: TraceState, params: Params,
               step: int) -> tuple[Updates, TraceState]:
        out, buf = lift_rule(
            lambda g, b: _trace_rule(g, b, first=step == 0, momentum=momentum,
                                     dampening=dampening, nesterov=nesterov),
            2, u, state.momentum_buffer)
        return out, TraceState(buf)

    return _piece(lambda params: TraceState(_zeros_like(params)), update,
                  f"trace(momentum={momentum:g}, dampening={dampening:g}, "
                  f"nesterov={nesterov})")


def _check_momentum(owner: str, momentum: Any, dampening: Any,
                    nesterov: bool) -> tuple[float, float]:
    momentum = _nonneg(owner, "momentum", momentum)
    dampening = check_real(owner, "dampening", dampening, low=0.0, high=1.0)
    nesterov = check_bool(owner, "nesterov", nesterov)
    if nesterov and (momentum == 0 or dampening != 0):
        msg = (f"{owner}: nesterov=True needs momentum > 0 and dampening == 0, got "
               f"momentum={momentum:g}, dampening={dampening:g}")
        raise ValueError(msg)
    return momentum, dampening


# --------------------------------------------------------------------- RMSprop
@attrs.frozen(eq=False)
class RMSpropState:
    """The state of :func:`scale_by_rms`: torch's ``square_avg`` and ``grad_avg`` (centered)."""

    square_avg: Params
    grad_avg: Params = None


def _rms_rule(g: Array, sq: Array, ga: Array | None, *, alpha: float,
              eps: float) -> tuple[Array, Array, Array | None]:
    xp = array_module(g)
    new_sq = xp.multiply(g, g)  # alpha * sq + (1 - alpha) * g^2
    new_sq *= 1 - alpha
    out = xp.multiply(sq, alpha)
    new_sq += out
    if ga is None:
        xp.sqrt(new_sq, out=out)
    else:  # sqrt(sq - ga^2), ga = ga + (1 - alpha) * (g - ga)
        new_ga = _lerp(ga, g, 1 - alpha)
        xp.multiply(new_ga, new_ga, out=out)
        xp.subtract(new_sq, out, out=out)
        xp.sqrt(out, out=out)
        ga = new_ga
    out += eps
    xp.divide(g, out, out=out)
    return out, new_sq, ga


def scale_by_rms(alpha: float = 0.99, eps: float = 1e-8, centered: bool = False) -> GradientTransformation:
    r"""Divide by the root of a running mean of squares (RMSprop's scaling).

    .. math::

        v_t = \alpha v_{t-1} + (1 - \alpha) g_t^2, \quad
        \bar g_t = \alpha \bar g_{t-1} + (1 - \alpha) g_t \ \text{(centered)}, \quad
        u_t = \frac{g_t}{\sqrt{v_t - \bar g_t^2} + \epsilon}

    (without ``centered``, :math:`\bar g_t = 0`); ``eps`` is outside the root, as torch.
    """
    alpha = _beta("scale_by_rms", "alpha", alpha)
    eps = _nonneg("scale_by_rms", "eps", eps)
    centered = check_bool("scale_by_rms", "centered", centered)

    def init(params: Params) -> RMSpropState:
        return RMSpropState(_zeros_like(params), _zeros_like(params) if centered else None)

    def update(u: Updates, state: RMSpropState, params: Params,
               step: int) -> tuple[Updates, RMSpropState]:
        if centered:
            out, sq, ga = lift_rule(
                lambda g, s, a: _rms_rule(g, s, a, alpha=alpha, eps=eps),
                3, u, state.square_avg, state.grad_avg)
        else:
            out, sq, ga = lift_rule(
                lambda g, s: _rms_rule(g, s, None, alpha=alpha, eps=eps), 3, u, state.square_avg)
            ga = None
        return out, RMSpropState(sq, ga)

    return _piece(init, update, f"scale_by_rms(alpha={alpha:g}, eps={eps:g}, centered={centered})")


# --------------------------------------------------------------------- Adagrad
@attrs.frozen(eq=False)
class AdagradState:
    """The state of :func:`scale_by_adagrad`: the sum of squared gradients (torch's ``sum``)."""

    sum: Params


def _adagrad_rule(g: Array, s: Array, *, eps: float) -> tuple[Array, Array]:
    xp = array_module(g)
    new_s = xp.multiply(g, g)  # s + g^2
    new_s += s
    out = xp.sqrt(new_s)  # g / (sqrt(s) + eps)
    out += eps
    xp.divide(g, out, out=out)
    return out, new_s


def scale_by_adagrad(initial_accumulator_value: float = 0.0,
                     eps: float = 1e-10) -> GradientTransformation:
    r"""Divide by the root of the sum of all squared gradients so far (Adagrad's scaling).

    .. math::

        s_t = s_{t-1} + g_t^2, \quad s_0 = \text{initial\_accumulator\_value}, \quad
        u_t = \frac{g_t}{\sqrt{s_t} + \epsilon}
    """
    init_value = _nonneg("scale_by_adagrad", "initial_accumulator_value", initial_accumulator_value)
    eps = _nonneg("scale_by_adagrad", "eps", eps)

    def update(u: Updates, state: AdagradState, params: Params,
               step: int) -> tuple[Updates, AdagradState]:
        out, s = lift_rule(lambda g, acc: _adagrad_rule(g, acc, eps=eps), 2, u, state.sum)
        return out, AdagradState(s)

    return _piece(lambda params: AdagradState(_full_like(params, init_value)), update,
                  f"scale_by_adagrad(initial_accumulator_value={init_value:g}, eps={eps:g})")


# ------------------------------------------------------------------- Adam family
@attrs.frozen(eq=False)
class AdamState:
    """The moments of Adam and RAdam (torch's names); ``max_exp_avg_sq`` only with amsgrad."""

    exp_avg: Params
    exp_avg_sq: Params
    max_exp_avg_sq: Params = None


def _lerp(a: Array, b: Array, w: float) -> Array:
    """``a + w * (b - a)`` in one new array (torch's ``lerp`` for ``w < 0.5``)."""
    out = array_module(a).subtract(b, a)
    out *= w
    out += a
    return out


def _moments(g: Array, m: Array, v: Array, b1: float, b2: float,
             reuse_g: bool = False) -> tuple[Array, Array, Array]:
    """The two running moments of the Adam family (torch's ``lerp`` and ``addcmul``).

    Args:
        g: the gradient (updates) of this step.
        m: the first moment so far.
        v: the second moment so far.
        b1: the first moment's decay.
        b2: the second moment's decay.
        reuse_g: the caller needs ``g`` no more and the update owns it
            (:func:`~nptfunc.optim._base.writable`): ``g``'s memory becomes ``spare``,
            one allocation fewer.

    Returns:
        ``(m + (1 - b1) (g - m), b2 v + (1 - b2) g^2, spare)``: three arrays (the
        first two new), ``spare`` free for the caller to compute its update in.
    """
    xp = array_module(g)
    new_m = _lerp(m, g, 1 - b1)
    new_v = xp.multiply(g, g)
    new_v *= 1 - b2
    spare = xp.multiply(v, b2, out=g if reuse_g and writable(g) else None)
    new_v += spare
    return new_m, new_v, spare


def _adam_rule(g: Array, m: Array, v: Array, vmax: Array | None, *, b1: float, b2: float,
               eps: float, bc1: float, bc2_sqrt: float) -> tuple[Array, Array, Array, Array | None]:
    xp = array_module(g)
    if xp is np and g.ndim == 1 and all(a is None or (a.dtype == g.dtype and a.shape == g.shape)
                                        for a in (m, v, vmax)):
        return _adam_rule_chunked(g, m, v, vmax, b1=b1, b2=b2, eps=eps, bc1=bc1, bc2_sqrt=bc2_sqrt)
    m, v, out = _moments(g, m, v, b1, b2, reuse_g=True)
    if vmax is not None:
        vmax = xp.maximum(vmax, v)
    xp.sqrt(v if vmax is None else vmax, out=out)  # denom = sqrt(v) / sqrt(bc2) + eps
    out /= bc2_sqrt
    out += eps
    xp.divide(m, out, out=out)  # (m / denom) / bc1, torch's order (addcdiv)
    out /= bc1
    return out, m, v, vmax


_BLOCK_BYTES = 1 << 18
"""Bytes of each array an elementwise chunk works on at a time when its arrays are too large for the
cache (more than four blocks each), so that a block's arrays are still cached for the next pass. Adam,
2 threads, AMD EPYC: 1.6 M float32 params 15.0 -> 9.6 ms; with 0.4 M and 0.2 M (a chunk's seven
arrays fit the L3 cache) blocks were 0.1-0.2 ms slower, so those chunks run whole."""


def _adam_rule_chunked(g: np.ndarray, m: np.ndarray, v: np.ndarray, vmax: np.ndarray | None, *, b1: float,
                       b2: float, eps: float, bc1: float, bc2_sqrt: float, scale: float = 1.0,
                       params: np.ndarray | None = None) -> tuple[Array, Array, Array, Array | None]:
    """:func:`_adam_rule` on a flat buffer (the fused optimizer's), in chunks on several threads.

    The operations and their order are those of :func:`_moments` and :func:`_adam_rule`,
    so the numbers are the same; the chunks run in parallel
    (:func:`nptfunc.backend.parallel_for`); a chunk too large for the cache goes in blocks
    of :data:`_BLOCK_BYTES` per array, a dozen passes over each block while it is cached.
    With ``params``, each chunk goes on to
    ``params + scale * update`` (the learning rate's scale, then the optimizer's sum),
    returned in place of the update.
    """
    lazy = isinstance(g, Pieces)  # copied into out block by block
    new_m, new_v = np.empty(g.shape, g.dtype), np.empty(g.shape, g.dtype)
    new_vmax = None if vmax is None else np.empty(g.shape, g.dtype)
    # g's memory becomes the update, as reuse_g does (new params own their memory: not a view's)
    out = g if not lazy and writable(g) and (params is None or g.base is None) else np.empty(g.shape, g.dtype)

    block = max(1, _BLOCK_BYTES // out.itemsize)

    def chunk(lo: int, hi: int) -> None:
        if hi - lo <= 4 * block:
            one_block(slice(lo, hi))
            return
        for start in range(lo, hi, block):  # blocks whose arrays stay in the cache between passes
            one_block(slice(start, min(hi, start + block)))

    def one_block(c: slice) -> None:
        mc, nm, nv, oc = m[c], new_m[c], new_v[c], out[c]
        if lazy:
            g.copy_into(oc, c.start, c.stop)
        gc = oc if lazy else g[c]
        np.subtract(gc, mc, out=nm)  # _lerp(m, g, 1 - b1)
        nm *= 1 - b1
        nm += mc
        np.multiply(gc, gc, out=nv)
        nv *= 1 - b2
        np.multiply(v[c], b2, out=oc)  # the spare (g is not read again in this chunk)
        nv += oc
        if new_vmax is not None:
            np.maximum(vmax[c], nv, out=new_vmax[c])
        np.sqrt(nv if new_vmax is None else new_vmax[c], out=oc)
        oc /= bc2_sqrt
        oc += eps
        np.divide(nm, oc, out=oc)
        oc /= bc1
        if params is not None:
            oc *= scale
            oc += params[c]

    parallel_for(g.size, chunk)
    return out, new_m, new_v, new_vmax


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                  amsgrad: bool = False) -> GradientTransformation:
    r"""Adam's scaling, with torch's bias corrections and ``eps`` outside the root.

    .. math::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
        \hat v_t = \max(\hat v_{t-1}, v_t) \ \text{(amsgrad; else } \hat v_t = v_t),

        u_t = \frac{m_t / (1 - \beta_1^t)}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}
    """
    b1 = _beta("scale_by_adam", "b1", b1)
    b2 = _beta("scale_by_adam", "b2", b2)
    eps = _nonneg("scale_by_adam", "eps", eps)
    amsgrad = check_bool("scale_by_adam", "amsgrad", amsgrad)

    def init(params: Params) -> AdamState:
        return AdamState(_zeros_like(params), _zeros_like(params),
                         _zeros_like(params) if amsgrad else None)

    def update(u: Updates, state: AdamState, params: Params,
               step: int) -> tuple[Updates, AdamState]:
        t = step + 1
        kw = {"b1": b1, "b2": b2, "eps": eps, "bc1": 1 - b1**t, "bc2_sqrt": (1 - b2**t) ** 0.5}
        if amsgrad:
            out, m, v, vmax = lift_rule(lambda g, m, v, w: _adam_rule(g, m, v, w, **kw), 4,
                                        u, state.exp_avg, state.exp_avg_sq, state.max_exp_avg_sq)
        else:
            out, m, v, _ = lift_rule(lambda g, m, v: _adam_rule(g, m, v, None, **kw), 4,
                                     u, state.exp_avg, state.exp_avg_sq)
            vmax = None
        return out, AdamState(m, v, vmax)

    def apply_scaled(u: Updates, state: AdamState, params: Params, step: int,
                     s: float) -> tuple[Params, AdamState]:
        if not all(_flat_like(x, u) for x in (params, state.exp_avg, state.exp_avg_sq)) or (
                amsgrad and not _flat_like(state.max_exp_avg_sq, u)):
            out, new_state = update(arrays(u), state, params, step)  # not the fused path's buffers
            return map_leaves(lambda x, p: _plus_scaled(p, s, x), out, params), new_state
        t = step + 1
        kw = {"b1": b1, "b2": b2, "eps": eps, "bc1": 1 - b1**t, "bc2_sqrt": (1 - b2**t) ** 0.5, "scale": s}
        outs = [_adam_rule_chunked(g, m, v, w, params=p, **kw) for g, m, v, w, p in zip(
            u, state.exp_avg, state.exp_avg_sq, state.max_exp_avg_sq or (None,) * len(u), params,
            strict=True)]
        new_params, m, v, vmax = (tuple(o[k] for o in outs) for k in range(4))
        return new_params, AdamState(tuple(readonly(x) for x in m), tuple(readonly(x) for x in v),
                                     tuple(readonly(x) for x in vmax) if amsgrad else None)

    apply_scaled.takes_pieces = True  # type: ignore[attr-defined]  # the gradients may come as Pieces
    name = f"scale_by_adam(b1={b1:g}, b2={b2:g}, eps={eps:g}, amsgrad={amsgrad})"
    return GradientTransformation(init, update, name, fresh_outputs=True, elementwise=True,
                                  apply_scaled=apply_scaled)


def _flat_like(x: Any, u: Any) -> bool:
    """Whether ``x`` holds flat NumPy buffers as ``u`` does (1-D arrays of the same sizes and dtypes)."""
    return (isinstance(x, tuple) and isinstance(u, tuple) and len(x) == len(u) and all(
        type(a) is np.ndarray and type(b) in (np.ndarray, Pieces) and a.ndim == 1 and a.shape == b.shape
        and a.dtype == b.dtype for a, b in zip(x, u, strict=True)))


def _radam_rule(g: Array, m: Array, v: Array, *, b1: float, b2: float, eps: float, bc1: float,
                bc2: float, rect: float | None) -> tuple[Array, Array, Array]:
    xp = array_module(g)
    m, v, spare = _moments(g, m, v, b1, b2, reuse_g=True)
    if rect is None:
        return xp.divide(m, bc1, out=spare), m, v
    out = xp.divide(m, bc1)  # (m / bc1) * adaptive * rect
    xp.sqrt(v, out=spare)  # adaptive = sqrt(bc2) / (sqrt(v) + eps)
    spare += eps
    xp.divide(bc2**0.5, spare, out=spare)
    out *= spare
    out *= rect
    return out, m, v


def scale_by_radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    r"""RAdam's scaling: Adam's, rectified, or plain momentum while the variance is unreliable.

    .. math::

        \rho_\infty = \frac{2}{1 - \beta_2} - 1, \quad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t}, \quad
        r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}
                          {(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}},

        u_t = \frac{m_t}{1 - \beta_1^t} \cdot
              \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon} \, r_t
              \ \text{ if } \rho_t > 5, \qquad
        u_t = \frac{m_t}{1 - \beta_1^t} \ \text{ otherwise}

    with :math:`m_t, v_t` Adam's moments (torch's threshold and ``eps`` placement).
    """
    b1 = _beta("scale_by_radam", "b1", b1)
    b2 = _beta("scale_by_radam", "b2", b2)
    eps = _nonneg("scale_by_radam", "eps", eps)
    rho_inf = 2 / (1 - b2) - 1

    def update(u: Updates, state: AdamState, params: Params,
               step: int) -> tuple[Updates, AdamState]:
        t = step + 1
        bc2 = 1 - b2**t
        rho_t = rho_inf - 2 * t * (b2**t) / bc2
        rect = (math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                if rho_t > 5.0 else None)
        out, m, v = lift_rule(
            lambda g, m, v: _radam_rule(g, m, v, b1=b1, b2=b2, eps=eps, bc1=1 - b1**t, bc2=bc2,
                                        rect=rect),
            3, u, state.exp_avg, state.exp_avg_sq)
        return out, AdamState(m, v)

    return _piece(lambda params: AdamState(_zeros_like(params), _zeros_like(params)),
                  update, f"scale_by_radam(b1={b1:g}, b2={b2:g}, eps={eps:g})")


@attrs.frozen(eq=False)
class NAdamState:
    """The state of :func:`scale_by_nadam`: Adam's moments and the product of the ``mu_t``."""

    exp_avg: Params
    exp_avg_sq: Params
    mu_product: float = 1.0


def _nadam_rule(g: Array, m: Array, v: Array, *, b1: float, b2: float, eps: float, bc2: float,
                c_g: float, c_m: float) -> tuple[Array, Array, Array]:
    xp = array_module(g)
    m, v, denom = _moments(g, m, v, b1, b2)
    xp.divide(v, bc2, out=denom)  # sqrt(v / bc2) + eps
    xp.sqrt(denom, out=denom)
    denom += eps
    out = xp.divide(g, denom)  # c_g * (g / denom) + c_m * (m / denom)
    out *= c_g
    xp.divide(m, denom, out=denom)
    denom *= c_m
    out += denom
    return out, m, v


def scale_by_nadam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   momentum_decay: float = 4e-3) -> GradientTransformation:
    r"""NAdam's scaling: Adam with Nesterov momentum and torch's momentum schedule.

    .. math::

        \mu_t = \beta_1 \left(1 - \tfrac12 \, 0.96^{t \psi}\right), \quad
        \Pi_t = \prod_{i \le t} \mu_i, \quad
        u_t = \frac{1}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}
              \left(\frac{1 - \mu_t}{1 - \Pi_t} g_t
                    + \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} m_t\right)

    with :math:`m_t, v_t` Adam's moments and :math:`\psi` = ``momentum_decay``.
    """
    b1 = _beta("scale_by_nadam", "b1", b1)
    b2 = _beta("scale_by_nadam", "b2", b2)
    eps = _nonneg("scale_by_nadam", "eps", eps)
    psi = _nonneg("scale_by_nadam", "momentum_decay", momentum_decay)

    def update(u: Updates, state: NAdamState, params: Params,
               step: int) -> tuple[Updates, NAdamState]:
        t = step + 1
        mu = b1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
        mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * psi)))
        mu_product = float(state.mu_product) * mu
        kw = {"b1": b1, "b2": b2, "eps": eps, "bc2": 1 - b2**t,
              "c_g": (1.0 - mu) / (1.0 - mu_product),
              "c_m": mu_next / (1.0 - mu_product * mu_next)}
        out, m, v = lift_rule(lambda g, m, v: _nadam_rule(g, m, v, **kw), 3,
                              u, state.exp_avg, state.exp_avg_sq)
        return out, NAdamState(m, v, mu_product)

    return _piece(lambda params: NAdamState(_zeros_like(params), _zeros_like(params), 1.0), update,
                  f"scale_by_nadam(b1={b1:g}, b2={b2:g}, eps={eps:g}, momentum_decay={psi:g})")


# --------------------------------------------------------------------- Adamax
@attrs.frozen(eq=False)
class AdamaxState:
    """The state of :func:`scale_by_adamax`: torch's ``exp_avg`` and ``exp_inf``."""

    exp_avg: Params
    exp_inf: Params


def _adamax_rule(g: Array, m: Array, u: Array, *, b1: float, b2: float, eps: float,
                 bc1: float) -> tuple[Array, Array, Array]:
    xp = array_module(g)
    new_u = xp.abs(g)  # max(b2 * u, |g| + eps)
    new_u += eps
    out = xp.multiply(u, b2)
    xp.maximum(out, new_u, out=new_u)
    new_m = _lerp(m, g, 1 - b1)
    xp.divide(new_m, new_u, out=out)  # (m / u) / (1 - b1^t)
    out /= bc1
    return out, new_m, new_u


def scale_by_adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    r"""Adamax's scaling: Adam with the infinity norm in place of the second moment.

    .. math::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \quad
        d_t = \frac{m_t}{(1 - \beta_1^t)\, u_t}

    (``eps`` inside the maximum, as torch).
    """
    b1 = _beta("scale_by_adamax", "b1", b1)
    b2 = _beta("scale_by_adamax", "b2", b2)
    eps = _nonneg("scale_by_adamax", "eps", eps)

    def update(u: Updates, state: AdamaxState, params: Params,
               step: int) -> tuple[Updates, AdamaxState]:
        bc1 = 1 - b1 ** (step + 1)
        out, m, inf = lift_rule(lambda g, m, w: _adamax_rule(g, m, w, b1=b1, b2=b2, eps=eps, bc1=bc1),
                                3, u, state.exp_avg, state.exp_inf)
        return out, AdamaxState(m, inf)

    return _piece(lambda params: AdamaxState(_zeros_like(params), _zeros_like(params)), update,
                  f"scale_by_adamax(b1={b1:g}, b2={b2:g}, eps={eps:g})")


# ------------------------------------------------------------------- Adadelta
@attrs.frozen(eq=False)
class AdadeltaState:
    """The state of :func:`scale_by_adadelta`: torch's ``square_avg`` and ``acc_delta``."""

    square_avg: Params
    acc_delta: Params


def _adadelta_rule(g: Array, sq: Array, acc: Array, *, rho: float,
                   eps: float) -> tuple[Array, Array, Array]:
    xp = array_module(g)
    new_sq = xp.multiply(g, g)  # rho * sq + (1 - rho) * g^2
    new_sq *= 1 - rho
    std = xp.multiply(sq, rho)
    new_sq += std
    xp.add(new_sq, eps, out=std)  # std = sqrt(sq + eps)
    xp.sqrt(std, out=std)
    out = xp.add(acc, eps)  # delta = sqrt(acc + eps) / std * g
    xp.sqrt(out, out=out)
    out /= std
    out *= g
    new_acc = xp.multiply(out, out, out=std)  # rho * acc + (1 - rho) * delta^2
    new_acc *= 1 - rho
    new_acc += rho * acc
    return out, new_sq, new_acc


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> GradientTransformation:
    r"""Adadelta's scaling: the ratio of two running root mean squares.

    .. math::

        v_t = \rho v_{t-1} + (1 - \rho) g_t^2, \quad
        d_t = \frac{\sqrt{a_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}} \, g_t, \quad
        a_t = \rho a_{t-1} + (1 - \rho) d_t^2
    """
    rho = check_real("scale_by_adadelta", "rho", rho, low=0.0, high=1.0)
    eps = _nonneg("scale_by_adadelta", "eps", eps)

    def update(u: Updates, state: AdadeltaState, params: Params,
               step: int) -> tuple[Updates, AdadeltaState]:
        out, sq, acc = lift_rule(lambda g, s, a: _adadelta_rule(g, s, a, rho=rho, eps=eps), 3,
                                 u, state.square_avg, state.acc_delta)
        return out, AdadeltaState(sq, acc)

    return _piece(lambda params: AdadeltaState(_zeros_like(params), _zeros_like(params)), update,
                  f"scale_by_adadelta(rho={rho:g}, eps={eps:g})")

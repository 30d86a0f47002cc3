r"""The named optimizers, each a recipe of pieces from :mod:`nptfunc.optim._transforms`.

Every recipe has the same frame, in torch's order of operations::

    [scale(-1) if maximize] -> [add_decayed_weights (L2, coupled)] -> scaling/momentum
        -> scale_by_learning_rate(lr) -> [decoupled_weight_decay]

In the update rules below, :math:`g_t` is the gradient of update :math:`t`
(:math:`t = 1` first; the schedule is evaluated at ``step = t - 1``),
:math:`\gamma_t` the learning rate, :math:`\lambda` the weight decay and
:math:`p_t` the params after update :math:`t`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nptfunc._types import ScalarOrSchedule, Schedule
from nptfunc._validate import check_bool, check_real
from nptfunc.optim._base import FunctionalOptimizer, GradientTransformation, make_optimizer
from nptfunc.optim._transforms import (
    _beta,
    _check_momentum,
    _nonneg,
    add_decayed_weights,
    decoupled_weight_decay,
    scale,
    scale_by_adadelta,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_adamax,
    scale_by_learning_rate,
    scale_by_nadam,
    scale_by_radam,
    scale_by_rms,
    trace,
)
from nptfunc.schedules import _schedule, as_schedule

__all__ = ["adadelta", "adagrad", "adam", "adamax", "adamw", "momentum", "nadam", "radam", "rmsprop", "sgd"]


def _betas(owner: str, betas: Any) -> tuple[float, float]:
    if isinstance(betas, (str, bytes)) or not isinstance(betas, Sequence) or len(betas) != 2:
        msg = f"{owner}: expected betas to be a pair (beta1, beta2), got {betas!r}"
        raise TypeError(msg)
    return _beta(owner, "betas[0]", betas[0]), _beta(owner, "betas[1]", betas[1])


def _recipe(owner: str, hyperparams: dict[str, Any], lr: Schedule,
            core: list[GradientTransformation], *, maximize: bool, weight_decay: float,
            decoupled: bool = False, step_lr: Schedule | None = None) -> FunctionalOptimizer:
    """The frame shared by the named optimizers around their ``core`` pieces."""
    parts = [scale(-1.0)] if maximize else []
    if weight_decay and not decoupled:
        parts.append(add_decayed_weights(weight_decay))
    parts += core
    parts.append(scale_by_learning_rate(step_lr if step_lr is not None else lr))
    if weight_decay and decoupled:
        parts.append(decoupled_weight_decay(weight_decay, lr))
    return make_optimizer(owner, hyperparams, lr, parts)


def sgd(lr: ScalarOrSchedule, momentum: float = 0.0, dampening: float = 0.0,
        weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False) -> FunctionalOptimizer:
    r"""Stochastic gradient descent with torch's momentum, Nesterov and weight decay.

    .. math::

        g_t &\leftarrow \pm g_t + \lambda p_{t-1} \quad (- \text{ if maximize}) \\
        b_1 &= g_1, \qquad b_t = \mu b_{t-1} + (1 - \tau) g_t \\
        d_t &= g_t + \mu b_t \ \text{(nesterov)}, \quad d_t = b_t \ \text{(momentum)},
            \quad d_t = g_t \ (\mu = 0) \\
        p_t &= p_{t-1} - \gamma_t d_t

    Equivalent to `torch.optim.SGD`.

    Args:
        lr: :math:`\gamma`, a float ``>= 0`` or a schedule.
        momentum: :math:`\mu`, ``>= 0``.
        dampening: :math:`\tau`, in ``[0, 1]``.
        weight_decay: :math:`\lambda` (L2 penalty), ``>= 0``.
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        maximize: maximize the objective instead of minimizing it.

    Raises:
        ValueError: a hyperparameter out of range, or nesterov without momentum or with dampening.
    """
    schedule = as_schedule(lr, "sgd")
    momentum, dampening = _check_momentum("sgd", momentum, dampening, nesterov)
    wd = _nonneg("sgd", "weight_decay", weight_decay)
    maximize = check_bool("sgd", "maximize", maximize)
    core = [trace(momentum, dampening, nesterov)] if momentum else []
    return _recipe("sgd", {"lr": lr, "momentum": momentum, "dampening": dampening,
                           "weight_decay": wd, "nesterov": nesterov, "maximize": maximize},
                   schedule, core, maximize=maximize, weight_decay=wd)


def momentum(lr: ScalarOrSchedule, beta: float = 0.9) -> FunctionalOptimizer:
    r"""Heavy-ball momentum with the learning rate inside the velocity (the reference project's).

    .. math::

        v_t = \beta v_{t-1} + \gamma_t g_t, \quad v_0 = 0, \qquad p_t = p_{t-1} - v_t

    With a constant learning rate this is `torch.optim.SGD` with ``momentum=beta``;
    with a schedule it differs (torch scales the whole velocity by the current rate).

    Args:
        lr: :math:`\gamma`, a float ``>= 0`` or a schedule.
        beta: :math:`\beta`, in ``[0, 1)``.
    """
    schedule = as_schedule(lr, "momentum")
    beta = _beta("momentum", "beta", beta)
    parts = [scale_by_learning_rate(schedule, flip_sign=False), trace(beta), scale(-1.0)]
    return make_optimizer("momentum", {"lr": lr, "beta": beta}, schedule, parts)


def rmsprop(lr: ScalarOrSchedule = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
            weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
            maximize: bool = False) -> FunctionalOptimizer:
    r"""RMSprop, torch's variant: ``eps`` outside the root, optional centering and momentum.

    .. math::

        g_t &\leftarrow \pm g_t + \lambda p_{t-1} \\
        v_t &= \alpha v_{t-1} + (1 - \alpha) g_t^2, \qquad
        \bar g_t = \alpha \bar g_{t-1} + (1 - \alpha) g_t \ \text{(centered, else 0)} \\
        d_t &= \frac{g_t}{\sqrt{v_t - \bar g_t^2} + \epsilon}, \qquad
        b_t = \mu b_{t-1} + d_t \ (\text{if } \mu > 0, \text{ else } b_t = d_t) \\
        p_t &= p_{t-1} - \gamma_t b_t

    Equivalent to `torch.optim.RMSprop`.

    Args:
        lr: :math:`\gamma`, a float ``>= 0`` or a schedule.
        alpha: :math:`\alpha`, the smoothing constant, in ``[0, 1)``.
        eps: :math:`\epsilon`, ``>= 0``.
        weight_decay: :math:`\lambda` (L2 penalty), ``>= 0``.
        momentum: :math:`\mu`, ``>= 0``.
        centered: normalise by the estimated variance instead of the second moment.
        maximize: maximize the objective instead of minimizing it.
    """
    schedule = as_schedule(lr, "rmsprop")
    alpha = _beta("rmsprop", "alpha", alpha)
    eps = _nonneg("rmsprop", "eps", eps)
    wd = _nonneg("rmsprop", "weight_decay", weight_decay)
    mom = _nonneg("rmsprop", "momentum", momentum)
    centered = check_bool("rmsprop", "centered", centered)
    maximize = check_bool("rmsprop", "maximize", maximize)
    core = [scale_by_rms(alpha, eps, centered)] + ([trace(mom)] if mom else [])
    return _recipe("rmsprop", {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": wd,
                               "momentum": mom, "centered": centered, "maximize": maximize},
                   schedule, core, maximize=maximize, weight_decay=wd)


def adagrad(lr: ScalarOrSchedule = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
            initial_accumulator_value: float = 0.0, eps: float = 1e-10,
            maximize: bool = False) -> FunctionalOptimizer:
    r"""Adagrad, with torch's learning-rate decay.

    .. math::

        g_t &\leftarrow \pm g_t + \lambda p_{t-1} \\
        s_t &= s_{t-1} + g_t^2, \quad s_0 = \text{initial\_accumulator\_value} \\
        p_t &= p_{t-1} - \frac{\gamma_t}{1 + (t - 1) \eta} \, \frac{g_t}{\sqrt{s_t} + \epsilon}

    Equivalent to `torch.optim.Adagrad`.

    Args:
        lr: :math:`\gamma`, a float ``>= 0`` or a schedule.
        lr_decay: :math:`\eta`, ``>= 0``.
        weight_decay: :math:`\lambda` (L2 penalty), ``>= 0``.
        initial_accumulator_value: the starting sum of squares, ``>= 0``.
        eps: :math:`\epsilon`, ``>= 0``.
        maximize: maximize the objective instead of minimizing it.
    """
    schedule = as_schedule(lr, "adagrad")
    decay = _nonneg("adagrad", "lr_decay", lr_decay)
    wd = _nonneg("adagrad", "weight_decay", weight_decay)
    init_value = _nonneg("adagrad", "initial_accumulator_value", initial_accumulator_value)
    eps = _nonneg("adagrad", "eps", eps)
    maximize = check_bool("adagrad", "maximize", maximize)
    step_lr = (_schedule("adagrad_lr", lambda t: float(schedule(t)) / (1 + t * decay),
                         lr=schedule, lr_decay=decay) if decay else schedule)
    return _recipe("adagrad", {"lr": lr, "lr_decay": decay, "weight_decay": wd,
                               "initial_accumulator_value": init_value, "eps": eps,
                               "maximize": maximize},
                   schedule, [scale_by_adagrad(init_value, eps)], maximize=maximize,
                   weight_decay=wd, step_lr=step_lr)


def _adam(owner: str, lr: ScalarOrSchedule, betas: Any, eps: float, weight_decay: float,
          amsgrad: bool, maximize: bool, decoupled: bool) -> FunctionalOptimizer:
    schedule = as_schedule(lr, owner)
    b1, b2 = _betas(owner, betas)
    eps = _nonneg(owner, "eps", eps)
    wd = _nonneg(owner, "weight_decay", weight_decay)
    amsgrad = check_bool(owner, "amsgrad", amsgrad)
    maximize = check_bool(owner, "maximize", maximize)
    decoupled = check_bool(owner, "decoupled_weight_decay", decoupled)
    hyperparams = {"lr": lr, "betas": (b1, b2), "eps": eps, "weight_decay": wd,
                   "amsgrad": amsgrad, "maximize": maximize}
    if owner == "adam":
        hyperparams["decoupled_weight_decay"] = decoupled
    return _recipe(owner, hyperparams, schedule, [scale_by_adam(b1, b2, eps, amsgrad)],
                   maximize=maximize, weight_decay=wd, decoupled=decoupled)


def adam(lr: ScalarOrSchedule = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
         maximize: bool = False, decoupled_weight_decay: bool = False) -> FunctionalOptimizer:
    r"""Adam, with torch's bias corrections and ``eps`` outside the root.

    .. math::

        g_t &\leftarrow \pm g_t + \lambda p_{t-1} \quad
            (\text{or } p_{t-1} \leftarrow p_{t-1}(1 - \gamma_t \lambda)
            \text{ if decoupled\_weight\_decay}) \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \ \text{(amsgrad)}, \quad \hat v_t = v_t
            \ \text{(else)} \\
        p_t &= p_{t-1} - \frac{\gamma_t}{1 - \beta_1^t} \,
            \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    Equivalent to `torch.optim.Adam`.

    Args:
        lr: :math:`\gamma`, a float ``>= 0`` or a schedule.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`, ``>= 0``.
        weight_decay: :math:`\lambda`, ``>= 0``.
        amsgrad: use the running maximum of :math:`v_t` (AMSGrad).
        maximize: maximize the objective instead of minimizing it.
        decoupled_weight_decay: decay the params directly (AdamW) instead of adding
            :math:`\lambda p` to the gradient.
    """
    return _adam("adam", lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay)


def adamw(lr: ScalarOrSchedule = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False,
          maximize: bool = False) -> FunctionalOptimizer:
    r"""AdamW: Adam with decoupled weight decay.

    .. math::

        p_{t-1} &\leftarrow p_{t-1} (1 - \gamma_t \lambda) \\
        p_t &= p_{t-1} - \frac{\gamma_t}{1 - \beta_1^t} \,
            \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    with :math:`m_t, \hat v_t` as in :func:`adam` (from :math:`\pm g_t`, no L2 term).

    Equivalent to `torch.optim.AdamW`.

    Args:
        lr: :math:`\gamma`, a float ``>= 0`` or a schedule.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`, ``>= 0``.
        weight_decay: :math:`\lambda`, ``>= 0``.
        amsgrad: use the running maximum of :math:`v_t` (AMSGrad).
        maximize: maximize the objective instead of minimizing it.
    """
    return _adam("adamw", lr, betas, eps, weight_decay, amsgrad, maximize, True)


def radam(lr: ScalarOrSchedule = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
          maximize: bool = False) -> FunctionalOptimizer:
    r"""RAdam: Adam with the variance of the adaptive rate rectified.

    .. math::

        g_t &\leftarrow \pm g_t + \lambda p_{t-1} \quad
            (\text{or } p_{t-1} \leftarrow p_{t-1}(1 - \gamma_t \lambda)
            \text{ if decoupled\_weight\_decay}) \\
        \rho_\infty &= \frac{2}{1 - \beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t}, \qquad
        r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}
                         {(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
        p_t &= p_{t-1} - \gamma_t \frac{m_t}{1 - \beta_1^t}
            \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon} r_t
            \ \text{ if } \rho_t > 5, \qquad
        p_t = p_{t-1} - \gamma_t \frac{m_t}{1 - \beta_1^t} \ \text{ otherwise}

    with :math:`m_t, v_t` Adam's moments.

    Equivalent to `torch.optim.RAdam`.

    Args:
        lr: :math:`\gamma`, a float ``>= 0`` or a schedule.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`, ``>= 0``.
        weight_decay: :math:`\lambda`, ``>= 0``.
        decoupled_weight_decay: decay the params directly (as AdamW).
        maximize: maximize the objective instead of minimizing it.
    """
    schedule = as_schedule(lr, "radam")
    b1, b2 = _betas("radam", betas)
    eps = _nonneg("radam", "eps", eps)
    wd = _nonneg("radam", "weight_decay", weight_decay)
    decoupled_weight_decay = check_bool("radam", "decoupled_weight_decay", decoupled_weight_decay)
    maximize = check_bool("radam", "maximize", maximize)
    return _recipe("radam", {"lr": lr, "betas": (b1, b2), "eps": eps, "weight_decay": wd,
                             "decoupled_weight_decay": decoupled_weight_decay,
                             "maximize": maximize},
                   schedule, [scale_by_radam(b1, b2, eps)], maximize=maximize, weight_decay=wd,
                   decoupled=decoupled_weight_decay)


def nadam(lr: ScalarOrSchedule = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
          decoupled_weight_decay: bool = False, maximize: bool = False) -> FunctionalOptimizer:
    r"""NAdam: Adam with Nesterov momentum and torch's momentum schedule.

    .. math::

        g_t &\leftarrow \pm g_t + \lambda p_{t-1} \quad
            (\text{or } p_{t-1} \leftarrow p_{t-1}(1 - \gamma_t \lambda)
            \text{ if decoupled\_weight\_decay}) \\
        \mu_t &= \beta_1 \left(1 - \tfrac12 \, 0.96^{t \psi}\right), \qquad
        \Pi_t = \prod_{i \le t} \mu_i \\
        p_t &= p_{t-1} - \frac{\gamma_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}
            \left(\frac{1 - \mu_t}{1 - \Pi_t} g_t
                  + \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} m_t\right)

    with :math:`m_t, v_t` Adam's moments and :math:`\psi` = ``momentum_decay``.
    :math:`\Pi_t` is kept in the state as a Python float (torch keeps it in its
    default dtype, float32 unless changed).

    Equivalent to `torch.optim.NAdam`.

    Args:
        lr: :math:`\gamma`, a float ``>= 0`` or a schedule.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`, ``>= 0``.
        weight_decay: :math:`\lambda`, ``>= 0``.
        momentum_decay: :math:`\psi`, ``>= 0``.
        decoupled_weight_decay: decay the params directly (as AdamW).
        maximize: maximize the objective instead of minimizing it.
    """
    schedule = as_schedule(lr, "nadam")
    b1, b2 = _betas("nadam", betas)
    eps = _nonneg("nadam", "eps", eps)
    wd = _nonneg("nadam", "weight_decay", weight_decay)
    decoupled_weight_decay = check_bool("nadam", "decoupled_weight_decay", decoupled_weight_decay)
    maximize = check_bool("nadam", "maximize", maximize)
    psi = _nonneg("nadam", "momentum_decay", momentum_decay)
    return _recipe("nadam", {"lr": lr, "betas": (b1, b2), "eps": eps, "weight_decay": wd,
                             "momentum_decay": psi,
                             "decoupled_weight_decay": decoupled_weight_decay,
                             "maximize": maximize},
                   schedule, [scale_by_nadam(b1, b2, eps, psi)], maximize=maximize,
                   weight_decay=wd, decoupled=decoupled_weight_decay)


def adamax(lr: ScalarOrSchedule = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
           eps: float = 1e-8, weight_decay: float = 0.0, maximize: bool = False) -> FunctionalOptimizer:
    r"""Adamax: Adam with the infinity norm of the gradients in place of the second moment.

    .. math::

        g_t &\leftarrow \pm g_t + \lambda p_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
        p_t &= p_{t-1} - \frac{\gamma_t}{1 - \beta_1^t} \frac{m_t}{u_t}

    Equivalent to `torch.optim.Adamax`.

    Args:
        lr: :math:`\gamma`, a float ``>= 0`` or a schedule.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`, ``>= 0``.
        weight_decay: :math:`\lambda` (L2 penalty), ``>= 0``.
        maximize: maximize the objective instead of minimizing it.
    """
    schedule = as_schedule(lr, "adamax")
    b1, b2 = _betas("adamax", betas)
    eps = _nonneg("adamax", "eps", eps)
    wd = _nonneg("adamax", "weight_decay", weight_decay)
    maximize = check_bool("adamax", "maximize", maximize)
    return _recipe("adamax", {"lr": lr, "betas": (b1, b2), "eps": eps, "weight_decay": wd,
                              "maximize": maximize},
                   schedule, [scale_by_adamax(b1, b2, eps)], maximize=maximize, weight_decay=wd)


def adadelta(lr: ScalarOrSchedule = 1.0, rho: float = 0.9, eps: float = 1e-6,
             weight_decay: float = 0.0, maximize: bool = False) -> FunctionalOptimizer:
    r"""Adadelta: steps scaled by the ratio of the running RMS of past steps to that of gradients.

    .. math::

        g_t &\leftarrow \pm g_t + \lambda p_{t-1} \\
        v_t &= \rho v_{t-1} + (1 - \rho) g_t^2, \qquad
        d_t = \frac{\sqrt{a_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}} g_t, \qquad
        a_t = \rho a_{t-1} + (1 - \rho) d_t^2 \\
        p_t &= p_{t-1} - \gamma_t d_t

    Equivalent to `torch.optim.Adadelta`.

    Args:
        lr: :math:`\gamma`, a float ``>= 0`` or a schedule (torch's default 1.0).
        rho: :math:`\rho`, the smoothing constant, in ``[0, 1]``.
        eps: :math:`\epsilon`, ``>= 0``.
        weight_decay: :math:`\lambda` (L2 penalty), ``>= 0``.
        maximize: maximize the objective instead of minimizing it.
    """
    schedule = as_schedule(lr, "adadelta")
    rho = check_real("adadelta", "rho", rho, low=0.0, high=1.0)
    eps = _nonneg("adadelta", "eps", eps)
    wd = _nonneg("adadelta", "weight_decay", weight_decay)
    maximize = check_bool("adadelta", "maximize", maximize)
    return _recipe("adadelta", {"lr": lr, "rho": rho, "eps": eps, "weight_decay": wd,
                                "maximize": maximize},
                   schedule, [scale_by_adadelta(rho, eps)], maximize=maximize, weight_decay=wd)

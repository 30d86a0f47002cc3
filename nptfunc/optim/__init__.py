"""Optimizers: functional factories (``adam(...)``) and the torch-like classes (``Adam(...)``).

Two kinds, two names: :class:`FunctionalOptimizer` is what a factory returns (an
immutable pair of pure functions over an :class:`OptState`); :class:`Optimizer` is
the base of the torch-like classes, as ``torch.optim.Optimizer`` (it holds
``param_groups`` and steps ``nn.Parameter`` objects in place of ``.data``).

A functional optimizer is immutable: ``opt.init(params) -> opt_state`` and
``opt.update(opt_state, grads) -> (opt_state, params)``. The state (an
:class:`OptState`) holds the step count, the current params and the transforms'
buffers; nothing given to ``update`` is modified. ``lr`` is a float or a schedule
from :mod:`nptfunc.schedules` everywhere. The semantics are torch's.

Example:
    >>> import numpy as np
    >>> from nptfunc import optim
    >>> opt = optim.chain(optim.clip_grad_norm(1.0), optim.sgd(lr=0.1, momentum=0.9))
    >>> state = opt.init({"w": np.zeros(3)})
    >>> state, params = opt.update(state, {"w": np.ones(3)})
    >>> params["w"].round(4), state.step
    (array([-0.0577, -0.0577, -0.0577]), 1)
"""

from nptfunc.optim import lr_scheduler
from nptfunc.optim._base import FunctionalOptimizer, GradientTransformation, OptState, Updates, chain
from nptfunc.optim._optimizers import (
    adadelta,
    adagrad,
    adam,
    adamax,
    adamw,
    momentum,
    nadam,
    radam,
    rmsprop,
    sgd,
)
from nptfunc.optim._torch_like import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Momentum,
    NAdam,
    Optimizer,
    RAdam,
    RMSProp,
    RMSprop,
)
from nptfunc.optim._transforms import (
    AdadeltaState,
    AdagradState,
    AdamaxState,
    AdamState,
    NAdamState,
    RMSpropState,
    TraceState,
    add_decayed_weights,
    clip_grad_norm,
    clip_grad_value,
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

__all__ = [
    "SGD",
    "Adadelta",
    "AdadeltaState",
    "Adagrad",
    "AdagradState",
    "Adam",
    "AdamState",
    "AdamW",
    "Adamax",
    "AdamaxState",
    "FunctionalOptimizer",
    "GradientTransformation",
    "Momentum",
    "NAdam",
    "NAdamState",
    "OptState",
    "Optimizer",
    "RAdam",
    "RMSProp",
    "RMSprop",
    "RMSpropState",
    "TraceState",
    "Updates",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "add_decayed_weights",
    "chain",
    "clip_grad_norm",
    "clip_grad_value",
    "decoupled_weight_decay",
    "lr_scheduler",
    "momentum",
    "nadam",
    "radam",
    "rmsprop",
    "scale",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_learning_rate",
    "scale_by_nadam",
    "scale_by_radam",
    "scale_by_rms",
    "sgd",
    "trace",
]

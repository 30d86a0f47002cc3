"""nptfunc: a neural-network library in plain NumPy, functional at its core.

The core is pure functions: every layer has ``init(key) -> params`` and
``apply(params, x) -> (y, vjp)``; optimizers are ``update(state, grads)``
transforms; schedules are ``step -> lr`` functions. ``from nptfunc import nn,
optim`` gives a thin PyTorch-like face over the same math.
"""

from nptfunc import convert, data, distributed, io, layers, losses, nn, ops, optim, random, schedules, tree
from nptfunc.io import load, save

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "convert",
    "data",
    "distributed",
    "io",
    "layers",
    "load",
    "losses",
    "nn",
    "ops",
    "optim",
    "random",
    "save",
    "schedules",
    "tree",
]

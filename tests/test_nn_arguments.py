"""Every constructor argument of every public facade class is checked (issue: hardening, item 1).

As ``tests/test_layer_arguments.py`` for the core: each argument of each
``nptfunc.nn`` layer and loss class gets the same table of bad values, and each
must be refused with a ``TypeError``/``ValueError`` naming the class and the
argument, or accepted and kept unchanged where the class keeps it. The facade's
own arguments (``inplace``, ``device``, ``dtype``, ``return_indices``) are
checked by the facade; the rest by the core layer it builds (same class name).
"""

import inspect

import pytest
from test_layer_arguments import BAD, VALID, _same

from nptfunc import nn

NOT_WALKED = {"Module", "FunctionalModule", "FunctionalLoss", "Sequential", "ModuleList", "ModuleDict",
              "ParameterList", "Net", "Parameter", "Variable", "Tensor", "LossValue", "IncompatibleKeys"}
FACADE_VALID: dict[str, tuple] = {
    **{name: args for name, (args, _) in VALID.items()},
    "SlowConv2d": (2, 4, 3),
}
# torch's legacy loss arguments: bools or None
SKIP = {"key", "process_group", "device_ids", "output_device"}


def _classes():
    for name in nn.__all__:
        cls = getattr(nn, name)
        if isinstance(cls, type) and issubclass(cls, nn.Module) and name not in NOT_WALKED:
            yield name, cls


def _valid(name: str) -> tuple:
    return FACADE_VALID.get(name, ())


def test_every_facade_class_is_walked():
    missing = [name for name, cls in _classes() if name not in FACADE_VALID
               and any(p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
                       for p in list(inspect.signature(cls.__init__).parameters.values())[1:])]
    assert not missing, f"add valid arguments for {missing}"


CASES = [(name, p.name, bad) for name, cls in _classes()
         for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in SKIP
         for bad in BAD]


@pytest.mark.parametrize(("name", "arg", "bad"), CASES, ids=[f"{n}-{a}-{b!r}" for n, a, b in CASES])
def test_a_bad_argument_is_refused_naming_the_class_and_argument_or_kept(name, arg, bad):
    cls = getattr(nn, name)
    params = [p for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
              if p.kind is p.POSITIONAL_OR_KEYWORD]
    kwargs = {p.name: v for p, v in zip(params, _valid(name), strict=False)} | {arg: bad}
    try:
        module = cls(**kwargs)
    except (TypeError, ValueError) as e:
        message = str(e)
        assert message.startswith(name), message
        assert arg in message, message
        return
    if bad is None or not hasattr(type(module), "__getattr__"):
        return
    try:
        stored = getattr(module, arg)
    except AttributeError:
        return
    if stored is None or hasattr(stored, "shape"):  # a parameter or buffer (bias=True, weight=...)
        return
    assert _same(stored, bad) or stored == bad, (
        f"{name}({arg}={bad!r}) was accepted but stored as {stored!r}")

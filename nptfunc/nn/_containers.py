"""``nn.Sequential`` and the reference project's ``nn.Net`` (a model and its loss)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from nptfunc._types import Array
from nptfunc.nn._functional_module import FunctionalModule, chainable, run_chain
from nptfunc.nn._losses import FunctionalLoss
from nptfunc.nn._module import Module, on_tape
from nptfunc.nn._parameter import Parameter
from nptfunc.nn._tensor import Tensor
from nptfunc.random import Key

__all__ = ["ModuleDict", "ModuleList", "Net", "ParameterList", "Sequential", "as_module"]


def as_module(m: Any, owner: str) -> Module:
    """A module as it is; a functional layer wrapped in :class:`FunctionalModule`."""
    if isinstance(m, Module):
        return m
    if all(hasattr(m, a) for a in ("init", "init_state", "apply")):
        return FunctionalModule(m)
    msg = f"{owner}: expected an nn.Module or a functional layer, got {type(m).__name__}"
    raise TypeError(msg)


class Sequential(Module):
    """Modules called one after the other.

    Equivalent to ``torch.nn.Sequential``: children are named ``"0"``, ``"1"``, ...
    (or by the keys of one ordered mapping), so ``state_dict()`` has torch's keys
    ``0.weight``, ``1.running_mean``. Supports indexing (a slice gives a
    ``Sequential``), ``len``, iteration, ``append`` and ``extend``. Functional
    layers are wrapped in :class:`FunctionalModule`.

    Args:
        *args: the modules, or one mapping of names to modules.
        key: if given, re-draw every parameter and state from it
            (:meth:`Module.reset_parameters`), so that the model is reproducible.

    Example:
        >>> from nptfunc import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), key=0)
        >>> [name for name, _ in model.named_parameters()]
        ['0.weight', '0.bias', '2.weight', '2.bias']
    """

    def __init__(self, *args: Any, key: Key | int | None = None) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], Mapping):
            for name, m in args[0].items():
                self.add_module(name, as_module(m, "Sequential"))
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), as_module(m, "Sequential"))
        if key is not None:
            self.reset_parameters(key)

    def forward(self, x: Any) -> Any:
        """Call each child on the previous one's output.

        Children that are all functional modules (``nn.Linear``, ``nn.ReLU``, ...)
        run as one tape node (:func:`~nptfunc.nn._functional_module.run_chain`):
        the same values and gradients, without a node per child.
        """
        modules = list(self._modules.values())
        if isinstance(x, Tensor) and modules and chainable(modules):
            return run_chain(modules, x)
        for m in modules:
            x = m(x)
        return x

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int | slice) -> Any:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(dict(items[idx]))
        try:
            return items[idx][1]
        except IndexError:
            msg = f"Sequential: index {idx} is out of range for {len(items)} modules"
            raise IndexError(msg) from None

    def append(self, module: Any) -> Sequential:
        """Add a module at the end; returns ``self``."""
        self.add_module(str(len(self)), as_module(module, "Sequential.append"))
        return self

    def extend(self, modules: Iterable[Any]) -> Sequential:
        """Add modules at the end; returns ``self``."""
        for m in modules:
            self.append(m)
        return self


class Net(Module):
    """The reference project's model-with-loss: ``nn.Net(module, loss)``.

    The reference loop::

        net = nn.Net(nn.Sequential(...), nn.CrossEntropyLoss())
        optimizer = optim.RAdam(net.parameters(), lr=1e-3)
        for x, y in batches:
            pred = net(x)
            loss = net.loss(pred, y)
            optimizer.zero_grad()
            net.backward()
            optimizer.step()

    Its state dict has the module's keys prefixed by ``module.`` (and the
    criterion's buffers, if any, by ``cost.``); ``net.module.state_dict()`` has the
    bare torch keys.

    Args:
        module: the model (an nn.Module or a functional layer).
        loss: the criterion (a loss module, or a loss of :mod:`nptfunc.losses`).
        key: if given, re-draw every parameter and state from it.
    """

    def __init__(self, module: Any, loss: Any, *, key: Key | int | None = None) -> None:
        super().__init__()
        self.module = as_module(module, "Net")
        if not isinstance(loss, Module):
            loss = FunctionalLoss(loss)
        self.cost = loss
        if key is not None:
            self.reset_parameters(key)

    def forward(self, x: Any) -> Any:
        """The module's output."""
        return self.module(x)

    def loss(self, pred: Any, target: Any) -> Tensor:
        """The criterion on ``(pred, target)``."""
        return self.cost(pred, target)

    @on_tape
    def backward(self, dy: Array | None = None) -> Array:
        """Backpropagate the last loss (or ``dy``, the gradient at the module's output).

        Returns:
            The gradient with respect to the module's input.
        """
        if dy is None:
            dy = self.cost.backward()
        return self.module.backward(dy)

    def _init_from(self, k_params: Key, k_state: Key) -> None:
        self.module._init_from(k_params, k_state)


class ModuleList(Module):
    """Modules in a list, registered as children ``"0"``, ``"1"``, ... Equivalent to ``torch.nn.ModuleList``.

    It has no forward: the owner's ``forward`` loops over it. Supports indexing
    (a slice gives a ``ModuleList``), ``len``, iteration, ``append``, ``extend``
    and ``insert``.
    """

    def __init__(self, modules: Iterable[Any] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int | slice) -> Any:
        items = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(items[idx])
        try:
            return items[idx]
        except IndexError:
            msg = f"ModuleList: index {idx} is out of range for {len(items)} modules"
            raise IndexError(msg) from None

    def __setitem__(self, idx: int, module: Any) -> None:
        name = list(self._modules)[idx]
        self.add_module(name, as_module(module, "ModuleList"))

    def append(self, module: Any) -> ModuleList:
        """Add a module at the end; returns ``self``."""
        self.add_module(str(len(self)), as_module(module, "ModuleList.append"))
        return self

    def extend(self, modules: Iterable[Any]) -> ModuleList:
        """Add modules at the end; returns ``self``."""
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Any) -> None:
        """Insert a module before ``index`` (children are renumbered)."""
        items = list(self._modules.values())
        items.insert(index, as_module(module, "ModuleList.insert"))
        self._modules.clear()
        for i, m in enumerate(items):
            self.add_module(str(i), m)


class ModuleDict(Module):
    """Modules by name, registered as children. Equivalent to ``torch.nn.ModuleDict``."""

    def __init__(self, modules: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Any) -> None:
        self.add_module(key, as_module(module, "ModuleDict"))

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def keys(self) -> Any:
        """The names."""
        return self._modules.keys()

    def values(self) -> Any:
        """The modules."""
        return self._modules.values()

    def items(self) -> Any:
        """``(name, module)`` pairs."""
        return self._modules.items()

    def update(self, modules: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Add or replace modules from a mapping or ``(name, module)`` pairs."""
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for name, m in pairs:
            self[name] = m


class ParameterList(Module):
    """Parameters in a list, registered as ``"0"``, ``"1"``, ... Equivalent to ``torch.nn.ParameterList``."""

    def __init__(self, values: Iterable[Any] | None = None) -> None:
        super().__init__()
        if values is not None:
            self.extend(values)

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._parameters.values())

    def __getitem__(self, idx: int) -> Parameter:
        return list(self._parameters.values())[idx]

    def append(self, value: Any) -> ParameterList:
        """Add a parameter (an array is wrapped in one) at the end; returns ``self``."""
        p = value if isinstance(value, Parameter) else Parameter(value)
        self.register_parameter(str(len(self)), p)
        return self

    def extend(self, values: Iterable[Any]) -> ParameterList:
        """Add parameters at the end; returns ``self``."""
        for v in values:
            self.append(v)
        return self

"""``nn.Module`` and ``nn.FunctionalModule``: state holders around the functional core.

A :class:`Module` is a torch-like container: it registers the :class:`Parameter`
objects, buffers and child modules assigned to its attributes, and gives torch's
traversal, ``train``/``eval``, ``zero_grad``, ``state_dict``/``load_state_dict``,
dtype casts and ``repr``. ``module(x)`` runs ``forward(x)``; ``module.backward(dy)``
runs the backward of the last forward and returns ``dx``.

A :class:`FunctionalModule` turns any functional layer (``nptfunc.layers``) into a
module: it holds the layer, its parameters as :class:`Parameter` objects, its state
as buffers, and the vjp of its last forward. It has no math of its own: forward
rebuilds the layer's params from the ``Parameter.data`` arrays and calls
``layer.apply(params, x, state, train=self.training)``; backward calls the stored
vjp and adds the parameter gradients into ``Parameter.grad``.

Keys: every facade constructor takes ``key=`` (a :class:`nptfunc.random.Key` or an
int seed). Without one, a seed is drawn from the operating system's entropy, so
two ``nn.Linear(4, 3)`` get different weights, as in torch, and no global random
state exists anywhere. :meth:`Module.reset_parameters` re-draws everything from
one key, exactly as the functional layers' ``init``/``init_state`` would.
"""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import attrs
import numpy as np

from nptfunc import random
from nptfunc._types import Array, Params, State
from nptfunc.backend import readonly
from nptfunc.convert import checked_value
from nptfunc.layers.base import Layer
from nptfunc.nn._parameter import Parameter, _to_array
from nptfunc.random import Key
from nptfunc.tree import path_str, tree_flatten, tree_flatten_with_path, tree_unflatten

__all__ = ["FunctionalModule", "IncompatibleKeys", "Module", "as_key"]


# ------------------------------------------------------------------------------ keys
def as_key(key: Key | int | None, owner: str = "nn") -> Key:
    """A :class:`Key` from a key, an int seed, or ``None`` (a fresh seed from OS entropy).

    ``None`` is explicit non-determinism (``secrets.randbits``), not a global
    random state: pass a key or a seed for reproducible modules.
    """
    if key is None:
        return random.key(secrets.randbits(64))
    if isinstance(key, Key):
        return key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return random.key(int(key))
    msg = f"{owner}: expected key to be an nptfunc.random.Key, an int seed or None, got {key!r}"
    raise TypeError(msg)


# ------------------------------------------------------------- who returned an array
# id(array) -> (weak reference to the array, weak reference to the module). A module
# call records its output here, overwriting what an inner module recorded for the
# same object, so the entry names the outermost module that returned it. It only
# records facts (which module returned which live array) for ``loss.backward()``;
# nothing in the math reads it. Entries disappear with their arrays.
_producers: dict[int, tuple[weakref.ref, weakref.ref]] = {}


def _remember_output(out: Array, module: Module) -> None:
    key = id(out)

    def forget(ref: weakref.ref, key: int = key) -> None:
        entry = _producers.get(key)
        if entry is not None and entry[0] is ref:
            del _producers[key]

    _producers[key] = (weakref.ref(out, forget), weakref.ref(module))


def producer_of(x: Any) -> Module | None:
    """The outermost module whose call returned exactly the object ``x``, if any."""
    entry = _producers.get(id(x))
    if entry is None or entry[0]() is not x:
        return None
    return entry[1]()


# ---------------------------------------------------------------------------- Module
class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` returns (torch's ``_IncompatibleKeys``)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _indent(text: str, spaces: int) -> str:
    """Indent every line of ``text`` but the first by ``spaces`` (torch's repr layout)."""
    first, *rest = text.split("\n")
    return "\n".join([first, *(" " * spaces + line for line in rest)])


def _is_float_array(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


class Module:
    """Base class of the facade modules, as ``torch.nn.Module``.

    Subclass it and write ``forward`` (and ``backward`` if the module is to be
    trained) by hand, assigning parameters and child modules as attributes::

        class TwoLayers(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1, self.act, self.fc2 = nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)

            def forward(self, x):
                return self.fc2(self.act(self.fc1(x)))

            def backward(self, dy):
                return self.fc1.backward(self.act.backward(self.fc2.backward(dy)))

    Attributes:
        training: whether the module is in training mode (see :meth:`train`).
    """

    training: bool

    def __init__(self) -> None:
        d = self.__dict__
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_non_persistent"] = set()
        d["_modules"] = {}
        d["_calls"] = 0
        d["_backpropagated"] = None
        d["training"] = True

    # ------------------------------------------------------------ registration
    def _registry(self, name: str) -> tuple[dict, dict, dict]:
        try:
            d = self.__dict__
            return d["_parameters"], d["_buffers"], d["_modules"]
        except KeyError:
            msg = (f"{type(self).__name__}: cannot assign {name!r} before Module.__init__() "
                   f"is called; call super().__init__() first in your __init__")
            raise AttributeError(msg) from None

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        registered = any(name in d.get(r, ()) for r in ("_parameters", "_buffers", "_modules"))
        if not registered and not isinstance(value, (Parameter, Module)):
            object.__setattr__(self, name, value)
            return
        params, buffers, modules = self._registry(name)
        if isinstance(value, (Parameter, Module)):
            d.pop(name, None)
            for registry in (params, buffers, modules):
                registry.pop(name, None)
            (params if isinstance(value, Parameter) else modules)[name] = value
        elif name in buffers:
            buffers[name] = None if value is None else _to_array(value)
        elif value is not None:
            what = "parameter" if name in params else "child module"
            expected = "an nn.Parameter" if name in params else "an nn.Module"
            hint = f"; to change its value, set .{name}.data" if name in params else ""
            msg = (f"{type(self).__name__}: cannot assign a {type(value).__name__} as {what} "
                   f"{name!r} ({expected} or None is expected){hint}")
            raise TypeError(msg)
        else:
            (params if name in params else modules)[name] = None

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        msg = f"{type(self).__name__!r} object has no attribute {name!r}"
        raise AttributeError(msg)

    def __delattr__(self, name: str) -> None:
        for registry in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(registry, {}):
                del self.__dict__[registry][name]
                self.__dict__["_non_persistent"].discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or a ``None`` placeholder) under ``name``."""
        self._check_name(name)
        if param is not None and not isinstance(param, Parameter):
            msg = (f"{type(self).__name__}.register_parameter: expected an nn.Parameter or None for "
                   f"{name!r}, got {type(param).__name__}")
            raise TypeError(msg)
        self.__dict__.pop(name, None)
        self._registry(name)[0][name] = param

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """Add a buffer: an array that is state, not a parameter (running statistics).

        Persistent buffers are in :meth:`state_dict`.
        """
        self._check_name(name)
        self.__dict__.pop(name, None)
        self._registry(name)[1][name] = None if tensor is None else _to_array(tensor)
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under ``name``."""
        self._check_name(name)
        if module is not None and not isinstance(module, Module):
            msg = (f"{type(self).__name__}.add_module: expected an nn.Module for {name!r}, "
                   f"got {type(module).__name__}")
            raise TypeError(msg)
        self.__dict__.pop(name, None)
        self._registry(name)[2][name] = module

    register_module = add_module

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            msg = f"{type(self).__name__}: expected a non-empty str name, got {name!r}"
            raise TypeError(msg)

    # ------------------------------------------------------------------- calls
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run :meth:`forward`; an array it returns is remembered for ``loss.backward()``."""
        self.__dict__["_calls"] += 1
        out = self.forward(*args, **kwargs)
        if isinstance(out, np.ndarray):
            _remember_output(out, self)
        return out

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The module's computation; subclasses define it."""
        msg = f"{type(self).__name__}: forward is not defined; subclasses of nn.Module define it"
        raise NotImplementedError(msg)

    def backward(self, dy: Array) -> Array:
        """Backpropagate ``dy`` through the last forward; returns ``dx``.

        Parameter gradients are added to each ``Parameter.grad``.
        """
        msg = (f"{type(self).__name__}: backward is not defined; write backward(dy) by hand, "
               f"or build the module from nn.Sequential or nn.FunctionalModule")
        raise NotImplementedError(msg)

    def _snapshot(self) -> tuple[int, ...]:
        """The call counts of this module and all below it (for ``loss.backward()`` checks)."""
        return tuple(m.__dict__["_calls"] for m in self.modules())

    # --------------------------------------------------------------- traversal
    def named_modules(self, memo: set[int] | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """``(name, module)`` for this module and all below it, depth first."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                           remove_duplicate)

    def modules(self) -> Iterator[Module]:
        """This module and all below it."""
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """``(name, module)`` for the direct children."""
        seen: set[int] = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        """The direct children."""
        for _, m in self.named_children():
            yield m

    def _named_members(self, get: Callable[[Module], Iterator[tuple[str, Any]]], prefix: str,
                       recurse: bool) -> Iterator[tuple[str, Any]]:
        seen: set[int] = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in mods:
            for name, value in get(m):
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(name, Parameter)`` pairs with torch's dotted names (``0.weight``); each once."""
        return self._named_members(lambda m: iter(m._parameters.items()), prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """All parameters, each once, in registration order (what optimizers take)."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Array]]:
        """``(name, array)`` pairs of the buffers (``1.running_mean``)."""
        return self._named_members(lambda m: iter(m._buffers.items()), prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Array]:
        """All buffers."""
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ------------------------------------------------------------------- modes
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``True``) or evaluation mode (``False``) here and below."""
        if not isinstance(mode, (bool, np.bool_)):
            msg = f"{type(self).__name__}.train: expected mode to be a bool, got {mode!r}"
            raise TypeError(msg)
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` of every parameter (``False`` freezes the module)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients: ``None`` (torch's default) or zeros."""
        for p in self.parameters():
            p.grad = None if set_to_none or p.grad is None else np.zeros_like(p.grad)

    # ---------------------------------------------------------------- init keys
    def reset_parameters(self, key: Key | int | None = None) -> Module:
        """Re-draw every parameter and state of the functional layers below from ``key``.

        ``key`` splits into ``(k_params, k_state)``; a container splits each over its
        children in order, as the functional ``layers.Sequential`` does, so
        ``nn.Sequential(a, b).reset_parameters(k)`` gives exactly the params of
        ``layers.Sequential(a.layer, b.layer).init(random.split(k)[0])``. Parameters a
        hand-written module holds directly are left as they are.
        """
        k_params, k_state = random.split(as_key(key, type(self).__name__))
        self._init_from(k_params, k_state)
        return self

    def _init_from(self, k_params: Key, k_state: Key) -> None:
        children = list(self.children())
        if not children:
            return
        for child, kp, ks in zip(children, random.split(k_params, len(children)),
                                 random.split(k_state, len(children)), strict=True):
            child._init_from(kp, ks)

    # ------------------------------------------------------------- state dicts
    def state_dict(self, *, prefix: str = "", keep_vars: bool = False) -> dict[str, Any]:
        """Parameters and persistent buffers by torch's keys (``0.weight``, ``1.running_mean``).

        Values are read-only views of the current arrays (``keep_vars=True`` gives
        the :class:`Parameter` objects themselves). Training replaces arrays rather
        than writing into them, so a state dict taken earlier keeps its values.
        """
        out: dict[str, Any] = {}
        for key, (m, name, is_param) in self._state_slots().items():
            if is_param:
                p = m._parameters[name]
                out[prefix + key] = p if keep_vars else readonly(p.data)
            else:
                out[prefix + key] = readonly(m._buffers[name])
        return out

    def _state_slots(self) -> dict[str, tuple[Module, str, bool]]:
        """``key -> (owning module, local name, is_parameter)`` for the state dict's entries."""
        slots: dict[str, tuple[Module, str, bool]] = {}
        for mod_prefix, m in self.named_modules():
            dot = f"{mod_prefix}." if mod_prefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    slots[dot + name] = (m, name, True)
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    slots[dot + name] = (m, name, False)
        return slots

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values from ``state_dict`` (arrays or torch tensors) into this module.

        Every value is checked and converted (:func:`nptfunc.convert.checked_value`:
        the entry's shape, numbers castable to its dtype, cast as torch's ``copy_``)
        before anything is assigned; then the values replace the arrays.

        Raises:
            TypeError: if ``state_dict`` is not a mapping.
            ValueError: naming every bad key, for a shape mismatch or a value that
                is not numbers castable to the entry (``None``, strings, objects,
                complex for a real entry); with ``strict``, naming every missing and
                unexpected key. Nothing is assigned then.

        Returns:
            ``(missing_keys, unexpected_keys)``.
        """
        owner = type(self).__name__
        if not isinstance(state_dict, Mapping):
            msg = (f"{owner}.load_state_dict: expected a mapping of str keys to arrays, "
                   f"got {type(state_dict).__name__}")
            raise TypeError(msg)
        slots = self._state_slots()
        missing = [k for k in slots if k not in state_dict]
        unexpected = [k for k in state_dict if k not in slots]
        errors = []
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected))
        if strict and missing:
            errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
        updates = []
        for key, (m, name, is_param) in slots.items():
            if key not in state_dict:
                continue
            current = m._parameters[name].data if is_param else m._buffers[name]
            try:  # shape, dtype kind, no None or objects; cast as torch's copy_
                updates.append((m, name, is_param, checked_value(key, state_dict[key], current)))
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        if errors:
            msg = f"Error(s) in loading state_dict for {owner}:\n\t" + "\n\t".join(errors)
            raise ValueError(msg)
        for m, name, is_param, value in updates:
            if is_param:
                m._parameters[name].data = value
            else:
                m._buffers[name] = value
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------- dtypes
    def to(self, *args: Any, dtype: Any = None, device: Any = None) -> Module:
        """``to(dtype)``: cast floating parameters and buffers; the device ``"cpu"`` is a no-op."""
        for a in (*args, device):
            if a is None or str(a) == "cpu":
                continue
            if dtype is not None:
                msg = (f"{type(self).__name__}.to: expected one dtype (and optionally the device "
                       f"'cpu'), got {args!r}, dtype={dtype!r}, device={device!r}")
                raise TypeError(msg)
            dtype = a
        if dtype is None:
            return self
        dt = np.dtype(dtype)
        if dt.kind != "f":
            msg = f"{type(self).__name__}.to: expected a floating dtype, got {dt}"
            raise TypeError(msg)
        for m in self.modules():
            m._cast(dt)
        return self

    def double(self) -> Module:
        """Cast floating parameters and buffers to float64."""
        return self.to(np.float64)

    def float(self) -> Module:
        """Cast floating parameters and buffers to float32."""
        return self.to(np.float32)

    def _cast(self, dtype: np.dtype) -> None:
        """Cast this module's own floating parameters (and gradients) and buffers."""
        for p in self._parameters.values():
            if p is not None and p.dtype.kind == "f":
                p.data = p.data.astype(dtype)
                if p.grad is not None:
                    p.grad = p.grad.astype(dtype)
        for name, b in self._buffers.items():
            if _is_float_array(b):
                self._buffers[name] = b.astype(dtype)

    # --------------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (torch's hook)."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): {_indent(repr(m), 2)}" for name, m in self._modules.items()]
        lines = extra_lines + child_lines
        if not lines:
            return f"{self._get_name()}()"
        if len(extra_lines) == 1 and not child_lines:
            return f"{self._get_name()}({extra_lines[0]})"
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


# ------------------------------------------------------------------ FunctionalModule
class FunctionalModule(Module):
    """Any functional layer as a module: one line, ``nn.FunctionalModule(layer)``.

    Holds the layer (immutable hyperparameters), its params as :class:`Parameter`
    objects named by their paths (``weight``, ``bias``; ``0.weight`` for a
    functional container), its state as buffers (the state's array leaves,
    ``running_mean``, ``num_batches_tracked``; other leaves, like a dropout key,
    are kept privately and not saved) and the vjp of the last forward.

    Args:
        layer: an object with ``init``, ``init_state`` and the long form of ``apply``.
        key: a :class:`Key` or an int seed for ``init``/``init_state``; ``None``
            draws a seed from OS entropy (see :func:`as_key`).
        params: use these params instead of ``layer.init(...)``.
        state: use this state instead of ``layer.init_state(...)``.

    Example:
        >>> from nptfunc import layers, nn
        >>> fc = nn.FunctionalModule(layers.Linear(4, 3), key=0)
        >>> [name for name, _ in fc.named_parameters()]
        ['weight', 'bias']
    """

    def __init__(self, layer: Any, *, key: Key | int | None = None, params: Params = None,
                 state: State = None) -> None:
        super().__init__()
        if not all(hasattr(layer, a) for a in ("init", "init_state", "apply")):
            msg = (f"FunctionalModule: expected a functional layer (with init, init_state and apply), "
                   f"got {type(layer).__name__}")
            raise TypeError(msg)
        self.__dict__["layer"] = layer
        self.__dict__["_vjp"] = None
        k_params, k_state = random.split(as_key(key, self._get_name()))
        self._set_params(layer.init(k_params) if params is None else params)
        self._set_state(layer.init_state(k_state) if state is None else state)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "layer":
            msg = (f"{self._get_name()}: the layer is fixed at construction; build a new module "
                   f"(or call .to(dtype) to change the dtype)")
            raise AttributeError(msg)
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            layer = self.__dict__.get("layer")
            if layer is not None and attrs.has(type(layer)) and name in attrs.fields_dict(type(layer)):
                return getattr(layer, name)  # a hyperparameter: in_features, eps, ...
            raise

    # -------------------------------------------------------- params and state
    def _set_params(self, params: Params) -> None:
        pairs, treedef = tree_flatten_with_path(params)
        names = [path_str(path) for path, _ in pairs]
        self._parameters.clear()
        for name, (_, leaf) in zip(names, pairs, strict=True):
            self._parameters[name] = Parameter(leaf)
        params_class = type(params) if params is not None else getattr(self.layer, "params_class", None)
        if params_class is not None and attrs.has(params_class):
            for f in attrs.fields(params_class):  # torch shows absent params (bias=False) as None
                self._parameters.setdefault(f.name, None)
        self.__dict__["_params_def"] = (treedef, names)

    def _set_state(self, state: State) -> None:
        pairs, treedef = tree_flatten_with_path(state)
        self._buffers.clear()
        names = [path_str(path) if isinstance(leaf, np.ndarray) else None for path, leaf in pairs]
        for name, (_, leaf) in zip(names, pairs, strict=True):
            if name is not None:
                self._buffers[name] = leaf
        private = [leaf for name, (_, leaf) in zip(names, pairs, strict=True) if name is None]
        self.__dict__["_state_def"] = (treedef, names, private)

    def _params(self) -> Params:
        treedef, names = self.__dict__["_params_def"]
        return tree_unflatten(treedef, [self._parameters[n].data for n in names])

    def _state(self) -> State:
        treedef, names, private = self.__dict__["_state_def"]
        rest = iter(private)
        return tree_unflatten(treedef, [next(rest) if n is None else self._buffers[n] for n in names])

    def _store_state(self, new_state: State) -> None:
        treedef, names, _ = self.__dict__["_state_def"]
        leaves, new_def = tree_flatten(new_state)
        if new_def != treedef:
            msg = f"{self._get_name()}: the layer returned a state of another structure than its init_state"
            raise TypeError(msg)
        for name, leaf in zip(names, leaves, strict=True):
            if name is not None:
                self._buffers[name] = leaf
        private = [leaf for name, leaf in zip(names, leaves, strict=True) if name is None]
        self.__dict__["_state_def"] = (treedef, names, private)

    @property
    def params(self) -> Params:
        """The current params as the functional layer's params tree (read-only arrays)."""
        return self._params()

    @property
    def state(self) -> State:
        """The current state as the functional layer's state tree."""
        return self._state()

    # ------------------------------------------------------------ forward/backward
    def forward(self, x: Any) -> Array:
        """``layer.apply(params, x, state, train=self.training)``; keeps the new state and the vjp."""
        y, vjp, new_state = self.layer.apply(self._params(), x, self._state(), train=self.training)
        self._store_state(new_state)
        self.__dict__["_vjp"] = vjp
        return y

    def backward(self, dy: Array) -> Array:
        """Run the last forward's vjp on ``dy``; add the parameter gradients; return ``dx``."""
        vjp = self.__dict__["_vjp"]
        if vjp is None:
            msg = (f"{self._get_name()}.backward: no forward pass to backpropagate through; call the "
                   f"module on an input first (backward uses the values of the last forward)")
            raise RuntimeError(msg)
        dparams, dx = vjp(dy)
        _, names = self.__dict__["_params_def"]
        for name, g in zip(names, tree_flatten(dparams)[0], strict=True):
            self._parameters[name].accumulate_grad(g)
        return dx

    def _init_from(self, k_params: Key, k_state: Key) -> None:
        self._set_params(self.layer.init(k_params))
        self._set_state(self.layer.init_state(k_state))
        self.__dict__["_vjp"] = None

    def _cast(self, dtype: np.dtype) -> None:
        super()._cast(dtype)
        self.__dict__["layer"] = _layer_with_dtype(self.layer, dtype)
        self.__dict__["_vjp"] = None

    def extra_repr(self) -> str:
        """The wrapped layer's repr (named subclasses give torch's text instead)."""
        return repr(self.layer) if type(self) is FunctionalModule else ""


def _layer_with_dtype(layer: Any, dtype: np.dtype) -> Any:
    """The same layer with parameter dtype ``dtype`` (also inside functional containers)."""
    if not attrs.has(type(layer)):
        return layer
    fields = attrs.fields_dict(type(layer))
    if "layers" in fields and isinstance(layer.layers, tuple) and all(
            isinstance(c, Layer) for c in layer.layers):
        return type(layer)(*(_layer_with_dtype(c, dtype) for c in layer.layers))
    if "dtype" in fields:
        return attrs.evolve(layer, dtype=dtype)
    return layer


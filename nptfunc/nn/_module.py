"""``nn.Module``: the torch-like container, and the facade's key rule.

A :class:`Module` registers the :class:`Parameter` objects, buffers and child
modules assigned to its attributes, and gives torch's traversal,
``train``/``eval``, ``zero_grad``, ``state_dict``/``load_state_dict``, dtype casts
and ``repr``. ``module(x)`` runs ``forward(x)``; what forward computes is recorded
on the tape (:mod:`nptfunc.nn._tape`), so ``loss.backward()`` works for any
forward. ``module.backward(dy)`` (the reference project's style) runs the tape
from the module's last output back to its last input and returns ``dx``.

Keys: every facade constructor takes ``key=`` (a :class:`nptfunc.random.Key` or an
int seed). Without one, the key comes from the facade's seeded stream
(:func:`manual_seed`) if one was set, else from the operating system's entropy.
:meth:`Module.reset_parameters` re-draws everything from one key, exactly as the
functional layers' ``init``/``init_state`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from nptfunc import random
from nptfunc._types import Array
from nptfunc.backend import readonly
from nptfunc.convert import checked_value
from nptfunc.nn._parameter import Parameter, _to_array
from nptfunc.nn._seed import as_key
from nptfunc.nn._tape import _mode, run_backward
from nptfunc.nn._tensor import Tensor, as_dtype, as_tensor, check_device, record
from nptfunc.random import Key
from nptfunc.tree import tree_flatten, tree_unflatten

__all__ = ["IncompatibleKeys", "Module", "as_key", "on_tape"]


def on_tape(method: Callable) -> Callable:
    """Mark a ``backward`` override as built on the tape (not a hand-written derivative).

    A module class whose ``backward`` is neither :meth:`Module.backward` nor marked
    so is a hand-written derivative (the reference project's style): its call
    records one node whose vjp is that ``backward``.
    """
    method._on_tape = True  # type: ignore[attr-defined]
    return method


def _module_input(a: Any) -> Any:
    """A module's positional input as recorded: a proxy leaf for a floating input without grad.

    A floating input that does not require grad becomes a proxy leaf that does,
    so that the module's own graph is recorded and ``module.backward(dy)`` can
    return ``dx``; the proxy keeps no ``.grad``.
    """
    if isinstance(a, tuple):  # an LSTM's (h0, c0)
        return tuple(_module_input(b) for b in a)
    if isinstance(a, Tensor):
        if a.requires_grad or a._data.dtype.kind != "f":
            return a
        data = a._data
    elif isinstance(a, np.ndarray):
        if a.dtype.kind != "f":
            return Tensor._wrap(a)
        data = a
    else:
        return a
    t = Tensor._wrap(data)
    t.requires_grad = True
    t._proxy = True
    return t


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
                return self.fc2(F.relu(self.fc1(x)))

    ``loss.backward()`` differentiates any such forward on the tape. A subclass
    may instead write ``backward(dy) -> dx`` by hand (the reference project's
    style): its calls then record one tape node whose vjp is that method.

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
        d["_last"] = None
        d["training"] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._hand_written_backward = not getattr(cls.backward, "_on_tape", False)

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
    _hand_written_backward = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run :meth:`forward`; remember the inputs and output for :meth:`backward`."""
        if _mode.enabled:
            args = tuple([_module_input(a) for a in args])
        else:
            args = tuple([Tensor._wrap(a) if isinstance(a, np.ndarray) else a for a in args])
        out = self.forward(*args, **kwargs)
        if self._hand_written_backward and isinstance(out, Tensor) and _mode.enabled:
            out = self._hand_written_node(args, out)
        self.__dict__["_last"] = (args, out)
        return out

    def _hand_written_node(self, args: tuple[Any, ...], out: Tensor) -> Tensor:
        """The output re-linked to one node whose vjp is this module's own ``backward``."""
        x = next((a for a in args if isinstance(a, Tensor)), None)

        def vjp(dy: Array) -> tuple[Array | None]:
            dx = self.backward(dy)
            return (None if dx is None else np.asarray(dx),)
        return record(self._get_name(), out._data, vjp, (x,))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The module's computation; subclasses define it."""
        msg = f"{type(self).__name__}: forward is not defined; subclasses of nn.Module define it"
        raise NotImplementedError(msg)

    @on_tape
    def backward(self, dy: Any) -> Any:
        """Backpropagate ``dy`` from the last forward's output to its input; returns ``dx``.

        Runs the tape over this module's part of the last forward's graph only:
        parameter gradients are added to each ``Parameter.grad``, and the
        gradient with respect to the last call's input (a tuple for several
        inputs) is returned as an array. The graph's saved values are freed, as
        torch's ``backward``.

        Raises:
            RuntimeError: before any forward, or when the last forward recorded
                nothing (it ran under ``no_grad``).
        """
        name = self._get_name()
        last = self.__dict__["_last"]
        if last is None:
            if type(self).forward is Module.forward:
                msg = f"{name}: backward is not defined (nor forward); subclasses of nn.Module define forward"
                raise NotImplementedError(msg)
            msg = (f"{name}.backward: no forward pass to backpropagate through; call the module on an "
                   f"input first (backward uses the values of the last forward)")
            raise RuntimeError(msg)
        args, out = last
        outs = tree_flatten(out)[0]  # a tensor, or a (nested) tuple of them (an LSTM's)
        if not outs or not all(isinstance(o, Tensor) for o in outs) or all(o.grad_fn is None for o in outs):
            msg = (f"{name}.backward: the last forward recorded nothing to backpropagate (it ran under "
                   f"no_grad, or it returned {type(out).__name__} that no recorded operation made)")
            raise RuntimeError(msg)
        dys = _flatten_like(name, dy, out)
        roots, grads = [], []
        for o, d in zip(outs, dys, strict=True):
            if d is None or o.grad_fn is None:
                continue
            g = as_tensor(d)._data
            if g.shape != o.shape:
                msg = f"{name}.backward: expected dy of shape {o.shape} (the last output's), got {g.shape}"
                raise ValueError(msg)
            roots.append(o)
            grads.append(g.astype(o.dtype, copy=False))
        arg_leaves, arg_def = tree_flatten(args)
        inputs = [a for a in arg_leaves if isinstance(a, Tensor)]
        captured = iter(run_backward(roots, grads, capture=inputs))
        dx = tree_unflatten(arg_def, [next(captured) if isinstance(a, Tensor) else None for a in arg_leaves])
        given = [d for a, d in zip(args, dx, strict=True) if a is not None]  # hx=None is no input
        return given[0] if len(given) == 1 else dx

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
            if isinstance(a, str) or type(a).__name__ == "device":
                check_device(f"{type(self).__name__}.to", a)
                continue
            if dtype is not None:
                msg = (f"{type(self).__name__}.to: expected one dtype (and optionally the device "
                       f"'cpu'), got {args!r}, dtype={dtype!r}, device={device!r}")
                raise TypeError(msg)
            dtype = a
        if dtype is None:
            return self
        dt = as_dtype(f"{type(self).__name__}.to", dtype)
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


def _flatten_like(owner: str, dy: Any, out: Any) -> list[Any]:
    """``dy``'s arrays in the order of ``out``'s tensors (``None`` where an output gets no cotangent)."""
    if not isinstance(out, tuple):
        return [dy]
    if dy is None:
        return [None] * len(tree_flatten(out)[0])
    if not isinstance(dy, tuple) or len(dy) != len(out):
        msg = (f"{owner}.backward: expected dy in the structure of the last output (a tuple of "
               f"{len(out)}), got {type(dy).__name__}")
        raise TypeError(msg)
    return [leaf for d, o in zip(dy, out, strict=True) for leaf in _flatten_like(owner, d, o)]

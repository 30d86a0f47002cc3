"""``nn.FunctionalModule``: any functional layer as a module, recorded as one tape node.

It holds the layer (immutable hyperparameters), its params as :class:`Parameter`
objects, its state as buffers. A call rebuilds the layer's params from the
``Parameter.data`` arrays, calls ``layer.apply(params, x, state, train=...)``,
keeps the new state and records ONE tape node whose inputs are ``x`` and the
parameters and whose vjp is the layer's own: a module called three times in a
forward gives three nodes. :func:`run_chain` runs several such modules (an
``nn.Sequential`` of them) as one node. :class:`ForwardsFields` (the attribute
read-through to a wrapped core object's hyperparameters) is shared with the loss
modules.
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar

import attrs
import numpy as np

from nptfunc import random
from nptfunc._types import Array, Params, State
from nptfunc.layers.base import Layer
from nptfunc.layers.containers import pool_first
from nptfunc.nn._module import Module, _module_input, on_tape
from nptfunc.nn._parameter import Parameter
from nptfunc.nn._seed import as_key
from nptfunc.nn._tape import _mode, is_needed
from nptfunc.nn._tensor import Tensor, record
from nptfunc.random import Key
from nptfunc.tree import path_str, tree_flatten, tree_flatten_with_path, tree_unflatten

__all__ = ["ForwardsFields", "FunctionalModule", "chainable", "run_chain"]


class ForwardsFields:
    """Read-through of a wrapped core object's attrs fields (``fc.in_features``, ``crit.reduction``).

    The subclass names the attribute that holds the core object in ``wrapped``;
    the fields are read, never assigned (build a new module to change one).
    """

    wrapped: ClassVar[str] = "layer"

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # type: ignore[misc]
        except AttributeError:
            inner = self.__dict__.get(self.wrapped)
            if inner is not None and attrs.has(type(inner)) and name in attrs.fields_dict(type(inner)):
                return getattr(inner, name)
            raise


class FunctionalModule(ForwardsFields, Module):
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
        k_params, k_state = random.split(as_key(key, self._get_name()))
        self._set_params(layer.init(k_params) if params is None else params)
        self._set_state(layer.init_state(k_state) if state is None else state)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "layer":
            msg = (f"{self._get_name()}: the layer is fixed at construction; build a new module "
                   f"(or call .to(dtype) to change the dtype)")
            raise AttributeError(msg)
        super().__setattr__(name, value)

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
        # a flat params class (LinearParams(weight, bias), every field an array): built by a positional
        # call, not through tree_unflatten (a few us of every forward)
        kind = treedef.kind
        flat = (isinstance(kind, tuple) and attrs.has(kind[0])
                and all(c.kind is None for c in treedef.children)
                and kind[1] == tuple(f.name for f in attrs.fields(kind[0]) if f.init and not f.kw_only))
        self.__dict__["_params_class"] = kind[0] if flat else None

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
        if treedef.kind == "none":  # a layer without params (every forward of a ReLU asks)
            return None
        cls = self.__dict__.get("_params_class")
        if cls is not None:
            return cls(*[self._parameters[n].data for n in names])
        return tree_unflatten(treedef, [self._parameters[n].data for n in names])

    def _state(self) -> State:
        treedef, names, private = self.__dict__["_state_def"]
        if not names:  # a stateless layer
            return None if treedef.kind == "none" else tree_unflatten(treedef, [])
        rest = iter(private)
        return tree_unflatten(treedef, [next(rest) if n is None else self._buffers[n] for n in names])

    def _store_state(self, new_state: State) -> None:
        treedef, names, _ = self.__dict__["_state_def"]
        if new_state is None and not names and treedef.kind == "none":  # stateless: nothing to keep
            return
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

    # ------------------------------------------------------------------ forward
    def forward(self, x: Any) -> Any:
        """``layer.apply(params, x, state, train=self.training)``, recorded as one tape node.

        Keeps the new state. ``x`` may be a tensor, an array or a (nested) tuple of
        them, for a layer with several inputs (an LSTM's ``(input, (h0, c0))``); the
        output may be a nested tuple too, each array a tensor of it (see :func:`_outputs`).
        """
        params = [self._parameters[n] for n in self.__dict__["_params_def"][1]]
        if isinstance(x, Tensor):  # the common case, without the tree walk
            leaves, arrays = [x], x._data
        else:  # tensors, arrays and None in x's structure
            leaves, treedef = tree_flatten(x)
            arrays = tree_unflatten(treedef, [a._data if isinstance(a, Tensor) else a for a in leaves])
        graded = [a for a in leaves if isinstance(a, Tensor) and a.requires_grad] if _mode.enabled else []
        extra = {}
        # nothing consumes dx unless an input requires grad for a reason other than being a
        # module-input proxy (or made from proxies only): then the core skips computing it, for the
        # first layers of a model, and module.backward(dy) recomputes it when it needs it (below)
        if all(a._proxy for a in graded) and isinstance(self.layer, Layer):
            extra["need_dx"] = False
        p_tree, s_tree, training = self._params(), self._state(), self.training
        y, vjp, new_state = self.layer.apply(p_tree, arrays, s_tree, train=training, **extra)
        self._store_state(new_state)
        if not _mode.enabled:
            return tree_unflatten(*_wrap_leaves(y))

        def node_vjp(dy: Any) -> tuple[Any, ...]:
            if graded and extra and any(is_needed(a) for a in graded):
                # module.backward(dy) returns this proxy's cotangent: the same pure forward again (same
                # params, input and state, so the same dropout mask and output; its new state is
                # dropped), this time with dx
                _, full_vjp, _ = self.layer.apply(p_tree, arrays, s_tree, train=training)
                dparams, dx = full_vjp(dy)
            else:
                dparams, dx = vjp(dy)
            return _cotangents(dparams, dx, len(leaves))

        out = _record_call(self._get_name(), y, node_vjp, (*leaves, *params))
        if graded and extra and not any(p.requires_grad for p in params):
            _mark_proxies(out)  # made from proxies only: nothing but module.backward needs their cotangents
        return out

    @on_tape
    def backward(self, dy: Any) -> Any:
        """See :meth:`Module.backward`; a call made inside a chain (:func:`run_chain`) is replayed first."""
        last = self.__dict__["_last"]
        if isinstance(last, _ChainCall):
            self.__dict__["_last"] = last.replay(self)
        return super().backward(dy)

    def _init_from(self, k_params: Key, k_state: Key) -> None:
        self._set_params(self.layer.init(k_params))
        self._set_state(self.layer.init_state(k_state))

    def _cast(self, dtype: np.dtype) -> None:
        super()._cast(dtype)
        with_dtype = getattr(self.layer, "with_dtype", None)  # the core's Layer.with_dtype
        if with_dtype is not None:
            self.__dict__["layer"] = with_dtype(dtype)

    def extra_repr(self) -> str:
        """The wrapped layer's repr (named subclasses give torch's text instead)."""
        return repr(self.layer) if type(self) is FunctionalModule else ""


class _ChainCall:
    """One module's call inside a chain run as one node: what ``module.backward(dy)`` replays.

    The chain's node covers the module's call, so the module has no output tensor
    of its own; its ``backward`` records the call now, from the same params, input
    and state (the same output and dropout mask), and runs on that. A backward
    pass that frees the chain's node frees these values too (:meth:`free`), as it
    frees a module's own node: a later ``module.backward`` is then torch's error.
    """

    __slots__ = ("freed", "p_tree", "params", "s_tree", "train", "x")

    def __init__(self, params: list[Parameter], p_tree: Params, s_tree: State, train: bool, x: Any) -> None:
        self.params, self.p_tree, self.s_tree, self.train, self.x = params, p_tree, s_tree, train, x
        self.freed = False

    def free(self) -> None:
        """Drop the saved values (the input, the params and state of the call)."""
        self.p_tree = self.s_tree = self.x = None
        self.freed = True

    def replay(self, module: FunctionalModule) -> tuple[tuple[Any, ...], Any]:
        """The call recorded on the tape: ``(args, out)``, as :meth:`Module.__call__` keeps them.

        Raises:
            RuntimeError: a backward pass has freed the call's saved values.
        """
        if self.freed:
            msg = (f"{module._get_name()}.backward: trying to backward through the graph a second time (the "
                   f"saved values of its call were freed by a backward through the Sequential it ran in); "
                   f"call the forward again, or pass retain_graph=True to the first backward")
            raise RuntimeError(msg)
        own_input = self.x.value() if isinstance(self.x, _Later) else self.x
        prev, _mode.enabled = _mode.enabled, True
        try:
            x = _module_input(own_input)
            leaves = [x] if isinstance(x, Tensor) else tree_flatten(x)[0]
            y, vjp, _ = module.layer.apply(self.p_tree, own_input, self.s_tree, train=self.train)

            def node_vjp(dy: Any) -> tuple[Any, ...]:
                return _cotangents(*vjp(dy), len(leaves))

            out = _record_call(module._get_name(), y, node_vjp, (*leaves, *self.params))
        finally:
            _mode.enabled = prev
        return (x,), out


class _Later:
    """A module's input that the chain did not compute (a ReLU's output it pooled first): ``layer(x)``."""

    __slots__ = ("layer", "x")

    def __init__(self, layer: Layer, x: Any) -> None:
        self.layer, self.x = layer, x

    def value(self) -> Any:
        return self.layer.apply(None, self.x)[0]


def chainable(modules: list[Any]) -> bool:
    """Whether :func:`run_chain` may run ``modules``: plain functional modules of core layers."""
    for m in modules:
        cls = type(m)
        if (cls.forward is not FunctionalModule.forward or cls.__call__ is not Module.__call__
                or cls.backward is not FunctionalModule.backward
                or not isinstance(m.__dict__.get("layer"), Layer)):
            return False
    return True


def run_chain(modules: list[FunctionalModule], x: Tensor) -> Any:
    """``modules`` called one after the other on ``x``, recorded as ONE tape node.

    What calling each in turn computes (each layer's ``apply`` with its own params,
    state and training flag; the new states kept), without a node, an output
    tensor and a cotangent hand-off per module: the facade's ``nn.Sequential``
    of functional modules costs about what the core's ``layers.Sequential`` does.
    The node's inputs are ``x`` and every module's parameters; its vjp runs the
    layers' vjps in reverse. As in :meth:`FunctionalModule.forward`, nothing
    computes a ``dx`` nobody consumes (the layers before the first parameter that
    requires grad, on a module-input proxy), and ``module.backward(dy)`` recomputes
    it when it asks for one. A ReLU followed by a max pooling runs as the pooling,
    then the ReLU, as in the core's ``Sequential`` (``layers.containers.pool_first``).
    Each module keeps its call for its own ``backward`` (:class:`_ChainCall`).

    Args:
        modules: :func:`chainable` modules.
        x: the input tensor of the first.

    Returns:
        The last module's output (a tensor, or a nested tuple of them).
    """
    enabled = _mode.enabled
    graded = enabled and x.requires_grad
    need_dx = graded and not x._proxy  # as FunctionalModule.forward decides for the first module
    inputs: list[Any] = [x]
    calls = []  # in the order they ran: (module, its call, vjp, whether it computes dx, the input it ran on)

    def run(m: FunctionalModule, y: Any, own_input: Any) -> Any:
        nonlocal need_dx
        d = m.__dict__
        params = [m._parameters[n] for n in d["_params_def"][1]]
        call = _ChainCall(params, m._params(), m._state(), d["training"], own_input)
        out, vjp, new_state = d["layer"].apply(call.p_tree, y, call.s_tree, train=call.train, need_dx=need_dx)
        m._store_state(new_state)
        d["_last"] = call
        calls.append((m, call, vjp, need_dx, y))
        inputs.extend(params)
        need_dx = need_dx or any(p.requires_grad for p in params)
        return out

    y = x._data
    i = 0
    while i < len(modules):
        m = modules[i]
        if i + 1 < len(modules) and pool_first(m.__dict__["layer"], modules[i + 1].__dict__["layer"]):
            # as the core's Sequential: the pooling, then the ReLU on the pooled values; each module keeps
            # its own input for its backward (the pooling's, relu(y), computed only if it is asked for)
            y_in = y
            pooled = run(modules[i + 1], y_in, _Later(m.__dict__["layer"], y_in))
            y = run(m, pooled, y_in)
            i += 2
        else:
            y = run(m, y, y)
            i += 1
    if not enabled:
        return tree_unflatten(*_wrap_leaves(y))

    def chain_vjp(dy: Any) -> tuple[Any, ...]:
        recompute = graded and x._proxy and is_needed(x)  # module.backward(dy) wants this proxy's dx
        cotangents = []
        for m, call, vjp, needed, ran_on in reversed(calls):
            n = len(call.params)
            if dy is None:  # nothing before this module requires grad
                cotangents.append([None] * n)
                continue
            if recompute and not needed:
                _, vjp, _ = m.layer.apply(call.p_tree, ran_on, call.s_tree, train=call.train)
            dparams, dy = vjp(dy)
            leaves = tree_flatten(dparams)[0]
            cotangents.append(leaves if len(leaves) == n else [None] * n)
        return (dy, *[c for leaves in reversed(cotangents) for c in leaves])

    out = _record_call(modules[-1]._get_name(), y, chain_vjp, tuple(inputs))
    node = (out if isinstance(out, Tensor) else tree_flatten(out)[0][0])._node
    if node is not None and isinstance(y, tuple):
        node = node.inputs[0]._node  # the packed outputs' node (see _outputs)
    if node is not None:  # (None: nothing in the chain requires grad)
        node_ref = weakref.ref(node)  # no cycle node -> release -> node: the graph goes with its last tensor

        def release() -> None:  # once a backward pass has run the node: if it freed it, free the calls too
            alive = node_ref()
            if alive is None or alive.vjp is None:
                for _, call, _, _, _ in calls:
                    call.free()
                calls.clear()  # the layers' vjps and the inputs they ran on

        node.after = release
    if graded and x._proxy and not need_dx:  # made from proxies only (see FunctionalModule.forward)
        _mark_proxies(out)
    return out


def _cotangents(dparams: Any, dx: Any, n_inputs: int) -> tuple[Any, ...]:
    """A layer call's node cotangents: ``dx``'s leaves (``None`` each if no ``dx``), then ``dparams``'s."""
    if dx is None:  # need_dx=False, or integer input (indices)
        dx_leaves = [None] * n_inputs
    else:
        dx_leaves = [dx] if isinstance(dx, np.ndarray) else tree_flatten(dx)[0]
    return (*dx_leaves, *tree_flatten(dparams)[0])


def _mark_proxies(out: Any) -> None:
    """Mark the output tensors that require grad as proxies: made from module-input proxies only."""
    for t in ((out,) if isinstance(out, Tensor) else tree_flatten(out)[0]):
        if isinstance(t, Tensor) and t.requires_grad:
            t._proxy = True


def _record_call(name: str, y: Any, vjp: Any, inputs: tuple[Any, ...]) -> Any:
    """A layer call's output on the tape: one tensor, or a (nested) tuple of them (:func:`_outputs`)."""
    return record(name, y, vjp, inputs) if not isinstance(y, tuple) else _outputs(name, y, vjp, inputs)


def _wrap_leaves(y: Any) -> tuple[Any, list[Any]]:
    leaves, treedef = tree_flatten(y)
    return treedef, [Tensor._wrap(a) for a in leaves]


def _outputs(name: str, y: tuple[Any, ...], vjp: Any, inputs: tuple[Any, ...]) -> Any:
    """A layer call with a (nested) tuple of outputs as ONE tape node, each output a tensor.

    The node's result is the outputs packed into one flat array; each output is a
    slice of it (its own small node, whose vjp puts its cotangent in place), so the
    tape, which follows one result per node, sums the outputs' cotangents into the
    packed one and the layer's vjp runs once, with ``dy`` in the outputs' structure.
    """
    leaves, treedef = tree_flatten(y)
    sizes = [a.size for a in leaves]
    bounds = np.cumsum([0, *sizes])
    dtype = np.result_type(*leaves)
    packed_y = np.concatenate([np.ravel(a).astype(dtype, copy=False) for a in leaves])

    def packed_vjp(dpacked: Array) -> tuple[Any, ...]:
        pieces = zip(bounds[:-1], bounds[1:], leaves, strict=True)
        dys = [dpacked[lo:hi].reshape(a.shape) for lo, hi, a in pieces]
        return vjp(tree_unflatten(treedef, dys))

    packed = record(name, packed_y, packed_vjp, inputs)
    outs = []
    for lo, hi, a in zip(bounds[:-1], bounds[1:], leaves, strict=True):
        def piece_vjp(g: Array, lo: int = lo, hi: int = hi) -> tuple[Array]:
            full = np.zeros(packed_y.shape, dtype)
            full[lo:hi] = np.ravel(g)
            return (full,)

        outs.append(record(name, a, piece_vjp, (packed,)))
    return tree_unflatten(treedef, outs)


"""The tape: grad mode, tape nodes and the backward pass over them.

A :class:`Node` is one recorded call of a core function: its ``vjp`` (the core's,
as returned by an op of :mod:`nptfunc.ops` or a layer's ``apply``) and the
tensors it was given. A tensor that an op made while recording holds its node
(``tensor.grad_fn``); following ``node.inputs`` from a loss reaches every tensor
it depends on. That linked graph is the whole tape: there is no global list, so
a graph lives exactly as long as the tensors that reach it.

:func:`run_backward` is micrograd's algorithm: a topological order of the nodes
reachable from the roots, then each node's vjp in reverse order. A tensor used
twice gets the sum of its cotangents (a new array: a cotangent the tape did not
allocate is never written into). Leaves that require grad accumulate ``.grad``
in their own dtype; non-leaf cotangents are dropped once used, as torch's. A node
may carry an ``after`` callback, run once the pass has accumulated every leaf's
gradient (``nn.parallel.DistributedDataParallel`` averages gradients there).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from nptfunc._types import Array

if TYPE_CHECKING:
    from nptfunc.nn._tensor import Tensor

__all__ = ["Node", "enable_grad", "is_grad_enabled", "no_grad", "run_backward", "set_grad_enabled"]

F = TypeVar("F", bound=Callable[..., Any])


class _GradMode(threading.local):
    enabled = True


_mode = _GradMode()
_captured: frozenset[int] = frozenset()  # ids of the tensors whose cotangents the running pass returns


def is_needed(t: Any) -> bool:
    """Whether the backward pass now running needs the cotangent of the proxy (or proxy-made) ``t``.

    ``t`` is a module-input proxy or a tensor made from proxies only (``_proxy`` set
    on a non-leaf). Only ``module.backward(dy)`` needs one: it returns its input's cotangent (a captured
    tensor), which may be reached through the proxy-made tensors in between.
    ``loss.backward()`` needs none: proxies keep no ``.grad``.
    """
    if not _captured:
        return False
    stack, seen = [t], set()
    while stack:
        u = stack.pop()
        if id(u) in _captured:
            return True
        if u._node is not None and id(u) not in seen:
            seen.add(id(u))
            stack.extend(i for i in u._node.inputs if i is not None and i.requires_grad and i._proxy)
    return False


def is_grad_enabled() -> bool:
    """Whether operations are recorded on the tape (``torch.is_grad_enabled``)."""
    return _mode.enabled


class _GradContext:
    """A context manager and decorator that sets grad mode and restores it on exit."""

    _value = True

    def __init__(self) -> None:
        self._prev: list[bool] = []

    def __enter__(self) -> None:
        self._prev.append(_mode.enabled)
        _mode.enabled = self._value

    def __exit__(self, *exc: object) -> None:
        _mode.enabled = self._prev.pop()

    def __call__(self, f: F) -> F:
        @wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with type(self)():
                return f(*args, **kwargs)
        return wrapper  # type: ignore[return-value]


class no_grad(_GradContext):  # noqa: N801 - torch's name
    """Record nothing inside: ``with no_grad(): ...`` or ``@no_grad()``. Equivalent to ``torch.no_grad``."""

    _value = False


class enable_grad(_GradContext):  # noqa: N801 - torch's name
    """Record again inside a :class:`no_grad` block. Equivalent to ``torch.enable_grad``."""

    _value = True


class set_grad_enabled(_GradContext):  # noqa: N801 - torch's name
    """Set grad mode at once, or for a block. Equivalent to ``torch.set_grad_enabled(mode)``."""

    def __init__(self, mode: bool) -> None:
        super().__init__()
        if not isinstance(mode, bool):
            msg = f"set_grad_enabled: expected mode to be a bool, got {mode!r}"
            raise TypeError(msg)
        self._value = mode
        self._prev.append(_mode.enabled)
        _mode.enabled = mode

    def __enter__(self) -> None:
        pass

    def __call__(self, f: F) -> F:
        _mode.enabled = self._prev.pop()
        mode = self._value

        @wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            prev = _mode.enabled
            _mode.enabled = mode
            try:
                return f(*args, **kwargs)
            finally:
                _mode.enabled = prev
        return wrapper  # type: ignore[return-value]


class Node:
    """One recorded call: ``vjp(dy) -> one cotangent per input`` and the input tensors.

    ``inputs`` has ``None`` for an input that was not a tensor (a Python scalar, an
    array constant); ``versions`` the inputs' version counters when recorded, so an
    in-place change of a saved tensor is caught at backward time.
    """

    __slots__ = ("__weakref__", "after", "inputs", "name", "versions", "vjp")

    def __init__(self, name: str, vjp: Callable[[Array], Sequence[Array | None]],
                 inputs: tuple[Tensor | None, ...]) -> None:
        self.name = name
        self.vjp: Callable[[Array], Sequence[Array | None]] | None = vjp
        self.inputs = inputs
        self.versions = tuple([-1 if t is None else t._version for t in inputs])
        self.after: Callable[[], None] | None = None  # run once the whole pass is done (DDP's averaging)

    def __repr__(self) -> str:
        return f"<{self.name}Backward>"


def _topological(roots: Iterable[Tensor], stop: dict[int, Any]) -> list[Node]:
    """The nodes reachable from ``roots``, each after every node that consumes its output."""
    order: list[Node] = []
    seen: set[int] = set()
    for root in roots:
        node = root._node
        if node is None or id(node) in seen or id(root) in stop:
            continue
        seen.add(id(node))
        stack = [(node, iter(node.inputs))]
        while stack:
            current, inputs = stack[-1]
            for t in inputs:
                if t is None or id(t) in stop:
                    continue
                child = t._node
                if child is not None and id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, iter(child.inputs)))
                    break
            else:
                stack.pop()
                order.append(current)
    order.reverse()
    return order


def _add(grads: dict[int, Array], owned: set[int], key: int, g: Array) -> None:
    """Sum ``g`` into ``grads[key]``, in place only into an array this pass allocated."""
    prev = grads.get(key)
    if prev is None:
        grads[key] = g
    elif key in owned:
        np.add(prev, g, out=prev, casting="unsafe")
    else:
        total = prev + g
        if total.dtype != prev.dtype:
            total = total.astype(prev.dtype)
        grads[key] = total
        owned.add(key)


def _owner(g: Any) -> np.ndarray | None:
    """The writeable array that owns ``g``'s memory, if ``g`` is it or a read-only view of all of it.

    Params trees store read-only views (:func:`nptfunc.layers.base.param_field`), so
    a layer's fresh ``dparams`` arrive as such views of arrays nothing else holds.
    """
    if type(g) is not np.ndarray:
        return None
    own = g if g.base is None else g.base
    if (type(own) is not np.ndarray or own.base is not None or not own.flags.writeable
            or not own.flags.owndata):
        return None
    if own is not g and (g.flags.writeable or own.shape != g.shape or own.strides != g.strides
                         or own.dtype != g.dtype):
        return None
    return own


def run_backward(roots: Sequence[Tensor], grads: Sequence[Array], *, capture: Sequence[Tensor] = (),
                 retain_graph: bool = False) -> list[Array | None]:
    """Run the tape backwards from ``roots`` with cotangents ``grads``.

    Leaves that require grad (and are not module-input proxies) accumulate
    ``.grad``. Tensors in ``capture`` stop the pass: their cotangents are returned
    (``None`` where none arrived) and nothing before them is visited; this is how
    ``module.backward(dy)`` runs only the module's own part of the graph.

    Raises:
        RuntimeError: a node already run and freed (``retain_graph=False``), or a
            saved tensor changed in place since it was recorded.
    """
    global _captured
    stop = {id(t): None for t in capture}
    by_node: dict[int, Array] = {}
    owned: set[int] = set()
    captured: dict[int, Array] = {}
    captured_owned: set[int] = set()
    # the caller's cotangents, then each array a leaf has taken (kept alive here: ids are unique only
    # among live objects, and a dparams view is gone once it has been sent)
    not_fresh = {id(g): g for g in grads}

    def send(t: Tensor, g: Array) -> None:
        key = id(t)
        if key in stop:
            _add(captured, captured_owned, key, g)
        elif not t.requires_grad:
            return
        elif t._node is None:
            if not t._proxy:  # a module-input proxy keeps no .grad
                # a vjp's fresh result (its own memory, handed to no other leaf) becomes .grad
                # without a copy: layer math returns fresh arrays and keeps no reference to them
                own = _owner(g)
                fresh = own is not None and id(own) not in not_fresh and id(g) not in not_fresh
                not_fresh[id(g)], not_fresh[id(own)] = g, own
                t.accumulate_grad(own if fresh else g, fresh=fresh)
        else:
            _add(by_node, owned, id(t._node), g)

    for root, g in zip(roots, grads, strict=True):
        send(root, g)
    prev_mode, prev_captured = _mode.enabled, _captured
    _mode.enabled, _captured = False, frozenset(stop)
    after: list[Callable[[], None]] = []
    try:
        for node in _topological(roots, stop):
            g = by_node.pop(id(node), None)
            if g is None:
                continue
            vjp = node.vjp
            if vjp is None:
                msg = (f"backward: trying to backward through the graph a second time ({node.name}'s "
                       f"saved values were freed by the first backward); call the forward again, or pass "
                       f"retain_graph=True to the first backward")
                raise RuntimeError(msg)
            for t, v in zip(node.inputs, node.versions, strict=True):
                if t is not None and t._version != v:
                    msg = (f"backward: a tensor of shape {t.shape} saved by {node.name} for the gradient "
                           f"was modified by an in-place operation after it was used (version {v} -> "
                           f"{t._version}); use an out-of-place operation")
                    raise RuntimeError(msg)
            cotangents = vjp(g)
            if node.after is not None:
                after.append(node.after)
            if not retain_graph:
                node.vjp = None
            for t, c in zip(node.inputs, cotangents, strict=True):
                if t is not None and c is not None:
                    send(t, c)
        for callback in after:  # every leaf's .grad is complete now
            callback()
    finally:
        _mode.enabled, _captured = prev_mode, prev_captured
    return [captured.get(id(t)) for t in capture]

"""Trees: nests of attrs classes, tuples, lists, dicts and ``None`` with leaves.

The one tree module of the library: optimizers, containers, the facade, saving
and the tests all go through it. A *node* is an attrs instance (its ``init``
fields, in declaration order), a tuple (named tuples keep their class), a list,
a dict (in sorted key order) or ``None`` (a node with no children). Anything
else is a *leaf*: arrays, Python scalars and :class:`nptfunc.random.Key`.

Paths name where a leaf sits: a tuple of attribute names (``str``), sequence
indices (``int``) and dict keys. :func:`path_str` joins one with dots, which
gives torch's ``state_dict`` keys (``0.weight``, ``3.running_mean``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any

import attrs
import numpy as np

from nptfunc._types import PyTree
from nptfunc.random import Key

__all__ = [
    "TreeDef",
    "assert_same_structure",
    "path_str",
    "same_structure",
    "tree_add",
    "tree_flatten",
    "tree_flatten_with_path",
    "tree_leaves",
    "tree_map",
    "tree_scale",
    "tree_structure",
    "tree_sub",
    "tree_unflatten",
    "tree_vdot",
    "tree_zeros_like",
]

PathKey = str | int | Hashable
Path = tuple[PathKey, ...]


def _is_node(x: Any) -> bool:
    if x is None or isinstance(x, (tuple, list, dict)):
        return True
    return attrs.has(type(x)) and not isinstance(x, Key)


def _children(x: Any) -> tuple[tuple[PathKey, ...], list[Any], Any]:
    """Return (keys, children, aux) of a node; aux rebuilds it with :func:`_rebuild`."""
    if x is None:
        return (), [], None
    if isinstance(x, dict):
        try:
            keys = tuple(sorted(x))
        except TypeError as e:
            msg = f"tree: dict keys must be sortable, got {list(x)!r}"
            raise TypeError(msg) from e
        return keys, [x[k] for k in keys], (dict, keys)
    if isinstance(x, (tuple, list)):
        return tuple(range(len(x))), list(x), (type(x), len(x))
    names = tuple(f.name for f in attrs.fields(type(x)) if f.init)
    return names, [getattr(x, n) for n in names], (type(x), names)


def _rebuild(node_type: Any, aux: Any, children: list[Any]) -> Any:
    if node_type is None:
        return None
    cls, keys = aux
    if cls is dict:
        return dict(zip(keys, children, strict=True))
    if cls is list:
        return list(children)
    if cls is tuple:
        return tuple(children)
    if issubclass(cls, tuple):  # a named tuple
        return cls(*children)
    return cls(**dict(zip(keys, children, strict=True)))


@attrs.frozen
class TreeDef:
    """The structure of a tree without its leaves (comparable and hashable)."""

    kind: Any  # None for a leaf, "none" for None, else the node's aux
    children: tuple[TreeDef, ...] = ()

    @property
    def num_leaves(self) -> int:
        """How many leaves a tree of this structure has."""
        if self.kind is None:
            return 1
        return sum(c.num_leaves for c in self.children)


_LEAF = TreeDef(None)
_NONE = TreeDef("none")


def _flatten(x: Any, path: Path, out: list[tuple[Path, Any]]) -> TreeDef:
    if not _is_node(x):
        out.append((path, x))
        return _LEAF
    if x is None:
        return TreeDef("none")
    keys, children, aux = _children(x)
    defs = tuple(_flatten(c, (*path, k), out) for k, c in zip(keys, children, strict=True))
    return TreeDef(aux, defs)


def tree_flatten_with_path(tree: PyTree) -> tuple[list[tuple[Path, Any]], TreeDef]:
    """Flatten a tree into ``[(path, leaf), ...]`` and its structure."""
    out: list[tuple[Path, Any]] = []
    treedef = _flatten(tree, (), out)
    return out, treedef


def _flatten_leaves(x: Any, out: list[Any]) -> TreeDef:
    """:func:`_flatten` without the paths (the hot path of the optimizers and the facade)."""
    if not _is_node(x):
        out.append(x)
        return _LEAF
    if x is None:
        return _NONE
    _, children, aux = _children(x)
    return TreeDef(aux, tuple([_flatten_leaves(c, out) for c in children]))


def tree_flatten(tree: PyTree) -> tuple[list[Any], TreeDef]:
    """Flatten a tree into its leaves (in a fixed order) and its structure."""
    out: list[Any] = []
    treedef = _flatten_leaves(tree, out)
    return out, treedef


def tree_leaves(tree: PyTree) -> list[Any]:
    """The leaves of a tree, in the order :func:`tree_flatten` gives them."""
    return tree_flatten(tree)[0]


def tree_structure(tree: PyTree) -> TreeDef:
    """The structure of a tree."""
    return tree_flatten(tree)[1]


class _TooFewLeavesError(Exception):
    pass


def tree_unflatten(treedef: TreeDef, leaves: list[Any]) -> PyTree:
    """Rebuild a tree of structure ``treedef`` from ``leaves``."""
    leaves = list(leaves)
    it = iter(leaves)
    end = object()

    def build(td: TreeDef) -> Any:
        kind = td.kind
        if kind is None:
            leaf = next(it, end)
            if leaf is end:
                raise _TooFewLeavesError  # reported below
            return leaf
        if kind == "none":
            return None
        return _rebuild(True, kind, [build(c) for c in td.children])

    try:
        tree = build(treedef)
        extra = next(it, end) is not end
    except _TooFewLeavesError:
        extra = True
    if extra:
        msg = f"tree_unflatten: the structure has {treedef.num_leaves} leaves, got {len(leaves)}"
        raise ValueError(msg)
    return tree


def path_str(path: Path) -> str:
    """Join a path with dots: ``(0, "weight") -> "0.weight"``; ``()`` gives ``"<root>"``."""
    return ".".join(str(p) for p in path) if path else "<root>"


def _describe(x: Any) -> str:
    if not _is_node(x):
        return "a leaf"
    if x is None:
        return "None"
    keys, _, _ = _children(x)
    if isinstance(x, (tuple, list)):
        return f"{type(x).__name__} of length {len(x)}"
    if isinstance(x, dict):
        return f"dict with keys {list(keys)}"
    return f"{type(x).__name__}"


def _first_difference(a: Any, b: Any, path: Path) -> str | None:
    a_node, b_node = _is_node(a), _is_node(b)
    if not a_node and not b_node:
        return None
    if a_node != b_node or (a is None) != (b is None):
        return f"at {path_str(path)}: {_describe(a)} vs {_describe(b)}"
    if a is None:
        return None
    ka, ca, auxa = _children(a)
    _, cb, auxb = _children(b)
    if auxa != auxb:
        return f"at {path_str(path)}: {_describe(a)} vs {_describe(b)}"
    for k, x, y in zip(ka, ca, cb, strict=True):
        found = _first_difference(x, y, (*path, k))
        if found is not None:
            return found
    return None


def same_structure(a: PyTree, b: PyTree) -> bool:
    """Whether two trees have the same structure (node classes, keys, lengths)."""
    return _first_difference(a, b, ()) is None


def assert_same_structure(a: PyTree, b: PyTree, what: str = "trees") -> None:
    """Raise a ``TypeError`` naming the first path where ``a`` and ``b`` differ."""
    found = _first_difference(a, b, ())
    if found is not None:
        msg = f"{what} differ in structure {found}"
        raise TypeError(msg)


def tree_map(f: Callable[..., Any], tree: PyTree, *rest: PyTree) -> PyTree:
    """Apply ``f`` leaf by leaf over one tree or several of the same structure.

    Raises:
        TypeError: naming the path where a tree of ``rest`` differs from ``tree``.
    """
    leaves, treedef = tree_flatten(tree)
    others = []
    for i, r in enumerate(rest):
        assert_same_structure(tree, r, what=f"tree_map: tree 0 and tree {i + 1}")
        others.append(tree_leaves(r))
    return tree_unflatten(treedef, [f(*xs) for xs in zip(leaves, *others, strict=True)])


def _iter_arrays(tree: PyTree) -> Iterator[Any]:
    return (leaf for leaf in tree_leaves(tree) if leaf is not None)


def tree_add(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise ``a + b``."""
    return tree_map(lambda x, y: x + y, a, b)


def tree_sub(a: PyTree, b: PyTree) -> PyTree:
    """Leafwise ``a - b``."""
    return tree_map(lambda x, y: x - y, a, b)


def tree_scale(tree: PyTree, s: float) -> PyTree:
    """Leafwise ``s * x``, keeping each array's dtype."""
    return tree_map(lambda x: (x * np.asarray(s, dtype=x.dtype)) if hasattr(x, "dtype")
                    else x * s, tree)


def tree_zeros_like(tree: PyTree) -> PyTree:
    """A tree of the same structure whose arrays are zeros of the same shape and dtype."""
    from nptfunc.backend import array_module

    return tree_map(lambda x: array_module(x).zeros_like(x), tree)


def tree_vdot(a: PyTree, b: PyTree) -> float:
    """The sum over leaves of ``sum(a * b)`` (a float)."""
    from nptfunc.backend import array_module

    total = 0.0
    for x, y in zip(_iter_arrays(a), _iter_arrays(b), strict=True):
        xp = array_module(x)
        total += float(xp.vdot(xp.ravel(x), xp.ravel(y)))
    return total

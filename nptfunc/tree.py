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


# What each class is, found once per class: a leaf, or how to take a node apart.
_LEAF_KIND, _NONE_KIND, _SEQ_KIND, _DICT_KIND, _ATTRS_KIND = range(5)
_kinds: dict[type, tuple[int, tuple[str, ...]]] = {type(None): (_NONE_KIND, ())}
_NO_KIND = (-1, ())


def _kind_of(cls: type) -> tuple[int, tuple[str, ...]]:
    """``(kind, names)`` of a class: names are an attrs class's ``init`` fields."""
    found = _kinds.get(cls)
    if found is None:
        if issubclass(cls, dict):
            found = (_DICT_KIND, ())
        elif issubclass(cls, (tuple, list)):
            found = (_SEQ_KIND, ())
        elif attrs.has(cls) and not issubclass(cls, Key):
            found = (_ATTRS_KIND, tuple(f.name for f in attrs.fields(cls) if f.init))
        else:
            found = (_LEAF_KIND, ())
        if len(_kinds) < 4096:  # classes made on the fly (in a loop) would grow it without end
            _kinds[cls] = found
    return found


def _is_node(x: Any) -> bool:
    return _kind_of(type(x))[0] != _LEAF_KIND


def _children(x: Any) -> tuple[tuple[PathKey, ...], list[Any], Any]:
    """Return (keys, children, aux) of a node; aux rebuilds it with :func:`_build`."""
    kind, names = _kind_of(type(x))
    if kind == _NONE_KIND:
        return (), [], None
    if kind == _DICT_KIND:
        try:
            keys = tuple(sorted(x))
        except TypeError as e:
            msg = f"tree: dict keys must be sortable, got {list(x)!r}"
            raise TypeError(msg) from e
        return keys, [x[k] for k in keys], (dict, keys)
    if kind == _SEQ_KIND:
        return tuple(range(len(x))), list(x), (type(x), len(x))
    return names, [getattr(x, n) for n in names], (type(x), names)


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
_leafy: dict[Any, TreeDef] = {}  # the structures of nodes whose children are all leaves, by their aux


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
    cls = type(x)
    if cls is np.ndarray:
        out.append(x)
        return _LEAF
    kind, names = _kinds.get(cls) or _kind_of(cls)
    if kind == _LEAF_KIND:
        out.append(x)
        return _LEAF
    if kind == _NONE_KIND:
        return _NONE
    if kind == _SEQ_KIND:
        children, aux = x, (cls, len(x))
    elif kind == _ATTRS_KIND:
        children, aux = [getattr(x, n) for n in names], (cls, names)
    else:
        _, children, aux = _children(x)
    defs = []
    leafy = True  # all children leaves: one shared TreeDef per aux (equal ones compare by identity then)
    for c in children:  # arrays without a call each: params, grads and states are mostly arrays
        if type(c) is np.ndarray:
            out.append(c)
            defs.append(_LEAF)
        else:
            td = _flatten_leaves(c, out)
            defs.append(td)
            leafy = leafy and td is _LEAF
    if not leafy:
        return TreeDef(aux, tuple(defs))
    td = _leafy.get(aux)
    if td is None:
        td = TreeDef(aux, tuple(defs))
        if len(_leafy) < 4096:  # classes made on the fly would grow it without end (as _kinds)
            _leafy[aux] = td
    return td


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


def _build(td: TreeDef, take: Callable[[], Any]) -> Any:
    """The node of structure ``td`` (not a leaf), its leaves taken in order with ``take()``."""
    kind = td.kind
    if kind == "none":
        return None
    cls, keys = kind
    children = [take() if c.kind is None else _build(c, take) for c in td.children]
    if cls is tuple:
        return tuple(children)
    if _kinds.get(cls, _NO_KIND)[0] == _ATTRS_KIND:
        return cls(**dict(zip(keys, children, strict=True)))
    if cls is dict:
        return dict(zip(keys, children, strict=True))
    if issubclass(cls, tuple):  # a named tuple
        return cls(*children)
    if issubclass(cls, list):
        return children if cls is list else cls(children)
    return cls(**dict(zip(keys, children, strict=True)))  # an attrs class


def tree_unflatten(treedef: TreeDef, leaves: list[Any]) -> PyTree:
    """Rebuild a tree of structure ``treedef`` from ``leaves``."""
    leaves = list(leaves)
    it = iter(leaves)
    try:
        tree = it.__next__() if treedef.kind is None else _build(treedef, it.__next__)
    except StopIteration:
        tree = None
    else:
        if next(it, it) is it:
            return tree
    msg = f"tree_unflatten: the structure has {treedef.num_leaves} leaves, got {len(leaves)}"
    raise ValueError(msg)


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

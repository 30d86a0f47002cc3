"""The fused path of an update: params, gradients and buffers as one flat buffer per dtype.

An optimizer whose transform is *elementwise* (every entry of the updates
depends only on the same entry of the gradients, params and buffers, and on
reductions over all of them, such as a global norm) can run it once over all
params at once: the leaves of each dtype laid end to end in one contiguous
buffer. An Adam update is then a dozen NumPy passes over one buffer instead of a
dozen per array, plus per-array Python work (torch's ``foreach``/``fused`` idea).

What the user sees does not change: the state keeps one array per param leaf
(``exp_avg`` is still a tuple of arrays shaped like the params), but each of
them is a read-only *view* into the flat buffer of its kind and dtype. The next
update recognises views it made itself (by identity, recorded in the state) and
uses their buffers as they are; anything else (a state built by hand, loaded from
a file, or params replaced by the user) is copied into fresh flat buffers once.
Every buffer is fresh at each update and never written into afterwards, so an
old state stays valid and replayable, as on the per-array path.

A *form* describes the leaves of a transform state: for each leaf, either the
``i``-th array of a *run* (one per-array buffer kind, e.g. ``exp_avg``) or a
shared value (a step-dependent scalar such as NAdam's ``mu_product``). It is
found once per optimizer and params signature by initialising the transform on
small probe arrays whose first axis tells them apart.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from nptfunc.tree import TreeDef, tree_flatten

__all__ = ["Form", "Layout", "Pieces", "Record", "concat", "form_of", "layout_of", "merge_states",
           "split_state"]

_TAIL = (3, 5)  # probe arrays are (i + 1, 3, 5): a buffer of leaf i has that shape


@attrs.frozen(eq=False)
class Form:
    """Where the per-array buffers of a transform state sit among its leaves.

    Attributes:
        treedef: the structure of the state.
        slots: per leaf, ``(run, i)`` for the ``i``-th array of buffer kind ``run``,
            or ``(-1, k)`` for the ``k``-th shared leaf.
        runs: how many buffer kinds.
        shared: how many shared leaves.
    """

    treedef: TreeDef
    slots: tuple[tuple[int, int], ...]
    runs: int
    shared: int


def form_of(init: Callable[[Any], Any], n: int, *, bare: bool = False) -> Form | None:
    """The form of ``init``'s state for ``n`` arrays (or one bare array), or ``None`` if unclear."""
    probe = np.zeros((1, *_TAIL)) if bare else tuple(np.zeros((i + 1, *_TAIL)) for i in range(n))
    leaves, treedef = tree_flatten(init(probe))
    slots, runs, expect, shared = [], 0, 0, 0
    for leaf in leaves:
        if isinstance(leaf, np.ndarray) and leaf.ndim == 3 and leaf.shape[1:] == _TAIL:
            i = leaf.shape[0] - 1
            if i != expect:
                return None
            runs += i == 0
            slots.append((runs - 1, i))
            expect = (i + 1) % n
        elif expect != 0 or (isinstance(leaf, np.ndarray) and leaf.ndim > 0):
            return None  # a buffer of another shape: not one array per param
        else:
            slots.append((-1, shared))
            shared += 1
    return None if expect else Form(treedef, tuple(slots), runs, shared)


@attrs.frozen(eq=False)
class Group:
    """The param leaves of one dtype: where each sits in the flat buffer."""

    dtype: np.dtype
    index: tuple[int, ...]  # the leaves' positions among all leaves
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]
    total: int


@attrs.frozen(eq=False)
class Layout:
    """How ``n`` param leaves map to flat buffers, and their states to fused states."""

    groups: tuple[Group, ...]
    leaves: Form  # the state as the user sees it: one array per leaf per run
    fused: Form  # the state the transform runs on: one flat buffer per dtype per run
    group_of: tuple[tuple[int, int], ...]  # per leaf: (group, position in the group)
    leaf_pos: dict[tuple[int, int], int]  # (run, leaf) or (-1, k) -> index among the state's leaves
    fused_pos: dict[tuple[int, int], int]  # (run, group) or (-1, k) -> index among the fused leaves


def layout_of(init: Callable[[Any], Any], p_leaves: Sequence[np.ndarray]) -> Layout | None:
    """The layout for these param leaves, or ``None`` when the transform's state is not per-array."""
    by_dtype: dict[np.dtype, list[int]] = {}
    for i, p in enumerate(p_leaves):
        by_dtype.setdefault(p.dtype, []).append(i)
    groups = []
    group_of: list[tuple[int, int]] = [(0, 0)] * len(p_leaves)
    for g, (dtype, index) in enumerate(by_dtype.items()):
        offsets, off = [], 0
        for k, i in enumerate(index):
            offsets.append(off)
            off += p_leaves[i].size
            group_of[i] = (g, k)
        groups.append(Group(dtype, tuple(index), tuple(offsets), tuple(p_leaves[i].size for i in index),
                            tuple(p_leaves[i].shape for i in index), off))
    leaves = form_of(init, len(p_leaves))
    fused = form_of(init, len(groups))
    if leaves is None or fused is None or (leaves.runs, leaves.shared) != (fused.runs, fused.shared):
        return None
    return Layout(tuple(groups), leaves, fused, tuple(group_of),
                  {s: k for k, s in enumerate(leaves.slots)}, {s: k for k, s in enumerate(fused.slots)})


def concat(arrays: Sequence[Any], group: Group) -> np.ndarray:
    """A fresh flat buffer of ``group``'s dtype holding ``arrays`` end to end (one copy, cast)."""
    return Pieces.of(arrays, group).array()


@attrs.frozen(eq=False)
class Pieces:
    """:func:`concat`'s flat buffer, not made yet: arrays end to end, cast to ``dtype``.

    An update that works on the flat buffer in chunks (the fused Adam) copies each
    chunk's part in with :meth:`copy_into` as it gets there, on its own thread and into
    memory the chunk then works on while it is cached, instead of one copy of all the
    gradients first. Anything else takes :meth:`array`.

    Attributes:
        arrays: the flat (raveled) arrays.
        starts: where each one starts in the buffer.
        dtype: the buffer's dtype.
        size: the buffer's length.
    """

    arrays: tuple[np.ndarray, ...]
    starts: tuple[int, ...]
    dtype: np.dtype
    size: int

    @classmethod
    def of(cls, arrays: Sequence[Any], group: Group) -> Pieces:
        """The pieces of ``group``'s buffer: ``arrays`` (one per leaf of the group)."""
        return cls(tuple(np.ravel(a) for a in arrays), group.offsets, group.dtype, group.total)

    @property
    def shape(self) -> tuple[int]:
        """``(size,)``, as the buffer's."""
        return (self.size,)

    @property
    def ndim(self) -> int:
        """1, as the buffer's."""
        return 1

    def array(self) -> np.ndarray:
        """The buffer: a fresh array (one copy, cast)."""
        if len(self.arrays) == 1:
            return np.array(self.arrays[0], dtype=self.dtype, copy=True)
        return np.concatenate(self.arrays, dtype=self.dtype, casting="unsafe")

    def copy_into(self, out: np.ndarray, lo: int, hi: int) -> None:
        """``out[:] = buffer[lo:hi]``, cast as :func:`concat` casts."""
        base = lo
        k = bisect.bisect_right(self.starts, lo) - 1
        while k > 0 and self.starts[k - 1] == self.starts[k]:  # empty arrays share a start
            k -= 1
        while lo < hi:
            a, start = self.arrays[k], self.starts[k]
            end = min(hi, start + a.size)
            if end > lo:
                np.copyto(out[lo - base:end - base], a[lo - start:end - start], casting="unsafe")
                lo = end
            k += 1


def split(buf: np.ndarray, group: Group) -> list[np.ndarray]:
    """Views of ``buf`` shaped as ``group``'s leaves (read-only if ``buf`` is)."""
    return [buf[off:off + size].reshape(shape)
            for off, size, shape in zip(group.offsets, group.sizes, group.shapes, strict=True)]


def flat_params(layout: Layout, p_leaves: Sequence[Any]) -> tuple[np.ndarray, ...]:
    """One read-only flat buffer per dtype holding the params."""
    out = []
    for g in layout.groups:
        buf = concat([p_leaves[i] for i in g.index], g)
        buf.flags.writeable = False
        out.append(buf)
    return tuple(out)


def to_fused(layout: Layout, s_leaves: Sequence[Any]) -> list[Any]:
    """The fused state's leaves from the per-array ones (copied into fresh read-only buffers)."""
    out = []
    for run, j in layout.fused.slots:
        if run < 0:
            out.append(s_leaves[layout.leaf_pos[(-1, j)]])
            continue
        g = layout.groups[j]
        buf = concat([s_leaves[layout.leaf_pos[(run, i)]] for i in g.index], g)
        buf.flags.writeable = False
        out.append(buf)
    return out


def from_fused(layout: Layout, f_leaves: Sequence[Any]) -> list[Any]:
    """The per-array leaves (views) of a fused state."""
    views: dict[tuple[int, int], list[np.ndarray]] = {}
    out = []
    for run, i in layout.leaves.slots:
        if run < 0:
            out.append(f_leaves[layout.fused_pos[(-1, i)]])
            continue
        g, k = layout.group_of[i]
        if (run, g) not in views:
            views[(run, g)] = split(f_leaves[layout.fused_pos[(run, g)]], layout.groups[g])
        out.append(views[(run, g)][k])
    return out


@attrs.frozen(eq=False)
class Record:
    """What an update remembers in its new state: the views it made and their flat buffers."""

    layout: Layout
    p_leaves: tuple[Any, ...]
    flat_params: tuple[np.ndarray, ...]
    state: Any  # the per-array state tree made (immutable: tuples, frozen attrs, arrays)
    s_leaves: tuple[Any, ...]
    f_leaves: tuple[Any, ...]
    f_state: Any  # the fused state tree the transform returned (or None: rebuild it from f_leaves)

    def params_match(self, p_leaves: Sequence[Any]) -> bool:
        """Whether ``p_leaves`` are exactly the views recorded (by identity)."""
        return len(p_leaves) == len(self.p_leaves) and all(
            a is b for a, b in zip(p_leaves, self.p_leaves, strict=True))

    def params_for(self, layout: Layout, p_leaves: Sequence[Any]) -> tuple[np.ndarray, ...] | None:
        """The flat params if ``p_leaves`` are exactly the views recorded, else ``None``."""
        return self.flat_params if layout is self.layout and self.params_match(p_leaves) else None

    def state_for(self, layout: Layout, s_leaves: Sequence[Any]) -> tuple[Any, ...] | None:
        """The fused state's leaves if ``s_leaves`` are exactly those recorded, else ``None``."""
        if layout is self.layout and len(s_leaves) == len(self.s_leaves) and all(
                a is b for a, b in zip(s_leaves, self.s_leaves, strict=True)):
            return self.f_leaves
        return None


# ------------------------------------------------------- one state per param and back
def split_state(nform: Form, bare: Form, s_leaves: Sequence[Any], i: int) -> list[Any]:
    """The leaves of array ``i``'s own state (of one bare array) from a state of ``n`` arrays."""
    pos = {s: k for k, s in enumerate(nform.slots)}
    return [s_leaves[pos[(run, i) if run >= 0 else (run, k)]] for run, k in bare.slots]


def merge_states(nform: Form, bare: Form, states: Sequence[Sequence[Any]]) -> list[Any]:
    """The leaves of a state of ``n`` arrays from each array's own state's leaves (shared from the first)."""
    pos = {s: k for k, s in enumerate(bare.slots)}
    return [states[i][pos[(run, 0)]] if run >= 0 else states[0][pos[(run, i)]] for run, i in nform.slots]

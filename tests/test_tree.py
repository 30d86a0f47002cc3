from collections import namedtuple

import attrs
import numpy as np
import pytest

from nptfunc import random, tree


@attrs.frozen
class P:
    weight: object
    bias: object = None


Pair = namedtuple("Pair", "a b")


def sample():
    return (P(np.ones(2), np.zeros(1)), None, [P(np.ones(3))], {"b": 1.0, "a": Pair(2.0, 3.0)},
            random.key(0))


def test_flatten_with_path_order_and_names():
    pairs, _ = tree.tree_flatten_with_path(sample())
    assert [tree.path_str(p) for p, _ in pairs] == [
        "0.weight", "0.bias", "2.0.weight", "3.a.0", "3.a.1", "3.b", "4"]
    assert isinstance(pairs[-1][1], random.Key)  # keys are leaves


def test_flatten_unflatten_roundtrip():
    t = sample()
    leaves, td = tree.tree_flatten(t)
    back = tree.tree_unflatten(td, leaves)
    assert tree.same_structure(t, back)
    assert type(back[3]["a"]) is Pair
    assert back[2][0].bias is None


def test_tree_map_multiple_trees():
    a = {"x": np.ones(2), "y": (np.arange(3.0), None)}
    b = {"x": np.full(2, 2.0), "y": (np.ones(3), None)}
    out = tree.tree_map(lambda u, v: u * v, a, b)
    np.testing.assert_array_equal(out["x"], [2.0, 2.0])
    np.testing.assert_array_equal(out["y"][0], [0.0, 1.0, 2.0])
    assert out["y"][1] is None


@pytest.mark.parametrize(("a", "b", "where"), [
    ({"x": 1, "y": 2}, {"x": 1, "z": 2}, "<root>"),
    ((1, (2, 3)), (1, (2,)), "at 1: tuple of length 2 vs tuple of length 1"),
    ([P(1, 2)], [P(1, None)], "at 0.bias: a leaf vs None"),
    ((1, [2]), (1, (2,)), "at 1: list of length 1 vs tuple of length 1"),
    (P(1), (1, None), "P vs tuple"),
])
def test_structure_mismatch_names_path(a, b, where):
    assert not tree.same_structure(a, b)
    with pytest.raises(TypeError, match="differ in structure"):
        tree.tree_map(lambda u, v: u, a, b)
    with pytest.raises(TypeError, match=where.replace("(", r"\(")):
        tree.assert_same_structure(a, b)


def test_arithmetic_keeps_dtype_and_inputs():
    a = (np.ones(3, np.float32), {"w": np.full((2, 2), 2.0)})
    b = tree.tree_map(lambda x: x.copy(), a)
    s = tree.tree_add(a, b)
    assert s[0].dtype == np.float32
    np.testing.assert_array_equal(s[1]["w"], 4.0)
    d = tree.tree_scale(a, 0.5)
    assert d[0].dtype == np.float32
    np.testing.assert_array_equal(d[0], 0.5)
    z = tree.tree_zeros_like(a)
    assert z[1]["w"].shape == (2, 2) and not z[1]["w"].any()
    np.testing.assert_array_equal(tree.tree_sub(s, a)[0], 1.0)
    assert tree.tree_vdot(a, a) == 3.0 + 16.0
    np.testing.assert_array_equal(a[0], 1.0)  # inputs untouched


@pytest.mark.parametrize(("t", "n"), [((1, 2), 2), (P(1, (2, 3)), 3), ({"a": [1], "b": None}, 1), (5, 1)])
def test_unflatten_wrong_count(t, n):
    _, td = tree.tree_flatten(t)
    for k in (n - 1, n + 1):
        with pytest.raises(ValueError, match=f"has {n} leaves, got {k}"):
            tree.tree_unflatten(td, list(range(k)))


class Items(list):
    pass


class Table(dict):
    pass


def test_subclasses_of_list_and_dict():
    """A list subclass comes back as itself; a dict subclass as a dict (its keys sorted)."""
    leaves, td = tree.tree_flatten((Items([1, 2]), Table(b=3, a=4)))
    assert leaves == [1, 2, 4, 3]
    back = tree.tree_unflatten(td, [5, 6, 7, 8])
    assert type(back[0]) is Items and back[0] == [5, 6]
    assert type(back[1]) is dict and back[1] == {"a": 7, "b": 8}


def test_a_class_is_a_leaf_or_a_node_by_its_own_kind():
    """The kinds found once per class: keys are leaves though attrs classes, None is an empty node."""
    @attrs.frozen
    class Q:
        x: object
        y: object = attrs.field(init=False, default=0)  # not an init field: not a child

    leaves, td = tree.tree_flatten([Q(random.key(1)), None, Q(2)])
    assert len(leaves) == 2 and isinstance(leaves[0], random.Key) and leaves[1] == 2
    back = tree.tree_unflatten(td, [3, 4])
    assert back[0] == Q(3) and back[1] is None and back[2] == Q(4)


def test_none_is_an_empty_node():
    assert tree.tree_leaves(None) == []
    assert tree.tree_map(lambda x: x + 1, (None, 1)) == (None, 2)

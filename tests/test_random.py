import pathlib
import re

import numpy as np
import pytest

from nptfunc import random


def test_same_key_same_numbers():
    k = random.key(42)
    np.testing.assert_array_equal(random.normal(k, (5,)), random.normal(k, (5,)))
    np.testing.assert_array_equal(random.normal(random.key(42), (5,)), random.normal(k, (5,)))


def test_keys_are_values():
    assert random.key(3) == random.key(3)
    assert hash(random.key(3)) == hash(random.key(3))
    assert random.key(3) != random.key(4)
    with pytest.raises(AttributeError):
        random.key(3).seed = 5  # frozen


def test_split_children_are_distinct_and_deterministic():
    k = random.key(0)
    a, b, c = random.split(k, 3)
    assert len({a, b, c, k}) == 4
    assert random.split(k, 3) == (a, b, c)
    xs = [random.uniform(kk, (1000,)) for kk in (k, a, b, c)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert abs(np.corrcoef(xs[i], xs[j])[0, 1]) < 0.15
    # splitting does not change the parent
    assert k == random.key(0)
    # a child's children differ from the parent's other children
    assert random.split(a)[0] not in (a, b, c)


def test_fold_in_differs_from_split():
    k = random.key(1)
    assert random.fold_in(k, 0) not in random.split(k, 4)
    assert random.fold_in(k, 7) == random.fold_in(k, 7)


def test_key_array_roundtrip():
    k = random.split(random.split(random.key(2**64 - 1))[1], 5)[3]
    assert random.Key.from_array(k.to_array()) == k


@pytest.mark.parametrize("bad", [-1, 2**64])
def test_key_seed_range(bad):
    with pytest.raises(ValueError, match=r"random.key: expected a seed in \[0, 2\*\*64\)"):
        random.key(bad)


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_key_seed_type(bad):
    with pytest.raises(TypeError, match="random.key: expected an int seed"):
        random.key(bad)


def test_split_validates():
    with pytest.raises(TypeError, match="expected an nptfunc.random.Key"):
        random.split(3)
    with pytest.raises(ValueError, match="num to be an int >= 1"):
        random.split(random.key(0), 0)


def test_bernoulli_rate():
    m = random.bernoulli(random.key(5), 0.3, (100_000,))
    assert m.dtype == bool
    assert abs(m.mean() - 0.3) < 0.01


def test_no_global_numpy_random_state_in_package():
    """Nothing in nptfunc draws from or seeds NumPy's global random state."""
    root = pathlib.Path(__file__).parents[1] / "nptfunc"
    allowed = {"Generator", "PCG64", "SeedSequence"}
    pattern = re.compile(r"(?:np|numpy)\.random\.(\w+)")
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text()
        offenders += [f"{path.name}: {m}" for m in pattern.findall(text) if m not in allowed]
        if re.search(r"^\s*(?:from\s+numpy\.random\s+import|import\s+random\b)", text, re.M):
            offenders.append(f"{path.name}: imports a global random module")
    assert offenders == []


def test_samples_default_to_float32_like_the_layers():
    k = random.key(3)
    assert random.normal(k, (4,)).dtype == np.float32 and random.uniform(k, (4,)).dtype == np.float32
    np.testing.assert_array_equal(random.normal(k, (4,)), random.normal(k, (4,), dtype=np.float64).astype(np.float32))

"""nptfunc.io: save/load round trips without pickle; refusal of pickles and malformed files."""

import io as pyio
import json
import math
import pickle
import sys

import attrs
import numpy as np
import pytest

from nptfunc import io, layers, random
from nptfunc.layers import BatchNormState, DropoutState, LinearParams
from nptfunc.testing import leaves_equal


def _tree():
    return {
        "0.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
        "1.running_mean": np.linspace(0, 1, 4),
        "1.num_batches_tracked": np.array(7, dtype=np.int64),
        "params": (LinearParams(np.ones((2, 2)), None), None,
                   LinearParams(np.zeros((1, 2), np.float32), np.ones(1, np.float32))),
        "state": [BatchNormState(np.zeros(3), np.ones(3), np.array(2, np.int64)),
                  DropoutState(random.key(2**64 - 5)), None],
        "hyper": {"lr": 1e-3, "betas": (0.9, 0.999), "nesterov": False, "name": "adam", "step": 12,
                  "inf": math.inf, "none": None, "empty": [], "dtype": np.dtype(np.float64)},
        "np_scalar": np.float32(2.5),
        "bools": np.array([True, False]),
        3: {"int key": np.int64(4)},
        "key": random.split(random.key(1))[1],
    }


def _same(a, b):
    """Equal structure, equal leaves, equal leaf types (a stricter check than leaves_equal)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if attrs.has(type(a)) and not isinstance(a, random.Key):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a)))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def test_round_trip_keeps_structure_types_and_values(tmp_path):
    tree = _tree()
    path = tmp_path / "model.pt"
    io.save(tree, path)
    assert path.exists() and not (tmp_path / "model.pt.npz").exists()  # written exactly at path
    back = io.load(path)
    assert _same(tree, back)
    assert leaves_equal(tree["params"], back["params"])
    assert not back["params"][0].weight.flags.writeable  # attrs params re-made read-only
    assert back["state"][1].key == random.key(2**64 - 5)
    assert isinstance(back["np_scalar"], np.float32)


def test_nan_and_negative_zero_survive(tmp_path):
    tree = {"x": float("nan"), "y": -0.0, "big": 2**80, "a": np.array([np.nan, -0.0, np.inf])}
    io.save(tree, tmp_path / "f.npz")
    back = io.load(tmp_path / "f.npz")
    assert math.isnan(back["x"]) and math.copysign(1, back["y"]) == -1 and back["big"] == 2**80
    assert np.array_equal(back["a"], tree["a"], equal_nan=True)


@pytest.mark.parametrize("obj", [None, [], {}, (), 3, "text", np.zeros((0, 2))])
def test_round_trip_of_small_objects(tmp_path, obj):
    io.save(obj, tmp_path / "f.npz")
    assert _same(io.load(tmp_path / "f.npz"), obj)


def test_file_objects_and_readable_entries(tmp_path):
    buf = pyio.BytesIO()
    tree = {"0.weight": np.ones((2, 2)), "weird/name": np.zeros(1)}
    io.save(tree, buf)
    buf.seek(0)
    assert _same(io.load(buf), tree)
    io.save(tree, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert np.array_equal(z["0.weight"], np.ones((2, 2)))  # plain names where possible


def test_layer_params_round_trip(tmp_path):
    model = layers.Sequential(layers.Linear(3, 4), layers.BatchNorm1d(4), layers.Dropout(0.5))
    params, state = model.init(random.key(0)), model.init_state(random.key(1))
    io.save({"params": params, "state": state}, tmp_path / "ckpt.npz")
    back = io.load(tmp_path / "ckpt.npz")
    assert _same(back["params"], params) and _same(back["state"], state)
    x = random.normal(random.key(2), (5, 3), dtype=np.float32)
    y1, _, s1 = model.apply(params, x, state, train=True)
    y2, _, s2 = model.apply(back["params"], x, back["state"], train=True)
    assert np.array_equal(y1, y2) and leaves_equal(s1, s2)


@attrs.frozen
class _UserState:
    count: int
    values: np.ndarray = attrs.field(eq=False)


def test_user_classes_need_registering(tmp_path):
    obj = {"s": _UserState(3, np.ones(2))}
    with pytest.raises(TypeError, match=r"_UserState at s is not an nptfunc class; register"):
        io.save(obj, tmp_path / "f.npz")
    io.register(_UserState)
    io.save(obj, tmp_path / "f.npz")
    back = io.load(tmp_path / "f.npz")["s"]
    assert isinstance(back, _UserState) and back.count == 3 and np.array_equal(back.values, np.ones(2))
    with pytest.raises(TypeError, match="attrs class or a named tuple"):
        io.register(dict)


# ------------------------------------------------------------------------ save errors
@pytest.mark.parametrize(("obj", "match"), [
    ({"a": np.array([object()])}, r"object arrays cannot be saved without pickle \(at a"),
    ({"a": [1, {2, 3}]}, r"cannot store a set at a\.1"),
    ({"f": lambda: 0}, r"cannot store a function at f"),
    ({(1, 2): np.ones(1)}, r"dict keys must be str or int, got tuple"),
    ({True: 1}, r"dict keys must be str or int, got bool"),
])
def test_save_rejects_what_it_cannot_store(tmp_path, obj, match):
    with pytest.raises(TypeError, match=match):
        io.save(obj, tmp_path / "f.npz")


def test_save_hints_for_modules_and_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"torch tensor: convert it with \.detach\(\)\.cpu\(\)\.numpy\(\)"):
        io.save({"w": torch.ones(2)}, tmp_path / "f.npz")
    with pytest.raises(TypeError, match=r"save its state_dict\(\)"):
        io.save(torch.nn.Linear(2, 2), tmp_path / "f.npz")


# ------------------------------------------------------------------------ load errors
class _Boom:
    """Unpickling this creates a file: the canary that nothing was executed."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _boom(tmp_path):
    b = _Boom()
    b.marker = str(tmp_path / "EXECUTED")
    return b


def test_pickled_npy_is_refused_without_executing(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([_boom(tmp_path)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"nptfunc\.load\('.*evil\.npy'\).*not an nptfunc"):
        io.load(path)
    assert not (tmp_path / "EXECUTED").exists()


def test_raw_pickle_is_refused_without_executing(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"w": _boom(tmp_path)}))
    with pytest.raises(ValueError, match=r"evil\.pkl.*not an nptfunc"):
        io.load(path)
    assert not (tmp_path / "EXECUTED").exists()


def _write_npz(path, meta, **arrays):
    data = json.dumps(meta).encode() if not isinstance(meta, bytes) else meta
    with open(path, "wb") as f:
        np.savez(f, __nptfunc__=np.frombuffer(data, dtype=np.uint8), **arrays)


def test_object_array_inside_an_nptfunc_file_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    meta = {"format": "nptfunc", "version": 1, "tree": {"t": "array", "entry": "w"}}
    _write_npz(path, meta, w=np.array([_boom(tmp_path)], dtype=object))
    with pytest.raises(ValueError, match=r"evil\.npz.*(pickled|[Oo]bject)"):
        io.load(path)
    assert not (tmp_path / "EXECUTED").exists()


def test_class_names_from_a_file_are_never_imported(tmp_path):
    path = tmp_path / "f.npz"
    assert "antigravity" not in sys.modules
    meta = {"format": "nptfunc", "version": 1,
            "tree": {"t": "attrs", "cls": "antigravity.Fly", "fields": {}}}
    _write_npz(path, meta)
    with pytest.raises(ValueError, match=r"names class 'antigravity\.Fly'.*refusing"):
        io.load(path)
    assert "antigravity" not in sys.modules


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
def test_truncated_file_gives_a_clear_error(tmp_path, cut):
    path = tmp_path / "model.npz"
    io.save({"w": np.ones((50, 50)), "b": np.zeros(50)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError, match=r"nptfunc\.load\('.*model\.npz'\)"):
        io.load(path)


def test_corrupted_data_gives_a_clear_error(tmp_path):
    path = tmp_path / "model.npz"
    io.save({"w": np.ones((50, 50))}, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.npz"):
        io.load(path)


def test_foreign_files_give_clear_errors(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.ones(2))
    with pytest.raises(ValueError, match=r"plain\.npz.*not written by nptfunc\.save"):
        io.load(tmp_path / "plain.npz")
    np.save(tmp_path / "one.npy", np.ones(2))
    with pytest.raises(ValueError, match=r"one\.npy.*single \.npy array"):
        io.load(tmp_path / "one.npy")
    (tmp_path / "text.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"text\.txt"):
        io.load(tmp_path / "text.txt")
    with pytest.raises(FileNotFoundError):
        io.load(tmp_path / "missing.npz")


@pytest.mark.parametrize(("meta", "match"), [
    (b"{not json", "malformed structure entry"),
    ({"format": "other", "version": 1, "tree": {"t": "none"}}, "not nptfunc's"),
    ({"format": "nptfunc", "version": 99, "tree": {"t": "none"}}, "format version 99"),
    ({"format": "nptfunc", "version": 1, "tree": {"t": "array", "entry": "missing"}},
     "array entry 'missing' the file does not have"),
    ({"format": "nptfunc", "version": 1, "tree": {"t": "wat"}}, "unknown node type 'wat'"),
    ({"format": "nptfunc", "version": 1, "tree": {"t": "int", "v": "3"}}, "malformed int leaf"),
    ({"format": "nptfunc", "version": 1, "tree": {"t": "dict", "items": [["s", 1, {"t": "none"}]]}},
     "malformed dict item"),
    ({"format": "nptfunc", "version": 1, "tree": {"t": "dtype", "v": "O"}}, "object dtype"),
    ({"format": "nptfunc", "version": 1,
      "tree": {"t": "attrs", "cls": "nptfunc.layers.linear.LinearParams", "fields": {"w": {"t": "none"}}}},
     "LinearParams has fields"),
    ({"format": "nptfunc", "version": 1, "tree": []}, "malformed structure entry"),
])
def test_malformed_structure_gives_a_clear_error(tmp_path, meta, match):
    path = tmp_path / "bad.npz"
    _write_npz(path, meta)
    with pytest.raises(ValueError, match=match) as info:
        io.load(path)
    assert "bad.npz" in str(info.value)


def test_deeply_nested_structure_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / "deep.npz"
    depth = 100_000
    meta = b'{"format": "nptfunc", "version": 1, "tree": ' + b'{"t": "list", "items": [' * depth \
        + b"]}" * depth + b"}"
    _write_npz(path, meta)
    with pytest.raises(ValueError, match="deep.npz"):
        io.load(path)

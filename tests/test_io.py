"""nptfunc.io: save/load round trips without pickle; refusal of pickles and malformed files."""

import io as pyio
import json
import math
import os
import pickle
import stat
import struct
import subprocess
import sys
import zipfile

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


# ------------------------------------------------------------------------ hostile files
def _npy_bytes(descr, shape, data=b"", version=1):
    """A .npy member with a hand-written header (the shape as text: it may hold a 5,000-digit int)."""
    header = "{'descr': " + descr + ", 'fortran_order': False, 'shape': " + shape + ", }"
    prefix = 12 if version >= 2 else 10
    header += " " * ((-(len(header) + 1 + prefix)) % 64) + "\n"
    size = struct.pack("<I" if version >= 2 else "<H", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode("latin1") + data


def _hostile(path, tree, members, compression=zipfile.ZIP_STORED):
    """An nptfunc-looking file: the structure ``tree`` plus raw .npy ``members`` {name: bytes}."""
    meta = json.dumps({"format": "nptfunc", "version": 1, "tree": tree}).encode()
    buf = pyio.BytesIO()
    np.lib.format.write_array(buf, np.frombuffer(meta, np.uint8))
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("__nptfunc__.npy", buf.getvalue())
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)


_ARRAY_W = {"t": "array", "entry": "w"}
PIB = 2**47  # float64 elements in one pebibyte


@pytest.mark.parametrize(("descr", "shape", "data", "match"), [
    ("'<f8'", f"({PIB},)", b"\0" * 8, rf"entry 'w' declares float64 of shape \({PIB},\) \(1125899906842624 "
                                       r"bytes\), but the file holds 8 bytes for it"),
    ("'<f8'", f"(1024, 1024, 1024, {2**17})", b"", r"entry 'w' declares float64 of shape \(1024, 1024, 1024, 131072\)"),
    ("'|u1'", "(50000000,)", b"\0" * 8, r"entry 'w' declares uint8 of shape \(50000000,\) \(50000000 bytes\)"),
    ("'<f8'", "(" + "9" * 5000 + ",)", b"", r"entry 'w' has a malformed \.npy header"),
    ("'<f8'", "(-3,)", b"", r"entry 'w' declares an invalid shape \(-3,\)"),
    ("'<x4'", "(2,)", b"\0" * 8, r"entry 'w' has a malformed \.npy header"),
    ("'|V99999999999999999999'", "(1,)", b"", r"entry 'w' has a malformed \.npy header"),
    ("'<f' + '8' * 5000", "(1,)", b"", r"entry 'w' has a malformed \.npy header"),
    ("'|O'", "(1,)", b"\0" * 8, r"entry 'w' is an object array \(pickled data\)"),
    ("'<f8'", "(2,)", b"\0" * 24, r"entry 'w' declares float64 of shape \(2,\) \(16 bytes\), but the file holds 24"),
])
def test_entry_headers_are_checked_before_anything_is_allocated(tmp_path, descr, shape, data, match):
    import tracemalloc

    path = tmp_path / "bad.npz"
    _hostile(path, _ARRAY_W, {"w": _npy_bytes(descr, shape, data)})
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"nptfunc\.load\('.*bad\.npz'\): " + match):
            io.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000  # nothing of the declared size was allocated


def test_npy_format_version_3_is_refused_by_name(tmp_path):
    path = tmp_path / "bad.npz"
    _hostile(path, _ARRAY_W, {"w": _npy_bytes("'<f8'", "(1,)", b"\0" * 8, version=3)})
    with pytest.raises(ValueError, match=r"bad\.npz.*\.npy format version \(3, 0\)"):
        io.load(path)


def test_entries_the_structure_never_names_are_refused_unread(tmp_path):
    path = tmp_path / "bad.npz"
    huge = _npy_bytes("'<f8'", f"({PIB},)")  # would be a MemoryError if it were read
    _hostile(path, _ARRAY_W, {"w": _npy_bytes("'<f8'", "(1,)", b"\0" * 8), "extra": huge})
    with pytest.raises(ValueError, match=r"bad\.npz'\): the file has 1 array entry the structure never refers "
                                         r"to \('extra'\); not written by nptfunc\.save"):
        io.load(path)


@pytest.mark.parametrize(("tree", "members", "match"), [
    ({"t": "list", "items": [_ARRAY_W, _ARRAY_W]}, {"w": _npy_bytes("'<f8'", "(1,)", b"\0" * 8)},
     r"the structure names the array entry 'w' twice"),
    ({"t": "key", "entry": "w"}, {"w": _npy_bytes("'<f8'", "(2,)", b"\0" * 16)},
     r"malformed key entry 'w' \(expected a non-empty uint64 vector, got float64 of shape \(2,\)\)"),
    ({"t": "key", "entry": "w"}, {"w": _npy_bytes("'<u8'", "(0,)")}, r"malformed key entry 'w'"),
    ({"t": "scalar", "entry": "w"}, {"w": _npy_bytes("'<f8'", "(2,)", b"\0" * 16)},
     r"malformed scalar entry 'w' \(expected a 0-d array, got float64 of shape \(2,\)\)"),
    ({"t": "array", "entry": "__nptfunc__"}, {}, r"the structure names an array entry '__nptfunc__' the file does not have"),
    ({"t": "int", "v": 1}, {"w/x": b"no"}, r"the file has 1 array entry the structure never refers to"),
])
def test_structure_and_entries_must_agree(tmp_path, tree, members, match):
    path = tmp_path / "bad.npz"
    _hostile(path, tree, members)
    with pytest.raises(ValueError, match=r"bad\.npz'\): " + match):
        io.load(path)


def test_a_zip_entry_that_is_not_npy_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__nptfunc__.npy", b"")
        z.writestr("readme.txt", b"hello")
    with pytest.raises(ValueError, match=r"bad\.npz'\): the zip entry 'readme\.txt' is not a \.npy array"):
        io.load(path)


def test_compressed_entries_are_refused(tmp_path):
    path = tmp_path / "bad.npz"
    _hostile(path, _ARRAY_W, {"w": _npy_bytes("'<f8'", "(1,)", b"\0" * 8)}, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match=r"bad\.npz'\): entry '__nptfunc__' is compressed"):
        io.load(path)


@pytest.mark.parametrize(("meta", "match"), [
    (b'{"format": "nptfunc", "version": 1, "tree": {"t": "int", "v": ' + b"7" * 5000 + b"}}",
     "malformed structure entry"),
    (b'{"format": "nptfunc", "version": ' + b"1" * 5000 + b', "tree": {"t": "none"}}',
     "malformed structure entry"),
    ({"format": "nptfunc", "version": 1, "tree": {"t": "dtype", "v": "V99999999999999999999"}},
     "malformed dtype leaf"),
    ({"format": "nptfunc", "version": 1, "tree": {"t": "dtype", "v": "xyz"}}, "malformed dtype leaf"),
    ({"format": "nptfunc", "version": [1], "tree": {"t": "none"}}, r"format version \[1\]"),
])
def test_malformed_values_in_the_structure_name_the_file(tmp_path, meta, match):
    path = tmp_path / "bad.npz"
    _write_npz(path, meta)
    with pytest.raises(ValueError, match=r"nptfunc\.load\('.*bad\.npz'\): " + match):
        io.load(path)


def test_file_objects_are_checked_the_same_way(tmp_path):
    path = tmp_path / "bad.npz"
    _hostile(path, _ARRAY_W, {"w": _npy_bytes("'<f8'", f"({PIB},)", b"\0" * 8)})
    with pytest.raises(ValueError, match=r"declares float64 of shape"):
        io.load(pyio.BytesIO(path.read_bytes()))


# ------------------------------------------------------------------------ all-or-nothing writes
def _old_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    io.save({"w": np.arange(3.0)}, path)
    return path, path.read_bytes()


def _assert_untouched(tmp_path, path, before):
    assert path.read_bytes() == before
    assert np.array_equal(io.load(path)["w"], np.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind


def test_a_failure_midway_leaves_the_old_file(tmp_path, monkeypatch):
    path, before = _old_checkpoint(tmp_path)
    real_savez = np.savez

    def fails_midway(f, **entries):
        real_savez(f, **dict(list(entries.items())[:1]))  # part of the file is written
        raise RuntimeError("injected failure")

    monkeypatch.setattr(np, "savez", fails_midway)
    with pytest.raises(RuntimeError, match="injected failure"):
        io.save({"w": np.zeros(1000), "b": np.ones(5)}, path)
    _assert_untouched(tmp_path, path, before)


def test_a_leaf_that_cannot_be_stored_leaves_the_old_file(tmp_path):
    path, before = _old_checkpoint(tmp_path)
    with pytest.raises(TypeError, match=r"cannot store a set at b"):
        io.save({"w": np.zeros(1000), "b": {1, 2}}, path)  # the whole tree is checked before writing
    _assert_untouched(tmp_path, path, before)


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_a_failing_fsync_or_rename_leaves_the_old_file(tmp_path, monkeypatch, where):
    path, before = _old_checkpoint(tmp_path)

    def boom(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, where, boom)
    with pytest.raises(OSError, match="No space left"):
        io.save({"w": np.zeros(10)}, path)
    monkeypatch.undo()
    _assert_untouched(tmp_path, path, before)


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_a_file_size_limit_leaves_the_old_file(tmp_path):
    path, before = _old_checkpoint(tmp_path)
    code = f"""
import resource, signal
import numpy as np
import nptfunc
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of a kill
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
try:
    nptfunc.save({{"w": np.zeros(100_000)}}, {str(path)!r})
except OSError as e:
    print("refused", e.errno)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused")
    _assert_untouched(tmp_path, path, before)


def test_save_replaces_the_file_keeping_its_mode_and_links(tmp_path):
    path, _ = _old_checkpoint(tmp_path)
    os.chmod(path, 0o640)
    link = tmp_path / "latest.npz"
    link.symlink_to(path.name)
    io.save({"w": np.ones(2)}, link)
    assert link.is_symlink() and np.array_equal(io.load(path)["w"], np.ones(2))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    with np.load(path, allow_pickle=False) as z:  # still a plain .npz
        assert np.array_equal(z["w"], np.ones(2))


def test_atomic_write_refuses_a_non_path(tmp_path):
    with pytest.raises(TypeError, match=r"atomic_write: expected path to be a str or os\.PathLike, got int 3"), \
            io.atomic_write(3):
        pass


def test_a_pickle_is_named_as_such(tmp_path):
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match=r"evil\.npz'\): not an nptfunc \.npz file \(or truncated/corrupted\): "
                                         r"it holds pickled data, which nptfunc never loads"):
        io.load(path)


@pytest.mark.parametrize("bad", [3, None, b"model.npz", ["model.npz"]])
def test_save_and_load_refuse_what_is_not_a_path_or_a_file(tmp_path, bad):
    with pytest.raises(TypeError, match=r"nptfunc\.save: expected path to be a str, an os\.PathLike or a writable "
                                        r"binary file object, got " + type(bad).__name__):
        io.save({"w": np.ones(2)}, bad)
    with pytest.raises(TypeError, match=r"nptfunc\.load: expected path to be a str, an os\.PathLike or a readable "
                                        r"binary file object, got " + type(bad).__name__):
        io.load(bad)

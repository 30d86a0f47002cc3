"""Saving and loading trees of arrays: state dicts, params, states, optimizer states.

``save(obj, path)`` writes one ``.npz`` file (a zip of ``.npy`` arrays, as
:func:`numpy.savez`) holding one entry per array leaf plus one entry,
``__nptfunc__``, with a JSON description of the tree around the leaves.
``load(path)`` rebuilds the tree. No pickle is involved either way:

* arrays are read with ``np.load(..., allow_pickle=False)``, so an object array
  (the only kind of ``.npy`` that runs code when loaded) is refused;
* the structure is plain JSON;
* attrs classes (``LinearParams``, optimizer states) and named tuples are
  recorded by qualified name and re-created only if that name is in an explicit
  registry: every attrs class and named tuple defined in ``nptfunc`` itself, plus
  the classes a user adds with :func:`register`. Nothing is ever imported because
  a file names it.

What a tree may hold: dicts with ``str`` or ``int`` keys, lists, tuples, ``None``,
registered attrs classes and named tuples as nodes; NumPy arrays (any non-object
dtype) and NumPy scalars, Python ``int``/``float``/``bool``/``str``,
:class:`nptfunc.random.Key` and NumPy dtypes as leaves.

Array entries are named by their tree path where that is a plain name
(``0.weight``, ``1.running_mean``), so ``np.load(path)["0.weight"]`` also works.

Example:
    >>> import numpy as np, tempfile, os
    >>> from nptfunc import io
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> io.save({"0.weight": np.ones((2, 3)), "step": 3}, path)
    >>> io.load(path)["step"]
    3
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import zipfile
from typing import IO, Any

import attrs
import numpy as np

from nptfunc._types import PyTree
from nptfunc.random import Key
from nptfunc.tree import path_str

__all__ = ["load", "register", "save"]

FORMAT = "nptfunc"
VERSION = 1
META = "__nptfunc__"

# Modules whose attrs classes and named tuples may be re-created by ``load``. They
# are imported by name from this list (never from a file) the first time a file
# names a class; a module missing from the installation is skipped.
_CLASS_MODULES = ("nptfunc.layers", "nptfunc.losses", "nptfunc.optim", "nptfunc.schedules",
                  "nptfunc.random")
_user_classes: dict[str, type] = {}

_SAFE_ENTRY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------- registry
def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_namedtuple_class(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def register(cls: type) -> type:
    """Allow :func:`load` to re-create ``cls`` (an attrs class or a named tuple).

    Classes defined in ``nptfunc`` are registered already; use this for your own
    params or state classes. Usable as a decorator.

    Raises:
        TypeError: if ``cls`` is neither an attrs class nor a named tuple.
    """
    if not isinstance(cls, type) or not (attrs.has(cls) or _is_namedtuple_class(cls)):
        msg = f"io.register: expected an attrs class or a named tuple class, got {cls!r}"
        raise TypeError(msg)
    _user_classes[_qualname(cls)] = cls
    return cls


def _nptfunc_classes() -> dict[str, type]:
    """Every attrs class and named tuple defined in an imported ``nptfunc`` module."""
    for name in _CLASS_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:  # an optional part not present in this installation
            if e.name is None or not name.startswith(e.name):
                raise
    found: dict[str, type] = {}
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not (mod_name == "nptfunc" or mod_name.startswith("nptfunc.")):
            continue
        for obj in list(vars(mod).values()):
            if (isinstance(obj, type) and obj.__module__ == mod_name
                    and (attrs.has(obj) or _is_namedtuple_class(obj))):
                found[_qualname(obj)] = obj
    return found


def _registry() -> dict[str, type]:
    """The classes :func:`load` may re-create, by qualified name."""
    return {**_nptfunc_classes(), **_user_classes}


# -------------------------------------------------------------------------------- save
class _Writer:
    """Turns a tree into a JSON-able description plus named arrays."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.registry: dict[str, type] | None = None

    def _entry(self, path: tuple[Any, ...], a: np.ndarray) -> str:
        name = path_str(path)
        if not _SAFE_ENTRY.fullmatch(name) or name in self.arrays or name.endswith(".npy"):
            name = f"__leaf{len(self.arrays)}"
        self.arrays[name] = a
        return name

    def node(self, x: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        if x is None:
            return {"t": "none"}
        if isinstance(x, Key):
            return {"t": "key", "entry": self._entry(path, x.to_array())}
        if isinstance(x, dict):
            return {"t": "dict", "items": [self._item(k, v, path) for k, v in x.items()]}
        if isinstance(x, list):
            return {"t": "list", "items": [self.node(v, (*path, i)) for i, v in enumerate(x)]}
        if isinstance(x, tuple):
            items = [self.node(v, (*path, i)) for i, v in enumerate(x)]
            if type(x) is tuple:
                return {"t": "tuple", "items": items}
            return {"t": "namedtuple", "cls": self._class(type(x), path), "items": items}
        if attrs.has(type(x)):
            fields = [f.name for f in attrs.fields(type(x)) if f.init]
            return {"t": "attrs", "cls": self._class(type(x), path),
                    "fields": {n: self.node(getattr(x, n), (*path, n)) for n in fields}}
        return self.leaf(x, path)

    def _item(self, k: Any, v: Any, path: tuple[Any, ...]) -> list[Any]:
        if isinstance(k, str):
            return ["s", k, self.node(v, (*path, k))]
        if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            return ["i", int(k), self.node(v, (*path, int(k)))]
        msg = (f"nptfunc.save: dict keys must be str or int, got {type(k).__name__} {k!r} "
               f"at {path_str(path)}")
        raise TypeError(msg)

    def _class(self, cls: type, path: tuple[Any, ...]) -> str:
        name = _qualname(cls)
        if self.registry is None:
            self.registry = _registry()
        if self.registry.get(name) is not cls:
            msg = (f"nptfunc.save: {cls.__name__} at {path_str(path)} is not an nptfunc class; "
                   f"register it first with nptfunc.io.register({cls.__name__}) so that load can "
                   f"re-create it")
            raise TypeError(msg)
        return name

    def leaf(self, x: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        if isinstance(x, bool):
            return {"t": "bool", "v": x}
        if isinstance(x, int):
            return {"t": "int", "v": x}
        if isinstance(x, float):
            return {"t": "float", "v": x}
        if isinstance(x, str):
            return {"t": "str", "v": x}
        if isinstance(x, np.dtype):
            self._check_dtype(x, path)
            return {"t": "dtype", "v": x.str}
        if isinstance(x, (np.ndarray, np.generic)):
            a = np.asarray(x)
            self._check_dtype(a.dtype, path)
            kind = "array" if isinstance(x, np.ndarray) else "scalar"
            return {"t": kind, "entry": self._entry(path, a)}
        hint = ""
        if hasattr(x, "detach") and hasattr(x, "numpy"):
            hint = " (a torch tensor: convert it with .detach().cpu().numpy())"
        elif hasattr(x, "state_dict"):
            hint = " (save its state_dict() instead)"
        msg = (f"nptfunc.save: cannot store a {type(x).__name__} at {path_str(path)}{hint}; "
               f"leaves must be NumPy arrays, NumPy scalars, int, float, bool, str, Key or dtype")
        raise TypeError(msg)

    @staticmethod
    def _check_dtype(dt: np.dtype, path: tuple[Any, ...]) -> None:
        if dt.hasobject:
            msg = (f"nptfunc.save: object arrays cannot be saved without pickle "
                   f"(at {path_str(path)}, dtype {dt})")
            raise TypeError(msg)


def save(obj: PyTree, path: PathLike | IO[bytes]) -> None:
    """Write a tree of arrays to ``path`` as an ``.npz`` file, without pickle.

    The file is written exactly at ``path`` (no ``.npz`` suffix is added).

    Args:
        obj: a state dict, a params or state tree, an optimizer's ``state_dict()``:
            see the module docstring for what it may hold.
        path: a file name or a binary file object open for writing.

    Raises:
        TypeError: naming the path in the tree of a value that cannot be stored.
    """
    if hasattr(obj, "state_dict") and hasattr(obj, "parameters"):
        msg = (f"nptfunc.save: got a {type(obj).__name__} module; save its state_dict(): "
               f"nptfunc.save(model.state_dict(), path)")
        raise TypeError(msg)
    writer = _Writer()
    tree = writer.node(obj, ())
    meta = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree})
    entries = {META: np.frombuffer(meta.encode("utf-8"), dtype=np.uint8), **writer.arrays}
    if isinstance(path, (str, os.PathLike)):
        with open(path, "wb") as f:
            np.savez(f, **entries)
    else:
        np.savez(path, **entries)


# -------------------------------------------------------------------------------- load
class _Reader:
    """Rebuilds a tree from its JSON description and the file's arrays."""

    def __init__(self, where: str, arrays: Any) -> None:
        self.where = where
        self.arrays = arrays
        self.registry: dict[str, type] | None = None

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.where}: {what}")

    def node(self, d: Any) -> Any:
        if not isinstance(d, dict) or not isinstance(d.get("t"), str):
            raise self.fail(f"malformed structure entry {str(d)[:80]!r}")
        t = d["t"]
        if t == "none":
            return None
        if t in ("list", "tuple", "namedtuple"):
            items = [self.node(c) for c in self._get(d, "items", list)]
            if t == "list":
                return items
            if t == "tuple":
                return tuple(items)
            cls = self._class(d)
            if not _is_namedtuple_class(cls) or len(cls._fields) != len(items):
                raise self.fail(f"class {cls.__name__} does not match the stored named tuple")
            return self._make(cls, items, {})
        if t == "dict":
            out: dict[Any, Any] = {}
            for item in self._get(d, "items", list):
                if not (isinstance(item, list) and len(item) == 3 and item[0] in ("s", "i")
                        and isinstance(item[1], str if item[0] == "s" else int)):
                    raise self.fail(f"malformed dict item {str(item)[:80]!r}")
                out[item[1]] = self.node(item[2])
            return out
        if t == "attrs":
            cls = self._class(d)
            fields = self._get(d, "fields", dict)
            expected = [f.name for f in attrs.fields(cls) if f.init] if attrs.has(cls) else None
            if expected is None or sorted(expected) != sorted(fields):
                raise self.fail(f"class {cls.__name__} has fields {expected}, the file has "
                                f"{sorted(fields)}")
            return self._make(cls, [], {k: self.node(v) for k, v in fields.items()})
        return self.leaf(t, d)

    def _make(self, cls: type, args: list[Any], kwargs: dict[str, Any]) -> Any:
        try:
            return cls(*args, **kwargs)
        except (TypeError, ValueError) as e:
            raise self.fail(f"could not re-create {cls.__name__} from the stored values: {e}") from e

    def leaf(self, t: str, d: dict[str, Any]) -> Any:
        scalar_types = {"int": int, "float": (float, int), "bool": bool, "str": str}
        if t in scalar_types:
            v = d.get("v")
            if not isinstance(v, scalar_types[t]) or (t != "bool" and isinstance(v, bool)):
                raise self.fail(f"malformed {t} leaf {str(d)[:80]!r}")
            return float(v) if t == "float" else v
        if t == "key":
            a = self._array(d)
            if a.dtype != np.uint64 or a.ndim != 1 or a.size == 0:
                raise self.fail(f"malformed key entry (expected a non-empty uint64 vector, "
                                f"got {a.dtype} of shape {a.shape})")
            return Key.from_array(a)
        if t == "dtype":
            try:
                dt = np.dtype(self._get(d, "v", str))
            except TypeError as e:
                raise self.fail(f"malformed dtype leaf {str(d)[:80]!r}") from e
            if dt.hasobject:
                raise self.fail("refusing an object dtype")
            return dt
        if t in ("array", "scalar"):
            a = self._array(d)
            return a[()] if t == "scalar" else a
        raise self.fail(f"unknown node type {t!r}")

    def _array(self, d: dict[str, Any]) -> np.ndarray:
        name = self._get(d, "entry", str)
        if name == META or name not in self.arrays:
            raise self.fail(f"the structure names an array entry {name!r} the file does not have")
        return self.arrays[name]

    def _class(self, d: dict[str, Any]) -> type:
        name = self._get(d, "cls", str)
        if self.registry is None:
            self.registry = _registry()
        cls = self.registry.get(name)
        if cls is None:
            raise self.fail(f"the file names class {name!r}, which is neither an nptfunc class nor "
                            f"registered with nptfunc.io.register; refusing to create it")
        return cls

    def _get(self, d: dict[str, Any], name: str, typ: type) -> Any:
        v = d.get(name)
        if not isinstance(v, typ):
            raise self.fail(f"malformed {d.get('t')} entry: {name!r} missing or not a {typ.__name__}")
        return v


def _describe(path: Any) -> str:
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)
    return getattr(path, "name", None) or repr(path)


def _read_arrays(f: IO[bytes], where: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read without pickle."""
    try:
        loaded = np.load(f, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        msg = f"{where}: not an nptfunc .npz file (or truncated/corrupted): {_reason(e)}"
        raise ValueError(msg) from e
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        msg = f"{where}: a single .npy array, not an nptfunc .npz file written by nptfunc.save"
        raise ValueError(msg)
    with loaded:
        try:
            return {name: loaded[name] for name in loaded.files}
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
            msg = f"{where}: could not read the arrays (truncated or corrupted): {_reason(e)}"
            raise ValueError(msg) from e


def _reason(e: BaseException) -> str:
    """NumPy's reason, without its advice to load pickled data unsafely."""
    if "pickle" in str(e):
        return "it holds pickled data, which nptfunc never loads (loading it could run code)"
    return str(e)


def load(path: PathLike | IO[bytes]) -> PyTree:
    """Read a tree written by :func:`save`; nothing from the file is ever executed.

    Args:
        path: a file name or a binary file object open for reading.

    Returns:
        The saved tree; arrays come back as writable NumPy arrays, attrs params
        classes re-make their arrays read-only as usual.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: naming the file, if it is not an nptfunc file (a pickle, a
            plain ``.npy``/``.npz``, truncated or corrupted data, an object array, or
            a class that is not registered).
    """
    where = f"nptfunc.load({_describe(path)!r})"
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb") as f:
            arrays = _read_arrays(f, where)
    else:
        arrays = _read_arrays(path, where)
    meta = arrays.pop(META, None)
    if meta is None:
        msg = (f"{where}: the file has no {META!r} entry: it was not written by nptfunc.save "
               f"(a plain numpy .npz can be read with numpy.load)")
        raise ValueError(msg)
    if meta.dtype != np.uint8 or meta.ndim != 1:
        msg = f"{where}: malformed structure entry (not a byte string)"
        raise ValueError(msg)
    try:
        doc = json.loads(meta.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        msg = f"{where}: malformed structure entry: {e}"
        raise ValueError(msg) from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "tree" not in doc:
        msg = f"{where}: the structure entry is not nptfunc's"
        raise ValueError(msg)
    if doc.get("version") != VERSION:
        msg = f"{where}: format version {doc.get('version')!r}; this nptfunc reads version {VERSION}"
        raise ValueError(msg)
    reader = _Reader(where, arrays)
    try:
        return reader.node(doc["tree"])
    except RecursionError as e:
        msg = f"{where}: the structure is nested too deeply"
        raise ValueError(msg) from e

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

A file is untrusted input. ``load`` reads the structure first, then checks every
array entry it names from the entry's ``.npy`` header alone (a dtype without
objects, a shape of non-negative ints, exactly as many bytes as the zip holds for
the entry, the shape and dtype a key or a scalar needs) before it allocates
anything; it refuses entries the structure never refers to, entries named twice
and compressed entries (whose size cannot be checked before inflating them); and
every malformed value is a ``ValueError`` naming the file.

``save`` to a path is all-or-nothing (:func:`atomic_write`): it writes a
temporary file beside the target, flushes and fsyncs it, then renames it onto the
target, so a failure midway (a full disk, a file-size limit, an exception) leaves
the previous file as it was.

Example:
    >>> import numpy as np, tempfile, os
    >>> from nptfunc import io
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> io.save({"0.weight": np.ones((2, 3)), "step": 3}, path)
    >>> io.load(path)["step"]
    3
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import re
import secrets
import stat
import sys
import zipfile
from collections.abc import Iterator
from typing import IO, Any

import attrs
import numpy as np

from nptfunc._types import PyTree
from nptfunc.random import Key
from nptfunc.tree import path_str

__all__ = ["atomic_write", "load", "register", "save"]

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


# ------------------------------------------------------------------------ writing
def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable, where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: PathLike) -> Iterator[IO[bytes]]:
    """A binary file whose content replaces ``path`` all at once when the block ends.

    The data goes to a temporary file in ``path``'s directory (created with the
    permissions a new file gets, or those of the file it replaces); at the end of
    the block it is flushed, fsynced and renamed onto ``path`` with
    :func:`os.replace`, which is atomic. If the block raises (or the disk fills,
    or a file-size limit is hit), the temporary file is removed and an existing
    file at ``path`` is left untouched. A symbolic link at ``path`` is followed:
    its target is replaced, the link kept.

    Every file nptfunc writes goes through here (``nptfunc.save``, the examples'
    checkpoints and plots).

    Args:
        path: the file to write.

    Yields:
        A binary file object open for writing.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
        >>> with atomic_write(path) as f:
        ...     _ = f.write(b"all or nothing")
        >>> with open(path, "rb") as f:
        ...     f.read()
        b'all or nothing'
    """
    if not isinstance(path, (str, os.PathLike)):
        msg = f"atomic_write: expected path to be a str or os.PathLike, got {type(path).__name__} {path!r}"
        raise TypeError(msg)
    target = os.path.realpath(os.fspath(path))
    directory, name = os.path.split(target)
    tmp = os.path.join(directory, f".{name[:64]}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)  # the umask applies, as to any new file
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory or ".")


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

    The file is written exactly at ``path`` (no ``.npz`` suffix is added), all at
    once (:func:`atomic_write`): if anything fails midway, an existing file at
    ``path`` is left as it was. A file object is written to directly.

    Args:
        obj: a state dict, a params or state tree, an optimizer's ``state_dict()``:
            see the module docstring for what it may hold.
        path: a file name or a binary file object open for writing.

    Raises:
        TypeError: naming the path in the tree of a value that cannot be stored
            (checked before anything is written), or if ``path`` is neither a path
            nor a writable binary file object.
        OSError: if the file cannot be written; ``path`` is then unchanged.
    """
    if hasattr(obj, "state_dict") and hasattr(obj, "parameters"):
        msg = (f"nptfunc.save: got a {type(obj).__name__} module; save its state_dict(): "
               f"nptfunc.save(model.state_dict(), path)")
        raise TypeError(msg)
    _check_target("nptfunc.save", path, "write")
    writer = _Writer()
    tree = writer.node(obj, ())
    meta = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree})
    entries = {META: np.frombuffer(meta.encode("utf-8"), dtype=np.uint8), **writer.arrays}
    if isinstance(path, (str, os.PathLike)):
        with atomic_write(path) as f:
            np.savez(f, **entries)
    else:
        np.savez(path, **entries)


# -------------------------------------------------------------------------------- load
_ENTRY_KINDS = ("array", "scalar", "key")  # the node types that name an array entry
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_PROTO = b"\x80"  # the first byte of a pickle of protocol 2 or later
_PICKLED = "it holds pickled data, which nptfunc never loads (loading it could run code)"
_MAX_HEADER = 10_000  # NumPy's own limit on a .npy header's length
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_HEADER_ERRORS = (ValueError, TypeError, SyntaxError, RecursionError, OverflowError,
                  EOFError, OSError, UnicodeDecodeError, zipfile.BadZipFile)

# What the entries of some node types must be: (test of dtype and shape, description).
_NEEDS = {
    "meta": (lambda dt, shape: dt == np.uint8 and len(shape) == 1, "a byte string"),
    "key": (lambda dt, shape: dt == np.uint64 and len(shape) == 1 and shape[0] > 0,
            "a non-empty uint64 vector"),
    "scalar": (lambda dt, shape: len(shape) == 0, "a 0-d array"),
}


@attrs.frozen
class _Entry:
    """An array entry of the file, as its ``.npy`` header declares it."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype


class _Archive:
    """The members of an ``.npz`` file: listed from the zip's directory, checked, read on request.

    Nothing is read from a member until :meth:`check` has compared its header with
    the zip's size for it and with the use the structure makes of it.
    """

    def __init__(self, f: IO[bytes], where: str) -> None:
        self.where = where
        try:
            start = f.tell()
            head = f.read(len(_NPY_MAGIC))
            self.size = f.seek(0, os.SEEK_END)
            f.seek(start)
        except (OSError, ValueError) as e:
            raise self.fail(f"could not read the file: {e}") from e
        if head == _NPY_MAGIC:
            raise self.fail("a single .npy array, not an nptfunc .npz file written by nptfunc.save")
        if head[:1] == _PICKLE_PROTO:
            raise self.fail(f"not an nptfunc .npz file (or truncated/corrupted): {_PICKLED}")
        try:
            self.zip = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
            raise self.fail(f"not an nptfunc .npz file (or truncated/corrupted): {_reason(e)}") from e
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in self.members:
                what = "is named twice" if name[:-4] in self.members else "is not a .npy array"
                raise self.fail(f"the zip entry {name[:80]!r} {what}; not an nptfunc .npz file")
            self.members[name[:-4]] = info
        self.checked: dict[str, _Entry] = {}

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.where}: {what}")

    def close(self) -> None:
        if hasattr(self, "zip"):
            self.zip.close()

    def check(self, name: str, kind: str) -> _Entry:
        """Check entry ``name`` from its header alone, for a node of type ``kind``."""
        info = self.members.get(name)
        if info is None or (name == META) != (kind == "meta"):
            raise self.fail(f"the structure names an array entry {name[:80]!r} the file does not have")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise self.fail(f"entry {name!r} is compressed or encrypted; nptfunc.save writes stored "
                            f"entries, whose size is known before they are read")
        if info.file_size != info.compress_size or info.header_offset + info.file_size > self.size:
            raise self.fail(f"entry {name!r} claims {info.file_size} bytes, more than the file holds "
                            f"(truncated or corrupted)")
        try:
            with self.zip.open(info) as m:
                version = np.lib.format.read_magic(m)
                read_header = _HEADER_READERS.get(version)
                if read_header is None:
                    msg = f".npy format version {version} (1.0 and 2.0 are read)"
                    raise ValueError(msg)
                shape, _, dtype = read_header(m, _MAX_HEADER)
                header_size = m.tell()
        except _HEADER_ERRORS as e:
            raise self.fail(f"entry {name!r} has a malformed .npy header: {_reason(e)[:200]}") from e
        if dtype.hasobject:
            raise self.fail(f"entry {name!r} is an object array (pickled data), which nptfunc never "
                            f"loads (loading it could run code)")
        if any(n < 0 for n in shape) or dtype.itemsize == 0:
            raise self.fail(f"entry {name!r} declares an invalid shape {shape} or dtype {dtype}")
        nbytes = math.prod(shape) * dtype.itemsize
        if header_size + nbytes != info.file_size:
            raise self.fail(f"entry {name!r} declares {dtype} of shape {_short(shape)} "
                            f"({nbytes} bytes), but the file holds {info.file_size - header_size} "
                            f"bytes for it")
        need = _NEEDS.get(kind)
        if need is not None and not need[0](dtype, shape):
            what = "structure entry" if kind == "meta" else f"{kind} entry {name!r}"
            raise self.fail(f"malformed {what} (expected {need[1]}, got {dtype} of shape {_short(shape)})")
        entry = _Entry(info, tuple(shape), dtype)
        self.checked[name] = entry
        return entry

    def read(self, name: str) -> np.ndarray:
        """The array of an entry :meth:`check` has passed."""
        entry = self.checked[name]
        try:
            with self.zip.open(entry.info) as m:
                a = np.lib.format.read_array(m, allow_pickle=False, max_header_size=_MAX_HEADER)
                m.read()  # nothing is left (checked); reaching the end checks the CRC
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise self.fail(f"could not read entry {name!r} (truncated or corrupted): {_reason(e)}") from e
        return a


def _short(shape: tuple[int, ...]) -> str:
    text = str(tuple(shape))
    return text if len(text) <= 120 else text[:117] + "..."


def _referenced_entries(tree: Any, where: str) -> dict[str, str]:
    """``{entry name: node type}`` for every node of ``tree`` (raw JSON) that names an array entry.

    Walks every nested dict and list without recursion, so a deep structure is
    checked here and refused later by the reader, not by Python's stack.
    """
    found: dict[str, str] = {}
    stack = [tree]
    while stack:
        d = stack.pop()
        if isinstance(d, list):
            stack.extend(d)
        elif isinstance(d, dict):
            t, name = d.get("t"), d.get("entry")
            if isinstance(t, str) and t in _ENTRY_KINDS and isinstance(name, str):
                if name in found:
                    msg = f"{where}: the structure names the array entry {name[:80]!r} twice"
                    raise ValueError(msg)
                found[name] = t
            stack.extend(d.values())
    return found


class _Reader:
    """Rebuilds a tree from its JSON description and the file's arrays."""

    def __init__(self, where: str, archive: _Archive) -> None:
        self.where = where
        self.archive = archive
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
            return Key.from_array(self._array(d))
        if t == "dtype":
            try:
                dt = np.dtype(self._get(d, "v", str))
            except (TypeError, ValueError, OverflowError, SyntaxError, RecursionError) as e:
                raise self.fail(f"malformed dtype leaf {str(d)[:80]!r}") from e
            if dt.hasobject:
                raise self.fail("refusing an object dtype")
            return dt
        if t in ("array", "scalar"):
            a = self._array(d)
            return a[()] if t == "scalar" else a
        raise self.fail(f"unknown node type {t!r}")

    def _array(self, d: dict[str, Any]) -> np.ndarray:
        return self.archive.read(self._get(d, "entry", str))  # checked by load before any read

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


def _check_target(owner: str, path: Any, method: str) -> None:
    """Refuse a ``path`` that is neither a path nor a file object with ``method`` (an int: a descriptor)."""
    if isinstance(path, (str, os.PathLike)) or (hasattr(path, method) and hasattr(path, "seek")):
        return
    kind = "readable" if method == "read" else "writable"
    msg = (f"{owner}: expected path to be a str, an os.PathLike or a {kind} binary file object, "
           f"got {type(path).__name__} {str(path)[:80]!r}")
    raise TypeError(msg)


def _describe(path: Any) -> str:
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)
    return getattr(path, "name", None) or repr(path)


def _reason(e: BaseException) -> str:
    """NumPy's reason, without its advice to load pickled data unsafely."""
    if "pickle" in str(e):
        return _PICKLED
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
            a class that is not registered), or if any value in it is malformed: a
            header whose shape and dtype disagree with the entry's size, an entry
            the structure never names or names twice, a compressed entry, bad JSON
            or a number too large to parse. Nothing is allocated for an entry until
            every entry has passed these checks.
        TypeError: if ``path`` is neither a path nor a readable binary file object.
    """
    _check_target("nptfunc.load", path, "read")
    where = f"nptfunc.load({_describe(path)!r})"
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb") as f:
            return _load(f, where)
    return _load(path, where)


def _load(f: IO[bytes], where: str) -> PyTree:
    archive = _Archive(f, where)
    try:
        if META not in archive.members:
            msg = (f"{where}: the file has no {META!r} entry: it was not written by nptfunc.save "
                   f"(a plain numpy .npz can be read with numpy.load)")
            raise ValueError(msg)
        archive.check(META, "meta")
        meta = archive.read(META)
        try:
            doc = json.loads(meta.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: 5,000-digit ints too
            msg = f"{where}: malformed structure entry: {str(e)[:200]}"
            raise ValueError(msg) from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or "tree" not in doc:
            msg = f"{where}: the structure entry is not nptfunc's"
            raise ValueError(msg)
        if doc.get("version") != VERSION:
            msg = (f"{where}: format version {str(doc.get('version'))[:20]}; "
                   f"this nptfunc reads version {VERSION}")
            raise ValueError(msg)
        entries = _referenced_entries(doc["tree"], where)
        unused = sorted(set(archive.members) - set(entries) - {META})
        if unused:
            listed = ", ".join(repr(n[:80]) for n in unused[:5]) + (", ..." if len(unused) > 5 else "")
            msg = (f"{where}: the file has {len(unused)} array entr{'y' if len(unused) == 1 else 'ies'} "
                   f"the structure never refers to ({listed}); not written by nptfunc.save")
            raise ValueError(msg)
        for name, kind in entries.items():  # every header, before any array is allocated
            archive.check(name, kind)
        try:
            return _Reader(where, archive).node(doc["tree"])
        except RecursionError as e:
            msg = f"{where}: the structure is nested too deeply"
            raise ValueError(msg) from e
    finally:
        archive.close()

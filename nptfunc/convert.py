"""Converting state dicts between torch, the facade and the functional core.

Keys are torch's everywhere (``0.weight``, ``1.running_mean``,
``1.num_batches_tracked``): a functional params tree has them as leaf paths
(:func:`nptfunc.tree.path_str`), a facade module as ``state_dict()`` keys.

* :func:`state_dict_from_torch`: a torch ``state_dict()`` as NumPy arrays, ready
  for ``nn_model.load_state_dict`` or :func:`tree_from_state_dict`;
* :func:`state_dict_to_torch`: NumPy arrays (an ``nn_model.state_dict()`` or
  :func:`state_dict_from_tree`) as torch tensors, for ``torch_model.load_state_dict``;
* :func:`state_dict_from_tree` / :func:`tree_from_state_dict`: functional params
  and state trees to and from a flat state dict;
* :func:`to_numpy`: the one torch-to-NumPy converter (the facade's ``Parameter``
  and :mod:`nptfunc.testing` use it too);
* :func:`checked_value`: one state-dict value, checked against the entry it
  replaces and cast to its dtype as torch's ``copy_`` casts
  (``Module.load_state_dict`` and :func:`tree_from_state_dict` use it).

Example:
    >>> import torch
    >>> from nptfunc import convert, nn
    >>> tm = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    >>> model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    >>> model.load_state_dict(convert.state_dict_from_torch(tm.state_dict()))
    IncompatibleKeys(missing_keys=[], unexpected_keys=[])
    >>> _ = tm.load_state_dict(convert.state_dict_to_torch(model.state_dict()))

torch is imported only by :func:`state_dict_to_torch`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nptfunc._types import Array, PyTree
from nptfunc._validate import check_bool
from nptfunc.tree import path_str, tree_flatten_with_path, tree_unflatten

__all__ = [
    "checked_value",
    "state_dict_from_torch",
    "state_dict_from_tree",
    "state_dict_to_torch",
    "to_numpy",
    "tree_from_state_dict",
]

# The dtype kinds a value may have to be cast into an entry of each kind, as torch's copy_ casts
# them, minus what copy_ would mangle: complex into real drops the imaginary part, float into
# integer truncates. (b: bool, i/u: integers, f: floating, c: complex.)
_CASTABLE = {"b": "b", "i": "biu", "u": "biu", "f": "biuf", "c": "biufc"}


def _check_mapping(owner: str, sd: Any) -> None:
    if not isinstance(sd, Mapping):
        msg = f"{owner}: expected a mapping of str keys to arrays (a state dict), got {type(sd).__name__}"
        raise TypeError(msg)


def _is_torch_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (told by its class's module: torch is never imported here)."""
    return type(value).__module__.partition(".")[0] == "torch" and hasattr(value, "detach")


def to_numpy(value: Any) -> Array:
    """A NumPy array from a NumPy array, a list or scalar, or a torch tensor.

    A tensor is detached and moved to the CPU; its values are shared, not copied,
    where NumPy has its dtype (as ``Tensor.numpy()``). Floating and complex types
    NumPy lacks (``bfloat16``, the ``float8`` types, ``complex32``) become
    ``float32``/``complex64``, which hold their values exactly. Anything else goes
    through ``np.asarray`` (an array is returned as it is; an object with
    ``__array__``, such as the facade's tensors, gives its array).

    Raises:
        TypeError: for a tensor type NumPy cannot hold (quantized, sparse).
    """
    if type(value) is np.ndarray:  # the common case, first
        return value
    if _is_torch_tensor(value):
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.resolve_conj().resolve_neg()
        try:
            return t.numpy()
        except TypeError:  # a dtype NumPy does not have
            if t.is_floating_point():
                return t.float().numpy()
            if t.is_complex():
                return t.cfloat().numpy()
            raise
    return np.asarray(value)


def _describe_value(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, (str, bytes)):
        return f"{type(value).__name__} {value[:40]!r}"
    return type(value).__name__


def checked_value(key: str, value: Any, like: Array) -> Array:
    """``value`` as a new array of ``like``'s shape and dtype, or an error naming ``key``.

    One state-dict value on its way into the entry ``like`` (a parameter or
    buffer), converted as torch's ``Tensor.copy_`` converts it: numbers of any
    real dtype are cast to the entry's dtype (float64, float16 and bfloat16
    tensors into a float32 entry; integers and bools into floats; a value out of
    float32's range becomes ``inf``, as in torch). What ``copy_`` would refuse or
    silently mangle is an error instead: ``None``, strings, object arrays (a
    list such as ``[1.0, 2.0, None]``, which NumPy would turn into NaN), complex
    values for a real entry, floats for an integer entry, a different shape.

    Args:
        key: the entry's name, for the message (``"0.weight"``).
        value: a NumPy array, a list or scalar, or a torch tensor.
        like: the entry's current array.

    Returns:
        A new array (never a view of ``value``) with ``like``'s shape and dtype.

    Raises:
        TypeError: naming ``key``, for a value that is not numbers castable to
            ``like``'s dtype.
        ValueError: naming ``key``, for a shape mismatch (torch's message).
    """
    expected = f"an array of {like.dtype} (or numbers castable to it) of shape {tuple(like.shape)}"
    if value is None or isinstance(value, (str, bytes)):
        msg = f"{key}: expected {expected}, got {_describe_value(value)}"
        raise TypeError(msg)
    try:
        a = to_numpy(value)
    except (TypeError, ValueError, RuntimeError) as e:
        msg = f"{key}: expected {expected}, got a {_describe_value(value)} that is not an array: {e}"
        raise TypeError(msg) from e
    if a.dtype.kind not in _CASTABLE.get(like.dtype.kind, like.dtype.kind):
        got = ("an object array (None or other non-numbers among the values)" if a.dtype.kind == "O"
               else f"values of dtype {a.dtype}")
        msg = f"{key}: expected {expected}, got {got}"
        raise TypeError(msg)
    if a.shape != like.shape:
        msg = (f"size mismatch for {key}: copying a param with shape {a.shape} from checkpoint, "
               f"the shape in current model is {like.shape}")
        raise ValueError(msg)
    with np.errstate(over="ignore"):  # as copy_: a float64 beyond float32's range becomes inf
        return np.array(a, dtype=like.dtype, copy=True)


def state_dict_from_torch(state_dict: Mapping[str, Any]) -> dict[str, Array]:
    """A torch state dict with each tensor copied into a NumPy array (same keys).

    dtypes are kept, except those NumPy lacks (``bfloat16`` becomes ``float32``:
    see :func:`to_numpy`).

    Raises:
        TypeError: naming the key, for a value that is not numeric (``None``, a
            string, an object array).
    """
    _check_mapping("state_dict_from_torch", state_dict)
    out = {}
    for k, v in state_dict.items():
        try:
            a = np.array(to_numpy(v))
        except (TypeError, ValueError, RuntimeError) as e:
            msg = f"state_dict_from_torch: {k}: could not convert a {_describe_value(v)} to an array: {e}"
            raise TypeError(msg) from e
        if a.dtype.kind not in "biufc":
            got = "None" if v is None else f"{type(v).__name__} of dtype {a.dtype}"
            msg = f"state_dict_from_torch: {k}: expected numbers, got {got}"
            raise TypeError(msg)
        out[k] = a
    return out


def state_dict_to_torch(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A state dict of NumPy arrays as torch tensors (copies, same dtype, same keys)."""
    import torch

    _check_mapping("state_dict_to_torch", state_dict)
    out = {}
    for k, v in state_dict.items():
        a = np.array(to_numpy(v))
        if a.dtype.kind not in "biufc":
            got = "None" if v is None else f"{type(v).__name__} of dtype {a.dtype}"
            msg = f"state_dict_to_torch: {k}: expected numbers, got {got}"
            raise TypeError(msg)
        out[k] = torch.tensor(a)
    return out


def state_dict_from_tree(params: PyTree, state: PyTree = None) -> dict[str, Array]:
    """The flat state dict of functional params (and state): ``{path: array}``.

    Only array leaves are entries (a dropout key is not, as in torch).

    Raises:
        ValueError: if params and state name the same key.
    """
    out: dict[str, Array] = {}
    for tree in (params, state):
        for path, leaf in tree_flatten_with_path(tree)[0]:
            if isinstance(leaf, np.ndarray):
                key = path_str(path)
                if key in out:
                    msg = f"state_dict_from_tree: params and state both have an entry {key!r}"
                    raise ValueError(msg)
                out[key] = leaf
    return out


def tree_from_state_dict(state_dict: Mapping[str, Any], like: PyTree, *, strict: bool = False) -> PyTree:
    """A tree shaped like ``like`` whose array leaves come from ``state_dict`` by path.

    Each value is checked and converted to the dtype of the leaf it replaces by
    :func:`checked_value`; leaves that are not arrays (dropout keys) are kept from
    ``like``.

    Args:
        state_dict: ``{key: array or tensor}`` with torch's keys.
        like: params or state from the layer's ``init``/``init_state``.
        strict: whether keys of ``state_dict`` that ``like`` has no leaf for are an
            error (off by default: one state dict fills both params and state,
            ``tree_from_state_dict(sd, params)``, ``tree_from_state_dict(sd, state)``).

    Raises:
        ValueError: naming the key, for a missing key, a shape mismatch or (with
            ``strict``) an unexpected key.
        TypeError: naming the key, for a value that is not numbers castable to
            the leaf's dtype (see :func:`checked_value`).
    """
    _check_mapping("tree_from_state_dict", state_dict)
    strict = check_bool("tree_from_state_dict", "strict", strict)
    pairs, treedef = tree_flatten_with_path(like)
    leaves, used = [], set()
    for path, leaf in pairs:
        if not isinstance(leaf, np.ndarray):
            leaves.append(leaf)
            continue
        key = path_str(path)
        if key not in state_dict:
            msg = f"tree_from_state_dict: missing key {key!r} (the state dict has {list(state_dict)})"
            raise ValueError(msg)
        try:
            leaves.append(checked_value(key, state_dict[key], leaf))
        except (TypeError, ValueError) as e:
            msg = f"tree_from_state_dict: {e}"
            raise type(e)(msg) from e
        used.add(key)
    if strict:
        unexpected = [k for k in state_dict if k not in used]
        if unexpected:
            msg = f"tree_from_state_dict: unexpected key(s) {unexpected} (strict=False ignores them)"
            raise ValueError(msg)
    return tree_unflatten(treedef, leaves)

"""Converting state dicts between torch, the facade and the functional core.

Keys are torch's everywhere (``0.weight``, ``1.running_mean``,
``1.num_batches_tracked``): a functional params tree has them as leaf paths
(:func:`nptfunc.tree.path_str`), a facade module as ``state_dict()`` keys.

* :func:`state_dict_from_torch`: a torch ``state_dict()`` as NumPy arrays, ready
  for ``nn_model.load_state_dict`` or :func:`tree_from_state_dict`;
* :func:`state_dict_to_torch`: NumPy arrays (an ``nn_model.state_dict()`` or
  :func:`state_dict_from_tree`) as torch tensors, for ``torch_model.load_state_dict``;
* :func:`state_dict_from_tree` / :func:`tree_from_state_dict`: functional params
  and state trees to and from a flat state dict.

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
from nptfunc.tree import path_str, tree_flatten_with_path, tree_unflatten

__all__ = ["state_dict_from_torch", "state_dict_from_tree", "state_dict_to_torch", "tree_from_state_dict"]


def _check_mapping(owner: str, sd: Any) -> None:
    if not isinstance(sd, Mapping):
        msg = f"{owner}: expected a mapping of str keys to arrays (a state dict), got {type(sd).__name__}"
        raise TypeError(msg)


def state_dict_from_torch(state_dict: Mapping[str, Any]) -> dict[str, Array]:
    """A torch state dict with each tensor copied into a NumPy array (same dtype, same keys)."""
    _check_mapping("state_dict_from_torch", state_dict)
    out = {}
    for k, v in state_dict.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        out[k] = np.array(v)
    return out


def state_dict_to_torch(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A state dict of NumPy arrays as torch tensors (copies, same dtype, same keys)."""
    import torch

    _check_mapping("state_dict_to_torch", state_dict)
    return {k: torch.tensor(np.array(v)) for k, v in state_dict.items()}


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

    Each value is converted to the dtype of the leaf it replaces; leaves that are
    not arrays (dropout keys) are kept from ``like``.

    Args:
        state_dict: ``{key: array or tensor}`` with torch's keys.
        like: params or state from the layer's ``init``/``init_state``.
        strict: whether keys of ``state_dict`` that ``like`` has no leaf for are an
            error (off by default: one state dict fills both params and state,
            ``tree_from_state_dict(sd, params)``, ``tree_from_state_dict(sd, state)``).

    Raises:
        ValueError: naming the key, for a missing key, a shape mismatch or (with
            ``strict``) an unexpected key.
    """
    _check_mapping("tree_from_state_dict", state_dict)
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
        value = state_dict_from_torch({key: state_dict[key]})[key]
        if value.shape != leaf.shape:
            msg = f"tree_from_state_dict: {key}: shape {value.shape}, expected {leaf.shape}"
            raise ValueError(msg)
        leaves.append(value.astype(leaf.dtype, copy=False))
        used.add(key)
    if strict:
        unexpected = [k for k in state_dict if k not in used]
        if unexpected:
            msg = f"tree_from_state_dict: unexpected key(s) {unexpected} (strict=False ignores them)"
            raise ValueError(msg)
    return tree_unflatten(treedef, leaves)

"""``TensorDataset`` and ``DataLoader``, as ``torch.utils.data``, yielding facade tensors.

A :class:`DataLoader` over a :class:`TensorDataset` gathers each batch with one
fancy index per tensor (no per-example Python loop); over any other dataset it
stacks the examples. Shuffling draws one permutation per epoch from ``key=`` (a
:class:`nptfunc.random.Key` or an int seed; epoch ``e`` uses ``fold_in(key, e)``),
or ``generator=`` (the same), or else from the facade's seeded key stream
(``manual_seed``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from nptfunc import random
from nptfunc._validate import check_bool, check_int
from nptfunc.nn._seed import as_key, next_key
from nptfunc.nn._tensor import Tensor, to_array

__all__ = ["DataLoader", "Dataset", "TensorDataset"]


class Dataset:
    """Base class of map-style datasets: ``__getitem__`` and ``__len__``. As ``torch.utils.data.Dataset``."""

    def __getitem__(self, index: int) -> Any:
        msg = f"{type(self).__name__}: __getitem__ is not defined"
        raise NotImplementedError(msg)

    def __len__(self) -> int:
        msg = f"{type(self).__name__}: __len__ is not defined"
        raise NotImplementedError(msg)


class TensorDataset(Dataset):
    """Examples are the rows of equally long tensors. Equivalent to ``torch.utils.data.TensorDataset``."""

    def __init__(self, *tensors: Any) -> None:
        arrays = [to_array(t) for t in tensors]
        if not arrays or any(a.ndim == 0 for a in arrays):
            msg = "TensorDataset: expected one or more tensors with at least one axis"
            raise ValueError(msg)
        n = {a.shape[0] for a in arrays}
        if len(n) != 1:
            msg = f"TensorDataset: size mismatch between tensors: first axes {[a.shape[0] for a in arrays]}"
            raise ValueError(msg)
        self.tensors = tuple(Tensor._wrap(a) for a in arrays)

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        return tuple(Tensor._wrap(t._data[index]) for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class DataLoader:
    """Batches of a dataset. Equivalent to ``torch.utils.data.DataLoader``.

    Args:
        dataset: a :class:`TensorDataset` or any map-style dataset.
        batch_size: examples per batch.
        shuffle: a new order every epoch.
        drop_last: drop a last, smaller batch.
        key: the key (or int seed) of the shuffles; without it, ``generator``, else
            the facade's seeded stream.
        generator: as ``key`` (torch's name).
        **kwargs: torch's worker options (``num_workers``, ``pin_memory``, ...),
            accepted and ignored.
    """

    def __init__(self, dataset: Any, batch_size: int | None = 1, shuffle: bool = False, sampler: Any = None,
                 batch_sampler: Any = None, num_workers: int = 0, collate_fn: Any = None,
                 pin_memory: bool = False, drop_last: bool = False, *, key: Any = None,
                 generator: Any = None, **kwargs: Any) -> None:
        if sampler is not None or batch_sampler is not None:
            msg = "DataLoader: sampler and batch_sampler are not supported; use shuffle= and batch_size="
            raise NotImplementedError(msg)
        self.dataset = dataset
        self.batch_size = check_int("DataLoader", "batch_size", batch_size)
        self.shuffle = check_bool("DataLoader", "shuffle", shuffle)
        self.drop_last = check_bool("DataLoader", "drop_last", drop_last)
        self.collate_fn = collate_fn
        k = key if key is not None else generator
        self._key = None if k is None else as_key(k, "DataLoader")
        self._epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> np.ndarray:
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        k = next_key() if self._key is None else random.fold_in(self._key, self._epoch)
        self._epoch += 1
        return random.permutation(k, n)

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield self._batch(order[start:start + self.batch_size])

    def _batch(self, idx: np.ndarray) -> Any:
        if isinstance(self.dataset, TensorDataset) and self.collate_fn is None:
            return [Tensor._wrap(t._data[idx]) for t in self.dataset.tensors]
        items = [self.dataset[int(i)] for i in idx]
        if self.collate_fn is not None:
            return self.collate_fn(items)
        return _collate(items)


def _collate(items: Sequence[Any]) -> Any:
    first = items[0]
    if isinstance(first, (tuple, list)):
        return [_collate([it[i] for it in items]) for i in range(len(first))]
    return Tensor._wrap(np.stack([to_array(it) for it in items]))

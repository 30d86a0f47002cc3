"""``nn.parallel.DistributedDataParallel``: data parallelism over MPI ranks, as torch's.

Every rank builds the same model, wraps it, and feeds it its own share of each
global batch (``nptfunc.data.batches(..., rank=, world_size=)``). The wrapper

* broadcasts the parameters and buffers of rank 0 to every rank when it is built,
  so all ranks start equal whatever their keys;
* averages the gradients over the ranks during ``loss.backward()``: its forward
  puts one identity node after the model's output on the tape, and that node's
  ``after`` callback runs once the pass has accumulated every ``.grad``, with one
  ``distributed.allreduce_mean`` over all of them (one collective per dtype).

So after ``loss.backward()`` every rank holds the gradient of the mean loss over
the global batch (each rank's loss being the mean over its share), and the same
optimizer step keeps the ranks equal. In one process (or without ``mpi4py``) it is
the identity wrapper. The collectives are :mod:`nptfunc.distributed`'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nptfunc import distributed
from nptfunc.nn._module import Module
from nptfunc.nn._tape import is_grad_enabled
from nptfunc.nn._tensor import Tensor, record

__all__ = ["DistributedDataParallel"]


class DistributedDataParallel(Module):
    """Data-parallel training of ``module`` over the ranks of ``process_group``.

    Equivalent to ``torch.nn.parallel.DistributedDataParallel`` on the CPU:
    ``device_ids``, ``output_device``, ``dim``, ``bucket_cap_mb``,
    ``find_unused_parameters``, ``gradient_as_bucket_view`` and ``static_graph``
    are accepted for torch's signature and change nothing here (one collective per
    dtype already buckets everything; a parameter without a gradient in a pass is
    averaged as zeros, so the ranks stay equal).

    Args:
        module: the model; its ``state_dict`` is ``ddp.module.state_dict()``.
        broadcast_buffers: also broadcast rank 0's buffers at construction.
        process_group: an ``mpi4py`` communicator (``None``: the world).

    Example:
        >>> from nptfunc import nn
        >>> model = nn.parallel.DistributedDataParallel(nn.Linear(4, 2, key=0))
        >>> [name for name, _ in model.named_parameters()]
        ['module.weight', 'module.bias']
    """

    def __init__(self, module: Module, device_ids: Any = None, output_device: Any = None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group: Any = None, bucket_cap_mb: Any = None,
                 find_unused_parameters: bool = False, check_reduction: bool = False,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False) -> None:
        super().__init__()
        if not isinstance(module, Module):
            msg = f"DistributedDataParallel: expected an nn.Module to wrap, got {type(module).__name__}"
            raise TypeError(msg)
        if device_ids is not None and any(str(d) != "cpu" for d in device_ids):
            msg = (f"DistributedDataParallel: nptfunc runs on the CPU; expected device_ids None, "
                   f"got {device_ids!r}")
            raise ValueError(msg)
        self.module = module
        self.__dict__["process_group"] = process_group
        params = [p for p in module.parameters()]
        values = distributed.broadcast([p.data for p in params], root=0, comm=process_group)
        for p, v in zip(params, values, strict=True):
            p.data = np.array(v)
        if broadcast_buffers:
            slots = [(m, name) for m in module.modules() for name, b in m._buffers.items() if b is not None]
            values = distributed.broadcast([m._buffers[name] for m, name in slots], root=0,
                                           comm=process_group)
            for (m, name), v in zip(slots, values, strict=True):
                m._buffers[name] = np.array(v)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The module's output, with the gradient averaging attached for ``backward``."""
        out = self.module(*args, **kwargs)
        if not (is_grad_enabled() and self.training and isinstance(out, Tensor) and out.requires_grad):
            return out
        synced = record("DistributedDataParallel", out._data, lambda dy: (dy,), (out,))
        if synced._node is not None:
            synced._node.after = self._average_gradients
        return synced

    def _average_gradients(self) -> None:
        """Replace every parameter's ``.grad`` with its mean over the ranks (zeros where a rank had none)."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else np.zeros(p.shape, p.dtype) for p in params]
        for p, g in zip(params, distributed.allreduce_mean(grads, comm=self.process_group), strict=True):
            p.grad = np.array(g)

    def extra_repr(self) -> str:  # noqa: D102
        return ""

"""The affine layer."""

from __future__ import annotations

import math

import attrs
import numpy as np

from nptfunc import random
from nptfunc._types import VJP, Array
from nptfunc.backend import array_module, matmul
from nptfunc.layers.base import Layer, bool_field, dtype_field, int_field, param_field
from nptfunc.layers.initializers import torch_default_bias, torch_default_weight
from nptfunc.random import Key

__all__ = ["Linear", "LinearParams"]


@attrs.frozen
class LinearParams:
    """Parameters of :class:`Linear`.

    Attributes:
        weight: ``(out_features, in_features)``.
        bias: ``(out_features,)`` or ``None``.
    """

    weight: Array = param_field()
    bias: Array | None = param_field(default=None)


@attrs.frozen
class Linear(Layer):
    """``y = x @ weight.T + bias`` over the last axis; any leading dimensions.

    Equivalent to ``torch.nn.Linear``, with the same default initialisation.

    Args:
        in_features: size of the last axis of the input.
        out_features: size of the last axis of the output.
        bias: whether to learn an additive bias.
        dtype: NumPy float dtype of the parameters (float32 by default).

    Shapes:
        x: ``(..., in_features)`` -> y: ``(..., out_features)``.
    """

    params_class = LinearParams

    in_features: int = int_field(minimum=0)
    out_features: int = int_field(minimum=0)
    bias: bool = bool_field(default=True)
    dtype: np.dtype = dtype_field()

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(..., in_features) -> (..., out_features)``."""
        if len(input_shape) < 1 or input_shape[-1] != self.in_features:
            msg = (f"{self.name}: expected input of shape (..., {self.in_features}), "
                   f"got {tuple(input_shape)}")
            raise ValueError(msg)
        return (*input_shape[:-1], self.out_features)

    def init(self, key: Key) -> LinearParams:
        """torch's default: ``U(-1/sqrt(in_features), 1/sqrt(in_features))`` for both."""
        kw, kb = random.split(key)
        shape = (self.out_features, self.in_features)
        weight = torch_default_weight(kw, shape, self.in_features, self.dtype)
        bias = (torch_default_bias(kb, (self.out_features,), self.in_features, self.dtype)
                if self.bias else None)
        return LinearParams(weight, bias)

    def _apply(self, params: LinearParams, x: Array, *, need_dx: bool = True) -> tuple[Array, VJP]:
        W, b = params.weight, params.bias
        y_shape = self.output_shape(x.shape)
        xp = array_module(x, W)
        rows = math.prod(x.shape[:-1])  # not -1: a zero-size feature axis has no size to infer from
        x2 = xp.reshape(x, (rows, self.in_features))
        y = matmul(x2, W.T)
        if b is not None:
            y += b
        y = xp.reshape(y, y_shape)

        def vjp(dy: Array) -> tuple[LinearParams, Array | None]:
            dy2 = xp.reshape(dy, (rows, self.out_features))
            dW = matmul(dy2.T, x2)
            db = dy2.sum(axis=0) if b is not None else None
            dx = xp.reshape(matmul(dy2, W), x.shape) if need_dx else None
            return LinearParams(dW, db), dx

        return y, vjp

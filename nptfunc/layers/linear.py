"""The affine layer."""

from __future__ import annotations

import attrs
import numpy as np

from nptfunc import random
from nptfunc._types import VJP, Array
from nptfunc.backend import array_module
from nptfunc.layers._init import torch_default_bias, torch_default_weight
from nptfunc.layers.base import (
    Layer,
    as_array,
    check_cotangent,
    check_dtype,
    check_int,
    check_key,
    check_params,
    dtype_field,
    param_field,
)
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

    in_features: int = attrs.field()
    out_features: int = attrs.field()
    bias: bool = attrs.field(default=True, converter=bool)
    dtype: np.dtype = dtype_field()

    def __attrs_post_init__(self) -> None:
        check_int("Linear", "in_features", self.in_features, minimum=0)
        check_int("Linear", "out_features", self.out_features, minimum=0)

    @property
    def name(self) -> str:  # noqa: D102
        return f"Linear(in_features={self.in_features}, out_features={self.out_features})"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(..., in_features) -> (..., out_features)``."""
        if len(input_shape) < 1 or input_shape[-1] != self.in_features:
            msg = (f"{self.name}: expected input of shape (..., {self.in_features}), "
                   f"got {tuple(input_shape)}")
            raise ValueError(msg)
        return (*input_shape[:-1], self.out_features)

    def init(self, key: Key) -> LinearParams:
        """torch's default: ``U(-1/sqrt(in_features), 1/sqrt(in_features))`` for both."""
        check_key(self.name, key)
        kw, kb = random.split(key)
        shape = (self.out_features, self.in_features)
        weight = torch_default_weight(kw, shape, self.in_features, self.dtype)
        bias = (torch_default_bias(kb, (self.out_features,), self.in_features, self.dtype)
                if self.bias else None)
        return LinearParams(weight, bias)

    def _apply(self, params: LinearParams, x: Array) -> tuple[Array, VJP]:
        check_params(self.name, params, LinearParams)
        W, b = params.weight, params.bias
        x = as_array(self.name, x, W.dtype)
        y_shape = self.output_shape(x.shape)
        check_dtype(self.name, x, W.dtype)
        xp = array_module(x, W)
        x2 = xp.reshape(x, (-1, self.in_features))
        y = x2 @ W.T
        if b is not None:
            y += b
        y = xp.reshape(y, y_shape)

        def vjp(dy: Array) -> tuple[LinearParams, Array]:
            dy = check_cotangent(self.name, dy, y_shape)
            dy2 = xp.reshape(dy, (-1, self.out_features))
            dW = dy2.T @ x2
            db = dy2.sum(axis=0) if b is not None else None
            dx = xp.reshape(dy2 @ W, x.shape)
            return LinearParams(dW, db), dx

        return y, vjp

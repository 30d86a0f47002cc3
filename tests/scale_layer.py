"""The worked example of docs/design.md: a complete layer in 15 lines (a row of the parity table)."""

import attrs
import numpy as np

from nptfunc.layers.base import Layer, dtype_field, int_field, param_field


@attrs.frozen
class ScaleParams:
    weight: np.ndarray = param_field()


@attrs.frozen
class Scale(Layer):
    """``y = x * weight`` over the last axis. Shapes: ``(..., features)`` -> the same."""

    params_class = ScaleParams
    features: int = int_field()
    dtype: np.dtype = dtype_field()

    def init(self, key):
        return ScaleParams(np.ones(self.features, self.dtype))

    def _apply(self, params, x):
        vjp = lambda dy: (ScaleParams((dy * x).reshape(-1, self.features).sum(0)), dy * params.weight)  # noqa: E731
        return np.einsum("...i,i->...i", x, params.weight), vjp  # a wrong width is an error

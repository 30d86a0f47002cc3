"""Write your own layer: a residual block with init, apply and its vjp, checked against torch.

A layer is an immutable object holding hyperparameters, with ``init(key) -> params``
and ``apply(params, x) -> (y, vjp)``. Subclass ``layers.Layer``, declare the class
of its params, and write the forward math in ``_apply`` with the vjp right beneath
it: both forms of ``apply``, the checks of params, input and cotangent, and the use
inside ``layers.Sequential`` come with it. Here the block is built from the
library's own layers, so its vjp only chains theirs, and sums the two cotangents
that reach ``x``, which the block uses twice.

``nptfunc.testing`` then checks it: finite differences, the adjoint test, and the
same weights in an equivalent torch module (output, input gradient and every
parameter gradient). torch is needed for that last check only. Last, the same
block built from the core's combinators (``Residual``, ``Sequential``), with no
vjp written at all, gives the same output and gradients.

    python examples/custom_layer.py
"""

from __future__ import annotations

import attrs
import numpy as np

from nptfunc import layers, losses, random
from nptfunc.testing import assert_layer_matches_torch, check_adjoint, check_vjp

RELU = layers.ReLU()


@attrs.frozen
class ResidualParams:
    """The block's params; the field names give torch's names ``conv1.weight``, ``conv2.bias``."""

    conv1: layers.ConvParams
    conv2: layers.ConvParams


@attrs.frozen
class ResidualBlock(layers.Layer):
    """``y = relu(x + conv2(relu(conv1(x))))`` with two 3x3 convolutions that keep the size.

    Shapes: x ``(N, channels, H, W)`` -> y the same.
    """

    params_class = ResidualParams  # what apply checks its params against

    channels: int
    dtype: type = np.float32

    @property
    def conv(self) -> layers.Conv2d:
        return layers.Conv2d(self.channels, self.channels, 3, padding=1, dtype=self.dtype)

    def init(self, key: random.Key) -> ResidualParams:
        k1, k2 = random.split(key)
        return ResidualParams(self.conv.init(k1), self.conv.init(k2))

    def _apply(self, params: ResidualParams, x: np.ndarray):
        h, conv1_vjp = self.conv.apply(params.conv1, x)
        a, relu1_vjp = RELU.apply(None, h)
        z, conv2_vjp = self.conv.apply(params.conv2, a)
        y, relu2_vjp = RELU.apply(None, x + z)

        def vjp(dy: np.ndarray) -> tuple[ResidualParams, np.ndarray]:
            _, ds = relu2_vjp(dy)          # the cotangent of the sum x + z ...
            dconv2, da = conv2_vjp(ds)
            _, dh = relu1_vjp(da)
            dconv1, dx = conv1_vjp(dh)
            return ResidualParams(dconv1, dconv2), dx + ds   # ... reaches x along both paths

        return y, vjp


def torch_block(channels: int, dtype: type):
    """The same block in torch, for the comparison."""
    import torch

    class TorchResidualBlock(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = torch.nn.Conv2d(channels, channels, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1)

        def forward(self, x):
            return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))

    return TorchResidualBlock().to(getattr(torch, np.dtype(dtype).name))


def main() -> None:
    k_params, k_x, k_model = random.split(random.key(0), 3)

    # 1. float64 finite differences and the adjoint test: is the vjp the derivative of apply?
    block = ResidualBlock(3, dtype=np.float64)
    params = block.init(k_params)
    x = random.normal(k_x, (2, 3, 5, 5), dtype=np.float64)
    check_vjp(block, params, x)
    check_adjoint(block, params, x)
    print("vjp matches finite differences; adjoint test passes")

    # 2. the same weights in torch give the same output and gradients, in float64 and float32
    for dtype in (np.float64, np.float32):
        typed = ResidualBlock(3, dtype=dtype)
        assert_layer_matches_torch(typed, typed.init(k_params), torch_block(3, dtype), x.astype(dtype))
        print(f"{np.dtype(dtype).name}: y, dx and every parameter gradient match torch")

    # 3. it composes like any library layer: one training gradient through a small model
    model = layers.Sequential(layers.Conv2d(1, 8, 3, padding=1), ResidualBlock(8), layers.Flatten(),
                              layers.Linear(8 * 8 * 8, 10))
    model_params = model.init(k_model)
    images = random.uniform(k_x, (4, 1, 8, 8), dtype=np.float32)
    logits, vjp = model.apply(model_params, images)
    loss, loss_vjp = losses.CrossEntropyLoss().apply(logits, np.array([0, 1, 2, 3]))
    grads, _ = vjp(loss_vjp(1.0))
    print(f"inside a Sequential: loss {float(loss):.4f}, d conv2.weight of the block "
          f"{grads[1].conv2.weight.shape}")

    # 4. the combinator way: the same block with no vjp written at all (docs/design.md, "Combinators")
    conv = layers.Conv2d(3, 3, 3, padding=1, dtype=np.float64)
    composed = layers.Sequential(layers.Residual(layers.Sequential(conv, layers.ReLU(), conv)), layers.ReLU())
    composed_params = ((params.conv1, None, params.conv2), None)   # the hand-written block's weights
    y_hand, vjp_hand = block.apply(params, x)
    y_comp, vjp_comp = composed.apply(composed_params, x)
    dy = random.normal(k_model, y_hand.shape, dtype=np.float64)
    (d_hand, dx_hand), (d_comp, dx_comp) = vjp_hand(dy), vjp_comp(dy)
    assert np.allclose(y_hand, y_comp, rtol=1e-12, atol=1e-12) and np.allclose(dx_hand, dx_comp, rtol=1e-12)
    assert np.allclose(d_hand.conv1.weight, d_comp[0][0].weight, rtol=1e-12)
    assert np.allclose(d_hand.conv2.bias, d_comp[0][2].bias, rtol=1e-12)
    print("Sequential(Residual(Sequential(conv, relu, conv)), relu) gives the same y, dx and gradients")


if __name__ == "__main__":
    main()

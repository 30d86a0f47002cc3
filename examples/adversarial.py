"""FGSM adversarial examples on the digits: the input gradient comes free with the vjp.

Trains the digits CNN briefly (the same model and training step as
``train_digits.py``), then attacks the test set with the fast gradient sign
method (Goodfellow et al., 2015): ``x_adv = clip(x + eps * sign(d loss / d x), 0, 1)``.
The gradient with respect to the input is the ``dx`` that every vjp returns next
to the parameter gradients, so the attack is three lines; no hooks, no
``requires_grad``, no global mode switches.

    python examples/adversarial.py                          # ~3 s on 2 cores
    python examples/adversarial.py --eps 0 0.02 0.05 0.1 0.2
"""

from __future__ import annotations

import argparse
from typing import Any

import _digits  # the sibling module shared with train_digits.py (the script's folder is on sys.path)
import numpy as np

from nptfunc import data, layers, random


def input_gradient(model: layers.Layer, params: Any, state: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``d loss / d x``: the model in evaluation mode, the loss, and the vjps back to the input."""
    logits, vjp, _ = model.apply(params, x, state, train=False)
    _, loss_vjp = _digits.LOSS.apply(logits, y)
    _, dx = vjp(loss_vjp(1.0))
    return dx


def fgsm(model: layers.Layer, params: Any, state: Any, x: np.ndarray, y: np.ndarray,
         eps: float) -> np.ndarray:
    """The fast gradient sign method: one step of size ``eps`` up the loss, kept in ``[0, 1]``."""
    dx = input_gradient(model, params, state, x, y)
    return np.clip(x + np.float32(eps) * np.sign(dx), 0.0, 1.0)


def main(argv: list[str] | None = None) -> dict[float, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6, help="training epochs before the attack (default 6)")
    p.add_argument("--eps", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3],
                   help="attack strengths, in units of the pixel range [0, 1]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="use at most this many train and test images (quick runs)")
    args = p.parse_args(argv)

    train_set, test_set = _digits.load_digits(args.limit)
    model = _digits.cnn()
    for epoch, params, state, loss in _digits.fit(model, train_set, epochs=args.epochs, batch_size=32,
                                                  lr=3e-3, key=random.key(args.seed)):
        test_acc = _digits.accuracy(model, params, state, test_set)
        print(f"epoch {epoch + 1}/{args.epochs}  loss {loss:.4f}  test acc {test_acc:.4f}", flush=True)

    print(f"\nFGSM on {len(test_set[1])} test images\n    eps   test accuracy")
    results = {}
    for eps in args.eps:
        correct = 0
        for x, y in data.batches(test_set, 500):
            x_adv = fgsm(model, params, state, x, y, eps)
            correct += int((_digits.predict(model, params, state, x_adv).argmax(axis=1) == y).sum())
        results[eps] = correct / len(test_set[1])
        print(f"  {eps:5.2f}   {results[eps]:.3f}  {'#' * round(40 * results[eps])}")
    return results


if __name__ == "__main__":
    main()

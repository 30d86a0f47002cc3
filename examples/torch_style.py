"""The digits CNN through the torch-like facade, written as a PyTorch user would.

The loop of a torch script, line for line: ``nn.Sequential`` of ``nn`` modules,
``optim.Adam(model.parameters())`` with an ``lr_scheduler``, ``model.train()`` /
``model.eval()``, ``optimizer.zero_grad()``, ``loss.backward()``, ``optimizer.step()``.
Porting a torch script mostly means changing its imports. Behind the facade the
math is the functional core of ``train_digits.py``.

The second part trains the reference project's own CNN, Conv2d(1, 16, 3,
padding=1) -> Flatten -> Linear(16*28*28, 128) -> BatchNorm1d -> Tanh ->
Linear(128, 10) (``16*8*8`` on the 8x8 digits), through its ``nn.Net`` idiom:
``pred = net(x); loss = net.loss(pred, y); net.backward(); optimizer.step()``.

    python examples/torch_style.py                    # both models on the digits, ~4 s on 2 cores
    python examples/torch_style.py --model reference --data mnist --data-dir ~/mnist
"""

from __future__ import annotations

import argparse
from typing import Any

import _digits  # the sibling module with the data loading (the script's folder is on sys.path)
import numpy as np

from nptfunc import data, nn, optim, random


def digits_cnn(image_size: int, seed: int) -> nn.Sequential:
    """The CNN of ``train_digits.py``, spelled with the facade's modules."""
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * side * side, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
        key=seed,  # every parameter and the dropout key drawn from one seed: reproducible
    )


def reference_cnn(image_size: int, seed: int) -> nn.Sequential:
    """The reference project's CNN (``Linear(16*28*28, 128)`` on MNIST)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.Flatten(),
        nn.Linear(16 * image_size * image_size, 128),
        nn.BatchNorm1d(128),
        nn.Tanh(),
        nn.Linear(128, 10),
        key=seed,
    )


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    correct = sum(int((model(xb).argmax(axis=1) == yb).sum()) for xb, yb in data.batches((x, y), 1000))
    return correct / len(y)


def train_torch_style(args: argparse.Namespace, train_set: Any, test_set: Any) -> float:
    """The digits CNN, the way a torch script trains it."""
    model = digits_cnn(train_set[0].shape[-1], args.seed)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * len(data.batches(train_set, args.batch_size))
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    shuffle_key = random.key(args.seed + 1)

    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        batches = data.batches(train_set, args.batch_size, key=random.fold_in(shuffle_key, epoch))
        for x, y in batches:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
        test_acc = evaluate(model, *test_set)
        print(f"epoch {epoch + 1:2d}/{args.epochs}  loss {total / len(batches):.4f}  "
              f"test acc {test_acc:.4f}", flush=True)
    return test_acc


def train_reference_style(args: argparse.Namespace, train_set: Any, test_set: Any) -> float:
    """The reference project's CNN through its ``nn.Net`` loop."""
    net = nn.Net(reference_cnn(train_set[0].shape[-1], args.seed), nn.CrossEntropyLoss())
    optimizer = optim.Adam(net.parameters(), lr=args.lr)
    shuffle_key = random.key(args.seed + 1)

    for epoch in range(args.epochs):
        net.train()
        total, count = 0.0, 0
        for x, y in data.batches(train_set, args.batch_size, key=random.fold_in(shuffle_key, epoch)):
            pred = net(x)
            loss = net.loss(pred, y)
            optimizer.zero_grad()
            net.backward()
            optimizer.step()
            total, count = total + float(loss), count + 1
        test_acc = evaluate(net, *test_set)
        print(f"epoch {epoch + 1:2d}/{args.epochs}  loss {total / count:.4f}  test acc {test_acc:.4f}",
              flush=True)
    return test_acc


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["cnn", "reference", "both"], default="both")
    p.add_argument("--epochs", type=int, default=8, help="default 8")
    p.add_argument("--batch-size", type=int, default=32, help="default 32")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate (default 2e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", choices=["digits", "mnist"], default="digits")
    p.add_argument("--data-dir", help="the folder with MNIST's IDX files, for --data mnist")
    p.add_argument("--limit", type=int, help="use at most this many train and test images (quick runs)")
    args = p.parse_args(argv)
    if args.data == "mnist" and args.data_dir is None:
        p.error("--data mnist needs --data-dir DIR, a folder with MNIST's four IDX files")

    train_set, test_set = _digits.load(args.data, args.data_dir, args.limit)
    results = {}
    if args.model in ("cnn", "both"):
        print("the digits CNN, torch style: nn.Sequential, optim.Adam, CosineAnnealingLR, loss.backward()")
        results["cnn"] = train_torch_style(args, train_set, test_set)
    if args.model in ("reference", "both"):
        print("the reference project's CNN through nn.Net: net(x), net.loss(pred, y), net.backward()")
        results["reference"] = train_reference_style(args, train_set, test_set)
    for name, acc in results.items():
        print(f"{name}: test accuracy: {acc:.3f}")
    return results


if __name__ == "__main__":
    main()

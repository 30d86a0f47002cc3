"""Train a small CNN on the 8x8 handwritten digits that ship with scikit-learn.

The pure functional style, start to finish: the model is an immutable
``layers.Sequential``; ``init`` gives params, ``init_state`` the BatchNorm
statistics and dropout key; each step runs ``apply`` in training mode, the loss,
the vjps backwards and an Adam update whose learning rate follows a cosine
schedule. Nothing is mutated, so every step could be replayed from its inputs.
The model (``cnn``), the pure step (``make_train_step``) and the loop (``fit``)
live in ``_digits.py`` beside this file, shared with ``adversarial.py`` and the
benchmark; this script adds the command line, evaluation, saving and plotting.

    pip install -e '.[examples]'
    python examples/train_digits.py                     # 98-99% test accuracy in ~4 s on 2 cores
    python examples/train_digits.py --save digits.npz   # then: --eval digits.npz
    python examples/train_digits.py --plot curves.png   # matplotlib comes with the examples extra
    python examples/train_digits.py --data mnist --data-dir ~/mnist   # the standard IDX files

Data-parallel on MPI (``pip install -e '.[examples,mpi]'``): each of N processes
takes its share of every global batch, the gradients are averaged over the ranks
before each update, and only rank 0 prints, saves and plots:

    mpiexec -n 2 python examples/train_digits.py --distributed
    mpiexec -f hosts -n 8 python examples/train_digits.py --distributed --batch-size 64   # a cluster
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import _digits  # the sibling module shared with adversarial.py (the script's folder is on sys.path)
import numpy as np

import nptfunc
from nptfunc import distributed, random, tree


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=12, help="passes over the training set (default 12)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="the global batch, split over the ranks with --distributed (default 32)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's peak learning rate (cosine decay)")
    p.add_argument("--seed", type=int, default=0, help="the key of the params, dropout and shuffles")
    p.add_argument("--data", choices=["digits", "mnist"], default="digits",
                   help="digits: scikit-learn's 8x8 digits (default); mnist: IDX files from --data-dir")
    p.add_argument("--data-dir", help="the folder with MNIST's IDX files (gzipped or not)")
    p.add_argument("--limit", type=int, help="use at most this many train and test images (quick runs)")
    p.add_argument("--save", metavar="PATH", help="write the trained params and state to PATH (.npz)")
    p.add_argument("--eval", metavar="PATH", help="evaluate a file written by --save, and train nothing")
    p.add_argument("--plot", metavar="FILE.png", help="draw the loss and accuracy curves (matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the MPI ranks: run under mpiexec -n N (needs the mpi extra)")
    args = p.parse_args(argv)
    if args.eval is not None:
        for flag, value in (("--save", args.save), ("--plot", args.plot)):
            if value is not None:
                print(f"{p.prog}: --eval trains nothing, so {flag} {value} is ignored", file=sys.stderr)
        args.save = args.plot = None
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot needs matplotlib, which is not installed: pip install matplotlib")
    if args.data == "mnist" and args.data_dir is None:
        p.error("--data mnist needs --data-dir DIR: a folder with MNIST's four IDX files "
                "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...)")
    return args


def progress_bar(args: argparse.Namespace) -> Any:
    """``progress(epoch, batches)`` wrapping the batches in a tqdm bar (``None`` without tqdm)."""
    if args.no_progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return lambda epoch, batches: tqdm(batches, total=len(batches), desc=f"epoch {epoch + 1}/{args.epochs}",
                                       leave=False, unit="batch", file=sys.stderr)


def train(args: argparse.Namespace) -> dict[str, Any]:
    world_size = 1
    if args.distributed:
        distributed.abort_on_exception()  # a rank that raises ends the job, not just itself
        world_size = distributed.world_size()
        if args.batch_size % world_size:
            raise SystemExit(f"--batch-size {args.batch_size} is the global batch: it must be a multiple of "
                             f"the {world_size} ranks")
    main = distributed.is_main() if args.distributed else True
    train_set, test_set = _digits.load(args.data, args.data_dir, args.limit)
    image_size = train_set[0].shape[-1]
    model = _digits.cnn(image_size)
    if main:
        print(f"{args.data}: {len(train_set[1])} train and {len(test_set[1])} test images of "
              f"{image_size}x{image_size}; {args.epochs} epochs, batch {args.batch_size}, Adam with a "
              f"cosine schedule from lr {args.lr:g}")
        if args.distributed:
            print(f"data-parallel over {world_size} rank{'s' * (world_size > 1)}: "
                  f"{args.batch_size // world_size} images per rank and step")

    history: dict[str, list[float]] = {"loss": [], "train_acc": [], "test_acc": [], "seconds": []}
    start = time.perf_counter()
    epochs = _digits.fit(model, train_set, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         key=random.key(args.seed), progress=progress_bar(args) if main else None,
                         parallel=args.distributed)
    for epoch, params, state, loss in epochs:
        if not main:  # the other ranks only train
            continue
        train_acc = _digits.accuracy(model, params, state, train_set)
        test_acc = _digits.accuracy(model, params, state, test_set)
        seconds, start = time.perf_counter() - start, time.perf_counter()
        for name, value in zip(history, (loss, train_acc, test_acc, seconds), strict=True):
            history[name].append(value)
        print(f"epoch {epoch + 1:2d}/{args.epochs}  loss {loss:.4f}  train acc {train_acc:.4f}  "
              f"test acc {test_acc:.4f}  {seconds:.1f}s", flush=True)

    if not main:
        return {"test_acc": None, "history": history}
    if args.save:
        config = {"data": args.data, "image_size": image_size}
        nptfunc.save({"config": config, "params": params, "state": state}, args.save)
        print(f"saved params and state to {args.save}")
    if args.plot:
        plot(history, args.plot)
    print(f"test accuracy: {history['test_acc'][-1]:.3f}")
    return {"test_acc": history["test_acc"][-1], "history": history}


def load_checkpoint(path: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    """``(model, params, state, config)`` from a file written by ``--save``.

    A missing, unreadable or foreign file ends the script with a one-line message
    (``SystemExit``), not a traceback.
    """
    foreign = f"{path}: expected a file written by train_digits.py --save"
    try:
        saved = nptfunc.load(path)
    except OSError as e:
        raise SystemExit(f"{path}: cannot read it: {e.strerror or e}") from None
    except ValueError as e:  # not an nptfunc file, or a malformed one: load's message names the file
        raise SystemExit(str(e).replace("\n", " ")) from None
    if not (isinstance(saved, dict) and {"config", "params", "state"} <= saved.keys()):
        raise SystemExit(foreign)
    config = saved["config"]
    if not (isinstance(config, dict) and config.get("data") in ("digits", "mnist")
            and type(config.get("image_size")) is int and 4 <= config["image_size"] <= 4096):
        raise SystemExit(f"{foreign} (its config is {str(config)[:80]})")
    model = _digits.cnn(config["image_size"])
    like = {"params": model.init(random.key(0)), "state": model.init_state(random.key(0))}
    got = {"params": saved["params"], "state": saved["state"]}
    try:  # the same tree, shapes and dtypes as the model's: anything else is another model's file
        tree.assert_same_structure(like, got, what="the model's params and state and the file's")
    except TypeError as e:
        raise SystemExit(f"{foreign} for this model: {e}") from None
    for (where, a), b in zip(tree.tree_flatten_with_path(like)[0], tree.tree_leaves(got), strict=True):
        fits = isinstance(b, np.ndarray) and (a.shape, a.dtype) == (b.shape, b.dtype)
        if isinstance(a, np.ndarray) and not fits:
            found = f"{b.dtype} {b.shape}" if isinstance(b, np.ndarray) else type(b).__name__
            raise SystemExit(f"{foreign} for this model: {tree.path_str(where)} is {found}, "
                             f"expected {a.dtype} {a.shape}")
    return model, saved["params"], saved["state"], config


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    model, params, state, config = load_checkpoint(args.eval)
    if config["data"] == "mnist" and args.data_dir is None:
        raise SystemExit(f"{args.eval}: a model trained on MNIST; pass --data-dir DIR with MNIST's IDX files")
    _, test_set = _digits.load(config["data"], args.data_dir, args.limit)
    test_acc = _digits.accuracy(model, params, state, test_set)
    print(f"{args.eval}: {config['data']}, {len(test_set[1])} test images")
    print(f"test accuracy: {test_acc:.3f}")
    return {"test_acc": test_acc}


def plot(history: dict[str, list[float]], path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = range(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_acc.plot(epochs, history["train_acc"], marker="o", label="train")
    ax_acc.plot(epochs, history["test_acc"], marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend()
    with nptfunc.io.atomic_write(path) as f:  # all or nothing, as nptfunc.save
        fig.savefig(f, format=os.path.splitext(path)[1][1:] or "png")
    print(f"saved the curves to {path}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    return evaluate(args) if args.eval else train(args)


if __name__ == "__main__":
    main()

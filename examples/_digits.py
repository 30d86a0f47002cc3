"""What the digits examples share: the data, the CNN, one pure training step, evaluation.

``train_digits.py`` and ``adversarial.py`` import this module (it sits beside them),
``torch_style.py`` its data loading; ``benchmarks/train_step.py`` times the same
:func:`make_train_step` on :func:`cnn`.

Everything is in the functional style: a model is an immutable
``layers.Sequential``; params, state (BatchNorm statistics, the dropout key) and
the optimizer state are values that go in and come out, never mutated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
import numpy as np

from nptfunc import data, distributed, layers, losses, optim, random, schedules
from nptfunc.optim import FunctionalOptimizer, OptState

SPLIT_KEY = random.key(20240607)
"""The key of the digits' train/test split: fixed, so every run and seed sees the same test set."""
TEST_FRACTION = 0.2
LOSS = losses.CrossEntropyLoss()

Arrays = tuple[np.ndarray, np.ndarray]
Progress = Callable[[int, data.Batches], Iterable[Arrays]]
TrainStep = Callable[[Any, Any, OptState, np.ndarray, np.ndarray], tuple[Any, Any, OptState, np.ndarray]]


# ------------------------------------------------------------------------ data
def _as_images(images: np.ndarray, scale: float) -> np.ndarray:
    """``(N, H, W)`` integers in ``[0, scale]`` -> float32 ``(N, 1, H, W)`` in ``[0, 1]``."""
    return (images.astype(np.float32) / np.float32(scale))[:, None]


def load_digits(limit: int | None = None) -> tuple[Arrays, Arrays]:
    """The 8x8 digits that ship with scikit-learn, split 80/20 with :data:`SPLIT_KEY`.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: images float32 ``(N, 1, 8, 8)``
        in ``[0, 1]``, labels int64 ``(N,)``; 1,437 and 360 images (``limit`` caps both).
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise SystemExit("the digits data ships with scikit-learn: pip install -e '.[examples]'") from None
    bunch = sklearn_digits()
    x = _as_images(bunch.images, 16.0)
    y = bunch.target.astype(np.int64)
    train, test = data.train_test_split((x, y), TEST_FRACTION, key=SPLIT_KEY)
    return _limit(train, limit), _limit(test, limit)


def load_mnist(data_dir: str, limit: int | None = None) -> tuple[Arrays, Arrays]:
    """MNIST's standard IDX files from ``data_dir`` (see :func:`nptfunc.data.load_mnist`).

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: images float32 ``(N, 1, 28, 28)``
        in ``[0, 1]``, labels int64 ``(N,)``; ``limit`` caps both parts.
    """
    (x_train, y_train), (x_test, y_test) = data.load_mnist(data_dir)
    train = (_as_images(x_train, 255.0), y_train.astype(np.int64))
    test = (_as_images(x_test, 255.0), y_test.astype(np.int64))
    return _limit(train, limit), _limit(test, limit)


def load(name: str, data_dir: str | None = None, limit: int | None = None) -> tuple[Arrays, Arrays]:
    """``load_digits`` for ``"digits"``, ``load_mnist(data_dir)`` for ``"mnist"``."""
    if name == "digits":
        return load_digits(limit)
    if data_dir is None:
        raise SystemExit("--data mnist needs --data-dir DIR, a folder with MNIST's four IDX files "
                         "(train-images-idx3-ubyte[.gz], ...)")
    return load_mnist(data_dir, limit)


def _limit(arrays: Arrays, limit: int | None) -> Arrays:
    return arrays if limit is None else (arrays[0][:limit], arrays[1][:limit])


# ----------------------------------------------------------------------- model
def cnn(image_size: int = 8, channels: tuple[int, int] = (32, 64), hidden: int = 128,
        dropout: float = 0.5, num_classes: int = 10) -> layers.Sequential:
    """The examples' CNN on ``(N, 1, image_size, image_size)`` images.

    Conv2d -> ReLU -> MaxPool2d -> Conv2d -> BatchNorm2d -> ReLU -> MaxPool2d ->
    Flatten -> Linear -> ReLU -> Dropout -> Linear. The convolutions keep the size
    (3x3, padding 1) and each pool halves it: 8 -> 4 -> 2 on the digits, 28 -> 14 -> 7
    on MNIST, where the defaults are the benchmark's LeNet-like model.
    """
    c1, c2 = channels
    side = image_size // 2 // 2
    return layers.Sequential(
        layers.Conv2d(1, c1, 3, padding=1),
        layers.ReLU(),
        layers.MaxPool2d(2),
        layers.Conv2d(c1, c2, 3, padding=1),
        layers.BatchNorm2d(c2),
        layers.ReLU(),
        layers.MaxPool2d(2),
        layers.Flatten(),
        layers.Linear(c2 * side * side, hidden),
        layers.ReLU(),
        layers.Dropout(dropout),
        layers.Linear(hidden, num_classes),
    )


# ---------------------------------------------------------------- training step
def make_train_step(model: layers.Layer, optimizer: FunctionalOptimizer,
                    loss: losses.Loss = LOSS, reduce_grads: Callable[[Any], Any] | None = None) -> TrainStep:
    """The pure training step of ``model`` with ``optimizer``.

    Args:
        reduce_grads: applied to the gradients before the update; data
            parallelism passes ``distributed.allreduce_mean``.

    Returns:
        ``train_step(params, state, opt_state, x, y) -> (params, state, opt_state, loss)``:
        forward in training mode, loss, backward through the vjps, one optimizer
        update. Nothing it is given is modified, so a step can be replayed.
    """

    def train_step(params: Any, state: Any, opt_state: OptState, x: np.ndarray,
                   y: np.ndarray) -> tuple[Any, Any, OptState, np.ndarray]:
        # need_dx=False: nothing consumes the input's gradient, so the first layers skip it
        logits, vjp, state = model.apply(params, x, state, train=True, need_dx=False)
        loss_value, loss_vjp = loss.apply(logits, y)
        grads, _ = vjp(loss_vjp(1.0))
        if reduce_grads is not None:
            grads = reduce_grads(grads)
        opt_state, params = optimizer.update(opt_state, grads)
        return params, state, opt_state, loss_value

    return train_step


def average_statistics(state: Any) -> Any:
    """``state`` with every BatchNorm's running statistics averaged over the ranks (a collective).

    Each rank's BatchNorm tracks the statistics of its own shards; their average is
    what the model is evaluated and saved with. Dropout keys stay each rank's own.
    """
    at = [i for i, s in enumerate(state) if isinstance(s, layers.BatchNormState)]
    averaged = distributed.allreduce_mean([(state[i].running_mean, state[i].running_var) for i in at])
    new = list(state)  # a Sequential's state: one entry per child
    for i, (running_mean, running_var) in zip(at, averaged, strict=True):
        new[i] = attrs.evolve(state[i], running_mean=running_mean, running_var=running_var)
    return tuple(new)


def fit(model: layers.Layer, train: Arrays, *, epochs: int, batch_size: int, lr: float,
        key: random.Key, progress: Progress | None = None, parallel: bool = False,
        ) -> Iterator[tuple[int, Any, Any, float]]:
    """Train ``model`` on ``train = (x, y)`` with Adam and a cosine schedule; yield after each epoch.

    Args:
        epochs: passes over the data, each in its own order (``fold_in(key, epoch)``).
        batch_size: the (global) batch of each step.
        lr: the peak learning rate; the cosine schedule takes it to 0 at the last step.
        key: split into the keys of the params, the state (dropout) and the shuffles.
        progress: wraps each epoch's batches for display: ``progress(epoch, batches)`` (tqdm).
        parallel: data parallelism over the ranks of ``nptfunc.distributed`` (run
            under ``mpiexec``): the params are broadcast from rank 0, each rank takes
            its share of every global batch, the gradients are averaged before every
            update, and the BatchNorm statistics after every epoch. In one process,
            the same run as without it.

    Yields:
        ``(epoch, params, state, mean loss over the epoch's batches)``: the same
        params on every rank; the loss is averaged over the ranks.
    """
    rank, world_size = (distributed.rank(), distributed.world_size()) if parallel else (0, 1)
    k_params, k_state, k_shuffle = random.split(key, 3)
    params = model.init(k_params)
    if world_size > 1:
        params = distributed.broadcast(params)  # equal already (the same key); this makes sure
        k_state = random.fold_in(k_state, rank)  # each rank its own dropout masks
    state = model.init_state(k_state)  # BatchNorm running statistics, the dropout key
    steps_per_epoch = len(data.batches(train, batch_size, rank=rank, world_size=world_size))
    optimizer = optim.adam(lr=schedules.cosine(lr, T_max=epochs * steps_per_epoch))
    opt_state = optimizer.init(params)
    train_step = make_train_step(model, optimizer,
                                 reduce_grads=distributed.allreduce_mean if world_size > 1 else None)
    for epoch in range(epochs):
        batches: Iterable[Arrays] = data.batches(train, batch_size, key=random.fold_in(k_shuffle, epoch),
                                                 rank=rank, world_size=world_size)
        if progress is not None:
            batches = progress(epoch, batches)
        epoch_losses = []
        for x, y in batches:
            params, state, opt_state, loss = train_step(params, state, opt_state, x, y)
            epoch_losses.append(float(loss))
            if hasattr(batches, "set_postfix"):  # a tqdm bar
                batches.set_postfix(loss=f"{epoch_losses[-1]:.4f}", refresh=False)
        mean_loss = float(np.mean(epoch_losses))
        if world_size > 1:
            state = average_statistics(state)
            mean_loss = distributed.allreduce_mean(mean_loss)
        yield epoch, params, state, mean_loss


# ------------------------------------------------------------------ evaluation
def predict(model: layers.Layer, params: Any, state: Any, x: np.ndarray,
            batch_size: int = 1000) -> np.ndarray:
    """The logits of ``x`` in evaluation mode (running statistics, no dropout), in batches."""
    out = [model.apply(params, xb, state, train=False)[0] for xb in data.batches(x, batch_size)]
    return np.concatenate(out)


def accuracy(model: layers.Layer, params: Any, state: Any, arrays: Arrays,
             batch_size: int = 1000) -> float:
    """The share of ``arrays = (x, y)`` that ``model`` classifies correctly (evaluation mode)."""
    x, y = arrays
    return float((predict(model, params, state, x, batch_size).argmax(axis=1) == y).mean())

"""Train a small character-level GPT on the text of Python's own documentation topics.

The pure functional style, start to finish: the model is ONE immutable core
layer, a ``Sequential`` of token and position embeddings (``Parallel`` then
``Add``), pre-LayerNorm ``TransformerEncoderLayer`` blocks, a final
``LayerNorm`` and a ``Linear`` head; ``init`` gives its params, ``init_state``
the dropout keys; each step runs ``apply`` in training mode with the causal
mask (the Sequential hands it to the blocks), the cross-entropy, the model's vjp
and an AdamW update (gradient clipping, warm-up then cosine decay). No gradient
is written or chained here: the combinators compose the layers' vjps.

The default corpus ships with every CPython: ``pydoc_data.topics`` (about 465,000
characters), split 90/10 by position; nothing is downloaded.

    pip install -e '.[examples]'
    python examples/train_charlm.py                       # val loss < 0.8x the bigram baseline
    python examples/train_charlm.py --save lm.npz         # then: --load lm.npz --generate 300
    python examples/train_charlm.py --load lm.npz --generate 300 --prompt "The " --temperature 0.8
    python examples/train_charlm.py --text book.txt --plot curves.png
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import nptfunc
from nptfunc import layers, losses, optim, random, schedules

LOSS = losses.CrossEntropyLoss()
EVAL_WINDOWS, EVAL_BATCHES = 256, 8  # the validation loss: 256 fixed windows in 8 batches


# ------------------------------------------------------------------ command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600, help="optimizer steps (default 600)")
    p.add_argument("--context", type=int, default=64, help="characters per training window (default 64)")
    p.add_argument("--width", type=int, default=128, help="the model width, d_model (default 128)")
    p.add_argument("--layers", type=int, default=3, help="transformer blocks (default 3)")
    p.add_argument("--heads", type=int, default=4, help="attention heads, dividing --width (default 4)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per step (default 32)")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW's peak learning rate (default 3e-3)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout probability in the blocks (default 0)")
    p.add_argument("--seed", type=int, default=0, help="the key of the params, dropout, batches and sampling")
    p.add_argument("--eval-every", type=int, default=100, help="steps between validations (default 100)")
    p.add_argument("--save", metavar="PATH", help="write the trained model to PATH (.npz)")
    p.add_argument("--load", metavar="PATH",
                   help="read a model written by --save and train nothing (evaluate, generate)")
    p.add_argument("--generate", type=int, default=0, metavar="N", help="sample N characters at the end")
    p.add_argument("--prompt", default="\n", help="the text generation starts from (default a newline)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, > 0 (default 1)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest characters only")
    p.add_argument("--text", metavar="FILE", help="train on this UTF-8 file, not pydoc_data.topics")
    p.add_argument("--plot", metavar="FILE.png", help="draw the training and validation loss curves")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for flag in ("steps", "context", "width", "layers", "heads", "batch_size", "eval_every"):
        if getattr(args, flag) < (0 if flag == "steps" else 1):
            p.error(f"--{flag.replace('_', '-')} must be {'>= 0' if flag == 'steps' else '>= 1'}, "
                    f"got {getattr(args, flag)}")
    if args.width % args.heads:
        p.error(f"--heads {args.heads} must divide --width {args.width}")
    if not 0 <= args.dropout < 1:
        p.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.generate < 0:
        p.error(f"--generate must be >= 0, got {args.generate}")
    if not args.temperature > 0:
        p.error(f"--temperature must be > 0, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        p.error(f"--top-k must be >= 1, got {args.top_k}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot needs matplotlib, which is not installed: pip install matplotlib")
    return args


# -------------------------------------------------------------------------- data
def read_text(path: str | None) -> str:
    """The corpus: ``path``'s UTF-8 text, or Python's documentation topics (errors: one line)."""
    if path is None:
        from pydoc_data.topics import topics

        return "\n".join(topics[name] for name in sorted(topics))
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SystemExit(f"--text {path}: cannot read it: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise SystemExit(f"--text {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if len(text) < 20:
        raise SystemExit(f"--text {path}: expected at least 20 characters of text, got {len(text)}")
    return text


def encode(text: str, vocab: str) -> np.ndarray:
    """The characters' indices in ``vocab``, an int64 array (a character not in it raises SystemExit)."""
    index = {c: i for i, c in enumerate(vocab)}
    missing = sorted(set(text) - index.keys())
    if missing:
        raise SystemExit(f"the text has characters the model's vocabulary lacks: {''.join(missing)!r}")
    return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))


def windows(data: np.ndarray, starts: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(B, context)`` from each start and the targets one character later."""
    idx = starts[:, None] + np.arange(context + 1)
    chunk = data[idx]
    return chunk[:, :-1], chunk[:, 1:]


def bigram_loss(train: np.ndarray, val: np.ndarray, vocab_size: int, alpha: float = 1.0) -> float:
    """Validation cross-entropy (nats/char) of next-character counts on ``train``, add-``alpha`` smoothed."""
    counts = np.full((vocab_size, vocab_size), alpha)
    np.add.at(counts, (train[:-1], train[1:]), 1.0)
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))
    return float(-logp[val[:-1], val[1:]].mean())


# ------------------------------------------------------------------------- model
def make_model(vocab_size: int, context: int, width: int, n_layers: int, heads: int, dropout: float = 0.0,
               dtype: Any = np.float32) -> layers.Sequential:
    """A decoder-only transformer as one core layer: ids ``(B, T)`` -> logits ``(B, T, vocab_size)``.

    Token and position embeddings side by side on the ids, summed; ``n_layers``
    pre-LayerNorm blocks (causal self-attention and a ReLU MLP, with residuals), a
    final LayerNorm and a linear head. Params and state are tuples with one entry
    per position of the Sequential (torch's ``0.0.weight``, ``2.self_attn...``).
    """
    # ReLU in the MLP: NumPy's GELU (erf or tanh) costs a quarter of the step here
    block = layers.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=dropout,
                                           activation="relu", batch_first=True, norm_first=True, dtype=dtype)
    return layers.Sequential(
        layers.Parallel(layers.Embedding(vocab_size, width, dtype=dtype),
                        layers.PositionEmbedding(context, width, dtype=dtype)),
        layers.Add(),
        *[block] * n_layers,
        layers.LayerNorm(width, dtype=dtype),
        layers.Linear(width, vocab_size, dtype=dtype),
    )


def context_of(model: layers.Sequential) -> int:
    """The longest input the model takes: its position embedding's length."""
    return model[0][1].num_positions


@functools.cache
def causal_mask(t: int) -> np.ndarray:
    """``(t, t)`` bool, True above the diagonal: the future, masked out (read-only, shared)."""
    mask = np.triu(np.ones((t, t), dtype=bool), 1)
    mask.flags.writeable = False
    return mask


def forward(model: layers.Sequential, params: Any, state: Any, ids: np.ndarray,
            train: bool = False) -> tuple[np.ndarray, Callable[[np.ndarray], Any], Any]:
    """``ids: (B, T)`` int -> ``(logits (B, T, vocab), vjp, state)``; ``vjp(dlogits) -> (grads, None)``."""
    mask = causal_mask(ids.shape[-1])
    return model.apply(params, ids, state, train=train, attn_mask=mask, is_causal=True)


def count_params(params: Any) -> int:
    return sum(leaf.size for leaf in nptfunc.tree.tree_leaves(params) if isinstance(leaf, np.ndarray))


def make_optimizer(lr: float, steps: int) -> optim.FunctionalOptimizer:
    """AdamW (weight decay 0.1) after clipping the gradients' norm to 1; lr warms up, then a cosine decay."""
    warm = max(1, min(100, steps // 10))
    schedule = schedules.warmup(schedules.cosine(lr, max(1, steps - warm), eta_min=lr / 10), warm)
    return optim.chain(optim.clip_grad_norm(1.0), optim.adamw(schedule, betas=(0.9, 0.99), weight_decay=0.1))


def make_train_step(model: layers.Sequential, optimizer: optim.FunctionalOptimizer) -> Callable[..., Any]:
    """``train_step(params, state, opt_state, x, y) -> (params, state, opt_state, loss)``, pure."""

    def train_step(params: Any, state: Any, opt_state: Any, x: np.ndarray, y: np.ndarray) -> tuple[Any, ...]:
        logits, vjp, state = forward(model, params, state, x, train=True)
        v = logits.shape[-1]
        loss, loss_vjp = LOSS.apply(logits.reshape(-1, v), y.reshape(-1))
        grads, _ = vjp(loss_vjp(1.0).reshape(logits.shape))
        opt_state, params = optimizer.update(opt_state, grads)
        return params, state, opt_state, float(loss)

    return train_step


def evaluate(model: layers.Sequential, params: Any, data: np.ndarray) -> float:
    """Mean cross-entropy (nats/char) on ``EVAL_WINDOWS`` fixed, evenly spaced windows of ``data``."""
    n = EVAL_WINDOWS
    t = min(context_of(model), len(data) - 1)
    state = model.init_state(random.key(0))  # evaluation drops nothing: any dropout keys will do
    starts = np.linspace(0, len(data) - t - 1, n).astype(np.int64)
    total = 0.0
    for chunk in np.array_split(starts, EVAL_BATCHES):
        x, y = windows(data, chunk, t)
        logits, _, _ = forward(model, params, state, x)
        loss, _ = LOSS.apply(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        total += float(loss) * len(chunk)
    return total / n


def generate(model: layers.Sequential, params: Any, prompt: np.ndarray, n: int, key: random.Key,
             temperature: float = 1.0, top_k: int | None = None) -> np.ndarray:
    """``n`` sampled indices following ``prompt`` (the same key gives the same text)."""
    rng = random.generator(key)
    state = model.init_state(random.key(0))  # no dropout in evaluation
    ids, context = list(prompt), context_of(model)
    for _ in range(n):
        logits, _, _ = forward(model, params, state, np.asarray(ids[-context:], dtype=np.int64)[None])
        z = logits[0, -1].astype(np.float64) / temperature
        if top_k is not None and top_k < z.size:
            z[z < np.partition(z, -top_k)[-top_k]] = -np.inf
        prob = np.exp(z - z.max())
        ids.append(int(rng.choice(z.size, p=prob / prob.sum())))
    return np.asarray(ids[len(prompt):], dtype=np.int64)


# --------------------------------------------------------------------- training
def batches(train: np.ndarray, context: int, batch_size: int, key: random.Key) -> Iterator[tuple[Any, Any]]:
    """Endless random windows of ``train`` (the key fixes the sequence)."""
    rng = random.generator(key)
    while True:
        yield windows(train, rng.integers(0, len(train) - context, batch_size), context)


def progress(args: argparse.Namespace) -> Any:
    if args.no_progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=args.steps, unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)


def train(args: argparse.Namespace, model: layers.Sequential, train_data: np.ndarray, val_data: np.ndarray,
          key: random.Key) -> tuple[Any, dict[str, list[float]]]:
    k_init, k_state, k_data = random.split(key, 3)
    params, state = model.init(k_init), model.init_state(k_state)
    print(f"model: {args.layers} blocks, width {args.width}, {args.heads} heads, context {args.context}; "
          f"{count_params(params):,} parameters")
    optimizer = make_optimizer(args.lr, args.steps)
    opt_state = optimizer.init(params)
    step_fn = make_train_step(model, optimizer)
    history: dict[str, list[float]] = {"step": [], "loss": [], "val_step": [], "val_loss": []}
    bar, running = progress(args), None
    tokens, start = 0, time.perf_counter()
    data = batches(train_data, args.context, args.batch_size, k_data)
    for step in range(1, args.steps + 1):
        x, y = next(data)
        params, state, opt_state, loss = step_fn(params, state, opt_state, x, y)
        running = loss if running is None else 0.95 * running + 0.05 * loss
        history["step"].append(step)
        history["loss"].append(loss)
        tokens += x.size
        if bar is not None:
            bar.update()
            bar.set_postfix(loss=f"{running:.3f}", tok_s=f"{tokens / (time.perf_counter() - start):,.0f}")
        if step % args.eval_every == 0 or step == args.steps:
            val = evaluate(model, params, val_data)
            history["val_step"].append(step)
            history["val_loss"].append(val)
            message = (f"step {step:5d}/{args.steps}  train loss {running:.3f}  val loss {val:.3f}  "
                       f"{tokens / (time.perf_counter() - start):,.0f} tokens/s")
            (bar.write if bar is not None else print)(message)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    if args.steps:
        print(f"trained {args.steps} steps in {seconds:.1f}s: {tokens / seconds:,.0f} tokens/s")
    return params, history


def load_model(path: str) -> tuple[layers.Sequential, dict[str, Any], Any, str]:
    """``(model, config, params, vocab)`` from a file written by ``--save`` (a bad file: a one-line exit)."""
    try:
        saved = nptfunc.load(path)
    except OSError as e:
        raise SystemExit(f"--load {path}: cannot read it: {e.strerror or e}") from None
    except ValueError as e:
        raise SystemExit(str(e).replace("\n", " ")) from None
    if not (isinstance(saved, dict) and {"config", "params", "vocab"} <= saved.keys()):
        raise SystemExit(f"--load {path}: expected a file written by train_charlm.py --save")
    config = saved["config"]
    try:
        model = make_model(**config)
    except TypeError:
        raise SystemExit(f"--load {path}: expected a file written by this version of train_charlm.py --save "
                         f"(its config is {config})") from None
    return model, config, saved["params"], saved["vocab"]


def plot(history: dict[str, list[float]], baseline: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["step"], history["loss"], lw=0.6, alpha=0.6, label="train (per step)")
    ax.plot(history["val_step"], history["val_loss"], "o-", label="validation")
    ax.axhline(baseline, ls="--", color="gray", label=f"bigram baseline {baseline:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote the loss curves to {path}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    text = read_text(args.text)
    key = random.key(args.seed)
    if args.load is not None:
        model, config, params, vocab = load_model(args.load)
    else:
        vocab = "".join(sorted(set(text)))
        config = {"vocab_size": len(vocab), "context": args.context, "width": args.width,
                  "n_layers": args.layers, "heads": args.heads, "dropout": args.dropout}
        model = make_model(**config)
    data = encode(text, vocab)
    cut = int(0.9 * len(data))
    train_data, val_data = data[:cut], data[cut:]
    if len(train_data) <= context_of(model) or len(val_data) < 2:
        raise SystemExit(f"the text is too short: {len(data)} characters for windows of {context_of(model)}")
    print(f"corpus: {args.text or 'pydoc_data.topics'}, {len(text):,} characters "
          f"({len(train_data):,} train, {len(val_data):,} validation); vocabulary: {len(vocab)} characters")
    baseline = bigram_loss(train_data, val_data, len(vocab))
    print(f"bigram baseline (add-one counts): val loss {baseline:.3f} nats/char")
    history: dict[str, list[float]] = {}
    if args.load is None:
        params, history = train(args, model, train_data, val_data, key)
        if args.save:
            nptfunc.save({"config": config, "params": params, "vocab": vocab}, args.save)
            print(f"saved the model to {args.save}")
        if args.plot:
            plot(history, baseline, args.plot)
    else:
        print(f"loaded {args.load}: {count_params(params):,} parameters")
    sample = None
    if args.generate:
        prompt = encode(args.prompt, vocab) if args.prompt else data[:1]
        ids = generate(model, params, prompt, args.generate, random.split(key, 4)[3], args.temperature,
                       args.top_k)
        sample = args.prompt + "".join(vocab[i] for i in ids)
        print(f"--- sample ({args.generate} characters, temperature {args.temperature:g}"
              f"{'' if args.top_k is None else f', top-k {args.top_k}'}) ---")
        print(sample)
        print("---")
    val = evaluate(model, params, val_data)
    print(f"val loss: {val:.3f} nats/char")
    return {"val_loss": val, "baseline": baseline, "history": history, "sample": sample, "params": params,
            "ratio": val / baseline if baseline else math.nan}


if __name__ == "__main__":
    main()

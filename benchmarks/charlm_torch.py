"""Tokens/s of examples/train_charlm.py's model and batch, nptfunc against torch CPU, each in its own process.

One step is what the example's training loop does: a batch of ``--batch-size``
windows of ``--context`` characters (random indices, vocabulary 103 as
``pydoc_data.topics``), the GPT's forward (the example's one ``Sequential``:
token + position embedding, ``--layers`` pre-LayerNorm ``TransformerEncoderLayer``
blocks with ReLU, a causal mask and no dropout, a final LayerNorm, a linear head),
the cross-entropy, the backward pass, gradient clipping to norm 1 and an AdamW
update, float32. The torch side builds the same model from ``torch.nn``
(``TransformerEncoderLayer(norm_first=True, batch_first=True)``, ``attn_mask``
plus ``is_causal=True``, so it takes its fused scaled-dot-product path) and runs
``clip_grad_norm_`` and ``optim.AdamW``.

Every measurement is a fresh child process (``--side torch|nptfunc``) with
``--threads`` threads (``OMP/OPENBLAS/MKL_NUM_THREADS`` and
``torch.set_num_threads``): it runs ``--warmup`` steps, times ``--steps`` steps
one by one and prints one JSON line (median and fastest step). The parent runs
``--repeats`` pairs, alternating which side goes first, and prints the medians:
tokens/s of each side and nptfunc's throughput over torch's (issue 16 aims at
``>= 0.67``).

    python benchmarks/charlm_torch.py                   # the example's defaults, 2 threads, 3 repeats
    python benchmarks/charlm_torch.py --threads 1 --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

VOCAB = 103  # the characters of pydoc_data.topics


def batch(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    from nptfunc import random

    rng = random.generator(random.key(0))
    chunk = rng.integers(0, VOCAB, (args.batch_size, args.context + 1))
    return chunk[:, :-1], chunk[:, 1:]


def nptfunc_step(args: argparse.Namespace) -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import train_charlm

    from nptfunc import random

    model = train_charlm.make_model(VOCAB, args.context, args.width, args.layers, args.heads)
    params = model.init(random.key(0))
    optimizer = train_charlm.make_optimizer(3e-3, 1000)
    train_step = train_charlm.make_train_step(model, optimizer)
    carry = [params, model.init_state(random.key(1)), optimizer.init(params)]
    x, y = batch(args)

    def step() -> None:
        carry[0], carry[1], carry[2], _ = train_step(*carry, x, y)

    return step


def torch_step(args: argparse.Namespace) -> Any:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    E, T = args.width, args.context

    class GPT(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = torch.nn.Embedding(VOCAB, E)
            self.pos = torch.nn.Embedding(T, E)
            self.blocks = torch.nn.ModuleList(
                torch.nn.TransformerEncoderLayer(E, args.heads, 4 * E, dropout=0.0, activation="relu",
                                                 batch_first=True, norm_first=True)
                for _ in range(args.layers))
            self.ln_f = torch.nn.LayerNorm(E)
            self.head = torch.nn.Linear(E, VOCAB)
            self.register_buffer("mask", torch.nn.Transformer.generate_square_subsequent_mask(T))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
            for b in self.blocks:
                h = b(h, src_mask=self.mask, is_causal=True)
            return self.head(self.ln_f(h))

    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)
    x, y = (torch.from_numpy(a) for a in batch(args))

    def step() -> None:
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def child(args: argparse.Namespace) -> None:
    step = torch_step(args) if args.side == "torch" else nptfunc_step(args)
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(json.dumps({"median_s": statistics.median(times), "min_s": min(times)}))


def run_child(args: argparse.Namespace, side: str) -> dict[str, float]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(args.threads)
    cmd = [sys.executable, __file__, "--side", side, *(f"--{k.replace('_', '-')}={v}" for k, v in (
        ("steps", args.steps), ("warmup", args.warmup), ("threads", args.threads), ("context", args.context),
        ("width", args.width), ("layers", args.layers), ("heads", args.heads),
        ("batch_size", args.batch_size)))]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the {side} child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parent(args: argparse.Namespace) -> None:
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    tokens = args.batch_size * args.context
    print(f"charlm step: batch {args.batch_size} x context {args.context} = {tokens} tokens, "
          f"width {args.width}, {args.layers} blocks, {args.heads} heads, float32; "
          f"{args.threads} thread(s); {cpu}; "
          f"{args.repeats} repeats of {args.steps} timed steps after {args.warmup}")
    runs: dict[str, list[dict[str, float]]] = {"nptfunc": [], "torch": []}
    for r in range(args.repeats):
        for side in (("nptfunc", "torch") if r % 2 == 0 else ("torch", "nptfunc")):
            runs[side].append(run_child(args, side))
    result = {}
    for side, rs in runs.items():
        median = statistics.median(r["median_s"] for r in rs)
        fastest = min(r["min_s"] for r in rs)
        result[side] = (median, fastest)
        print(f"{side:8s} {median * 1e3:8.1f} ms/step (fastest {fastest * 1e3:.1f})  "
              f"{tokens / median:9,.0f} tokens/s")
    print(f"nptfunc / torch throughput: {result['torch'][0] / result['nptfunc'][0]:.2f} "
          f"(fastest steps: {result['torch'][1] / result['nptfunc'][1]:.2f})")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="runs per side (median; default 3)")
    p.add_argument("--threads", type=int, default=2, help="threads of both sides (default 2)")
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--side", choices=("nptfunc", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()

"""Forward+backward timings of conv, pooling, recurrent and attention layers: nptfunc against torch CPU.

Usage::

    python benchmarks/layers.py [--repeats 50] [--rounds 3] [--threads 2]

Each side runs in its own process (two runtimes' thread pools in one process slow
each other down), ``--rounds`` times, alternating, and the median over all repeats
is reported per case, with the ratio nptfunc / torch (and, to show the noise, the
range of the ratios of each round's two medians).

Environment of both subprocesses: ``OPENBLAS_NUM_THREADS = OMP_NUM_THREADS =
threads``, and ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` removed together (this
machine's defaults force an older OpenBLAS kernel, which slows a current NumPy);
the script prints which BLAS kernel each side then runs (threadpoolctl, if
installed). Other load on the machine shows as noise: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name, layer kind, constructor arguments, input shape
CASES = [
    ("Conv2d(1->32, 3, pad 1) 64x1x28x28", "Conv2d", dict(in_channels=1, out_channels=32, kernel_size=3,
                                                          padding=1), (64, 1, 28, 28)),
    ("Conv2d(32->64, 3, pad 1) 64x32x14x14", "Conv2d", dict(in_channels=32, out_channels=64, kernel_size=3,
                                                            padding=1), (64, 32, 14, 14)),
    ("MaxPool2d(2) 64x32x28x28", "MaxPool2d", dict(kernel_size=2), (64, 32, 28, 28)),
    # (L, N, H_in) = (128, 32, 128), hidden 256, 2 layers; gradients through the output and (h_n, c_n)
    ("LSTM(128->256, 2 layers) 128x32x128", "LSTM", dict(input_size=128, hidden_size=256, num_layers=2),
     (128, 32, 128)),
    ("ConvTranspose2d(64->32, 4, s2, pad 1) 64x64x14x14", "ConvTranspose2d",
     dict(in_channels=64, out_channels=32, kernel_size=4, stride=2, padding=1), (64, 64, 14, 14)),
    ("Upsample(x2, bilinear) 64x64x14x14", "Upsample", dict(scale_factor=2, mode="bilinear"),
     (64, 64, 14, 14)),
    # self-attention (L, N, E) = (128, 32, 256), 8 heads, causal mask, need_weights=False (torch: SDPA)
    ("MultiheadAttention(256, 8) causal 128x32", "MultiheadAttention", dict(embed_dim=256, num_heads=8),
     (128, 32, 256)),
]


def _attention_extras(kind: str, shape: tuple[int, ...], mask: object) -> dict:
    """The keyword arguments of an attention case: the causal mask, as a transformer's self-attention."""
    if kind != "MultiheadAttention":
        return {}
    return {"attn_mask": mask, "is_causal": True, "need_weights": False}

UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _time_all(steps: dict[str, Callable[[], object]], repeats: int, warmup_s: float = 0.3) -> dict:
    """Median-ready timings (ms) of each step, after every step has warmed up.

    All steps are warmed up first, by count and by time, before any is timed: the
    first calls of a shape are slow for a while. The allocator's state depends on
    history too: torch's 32->64 conv timed alone (``--only``) pays ~1500 page faults
    per step (glibc returns its buffers to the OS each step) and takes ~6 ms instead
    of ~4 ms after the other cases have run; the full list gives the steady state.
    """
    for _ in range(2):
        for step in steps.values():
            t_end = time.perf_counter() + warmup_s
            for i in range(10**6):
                if i >= 5 and time.perf_counter() >= t_end:
                    break
                step()
    results = {}
    for name, step in steps.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
        results[name] = times
    return results


def _blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed: BLAS kernel unknown"
    return "; ".join(f"{i.get('internal_api')} {i.get('architecture', '')} threads={i.get('num_threads')}"
                     for i in threadpool_info()) or "no BLAS pool found"


def _normal_like(shapes: tuple) -> object:
    """Standard normal float32 arrays of a shape, or of a (nested) tuple of shapes."""
    import numpy as np

    from nptfunc import random

    if all(isinstance(d, int) for d in shapes):
        return np.asarray(random.normal(random.key(2), shapes, dtype=np.float32))
    return tuple(_normal_like(s) for s in shapes)


def run_nptfunc(repeats: int) -> dict:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from nptfunc import layers, random
    from nptfunc.layers.conv import choose_layout

    steps, chosen = {}, []
    for name, kind, kwargs, shape in CASES:
        layer = getattr(layers, kind)(**kwargs)
        if kind == "Conv2d":
            win = layer.windows(shape)
            layout = choose_layout(layer.in_channels // layer.groups, win, layer.padding_mode)
            chosen.append(f"{name.split(',')[0]}): {layout}")
        if kind == "ConvTranspose2d":  # the layout of the convolution it is the adjoint of
            win = layer.windows(shape)
            layout = choose_layout(layer.out_channels // layer.groups, win, "zeros")
            chosen.append(f"{name.split(',')[0]}): {layout}")
        params = layer.init(random.key(0))
        x = np.asarray(random.normal(random.key(1), shape, dtype=np.float32))
        extras = _attention_extras(kind, shape, np.triu(np.ones((shape[0], shape[0]), bool), 1))
        if extras:  # self-attention: x is (query, key, value), dy (d attn_output, None)
            x = (x, x, x)
            dy = (np.asarray(random.normal(random.key(2), shape, dtype=np.float32)), None)
        else:  # a cotangent for every output array (an LSTM's (output, (h_n, c_n)))
            dy = _normal_like(layer.output_shape(shape))

        def step(layer=layer, params=params, x=x, dy=dy, extras=extras) -> object:
            _, vjp = layer.apply(params, x, **extras)
            return vjp(dy)

        steps[name] = step
    info = f"numpy {np.__version__}; {_blas_info()}; conv layouts: {', '.join(chosen) or '-'}"
    return {"info": info, "times": _time_all(steps, repeats)}


def _tensors(y: object) -> list:
    """The tensors of a module's output: itself, or those of a (nested) tuple (an LSTM's)."""
    return [t for a in y for t in _tensors(a)] if isinstance(y, tuple) else [y]


def run_torch(repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    steps = {}
    for name, kind, kwargs, shape in CASES:
        module = getattr(torch.nn, kind)(**kwargs)
        x = torch.randn(shape, requires_grad=True)
        causal = torch.nn.Transformer.generate_square_subsequent_mask(shape[0])
        extras = _attention_extras(kind, shape, causal)
        args = (x, x, x) if extras else (x,)

        def forward(module=module, args=args, extras=extras) -> object:
            y = module(*args, **extras)
            return y[0] if extras else y

        dy = [torch.randn(t.shape) for t in _tensors(forward())]

        def step(forward=forward, module=module, x=x, dy=dy) -> object:
            x.grad = None
            for p in module.parameters():
                p.grad = None
            y = forward()
            torch.autograd.backward(_tensors(y), dy)
            return x.grad

        steps[name] = step
    info = f"torch {torch.__version__}; torch threads={torch.get_num_threads()}; {_blas_info()}"
    return {"info": info, "times": _time_all(steps, repeats)}


def _child_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating processes per side")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    parser.add_argument("--side", choices=["nptfunc", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    CASES[:] = [c for c in CASES if args.only in c[0]]
    if args.side == "nptfunc":
        print(json.dumps(run_nptfunc(args.repeats)))
        return
    if args.side == "torch":
        print(json.dumps(run_torch(args.repeats, args.threads)))
        return

    env = _child_env(args.threads)
    load0 = os.getloadavg()[0]
    print(f"subprocess env: unset {' and '.join(UNSET)} (were "
          f"{', '.join(f'{k}={os.environ.get(k)!r}' for k in UNSET)}); "
          f"OPENBLAS_NUM_THREADS=OMP_NUM_THREADS={args.threads}")
    times: dict[str, dict[str, list[float]]] = {"nptfunc": {}, "torch": {}}
    round_ratios: dict[str, list[float]] = {}  # per round: median nptfunc / median torch
    info = {}
    for _ in range(args.rounds):
        medians: dict[str, dict[str, float]] = {}
        for side in ("nptfunc", "torch"):
            cmd = [sys.executable, __file__, "--side", side, "--repeats", str(args.repeats),
                   "--threads", str(args.threads), "--only", args.only]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            info[side] = res["info"]
            for name, ts in res["times"].items():
                times[side].setdefault(name, []).extend(ts)
                medians.setdefault(name, {})[side] = statistics.median(ts)
        for name, m in medians.items():
            round_ratios.setdefault(name, []).append(m["nptfunc"] / m["torch"])
    for side in ("nptfunc", "torch"):
        print(f"{side:8s}: {info[side]}")
    load1 = os.getloadavg()[0]
    print(f"1-min load average before/after: {load0:.2f}/{load1:.2f} (other processes on this machine "
          f"disturb the 2-thread BLAS and torch pools: compare on an idle machine)")
    print(f"\nforward+backward, float32, median (and min) of {args.rounds} x {args.repeats} runs, ms")
    print(f"{'case':40s} {'nptfunc':>9s} {'torch':>9s} {'ratio':>7s}   {'min ratio':>9s}   "
          f"{'ratio per round':>15s}")
    for name, *_ in CASES:
        a, b = times["nptfunc"][name], times["torch"][name]
        ma, mb = statistics.median(a), statistics.median(b)
        spread = f"{min(round_ratios[name]):.2f}-{max(round_ratios[name]):.2f}"
        print(f"{name:40s} {ma:9.3f} {mb:9.3f} {ma / mb:7.2f}   {min(a) / min(b):9.2f}   {spread:>15s}")


if __name__ == "__main__":
    main()

"""One optimizer update: nptfunc's ``opt.update`` and ``Adam.step()`` against ``torch.optim``'s ``step()``.

Each measurement is a fresh child process (``--side torch|nptfunc|facade``) that builds
float32 params and fixed random gradients, runs a time-based warm-up, then times
``--steps`` updates one by one and prints one JSON line per case (median and
fastest update, ms; minor page faults per update). The parent runs ``--repeats``
such pairs, alternating which side goes first, and reports the median over the
runs and the ratio nptfunc / torch. Cases (param shapes):

* ``mlp``: Linear(784, 256) + Linear(256, 10), as a Sequential's params tree;
* ``refcnn``: one (128, 12544) weight, the big Linear of the reference CNN;
* ``tiny``: the ``mlp`` tree with one element per array: the fixed cost per update;
* ``many``: 30 small arrays (ten (64, 64) weights with biases, five (16, 16, 3, 3)
  kernels with biases), where per-array work dominates.

Optimizers: ``adam`` (lr 1e-3) and ``sgdm`` (SGD, lr 1e-2, momentum 0.9). The
nptfunc side carries ``state, params = opt.update(state, grads)`` from update to
update, as a training loop does (the old state is dropped after each update);
the ``facade`` side is ``optim.Adam(params)`` / ``optim.SGD`` over ``nn.Parameter``
objects (``.grad`` set once, ``optimizer.step()``); the torch side sets ``.grad``
once and calls ``optimizer.step()`` of ``torch.optim`` with ``foreach=True`` (its
multi-tensor implementation; on the CPU torch's default is one tensor at a time).
The table prints the CPU model and vendor first.

Both children get 2 threads (``OMP/OPENBLAS/MKL_NUM_THREADS=2`` and
``torch.set_num_threads(2)``) and run without ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE``, as ``benchmarks/train_step.py`` does.

    python benchmarks/optim_update.py                    # all cases, 5 repeats
    python benchmarks/optim_update.py --case mlp --opt adam --repeats 9
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CASES = ("mlp", "refcnn", "tiny", "many")
SIDES = ("nptfunc", "facade", "torch")
OPTS = ("adam", "sgdm")
ROOT = Path(__file__).resolve().parent.parent


def _shapes(case: str) -> list[list[tuple[int, ...]]]:
    """The param shapes of a case, grouped by layer."""
    if case == "refcnn":
        return [[(128, 12544)]]
    if case == "tiny":
        return [[(1, 1), (1,)], [(1, 1), (1,)]]
    if case == "many":
        return [[(64, 64), (64,)]] * 10 + [[(16, 16, 3, 3), (16,)]] * 5
    return [[(256, 784), (256,)], [(10, 256), (10,)]]


def _arrays(case: str, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s, dtype=np.float32) * 0.1 for s in layer] for layer in _shapes(case)]


# ------------------------------------------------------------------------ sides
def nptfunc_update(case: str, opt_name: str) -> Callable[[], None]:
    sys.path.insert(0, str(ROOT))  # this checkout's nptfunc
    from nptfunc import optim
    from nptfunc.layers.linear import LinearParams

    def tree(arrays: list[list[np.ndarray]]) -> Any:  # a Sequential's params: a tuple per layer
        return tuple(LinearParams(*layer) if len(layer) == 2 else layer[0] for layer in arrays)

    params, grads = tree(_arrays(case, 0)), tree(_arrays(case, 1))
    opt = optim.adam(lr=1e-3) if opt_name == "adam" else optim.sgd(lr=1e-2, momentum=0.9)
    carry = [opt.init(params)]

    def update() -> None:
        carry[0], _ = opt.update(carry[0], grads)

    return update


def facade_update(case: str, opt_name: str) -> Callable[[], None]:
    sys.path.insert(0, str(ROOT))
    from nptfunc import nn, optim

    params = [nn.Parameter(a) for layer in _arrays(case, 0) for a in layer]
    for p, g in zip(params, [a for layer in _arrays(case, 1) for a in layer], strict=True):
        p.grad = g
    opt = optim.Adam(params, lr=1e-3) if opt_name == "adam" else optim.SGD(params, lr=1e-2, momentum=0.9)
    return opt.step


def torch_update(case: str, opt_name: str, threads: int) -> Callable[[], None]:
    import torch

    torch.set_num_threads(threads)
    params = [torch.tensor(a, requires_grad=True) for layer in _arrays(case, 0) for a in layer]
    for p, g in zip(params, [a for layer in _arrays(case, 1) for a in layer], strict=True):
        p.grad = torch.tensor(g)
    opt = (torch.optim.Adam(params, lr=1e-3, foreach=True) if opt_name == "adam"
           else torch.optim.SGD(params, lr=1e-2, momentum=0.9, foreach=True))
    return opt.step


# ------------------------------------------------------------------------ child
def child(args: argparse.Namespace) -> None:
    make = {"torch": lambda c, o: torch_update(c, o, args.threads), "nptfunc": nptfunc_update,
            "facade": facade_update}[args.side]
    updates = {(c, o): make(c, o) for c in args.case for o in args.opt}
    for update in updates.values():  # the first calls of a shape are slow for a while
        t_end = time.perf_counter() + args.warmup
        for i in range(10**6):
            if i >= 5 and time.perf_counter() >= t_end:
                break
            update()
    for (case, opt_name), update in updates.items():
        steps = args.steps or (30 if case == "refcnn" else 200)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            update()
            times.append(time.perf_counter() - t0)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        print(json.dumps({"case": case, "opt": opt_name, "ms": 1000 * statistics.median(times),
                          "best_ms": 1000 * min(times), "faults": faults / steps}))


# ----------------------------------------------------------------------- parent
def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(name, None)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    return env


def run_child(args: argparse.Namespace, side: str) -> list[dict[str, Any]]:
    cmd = [sys.executable, __file__, "--side", side, "--threads", str(args.threads),
           "--warmup", str(args.warmup), *(["--steps", str(args.steps)] if args.steps else []),
           *[a for c in args.case for a in ("--case", c)], *[a for o in args.opt for a in ("--opt", o)]]
    done = subprocess.run(cmd, env=child_env(args.threads), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed:\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def parent(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    load = os.getloadavg()[0]
    for r in range(args.repeats):
        for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
            runs[side].extend(run_child(args, side))
    load = max(load, os.getloadavg()[0])
    print(f"CPU: {cpu_model()}; {args.threads} thread(s); {time.strftime('%Y-%m-%d')}")
    print(f"{'case':7s} {'opt':5s} {'nptfunc ms':>10s} {'facade ms':>9s} {'torch ms':>9s} {'ratio':>6s} "
          f"{'ratio best':>10s} {'facade/core':>11s} {'faults/update nptfunc, torch':>29s}")
    for case in args.case:
        for opt_name in args.opt:
            med = {side: {k: statistics.median(r[k] for r in rs if r["case"] == case and r["opt"] == opt_name)
                          for k in ("ms", "best_ms", "faults")} for side, rs in runs.items()}
            n, f, t = med["nptfunc"], med["facade"], med["torch"]
            print(f"{case:7s} {opt_name:5s} {n['ms']:10.3f} {f['ms']:9.3f} {t['ms']:9.3f} "
                  f"{n['ms'] / t['ms']:6.2f} "
                  f"{n['best_ms'] / t['best_ms']:10.2f} {f['ms'] / n['ms']:11.2f} "
                  f"{n['faults']:18.0f}, {t['faults']:.0f}")
    print(f"\nmedian of {args.repeats} runs per side, {args.threads} threads"
          + (f"; warning: load average {load:.1f}, timings unreliable" if load > 0.5 else ""))


def cpu_model() -> str:
    """The CPU's model name and vendor, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}
    except OSError:
        return "unknown CPU"
    vendor = fields.get("vendor_id", "unknown vendor")
    vendor = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(vendor, vendor)
    return f"{fields.get('model name', 'unknown CPU')} ({vendor})"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", action="append", choices=CASES, help="repeat for several (default: all)")
    p.add_argument("--opt", action="append", choices=OPTS, help="repeat for several (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="runs per side (median; default 5)")
    p.add_argument("--steps", type=int, help="timed updates per run (default 200, refcnn 30)")
    p.add_argument("--warmup", type=float, default=0.3, help="seconds of warm-up per case (default 0.3)")
    p.add_argument("--threads", type=int, default=2, help="threads of both sides (default 2)")
    p.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.case = args.case or list(CASES)
    args.opt = args.opt or list(OPTS)
    if args.side:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()

"""Training-step time of nptfunc against torch CPU, each side in its own process.

One step is forward + loss + backward + Adam update, float32, batch 64, random
MNIST-shaped data ``(64, 1, 28, 28)``. Cases:

* ``mlp``: Flatten, Linear(784, 256), ReLU, Linear(256, 10);
* ``refcnn``: the reference project's CNN, Conv2d(1, 16, 3, padding=1), Flatten,
  Linear(16*28*28, 128), BatchNorm1d(128), Tanh, Linear(128, 10);
* ``lenet``: Conv2d(1, 32, 3, p=1), ReLU, MaxPool2d(2), Conv2d(32, 64, 3, p=1),
  BatchNorm2d(64), ReLU, MaxPool2d(2), Flatten, Linear(3136, 128), ReLU,
  Dropout(0.5), Linear(128, 10) (``examples/_digits.cnn(28)``);
* ``lenet-eval``: the same model's evaluation-mode forward (no gradients);
* ``mlp-facade``, ``lenet-sequential``: the ``mlp`` and ``lenet`` models trained the
  torch way through the facade: ``nn.Sequential``, ``optim.Adam(model.parameters())``,
  ``loss.backward()``, ``optimizer.step()`` (the torch side is the same as for
  ``mlp`` and ``lenet``). The summary also prints each one's time over its core
  case's (issue 17 asks for at most 1.1);
* ``lenet-facade``: the same LeNet as a torch-style ``nn.Module`` with a custom
  ``forward`` (``F.relu``, ``F.max_pool2d``, ``torch.flatten``) through
  ``nptfunc.torch``: ``F.cross_entropy(...).backward()`` on the tape,
  ``optim.Adam``. Its time over ``lenet``'s is the tape's cost (issue 15 asks for
  at most 1.15).

Every measurement is a fresh child process (``--side torch|nptfunc --case C``)
that builds its model, runs ``--warmup`` steps, then times ``--steps`` steps one
by one and prints one JSON line: the median and the fastest step (ms), peak RSS
(``ru_maxrss``), the RSS the steps added over what the process held before them,
and minor page faults per step. The parent runs ``--repeats`` rounds, each one
pair of children per case (alternating which side goes first), so that every case
is sampled over the same stretches of the run, and reports the medians over the runs:
the ratio of median steps is the result; the ratio of the fastest steps is a
check that is less sensitive to other load on the machine (a 2-thread torch
slows down badly when another process takes a core).

Both children get 2 threads (``OMP/OPENBLAS/MKL_NUM_THREADS=2``, and
``torch.set_num_threads(2)``) and run without ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE``: some machines set those for old OpenBLAS builds, and they
slow a current NumPy's (pass ``--keep-openblas-env`` to keep them). ``--threads 1``
runs both sides on one thread: the fairest comparison of the arithmetic, and
the least disturbed by other load. The NumPy side prints the OpenBLAS kernel it
runs (threadpoolctl, when installed); the header names the CPU model and vendor,
so tables from different machines are not mixed up.
``--tune-malloc`` runs both sides with glibc's ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` raised, so that large temporaries are reused instead of
page-faulted anew every step: see ``docs/performance.md``.

    python benchmarks/train_step.py                     # all cases, 5 repeats
    python benchmarks/train_step.py --case mlp --repeats 9 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

CASES = ("mlp", "refcnn", "lenet", "lenet-eval", "mlp-facade", "lenet-sequential", "lenet-facade")
# issue 17's bars (nptfunc / torch, medians): the core cases, and the facade's loops at their core case's bar
BAR = {"mlp": 1.0, "refcnn": 1.0, "lenet": 1.2, "lenet-eval": 0.9, "mlp-facade": 1.0, "lenet-sequential": 1.2,
       "lenet-facade": 1.2}
INFO_KEYS = ("numpy", "blas", "torch", "nptfunc_threads")  # what the children report of themselves
# the facade's step over its core case's: issue 17's bar for the torch-style Sequential loops, issue 15's
# for the tape running a custom forward
OVER_CORE_BAR = {"mlp-facade": 1.1, "lenet-sequential": 1.1, "lenet-facade": 1.15}
SEQUENTIAL = {"mlp-facade": "mlp", "lenet-sequential": "lenet",  # the facade's loop -> core case
              "lenet-facade": "lenet"}
BATCH = 64
ROOT = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    """The current resident set size of this process (Linux), in MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _batches(n: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` random MNIST-shaped batches, the same on both sides."""
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((BATCH, 1, 28, 28), dtype=np.float32),
             rng.integers(0, 10, size=BATCH).astype(np.int64)) for _ in range(n)]


# ------------------------------------------------------------------------ nptfunc
def nptfunc_step(case: str) -> Any:
    """A ``step(i)`` closure for the nptfunc side; the model state lives in the closure's cell."""
    sys.path[:0] = [str(ROOT), str(ROOT / "examples")]  # this checkout's nptfunc, the examples' model
    import _digits

    from nptfunc import layers, optim, random

    models = {
        "mlp": lambda: layers.Sequential(
            layers.Flatten(), layers.Linear(784, 256), layers.ReLU(), layers.Linear(256, 10)),
        "refcnn": lambda: layers.Sequential(
            layers.Conv2d(1, 16, 3, padding=1), layers.Flatten(), layers.Linear(16 * 28 * 28, 128),
            layers.BatchNorm1d(128), layers.Tanh(), layers.Linear(128, 10)),
        "lenet": lambda: _digits.cnn(28),
    }
    if case == "lenet-facade":
        return _forward_lenet_step()
    if case in SEQUENTIAL:
        return nptfunc_facade_step(SEQUENTIAL[case])
    model = models[case.removesuffix("-eval")]()
    k_params, k_state = random.split(random.key(0))
    params, state = model.init(k_params), model.init_state(k_state)
    batches = _batches()
    if case.endswith("-eval"):
        def step(i: int) -> None:
            x, _ = batches[i % len(batches)]
            model.apply(params, x, state, train=False)

        return step
    optimizer = optim.adam(lr=1e-3)
    train_step = _digits.make_train_step(model, optimizer)
    carry = [params, state, optimizer.init(params)]

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        p, s, o, _ = train_step(*carry, x, y)
        carry[:] = [p, s, o]

    return step


def _forward_lenet_step() -> Any:
    """The ``lenet`` step written as a torch script on ``nptfunc.torch`` (a custom-forward module)."""
    import nptfunc.torch as nt

    nn, F = nt.nn, nt.nn.functional

    class LeNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
            self.bn, self.drop = nn.BatchNorm2d(64), nn.Dropout(0.5)
            self.fc1, self.fc2 = nn.Linear(3136, 128), nn.Linear(128, 10)

        def forward(self, x: Any) -> Any:
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.bn(self.conv2(x))), 2)
            return self.fc2(self.drop(F.relu(self.fc1(nt.flatten(x, 1)))))

    nt.manual_seed(0)
    model = LeNet()
    optimizer = nt.optim.Adam(model.parameters(), lr=1e-3)
    batches = [(nt.from_numpy(x), nt.from_numpy(y)) for x, y in _batches()]

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def nptfunc_facade_step(case: str) -> Any:
    """The torch-style loop through the facade: Sequential, Adam(model.parameters()), backward, step."""
    from nptfunc import nn, optim

    models = {
        "mlp": lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 256, key=0), nn.ReLU(),
                                     nn.Linear(256, 10, key=1)),
        "lenet": lambda: nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, key=0), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, key=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 128, key=2), nn.ReLU(), nn.Dropout(0.5, key=3),
            nn.Linear(128, 10, key=4)),
    }
    model = models[case]()
    model.train()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    batches = _batches()

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def nptfunc_info() -> dict[str, Any]:
    from nptfunc import backend

    info: dict[str, Any] = {"numpy": np.__version__, "nptfunc_threads": backend.get_num_threads()}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
        return info
    info["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                    for d in threadpool_info() if d.get("user_api") == "blas"]
    return info


# -------------------------------------------------------------------------- torch
def torch_step(case: str, threads: int) -> Any:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    models = {
        "mlp": lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)),
        "refcnn": lambda: nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.Flatten(), nn.Linear(16 * 28 * 28, 128),
            nn.BatchNorm1d(128), nn.Tanh(), nn.Linear(128, 10)),
        "lenet": lambda: nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10)),
    }
    model = models[SEQUENTIAL.get(case, case).removesuffix("-eval")]()
    batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in _batches()]
    if case.endswith("-eval"):
        model.eval()

        def step(i: int) -> None:
            with torch.no_grad():
                model(batches[i % len(batches)][0])

        return step
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def torch_info() -> dict[str, Any]:
    import torch

    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}


# -------------------------------------------------------------------------- child
def child(args: argparse.Namespace) -> None:
    step = torch_step(args.case, args.threads) if args.side == "torch" else nptfunc_step(args.case)
    for i in range(args.warmup):
        step(i)
    rss_before = _rss_mb()
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for i in range(args.steps):
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "side": args.side,
        "case": args.case,
        "ms": 1000 * statistics.median(times),
        "mean_ms": 1000 * statistics.fmean(times),
        "best_ms": 1000 * min(times),
        "peak_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "rss_before_mb": rss_before,
        "faults_per_step": (usage.ru_minflt - faults_before) / args.steps,
        **(torch_info() if args.side == "torch" else nptfunc_info()),
    }
    print(json.dumps(out))


# ------------------------------------------------------------------------- parent
def child_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if not args.keep_openblas_env:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(args.threads)
    if args.tune_malloc:  # glibc keeps freed memory instead of unmapping it (page faults) each step
        env["MALLOC_MMAP_THRESHOLD_"] = str(2**27)
        env["MALLOC_TRIM_THRESHOLD_"] = str(2**29)
    return env


def run_child(args: argparse.Namespace, side: str, case: str) -> dict[str, Any]:
    steps = args.steps if args.steps is not None else (100 if case.startswith("mlp") else 30)
    cmd = [sys.executable, __file__, "--side", side, "--case", case, "--steps", str(steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads)]
    done = subprocess.run(cmd, env=child_env(args), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} {case} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_model() -> tuple[str, str]:
    """(the CPU's model name, its vendor), from /proc/cpuinfo where there is one."""
    model, vendor = platform.processor() or "unknown CPU", "unknown vendor"
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return model, vendor
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    model = fields.get("model name", model)
    vendor = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(fields.get("vendor_id", ""),
                                                                 fields.get("vendor_id", vendor))
    return model, vendor


def machine() -> str:
    model, vendor = cpu_model()
    return (f"{model} ({vendor}), {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()}")


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its children).

    The difference over an interval is what other processes used; ``(0, 0)`` where
    ``/proc/stat`` cannot be read.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    own = sum(getattr(resource.getrusage(who), f)
              for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    return busy, own


def probe() -> dict[str, float]:
    """How fast this machine is just now: a float32 GEMM on one core and on all at once, a copy (medians).

    Hosts shared with other machines slow down from one hour to the next (the same
    step 1.5x slower, no process of ours running, and two threads hardly faster than
    one); printed before and after a run, this tells a slow hour from a slow library.
    """
    a = np.random.default_rng(0).standard_normal((512, 512), dtype=np.float32)
    src, dst = np.ones(1 << 23, np.float32), np.empty(1 << 23, np.float32)  # 32 MB each
    gemm, copy = [], []
    for _ in range(30):
        t = time.perf_counter()
        a @ a
        gemm.append(time.perf_counter() - t)
    for _ in range(10):
        t = time.perf_counter()
        np.copyto(dst, src)
        copy.append(time.perf_counter() - t)
    both = []  # the same product on every core at once: how much of the cores the host gives us
    cores = os.cpu_count() or 1
    for _ in range(10):
        threads = [threading.Thread(target=lambda: [a @ a for _ in range(4)]) for _ in range(cores)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        both.append(time.perf_counter() - t)
    return {"gflops": 2 * 512**3 / statistics.median(gemm) / 1e9,
            "copy_gbs": 2 * src.nbytes / statistics.median(copy) / 1e9,
            "all_cores_gflops": 4 * cores * 2 * 512**3 / statistics.median(both) / 1e9, "cores": cores}


def run_probe(args: argparse.Namespace) -> str:
    """:func:`probe` in a child of one thread, as text."""
    env = {**child_env(args), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, __file__, "--side", "probe"], env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        return "probe failed"
    res = json.loads(done.stdout.strip().splitlines()[-1])
    return (f"sgemm {res['gflops']:.1f} GFLOP/s ({res['all_cores_gflops']:.1f} on all {res['cores']} cores "
            f"at once: {res['all_cores_gflops'] / res['gflops']:.2f} cores' worth), "
            f"memory copy {res['copy_gbs']:.1f} GB/s")


def parent(args: argparse.Namespace) -> None:
    cases = args.case or list(CASES)
    model, vendor = cpu_model()
    print(f"CPU: {model} ({vendor}); {args.threads} thread{'s' if args.threads > 1 else ''}"
          f"{'; --tune-malloc' if args.tune_malloc else ''}; {time.strftime('%Y-%m-%d')}", flush=True)
    before = run_probe(args)
    print(f"machine speed (one thread, medians): {before}", flush=True)
    rows = []
    info: dict[str, Any] = {}
    busy0, own0, wall0 = *cpu_seconds(), time.perf_counter()
    # rounds over all cases, so that every case (and a facade loop and its core case) samples the same
    # stretches of the host's time, not one quiet and another busy quarter of an hour
    results = {case: {"nptfunc": [], "torch": []} for case in cases}
    for r in range(args.repeats):
        for case in cases:
            for side in (("torch", "nptfunc") if r % 2 == 0 else ("nptfunc", "torch")):
                res = run_child(args, side, case)
                results[case][side].append(res)
                info.update({k: v for k, v in res.items() if k in INFO_KEYS})
        print(f"round {r + 1} of {args.repeats} done", file=sys.stderr, flush=True)
    for case in cases:
        med = {side: {k: statistics.median(r[k] for r in rs)
                      for k in ("ms", "best_ms", "peak_mb", "rss_before_mb", "faults_per_step")}
               for side, rs in results[case].items()}
        ratio = med["nptfunc"]["ms"] / med["torch"]["ms"]
        rows.append((case, med, ratio))
        print(f"{case:11s} nptfunc {med['nptfunc']['ms']:8.2f} ms  torch {med['torch']['ms']:8.2f} ms  "
              f"ratio {ratio:5.2f} (bar {BAR[case]}; of the best steps "
              f"{med['nptfunc']['best_ms'] / med['torch']['best_ms']:.2f})  "
              f"peak MB nptfunc {med['nptfunc']['peak_mb']:.0f} "
              f"torch {med['torch']['peak_mb']:.0f}  faults/step nptfunc "
              f"{med['nptfunc']['faults_per_step']:.0f} torch {med['torch']['faults_per_step']:.0f}",
              flush=True)
    by_case = {case: med for case, med, _ in rows}
    for case in cases:
        core = SEQUENTIAL.get(case)
        if core in by_case:
            facade, ours = by_case[case]["nptfunc"], by_case[core]["nptfunc"]
            print(f"{case} / {core} (the facade's step over the core's): {facade['ms'] / ours['ms']:.2f} "
                  f"(of the best steps {facade['best_ms'] / ours['best_ms']:.2f}; bar {OVER_CORE_BAR[case]})")
    print()
    busy1, own1, wall1 = *cpu_seconds(), time.perf_counter()
    others = max(busy1 - busy0 - (own1 - own0), 0.0) / ((wall1 - wall0) * (os.cpu_count() or 1))
    print(f"other processes used {100 * others:.0f}% of the machine's CPU time during the run")
    after = run_probe(args)
    print(f"machine speed (one thread, medians): before the run {before}; after it {after}")
    if others > 0.05:
        print(f"warning: the machine was busy: {args.threads}-thread timings, torch's above all, are "
              "unreliable on a busy machine; trust the ratio of the best steps more, or rerun on a quiet "
              "machine")
    print(f"machine: {machine()}")
    print(f"numpy {info.get('numpy')}, BLAS {info.get('blas')}, "
          f"nptfunc threads {info.get('nptfunc_threads')}; torch {info.get('torch')}; "
          f"{args.threads} threads; median of {args.repeats} runs per side"
          f"{'; glibc malloc tuned (--tune-malloc)' if args.tune_malloc else ''}")
    if args.markdown:
        print()
        print(f"{model} ({vendor}), {args.threads} thread{'s' if args.threads > 1 else ''}, "
              f"{time.strftime('%Y-%m-%d')}{', --tune-malloc' if args.tune_malloc else ''} "
              f"(machine speed before: {before}; after: {after}):")
        print()
        print("| case | nptfunc ms/step | torch ms/step | ratio | bar | ratio of best steps "
              "| peak RSS nptfunc (MB) "
              "| peak RSS torch (MB) | RSS added by the steps nptfunc / torch (MB) "
              "| page faults/step nptfunc / torch |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for case, med, ratio in rows:
            n, t = med["nptfunc"], med["torch"]
            print(f"| {case} | {n['ms']:.2f} | {t['ms']:.2f} | {ratio:.2f} | {BAR[case]} "
                  f"| {n['best_ms'] / t['best_ms']:.2f} "
                  f"| {n['peak_mb']:.0f} | {t['peak_mb']:.0f} "
                  f"| {n['peak_mb'] - n['rss_before_mb']:.0f} / {t['peak_mb'] - t['rss_before_mb']:.0f} "
                  f"| {n['faults_per_step']:.0f} / {t['faults_per_step']:.0f} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", action="append", choices=CASES, help="repeat for several (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="runs per side and case (median; default 5)")
    p.add_argument("--steps", type=int, help="timed steps per run (default 100 for mlp, 30 otherwise)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--threads", type=int, default=2, help="threads of both sides (default 2)")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the children")
    p.add_argument("--tune-malloc", action="store_true",
                   help="run both sides with MALLOC_MMAP_THRESHOLD_=128 MiB and MALLOC_TRIM_THRESHOLD_="
                        "512 MiB (glibc): large temporaries are then reused instead of page-faulted anew")
    p.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    p.add_argument("--side", choices=("nptfunc", "torch", "probe"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side == "probe":
        print(json.dumps(probe()))
    elif args.side:
        args.case = args.case[0]
        args.steps = args.steps or 30
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()

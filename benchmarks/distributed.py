"""Data-parallel scaling of a training step on MPI ranks: steps/s, samples/s, time in collectives.

The model is ``lenet`` (``examples/_digits.cnn(28)``, as in ``train_step.py``), float32,
random MNIST-shaped data; one step is forward + loss + backward +
``distributed.allreduce_mean`` of the gradients + Adam, with the global batch split
evenly over the ranks. Every rank runs one thread (``OMP/OPENBLAS/MKL_NUM_THREADS=1``).

The parent starts ``mpiexec -n W python benchmarks/distributed.py --child ...``:

* ``W = 1`` for every per-rank batch the estimate needs (the global batches and
  their shares at 8 and 64 ranks), so the compute time of a share is measured,
  not assumed to shrink linearly;
* ``W = 2`` for each global batch: step time, and the time spent in
  ``allreduce_mean`` per step (packing, the ``Allreduce``, waiting for the other rank);
  then a probe of the collective alone: ``Allreduce`` of one 8-byte value
  (latency ``a``) and of a buffer the size of the gradients, ``M`` bytes.

The estimate for ``W`` ranks and global batch ``B`` is
``T(W) = T1(B / W) + t_pack + 2 (W - 1) a + 2 (W - 1) / W * M / bw``, a ring
allreduce with the measured latency ``a`` and bandwidth ``bw = M / (t(M) - t(8 B))``
(at ``W = 2`` the ring moves ``M`` bytes each way), and the strong-scaling
efficiency is ``T1(B) / (W T(W))``. On one machine ``bw`` is a shared-memory copy;
across machines put the network's bandwidth in with ``--bandwidth`` (GB/s) and
its latency with ``--latency`` (us).

    python benchmarks/distributed.py                   # a short run (~1 min on an idle 2-core machine)
    python benchmarks/distributed.py --steps 30 --bandwidth 1.2 --latency 20   # a 10 Gb/s network
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GLOBAL_BATCHES = (128, 512)
ESTIMATE_RANKS = (8, 64)


# -------------------------------------------------------------------------- child
def child(args: argparse.Namespace) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "examples")]
    import _digits
    from mpi4py import MPI

    from nptfunc import distributed, optim, random, tree

    rank, world = distributed.rank(), distributed.world_size()
    model = _digits.cnn(28)
    k_params, k_state, k_data = random.split(random.key(0), 3)
    params0 = distributed.broadcast(model.init(k_params))
    results = []
    for batch in args.batch:
        local = batch // world
        k = random.fold_in(k_data, rank)
        x = random.normal(k, (local, 1, 28, 28), dtype=np.float32)
        y = random.generator(k).integers(0, 10, size=local)
        comm_seconds: list[float] = []

        def reduce(grads: Any, comm_seconds: list[float] = comm_seconds) -> Any:
            start = time.perf_counter()
            out = distributed.allreduce_mean(grads)
            comm_seconds.append(time.perf_counter() - start)
            return out

        optimizer = optim.adam(lr=1e-3)
        step = _digits.make_train_step(model, optimizer, reduce_grads=reduce if world > 1 else None)
        carry = (params0, model.init_state(random.fold_in(k_state, rank)), optimizer.init(params0))
        times = []
        for i in range(args.warmup + args.steps):
            distributed.barrier()
            start = time.perf_counter()
            p, s, o, _ = step(*carry, x, y)
            carry = (p, s, o)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        comm = comm_seconds[args.warmup:]
        results.append({"world": world, "batch": batch, "step_ms": 1e3 * statistics.median(times),
                        "comm_ms": 1e3 * statistics.median(comm) if comm else 0.0})

    probe: dict[str, float] = {}
    if world > 1:
        c = MPI.COMM_WORLD
        grad_bytes = sum(a.nbytes for a in tree.tree_leaves(params0))

        def timed(f: Any, n: int) -> float:
            ts = []
            for _ in range(n):
                c.Barrier()
                start = time.perf_counter()
                f()
                ts.append(time.perf_counter() - start)
            return statistics.median(ts)

        tiny = np.zeros(1)
        big = np.zeros(grad_bytes // 4, dtype=np.float32)
        probe = {
            "grad_bytes": grad_bytes,
            "tiny_s": timed(lambda: c.Allreduce(MPI.IN_PLACE, tiny, op=MPI.SUM), 50),
            "big_s": timed(lambda: c.Allreduce(MPI.IN_PLACE, big, op=MPI.SUM), args.probes),
            "tree_s": timed(lambda: distributed.allreduce_mean(params0), args.probes),
        }
    if rank == 0:
        print(json.dumps({"results": results, "probe": probe}), flush=True)


# ------------------------------------------------------------------------- parent
def mpiexec() -> str:
    beside = Path(sysconfig.get_path("scripts")) / "mpiexec"
    found = str(beside) if beside.is_file() else shutil.which("mpiexec")
    if not found:
        raise SystemExit("no mpiexec: pip install -e '.[mpi]'")
    return found


def run(world: int, batches: list[int], args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [mpiexec(), "-n", str(world), sys.executable, __file__, "--child", "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--probes", str(args.probes)]
    for b in batches:
        cmd += ["--batch", str(b)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parent(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_step import cpu_seconds, machine

    busy0, own0, wall0 = *cpu_seconds(), time.perf_counter()
    shares = sorted({b // w for b in GLOBAL_BATCHES for w in (1, *ESTIMATE_RANKS)})
    one = {r["batch"]: r for r in run(1, shares, args)["results"]}
    two_run = run(2, list(GLOBAL_BATCHES), args)
    two = {r["batch"]: r for r in two_run["results"]}
    probe = two_run["probe"]
    busy1, own1, wall1 = *cpu_seconds(), time.perf_counter()

    print("| ranks | global batch | ms/step | steps/s | samples/s | ms/step in allreduce_mean | efficiency |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for b in GLOBAL_BATCHES:
        for r in (one[b], two[b]):
            ms = r["step_ms"]
            eff = one[b]["step_ms"] / (r["world"] * ms)
            print(f"| {r['world']} | {b} | {ms:.1f} | {1e3 / ms:.1f} | {b * 1e3 / ms:.0f} "
                  f"| {r['comm_ms']:.2f} | {eff:.2f} |")

    m = probe["grad_bytes"]
    latency = args.latency * 1e-6 if args.latency is not None else probe["tiny_s"] / 2
    bandwidth = (args.bandwidth * 1e9 if args.bandwidth is not None
                 else m / max(probe["big_s"] - probe["tiny_s"], 1e-9))
    pack = max(probe["tree_s"] - probe["big_s"], 0.0)
    print()
    print(f"collective probe at 2 ranks: Allreduce of 8 B {1e6 * probe['tiny_s']:.1f} us, of the gradients "
          f"({m / 1e6:.2f} MB float32) {1e3 * probe['big_s']:.2f} ms, allreduce_mean of the params tree "
          f"{1e3 * probe['tree_s']:.2f} ms (packing and unpacking {1e3 * pack:.2f} ms)")
    print(f"estimate with latency {1e6 * latency:.1f} us and bandwidth {bandwidth / 1e9:.2f} GB/s"
          f"{' (given)' if args.bandwidth is not None else ' (measured)'}:")
    print()
    print("| ranks | global batch | per rank | compute ms (measured at 1 rank) | allreduce ms | ms/step "
          "| samples/s | efficiency |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for b in GLOBAL_BATCHES:
        for w in ESTIMATE_RANKS:
            compute = one[b // w]["step_ms"] / 1e3
            comm = pack + 2 * (w - 1) * latency + 2 * (w - 1) / w * m / bandwidth
            total = compute + comm
            eff = one[b]["step_ms"] / 1e3 / (w * total)
            print(f"| {w} | {b} | {b // w} | {1e3 * compute:.1f} | {1e3 * comm:.2f} | {1e3 * total:.1f} "
                  f"| {b / total:.0f} | {eff:.2f} |")
    others = max(busy1 - busy0 - (own1 - own0), 0.0) / ((wall1 - wall0) * (os.cpu_count() or 1))
    print()
    print(f"other processes used {100 * others:.0f}% of the machine's CPU time during the run; "
          f"machine: {machine()}; median of {args.steps} steps after {args.warmup} warm-up steps")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8, help="timed steps per case (median; default 8)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--probes", type=int, default=20, help="timed Allreduce calls of the probe (default 20)")
    p.add_argument("--bandwidth", type=float, help="GB/s for the estimate instead of the measured one")
    p.add_argument("--latency", type=float, help="us for the estimate instead of the measured one")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, action="append", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()

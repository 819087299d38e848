"""Data-parallel training over MPI: measured on this machine, and modelled for N machines on a network.

    python benchmarks/mpi_scaling.py [--steps 6] [--repeats 10]

Measures, for the default model (LSTM 2x512, vocabulary 65, one-hot input, sequence length 64) at global
batch 64, one training step as `chainrule train` takes it (forward on this rank's rows, cross-entropy,
backward, the gradients' Allreduce, clip_grad_norm_, Adam):
  1. one process with 2 BLAS threads (OPENBLAS_NUM_THREADS=2, all 64 rows);
  2. `mpiexec -n 2`, each rank with 1 BLAS thread and 32 rows; the Allreduce's share of the step;
  3. the Allreduce of the model's gradient alone (one flat float32 buffer), at 2 ranks on this machine.
Then prints a model of the step time on N machines (one rank each, weak scaling: 64 rows per machine, global
batch 64 N) on 10 and 100 Gb/s networks, for a ring Allreduce without overlap:
    t_step(N) = t_compute + 2 (N - 1) / N x bytes / bandwidth + 2 (N - 1) x latency
and the largest N at which the efficiency t_compute / t_step stays above 90%. The mpiexec used is the one next
to this Python (the mpich wheel), else the one on PATH. Each measurement runs in its own process(es).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

VOCABULARY, HIDDEN, LAYERS, SEQ_LEN, BATCH = 65, 512, 2, 64, 64
NETWORKS = {"10 Gb/s (TCP, ~50 us latency)": (10e9, 50e-6), "100 Gb/s (RDMA, ~5 us latency)": (100e9, 5e-6)}


def worker(steps: int, repeats: int) -> None:
    """Run inside each process (launched or alone): time training steps and the Allreduce; rank 0 prints JSON."""
    import numpy as np

    from chainrule import nn, optim
    from chainrule.autograd import manual_seed
    from chainrule.charlm.distributed import current_world
    from chainrule.charlm.model import CharModel, ModelConfig
    from chainrule.nn import functional as F

    world = current_world()
    manual_seed(0)
    characters = "".join(chr(ord("!") + i) for i in range(VOCABULARY))
    model = CharModel(ModelConfig(characters, "lstm", HIDDEN, LAYERS, 0.25, 0))
    parameters = list(model.parameters())
    optimizer = optim.Adam(parameters, lr=2e-3)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, VOCABULARY, (BATCH, SEQ_LEN)), rng.integers(0, VOCABULARY, (BATCH, SEQ_LEN))
    inputs, targets = world.shard(batch)

    def step() -> tuple[float, float]:
        start = time.perf_counter()
        logits, _ = model(inputs)
        loss = F.cross_entropy(logits, targets)
        world.mean(float(loss.item()))
        optimizer.zero_grad()
        loss.backward()
        if world.comm is not None:
            world.comm.Barrier()   # the Allreduce's time, not the wait for a slower rank's backward
        reduce_start = time.perf_counter()
        world.average_gradients(parameters)
        reduce_time = time.perf_counter() - reduce_start
        nn.utils.clip_grad_norm_(parameters, 5.0)
        optimizer.step()
        return time.perf_counter() - start, reduce_time

    for _ in range(2):   # warm-up: numba's compilation, the array pool, the buffer's allocation
        step()
    timed = [step() for _ in range(steps)]
    result = {"ranks": world.size, "parameters": int(sum(p.data.size for p in parameters)),
              "step_s": statistics.median(t for t, _ in timed),
              "allreduce_in_step_s": statistics.median(r for _, r in timed)}
    if world.comm is not None:
        from mpi4py import MPI

        buffer = np.ones(result["parameters"], dtype=np.float32)
        times = []
        for _ in range(repeats + 2):
            world.comm.Barrier()
            start = time.perf_counter()
            world.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            times.append(time.perf_counter() - start)
        result["allreduce_alone_s"] = statistics.median(times[2:])
        result["bytes"] = int(buffer.nbytes)
    if world.is_root:
        print(json.dumps(result))


def measure(command: list[str], threads: int) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    for name in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"):
        env.pop(name, None)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def ring_allreduce(n: int, size: int, bandwidth: float, latency: float) -> float:
    """Seconds for a ring Allreduce of `size` bytes over `n` machines: 2(n-1)/n x bytes / bandwidth + 2(n-1) x
    latency (a reduce-scatter and an all-gather, n-1 steps each)."""
    return 2 * (n - 1) / n * size * 8 / bandwidth + 2 * (n - 1) * latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per run (after 2 warm-up)")
    parser.add_argument("--repeats", type=int, default=10, help="timed Allreduces of the gradient alone")
    parser.add_argument("--compute", type=float, nargs="*", default=[0.5, 0.05],
                        help="further per-machine step times (s) to model besides the measured one: by default "
                             "0.5 (this machine's quiet figure, BENCHMARKS.md) and 0.05 (a node ~10x faster)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.steps, args.repeats)
        return
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("no mpiexec found: pip install mpi4py mpich")
    here = [sys.executable, __file__, "--worker", "--steps", str(args.steps), "--repeats", str(args.repeats)]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; LSTM {LAYERS}x{HIDDEN}, vocabulary {VOCABULARY}, global batch {BATCH}, "
          f"sequence length {SEQ_LEN}; median of {args.steps} steps")
    alone = measure(here, threads=2)
    pair = measure([mpiexec, "-n", "2", *here], threads=1)
    print(f"\n{'configuration':<32}{'step (s)':>10}{'steps/s':>9}{'Allreduce (ms)':>16}{'its share':>11}")
    print(f"{'1 rank x 2 BLAS threads':<32}{alone['step_s']:>10.3f}{1 / alone['step_s']:>9.2f}{'-':>16}{'-':>11}")
    print(f"{'2 ranks x 1 BLAS thread':<32}{pair['step_s']:>10.3f}{1 / pair['step_s']:>9.2f}"
          f"{pair['allreduce_in_step_s'] * 1e3:>16.1f}{pair['allreduce_in_step_s'] / pair['step_s']:>11.1%}")
    size = pair["bytes"]
    print(f"\nAllreduce of the gradient alone ({pair['parameters']:,} float32 parameters, {size / 1e6:.1f} MB) at 2 "
          f"ranks on this machine: {pair['allreduce_alone_s'] * 1e3:.1f} ms (median of {args.repeats})")
    print(f"\nModel: N machines, one rank each computing a 64-row step in t_compute, a ring Allreduce of "
          f"{size / 1e6:.1f} MB without overlap; efficiency = t_compute / t_step")
    counts = (2, 4, 8, 16, 32, 64, 128, 256)
    print(f"{'t_compute, network':<44}" + "".join(f"{'N=' + str(n):>8}" for n in counts) + f"{'N at 90%':>10}")
    for compute, source in [(alone["step_s"], "measured"), *[(c, "given") for c in args.compute]]:
        for name, (bandwidth, latency) in NETWORKS.items():
            efficiency = [compute / (compute + ring_allreduce(n, size, bandwidth, latency)) for n in counts]
            limit = 1
            while limit < 100_000 and compute / (compute + ring_allreduce(limit + 1, size, bandwidth, latency)) >= 0.9:
                limit += 1
            label = "none" if limit == 1 else str(limit) if limit < 100_000 else "any"
            row = f"{compute:.3f} s ({source}), {name.split(' (')[0]}"
            print(f"{row:<44}"
                  + "".join(f"{e:>8.1%}" for e in efficiency) + f"{label:>10}")
    for name, (bandwidth, latency) in NETWORKS.items():
        print(f"  {name}: Allreduce at N=2 {ring_allreduce(2, size, bandwidth, latency) * 1e3:.1f} ms, at N=64 "
              f"{ring_allreduce(64, size, bandwidth, latency) * 1e3:.1f} ms, at N=256 "
              f"{ring_allreduce(256, size, bandwidth, latency) * 1e3:.1f} ms")

if __name__ == "__main__":
    main()

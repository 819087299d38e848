"""Recurrent training steps on a GPU: chainrule (CuPy + numba.cuda kernels) against PyTorch CUDA (cuDNN).

    python benchmarks/gpu_bench.py [--device cuda] [--repeats 20] [--json bench-results/gpu.json]

The training step of benchmarks/rnn.py (embedding -> recurrent layers -> head -> cross-entropy -> backward ->
clip_grad_norm_ -> Adam, sequence length 64), its rows plus the 2x512 LSTM at batch 256, each library on the
same GPU, the median of `repeats` synchronised steps after warm-up. Ratio: PyTorch time / chainrule time
(above 1: chainrule faster). The 2x512 LSTM at batch 64 is also timed on the CPU (chainrule, this machine's
threads) for the GPU-over-CPU factor.

Launch share: the step's time at hidden 8, batch 1 (the same kernels launched, each with almost no work)
over its time at the row's size, capped at 1: an estimate of the part of the step that is launch and host
overhead rather than GPU arithmetic.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rnn  # noqa: E402
from rnn import ROWS  # noqa: E402

import chainrule as cr  # noqa: E402

import torch  # noqa: E402

GPU_ROWS = [*ROWS[:-1], ("lstm", 512, 2, 256)]   # the batch-1 row of rnn.py measures sampling-like latency only


def chainrule_step(cell, hidden, layers, batch, device) -> Callable[[], None]:
    """rnn.py's chainrule training step on `device`, waiting for the GPU's work to end."""
    step, synchronize = rnn.chainrule_step(cell, hidden, layers, batch, device=device), _synchronize(device)

    def synchronized() -> None:
        step()
        synchronize()
    return synchronized


def _synchronize(device) -> Callable[[], None]:
    if str(device) == "cpu":
        return lambda: None
    import cupy
    return cupy.cuda.get_current_stream().synchronize


def torch_step(cell, hidden, layers, batch) -> Callable[[], None]:
    """rnn.py's PyTorch training step on CUDA, waiting for the GPU's work to end."""
    step = rnn.torch_step(cell, hidden, layers, batch, device="cuda")

    def synchronized() -> None:
        step()
        torch.cuda.synchronize()
    return synchronized


def median_time(step: Callable[[], None], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    device = cr.zeros(1, device=args.device).device
    import cupy
    print(f"GPU: {cupy.cuda.runtime.getDeviceProperties(device.index)['name'].decode()}, CuPy {cupy.__version__}, "
          f"PyTorch {torch.__version__} (cuDNN {torch.backends.cudnn.version()})")
    header = (f"{'cell':<5} {'hidden':>6} {'layers':>6} {'batch':>5} {'chainrule ms':>12} {'PyTorch ms':>10} "
              f"{'ratio':>6} {'launch share':>12}")
    print(header)
    results = []
    for cell, hidden, layers, batch in GPU_ROWS:
        ours = median_time(chainrule_step(cell, hidden, layers, batch, device), args.repeats)
        theirs = median_time(torch_step(cell, hidden, layers, batch), args.repeats)
        tiny = median_time(chainrule_step(cell, 8, layers, 1, device), args.repeats)
        share = min(1.0, tiny / ours)
        results.append(dict(cell=cell, hidden=hidden, layers=layers, batch=batch, chainrule_s=ours, torch_s=theirs,
                            launch_share=share))
        print(f"{cell:<5} {hidden:>6} {layers:>6} {batch:>5} {ours * 1e3:>12.2f} {theirs * 1e3:>10.2f} "
              f"{theirs / ours:>6.2f} {share:>11.0%}", flush=True)
    cpu = median_time(chainrule_step("lstm", 512, 2, 64, "cpu"), max(3, args.repeats // 5), warmup=1)
    gpu = next(r["chainrule_s"] for r in results if (r["cell"], r["hidden"], r["batch"]) == ("lstm", 512, 64))
    print(f"2x512 LSTM batch 64: chainrule CPU ({os.cpu_count()} cores here) {cpu * 1e3:.1f} ms, "
          f"GPU {gpu * 1e3:.2f} ms: "
          f"{cpu / gpu:.1f}x (target: 10x the 2-core CPU step in BENCHMARKS.md; half of PyTorch's cuDNN step)")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as file:
            json.dump({"rows": results, "cpu_lstm_512x2_b64_s": cpu}, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

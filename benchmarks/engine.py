"""Per-op overhead of the autograd engine: chainrule against PyTorch, same process, same run.

    python benchmarks/engine.py [--repeats 30] [--json results.json]

Rows:
- chain: forward + backward through a chain of N tiny ops (a 4-element tensor), time per op;
- mlp step: one training step of a small MLP (32 x 16 -> 64 -> 64 -> 10, ReLU, log-softmax NLL,
  backward, SGD update).
Both libraries alternate, warm-up first, median of repeats; ratio = PyTorch time / chainrule time
(above 1.0 means chainrule is faster).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any, Callable

import numpy as np

import chainrule as cr

try:
    import torch
except ImportError:  # pragma: no cover - the benchmark needs the comparison
    raise SystemExit("benchmarks/engine.py compares with PyTorch: pip install torch==2.13.0") from None


def chain(lib: Any, length: int) -> Callable[[], None]:
    def step() -> None:
        x = lib.tensor([0.1, 0.2, 0.3, 0.4], requires_grad=True)
        y = x
        for _ in range(length // 4):
            y = (y * 0.9 + 0.1).tanh() - 0.01
        y.sum().backward()
    return step


def mlp(lib: Any) -> Callable[[], None]:
    rng = np.random.default_rng(0)
    sizes = [16, 64, 64, 10]
    weights = [lib.tensor((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), requires_grad=True)
               for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [lib.tensor(np.zeros(b, np.float32), requires_grad=True) for b in sizes[1:]]
    inputs = lib.tensor(rng.standard_normal((32, 16)).astype(np.float32))
    targets = rng.integers(0, 10, 32)
    rows = np.arange(32)

    def step() -> None:
        h = inputs
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = h @ w + b
            if i < len(weights) - 1:
                h = h.relu()
        log_probs = h.log_softmax(-1)
        loss = -log_probs[rows, targets].mean()
        loss.backward()
        if lib is cr:
            for p in weights + biases:
                p.data -= 0.01 * p.grad
                p.grad = None
        else:
            with torch.no_grad():
                for p in weights + biases:
                    p -= 0.01 * p.grad
                    p.grad = None
    return step


def median_seconds(step: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--chain-length", type=int, default=2000)
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    ops_per_chain = args.chain_length // 4 * 4 + 2  # 4 ops a link, plus sum and the leaf
    rows = [("chain of tiny ops (per op)", chain(cr, args.chain_length), chain(torch, args.chain_length),
             ops_per_chain),
            ("small MLP training step", mlp(cr), mlp(torch), 1)]
    results = []
    print(f"engine overhead benchmark: {platform.processor() or platform.machine()}, "
          f"numpy {np.__version__}, torch {torch.__version__}, chainrule {cr.__version__}")
    print(f"{'row':<30}{'chainrule':>14}{'pytorch':>14}{'ratio':>8}")
    for name, ours, theirs, divisor in rows:
        for _ in range(3):  # warm-up, both
            ours(), theirs()
        samples_ours, samples_theirs = [], []
        for _ in range(args.repeats):  # alternate so both see the same machine load
            samples_ours.append(median_seconds(ours, 1))
            samples_theirs.append(median_seconds(theirs, 1))
        t_ours = statistics.median(samples_ours) / divisor
        t_theirs = statistics.median(samples_theirs) / divisor
        unit, scale = ("us", 1e6) if divisor > 1 else ("ms", 1e3)
        print(f"{name:<30}{t_ours * scale:>11.2f} {unit}{t_theirs * scale:>11.2f} {unit}"
              f"{t_theirs / t_ours:>8.2f}")
        results.append({"row": name, "chainrule_s": t_ours, "pytorch_s": t_theirs, "ratio": t_theirs / t_ours})
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"date": time.strftime("%Y-%m-%d"), "rows": results}, handle, indent=2)


if __name__ == "__main__":
    main()

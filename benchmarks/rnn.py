"""Recurrent training and sampling: chainrule against PyTorch on the CPU, same process, same run.

    python benchmarks/rnn.py [--repeats 10] [--json bench-results/rnn.json] [--quick]

One training step of a character-level model: embedding input (vocabulary 65) -> recurrent layers ->
linear head -> cross-entropy -> backward -> clip_grad_norm_ -> Adam step, sequence length 64. Both
libraries alternate step by step after a warm-up; the median of the repeats is reported, with the ratio
PyTorch time / chainrule time (above 1: chainrule is faster), and for the large rows the FLOP rate as a
fraction of this machine's float32 matrix-multiply peak (measured here, with NumPy, the larger of 2048³
and 4096³ products), counting the FLOPs chainrule executes. A sampling row generates 2,000 characters one
at a time from a 2x256 LSTM. Peak memory of a training step at sequence length 1,000 is measured for each
library in a fresh subprocess (high-water mark of the resident set, minus the resident set just before the
step).

Each library keeps its default threading. Their thread pools (OpenBLAS's for NumPy, OpenMP's for PyTorch)
spin for a while after each call before they sleep, and a pool spinning on both cores slows the other
library down several-fold; so the libraries alternate in turns (a warm-up step, then a timed step), with
a pause before each turn that outlasts the other pool's spinning. Both use the same thread count.
"""
from __future__ import annotations

import os

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule import nn, optim  # noqa: E402
from chainrule.nn import functional as F  # noqa: E402
from chainrule.nn import kernels  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    raise SystemExit("benchmarks/rnn.py compares with PyTorch: pip install torch==2.13.0 (make bench does)") from None

VOCABULARY, SEQ_LEN = 65, 64
ROWS = [("rnn", 128, 1, 32), ("lstm", 128, 1, 32), ("gru", 128, 1, 32),
        ("rnn", 256, 2, 32), ("lstm", 256, 2, 32), ("gru", 256, 2, 32),
        ("lstm", 512, 2, 64), ("lstm", 64, 1, 1)]
LARGE = {("lstm", 512, 2, 64), ("lstm", 256, 2, 32), ("gru", 256, 2, 32), ("rnn", 256, 2, 32)}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
PAUSE = 0.3  # seconds: longer than OpenBLAS's and OpenMP's default spin before their threads sleep


class ChainruleModel(nn.Module):
    def __init__(self, cell: str, hidden: int, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, hidden)
        self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](hidden, hidden, num_layers=layers)
        self.head = nn.Linear(hidden, VOCABULARY)

    def forward(self, ids: np.ndarray, state: Any = None) -> tuple[cr.Tensor, Any]:
        output, state = self.rnn.forward_tokens(ids, self.embedding.weight, state)
        return self.head(output), state


class TorchModel(torch.nn.Module):
    def __init__(self, cell: str, hidden: int, layers: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCABULARY, hidden)
        self.rnn = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
            hidden, hidden, num_layers=layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, VOCABULARY)

    def forward(self, ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        output, state = self.rnn(self.embedding(ids), state)
        return self.head(output), state


def chainrule_step(cell: str, hidden: int, layers: int, batch: int, seq_len: int = SEQ_LEN,
                   device: str = "cpu") -> Callable[[], None]:
    cr.manual_seed(0)
    model = ChainruleModel(cell, hidden, layers).to(device)
    parameters = list(model.parameters())
    optimizer = optim.Adam(parameters, lr=1e-3)
    rng = np.random.default_rng(0)
    inputs, targets = rng.integers(0, VOCABULARY, (batch, seq_len)), rng.integers(0, VOCABULARY, (batch, seq_len))

    def step() -> None:
        logits, _ = model(inputs)
        loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, 5.0)
        optimizer.step()
    return step


def torch_step(cell: str, hidden: int, layers: int, batch: int, seq_len: int = SEQ_LEN,
               device: str = "cpu") -> Callable[[], None]:
    torch.manual_seed(0)
    model = TorchModel(cell, hidden, layers).to(device)
    parameters = list(model.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    rng = np.random.default_rng(0)
    inputs = torch.tensor(rng.integers(0, VOCABULARY, (batch, seq_len)), device=device)
    targets = torch.tensor(rng.integers(0, VOCABULARY, (batch, seq_len)), device=device)

    def step() -> None:
        logits, _ = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCABULARY), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 5.0)
        optimizer.step()
    return step


def chainrule_sampler(length: int) -> Callable[[], None]:
    cr.manual_seed(0)
    model = ChainruleModel("lstm", 256, 2).eval()
    rng = np.random.default_rng(0)

    def sample() -> None:
        state, token = None, np.array([[0]])
        with cr.no_grad():
            for _ in range(length):
                logits, state = model(token, state)
                probabilities = np.exp(logits.data[0, -1] - logits.data[0, -1].max())
                token = np.array([[rng.choice(VOCABULARY, p=probabilities / probabilities.sum())]])
    return sample


def torch_sampler(length: int) -> Callable[[], None]:
    torch.manual_seed(0)
    model = TorchModel("lstm", 256, 2).eval()
    rng = np.random.default_rng(0)

    def sample() -> None:
        state, token = None, torch.tensor([[0]])
        with torch.no_grad():
            for _ in range(length):
                logits, state = model(token, state)
                probabilities = torch.softmax(logits[0, -1], -1).numpy().astype(np.float64)
                token = torch.tensor([[rng.choice(VOCABULARY, p=probabilities / probabilities.sum())]])
    return sample


def training_flops(cell: str, hidden: int, layers: int, batch: int) -> float:
    """FLOPs (2 per multiply-add) of the matrix products chainrule executes in one training step.

    Layer 0 reads its input projection from a [vocabulary, gates] table, so instead of three products
    with T·B rows (x W_ihᵀ, dx, dW_ih) it does three with 65 rows; every layer does three recurrent products
    (h W_hhᵀ and δ W_hh per step, dW_hh over all steps); layers above do the three input products in
    full; the head does three. (PyTorch executes more for the same step: the full layer-0 products.)"""
    rows = batch * SEQ_LEN
    gates = GATES[cell] * hidden
    table = 3 * 2 * VOCABULARY * hidden * gates
    recurrent = layers * 3 * 2 * rows * gates * hidden
    inputs_above = (layers - 1) * 3 * 2 * rows * gates * hidden
    head = 3 * 2 * rows * hidden * VOCABULARY
    return float(table + recurrent + inputs_above + head)


def matmul_peak() -> float:
    best = 0.0
    for size in (2048, 4096):
        a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
        a @ a
        repeats = 3
        start = time.perf_counter()
        for _ in range(repeats):
            a @ a
        best = max(best, 2 * size ** 3 * repeats / (time.perf_counter() - start))
    return best


def timed(step: Callable[[], None], runs: int) -> list[float]:
    """Time `runs` consecutive calls, after a pause that lets the other library's idle threads go to sleep."""
    time.sleep(PAUSE)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def alternate(ours: Callable[[], None], theirs: Callable[[], None], repeats: int, warmup: int = 2,
              per_turn: int = 5) -> tuple[float, float]:
    """Alternate the two libraries in turns (warm-up calls, then `per_turn` timed calls); medians of all."""
    ours_times, theirs_times = [], []
    for _ in range(repeats):
        ours_times += timed(ours, warmup + per_turn)[warmup:]
        theirs_times += timed(theirs, warmup + per_turn)[warmup:]
    return statistics.median(ours_times), statistics.median(theirs_times)


def peak_memory(library: str, seq_len: int) -> float:
    """Extra peak resident memory (MiB) of one training step (lstm 256x2, batch 32) at seq_len, in a fresh process."""
    code = f"""
import os, resource, sys
sys.argv = ["x"]
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import rnn as bench
make = bench.chainrule_step if {library!r} == "chainrule" else bench.torch_step
make("lstm", 256, 2, 32, 8)()  # a short step first: one-time work (numba compiling its kernels) is not counted
step = make("lstm", 256, 2, 32, {seq_len})
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print((peak - before) / 2**20)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", default="bench-results/rnn.json")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no memory row (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        pass
    repeats = 2 if args.quick else args.repeats
    peak = matmul_peak()
    print(f"chainrule {cr.__version__} (kernels: {kernels.backend_name()}), numpy {np.__version__}, "
          f"torch {torch.__version__}; {platform.machine()}, {os.cpu_count()} cores, {args.threads} threads; "
          f"float32 matmul peak {peak / 1e9:.0f} GFLOP/s")
    header = (f"{'row':<22}{'chainrule ms':>13}{'pytorch ms':>12}{'ratio':>7}{'our chars/s':>13}"
              f"{'their chars/s':>14}{'our % peak':>11}")
    print(header)
    results = []
    for cell, hidden, layers, batch in ROWS:
        large = (cell, hidden, layers, batch) in LARGE
        ours, theirs = alternate(chainrule_step(cell, hidden, layers, batch), torch_step(cell, hidden, layers, batch),
                                 max(2, repeats // 2) if hidden >= 512 else repeats)
        chars = batch * SEQ_LEN
        rate = training_flops(cell, hidden, layers, batch) / ours / peak if large else None
        row = {"row": f"{cell} {hidden}x{layers} b{batch}", "chainrule_ms": ours * 1e3, "pytorch_ms": theirs * 1e3,
               "ratio": theirs / ours, "chainrule_chars_per_s": chars / ours, "pytorch_chars_per_s": chars / theirs,
               "fraction_of_peak": rate}
        results.append(row)
        print(f"{row['row']:<22}{ours * 1e3:>13.2f}{theirs * 1e3:>12.2f}{theirs / ours:>7.2f}{chars / ours:>13.0f}"
              f"{chars / theirs:>14.0f}{'' if rate is None else f'{rate:.0%}':>11}", flush=True)
    length = 500 if args.quick else 2000
    ours, theirs = alternate(chainrule_sampler(length), torch_sampler(length), 1 if args.quick else 3, warmup=1)
    row = {"row": f"sample {length} chars lstm 256x2", "chainrule_ms": ours * 1e3, "pytorch_ms": theirs * 1e3,
           "ratio": theirs / ours, "chainrule_chars_per_s": length / ours, "pytorch_chars_per_s": length / theirs,
           "fraction_of_peak": None}
    results.append(row)
    print(f"{row['row']:<22}{ours * 1e3:>13.1f}{theirs * 1e3:>12.1f}{theirs / ours:>7.2f}{length / ours:>13.0f}"
          f"{length / theirs:>14.0f}")
    memory = None
    if not args.quick:
        memory = {"seq_len": 1000, "chainrule_mib": peak_memory("chainrule", 1000),
                  "pytorch_mib": peak_memory("torch", 1000)}
        print(f"peak memory of one training step, lstm 256x2 b32 seq 1000: "
              f"chainrule {memory['chainrule_mib']:.0f} MiB, pytorch {memory['pytorch_mib']:.0f} MiB")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "kernels": kernels.backend_name(),
                       "threads": args.threads, "matmul_peak_flops": peak, "rows": results, "memory": memory},
                      handle, indent=2)


if __name__ == "__main__":
    main()

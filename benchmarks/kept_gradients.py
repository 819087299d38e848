"""What backward() pays for keeping the small edge gradients that `draw_graph` shows after it.

    python benchmarks/kept_gradients.py [--repeats 30]

Each row alternates the same step with the default (gradients of at most KEPT_GRADIENT_SIZE elements are
copied onto the nodes) and with keeping switched off (`keep_gradients(-1)`: the backward of before), median of
repeats, and prints the ratio. Rows: the engine benchmark's chain of tiny ops (every gradient is small, so
every edge is copied: the worst case) and its small MLP training step (large gradients: one size test each).
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
from engine import chain, mlp

import chainrule as cr
from chainrule.autograd import KEPT_GRADIENT_SIZE, keep_gradients


def timed(step: Callable[[], None], kept_size: int) -> float:
    with keep_gradients(kept_size):
        start = time.perf_counter()
        step()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(f"numpy {np.__version__}, chainrule {cr.__version__}")
    print(f"{'row':<28}{'kept':>12}{'not kept':>12}{'ratio':>8}")
    for name, step in (("chain of 2000 tiny ops", chain(cr, 2000)), ("small MLP training step", mlp(cr))):
        for _ in range(3):
            timed(step, KEPT_GRADIENT_SIZE), timed(step, -1)
        kept, off = [], []
        for _ in range(args.repeats):  # alternate so both see the same machine load
            kept.append(timed(step, KEPT_GRADIENT_SIZE))
            off.append(timed(step, -1))
        t_kept, t_off = statistics.median(kept), statistics.median(off)
        print(f"{name:<28}{t_kept * 1e3:>9.2f} ms{t_off * 1e3:>9.2f} ms{t_kept / t_off:>8.3f}")


if __name__ == "__main__":
    main()

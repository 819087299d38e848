"""What trains best in 3 quiet minutes on the default corpus: a sweep by step count.

    python benchmarks/sweep_3min.py time  [--names A,B]          # per-step times, default threads, best of --repeats
    python benchmarks/sweep_3min.py run NAME --steps N             # train NAME for N steps (1 BLAS thread advised)
    python benchmarks/sweep_3min.py table [--png docs/sweep_3min.png]

The machine this is developed on is shared, so wall-clock loss curves are not comparable between runs, but a
loss against the step count is: `time` measures each candidate's per-step time (the best of several steps,
the real run's threading), which says how many steps it gets in 3 quiet minutes; `run` trains it for that
many steps through `Trainer` (the code `chainrule train` runs, its learning-rate schedule spanning exactly
those steps) and writes its validation curve to bench-results/sweep/NAME.json; `table` prints them all
and draws the curves. Run `run` with OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1, two at a time on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path("bench-results/sweep")
BUDGET_SECONDS = 180.0
POINTS = 6   # validation points along a run: at 1/6, 2/6, ... of its steps

# name -> TrainConfig options (the rest are TrainConfig's defaults: one-hot, dropout 0.25, seq 64, batch 32)
CANDIDATES: dict[str, dict] = {
    "2x512-const": dict(hidden=512, layers=2),                                       # today's default
    "2x512-cos3e-3": dict(hidden=512, layers=2, lr=3e-3, schedule="cosine"),
    "2x256-cos3e-3": dict(hidden=256, layers=2, lr=3e-3, schedule="cosine", dropout=0.1),
    "1x512-cos3e-3": dict(hidden=512, layers=1, lr=3e-3, schedule="cosine", dropout=0.1),
    "1x512-cos5e-3": dict(hidden=512, layers=1, lr=5e-3, schedule="cosine", dropout=0.1),
    "1x384-cos5e-3": dict(hidden=384, layers=1, lr=5e-3, schedule="cosine", dropout=0.1),
    "2x384-cos3e-3": dict(hidden=384, layers=2, lr=3e-3, schedule="cosine", dropout=0.1),
    "1x768-cos3e-3": dict(hidden=768, layers=1, lr=3e-3, schedule="cosine", dropout=0.1),
    "1x512-cos5e-3-b64": dict(hidden=512, layers=1, lr=5e-3, schedule="cosine", dropout=0.1, batch_size=64),
    "1x512-cos5e-3-s128": dict(hidden=512, layers=1, lr=5e-3, schedule="cosine", dropout=0.1, seq_len=128),
    "1x512-cos5e-3-emb64": dict(hidden=512, layers=1, lr=5e-3, schedule="cosine", dropout=0.1, embedding=64),
    "gru1x512-cos5e-3": dict(model="gru", hidden=512, layers=1, lr=5e-3, schedule="cosine", dropout=0.1),
}


def _trainer(name: str, steps: int, folder: str, eval_every: int):
    from chainrule.charlm.training import TrainConfig, Trainer

    config = TrainConfig(**CANDIDATES[name], steps=steps, eval_every=eval_every, sample_every=0)
    return Trainer(config, folder, quiet=True, report=lambda line: None)


def step_seconds(name: str, repeats: int) -> list[float]:
    """Seconds of each of `repeats` training steps (after 3 warm-up steps), as Trainer's loop runs them."""
    from chainrule import nn
    from chainrule.charlm.model import detach_state
    from chainrule.nn import functional as F

    with tempfile.TemporaryDirectory() as folder:
        trainer = _trainer(name, 1000, folder, 1000)
        trainer.model.train()
        state, times = None, []
        for index in range(3 + repeats):
            start = time.perf_counter()
            inputs, targets = trainer.train_streams.batch(index)
            logits, state = trainer.model(inputs, state)
            loss = F.cross_entropy(logits, targets)
            loss.item()
            trainer.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(trainer.parameters, trainer.config.grad_clip)
            trainer.optimizer.step()
            if trainer.schedule is not None:
                trainer.schedule.step()
            state = detach_state(state)
            times.append(time.perf_counter() - start)
        return times[3:]


def command_time(args: argparse.Namespace) -> None:
    names = args.names.split(",") if args.names else list(CANDIDATES)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "step_times.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    print(f"{'candidate':<22} {'best ms':>9} {'median ms':>10} {'steps in 3 min':>15}")
    for name in names:
        times = sorted(step_seconds(name, args.repeats))
        best, median = times[0], times[len(times) // 2]
        known[name] = {"best": best, "median": median, "threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "load": os.getloadavg()[0]}
        print(f"{name:<22} {best * 1e3:9.1f} {median * 1e3:10.1f} {int(BUDGET_SECONDS / best):15d}", flush=True)
        path.write_text(json.dumps(known, indent=1))


def command_run(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    eval_every = max(1, args.steps // args.points)
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or temporary   # --keep: the run's folder stays (`chainrule sample` reads it)
        trainer = _trainer(args.name, args.steps, folder, eval_every)
        start = time.time()
        progress = trainer.train()
        wall = time.time() - start
    history = [{k: r[k] for k in ("step", "train_loss", "val_loss", "lr")} for r in progress.history]
    result = {"name": args.name, "options": CANDIDATES[args.name], "steps": args.steps, "history": history,
              "final_val_loss": history[-1]["val_loss"], "best_val_loss": progress.best_val_loss,
              "wall_seconds": round(wall, 1), "threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result))
    print(f"{args.name}: {args.steps} steps, validation {result['final_val_loss']:.4f} (best "
          f"{result['best_val_loss']:.4f}), {wall:.0f} s wall")


def command_table(args: argparse.Namespace) -> None:
    times_path = RESULTS / "step_times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        if path.name == "step_times.json":
            continue
        rows.append(json.loads(path.read_text()))
    rows.sort(key=lambda r: r["final_val_loss"])
    # a record at each sixth of the steps, and one at the last step when the steps are not a multiple of 6
    print("| candidate | options | steps in 3 min | " + " | ".join(f"{i}/{POINTS}" for i in range(1, POINTS + 1))
          + " | end |")
    print("|---|---|---|" + "---|" * (POINTS + 1))
    for r in rows:
        options = ", ".join(f"{k} {v}" for k, v in r["options"].items())
        losses = [f"{h['val_loss']:.4f}" for h in r["history"][:POINTS]] + ["(not run)"] * (POINTS - len(r["history"]))
        end = f"**{r['history'][-1]['val_loss']:.4f}**" if r["history"][-1]["step"] == r["steps"] else "(not run)"
        print(f"| {r['name']} | {options} | {r['steps']:,} | " + " | ".join(losses) + f" | {end} |")
    if args.png and rows:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(8, 5))
        for r in rows:
            ms = times.get(r["name"], {}).get("best")
            scale = (ms / 60) if ms else None   # step -> quiet minutes
            xs = [h["step"] * scale if scale else h["step"] for h in r["history"]]
            axes.plot(xs, [h["val_loss"] for h in r["history"]], marker=".", label=f"{r['name']} "
                      f"({r['final_val_loss']:.3f})")
        axes.axhline(1.5, color="grey", linestyle=":", linewidth=1)
        axes.set_xlabel("quiet minutes (steps x the best per-step time)")
        axes.set_ylabel("validation loss (nats/char)")
        axes.set_ylim(1.1, 2.2)
        axes.set_xlim(0, BUDGET_SECONDS / 60)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
        axes.set_title("3-minute budget on the Python reference manual")
        figure.tight_layout()
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.png, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("time")
    timing.add_argument("--names", default="")
    timing.add_argument("--repeats", type=int, default=8)
    run = commands.add_parser("run")
    run.add_argument("name", choices=list(CANDIDATES))
    run.add_argument("--steps", type=int, required=True)
    run.add_argument("--points", type=int, default=POINTS, help="validation evaluations along the run")
    run.add_argument("--keep", default="", help="train into this new folder and keep it")
    table = commands.add_parser("table")
    table.add_argument("--png", default="")
    args = parser.parse_args()
    {"time": command_time, "run": command_run, "table": command_table}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

"""Quality under a time budget: the default character model on tiny-shakespeare, chainrule vs PyTorch.

    python benchmarks/shakespeare.py [--minutes 10] [--text ../shared/data/tinyshakespeare.txt]

Trains the default `chainrule train` model (2x512 LSTM, or the cell given by --model; one-hot input,
dropout 0.25, sequence length 64, batch 32, Adam 2e-3, gradient norm clipped at 5; with --cosine-steps N
the learning rate is annealed to 0 over N steps, in both libraries) on the first 90% of the corpus for a
training-time budget, and the same model in PyTorch 2.13 (same initial weights, same data order, same
optimizer and clipping) for the same budget, in this process, the two taking turns every `--eval-every`
steps so that both train under the same conditions of a shared host. Validation loss (nats/char) on the
last 10% is measured every `--eval-every` steps with the clock stopped, so the curves are loss against
training time. Prints both curves, when each reaches PyTorch's final loss, and writes them as JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from chainrule._kernels.backend import backend_name
from chainrule.charlm.text import TextStreams, Vocabulary, read_text, split_text
from chainrule.charlm.training import TrainConfig, Trainer

try:
    import torch
except ImportError:  # pragma: no cover
    raise SystemExit("benchmarks/shakespeare.py compares with PyTorch: pip install torch==2.13.0") from None

DEFAULT_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
PAUSE = 0.3  # seconds: longer than OpenBLAS's and OpenMP's spin before their idle threads sleep


class TorchCharModel(torch.nn.Module):
    def __init__(self, cell: str, size: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.size = size
        layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.rnn = layer(size, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(hidden, size)

    def forward(self, ids: torch.Tensor, state=None):
        output, state = self.rnn(torch.nn.functional.one_hot(ids, self.size).float(), state)
        return self.head(self.dropout(output)), state


def torch_validation(model: TorchCharModel, ids: np.ndarray, batch: int, seq_len: int) -> float:
    """The same streams and chunks as chainrule.charlm.evaluate."""
    batch = max(1, min(batch, (len(ids) - 1) // 2))
    length = (len(ids) - 1) // batch
    inputs = torch.tensor(ids[:length * batch].reshape(batch, length))
    targets = torch.tensor(ids[1:length * batch + 1].reshape(batch, length))
    model.eval()
    total, state = 0.0, None
    with torch.no_grad():
        for start in range(0, length, seq_len):
            logits, state = model(inputs[:, start:start + seq_len], state)
            total += float(torch.nn.functional.cross_entropy(
                logits.reshape(-1, model.size), targets[:, start:start + seq_len].reshape(-1), reduction="sum"))
    model.train()
    return total / targets.numel()


class TorchTraining:
    """The same model in PyTorch, trained a round at a time: same initial weights, data order, optimizer,
    clipping and dropout rate; validation with the clock stopped."""

    def __init__(self, config: TrainConfig, initial: dict[str, np.ndarray], streams: TextStreams,
                 val_ids: np.ndarray, size: int) -> None:
        torch.manual_seed(config.seed)
        self.config, self.streams, self.val_ids, self.size = config, streams, val_ids, size
        shape = config.architecture
        self.model = TorchCharModel(shape.model, size, shape.hidden, shape.layers, shape.dropout)
        self.model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in initial.items()})
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, config.steps)
                         if config.schedule == "cosine" else None)
        self.curve: list[dict] = []
        self.elapsed, self.step, self.batch_index, self.state = 0.0, 0, 0, None

    def advance(self, until_step: int, budget_seconds: float) -> None:
        config = self.config
        while self.step < until_step and self.elapsed < budget_seconds:
            start = time.perf_counter()
            x, y = self.streams.batch(self.batch_index)
            logits, state = self.model(torch.tensor(x), self.state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, self.size), torch.tensor(y).reshape(-1))
            self.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self.optimizer.step()
            if self.schedule is not None:
                self.schedule.step()
            self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            self.step, self.batch_index = self.step + 1, self.batch_index + 1
            if self.batch_index >= self.streams.batches_per_epoch:
                self.batch_index, self.state = 0, None
            self.elapsed += time.perf_counter() - start
            if self.step % config.eval_every == 0:
                self.evaluate()
        if not self.curve or self.curve[-1]["step"] != self.step:  # the budget or the last step came first
            self.evaluate()

    def evaluate(self) -> None:
        self.curve.append({"step": self.step, "minutes": self.elapsed / 60,
                           "val_loss": torch_validation(self.model, self.val_ids, self.config.batch_size, 128)})
        print(f"  pytorch   {self.elapsed / 60:5.2f} min  step {self.step:5d}  val {self.curve[-1]['val_loss']:.4f}",
              flush=True)


def first_time_at_or_below(curve: list[dict], target: float) -> float | None:
    return next((point["minutes"] for point in curve if point["val_loss"] <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--text", default=str(DEFAULT_TEXT))
    parser.add_argument("--eval-every", type=int, default=100, help="steps between validation measurements")
    parser.add_argument("--cosine-steps", type=int, default=0,
                        help="anneal the learning rate to 0 over this many steps (both libraries; training also "
                        "stops there); 0: constant learning rate, the default of chainrule train")
    parser.add_argument("--model", choices=("lstm", "gru", "rnn"), default=TrainConfig().architecture.model,
                        help="the recurrent cell (default: the default of chainrule train)")
    parser.add_argument("--json", default="bench-results/shakespeare.json")
    args = parser.parse_args()
    if not Path(args.text).is_file():
        raise SystemExit(f"the corpus is not at {args.text}; pass --text PATH")
    torch.set_num_threads(os.cpu_count() or 1)
    schedule = dict(schedule="cosine", steps=args.cosine_steps) if args.cosine_steps else {}
    config = TrainConfig.from_options(dict(text=args.text, model=args.model, minutes=args.minutes,
                                           eval_every=args.eval_every, sample_every=0, val_frac=0.1, **schedule))
    shape = config.architecture
    text = read_text(args.text)
    vocabulary = Vocabulary.from_text(text)
    train_text, val_text = split_text(text, config.val_frac)
    print(f"tiny-shakespeare: {len(train_text):,} training and {len(val_text):,} validation characters, "
          f"vocabulary {len(vocabulary)}; model {shape.model} {shape.layers}x{shape.hidden}, dropout "
          f"{shape.dropout}, batch {config.batch_size}, seq-len {config.seq_len}, {config.optimizer} {config.lr} "
          f"({config.schedule}{f' over {config.steps} steps' if config.steps else ''}); "
          f"budget {args.minutes} min each; chainrule kernels: {backend_name()}", flush=True)

    streams = TextStreams(vocabulary.encode(train_text), config.batch_size, config.seq_len)
    budget = args.minutes * 60
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(dataclasses.replace(config), out, quiet=True,
                          report=lambda line: print("  chainrule", line, flush=True))
        torch_training = TorchTraining(config, trainer.model.state_dict(),  # same names: rnn.*, head.*
                                       streams, vocabulary.encode(val_text), len(vocabulary))
        last_step = config.steps or math.inf
        # rounds of eval_every steps, the libraries taking turns, so that both train under the same
        # conditions of a shared host; the pause lets the other library's idle threads go to sleep
        while True:
            ours_left = trainer.progress.elapsed < budget and trainer.progress.step < last_step
            theirs_left = torch_training.elapsed < budget and torch_training.step < last_step
            if not (ours_left or theirs_left):
                break
            if ours_left:
                trainer.config.steps = int(min(trainer.progress.step + args.eval_every, last_step))
                trainer.config.minutes = (budget - trainer.progress.elapsed) / 60
                trainer.train()
                time.sleep(PAUSE)
            if theirs_left:
                torch_training.advance(int(min(torch_training.step + args.eval_every, last_step)), budget)
                time.sleep(PAUSE)
        ours = [{"step": r["step"], "minutes": r["elapsed"] / 60, "val_loss": r["val_loss"]}
                for r in trainer.progress.history]
    theirs = torch_training.curve

    target = theirs[-1]["val_loss"]
    ours_reach, theirs_reach = first_time_at_or_below(ours, target), first_time_at_or_below(theirs, target)
    best_ours = min(p["val_loss"] for p in ours)
    print(f"\n{'minutes':>8}{'chainrule val':>15}{'pytorch val':>13}")
    for minute in range(1, int(math.ceil(args.minutes)) + 1):
        def at(curve: list[dict]) -> str:
            points = [p for p in curve if p["minutes"] <= minute]
            return f"{points[-1]['val_loss']:.4f}" if points else "-"
        print(f"{minute:>8}{at(ours):>15}{at(theirs):>13}")
    print(f"\nPyTorch's loss after {args.minutes} min: {target:.4f} nats/char (reached at {theirs_reach:.2f} min); "
          f"chainrule reached it at {'never' if ours_reach is None else f'{ours_reach:.2f} min'}; "
          f"chainrule's best: {best_ours:.4f} nats/char ({'meets' if best_ours <= 1.50 else 'misses'} the 1.50 target)")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "minutes": args.minutes, "kernels": backend_name(),
                       "model": shape.model, "schedule": config.schedule, "cosine_steps": args.cosine_steps,
                       "chainrule": ours, "pytorch": theirs, "pytorch_final": target,
                       "chainrule_reaches_pytorch_final_at": ours_reach}, handle, indent=2)


if __name__ == "__main__":
    sys.exit(main())

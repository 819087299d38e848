"""Training a character-level language model: stateful truncated BPTT, evaluation, checkpoints, exact resume."""
from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import nn, optim
from .charlm import (CharModel, ModelConfig, detach_state, evaluate, generate, state_arrays, state_from_arrays)
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .nn import functional as F
from .tensor import default_generator, manual_seed
from .text import (DEFAULT_CORPUS_NAME, TextStreams, Vocabulary, default_corpus, read_text, split_text,
                   text_digest)

OPTIMIZERS = {"adam": optim.Adam, "adagrad": optim.Adagrad, "rmsprop": optim.RMSprop, "sgd": optim.SGD}
SCHEDULES = ("constant", "step", "exponential", "cosine")


class TrainingStopped(RuntimeError):
    """Training was stopped because the loss became NaN or exploded; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything that decides a training run (stored in each checkpoint)."""

    text: str | None = None          # path of a UTF-8 text; None: the Python reference manual
    model: str = "lstm"
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.25
    embedding: int = 0
    seq_len: int = 64
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 2e-3
    schedule: str = "constant"
    lr_decay: float = 0.97           # gamma of the step / exponential schedules
    lr_decay_every: int = 1000       # steps between decays of the step schedule
    grad_clip: float = 5.0           # max gradient norm; 0 disables
    steps: int | None = None         # total optimizer steps (counted across resumes)
    epochs: float | None = None      # total passes over the training text
    minutes: float | None = None     # training-time budget of this invocation (evaluation not counted)
    val_frac: float = 0.1
    eval_every: int = 100
    sample_every: int = 1000
    sample_length: int = 200
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("seq_len", "batch_size", "eval_every", "lr_decay_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.grad_clip < 0:
            raise ValueError(f"grad-clip must be non-negative, got {self.grad_clip}")
        for name in ("steps", "epochs", "minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")

    def model_config(self, vocabulary: str) -> ModelConfig:
        return ModelConfig(vocabulary, self.model, self.hidden, self.layers, self.dropout, self.embedding)


@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    batch: int = 0                   # next batch within the epoch
    elapsed: float = 0.0             # training seconds over all invocations
    best_val_loss: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _load_corpus(config: TrainConfig) -> tuple[str, str]:
    if config.text is None:
        return default_corpus(), DEFAULT_CORPUS_NAME
    return read_text(config.text), str(config.text)


def _make_optimizer(config: TrainConfig, parameters: list) -> optim.Optimizer:
    return OPTIMIZERS[config.optimizer](parameters, lr=config.lr)


def _make_schedule(config: TrainConfig, optimizer: optim.Optimizer, total_steps: int | None) -> optim.LRScheduler | None:
    if config.schedule == "step":
        return optim.StepLR(optimizer, config.lr_decay_every, config.lr_decay)
    if config.schedule == "exponential":
        return optim.ExponentialLR(optimizer, config.lr_decay)
    if config.schedule == "cosine":
        if total_steps is None:
            raise ValueError("the cosine schedule needs --steps (or --epochs) to know where it ends")
        return optim.CosineAnnealingLR(optimizer, total_steps)
    return None


class Trainer:
    """Owns one run: model, optimizer, data streams, carried state, checkpoints in `out`."""

    def __init__(self, config: TrainConfig, out: str | Path, report: Callable[[str], None] = print,
                 quiet: bool = False) -> None:
        self.config, self.out, self.report, self.quiet = config, Path(out), report, quiet
        text, self.text_name = _load_corpus(config)
        self.text_sha256 = text_digest(text)
        self.vocabulary = Vocabulary.from_text(text)
        train_text, val_text = split_text(text, config.val_frac)
        self.train_streams = TextStreams(self.vocabulary.encode(train_text), config.batch_size, config.seq_len)
        self.val_ids = self.vocabulary.encode(val_text) if len(val_text) >= 2 else None
        manual_seed(config.seed)
        self.model = CharModel(config.model_config(self.vocabulary.characters))
        self.parameters = list(self.model.parameters())
        self.optimizer = _make_optimizer(config, self.parameters)
        self.schedule = _make_schedule(config, self.optimizer, self.total_steps)
        self.state: Any = None
        self.progress = Progress()
        self.uniform_loss = math.log(len(self.vocabulary))

    @property
    def total_steps(self) -> int | None:
        limits = []
        if self.config.steps is not None:
            limits.append(self.config.steps)
        if self.config.epochs is not None:
            limits.append(int(math.ceil(self.config.epochs * self.train_streams.batches_per_epoch)))
        return min(limits) if limits else None

    # -- checkpoints ------------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        optimizer_state = self.optimizer.state_dict()
        for index, values in optimizer_state["state"].items():
            for name, value in values.items():
                if isinstance(value, np.ndarray):
                    arrays[f"optimizer.{index}.{name}"] = value
        if self.state is not None:
            for k, array in enumerate(state_arrays(self.state)):
                arrays[f"carry.{k}"] = array
        return arrays

    def _meta(self) -> dict[str, Any]:
        optimizer_state = self.optimizer.state_dict()
        scalars = {str(i): {n: v for n, v in values.items() if not isinstance(v, np.ndarray)}
                   for i, values in optimizer_state["state"].items()}
        return {
            "step": self.progress.step,
            "model": self.model.config.to_dict(),
            "train": {**asdict(self.config), "text": None if self.config.text is None else str(self.config.text)},
            "text": {"name": self.text_name, "sha256": self.text_sha256},
            "progress": {k: v for k, v in asdict(self.progress).items() if k != "history"},
            "history": self.progress.history,
            "optimizer": {"param_groups": optimizer_state["param_groups"], "scalars": scalars},
            "schedule": self.schedule.state_dict() if self.schedule else None,
            "rng": default_generator().bit_generator.state,
            "parameters": self.model.num_parameters(),
        }

    def save(self, name: str) -> Path:
        return save_checkpoint(self.out, name, self._arrays(), self._meta())

    def restore(self, path: str | Path) -> None:
        """Continue from a checkpoint: weights, optimizer, schedule, data position, carried state, RNG.

        The checkpoint is validated as a whole before anything is changed (`load_checkpoint`), then compared
        with this trainer: text, model, optimizer and schedule kinds, batch size, position in the epoch. Raises
        `CheckpointError` naming what differs; the trainer is unchanged then.
        """
        arrays, meta = load_checkpoint(path)
        text, train = meta["text"], meta["train"]
        if text["sha256"] != self.text_sha256:
            raise CheckpointError(f"the run was trained on {text['name']!r}, and the text given now differs "
                                  "from it; resume with the same text")
        if meta["model"] != self.model.config.to_dict():
            differences = ", ".join(f"{key} {value!r} (checkpoint) vs {self.model.config.to_dict()[key]!r}"
                                    for key, value in meta["model"].items()
                                    if key != "vocabulary" and value != self.model.config.to_dict()[key])
            raise CheckpointError("the checkpoint's model configuration differs from the one requested"
                                  + (f": {differences}" if differences else " (vocabulary)"))
        for key in ("optimizer", "schedule", "batch_size"):
            if train[key] != getattr(self.config, key):
                raise CheckpointError(f"the checkpoint's train.{key} is {train[key]!r} and this run's is "
                                      f"{getattr(self.config, key)!r}; they must agree to resume")
        if meta["progress"]["batch"] >= self.train_streams.batches_per_epoch:
            raise CheckpointError(f"the checkpoint's progress.batch is {meta['progress']['batch']}, past the "
                                  f"{self.train_streams.batches_per_epoch} batches of an epoch of this text")
        if self.schedule is not None:
            probe = copy.copy(self.schedule)
            probe.__dict__.update(meta["schedule"])
            try:
                rates = [probe.lr_at(base, probe.last_epoch) for base in probe.base_lrs]
            except (OverflowError, ZeroDivisionError) as error:
                rates = [f"{error}"]
            if not all(isinstance(rate, float) and math.isfinite(rate) for rate in rates):
                raise CheckpointError(f"the checkpoint's schedule gives no usable learning rate at step "
                                      f"{probe.last_epoch} (found {rates[0]})")
        state: dict[int, dict[str, Any]] = {}
        for key, value in arrays.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        for index, values in meta["optimizer"]["scalars"].items():
            state.setdefault(int(index), {}).update(values)
        try:
            self.optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
        except ValueError as error:
            raise CheckpointError(f"the checkpoint's optimizer state does not fit: {error}") from None
        self.model.load_state_dict({k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")})
        if self.schedule is not None:
            self.schedule.load_state_dict(meta["schedule"])
        carry = [arrays[f"carry.{k}"] for k in range(2) if f"carry.{k}" in arrays]
        self.state = state_from_arrays(carry, self.model.config.model) if carry else None
        self.progress = Progress(**meta["progress"], history=meta["history"])
        default_generator().bit_generator.state = meta["rng"]

    # -- the loop ---------------------------------------------------------------------------------------
    def _validation_loss(self) -> float | None:
        if self.val_ids is None:
            return None
        return evaluate(self.model, self.val_ids, self.config.batch_size, max(self.config.seq_len, 128)).loss

    def _sample(self) -> str:
        prime = self.vocabulary.decode(self.train_streams.streams[0, :1])
        return prime + "".join(generate(self.model, self.vocabulary, prime, self.config.sample_length,
                                        temperature=0.8, seed=self.config.seed + self.progress.step))

    def _record_evaluation(self, train_losses: list[float], chars_per_second: float) -> dict[str, Any]:
        val_loss = self._validation_loss()
        record = {"step": self.progress.step, "epoch": self.progress.epoch,
                  "train_loss": float(np.mean(train_losses)) if train_losses else None,
                  "val_loss": val_loss, "lr": self.optimizer.param_groups[0]["lr"],
                  "elapsed": round(self.progress.elapsed, 3), "chars_per_second": round(chars_per_second, 1)}
        self.progress.history.append(record)
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        improved = val_loss is not None and (self.progress.best_val_loss is None or val_loss < self.progress.best_val_loss)
        if improved:
            self.progress.best_val_loss = val_loss
        self.save("latest")
        if improved:
            self.save("best")
        return record

    def train(self) -> Progress:
        """Run until --steps / --epochs / --minutes is reached (with none of them: one epoch)."""
        from tqdm import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        config = self.config
        total = self.total_steps
        if total is None and config.minutes is None:
            total = self.train_streams.batches_per_epoch
        trained_before = self.progress.elapsed
        last_clock, chars_since, seconds_since, losses_since = time.perf_counter(), 0, 0.0, []
        bar = tqdm(total=total, initial=self.progress.step, disable=self.quiet, unit="step", dynamic_ncols=True,
                   desc="training")
        self.model.train()
        try:
            while not ((total is not None and self.progress.step >= total)
                       or (config.minutes is not None and self.progress.elapsed - trained_before >= config.minutes * 60)):
                inputs, targets = self.train_streams.batch(self.progress.batch)
                logits, state = self.model(inputs, self.state)
                loss = F.cross_entropy(logits, targets)
                loss_value = float(loss.item())
                if not math.isfinite(loss_value) or loss_value > 3 * self.uniform_loss + 1:
                    raise TrainingStopped(
                        f"the training loss became {loss_value:.4g} at step {self.progress.step + 1} "
                        f"(a uniform guess scores {self.uniform_loss:.3f}); stopping. The last good checkpoint "
                        f"is kept in {self.out}. Try a lower --lr or a smaller --grad-clip.")
                self.optimizer.zero_grad()
                loss.backward()
                if config.grad_clip:
                    norm = float(nn.utils.clip_grad_norm_(self.parameters, config.grad_clip))
                    if not math.isfinite(norm):
                        raise TrainingStopped(f"the gradient norm became {norm} at step {self.progress.step + 1}; "
                                              f"stopping. The last good checkpoint is kept in {self.out}.")
                self.optimizer.step()
                if self.schedule is not None:
                    self.schedule.step()
                self.state = detach_state(state)
                self.progress.step += 1
                self.progress.batch += 1
                if self.progress.batch >= self.train_streams.batches_per_epoch:
                    self.progress.batch, self.state = 0, None
                    self.progress.epoch += 1
                now = time.perf_counter()
                self.progress.elapsed += now - last_clock
                seconds_since += now - last_clock
                chars_since += inputs.size
                losses_since.append(loss_value)
                bar.update(1)
                if self.progress.step % config.eval_every == 0:
                    record = self._record_evaluation(losses_since, chars_since / max(seconds_since, 1e-9))
                    self._show(bar, record)
                    chars_since, seconds_since, losses_since = 0, 0.0, []
                last_clock = time.perf_counter()
                if config.sample_every and self.progress.step % config.sample_every == 0:
                    self._say(bar, f"--- sample at step {self.progress.step} ---\n{self._sample()}\n---")
            if not self.progress.history or self.progress.history[-1]["step"] != self.progress.step:
                record = self._record_evaluation(losses_since, chars_since / max(seconds_since, 1e-9))
                self._show(bar, record)
        finally:
            bar.close()
        self._plot()
        return self.progress

    def _say(self, bar: Any, message: str) -> None:
        if self.quiet:
            return
        bar.write(message)

    def _show(self, bar: Any, record: dict[str, Any]) -> None:
        val = "" if record["val_loss"] is None else f" val {record['val_loss']:.4f}"
        train = "" if record["train_loss"] is None else f" train {record['train_loss']:.4f}"
        line = (f"step {record['step']} epoch {record['epoch']}{train}{val} (nats/char) "
                f"{record['chars_per_second']:.0f} chars/s")
        if self.quiet:
            self.report(line)
        else:
            bar.set_postfix_str(f"loss{train}{val}, {record['chars_per_second']:.0f} chars/s")
            bar.write(line)

    def _plot(self) -> None:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            self.report("matplotlib is not installed: no loss plot (pip install matplotlib)")
            return
        history = self.progress.history
        figure, axes = plt.subplots(figsize=(7, 4))
        steps = [r["step"] for r in history if r["train_loss"] is not None]
        axes.plot(steps, [r["train_loss"] for r in history if r["train_loss"] is not None], label="training")
        val = [(r["step"], r["val_loss"]) for r in history if r["val_loss"] is not None]
        if val:
            axes.plot(*zip(*val), marker="o", label="validation")
        axes.set_xlabel("step")
        axes.set_ylabel("loss (nats per character)")
        axes.set_title(f"{self.config.model} {self.config.layers}x{self.config.hidden} on {Path(self.text_name).name}")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(self.out / "loss.png", dpi=100)
        plt.close(figure)

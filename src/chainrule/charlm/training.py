"""Training a character-level language model: stateful truncated BPTT, evaluation, checkpoints (the loop only:
resuming a run is `resume`, owning its folder `run_folder`)."""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import nn, optim
from ..autograd import default_generator, manual_seed, no_grad
from ..nn import functional as F
from . import run_folder
from .checkpoint import CheckpointError, all_finite, open_regular_file, pack_run, save_checkpoint
from .checkpoint_schema import FORMAT, LIMITS, CheckpointDescriptionError, limit_problem, validate_description
from .budget import StepPlanner
from .corpus import Corpus, check_input_mode, load_corpus
from .distributed import DistributedError, current_world
from .model import (Architecture, CharModel, ModelConfig, detach_state, evaluate, generate, state_arrays)
from .plots import draw_loss
from .progress import TrainingBar, prose_opening
# the run folder's names, importable from here as before they had a module of their own
from .run_folder import (LOCK_NAME, RankZeroLock, RunExists, RunInUse, RunLock, _describe_os_error,  # noqa: F401
                         _read_run_file, claim_run_folder, recordable_name, shell_word)
from .text import TextStreams

# characters of the held-out part scored at each evaluation, at most (a prefix, the same every time)
MAX_VALIDATION_CHARACTERS = 1 << 21
OPTIMIZERS = {"adam": optim.Adam, "adagrad": optim.Adagrad, "rmsprop": optim.RMSprop, "sgd": optim.SGD}
SCHEDULES = ("constant", "step", "exponential", "cosine")


class TrainingStopped(RuntimeError):
    """Training was stopped: the loss or the weights became NaN or exploded, or a checkpoint or the log could
    not be written. The message says which checkpoints the run folder holds (none may have been written)."""


def _default_architecture() -> Architecture:
    """The command line's default shape: a larger model than a bare Architecture's, with dropout."""
    return Architecture(hidden=512, dropout=0.25)


@dataclass
class TrainConfig:
    """Everything that decides a training run (stored in each checkpoint, as `options()`).

    `architecture`: the model's shape (cell, hidden, layers, dropout, embedding), checked by `Architecture`;
    the vocabulary comes from the text, and `model_config` joins the two. The architecture's fields may be given
    as keyword arguments instead (`TrainConfig(hidden=64)`): they replace those of the default architecture
    (lstm 2x512, dropout 0.25, as the command line's --hidden 64 does). `from_options` builds a configuration
    from a mapping of options by name, as the command line and a checkpoint give them.
    Raises ValueError for a value of the wrong type or out of range; TypeError for an unknown keyword (the
    message lists the valid ones), or for `architecture=` given together with one of its fields.

    >>> config = TrainConfig(model="gru", hidden=64, seq_len=32)
    >>> config.architecture.hidden, config.architecture.dropout, config.seq_len, config.options()["layers"]
    (64, 0.25, 32, 2)
    >>> TrainConfig.from_options({"model": "gru", "hidden": 64, "seq_len": 32}) == config
    True
    >>> TrainConfig(hiden=64)
    Traceback (most recent call last):
    ...
    TypeError: TrainConfig got an unknown keyword argument 'hiden'; the valid ones are text, architecture, model, ...
    >>> TrainConfig(architecture=Architecture(), hidden=64)
    Traceback (most recent call last):
    ...
    TypeError: TrainConfig got architecture= and hidden=: give the model's shape one way, ...
    >>> TrainConfig(seq_len=2.5)
    Traceback (most recent call last):
    ...
    ValueError: seq-len must be an integer, got 2.5
    """

    text: str | None = None          # path of a UTF-8 text; None: the Python reference manual
    architecture: Architecture = field(default_factory=_default_architecture)
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
        if type(self.architecture) is not Architecture:   # a ModelConfig is one too, with a vocabulary
            raise ValueError(f"architecture must be an Architecture, got {type(self.architecture).__name__}")
        for name, kind in _OPTION_TYPES.items():
            value = getattr(self, name)
            if not (value is None and name in BUDGET) and not _is_a(value, kind):
                expected = "an integer" if kind is int else "a number" if kind is float else "a string"
                raise ValueError(f"{name.replace('_', '-')} must be {expected}, got {value!r}")
        if not 0 <= self.seed < 2 ** 128:   # what NumPy's generator and the checkpoint schema take
            raise ValueError(f"seed must be in [0, 2**128), got {self.seed}")
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
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{item.name.replace('_', '-')} must be a finite number, got {value}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr-decay must be in (0, 1], got {self.lr_decay}")
        if not 0.0 <= self.val_frac < 1.0:
            raise ValueError(f"val-frac must be in [0, 1), got {self.val_frac}")
        if self.sample_every < 0:
            raise ValueError(f"sample-every must be 0 (never) or positive, got {self.sample_every}")
        for name in LIMITS:   # the limits the CLI's options and the checkpoint schema use too
            value = getattr(self, name, None)
            problem = None if value is None else limit_problem(name, value)
            if problem is not None:
                raise ValueError(f"{name.replace('_', '-')} {problem}, got {value}")

    def model_config(self, vocabulary: str) -> ModelConfig:
        return ModelConfig.build(vocabulary, self.architecture)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TrainConfig:
        """A configuration from options by name (`seq_len` for --seq-len), the architecture's (model, hidden,
        layers, dropout, embedding) among them, as the command line gives them and a checkpoint's train section
        stores them; an option not given takes its default. Raises TypeError naming an unknown option,
        ValueError as the constructor does."""
        architecture_names = [f.name for f in fields(Architecture)]
        own = {name: value for name, value in options.items() if name not in architecture_names}
        # `architecture` itself is no option: the architecture's are given by name, flat
        unknown = sorted((set(own) - {f.name for f in fields(cls)}) | ({"architecture"} & set(own)))
        if unknown:
            raise TypeError(f"unknown training option(s) {', '.join(map(repr, unknown))}; the options are "
                            f"{', '.join(cls().options())}")
        chosen = {name: options[name] for name in architecture_names if name in options}
        return cls(architecture=replace(cls().architecture, **chosen), **own)

    def options(self) -> dict[str, Any]:
        """Every option by name, the architecture's in place of `architecture` (the inverse of `from_options`):
        the form the command line and a checkpoint's train section use."""
        values: dict[str, Any] = {}
        for item in fields(self):
            if item.name == "architecture":
                values.update(asdict(self.architecture))
            else:
                values[item.name] = getattr(self, item.name)
        return values


_DATACLASS_INIT = TrainConfig.__init__


def _init_with_architecture_fields(self: TrainConfig, *args: Any, **kwargs: Any) -> None:
    """TrainConfig's constructor: the dataclass's, taking the architecture's fields by name as well."""
    shape_names = [f.name for f in fields(Architecture)]
    own_names = [f.name for f in fields(TrainConfig)]
    unknown = [name for name in kwargs if name not in own_names and name not in shape_names]
    if unknown:
        valid = own_names[:2] + shape_names + own_names[2:]
        raise TypeError(f"TrainConfig got an unknown keyword argument {', '.join(map(repr, unknown))}; the valid "
                        f"ones are {', '.join(valid)}")
    chosen = {name: kwargs.pop(name) for name in shape_names if name in kwargs}
    if chosen:
        if "architecture" in kwargs or len(args) > own_names.index("architecture"):
            raise TypeError(f"TrainConfig got architecture= and {'=, '.join(chosen)}=: give the model's shape one "
                            "way, an Architecture or its fields by name")
        # the fields given replace those of the default architecture (the command line's, with dropout)
        kwargs["architecture"] = replace(_default_architecture(), **chosen)
    _DATACLASS_INIT(self, *args, **kwargs)


setattr(TrainConfig, "__init__", _init_with_architecture_fields)  # noqa: B010  # mypy: no method assignment

BUDGET = ("steps", "epochs", "minutes")   # None: no limit of that kind
# the type each option of TrainConfig must have (a float option takes an integer too, as Python's numbers do)
_OPTION_TYPES = {"seq_len": int, "batch_size": int, "optimizer": str, "lr": float, "schedule": str,
                 "lr_decay": float, "lr_decay_every": int, "grad_clip": float, "steps": int, "epochs": float,
                 "minutes": float, "val_frac": float, "eval_every": int, "sample_every": int, "sample_length": int,
                 "seed": int}


def _is_a(value: Any, kind: type) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if kind is int:
        return isinstance(value, (int, np.integer))
    if kind is float:
        return isinstance(value, (int, float, np.integer, np.floating))
    return isinstance(value, kind)


@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    batch: int = 0                   # next batch within the epoch
    elapsed: float = 0.0             # training seconds over all invocations
    best_val_loss: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _make_optimizer(config: TrainConfig, parameters: list) -> optim.Optimizer:
    return OPTIMIZERS[config.optimizer](parameters, lr=config.lr)


def _make_schedule(config: TrainConfig, optimizer: optim.Optimizer,
                   total_steps: int | None) -> optim.LRScheduler | None:
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
                 quiet: bool = False, corpus: Corpus | tuple[str, str] | None = None,
                 lock: RunLock | None = None) -> None:
        """`corpus`: a `Corpus` or (text, name) already read (e.g. from standard input), instead of reading
        `config.text` (`corpus.load_corpus`: a regular file is encoded once to the cache and memory-mapped).
        `lock`: the run folder's lock when the caller holds it; otherwise `train` takes it."""
        self.config, self.out, self.report, self.quiet, self.lock = config, Path(out), report, quiet, lock
        self._lock_in_use: RunLock | None = lock   # the lock held while training (checked before each write)
        self.world = current_world()   # one process, or the ranks of an MPI run (distributed.py)
        self.world.check_batch(config.batch_size)
        if not self.world.is_root:   # rank 0 reports for the run
            self.report, self.quiet = (lambda line: None), True
        data = load_corpus(corpus if corpus is not None else config.text, progress=not quiet)
        self.text_name, self.text_sha256, self.vocabulary = data.name, data.sha256, data.vocabulary
        check_input_mode(len(self.vocabulary), config.architecture.embedding)
        # ranks that read other bytes or other options would train apart silently
        self.world.check_same({"text_sha256": data.sha256, "vocabulary": self.vocabulary.characters,
                               **{k: v for k, v in asdict(config).items() if k != "text"}})
        train_ids, val_ids = data.split(config.val_frac)
        if 0 < len(val_ids) < 2:   # one character has no next character to predict: no validation at all
            raise ValueError(f"--val-frac {config.val_frac} leaves {len(val_ids)} character of the "
                             f"{len(data):,}-character text for validation, and validation needs at least 2; give "
                             "a larger --val-frac, or --val-frac 0 to train without validation")
        try:
            self.train_streams = TextStreams(train_ids, config.batch_size, config.seq_len)
        except ValueError as error:
            if not config.val_frac:
                raise
            raise ValueError(f"the training part of the text is {len(train_ids):,} of its {len(data):,} characters "
                             f"(--val-frac {config.val_frac} keeps {len(val_ids):,} for validation), too few: "
                             f"{error}; or lower --val-frac") from None
        self.val_ids = val_ids if len(val_ids) >= 2 else None
        if self.val_ids is not None and len(self.val_ids) > MAX_VALIDATION_CHARACTERS:
            # every evaluation scores the same prefix: on a gigabyte text the whole part would take minutes
            self.report(f"validation scores the first {MAX_VALIDATION_CHARACTERS:,} of the {len(self.val_ids):,} "
                        "held-out characters at each evaluation (chainrule eval RUN TEXT scores a whole text)")
            self.val_ids = self.val_ids[:MAX_VALIDATION_CHARACTERS]
        manual_seed(config.seed)
        self.model = CharModel(config.model_config(self.vocabulary.characters))
        self.world.decorrelate(default_generator())   # same initial weights, each rank its own dropout masks
        self.parameters = list(self.model.parameters())
        self.optimizer = _make_optimizer(config, self.parameters)
        self.schedule = _make_schedule(config, self.optimizer, self.total_steps)
        self.state: Any = None
        self.state_before_batch: Any = None
        self.progress = Progress()
        self.uniform_loss = math.log(len(self.vocabulary))
        # observers of the run (e.g. charlm.tensorboard.TensorBoardLogger): on_step, on_evaluation, on_sample, close
        self.callbacks: list[Any] = []
        self.step_planner: StepPlanner | None = None   # set for a budget-planned run (budget.plan_for_budget)

    @property
    def total_steps(self) -> int | None:
        limits = []
        if self.config.steps is not None:
            limits.append(self.config.steps)
        if self.config.epochs is not None:
            limits.append(int(math.ceil(self.config.epochs * self.train_streams.batches_per_epoch)))
        return min(limits) if limits else None

    # -- checkpoints ------------------------------------------------------------------------------------
    def _packed(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays and the optimizer's other state, as a checkpoint stores them (`checkpoint.pack_run`)."""
        # the carried state of all B streams (gathered from the ranks of an MPI run: axis 1 is the batch)
        carried = self.world.gather_rows(state_arrays(self.state), axis=1) if self.state is not None else None
        self.world.decorrelate(default_generator())   # re-derived as a resume does, so it continues exactly
        return pack_run(self.model.state_dict(), self.optimizer.state_dict(), carried)

    def _arrays(self) -> dict[str, np.ndarray]:
        return self._packed()[0]

    def _meta(self, optimizer: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": self.progress.step,
            "model": self.model.config.to_dict(),
            "train": {**self.config.options(),
                      "text": None if self.config.text is None else recordable_name(self.config.text)},
            "text": {"name": recordable_name(self.text_name), "sha256": self.text_sha256},
            "progress": {k: v for k, v in asdict(self.progress).items() if k != "history"},
            "history": self.progress.history,
            "optimizer": optimizer,
            "schedule": self.schedule.state_dict() if self.schedule else None,
            "rng": default_generator().bit_generator.state,
            "parameters": self.model.num_parameters(),
            "world_size": self.world.size,
        }

    def save(self, name: str) -> Path:
        """Write checkpoint `name` (latest or best). A failed write (full disk, ...) raises `TrainingStopped`
        saying what failed and which checkpoints are intact; the previous one of that name always is. Refuses
        (`TrainingStopped`) when the run folder was removed or replaced since its lock was taken."""
        if not self.world.is_root:   # only rank 0 writes; the others take part in gathering the carried state
            self._packed()
            return self.out / f"{name}.json"
        replaced = self._lock_in_use.check() if self._lock_in_use is not None else None
        if replaced is not None:
            raise TrainingStopped(f"{replaced}; not writing the {name} checkpoint there (another run may own the "
                                  "folder now). This training's work since its last checkpoint is lost")
        try:
            arrays, optimizer = self._packed()
            return save_checkpoint(self.out, name, arrays, self._meta(optimizer))
        except OSError as error:
            # the folder may have been replaced during the write: then its checkpoints are another run's
            replaced = self._lock_in_use.check() if self._lock_in_use is not None else None
            if replaced is not None:
                raise TrainingStopped(f"could not write the {name} checkpoint: {replaced} (another run may own "
                                      "the folder now). This training's work since its last checkpoint is lost"
                                      ) from error
            raise TrainingStopped(f"could not write the {name} checkpoint: {_describe_os_error(error)}. "
                                  f"{self.checkpoints_on_disk()}") from error

    def resume_command(self, target: str | Path | None = None) -> str:
        """The command that continues this run from `target` (default: the run folder, its latest checkpoint)."""
        return run_folder.resume_command(self.out, self.config.text, target)

    def checkpoints_on_disk(self) -> str:
        """What the run folder holds now, in a sentence (`run_folder.checkpoints_on_disk`)."""
        return run_folder.checkpoints_on_disk(self.out, self._lock_in_use)

    def recompute_schedule(self) -> None:
        """Rebuild the learning-rate schedule from the configuration (a resume's new options, or the step count
        a time budget now allows) and continue it at the current step."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr
            group.pop("initial_lr", None)   # a schedule sets it from lr; without one a group has none
        self.schedule = _make_schedule(self.config, self.optimizer, self.total_steps)
        if self.schedule is not None:
            self.schedule.load_state_dict({**self.schedule.state_dict(), "last_epoch": self.progress.step})

    def _append_log(self, record: dict[str, Any]) -> None:
        if not self.world.is_root:
            return
        try:
            # O_NOFOLLOW: a log.jsonl planted as a link must not make us append to the file it points to
            # and a FIFO or device must not make it wait forever (open_regular_file)
            descriptor = open_regular_file(self.out / "log.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                           "the run's log")
            with os.fdopen(descriptor, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        except CheckpointError as error:
            raise TrainingStopped(f"could not append to the log: {error}. {self.checkpoints_on_disk()}") from None
        except OSError as error:
            raise TrainingStopped(f"could not append to the log: {_describe_os_error(error)}. "
                                  f"{self.checkpoints_on_disk()}") from error

    # -- the loop ---------------------------------------------------------------------------------------
    @property
    def divergence_threshold(self) -> float:
        """A loss above this (nats/char) has diverged: three times a uniform guess's, plus one."""
        return 3 * self.uniform_loss + 1

    def _stop(self, what: str, during_step: bool = False) -> TrainingStopped:
        """The error that ends a diverged run: what happened, at which step, what is on disk, what to do.

        The advice names a checkpoint that a lower learning rate can continue: not one holding the weights
        whose loss diverged (`during_step`: the loss of the current weights, computed before any update, so no
        learning rate changes it), and of the others the best (lowest validation loss) before the latest,
        since the latest may already be on the way up."""
        step = self.progress.step + 1 if during_step else self.progress.step
        lower = self.config.lr / 10
        on_disk = self.checkpoints_on_disk()
        diverged_weights = self.progress.step if during_step else None
        usable = [name for name in ("best", "latest") if self._checkpoint_step(name) not in (None, diverged_weights)]
        if usable:
            name = usable[0]
            target = self.out if name == "latest" else self.out / f"{name}.json"
            advice = (f"Continue from the {name} checkpoint (step {self._checkpoint_step(name)}) with a lower "
                      f"learning rate: {self.resume_command(target)} --lr {lower:.3g}")
        else:
            advice = f"Start again (in a new folder) with a lower learning rate, e.g. --lr {lower:.3g}"
        if not self.config.grad_clip or self.config.grad_clip > 1:
            advice += " (and/or --grad-clip 1)"
        return TrainingStopped(f"{what} at step {step}; stopping. {on_disk} {advice}.")

    def _checkpoint_step(self, name: str) -> int | None:
        """The step of checkpoint `name` on disk, or None when there is none (or it cannot be read)."""
        try:
            step = json.loads(_read_run_file(self.out / f"{name}.json").decode("utf-8"))["step"]
        except (OSError, ValueError, KeyError, TypeError, CheckpointError):
            return None
        return step if isinstance(step, int) else None

    def _validation_loss(self) -> float | None:
        if self.val_ids is None:
            return None
        seq_len = max(self.config.seq_len, 128)

        def score(ids: np.ndarray, streams: int) -> tuple[float, int]:
            result = evaluate(self.model, ids, streams, seq_len)
            return result.loss, result.characters

        return self.world.evaluate(score, self.val_ids, self.config.batch_size)

    def _guard_loss(self, inputs: np.ndarray, targets: np.ndarray) -> float:
        """Without validation text: the loss of the current weights on the last training batch."""
        was_training = self.model.training
        self.model.eval()
        try:
            with no_grad():
                logits, _ = self.model(inputs, self.state_before_batch)
                return self.world.mean(float(F.cross_entropy(logits, targets).item()))
        finally:
            self.model.train(was_training)

    def validation_text(self, limit: int = 1 << 16) -> str | None:
        """The start of the held-out text, at most `limit` characters (decoded from its ids: on a memory-mapped
        gigabyte corpus the whole of it would not fit), or None without validation."""
        return None if self.val_ids is None else self.vocabulary.decode(self.val_ids[:limit])

    def _sample(self) -> str:
        # prose of the corpus to continue, not whatever follows the stream's first character (a table rule)
        prime = prose_opening(self.validation_text() or "", self.vocabulary.characters)
        return prime + "".join(generate(self.model, self.vocabulary, prime, self.config.sample_length,
                                        temperature=0.8, seed=self.config.seed + self.progress.step))

    def _record_evaluation(self, train_losses: list[float], chars_per_second: float,
                           batch: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
        """Evaluate, then write a checkpoint only if the weights are finite and the loss has not diverged."""
        try:
            self.world.check_identical(self.model.state_dict())
        except DistributedError as error:
            raise TrainingStopped(f"{error}. {self.checkpoints_on_disk()}") from None
        if not all_finite(self.model.state_dict()):
            raise self._stop("the weights became NaN or infinite")
        val_loss = self._validation_loss()
        guard = val_loss if val_loss is not None else self._guard_loss(*batch)
        if not math.isfinite(guard) or guard > self.divergence_threshold:
            which = "validation" if val_loss is not None else "training-batch"
            raise self._stop(f"the {which} loss of the weights became {guard:.4g} (a uniform guess scores "
                             f"{self.uniform_loss:.3f})")
        record = {"step": self.progress.step, "epoch": self.progress.epoch,
                  "train_loss": float(np.mean(train_losses)) if train_losses else None,
                  "val_loss": val_loss, "lr": self.optimizer.param_groups[0]["lr"],
                  "elapsed": round(self.progress.elapsed, 3), "chars_per_second": round(chars_per_second, 1),
                  "losses": [round(value, 5) for value in train_losses]}   # each step's, for loss.png
        self.progress.history.append(record)
        best = self.progress.best_val_loss
        improved = val_loss is not None and (best is None or val_loss < best)
        if improved:
            self.progress.best_val_loss = val_loss
        # checkpoints first, then the log: a crash in between leaves the record in the checkpoint's history,
        # and the next resume writes it to the log (see _reconcile_log)
        self.save("latest")
        if improved:
            self.save("best")
        self._append_log(record)
        self._notify("on_evaluation", record, batch)
        return record

    def train(self) -> Progress:
        """Run until --steps / --epochs / --minutes is reached (with none of them: one epoch).

        Holds the run folder's lock throughout (taken here unless the caller holds it: `RunInUse` when another
        process does). Raises `TrainingStopped` when the loss or the weights diverge or a write fails; no
        checkpoint is ever written with non-finite weights or a diverged loss.
        """
        self._check_description()
        lock = (self.lock if self.lock is not None and self.lock.held
                else (RunLock if self.world.is_root else RankZeroLock)(self.out).acquire())
        self._lock_in_use = lock
        try:
            return self._train()
        finally:
            self._notify("close")
            if lock is not self.lock:
                lock.release()

    def _check_description(self) -> None:
        """Refuse (`TrainingStopped`) before the first step a run whose checkpoint description the schema would
        refuse at its first write, so no training is lost to a check that cannot pass later."""
        record = {"format": FORMAT, "weights_file": f"latest-{self.progress.step:08d}.safetensors",
                  "weights_sha256": "0" * 64, **self._meta(self._packed()[1])}
        try:
            validate_description(json.loads(json.dumps(record)))
        except CheckpointDescriptionError as error:
            raise TrainingStopped(f"not starting: the checkpoints of this run could not be written: {error}") from None

    def _train(self) -> Progress:
        config = self.config
        total = self.total_steps
        if total is None and config.minutes is None:
            total = self.train_streams.batches_per_epoch
        trained_before = self.progress.elapsed
        last_clock, chars_since, seconds_since, losses_since = time.perf_counter(), 0, 0.0, []
        bar = TrainingBar(config.minutes, total, self.progress.step, disable=self.quiet)
        self.model.train()
        batch = None
        try:
            while not ((total is not None and self.progress.step >= total)
                       or (config.minutes is not None
                           and self.progress.elapsed - trained_before >= config.minutes * 60)):
                inputs, targets = batch = self.world.shard(self.train_streams.batch(self.progress.batch))
                self.state_before_batch = self.state
                logits, state = self.model(inputs, self.state)
                loss = F.cross_entropy(logits, targets)
                loss_value = self.world.mean(float(loss.item()))   # the global batch's loss
                if not math.isfinite(loss_value) or loss_value > self.divergence_threshold:
                    raise self._stop(f"the training loss became {loss_value:.4g} (a uniform guess scores "
                                     f"{self.uniform_loss:.3f})", during_step=True)
                self.optimizer.zero_grad()
                loss.backward()
                self.world.average_gradients(self.parameters)   # before clipping: the global norm
                if config.grad_clip:
                    norm = float(nn.utils.clip_grad_norm_(self.parameters, config.grad_clip))
                    if not math.isfinite(norm):
                        raise self._stop(f"the gradient norm became {norm}", during_step=True)
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
                chars_since += inputs.size * self.world.size
                losses_since.append(loss_value)
                bar.advance(now - last_clock, self.progress.step, loss_value, self.optimizer.param_groups[0]["lr"],
                            inputs.size * self.world.size / max(now - last_clock, 1e-9))
                if self.step_planner is not None:
                    planned = self.step_planner.observe(self.progress.step, now - last_clock, config.steps)
                    if planned is not None:   # the schedule continues at this step with the new length
                        self.config = config = replace(config, steps=planned)
                        self.recompute_schedule()
                        total = planned
                        self._say(bar, self.step_planner.last_notice)
                self._notify("on_step", loss_value, norm if config.grad_clip else None)
                if self.progress.step % config.eval_every == 0:
                    record = self._record_evaluation(losses_since, chars_since / max(seconds_since, 1e-9), batch)
                    self._show(bar, record)
                    chars_since, seconds_since, losses_since = 0, 0.0, []
                last_clock = time.perf_counter()
                if config.sample_every and self.progress.step % config.sample_every == 0:
                    sample = self._sample()
                    self._say(bar, f"--- sample at step {self.progress.step} ---\n{sample}\n---")
                    self._notify("on_sample", sample)
            history = self.progress.history
            if batch is not None and (not history or history[-1]["step"] != self.progress.step):
                record = self._record_evaluation(losses_since, chars_since / max(seconds_since, 1e-9), batch)
                self._show(bar, record)
        finally:
            bar.close()
        self._plot()
        return self.progress

    def _notify(self, event: str, *arguments: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *arguments)

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
            bar.evaluated(record)
            bar.write(line)

    def _plot(self) -> None:
        if not self.world.is_root:
            return
        architecture = self.config.architecture
        title = (f"{architecture.model} {architecture.layers}x{architecture.hidden} on "
                 f"{recordable_name(Path(self.text_name).name)}")
        try:
            draw_loss(self.progress.history, title, self.out)
        except ImportError:
            self.report("matplotlib is not installed: no loss plot (pip install matplotlib)")
        except OSError as error:
            self.report(f"could not draw the loss plot: {_describe_os_error(error)} (the checkpoints are written)")

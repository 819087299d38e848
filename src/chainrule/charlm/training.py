"""Training a character-level language model: stateful truncated BPTT, evaluation, checkpoints, exact resume."""
from __future__ import annotations

import copy
import errno
import json
import math
import os
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import nn, optim
from ..autograd import default_generator, manual_seed, no_grad
from ..nn import functional as F
from .checkpoint import (MAX_DESCRIPTION_BYTES, CheckpointError, all_finite, load_checkpoint, open_regular_file,
                         pack_run, read_regular_file, remove_leftovers, run_files, save_checkpoint, unpack_run,
                         write_atomically)
from .checkpoint_schema import FORMAT, LIMITS, CheckpointDescriptionError, limit_problem, validate_description
from .model import (CharModel, ModelConfig, detach_state, evaluate, generate, state_arrays, state_from_arrays)
from .plots import draw_loss
from .text import (DEFAULT_CORPUS_NAME, TextStreams, Vocabulary, default_corpus, read_text, split_text,
                   text_digest)

OPTIMIZERS = {"adam": optim.Adam, "adagrad": optim.Adagrad, "rmsprop": optim.RMSprop, "sgd": optim.SGD}
SCHEDULES = ("constant", "step", "exponential", "cosine")


class TrainingStopped(RuntimeError):
    """Training was stopped: the loss or the weights became NaN or exploded, or a checkpoint or the log could
    not be written. The message says which checkpoints the run folder holds (none may have been written)."""


class RunInUse(RuntimeError):
    """Another process holds the run folder's lock: it is training into that folder now."""


class RunExists(RuntimeError):
    """A fresh run was asked for in a folder that already holds a run's files."""


LOCK_NAME = ".chainrule.lock"


class RunLock:
    """An exclusive lock on a run folder for as long as one process writes to it (`fcntl.flock`, POSIX), on the
    folder itself and on RUN/.chainrule.lock. The kernel drops it when the process ends, however it ends (kill
    -9 included), so a crash never leaves a stale lock. The lock on the folder's own descriptor holds even when
    someone deletes the lock file; `check` tells whether the path still names the locked folder (after `rm -rf
    RUN` and a new run there, it does not, and the old process must not write into the new run). The holder
    writes its pid and host into the lock file, so that a refused process can say who holds the folder. Raises
    `RunInUse` when another process holds it, NotADirectoryError when `folder` is a file, `CheckpointError`
    when the lock file is not a regular file (a FIFO, a device).

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with RunLock(folder):
    ...     RunLock(folder).acquire()
    Traceback (most recent call last):
    ...
    chainrule.charlm.training.RunInUse: ... is being written by another training (pid ...
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._descriptor: int | None = None
        self._folder_descriptor: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{self.folder} is a file, not a folder for a run")
        if os.path.islink(self.folder) and not self.folder.exists():
            raise NotADirectoryError(f"{self.folder} is a broken or looping symbolic link (it leads to no folder); "
                                     "remove it, or choose another --out")
        self.folder.mkdir(parents=True, exist_ok=True)
        folder = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        descriptor = None
        try:
            try:
                fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunInUse(self._refusal(None)) from None
            # a lock file planted as a link must not make us truncate the file it points to (O_NOFOLLOW), nor one
            # planted as a FIFO or device make us wait or fail obscurely (open_regular_file)
            descriptor = open_regular_file(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, "the run's lock file")
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunInUse(self._refusal(descriptor)) from None
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                              "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        except BaseException:
            os.close(folder)
            if descriptor is not None:
                os.close(descriptor)
            raise
        self._descriptor, self._folder_descriptor = descriptor, folder
        return self

    def _refusal(self, descriptor: int | None) -> str:
        if descriptor is None:
            try:
                descriptor = open_regular_file(self.folder / LOCK_NAME, os.O_RDONLY, "the run's lock file")
            except (OSError, CheckpointError):
                holder = "a process whose lock file is gone"
            else:
                holder = _lock_holder(descriptor)
                os.close(descriptor)
        else:
            holder = _lock_holder(descriptor)
        return (f"{self.folder} is being written by another training ({holder}); wait for it to end or stop it, "
                "or choose another folder")

    def check(self) -> str | None:
        """None while the folder's path still names the folder this lock holds; otherwise what happened."""
        if self._folder_descriptor is None:
            return None
        try:
            now = os.stat(self.folder)
        except OSError:
            return f"{self.folder} was removed while this training held it"
        held = os.fstat(self._folder_descriptor)
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return f"{self.folder} was removed and made again (by another process?) while this training held it"
        return None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        for descriptor in (self._descriptor, self._folder_descriptor):
            if descriptor is not None:
                os.close(descriptor)   # closing the last descriptor drops the flock
        self._descriptor = self._folder_descriptor = None

    def __enter__(self) -> RunLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_holder(descriptor: int) -> str:
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0).decode("utf-8"))
        return f"pid {int(holder['pid'])} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet written its pid"


def claim_run_folder(folder: str | Path, fresh: bool) -> tuple[RunLock, list[Path]]:
    """Lock `folder` for this process and clean what a crashed run left in it; returns (lock, removed files).

    `fresh`: a new run, refused (`RunExists`) when the folder holds any file of a run (a checkpoint, weights,
    the log or the plot), so no run is ever overwritten. Raises `RunInUse` when another process holds it.
    """
    lock = RunLock(folder).acquire()
    try:
        removed = remove_leftovers(folder)
        existing = run_files(folder)
        if fresh and existing:
            names = ", ".join(p.name for p in existing[:6]) + (" ..." if len(existing) > 6 else "")
            advice = (f"continue it with --resume {folder}" if (Path(folder) / "latest.json").exists()
                      else "remove those files")
            raise RunExists(f"{folder} already holds a training run ({names}); {advice}, or choose another --out")
    except BaseException:
        lock.release()
        raise
    return lock, removed


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
        return ModelConfig(vocabulary, self.model, self.hidden, self.layers, self.dropout, self.embedding)


# A resume continues one run. These options decide the model, the data stream or the optimizer's state, so a
# resume that asks for other values is refused; the others may change mid-run.
FIXED_ON_RESUME = ("model", "hidden", "layers", "embedding", "seq_len", "batch_size", "val_frac", "seed",
                   "optimizer", "schedule")
CHANGEABLE_ON_RESUME = ("lr", "lr_decay", "lr_decay_every", "grad_clip", "dropout", "eval_every", "sample_every",
                        "sample_length", "steps", "epochs", "minutes")
BUDGET = ("steps", "epochs", "minutes")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def resume_config(stored: TrainConfig, given: dict[str, Any],
                  differences: list[str] | None = None) -> tuple[TrainConfig, dict[str, list[Any]]]:
    """The configuration of a resumed run, and what the resume changes: {field: [the run's, the new]}.

    `given` holds only the options the user gave. Those of FIXED_ON_RESUME must equal the run's, or ValueError
    lists every difference (with `differences` found elsewhere, e.g. the text). The budget: with any of
    steps/epochs/minutes given, exactly the limits given; with none, the run's. Other options given replace
    the run's. An option given with the run's own value is no change.

    >>> config, changes = resume_config(TrainConfig(lr=0.01, steps=100), {"lr": 0.001, "steps": 300})
    >>> config.lr, config.steps, changes
    (0.001, 300, {'lr': [0.01, 0.001], 'steps': [100, 300]})
    >>> resume_config(TrainConfig(hidden=64), {"hidden": 32, "seq_len": 64})
    Traceback (most recent call last):
    ...
    ValueError: these options differ from the run's, which keeps its model and data stream: --hidden 32 ...
    """
    differences = list(differences or [])
    differences += [f"{_option(n)} {given[n]} (the run has {getattr(stored, n)})"
                    for n in FIXED_ON_RESUME if n in given and given[n] != getattr(stored, n)]
    if differences:
        text_differs = any(d.startswith("TEXT_FILE") for d in differences)
        advice = (("Give the run's own text and leave the differing options out" if text_differs else
                   "Leave them out") + " to continue the run, or start a new run with another --out")
        raise ValueError("these options differ from the run's, which keeps its model and data stream: "
                         + "; ".join(differences) + ". " + advice)
    updates = {n: given[n] for n in CHANGEABLE_ON_RESUME if n in given and n not in BUDGET}
    if any(n in given for n in BUDGET):
        updates.update({n: given.get(n) for n in BUDGET})
    changes = {n: [getattr(stored, n), v] for n, v in updates.items() if v != getattr(stored, n)}
    if "text" in given:
        updates["text"] = given["text"]
    return replace(stored, **updates), changes


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
                 quiet: bool = False, corpus: tuple[str, str] | None = None, lock: RunLock | None = None) -> None:
        """`corpus`: (text, name) already read (e.g. from standard input), instead of reading `config.text`.
        `lock`: the run folder's lock when the caller holds it; otherwise `train` takes it."""
        self.config, self.out, self.report, self.quiet, self.lock = config, Path(out), report, quiet, lock
        self._lock_in_use: RunLock | None = lock   # the lock held while training (checked before each write)
        text, self.text_name = corpus if corpus is not None else _load_corpus(config)
        self.text_sha256 = text_digest(text)
        self.vocabulary = Vocabulary.from_text(text)
        train_text, val_text = split_text(text, config.val_frac)
        if 0 < len(val_text) < 2:   # one character has no next character to predict: no validation at all
            raise ValueError(f"--val-frac {config.val_frac} leaves {len(val_text)} character of the "
                             f"{len(text):,}-character text for validation, and validation needs at least 2; give "
                             "a larger --val-frac, or --val-frac 0 to train without validation")
        try:
            self.train_streams = TextStreams(self.vocabulary.encode(train_text), config.batch_size, config.seq_len)
        except ValueError as error:
            if not config.val_frac:
                raise
            raise ValueError(f"the training part of the text is {len(train_text):,} of its {len(text):,} characters "
                             f"(--val-frac {config.val_frac} keeps {len(val_text):,} for validation), too few: "
                             f"{error}; or lower --val-frac") from None
        self.val_ids = self.vocabulary.encode(val_text) if len(val_text) >= 2 else None
        manual_seed(config.seed)
        self.model = CharModel(config.model_config(self.vocabulary.characters))
        self.parameters = list(self.model.parameters())
        self.optimizer = _make_optimizer(config, self.parameters)
        self.schedule = _make_schedule(config, self.optimizer, self.total_steps)
        self.state: Any = None
        self.state_before_batch: Any = None
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
    def _packed(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays and the optimizer's other state, as a checkpoint stores them (`checkpoint.pack_run`)."""
        carried = state_arrays(self.state) if self.state is not None else None
        return pack_run(self.model.state_dict(), self.optimizer.state_dict(), carried)

    def _arrays(self) -> dict[str, np.ndarray]:
        return self._packed()[0]

    def _meta(self, optimizer: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": self.progress.step,
            "model": self.model.config.to_dict(),
            "train": {**asdict(self.config),
                      "text": None if self.config.text is None else recordable_name(self.config.text)},
            "text": {"name": recordable_name(self.text_name), "sha256": self.text_sha256},
            "progress": {k: v for k, v in asdict(self.progress).items() if k != "history"},
            "history": self.progress.history,
            "optimizer": optimizer,
            "schedule": self.schedule.state_dict() if self.schedule else None,
            "rng": default_generator().bit_generator.state,
            "parameters": self.model.num_parameters(),
        }

    def save(self, name: str) -> Path:
        """Write checkpoint `name` (latest or best). A failed write (full disk, ...) raises `TrainingStopped`
        saying what failed and which checkpoints are intact; the previous one of that name always is. Refuses
        (`TrainingStopped`) when the run folder was removed or replaced since its lock was taken."""
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
        """The command that continues this run from `target` (default: the run folder, its latest checkpoint);
        a run on a text file is resumed with that text given again."""
        text = self.config.text
        given = "" if text is None else " TEXT_FILE" if str(text) == "-" else f" {shell_word(text)}"
        return f"chainrule train{given} --resume {shell_word(self.out if target is None else target)}"

    def checkpoints_on_disk(self) -> str:
        """What the run folder holds now, in a sentence: each checkpoint and its step, or that there is none;
        when the folder was removed or replaced since the lock was taken, that (its checkpoints are not this run's)."""
        replaced = self._lock_in_use.check() if self._lock_in_use is not None else None
        if replaced is not None:
            return f"{replaced}: the checkpoints there are not this run's."
        found = []
        for name in ("latest", "best"):
            path = self.out / f"{name}.json"
            try:
                step = json.loads(_read_run_file(path).decode("utf-8"))["step"]
            except (OSError, ValueError, KeyError, TypeError, CheckpointError):
                continue
            found.append(f"{path} (step {step})")
        if not found:
            return f"No checkpoint has been written to {self.out}."
        return f"The checkpoints in {self.out} are intact: {', '.join(found)}."

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
        model_state, optimizer_state, carry = unpack_run(arrays, meta["optimizer"])
        try:
            self.optimizer.load_state_dict(optimizer_state)
        except ValueError as error:
            raise CheckpointError(f"the checkpoint's optimizer state does not fit: {error}") from None
        self.model.load_state_dict(model_state)
        if self.schedule is not None:
            self.schedule.load_state_dict(meta["schedule"])
        self.state = state_from_arrays(carry, self.model.config.model, self.parameters[0].device) if carry else None
        self.progress = Progress(**meta["progress"], history=meta["history"])
        default_generator().bit_generator.state = meta["rng"]

    # -- resuming ---------------------------------------------------------------------------------------
    def continue_run(self, checkpoint: str | Path, changes: dict[str, list[Any]]) -> list[str]:
        """After `restore(checkpoint)`: apply what the resume changes and make the folder agree with the
        checkpoint. Returns notices to show. Raises ValueError when the budget is already reached.

        - dropout: set on the model (the weights do not depend on it);
        - the learning rate: with --lr, --lr-decay, --lr-decay-every or (cosine) the run's length changed, the
          schedule is recomputed from the new options and continued at the current step: from here on the
          rate is the one a run started with these options would use at these steps (a cosine resumed with
          more steps jumps to the longer schedule's rate at the current step, e.g. up from 0 at the old end,
          then decreases to 0 at the new end). Without such a change the schedule continues exactly;
        - log.jsonl holds each evaluation up to the checkpoint's step once and nothing after it (see
          `_reconcile_log`), then a record of the resume and its changes;
        - a resume from a checkpoint other than latest.json makes it the latest at once.
        """
        checkpoint = Path(checkpoint)
        step, total = self.progress.step, self.total_steps
        if total is not None and total <= step:
            limit = ", ".join(f"{_option(n)} {getattr(self.config, n)}" for n in ("steps", "epochs")
                              if getattr(self.config, n) is not None)
            raise ValueError(f"the run in {self.out} is at step {step}, and {limit} ends it at step {total} "
                             f"(a total, counted across resumes): nothing to train. Ask for more, e.g. --steps "
                             f"{step + max(step, 1)}")
        notices = []
        if "dropout" in changes:
            self.model.config.dropout = self.config.dropout
            if self.model.rnn.num_layers > 1:
                self.model.rnn.dropout = self.config.dropout
        lr_before = self.optimizer.param_groups[0]["lr"]
        schedule_changed = any(n in changes for n in ("lr", "lr_decay", "lr_decay_every"))
        if self.config.schedule == "cosine" and self.schedule is not None:
            schedule_changed |= self.schedule.T_max != total
        if schedule_changed:
            self._recompute_schedule()
        for name, (before, after) in changes.items():
            notices.append(f"{_option(name)}: {before} -> {after}")
        if schedule_changed:
            notices.append(f"learning rate at step {step}: {lr_before:.6g} -> "
                           f"{self.optimizer.param_groups[0]['lr']:.6g} ({self.config.schedule} schedule)")
        self._reconcile_log(step)
        self._append_log({"resumed_at_step": step, "checkpoint": checkpoint.name,
                          "changed": {n: v for n, v in changes.items()}})
        if checkpoint.name != "latest.json":
            self.save("latest")
            notices.append(f"{checkpoint.name} (step {step}) is now also {self.out / 'latest.json'}")
        return notices

    def _recompute_schedule(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr
            group.pop("initial_lr", None)   # a schedule sets it from lr; without one a group has none
        self.schedule = _make_schedule(self.config, self.optimizer, self.total_steps)
        if self.schedule is not None:
            self.schedule.load_state_dict({**self.schedule.state_dict(), "last_epoch": self.progress.step})

    def _reconcile_log(self, step: int) -> None:
        """Make log.jsonl tell what happened up to the checkpoint's `step`, each evaluation once: drop what a
        crashed or diverged later run logged after it (and lines cut short), add the checkpoint's evaluations
        that a crash kept out of the log."""
        path = self.out / "log.jsonl"
        try:
            lines = _read_run_file(path, MAX_LOG_BYTES, "the run's log").decode("utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        kept, logged = [], set()
        for line in lines:
            try:
                record = json.loads(line)
                at = record.get("step", record.get("resumed_at_step"))
            except (ValueError, AttributeError):
                continue  # a line cut short by a crash
            if isinstance(at, int) and at <= step:
                kept.append(line + "\n")
                if "step" in record:
                    logged.add(record["step"])
        missing = [json.dumps(r) + "\n" for r in self.progress.history
                   if isinstance(r, dict) and r.get("step") not in logged]
        if len(kept) != len(lines) or missing:
            write_atomically(path, "".join(kept + missing).encode("utf-8"))

    def _append_log(self, record: dict[str, Any]) -> None:
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
        return evaluate(self.model, self.val_ids, self.config.batch_size, max(self.config.seq_len, 128)).loss

    def _guard_loss(self, inputs: np.ndarray, targets: np.ndarray) -> float:
        """Without validation text: the loss of the current weights on the last training batch."""
        was_training = self.model.training
        self.model.eval()
        try:
            with no_grad():
                logits, _ = self.model(inputs, self.state_before_batch)
                return float(F.cross_entropy(logits, targets).item())
        finally:
            self.model.train(was_training)

    def _sample(self) -> str:
        prime = self.vocabulary.decode(self.train_streams.streams[0, :1])
        return prime + "".join(generate(self.model, self.vocabulary, prime, self.config.sample_length,
                                        temperature=0.8, seed=self.config.seed + self.progress.step))

    def _record_evaluation(self, train_losses: list[float], chars_per_second: float,
                           batch: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
        """Evaluate, then write a checkpoint only if the weights are finite and the loss has not diverged."""
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
                  "elapsed": round(self.progress.elapsed, 3), "chars_per_second": round(chars_per_second, 1)}
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
        return record

    def train(self) -> Progress:
        """Run until --steps / --epochs / --minutes is reached (with none of them: one epoch).

        Holds the run folder's lock throughout (taken here unless the caller holds it: `RunInUse` when another
        process does). Raises `TrainingStopped` when the loss or the weights diverge or a write fails; no
        checkpoint is ever written with non-finite weights or a diverged loss.
        """
        self._check_description()
        lock = self.lock if self.lock is not None and self.lock.held else RunLock(self.out).acquire()
        self._lock_in_use = lock
        try:
            return self._train()
        finally:
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
        from tqdm import tqdm

        config = self.config
        total = self.total_steps
        if total is None and config.minutes is None:
            total = self.train_streams.batches_per_epoch
        trained_before = self.progress.elapsed
        last_clock, chars_since, seconds_since, losses_since = time.perf_counter(), 0, 0.0, []
        bar = tqdm(total=total, initial=self.progress.step, disable=self.quiet, unit="step", dynamic_ncols=True,
                   desc="training")
        self.model.train()
        batch = None
        try:
            while not ((total is not None and self.progress.step >= total)
                       or (config.minutes is not None
                           and self.progress.elapsed - trained_before >= config.minutes * 60)):
                inputs, targets = batch = self.train_streams.batch(self.progress.batch)
                self.state_before_batch = self.state
                logits, state = self.model(inputs, self.state)
                loss = F.cross_entropy(logits, targets)
                loss_value = float(loss.item())
                if not math.isfinite(loss_value) or loss_value > self.divergence_threshold:
                    raise self._stop(f"the training loss became {loss_value:.4g} (a uniform guess scores "
                                     f"{self.uniform_loss:.3f})", during_step=True)
                self.optimizer.zero_grad()
                loss.backward()
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
                chars_since += inputs.size
                losses_since.append(loss_value)
                bar.update(1)
                if self.progress.step % config.eval_every == 0:
                    record = self._record_evaluation(losses_since, chars_since / max(seconds_since, 1e-9), batch)
                    self._show(bar, record)
                    chars_since, seconds_since, losses_since = 0, 0.0, []
                last_clock = time.perf_counter()
                if config.sample_every and self.progress.step % config.sample_every == 0:
                    self._say(bar, f"--- sample at step {self.progress.step} ---\n{self._sample()}\n---")
            history = self.progress.history
            if batch is not None and (not history or history[-1]["step"] != self.progress.step):
                record = self._record_evaluation(losses_since, chars_since / max(seconds_since, 1e-9), batch)
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
        title = (f"{self.config.model} {self.config.layers}x{self.config.hidden} on "
                 f"{recordable_name(Path(self.text_name).name)}")
        try:
            draw_loss(self.progress.history, title, self.out)
        except ImportError:
            self.report("matplotlib is not installed: no loss plot (pip install matplotlib)")
        except OSError as error:
            self.report(f"could not draw the loss plot: {_describe_os_error(error)} (the checkpoints are written)")


def shell_word(path: str | Path) -> str:
    r"""`path` as one word a POSIX shell reads back as that path, for a command printed to be copied: quoted
    (shlex.quote); a leading "-" made "./-" so it is not read as an option; a control character or a byte that
    is not UTF-8 written in bash's $'...' form, so nothing raw reaches the terminal.

    >>> print(shell_word("out dir ü"), shell_word("-dashout"), shell_word("t\x7f.txt"), shell_word("l\udce9"))
    'out dir ü' ./-dashout $'t\x7f.txt' $'l\xe9'
    """
    word = str(path)
    if word.startswith("-"):
        word = "./" + word
    if word.isprintable():
        return shlex.quote(word)
    escaped = []
    for c in word:
        if c in "\\'":
            escaped.append("\\" + c)
        elif c.isprintable():
            escaped.append(c)
        else:
            escaped.extend(f"\\x{b:02x}" for b in os.fsencode(c))
    return "$'" + "".join(escaped) + "'"


def recordable_name(name: str | Path) -> str:
    r"""`name` (a path, shown only, never opened) in a form a checkpoint description stores: a control character
    escaped as Python writes it (TAB as \t, DEL as \x7f), a byte that is not UTF-8 as \xNN.

    >>> print(recordable_name("lat\udce9\tx\x7f.txt"))
    lat\xe9\tx\x7f.txt
    """
    out = []
    for c in str(name):
        if c.isprintable():
            out.append(c)
        elif "\udc80" <= c <= "\udcff":   # os.fsdecode's surrogate escape of an undecodable byte
            out.append(f"\\x{ord(c) - 0xdc00:02x}")
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def _describe_os_error(error: OSError) -> str:
    """One line: the file and the cause, e.g. "/runs/a/latest.json: No space left on device (the disk is full)"."""
    cause = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        cause += " (the disk is full)"
    return f"{error.filename}: {cause}" if error.filename else cause


MAX_LOG_BYTES = 1 << 30   # log.jsonl: a record of ~200 bytes per evaluation, millions of them


def _read_run_file(path: Path, limit: int = MAX_DESCRIPTION_BYTES, what: str = "checkpoint description") -> bytes:
    """A regular file of the run folder, never through a symbolic link, at most `limit` bytes (`CheckpointError`
    naming it otherwise): a folder that came from elsewhere must not make training read outside it, nor read
    a FIFO or a device forever."""
    return read_regular_file(path, limit, what)

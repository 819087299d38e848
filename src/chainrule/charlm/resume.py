"""Resuming a run: which options a resume may change (`resume_config`), the trainer put back where a
checkpoint left it (`restore`), the run continued with the changes (`continue_run`), and the command line's
`--resume` from a folder or a checkpoint to a trainer ready to train (`find_checkpoint`, `resume_trainer`).

A resume is exact: N steps in one go and N/2 + N/2 with a resume give the same weights, since the checkpoint
holds the weights, the optimizer's and the schedule's state, the position in the text, the carried state and
the random generator's state.
"""
from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..autograd import default_generator
from .checkpoint import CheckpointError, load_checkpoint, unpack_run, write_atomically
from .model import state_from_arrays
from .run_folder import MAX_LOG_BYTES, RunLock, _read_run_file, shell_word
from .budget import CALIBRATION_STEPS, EARLY_STEPS, PLAN_SECONDS_PER_STEP, StepPlanner, planned_steps
from .corpus import Corpus
from .training import BUDGET, Progress, TrainConfig, Trainer

# A resume continues one run. These options decide the model, the data stream or the optimizer's state, so a
# resume that asks for other values is refused; the others may change mid-run.
FIXED_ON_RESUME = ("model", "hidden", "layers", "embedding", "seq_len", "batch_size", "val_frac", "seed",
                   "optimizer", "schedule")
CHANGEABLE_ON_RESUME = ("lr", "lr_decay", "lr_decay_every", "grad_clip", "dropout", "eval_every", "sample_every",
                        "sample_length", "steps", "epochs", "minutes")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(value: Any) -> str:
    """An option's value in a notice: None (a budget option not set) as "no limit", not Python's None."""
    return "no limit" if value is None else str(value)


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
    >>> resume_config(TrainConfig.from_options({"hidden": 64}), {"hidden": 32, "seq_len": 64})
    Traceback (most recent call last):
    ...
    ValueError: these options differ from the run's, which keeps its model and data stream: --hidden 32 ...
    """
    run = stored.options()
    differences = list(differences or [])
    differences += [f"{_option(n)} {given[n]} (the run has {run[n]})"
                    for n in FIXED_ON_RESUME if n in given and given[n] != run[n]]
    if differences:
        text_differs = any(d.startswith("TEXT_FILE") for d in differences)
        advice = (("Give the run's own text and leave the differing options out" if text_differs else
                   "Leave them out") + " to continue the run, or start a new run with another --out")
        raise ValueError("these options differ from the run's, which keeps its model and data stream: "
                         + "; ".join(differences) + ". " + advice)
    updates = {n: given[n] for n in CHANGEABLE_ON_RESUME if n in given and n not in BUDGET}
    if any(n in given for n in BUDGET):
        updates.update({n: given.get(n) for n in BUDGET})
    changes = {n: [run[n], v] for n, v in updates.items() if v != run[n]}
    if "text" in given:
        updates["text"] = given["text"]
    return TrainConfig.from_options({**run, **updates}), changes


def restore(trainer: Trainer, path: str | Path) -> None:
    """Continue from a checkpoint: weights, optimizer, schedule, data position, carried state, RNG.

    The checkpoint is validated as a whole before anything is changed (`load_checkpoint`), then compared
    with this trainer: text, model, optimizer and schedule kinds, batch size, position in the epoch. Raises
    `CheckpointError` naming what differs; the trainer is unchanged then.
    """
    arrays, meta = load_checkpoint(path)
    text, train = meta["text"], meta["train"]
    if text["sha256"] != trainer.text_sha256:
        raise CheckpointError(f"the run was trained on {text['name']!r}, and the text given now differs "
                              "from it; resume with the same text")
    if meta["model"] != trainer.model.config.to_dict():
        differences = ", ".join(f"{key} {value!r} (checkpoint) vs {trainer.model.config.to_dict()[key]!r}"
                                for key, value in meta["model"].items()
                                if key != "vocabulary" and value != trainer.model.config.to_dict()[key])
        raise CheckpointError("the checkpoint's model configuration differs from the one requested"
                              + (f": {differences}" if differences else " (vocabulary)"))
    for key in ("optimizer", "schedule", "batch_size"):
        if train[key] != getattr(trainer.config, key):
            raise CheckpointError(f"the checkpoint's train.{key} is {train[key]!r} and this run's is "
                                  f"{getattr(trainer.config, key)!r}; they must agree to resume")
    if meta["progress"]["batch"] >= trainer.train_streams.batches_per_epoch:
        raise CheckpointError(f"the checkpoint's progress.batch is {meta['progress']['batch']}, past the "
                              f"{trainer.train_streams.batches_per_epoch} batches of an epoch of this text")
    if trainer.schedule is not None:
        probe = copy.copy(trainer.schedule)
        probe.__dict__.update(meta["schedule"])
        rates: list[Any]
        try:
            rates = [probe.lr_at(base, probe.last_epoch) for base in probe.base_lrs]
        except (OverflowError, ZeroDivisionError) as error:
            rates = [f"{error}"]
        if not all(isinstance(rate, float) and math.isfinite(rate) for rate in rates):
            raise CheckpointError(f"the checkpoint's schedule gives no usable learning rate at step "
                                  f"{probe.last_epoch} (found {rates[0]})")
    model_state, optimizer_state, carry = unpack_run(arrays, meta["optimizer"])
    try:
        trainer.optimizer.load_state_dict(optimizer_state)
    except ValueError as error:
        raise CheckpointError(f"the checkpoint's optimizer state does not fit: {error}") from None
    trainer.model.load_state_dict(model_state)
    if trainer.schedule is not None:
        trainer.schedule.load_state_dict(meta["schedule"])
    carry = trainer.world.own_rows(carry, axis=1) if carry else carry   # this rank's streams
    trainer.state = (state_from_arrays(carry, trainer.model.config.model, trainer.parameters[0].device)
                     if carry else None)
    trainer.progress = Progress(**meta["progress"], history=meta["history"])
    default_generator().bit_generator.state = meta["rng"]
    trainer.world.decorrelate(default_generator())
    trainer.world.check_identical(trainer.model.state_dict())
    if meta.get("world_size", 1) != trainer.world.size:
        share = (f"each takes {trainer.config.batch_size // trainer.world.size} of the {trainer.config.batch_size}"
                 if trainer.world.size > 1 else f"it takes all {trainer.config.batch_size}")
        trainer.report(f"the run was trained on {meta.get('world_size', 1)} MPI process(es) and continues on "
                       f"{trainer.world.size}: {share} streams of each global batch (the same batches, so the "
                       "same run up to float rounding, except that dropout masks differ from an unchanged run's)")


def continue_run(trainer: Trainer, checkpoint: str | Path, changes: dict[str, list[Any]]) -> list[str]:
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
    step, total = trainer.progress.step, trainer.total_steps
    if total is not None and total <= step:
        limit = ", ".join(f"{_option(n)} {getattr(trainer.config, n)}" for n in ("steps", "epochs")
                          if getattr(trainer.config, n) is not None)
        raise ValueError(f"the run in {trainer.out} is at step {step}, and {limit} ends it at step {total} "
                         f"(a total, counted across resumes): nothing to train. Ask for more, e.g. --steps "
                         f"{step + max(step, 1)}")
    notices = []
    if "dropout" in changes:
        trainer.model.config.dropout = trainer.config.architecture.dropout
        if trainer.model.rnn.num_layers > 1:
            trainer.model.rnn.dropout = trainer.config.architecture.dropout
    lr_before = trainer.optimizer.param_groups[0]["lr"]
    schedule_changed = any(n in changes for n in ("lr", "lr_decay", "lr_decay_every"))
    if trainer.config.schedule == "cosine" and trainer.schedule is not None:
        schedule_changed |= trainer.schedule.T_max != total  # type: ignore[attr-defined]  # a CosineAnnealingLR
    if schedule_changed:
        trainer.recompute_schedule()
    for name, (before, after) in changes.items():
        notices.append(f"{_option(name)}: {_shown(before)} -> {_shown(after)}")
    if schedule_changed:
        notices.append(f"learning rate at step {step}: {lr_before:.6g} -> "
                       f"{trainer.optimizer.param_groups[0]['lr']:.6g} ({trainer.config.schedule} schedule)")
    _reconcile_log(trainer, step)
    trainer._append_log({"resumed_at_step": step, "checkpoint": checkpoint.name,
                      "changed": {n: v for n, v in changes.items()}})
    if checkpoint.name != "latest.json":
        trainer.save("latest")
        notices.append(f"{checkpoint.name} (step {step}) is now also {trainer.out / 'latest.json'}")
    return notices


def _reconcile_log(trainer: Trainer, step: int) -> None:
    """Make log.jsonl tell what happened up to the checkpoint's `step`, each evaluation once: drop what a
    crashed or diverged later run logged after it (and lines cut short), and the records of resumes at `step` or
    later (an abandoned branch: the caller appends this resume's record next), add the checkpoint's evaluations
    that a crash kept out of the log."""
    if not trainer.world.is_root:
        return
    path = trainer.out / "log.jsonl"
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
        # a resume record at the checkpoint's step or later belongs to an abandoned branch (this resume adds its own)
        if isinstance(at, int) and (at < step or (at == step and "step" in record)):
            kept.append(line + "\n")
            if "step" in record:
                logged.add(record["step"])
    missing = [json.dumps(r) + "\n" for r in trainer.progress.history
               if isinstance(r, dict) and r.get("step") not in logged]
    if len(kept) != len(lines) or missing:
        write_atomically(path, "".join(kept + missing).encode("utf-8"))


def find_checkpoint(target: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """The run folder and the checkpoint that `--resume target` names: a folder (its latest.json) or one of
    its checkpoints (a .json file). `out`: the --out given with it, which must name the same folder. Raises
    `CheckpointError` when `target` does not exist, ValueError when it is neither or `out` differs."""
    target = Path(target)
    if not target.exists():
        raise CheckpointError(f"nothing to resume: {target} does not exist")
    if target.is_dir():
        folder, checkpoint = target, target / "latest.json"
    elif target.suffix == ".json":
        folder, checkpoint = target.parent, target
    else:
        raise ValueError(f"--resume takes a run folder or one of its checkpoints (latest.json, best.json); "
                         f"{target} is neither")
    if out is not None and Path(out).resolve() != folder.resolve():
        raise ValueError(f"--resume continues the run in its own folder, {folder}; --out {out} names another. "
                         "To branch a run, copy its folder and resume the copy")
    return folder, checkpoint


def resume_trainer(target: str | Path, folder: Path, checkpoint: Path, given: dict[str, Any], lock: RunLock,
                   read_corpus: Callable[[str | None], Corpus | None], quiet: bool = False,
                   prepare: Callable[[Trainer], object] | None = None) -> tuple[Trainer, list[str]]:
    """A trainer that continues the run in `folder` from `checkpoint`, with the options `given` (only those
    the user gave, by TrainConfig's field names), and the notices that say what the resume changes.

    Call it holding the folder's `lock` (`claim_run_folder(folder, fresh=False)`). `target`: as the user named
    the run, for the advice of an error. `read_corpus(path)`: (text, name) of a text file, "-" for standard
    input. Raises `CheckpointError` when the checkpoint is missing or unusable, ValueError when an option that
    the run keeps differs (`resume_config`), when the run was trained on a text file and none is given (a path
    recorded in a checkpoint is never opened), or when the budget is already reached (`continue_run`).
    """
    if not os.path.lexists(checkpoint):   # anything else there (a FIFO, a link) load_checkpoint names
        hint = (f"; resume from its best checkpoint with --resume {folder / 'best.json'}"
                if (folder / "best.json").is_file() else "")
        raise CheckpointError(f"nothing to resume: {checkpoint} does not exist{hint}")
    _, meta = load_checkpoint(checkpoint)
    try:
        stored = TrainConfig.from_options(meta["train"])
        recorded_text = meta["text"]
        recorded_sha = recorded_text["sha256"]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{checkpoint}: its training configuration is unusable ({error})") from None
    differences, corpus = [], None
    if "text" in given:
        corpus = read_corpus(given["text"])
        if corpus is not None and corpus.sha256 != recorded_sha:
            differences.append(f"TEXT_FILE {given['text']} (its content differs from the text the run was "
                               f"trained on, {recorded_text.get('name')!r}: resume with the same text)")
    elif stored.text is not None:
        # a run folder is untrusted: the text path it records is shown, never opened
        source = "standard input" if stored.text == "-" else repr(stored.text)
        raise ValueError(f"the run was trained on {source}; a checkpoint's recorded paths are not followed, so "
                         f"give the same text again: chainrule train TEXT_FILE --resume {shell_word(target)}")
    planner = None
    if stored.schedule == "cosine" and "minutes" in given and not any(n in given for n in ("steps", "epochs")):
        # a cosine schedule needs a length in steps: plan it for the new budget from the run's own step time,
        # and re-plan as a budget-planned start does (budget.StepPlanner)
        progress = meta["progress"]
        per_step = progress["elapsed"] / progress["step"] if progress["step"] else PLAN_SECONDS_PER_STEP
        given = {**given, "steps": progress["step"] + planned_steps(given["minutes"] * 60, per_step)}
        planner = StepPlanner(given["minutes"], given.get("eval_every", stored.eval_every))
    config, changes = resume_config(stored, given, differences)
    if corpus is None and config.text is not None:
        corpus = read_corpus(config.text)
    # the model is built with the run's dropout, which restore checks; continue_run then applies the new one
    built = replace(config, architecture=replace(config.architecture, dropout=stored.architecture.dropout))
    trainer = Trainer(built, folder, quiet=quiet, corpus=corpus, lock=lock)
    trainer.config = config
    if prepare is not None:   # e.g. move the model to its device: the optimizer state is loaded where it lives
        prepare(trainer)
    restore(trainer, checkpoint)
    notices = continue_run(trainer, checkpoint, changes)
    if planner is not None:
        trainer.step_planner = planner
        notices.append(f"--steps {config.steps} planned for the cosine schedule to end with --minutes "
                       f"{config.minutes:g} (re-planned after {EARLY_STEPS} and {CALIBRATION_STEPS} steps and at each "
                       "evaluation from the measured step time)")
    return trainer, notices

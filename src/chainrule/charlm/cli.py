"""The `chainrule` command line: a thin layer over the library (train, sample, eval, info, diagnose, demo).

Every numeric option is parsed by `_number`, the one place that checks it is finite and in range; every error
a user or the operating system can cause ends in one line on stderr and exit status 2 (1: training stopped,
130: interrupted, 141: the reader of stdout went away), never a traceback unless --debug asks for one.
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path

from .config import CELLS
from .devices import add_device_option, use_device

DEFAULT_OUT = "runs/charlm"


def _number(kind: type, low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False) -> Callable[[str], int | float]:
    """An argparse type: `kind` (int or float) parsed from the text, finite, within [low, high] (an end is
    excluded when its `*_open` flag is set); otherwise argparse reports the option, what was expected and what
    came.

    >>> _number(float, 0, 1, high_open=True)("0.5")
    0.5
    >>> _number(float, 0, low_open=True)("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a finite number > 0, got 'nan'
    """
    bounds = []
    if low is not None and high is not None:
        bounds.append(f"in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}")
    elif low is not None:
        bounds.append(f"{'>' if low_open else '>='} {_bound(low)}")
    elif high is not None:
        bounds.append(f"{'<' if high_open else '<='} {_bound(high)}")
    expected = ("an integer" if kind is int else "a finite number") + (" " + bounds[0] if bounds else "")

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (not math.isfinite(value)
                or (low is not None and (value < low or (low_open and value == low)))
                or (high is not None and (value > high or (high_open and value == high)))):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid <type> value"
    return parse


def _bound(value: float) -> str:
    """A range's end as typed: integers as integers (1048576, not 1.04858e+06)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _limited(name: str) -> Callable[[str], int | float]:
    """The parser of an option limited in `checkpoint_schema.LIMITS`: the range a checkpoint may hold too."""
    from .checkpoint_schema import LIMITS

    low, high, low_open = LIMITS[name]
    return _number(float if name in ("epochs", "minutes") else int, low, high, low_open=low_open)


_POSITIVE = _number(int, 1, 2 ** 53)
_SEED = _number(int, 0, 2**63 - 1)
_SIZE = _number(int, 1, 1 << 16)   # hidden units, layers' inputs: beyond this a layer's matrices outgrow memory


def _add_train(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from .training import OPTIMIZERS, SCHEDULES, TrainConfig

    defaults = {f.name: f.default for f in fields(TrainConfig)}
    # SUPPRESS: an option not given is absent from the namespace, so a resume knows what the user asked for
    train = commands.add_parser("train", help="train a character-level language model on a text file",
                                parents=[common], argument_default=argparse.SUPPRESS,
                                description="Train a character-level RNN/LSTM/GRU language model. With no "
                                "TEXT_FILE it trains on the Python reference manual that ships with CPython. "
                                "With --resume it continues a run: options that fix the model or the data "
                                "stream must match the run's; --lr, --lr-decay, --lr-decay-every, --grad-clip, "
                                "--dropout, --eval-every, --sample-every, --sample-length and the budget may change.")
    train.add_argument("text", nargs="?", metavar="TEXT_FILE", help="UTF-8 text to learn, a pipe, or - for "
                       "standard input (default: the Python reference manual, pydoc_data.topics)")

    def default(name: str) -> str:
        return f" (default {defaults[name]})"

    model = train.add_argument_group("model")
    model.add_argument("--model", choices=list(CELLS), help="cell" + default("model"))
    model.add_argument("--hidden", type=_limited("hidden"), help="hidden units per layer" + default("hidden"))
    model.add_argument("--layers", type=_limited("layers"), help="recurrent layers" + default("layers"))
    model.add_argument("--dropout", type=_number(float, 0, 1, high_open=True),
                       help="between layers and before the head" + default("dropout"))
    model.add_argument("--embedding", type=_limited("embedding"),
                       help="embedding size; 0 feeds one-hot characters (default)")
    data = train.add_argument_group("data")
    data.add_argument("--seq-len", type=_limited("seq_len"), help="BPTT length" + default("seq_len"))
    data.add_argument("--batch-size", type=_limited("batch_size"),
                      help="parallel text streams" + default("batch_size"))
    data.add_argument("--val-frac", type=_number(float, 0, 1, high_open=True),
                      help="last fraction held out" + default("val_frac"))
    optimization = train.add_argument_group("optimization")
    optimization.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help=default("optimizer").strip())
    optimization.add_argument("--lr", type=_number(float, 0, low_open=True),
                              help="learning rate (the schedule's initial rate)" + default("lr"))
    optimization.add_argument("--schedule", choices=SCHEDULES, help=default("schedule").strip())
    optimization.add_argument("--lr-decay", type=_number(float, 0, 1, low_open=True),
                              help="decay factor of the step / exponential schedules" + default("lr_decay"))
    optimization.add_argument("--lr-decay-every", type=_limited("lr_decay_every"),
                              help="steps between decays (step schedule)" + default("lr_decay_every"))
    optimization.add_argument("--grad-clip", type=_number(float, 0),
                              help="max gradient norm (0: no clipping)" + default("grad_clip"))
    budget = train.add_argument_group("how long (the first limit reached ends training; none: one epoch)")
    budget.add_argument("--steps", type=_limited("steps"), help="total optimizer steps, counted across resumes")
    budget.add_argument("--epochs", type=_limited("epochs"),
                        help="total passes over the training text")
    budget.add_argument("--minutes", type=_limited("minutes"),
                        help="training-time budget of this invocation (time spent evaluating and writing "
                        "checkpoints is not counted)")
    output = train.add_argument_group("output")
    output.add_argument("--out", help=f"folder for checkpoints, log.jsonl and loss.png (default {DEFAULT_OUT}); "
                        "a new run refuses a folder that holds a run")
    output.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN from its latest "
                        "checkpoint (or from RUN/best.json when named), in RUN")
    output.add_argument("--eval-every", type=_limited("eval_every"), help="steps between evaluations and checkpoints"
                        + default("eval_every"))
    output.add_argument("--sample-every", type=_limited("sample_every"), help="steps between samples; 0: never"
                        + default("sample_every"))
    output.add_argument("--sample-length", type=_limited("sample_length"), help="characters per sample"
                        + default("sample_length"))
    output.add_argument("--seed", type=_SEED, help=default("seed").strip())
    output.add_argument("--quiet", action="store_true", help="no progress bar or samples; one line per evaluation")
    add_device_option(output)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show Python's traceback when a command fails")
    parser = argparse.ArgumentParser(prog="chainrule", description="Automatic differentiation and recurrent "
                                     "networks on NumPy; character-level language models from the command line.")
    parser.add_argument("--debug", action="store_true", help="show Python's traceback when a command fails")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(commands, common)
    sample = commands.add_parser("sample", help="generate text from a checkpoint", parents=[common])
    sample.add_argument("checkpoint", metavar="CHECKPOINT", help="a run folder (its best checkpoint) or a .json file")
    sample.add_argument("--prime", default="", help="text to start from (default: a random character)")
    sample.add_argument("--length", type=_limited("sample_length"), default=500, help="characters to generate")
    sample.add_argument("--temperature", type=_number(float, 0, low_open=True), default=0.8)
    sample.add_argument("--top-k", type=_POSITIVE)
    sample.add_argument("--seed", type=_SEED)
    sample.add_argument("--argmax", action="store_true", help="always take the most likely character")
    add_device_option(sample)
    evaluation = commands.add_parser("eval", help="loss, bits per character and perplexity on a text",
                                     parents=[common])
    evaluation.add_argument("checkpoint", metavar="CHECKPOINT")
    evaluation.add_argument("text", metavar="TEXT_FILE", help="a UTF-8 text file, a pipe, or - for standard input")
    evaluation.add_argument("--batch-size", type=_number(int, 1, 1 << 20), default=32)
    add_device_option(evaluation)
    info = commands.add_parser("info", help="a checkpoint's configuration, size and training history",
                               parents=[common])
    info.add_argument("checkpoint", metavar="CHECKPOINT")
    diagnose = commands.add_parser("diagnose", help="gradient flow through time: vanishing and exploding gradients",
                                   parents=[common],
                                   description="Plot the norm of dL/dh_t against steps back in time, with the "
                                   "largest singular value of each W_hh, for a trained checkpoint and/or fresh "
                                   "RNN/LSTM/GRU layers; also printed as a table.")
    diagnose.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT", help="a trained character model")
    diagnose.add_argument("--compare", help="fresh layers to add, e.g. rnn,lstm,gru (the default without CHECKPOINT)")
    diagnose.add_argument("--seq-len", type=_number(int, 1, 1 << 16), default=100)
    diagnose.add_argument("--batch", type=_number(int, 1, 1 << 16), default=8)
    diagnose.add_argument("--hidden", type=_limited("hidden"), default=64, help="hidden size of the fresh layers")
    diagnose.add_argument("--input-size", type=_SIZE, default=16, help="input features of the fresh layers")
    diagnose.add_argument("--input-scale", type=_number(float, 0), default=0.1,
                          help="scale of the fresh layers' random inputs")
    diagnose.add_argument("--sigma", type=_number(float, 0, low_open=True), action="append",
                          help="add a fresh RNN whose W_hh has this largest singular value (repeatable: --sigma 0.5 "
                          "--sigma 2)")
    diagnose.add_argument("--forget-bias", type=_number(float), default=1.0, help="forget-gate bias of fresh LSTMs")
    diagnose.add_argument("--text", help="text for the checkpoint's batch (needed unless it was trained on the "
                          "default corpus: a path recorded in a checkpoint is never opened)")
    diagnose.add_argument("--out", default="gradient_flow.png", help="where to write the PNG")
    diagnose.add_argument("--seed", type=_SEED, default=0)
    commands.add_parser("demo", help="a short tour of the autograd engine on its sources' examples (README, Sources)",
                        parents=[common])
    return parser


def _reuse_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks of up to 32 MiB for reuse rather than return them to the
    kernel. A training step allocates and frees the same few-MiB arrays every step; by default glibc hands
    many of them back, and each new mapping then costs a page fault per 4 KiB (BENCHMARKS.md, "glibc's
    malloc threshold"). (The recurrent kernels' own large arrays are reused by `_kernels.memory.ArrayPool`
    either way; this covers the rest.) Process-wide, so it is the command
    line's choice, not the library's. Returns whether the setting took (False off glibc)."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def _say(message: str) -> None:
    # messages name paths, which may hold control characters or bytes that are not UTF-8
    print(_terminal_safe(message), file=sys.stderr)


def _write(text: str) -> None:
    """Write to standard output; an OS error names it ("standard output: No space left on device"), and a
    closed standard output (`>&-`) is one such error rather than an AttributeError."""
    if sys.stdout is None:
        raise OSError(errno.EBADF, "it is closed", "standard output")
    try:
        sys.stdout.write(text)
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OSError(error.errno, error.strerror, "standard output") from None


def _flush() -> None:
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OSError(error.errno, error.strerror, "standard output") from None


def _terminal_safe(text: str) -> str:
    """`text` with control characters other than newline and tab shown escaped (ESC as \\x1b): a vocabulary may
    hold any character of its corpus, and raw escape sequences would drive the terminal.

    >>> _terminal_safe("a\\x1b[2Jb\\n")
    'a\\\\x1b[2Jb\\n'
    """
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c) - 0xdc00:02x}" if "\udc80" <= c <= "\udcff"
                   else repr(c)[1:-1] for c in text)


def _train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, Trainer, claim_run_folder

    names = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    quiet = getattr(args, "quiet", False)
    if "resume" in args:
        return _resume(args, given, quiet)
    config = TrainConfig(**given)
    out = Path(getattr(args, "out", DEFAULT_OUT))
    corpus = _corpus(config.text)   # a wrong text path is reported before any folder is made
    lock, removed = claim_run_folder(out, fresh=True)
    with lock:
        if removed:
            _say(f"removed {len(removed)} file(s) left by an interrupted run: {', '.join(p.name for p in removed)}")
        trainer = Trainer(config, out, quiet=quiet, corpus=corpus, lock=lock)
        use_device(trainer.model, args)
        _say(f"training a {config.model} {config.layers}x{config.hidden} ({trainer.model.num_parameters():,} "
             f"parameters) on {trainer.text_name}: {len(trainer.vocabulary)} characters, "
             f"{trainer.train_streams.batches_per_epoch} steps per epoch; writing to {out}")
        return _run(trainer)


def _corpus(text: str | None) -> tuple[str, str] | None:
    from .text import read_text

    if text is None:
        return None
    return read_text(text), ("standard input" if text == "-" else text)


def _resume(args: argparse.Namespace, given: dict, quiet: bool) -> int:
    from dataclasses import replace

    from .checkpoint import CheckpointError, load_checkpoint
    from .text import text_digest
    from .training import TrainConfig, Trainer, claim_run_folder, resume_config, shell_word

    target = Path(args.resume)
    if not target.exists():
        raise CheckpointError(f"nothing to resume: {target} does not exist")
    if target.is_dir():
        folder, checkpoint = target, target / "latest.json"
    elif target.suffix == ".json":
        folder, checkpoint = target.parent, target
    else:
        raise ValueError(f"--resume takes a run folder or one of its checkpoints (latest.json, best.json); "
                         f"{target} is neither")
    if "out" in args and Path(args.out).resolve() != folder.resolve():
        raise ValueError(f"--resume continues the run in its own folder, {folder}; --out {args.out} names another. "
                         "To branch a run, copy its folder and resume the copy")
    lock, removed = claim_run_folder(folder, fresh=False)
    with lock:
        if removed:
            _say(f"removed {len(removed)} file(s) left by an interrupted run: {', '.join(p.name for p in removed)}")
        if not os.path.lexists(checkpoint):   # anything else there (a FIFO, a link) load_checkpoint names
            hint = (f"; resume from its best checkpoint with --resume {folder / 'best.json'}"
                    if (folder / "best.json").is_file() else "")
            raise CheckpointError(f"nothing to resume: {checkpoint} does not exist{hint}")
        _, meta = load_checkpoint(checkpoint)
        try:
            stored = TrainConfig(**meta["train"])
            recorded_text = meta["text"]
            recorded_sha = recorded_text["sha256"]
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{checkpoint}: its training configuration is unusable ({error})") from None
        differences, corpus = [], None
        if "text" in given:
            corpus = _corpus(given["text"])
            if text_digest(corpus[0]) != recorded_sha:
                differences.append(f"TEXT_FILE {given['text']} (its content differs from the text the run was "
                                   f"trained on, {recorded_text.get('name')!r}: resume with the same text)")
        elif stored.text is not None:
            # a run folder is untrusted: the text path it records is shown, never opened
            source = "standard input" if stored.text == "-" else repr(stored.text)
            raise ValueError(f"the run was trained on {source}; a checkpoint's recorded paths are not followed, so "
                             f"give the same text again: chainrule train TEXT_FILE --resume {shell_word(target)}")
        config, changes = resume_config(stored, given, differences)
        if corpus is None and config.text is not None:
            corpus = _corpus(config.text)
        # the model is built with the run's dropout, which restore checks; continue_run then applies the new one
        trainer = Trainer(replace(config, dropout=stored.dropout), folder, quiet=quiet, corpus=corpus, lock=lock)
        trainer.config = config
        use_device(trainer.model, args)   # before restore: the optimizer state is loaded onto the parameters' device
        trainer.restore(checkpoint)
        notices = trainer.continue_run(checkpoint, changes)
        _say(f"resuming {folder} at step {trainer.progress.step} from {checkpoint.name}")
        for notice in notices:
            _say(f"  {notice}")
        return _run(trainer)


def _run(trainer) -> int:
    from .training import shell_word

    try:
        progress = trainer.train()
    except KeyboardInterrupt:
        _say(f"\ninterrupted at step {trainer.progress.step}. {trainer.checkpoints_on_disk()}"
             + (f" Continue with: {trainer.resume_command()}"
                if (trainer.out / "latest.json").exists() else ""))
        return 130
    out = trainer.out
    best = "" if progress.best_val_loss is None else f", best validation loss {progress.best_val_loss:.4f} nats/char"
    _say(f"done: {progress.step} steps{best}. Checkpoints in {out}; sample with: chainrule sample {shell_word(out)}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    import numpy as np

    from .model import generate, load_model

    model, vocabulary, _ = load_model(args.checkpoint)
    use_device(model, args)
    vocabulary.encode(args.prime, "prime text")  # unknown characters: a clear error before any output
    # to a terminal, control characters are shown escaped; to a file or a pipe, the text is written as it is
    show = _terminal_safe if sys.stdout is not None and sys.stdout.isatty() else str
    _write(show(args.prime))
    with np.errstate(all="ignore"):   # huge weights: the sampler's own checks report what matters
        for character in generate(model, vocabulary, args.prime, args.length, args.temperature, args.top_k,
                                  args.argmax, args.seed):
            _write(show(character))
            _flush()
    _write("\n")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import numpy as np

    from .model import evaluate, load_model
    from .text import read_text

    model, vocabulary, meta = load_model(args.checkpoint)
    use_device(model, args)
    ids = vocabulary.encode(read_text(args.text), f"text file {args.text}")
    with np.errstate(all="ignore"):   # finite but huge weights overflow: the result says inf or nan plainly
        result = evaluate(model, ids, args.batch_size, max(meta["train"]["seq_len"], 128))
    _write(f"characters scored: {result.characters}\n")
    _write(f"loss: {result.loss:.4f} nats/char\n")
    _write(f"bits per character: {result.bits_per_character:.4f}\n")
    _write(f"perplexity: {result.perplexity:.3f}\n")
    if not math.isfinite(result.loss):
        _say("note: the loss is not finite: the model's outputs overflow on this text (its weights are huge)")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint)
    _, meta = load_checkpoint(path)
    model, train, progress = meta["model"], meta["train"], meta["progress"]
    _write(f"checkpoint: {path}\n")
    _write(f"model: {model['model']} {model['layers']}x{model['hidden']}, "
           f"{'embedding ' + str(model['embedding']) if model['embedding'] else 'one-hot input'}, "
           f"dropout {model['dropout']}, {meta['parameters']:,} parameters, vocabulary {len(model['vocabulary'])}\n")
    _write(f"text: {meta['text']['name']} (sha256 {meta['text']['sha256'][:12]}...)\n")
    _write(f"training: {train['optimizer']} lr {train['lr']} ({train['schedule']}), seq-len {train['seq_len']}, "
           f"batch {train['batch_size']}, grad-clip {train['grad_clip']}, seed {train['seed']}\n")
    def evaluation(description: dict) -> str:
        history = description.get("history") or []
        if not history:
            return "no evaluation yet"
        last = history[-1]
        train_loss = "n/a" if last["train_loss"] is None else f"{last['train_loss']:.4f}"
        val = "no validation text" if last["val_loss"] is None else f"validation {last['val_loss']:.4f}"
        return f"train {train_loss}, {val} (nats/char)"

    def state(description: dict) -> str:
        run = description["progress"]
        return (f"step {run['step']}, epoch {run['epoch']}, {run['elapsed'] / 60:.1f} minutes; last evaluation: "
                f"{evaluation(description)}")

    # a run folder: its latest checkpoint is the run's state, its best the lowest validation loss so far
    latest = None
    if Path(args.checkpoint).is_dir() and path.name != "latest.json" and (path.parent / "latest.json").exists():
        latest = load_checkpoint(path.parent / "latest.json")[1]
    if latest is not None:
        _write(f"latest: {state(latest)}\n")
        _write(f"best: step {progress['step']} ({path.name})" + (
            f", best validation loss {progress['best_val_loss']:.4f} nats/char\n"
            if progress.get("best_val_loss") is not None else "\n"))
    else:
        _write(f"progress: {state(meta)}\n")
        best = progress.get("best_val_loss")
        _write("best validation loss: " + ("none (no validation text)" if best is None else f"{best:.4f} nats/char")
               + "\n")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from .diagnose import run
    return run(args)


def _handlers() -> dict[str, Callable[[argparse.Namespace], int]]:
    return {"train": _train, "sample": _sample, "eval": _eval, "info": _info, "diagnose": _diagnose}


def _os_error(error: OSError) -> str:
    cause = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        cause += " (the disk is full)"
    elif error.errno == errno.ELOOP:
        cause = "a symbolic link, which chainrule does not follow inside a run folder"
    if error.filename is None:
        return cause
    return f"{error.filename}: {cause}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code.

    >>> main(["demo"]) == 0   # doctest: +ELLIPSIS
    1. Weidman's example ...
    True
    """
    if hasattr(signal, "SIGXFSZ"):
        # past a file-size limit (ulimit -f) a write then fails with EFBIG, reported with the file's name,
        # instead of the signal killing the process mid-checkpoint
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    from .checkpoint import CheckpointError
    from .training import RunExists, RunInUse, TrainingStopped

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo
        run_demo()
        return 0
    if args.command not in _handlers():
        parser.print_help(sys.stderr)
        return 2
    if args.command in ("train", "sample", "eval"):
        _reuse_freed_memory()
    try:
        status = _handlers()[args.command](args)
        _flush()   # a closed pipe is then met here, not at interpreter exit
        return status
    except Exception as error:
        if args.debug:
            raise
        if isinstance(error, BrokenPipeError):
            return _closed_pipe()
        if isinstance(error, TrainingStopped):
            _say(f"training stopped: {error}")
            return 1
        if isinstance(error, (RunInUse, RunExists, CheckpointError, ValueError, TypeError)):
            _say(f"error: {error}")
        elif isinstance(error, OSError):
            _say(f"error: {_os_error(error) if error.filename is not None else error}")
            if error.filename == "standard output":
                _closed_pipe()   # what is left in its buffer would fail again at exit
        elif isinstance(error, MemoryError):
            _say("error: out of memory; use a smaller model (--hidden, --layers, --embedding) or batch")
        else:
            _say(f"error: {type(error).__name__}: {error} (an unexpected failure; run again with --debug for "
                 "the traceback and report it)")
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        _say("\ninterrupted")
        return 130


def _closed_pipe() -> int:
    """The reader of stdout went away (`chainrule sample RUN | head`): stop quietly, as Unix tools do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # so that flushing stdout at exit does not fail again
    except (OSError, ValueError, AttributeError):   # AttributeError: no stdout at all
        pass
    return 141  # 128 + SIGPIPE, what the shell reports for a tool the signal ended

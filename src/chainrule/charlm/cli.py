"""The `chainrule` command line: a thin layer over the library (train, sample, eval, info, diagnose, export, demo).

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
from pathlib import Path

from .config import CELLS
from .devices import add_device_option, use_device
from .shell import SHELLS, completion_script, installed_version

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
    >>> _number(int, 1, 2 ** 53)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a positive integer, got '0'
    >>> _number(int, 0, 2 ** 63 - 1)("9" * 20)
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a non-negative integer of at most 2**63 - 1, got '99999999999999999999'
    """
    bounds = []
    # an integer's end at 2**53 or beyond is a representation's limit (exact in JSON, a NumPy seed), not a choice:
    # the message says "a positive integer" and names that end only to a value past it
    unbounded = kind is int and high is not None and high >= 2 ** 53 and low in (0, 1) and not low_open
    if unbounded:
        bounds.append("")
    elif low is not None and high is not None:
        bounds.append(f"in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}")
    elif low is not None:
        bounds.append(f"{'>' if low_open else '>='} {_bound(low)}")
    elif high is not None:
        bounds.append(f"{'<' if high_open else '<='} {_bound(high)}")
    if unbounded:
        expected = "a positive integer" if low == 1 else "a non-negative integer"
    else:
        expected = ("an integer" if kind is int else "a finite number") + (" " + bounds[0] if bounds else "")

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (not math.isfinite(value)
                or (low is not None and (value < low or (low_open and value == low)))
                or (high is not None and (value > high or (high_open and value == high)))):
            beyond = f" of at most {_power_of_two(high)}" if unbounded and high is not None and value > high else ""
            raise argparse.ArgumentTypeError(f"expected {expected}{beyond}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid <type> value"
    return parse


def _power_of_two(value: float) -> str:
    """A representation's limit as written in code: 2**53, 2**63 - 1."""
    value, bits = int(value), int(value).bit_length()
    if value == 1 << (bits - 1):
        return f"2**{bits - 1}"
    return f"2**{bits} - 1" if value == (1 << bits) - 1 else str(value)


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

    defaults = TrainConfig().options()
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
    output.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard event files to DIR (needs "
                        "pip install 'chainrule[tensorboard]'); a resumed run appends")
    output.add_argument("--quiet", action="store_true", help="no progress bar or samples; one line per evaluation")
    add_device_option(output)


def _temperature(text: str) -> float:
    """--temperature's type: a finite number > 0; the error names --argmax, what a temperature of 0 would mean."""
    try:
        return _number(float, 0, low_open=True)(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error}; for the most likely character at every step (temperature 0) "
                                         "use --argmax") from None


_temperature.__name__ = "float"
MAX_BEAM = 1024      # beams run as one batch; each step scores width x vocabulary continuations
MAX_COUNT = 1 << 16  # samples run as one batch


def _add_sampling_options(sample: argparse.ArgumentParser) -> None:
    """The options of `chainrule sample` that choose the characters (their combinations: `_sample`)."""
    sample.add_argument("--prime-file", metavar="FILE", help="start from the text of FILE (UTF-8, at most "
                        "1 MiB, multi-line; - reads standard input); not repeated in the output. Not with --prime")
    sample.add_argument("--temperature", type=_temperature,
                        help="divide the logits by this before sampling (default 0.8; lower: safer, higher: wilder)")
    sample.add_argument("--top-k", type=_POSITIVE, help="sample among the K most likely characters only")
    sample.add_argument("--top-p", type=_number(float, 0, 1, low_open=True), metavar="P",
                        help="nucleus sampling: among the fewest most likely characters whose probability sums to "
                        ">= P. Filters apply in the order temperature, top-k, top-p (as Hugging Face, nanoGPT)")
    sample.add_argument("--seed", type=_SEED)
    sample.add_argument("--argmax", action="store_true", help="always take the most likely character")
    sample.add_argument("--beam", type=_number(int, 1, MAX_BEAM), metavar="N",
                        help="beam search of width N: the most likely continuation of --length characters (exact "
                        "log-probability, not length-normalised, on stderr); deterministic, so no --temperature, "
                        "--top-k, --top-p, --seed or --argmax")
    sample.add_argument("--count", type=_number(int, 1, MAX_COUNT), default=1, metavar="K",
                        help="K samples, run as one batch and printed one after another under a '=== sample i of "
                        "K ===' line; with --beam, the K best beams (K <= N)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show Python's traceback when a command fails")
    parser = argparse.ArgumentParser(prog="chainrule", description="Automatic differentiation and recurrent "
                                     "networks on NumPy; character-level language models from the command line.")
    parser.add_argument("--debug", action="store_true", help="show Python's traceback when a command fails")
    parser.add_argument("--version", action="version", version=f"chainrule {installed_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(commands, common)
    sample = commands.add_parser("sample", help="generate text from a checkpoint", parents=[common])
    sample.add_argument("checkpoint", metavar="CHECKPOINT", help="a run folder (its best checkpoint) or a .json file")
    sample.add_argument("--prime", help="text to start from, not empty (default: \"The \" or the first of "
                        "progress.FIXED_PRIMES the vocabulary can spell)")
    sample.add_argument("--length", type=_limited("sample_length"), default=500, help="characters to generate")
    _add_sampling_options(sample)
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
    export = commands.add_parser("export", help="write a checkpoint as an ONNX file or a PyTorch weights file",
                                 parents=[common], description="Write a trained model as a file used without "
                                 "chainrule: ONNX (onnxruntime and others; pip install 'chainrule[onnx]'), or the "
                                 "weights for torch.nn modules (torch.load). See chainrule.charlm.export for the "
                                 "inputs, outputs and the vocabulary.")
    export.add_argument("checkpoint", metavar="RUN", help="a run folder (its best checkpoint) or a .json file")
    export.add_argument("--format", choices=["onnx", "torch"], default="onnx", help="(default onnx)")
    export.add_argument("--out", help="file to write (default: model.onnx or model.pt in the run folder)")
    export.add_argument("--force", action="store_true",
                        help="replace an existing file (a symbolic link is replaced itself, not the file it points to)")
    commands.add_parser("demo", help="a short tour of the autograd engine on its sources' examples (README, Sources)",
                        parents=[common])
    completion = commands.add_parser("completion", help="print the shell completion script (bash or zsh)",
                                     description="Add to ~/.bashrc: eval \"$(chainrule completion bash)\"; to "
                                     "~/.zshrc (after compinit): eval \"$(chainrule completion zsh)\"")
    completion.add_argument("shell", choices=SHELLS)
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
    from .budget import StepPlanner, plan_for_budget, unplanned_note
    from .training import TrainConfig, Trainer, claim_run_folder

    names = set(TrainConfig().options())
    given = {k: v for k, v in vars(args).items() if k in names}
    quiet = getattr(args, "quiet", False)
    callbacks = _callbacks(args)   # a missing optional package is reported before anything is done
    if "resume" in args:
        return _resume(args, given, quiet, callbacks)
    plan = plan_for_budget(given)   # --minutes without a size: the model and schedule for the budget
    if plan is not None:
        given = {**given, **plan.options}
        _say(plan.message)
    config = TrainConfig.from_options(given)
    shape = config.architecture
    note = unplanned_note(given, f"{shape.model} {shape.layers}x{shape.hidden}")   # a budget beyond the pick
    if note is not None:
        _say(note)
    out = Path(getattr(args, "out", DEFAULT_OUT))
    corpus = _corpus(config.text, quiet)   # a wrong text path is reported before any folder is made
    try:
        lock, removed = claim_run_folder(out, fresh=True)
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EROFS, errno.EPERM):
            raise
        # a folder that cannot be made: say which option named it
        where = f" ({error.filename})" if error.filename is not None and str(error.filename) != str(out) else ""
        raise ValueError(f"--out {out}: {error.strerror or error}{where}; give a folder you can write (made if "
                         "missing)") from None
    with lock:
        if removed:
            _say(f"removed {len(removed)} file(s) left by an interrupted run: {', '.join(p.name for p in removed)}")
        trainer = Trainer(config, out, quiet=quiet, corpus=corpus, lock=lock)
        use_device(trainer.model, args)
        trainer.callbacks += callbacks
        if plan is not None and "steps" in plan.options and config.minutes is not None:
            trainer.step_planner = StepPlanner(config.minutes, config.eval_every)
        _say(f"training a {shape.model} {shape.layers}x{shape.hidden} ({trainer.model.num_parameters():,} "
             f"parameters) on {trainer.text_name}: {len(trainer.vocabulary)} characters, "
             f"{trainer.train_streams.batches_per_epoch} steps per epoch; writing to {out}")
        return _run(trainer)


def _corpus(text: str | None, quiet: bool = False):
    from .corpus import load_corpus

    if text is None:
        return None
    return load_corpus(text, progress=not quiet)   # a regular file: encoded once to the cache, memory-mapped


def _callbacks(args: argparse.Namespace) -> list:
    if "tensorboard" not in args:
        return []
    from .tensorboard import TensorBoardLogger
    return [TensorBoardLogger(args.tensorboard)]


def _resume(args: argparse.Namespace, given: dict, quiet: bool, callbacks: list) -> int:
    from .resume import find_checkpoint, resume_trainer
    from .training import claim_run_folder

    folder, checkpoint = find_checkpoint(args.resume, getattr(args, "out", None))
    lock, removed = claim_run_folder(folder, fresh=False)
    with lock:
        if removed:
            _say(f"removed {len(removed)} file(s) left by an interrupted run: {', '.join(p.name for p in removed)}")
        trainer, notices = resume_trainer(args.resume, folder, checkpoint, given, lock,
                                          lambda text: _corpus(text, quiet), quiet=quiet,
                                          prepare=lambda trainer: use_device(trainer.model, args))
        trainer.callbacks += callbacks
        _say(f"resuming {folder} at step {trainer.progress.step} from {checkpoint.name}")
        for notice in notices:
            _say(f"  {notice}")
        return _run(trainer)


def _run(trainer) -> int:
    from .progress import closing_sample
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
    if not trainer.quiet:
        _write(_terminal_safe(closing_sample(trainer.model, trainer.vocabulary, trainer.validation_text(),
                                             seed=trainer.config.seed)) + "\n")
    return 0


def _sample(args: argparse.Namespace) -> int:
    import numpy as np

    from .model import beam_search, generate, generate_batch, load_model
    from .sampling import read_prime
    from .progress import fixed_prime

    _check_sampling_combination(args)
    model, vocabulary, _ = load_model(args.checkpoint)
    use_device(model, args)
    if args.prime_file is not None:
        prime, shown_prime = read_prime(args.prime_file, vocabulary), ""   # a long prime is not repeated
    else:
        # without one, prose ("The "), not what follows a random character
        prime = shown_prime = fixed_prime(vocabulary.characters) if args.prime is None else args.prime
        vocabulary.encode(prime, "prime text")  # unknown characters: a clear error before any output
    # to a terminal, control characters are shown escaped; to a file or a pipe, the text is written as it is
    show = _terminal_safe if sys.stdout is not None and sys.stdout.isatty() else str
    temperature = 0.8 if args.temperature is None else args.temperature
    with np.errstate(all="ignore"):   # huge weights: the sampler's own checks report what matters
        if args.beam is not None:
            if not prime:   # the vocabulary spells none of progress.FIXED_PRIMES
                raise ValueError("--beam continues a prime, and this model's characters spell no default one: give "
                                 "--prime TEXT or --prime-file FILE")
            beams = beam_search(model, vocabulary, prime, args.length, args.beam, args.count)
            for number, (text, score) in enumerate(beams, 1):
                if args.count > 1:
                    _write(f"=== beam {number} of {len(beams)}: log-probability {score:.6f} nats ===\n")
                else:
                    _say(f"log-probability of the continuation: {score:.6f} nats (beam width {args.beam})")
                _write(show(shown_prime + text) + "\n")
        elif args.count > 1:
            texts = generate_batch(model, vocabulary, prime, args.length, args.count, temperature, args.top_k,
                                   args.top_p, args.argmax, args.seed)
            for number, text in enumerate(texts, 1):
                _write(f"=== sample {number} of {args.count} ===\n{show(shown_prime + text)}\n")
        else:
            _write(show(shown_prime))
            for character in generate(model, vocabulary, prime, args.length, temperature, args.top_k,
                                      args.argmax, args.seed, top_p=args.top_p):
                _write(show(character))
                _flush()
            _write("\n")
    return 0


def _check_sampling_combination(args: argparse.Namespace) -> None:
    """Refuse, in one line, options of `sample` that contradict each other or would change nothing."""
    if args.prime == "":
        raise ValueError("--prime is empty; give the text to start from, or leave --prime out for the default prime")
    if args.prime_file is not None and args.prime is not None:
        raise ValueError("--prime and --prime-file both give the text to start from; give one of them")
    shaping = [name for name, value in (("--temperature", args.temperature), ("--top-k", args.top_k),
                                        ("--top-p", args.top_p)) if value is not None]
    if args.beam is not None:
        given = shaping + (["--seed"] if args.seed is not None else []) + (["--argmax"] if args.argmax else [])
        if given:
            raise ValueError(f"--beam finds the most likely continuation under the model's own probabilities, "
                             f"deterministically; it takes no {', '.join(given)} (those shape random sampling; "
                             "--argmax is --beam 1)")
        if args.count > args.beam:
            raise ValueError(f"--count {args.count} asks for more continuations than a beam of width {args.beam} "
                             f"keeps; give --beam {args.count} or more")
    elif args.argmax:
        if shaping:
            raise ValueError(f"--argmax always takes the most likely character; {', '.join(shaping)} would change "
                             "nothing (they shape random sampling): give one or the other")
        if args.count > 1:
            raise ValueError(f"--argmax is deterministic, so --count {args.count} would repeat one text; for the "
                             f"{args.count} most likely continuations use --beam {args.count} --count {args.count}")


def _eval(args: argparse.Namespace) -> int:
    import numpy as np

    from .corpus import ids_in, load_corpus
    from .model import evaluate, load_model

    model, vocabulary, meta = load_model(args.checkpoint)
    use_device(model, args)
    ids = ids_in(load_corpus(args.text), vocabulary, f"text file {args.text}")
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

    _check_output_file("--out", args.out)   # before the gradients are computed and the table printed
    return run(args)


def _check_output_file(option: str, path: str) -> None:
    """ValueError naming `option` unless `path` can be written as a file: its folder exists and is writable,
    and it is not itself a folder.

    >>> _check_output_file("--out", "/proc/none/flow.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --out /proc/none/flow.png: the folder /proc/none does not exist; give a file path in a folder ...
    """
    target = Path(path)
    folder = target.parent
    advice = "; give a file path in a folder you can write"
    if target.is_dir():
        problem = "is a folder"
    elif not folder.exists():
        problem = f"the folder {folder} does not exist"
    elif not folder.is_dir():
        problem = f"{folder} is not a folder"
    elif not os.access(folder, os.W_OK | os.X_OK):
        problem = f"the folder {folder} is not writable"
    else:
        return
    raise ValueError(f"{option} {path}: {problem}{advice}")


def _export(args: argparse.Namespace) -> int:
    from .export import checkpoint_used, export
    _say(f"wrote {export(args.checkpoint, args.format, args.out, args.force)} from {checkpoint_used(args.checkpoint)}")
    return 0


def _handlers() -> dict[str, Callable[[argparse.Namespace], int]]:
    return {"train": _train, "sample": _sample, "eval": _eval, "info": _info, "diagnose": _diagnose,
            "export": _export}


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
    from .extras import MissingPackage
    from .training import RunExists, RunInUse, TrainingStopped

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo
        run_demo()
        return 0
    if args.command == "completion":
        print(completion_script(parser, args.shell), end="")
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
        if isinstance(error, (RunInUse, RunExists, CheckpointError, ValueError, TypeError, MissingPackage)):
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

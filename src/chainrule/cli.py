"""The `chainrule` command line: a thin layer over the library (train, sample, eval, info, demo)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _add_train(commands: argparse._SubParsersAction) -> None:
    from .training import OPTIMIZERS, SCHEDULES, TrainConfig

    defaults = {f.name: f.default for f in fields(TrainConfig)}
    train = commands.add_parser("train", help="train a character-level language model on a text file",
                                description="Train a character-level RNN/LSTM/GRU language model. With no "
                                "TEXT_FILE it trains on the Python reference manual that ships with CPython.")
    train.add_argument("text", nargs="?", metavar="TEXT_FILE", help="UTF-8 text to learn (default: the Python "
                       "reference manual, pydoc_data.topics)")
    model = train.add_argument_group("model")
    model.add_argument("--model", choices=["lstm", "gru", "rnn"], default=defaults["model"])
    model.add_argument("--hidden", type=_positive_int, default=defaults["hidden"], help="hidden units per layer")
    model.add_argument("--layers", type=_positive_int, default=defaults["layers"])
    model.add_argument("--dropout", type=float, default=defaults["dropout"], help="between layers and before the head")
    model.add_argument("--embedding", type=int, default=defaults["embedding"],
                       help="embedding size; 0 feeds one-hot characters (default)")
    data = train.add_argument_group("data")
    data.add_argument("--seq-len", type=_positive_int, default=defaults["seq_len"], help="BPTT length")
    data.add_argument("--batch-size", type=_positive_int, default=defaults["batch_size"], help="parallel text streams")
    data.add_argument("--val-frac", type=float, default=defaults["val_frac"], help="last fraction held out")
    optimization = train.add_argument_group("optimization")
    optimization.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=defaults["optimizer"])
    optimization.add_argument("--lr", type=float, default=defaults["lr"])
    optimization.add_argument("--schedule", choices=SCHEDULES, default=defaults["schedule"])
    optimization.add_argument("--lr-decay", type=float, default=defaults["lr_decay"],
                              help="decay factor of the step / exponential schedules")
    optimization.add_argument("--lr-decay-every", type=_positive_int, default=defaults["lr_decay_every"],
                              help="steps between decays (step schedule)")
    optimization.add_argument("--grad-clip", type=float, default=defaults["grad_clip"],
                              help="max gradient norm (0: no clipping)")
    budget = train.add_argument_group("how long (the first limit reached ends training; none: one epoch)")
    budget.add_argument("--steps", type=_positive_int, help="total optimizer steps, counted across resumes")
    budget.add_argument("--epochs", type=float, help="total passes over the training text")
    budget.add_argument("--minutes", type=float, help="training-time budget of this invocation (time spent "
                        "evaluating and writing checkpoints is not counted)")
    output = train.add_argument_group("output")
    output.add_argument("--out", default="runs/charlm", help="folder for checkpoints, log.jsonl and loss.png")
    output.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR exactly where it stopped")
    output.add_argument("--eval-every", type=_positive_int, default=defaults["eval_every"])
    output.add_argument("--sample-every", type=int, default=defaults["sample_every"], help="0: never")
    output.add_argument("--seed", type=int, default=defaults["seed"])
    output.add_argument("--quiet", action="store_true", help="no progress bar or samples; one line per evaluation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chainrule", description="Automatic differentiation and recurrent "
                                     "networks on NumPy; character-level language models from the command line.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(commands)
    sample = commands.add_parser("sample", help="generate text from a checkpoint")
    sample.add_argument("checkpoint", metavar="CHECKPOINT", help="a run folder (its best checkpoint) or a .json file")
    sample.add_argument("--prime", default="", help="text to start from (default: a random character)")
    sample.add_argument("--length", type=int, default=500)
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--top-k", type=_positive_int)
    sample.add_argument("--seed", type=int)
    sample.add_argument("--argmax", action="store_true", help="always take the most likely character")
    evaluation = commands.add_parser("eval", help="loss, bits per character and perplexity on a text")
    evaluation.add_argument("checkpoint", metavar="CHECKPOINT")
    evaluation.add_argument("text", metavar="TEXT_FILE")
    evaluation.add_argument("--batch-size", type=_positive_int, default=32)
    info = commands.add_parser("info", help="a checkpoint's configuration, size and training history")
    info.add_argument("checkpoint", metavar="CHECKPOINT")
    diagnose = commands.add_parser("diagnose", help="gradient flow through time: vanishing and exploding gradients",
                                   description="Plot the norm of dL/dh_t against steps back in time, with the "
                                   "largest singular value of each W_hh, for a trained checkpoint and/or fresh "
                                   "RNN/LSTM/GRU layers; also printed as a table.")
    diagnose.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT", help="a trained character model")
    diagnose.add_argument("--compare", help="fresh layers to add, e.g. rnn,lstm,gru (the default without CHECKPOINT)")
    diagnose.add_argument("--seq-len", type=_positive_int, default=100)
    diagnose.add_argument("--batch", type=_positive_int, default=8)
    diagnose.add_argument("--hidden", type=_positive_int, default=64, help="hidden size of the fresh layers")
    diagnose.add_argument("--input-size", type=_positive_int, default=16, help="input features of the fresh layers")
    diagnose.add_argument("--input-scale", type=float, default=0.1, help="scale of the fresh layers' random inputs")
    diagnose.add_argument("--sigma", type=float, action="append", help="add a fresh RNN whose W_hh has this largest "
                          "singular value (repeatable: --sigma 0.5 --sigma 2)")
    diagnose.add_argument("--forget-bias", type=float, default=1.0, help="forget-gate bias of fresh LSTMs")
    diagnose.add_argument("--text", help="text for the checkpoint's batch (needed unless it was trained on the "
                          "default corpus: a path recorded in a checkpoint is never opened)")
    diagnose.add_argument("--out", default="gradient_flow.png", help="where to write the PNG")
    diagnose.add_argument("--seed", type=int, default=0)
    commands.add_parser("demo", help="a short tour of the autograd engine on the source texts' examples")
    return parser


def _reuse_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks of up to 32 MiB for reuse rather than return them to the
    kernel. A training step allocates and frees the same few-MiB arrays every step; by default glibc hands
    many of them back, and each new mapping then costs a page fault per 4 KiB: 2,200 faults per step and
    ~13% of the step time for a 1x128 LSTM at batch 32 here. (The recurrent kernels' own large arrays are
    reused by `nn.kernels.ArrayPool` either way; this covers the rest.) Process-wide, so it is the command
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


def _train(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint, resolve_checkpoint
    from .training import TrainConfig, Trainer

    names = {f.name for f in fields(TrainConfig)}
    if args.resume:
        _, meta = load_checkpoint(resolve_checkpoint(Path(args.resume) / "latest.json")
                                  if Path(args.resume).is_dir() else args.resume)
        config = TrainConfig(**{**meta["train"], **{k: getattr(args, k) for k in ("steps", "epochs", "minutes")}})
        if args.text is not None:
            config.text = args.text
        out = Path(args.resume) if Path(args.resume).is_dir() else Path(args.resume).parent
        trainer = Trainer(config, out, quiet=args.quiet)
        trainer.restore(out / "latest.json")
        print(f"resuming {out} at step {trainer.progress.step}", file=sys.stderr)
    else:
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
        out = Path(args.out)
        if (out / "latest.json").exists():
            print(f"error: {out} already holds a training run; continue it with --resume {out} or choose "
                  "another --out", file=sys.stderr)
            return 2
        trainer = Trainer(config, out, quiet=args.quiet)
        print(f"training a {config.model} {config.layers}x{config.hidden} ({trainer.model.num_parameters():,} "
              f"parameters) on {trainer.text_name}: {len(trainer.vocabulary)} characters, "
              f"{trainer.train_streams.batches_per_epoch} steps per epoch; writing to {out}", file=sys.stderr)
    progress = trainer.train()
    best = "" if progress.best_val_loss is None else f", best validation loss {progress.best_val_loss:.4f} nats/char"
    print(f"done: {progress.step} steps{best}. Checkpoints in {out}; sample with: chainrule sample {out}",
          file=sys.stderr)
    return 0


def _sample(args: argparse.Namespace) -> int:
    from .charlm import generate, load_model

    model, vocabulary, _ = load_model(args.checkpoint)
    vocabulary.encode(args.prime, "prime text")  # unknown characters: a clear error before any output
    sys.stdout.write(args.prime)
    for character in generate(model, vocabulary, args.prime, args.length, args.temperature, args.top_k,
                              args.argmax, args.seed):
        sys.stdout.write(character)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .charlm import evaluate, load_model
    from .text import read_text

    model, vocabulary, meta = load_model(args.checkpoint)
    ids = vocabulary.encode(read_text(args.text), f"text file {args.text}")
    result = evaluate(model, ids, args.batch_size, max(meta["train"]["seq_len"], 128))
    print(f"characters scored: {result.characters}")
    print(f"loss: {result.loss:.4f} nats/char")
    print(f"bits per character: {result.bits_per_character:.4f}")
    print(f"perplexity: {result.perplexity:.3f}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint)
    _, meta = load_checkpoint(path)
    model, train, progress = meta["model"], meta["train"], meta["progress"]
    print(f"checkpoint: {path}")
    print(f"model: {model['model']} {model['layers']}x{model['hidden']}, "
          f"{'embedding ' + str(model['embedding']) if model['embedding'] else 'one-hot input'}, "
          f"dropout {model['dropout']}, {meta['parameters']:,} parameters, vocabulary {len(model['vocabulary'])}")
    print(f"text: {meta['text']['name']} (sha256 {meta['text']['sha256'][:12]}...)")
    print(f"training: {train['optimizer']} lr {train['lr']} ({train['schedule']}), seq-len {train['seq_len']}, "
          f"batch {train['batch_size']}, grad-clip {train['grad_clip']}, seed {train['seed']}")
    print(f"progress: step {progress['step']}, epoch {progress['epoch']}, {progress['elapsed'] / 60:.1f} minutes")
    history = meta.get("history", [])
    if history:
        last = history[-1]
        print(f"last evaluation: train {last['train_loss']}, validation {last['val_loss']} (nats/char)")
    if progress.get("best_val_loss") is not None:
        print(f"best validation loss: {progress['best_val_loss']:.4f} nats/char")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from .diagnose import run
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code.

    >>> main(["demo"]) == 0   # doctest: +ELLIPSIS
    1. The book's example ...
    True
    """
    from .checkpoint import CheckpointError
    from .training import TrainingStopped

    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"train": _train, "sample": _sample, "eval": _eval, "info": _info, "diagnose": _diagnose}
    if args.command == "demo":
        from .demo import run_demo
        run_demo()
        return 0
    if args.command not in handlers:
        parser.print_help(sys.stderr)
        return 2
    if args.command in ("train", "sample", "eval"):
        _reuse_freed_memory()
    try:
        return handlers[args.command](args)
    except TrainingStopped as error:
        print(f"training stopped: {error}", file=sys.stderr)
        return 1
    except (CheckpointError, ValueError, FileNotFoundError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; the last checkpoint written is intact", file=sys.stderr)
        return 130

"""`chainrule diagnose`: gradient flow through time for a trained checkpoint and/or fresh RNN, LSTM, GRU layers."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Tensor, manual_seed
from ..insight.flow import GradientFlow, format_table, gradient_flow, plot, scale_recurrent_weights
from ..nn import functional as F
from .config import CELLS
from .model import load_model
from .corpus import ids_in, load_corpus
from .text import DEFAULT_CORPUS_NAME



def fresh_layer(cell: str, input_size: int, hidden: int, forget_bias: float | None) -> Any:
    """A new layer with PyTorch's default initialisation (LSTM: forget-gate bias set to `forget_bias`)."""
    layer = CELLS[cell](input_size, hidden)
    if cell == "lstm" and forget_bias is not None:
        layer.bias_ih_l0.data[hidden:2 * hidden] = forget_bias
        layer.bias_hh_l0.data[hidden:2 * hidden] = 0.0
    return layer


def checkpoint_flow(path: str, text_path: str | None, seq_len: int, batch: int, seed: int) -> tuple[str, GradientFlow]:
    """Gradient flow of a trained character model: the loss is the cross-entropy of its last prediction.

    The batch comes from `text_path`, or, without one, from the corpus that ships with Python when the run was
    trained on it. A text path recorded in the checkpoint is never opened: a run folder is untrusted, and its
    description could name any file; raises ValueError asking for --text instead.
    """
    model, vocabulary, meta = load_model(path)
    name = meta["text"]["name"]
    if text_path is None and name != DEFAULT_CORPUS_NAME:
        raise ValueError(f"the checkpoint was trained on {name!r}; give the text with --text (a path recorded "
                         "in a checkpoint is not opened)")
    # a text file is encoded once to the cache and memory-mapped: only the batch's rows are copied
    ids = ids_in(load_corpus(text_path), vocabulary, f"text {text_path or name}")
    if len(ids) < seq_len + 2:
        raise ValueError(f"the text has {len(ids)} characters; --seq-len {seq_len} needs at least {seq_len + 2}")
    starts = np.random.default_rng(seed).integers(0, len(ids) - seq_len - 1, batch)
    inputs = np.stack([ids[s:s + seq_len] for s in starts]).astype(np.int64)
    targets = np.stack([ids[s + 1:s + seq_len + 1] for s in starts]).astype(np.int64)

    def loss() -> Tensor:
        logits, _ = model(inputs)
        return F.cross_entropy(logits[:, -1], targets[:, -1])

    config = meta["model"]
    return f"{config['model']} {config['layers']}x{config['hidden']} (trained)", gradient_flow(model.rnn, loss)


def run(args: Any) -> int:
    import os
    if os.path.isdir(args.out):   # the plot would be written next to it, as FOLDER.png
        raise ValueError(f"--out {args.out} is a folder; give the PNG file to write, e.g. --out "
                         f"{os.path.join(args.out, 'gradient_flow.png')}")
    manual_seed(args.seed)
    flows: dict[str, GradientFlow] = {}
    if args.checkpoint:
        label, flow = checkpoint_flow(args.checkpoint, args.text, args.seq_len, args.batch, args.seed)
        flows[label] = flow
    cells = [c.strip() for c in args.compare.split(",") if c.strip()] if args.compare else []
    if not args.checkpoint and not cells:
        cells = ["rnn", "lstm", "gru"]
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise ValueError(f"--compare takes a comma-separated list of rnn, lstm, gru; got {', '.join(unknown)}")
    inputs = Tensor(np.random.default_rng(args.seed).standard_normal((args.batch, args.seq_len, args.input_size))
                    .astype(np.float32) * args.input_scale)
    variants = [(cell, None) for cell in cells] + [("rnn", sigma) for sigma in args.sigma or []]
    for cell, sigma in variants:
        layer = fresh_layer(cell, args.input_size, args.hidden, args.forget_bias)
        label = f"{cell} (new)"
        if sigma is not None:
            scale_recurrent_weights(layer, sigma)
            label = f"rnn, σ_max set to {sigma:g}"
        elif cell == "lstm" and args.forget_bias is not None:
            label = f"lstm (new, forget bias {args.forget_bias:g})"
        flows[label] = gradient_flow(layer, lambda layer=layer: layer(inputs)[0][:, -1].sum())  # type: ignore[misc]  # default-bound lambda
    print(format_table(flows))
    try:
        written = plot(flows, args.out, f"Gradient flow through time ({args.seq_len} steps)")
        print(f"wrote {written}")
    except ImportError:
        print("matplotlib is not installed, so no PNG was written (pip install matplotlib)")
    return 0

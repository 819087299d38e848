"""Load a chainrule character-model checkpoint into PyTorch modules (needs `torch`; not a dependency).

The checkpoint's weights already use PyTorch's names and layouts (`rnn.weight_ih_l0` is [4H, I] with gates
i, f, g, o, and so on), so the conversion is a copy:

    embedding, rnn, head = to_torch("runs/my-run")
    logits = head(rnn(embedding(torch.tensor([[3, 1, 4]])))[0])   # [1, 3, vocabulary]

For a one-hot model the returned embedding is a frozen identity, which equals feeding one-hot vectors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import load_checkpoint
from .config import CELLS


def to_torch(checkpoint: str | Path) -> tuple[Any, Any, Any]:
    """(torch.nn.Embedding, torch.nn.LSTM/GRU/RNN with batch_first=True, torch.nn.Linear) from a checkpoint.

    The checkpoint is validated first (`load_checkpoint`: description, containment, arrays against the
    configuration); raises `CheckpointError` naming what is wrong.
    """
    import torch

    arrays, meta = load_checkpoint(checkpoint)
    config = meta["model"]
    size, hidden = len(config["vocabulary"]), config["hidden"]
    weights = {k[len("model."):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("model.")}
    if config["embedding"]:
        embedding = torch.nn.Embedding(size, config["embedding"])
        embedding.load_state_dict({"weight": weights["embedding.weight"]})
    else:
        embedding = torch.nn.Embedding.from_pretrained(torch.eye(size), freeze=True)
    cell = getattr(torch.nn, CELLS[config["model"]].__name__)   # PyTorch's class of the same name
    rnn = cell(config["embedding"] or size, hidden, num_layers=config["layers"], batch_first=True)
    rnn.load_state_dict({k[len("rnn."):]: v for k, v in weights.items() if k.startswith("rnn.")})
    head = torch.nn.Linear(hidden, size)
    head.load_state_dict({"weight": weights["head.weight"], "bias": weights["head.bias"]})
    for module in (embedding, rnn, head):
        module.eval()
    return embedding, rnn, head

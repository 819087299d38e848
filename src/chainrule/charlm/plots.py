"""A training run's picture: the loss curve, `loss.png` in the run folder (matplotlib is optional)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def draw_loss(history: list[dict[str, Any]], title: str, folder: Path) -> None:
    """Write `folder/loss.png`: the training loss of each evaluation record and the validation loss where
    there is one, against the step. Written atomically (a temporary file in the folder, then renamed over
    the old picture). Raises ImportError without matplotlib, OSError when the file cannot be written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    try:
        steps = [r["step"] for r in history if r["train_loss"] is not None]
        axes.plot(steps, [r["train_loss"] for r in history if r["train_loss"] is not None], label="training")
        val = [(r["step"], r["val_loss"]) for r in history if r["val_loss"] is not None]
        if val:
            axes.plot(*zip(*val), marker="o", label="validation")
        axes.set_xlabel("step")
        axes.set_ylabel("loss (nats per character)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".loss.png.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                figure.savefig(stream, dpi=100, format="png")
            os.replace(temporary, Path(folder) / "loss.png")
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
    finally:
        plt.close(figure)

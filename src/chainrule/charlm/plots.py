"""A training run's picture: the loss curve, `loss.png` in the run folder (matplotlib is optional)."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import new_file_mode


@dataclass
class LossCurves:
    """What `loss.png` draws, taken from a run's evaluation records (`Progress.history`).

    steps, losses: each step's training loss (from the records' `losses`; a record without them, written
    before they were kept, gives one point, its mean, at its step); smoothed: their exponential moving
    average (the losses themselves when a record lacks step losses); val_steps, val_losses: the validation
    points; best: (step, loss) of the lowest validation loss, the best checkpoint, or None; minutes: (steps,
    minutes) of the records, the training clock at each, from (0, 0) (a run's clock adds up its invocations,
    so step 0 is minute 0).
    """

    steps: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    val_steps: np.ndarray
    val_losses: np.ndarray
    best: tuple[int, float] | None
    minutes: tuple[np.ndarray, np.ndarray]


def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction (as TensorBoard's smoothing): s_t = w s_{t-1} + (1 - w) x_t,
    divided by 1 - w^t, so the first value is x_1 and not pulled towards 0.

    >>> smooth(np.array([1.0, 3.0]), 0.5).tolist()
    [1.0, 2.3333333333333335]
    """
    out = np.empty(len(values))
    average = 0.0
    for index, value in enumerate(values):
        average = weight * average + (1 - weight) * value
        out[index] = average / (1 - weight ** (index + 1))
    return out


def loss_curves(history: list[dict[str, Any]]) -> LossCurves:
    """The curves of `history` (evaluation records in step order).

    >>> curves = loss_curves([{"step": 2, "train_loss": 2.5, "val_loss": 2.4, "elapsed": 30.0, "losses": [3.0, 2.0]},
    ...                       {"step": 3, "train_loss": 1.0, "val_loss": 2.6, "elapsed": 45.0, "losses": [1.0]}])
    >>> curves.steps.tolist(), curves.losses.tolist(), curves.best, curves.minutes[1].tolist()
    ([1, 2, 3], [3.0, 2.0, 1.0], (2, 2.4), [0.0, 0.5, 0.75])
    """
    steps: list[int] = []
    losses: list[float] = []
    every_step = True
    for record in history:
        kept = record.get("losses") or []
        every_step &= bool(kept)
        if kept:
            steps.extend(range(record["step"] - len(kept) + 1, record["step"] + 1))
            losses.extend(kept)
        elif record.get("train_loss") is not None:
            steps.append(record["step"])
            losses.append(record["train_loss"])
    validation = [(r["step"], r["val_loss"]) for r in history if r.get("val_loss") is not None]
    best = min(validation, key=lambda point: point[1]) if validation else None   # the first of equal lows
    array = np.asarray(losses, dtype=float)
    # means of whole evaluation intervals are averages already: a moving average over them would lag a whole interval
    return LossCurves(np.asarray(steps, dtype=int), array, smooth(array) if every_step else array.copy(),
                      np.asarray([s for s, _ in validation], dtype=int), np.asarray([v for _, v in validation]),
                      best, (np.asarray([0] + [r["step"] for r in history], dtype=float),
                             np.asarray([0.0] + [r.get("elapsed", 0.0) / 60 for r in history])))


def minute_ticks(steps: np.ndarray, minutes: np.ndarray, low: float, high: float) -> list[float]:
    """Tick values (training minutes) for the upper axis of a step axis from `low` to `high`: round values
    (MaxNLocator), kept only where they fall at least an eighth of the axis apart in steps, so that labels
    do not run together where the clock runs fast against the step (a start-up's first evaluation).

    >>> minute_ticks(np.array([0.0, 1, 10]), np.array([0.0, 0.3, 0.4]), 0, 10)
    [0.0, 0.4]
    """
    from matplotlib.ticker import MaxNLocator

    ends = np.interp([low, high], steps, minutes)
    candidates = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(ends[0], ends[1])
    kept: list[float] = []
    last = None
    for value in candidates:
        if not ends[0] - 1e-12 <= value <= ends[1] + 1e-12:
            continue
        at = float(np.interp(value, minutes, steps))
        if last is None or at - last >= (high - low) / 8:
            kept.append(round(float(value), 10))
            last = at
    return kept


def loss_figure(history: list[dict[str, Any]], title: str) -> Any:
    """The matplotlib figure `draw_loss` writes (the caller closes it): step on the lower axis, whole steps
    only; training minutes on the upper, at `minute_ticks`. Raises ImportError without matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves = loss_curves(history)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    try:
        if len(curves.steps):
            axes.plot(curves.steps, curves.losses, color="tab:blue", alpha=0.25, linewidth=0.8)
            axes.plot(curves.steps, curves.smoothed, color="tab:blue", label="training (moving average)")
        if len(curves.val_steps):
            axes.plot(curves.val_steps, curves.val_losses, color="tab:orange", marker="o", markersize=4,
                      label="validation", zorder=3)
        if curves.best is not None:
            # hollow and above the validation points: the best one stays visible inside its star
            axes.plot(*curves.best, marker="*", markersize=16, markerfacecolor="none", markeredgecolor="tab:red",
                      markeredgewidth=1.5, linestyle="none", zorder=4,
                      label=f"best checkpoint: step {curves.best[0]}, {curves.best[1]:.4f}")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))   # steps are whole numbers
        steps, minutes = (np.asarray(values, dtype=float) for values in curves.minutes)
        if len(steps) >= 2 and np.all(np.diff(steps) > 0) and np.all(np.diff(minutes) > 0):
            # the clock of a run is increasing in the step: both maps are interpolations of one table
            def to_minutes(step: Any) -> np.ndarray:
                return np.interp(np.asarray(step, dtype=float), steps, minutes)

            def to_steps(minute: Any) -> np.ndarray:
                return np.interp(np.asarray(minute, dtype=float), minutes, steps)

            top = axes.secondary_xaxis("top", functions=(to_minutes, to_steps))
            top.set_xlabel("training minutes")
            top.set_xticks(minute_ticks(steps, minutes, *axes.get_xlim()))
        axes.set_xlabel("step")
        axes.set_ylabel("loss (nats per character)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        if len(curves.steps) or len(curves.val_steps):
            axes.legend()
    except BaseException:
        plt.close(figure)
        raise
    return figure


def draw_loss(history: list[dict[str, Any]], title: str, folder: Path) -> None:
    """Write `folder/loss.png` (`loss_figure`): each step's training loss (faint) and its moving average, the
    validation points, the best checkpoint marked, the step on the lower axis and the training minutes on the
    upper (interpolated between evaluations). Written atomically (a temporary file in the folder, then renamed
    over the old picture). Raises ImportError without matplotlib, OSError when the file cannot be written."""
    import matplotlib.pyplot as plt

    figure = loss_figure(history, title)
    try:
        figure.tight_layout()
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".loss.png.", suffix=".tmp")
        try:
            os.fchmod(handle, new_file_mode())  # the mode of a normally created file, not mkstemp's 0o600
            with os.fdopen(handle, "wb") as stream:
                figure.savefig(stream, dpi=100, format="png")
            os.replace(temporary, Path(folder) / "loss.png")
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
    finally:
        plt.close(figure)

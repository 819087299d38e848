"""`chainrule train --tensorboard DIR`: the run as TensorBoard event files, written with tensorboardX (an
optional extra, `pip install 'chainrule[tensorboard]'`; neither TensorFlow nor PyTorch is needed).

What is written, under these tags (x axis: the optimizer step):

- every step: `train/loss` (the batch's cross-entropy, nats/char), `train/learning_rate`,
  `train/gradient_norm` (the global 2-norm of the gradients before clipping);
- at each evaluation: `eval/train_loss` (mean since the previous evaluation), `eval/val_loss`,
  `eval/chars_per_second`, histograms `weights/NAME` and `gradients/NAME` of every parameter (the gradients of
  the last step, after clipping), and the image `gradient_flow`: ‖dL/dh_t‖ against steps back in time, what
  `chainrule diagnose` draws (`insight.flow`), for the current weights on the first streams of the last batch;
- each sample: the text `sample`.

A resumed run writes a new event file into the same folder; its steps continue the run's, and the first
event tells TensorBoard to drop what an interrupted run logged after the checkpoint it resumed from.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..autograd import Tensor
from ..insight.flow import gradient_flow, plot
from ..nn import functional as F
from .extras import require

FLOW_STREAMS = 4   # batch rows the gradient-flow picture is measured on: a picture, not a statistic


def _make_writable_folder(logdir: Path) -> None:
    """Make `logdir` (and its parents) if missing; ValueError naming --tensorboard when that fails or the
    folder is not writable, so the option is refused before a run folder is claimed."""
    advice = "; give a folder you can write (made if missing)"
    if logdir.exists() and not logdir.is_dir():
        raise ValueError(f"--tensorboard {logdir}: is a file, not a folder{advice}")
    try:
        logdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        cause = error.strerror or str(error)
        where = f" ({error.filename})" if error.filename is not None and str(error.filename) != str(logdir) else ""
        raise ValueError(f"--tensorboard {logdir}: {cause}{where}{advice}") from None
    if not os.access(logdir, os.W_OK | os.X_OK):
        raise ValueError(f"--tensorboard {logdir}: permission denied{advice}")


class TensorBoardLogger:
    """A training callback (`Trainer.callbacks`) writing scalars, histograms, samples and the gradient-flow
    picture to `logdir` (see the module's text).

    At construction, before any training or run folder: raises `MissingPackage` when tensorboardX is not
    installed, and makes `logdir` (with its parents) or raises ValueError naming --tensorboard when it cannot
    be made or written. The event file is made at the first event.
    """

    def __init__(self, logdir: str | Path) -> None:
        self._tensorboardx = require("tensorboardX", "tensorboard", "--tensorboard")
        self.logdir = Path(logdir)
        _make_writable_folder(self.logdir)
        self._writer: Any = None
        self._no_picture: str | None = None   # why the gradient-flow image is not drawn, once known

    def _open(self, trainer: Any) -> Any:
        if self._writer is None:
            # the first event's step: TensorBoard discards the events of this step and later ones in older
            # files (what an interrupted run logged after the checkpoint this run resumed from)
            # tensorboardX names a file by the second and the host only: a resume within the same second would
            # overwrite the earlier file, so the name also carries the step it starts from and the process
            self._writer = self._tensorboardx.SummaryWriter(
                str(self.logdir), purge_step=trainer.progress.step,
                filename_suffix=f".step{trainer.progress.step}.pid{os.getpid()}")
        return self._writer

    def on_step(self, trainer: Any, loss: float, gradient_norm: float | None) -> None:
        """After an optimizer step; `gradient_norm` is the norm before clipping (None: not clipped, so it is
        computed here from the gradients, which are then unchanged)."""
        writer, step = self._open(trainer), trainer.progress.step
        if gradient_norm is None:
            gradient_norm = math.sqrt(sum(float(np.sum(np.square(p.grad, dtype=np.float64)))
                                          for p in trainer.parameters if p.grad is not None))
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("train/learning_rate", trainer.optimizer.param_groups[0]["lr"], step)
        writer.add_scalar("train/gradient_norm", gradient_norm, step)

    def on_evaluation(self, trainer: Any, record: dict[str, Any], batch: tuple[np.ndarray, np.ndarray]) -> None:
        """After an evaluation (`record`: a log.jsonl line) on the last training batch `batch`."""
        writer, step = self._open(trainer), trainer.progress.step
        for key in ("train_loss", "val_loss", "chars_per_second"):
            if record.get(key) is not None:
                writer.add_scalar(f"eval/{key}", record[key], step)
        for name, parameter in trainer.model.named_parameters():
            writer.add_histogram(f"weights/{name}", np.asarray(parameter.data), step)
            if parameter.grad is not None:
                writer.add_histogram(f"gradients/{name}", np.asarray(parameter.grad), step)
        picture = self._flow_picture(trainer, batch[0][:FLOW_STREAMS], batch[1][:FLOW_STREAMS])
        if picture is not None:
            writer.add_image("gradient_flow", picture, step, dataformats="HWC")
        writer.flush()

    def on_sample(self, trainer: Any, text: str) -> None:
        # TensorBoard renders text as Markdown: indented four spaces it is shown as written
        self._open(trainer).add_text("sample", "    " + text.replace("\n", "\n    "), trainer.progress.step)

    def close(self, trainer: Any) -> None:
        """When training ends (or fails): the event file is flushed and closed; a later event opens a new one."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _flow_picture(self, trainer: Any, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
        """The gradient-flow plot of the current weights as an [H, W, 4] float image, or None without
        matplotlib (said once). The loss is the last position's cross-entropy, as `chainrule diagnose` takes."""
        if self._no_picture is not None:
            return None
        try:
            import matplotlib.image
        except ImportError:
            self._no_picture = "matplotlib is not installed: no gradient-flow image in TensorBoard"
            trainer.report(self._no_picture + " (pip install 'chainrule[plot]')")
            return None
        model, config = trainer.model, trainer.config.architecture

        def loss() -> Tensor:
            logits, _ = model(inputs)
            return F.cross_entropy(logits[:, -1], targets[:, -1])

        was_training = model.training
        model.eval()   # no dropout: the picture is of the weights, and no random numbers are drawn
        try:
            flow = gradient_flow(model.rnn, loss)
        finally:
            model.train(was_training)
        descriptor, path = tempfile.mkstemp(suffix=".png")
        os.close(descriptor)
        try:
            title = (f"{config.model} {config.layers}x{config.hidden}, step {trainer.progress.step}: "
                     f"gradient flow through time ({inputs.shape[1]} steps)")
            plot({f"{config.model} (training)": flow}, path, title)
            return matplotlib.image.imread(path)
        finally:
            os.unlink(path)

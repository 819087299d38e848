"""`chainrule train --tensorboard DIR`: the event files read back hold the scalars, histograms, text and image."""
import json
import struct
import sys

import numpy as np
import pytest

from chainrule.charlm.cli import main
from chainrule.charlm.extras import MissingPackage
from chainrule.charlm.resume import restore
from chainrule.charlm.training import TrainConfig, Trainer

pytest.importorskip("tensorboardX")
from tensorboardX.proto.event_pb2 import Event  # noqa: E402  (only once tensorboardX is known to be there)

TEXT = ("ROMEO: But soft, what light through yonder window breaks?\n"
        "JULIET: O Romeo, Romeo, wherefore art thou Romeo?\n") * 30
CONFIG = dict(model="lstm", hidden=12, layers=2, embedding=6, seq_len=8, batch_size=3, steps=6, eval_every=3,
              sample_every=3, sample_length=30, dropout=0.1, val_frac=0.1)
TINY_TB = ["--model", "gru", "--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "2",
           "--sample-every", "0", "--quiet"]


def events(folder):
    """Every event of every event file in `folder`, in file order: TFRecord framing (length u64, its CRC u32,
    the serialized Event, its CRC u32), parsed with tensorboardX's own protobuf class."""
    found = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            at += 12
            found.append((path.name, Event.FromString(data[at:at + length])))
            at += length + 4
    return found


def values(folder):
    """{tag: [(step, value proto)]} over all files."""
    table = {}
    for _, event in events(folder):
        for value in event.summary.value:
            table.setdefault(value.tag, []).append((event.step, value))
    return table


def train(folder, logdir, **changes):
    from chainrule.charlm.tensorboard import TensorBoardLogger

    trainer = Trainer(TrainConfig(**{**CONFIG, **changes}), folder, quiet=True, corpus=(TEXT, "plays"))
    if logdir is not None:
        trainer.callbacks.append(TensorBoardLogger(logdir))
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tb")
    trainer = train(folder / "run", folder / "tb", grad_clip=1e-3)
    return trainer, folder / "run", values(folder / "tb")


def test_scalars_every_step_and_at_each_evaluation(logged):
    trainer, run, table = logged
    for tag in ("train/loss", "train/learning_rate", "train/gradient_norm"):
        assert [step for step, _ in table[tag]] == [1, 2, 3, 4, 5, 6], tag
    assert all(v.simple_value == pytest.approx(CONFIG.get("lr", 2e-3)) for _, v in table["train/learning_rate"])
    # the norm before clipping: clipping to 1e-3 leaves gradients of norm 1e-3, the logged norm is larger
    assert all(v.simple_value > 1e-2 for _, v in table["train/gradient_norm"])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    for key in ("train_loss", "val_loss", "chars_per_second"):
        logged_values = [(step, v.simple_value) for step, v in table[f"eval/{key}"]]
        assert logged_values == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in log], key
    mean = np.mean([v.simple_value for step, v in table["train/loss"] if step > 3])
    assert table["eval/train_loss"][1][1].simple_value == pytest.approx(mean, rel=1e-6)


def test_gradient_norm_without_clipping_is_the_gradients_norm(tmp_path):
    trainer = train(tmp_path / "run", tmp_path / "tb", grad_clip=0.0, steps=1, eval_every=1, sample_every=0)
    norm = np.sqrt(sum(float(np.sum(np.square(p.grad, dtype=np.float64))) for p in trainer.parameters))
    (step, value), = values(tmp_path / "tb")["train/gradient_norm"]
    assert step == 1 and value.simple_value == pytest.approx(norm, rel=1e-6)


def test_weight_and_gradient_histograms_at_each_evaluation(logged):
    trainer, _, table = logged
    for name, parameter in trainer.model.named_parameters():
        weights, gradients = table[f"weights/{name}"], table[f"gradients/{name}"]
        assert [s for s, _ in weights] == [s for s, _ in gradients] == [3, 6], name
        histogram = weights[-1][1].histo   # the last evaluation: the final weights
        assert histogram.num == parameter.data.size
        assert (histogram.min, histogram.max) == (pytest.approx(float(parameter.data.min())),
                                                  pytest.approx(float(parameter.data.max())))
        assert gradients[-1][1].histo.num == parameter.data.size


def test_the_sample_and_the_gradient_flow_picture(logged):
    trainer, _, table = logged
    samples = table["sample/text_summary"]
    assert [s for s, _ in samples] == [3, 6]
    text = samples[-1][1].tensor.string_val[0].decode()
    prime = trainer._sample()[:-CONFIG["sample_length"]]   # the prose opening the samples continue
    assert text.startswith("    " + prime)
    assert len(text.replace("\n    ", "\n")) - 4 == len(prime) + CONFIG["sample_length"]
    pictures = table["gradient_flow"]
    assert [s for s, _ in pictures] == [3, 6]
    image = pictures[-1][1].image
    assert image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and image.height > 100 and image.width > 100


def test_logging_does_not_change_the_training(tmp_path, logged):
    trainer, _, _ = logged
    plain = train(tmp_path / "run", None, grad_clip=1e-3)
    for (name, a), (_, b) in zip(trainer.model.state_dict().items(), plain.model.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_a_resumed_run_appends_and_its_steps_continue(tmp_path, capsys):
    (tmp_path / "plays.txt").write_text(TEXT)
    common = ["--hidden", "12", "--layers", "1", "--seq-len", "8", "--batch-size", "2", "--eval-every", "2",
              "--sample-every", "0", "--quiet", "--tensorboard", str(tmp_path / "tb")]
    assert main(["train", str(tmp_path / "plays.txt"), "--steps", "4", "--out", str(tmp_path / "run"), *common]) == 0
    assert main(["train", str(tmp_path / "plays.txt"), "--resume", str(tmp_path / "run"), "--steps", "6",
                 *common]) == 0
    files = sorted({name for name, _ in events(tmp_path / "tb")})
    assert len(files) == 2
    assert [s for s, _ in values(tmp_path / "tb")["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in values(tmp_path / "tb")["eval/val_loss"]] == [2, 4, 6]
    # each writer's first event: TensorBoard drops the older files' events from this step on
    starts = [(name, e.step) for name, e in events(tmp_path / "tb") if e.HasField("session_log")]
    assert starts == [(files[0], 1), (files[1], 5)]


def test_a_run_resumed_after_an_interruption_purges_what_came_after_its_checkpoint(tmp_path):
    """Steps 5 and 6 are logged, then the run is interrupted before its next checkpoint: resumed from step 4,
    the new file tells TensorBoard to discard the old steps 5 and 6, which the new run logs again."""
    from chainrule.charlm.tensorboard import TensorBoardLogger

    class Interrupt:
        def on_step(self, trainer, loss, norm):
            if trainer.progress.step == 6:
                raise KeyboardInterrupt

        def on_evaluation(self, trainer, record, batch):
            pass

        def on_sample(self, trainer, text):
            pass

        def close(self, trainer):
            pass

    config = TrainConfig.from_options({**CONFIG, "steps": 8, "eval_every": 4, "sample_every": 0})
    first = Trainer(config, tmp_path / "run", quiet=True, corpus=(TEXT, "plays"))
    first.callbacks += [TensorBoardLogger(tmp_path / "tb"), Interrupt()]
    with pytest.raises(KeyboardInterrupt):
        first.train()
    resumed = Trainer(config, tmp_path / "run", quiet=True, corpus=(TEXT, "plays"))
    restore(resumed, tmp_path / "run" / "latest.json")
    assert resumed.progress.step == 4
    resumed.callbacks.append(TensorBoardLogger(tmp_path / "tb"))
    resumed.train()
    found = events(tmp_path / "tb")
    # in the order they were written: a file name's last field is a process-wide counter, which does not sort as text
    names = sorted({name for name, _ in found}, key=lambda name: min(e.wall_time for n, e in found if n == name))

    def steps(name):
        return [e.step for n, e in found if n == name and any(v.tag == "train/loss" for v in e.summary.value)]
    assert steps(names[0]) == [1, 2, 3, 4, 5, 6] and steps(names[1]) == [5, 6, 7, 8]
    assert [(name, e.step) for name, e in found if e.HasField("session_log")] == [(names[0], 1), (names[1], 5)]


def test_a_missing_tensorboardx_is_reported_before_training(tmp_path, capsys, monkeypatch):
    from chainrule.charlm.tensorboard import TensorBoardLogger

    (tmp_path / "plays.txt").write_text(TEXT)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(MissingPackage):
        TensorBoardLogger(tmp_path / "tb")
    assert main(["train", str(tmp_path / "plays.txt"), "--out", str(tmp_path / "run"), "--tensorboard",
                 str(tmp_path / "tb"), "--steps", "1"]) == 2
    error = capsys.readouterr().err
    assert "--tensorboard needs the Python package tensorboardX" in error
    assert "pip install 'chainrule[tensorboard]'" in error
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()


def test_a_file_as_the_folder_is_refused(tmp_path, capsys):
    (tmp_path / "plays.txt").write_text(TEXT)
    (tmp_path / "tb").write_text("")
    assert main(["train", str(tmp_path / "plays.txt"), "--out", str(tmp_path / "run"), "--tensorboard",
                 str(tmp_path / "tb"), "--steps", "1"]) == 2
    assert "--tensorboard " + str(tmp_path / "tb") + ": is a file, not a folder; give a folder you can write" in (
        capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("logdir,cause", [("/proc/chainrule-tb", "No such file or directory"),
                                          ("afile/sub", "Not a directory")])
def test_a_folder_that_cannot_be_made_is_refused_naming_the_option_before_any_run_folder(tmp_path, capsys, logdir,
                                                                                          cause):
    (tmp_path / "plays.txt").write_text(TEXT)
    (tmp_path / "afile").write_text("")
    logdir = logdir if logdir.startswith("/") else str(tmp_path / logdir)
    assert main(["train", str(tmp_path / "plays.txt"), "--out", str(tmp_path / "run"), "--tensorboard", logdir,
                 "--steps", "1"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: --tensorboard {logdir}: {cause}") and "give a folder you can write" in error
    assert not (tmp_path / "run").exists()   # no run folder, no lock file


def test_a_resume_refuses_a_bad_folder_before_touching_the_run(tmp_path, capsys):
    (tmp_path / "plays.txt").write_text(TEXT)
    (tmp_path / "afile").write_text("")
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "plays.txt"), "--out", str(run), *TINY_TB, "--steps", "2"]) == 0
    before = sorted(p.name for p in run.iterdir())
    log = (run / "log.jsonl").read_text()
    capsys.readouterr()
    assert main(["train", str(tmp_path / "plays.txt"), "--resume", str(run), "--steps", "4", "--tensorboard",
                 str(tmp_path / "afile" / "sub")]) == 2
    assert "error: --tensorboard " in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before and (run / "log.jsonl").read_text() == log

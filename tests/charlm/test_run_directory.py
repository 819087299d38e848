"""The run folder under stress: one writer, crashes (kill -9), resume rules, the divergence guard, bad options
and operating-system errors; no command prints a traceback. Tiny models (hidden 8, seq-len 8) keep it fast."""
import contextlib
import json
import math
import os
import re
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from chainrule.charlm.checkpoint import load_checkpoint, run_files
from chainrule.charlm.cli import main
from chainrule.charlm.resume import restore

TEXT = ("ROMEO: But soft, what light through yonder window breaks?\n"
        "JULIET: O Romeo, Romeo, wherefore art thou Romeo?\n") * 12
TINY = ["--model", "gru", "--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "2",
        "--sample-every", "0", "--quiet"]
ENV = {**os.environ, "PYTHONHASHSEED": "0", "CHAINRULE_KERNELS": "numpy"}  # no JIT start-up in subprocesses


def cli(*args, check=True, **kwargs):
    result = subprocess.run([sys.executable, "-m", "chainrule", *map(str, args)], capture_output=True, text=True,
                            env=ENV, timeout=120, **kwargs)
    assert "Traceback" not in result.stderr, result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"chainrule {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}")
    return result


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "chainrule", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def run_in_process(capsys, *args):
    """main() in this process: (exit status, stderr)."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:   # argparse's errors
        status = exit_.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return status, captured.err


@pytest.fixture(autouse=True, scope="module")
def numpy_kernels():
    """In this process too, the NumPy kernels: no JIT compilation for these tiny models."""
    from chainrule._kernels import backend
    previous = backend.backend_name()
    backend.use_backend("numpy")
    yield
    backend.use_backend(previous)


@pytest.fixture
def chainrule(capsys):
    """Run the command line in this process: returns (status, stderr); check=True asserts it succeeded."""
    def run(*args, check=True):
        status, err = run_in_process(capsys, *args)
        if check:
            assert status == 0, err
        return status, err
    return run


def log_records(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def evaluation_steps(run):
    return [r["step"] for r in log_records(run) if "step" in r]


def wait_for(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("texts") / "plays.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run20(text, tmp_path_factory):
    """A finished 20-step run (evaluations every 5 steps), copied by the tests that change it."""
    out = tmp_path_factory.mktemp("runs") / "run20"
    assert main([str(a) for a in ("train", text, *TINY, "--steps", 20, "--eval-every", 5, "--out", out)]) == 0
    return out


def copy_run(run, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(run, target)
    return target


# -- one writer ----------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_while_the_first_holds_the_run(text, tmp_path, chainrule):
    out = tmp_path / "run"
    first = start("train", text, *TINY, "--steps", 10**6, "--eval-every", 20, "--out", out)
    try:
        wait_for(lambda: (out / "latest.json").exists())
        for status, err in (chainrule("train", text, "--resume", out, "--steps", 10**7, check=False),
                       chainrule("train", text, *TINY, "--steps", 5, "--out", out, check=False)):
            assert status == 2
            assert f"being written by another training (pid {first.pid} on " in err
        assert first.poll() is None
    finally:
        first.kill()
        first.communicate()
    # the kernel dropped the lock with the process: the run continues
    step = load_checkpoint(out / "latest.json")[1]["step"]
    chainrule("train", text, "--resume", out, "--steps", step + 3)
    assert load_checkpoint(out / "latest.json")[1]["step"] == step + 3


def test_a_fresh_run_refuses_a_folder_holding_any_run_file(run20, text, tmp_path, chainrule):
    for kept in (["best.json"], ["log.jsonl"], ["loss.png"]):
        folder = tmp_path / kept[0].replace(".", "_")
        folder.mkdir()
        for name in kept:
            shutil.copy(run20 / name, folder / name)
        before = sorted(p.name for p in folder.iterdir())
        status, err = chainrule("train", text, *TINY, "--steps", 2, "--out", folder, check=False)
        assert status == 2 and "already holds a training run" in err, err
        assert sorted(p.name for p in folder.iterdir() if p.name != ".chainrule.lock") == before
    # temporary files and unnamed weights a crash left are removed, and then the folder is free
    folder = tmp_path / "leftovers"
    folder.mkdir()
    (folder / ".latest.json.k3j2_x9a.tmp").write_text("{")
    (folder / "latest-00000005.safetensors").write_bytes(b"partial")
    status, err = chainrule("train", text, *TINY, "--steps", 2, "--out", folder)
    assert "removed 2 file(s) left by an interrupted run" in err
    assert not (folder / ".latest.json.k3j2_x9a.tmp").exists() and not (folder / "latest-00000005.safetensors").exists()


def test_kill_9_at_random_moments_then_resume(text, tmp_path, chainrule):
    """Whenever training dies, the next start loads cleanly, leaves no leftovers, logs each step once, and
    the resumed run is bit-identical to one that was never interrupted."""
    args = [*TINY, "--steps", 40, "--eval-every", 1]
    straight = tmp_path / "straight"
    chainrule("train", text, *args, "--out", straight)
    out, rng = tmp_path / "killed", random.Random(16)
    kills = 0
    for _ in range(4):
        fresh = not (out / "latest.json").exists()
        process = start("train", *([text, *args, "--out", out] if fresh else [text, "--resume", out, *args]))
        wait_for(lambda: process.poll() is not None or (out / "log.jsonl").exists() or (out / "latest.json").exists())
        time.sleep(rng.uniform(0.0, 0.25))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate()
        if process.returncode == 0:
            break
    assert kills >= 2
    if (out / "latest.json").exists():
        status, err = chainrule("train", text, "--resume", out, *args)
    else:
        status, err = chainrule("train", text, *args, "--out", out)
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.endswith(".tmp")], names
    weights = {n for n in names if n.endswith(".safetensors")}
    named = {json.loads((out / f"{c}.json").read_text())["weights_file"] for c in ("latest", "best")}
    assert weights == named, err
    steps = evaluation_steps(out)
    assert steps == list(range(1, 41)), steps
    a, _ = load_checkpoint(straight / "latest.json")
    b, meta = load_checkpoint(out / "latest.json")
    assert meta["step"] == 40 and sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# -- resume semantics -----------------------------------------------------------------------------------
def test_resume_refuses_options_that_change_the_model_or_the_data_listing_each(run20, text, tmp_path, chainrule):
    run = copy_run(run20, tmp_path)
    log = (run / "log.jsonl").read_text()
    status, err = chainrule("train", text, "--resume", run, "--steps", 30, "--hidden", 16, "--seq-len", 4,
                            "--model", "lstm", "--batch-size", 2, check=False)
    assert status == 2
    for difference in ("--hidden 16 (the run has 8)", "--seq-len 4 (the run has 8)", "--model lstm (the run has gru)"):
        assert difference in err
    assert "--batch-size" not in err   # the run's own value is no difference
    assert (run / "log.jsonl").read_text() == log and load_checkpoint(run / "latest.json")[1]["step"] == 20


def test_resume_applies_options_that_may_change_with_a_notice_and_a_log_record(run20, text, tmp_path, chainrule):
    run = copy_run(run20, tmp_path)
    status, err = chainrule("train", text, "--resume", run, "--steps", 30, "--lr", 5e-4, "--grad-clip", 1,
                            "--eval-every", 2, "--dropout", 0.3)
    for notice in ("--lr: 0.002 -> 0.0005", "--grad-clip: 5.0 -> 1.0", "--eval-every: 5 -> 2", "--dropout: 0.25 -> 0.3",
                   "--steps: 20 -> 30"):
        assert notice in err
    records = log_records(run)
    resume = [r for r in records if "resumed_at_step" in r]
    assert resume == [{"resumed_at_step": 20, "checkpoint": "latest.json",
                       "changed": {"lr": [0.002, 0.0005], "grad_clip": [5.0, 1.0], "dropout": [0.25, 0.3],
                                   "eval_every": [5, 2], "steps": [20, 30]}}]
    assert [r["step"] for r in records if "step" in r] == [5, 10, 15, 20, 22, 24, 26, 28, 30]
    assert all(r["lr"] == 5e-4 for r in records if r.get("step", 0) > 20)
    _, meta = load_checkpoint(run / "latest.json")
    assert meta["train"]["lr"] == 5e-4 and meta["train"]["grad_clip"] == 1.0 and meta["model"]["dropout"] == 0.3


def test_a_resume_from_best_drops_the_resume_record_of_the_abandoned_branch(run20, text, tmp_path, chainrule):
    # a resume with a rate that diverges makes no better checkpoint, so best.json stays at step 20, the step of
    # that resume's record; resuming from best.json (what the stop message advises) abandons the branch, its
    # record included
    run = copy_run(run20, tmp_path)
    status, _ = chainrule("train", text, "--resume", run, "--lr", 2, "--steps", 50, check=False)
    assert status == 1 and load_checkpoint(run / "best.json")[1]["progress"]["step"] == 20
    chainrule("train", text, "--resume", run / "best.json", "--steps", 45)
    resumes = [r for r in log_records(run) if "resumed_at_step" in r]
    assert len(resumes) == 1 and resumes[0]["checkpoint"] == "best.json"
    assert all(r.get("changed", {}).get("lr") is None for r in resumes)   # the lr 0.5 record is gone


def test_a_budget_option_dropped_on_resume_is_shown_as_no_limit(run20, text, tmp_path, chainrule):
    run = copy_run(run20, tmp_path)
    chainrule("train", text, "--resume", run, "--steps", 25, "--minutes", 0.2)
    status, err = chainrule("train", text, "--resume", run, "--steps", 30)
    assert "--minutes: 0.2 -> no limit" in err and "None" not in err


def test_steps_at_or_below_the_current_step_are_refused_with_a_reason(run20, text, tmp_path, chainrule):
    run = copy_run(run20, tmp_path)
    for extra in (["--steps", 20], ["--steps", 7], []):   # no budget given: the run's own --steps 20
        status, err = chainrule("train", text, "--resume", run, *extra, check=False)
        assert status == 2 and "is at step 20" in err and "nothing to train" in err
    assert evaluation_steps(run) == [5, 10, 15, 20]


def test_a_cosine_schedule_resumed_with_more_steps_jumps_to_the_longer_schedule_then_goes_down(text, tmp_path,
                                                                                             chainrule):
    """Recomputed for the new total and continued at the current step (as the README says): the rate jumps from
    the old schedule's (0 at its end) to the longer schedule's at that step, then decreases to 0 at the new end."""
    run = tmp_path / "cosine"
    chainrule("train", text, *TINY, "--schedule", "cosine", "--lr", 0.01, "--steps", 12, "--eval-every", 1,
              "--out", run)
    chainrule("train", text, "--resume", run, "--steps", 24)
    lrs = {r["step"]: r["lr"] for r in log_records(run) if "step" in r}
    for step in range(1, 13):
        assert lrs[step] == pytest.approx(0.01 * (1 + math.cos(math.pi * step / 12)) / 2, abs=1e-12)
    for step in range(13, 25):
        assert lrs[step] == pytest.approx(0.01 * (1 + math.cos(math.pi * step / 24)) / 2, abs=1e-12)
    after = [lrs[s] for s in range(13, 25)]
    assert lrs[12] == pytest.approx(0, abs=1e-15) and lrs[13] > 0.004   # the jump: 0 -> about half of --lr
    assert all(a > b for a, b in zip(after, after[1:])) and after[-1] == pytest.approx(0, abs=1e-15)


def test_resume_from_best_json_continues_from_that_checkpoint(text, tmp_path, chainrule):
    run, straight = tmp_path / "run", tmp_path / "straight"
    chainrule("train", text, *TINY, "--steps", 10, "--eval-every", 5, "--out", run)
    best_weights = json.loads((run / "best.json").read_text())["weights_file"]
    kept = {name: (run / name).read_bytes() for name in ("best.json", best_weights)}
    chainrule("train", text, "--resume", run, "--steps", 20)
    for path in run.glob("best-*.safetensors"):
        path.unlink()
    for name, payload in kept.items():
        (run / name).write_bytes(payload)   # best at step 10, latest at step 20
    status, err = chainrule("train", text, "--resume", run / "best.json", "--steps", 15)
    assert "at step 10 from best.json" in err
    assert evaluation_steps(run) == [5, 10, 15]
    chainrule("train", text, *TINY, "--steps", 15, "--eval-every", 5, "--out", straight)
    a, _ = load_checkpoint(straight / "latest.json")
    b, meta = load_checkpoint(run / "latest.json")
    assert meta["step"] == 15
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_resume_with_another_out_is_refused(run20, text, tmp_path, chainrule):
    status, err = chainrule("train", text, "--resume", run20, "--out", tmp_path / "elsewhere", "--steps", 30,
                            check=False)
    assert status == 2 and "continues the run in its own folder" in err
    assert not (tmp_path / "elsewhere").exists()


# -- a truthful guard -----------------------------------------------------------------------------------
def test_divergence_before_any_checkpoint_says_there_is_none(text, tmp_path, chainrule):
    out = tmp_path / "run"
    status, err = chainrule("train", text, *TINY, "--optimizer", "sgd", "--lr", 1e6, "--grad-clip", 0, "--steps", 20,
                 "--out", out, check=False)
    assert status == 1 and "No checkpoint has been written" in err
    assert "kept" not in err and run_files(out) == []
    chainrule("train", text, *TINY, "--steps", 2, "--out", out)   # the advice: start again, in the same folder


def _follow_advice(err, text):
    """The failing step and the resume command the stop message advises: (step, [--resume target, --lr, X])."""
    failed_at = int(re.search(r" at step ([0-9]+); stopping", err)[1])
    command = err.split(f"chainrule train {text} --resume ")[1].split(" (and/or")[0].rstrip(".").split()
    return failed_at, command


@pytest.mark.parametrize("model, extra", [("rnn", ["--hidden", 16, "--batch-size", 4, "--seq-len", 16]),
                                          ("gru", [])])
def test_only_finite_undiverged_weights_are_kept_and_the_advice_can_be_followed(text, tmp_path, chainrule, model,
                                                                                 extra):
    out = tmp_path / "run"
    status, err = chainrule("train", text, *TINY, "--model", model, *extra, "--optimizer", "sgd", "--lr", 10,
                            "--grad-clip", 0, "--eval-every", 1, "--steps", 50, "--out", out, check=False)
    assert status == 1 and "training stopped" in err
    threshold = 3 * math.log(len(set(TEXT))) + 1
    for name in ("latest", "best"):
        arrays, meta = load_checkpoint(out / f"{name}.json")
        assert f"{out / name}.json (step {meta['step']})" in err
        assert all(np.isfinite(v).all() for v in arrays.values())
        assert all(r["val_loss"] < threshold for r in meta["history"])
    failed_at, command = _follow_advice(err, text)
    # the advice, exactly as printed (the learning rate alone, no --grad-clip): it gets past the failing step
    assert command[1] == "--lr" and float(command[2]) == 1.0, err
    status, err = chainrule("train", text, "--resume", *command, "--steps", failed_at + 10)
    assert "--lr: 10.0 -> 1.0" in err
    assert load_checkpoint(out / "latest.json")[1]["step"] == failed_at + 10


def test_the_advice_never_names_the_checkpoint_whose_weights_diverged(tmp_path):
    """A training loss above the threshold is the loss of the weights before the update: when those are the
    last checkpoint's, no learning rate can continue from it, so the advice names another or says start again."""
    from chainrule.charlm.model import Architecture
    from chainrule.charlm.training import TrainConfig, Trainer

    config = TrainConfig(architecture=Architecture("gru", hidden=8, layers=1), seq_len=8, batch_size=2, steps=10,
                         val_frac=0.1)
    trainer = Trainer(config, tmp_path / "run", quiet=True, corpus=(TEXT, "plays"))
    trainer.progress.step = 3
    trainer.save("latest")
    during = str(trainer._stop("the training loss became 99", during_step=True))
    assert "--resume" not in during and "Start again" in during, during
    after = str(trainer._stop("the validation loss of the weights became 99"))   # checkpoint 3 is not those
    assert f"--resume {tmp_path / 'run'} --lr" in after, after
    trainer.progress.step = 1
    trainer.save("best")
    trainer.progress.step = 3
    during = str(trainer._stop("the training loss became 99", during_step=True))
    assert f"--resume {tmp_path / 'run' / 'best.json'} --lr" in during and "(step 1)" in during, during


# -- options and the operating system ------------------------------------------------------------------
BAD_OPTIONS = [
    ("train", "--minutes", "nan"), ("train", "--epochs", "inf"), ("train", "--sample-every", "-1"),
    ("train", "--lr-decay", "-1"), ("train", "--lr-decay", "1.5"), ("train", "--dropout", "1"),
    ("train", "--dropout", "nan"), ("train", "--val-frac", "1"), ("train", "--val-frac", "-0.1"),
    ("train", "--lr", "0"), ("train", "--lr", "inf"), ("train", "--lr", "nan"), ("train", "--grad-clip", "-1"),
    ("train", "--hidden", "0"), ("train", "--hidden", "1e9"), ("train", "--embedding", "-1"),
    ("train", "--layers", "0"), ("train", "--seq-len", "0"), ("train", "--batch-size", "-2"),
    ("train", "--steps", "0"), ("train", "--epochs", "0"), ("train", "--minutes", "-1"),
    ("train", "--eval-every", "0"), ("train", "--seed", "-1"), ("train", "--lr-decay-every", "0"),
    ("sample", "--temperature", "nan"), ("sample", "--temperature", "0"), ("sample", "--top-k", "0"),
    ("sample", "--length", "-1"), ("sample", "--seed", "-5"), ("eval", "--batch-size", "0"),
    ("diagnose", "--sigma", "nan"), ("diagnose", "--input-scale", "inf"), ("diagnose", "--forget-bias", "nan"),
    ("diagnose", "--seq-len", "0"), ("diagnose", "--batch", "0"), ("diagnose", "--hidden", "0"),
    ("diagnose", "--input-size", "0"), ("diagnose", "--seed", "-1"),
]


@pytest.mark.parametrize("command, option, value", BAD_OPTIONS)
def test_every_numeric_option_is_checked_and_named(capsys, tmp_path, command, option, value):
    positional = {"train": [], "sample": ["RUN"], "eval": ["RUN", "TEXT"], "diagnose": []}[command]
    extra = ["--out", tmp_path / "x"] if command == "train" else []
    status, err = run_in_process(capsys, command, *positional, f"{option}={value}", *extra)
    assert status == 2 and f"argument {option}" in err and repr(value) in err, err
    assert not (tmp_path / "x").exists()


def test_texts_from_pipes_and_standard_input_and_folders(text, tmp_path, capsys, monkeypatch):
    import io
    with open(text, "rb") as stdin:   # a pipe or device, not a regular file
        piped = cli("train", "/dev/stdin", *TINY, "--steps", 2, "--out", tmp_path / "a", stdin=stdin)
    assert f"{len(set(TEXT))} characters" in piped.stderr
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.read_bytes())))
    status, err = run_in_process(capsys, "train", "-", *TINY, "--steps", 2, "--out", tmp_path / "b")
    assert status == 0 and "on standard input" in err
    a, _ = load_checkpoint(tmp_path / "a" / "latest.json")
    b, _ = load_checkpoint(tmp_path / "b" / "latest.json")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.read_bytes())))
    assert run_in_process(capsys, "eval", tmp_path / "b", "-")[0] == 0
    status, err = run_in_process(capsys, "train", tmp_path, "--out", tmp_path / "c")
    assert status == 2 and "is a folder; give a text file" in err and "not found" not in err


def test_a_byte_order_mark_is_not_a_character(tmp_path):
    from chainrule.charlm.text import read_text
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfabc\xef\xbb\xbf")
    assert read_text(path) == "abc\ufeff"   # only the mark at the start is the encoding's


def test_unreadable_files_name_the_file_and_the_cause(run20, text, tmp_path, capsys, monkeypatch):
    import chainrule.charlm.corpus
    import chainrule.charlm.text
    real_open = open

    def refuse(path, *args, **kwargs):
        if str(path) == str(text):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(chainrule.charlm.text, "open", refuse, raising=False)
    monkeypatch.setattr(chainrule.charlm.corpus, "open", refuse, raising=False)   # a file is read there
    status, err = run_in_process(capsys, "train", text, *TINY, "--steps", 2, "--out", tmp_path / "a")
    assert status == 2 and err.strip() == f"error: {text}: Permission denied"
    monkeypatch.undo()
    import chainrule.charlm.checkpoint

    def refuse_weights(path, *args, **kwargs):
        if str(path).endswith(".safetensors"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    real_read_bytes = Path.read_bytes

    def refuse_read_bytes(self):
        if self.suffix == ".safetensors":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    real_os_open = os.open

    def refuse_os(path, *args, **kwargs):
        if str(path).endswith(".safetensors"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(chainrule.charlm.checkpoint, "open", refuse_weights, raising=False)   # however checkpoint.py
    monkeypatch.setattr(Path, "read_bytes", refuse_read_bytes)                        # reads the weights
    monkeypatch.setattr(os, "open", refuse_os)
    status, err = run_in_process(capsys, "sample", run20, "--length", 5)
    assert status == 2 and ".safetensors" in err and "Permission denied" in err


def test_out_naming_a_file_or_an_unwritable_folder(text, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    status, err = run_in_process(capsys, "train", text, *TINY, "--steps", 2, "--out", afile)
    assert status == 2 and f"{afile} is a file, not a folder" in err
    status, err = run_in_process(capsys, "train", text, *TINY, "--steps", 2, "--out", "/sys/chainrule-run")
    assert status == 2 and "/sys/chainrule-run" in err and ("not permitted" in err or "denied" in err)
    assert err.startswith("error: --out /sys/chainrule-run: ") and "give a folder you can write" in err
    status, err = run_in_process(capsys, "train", text, *TINY, "--steps", 2, "--out", afile / "sub")
    assert status == 2 and err.strip() == (f"error: --out {afile / 'sub'}: Not a directory; give a folder you can "
                                           "write (made if missing)")


def test_a_full_disk_stops_training_and_says_the_previous_checkpoint_is_intact(text, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_fsync = os.fsync

    def fsync(descriptor):
        if (out / "log.jsonl").exists():   # the first evaluation went through; the disk is full from now on
            raise OSError(28, "No space left on device")
        return real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    status, err = run_in_process(capsys, "train", text, *TINY, "--steps", 20, "--eval-every", 5, "--out", out)
    monkeypatch.undo()
    assert status == 1 and "could not write the latest checkpoint" in err and "the disk is full" in err
    assert f"intact: {out / 'latest.json'} (step 5)" in err
    assert load_checkpoint(out / "latest.json")[1]["step"] == 5
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_closed_pipe_ends_sample_and_info_quietly(run20):
    for args in (["sample", run20, "--length", 100000, "--seed", 1], ["info", run20]):
        process = subprocess.Popen([sys.executable, "-m", "chainrule", *map(str, args)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=ENV)
        if args[0] == "sample":
            process.stdout.read(10)
        process.stdout.close()   # what `| head` does once it has its lines
        stderr = process.stderr.read().decode()
        process.wait(timeout=60)
        assert stderr == "" and process.returncode in (0, 141), (process.returncode, stderr)


def test_ctrl_c_says_only_what_is_true(run20, text, tmp_path):
    process = start("sample", run20, "--length", 10**6, "--seed", 1)
    process.stdout.read(10)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "checkpoint" not in stderr and "Traceback" not in stderr
    out = tmp_path / "run"
    process = start("train", text, *TINY, "--steps", 10**6, "--eval-every", 50, "--out", out)
    wait_for(lambda: (out / "latest.json").exists())
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    step = load_checkpoint(out / "latest.json")[1]["step"]
    assert process.returncode == 130 and "Traceback" not in stderr
    assert f"{out / 'latest.json'} (step {step})" in stderr and f"chainrule train {text} --resume {out}" in stderr


def test_debug_lets_the_exception_through_on_purpose(tmp_path, capsys):
    from chainrule.charlm.checkpoint import CheckpointError
    assert run_in_process(capsys, "info", tmp_path / "missing")[0] == 2
    with pytest.raises(CheckpointError):
        main(["info", str(tmp_path / "missing"), "--debug"])
    with pytest.raises(CheckpointError):
        main(["--debug", "info", str(tmp_path / "missing")])


def test_the_library_configuration_refuses_what_the_command_line_refuses():
    from chainrule.charlm.training import TrainConfig
    for bad in ({"lr": float("nan")}, {"minutes": float("nan")}, {"epochs": float("inf")}, {"lr_decay": -1.0},
                {"dropout": float("nan")}, {"val_frac": 1.0}, {"sample_every": -1}, {"grad_clip": float("inf")}):
        name = next(iter(bad)).replace("_", "-")
        with pytest.raises(ValueError, match=name):
            TrainConfig.from_options(bad)


def test_links_planted_in_a_run_folder_are_not_followed(run20, text, tmp_path, chainrule):
    outside = tmp_path / "outside.txt"
    outside.write_text('{"step": 1, "secret": "kept"}\n')
    run = copy_run(run20, tmp_path)
    (run / "log.jsonl").unlink()
    (run / "log.jsonl").symlink_to(outside)
    status, err = chainrule("train", text, "--resume", run, "--steps", 25, check=False)
    assert status == 2 and "log.jsonl" in err and outside.read_text() == '{"step": 1, "secret": "kept"}\n'
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".chainrule.lock").symlink_to(outside)
    status, err = chainrule("train", text, *TINY, "--steps", 2, "--out", fresh, check=False)
    assert status == 2 and ".chainrule.lock" in err and outside.read_text() == '{"step": 1, "secret": "kept"}\n'


def test_resume_never_opens_the_text_path_a_run_records(run20, text, tmp_path, chainrule):
    """A run folder is untrusted: its recorded text path is shown, never opened (a FIFO there would hang)."""
    run = copy_run(run20, tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for name in ("latest", "best"):
        meta = json.loads((run / f"{name}.json").read_text())
        meta["train"]["text"] = str(fifo)
        (run / f"{name}.json").write_text(json.dumps(meta))
    status, err = chainrule("train", "--resume", run, "--steps", 25, check=False)
    assert status == 2 and err.count("\n") == 1
    assert f"the run was trained on {str(fifo)!r}" in err and f"chainrule train TEXT_FILE --resume {run}" in err
    assert evaluation_steps(run) == [5, 10, 15, 20]
    status, err = chainrule("train", text, "--resume", run, "--steps", 25)
    assert evaluation_steps(run) == [5, 10, 15, 20, 25]


# -- the lock holds against a deleted lock file and a replaced folder -------------------------------------------
def test_deleting_the_lock_file_does_not_let_a_second_writer_in(tmp_path):
    from chainrule.charlm.training import LOCK_NAME, RunInUse, RunLock

    folder = tmp_path / "run"
    with RunLock(folder):
        (folder / LOCK_NAME).unlink()
        with pytest.raises(RunInUse, match="being written by another training"):
            RunLock(folder).acquire()


def test_a_training_whose_folder_was_replaced_stops_rather_than_write_into_the_new_run(tmp_path):
    from chainrule.charlm.model import Architecture
    from chainrule.charlm.training import RunLock, TrainConfig, Trainer, TrainingStopped

    folder = tmp_path / "run"
    lock = RunLock(folder).acquire()
    config = TrainConfig(architecture=Architecture("gru", hidden=8, layers=1), seq_len=8, batch_size=2, steps=4,
                         eval_every=2, sample_every=0)
    trainer = Trainer(config, folder, quiet=True, corpus=(TEXT, "plays"), lock=lock)
    assert lock.check() is None
    shutil.rmtree(folder)
    assert "was removed" in lock.check()
    with RunLock(folder) as second:                 # rm -rf RUN and a new run there: the new one gets the lock
        assert second.held
        with pytest.raises(TrainingStopped, match="was removed and made again"):
            trainer.save("latest")
    assert run_files(folder) == []                  # nothing of the old training was written into the new run
    lock.release()


# -- Ctrl-C before the command line's own handler, text size, standard output -----------------------------------
def test_ctrl_c_during_the_imports_is_one_line(monkeypatch, capsys):
    import chainrule.__main__ as entry
    import chainrule.charlm.cli

    def interrupted(argv=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(chainrule.charlm.cli, "main", interrupted)
    assert entry.main(["info", "RUN"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_an_endless_text_is_read_up_to_the_cap_only(run20, tmp_path, capsys, monkeypatch):
    import chainrule.charlm.text

    monkeypatch.setattr(chainrule.charlm.text, "MAX_TEXT_BYTES", 1 << 20)
    for args in (("train", "/dev/zero", *TINY, "--out", tmp_path / "a"), ("eval", run20, "/dev/zero")):
        status, err = run_in_process(capsys, *args)
        assert status == 2 and err.strip() == ("error: /dev/zero holds more than 1,048,576 bytes, the most a text "
                                               "may have (MAX_TEXT_BYTES); give a shorter text")


def test_errors_writing_standard_output_name_it(run20, capsys, monkeypatch):
    full = open("/dev/full", "w")
    try:
        monkeypatch.setattr(sys, "stdout", full)
        status, err = run_in_process(capsys, "info", run20)
        assert status == 2 and err.strip() == "error: standard output: No space left on device (the disk is full)"
        monkeypatch.setattr(sys, "stdout", None)       # started with standard output closed (>&-)
        status, err = run_in_process(capsys, "sample", run20, "--length", 10)
        assert status == 2 and err.strip() == "error: standard output: it is closed"
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            full.close()


def test_a_file_size_limit_names_the_file_it_stopped(run20, text, tmp_path):
    import resource

    run = tmp_path / "run"
    shutil.copytree(run20, run)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    result = subprocess.run([sys.executable, "-m", "chainrule", "train", str(text), "--resume", str(run), "--steps",
                             "25"], capture_output=True, text=True, env=ENV, preexec_fn=limit, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.search(rf"could not write the latest checkpoint: {re.escape(str(run))}/latest-000000(2[0-5])"
                     r"\.safetensors: File too large\. The checkpoints in .* are intact", result.stderr), result.stderr


# -- diagnose and sample output ---------------------------------------------------------------------------------
def test_diagnose_prints_the_path_it_wrote_and_keeps_its_columns_apart(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "dd"
    status, _ = run_in_process(capsys, "diagnose", "--seq-len", 5, "--hidden", 4, "--input-size", 2, "--batch", 1,
                               "--compare", "rnn,lstm", "--out", out)
    assert status == 0
    assert (tmp_path / "dd.png").exists() and not out.exists()
    from chainrule.charlm.cli import main as cli_main
    cli_main(["diagnose", "--seq-len", "5", "--hidden", "4", "--input-size", "2", "--batch", "1", "--compare",
              "rnn,lstm", "--out", str(out)])
    printed = capsys.readouterr().out
    assert f"wrote {out}.png" in printed
    header = printed.splitlines()[0]
    assert "rnn (new)  " in header and "  lstm (new, forget bias 1)" in header


def test_sample_escapes_control_characters_only_on_a_terminal():
    from chainrule.charlm.cli import _terminal_safe

    assert _terminal_safe("a\x1b[2J\x07b\n\tc") == "a\\x1b[2J\\x07b\n\tc"
    assert _terminal_safe("plain text, ümlaut\n") == "plain text, ümlaut\n"


def test_ctrl_c_while_the_package_imports_for_the_command_line_is_one_line():
    """As `python -m chainrule` starts (sys.argv[0] is '-m' while runpy imports the package), the package's own
    import installs a handler: a SIGINT then ends the process with one line and status 130."""
    code = ("import sys, os, signal; sys.argv[0] = '-m'; import chainrule; "
            "os.kill(os.getpid(), signal.SIGINT); import time; time.sleep(5); print('not interrupted')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode == 130 and result.stderr.strip() == "interrupted" and result.stdout == ""
    plain = subprocess.run([sys.executable, "-c", "import signal, chainrule; "
                            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"],
                           capture_output=True, text=True, env=ENV, timeout=60)
    assert plain.stdout.strip() == "True"   # a program importing the library keeps Python's handler


# -- text names a checkpoint cannot hold raw -----------------------------------------------------------
@pytest.mark.parametrize("name, recorded", [(b"t\x7f.txt", "t\\x7f.txt"), (b"tab\tx.txt", "tab\\tx.txt"),
                                            (b"lat\xe9.txt", "lat\\xe9.txt")])
def test_a_text_path_with_control_characters_or_non_utf8_bytes_trains_and_resumes(name, recorded, tmp_path,
                                                                                   chainrule):
    path = os.fsdecode(os.fsencode(tmp_path) + b"/" + name)
    Path(path).write_text(TEXT, encoding="utf-8")
    out = tmp_path / "run"
    chainrule("train", path, *TINY, "--steps", 4, "--eval-every", 2, "--out", out)
    _, meta = load_checkpoint(out / "latest.json")
    assert meta["step"] == 4
    assert meta["text"]["name"].endswith(recorded) and meta["train"]["text"].endswith(recorded)
    chainrule("train", path, "--steps", 6, "--resume", out, "--quiet")
    assert load_checkpoint(out / "latest.json")[1]["step"] == 6


def test_a_description_the_schema_would_refuse_stops_before_the_first_step(text, tmp_path):
    from chainrule.charlm.model import Architecture
    from chainrule.charlm.training import TrainConfig, Trainer, TrainingStopped
    trainer = Trainer(TrainConfig(text=str(text), architecture=Architecture(hidden=8), seq_len=8, batch_size=2,
                                  steps=3, eval_every=1),
                      tmp_path / "run", quiet=True)
    trainer.text_sha256 = "not a digest"   # a field the schema refuses at every write
    with pytest.raises(TrainingStopped, match="not starting.*sha256"):
        trainer.train()
    assert trainer.progress.step == 0 and not (tmp_path / "run" / "latest.json").exists()


def test_a_write_error_after_the_folder_was_replaced_does_not_list_the_other_runs_checkpoints(run20, tmp_path,
                                                                                                monkeypatch):
    """Issue 16b, 3: the run folder moved away and another run copied in its place during a checkpoint write."""
    import chainrule.charlm.training as training
    run = copy_run(run20, tmp_path, "run")
    meta = load_checkpoint(run / "latest.json")[1]
    trainer = training.Trainer(training.TrainConfig.from_options({**meta["train"], "steps": 25, "eval_every": 1}), run,
                               quiet=True, report=lambda line: None)
    restore(trainer, run / "latest.json")

    def replaced_during_write(*args, **kwargs):
        os.rename(run, tmp_path / "moved")
        shutil.copytree(run20, run)
        raise FileNotFoundError(2, "No such file or directory", str(run / ".latest.json.x.tmp"))

    monkeypatch.setattr(training, "save_checkpoint", replaced_during_write)
    with pytest.raises(training.TrainingStopped) as stopped:
        trainer.train()
    message = str(stopped.value)
    assert "removed and made again" in message and "intact" not in message, message


def test_resuming_with_another_text_does_not_advise_leaving_the_text_out(run20, tmp_path, chainrule):
    run = copy_run(run20, tmp_path)
    other = tmp_path / "other.txt"
    other.write_text(TEXT[::-1], encoding="utf-8")
    status, err = chainrule("train", other, "--resume", run, "--quiet", check=False)
    assert status == 2 and "Give the run's own text" in err and "Leave them out" not in err, err


def test_a_checkpoint_replaced_between_its_description_and_its_weights_is_read_again(run20, tmp_path, monkeypatch):
    """Issue 16b, 2: a trainer replaced latest (new weights file, old one removed) right after a reader read
    latest.json; the reader reads the description again instead of reporting the weights file missing."""
    from chainrule.charlm import checkpoint
    run = copy_run(run20, tmp_path)
    arrays, meta = load_checkpoint(run / "latest.json")
    old_weights = run / meta["weights_file"]
    original, calls = checkpoint.read_description, []

    def racing(path):
        result = original(path)
        if not calls:
            kept = {k: v for k, v in meta.items() if k not in ("format", "weights_file", "weights_sha256")}
            checkpoint.save_checkpoint(run, "latest", arrays,
                                       {**kept, "step": 21, "progress": {**meta["progress"], "step": 21}})
        calls.append(path)
        return result

    monkeypatch.setattr(checkpoint, "read_description", racing)
    _, loaded = checkpoint.load_checkpoint(run / "latest.json")
    assert loaded["step"] == 21 and not old_weights.exists() and len(calls) >= 2
    (run / loaded["weights_file"]).unlink()   # gone for good: reported after the description is read again
    with pytest.raises(checkpoint.CheckpointError, match="missing|does not exist|No such"):
        checkpoint.load_checkpoint(run / "latest.json")


def test_info_of_a_run_shows_its_latest_and_its_best_with_rounded_losses(run20, tmp_path, capsys):
    """Issue 16b, 6: best at an earlier step than latest; info shows both, losses to 4 decimals."""
    run = copy_run(run20, tmp_path)
    latest = load_checkpoint(run / "latest.json")[1]
    best = load_checkpoint(run / "best.json")[1]
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"latest: step {latest['progress']['step']}," in out
    assert f"best: step {best['progress']['step']} (best.json), best validation loss " in out
    assert f"validation {latest['history'][-1]['val_loss']:.4f}" in out
    assert re.search(r"\d\.\d{5}", out) is None, out   # no unrounded loss
    for name in ("latest.json", "best.json"):
        assert main(["info", str(run / name)]) == 0
        assert "progress: step" in capsys.readouterr().out


def test_info_says_when_a_run_has_no_validation_text(text, tmp_path, chainrule, capsys):
    out_dir = tmp_path / "run"
    chainrule("train", text, *TINY, "--steps", 2, "--eval-every", 2, "--val-frac", 0, "--out", out_dir)
    assert main(["info", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "no validation text" in out and "None" not in out, out


@pytest.mark.parametrize("val_frac, expected", [(0.9999, "training part of the text is 2 of its 20,000"),
                                                (5e-5, "leaves 1 character of the 20,000-character text")])
def test_a_val_frac_that_leaves_too_little_on_either_side_says_which_part(val_frac, expected, tmp_path, chainrule):
    """Issue 16b, 7: the part that is too short is named, with both sizes; one validation character (no
    validation at all) is refused rather than trained on silently."""
    path = tmp_path / "long.txt"
    path.write_text((TEXT * 200)[:20000], encoding="utf-8")
    status, err = chainrule("train", path, *TINY, "--steps", 2, "--val-frac", val_frac, "--out", tmp_path / "run",
                            check=False)
    assert status == 2 and expected in err and "val-frac" in err, err


def test_printed_follow_up_commands_are_shell_quoted(text, tmp_path, chainrule, monkeypatch):
    """Issue 16b, 8: a printed command is copied into a shell: spaces quoted, a leading "-" not an option."""
    import shlex
    spaced = tmp_path / "out dir ü"
    _, err = chainrule("train", text, *TINY, "--steps", 2, "--eval-every", 2, "--out", spaced)
    assert f"sample with: chainrule sample {shlex.quote(str(spaced))}" in err, err
    monkeypatch.chdir(tmp_path)
    _, err = chainrule("train", text, *TINY, "--steps", 2, "--eval-every", 2, "--out=-dashout")
    assert "sample with: chainrule sample ./-dashout" in err, err
    from chainrule.charlm.training import shell_word
    assert shlex.split(shell_word("-a b'c")) == ["./-a b'c"]
    assert shell_word("t\tx") == "$'t\\x09x'"


def test_a_broken_or_looping_link_as_out_is_named_as_such(text, tmp_path, chainrule):
    """Issue 16b, 9: not "File exists"."""
    (tmp_path / "dang").symlink_to(tmp_path / "nowhere" / "x")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for name in ("dang", "loop1"):
        status, err = chainrule("train", text, *TINY, "--steps", 2, "--out", tmp_path / name, check=False)
        assert status == 2 and "broken or looping symbolic link" in err and "File exists" not in err, err


def test_diagnose_refuses_a_folder_as_out(tmp_path, chainrule):
    """Issue 16b, 10: a folder as --out used to write FOLDER.png next to it."""
    status, err = chainrule("diagnose", "--out", tmp_path, "--seq-len", 4, check=False)
    assert status == 2 and "is a folder" in err, err
    assert not Path(str(tmp_path) + ".png").exists()

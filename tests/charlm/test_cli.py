"""The command line end to end, in subprocesses, on small texts."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from chainrule.charlm.checkpoint import load_checkpoint

TEXT = ("ROMEO: But soft, what light through yonder window breaks?\n"
        "JULIET: O Romeo, Romeo, wherefore art thou Romeo?\n") * 30
UNICODE_TEXT = ("Съешь же ещё этих мягких французских булок, да выпей чаю. "
                "いろはにほへと ちりぬるを。Ελληνικά γράμματα. ") * 25
SMALL = ["--hidden", "24", "--layers", "2", "--embedding", "8", "--dropout", "0.1", "--batch-size", "4",
         "--seq-len", "16", "--eval-every", "5", "--sample-every", "0", "--quiet"]


def cli(*args, check=True):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run([sys.executable, "-m", "chainrule", *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"chainrule {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    (folder / "plays.txt").write_text(TEXT, encoding="utf-8")
    (folder / "unicode.txt").write_text(UNICODE_TEXT, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    cli("train", corpus / "plays.txt", *SMALL, "--steps", 20, "--out", out)
    return out


def test_train_writes_checkpoints_log_and_plot(trained):
    for name in ("latest.json", "best.json", "log.jsonl", "loss.png"):
        assert (trained / name).exists(), name
    records = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert all(r["val_loss"] is not None for r in records)
    weights = sorted(p.name for p in trained.glob("*.safetensors"))
    assert len(weights) == 2  # one for latest, one for best: older ones are removed
    assert (trained / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_is_exact(corpus, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    cli("train", corpus / "plays.txt", *SMALL, "--steps", 24, "--out", straight)
    cli("train", corpus / "plays.txt", *SMALL, "--steps", 12, "--out", split)
    resumed = cli("train", corpus / "plays.txt", "--resume", split, "--steps", 24, "--quiet")
    assert "resuming" in resumed.stderr
    a, meta_a = load_checkpoint(straight / "latest.json")
    b, meta_b = load_checkpoint(split / "latest.json")
    assert sorted(a) == sorted(b) and meta_a["step"] == meta_b["step"] == 24
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_sample_is_reproducible_and_streams(trained):
    first = cli("sample", trained, "--prime", "ROMEO:", "--length", 60, "--seed", 3).stdout
    second = cli("sample", trained, "--prime", "ROMEO:", "--length", 60, "--seed", 3).stdout
    assert first == second and first.startswith("ROMEO:") and len(first.rstrip("\n")) == 66
    greedy = cli("sample", trained / "latest.json", "--prime", "J", "--length", 20, "--argmax").stdout
    assert len(greedy.rstrip("\n")) == 21
    top1 = cli("sample", trained / "latest.json", "--prime", "J", "--length", 20, "--top-k", 1, "--seed", 9).stdout
    assert top1 == greedy


def test_bad_prime_names_the_characters(trained):
    result = cli("sample", trained, "--prime", "Zürich €", check=False)
    assert result.returncode == 2
    assert "'ü'" in result.stderr and "'€'" in result.stderr and "vocabulary" in result.stderr
    assert result.stdout == ""


def test_an_empty_prime_is_refused_rather_than_replaced_by_the_default(trained):
    result = cli("sample", trained, "--prime", "", check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("error: --prime is empty; give the text to start from, or leave --prime out for the "
                             "default prime\n")


@pytest.mark.parametrize("option,value,expected", [
    ("--top-k", "0", "argument --top-k: expected a positive integer, got '0'"),
    ("--seed", "-1", "argument --seed: expected a non-negative integer, got '-1'"),
    ("--seed", str(2 ** 64), f"argument --seed: expected a non-negative integer of at most 2**63 - 1, got '{2 ** 64}'"),
])
def test_option_errors_say_positive_integer_not_an_internal_bound(trained, option, value, expected):
    result = cli("sample", trained, option, value, check=False)
    assert result.returncode == 2 and expected in result.stderr
    assert "9007199254740992" not in result.stderr and "9223372036854775807" not in result.stderr


def test_eval_reports_nats_bits_perplexity(trained, corpus):
    out = cli("eval", trained, corpus / "plays.txt").stdout
    values = dict(line.split(": ") for line in out.strip().splitlines())
    nats = float(values["loss"].split()[0])
    assert float(values["bits per character"]) == pytest.approx(nats / np.log(2), abs=1e-3)
    assert float(values["perplexity"]) == pytest.approx(np.exp(nats), rel=1e-3)
    assert nats < np.log(len(set(TEXT)))


def test_info_summarises(trained):
    out = cli("info", trained).stdout
    assert "lstm 2x24" in out and "embedding 8" in out and "best validation loss" in out


def test_corrupted_truncated_and_mismatched_checkpoints_fail_clearly(trained, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    meta = json.loads((broken / "best.json").read_text())
    weights = broken / meta["weights_file"]
    weights.write_bytes(weights.read_bytes()[:100])
    result = cli("sample", broken, check=False)
    assert result.returncode == 2 and "truncated or corrupted" in result.stderr and "Traceback" not in result.stderr
    (broken / "best.json").write_text("{not json")
    result = cli("sample", broken, check=False)
    assert result.returncode == 2 and "not a readable checkpoint" in result.stderr
    (broken / "best.json").unlink()
    meta = json.loads((broken / "latest.json").read_text())
    meta["model"]["hidden"] = meta["train"]["hidden"] = 25
    (broken / "latest.json").write_text(json.dumps(meta))
    result = cli("sample", broken, check=False)
    assert result.returncode == 2 and "do not fit" in result.stderr and "Traceback" not in result.stderr
    result = cli("sample", tmp_path / "nowhere", check=False)
    assert result.returncode == 2 and "not found" in result.stderr


def test_existing_run_is_not_overwritten(trained, corpus):
    before = (trained / "latest.json").read_text()
    result = cli("train", corpus / "plays.txt", "--out", trained, "--steps", 1, check=False)
    assert result.returncode == 2 and "--resume" in result.stderr
    assert (trained / "latest.json").read_text() == before


def test_resume_refuses_a_different_text(trained, corpus):
    result = cli("train", corpus / "unicode.txt", "--resume", trained, "--steps", 30, check=False)
    assert result.returncode == 2 and "same text" in result.stderr


def test_unicode_text_trains_and_samples(corpus, tmp_path):
    out = tmp_path / "unicode"
    cli("train", corpus / "unicode.txt", *SMALL, "--steps", 10, "--out", out, "--model", "gru")
    _, meta = load_checkpoint(out / "latest.json")
    assert "ё" in meta["model"]["vocabulary"] and "い" in meta["model"]["vocabulary"]
    text = cli("sample", out, "--prime", "Съешь", "--length", 30, "--seed", 1).stdout
    assert text.startswith("Съешь") and len(text.rstrip("\n")) == 35


def test_exploding_loss_stops_and_writes_no_diverged_checkpoint(corpus, tmp_path):
    out = tmp_path / "explode"
    result = cli("train", corpus / "plays.txt", "--hidden", 16, "--layers", 1, "--batch-size", 4, "--seq-len", 16,
                 "--optimizer", "sgd", "--lr", "1e4", "--grad-clip", 0, "--eval-every", 1, "--sample-every", 0,
                 "--steps", 50, "--model", "rnn", "--quiet", "--out", out, check=False)
    # the first evaluation already finds the weights diverged: nothing is written, and the message says so
    assert result.returncode == 1 and "training stopped" in result.stderr
    assert "No checkpoint has been written" in result.stderr and not (out / "latest.json").exists()


def test_bad_arguments_are_reported(corpus, tmp_path):
    result = cli("train", tmp_path / "missing.txt", "--out", tmp_path / "x", check=False)
    assert result.returncode == 2 and "not found" in result.stderr
    result = cli("train", corpus / "plays.txt", "--schedule", "cosine", "--out", tmp_path / "y", check=False)
    assert result.returncode == 2 and "cosine" in result.stderr
    result = cli("train", corpus / "plays.txt", "--batch-size", 500, "--seq-len", 64, "--out", tmp_path / "z",
                 check=False)
    assert result.returncode == 2 and "too short" in result.stderr


def test_checkpoint_loads_into_torch_and_predicts_the_same(trained):
    torch = pytest.importorskip("torch", reason="PyTorch is a test-only oracle")
    from chainrule.charlm import load_model
    from chainrule.torch_export import to_torch

    model, vocabulary, _ = load_model(trained)
    embedding, lstm, head = to_torch(trained)
    ids = vocabulary.encode("ROMEO: But soft")[None, :]
    ours, _ = model(ids)
    theirs = head(lstm(embedding(torch.tensor(ids)))[0])
    np.testing.assert_allclose(torch.softmax(theirs, -1).detach().numpy(),
                               np.exp(ours.log_softmax(-1).data), atol=1e-5)


@pytest.mark.skipif(not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc",
                    reason="the allocator setting is glibc's")
def test_cli_keeps_freed_arrays_in_the_heap():
    """After _reuse_freed_memory an 8 MiB array comes from the heap, not from a fresh mapping (glibc mallinfo2)."""
    code = """
import ctypes, numpy as np
from chainrule.charlm.cli import _reuse_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
def mapped_by(allocate):
    before = libc.mallinfo2().hblkhd
    array = allocate()
    return libc.mallinfo2().hblkhd - before
default = mapped_by(lambda: np.ones(2 << 20, np.float32))
assert _reuse_freed_memory()
tuned = mapped_by(lambda: np.ones(2 << 20, np.float32))
print(default >= 8 << 20, tuned == 0)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("where,problem", [("missing/flow.png", "the folder {tmp}/missing does not exist"),
                                           ("afile/flow.png", "{tmp}/afile is not a folder"),
                                           (".", "is a folder")])
def test_diagnose_checks_its_out_before_computing_anything(tmp_path, where, problem):
    (tmp_path / "afile").write_text("")
    out = tmp_path / where
    result = cli("diagnose", "--compare", "rnn", "--seq-len", 5, "--out", out, check=False)
    assert result.returncode == 2 and result.stdout == ""   # no table printed before the refusal
    assert result.stderr == (f"error: --out {out}: {problem.format(tmp=tmp_path)}; give a file path in a folder "
                             "you can write\n")

"""A run folder is untrusted input: containment of the files a checkpoint names, validation before use, the
housekeeping helpers the trainer uses (run_files, remove_leftovers), and a clean error for every broken
description."""
import builtins
import contextlib
import copy
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainrule.charlm import checkpoint_schema as schema
from chainrule.charlm import CELLS, CharModel, ModelConfig, evaluate, load_model
from chainrule.charlm.checkpoint import (CheckpointError, all_finite, load_checkpoint, remove_leftovers, run_files,
                                  save_checkpoint)
from chainrule.charlm.cli import main
from chainrule.charlm.resume import restore
from chainrule.charlm.training import OPTIMIZERS, SCHEDULES, Progress, TrainConfig, Trainer

DATA = Path(__file__).parent / "data"
TEXT = "ROMEO: But soft, what light through yonder window breaks?\nJULIET: O Romeo, wherefore art thou?\n" * 8
TINY = dict(hidden=8, layers=1, seq_len=8, batch_size=2, eval_every=2, sample_every=0)


def _train(folder, text, steps=4, **options):
    config = TrainConfig.from_options({"text": str(text), "steps": steps, **TINY, **options})
    trainer = Trainer(config, folder, quiet=True, report=lambda line: None)
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "plays.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("runs") / "run"
    _train(folder, text, embedding=4)
    return folder


@pytest.fixture
def copy_of(run, tmp_path):
    """A fresh copy of the trained run folder, with its latest description as a dict, and a writer for it."""
    folder = tmp_path / "copy"
    shutil.copytree(run, folder)
    return folder


def _description(folder, name="latest"):
    return json.loads((folder / f"{name}.json").read_text())


def _write(folder, meta, name="latest"):
    (folder / f"{name}.json").write_text(json.dumps(meta))


def _rest(meta):
    """A description less the three fields save_checkpoint adds itself."""
    return {k: v for k, v in meta.items() if k not in ("format", "weights_file", "weights_sha256")}


@contextlib.contextmanager
def _files_opened():
    """Record every path opened through Python's open() or io.open() (what pathlib's reads call) or os.open (a
    descriptor then wrapped by os.fdopen is not recorded again)."""
    opened, real_open, real_os_open = [], builtins.open, os.open

    def recording(file, *args, **kwargs):
        if not isinstance(file, int):
            opened.append(os.path.realpath(file) if isinstance(file, (str, bytes, os.PathLike)) else file)
        return real_open(file, *args, **kwargs)

    def recording_os(file, *args, **kwargs):
        opened.append(os.path.realpath(file))
        return real_os_open(file, *args, **kwargs)

    builtins.open = io.open = recording
    os.open = recording_os
    try:
        yield opened
    finally:
        builtins.open = io.open = real_open
        os.open = real_os_open


def _cli(*args):
    """chainrule in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def _touch(path, data=b"x"):
    Path(path).write_bytes(data)
    return Path(path)


def test_run_files_lists_only_chainrule_names(tmp_path):
    ours = ["latest.json", "best.json", "latest-00000012.safetensors", "best-00000010.safetensors", "log.jsonl",
            "loss.png", ".latest.json.ab12_x9q.tmp", ".best-00000010.safetensors.k3j2hh1a.tmp"]
    theirs = ["notes.txt", "data.json", "latest.json.bak", "latest-12.safetensors", "my-run-00000001.safetensors",
              ".latest.json.tmp", "model.safetensors", "model_v2-20240101.safetensors", "other.json",
              ".other.json.abcd.tmp", ".notes.txt.abcd.tmp"]
    for name in ours + theirs:
        _touch(tmp_path / name)
    (tmp_path / "sub").mkdir()
    _touch(tmp_path / "sub" / "latest.json")
    os.symlink("/nonexistent-target", tmp_path / "best-00000001.safetensors")
    assert run_files(tmp_path) == sorted(tmp_path / n for n in ours + ["best-00000001.safetensors"])
    assert run_files(tmp_path / "missing") == []
    assert run_files(tmp_path / "notes.txt") == []




def test_remove_leftovers_removes_only_crash_leftovers(copy_of, tmp_path):
    run = copy_of
    outside = tmp_path / "outside"
    outside.mkdir()
    target = _touch(outside / "latest-00000003.safetensors", b"precious")
    named = {_description(run, n)["weights_file"] for n in ("latest", "best")}
    stale = _touch(run / "latest-00000001.safetensors")       # superseded, not removed before a crash
    orphan = _touch(run / "best-00000009.safetensors")        # written, and then the crash came
    temporary = _touch(run / ".latest.json.x1y2z3w4.tmp")
    temporary_weights = _touch(run / ".latest-00000006.safetensors.q9r8s7t6.tmp")
    keep = [_touch(run / "notes.txt"), run / "log.jsonl", run / "loss.png",
            _touch(run / "other-00000001.safetensors"), _touch(run / "model-20240101.safetensors"),
            _touch(run / ".notes.txt.abcd1234.tmp")]
    os.symlink(target, run / "best-00000003.safetensors")     # a link out: neither followed nor removed
    os.symlink(target, run / ".best.json.aaaa.tmp")
    (run / "sub").mkdir()
    nested = _touch(run / "sub" / "latest-00000001.safetensors")
    removed = remove_leftovers(run)
    assert removed == sorted([stale, orphan, temporary, temporary_weights])
    assert all((run / name).is_file() for name in named)
    assert all(p.exists() for p in keep) and nested.exists()
    assert target.read_bytes() == b"precious"
    assert (run / "best-00000003.safetensors").is_symlink() and (run / ".best.json.aaaa.tmp").is_symlink()
    load_checkpoint(run / "latest.json")
    load_checkpoint(run / "best.json")
    assert remove_leftovers(run) == []
    assert remove_leftovers(tmp_path / "missing") == []


def test_remove_leftovers_keeps_weights_a_description_may_name(tmp_path):
    _touch(tmp_path / "best.json", b"{not json")
    weights = _touch(tmp_path / "best-00000001.safetensors")
    os.symlink("/nonexistent", tmp_path / "latest.json")
    linked = _touch(tmp_path / "latest-00000001.safetensors")
    assert remove_leftovers(tmp_path) == [] and weights.exists() and linked.exists()


def test_a_checkpoint_with_non_finite_weights_is_not_written(copy_of):
    assert all_finite({"w": np.ones(3), "i": np.arange(3)}) and not all_finite({"w": np.array([0.0, np.nan])})
    arrays, meta = load_checkpoint(copy_of / "latest.json")
    before = {p.name: p.read_bytes() for p in copy_of.iterdir()}
    arrays["model.head.bias"] = arrays["model.head.bias"].copy()
    arrays["model.head.bias"][0] = np.inf
    with pytest.raises(CheckpointError, match="model.head.bias hold NaN or infinite"):
        save_checkpoint(copy_of, "latest", arrays, _rest(meta))
    assert {p.name: p.read_bytes() for p in copy_of.iterdir()} == before


# -- what today's code writes loads -------------------------------------------------------------------------
def test_a_checkpoint_written_before_the_schema_loads_and_resumes(tmp_path):
    """tests/data/run-v1 was written by the code before this schema existed (an LSTM with an embedding,
    Adam, a cosine schedule, carried state)."""
    arrays, meta = load_checkpoint(DATA / "run-v1")
    assert meta == json.loads((DATA / "run-v1" / "latest.json").read_text())
    model, vocabulary, _ = load_model(DATA / "run-v1")
    assert model.num_parameters() == meta["parameters"]
    config = TrainConfig.from_options({**meta["train"], "text": str(DATA / "run-v1-text.txt")})
    trainer = Trainer(config, tmp_path / "resumed", quiet=True, report=lambda line: None)
    restore(trainer, DATA / "run-v1" / "latest.json")
    assert trainer.progress.step == 6 and trainer.state is not None
    np.testing.assert_array_equal(trainer.model.head.weight.data, arrays["model.head.weight"])


@pytest.mark.parametrize("options", [
    dict(model="lstm", optimizer="adam", schedule="cosine", embedding=4, layers=2),
    dict(model="gru", optimizer="sgd", schedule="step"),
    dict(model="rnn", optimizer="rmsprop", schedule="exponential", lr_decay=1),
    dict(model="lstm", optimizer="adagrad", schedule="constant", dropout=0.0),
])
def test_every_kind_of_run_writes_a_checkpoint_that_loads_and_resumes(tmp_path, text, options):
    first = _train(tmp_path / "run", text, steps=3, **options)
    arrays, meta = load_checkpoint(tmp_path / "run" / "latest.json")
    assert meta["train"]["optimizer"] == options["optimizer"]
    second = Trainer(first.config, tmp_path / "run", quiet=True, report=lambda line: None)
    restore(second, tmp_path / "run" / "latest.json")
    assert second.progress == first.progress
    for key, value in second._arrays().items():
        np.testing.assert_array_equal(value, arrays[key], err_msg=key)


def test_the_schema_lists_match_the_code():
    assert set(schema.CELLS) == set(CELLS) and set(schema.OPTIMIZERS) == set(OPTIMIZERS)
    assert set(schema.SCHEDULES) == set(SCHEDULES)
    assert list(schema.TrainSection.model_fields) == list(TrainConfig().options())
    assert list(schema.ModelSection.model_fields) == [f.name for f in fields(ModelConfig)]
    assert list(schema.ProgressSection.model_fields) == [f.name for f in fields(Progress) if f.name != "history"]


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("embedding,layers", [(0, 1), (5, 2), (0, 3)])
def test_parameter_shapes_are_the_models(cell, embedding, layers):
    config = ModelConfig("abcdefg", cell, 6, layers, 0.0, embedding)
    model = CharModel(config)
    expected = schema.parameter_shapes(config.to_dict())
    assert {k: v.shape for k, v in model.state_dict().items()} == expected
    assert [p.data.shape for p in model.parameters()] == list(expected.values())


# -- containment ----------------------------------------------------------------------------------------------
TEXT_FILE_PLACEHOLDER = object()  # stands for the outside file, given as eval's text: a path the user typed


def _outside(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir(exist_ok=True)
    return _touch(folder / "victim.txt", b"not yours to read")


@pytest.mark.parametrize("named", ["ABSOLUTE", "../elsewhere/victim.txt", "/etc/passwd",
                                   "sub/latest-00000004.safetensors",
                                   "latest-4.safetensors", "latest-00000004.bin", "best-00000004.safetensors",
                                   "latest-00000005.safetensors", "./latest-00000004.safetensors",
                                   "latest-00000004.safetensors/", "latest-00000004.safetensors\x00"])
def test_a_checkpoint_names_only_its_own_weights_file(copy_of, tmp_path, named):
    victim = _outside(tmp_path)
    meta = _description(copy_of)
    assert meta["weights_file"] == "latest-00000004.safetensors"
    (copy_of / "sub").mkdir()
    shutil.copy(copy_of / meta["weights_file"], copy_of / "sub" / meta["weights_file"])
    meta["weights_file"] = str(victim) if named == "ABSOLUTE" else named
    _write(copy_of, meta)
    with _files_opened() as opened, pytest.raises(CheckpointError, match="weights_file") as error:
        load_checkpoint(copy_of / "latest.json")
    assert "latest.json" in str(error.value)
    assert all(str(path).startswith(os.path.realpath(copy_of)) and "sub" not in str(path) for path in opened)
    for command in (["info"], ["sample", "--length", 3], ["eval", TEXT_FILE_PLACEHOLDER]):
        args = [command[0], copy_of / "latest.json", *command[1:]]
        code, out, err = _cli(*[victim if a is TEXT_FILE_PLACEHOLDER else a for a in args])
        assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error:"), (command, err)
    assert victim.read_bytes() == b"not yours to read"


def test_a_weights_file_linked_out_of_the_run_folder_is_refused_unread(copy_of, tmp_path):
    meta = _description(copy_of)
    weights = copy_of / meta["weights_file"]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.move(weights, outside / weights.name)
    os.symlink(outside / weights.name, weights)
    with _files_opened() as opened, pytest.raises(CheckpointError, match="outside the run folder"):
        load_checkpoint(copy_of / "latest.json")
    assert not any(str(path).startswith(str(outside.resolve())) for path in opened)
    # a link within the folder is the folder's own file
    weights.unlink()
    shutil.move(outside / weights.name, copy_of / "weights.bin")
    os.symlink("weights.bin", weights)
    load_checkpoint(copy_of / "latest.json")


def test_a_description_linked_out_of_the_run_folder_is_refused(copy_of, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.move(copy_of / "best.json", outside / "best.json")
    os.symlink(outside / "best.json", copy_of / "best.json")
    with pytest.raises(CheckpointError, match="outside the run folder"):
        load_checkpoint(copy_of)


def test_a_weights_file_that_is_not_a_regular_file_is_refused_without_waiting(copy_of):
    meta = _description(copy_of)
    (copy_of / meta["weights_file"]).unlink()
    os.mkfifo(copy_of / meta["weights_file"])
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(copy_of / "latest.json")
    (copy_of / "best.json").unlink()
    os.mkfifo(copy_of / "best.json")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(copy_of)


def test_saving_never_removes_a_file_the_old_description_names_outside_its_own(copy_of, tmp_path):
    victim = _outside(tmp_path)
    arrays, meta = load_checkpoint(copy_of / "best.json")
    latest_weights = copy_of / _description(copy_of)["weights_file"]
    for named in (str(victim), "../elsewhere/victim.txt", latest_weights.name, "log.jsonl"):
        hostile = _description(copy_of, "best")
        hostile["weights_file"] = named
        _write(copy_of, hostile, "best")
        save_checkpoint(copy_of, "best", arrays, {**_rest(meta), "step": meta["step"] + 1,
                                                  "progress": {**meta["progress"], "step": meta["step"] + 1}})
        assert victim.read_bytes() == b"not yours to read" and latest_weights.is_file()
        assert (copy_of / "log.jsonl").is_file()
        load_checkpoint(copy_of / "best.json")
        meta["step"] += 1
    previous = copy_of / f"best-{meta['step']:08d}.safetensors"   # the checkpoint's own: still removed
    save_checkpoint(copy_of, "best", arrays, {**_rest(meta), "step": meta["step"] + 1,
                                              "progress": {**meta["progress"], "step": meta["step"] + 1}})
    assert not previous.exists() and (copy_of / f"best-{meta['step'] + 1:08d}.safetensors").is_file()


def test_resuming_with_a_hostile_best_json_deletes_nothing_outside(copy_of, tmp_path, text):
    """The reported case: best.json naming an absolute path, then training on from latest.json; at the first
    improvement the trainer used to delete that path."""
    victim = _outside(tmp_path)
    hostile = _description(copy_of, "best")
    hostile["weights_file"] = str(victim)
    _write(copy_of, hostile, "best")
    meta = _description(copy_of)
    config = TrainConfig.from_options({**meta["train"], "steps": 10, "eval_every": 1})
    trainer = Trainer(config, copy_of, quiet=True, report=lambda line: None)
    restore(trainer, copy_of / "latest.json")
    trainer.progress.best_val_loss = 1e30  # the next evaluation improves, so best is written
    trainer.train()
    assert victim.read_bytes() == b"not yours to read"
    assert load_checkpoint(copy_of / "best.json")[1]["step"] == 10


def test_diagnose_does_not_open_the_text_a_checkpoint_records(copy_of, tmp_path, text):
    from chainrule.charlm.diagnose import checkpoint_flow
    secret = _touch(tmp_path / "secret.txt", TEXT.encode())
    for name in ("latest", "best"):
        meta = _description(copy_of, name)
        meta["text"]["name"] = meta["train"]["text"] = str(secret)
        _write(copy_of, meta, name)
    with _files_opened() as opened, pytest.raises(ValueError, match="--text"):
        checkpoint_flow(str(copy_of), None, 8, 2, 0)
    assert str(secret.resolve()) not in opened
    code, out, err = _cli("diagnose", copy_of, "--seq-len", 8, "--out", tmp_path / "flow.png")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--text" in err
    label, flow = checkpoint_flow(str(copy_of), str(text), 8, 2, 0)  # a path the user typed is opened
    assert label == "lstm 1x8 (trained)"


# -- validation before use ------------------------------------------------------------------------------------
def _set(meta, path, value):
    *parents, last = path
    for key in parents:
        meta = meta[key]
    if value is _DROP:
        del meta[last]
    else:
        meta[last] = value


_DROP = object()

REPORTED = [  # (what the issue reported, the change, a word the error must hold)
    ("model is null", (("model",), None), "model"),
    ("progress is missing", (("progress",), _DROP), "progress: is required"),
    ("train is missing", (("train",), _DROP), "train: is required"),
    ("hidden is a word", (("model", "hidden"), "sixteen"), "model.hidden"),
    ("seq_len is missing", (("train", "seq_len"), _DROP), "train.seq_len: is required"),
]


@pytest.mark.parametrize("case", REPORTED, ids=[case[0] for case in REPORTED])
def test_the_reported_descriptions_give_one_clean_line(copy_of, text, case):
    _, (path, value), words = case
    for name in ("latest", "best"):
        meta = _description(copy_of, name)
        _set(meta, path, value)
        _write(copy_of, meta, name)
    with pytest.raises(CheckpointError, match="is not a valid checkpoint description") as error:
        load_checkpoint(copy_of)
    assert words in str(error.value)
    for args in (["info", copy_of], ["sample", copy_of, "--length", 3], ["eval", copy_of, text]):
        code, out, err = _cli(*args)
        assert code == 2 and out == "" and err.count("\n") == 1 and words in err, (args, err)


def test_resume_of_a_broken_description_is_one_clean_line_in_a_process(copy_of, text):
    meta = _description(copy_of)
    del meta["train"]["seq_len"]
    _write(copy_of, meta)
    result = subprocess.run([sys.executable, "-m", "chainrule", "train", "--resume", str(copy_of), "--quiet"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "train.seq_len: is required and missing" in result.stderr


def test_an_error_names_the_field_what_was_expected_and_what_was_found(copy_of):
    meta = _description(copy_of)
    meta["train"]["lr"] = -0.5
    meta["model"]["dropout"] = 1.5
    meta["rng"]["state"]["inc"] = "big"
    _write(copy_of, meta)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(copy_of / "latest.json")
    message = str(error.value)
    assert "model.dropout: should be less than 1 (found 1.5)" in message
    assert "train.lr: should be greater than 0 (found -0.5)" in message
    assert "rng.state.inc: should be a valid integer (found 'big')" in message


def test_a_huge_hidden_size_fails_fast_before_allocating(copy_of):
    for name in ("latest", "best"):
        meta = _description(copy_of, name)
        meta["model"]["hidden"] = meta["train"]["hidden"] = 60000
        meta["parameters"] = 60000
        _write(copy_of, meta, name)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"model.rnn.weight_hh_l0: should have shape \[240000, 60000\]"):
        load_model(copy_of)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 5 and peak < 20 << 20
    code, out, err = _cli("sample", copy_of)
    assert code == 2 and err.count("\n") == 1 and "do not fit" in err


def test_a_weights_header_that_lies_about_its_size_is_refused(copy_of):
    meta = _description(copy_of)
    weights = copy_of / meta["weights_file"]
    payload = weights.read_bytes()
    weights.write_bytes((10 ** 12).to_bytes(8, "little") + payload[8:])
    with pytest.raises(CheckpointError, match="header claims"):
        load_checkpoint(copy_of / "latest.json")
    weights.write_bytes(payload + b"\0" * 64)  # more bytes than its arrays: never read whole
    with pytest.raises(CheckpointError, match="its arrays take"):
        load_checkpoint(copy_of / "latest.json")
    length = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8:8 + length])
    header["model.head.bias"]["data_offsets"][1] += 4
    body = json.dumps(header, separators=(",", ":")).encode().ljust(length)
    assert len(body) == length
    weights.write_bytes(payload[:8] + body[:length] + payload[8 + length:])
    with pytest.raises(CheckpointError, match="model.head.bias"):
        load_checkpoint(copy_of / "latest.json")


@pytest.mark.parametrize("document", ["[" * 100000, "[1, 2]", "null", '"text"', "{}", '{"format": 7}'])
def test_descriptions_that_are_no_object_of_the_format_are_refused(copy_of, document):
    (copy_of / "latest.json").write_text(document)
    with pytest.raises(CheckpointError):
        load_checkpoint(copy_of / "latest.json")


def test_eval_of_exploded_weights_reports_infinite_perplexity(copy_of, text):
    arrays, meta = load_checkpoint(copy_of / "latest.json")
    exploded = {k: (v * 1e6 if k.startswith("model.") else v) for k, v in arrays.items()}
    save_checkpoint(copy_of, "latest", exploded, _rest(meta))
    (copy_of / "best.json").unlink()
    model, vocabulary, _ = load_model(copy_of)
    result = evaluate(model, vocabulary.encode(TEXT), 2, 16)
    assert result.loss > 710 and result.perplexity == math.inf
    code, out, err = _cli("eval", copy_of, text)
    assert code == 0 and "perplexity: inf" in out and err == ""


# -- property: any broken description gives a clean CheckpointError ------------------------------------------
def _paths(value, prefix=()):
    """Every key path of a description (lists: their first element only)."""
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append(prefix + (key,))
            out += _paths(item, prefix + (key,))
    elif isinstance(value, list) and value:
        out.append(prefix + (0,))
        out += _paths(value[0], prefix + (0,))
    return out


_ORIGINAL = json.loads((DATA / "run-v1" / "latest.json").read_text())
_PATHS = _paths(_ORIGINAL)
_VALUES = [_DROP, None, "sixteen", "", "../../etc/passwd", "/etc/passwd", [], {}, [1, 2], {"a": 1}, True, False,
           -1, 0, 1, 7, 0.5, -0.5, 2.5, 60000, 10 ** 30, float("nan"), float("inf"), float("-inf"), 1e308]


@pytest.fixture(scope="module")
def v1_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("v1") / "run"
    shutil.copytree(DATA / "run-v1", folder)
    return folder


@pytest.fixture(scope="module")
def v1_config():
    return TrainConfig.from_options({**_ORIGINAL["train"], "text": str(DATA / "run-v1-text.txt")})


@given(st.lists(st.tuples(st.sampled_from(_PATHS), st.sampled_from(_VALUES)), min_size=1, max_size=3))
def test_any_broken_description_gives_a_checkpoint_error(v1_run, v1_config, changes):
    meta = copy.deepcopy(_ORIGINAL)
    for path, value in changes:
        try:
            _set(meta, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or retyped a parent
    (v1_run / "latest.json").write_text(json.dumps(meta))
    try:
        try:
            load_checkpoint(v1_run / "latest.json")
            load_model(v1_run)
            trainer = Trainer(v1_config, v1_run.parent / "resumed", quiet=True, report=lambda line: None)
            restore(trainer, v1_run / "latest.json")
        except CheckpointError as error:
            assert "\n" not in str(error)
        for args in (["info", v1_run], ["sample", v1_run, "--length", 3, "--seed", 0],
                     ["eval", v1_run, DATA / "run-v1-text.txt"]):
            code, out, err = _cli(*args)
            assert code in (0, 2) and err.count("\n") == (1 if code else 0) and "Traceback" not in err, err
    finally:
        shutil.copy(DATA / "run-v1" / "latest.json", v1_run / "latest.json")


@pytest.mark.parametrize("replacement", [_DROP, [[]]], ids=["dropped", "retyped"])
def test_every_field_dropped_or_retyped_is_refused(v1_run, replacement):
    refused = []
    for path in _PATHS:
        if path in (("history", 0), ("optimizer", "param_groups", 0, "initial_lr")) and replacement is _DROP:
            continue  # a shorter history is a valid one; initial_lr is written by a schedule, never read back
        meta = copy.deepcopy(_ORIGINAL)
        _set(meta, path, replacement)
        (v1_run / "latest.json").write_text(json.dumps(meta))
        try:
            load_checkpoint(v1_run / "latest.json")
        except CheckpointError as error:
            refused.append(path)
            named = path[:-1] if replacement is _DROP and isinstance(path[-1], int) else path
            field = ".".join(map(str, named))
            if named[:2] == ("optimizer", "scalars") and replacement is _DROP:
                field = ".".join(map(str, named[:3]))  # the state's arrays are then unexplained
            assert field in str(error), (field, str(error))
    shutil.copy(DATA / "run-v1" / "latest.json", v1_run / "latest.json")
    optional = (("history", 0), ("optimizer", "param_groups", 0, "initial_lr"))
    assert [p for p in _PATHS if p not in refused and p not in optional] == []


@pytest.mark.parametrize("path,value,words", [
    (("model", "hidden"), True, "model.hidden: should be a valid integer (found True)"),
    (("train", "seq_len"), True, "train.seq_len: should be a valid integer (found True)"),
    (("model", "layers"), 1.0, "model.layers: should be a valid integer (found 1.0)"),
    (("model", "hiden"), 16, "model.hiden: is not a field of this checkpoint format"),
    (("schedule", "lr_at"), 1, "schedule.lr_at: is not a field of this checkpoint format"),
    (("optimizer", "param_groups", 0, "betas"), [2, 3], "optimizer.param_groups.0.betas.0: should be less than 1"),
    (("optimizer", "scalars", "a"), {"step": 1}, "optimizer.scalars.a"),
    (("rng", "bit_generator"), "MT19937", "rng.bit_generator"),
    (("text", "name"), "plays\x1b]0;pwned\x07.txt", "text.name: should hold no control characters"),
    (("schedule",), None, "schedule: is required for the cosine schedule"),
])
def test_no_value_is_coerced_or_defaulted(v1_run, path, value, words):
    meta = copy.deepcopy(_ORIGINAL)
    _set(meta, path, value)
    (v1_run / "latest.json").write_text(json.dumps(meta))
    try:
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(v1_run / "latest.json")
        assert words in str(error.value)
    finally:
        shutil.copy(DATA / "run-v1" / "latest.json", v1_run / "latest.json")


def test_restore_refuses_what_does_not_fit_this_run(copy_of, text):
    meta = _description(copy_of)
    other = Trainer(TrainConfig.from_options({**meta["train"], "optimizer": "sgd"}), copy_of, quiet=True,
                    report=lambda line: None)
    before = [p.data.copy() for p in other.parameters]
    with pytest.raises(CheckpointError, match="train.optimizer is 'adam' and this run's is 'sgd'"):
        restore(other, copy_of / "latest.json")
    assert all(np.array_equal(a, p.data) for a, p in zip(before, other.parameters))
    same = Trainer(TrainConfig.from_options(meta["train"]), copy_of, quiet=True, report=lambda line: None)
    arrays, _ = load_checkpoint(copy_of / "latest.json")
    meta["progress"]["batch"] = same.train_streams.batches_per_epoch
    save_checkpoint(copy_of, "latest", arrays, _rest(meta))
    with pytest.raises(CheckpointError, match="progress.batch"):
        restore(same, copy_of / "latest.json")


def test_a_text_given_as_a_path_object_is_recorded(tmp_path, text):
    trainer = _train(tmp_path / "run", Path(text), steps=2)
    trainer.config.text = Path(text)
    trainer.save("latest")
    assert load_checkpoint(tmp_path / "run")[1]["train"]["text"] == str(text)


@pytest.mark.parametrize("options,words", [
    (dict(hidden="sixteen"), "hidden must be an integer, got 'sixteen'"),
    (dict(layers=True), "layers must be an integer, got True"),
    (dict(embedding=2.0), "embedding must be an integer, got 2.0"),
    (dict(dropout="0.1"), "dropout must be a number in [0, 1), got '0.1'"),
    (dict(dropout=float("nan")), "dropout must be in [0, 1), got nan"),
])
def test_a_model_configuration_of_the_wrong_type_says_so(options, words):
    with pytest.raises(ValueError) as error:
        ModelConfig("abc", **options)
    assert words in str(error.value)


def test_generation_and_evaluation_refuse_values_that_would_never_end_or_crash():
    from chainrule.charlm import generate
    from chainrule.charlm.text import Vocabulary
    model = CharModel(ModelConfig("ab", hidden=4, layers=1))
    for temperature in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be a positive finite number"):
            next(generate(model, Vocabulary("ab"), "a", 5, temperature=temperature))
    with pytest.raises(ValueError, match="seq_len must be at least 1"):
        evaluate(model, np.array([0, 1] * 10), 2, 0)


def test_an_unreadable_weights_file_names_the_file_and_the_cause(copy_of, monkeypatch):
    real_open = builtins.open

    real_os_open = os.open

    def refuse(file, *args, **kwargs):
        if str(file).endswith(".safetensors"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    def refuse_os(file, *args, **kwargs):
        if str(file).endswith(".safetensors"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(os, "open", refuse_os)   # however checkpoint.py opens the weights
    with pytest.raises(CheckpointError, match=r"latest-00000004.safetensors.* cannot be .*: Permission denied"):
        load_checkpoint(copy_of / "latest.json")


# -- limits shared by the options, the configurations and the schema (one table: checkpoint_schema.LIMITS) ----
def _both(folder, change):
    for name in ("latest", "best"):
        meta = _description(folder, name)
        change(meta)
        _write(folder, meta, name)


@pytest.mark.parametrize("path, value", [
    (("model", "layers"), 10 ** 9), (("model", "hidden"), 1 << 17), (("model", "embedding"), 1 << 17),
    (("train", "seq_len"), 1 << 21), (("train", "batch_size"), 1 << 21), (("train", "sample_length"), 2 ** 63),
    (("train", "epochs"), 1e308), (("train", "minutes"), 1e308), (("train", "eval_every"), 2 ** 62),
    (("train", "sample_every"), 2 ** 62), (("train", "lr_decay_every"), 2 ** 62), (("progress", "elapsed"), 1e308)])
def test_sizes_and_counts_beyond_the_limits_are_refused_at_once(copy_of, path, value):
    def change(meta):
        meta[path[0]][path[1]] = value
        if path[0] == "model":
            meta["train"][path[1]] = value
    _both(copy_of, change)
    start = time.perf_counter()
    low, high, _ = schema.LIMITS[path[1]]
    with pytest.raises(CheckpointError, match=rf"{'.'.join(path)}: should be less than or equal to {high:g}|"
                                              rf"{'.'.join(path)}: should be less than or equal to {int(high)}"):
        load_checkpoint(copy_of)
    code, out, err = _cli("info", copy_of)
    assert code == 2 and err.count("\n") == 1 and time.perf_counter() - start < 5


def test_a_vocabulary_longer_than_the_limit_is_refused(copy_of):
    start = time.perf_counter()   # and the longest one allowed is checked in linear time
    assert schema.ModelSection.model_validate({"vocabulary": "".join(map(chr, range(0x10000, 0x10000 + 65536))),
                                               "model": "gru", "hidden": 1, "layers": 1, "dropout": 0.0,
                                               "embedding": 0})
    assert time.perf_counter() - start < 2
    too_long = "".join(map(chr, range(0x10000, 0x10000 + 70000)))
    _both(copy_of, lambda meta: meta["model"].__setitem__("vocabulary", too_long))
    with pytest.raises(CheckpointError, match="model.vocabulary: string should have at most 65536 characters"):
        load_checkpoint(copy_of)


def test_parameter_shapes_checks_sizes_before_its_per_layer_loop():
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"model.layers: should be in \[1, 256\]"):
        schema.parameter_shapes({"vocabulary": "ab", "model": "gru", "hidden": 4, "layers": 10 ** 12, "embedding": 0})
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("name", sorted(schema.LIMITS))
def test_the_options_the_configurations_and_the_schema_share_each_limit(name):
    """At the limit: accepted everywhere; one past it: refused everywhere (the option, TrainConfig/ModelConfig)."""
    from chainrule.charlm.cli import build_parser

    low, high, low_open = schema.LIMITS[name]
    over = high * 2 if isinstance(high, float) and not float(high).is_integer() else int(high) + 1
    config_fields = set(TrainConfig().options())
    if name in config_fields:
        TrainConfig.from_options({name: high})
        with pytest.raises(ValueError, match=name.replace("_", "-")):
            TrainConfig.from_options({name: over})
    if name in ("hidden", "layers", "embedding"):
        ModelConfig("ab", **{name: high})   # a configuration only: nothing is allocated
        with pytest.raises(ValueError, match=name):
            ModelConfig("ab", **{name: over})
    option = "--" + name.replace("_", "-")
    parser = build_parser()
    if option in parser._subparsers._group_actions[0].choices["train"]._option_string_actions:
        assert getattr(parser.parse_args(["train", option, str(high)]), name) == high
        with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
            parser.parse_args(["train", option, str(over)])
        # a representation's limit (2**53) is named only to a value past it; a chosen limit as a range
        shown = "of at most 2**53" if high >= 2 ** 53 else f"{_bound(low)}, {_bound(high)}]"
        assert shown in err.getvalue() and "e+" not in err.getvalue()


def _bound(value):
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def test_an_option_far_past_its_limit_is_refused_by_the_parser_with_the_range():
    for option in ("--eval-every", "--sample-every", "--lr-decay-every", "--steps"):
        err = io.StringIO()
        with pytest.raises(SystemExit) as stopped, contextlib.redirect_stderr(err):
            main(["train", option, "99999999999999999999999"])
        assert stopped.value.code == 2
        assert "integer of at most 2**53, got '99999999999999999999999'" in err.getvalue()
        assert "9007199254740992" not in err.getvalue() and "Traceback" not in err.getvalue()


def test_an_extra_key_in_a_history_record_is_refused(copy_of):
    nested = []
    for _ in range(900):
        nested = [nested]
    _both(copy_of, lambda meta: meta["history"][0].__setitem__("note", nested))
    with pytest.raises(CheckpointError, match="history.0.note: is not a field of this checkpoint format"):
        load_checkpoint(copy_of)


# -- weights files: every array as chainrule writes it (float32, finite) -------------------------------------
def _rewrite_weights(folder, change):
    """Rewrite each checkpoint's weights with `change(arrays)` and record the new file's SHA-256 (a valid file)."""
    import hashlib

    from safetensors.numpy import load_file, save
    for name in ("latest", "best"):
        meta = _description(folder, name)
        path = folder / meta["weights_file"]
        arrays = change(load_file(path))
        payload = save(arrays)
        path.write_bytes(payload)
        meta["weights_sha256"] = hashlib.sha256(payload).hexdigest()
        _write(folder, meta, name)


def _set_values(key_prefix, value):
    def change(arrays):
        key = sorted(k for k in arrays if k.startswith(key_prefix))[0]
        arrays[key].reshape(-1)[0] = value
        return arrays
    return change


@pytest.mark.parametrize("prefix, value", [("model.head.bias", np.nan), ("model.head.weight", np.inf),
                                           ("model.rnn", -np.inf), ("optimizer.", np.nan)])
def test_weights_holding_nan_or_inf_are_refused_naming_the_array(copy_of, text, prefix, value):
    _rewrite_weights(copy_of, _set_values(prefix, value))
    with pytest.raises(CheckpointError, match=rf"{prefix.rstrip('.')}.* hold NaN or infinite values"):
        load_checkpoint(copy_of)
    for command in (("sample", copy_of, "--length", 5), ("eval", copy_of, text), ("info", copy_of),
                    ("train", text, "--resume", copy_of, "--steps", 6)):
        code, out, err = _cli(*command)
        assert code == 2 and err.count("\n") == 1 and "NaN or infinite" in err, (command, err)


def test_weights_of_another_dtype_are_refused_naming_the_array(copy_of):
    _rewrite_weights(copy_of, lambda arrays: {k: v.astype(np.float64) for k, v in arrays.items()})
    with pytest.raises(CheckpointError, match=r"model\.\S+: should be F32 \(float32\), the dtype chainrule writes "
                                              r"\(found 'F64'\)"):
        load_checkpoint(copy_of)


def test_eval_of_huge_finite_weights_reports_without_numpy_warnings(copy_of, text):
    import warnings

    _rewrite_weights(copy_of, lambda arrays: {k: (np.full_like(v, 3e38) if k == "model.head.weight" else v)
                                              for k, v in arrays.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, out, err = _cli("eval", copy_of, text)
    assert code == 0 and "RuntimeWarning" not in err
    loss = out.split("loss: ")[1].split()[0]
    assert loss in ("nan", "inf") and "not finite" in err


# -- files of a run folder that are not regular files --------------------------------------------------------
@pytest.mark.parametrize("name", ["log.jsonl", ".chainrule.lock", "latest.json"])
def test_a_fifo_in_the_run_folder_is_refused_by_name_without_waiting(copy_of, text, name):
    path = copy_of / name
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    start = time.perf_counter()
    code, out, err = _cli("train", text, "--resume", copy_of, "--steps", 6)
    assert code == 2 and err.count("\n") == 1, err
    assert name in err and ("not a regular file (a FIFO)" in err or "not a regular file" in err), err
    assert time.perf_counter() - start < 20


def test_a_device_as_a_run_file_is_refused(copy_of, text):
    (copy_of / "log.jsonl").unlink()
    (copy_of / "log.jsonl").symlink_to("/dev/zero")   # a link: refused as a link; the device itself below
    code, out, err = _cli("train", text, "--resume", copy_of, "--steps", 6)
    assert code == 2 and "log.jsonl" in err and "symbolic link" in err
    from chainrule.charlm.checkpoint import read_regular_file
    with pytest.raises(CheckpointError, match=r"/dev/zero \(x\) is not a regular file \(a device\)"):
        read_regular_file("/dev/zero", 100, "x", follow=True)

"""`chainrule export`: ONNX files (run by onnxruntime) and PyTorch weights files give chainrule's own predictions."""
import json
import sys
import textwrap

import numpy as np
import pytest

from chainrule.charlm.cli import main
from chainrule.charlm.export import ONNX_GATE_ORDER, ExportError, _onnx_gates, export, onnx_model
from chainrule.charlm.extras import MissingPackage
from chainrule.charlm.model import load_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TEXT = ("ROMEO: But soft, what light through yonder window breaks?\n"
        "JULIET: O Romeo, Romeo, wherefore art thou Romeo? «ü» 'q' \"w\" \\ \t end\n") * 20


def train_run(folder, cell, layers, embedding, hidden=12):
    """A checkpoint of a few training steps (weights away from their initial values)."""
    from chainrule.charlm.training import TrainConfig, Trainer

    config = TrainConfig.from_options(dict(model=cell, hidden=hidden, layers=layers, embedding=embedding, seq_len=8,
                                           batch_size=2, steps=3, eval_every=3, sample_every=0,
                                           dropout=0.1 if layers > 1 else 0.0, lr=0.05))
    Trainer(config, folder, quiet=True, corpus=(TEXT, "plays")).train()
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    made = {}

    def run(cell, layers=2, embedding=0):
        key = (cell, layers, embedding)
        if key not in made:
            made[key] = train_run(tmp_path_factory.mktemp("runs") / f"{cell}-{layers}-{embedding}", *key)
        return made[key]
    return run


def session(run):
    model = onnx_model(run)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def zero_states(cell, layers, batch, hidden):
    names = ("h0", "c0") if cell == "lstm" else ("h0",)
    return {name: np.zeros((layers, batch, hidden), np.float32) for name in names}


def softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def chainrule_run(run, ids):
    model, vocabulary, _ = load_model(run)
    model.eval()
    logits, state = model(ids)
    states = [s.data for s in state] if isinstance(state, tuple) else [state.data]
    return logits.data, states, vocabulary


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("embedding", [0, 5])
def test_onnxruntime_predicts_what_chainrule_predicts(runs, cell, layers, embedding):
    run = runs(cell, layers, embedding)
    ids = np.random.default_rng(0).integers(0, 20, (3, 11))
    logits, states, _ = chainrule_run(run, ids)
    outputs = session(run).run(None, {"input_ids": ids, **zero_states(cell, layers, 3, 12)})
    assert outputs[0].shape == logits.shape == (3, 11, len(set(TEXT)))
    # the next-character distribution at every position
    np.testing.assert_allclose(softmax(outputs[0]), softmax(logits), atol=1e-5, rtol=0)
    np.testing.assert_allclose(outputs[0], logits, atol=1e-5, rtol=1e-5)
    for got, want in zip(outputs[1:], states, strict=True):   # h_n (and c_n): [layers, batch, hidden]
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_streaming_one_character_at_a_time_equals_the_whole_sequence(runs, cell):
    run = runs(cell, 2, 0)
    ids = np.random.default_rng(1).integers(0, 20, (2, 9))
    runtime = session(run)
    whole = runtime.run(None, {"input_ids": ids, **zero_states(cell, 2, 2, 12)})
    states = zero_states(cell, 2, 2, 12)
    names = list(states)
    steps = []
    for t in range(ids.shape[1]):
        logits, *finals = runtime.run(None, {"input_ids": ids[:, t:t + 1], **states})
        steps.append(logits)
        states = dict(zip(names, finals, strict=True))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), whole[0], atol=1e-5, rtol=0)
    for name, final in zip(names, whole[1:], strict=True):
        np.testing.assert_allclose(states[name], final, atol=1e-6, rtol=0)
    # a nonzero start state is used too (the state inputs are not ignored)
    moved = runtime.run(None, {"input_ids": ids[:, :1], **{k: v + 0.5 for k, v in zero_states(cell, 2, 2, 12).items()}})
    assert not np.allclose(moved[0], whole[0][:, :1])


def test_the_vocabulary_and_the_description_are_in_the_metadata(runs):
    run = runs("gru", 1, 0)
    _, _, vocabulary = chainrule_run(run, np.zeros((1, 1), np.int64))
    properties = session(run).get_modelmeta().custom_metadata_map
    assert json.loads(properties["vocabulary"]) == vocabulary.characters == "".join(sorted(set(TEXT)))
    assert (properties["cell"], properties["layers"], properties["hidden"], properties["output"]) == (
        "gru", "1", "12", "logits")
    model = onnx_model(run)
    assert [node.op_type for node in model.graph.node].count("GRU") == 1
    gru = next(node for node in model.graph.node if node.op_type == "GRU")
    assert {a.name: onnx.helper.get_attribute_value(a) for a in gru.attribute}["linear_before_reset"] == 1


def test_gate_blocks_go_to_onnx_order():
    hidden = 2
    lstm = np.repeat(np.arange(4), hidden)[:, None] * np.ones((1, 3))   # rows: block of i, f, g, o
    assert _onnx_gates(lstm, "lstm")[::hidden, 0].tolist() == [0, 3, 1, 2]   # i, o, f, c(=g)
    assert _onnx_gates(np.repeat(np.arange(3.0), hidden), "gru")[::hidden].tolist() == [1, 0, 2]   # z, r, h(=n)
    assert ONNX_GATE_ORDER["rnn"] == [0]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("embedding", [0, 5])
def test_torch_format_rebuilds_pytorch_modules_that_predict_the_same(runs, tmp_path, cell, embedding):
    torch = pytest.importorskip("torch")
    run = runs(cell, 2, embedding)
    path = export(run, "torch", tmp_path / "model.pt")
    ids = torch.from_numpy(np.random.default_rng(2).integers(0, 20, (2, 7)))
    # the recipe of chainrule.charlm.export's text, run as it is written there (plain PyTorch)
    import chainrule.charlm.export as module

    lines = module.__doc__.splitlines()
    start = next(i for i, line in enumerate(lines) if "saved = torch.load(" in line)
    end = next(i for i, line in enumerate(lines) if "logits = head(output)" in line)
    recipe = textwrap.dedent("\n".join(lines[start:end + 1])).replace('"model.pt"', repr(str(path)))
    namespace = {"torch": torch, "ids": ids}
    with torch.no_grad():
        exec(recipe, namespace)
    saved, logits, state = namespace["saved"], namespace["logits"], namespace["state"]
    want, states, vocabulary = chainrule_run(run, ids.numpy())
    np.testing.assert_allclose(logits.numpy(), want, atol=1e-5, rtol=1e-5)
    for got, expected in zip(state if isinstance(state, tuple) else (state,), states, strict=True):
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-6, rtol=0)
    assert saved["vocabulary"] == vocabulary.characters and saved["output"] == "logits"


def test_the_command_writes_next_to_the_run_and_refuses_to_overwrite(runs, tmp_path, capsys):
    run = runs("rnn", 1, 0)
    target = tmp_path / "rnn.onnx"
    assert main(["export", str(run), "--out", str(target)]) == 0
    first = target.read_bytes()
    onnx.checker.check_model(onnx.load(str(target)))
    assert main(["export", str(run), "--out", str(target)]) == 2
    assert f"{target} already exists; pass --force" in capsys.readouterr().err
    target.write_bytes(b"old")
    assert main(["export", str(run), "--out", str(target), "--force"]) == 0
    assert target.read_bytes() == first
    assert main(["export", str(run), "--format", "onnx"]) == 0     # default: model.onnx in the run folder
    assert (run / "model.onnx").read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_unwritable_and_missing_places_are_reported(runs, tmp_path, capsys, monkeypatch):
    run = runs("rnn", 1, 0)
    assert main(["export", str(run), "--out", str(tmp_path / "no-such-folder" / "m.onnx")]) == 2
    assert "no-such-folder does not exist; choose another path with --out" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(tmp_path)]) == 2
    assert "is a folder; give the file to write" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="file is not a folder"):
        export(run, "onnx", tmp_path / "file" / "m.onnx")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("tempfile.mkstemp", refuse)
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 2
    assert f"cannot write {tmp_path / 'm.onnx'}: Permission denied" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_a_missing_onnx_package_names_the_extra(runs, tmp_path, capsys, monkeypatch):
    run = runs("rnn", 1, 0)
    monkeypatch.setitem(sys.modules, "onnx", None)   # what an environment without onnx gives on import
    with pytest.raises(MissingPackage, match=r"pip install 'chainrule\[onnx\]'"):
        onnx_model(run)
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "export to ONNX needs the Python package onnx" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_a_model_past_protobufs_limit_is_refused_with_advice(runs, monkeypatch):
    run = runs("rnn", 1, 0)
    monkeypatch.setattr("chainrule.charlm.export.ONNX_SIZE_LIMIT", 1000)   # the real limit needs 2 GiB of weights
    with pytest.raises(ExportError, match=r"an ONNX file holds at most 2 GiB .*: export it with --format torch"):
        onnx_model(run)


def test_an_unknown_format_is_refused(runs):
    with pytest.raises(ValueError, match="export format must be one of onnx, torch; got 'tflite'"):
        export(runs("rnn", 1, 0), "tflite")


def test_the_exported_file_gets_a_normal_files_mode_and_the_message_names_the_checkpoint(runs, tmp_path, capsys):
    import os
    run = runs("rnn", 1, 0)
    previous = os.umask(0o027)
    try:
        assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 0
        assert main(["export", str(run), "--format", "torch", "--out", str(tmp_path / "m.pt")]) == 0
    finally:
        os.umask(previous)
    for name in ("m.onnx", "m.pt"):   # as open(path, "w") would make it, not mkstemp's 0o600
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640
    printed = capsys.readouterr().err
    assert f"wrote {tmp_path / 'm.onnx'} from {run / 'best.json'}\n" in printed


def test_a_run_without_best_says_it_used_latest_and_force_replaces_a_link_not_its_target(runs, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(runs("rnn", 1, 0), run)
    (run / "best.json").unlink()
    target = tmp_path / "target.onnx"
    target.write_bytes(b"keep me")
    link = tmp_path / "link.onnx"
    link.symlink_to(target)
    assert main(["export", str(run), "--out", str(link), "--force"]) == 0
    assert f"from {run / 'latest.json'} (no best.json)" in capsys.readouterr().err
    assert not link.is_symlink() and target.read_bytes() == b"keep me"
    onnx.checker.check_model(onnx.load(str(link)))

"""TrainConfig holds the model's Architecture (checked there, once) and the options of training; a checkpoint
stores it flat, by option name, as the command line spells it, so every run written before still loads and
resumes (tests/charlm/data/run-v1 among them)."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from chainrule.charlm import Architecture, ModelConfig
from chainrule.charlm.checkpoint import load_checkpoint
from chainrule.charlm.cli import main
from chainrule.charlm.resume import CHANGEABLE_ON_RESUME, FIXED_ON_RESUME, resume_config
from chainrule.charlm.training import TrainConfig, Trainer

DATA = Path(__file__).parent / "data"
V1 = json.loads((DATA / "run-v1" / "latest.json").read_text())

# each accepted by TrainConfig before it held an Architecture, and refused only once a Trainer had read the text
# and built the model (or, for the last, refused with Python's "'<' not supported between ..." message)
BAD_ARCHITECTURES = [({"model": "transformer"}, "model must be one of"), ({"dropout": 1.5}, "dropout must be in"),
                     ({"dropout": -0.1}, "dropout must be in"), ({"hidden": 8.5}, "hidden must be an integer"),
                     ({"hidden": True}, "hidden must be an integer"), ({"layers": 2.0}, "layers must be an integer"),
                     ({"embedding": "3"}, "embedding must be an integer"), ({"model": ["gru"]}, "model must be one")]


@pytest.fixture(autouse=True, scope="module")
def numpy_kernels():
    """The NumPy kernels: no JIT compilation for these tiny models."""
    from chainrule._kernels import backend
    previous = backend.backend_name()
    backend.use_backend("numpy")
    yield
    backend.use_backend(previous)


@pytest.mark.parametrize("bad,message", BAD_ARCHITECTURES)
def test_the_architecture_is_checked_in_one_place_for_training_and_for_the_model(bad, message):
    for build in (lambda: TrainConfig.from_options(bad), lambda: Architecture(**bad),
                  lambda: ModelConfig("ab", **bad)):
        with pytest.raises(ValueError, match=message):
            build()


@pytest.mark.parametrize("bad,message", [
    ({"seq_len": 2.5}, "seq-len must be an integer"), ({"steps": True}, "steps must be an integer"),
    ({"batch_size": np.float64(2)}, "batch-size must be an integer"), ({"lr": "0.1"}, "lr must be a number"),
    ({"epochs": True}, "epochs must be a number"), ({"optimizer": ["adam"]}, "optimizer must be a string"),
    ({"seed": -1}, r"seed must be in \[0, 2\*\*128\)"), ({"seed": 2 ** 128}, "seed must be in"),
    ({"sample_length": None}, "sample-length must be an integer"),
])
def test_training_options_of_the_wrong_type_are_refused_with_the_option_named(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_options(bad)


def test_options_by_name_and_back():
    config = TrainConfig.from_options({"model": "gru", "hidden": 64, "dropout": 0.0, "seq_len": 32, "steps": 10})
    assert config.architecture == Architecture("gru", 64, 2, 0.0, 0)
    assert TrainConfig.from_options(config.options()) == config
    assert list(config.options()) == list(V1["train"])   # the order and names a checkpoint has always stored
    assert TrainConfig().architecture == Architecture(hidden=512, dropout=0.25)   # the command line's defaults
    assert config.model_config("xyz") == ModelConfig("xyz", "gru", 64, 2, 0.0, 0)
    assert config.model_config("xyz").architecture == config.architecture


@pytest.mark.parametrize("options,message", [({"hiden": 64}, "'hiden'"), ({"architecture": {"hidden": 8}},
                                                                            "'architecture'")])
def test_an_unknown_option_is_named(options, message):
    with pytest.raises(TypeError, match=f"unknown training option.*{message}.*the options are text, model, hidden"):
        TrainConfig.from_options(options)


def test_the_architecture_fields_are_keywords_of_the_constructor_over_the_default_architecture():
    config = TrainConfig(hidden=64)
    # the default architecture's other fields stay, dropout 0.25 included, as with the command line's --hidden 64
    assert config.architecture == Architecture("lstm", 64, 2, 0.25, 0)
    assert config == TrainConfig.from_options({"hidden": 64})
    config = TrainConfig(model="gru", hidden=32, layers=1, dropout=0.0, embedding=8, seq_len=16, steps=3)
    assert config.architecture == Architecture("gru", 32, 1, 0.0, 8) and (config.seq_len, config.steps) == (16, 3)
    with pytest.raises(ValueError, match="hidden must be at least 1, got 0"):   # still checked by Architecture
        TrainConfig(hidden=0)


def test_the_constructor_refuses_an_architecture_with_its_fields_and_lists_valid_keywords():
    with pytest.raises(TypeError, match="architecture= and hidden=, dropout=: give the model's shape one way"):
        TrainConfig(architecture=Architecture(), hidden=64, dropout=0.1)
    with pytest.raises(TypeError, match="unknown keyword argument 'hiden'; the valid ones are text, architecture, "
                                        "model, hidden, layers, dropout, embedding, seq_len"):
        TrainConfig(hiden=64)


def test_the_architecture_must_be_one_without_a_vocabulary():
    with pytest.raises(ValueError, match="architecture must be an Architecture, got ModelConfig"):
        TrainConfig(architecture=ModelConfig("ab"))


def test_every_option_is_either_fixed_or_changeable_on_resume():
    options = set(TrainConfig().options()) - {"text"}   # the text is compared by content
    assert set(FIXED_ON_RESUME) | set(CHANGEABLE_ON_RESUME) == options
    assert not set(FIXED_ON_RESUME) & set(CHANGEABLE_ON_RESUME)


def test_a_resume_keeps_the_architecture_but_may_change_its_dropout():
    stored = TrainConfig.from_options(V1["train"])
    config, changes = resume_config(stored, {"dropout": 0.5, "hidden": 8, "steps": 9})
    assert config.architecture == Architecture("lstm", 8, 1, 0.5, 4) and config.steps == 9
    assert changes == {"dropout": [0.25, 0.5], "steps": [6, 9]}
    for option, value in (("hidden", 16), ("model", "gru"), ("layers", 2), ("embedding", 0)):
        with pytest.raises(ValueError, match=f"--{option} {value} \\(the run has "):
            resume_config(stored, {option: value})


def test_the_old_flat_train_section_reads_as_it_was_written():
    config = TrainConfig.from_options(V1["train"])
    assert config.options() == V1["train"]
    assert asdict(config.architecture) == {k: V1["model"][k] for k in asdict(config.architecture)}


def test_a_checkpoint_written_now_stores_the_train_section_flat_as_before(tmp_path):
    text = tmp_path / "plays.txt"
    text.write_text((DATA / "run-v1-text.txt").read_text(encoding="utf-8"), encoding="utf-8")
    config = TrainConfig.from_options({**V1["train"], "text": str(text), "steps": 3})
    Trainer(config, tmp_path / "run", quiet=True, report=lambda line: None).train()
    meta = load_checkpoint(tmp_path / "run" / "latest.json")[1]
    assert list(meta["train"]) == list(V1["train"])
    assert meta["train"] == {**V1["train"], "text": str(text), "steps": 3}
    assert TrainConfig.from_options(meta["train"]) == config


def test_the_committed_v1_run_resumes_from_the_command_line_with_a_new_dropout(tmp_path, capsys):
    run = tmp_path / "run-v1"
    shutil.copytree(DATA / "run-v1", run)
    status = main(["train", str(DATA / "run-v1-text.txt"), "--resume", str(run), "--steps", "9", "--dropout", "0.1",
                   "--quiet"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "resuming" in err and "--dropout: 0.25 -> 0.1" in err
    meta = load_checkpoint(run / "latest.json")[1]
    assert meta["step"] == 9 and meta["train"]["dropout"] == 0.1 and meta["model"]["dropout"] == 0.1
    assert {k: v for k, v in meta["train"].items() if k not in ("text", "dropout", "steps")} == {
        k: v for k, v in V1["train"].items() if k not in ("text", "dropout", "steps")}
    assert main(["info", str(run / "latest.json")]) == 0
    assert "model: lstm 1x8, embedding 4, dropout 0.1," in capsys.readouterr().out

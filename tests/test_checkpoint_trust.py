"""A run folder is untrusted input: containment of the files a checkpoint names, validation before use, the
housekeeping helpers the trainer uses (run_files, remove_leftovers), and a clean error for every broken
description."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from chainrule.checkpoint import (CheckpointError, load_checkpoint, remove_leftovers, run_files,
                                  save_checkpoint)


def _touch(path, data=b"x"):
    Path(path).write_bytes(data)
    return Path(path)


def test_run_files_lists_only_chainrule_names(tmp_path):
    ours = ["latest.json", "best.json", "latest-00000012.safetensors", "best-00000010.safetensors", "log.jsonl",
            "loss.png", ".latest.json.ab12_x9q.tmp", ".best-00000010.safetensors.k3j2hh1a.tmp"]
    theirs = ["notes.txt", "data.json", "latest.json.bak", "latest-12.safetensors", "my-run-00000001.safetensors",
              ".latest.json.tmp", "model.safetensors"]
    for name in ours + theirs:
        _touch(tmp_path / name)
    (tmp_path / "sub").mkdir()
    _touch(tmp_path / "sub" / "latest.json")
    os.symlink("/nonexistent-target", tmp_path / "best-00000001.safetensors")
    assert run_files(tmp_path) == sorted(tmp_path / n for n in ours + ["best-00000001.safetensors"])
    assert run_files(tmp_path / "missing") == []
    assert run_files(tmp_path / "notes.txt") == []


def test_remove_leftovers_removes_only_crash_leftovers(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = _touch(outside / "latest-00000003.safetensors", b"precious")
    run = tmp_path / "run"
    path = save_checkpoint(run, "latest", {"w": np.ones(2, np.float32)}, {"step": 5})
    named = json.loads(path.read_text())["weights_file"]
    stale = _touch(run / "latest-00000004.safetensors")       # superseded, never removed (crash)
    orphan = _touch(run / "best-00000002.safetensors")        # no best.json names it
    temporary = _touch(run / ".latest.json.x1y2z3w4.tmp")
    temporary_weights = _touch(run / ".latest-00000006.safetensors.q9r8s7t6.tmp")
    keep = [_touch(run / "notes.txt"), _touch(run / "log.jsonl"), _touch(run / "loss.png"),
            _touch(run / "other-00000001.safetensors.bak")]
    os.symlink(target, run / "best-00000003.safetensors")     # a link out: neither followed nor removed
    os.symlink(target, run / ".best.json.aaaa.tmp")
    (run / "sub").mkdir()
    nested = _touch(run / "sub" / "latest-00000001.safetensors")
    removed = remove_leftovers(run)
    assert removed == sorted([stale, orphan, temporary, temporary_weights])
    assert (run / named).is_file() and path.is_file()
    assert all(p.exists() for p in keep) and nested.exists()
    assert target.read_bytes() == b"precious"
    assert (run / "best-00000003.safetensors").is_symlink() and (run / ".best.json.aaaa.tmp").is_symlink()
    arrays, meta = load_checkpoint(path)
    assert meta["step"] == 5
    assert remove_leftovers(run) == []
    assert remove_leftovers(tmp_path / "missing") == []


def test_remove_leftovers_keeps_weights_when_the_description_is_unreadable(tmp_path):
    _touch(tmp_path / "best.json", b"{not json")
    weights = _touch(tmp_path / "best-00000001.safetensors")
    assert remove_leftovers(tmp_path) == [] and weights.exists()


def test_a_checkpoint_with_non_finite_weights_is_not_written(tmp_path):
    from chainrule.checkpoint import all_finite
    assert all_finite({"w": np.ones(3), "i": np.arange(3)}) and not all_finite({"w": np.array([0.0, np.nan])})
    first = save_checkpoint(tmp_path, "latest", {"w": np.ones(2, np.float32)}, {"step": 1})
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CheckpointError, match="w hold NaN or infinite"):
        save_checkpoint(tmp_path, "latest", {"w": np.array([1e6, np.inf], np.float32)}, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == before and json.loads(first.read_text())["step"] == 1

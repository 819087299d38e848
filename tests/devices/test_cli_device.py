"""`--device` on the command line: parsing and errors, and a run trained on the stand-in GPU (kernels in numba's
simulator) that matches the CPU's losses, writes host checkpoints, and samples, evaluates and resumes on the CPU."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chainrule.charlm.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TEXT = "ROMEO: But soft, what light through yonder window breaks?\nJULIET: O Romeo, wherefore art thou?\n" * 12
SMALL = ["--hidden", "8", "--layers", "2", "--embedding", "4", "--dropout", "0.1", "--batch-size", "3",
         "--seq-len", "8", "--eval-every", "3", "--sample-every", "0", "--quiet", "--steps", "6"]


def chainrule(*args, stand_in=False):
    environment = {**os.environ, "PYTHONHASHSEED": "0", "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(ROOT)}
    module = "tests.devices.cli_on_stand_in" if stand_in else "chainrule"
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          env=environment, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("spec, words", [("gpu", "unknown device 'gpu'"), ("cuda:x", "unknown device"),
                                         ("cpu:2", "the CPU has no number")])
def test_a_bad_device_is_a_usage_error(spec, words, tmp_path):
    run = chainrule("sample", tmp_path, "--device", spec)
    assert run.returncode == 2 and "argument --device" in run.stderr and words in run.stderr


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cuda_without_cupy_says_what_to_install(tmp_path):
    run = chainrule("train", tmp_path / "t.txt", "--device", "cuda")
    assert run.returncode == 2 and "CuPy is not installed" in run.stderr and "chainrule[gpu]" in run.stderr


def test_a_stand_in_gpu_run_matches_the_cpu_and_its_checkpoints_move(tmp_path):
    pytest.importorskip("numba")
    text = tmp_path / "plays.txt"
    text.write_text(TEXT, encoding="utf-8")
    on_cpu, on_gpu = tmp_path / "cpu", tmp_path / "gpu"
    for out, device in ((on_cpu, "cpu"), (on_gpu, "cuda")):
        run = chainrule("train", text, *SMALL, "--out", out, "--device", device, stand_in=True)
        assert run.returncode == 0, run.stderr
    logs = [[json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()] for out in (on_cpu, on_gpu)]
    assert [r["step"] for r in logs[1]] == [3, 6]
    for a, b in zip(*logs):   # float32 rounding apart (the CPU's compiled Adam and scatter-add round differently)
        np.testing.assert_allclose([b["train_loss"], b["val_loss"]], [a["train_loss"], a["val_loss"]], rtol=1e-5)
    arrays, _ = load_checkpoint(on_gpu / "latest.json")
    assert all(type(a) is np.ndarray for a in arrays.values())
    # trained on the GPU, used on the CPU (and the stand-in GPU again)
    sampled = chainrule("sample", on_gpu, "--prime", "RO", "--length", 20, "--seed", 1)
    again = chainrule("sample", on_gpu, "--prime", "RO", "--length", 20, "--seed", 1, "--device", "cuda", stand_in=True)
    assert sampled.returncode == 0 and sampled.stdout == again.stdout and len(sampled.stdout.rstrip("\n")) == 22
    scored = chainrule("eval", on_gpu, text)
    assert scored.returncode == 0 and scored.stdout.startswith("characters scored:")
    resumed_on_gpu = chainrule("train", text, "--resume", on_cpu, "--steps", "9", "--quiet", "--device", "cuda",
                               stand_in=True)
    assert resumed_on_gpu.returncode == 0, resumed_on_gpu.stderr

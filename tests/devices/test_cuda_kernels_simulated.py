"""The CUDA kernels (`nn/kernels/cuda_backend.py`, `cuda_steps.py`, `optim/cuda_kernels.py`) run by numba's CUDA
simulator on the CPU.

NUMBA_ENABLE_CUDASIM=1 must be set before numba.cuda is first imported and would change every later
numba.cuda import in the process, so the check runs in a subprocess: `tests.devices.gpu_parity --quick` on
the stand-in device, the same script a GPU machine runs in full (benchmarks/gpu_check.sh). It compares every
cell's kernels with the NumPy backend, the Adam kernel with NumPy's formula, the layers (1 and 2 layers,
bidirectional, lengths) with the CPU, and a short training run's losses, and fails when one differs beyond
float64 rounding.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_cuda_kernels_under_the_simulator_match_the_cpu():
    pytest.importorskip("numba")
    environment = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "tests.devices.gpu_parity", "--device", "fake", "--quick"],
                         cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "all passed" in run.stdout
    # every check ran: 16 kernel cases (4 cells x mask x direction), 3 Adam cases, 9 layer cases (3 cells x 3
    # shapes), the training run
    assert sum(line.startswith("ok ") for line in run.stdout.splitlines()) == 29

#!/usr/bin/env bash
# The GPU checks, on a machine with an NVIDIA GPU (CUDA 12 driver), from a checkout of chainrule, in under 5 minutes:
#   bash benchmarks/gpu_check.sh            # results in bench-results/gpu-check.txt and bench-results/gpu.json
# 1. installs chainrule with the gpu, fast, torch and test extras into .venv-gpu (pyproject.toml says which wheels);
# 2. the GPU tests: every fused cell (RNN tanh/relu, LSTM, GRU; 1 and 2 layers, bidirectional, lengths; float64 to
#    1e-10, float32 to 1e-5) on the GPU against the CPU, and a short training run whose losses match the CPU's to
#    float32 rounding (tests/devices/gpu_parity.py), then the device tests of the suite;
# 3. the benchmark table against PyTorch CUDA (benchmarks/gpu_bench.py).
# Exit status: non-zero when a check fails (the benchmark still runs and is recorded).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
mkdir -p bench-results
LOG=bench-results/gpu-check.txt
exec > >(tee "$LOG") 2>&1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "no NVIDIA GPU visible"; exit 2; }
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || exit 2
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[gpu,fast,torch,test]" || { echo "installing the extras failed"; exit 2; }
PY="$VENV/bin/python"
"$PY" -c "import cupy, numba.cuda, torch; print('CuPy', cupy.__version__, '| numba.cuda available:', numba.cuda.is_available(), '| torch', torch.__version__, 'CUDA', torch.cuda.is_available())"

status=0
echo "== GPU parity: every fused cell and a training run, GPU against CPU"
timeout 150 "$PY" -m tests.devices.gpu_parity --device cuda || status=1
echo "== device tests of the suite (stand-in GPU, simulator)"
timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests/devices || status=1
echo "== benchmark against PyTorch CUDA"
timeout 150 "$PY" benchmarks/gpu_bench.py --repeats 15 --json bench-results/gpu.json || status=1
echo "== done (status $status); log in $LOG"
exit $status

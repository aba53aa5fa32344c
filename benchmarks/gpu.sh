#!/usr/bin/env bash
# The benchmark suite on a GPU host: installs JAX's CUDA build and the bench extra into a fresh virtual
# environment, shows the device, then runs every benchmark at the `gpu` size (mono->poly with 1,024
# seeds included) and writes suite.json and suite.md.
#
#   bash benchmarks/gpu.sh [OUT] [DATA_DIR]      # defaults: runs/bench_gpu and $MPCODEC_DATA_DIR
#
# Set MPCODEC_GPU_VENV to reuse an environment (default .venv-gpu) and MPCODEC_CUDA_EXTRA to pick JAX's
# CUDA wheel (default cuda12). Run from anywhere; it works from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/bench_gpu}"
data_dir="${2:-${MPCODEC_DATA_DIR:-}}"
venv="${MPCODEC_GPU_VENV:-.venv-gpu}"
cuda_extra="${MPCODEC_CUDA_EXTRA:-cuda12}"
if [[ -z "$data_dir" ]]; then
  echo "error: no data directory: pass it as the second argument or set MPCODEC_DATA_DIR" >&2
  exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -e ".[lm,bench]" "jax[$cuda_extra]"
"$venv/bin/python" -c "import jax; print('JAX', jax.__version__, jax.devices())"
if [[ "$("$venv/bin/python" -c 'import jax; print(jax.default_backend())')" != "gpu" ]]; then
  echo "error: JAX sees no GPU (backend is not gpu); check the driver and MPCODEC_CUDA_EXTRA" >&2
  exit 1
fi
"$venv/bin/python" -m benchmarks.suite --size=gpu --out="$out" --data_dir="$data_dir"

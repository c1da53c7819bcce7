#!/usr/bin/env bash
# The GPU checks of issue 5 in one command, for a machine whose Python already has jax[cuda],
# flax, optax, chex, orbax-checkpoint and absl-py (the lent device machine's image does):
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# 1. the device and the versions (devices.txt);
# 2. the step's correctness tests on the GPU: eager == jit, the D/G updates against their
#    hand-written references, spectral norm, losses (gpu_tests.txt);
# 3. the throughput table of the issue: DCGAN 64x64 and the SNGAN-style ResNet at batch 128
#    and 1024, float32 and bfloat16 (step_throughput.json / .md in OUT_DIR).
#
# Packages the image may lack (ml_collections, scikit-learn, tensorflow-datasets, pytest) are
# installed from wheels in ./.whl when that folder exists (pip download them here, carry .whl),
# else from the index. GAX_GPU_CHECK_SMOKE=1 runs everything at toy sizes (a CPU dry run of
# this script). Each part writes its file before the next starts, so a time-out keeps what ran.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}"
mkdir -p "$out"

pip_args=(--quiet --no-deps)
if [[ -d .whl ]]; then pip_args+=(--no-index --find-links .whl); fi
python -m pip install "${pip_args[@]}" ml_collections scikit-learn tensorflow-datasets pytest \
    pytest-xdist >"$out/install.txt" 2>&1 || echo "some installs failed: see install.txt"
# gax itself needs no install: pytest (pyproject's pythonpath) and the benchmark import it from
# the checkout.

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  python -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__); print(jax.devices())"
} >"$out/devices.txt" 2>&1
cat "$out/devices.txt"

if [[ "${GAX_GPU_CHECK_SMOKE:-0}" == 1 ]]; then
  tests=(tests/test_losses.py)
  bench=(--models=dcgan --batch_sizes=4 --dtypes=float32,bfloat16 --resolution=16 --warmup=1
         --iters=1 --repeats=2)
else
  tests=(tests/test_steps.py tests/test_losses.py tests/test_spectral.py tests/test_penalties.py)
  bench=(--models=dcgan,resnet --batch_sizes=128,1024 --dtypes=float32,bfloat16)
fi
# tests/conftest.py asks for 4 host devices, which leaves the GPU the default backend.
timeout 240 python -m pytest -q -p no:cacheprovider "${tests[@]}" >"$out/gpu_tests.txt" 2>&1
echo "tests: $(tail -n 1 "$out/gpu_tests.txt")"
timeout 300 python benchmarks/step_throughput.py "${bench[@]}" --out_dir="$out" \
    >"$out/step_throughput.log" 2>&1
echo "benchmark exit $?"
cat "$out/step_throughput.md" 2>/dev/null

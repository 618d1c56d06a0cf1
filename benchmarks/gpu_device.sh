#!/usr/bin/env bash
# The GPU benchmark in ONE call on the H200 machine, which has JAX, PyTorch, transformers and peft but no
# TensorFlow and no Keras. Here first: `make gpu-wheels` (Keras, keras-hub and their missing needs -> .whl/).
# Then the device tool's run: command "bash benchmarks/gpu_device.sh", carry [".whl"] (benchmarks/results.md, GPU).
# It installs the carried wheels into /tmp/site (the device notes' recipe), runs the workbench engine on JAX
# (each configuration in its own process) and the Hugging Face peer on PyTorch; the JSON lines land in
# $OUT/gpu_keras.jsonl and $OUT/gpu_torch.jsonl, the full log in $OUT/gpu.log. Worst case 8 min (the timeouts);
# expected 2-4 min. Then, here: copy the two .jsonl files into benchmarks/gpu/ and run
# `python -m benchmarks.gpu_report` (fills the GPU section of benchmarks/results.md).
# GPU_BENCH_ARGS=--smoke tries it on a CPU machine whose python3 has JAX (and torch).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-bench}
mkdir -p "$OUT"
log() { tee -a "$OUT/gpu.log"; }

ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/: run 'make gpu-wheels' and carry .whl" | log; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed" | log; exit 3; }
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  KERAS_BACKEND=jax python3 -c "import jax, keras, keras_hub; print('jax', jax.__version__, jax.devices(), \
'keras', keras.__version__, 'keras-hub', keras_hub.__version__)"; } 2>&1 | log

KERAS_BACKEND=jax timeout 330 python3 benchmarks/gpu.py --stack keras --config-timeout 120 \
    --out "$OUT/gpu_keras.jsonl" ${GPU_BENCH_ARGS:-} 2>&1 | log
keras_rc=${PIPESTATUS[0]}
timeout 150 python3 benchmarks/gpu.py --stack torch --out "$OUT/gpu_torch.jsonl" ${GPU_BENCH_ARGS:-} 2>&1 | log
torch_rc=${PIPESTATUS[0]}
echo "keras exit $keras_rc, torch exit $torch_rc" | log
exit $(( keras_rc != 0 || torch_rc != 0 ))

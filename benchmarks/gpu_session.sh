#!/usr/bin/env bash
# The CUDA checks and GPU benchmark figures, in two phases that each fit one ten-minute command
# on a lent GPU machine (figures: docs/corruptions.md, docs/adversarial.md, docs/training.md).
# Run from the repository root:
#
#   bash benchmarks/gpu_session.sh check   # environment, `-m gpu` tests, demo on CUDA, corruption images/s
#   bash benchmarks/gpu_session.sh rest    # demo, the fast suite with CUDA visible, attack and training figures
#
# Packages missing from the machine's Python travel as wheels in .whl/ (installed to /tmp/site);
# the project itself is used from the checkout (PYTHONPATH), so nothing is built there.
# Logs and result files go to $OUT (default: ./gpu-out).
set -uo pipefail
phase=${1:-check}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CI=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
PY=python3
step() { echo; echo "=== $* ($(date +%T))"; }

if [ "$phase" = check ]; then
  step environment
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch, numpy, numba, cv2, onnxruntime as ort; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0)); print('numpy', numpy.__version__, 'numba', numba.__version__, 'cv2', cv2.__version__, 'ort', ort.__version__, ort.get_available_providers())"
  step "pytest -m gpu"
  $PY -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee "$OUT/pytest-gpu.log" | tail -40
  step "demo on the automatically chosen device"
  $PY -m evalsuite demo --out "$OUT/demo" 2>&1 | tail -15; echo "demo exit ${PIPESTATUS[0]}"
  step "corruption images/s on CUDA"
  $PY -m benchmarks.bench_corruptions --device cuda --corruptions all --out corruptions-cuda 2>&1 | tail -30
  cp benchmarks/results/corruptions-cuda.* "$OUT/" 2>/dev/null
  (cd "$OUT" && tar czf demo.tgz demo && rm -rf demo)
elif [ "$phase" = rest ]; then
  step "demo on the automatically chosen device"
  $PY -m evalsuite demo --out "$OUT/demo" 2>&1 | tail -8; echo "demo exit ${PIPESTATUS[0]}"
  rm -rf "$OUT/demo"
  step "fast suite with CUDA visible (auto device = cuda)"
  $PY -m pytest -m "not slow" -q -p no:cacheprovider -n 8 2>&1 | tee "$OUT/pytest-fast-cuda.log" | tail -25
  step "PGD-10 on a ResNet-50 (AMP, channels_last)"
  $PY benchmarks/bench_attacks.py --device cuda --batch 128 2>&1 | tail -20
  step "training images/s, ResNet-50 at 224"
  $PY benchmarks/bench_training.py --device cuda --model timm:resnet50 --size 224 --batch 128 --steps 30 2>&1 | tail -20
  cp benchmarks/results/attacks-cuda.* benchmarks/results/training-cuda* "$OUT/" 2>/dev/null
else
  echo "usage: $0 check|rest" >&2; exit 2
fi
ls "$OUT"

#!/usr/bin/env bash
# Everything that needs a GPU, in one command, for a lent GPU machine (the `device` tool) or any CUDA host:
# the GPU tests, the loader benchmark and the training benchmark (baseline vs ours, eager and compiled).
#
#   bash benchmarks/gpu.sh                 # prints everything; logs land in $OUT (default /tmp/realfake-gpu)
#
# Where facenet-pytorch is not installed and nothing can be fetched (the lent machines), carry its wheel:
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl facenet-pytorch==2.5.3   (here, once)
# then name .whl in the device tool's carry list. The machine's own PyTorch is used.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/realfake-gpu}
mkdir -p "$OUT"
IMAGES=${IMAGES:-20000}
WORKERS=${WORKERS:-$(( $(nproc) - 1 ))}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu IMAGES=200 COMPILE=0 checks the script itself on a machine without a GPU
COMPILE=${COMPILE:-1}
BASELINE_STEPS=${BASELINE_STEPS:-30}
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1
if ! python3 -c "import facenet_pytorch" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"

status=0
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/tests.log" || status=1
python3 benchmarks/bench_loader.py --images "$(( IMAGES < 8000 ? IMAGES : 8000 ))" --size 160 --batch 512 --workers 0 "$WORKERS" 2>&1 \
  | tee "$OUT/loader.log" || status=1
python3 benchmarks/bench_train.py --device "$DEVICE" --images "$IMAGES" --size 160 --batch 512 --epochs 3 \
  --workers "$WORKERS" --baseline-steps "$BASELINE_STEPS" --warmup 5 2>&1 | tee "$OUT/train-eager.log" || status=1
if [ "$COMPILE" = 1 ]; then
  python3 benchmarks/bench_train.py --device "$DEVICE" --images "$IMAGES" --size 160 --batch 512 --epochs 3 \
    --workers "$WORKERS" --compile --skip-baseline 2>&1 | tee "$OUT/train-compile.log" || status=1
fi
echo "gpu.sh: exit $status; logs in $OUT"
exit $status

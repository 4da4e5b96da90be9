#!/usr/bin/env bash
# Everything that needs a GPU, in one command, for a lent GPU machine (the `device` tool) or any CUDA host:
# the training benchmark (the notebook's loop against ours, eager), the step alone (eager, compiled,
# kernel profile), the GPU tests, the compiled training benchmark on the same generated sample, then the
# default method trained on a sample ten times the default's (bench_scale.py: the train stage's phases and
# the robustness table), and the train stage alone on 50,000 images per class at batch 512 (its phases).
# Part "perturb" (not in the default list) times the probe's windows made in the loader (PIL) against on
# the GPU (train.perturb_on), one after the other on one sample of 10,000 images per class, one epoch each.
#
#   bash benchmarks/gpu.sh                     # prints everything; logs land in $OUT (default /tmp/realfake-gpu)
#   PARTS="tests step scale" bash benchmarks/gpu.sh   # some of it, in this order
#   PARTS="scale big" SCALE_EPOCHS=4 bash benchmarks/gpu.sh   # the default method at scale, phase by phase
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
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu IMAGES=200 COMPILE=0 SIZE=96 checks the script itself on a machine without a GPU
COMPILE=${COMPILE:-1}
SIZE=${SIZE:-160}
BATCH=${BATCH:-512}
BASELINE_STEPS=${BASELINE_STEPS:-30}
PARTS=${PARTS:-train step tests compile scale big}
REPRESENTATIONS=${REPRESENTATIONS:-npr-white rgb}   # the step alone: the default first (profiled), then plain RGB
SCALE_TRAIN=${SCALE_TRAIN:-10000}; SCALE_EPOCHS=${SCALE_EPOCHS:-4 8}; SCALE_ARGS=${SCALE_ARGS:-}  # more bench_scale.py options
BIG_TRAIN=${BIG_TRAIN:-50000}; BIG_BATCH=${BIG_BATCH:-512}   # the train stage alone at this size and batch
WORK=${WORK:-/tmp/realfake-bench}   # the generated sample, shared by the eager and the compiled run
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1
if ! python3 -c "import facenet_pytorch" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"

status=0
compile_flag=$([ "$COMPILE" = 1 ] && echo --compile)
profile_flag=$([ "$DEVICE" = cuda ] && echo --profile)
for part in $PARTS; do
  echo "== $part"
  case $part in
  train)
    python3 benchmarks/bench_train.py --device "$DEVICE" --images "$IMAGES" --size "$SIZE" --batch "$BATCH" --epochs 3 \
      --workers "$WORKERS" --baseline-steps "$BASELINE_STEPS" --warmup 5 --workdir "$WORK" 2>&1 | tee "$OUT/train-eager.log" ;;
  step)
    # shellcheck disable=SC2086
    python3 benchmarks/bench_step.py --device "$DEVICE" --size "$SIZE" --batch "$BATCH" $compile_flag $profile_flag \
      --representations $REPRESENTATIONS 2>&1 | tee "$OUT/step.log" ;;
  tests)
    python3 -m pytest -q -p no:cacheprovider -m gpu tests/training/test_gpu.py 2>&1 | tee "$OUT/tests.log" ;;
  compile)
    [ "$COMPILE" = 1 ] || continue
    python3 benchmarks/bench_train.py --device "$DEVICE" --images "$IMAGES" --size "$SIZE" --batch "$BATCH" --epochs 3 \
      --workers "$WORKERS" --compile --skip-baseline --workdir "$WORK" 2>&1 | tee "$OUT/train-compile.log" ;;
  scale)
    # shellcheck disable=SC2086
    python3 benchmarks/bench_scale.py --train "$SCALE_TRAIN" --epochs $SCALE_EPOCHS --device "$DEVICE" \
      --workers "$WORKERS" --json "$OUT/scale.json" $SCALE_ARGS 2>&1 | tee "$OUT/scale.log" ;;
  big)
    python3 benchmarks/bench_scale.py --train "$BIG_TRAIN" --valid 1000 --test 100 --heldout 10 --epochs 4 \
      --batch "$BIG_BATCH" --no-robustness --device "$DEVICE" --workers "$WORKERS" --workdir "$WORK/big" \
      --json "$OUT/big.json" 2>&1 | tee "$OUT/big.log" ;;
  perturb)
    for where in loader device; do
      python3 benchmarks/bench_scale.py --train "$SCALE_TRAIN" --test 100 --heldout 10 --epochs 1 --no-robustness \
        --perturb-on "$where" --device "$DEVICE" --workers "$WORKERS" --workdir "$WORK/perturb" \
        --json "$OUT/perturb-$where.json" 2>&1 | tee "$OUT/perturb-$where.log"
    done ;;
  *) echo "gpu.sh: unknown part '$part' (train, step, tests, compile, scale, big, perturb)"; false ;;
  esac || status=1
done
echo "gpu.sh: exit $status; logs in $OUT"
exit $status

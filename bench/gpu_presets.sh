#!/usr/bin/env bash
# One short check of the GPU path on a machine with CUDA (issue 5): the engine's numerics on CUDA, and the `gpu`
# and `gpu-vit` experiment presets run for ONE epoch on a 10,000-image subset of CIFAR-10 with seed 0 (a
# runnability and timing check, not the 200-epoch comparison). Stages run one after another, each under its own
# time limit, and each leaves its results.json even when cut short (the runner writes it after every run).
#
#   bash bench/gpu_presets.sh                 # on the device machine; data from $GPU_DATA (default .gpudata)
#   SMALL=1 bash bench/gpu_presets.sh         # dry run on the CPU with tiny sizes (checks the script itself)
#
# .gpudata holds cifar10_{train,test}_jpegbytes.npz repacked from ../shared/data/cifar10_jpeg without the file
# names (same images, labels and order, so the same seeded subsets); .whl holds the pydantic wheels the device
# image lacks. Both are git-ignored and travel with the device call's `carry`.
# Output: $OUT/{all.log, check.json, A.json, G2x.json, B.json, V.json}.
set -u
OUT=${OUT:-/tmp/gpu_presets_out}
mkdir -p "$OUT"
DATA=${GPU_DATA:-.gpudata}
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ! python3 -c "import pydantic" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
PY=${PY:-python3}
if [ -n "${SMALL:-}" ]; then
  # the ResNet-20 stands in for the four `gpu` networks (too slow on 2 CPU cores), the transformers stay
  SIZE=(--device cpu --train-size 128 --test-size 128 --iters 1); CHECK=(--device cpu --batch 8); LIM=600
  ONLY=(--arch resnet20 --args '{"bn": false}')
else
  SIZE=(--train-size 10000); CHECK=(--batch 32); LIM=1; ONLY=()
fi
T0=$(date +%s)
exec > >(tee "$OUT/all.log") 2>&1
echo "== $(date -u +%FT%TZ) $(hostname)"
nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
$PY -c "import sys, torch, torchvision, pydantic; print('python', sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'pydantic', pydantic.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"

# stage NAME SECONDS CMD...: run with a time limit; copy the run folder's results.json to $OUT/NAME.json
stage() {
  local name=$1 secs=$(( $2 * LIM )) ; shift 2
  echo "== stage $name (limit ${secs} s, at +$(( $(date +%s) - T0 )) s): $*"
  local t=$(date +%s)
  timeout -s INT -k 10 "$secs" "$@"
  local rc=$?
  echo "== stage $name: rc $rc after $(( $(date +%s) - t )) s"
  [ -f "/tmp/gp_$name/results.json" ] && cp "/tmp/gp_$name/results.json" "$OUT/$name.json"
  return 0
}
EXP=($PY -m initscore experiment --root "$DATA" --seeds 0 --epochs 1)
stage check 45 $PY bench/gpu_check.py --root "$DATA" "${CHECK[@]}" --json "$OUT/check.json"
# the gpu preset, Kaiming and NIO on all four networks (gamma = 2x the first batch's g_max; since the run of
# 2026-12-04 the paper's absolute gamma 5 for the no-BN ResNet-110, whose Kaiming g_max is ~1e11)
stage A 230 "${EXP[@]}" --preset gpu --methods kaiming,nio "${SIZE[@]}" ${ONLY[@]+"${ONLY[@]}"} --out /tmp/gp_A
# that network under the relative bound, for comparison (the run of 2026-12-04 had 2x in stage A and 5 in a stage
# G5; bench/results/gpu_h200_20261204)
stage G2x 60 "${EXP[@]}" --preset gpu --methods nio --gamma-factor 2 --arch resnet110 --args '{"bn": false}' "${SIZE[@]}" --out /tmp/gp_G2x
# the baselines on all four networks
stage B 95 "${EXP[@]}" --preset gpu --methods gradinit,metainit "${SIZE[@]}" ${ONLY[@]+"${ONLY[@]}"} --out /tmp/gp_B
# transformers without warmup (Swin-T, ViT-B/16 at 32 px), Kaiming and NIO
stage V 100 "${EXP[@]}" --preset gpu-vit "${SIZE[@]}" --out /tmp/gp_V
echo "== done at +$(( $(date +%s) - T0 )) s"

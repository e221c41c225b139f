#!/bin/sh
# Issue 14's GPU numbers in one device call: ours against the reference PDS implementation on
# CIFAR-10 deep (batch 8), FFHQ-256 (batch 8) and FFHQ-1024 (batch 2), float32 and (ours)
# bfloat16, then the fused preconditioner against the reference's complex formulation.
#
# Prepare once, here (both folders are ignored by git and travel with `carry`):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl ml_collections==1.1.0
#   mkdir -p .reference && git clone https://github.com/fudan-zvg/PDS .reference/PDS
# then run `sh benchmarks/device_check.sh` on the device with carry [".whl", ".reference"].
# Results go to $OUT (the device tool's folder), or benchmarks/results/ without it.
# SMOKE=1 runs the same commands at --smoke size on the CPU (a check of this script).
set -eu
cd "$(dirname "$0")/.."
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
OUT="${OUT:-benchmarks/results}"
SIZE=""
[ "${SMOKE:-0}" = 1 ] && SIZE="--smoke"
python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__, torch.version.cuda)"
timeout 420 python3 benchmarks/reference_timing.py $SIZE --reference-dir .reference/PDS \
    --cases cifar10_deep:8,ffhq_256:8,ffhq_1024:2 --dtypes float32,bfloat16 \
    --iterations 2 --repeats 3 --out "$OUT/reference_timing_gpu.json" || echo "reference_timing: exit $?"
timeout 120 python3 benchmarks/precondition_ffhq1024.py $SIZE --out "$OUT/precondition_ffhq1024_gpu.json" \
    || echo "precondition_ffhq1024: exit $?"

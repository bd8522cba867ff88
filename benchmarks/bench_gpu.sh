#!/usr/bin/env bash
# GPU protocol on the lent GPU machine (the `device` tool), from the repository root there.
# Needs nnunetv2 + this package on the device (a venv at .venv, or python on PATH with both installed) and the
# preprocessed Hippocampus (Dataset004) carried in: carry=["work_bench/nnUNet_preprocessed"] (48 MiB for 3d_fullres
# with nnUNetPlans). Each call trains for at most $LIMIT seconds, then stops the trainings and writes the report; the
# next call (while the machine is still warm) continues them with --c. The report and results.json go to $OUT.
# Usage: benchmarks/bench_gpu.sh [protocol: gpu|gpu-full] [limit seconds, default 540]
set -euo pipefail
PROTO=${1:-gpu}
LIMIT=${2:-540}
[ -x .venv/bin/python ] && export PATH=$PWD/.venv/bin:$PATH
ROOT=$PWD/work_bench
export nnUNet_raw=$ROOT/nnUNet_raw nnUNet_preprocessed=$ROOT/nnUNet_preprocessed nnUNet_results=$ROOT/nnUNet_results_gpu
mkdir -p "$nnUNet_raw" "$nnUNet_results"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true
python -m hypera_nnunet.benchmark.cli -d 4 -c 3d_fullres --protocol "$PROTO" -tr nnUNetTrainer HyperaTrainer \
    -f 0 1 2 3 4 --npz --out "$ROOT/bench_$PROTO" --time-limit "$LIMIT" || true
if [ -n "${OUT:-}" ]; then
    cp "$ROOT/bench_$PROTO"/report.md "$ROOT/bench_$PROTO"/results.json "$ROOT/bench_$PROTO"/*.png "$OUT"/ 2>/dev/null || true
    cp "$ROOT/bench_$PROTO"/runs.jsonl "$OUT"/ 2>/dev/null || true
fi

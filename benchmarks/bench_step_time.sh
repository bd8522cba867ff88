#!/usr/bin/env bash
# Time per training step of the reduced CPU plans (hyperaCPUPlans) on this machine.
# Runs <trainer> for 2 epochs of 20 iterations (+4 val iterations) on fold 0 into a separate results folder,
# then prints per-epoch wall times from nnU-Net's checkpoint and the load average seen during the run.
# Usage: benchmarks/bench_step_time.sh [trainer] [plans] [configuration]   (run from the repository root)
set -euo pipefail
TR=${1:-nnUNetTrainer_2epochs_20iters}
PLANS=${2:-hyperaCPUPlans}
CONF=${3:-3d_fullres}
ROOT=${BENCH_ROOT:-$PWD/work_bench}
export PATH=$PWD/.venv/bin:$PATH
export nnUNet_raw=$ROOT/nnUNet_raw nnUNet_preprocessed=$ROOT/nnUNet_preprocessed
export nnUNet_results=$ROOT/measure_results
export nnUNet_n_proc_DA=0 nnUNet_def_n_proc=1 nnUNet_compile=0
export nnUNet_extTrainer=$PWD/trainers
OUT=$nnUNet_results/Dataset004_Hippocampus/${TR}__${PLANS}__${CONF}/fold_0
rm -rf "$OUT"
( while true; do cut -d' ' -f1 /proc/loadavg; sleep 5; done ) > "$ROOT/logs/load_${TR}_${PLANS}.txt" &
LOADPID=$!
t0=$(date +%s.%N)
# CPU seconds (user + system of nnUNetv2_train and its children): less sensitive to a shared machine than wall time
CPU_S=$(python - "$TR" "$PLANS" "$ROOT/logs/measure_${TR}_${PLANS}.log" "$CONF" <<'PY'
import resource, subprocess, sys
tr, plans, log, conf = sys.argv[1:5]
with open(log, "w") as f:
    rc = subprocess.call(["nnUNetv2_train", "4", conf, "0", "-tr", tr, "-p", plans, "-device", "cpu"],
                         stdout=f, stderr=subprocess.STDOUT)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
if rc:
    sys.exit(rc)
print(u.ru_utime + u.ru_stime)
PY
)
t1=$(date +%s.%N)
kill $LOADPID
python - "$OUT" "$t0" "$t1" "$ROOT/logs/load_${TR}_${PLANS}.txt" "$CPU_S" <<'PY'
import json, sys, torch
out, t0, t1, loadf, cpu_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
ck = torch.load(f"{out}/checkpoint_final.pth", map_location="cpu", weights_only=False)
lg = ck["logging"]
ep = [e - s for s, e in zip(lg["epoch_start_timestamps"], lg["epoch_end_timestamps"])]
loads = [float(x) for x in open(loadf).read().split()]
val_s = t1 - lg["epoch_end_timestamps"][-1]
print(json.dumps({"trainer": ck["trainer_name"], "epoch_s": ep, "total_s": t1 - t0, "cpu_s": cpu_s,
                  "after_last_epoch_s (final validation + exit)": val_s,
                  "load_avg_1min": {"min": min(loads), "max": max(loads), "mean": sum(loads) / len(loads)}}))
PY

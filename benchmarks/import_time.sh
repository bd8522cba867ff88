#!/bin/bash
# Seconds to import hypera_nnunet.nnunet.trainers after nnU-Net's trainer is imported, 7 times, for the checkout at
# TREE (default: this repository), with the number of trainer names exported and hypera_nnunet modules loaded.
#   git worktree add /tmp/before 1af78d9 && bash benchmarks/import_time.sh /tmp/before   # before the redesign
#   bash benchmarks/import_time.sh                                                       # now
# Run one at a time (flock /tmp/cpu.lock ...): timings on a busy machine mean nothing.
tree=$(realpath "${1:-$(dirname "$0")/..}")
py=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
cd "$tree" || exit 1
for _ in 1 2 3 4 5 6 7; do PYTHONPATH="$tree" "$py" -c "
import sys, time
import nnunetv2.training.nnUNetTrainer.nnUNetTrainer
t = time.perf_counter(); import hypera_nnunet.nnunet.trainers as tr; d = time.perf_counter() - t
print(round(d, 4), len(tr.__all__), sum(1 for m in list(sys.modules) if m.startswith('hypera_nnunet')))"; done

"""Per-epoch train loss and nnU-Net's pseudo Dice from the training logs of nnU-Net fold folders, as JSON.

Used to document why short CPU budgets were rejected: on Hippocampus they never leave nnU-Net's early
all-background phase (pseudo Dice 0). Usage: python benchmarks/bench_pseudo_dice.py FOLD_DIR [...] > out.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def read(fold_dir: Path) -> dict:
    logs = sorted(Path(fold_dir).glob("training_log_*.txt"))
    epochs, losses, dice, times = [], [], [], []
    for log in logs:
        for line in log.read_text().splitlines():
            if m := re.search(r"Epoch (\d+)$", line):
                epochs.append(int(m.group(1)))
            elif m := re.search(r"train_loss (-?[\d.]+)", line):
                losses.append(float(m.group(1)))
            elif "Pseudo dice" in line:
                dice.append([float(x) for x in re.findall(r"np\.float32\((-?[\d.e-]+)\)", line)])
            elif m := re.search(r"Epoch time: ([\d.]+) s", line):
                times.append(float(m.group(1)))
    summary = Path(fold_dir) / "validation" / "summary.json"
    final = None
    if summary.is_file():
        final = {k: v["Dice"] for k, v in json.loads(summary.read_text())["mean"].items()}
    return {"folder": str(fold_dir), "epochs_finished": len(dice), "train_loss": losses, "pseudo_dice": dice,
            "epoch_s": times, "validation_dice": final}


if __name__ == "__main__":
    print(json.dumps([read(Path(p)) for p in sys.argv[1:]], indent=1))

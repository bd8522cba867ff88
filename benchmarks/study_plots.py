"""Optuna's own plots of a search study as PNG: optimisation history, parameter importances (fANOVA; needs two
finished trials) and parallel coordinates, with Optuna's matplotlib backend (``optuna.visualization.matplotlib``).

    python benchmarks/study_plots.py /work/nn/search_s8 --out docs/img --prefix search_cpu_v3
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--prefix", required=True)
    args = ap.parse_args(argv)
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    from hypera_nnunet.search.study import open_study

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study, _, _ = open_study(args.study)
    args.out.mkdir(parents=True, exist_ok=True)
    made = []
    for name, fn in (("history", ovm.plot_optimization_history), ("importance", ovm.plot_param_importances),
                     ("parallel", ovm.plot_parallel_coordinate)):
        try:
            ax = fn(study)
        except (ValueError, RuntimeError) as e:  # e.g. importances with fewer than two finished trials
            print(f"{name}: not drawn ({e})")
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        path = args.out / f"{args.prefix}_{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.append(str(path))
    print("\n".join(made))
    return 0


if __name__ == "__main__":
    sys.exit(main())

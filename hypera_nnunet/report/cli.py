"""``hypera-nnunet report PATH [-o OUT.html]``: what the agents did, as one HTML file that opens from disk.

    hypera-nnunet report nnUNet_results/Dataset004_Hippocampus/HyperaTrainer__nnUNetPlans__3d_fullres/fold_0
    hypera-nnunet report hypera_benchmark/ -o bench.html

PATH is a fold's results folder (with ``hypera/decisions.jsonl``: learning curves, one panel per knob, rewards,
trust, rollbacks, exploration phases, the agents' time) or a benchmark output folder (with ``results.json``:
paired tables, learning curves per run, power). Default output: ``fold_X/hypera/report.html`` or
``<benchmark>/report.html``. Needs plotly (``pip install 'hypera-nnunet[report]'``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run_cli(args) -> int:
    from hypera_nnunet.report import write_report
    from hypera_nnunet.report.html import require_plotly

    require_plotly()
    out = write_report(Path(args.path), Path(args.output) if args.output else None)
    print(f"report: {out}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``report`` to the ``hypera-nnunet`` subcommands (``func`` returns the exit code)."""
    p = subparsers.add_parser("report", help="one self-contained HTML report of a fold's run or a benchmark",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="a fold's results folder (fold_X/) or a benchmark output folder")
    p.add_argument("-o", "--output", default=None, help="the HTML file to write (default: beside the input)")
    p.set_defaults(func=run_cli)
    return p

"""``hypera-nnunet report PATH``: one self-contained HTML file per fold, benchmark or search study.

:func:`report_kind` tells which input ``PATH`` is; :func:`write_report` writes its report. The pages are built
with plotly (:mod:`.html`), its JavaScript inlined, so a report opens from disk with no server and no network.
"""

from __future__ import annotations

from pathlib import Path

from hypera_nnunet.errors import HyperaError

RUN, BENCHMARK, STUDY = "run", "benchmark", "study"


def _folder(path: Path) -> Path:
    """A file inside a report input stands for its folder (``decisions.jsonl``, ``results.json``)."""
    path = Path(path)
    if path.is_file() and path.name == "decisions.jsonl" and path.parent.name == "hypera":
        return path.parent.parent
    if path.is_file() and path.name == "results.json":
        return path.parent
    return path


def report_kind(path: Path) -> str:
    """``"run"`` (a fold's results folder with ``hypera/decisions.jsonl``), ``"benchmark"`` (a folder with a
    benchmark's ``results.json``) or ``"study"`` (a ``hypera-nnunet search`` study folder).

    :raises HyperaError: anything else, in one line.
    """
    from hypera_nnunet.report.benchmark_report import is_benchmark_folder
    from hypera_nnunet.report.run_report import is_run_folder
    from hypera_nnunet.report.study import is_study_folder, journal_of

    folder = _folder(path)
    if not folder.exists():
        raise HyperaError(f"{folder} does not exist.")
    if is_run_folder(folder):
        return RUN
    if is_benchmark_folder(folder):
        return BENCHMARK
    if is_study_folder(folder):
        return STUDY
    journal = journal_of(folder)
    if journal is not None:
        raise HyperaError(f"{folder} holds an Optuna journal ({journal.name}) but no study.json: report a study "
                          "folder made by `hypera-nnunet search run`.")
    folds = sorted(p.name for p in folder.glob("fold_*") if is_run_folder(p)) if folder.is_dir() else []
    hint = f"; it has HYPERA folds, report one of them: {', '.join(folds)}" if folds else ""
    raise HyperaError(f"{folder} is neither a fold's results folder (with hypera/decisions.jsonl), a benchmark "
                      f"output folder (with results.json) nor a search study (with study.json){hint}.")


def write_report(path: Path, out: Path | None = None) -> Path:
    """Write the HTML report of ``path`` (to ``out``, or the input's default place); returns the file written.

    Defaults: a fold's ``hypera/report.html``, a benchmark's or a study's ``report.html``.
    """
    kind = report_kind(path)
    folder = _folder(path)
    if kind == RUN:
        from hypera_nnunet.report.run_report import write_run_report

        return write_run_report(folder, out)
    if kind == STUDY:
        from hypera_nnunet.report.study import write_study_report

        return write_study_report(folder, out)
    from hypera_nnunet.report.benchmark_report import write_benchmark_report

    return write_benchmark_report(folder, out)

"""The report of a search study folder (``hypera-nnunet search``): history, parallel coordinates, importances,
each trial's learning curve, and the budget spent.

The figures are Optuna's own (``optuna.visualization``, plotly figures); the budget panel and the tables come from
:func:`hypera_nnunet.search.study.summary`. A folder is a study when it holds ``study.json`` and Optuna's journal.
Importances (Optuna's fANOVA evaluator) need at least two completed trials; with fewer the panel is a note.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.report.html import Page, fmt, require_plotly

JOURNAL_PATTERNS = ("*.log", "*.journal", "*.jsonl")
INSTALL = "study reports need Optuna: pip install 'hypera-nnunet[search]'"


def optuna_available() -> bool:
    return importlib.util.find_spec("optuna") is not None


def _is_journal(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline(1 << 16)
        rec = json.loads(first)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(rec, dict) and "op_code" in rec


def journal_of(path: Path) -> Path | None:
    """The Optuna journal file in a folder (or the file itself); None if there is none."""
    path = Path(path)
    if path.is_file():
        return path if _is_journal(path) else None
    if path.is_dir():
        for pattern in JOURNAL_PATTERNS:
            for p in sorted(path.glob(pattern)):
                if _is_journal(p):
                    return p
    return None


def is_study_folder(path: Path) -> bool:
    from hypera_nnunet.search.ray_backend import RESULTS_FILE
    from hypera_nnunet.search.study import JOURNAL_FILE, STUDY_FILE

    path = Path(path)
    return (path / STUDY_FILE).is_file() and ((path / JOURNAL_FILE).is_file() or (path / RESULTS_FILE).is_file())


def _figure(page: Page, name: str, make, title: str) -> None:
    try:
        fig = make()
    except (ValueError, RuntimeError, ZeroDivisionError) as e:  # Optuna's "needs more trials" and the like
        page.note(f"{title}: not drawn ({type(e).__name__}: {e})")
        return
    fig.update_layout(title=title, height=420)
    page.figure(fig, name)


def _optuna_figures(page: Page, vis, study) -> None:
    _figure(page, "history", lambda: vis.plot_optimization_history(study), "Optimization history")
    _figure(page, "parallel", lambda: vis.plot_parallel_coordinate(study), "Parallel coordinates")
    _figure(page, "importance", lambda: vis.plot_param_importances(study), "Parameter importances (fANOVA)")
    _figure(page, "curves", lambda: vis.plot_intermediate_values(study),
            "Each trial's reported pseudo-Dice EMA per epoch (pruned trials end early)")


def write_study_report(folder: Path, out: Path | None = None) -> Path:
    """Write ``report.html`` of a study folder (or ``out``); returns the path."""
    if not optuna_available():
        raise HyperaError(f"{folder} is a search study; {INSTALL}")
    require_plotly()
    import optuna.visualization as vis
    import plotly.graph_objects as go

    from hypera_nnunet.search.space import parse_space
    from hypera_nnunet.search.study import open_study, read_study_file, summary

    folder = Path(folder)
    s = summary(folder)
    meta = read_study_file(folder)
    space = parse_space(meta["space"], str(folder))
    ray = s["backend"] == "ray"
    study = None if ray else open_study(folder, meta)[0]
    page = Page(f"Search study: {folder.name} ({space.objective} objective, trainer {space.trainer})")
    best = s["best"]
    page.table(["item", "value"], [
        ["space", meta.get("space_file", "")],
        ["sampler / pruner", f"{s['sampler']} / {s['pruner']}"],
        ["trials", str(s["trials"])],
        ["states", ", ".join(f"{n} {k.lower()}" for k, n in sorted(s["states"].items()))],
        ["best", "none yet" if best is None else f"trial {best['number']}: {best['value']:.4f}"],
        ["budget spent", f"{s['epochs_spent']} epochs = {s['full_trainings_spent']:.2f} full trainings of "
                         f"{s['max_epochs']} epochs"],
    ], name="summary")
    if best is not None:
        page.table(["parameter", "best value"], [[k, fmt(v) if isinstance(v, float) else str(v)]
                                                  for k, v in best["params"].items()], name="best")
    page.heading("History and parameters")
    if ray:
        page.note("A Ray Tune study (ray_results.json): Optuna's history, importance and parameter plots need an "
                  "Optuna journal; each trial's lineage (PBT) is in the table below.")
    else:
        _optuna_figures(page, vis, study)
    page.heading("Budget")
    rows = s["rows"]
    fig = go.Figure(go.Bar(x=[r["number"] for r in rows], y=[int(r["epochs"] or 0) for r in rows],
                           marker_color=["#2ca02c" if r["state"] == "COMPLETE" else "#ff7f0e"
                                         if r["state"] == "PRUNED" else "#d62728" for r in rows]))
    fig.update_layout(title="Epochs trained per trial (green complete, orange pruned, red failed)",
                      xaxis_title="trial", yaxis_title="epochs", height=360)
    page.figure(fig, "budget")
    page.table(["#", "state", "value", "epochs", "parameters", "note"], [
        [str(r["number"]), r["state"], r["value"] if r["value"] is not None else "", int(r["epochs"] or 0),
         ", ".join(f"{k}={fmt(v) if isinstance(v, float) else v}" for k, v in r["params"].items()),
         "; ".join(x for x in (("worker died, queued again" if r["stale"] else ""),
                               (f"resumes trials/{r['resume_of']}" if r["resume_of"] else ""),
                               "; ".join(f"continued trial {x['restored_from_trial']}'s checkpoint at epoch "
                                         f"{x['epoch']}" for x in r.get("lineage") or [] if x.get("exploit")),
                               (r["error"] or "")) if x)] for r in rows], name="trials")
    return page.write(Path(out) if out is not None else folder / "report.html")

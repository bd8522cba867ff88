"""The report of a benchmark output folder, from the ``results.json`` that ``hypera-nnunet benchmark`` writes
(:mod:`hypera_nnunet.benchmark.report`).

In this order: the run-level paired table (one value per training run = seed x fold, the unit of replication),
the per-class tables (per trainer, then each comparison case by case), the learning curves of every arm on one
axis per run, the time per epoch, and the power table: the smallest difference in mean foreground Dice per run
that 5, 10 or 15 paired runs would detect at the measured sd of the paired run-level differences.

Power (paired t approximation, two-sided alpha 0.05, power 0.8): with ``n`` pairs and ``sd`` the sample
standard deviation of the per-run differences, the smallest detectable mean difference is
``delta = (t(1 - alpha/2, n - 1) + t(power, n - 1)) * sd / sqrt(n)``, ``t(q, df)`` the quantile of Student's t.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine.metrics import DEFAULT_NSD_TOLERANCE_MM
from hypera_nnunet.report.html import Page, fmt, require_plotly

ALPHA = 0.05
POWER = 0.8
POWER_PAIRS = (5, 10, 15)
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def is_benchmark_folder(path: Path) -> bool:
    return (Path(path) / "results.json").is_file()


def read_results(folder: Path) -> dict:
    """``results.json`` of a benchmark folder. :raises HyperaError: missing, not JSON, or not a benchmark's."""
    p = Path(folder) / "results.json"
    if not p.is_file():
        raise HyperaError(f"{p} does not exist: {folder} is not a benchmark output folder.")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HyperaError(f"{p} is not valid JSON; was the benchmark killed while writing it?") from None
    keys = ("labels", "baseline", "per_trainer", "paired")
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise HyperaError(f"{p} is not a benchmark's results.json: it lacks {', '.join(missing)}.")
    return data


def smallest_detectable(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """``(t(1 - alpha/2, n-1) + t(power, n-1)) * sd / sqrt(n)``: the smallest mean paired difference a two-sided
    paired t test at ``alpha`` detects with probability ``power`` from ``n`` pairs (normal-shift approximation)."""
    from scipy.stats import t

    if n < 2 or not math.isfinite(sd):
        return math.nan
    return float((t.ppf(1 - alpha / 2, n - 1) + t.ppf(power, n - 1)) * sd / math.sqrt(n))


def _sd(values) -> float:
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if len(v) < 2:
        return math.nan
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def _ms(m: dict | None, d: int = 4) -> str:
    if not m or not m.get("n") or m.get("mean") is None:
        return "n/a"
    return f"{m['mean']:.{d}f}" + (f" ± {m['sd']:.{d}f}" if m.get("sd") is not None else "") + f" (n={m['n']})"


def _p(x) -> str:
    return "n/a" if x is None else (f"{x:.2e}" if x < 1e-3 else f"{x:.4f}")


def _ci(r: dict, d: int = 4) -> str:
    return f"[{fmt(r.get('ci_low'), d)}, {fmt(r.get('ci_high'), d)}]"


def run_level_rows(results: dict) -> list[list]:
    rows = []
    for name, pr in results["paired"].items():
        rl = pr.get("run_level_fg_dice") or {}
        n = rl.get("n") or 0
        diffs = pr.get("per_fold_fg_dice_diff") or {}
        rows.append([pr.get("direction", name), n, rl.get("mean_diff"), _ci(rl), _p(rl.get("sign_flip_p")),
                     _p(rl.get("t_p")), _p(rl.get("wilcoxon_p")),
                     f"{rl.get('wins', 0)} / {rl.get('losses', 0)}", f"{2 / 2 ** n:.3g}" if n else "n/a",
                     ", ".join(f"{k} {v:+.4f}" for k, v in diffs.items() if v is not None) or "none"])
    return rows


def power_rows(results: dict) -> list[list]:
    """The harness's own power table (noncentral t, ``paired.<t>.power`` in results.json) where it has one;
    otherwise :func:`smallest_detectable` (the normal-shift approximation) from the per-run differences."""
    rows = []
    for name, pr in results["paired"].items():
        diffs = [v for v in (pr.get("per_fold_fg_dice_diff") or {}).values() if v is not None]
        sd = _sd(diffs)
        table = (pr.get("power") or {}).get("min_detectable_difference") or {}
        if table:
            cells = [table.get(str(n), table.get(n, "n/a")) for n in POWER_PAIRS]
        else:
            cells = [smallest_detectable(sd, n) if math.isfinite(sd) else "n/a" for n in POWER_PAIRS]
        rows.append([pr.get("direction", name), len(diffs), sd if math.isfinite(sd) else "n/a (needs 2 runs)"]
                    + [c if c is None or not isinstance(c, float) or math.isfinite(c) else "n/a" for c in cells])
    return rows


def curves_figure(results: dict, run: str):
    """Every arm's pseudo-Dice in one run (seed x fold) on one axis: EMA solid, per epoch dotted."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title={"text": f"{run}: pseudo-Dice (EMA solid, per epoch dotted)", "font": {"size": 14}},
                      height=340, template="plotly_white", margin={"l": 55, "r": 20, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": -0.3, "font": {"size": 10}})
    fig.update_xaxes(title_text="epoch", tickformat="d")
    fig.update_yaxes(title_text="pseudo-Dice")
    for i, t in enumerate(results.get("trainers") or list(results.get("curves") or {})):
        c = (results.get("curves") or {}).get(t, {}).get(run)
        if not c:
            continue
        color = COLORS[i % len(COLORS)]
        for key, dash, label in (("ema_fg_dice", "solid", "EMA"), ("mean_fg_dice", "dot", "per epoch")):
            ys = c.get(key) or []
            fig.add_trace(go.Scatter(x=list(range(len(ys))), y=ys, name=f"{t} {label}", mode="lines+markers",
                                     line={"color": color, "dash": dash}))
    return fig


def curve_runs(results: dict) -> list[str]:
    runs: list[str] = []
    for per in (results.get("curves") or {}).values():
        runs += [k for k in per if k not in runs]
    return sorted(runs, key=_run_order)


def _run_order(k: str):
    seed, _, fold = k.partition("_fold")
    try:
        return (int(seed.replace("seed", "")), int(fold), k)
    except ValueError:
        return (1 << 30, 0, k)


def build_page(results: dict, folder: Path) -> Page:
    require_plotly()
    meta = results.get("meta") or {}
    proto = (meta.get("protocol") or {}).get("name", "?")
    lab = results["labels"]
    page = Page(title=f"Benchmark: {meta.get('dataset', folder.name)} {meta.get('configuration', '')}, "
                      f"protocol {proto}".replace("  ", " "))
    page.note(f"{folder / 'results.json'}; generated {meta.get('generated_utc', '?')} by "
              f"`{meta.get('command', '?')}`. Baseline {results['baseline']}.")
    if results.get("missing_runs"):
        page.note(f"Not finished (not in the tables): {', '.join(results['missing_runs'])}.")

    page.heading("Run level: mean foreground Dice per training run, paired")
    page.note("One value per training run (seed x fold), the unit of replication. Difference = candidate minus "
              "baseline; 95% bootstrap CI; the sign-flip permutation p (two-sided, the primary test), the paired "
              "t-test p and the Wilcoxon signed-rank p; the sign-flip and Wilcoxon p cannot fall below 2 / 2^n "
              "with n runs.")
    page.table(["comparison", "runs", "mean diff", "95% CI", "sign-flip p", "t-test p", "Wilcoxon p",
                "better / worse", "smallest possible p", "per run"], run_level_rows(results), name="run_level")
    for name, pr in results["paired"].items():
        if pr.get("refused"):
            page.note(f"Not paired: {pr.get('direction', name)}: {pr['refused']}")

    page.heading("Per class")
    page.table(["trainer", "runs"] + [f"Dice {lab[k]}" for k in lab] + ["Dice fg mean"],
               [[t, len(pt.get("folds_finished") or [])] + [_ms((pt.get("dice") or {}).get(k)) for k in lab]
                + [_ms(pt.get("fg_dice"))] for t, pt in results["per_trainer"].items()],
               caption="Validation Dice per class (mean ± sd over runs of the per-run mean)", name="dice_per_class")
    page.table(["trainer"] + [f"HD95 {lab[k]} (mm)" for k in lab] + [f"NSD {lab[k]}" for k in lab],
               [[t] + [_ms((pt.get("hd95") or {}).get(k), 2) for k in lab] + [_ms((pt.get("nsd") or {}).get(k))
                                                                              for k in lab]
                for t, pt in results["per_trainer"].items()],
               caption=f"HD95 and NSD at {results.get('nsd_tolerance_mm', DEFAULT_NSD_TOLERANCE_MM):g} mm "
                       f"({results.get('nsd_definition', 'NSD definition not recorded')}; mean ± sd over runs)",
               name="surface_per_class")
    page.note("Case-level tables: differences per validation case within runs. Cases of one run share one trained "
              "model, so these p-values ignore run-to-run variance and overstate the evidence; the run-level table "
              "above is the one to read. Positive Dice/NSD and negative HD95 = candidate better.")
    for name, pr in results["paired"].items():
        rows = []
        for key, title, d in (("dice", "Dice", 4), ("hd95", "HD95 (mm)", 3), ("nsd", "NSD", 4)):
            for k in lab:
                r = (pr.get(key) or {}).get(k)
                if r:
                    better, worse = (r.get("losses"), r.get("wins")) if key == "hd95" else (r.get("wins"),
                                                                                          r.get("losses"))
                    rows.append([f"{title} {lab[k]}", r.get("n"), r.get("mean_diff"), _ci(r, d),
                                 _p(r.get("wilcoxon_p")), f"{better} / {worse} / {r.get('ties')}"])
        page.table(["metric", "cases", "mean diff", "95% CI", "Wilcoxon p", "better / worse / tied"], rows,
                   caption=f"Case level: {pr.get('direction', name)} ({pr.get('n_cases', 0)} cases)",
                   name=f"case_level:{name}")

    page.heading("Learning curves per run")
    runs = curve_runs(results)
    if not runs:
        page.note("No learning curves in results.json (no finished run with a checkpoint).")
    for run in runs:
        page.figure(curves_figure(results, run), name=f"curves:{run}", small=True)

    page.heading("Time per epoch and the agents' overhead")
    rows = []
    for t, pt in results["per_trainer"].items():
        e, ov = pt.get("epoch_s") or {}, (pt.get("overhead") or {}).get("all")
        rows.append([t, e.get("n", 0), e.get("median"), e.get("mean"),
                     ov["overhead_s"] if ov else "–", f"{100 * ov['share']:.3f}%" if ov else "–"])
    page.table(["trainer", "epochs", "median epoch s", "mean epoch s", "agents' overhead s", "share of epoch time"],
               rows, name="time")

    page.heading("Power: the smallest difference these runs could detect")
    page.note(f"Smallest detectable mean difference in foreground Dice per run with n paired runs, at the measured "
              f"sd of the paired run-level differences; two-sided alpha {ALPHA}, power {POWER}: the harness's "
              f"noncentral-t table where results.json has one, else the paired t approximation "
              f"delta = (t(1 - alpha/2, n - 1) + t(power, n - 1)) × sd / √n, t(q, df) the quantile of Student's t.")
    page.table(["comparison", "runs measured", "sd of differences"] + [f"{n} pairs" for n in POWER_PAIRS],
               power_rows(results), name="power")
    return page


def write_benchmark_report(folder: Path, out: Path | None = None) -> Path:
    """Write the benchmark folder's report (default ``<folder>/report.html``); returns its path."""
    folder = Path(folder)
    return build_page(read_results(folder), folder).write(Path(out) if out else folder / "report.html")

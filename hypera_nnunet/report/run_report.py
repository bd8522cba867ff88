"""The report of one fold: what the agents did, epoch by epoch.

Read from the fold's results folder (``.../fold_X/``): ``hypera/decisions.jsonl`` (one line per epoch: phase,
values and multipliers of every knob, rewards, trust, rollback, the state signals, ``overhead_s``),
``hypera/config.json`` (trainer, agents), nnU-Net's ``training_log_*.txt`` (epoch times and HYPERA's event
lines) and, when validation has run, ``validation/summary.json``. Panels: losses, pseudo-Dice and its EMA, one
small panel per knob (its multiplier of nnU-Net's value, 1 = nnU-Net's; a switch as on/off steps), rewards per
agent, trust, and the agents' time per epoch; every time axis shades the exploration phases and marks the
rollbacks.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.report.html import Page, fmt, require_plotly

PHASE_COLORS = {"explore": "rgba(255,165,0,0.16)", "exploit": "rgba(70,130,180,0.16)",
                "fine_tune": "rgba(60,179,113,0.18)", "off": "rgba(128,128,128,0.16)"}
#: the phase of an epoch whose line has none: the agents were switched off (after repeated rollbacks)
OFF = "off"
ROLLBACK_COLOR = "#d62728"
SMALL_H, FULL_H = 270, 360
#: ``overhead_s`` parts that are already inside another part (not stacked twice)
NESTED_PARTS = ("total", "dataloader_rebuild")
_LOG_NAME = re.compile(r"training_log_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)\.txt$")


@dataclass(frozen=True)
class RunData:
    """What the report shows, read from one fold folder."""

    folder: Path
    records: tuple[dict, ...]
    skipped_lines: tuple[int, ...]  # 1-based lines of decisions.jsonl that were not JSON (a torn last line)
    config: dict | None
    epoch_s: dict[int, float]  # nnU-Net's "Epoch time" per epoch, from the training logs
    events: tuple[tuple[str, str], ...]  # (time stamp, text) of HYPERA's lines in the training logs
    validation: dict[str, float] | None  # nnU-Net's validation mean Dice per label

    @property
    def epochs(self) -> list[int]:
        return [int(r["epoch"]) for r in self.records]

    @property
    def knobs(self) -> list[str]:
        out: list[str] = []
        for r in self.records:
            out += [k for k in (r.get("multipliers") or {}) if k not in out]
        return out

    @property
    def agents(self) -> list[str]:
        out: list[str] = list((self.config or {}).get("agents") or [])
        for r in self.records:
            out += [a for a in (r.get("rewards") or {}) if a not in out]
        return out

    def is_switch(self, knob: str) -> bool:
        """A knob whose recorded values are on/off (``nesterov``), not numbers."""
        vals = [(r.get("values") or {}).get(knob) for r in self.records]
        return any(isinstance(v, bool) for v in vals)

    @property
    def rollbacks(self) -> list[tuple[int, str]]:
        return [(int(r["epoch"]), str(r["rollback"])) for r in self.records if r.get("rollback")]

    @property
    def phases(self) -> list[tuple[str, int, int]]:
        """Runs of consecutive epochs in one exploration phase: ``(phase, first epoch, last epoch)``."""
        out: list[tuple[str, int, int]] = []
        for r in self.records:
            p, e = str(r.get("phase") or OFF), int(r["epoch"])
            if out and out[-1][0] == p and out[-1][2] == e - 1:
                out[-1] = (p, out[-1][1], e)
            else:
                out.append((p, e, e))
        return out


def is_run_folder(path: Path) -> bool:
    return (Path(path) / "hypera" / "decisions.jsonl").is_file()


def read_decisions(path: Path) -> tuple[tuple[dict, ...], tuple[int, ...]]:
    """Records of ``decisions.jsonl``, the last per epoch (a resumed run repeats epochs); lines that are not JSON
    (a line torn by a kill) are skipped and returned by number."""
    by_epoch: dict[int, dict] = {}
    skipped = []
    for i, line in enumerate(Path(path).read_text().splitlines()):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            by_epoch[int(rec["epoch"])] = rec
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            skipped.append(i + 1)
    return tuple(by_epoch[k] for k in sorted(by_epoch)), tuple(skipped)


def _log_key(p: Path):
    m = _LOG_NAME.search(p.name)
    return tuple(int(x) for x in m.groups()) if m else (0,) * 6 + (p.name,)


def read_training_logs(folder: Path) -> tuple[dict[int, float], tuple[tuple[str, str], ...]]:
    """Epoch times and HYPERA's event lines from nnU-Net's ``training_log_*.txt`` (oldest first; a resumed
    epoch's later time wins)."""
    epoch_s: dict[int, float] = {}
    events = []
    for p in sorted(Path(folder).glob("training_log_*.txt"), key=_log_key):
        epoch = None
        for line in p.read_text(errors="replace").splitlines():
            stamp, _, text = line.partition(": ")
            text = text.strip()
            if m := re.fullmatch(r"Epoch (\d+)", text):
                epoch = int(m.group(1))
            elif (m := re.fullmatch(r"Epoch time: ([0-9.]+) s", text)) and epoch is not None:
                epoch_s[epoch] = float(m.group(1))
            elif text.startswith("HYPERA: "):
                events.append((stamp.strip(), text[len("HYPERA: "):]))
    return epoch_s, tuple(events)


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HyperaError(f"{path} is not valid JSON; was it written by an interrupted run?") from None
    if not isinstance(data, dict):
        raise HyperaError(f"{path} is not a JSON object.")
    return data


def read_run(folder: Path) -> RunData:
    """Everything :func:`build_page` shows. :raises HyperaError: no ``hypera/decisions.jsonl``, or no record."""
    folder = Path(folder)
    log = folder / "hypera" / "decisions.jsonl"
    if not log.is_file():
        raise HyperaError(f"{log} does not exist: {folder} is not the results folder of a HYPERA fold.")
    records, skipped = read_decisions(log)
    if not records:
        raise HyperaError(f"{log} has no decision line yet (the first is written after epoch 0).")
    summary = _read_json(folder / "validation" / "summary.json")
    validation = None
    if summary and isinstance(summary.get("mean"), dict):
        validation = {str(k): v.get("Dice") for k, v in summary["mean"].items() if isinstance(v, dict)}
    epoch_s, events = read_training_logs(folder)
    return RunData(folder=folder, records=records, skipped_lines=skipped,
                   config=_read_json(folder / "hypera" / "config.json"), epoch_s=epoch_s, events=events,
                   validation=validation)


def _num(x):
    """A number for plotly: None for missing or non-finite values."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _value_text(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value_text(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _figure(title: str, height: int, ytitle: str = ""):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title={"text": title, "font": {"size": 14}}, height=height, template="plotly_white",
                      margin={"l": 55, "r": 20, "t": 40, "b": 40}, hovermode="x unified",
                      legend={"orientation": "h", "y": -0.25, "font": {"size": 10}})
    fig.update_xaxes(title_text="epoch", tickformat="d")
    if ytitle:
        fig.update_yaxes(title_text=ytitle)
    return fig


def _time_axis(fig, run: RunData) -> None:
    """Shade the exploration phases and mark the rollbacks (at the epoch whose end rolled back)."""
    for phase, a, b in run.phases:
        fig.add_vrect(x0=a - 0.5, x1=b + 0.5, fillcolor=PHASE_COLORS.get(phase, PHASE_COLORS[OFF]),
                      line_width=0, layer="below")
    for e, _ in run.rollbacks:
        fig.add_vline(x=e, line={"color": ROLLBACK_COLOR, "dash": "dash", "width": 2})
    if run.epochs:
        fig.update_xaxes(range=[min(run.epochs) - 0.5, max(run.epochs) + 0.5])


def _state(run: RunData, key: str) -> list:
    return [_num((r.get("state") or {}).get(key)) for r in run.records]


def _lines_figure(run: RunData, title: str, series: dict[str, list], height: int, ytitle: str = "",
                  dashes: dict[str, str] | None = None):
    import plotly.graph_objects as go

    fig = _figure(title, height, ytitle)
    for name, ys in series.items():
        fig.add_trace(go.Scatter(x=run.epochs, y=ys, name=name, mode="lines+markers",
                                 line={"dash": (dashes or {}).get(name, "solid")}))
    _time_axis(fig, run)
    return fig


def knob_figure(run: RunData, knob: str):
    """One knob: its multiplier of nnU-Net's value (reference line at 1), or a switch's on/off as steps."""
    import plotly.graph_objects as go

    vals = [(r.get("values") or {}).get(knob) for r in run.records]
    mults = [_num((r.get("multipliers") or {}).get(knob)) for r in run.records]
    hover = [f"value {_value_text(v)}, multiplier {fmt(m, 3)}" for v, m in zip(vals, mults)]
    if run.is_switch(knob):
        fig = _figure(f"{knob} (switch)", SMALL_H)
        ys = [None if not isinstance(v, bool) else int(v) for v in vals]
        fig.add_trace(go.Scatter(x=run.epochs, y=ys, name=knob, mode="lines+markers", line_shape="hv",
                                 text=hover, hovertemplate="%{text}<extra></extra>"))
        if any(v is True for v in vals):  # a switch is on only where nnU-Net's own setting is on
            fig.add_hline(y=1, line={"color": "black", "dash": "dot", "width": 1},
                          annotation_text="nnU-Net's setting", annotation_position="bottom right")
        fig.update_yaxes(tickvals=[0, 1], ticktext=["off", "on"], range=[-0.25, 1.25])
    else:
        fig = _figure(f"{knob}", SMALL_H, "multiplier of nnU-Net's value")
        fig.add_trace(go.Scatter(x=run.epochs, y=mults, name=knob, mode="lines+markers", text=hover,
                                 hovertemplate="%{text}<extra></extra>"))
        fig.add_hline(y=1, line={"color": "black", "dash": "dot", "width": 1},
                      annotation_text="nnU-Net's value (×1)", annotation_position="bottom right")
    fig.update_layout(showlegend=False)
    _time_axis(fig, run)
    return fig


def overhead_figure(run: RunData):
    """The agents' time per epoch (``overhead_s``, ms, stacked by part) and, with epoch times, its share."""
    import plotly.graph_objects as go

    parts: list[str] = []
    for r in run.records:
        parts += [k for k in (r.get("overhead_s") or {}) if k not in NESTED_PARTS and k not in parts]
    fig = _figure("Agents' time per epoch (overhead_s)", FULL_H, "ms")
    for p in parts:
        fig.add_trace(go.Bar(x=run.epochs, y=[1000 * ((r.get("overhead_s") or {}).get(p) or 0.0)
                                              for r in run.records], name=p))
    fig.update_layout(barmode="stack")
    share = [None if e not in run.epoch_s or not run.epoch_s[e] else
             100 * ((r.get("overhead_s") or {}).get("total") or 0.0) / run.epoch_s[e]
             for e, r in zip(run.epochs, run.records)]
    if any(s is not None for s in share):
        fig.add_trace(go.Scatter(x=run.epochs, y=share, name="share of epoch time (%)", yaxis="y2",
                                 mode="lines+markers", line={"color": "black"}))
        fig.update_layout(yaxis2={"title": "% of epoch time", "overlaying": "y", "side": "right",
                                  "rangemode": "tozero"})
    _time_axis(fig, run)
    return fig


def summary_rows(run: RunData) -> list[list[str]]:
    """The key-value table at the top of the report."""
    cfg = run.config or {}
    rb = run.rollbacks
    total = sum(((r.get("overhead_s") or {}).get("total") or 0.0) for r in run.records)
    ep_total = sum(run.epoch_s.get(e, 0.0) for e in run.epochs)
    rows = [["trainer", str(cfg.get("trainer", "unknown (no hypera/config.json)"))],
            ["agents", ", ".join(run.agents) or "none"],
            ["knobs", ", ".join(f"{k} (switch)" if run.is_switch(k) else k for k in run.knobs)],
            ["epochs recorded", f"{len(run.records)} ({min(run.epochs)}-{max(run.epochs)})"],
            ["applied", "yes" if all(r.get("applied", True) for r in run.records)
             else f"no in {sum(1 for r in run.records if not r.get('applied', True))} epochs (shadow or switched off)"],
            ["rollbacks", ", ".join(f"epoch {e} ({why})" for e, why in rb) if rb else "none"],
            ["exploration phases", ", ".join(f"{p} {a}-{b}" for p, a, b in run.phases)],
            ["agents' time", f"{total:.3f} s" + (f" = {100 * total / ep_total:.2f}% of {ep_total:.1f} s of epochs"
                                                 if ep_total else "")]]
    if run.validation:
        rows.append(["nnU-Net validation Dice", ", ".join(f"label {k}: {fmt(v)}" for k, v in run.validation.items())])
    return rows


def build_page(run: RunData) -> Page:
    require_plotly()
    cfg = run.config or {}
    page = Page(title=f"HYPERA run: {cfg.get('trainer', run.folder.parent.name)}, {run.folder.name}")
    page.note(f"{run.folder} — {len(run.records)} epochs from hypera/decisions.jsonl. One training run: a record "
              "of what the agents did, not evidence that they help (that needs paired runs: "
              "hypera-nnunet benchmark).")
    if run.skipped_lines:
        page.note(f"Skipped lines of decisions.jsonl that are not JSON (torn by a kill?): "
                  f"{', '.join(map(str, run.skipped_lines))}.")
    page.table(["", ""], summary_rows(run), caption="Run", name="summary")
    if run.events:
        page.table(["time", "event"], [list(ev) for ev in run.events], caption="HYPERA events (training log)",
                   name="events")
    page.legend([(p, PHASE_COLORS[p]) for p in PHASE_COLORS if p in {x[0] for x in run.phases}]
                + ([("rollback", ROLLBACK_COLOR)] if run.rollbacks else []),
                prefix="Shading: exploration phase (off: agents switched off); dashed red line: rollback (at the "
                       "end of that epoch).")
    page.heading("Learning curves")
    page.figure(_lines_figure(run, "Loss", {"train loss": _state(run, "train_loss"),
                                            "validation loss": _state(run, "val_loss")}, FULL_H, "loss"),
                name="loss")
    page.figure(_lines_figure(run, "Pseudo-Dice", {"pseudo-Dice": _state(run, "pseudo_dice"),
                                                   "EMA": _state(run, "ema_dice")}, FULL_H, "pseudo-Dice",
                              dashes={"pseudo-Dice": "dot"}), name="dice")
    page.heading("Knobs")
    page.note("Each knob's multiplier of nnU-Net's own value in that epoch (1 = nnU-Net's; hover for the real "
              "value). Switches are drawn as on/off steps.")
    for k in run.knobs:
        page.figure(knob_figure(run, k), name=f"knob:{k}", small=True)
    page.heading("Agents")
    page.figure(_lines_figure(run, "Reward per agent", {a: [_num((r.get("rewards") or {}).get(a))
                                                            for r in run.records] for a in run.agents}, FULL_H,
                              "reward"), name="rewards")
    fig = _lines_figure(run, "Trust per agent (share of its range it may use)",
                        {a: [_num((r.get("trust") or {}).get(a)) for r in run.records] for a in run.agents},
                        FULL_H, "trust")
    fig.update_yaxes(range=[0, 1.05])
    page.figure(fig, name="trust")
    page.figure(overhead_figure(run), name="overhead")
    return page


def write_run_report(folder: Path, out: Path | None = None) -> Path:
    """Write the fold's report (default ``fold_X/hypera/report.html``); returns its path."""
    run = read_run(folder)
    return build_page(run).write(Path(out) if out else Path(folder) / "hypera" / "report.html")

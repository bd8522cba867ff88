"""One self-contained HTML page: headings, notes, tables and plotly figures, plotly's JavaScript inlined once.

The page opens from disk with no server and no network (``include_plotlyjs=True`` for the first figure, the
others reuse it). Each figure sits in a ``<section class="panel" data-panel="...">``, so a reader (or a test
driving a browser) can count and find the panels.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from hypera_nnunet.common.atomic_io import atomic_write_text
from hypera_nnunet.errors import HyperaError

INSTALL_HINT = "pip install 'hypera-nnunet[report]'"

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.3em; }
.note { color: #555; font-size: 0.9em; max-width: 75em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 0.4em; }
.panel { border: 1px solid #eee; }
.swatch { display: inline-block; width: 1.2em; height: 0.9em; vertical-align: middle; margin: 0 0.3em 0 0.9em; }
"""


def require_plotly():
    """The ``plotly`` module; one line naming the extra to install when it is missing."""
    try:
        import plotly
    except ImportError:
        raise HyperaError(f"HTML reports need plotly, which is not installed: {INSTALL_HINT}") from None
    return plotly


def fmt(x, digits: int = 4) -> str:
    """A number for a table cell: ``n/a`` for None/NaN, integers as they are."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "on" if x else "off"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return "n/a" if x != x else f"{x:.{digits}f}"
    return str(x)


@dataclass
class Page:
    """An HTML page built in order; :meth:`render` returns the text, :meth:`write` writes it atomically."""

    title: str
    parts: list[str] = field(default_factory=list)
    n_figures: int = 0
    _grid_open: bool = False

    def heading(self, text: str, level: int = 2) -> None:
        self._close_grid()
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def note(self, text: str, raw: bool = False) -> None:
        self._close_grid()
        self.parts.append(f'<p class="note">{text if raw else html.escape(text)}</p>')

    def table(self, header: list[str], rows: list[list], caption: str | None = None, name: str = "") -> None:
        """A table of strings (numbers are formatted with :func:`fmt`)."""
        self._close_grid()
        out = [f'<table data-table="{html.escape(name)}">']
        if caption:
            out.append(f"<caption>{html.escape(caption)}</caption>")
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        for r in rows:
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" if isinstance(c, str) else
                                        f'<td class="num">{html.escape(fmt(c))}</td>' for c in r) + "</tr>")
        out.append("</table>")
        self.parts.append("\n".join(out))

    def legend(self, items: list[tuple[str, str]], prefix: str) -> None:
        """A row of coloured swatches (for shapes plotly does not put in a legend)."""
        self._close_grid()
        sw = "".join(f'<span class="swatch" style="background:{c}"></span>{html.escape(label)}' for label, c in items)
        self.parts.append(f'<p class="note">{html.escape(prefix)}{sw}</p>')

    def figure(self, fig, name: str, small: bool = False) -> None:
        """Add a plotly figure as one panel; ``small`` panels flow in a grid, others take the full width."""
        import plotly.io as pio

        if small and not self._grid_open:
            self.parts.append('<div class="grid">')
            self._grid_open = True
        elif not small:
            self._close_grid()
        div = pio.to_html(fig, full_html=False, include_plotlyjs=self.n_figures == 0,
                          config={"displayModeBar": False, "responsive": True})
        self.n_figures += 1
        self.parts.append(f'<section class="panel" data-panel="{html.escape(name)}">{div}</section>')

    def _close_grid(self) -> None:
        if self._grid_open:
            self.parts.append("</div>")
            self._grid_open = False

    def render(self) -> str:
        self._close_grid()
        body = "\n".join(self.parts)
        return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f"<title>{html.escape(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
                f"<h1>{html.escape(self.title)}</h1>\n{body}\n</body>\n</html>\n")

    def write(self, path: Path) -> Path:
        return atomic_write_text(path, self.render())

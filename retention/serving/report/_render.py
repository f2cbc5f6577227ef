"""Render report sections into one self-contained HTML file (Jinja2 + Plotly, no CDN)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

import retention
from retention.exceptions import ConfigError
from retention.serving.report._figures import DEFAULT_HEIGHT, REPORT_TEMPLATE
from retention.serving.report._section import ReportSection

__all__ = ["format_value", "render_report"]

#: options of every plot: no Plotly logo, no links out, PNG export at twice the size
PLOT_CONFIG: dict[str, Any] = {
    "responsive": True,
    "displaylogo": False,
    "showLink": False,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("retention.serving.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def _script_json(text: str) -> Markup:
    """JSON that is safe inside ``<script>``: ``<``, ``>`` and ``&`` become unicode escapes."""
    safe = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(safe)


@cache
def _template_json(name: str) -> str:
    return str(pio.json.to_json_plotly(pio.templates[name].to_plotly_json()))


def _house_style(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` with a height, and the report's look if it kept plotly's default one."""
    template = pio.json.to_json_plotly(fig.layout.template.to_plotly_json())
    styled = go.Figure(fig)
    if styled.layout.height is None:
        styled.update_layout(height=DEFAULT_HEIGHT)
    default = pio.templates.default
    if (
        isinstance(default, str)
        and default in pio.templates
        and template == _template_json(default)
    ):
        styled.update_layout(template=REPORT_TEMPLATE)
    return styled


def format_value(value: Any, digits: int = 4) -> str:
    """How a table cell reads: floats with ``digits`` significant digits, missing as a dash."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}g}"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else value.isoformat()
    if value is pd.NaT or value is pd.NA:
        return "–"
    return str(value)


def _table_context(table: pd.DataFrame) -> dict[str, Any]:
    show_index = not isinstance(table.index, pd.RangeIndex) or table.index.name is not None
    header = ([str(table.index.name or "")] if show_index else []) + [str(c) for c in table.columns]
    rows = []
    for key, row in zip(table.index, table.itertuples(index=False, name=None), strict=True):
        cells = [format_value(v) for v in row]
        rows.append(([format_value(key)] if show_index else []) + cells)
    return {"header": header, "rows": rows}


def render_report(
    sections: Sequence[ReportSection],
    path: Path | str,
    *,
    title: str,
    summary: Sequence[tuple[str, str]] = (),
    subtitle: str = "",
) -> Path:
    """Write ``sections`` as one self-contained HTML page and return its path.

    plotly.js is inlined once in the page, every figure is embedded as JSON and drawn in the
    browser; nothing is fetched from the network, so the file works offline and can be mailed.

    Parameters
    ----------
    sections : sequence of ReportSection
        The blocks of the page, in order.
    path : Path or str
        Where to write; missing parent folders are created.
    title : str
        Title of the page.
    summary : sequence of (str, str)
        Key facts shown as tiles under the title (label, value).
    subtitle : str
        One line under the title.

    Returns
    -------
    Path
        The written file.
    """
    out = Path(path)
    if out.exists() and out.is_dir():
        raise ConfigError(
            f"The report path {out} is a folder; pass a file name such as {out / 'report.html'}."
        )
    for section in sections:
        if not isinstance(section, ReportSection):
            raise ConfigError(
                f"Report sections must be ReportSection objects; got {type(section).__name__}. "
                "Build one with ReportSection(title, figures=[...], notes='...')."
            )
    seen: dict[str, int] = {}
    context_sections = []
    n_plot = 0
    for section in sections:
        slug = section.slug
        seen[slug] = seen.get(slug, 0) + 1
        if seen[slug] > 1:
            slug = f"{slug}-{seen[slug]}"
        plots = []
        for fig in section.figures:
            n_plot += 1
            text = pio.to_json(_house_style(fig), validate=False, pretty=False)
            plots.append({"id": f"plot-{n_plot}", "json": _script_json(text)})
        context_sections.append(
            {
                "title": section.title,
                "slug": slug,
                "wide": section.wide,
                "notes": section.notes,
                "html": Markup(section.html) if section.html is not None else None,
                "table": _table_context(section.table) if section.table is not None else None,
                "plots": plots,
            }
        )
    html = (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            subtitle=subtitle,
            summary=[(str(k), str(v)) for k, v in summary],
            sections=context_sections,
            plotly_js=Markup(_plotly_js()),
            plot_config=_script_json(pio.json.to_json_plotly(PLOT_CONFIG)),
            version=retention.__version__,
            generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"Cannot write the report to {out}: {exc.strerror or exc}. "
            "Pass a path in a folder you can write to."
        ) from None
    return out

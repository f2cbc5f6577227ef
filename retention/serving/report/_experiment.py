"""The experiment report: the checks (sample ratio, guardrails), every difference and lift with
its interval plotted, the Bayesian chance to win, and the uplift by segment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from retention.serving.report._figures import PALETTE, REFERENCE_COLOR, _layout
from retention.serving.report._render import _environment, format_value, render_report
from retention.serving.report._section import ReportSection
from retention.workflows import ExperimentReport

__all__ = [
    "chance_to_win_figure",
    "experiment_sections",
    "interval_figure",
    "render_experiment_report",
    "segment_figure",
]

CAPTIONS = {
    "difference": (
        "Each variant's difference from the control (treatment minus control) with its "
        "{level} interval: a bar that does not cross the grey zero line is a difference the "
        "data support at that level (before the multiple-testing correction in the table)."
    ),
    "lift": (
        "The same comparisons relative to the control's mean (delta-method intervals), so that "
        "metrics of different scales sit on one axis."
    ),
    "bayes": (
        "The probability that the variant beats the control (flat prior on the relative lift); "
        "the expected loss in the table is what choosing it costs, on average, if it is worse."
    ),
    "segments": (
        "The uplift measured in each segment (treatment minus control) with its interval: what "
        "`retention plan` uses, where it is measured, in place of the model's estimate."
    ),
}


def interval_figure(
    rows: pd.DataFrame,
    *,
    value: str,
    low: str,
    high: str,
    label: str,
    title: str,
    percent: bool = False,
) -> go.Figure:
    """Points with horizontal interval bars, one row per ``label``, and a zero line."""
    fig = go.Figure()
    y = [str(v) for v in rows[label]]
    scale = 100.0 if percent else 1.0
    x = rows[value].to_numpy(dtype=float) * scale
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers",
            marker={"color": PALETTE[0], "size": 10},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": rows[high].to_numpy(dtype=float) * scale - x,
                "arrayminus": x - rows[low].to_numpy(dtype=float) * scale,
                "color": PALETTE[0],
                "thickness": 2,
            },
            hovertemplate="%{y}: %{x:.4g}<extra></extra>",
            showlegend=False,
        )
    )
    fig.add_vline(x=0, line={"color": REFERENCE_COLOR, "dash": "dash"})
    return _layout(
        fig,
        height=max(220, 40 * len(y) + 120),
        title={"text": title, "x": 0.01},
        xaxis={"title": {"text": "%" if percent else "difference"}, "zeroline": False},
        yaxis={"type": "category", "autorange": "reversed"},
        margin={"t": 48, "l": 160},
    )


def chance_to_win_figure(rows: pd.DataFrame) -> go.Figure:
    """Horizontal bars of the chance to beat control, with the 95% mark."""
    y = [f"{m} · {v}" for m, v in zip(rows["metric"], rows["variant"], strict=True)]
    fig = go.Figure(
        go.Bar(
            x=rows["chance_to_win"].to_numpy(dtype=float),
            y=y,
            orientation="h",
            marker={"color": PALETTE[2]},
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    fig.add_vline(x=0.95, line={"color": REFERENCE_COLOR, "dash": "dot"})
    fig.add_vline(x=0.05, line={"color": REFERENCE_COLOR, "dash": "dot"})
    return _layout(
        fig,
        height=max(220, 36 * len(y) + 120),
        title={"text": "Chance to beat control", "x": 0.01},
        xaxis={"range": [0, 1], "tickformat": ".0%"},
        yaxis={"type": "category", "autorange": "reversed"},
        margin={"t": 48, "l": 200},
    )


def segment_figure(segments: pd.DataFrame, metric: str) -> go.Figure:
    """The uplift per segment of one metric, one colour per variant."""
    fig = go.Figure()
    rows = segments[segments["metric"] == metric]
    for i, (variant, part) in enumerate(rows.groupby("variant", sort=True)):
        label = [f"{b}: {s}" for b, s in zip(part["segment_by"], part["segment"], strict=True)]
        x = part["uplift"].to_numpy(dtype=float)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=label,
                mode="markers",
                name=str(variant),
                marker={"color": PALETTE[i % len(PALETTE)], "size": 9},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": part["ci_high"].to_numpy(dtype=float) - x,
                    "arrayminus": x - part["ci_low"].to_numpy(dtype=float),
                },
                hovertemplate="%{y}: %{x:.4g}<extra>" + str(variant) + "</extra>",
            )
        )
    fig.add_vline(x=0, line={"color": REFERENCE_COLOR, "dash": "dash"})
    n = rows[["segment_by", "segment"]].drop_duplicates().shape[0]
    return _layout(
        fig,
        height=max(240, 40 * n + 140),
        title={"text": f"Uplift of {metric} by segment", "x": 0.01},
        xaxis={"title": {"text": "treatment minus control"}},
        yaxis={"type": "category", "autorange": "reversed"},
        margin={"t": 48, "l": 160},
    )


def _summary_html(report: ExperimentReport) -> str:
    a = report.analysis
    srm = a.srm.to_dict()
    shares = ", ".join(
        f"{v} {n:,} ({(srm['observed_shares'][v] or 0):.1%} vs {srm['expected_shares'][v]:.1%})"
        for v, n in a.srm.counts.items()
    )
    guards = [
        {
            "metric": c.metric,
            "variant": c.variant,
            "status": c.guardrail_status,
            "difference": format_value(c.difference),
            "interval": f"{format_value(c.ci_low)} .. {format_value(c.ci_high)}",
        }
        for c in a.comparisons
        if c.guardrail
    ]
    return str(
        _environment()
        .get_template("experiment_summary.html.j2")
        .render(
            n_units=f"{sum(a.counts.values()):,}",
            control=a.control,
            method=(
                f"{a.method}: repeated confidence intervals and p-values"
                if a.sequential_design == "group"
                else "always-valid sequential intervals"
                if a.sequential
                else "Welch t intervals"
            ),
            alpha=f"{a.alpha:g}",
            correction="Holm" if a.correction == "holm" else "Benjamini-Hochberg",
            n_family=sum(1 for c in a.comparisons if not c.guardrail),
            srm={
                "flagged": a.srm.flagged,
                "text": shares,
                "p": format_value(a.srm.p_value),
                "threshold": srm["threshold"],
            },
            guardrails=guards,
            notes=a.notes,
        )
    )


def experiment_sections(report: ExperimentReport) -> list[ReportSection]:
    """The report's sections: checks, differences, lifts, chance to win, table, segments."""
    a = report.analysis
    frame = a.to_frame()
    frame["label"] = [f"{m} · {v}" for m, v in zip(frame["metric"], frame["variant"], strict=True)]
    level = f"{1 - a.alpha:.0%}"
    sections = [ReportSection("Checks", html=_summary_html(report), wide=True)]
    figures = [
        interval_figure(
            part,
            value="difference",
            low="ci_low",
            high="ci_high",
            label="variant",
            title=f"{metric}: treatment minus control",
        )
        for metric, part in frame.groupby("metric", sort=False)
    ]
    sections.append(
        ReportSection(
            "Differences", figures=figures, notes=CAPTIONS["difference"].format(level=level)
        )
    )
    lift = frame.assign(
        lift_ci_low=[c.lift_ci_low for c in a.comparisons],
        lift_ci_high=[c.lift_ci_high for c in a.comparisons],
    )
    sections.append(
        ReportSection(
            "Relative lift",
            figures=[
                interval_figure(
                    lift,
                    value="lift",
                    low="lift_ci_low",
                    high="lift_ci_high",
                    label="label",
                    title="Lift over the control",
                    percent=True,
                )
            ],
            notes=CAPTIONS["lift"],
            wide=False,
        )
    )
    sections.append(
        ReportSection(
            "Chance to win",
            figures=[chance_to_win_figure(frame)],
            notes=CAPTIONS["bayes"],
            wide=False,
        )
    )
    cols = [
        "metric",
        "variant",
        "n_control",
        "n_treatment",
        "mean_control",
        "mean_treatment",
        "difference",
        "ci_low",
        "ci_high",
        "p_value",
        "p_value_holm",
        "p_value_bh",
        "lift",
        "chance_to_win",
        "expected_loss",
        "variance_reduction",
        "guardrail",
    ]
    sections.append(
        ReportSection(
            "All comparisons",
            table=frame[[c for c in cols if c in frame.columns]].reset_index(drop=True),
            notes="Means are CUPED-adjusted where a covariate was used; variance_reduction is "
            "the share of the difference's variance CUPED removed.",
        )
    )
    seg = report.segments
    if seg is not None and len(seg) and (seg["segment_by"] != "all").any():
        sections.append(
            ReportSection(
                "Uplift by segment",
                figures=[segment_figure(seg, m) for m in seg["metric"].drop_duplicates()],
                notes=CAPTIONS["segments"],
            )
        )
    return sections


def render_experiment_report(
    report: ExperimentReport,
    path: Path | str,
    *,
    title: str | None = None,
    sections: Sequence[ReportSection] = (),
) -> Path:
    """Write the experiment's HTML page (self-contained) and return its path."""
    a = report.analysis
    name = report.experiment_id or Path(report.source).name
    best: Any = max(
        (c for c in a.comparisons if c.metric == a.metrics[0].name),
        key=lambda c: c.chance_to_win,
    )
    summary = [
        ("units", f"{sum(a.counts.values()):,}"),
        ("primary metric", a.metrics[0].name),
        (f"best variant ({best.variant})", f"{100 * best.lift:+.2f}% lift"),
        ("p-value", format_value(best.p_value)),
        ("sample ratio", "MISMATCH" if a.srm.flagged else "ok"),
    ]
    return render_report(
        [*experiment_sections(report), *sections],
        path,
        title=title or f"Experiment {name}",
        subtitle=f"{report.source} · {report.population}",
        summary=summary,
    )

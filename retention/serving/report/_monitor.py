"""The monitoring report: PSI per feature against its threshold, the score's drift, and the
realised performance (and its decay) of earlier scores over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from retention.serving.report._figures import PALETTE, REFERENCE_COLOR, _layout
from retention.serving.report._render import format_value, render_report
from retention.serving.report._section import ReportSection
from retention.workflows import MonitorReport

__all__ = [
    "decay_figure",
    "history_figure",
    "monitor_sections",
    "psi_figure",
    "render_monitor_report",
]

DRIFT_COLOR = "#D55E00"


def psi_figure(features: pd.DataFrame, threshold: float, top: int = 30) -> go.Figure:
    """Horizontal bars of each feature's PSI (the ``top`` most shifted), drifted ones in red,
    ignored ones (``--ignore``) and those that age with the calendar (no flag unless
    ``--include-ageing``) in grey, with the threshold as a dashed line."""
    rows = features.head(top)
    ignored = rows["ignored"] if "ignored" in rows else pd.Series(False, index=rows.index)
    if "ages_with_calendar" in rows:
        ignored = ignored.astype(bool) | rows["ages_with_calendar"].astype(bool)
    colors = [
        DRIFT_COLOR if d else (REFERENCE_COLOR if i else PALETTE[0])
        for d, i in zip(rows["drifted"], ignored, strict=True)
    ]
    fig = go.Figure(
        go.Bar(
            x=rows["psi"].to_numpy(dtype=float),
            y=[str(f) for f in rows["feature"]],
            orientation="h",
            marker={"color": colors},
            customdata=np.stack([rows["ks"], rows["ks_p_value"]], axis=-1) if len(rows) else None,
            hovertemplate="%{y}: PSI %{x:.3f}, KS %{customdata[0]:.3f} "
            "(p %{customdata[1]:.1e})<extra></extra>",
        )
    )
    fig.add_vline(x=threshold, line={"color": REFERENCE_COLOR, "dash": "dash"})
    return _layout(
        fig,
        height=max(260, 22 * len(rows) + 120),
        title={"text": "Population stability index per feature", "x": 0.01},
        xaxis={"title": {"text": "PSI (training window vs latest window)"}},
        yaxis={"type": "category", "autorange": "reversed"},
        margin={"t": 48, "l": 220},
    )


def decay_figure(performance: pd.DataFrame) -> go.Figure:
    """Realised ROC-AUC of each matured scoring run against its model's reference (dotted), and
    the decay (reference minus realised) as diamonds on the right axis, by scoring cutoff."""
    fig = go.Figure()
    for i, (version, part) in enumerate(performance.groupby("model_version", sort=False)):
        part = part.sort_values("cutoff")
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=part["cutoff"],
                y=part["roc_auc"],
                mode="lines+markers",
                name=f"{version} realised",
                line={"color": color},
                hovertemplate="scored %{x|%Y-%m-%d}: ROC-AUC %{y:.3f}<extra></extra>",
            )
        )
        if part["baseline_roc_auc"].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=part["cutoff"],
                    y=part["baseline_roc_auc"],
                    mode="lines",
                    name=f"{version} reference",
                    line={"color": color, "dash": "dot"},
                    hovertemplate="reference ROC-AUC %{y:.3f}<extra></extra>",
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=part["cutoff"],
                    y=part["decay"],
                    mode="markers",
                    name=f"{version} decay",
                    marker={"color": DRIFT_COLOR, "symbol": "diamond", "size": 10},
                    yaxis="y2",
                    hovertemplate="scored %{x|%Y-%m-%d}: decay %{y:.3f}<extra></extra>",
                )
            )
    return _layout(
        fig,
        title={"text": "Realised ROC-AUC of earlier scores (label window passed)", "x": 0.01},
        xaxis={"title": {"text": "scoring cutoff"}, "type": "date"},
        yaxis={"title": {"text": "ROC-AUC"}},
        yaxis2={"title": {"text": "decay"}, "overlaying": "y", "side": "right", "showgrid": False},
        margin={"t": 48},
    )


def history_figure(history: pd.DataFrame) -> go.Figure:
    """Score PSI, the largest feature PSI and decay of every recorded monitor run."""
    fig = go.Figure()
    for i, (column, label) in enumerate(
        (("score_psi", "score PSI"), ("max_feature_psi", "largest feature PSI"), ("decay", "decay"))
    ):
        if column in history and history[column].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=history["created_at"],
                    y=history[column],
                    mode="lines+markers",
                    name=label,
                    line={"color": PALETTE[i]},
                    hovertemplate=f"%{{x|%Y-%m-%d %H:%M}}: {label} %{{y:.3f}}<extra></extra>",
                )
            )
    return _layout(
        fig,
        title={"text": "Monitor runs over time", "x": 0.01},
        xaxis={"title": {"text": "monitor run"}},
        yaxis={"title": {"text": "PSI / decay"}},
        margin={"t": 48},
    )


def monitor_sections(
    report: MonitorReport, history: pd.DataFrame | None = None
) -> list[ReportSection]:
    """The blocks of the monitoring report: flags, PSI per feature, realised performance."""
    t = report.thresholds
    flags = report.messages() or [
        f"no flag: no feature PSI above {t.feature_psi:g}, score PSI at most {t.score_psi:g}, "
        f"decay at most {t.decay:g} (or not measurable yet)"
    ]
    sections = [
        ReportSection(
            "Flags",
            table=pd.DataFrame({"flag": flags}),
            notes="What passed its threshold (thresholds: --feature-psi, --score-psi, --decay, "
            "or RETENTION_MONITOR_*). " + " ".join(f"Note: {n}." for n in report.notes),
        ),
        ReportSection(
            "Drift per feature",
            figures=[psi_figure(report.features, t.feature_psi)],
            notes="PSI of each feature between the model's training window and the latest window, "
            "over the training deciles (a bin for missing values); red bars passed the dashed "
            "threshold, grey ones are left out of the flags (--ignore). Below 0.1 is stable by "
            "the usual rule of thumb, above 0.25 a large shift.",
        ),
        ReportSection(
            "Most shifted features",
            table=report.features.head(20)[
                ["feature", "family", "psi", "ks", "ks_p_value", "reference_mean", "current_mean"]
            ].set_index("feature"),
            notes="KS: the largest gap between the two distribution functions, with its p-value "
            "(approximate: a customer appears once per pooled cutoff).",
        ),
    ]
    if len(report.performance):
        sections.append(
            ReportSection(
                "Decay over time",
                figures=[decay_figure(report.performance)],
                table=report.performance.set_index("model_version")[
                    ["cutoff", "n_users", "roc_auc", "brier", "ece", "baseline_roc_auc", "decay"]
                ],
                notes="Each point is an earlier scoring run whose label window has passed, "
                "measured against what the customers then did; the dotted line is the model's "
                "reference ROC-AUC, and decay is reference minus realised.",
            )
        )
    if history is not None and len(history) > 1:
        sections.append(
            ReportSection(
                "Monitor runs over time",
                figures=[history_figure(history)],
                notes="Each recorded `retention monitor` run of this model: how far the score and "
                "the most shifted feature had moved, and the decay it measured.",
            )
        )
    return sections


def render_monitor_report(
    report: MonitorReport,
    path: Path | str,
    *,
    history: pd.DataFrame | None = None,
    title: str | None = None,
    sections: Sequence[ReportSection] = (),
) -> Path:
    """Write the monitoring HTML page (self-contained) and return its path."""
    s = report.score
    summary = [
        ("model", report.model_id),
        ("status", "DRIFT" if report.drift else "ok"),
        ("drifted features", f"{len(report.drifted_features)} of {len(report.features)}"),
        ("score PSI", format_value(s.get("psi"))),
        ("decay", format_value(report.decay)),
    ]
    ref, cur = report.reference_cutoffs, report.current_cutoffs
    return render_report(
        [*monitor_sections(report, history), *sections],
        path,
        title=title or f"Monitoring of model {report.model_id}",
        subtitle=f"training window {ref[0]:%Y-%m-%d}..{ref[-1]:%Y-%m-%d} · latest window "
        f"{cur[0]:%Y-%m-%d}..{cur[-1]:%Y-%m-%d}"
        + (
            f" on the training window's length of history (events from "
            f"{min(report.history_starts):%Y-%m-%d})"
            if report.history_matched and report.history_starts
            else ""
        ),
        summary=summary,
    )

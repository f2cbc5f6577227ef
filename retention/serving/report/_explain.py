"""Report sections of the explain stage: importance, beeswarm, dependence, reasons, selection,
segments (one :class:`ReportSection` each), and the explain report itself."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from retention.exceptions import ConfigError
from retention.serving.report._backtest import render_backtest_report
from retention.serving.report._figures import PALETTE, REFERENCE_COLOR, _layout
from retention.serving.report._section import ReportSection
from retention.workflows import ExplainReport

__all__ = [
    "beeswarm_figure",
    "dependence_figure",
    "explain_sections",
    "importance_bars_figure",
    "render_explain_report",
    "selection_curve_figure",
]

CAPTIONS = {
    "shap": (
        "How much each feature moves the model's prediction, on average over the customers of "
        "the test cutoff: the mean absolute SHAP value, in log-odds of coming back (exact "
        "TreeSHAP, computed by LightGBM). First single features (those the model never uses are "
        "left out), then whole families, whose terms are added per customer first. It says "
        "what the model leans on, not that a feature causes customers to return."
    ),
    "permutation": (
        "How much the ROC-AUC on the validation cutoff falls when a feature's values are "
        "shuffled across customers (mean of several shuffles; the whisker is one standard "
        "deviation). Near zero means the model does not need the feature; slightly negative "
        "values are noise. Families are shuffled as a whole, which keeps their internal relations."
    ),
    "beeswarm": (
        "One dot per customer and feature: how far the feature pushed that customer's prediction "
        "(right: toward coming back, left: toward churn), coloured by the feature's value from "
        "low (blue) to high (red) among customers. A red cloud on the left means high values of "
        "the feature go with churn."
    ),
    "dependence": (
        "For the five most important features: each customer's value of the feature (across) "
        "against its SHAP value (up). The shape shows how the model uses the feature; the spread "
        "at one value comes from interactions with other features."
    ),
    "reasons": (
        "A seeded sample of customers flagged high-risk (P(retained) under 0.3) with the three "
        "features that pushed them most toward churn and toward coming back, in plain words: "
        "their own value against the typical customer's (the median at this cutoff). The impact "
        "is in log-odds; these are the reasons `retention explain --user ID` prints."
    ),
    "selection": (
        "Backward selection on the validation cutoff: starting from every feature, the weakest "
        "family (smallest SHAP importance) is dropped when the ROC-AUC stays within the "
        "tolerance of the full set (filled dots: kept; hollow: rejected, the family stays). The "
        "test cutoff never takes part; the table gives both sets' ROC-AUC on it (report only)."
    ),
    "segments": (
        "The model on the test cutoff by segment: ROC-AUC, mean predicted against observed "
        "return rate, and the share flagged high-risk. Ratios compare each segment with the "
        "whole population (1 is parity; for calibration and the share flagged, the smaller of "
        "the two ways round). A ratio under the threshold (four-fifths rule, 0.8) is flagged; "
        "segments under {min_size} customers are shown but not flagged."
    ),
}


def importance_bars_figure(
    values: pd.Series,
    title: str,
    *,
    error: pd.Series | None = None,
    top: int = 15,
    axis_title: str = "Mean |SHAP value| (log-odds)",
) -> go.Figure:
    """Horizontal bars of the ``top`` largest values (with optional error whiskers)."""
    s = values.astype(float)
    if error is None:  # features the model never uses (exactly zero) are left out
        s = s[s != 0]
    s = s.sort_values(ascending=False, kind="mergesort").head(top)[::-1]
    err = None
    if error is not None:
        err = {"type": "data", "array": error.reindex(s.index).to_numpy(dtype=float)}
    fig = go.Figure(
        go.Bar(
            x=s.to_numpy(),
            y=[str(i) for i in s.index],
            orientation="h",
            error_x=err,
            marker={"color": PALETTE[0]},
            hovertemplate="%{y}: %{x:.4f}<extra></extra>",
        )
    )
    return _layout(
        fig,
        height=max(260, 24 * len(s) + 110),
        title={"text": title, "x": 0.01},
        xaxis={"title": {"text": axis_title}},
        yaxis={"type": "category"},
        margin={"t": 48},
    )


def beeswarm_figure(
    values: pd.DataFrame,
    data: pd.DataFrame,
    *,
    top: int = 12,
    max_points: int = 1500,
    seed: int = 0,
) -> go.Figure:
    """SHAP beeswarm: one row per top feature, dots coloured by the feature's value rank."""
    order = values.abs().mean().sort_values(ascending=False, kind="mergesort").index[:top]
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(values), size=min(max_points, len(values)), replace=False)
    xs: list[float] = []
    ys: list[float] = []
    cs: list[float] = []
    texts: list[str] = []
    names = list(order)[::-1]
    for k, name in enumerate(names):
        v = values[name].to_numpy(dtype=float)[rows]
        d = data[name].to_numpy(dtype=float)[rows]
        rank = pd.Series(d).rank(pct=True).to_numpy(dtype=float)
        jitter = rng.uniform(-0.3, 0.3, size=len(v))
        xs += v.tolist()
        ys += (k + jitter).tolist()
        cs += np.where(np.isfinite(rank), rank, 0.5).tolist()
        texts += [f"{name} = {x:.4g}" for x in d]
    fig = go.Figure(
        go.Scattergl(
            x=xs,
            y=ys,
            mode="markers",
            text=texts,
            marker={
                "size": 4,
                "color": cs,
                "colorscale": "RdBu_r",
                "cmin": 0,
                "cmax": 1,
                "opacity": 0.7,
                "colorbar": {
                    "title": {"text": "value rank"},
                    "tickvals": [0, 1],
                    "ticktext": ["low", "high"],
                },
            },
            hovertemplate="%{text}<br>SHAP %{x:.3f}<extra></extra>",
        )
    )
    fig.add_vline(x=0, line={"color": REFERENCE_COLOR, "dash": "dash"})
    return _layout(
        fig,
        height=max(320, 34 * len(names) + 110),
        title={"text": f"SHAP values of the top {len(names)} features", "x": 0.01},
        xaxis={"title": {"text": "SHAP value (log-odds of coming back)"}},
        yaxis={
            "tickvals": list(range(len(names))),
            "ticktext": names,
            "range": [-0.6, len(names) - 0.4],
        },
        margin={"t": 48},
    )


def dependence_figure(
    values: pd.DataFrame, data: pd.DataFrame, feature: str, *, max_points: int = 2000, seed: int = 0
) -> go.Figure:
    """A feature's value against its SHAP value, one dot per customer."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(values), size=min(max_points, len(values)), replace=False)
    fig = go.Figure(
        go.Scattergl(
            x=data[feature].to_numpy(dtype=float)[rows],
            y=values[feature].to_numpy(dtype=float)[rows],
            mode="markers",
            marker={"size": 4, "color": PALETTE[0], "opacity": 0.5},
            hovertemplate=feature + " = %{x:.4g}<br>SHAP %{y:.3f}<extra></extra>",
        )
    )
    fig.add_hline(y=0, line={"color": REFERENCE_COLOR, "dash": "dash"})
    return _layout(
        fig,
        height=320,
        title={"text": feature, "x": 0.01},
        xaxis={"title": {"text": "feature value"}},
        yaxis={"title": {"text": "SHAP value"}},
        margin={"t": 44},
    )


def selection_curve_figure(curve: pd.DataFrame, full_auc: float, tolerance: float) -> go.Figure:
    """Number of features against validation ROC-AUC for each candidate of the selection."""
    acc = curve["accepted"].to_numpy(dtype=bool)
    fig = go.Figure()
    kept = curve[acc]
    fig.add_trace(
        go.Scatter(
            x=kept["n_features"],
            y=kept["roc_auc"],
            mode="lines+markers",
            name="kept",
            text=[f"dropped {c}" if c != "(none)" else "full set" for c in kept["candidate"]],
            marker={"size": 9, "color": PALETTE[0]},
            hovertemplate="%{text}: %{x} features, ROC-AUC %{y:.4f}<extra></extra>",
        )
    )
    rej = curve[~acc]
    fig.add_trace(
        go.Scatter(
            x=rej["n_features"],
            y=rej["roc_auc"],
            mode="markers",
            name="rejected",
            text=[f"without {c}" for c in rej["candidate"]],
            marker={"size": 9, "symbol": "circle-open", "color": PALETTE[3]},
            hovertemplate="%{text}: %{x} features, ROC-AUC %{y:.4f}<extra></extra>",
        )
    )
    fig.add_hline(
        y=full_auc - tolerance,
        line={"color": REFERENCE_COLOR, "dash": "dash"},
        annotation_text=f"full set - tolerance ({tolerance:g})",
    )
    return _layout(
        fig,
        title={"text": "Feature selection on the validation cutoff", "x": 0.01},
        xaxis={"title": {"text": "number of features"}, "autorange": "reversed"},
        yaxis={"title": {"text": "ROC-AUC (validation cutoff)"}},
        margin={"t": 48},
    )


def _reasons_table(sample: pd.DataFrame) -> pd.DataFrame:
    if sample.empty:
        return pd.DataFrame({"customer": [], "P(retained)": [], "direction": [], "reason": []})
    t = sample.sort_values(["p_retained", "user_id", "direction", "rank"], kind="mergesort")
    return pd.DataFrame(
        {
            "customer": t["user_id"].astype(str).to_numpy(),
            "P(retained)": t["p_retained"].to_numpy(dtype=float),
            "direction": ["toward " + str(d) for d in t["direction"]],
            "reason": t["text"].astype(str).to_numpy(),
            "impact": t["contribution"].to_numpy(dtype=float),
        }
    )


def _offset_note(report: ExplainReport) -> str:
    return "".join(f" {note}" for note in report.shap.notes)


def explain_sections(report: ExplainReport) -> list[ReportSection]:
    """The explain stage's report sections, in order (pass them as ``sections=`` to any report).

    Importance bars (SHAP by feature and by family; permutation by feature and by family per
    model), the SHAP beeswarm, dependence plots of the top five features, reasons for a sample
    of high-risk customers, the selection curve with its table, and the segment table.
    """
    if not isinstance(report, ExplainReport):
        raise ConfigError(
            f"explain_sections needs an ExplainReport; got {type(report).__name__}. Pass the "
            "object returned by retention.workflows.explain_backtest(...)."
        )
    sections = [
        ReportSection(
            "Feature importance (SHAP)",
            figures=[
                importance_bars_figure(report.shap_importance, "By feature"),
                importance_bars_figure(report.shap_family_importance, "By family"),
            ],
            notes=CAPTIONS["shap"] + _offset_note(report),
        )
    ]
    perm_figs = []
    for name, df in report.permutation.items():
        perm_figs.append(
            importance_bars_figure(
                df["importance"],
                f"{name}: by feature",
                error=df["std"],
                axis_title="Fall in ROC-AUC when shuffled",
            )
        )
        fam = report.permutation_family.get(name)
        if fam is not None:
            perm_figs.append(
                importance_bars_figure(
                    fam["importance"],
                    f"{name}: by family",
                    error=fam["std"],
                    axis_title="Fall in ROC-AUC when shuffled",
                )
            )
    if perm_figs:
        sections.append(
            ReportSection(
                "Permutation importance (validation cutoff)",
                figures=perm_figs,
                notes=CAPTIONS["permutation"],
            )
        )
    values, data = report.shap.values, report.shap.data
    if len(values):
        top5 = list(report.shap_importance.index[:5])
        sections += [
            ReportSection(
                "SHAP beeswarm", figures=[beeswarm_figure(values, data)], notes=CAPTIONS["beeswarm"]
            ),
            ReportSection(
                "Dependence of the top five features",
                figures=[dependence_figure(values, data, f) for f in top5],
                notes=CAPTIONS["dependence"],
            ),
        ]
    sections.append(
        ReportSection(
            "Reasons for high-risk customers",
            table=_reasons_table(report.sample_reasons),
            notes=CAPTIONS["reasons"],
        )
    )
    sel = report.selection
    sel_table = pd.DataFrame(
        {
            "feature set": ["full", "selected"],
            "features": [int(sel.curve["n_features"].iloc[0]), len(sel.selected)],
            "ROC-AUC validation": [sel.full_auc, sel.selected_auc],
            "ROC-AUC test": [report.test_auc.get("full"), report.test_auc.get("selected")],
        }
    )
    dropped = ", ".join(sel.dropped) or "nothing"
    sections.append(
        ReportSection(
            "Feature selection",
            figures=[selection_curve_figure(sel.curve, sel.full_auc, sel.tolerance)],
            table=sel_table,
            notes=CAPTIONS["selection"] + f" Dropped: {dropped}.",
        )
    )
    fair = report.fairness
    table = fair.table.rename(
        columns={
            "n": "customers",
            "observed": "returned",
            "mean_predicted": "mean predicted",
            "calibration_ratio": "calibration ratio",
            "roc_auc": "ROC-AUC",
            "auc_ratio": "ROC-AUC ratio",
            "share_high_risk": "share high-risk",
            "high_risk_ratio": "high-risk ratio",
        }
    )
    notes = CAPTIONS["segments"].format(min_size=fair.min_size)
    if fair.warnings:
        notes += " Warnings: " + " | ".join(fair.warnings)
    sections.append(ReportSection("Fairness and stability by segment", table=table, notes=notes))
    return sections


def render_explain_report(
    report: ExplainReport,
    path: Path | str,
    *,
    title: str | None = None,
    sections: Sequence[ReportSection] = (),
) -> Path:
    """The backtest report of the full and the selected gradient boosting models, followed by
    the explain sections (and any ``sections`` given)."""
    extra: list[Any] = [*explain_sections(report), *sections]
    return render_backtest_report(
        report.backtest,
        path,
        title=title or f"Retention explain at {report.cutoff:%Y-%m-%d}",
        sections=extra,
    )

"""Plotly figures of a backtest: ROC, precision-recall, calibration, gains, scores, cohorts.

Every figure is built from summaries (curves thinned to a few hundred points, histograms binned
here), so the size of the report does not grow with the number of customers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

__all__ = [
    "DEFAULT_HEIGHT",
    "PALETTE",
    "REPORT_TEMPLATE",
    "calibration_bins",
    "calibration_figure",
    "clv_calibration_figure",
    "cohort_heatmap_figure",
    "decile_table",
    "gains_figure",
    "importance_figure",
    "pr_figure",
    "roc_figure",
    "score_distribution_figure",
    "thin_curve",
]

#: Okabe-Ito colours (readable with the common colour-vision deficiencies), one per model
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
RETAINED_COLOR = "#0072B2"
LAPSED_COLOR = "#E69F00"
REFERENCE_COLOR = "#8a8f98"

#: height in pixels of a figure that does not set one
DEFAULT_HEIGHT = 420

#: the look of every plot of the report (also given to figures left on plotly's default template)
REPORT_TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13},
        paper_bgcolor="white",
        plot_bgcolor="white",
        colorway=PALETTE,
        margin={"l": 64, "r": 24, "t": 36, "b": 56},
        hoverlabel={"namelength": -1},
        legend={"bgcolor": "rgba(255,255,255,0.8)"},
        xaxis={"gridcolor": "#e6e8eb", "zerolinecolor": "#c9ccd1", "automargin": True},
        yaxis={"gridcolor": "#e6e8eb", "zerolinecolor": "#c9ccd1", "automargin": True},
    )
)


def _layout(fig: go.Figure, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        template=REPORT_TEMPLATE, height=kwargs.pop("height", DEFAULT_HEIGHT), **kwargs
    )
    return fig


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def thin_curve(
    x: np.ndarray, y: np.ndarray, max_points: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``max_points`` points of a curve, evenly spaced along its length.

    The first and last points are always kept, so the curve still starts and ends where it did.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) <= max_points:
        return x, y
    dist = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    targets = np.linspace(0.0, dist[-1], max_points)
    idx = np.unique(np.clip(np.searchsorted(dist, targets), 0, len(x) - 1))
    idx = np.union1d(idx, [0, len(x) - 1])
    return x[idx], y[idx]


def _both_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def roc_figure(y: np.ndarray, scores: Mapping[str, np.ndarray], max_points: int = 300) -> go.Figure:
    """ROC curve of every model, with the chance diagonal."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="chance",
            line={"dash": "dash", "color": REFERENCE_COLOR, "width": 1},
            hoverinfo="skip",
        )
    )
    for i, (name, s) in enumerate(scores.items()):
        fpr, tpr, _ = roc_curve(y, s)
        fpr, tpr = thin_curve(fpr, tpr, max_points)
        auc = roc_auc_score(y, s)
        fig.add_trace(
            go.Scatter(
                x=fpr,
                y=tpr,
                mode="lines",
                name=f"{name} (AUC {auc:.3f})",
                line={"color": _color(i), "width": 2},
                hovertemplate="flagged %{x:.1%} of those who did not return<br>"
                "caught %{y:.1%} of those who did<extra>" + name + "</extra>",
            )
        )
    return _layout(
        fig,
        xaxis={"title": {"text": "False positive rate"}, "range": [0, 1], "tickformat": ".0%"},
        yaxis={"title": {"text": "True positive rate"}, "range": [0, 1.02], "tickformat": ".0%"},
        legend={"x": 0.98, "y": 0.02, "xanchor": "right", "yanchor": "bottom"},
    )


def pr_figure(y: np.ndarray, scores: Mapping[str, np.ndarray], max_points: int = 300) -> go.Figure:
    """Precision-recall curve of every model, with the base rate as the no-skill line."""
    base = float(np.mean(y))
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[base, base],
            mode="lines",
            name=f"base rate ({base:.1%})",
            line={"dash": "dash", "color": REFERENCE_COLOR, "width": 1},
            hoverinfo="skip",
        )
    )
    for i, (name, s) in enumerate(scores.items()):
        precision, recall, _ = precision_recall_curve(y, s)
        recall, precision = thin_curve(recall[::-1], precision[::-1], max_points)
        ap = average_precision_score(y, s)
        fig.add_trace(
            go.Scatter(
                x=recall,
                y=precision,
                mode="lines",
                name=f"{name} (AP {ap:.3f})",
                line={"color": _color(i), "width": 2},
                hovertemplate="finds %{x:.1%} of returning customers<br>"
                "%{y:.1%} of those flagged return<extra>" + name + "</extra>",
            )
        )
    return _layout(
        fig,
        xaxis={"title": {"text": "Recall"}, "range": [0, 1], "tickformat": ".0%"},
        yaxis={"title": {"text": "Precision"}, "range": [0, 1.02], "tickformat": ".0%"},
        legend={"x": 0.98, "y": 0.98, "xanchor": "right", "yanchor": "top"},
    )


def calibration_bins(y: np.ndarray, s: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Mean predicted and observed rate in ``n_bins`` equal-count bins of the score.

    Returns a frame with columns ``predicted``, ``observed`` and ``n``, one row per bin from the
    lowest scores to the highest (fewer rows when there are fewer customers than bins).
    """
    y = np.asarray(y, dtype=float)
    s = np.asarray(s, dtype=float)
    order = np.argsort(s, kind="mergesort")
    rows = [
        {"predicted": float(s[b].mean()), "observed": float(y[b].mean()), "n": len(b)}
        for b in np.array_split(order, min(n_bins, len(order)))
        if len(b)
    ]
    return pd.DataFrame(rows, columns=["predicted", "observed", "n"])


def calibration_figure(
    y: np.ndarray, scores: Mapping[str, np.ndarray], n_bins: int = 10
) -> go.Figure:
    """Reliability diagram: observed against predicted rate in quantile bins, and the diagonal."""
    fig = go.Figure()
    top = 0.0
    for i, (name, s) in enumerate(scores.items()):
        bins = calibration_bins(y, s, n_bins)
        top = max(top, float(bins[["predicted", "observed"]].to_numpy().max()))
        fig.add_trace(
            go.Scatter(
                x=bins["predicted"],
                y=bins["observed"],
                mode="lines+markers",
                name=name,
                customdata=bins["n"],
                line={"color": _color(i), "width": 2},
                marker={"size": 7},
                hovertemplate="predicted %{x:.1%}, observed %{y:.1%}"
                "<br>%{customdata} customers<extra>" + name + "</extra>",
            )
        )
    edge = min(1.0, max(0.05, top * 1.08))
    fig.add_trace(
        go.Scatter(
            x=[0, edge],
            y=[0, edge],
            mode="lines",
            name="perfect calibration",
            line={"dash": "dash", "color": REFERENCE_COLOR, "width": 1},
            hoverinfo="skip",
        )
    )
    return (
        _layout(
            fig,
            xaxis={"title": {"text": "Predicted probability of returning"}, "range": [0, edge]},
            yaxis={"title": {"text": "Share that returned"}, "range": [0, edge]},
            legend={"x": 0.02, "y": 0.98, "xanchor": "left", "yanchor": "top"},
        )
        .update_xaxes(tickformat=".0%")
        .update_yaxes(tickformat=".0%")
    )


def decile_table(y: np.ndarray, s: np.ndarray, n_groups: int = 10) -> pd.DataFrame:
    """Customers ranked by score (highest first) and cut into ``n_groups`` equal groups.

    Returns columns ``decile`` (1 = highest scores), ``n``, ``rate`` (share that returned),
    ``lift`` (rate over the base rate) and ``captured`` (cumulative share of all returning
    customers found in this decile and the ones above it).
    """
    y = np.asarray(y, dtype=float)
    s = np.asarray(s, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    base = y.mean() if len(y) else float("nan")
    total = y.sum()
    rows = []
    found = 0.0
    for k, b in enumerate(np.array_split(order, min(n_groups, len(order))), start=1):
        if not len(b):
            continue
        found += y[b].sum()
        rate = float(y[b].mean())
        rows.append(
            {
                "decile": k,
                "n": len(b),
                "rate": rate,
                "lift": rate / base if base > 0 else float("nan"),
                "captured": found / total if total > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["decile", "n", "rate", "lift", "captured"])


def gains_figure(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> go.Figure:
    """Share of each score decile that returned, one bar per model, and the base rate."""
    fig = go.Figure()
    for i, (name, s) in enumerate(scores.items()):
        table = decile_table(y, s)
        fig.add_trace(
            go.Bar(
                x=table["decile"],
                y=table["rate"],
                name=name,
                marker={"color": _color(i)},
                customdata=np.column_stack([table["lift"], table["captured"]]),
                hovertemplate="decile %{x}: %{y:.1%} returned (lift %{customdata[0]:.2f})"
                "<br>top %{x}0% find %{customdata[1]:.1%} of all who returned"
                "<extra>" + name + "</extra>",
            )
        )
    base = float(np.mean(y))
    fig.add_hline(
        y=base,
        line={"dash": "dash", "color": REFERENCE_COLOR, "width": 1},
        annotation_text=f"base rate {base:.1%}",
        annotation_position="top right",
    )
    return _layout(
        fig,
        barmode="group",
        bargap=0.2,
        xaxis={"title": {"text": "Score decile (1 = highest scores)"}, "dtick": 1},
        yaxis={
            "title": {"text": "Share that returned"},
            "tickformat": ".0%",
            "rangemode": "tozero",
        },
        legend={"x": 0.98, "y": 0.98, "xanchor": "right", "yanchor": "top"},
    )


def score_distribution_figure(
    y: np.ndarray, scores: Mapping[str, np.ndarray], n_bins: int = 30, per_row: int = 3
) -> go.Figure:
    """Histogram of each model's scores, split by outcome (binned here, one panel per model)."""
    names = list(scores)
    cols = max(1, min(per_row, len(names)))
    rows = -(-len(names) // cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=names,
        horizontal_spacing=0.06,
        vertical_spacing=0.16 if rows > 1 else 0.1,
    )
    y = np.asarray(y, dtype=int)
    for i, name in enumerate(names):
        s = np.asarray(scores[name], dtype=float)
        lo, hi = float(np.min(s)), float(np.max(s))
        if hi - lo < 1e-9:
            lo, hi = lo - 0.005, hi + 0.005
        edges = np.linspace(lo, hi, n_bins + 1)
        centers = (edges[:-1] + edges[1:]) / 2
        row, col = i // cols + 1, i % cols + 1
        for outcome, label, color in (
            (1, "returned", RETAINED_COLOR),
            (0, "did not", LAPSED_COLOR),
        ):
            part = s[y == outcome]
            counts, _ = np.histogram(part, bins=edges)
            share = counts / max(len(part), 1)
            fig.add_trace(
                go.Bar(
                    x=centers,
                    y=share,
                    width=float(edges[1] - edges[0]),
                    name=label,
                    legendgroup=label,
                    showlegend=i == 0,
                    marker={"color": color, "line": {"width": 0}},
                    opacity=0.6,
                    customdata=counts,
                    hovertemplate="score %{x:.3f}: %{y:.1%} of those who "
                    + ("returned" if outcome else "did not return")
                    + " (%{customdata})<extra>"
                    + name
                    + "</extra>",
                ),
                row=row,
                col=col,
            )
    fig.update_xaxes(title_text="Predicted probability", title_font_size=12, tickformat=".0%")
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    fig.update_yaxes(title_text="Share of group", col=1)
    return _layout(
        fig,
        barmode="overlay",
        height=320 * rows + 40,
        legend={
            "orientation": "h",
            "x": 1,
            "y": 1,
            "xanchor": "right",
            "yanchor": "top",
            "yref": "container",
        },
        margin={"t": 84},
    )


def cohort_heatmap_figure(table: pd.DataFrame, max_cohorts: int = 48) -> go.Figure:
    """Heatmap of a :func:`retention.features.cohort_retention` table (shares, 0..1)."""
    sizes = table.attrs.get("cohort_size")
    if len(table) > max_cohorts:
        table = table.iloc[-max_cohorts:]
    labels = [str(c) for c in table.index]
    if isinstance(sizes, pd.Series):
        n = sizes.reindex(table.index).to_numpy()
        ylabels = [f"{c} (n={int(k):,})" for c, k in zip(labels, n, strict=True)]
    else:
        ylabels = labels
    z = table.to_numpy(dtype=float)
    later = z[:, 1:] if z.shape[1] > 1 else z
    zmax = float(np.nanmax(later)) if np.isfinite(later).any() else 1.0
    zmax = max(zmax, 1e-6)
    z_cells: list[list[float | None]] = [
        [None if np.isnan(v) else round(float(v), 4) for v in row] for row in z
    ]
    show_text = z.size <= 700
    fig = go.Figure(
        go.Heatmap(
            z=z_cells,
            x=[int(c) for c in table.columns],
            y=ylabels,
            zmin=0,
            zmax=zmax,
            colorscale="Blues",
            texttemplate="%{z:.0%}" if show_text else None,
            textfont={"size": 10},
            hoverongaps=False,
            xgap=1,
            ygap=1,
            colorbar={"title": {"text": "active"}, "tickformat": ".0%"},
            hovertemplate="cohort %{y}<br>%{x} periods after the first purchase"
            "<br>%{z:.1%} of the cohort active<extra></extra>",
        )
    )
    return _layout(
        fig,
        height=max(260, 26 * len(table) + 100),
        xaxis={"title": {"text": "Periods since first purchase"}, "dtick": 1, "side": "top"},
        yaxis={
            "title": {"text": "First-purchase cohort"},
            "autorange": "reversed",
            "type": "category",
        },
        margin={"t": 70, "l": 150, "b": 16},
    )


def importance_figure(importance: Mapping[str, float], model: str, top: int = 15) -> go.Figure:
    """Horizontal bars of the ``top`` largest importances, as shares of the total."""
    pairs = sorted(
        ((str(k), float(v)) for k, v in importance.items() if np.isfinite(v)),
        key=lambda kv: -kv[1],
    )
    total = sum(v for _, v in pairs if v > 0) or 1.0
    shown = pairs[:top][::-1]
    fig = go.Figure(
        go.Bar(
            x=[v / total for _, v in shown],
            y=[k for k, _ in shown],
            orientation="h",
            marker={"color": PALETTE[0]},
            hovertemplate="%{y}: %{x:.1%} of the total gain<extra>" + model + "</extra>",
        )
    )
    return _layout(
        fig,
        height=max(260, 24 * len(shown) + 110),
        title={"text": f"{model}: top {len(shown)} of {len(pairs)} features", "x": 0.01},
        xaxis={"title": {"text": "Share of total gain"}, "tickformat": ".0%"},
        yaxis={"type": "category"},
        margin={"t": 48},
    )


def clv_calibration_figure(
    deciles: list[dict[str, float]],
    baseline: list[dict[str, float]] | None = None,
    *,
    horizon_days: int,
) -> go.Figure:
    """Predicted against realised spend over the horizon, by decile of the prediction.

    ``deciles`` (and ``baseline``, the textbook CLV) are rows ``{"decile", "n", "predicted",
    "realised"}``: the mean CLV and the mean spend realised (net of returns) of each tenth of
    the customers ranked by predicted CLV.
    """
    fig = go.Figure()
    top = 0.0
    for i, (name, rows) in enumerate(
        [("CLV (net of returns)", deciles), ("textbook BG/NBD x Gamma-Gamma", baseline or [])]
    ):
        if not rows:
            continue
        x = [float(r["predicted"]) for r in rows]
        y = [float(r["realised"]) for r in rows]
        top = max(top, *x, *y)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=name,
                customdata=[[int(r["decile"]), int(r["n"])] for r in rows],
                line={"color": _color(i), "width": 2, "dash": "solid" if i == 0 else "dot"},
                marker={"size": 7},
                hovertemplate="decile %{customdata[0]} (%{customdata[1]} customers)<br>"
                "predicted %{x:,.0f}, realised %{y:,.0f}<extra>" + name + "</extra>",
            )
        )
    edge = max(top * 1.08, 1.0)
    fig.add_trace(
        go.Scatter(
            x=[0, edge],
            y=[0, edge],
            mode="lines",
            name="prediction = realised",
            line={"dash": "dash", "color": REFERENCE_COLOR, "width": 1},
            hoverinfo="skip",
        )
    )
    return _layout(
        fig,
        xaxis={"title": {"text": f"Predicted spend over {horizon_days} days (mean of decile)"}},
        yaxis={"title": {"text": f"Realised spend over {horizon_days} days, net of returns"}},
        legend={"x": 0.02, "y": 0.98, "xanchor": "left", "yanchor": "top"},
    )

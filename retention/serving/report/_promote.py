"""HTML pages of the promotion stage: the uplift evaluation (Qini curves, metrics, the policy
against random targeting) and the plan (totals by action, value against cost, tiers)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from retention.serving.report._figures import PALETTE, REFERENCE_COLOR, _layout
from retention.serving.report._render import render_report
from retention.serving.report._section import ReportSection

if TYPE_CHECKING:  # pragma: no cover
    from retention.workflows import PlanReport, UpliftEvaluateReport

__all__ = [
    "plan_sections",
    "policy_figure",
    "qini_figure",
    "render_plan_report",
    "render_uplift_report",
    "uplift_sections",
]

CAPTIONS = {
    "qini": (
        "Qini curves on the held-out half: targeting customers in the order of each model's "
        "predicted uplift (left to right), the incremental outcomes gained so far (treated "
        "outcomes minus the controls', scaled to as many units). The grey line is targeting in "
        "random order; the higher a curve above it, the better the model ranks. The Qini "
        "coefficient in the table is the area between a curve and the grey line, divided by the "
        "perfect model's."
    ),
    "metrics": (
        "Per model and treatment on the held-out half: qini (normalised Qini AUUC; 0 random, 1 "
        "perfect), auuc (the same for the uplift curve), the raw areas (outcome per unit), and "
        "uplift@30% (treated minus control mean outcome among the 30% of units with the highest "
        "predicted uplift). The chosen model (starred) was picked on a validation part of the "
        "training half, not here."
    ),
    "policy": (
        "Incremental outcomes per 1,000 held-out units over treating nobody, valued by inverse "
        "propensity weighting (IPW) and doubly robust (DR) estimation, with 95% bootstrap "
        "intervals. Each model's policy treats at most the given share of units with its best "
        "treatment; random targeting treats as many at random with the same mix of treatments; "
        "'everyone_best_single' gives every unit the treatment that did best on the training half."
    ),
    "difference": (
        "Mean outcome of each treatment minus the control's, on all units, with a Welch 95% "
        "interval and p-value: the average effect the models split by customer."
    ),
    "features": "Covariates the models learned from, and the columns left out with the reason.",
}


def qini_figure(
    curves: dict[tuple[str, str], tuple[list[float], list[float]]],
    treatment: str,
    chosen: str,
) -> go.Figure:
    """The held-out Qini curves of every model for one treatment, with the random line."""
    fig = go.Figure()
    end_x = end_y = 0.0
    for i, ((model, t), (x, q)) in enumerate(sorted(curves.items())):
        if t != treatment:
            continue
        n = x[-1] if x else 1.0
        share = [v / n for v in x]
        fig.add_trace(
            go.Scatter(
                x=share,
                y=q,
                mode="lines",
                name=model + (" (chosen)" if model == chosen else ""),
                line={"color": PALETTE[i % len(PALETTE)], "width": 3 if model == chosen else 1.5},
                hovertemplate="%{x:.0%} targeted: %{y:.1f}<extra>" + model + "</extra>",
            )
        )
        end_x, end_y = 1.0, q[-1]
    fig.add_trace(
        go.Scatter(
            x=[0, end_x],
            y=[0, end_y],
            mode="lines",
            name="random",
            line={"color": REFERENCE_COLOR, "dash": "dash"},
        )
    )
    return _layout(
        fig,
        title={"text": f"Qini curves: {treatment}", "x": 0.01},
        xaxis={"title": {"text": "share of units targeted"}, "tickformat": ".0%"},
        yaxis={"title": {"text": "incremental outcomes"}},
    )


def policy_figure(policies: dict[str, Any]) -> go.Figure:
    """Bars of each policy's incremental outcome per 1,000 units, IPW and DR, with intervals."""
    fig = go.Figure()
    names = [n for n in policies if n != "nobody"]
    for i, est in enumerate(("ipw", "dr")):
        rows = [policies[n].get(est) for n in names]
        if not any(rows):
            continue
        per = [r["per_1000"] if r else None for r in rows]
        scale = [r["per_1000"] / r["incremental"] if r and r["incremental"] else 0 for r in rows]
        hi = [
            (r["incremental_high"] - r["incremental"]) * s if r else 0
            for r, s in zip(rows, scale, strict=True)
        ]
        lo = [
            (r["incremental"] - r["incremental_low"]) * s if r else 0
            for r, s in zip(rows, scale, strict=True)
        ]
        fig.add_trace(
            go.Bar(
                x=names,
                y=per,
                name=est.upper(),
                marker={"color": PALETTE[i]},
                error_y={"type": "data", "array": hi, "arrayminus": lo},
            )
        )
    return _layout(
        fig,
        barmode="group",
        title={"text": "Incremental outcomes per 1,000 units (held-out half)", "x": 0.01},
        yaxis={"title": {"text": "gain over treating nobody"}},
    )


def uplift_sections(report: UpliftEvaluateReport) -> list[ReportSection]:
    """The sections of the uplift page."""
    payload = report.to_dict()
    ev = report.evaluation
    sections: list[ReportSection] = []
    diff = pd.DataFrame(
        {t: v["difference"] for t, v in payload["treatments"].items()}
    ).T.rename_axis("treatment")
    for col in ("n_treatment", "n_control"):
        diff[col] = diff[col].astype(int)
    sections.append(
        ReportSection("Average effect per treatment", table=diff, notes=CAPTIONS["difference"])
    )
    for t in ev.data.treatments:
        sections.append(
            ReportSection(
                f"Qini curves: {t}",
                figures=[qini_figure(ev.curves, t, ev.chosen)],
                notes=CAPTIONS["qini"],
                wide=len(ev.data.treatments) == 1,
            )
        )
    metrics = ev.metrics.reset_index()
    metrics["model"] = [m + (" *" if m == ev.chosen else "") for m in metrics["model"]]
    metrics["validation_qini"] = [ev.selection[m.rstrip(" *")] for m in metrics["model"]]
    sections.append(
        ReportSection(
            "Held-out metrics", table=metrics.set_index("model"), notes=CAPTIONS["metrics"]
        )
    )
    pol = payload["policy"]["policies"]
    keep = ["treated_share", "per_1000", "incremental", "incremental_low", "incremental_high"]
    keep += ["ratio", "ratio_low", "ratio_high"]
    table = pd.DataFrame(
        [
            {"policy": name, "estimator": est, **{k: vals.get(k) for k in keep}}
            for name, by in pol.items()
            for est, vals in by.items()
        ]
    ).set_index("policy")
    sections.append(
        ReportSection(
            f"Policy value at {100 * ev.share:.0f}% treated",
            figures=[policy_figure(pol)],
            table=table,
            notes=" ".join([CAPTIONS["policy"], *payload["policy"].get("warnings", [])]),
        )
    )
    feats = pd.DataFrame(
        [{"column": c, "used": True, "why left out": ""} for c in ev.features]
        + [{"column": c, "used": False, "why left out": r} for c, r in ev.dropped.items()]
    ).set_index("column")
    sections.append(ReportSection("Features", table=feats, notes=CAPTIONS["features"], wide=False))
    return sections


def render_uplift_report(report: UpliftEvaluateReport, path: Path | str) -> Path:
    """Write the uplift evaluation page (self-contained HTML) and return its path."""
    payload = report.to_dict()
    pol = payload["policy"]["policies"]
    chosen = payload["chosen_model"]
    ratio = pol.get("policy", pol.get(f"model:{chosen}", {})).get("ipw", {}).get("ratio")
    summary = [
        ("units", f"{payload['n_units']:,}"),
        ("outcome", str(payload["outcome"])),
        ("chosen model", chosen),
        ("policy / random (IPW)", "–" if ratio is None else f"{ratio:.2f}x"),
    ]
    return render_report(
        uplift_sections(report),
        path,
        title=f"Uplift evaluation: {Path(report.source).name}",
        summary=summary,
        subtitle=(
            f"treatment column {payload['treatment_column']}, control {payload['control']!r}; "
            f"{payload['n_test']:,} units held out"
        ),
    )


# ------------------------------------------------------------------------------------ the plan
PLAN_CAPTIONS = {
    "totals": (
        "Per action: customers, expected incremental conversions, value and cost, and ROI "
        "((value - cost) / cost), each with a 95% bootstrap interval over resampled customers "
        "(the spread of the totals, not the uplift model's own error, which `retention uplift "
        "evaluate` measures on held-out data)."
    ),
    "value": (
        "Each targeted customer's expected incremental value against its expected cost; the "
        "optimiser keeps the pairs that earn most per unit of budget, within the caps."
    ),
    "tiers": "Customers per loyalty tier and action.",
    "notes": "What the plan could not use, and where its uplift estimates come from.",
}


def _interval(t: pd.DataFrame, col: str, fmt: str) -> list[str]:
    out = []
    for _, r in t.iterrows():
        v, lo, hi = r.get(col), r.get(f"{col}_low"), r.get(f"{col}_high")
        if v is None or pd.isna(v):
            out.append("–")
        elif lo is None or hi is None or pd.isna(lo):
            out.append(format(float(v), fmt))
        else:
            out.append(f"{float(v):{fmt}} ({float(lo):{fmt}} .. {float(hi):{fmt}})")
    return out


def _totals_table(totals: pd.DataFrame) -> pd.DataFrame:
    """The totals with their intervals, one readable cell per figure."""
    t = totals.copy()
    return pd.DataFrame(
        {
            "customers": t["customers"].astype(int),
            "incremental conversions": _interval(t, "incremental_conversions", ",.1f"),
            "incremental value": _interval(t, "incremental_value", ",.2f"),
            "cost": _interval(t, "cost", ",.2f"),
            "ROI": _interval(t, "roi", ".2f"),
        },
        index=t.index.rename("action"),
    )


def _totals_figure(totals: pd.DataFrame) -> go.Figure:
    t = totals.drop(index=[i for i in ("total", "none") if i in totals.index])
    fig = go.Figure()
    for i, col in enumerate(("incremental_value", "cost")):
        if col not in t.columns:
            continue
        fig.add_trace(
            go.Bar(
                x=[str(x) for x in t.index],
                y=t[col],
                name=col.replace("_", " "),
                marker={"color": PALETTE[i]},
                error_y={
                    "type": "data",
                    "array": (t[f"{col}_high"] - t[col]).fillna(0),
                    "arrayminus": (t[col] - t[f"{col}_low"]).fillna(0),
                },
            )
        )
    return _layout(
        fig,
        barmode="group",
        title={"text": "Expected incremental value and cost by action", "x": 0.01},
        yaxis={"title": {"text": "money"}},
    )


def plan_sections(report: PlanReport) -> list[ReportSection]:
    """The sections of the plan page."""
    sections = [
        ReportSection(
            "Totals by action",
            table=_totals_table(report.totals),
            figures=[_totals_figure(report.totals)],
            notes=PLAN_CAPTIONS["totals"],
        )
    ]
    rows = report.rows
    targeted = rows[rows["action"] != "none"]
    if len(targeted):
        sample = targeted.sample(min(len(targeted), 3000), random_state=0)
        fig = go.Figure()
        for i, (action, part) in enumerate(sample.groupby("action", sort=True)):
            fig.add_trace(
                go.Scatter(
                    x=part["expected_cost"],
                    y=part["expected_value"],
                    mode="markers",
                    name=str(action),
                    marker={"color": PALETTE[i % len(PALETTE)], "size": 5, "opacity": 0.6},
                )
            )
        _layout(
            fig,
            title={"text": "Expected value against cost, targeted customers", "x": 0.01},
            xaxis={"title": {"text": "expected cost"}},
            yaxis={"title": {"text": "expected incremental value"}},
        )
        sections.append(
            ReportSection("Value and cost", figures=[fig], notes=PLAN_CAPTIONS["value"])
        )
    if rows["tier"].notna().any():
        tiers = pd.crosstab(rows["tier"].fillna("(none)"), rows["action"])
        sections.append(
            ReportSection(
                "Tiers and actions", table=tiers, notes=PLAN_CAPTIONS["tiers"], wide=False
            )
        )
    notes = pd.DataFrame({"note": report.notes or ["none"]})
    sections.append(ReportSection("Notes", table=notes, notes=PLAN_CAPTIONS["notes"], wide=False))
    return sections


def render_plan_report(report: PlanReport, path: Path | str) -> Path:
    """Write the plan page (self-contained HTML) and return its path."""
    summary = [
        ("customers", f"{len(report.rows):,}"),
        ("budget", f"{report.budget:,.2f}"),
        ("expected cost", f"{report.expected_cost:,.2f}"),
        ("expected value", f"{report.expected_value:,.2f}"),
    ]
    roi = report.totals["roi"].get("total") if "roi" in report.totals.columns else None
    roi = float(roi) if isinstance(roi, int | float) and pd.notna(roi) else None
    if roi is not None:
        summary.append(("ROI", f"{roi:.2f}"))
    return render_report(
        plan_sections(report),
        path,
        title="Retention plan",
        summary=summary,
        subtitle=f"plan {report.plan_id}; optimiser {report.allocation.method}, "
        f"gap at most {100 * report.allocation.gap:.3f}%",
    )

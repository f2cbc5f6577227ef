"""What the dashboard shows of the whole store: overview, cohorts, risk, drivers, models, and the
parts of later stages (plan totals, experiments) as far as their tables exist.

Each function reads the store only (no model runs) and returns a dataclass with ``to_dict()``.
The service caches their results until the store changes.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from retention.data import Store
from retention.exceptions import DataError
from retention.features import cohort_retention
from retention.strategies import RISK_BANDS
from retention.workflows._common import json_clean
from retention.workflows._customers import current_run

__all__ = [
    "DashboardPart",
    "dashboard_cohorts",
    "dashboard_drivers",
    "dashboard_experiments",
    "dashboard_models",
    "dashboard_overview",
    "dashboard_plan",
    "dashboard_risk",
    "latest_model_id",
]

_RETENTION_WINDOW_DAYS = 90


@dataclass
class DashboardPart:
    """One part of the dashboard: its data and, when a stage has not produced it yet, a note."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return json_clean({"name": self.name, "data": self.data, "note": self.note})


def _purchases(store: Store) -> pd.DataFrame:
    ev = store.events_df(columns=("user_id", "ts", "event_type", "order_id", "amount"))
    return ev[ev["event_type"] == "purchase"]


def _orders(buys: pd.DataFrame) -> int:
    """Distinct orders; a purchase line without an order id is an order of its own."""
    return int(buys["order_id"].nunique() + buys["order_id"].isna().sum())


def dashboard_overview(store: Store) -> DashboardPart:
    """Customers, orders, revenue, the 90-day retention rate, and a monthly trend.

    The retention rate is the backtest's label at the cutoff 90 days before the last purchase:
    of the customers with a purchase before it, the share with one in the 90 days after. The
    monthly trend counts active and new customers, orders and revenue, and the share of the
    previous month's customers active again.
    """
    ev = store.events_df(columns=("user_id", "ts", "event_type"))
    buys = _purchases(store)
    data: dict[str, Any] = {
        "events": len(ev),
        "customers": int(ev["user_id"].nunique()),
        "event_types": {str(k): int(v) for k, v in ev["event_type"].value_counts().items()},
        "first_event": ev["ts"].min() if len(ev) else None,
        "last_event": ev["ts"].max() if len(ev) else None,
    }
    if buys.empty:
        return DashboardPart("overview", data, note="no purchase events in the store yet")
    last = buys["ts"].max().normalize()
    cutoff = last - pd.Timedelta(days=_RETENTION_WINDOW_DAYS)
    before = set(buys.loc[buys["ts"] < cutoff, "user_id"])
    after = set(buys.loc[buys["ts"] >= cutoff, "user_id"])
    data.update(
        {
            "purchasers": int(buys["user_id"].nunique()),
            "orders": _orders(buys),
            "revenue": round(float(buys["amount"].fillna(0).sum()), 2),
            "retention": {
                "cutoff": cutoff,
                "horizon_days": _RETENTION_WINDOW_DAYS,
                "customers": len(before),
                "rate": (len(before & after) / len(before)) if before else None,
            },
        }
    )
    buys = buys.assign(month=buys["ts"].dt.to_period("M"))
    first = buys.groupby("user_id")["month"].min()
    new = first.value_counts()
    per_month = buys.groupby("month").agg(
        orders=("order_id", "nunique"),
        unordered=("order_id", lambda o: int(o.isna().sum())),
        revenue=("amount", lambda a: float(a.fillna(0).sum())),
    )
    per_month["orders"] += per_month["unordered"]
    users_by_month: dict[Any, set[Any]] = {m: set(u) for m, u in buys.groupby("month")["user_id"]}
    orders = per_month["orders"].to_dict()
    revenue = per_month["revenue"].to_dict()
    rows = []
    prev: set[Any] | None = None
    for m, users in users_by_month.items():
        rows.append(
            {
                "month": str(m),
                "active": len(users),
                "new": int(new.get(m, 0)),
                "orders": int(orders[m]),
                "revenue": round(float(revenue[m]), 2),
                "retained_from_previous": (len(users & prev) / len(prev)) if prev else None,
            }
        )
        prev = users
    data["monthly"] = rows
    data["partial_last_month"] = bool(last.day < last.days_in_month)
    return DashboardPart("overview", data)


def dashboard_cohorts(store: Store, *, period: str = "M") -> DashboardPart:
    """The cohort retention matrix (share of each first-purchase cohort active n periods on)."""
    ev = store.events_df(columns=("user_id", "ts", "event_type"))
    try:
        table = cohort_retention(ev, period=period)
    except DataError:
        return DashboardPart("cohorts", {}, note="no purchase events in the store yet")
    sizes = table.attrs.get("cohort_size")
    values = table.to_numpy(dtype=float)
    return DashboardPart(
        "cohorts",
        {
            "period": period,
            "cohorts": [str(c) for c in table.index],
            "periods": [int(c) for c in table.columns],
            "share": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in values],
            "size": [] if sizes is None else [int(s) for s in sizes],
            "last_period": str(table.attrs.get("last_period", "")),
        },
    )


def _latest_scores(store: Store) -> pd.DataFrame:
    head = store.read_rows("scores", order_by=["cutoff", "scored_at"], descending=True, limit=1)
    if head.empty:
        return head
    version = str(head["model_version"].iloc[0])
    return store.read_scores(model_version=version, latest=True)


def dashboard_risk(store: Store, *, bins: int = 20) -> DashboardPart:
    """The distribution of P(retained) of the latest scores, by risk band, with expected value."""
    df = _latest_scores(store)
    if df.empty:
        return DashboardPart(
            "risk", {}, note="no scores yet: train a model and run `retention score`"
        )
    p = df["p_retained"].to_numpy(dtype=float)
    counts, edges = np.histogram(p[np.isfinite(p)], bins=bins, range=(0.0, 1.0))
    bands = []
    lower = 0.0
    for upper, band in RISK_BANDS:
        mine = df[df["risk_band"] == band]
        bands.append(
            {
                "band": band,
                "p_from": lower,
                "p_below": None if not np.isfinite(upper) else upper,
                "customers": len(mine),
                "share": len(mine) / len(df),
                "mean_p_retained": float(mine["p_retained"].mean()) if len(mine) else None,
                "clv": round(float(mine["clv"].fillna(0).sum()), 2),
            }
        )
        lower = upper
    return DashboardPart(
        "risk",
        {
            "model_version": str(df["model_version"].iloc[0]),
            "cutoff": pd.Timestamp(df["cutoff"].iloc[0]),
            "horizon_days": int(df["horizon_days"].iloc[0]),
            "customers": len(df),
            "expected_retained": float(np.nansum(p)),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
            "bands": bands,
        },
    )


def dashboard_drivers(store: Store, *, top: int = 12) -> DashboardPart:
    """The features behind the latest scores: mean |SHAP| per feature and family over every
    stored reason, and how often each is a high-risk customer's strongest churn reason."""
    scores = _latest_scores(store)
    if scores.empty:
        return DashboardPart("drivers", {}, note="no scores yet: run `retention score`")
    version = str(scores["model_version"].iloc[0])
    cutoff = pd.Timestamp(scores["cutoff"].iloc[0])
    reasons = store.read_reasons(model_version=version, cutoff=cutoff)
    if reasons.empty:
        return DashboardPart(
            "drivers",
            {"model_version": version},
            note="the latest scores have no stored reasons (a BTYD model gives none)",
        )
    reasons = reasons.assign(abs_contribution=reasons["contribution"].abs())
    by_feature = (
        reasons.groupby(["feature", "family"])
        .agg(
            mean_abs=("abs_contribution", "mean"),
            churn=("direction", lambda d: int((d == "churn").sum())),
            retention=("direction", lambda d: int((d == "retention").sum())),
        )
        .reset_index()
        .sort_values("mean_abs", ascending=False)
        .head(top)
    )
    by_family = (
        reasons.groupby("family")["abs_contribution"].sum().sort_values(ascending=False)
        / reasons["abs_contribution"].sum()
    )
    high = set(scores.loc[scores["risk_band"] == "high", "user_id"])
    first = reasons[
        (reasons["direction"] == "churn") & (reasons["rank"] == 1) & reasons["user_id"].isin(high)
    ]
    return DashboardPart(
        "drivers",
        {
            "model_version": version,
            "cutoff": cutoff,
            "features": by_feature.to_dict("records"),
            "families": {str(k): float(v) for k, v in by_family.items()},
            "top_churn_reason_of_high_risk": {
                str(k): int(v) for k, v in first["feature"].value_counts().head(top).items()
            },
        },
    )


def latest_model_id(store: Store) -> str | None:
    """The newest model of the store's registry, or None."""
    reg = store.read_rows("models", order_by=["created_at"], descending=True, limit=1)
    return None if reg.empty else str(reg["model_id"].iloc[0])


def dashboard_models(store: Store) -> DashboardPart:
    """The model registry with each model's validation metrics and how many customers it
    scored. Drift and realised performance come with the monitoring stage."""
    reg = store.read_rows("models", order_by=["created_at"], descending=True)
    rows = []
    for rec in reg.to_dict("records"):
        try:
            meta = json.loads(rec.get("metadata") or "{}")
        except ValueError:
            meta = {}
        valid = (meta.get("metrics") or {}).get("valid") or {}
        rows.append(
            {
                "model_id": rec["model_id"],
                "name": rec.get("registry_name"),
                "stage": store.model_stage(str(rec["model_id"])) or "candidate",
                "cutoff": rec.get("cutoff"),
                "horizon_days": rec.get("horizon_days"),
                "created_at": rec.get("created_at"),
                "valid_metrics": {
                    k: valid.get(k) for k in ("roc_auc", "pr_auc", "brier", "lift_at_10")
                },
                "scored_customers": store.count_rows(
                    "scores", where={"model_version": str(rec["model_id"])}
                ),
            }
        )
    return DashboardPart(
        "models",
        {"models": rows},
        note="the metrics shown are on each model's validation cutoff; drift and realised "
        "performance are in the latest monitor run (`retention monitor`, /stats/monitor)",
    )


def dashboard_plan(store: Store) -> DashboardPart:
    """Totals of the plan's current run (rows, sums of its numeric columns, actions), and the
    run's own totals from ``plan_runs`` when the plan stage wrote them."""
    where = current_run(store, "planned_action")
    if where is None:
        return DashboardPart(
            "plan", {}, note="no plan yet: the plan stage (`retention plan --budget`) writes it"
        )
    df = store.read_rows("plan", where=where)
    numeric = df.select_dtypes("number")
    data: dict[str, Any] = {
        "rows": len(df),
        "run": json_clean(where),
        "totals": {str(c): float(numeric[c].sum()) for c in numeric.columns},
    }
    for col in ("action", "risk_band", "tier"):
        if col in df.columns:
            data["by_" + col] = {str(k): int(v) for k, v in df[col].value_counts().items()}
    if "plan_id" in where and store.has_table("plan_runs"):
        run = store.read_rows("plan_runs", where={"plan_id": where["plan_id"]})
        if not run.empty:
            rec = run.iloc[0].to_dict()
            for key in ("totals", "offers", "notes"):
                if isinstance(rec.get(key), str):
                    with contextlib.suppress(ValueError):
                        rec[key] = json.loads(rec[key])
            data["plan_run"] = json_clean(rec)
    return DashboardPart("plan", data)


def dashboard_experiments(store: Store) -> DashboardPart:
    """The store's experiments with their arms, and the latest stored analysis of each
    (difference of each variant from the control with its interval and p-value)."""
    from retention.workflows._experiment import list_experiments

    records = list_experiments(store)
    stored = store.read_rows("experiment_results", order_by=["experiment_id", "metric", "variant"])
    exps = []
    for rec in records:
        mine = stored[stored["experiment_id"] == rec.experiment_id]
        cols = [
            c
            for c in (
                "metric",
                "variant",
                "control",
                "n_control",
                "n_treatment",
                "mean_control",
                "mean_treatment",
                "difference",
                "ci_low",
                "ci_high",
                "p_value",
                "lift",
                "guardrail",
                "srm_p_value",
                "analysed_at",
            )
            if c in mine.columns
        ]
        exps.append(
            {
                "experiment_id": rec.experiment_id,
                "name": rec.name,
                "status": rec.status,
                "control": rec.control,
                "arms": dict(rec.arms),
                "results": json_clean(mine[cols].to_dict("records")),
            }
        )
    note = ""
    if not exps:
        note = "no experiments yet: `retention experiment create` (or POST /experiments)"
    elif not any(e["results"] for e in exps):
        note = "no stored analysis yet: run `retention experiment analyze --experiment ID`"
    return DashboardPart("experiments", {"experiments": exps}, note=note)

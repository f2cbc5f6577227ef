"""The plan: one action per customer within a budget (what ``retention plan`` calls).

:func:`plan` joins, per customer, what the earlier stages stored: P(retained), CLV and the risk
band (``scores``), the strongest churn reason (``score_reasons``), the uplift of each offer
(``uplift_scores`` of the newest uplift model; shifted to the uplift an experiment measured in the
customer's risk band where one did, through :func:`retention.workflows.measured_uplift`; else the
offer's ``assumed_uplift``), recommended items (``recommendations``, when the recommendation
stage has run) and the loyalty tier (``loyalty``). The budget optimiser chooses the offers; every
customer gets a row in ``plan`` with the action and why in plain words, and the run's totals go to
``plan_runs``.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import Store
from retention.exceptions import ConfigError, RetentionWarning
from retention.strategies import (
    Allocation,
    Offer,
    explain_actions,
    offer_economics,
    optimise_budget,
    read_offers,
    summarise_allocation,
    top_items,
)
from retention.workflows._common import json_clean, write_json
from retention.workflows._loyalty import latest_scores

__all__ = ["PlanReport", "PlanRequest", "plan", "read_offers", "write_plan_json"]

#: items per customer in the plan
PLAN_ITEMS = 5
#: the send cost of an offer made from an uplift model's treatment when no --offers is given
DEFAULT_SEND_COST = 1.0


@dataclass(frozen=True)
class PlanRequest:
    """A plan within a budget.

    Attributes
    ----------
    budget : float
        Most total expected cost of the offers (money).
    offers : tuple of Offer or None
        The offers (``read_offers(path)``); default: one per treatment of the newest uplift
        model, costing 1 per send.
    out : Path or None
        Also write the plan to this ``.csv`` or ``.parquet`` file.
    method : str
        The optimiser's method (``auto``, ``milp``, ``lagrangian``, ``greedy``).
    objective : {"value", "net"}
        ``value``: maximise the expected incremental value within the budget (spend it where it
        changes behaviour most); ``net``: maximise value minus cost, sending only offers that
        pay for themselves.
    n_boot : int
        Bootstrap resamples of the totals.
    """

    budget: float
    offers: tuple[Offer, ...] | None = None
    out: Path | None = None
    method: str = "auto"
    objective: str = "value"
    n_boot: int = 200

    def __post_init__(self) -> None:
        try:
            b = float(self.budget)
        except (TypeError, ValueError):
            b = float("nan")
        if not np.isfinite(b) or b < 0:
            raise ConfigError(f"--budget must be an amount >= 0, e.g. 5000; got {self.budget!r}.")
        object.__setattr__(self, "budget", b)
        if self.offers is not None:
            offers = tuple(self.offers)
            if not all(isinstance(o, Offer) for o in offers):
                raise ConfigError("offers must be Offer objects (read them with read_offers).")
            object.__setattr__(self, "offers", offers)
        if self.out is not None:
            out = Path(self.out)
            if out.suffix.lower() not in (".csv", ".parquet"):
                raise ConfigError(f"--out must end in .csv or .parquet; got {out.name}.")
            object.__setattr__(self, "out", out)
        if self.objective not in ("value", "net"):
            raise ConfigError(f"objective must be 'value' or 'net'; got {self.objective!r}.")
        if self.method not in ("auto", "milp", "lagrangian", "greedy"):
            raise ConfigError(
                f"method must be auto, milp, lagrangian or greedy; got {self.method!r}."
            )
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 0:
            raise ConfigError(f"n_boot must be an integer >= 0; got {self.n_boot!r}.")


@dataclass(frozen=True)
class PlanReport:
    """What :func:`plan` wrote.

    Attributes
    ----------
    plan_id : str
    budget : float
    rows : pd.DataFrame
        The ``plan`` rows (one per customer).
    allocation : Allocation
        The optimiser's result.
    totals : pd.DataFrame
        By action (and ``total``): customers, incremental conversions, value, cost, ROI, with
        bootstrap intervals.
    offers : tuple of Offer
    notes : list of str
        What the plan could not use.
    out : Path or None
        The exported file.
    seconds : float
    """

    plan_id: str
    budget: float
    rows: pd.DataFrame
    allocation: Allocation
    totals: pd.DataFrame
    offers: tuple[Offer, ...]
    notes: list[str] = field(default_factory=list)
    out: Path | None = None
    seconds: float = 0.0
    objective: str = "value"

    @property
    def expected_value(self) -> float:
        """Total expected incremental value of the chosen actions."""
        return float(self.rows["expected_value"].sum())

    @property
    def expected_cost(self) -> float:
        """Total expected cost of the chosen actions."""
        return float(self.rows["expected_cost"].sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the rows are in the ``plan`` table)."""
        return json_clean(
            {
                "plan_id": self.plan_id,
                "budget": self.budget,
                "customers": len(self.rows),
                "by_action": {
                    str(k): int(v) for k, v in self.rows["action"].value_counts().items()
                },
                "allocation": self.allocation.to_dict(),
                "totals": {
                    str(k): {c: v for c, v in r.items()}
                    for k, r in self.totals.to_dict(orient="index").items()
                },
                "offers": [o.to_dict() for o in self.offers],
                "notes": self.notes,
                "out": self.out,
                "seconds": self.seconds,
                "table": "plan",
            }
        )


def _reasons(store: Store, scores: pd.DataFrame) -> pd.Series:
    if scores.empty or not store.has_table("score_reasons"):
        return pd.Series(dtype=object)
    first = scores.iloc[0]
    r = store.read_reasons(
        model_version=str(first["model_version"]), cutoff=pd.Timestamp(first["cutoff"])
    )
    r = r[(r["direction"] == "churn") & (r["rank"] == 1)]
    return pd.Series(r["text"].to_numpy(), index=r["user_id"].astype(str), dtype=object)


def _uplift_scores(store: Store) -> tuple[pd.DataFrame, pd.DataFrame, str | None, str | None]:
    """``(uplift, outcome_control)`` pivoted user x treatment from the newest uplift model's
    newest scores, its id and outcome; empty when none."""
    empty = pd.DataFrame()
    if not store.has_table("uplift_models") or store.count_rows("uplift_models") == 0:
        return empty, empty, None, None
    models = store.read_rows("uplift_models", order_by=["created_at"], descending=True)
    for _, m in models.iterrows():
        rows = store.read_rows("uplift_scores", where={"model_id": str(m["model_id"])})
        if rows.empty:
            continue
        rows = rows[rows["cutoff"] == rows["cutoff"].max()]
        rows = rows.assign(user_id=rows["user_id"].astype(str))
        u = rows.pivot_table(index="user_id", columns="treatment", values="uplift", aggfunc="last")
        c = rows.pivot_table(
            index="user_id", columns="treatment", values="outcome_control", aggfunc="last"
        )
        return u, c, str(m["model_id"]), str(m["outcome"])
    return empty, empty, None, None


def _measured(store: Store, notes: list[str]) -> pd.DataFrame:
    """Uplift measured by experiments per risk band (``retention.workflows.measured_uplift``)."""
    if not store.has_table("segment_uplift"):
        return pd.DataFrame()
    from retention.workflows._experiment import measured_uplift

    try:
        return measured_uplift(store, segment_by="risk_band")
    except Exception as exc:  # the experiment stage's reader failing must not stop the plan
        notes.append(f"measured uplift could not be read ({type(exc).__name__}: {exc})")
        return pd.DataFrame()


def _recommended(store: Store, notes: list[str]) -> dict[str, list[str]]:
    if not store.has_table("recommendations") or store.count_rows("recommendations") == 0:
        notes.append(
            "no recommended items: the recommendations table is empty (run `retention "
            "recommend --all`), so every row's items are empty"
        )
        return {}
    recs = store.read_rows("recommendations")
    recs = recs[recs["cutoff"] == recs["cutoff"].max()]
    if "created_at" in recs.columns and recs["model_version"].nunique() > 1:
        last = recs.sort_values("created_at", kind="mergesort")["model_version"].iloc[-1]
        recs = recs[recs["model_version"] == last]
    return top_items(recs.assign(user_id=recs["user_id"].astype(str)), PLAN_ITEMS)


def _loyalty(store: Store) -> pd.DataFrame:
    if not store.has_table("loyalty") or store.count_rows("loyalty") == 0:
        return pd.DataFrame()
    df = store.read_rows("loyalty", order_by=["as_of"], descending=True)
    df = df.assign(user_id=df["user_id"].astype(str)).drop_duplicates("user_id")
    return df.set_index("user_id")


def plan(store: Store, request: PlanRequest, *, progress: Progress | None = None) -> PlanReport:
    """Choose one action per customer within the budget; write ``plan`` and ``plan_runs``.

    Raises
    ------
    ConfigError
        Nothing to plan (no scores, uplift scores or loyalty tiers in the store).
    """
    store.check_writable("write the plan")
    prog = as_progress(progress)
    t0 = time.perf_counter()
    notes: list[str] = []
    with prog.stage("reading scores, uplift, tiers and recommendations"):
        scores = latest_scores(store)
        reasons = _reasons(store, scores)
        uplift_df, control_df, uplift_model, outcome = _uplift_scores(store)
        measured = _measured(store, notes)
        items = _recommended(store, notes)
        loyalty = _loyalty(store)
    users = pd.Index([], dtype=object)
    for idx in (scores.index, uplift_df.index, loyalty.index):
        users = users.union(pd.Index(idx.astype(str)))
    if not len(users):
        raise ConfigError(
            f"Nothing to plan in store {store.path}: it has no scores, uplift scores or loyalty "
            "tiers. Run `retention score` (and `retention uplift score`, `retention loyalty run`) "
            "first."
        )
    if scores.empty:
        notes.append(
            "no scores: P(retained), CLV and reasons are empty; redemption is costed as certain"
        )
    offers = request.offers
    if offers is None:
        offers = tuple(
            Offer(name=str(t), treatment=str(t), send_cost=DEFAULT_SEND_COST)
            for t in uplift_df.columns
        )
        if offers:
            notes.append(
                f"no --offers: each treatment of uplift model {uplift_model} is an offer costing "
                f"{DEFAULT_SEND_COST:g} per send"
            )
    if uplift_model is None:
        notes.append("no uplift scores: train and score an uplift model (`retention uplift train`)")
    n, m = len(users), len(offers)
    band = scores["risk_band"].reindex(users) if len(scores) else pd.Series(None, index=users)
    uplift = np.full((n, m), np.nan)
    sources = np.full((n, m), "", dtype=object)
    for j, o in enumerate(offers):
        model_col = (
            uplift_df[o.arm].reindex(users).to_numpy(dtype=float)
            if o.arm in uplift_df.columns
            else np.full(n, np.nan)
        )
        have_model = ~np.isnan(model_col)
        uplift[have_model, j] = model_col[have_model]
        sources[have_model, j] = "model"
        if len(measured):
            meas = measured[measured["variant"].astype(str) == o.arm]
            if o.metric is not None:
                meas = meas[meas["metric"].astype(str) == o.metric]
            if meas["metric"].nunique() > 1:
                notes.append(
                    f"offer {o.name}: experiments measured several metrics "
                    f"({', '.join(sorted(meas['metric'].unique()))}); set its metric in the "
                    "offers file to use one"
                )
                meas = meas.iloc[0:0]
            for _, row in meas.iterrows():
                in_band = (band.astype(str) == str(row["segment"])).to_numpy()
                both = in_band & have_model
                if both.any():  # keep the model's ranking, at the measured level
                    shift = float(row["uplift"]) - float(np.nanmean(model_col[both]))
                    uplift[both, j] = model_col[both] + shift
                    sources[both, j] = "model, calibrated to measured"
                only = in_band & ~have_model
                uplift[only, j] = float(row["uplift"])
                sources[only, j] = "measured"
        if o.assumed_uplift is not None:
            none = np.isnan(uplift[:, j])
            uplift[none, j] = o.assumed_uplift
            sources[none, j] = "assumed"
    for j, o in enumerate(offers):
        kinds = pd.Series(sources[:, j]).replace("", "none").value_counts()
        notes.append(
            f"uplift of {o.name}: "
            + ", ".join(f"{k} for {v:,} customer(s)" for k, v in kinds.items())
        )
    p = (
        scores["p_retained"].reindex(users).to_numpy(dtype=float)
        if len(scores)
        else np.full(n, np.nan)
    )
    clv = scores["clv"].reindex(users).to_numpy(dtype=float) if len(scores) else np.full(n, np.nan)
    value_if_retained = np.where(np.isnan(p), np.nan, clv / np.clip(p, 0.05, None))
    if scores.empty:
        value_if_retained = np.ones(n)
        if any(o.value is None for o in offers):
            notes.append(
                "no scores: an offer without a value counts one incremental outcome as worth 1"
            )
    base = p.copy()
    if len(control_df):  # the uplift model's own outcome without treatment, where known
        for o in offers:
            if o.arm in control_df.columns and np.isnan(base).any():
                ctl = control_df[o.arm].reindex(users).to_numpy(dtype=float)
                base = np.where(np.isnan(base), ctl, base)
    value, cost = offer_economics(
        np.nan_to_num(uplift, nan=0.0), offers, value_if_retained=value_if_retained, base_rate=base
    )
    value = np.where(np.isnan(uplift), np.nan, value)
    net = np.where(np.isnan(value), 0.0, value - cost)
    target = net if request.objective == "net" else np.where(np.isnan(value), 0.0, value)
    with prog.stage(f"choosing offers for {n:,} customers"):
        if m:
            alloc = optimise_budget(
                target, cost, request.budget, [o.cap for o in offers], method=request.method
            )
        else:
            alloc = Allocation(
                np.full(n, -1, dtype=np.int64),
                0.0,
                0.0,
                0.0,
                0.0,
                "none",
                "optimal",
                0.0,
                request.budget,
            )
    choice = alloc.choice
    why = explain_actions(
        choice,
        offers,
        uplift,
        np.nan_to_num(value, nan=0.0),
        cost,
        sources,
        outcome=outcome or "coming back",
    )
    tier = loyalty["tier"].reindex(users) if len(loyalty) else pd.Series(None, index=users)
    tier_msg = (
        loyalty["tier_message"].reindex(users) if len(loyalty) else pd.Series(None, index=users)
    )
    reason = reasons.reindex(users) if len(reasons) else pd.Series(None, index=users)
    rows_idx = np.arange(n)
    chosen = choice >= 0
    pick = np.where(chosen, choice, 0)
    item_lists = [items.get(u, []) for u in users]
    texts = []
    for i in range(n):
        parts = [why[i]]
        if not np.isnan(p[i]):
            parts.append(
                f"Churn risk {band.iloc[i]} (P(retained) {p[i]:.0%})"
                + (f": {reason.iloc[i]}" if isinstance(reason.iloc[i], str) else "")
                + "."
            )
        if item_lists[i]:
            parts.append(f"Show: {', '.join(item_lists[i][:3])}.")
        elif not items:
            parts.append("No recommended items (the recommendation stage has not run).")
        t = tier.iloc[i]
        if isinstance(t, str):
            msg = tier_msg.iloc[i]
            parts.append(f"Tier {t}" + (f": {msg}" if isinstance(msg, str) else "."))
        texts.append(" ".join(parts))
    now = pd.Timestamp.now().floor("s")
    plan_id = hashlib.sha256(
        json.dumps(
            [f"{now}", request.budget, [o.to_dict() for o in offers], n], default=str
        ).encode()
    ).hexdigest()[:12]
    cutoff = scores["cutoff"].iloc[0] if len(scores) else pd.NaT
    rows = pd.DataFrame(
        {
            "user_id": np.asarray(users, dtype=object),
            "plan_id": plan_id,
            "cutoff": pd.Series([cutoff] * n, dtype="datetime64[ns]").to_numpy(),
            "p_retained": p,
            "clv": clv,
            "risk_band": band.to_numpy(dtype=object),
            "reason": reason.to_numpy(dtype=object),
            "tier": tier.to_numpy(dtype=object),
            "tier_message": tier_msg.to_numpy(dtype=object),
            "action": np.where(
                chosen, np.asarray([o.name for o in offers] or [""], dtype=object)[pick], "none"
            ),
            "uplift": np.where(chosen, uplift[rows_idx, pick] if m else np.nan, np.nan),
            "uplift_source": (
                np.where(chosen, sources[rows_idx, pick], np.full(n, None))
                if m
                else np.full(n, None)
            ),
            "expected_value": np.where(
                chosen, np.nan_to_num(value)[rows_idx, pick] if m else 0.0, 0.0
            ),
            "expected_cost": np.where(chosen, cost[rows_idx, pick] if m else 0.0, 0.0),
            "items": [json.dumps(x) for x in item_lists],
            "why": texts,
        }
    )
    rows["created_at"] = pd.Series([now] * n, dtype="datetime64[ns]").to_numpy()
    totals = (
        summarise_allocation(
            choice,
            np.nan_to_num(value),
            cost,
            conversions=np.nan_to_num(uplift),
            names=[o.name for o in offers],
            n_boot=request.n_boot,
        )
        if m
        else pd.DataFrame(columns=["customers"])
    )
    totals.loc["none", "customers"] = int((~chosen).sum())
    totals["customers"] = totals["customers"].astype(int)
    total_value = float(np.nan_to_num(value)[rows_idx, pick][chosen].sum()) if m else 0.0
    if m and request.budget > 0 and not chosen.any():
        warnings.warn(
            "No offer is expected to help any customer"
            + (" by more than it costs" if request.objective == "net" else "")
            + ": the plan sends nothing. Check the offers' costs, or the uplift estimates.",
            RetentionWarning,
            stacklevel=2,
        )
    elif m and chosen.any() and total_value < alloc.cost:
        warnings.warn(
            f"The plan's expected value ({total_value:,.2f}) is below its cost "
            f"({alloc.cost:,.2f}): it buys outcomes at a loss. Pass --objective net to send only "
            "offers that pay for themselves, or check the offers' values.",
            RetentionWarning,
            stacklevel=2,
        )
    run = pd.DataFrame(
        {
            "plan_id": [plan_id],
            "created_at": pd.Series([now], dtype="datetime64[ns]"),
            "cutoff": pd.Series([cutoff], dtype="datetime64[ns]"),
            "budget": [request.budget],
            "spent": [alloc.cost],
            "expected_value": [total_value],
            "method": [alloc.method],
            "gap": [alloc.gap],
            "offers": [json.dumps([o.to_dict() for o in offers])],
            "totals": [json.dumps(json_clean(totals.to_dict(orient="index")), allow_nan=False)],
            "notes": [json.dumps(notes)],
        }
    )
    with store.transaction():
        store.replace_table("plan", rows)
        store.replace_rows("plan_runs", run, {"plan_id": plan_id})
    out = None
    if request.out is not None:
        out = _export(rows, request.out)
    return PlanReport(
        plan_id,
        request.budget,
        rows,
        alloc,
        totals,
        offers,
        notes,
        out,
        time.perf_counter() - t0,
        request.objective,
    )


def _export(rows: pd.DataFrame, path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".parquet":
            rows.to_parquet(path, index=False)
        else:
            rows.to_csv(path, index=False)
    except OSError as exc:
        raise ConfigError(
            f"Cannot write {path}: {exc.strerror or exc}. Pass another --out."
        ) from None
    return path


def write_plan_json(report: PlanReport, path: Path) -> Path:
    """Write a plan's ``to_dict()`` as JSON."""
    return write_json(report.to_dict(), path)

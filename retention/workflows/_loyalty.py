"""The loyalty programme's run (what ``retention loyalty run`` calls).

:func:`loyalty_run` takes a validated :class:`~retention.strategies.LoyaltyProgram` and a date,
and in one transaction: keeps the persistent holdout (new customers assigned by salted hash),
sets every other customer's tier (by predicted value or rolling spend), replays the events into
the points ledger (only new or restated entries are written, so a replay adds nothing), and writes
each customer's tier, movement, balance and expected cost to ``loyalty``, the tiers to
``loyalty_history`` and the run's summary to ``loyalty_runs``. The summary holds the programme's
cost, the retention lift that pays for it and, once an earlier run's horizon has passed, the
effect measured against the holdout.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import Store
from retention.exceptions import ConfigError
from retention.strategies import (
    DEFAULT_PROGRAM_TOML,
    LoyaltyProgram,
    assign_tiers,
    build_ledger,
    difference_in_means,
    holdout_assignment,
    member_costs,
    optimise_thresholds,
    programme_economics,
    tier_movement,
)
from retention.workflows._common import json_clean, write_json

__all__ = [
    "DEFAULT_PROGRAM_TOML",
    "LoyaltyProgram",
    "LoyaltyReport",
    "LoyaltyRunRequest",
    "latest_scores",
    "loyalty_run",
    "write_loyalty_json",
]


def latest_scores(store: Store, at_or_before: pd.Timestamp | None = None) -> pd.DataFrame:
    """The newest cutoff's scores (at or before ``at_or_before`` when given; one model version:
    the one scored last), indexed by user_id; empty when nothing was scored."""
    if not store.has_table("scores"):
        return pd.DataFrame()
    df = store.read_scores()
    if at_or_before is not None and len(df):
        df = df[df["cutoff"] <= at_or_before]
    if df.empty:
        return df
    df = df[df["cutoff"] == df["cutoff"].max()]
    if df["model_version"].nunique() > 1:
        last = df.sort_values("scored_at", kind="mergesort")["model_version"].iloc[-1]
        df = df[df["model_version"] == last]
    df = df.drop_duplicates("user_id", keep="last").set_index("user_id")
    df.index = df.index.astype(str)
    return df


@dataclass(frozen=True)
class LoyaltyRunRequest:
    """One run of a loyalty programme.

    Attributes
    ----------
    program : LoyaltyProgram or None
        The programme (default: :meth:`LoyaltyProgram.default`).
    as_of : pd.Timestamp or None
        The run's date: events before it count (default: the day after the last event).
    """

    program: LoyaltyProgram | None = None
    as_of: pd.Timestamp | None = None

    def __post_init__(self) -> None:
        from retention.features import to_cutoff

        if self.program is None:
            object.__setattr__(self, "program", LoyaltyProgram.default())
        elif not isinstance(self.program, LoyaltyProgram):
            raise ConfigError(
                "program must be a LoyaltyProgram (LoyaltyProgram.from_toml(path)); got "
                f"{type(self.program).__name__}."
            )
        if self.as_of is not None:
            object.__setattr__(self, "as_of", to_cutoff(self.as_of))


@dataclass(frozen=True)
class LoyaltyReport:
    """What :func:`loyalty_run` wrote.

    Attributes
    ----------
    run_id : str
        Id of the run (a digest of the programme and the date: running again replaces it).
    program : LoyaltyProgram
    as_of : pd.Timestamp
    members : pd.DataFrame
        One row per customer: ``tier``, ``previous_tier``, ``movement``, ``score``, ``points``,
        ``expected_cost``, ``holdout``, ``tier_message`` (index user_id).
    summary : dict
        Members by tier and movement, cost, break-even lift, holdout, measured effect.
    ledger : dict
        ``entries`` (total), ``added``, ``restated``, ``unchanged``, ``refused_points``.
    """

    run_id: str
    program: LoyaltyProgram
    as_of: pd.Timestamp
    members: pd.DataFrame
    summary: dict[str, Any]
    ledger: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the members themselves are in the ``loyalty`` table)."""
        return json_clean(
            {
                "run_id": self.run_id,
                "program": self.program.name,
                "as_of": self.as_of,
                "summary": self.summary,
                "ledger": self.ledger,
                "table": "loyalty",
            }
        )


def _run_id(program: LoyaltyProgram, as_of: pd.Timestamp) -> str:
    text = json.dumps([program.to_dict(), f"{as_of:%Y-%m-%d}"], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _holdout(
    store: Store, program: LoyaltyProgram, users: pd.Index, now: pd.Timestamp
) -> pd.Series:
    """The persistent holdout flag per customer: a stored assignment is kept; new customers (or
    everyone, after a change of salt) are assigned by salted hash and stored."""
    digest = hashlib.sha256(program.holdout_salt.encode("utf-8")).hexdigest()
    old = store.read_rows("loyalty_holdout", where={"program": program.name})
    old = old[old["salt_digest"] == digest] if len(old) else old
    known = (
        pd.Series(old["holdout"].astype(bool).to_numpy(), index=old["user_id"].astype(str))
        if len(old)
        else pd.Series(dtype=bool)
    )
    new_users = users.difference(known.index)
    if len(new_users):
        flags = holdout_assignment(list(new_users), program.holdout_share, program.holdout_salt)
        rows = pd.DataFrame(
            {
                "program": program.name,
                "user_id": np.asarray(new_users, dtype=object),
                "holdout": flags,
                "share": float(program.holdout_share),
                "salt_digest": digest,
                "assigned_at": pd.Series([now] * len(new_users), dtype="datetime64[ns]"),
            }
        )
        keep = old[["program", "user_id", "holdout", "share", "salt_digest", "assigned_at"]]
        both = pd.concat([keep, rows], ignore_index=True) if len(keep) else rows
        # rows of another salt go: a new salt draws a new holdout
        store.replace_rows("loyalty_holdout", both, {"program": program.name})
        known = pd.concat([known, pd.Series(flags, index=new_users)])
    return known.reindex(users).fillna(False).astype(bool)


def _rolling_spend(store: Store, as_of: pd.Timestamp, days: int) -> pd.Series:
    rows = store.con.execute(
        "SELECT user_id, CAST(sum(amount) AS DOUBLE) FROM events WHERE event_type = 'purchase' "
        "AND ts >= ? AND ts < ? GROUP BY 1",
        [(as_of - pd.Timedelta(days=days)).to_pydatetime(), as_of.to_pydatetime()],
    ).fetchall()
    return pd.Series({str(u): float(v or 0.0) for u, v in rows}, dtype=float)


def _customers(store: Store, as_of: pd.Timestamp) -> pd.Index:
    """Customers with a purchase before ``as_of``."""
    rows = store.con.execute(
        "SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase' AND ts < ?",
        [as_of.to_pydatetime()],
    ).fetchall()
    return pd.Index(sorted(str(r[0]) for r in rows))


def _multipliers(store: Store, program: LoyaltyProgram) -> pd.DataFrame:
    hist = store.read_rows("loyalty_history", where={"program": program.name})
    if hist.empty:
        return pd.DataFrame(columns=["user_id", "from_ts", "multiplier"])
    by = {t.name: t.points_multiplier for t in program.tiers}
    hist = hist[hist["tier"].notna()]
    return pd.DataFrame(
        {
            "user_id": hist["user_id"].astype(str),
            "from_ts": pd.to_datetime(hist["as_of"]),
            "multiplier": hist["tier"].map(by).fillna(1.0).astype(float),
        }
    )


def _measured_effect(
    store: Store, program: LoyaltyProgram, as_of: pd.Timestamp
) -> dict[str, Any] | None:
    """Members against the holdout of the latest earlier run whose horizon has passed: the share
    with a purchase within the horizon after that run."""
    runs = store.read_rows(
        "loyalty_runs", where={"program": program.name}, order_by=["as_of"], descending=True
    )
    horizon = pd.Timedelta(days=program.horizon_days)
    done = runs[pd.to_datetime(runs["as_of"]) + horizon <= as_of] if len(runs) else runs
    if done.empty:
        return None
    run = done.iloc[0]
    start = pd.Timestamp(run["as_of"])
    hist = store.read_rows("loyalty_history", where={"run_id": str(run["run_id"])})
    if hist.empty:
        return None
    bought = {
        str(r[0])
        for r in store.con.execute(
            "SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase' AND ts >= ? "
            "AND ts < ?",
            [start.to_pydatetime(), (start + horizon).to_pydatetime()],
        ).fetchall()
    }
    y = hist["user_id"].astype(str).isin(bought).to_numpy(dtype=float)
    member = hist["tier"].notna().to_numpy()
    if member.sum() < 2 or (~member).sum() < 2:
        return None
    d = difference_in_means(y, member)
    return {
        "run_id": str(run["run_id"]),
        "as_of": start,
        "horizon_days": program.horizon_days,
        "members_rate": d["treatment_mean"],
        "holdout_rate": d["control_mean"],
        "difference": d["estimate"],
        "low": d["low"],
        "high": d["high"],
        "p_value": d["p_value"],
        "n_members": d["n_treatment"],
        "n_holdout": d["n_control"],
    }


def _messages(tiers: pd.Series, points: pd.Series, program: LoyaltyProgram) -> pd.Series:
    rank = {n: i for i, n in enumerate(program.tier_names)}
    text = {t.name: t.message for t in program.tiers}
    out: list[str | None] = []
    for uid, tier in tiers.items():
        if tier is None or (isinstance(tier, float) and math.isnan(tier)):
            out.append(None)
            continue
        msg = text.get(str(tier), "")
        bal = int(points.get(uid, 0))
        affordable = [
            c
            for c in program.coupons
            if c.points <= bal and (c.min_tier is None or rank[str(tier)] >= rank[c.min_tier])
        ]
        if affordable:
            best = max(affordable, key=lambda c: c.value)
            msg = (msg + " " if msg else "") + (
                f"You can turn {best.points:,} of your {bal:,} points into '{best.name}'."
            )
        out.append(msg or None)
    return pd.Series(out, index=tiers.index, dtype=object)


def loyalty_run(
    store: Store, request: LoyaltyRunRequest, *, progress: Progress | None = None
) -> LoyaltyReport:
    """Run the programme at ``request.as_of`` and write its tables (see the module docstring).

    Raises
    ------
    ConfigError
        ``basis = "value"`` without scores in the store, or no customer to place.
    """
    store.check_writable("run a loyalty programme")
    prog = as_progress(progress)
    program = request.program
    assert program is not None  # set in __post_init__
    found = store.event_range(None)
    if found is None:
        raise ConfigError(f"The store {store.path} holds no events: ingest the purchase log first.")
    as_of = (
        request.as_of if request.as_of is not None else found[1].normalize() + pd.Timedelta(days=1)
    )
    now = pd.Timestamp.now().floor("s")
    scores = latest_scores(store, at_or_before=as_of)
    if program.basis == "value" and scores.empty:
        raise ConfigError(
            'basis = "value" sets tiers on predicted value, and the store has no scores at or '
            f"before {as_of:%Y-%m-%d}: run `retention train` and `retention score` first, or set "
            'basis = "spend" in [program].'
        )
    users = _customers(store, as_of)
    if len(scores):
        scores = scores[scores.index.isin(users)]
    if not len(users):
        raise ConfigError(f"No customer has a purchase before {as_of:%Y-%m-%d}: nothing to place.")
    run_id = _run_id(program, as_of)
    with store.transaction():
        with prog.stage("holdout"):
            holdout = _holdout(store, program, users, now)
        if program.basis == "value":
            score = scores["clv"].reindex(users).fillna(0.0).astype(float)
            scale = program.horizon_days / float(scores["horizon_days"].dropna().iloc[0] or 90)
            expected_spend = score * scale
        else:
            score = _rolling_spend(store, as_of, program.spend_window_days).reindex(users)
            score = score.fillna(0.0)
            expected_spend = score * program.horizon_days / program.spend_window_days
        members = users[~holdout.to_numpy()]
        thresholds = None
        if program.thresholds == "optimise":
            clv = scores["clv"] if len(scores) else expected_spend
            p = scores["p_retained"] if len(scores) else pd.Series(0.5, index=users)
            value = clv.reindex(members).fillna(0) / p.reindex(members).fillna(0.5).clip(0.05)
            thresholds, _, _ = optimise_thresholds(
                score.reindex(members), value, expected_spend.reindex(members), program
            )
        tiers = pd.Series(None, index=users, dtype=object)
        if len(members):
            tiers.loc[members] = assign_tiers(score.reindex(members), program, thresholds)
        before = store.read_rows("loyalty", where={"program": program.name})
        previous = before.set_index(before["user_id"].astype(str))["tier"] if len(before) else None
        movement = tier_movement(tiers, previous, program)
        with prog.stage("points ledger"):
            events = store.events_df(
                before=as_of,
                columns=["event_id", "user_id", "ts", "event_type", "amount", "quantity"],
            )
            ledger = build_ledger(
                events,
                program,
                as_of=as_of,
                multipliers=_multipliers(store, program),
                exclude=set(users[holdout.to_numpy()]),
            )
            stats = _write_ledger(store, program, ledger.entries, now)
        stats["refused_points"] = ledger.refused
        points = ledger.balances.reindex(users).fillna(0).astype("int64")
        costs = member_costs(tiers, expected_spend, program, balance=points)
        out = pd.DataFrame(
            {
                "program": program.name,
                "user_id": np.asarray(users, dtype=object),
                "tier": tiers.to_numpy(),
                "previous_tier": (
                    previous.reindex(users).to_numpy() if previous is not None else None
                ),
                "movement": movement.to_numpy(),
                "score": score.to_numpy(dtype=float),
                "points": points.to_numpy(),
                "expected_cost": costs["expected_cost"].to_numpy(dtype=float),
                "holdout": holdout.to_numpy(),
                "tier_message": _messages(tiers, points, program).to_numpy(),
            }
        )
        out["as_of"] = pd.Series([as_of] * len(out), dtype="datetime64[ns]")
        out["run_id"] = run_id
        store.replace_rows("loyalty", out, {"program": program.name})
        hist = out[["run_id", "program", "as_of", "user_id", "tier"]]
        store.replace_rows("loyalty_history", hist, {"run_id": run_id})
        econ = programme_economics(
            costs.loc[members] if len(members) else costs.iloc[0:0],
            scores["clv"] if len(scores) else None,
            scores["p_retained"] if len(scores) else None,
        )
        summary = {
            "customers": len(users),
            "members": len(members),
            "holdout": int(holdout.sum()),
            "holdout_share": float(holdout.mean()),
            "by_tier": {str(k): int(v) for k, v in tiers.value_counts().items()},
            "movement": {str(k): int(v) for k, v in movement.value_counts().items()},
            "thresholds": None if thresholds is None else [float(t) for t in thresholds],
            "points_outstanding": int(points.sum()),
            "horizon_days": program.horizon_days,
            **econ,
            "measured_effect": _measured_effect(store, program, as_of),
        }
        run_row = pd.DataFrame(
            {
                "run_id": [run_id],
                "program": [program.name],
                "as_of": pd.Series([as_of], dtype="datetime64[ns]"),
                "config": [json.dumps(json_clean(program.to_dict()), allow_nan=False)],
                "summary": [json.dumps(json_clean(summary), allow_nan=False)],
                "created_at": pd.Series([now], dtype="datetime64[ns]"),
            }
        )
        store.replace_rows("loyalty_runs", run_row, {"run_id": run_id})
    members_df = out.set_index("user_id").drop(columns=["program", "run_id", "as_of"])
    return LoyaltyReport(run_id, program, as_of, members_df, summary, stats)


def _write_ledger(
    store: Store, program: LoyaltyProgram, entries: pd.DataFrame, now: pd.Timestamp
) -> dict[str, int]:
    """Write the replayed ledger: new entries are added, restated ones (an earlier event changed)
    replaced, unchanged ones kept with their first ``created_at``."""
    have = store.read_rows("loyalty_ledger", where={"program": program.name})
    have = have[["entry_id", "points", "balance", "ts", "created_at"]]
    merged = entries.merge(have, on="entry_id", how="left", suffixes=("", "_old"))
    new = merged["points_old"].isna()
    changed = ~new & (
        (merged["points"] != merged["points_old"])
        | (merged["balance"] != merged["balance_old"])
        | (pd.to_datetime(merged["ts"]) != pd.to_datetime(merged["ts_old"]))
    )
    stale = len(set(have["entry_id"]) - set(entries["entry_id"]))
    if (new | changed).any() or stale:
        created = pd.to_datetime(merged["created_at"]).where(~(new | changed), now)
        rows = entries.assign(created_at=created.astype("datetime64[ns]").to_numpy())
        store.replace_rows("loyalty_ledger", rows, {"program": program.name})
    return {
        "entries": len(entries),
        "added": int(new.sum()),
        "restated": int(changed.sum() + stale),
        "unchanged": int((~new & ~changed).sum()),
    }


def write_loyalty_json(report: LoyaltyReport, path: Path) -> Path:
    """Write a run's ``to_dict()`` as JSON."""
    return write_json(report.to_dict(), path)

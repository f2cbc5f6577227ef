"""Metrics of an experiment in the store, aggregated in SQL.

The units of experiment ``E`` are its rows of ``assignments`` (the holdout left out; only the
exposed ones with ``population="exposed"``), each with a start ``t0``: its ``assigned_ts``, or the
experiment's start. A metric is, per unit:

- an outcome of ``outcomes`` (``metric`` = its name, a unit without a row counts 0), or
- one computed from the unit's purchases in ``[t0, t0 + window)``: ``retention_7``,
  ``retention_30``, ``retention_90`` (at least one purchase within 7, 30, 90 days),
  ``conversion`` (within the experiment's window), ``revenue`` (money spent), ``orders``
  (distinct orders), and the ratio ``revenue_per_order`` (revenue over orders, delta method).

A CUPED covariate is ``pre`` (the same event metric over ``[t0 - window, t0)``, the pre-period),
``cupac`` (the churn model's ``p_retained`` from ``scores`` at the latest cutoff on or before the
start: CUPAC), another outcome, or a numeric column of ``users`` (Hillstrom's ``history``).
:func:`store_moments` returns the per-arm sums the analysis needs, computed by DuckDB in one
query, so no unit row reaches Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from retention.data import Store
from retention.exceptions import ConfigError, DataError
from retention.experiments._analyze import MetricSpec
from retention.experiments._assign import HOLDOUT
from retention.experiments._stats import ArmMoments

__all__ = ["EVENT_METRICS", "RATIO_METRICS", "ExperimentUnits", "store_moments"]

#: metrics computed from purchase events: name -> (kind, fixed window in days or None)
EVENT_METRICS: dict[str, tuple[str, int | None]] = {
    "retention_7": ("flag", 7),
    "retention_30": ("flag", 30),
    "retention_90": ("flag", 90),
    "conversion": ("flag", None),
    "revenue": ("revenue", None),
    "orders": ("orders", None),
}
#: ratio metrics: name -> (numerator, denominator)
RATIO_METRICS: dict[str, tuple[str, str]] = {"revenue_per_order": ("revenue", "orders")}
_SPECIAL_COVARIATES = ("pre", "cupac")


@dataclass(frozen=True)
class ExperimentUnits:
    """Which units of the store an analysis covers.

    Attributes
    ----------
    experiment_id : str
        The experiment whose ``assignments`` are the units.
    start_ts : pd.Timestamp or None
        The start of a unit whose ``assigned_ts`` is NULL.
    window_days : int
        The window of ``conversion``, ``revenue`` and ``orders`` (and of their pre-period).
    population : {"assigned", "exposed"}
        Every assigned unit (intention to treat), or only those with an exposure.
    users : tuple of str, optional
        Instead of an experiment's assignments: these users, all starting at ``start_ts``, in
        one arm ``"all"`` (what a design measures its baseline on).
    """

    experiment_id: str
    start_ts: pd.Timestamp | None
    window_days: int
    population: str = "assigned"
    users: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.population not in ("assigned", "exposed"):
            raise ConfigError(
                f"population must be 'assigned' or 'exposed'; got {self.population!r}."
            )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _event_expr(metric: str, window: int, *, pre: bool) -> str:
    """SQL aggregate of the unit's purchases ``e`` for ``metric`` in its window (or pre-period)."""
    kind, fixed = EVENT_METRICS[metric]
    days = fixed if fixed is not None else window
    if pre:
        cond = f"e.ts >= u.t0 - to_days({days}) AND e.ts < u.t0"
    else:
        cond = f"e.ts >= u.t0 AND e.ts < u.t0 + to_days({days})"
    if kind == "flag":
        return f"coalesce(max(CASE WHEN {cond} THEN 1.0 ELSE 0.0 END), 0.0)"
    if kind == "revenue":
        return f"coalesce(sum(CASE WHEN {cond} THEN CAST(e.amount AS DOUBLE) END), 0.0)"
    distinct = f"count(DISTINCT CASE WHEN {cond} THEN coalesce(e.order_id, e.event_id) END)"
    return f"CAST({distinct} AS DOUBLE)"


def _window_of(metric: str, window: int) -> int:
    fixed = EVENT_METRICS[metric][1]
    return fixed if fixed is not None else window


class _Plan:
    """Builds the unit-level query: one column per metric, denominator and covariate."""

    def __init__(self, store: Store, units: ExperimentUnits) -> None:
        self.store = store
        self.units = units
        self.params: list[Any] = []
        self.event_cols: dict[str, str] = {}  # column -> aggregate expression
        self.joins: list[str] = []
        self.columns: dict[str, str] = {}  # output column -> expression over joined tables
        self._outcomes = self._outcome_names()
        self._user_cols = (
            {c for c, _ in store.columns("users")} if store.has_table("users") else set()
        )
        self.max_back = 0
        self.max_ahead = 0

    def _outcome_names(self) -> set[str]:
        rows = self.store.con.execute(
            "SELECT DISTINCT metric FROM outcomes WHERE experiment_id = ?",
            [self.units.experiment_id],
        ).fetchall()
        return {str(r[0]) for r in rows}

    def known(self) -> list[str]:
        return sorted(set(EVENT_METRICS) | set(RATIO_METRICS) | self._outcomes)

    def value(self, name: str, *, role: str, metric: str | None = None) -> str:
        """An output column holding ``name`` per unit; returns the column's name."""
        col = f"{role}__{len(self.columns)}"
        if role == "covariate" and name == "pre":
            if metric not in EVENT_METRICS:
                raise ConfigError(
                    f"The covariate 'pre' (the pre-period of the metric) exists only for the "
                    f"event metrics ({', '.join(EVENT_METRICS)}); metric {metric!r} is not one. "
                    "Pass another --covariate (an outcome, a users column, or cupac)."
                )
            window = _window_of(metric, self.units.window_days)
            self.max_back = max(self.max_back, window)
            self.event_cols[col] = _event_expr(metric, self.units.window_days, pre=True)
            self.columns[col] = f"ev.{_q(col)}"
            return col
        if role == "covariate" and name == "cupac":
            self.joins.append(self._cupac_join(col))
            self.columns[col] = f"{_q(col)}.value"
            return col
        if name in self._outcomes:
            alias = f"o{len(self.joins)}"
            self.joins.append(
                f"LEFT JOIN (SELECT user_id, value FROM outcomes WHERE experiment_id = ? "
                f"AND metric = ?) {alias} ON {alias}.user_id = u.user_id"
            )
            self.params.extend([self.units.experiment_id, name])
            fill = "0.0" if role != "covariate" else "NULL"
            self.columns[col] = f"coalesce({alias}.value, {fill})"
            return col
        if name in EVENT_METRICS:
            window = _window_of(name, self.units.window_days)
            self.max_ahead = max(self.max_ahead, window)
            self.event_cols[col] = _event_expr(name, self.units.window_days, pre=False)
            self.columns[col] = f"ev.{_q(col)}"
            return col
        if role == "covariate" and name in self._user_cols:
            self.joins.append(
                f"LEFT JOIN (SELECT user_id, TRY_CAST({_q(name)} AS DOUBLE) AS value, "
                f"{_q(name)} AS raw FROM users) {_q(col)} ON {_q(col)}.user_id = u.user_id"
            )
            self.columns[col] = f"{_q(col)}.value"
            return col
        choices = self.known()
        extra = " a users column," if role == "covariate" else ""
        raise ConfigError(
            f"Unknown {role} {name!r} for experiment {self.units.experiment_id!r}: use one of "
            f"{', '.join(choices)}{extra}" + (" pre or cupac" if role == "covariate" else "") + "."
        )

    def _cupac_join(self, col: str) -> str:
        if not self.store.has_table("scores"):
            raise ConfigError(
                "The covariate 'cupac' needs the churn model's scores: run `retention score` "
                "at a cutoff before the experiment's start first."
            )
        start = self.units.start_ts
        where = "cutoff <= ?" if start is not None else "true"
        if start is not None:
            self.params.append(pd.Timestamp(start).to_pydatetime())
        return (
            f"LEFT JOIN (SELECT user_id, p_retained AS value FROM scores WHERE "
            f"(cutoff, model_version) = (SELECT (cutoff, model_version) FROM scores WHERE {where} "
            f"ORDER BY cutoff DESC, scored_at DESC NULLS LAST LIMIT 1)) {_q(col)} "
            f"ON {_q(col)}.user_id = u.user_id"
        )

    def sql(self, segment: str | None = None) -> tuple[str, list[Any]]:
        u = self.units
        params: list[Any] = [u.experiment_id]
        start = pd.Timestamp(u.start_ts).to_pydatetime() if u.start_ts is not None else None
        exposed = (
            " AND EXISTS (SELECT 1 FROM exposures x WHERE x.experiment_id = a.experiment_id "
            "AND x.user_id = a.user_id)"
            if u.population == "exposed"
            else ""
        )
        units_sql = (
            "SELECT a.user_id, a.variant, coalesce(a.assigned_ts, ?::TIMESTAMP) AS t0 "
            f"FROM assignments a WHERE a.experiment_id = ? AND a.variant <> '{HOLDOUT}'{exposed}"
        )
        params = [start, u.experiment_id]
        if u.users is not None:
            units_sql = (
                "SELECT unnest(?::VARCHAR[]) AS user_id, 'all' AS variant, ?::TIMESTAMP AS t0"
            )
            params = [list(u.users), start]
        parts = [f"WITH u AS ({units_sql})"]
        if self.event_cols:
            aggs = ", ".join(f"{expr} AS {_q(c)}" for c, expr in self.event_cols.items())
            back, ahead = self.max_back, max(self.max_ahead, 1)
            parts.append(
                f", ev AS (SELECT u.user_id, {aggs} FROM u JOIN events e ON e.user_id = u.user_id "
                f"AND e.event_type = 'purchase' AND e.ts >= u.t0 - to_days({back}) "
                f"AND e.ts < u.t0 + to_days({ahead}) GROUP BY u.user_id)"
            )
        select = ", ".join(
            f"{expr} AS {_q(c)}"
            if not expr.startswith("ev.")
            else f"coalesce({expr}, 0.0) AS {_q(c)}"
            for c, expr in self.columns.items()
        )
        seg = ""
        if segment is not None:
            seg = f", {segment} AS segment"
        body = (
            f" SELECT u.user_id, u.variant{seg}, {select} FROM u"
            + (" LEFT JOIN ev ON ev.user_id = u.user_id" if self.event_cols else "")
            + "".join(" " + j for j in self.joins)
        )
        return "".join(parts) + body, params + self.params


def _segment_expr(
    store: Store, segment_by: str, start: pd.Timestamp | None
) -> tuple[str, str, list[Any]]:
    """A join and an expression giving each unit's segment."""
    if segment_by == "risk_band":
        if not store.has_table("scores"):
            raise ConfigError(
                "Segments by risk band need the churn model's scores: run `retention score` "
                "at a cutoff before the experiment's start, or segment by a users column."
            )
        where = "cutoff <= ?" if start is not None else "true"
        params = [pd.Timestamp(start).to_pydatetime()] if start is not None else []
        join = (
            f"LEFT JOIN (SELECT user_id, risk_band FROM scores WHERE (cutoff, model_version) = "
            f"(SELECT (cutoff, model_version) FROM scores WHERE {where} ORDER BY cutoff DESC, "
            "scored_at DESC NULLS LAST LIMIT 1)) seg ON seg.user_id = u.user_id"
        )
        return join, "coalesce(seg.risk_band, '(unscored)')", params
    cols = {c for c, _ in store.columns("users")}
    if segment_by not in cols:
        raise ConfigError(
            f"Unknown segment {segment_by!r}: use risk_band or a users column "
            f"({', '.join(sorted(cols))})."
        )
    join = "LEFT JOIN users seg ON seg.user_id = u.user_id"
    return join, f"coalesce(CAST(seg.{_q(segment_by)} AS VARCHAR), '(none)')", []


def store_moments(
    store: Store,
    units: ExperimentUnits,
    metrics: Sequence[MetricSpec],
    *,
    segment_by: str | None = None,
) -> tuple[Any, Any]:
    """Per-arm moments of each metric for the experiment's units, aggregated by DuckDB.

    Returns
    -------
    (moments, counts)
        As :func:`retention.experiments.summarize_units`; with ``segment_by``, both are keyed
        by segment first: ``moments[segment][metric][variant]``, ``counts[segment][variant]``.

    Raises
    ------
    ConfigError
        An unknown metric or covariate.
    DataError
        The experiment has no units, or a covariate is missing for some units.
    """
    plan = _Plan(store, units)
    cols: list[tuple[MetricSpec, str, str | None, str | None]] = []
    for spec in metrics:
        source = spec.source
        den = spec.denominator
        if source in RATIO_METRICS and den is None and source not in plan._outcomes:
            source, den = RATIO_METRICS[source]
        y = plan.value(source, role="metric")
        d = plan.value(den, role="denominator") if den is not None else None
        x = (
            plan.value(spec.covariate, role="covariate", metric=source)
            if spec.covariate is not None
            else None
        )
        cols.append((spec, y, d, x))
    sql, params = plan.sql()
    group = "variant"
    seg_params: list[Any] = []
    if segment_by is not None:
        join, expr, seg_params = _segment_expr(store, segment_by, units.start_ts)
        plan.joins.append(join)
        plan.params.extend(seg_params)
        sql, params = plan.sql(segment=expr)
        group = "segment, variant"
    aggs = ["count(*) AS n"]
    for i, (_, y, d, x) in enumerate(cols):
        aggs += [
            f"sum({_q(y)}) AS s{i}",
            f"sum({_q(y)} * {_q(y)}) AS q{i}",
            f"bool_and({_q(y)} IN (0, 1)) AS b{i}",
        ]
        if d is not None:
            aggs += [
                f"sum({_q(d)}) AS ds{i}",
                f"sum({_q(d)} * {_q(d)}) AS dq{i}",
                f"sum({_q(y)} * {_q(d)}) AS dp{i}",
            ]
        if x is not None:
            aggs += [
                f"sum({_q(x)}) AS xs{i}",
                f"sum({_q(x)} * {_q(x)}) AS xq{i}",
                f"sum({_q(x)} * {_q(y)}) AS xp{i}",
                f"bool_and({_q(x)} IN (0, 1)) AS xb{i}",
                f"count(*) FILTER (WHERE {_q(x)} IS NULL) AS xn{i}",
            ]
    query = f"SELECT {group}, {', '.join(aggs)} FROM ({sql}) GROUP BY {group} ORDER BY {group}"
    df = store.con.execute(query, params).df()
    if df.empty:
        raise DataError(
            f"Experiment {units.experiment_id!r} has no {units.population} units in the store: "
            "assign users first (`retention experiment assign`)"
            + (" and log exposures" if units.population == "exposed" else "")
            + "."
        )
    for i, (spec, *_rest) in enumerate(cols):
        if f"xn{i}" in df.columns and int(df[f"xn{i}"].sum()):
            n_missing = int(df[f"xn{i}"].sum())
            raise DataError(
                f"The covariate {spec.covariate!r} of metric {spec.name!r} is missing (or not "
                f"numeric) for {n_missing:,} unit(s) of experiment {units.experiment_id!r}; "
                "fill it for every unit, or analyse without --covariate."
            )

    def build(rows: pd.DataFrame) -> tuple[dict[str, dict[str, ArmMoments]], dict[str, int]]:
        moments: dict[str, dict[str, ArmMoments]] = {}
        for i, (spec, _y, d, x) in enumerate(cols):
            binary = spec.kind == "binary" or (
                spec.kind == "auto" and d is None and bool(rows[f"b{i}"].fillna(True).all())
            )
            per: dict[str, ArmMoments] = {}
            for _, r in rows.iterrows():
                fields: dict[str, Any] = {}
                if d is not None:
                    fields.update(
                        den_sum=float(r[f"ds{i}"]),
                        den_sum_sq=float(r[f"dq{i}"]),
                        num_den=float(r[f"dp{i}"]),
                    )
                if x is not None:
                    fields.update(
                        cov_sum=float(r[f"xs{i}"]),
                        cov_sum_sq=float(r[f"xq{i}"]),
                        cov_prod=float(r[f"xp{i}"]),
                        cov_binary=bool(rows[f"xb{i}"].fillna(True).all()),
                    )
                per[str(r["variant"])] = ArmMoments(
                    n=int(r["n"]),
                    sum=float(r[f"s{i}"]),
                    sum_sq=float(r[f"q{i}"]),
                    binary=binary,
                    **fields,
                )
            moments[spec.name] = per
        counts = {str(r["variant"]): int(r["n"]) for _, r in rows.iterrows()}
        return moments, counts

    if segment_by is None:
        return build(df)
    out_m: dict[str, Any] = {}
    out_c: dict[str, Any] = {}
    for seg, rows in df.groupby("segment", sort=True):
        out_m[str(seg)], out_c[str(seg)] = build(rows)
    return out_m, out_c

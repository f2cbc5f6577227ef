"""Experiments: create, assign, log exposures, list, design, analyse (a CSV or a stored
experiment), off-policy evaluation, and the measured uplift by segment that the plan reads.

Each workflow takes an open :class:`~retention.data.Store` first (except :func:`analyze_csv` and
:func:`evaluate_offpolicy`, which read files only) and a frozen request, and returns a result
whose ``to_dict()`` is JSON-ready.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import Store
from retention.exceptions import ConfigError, DataError, ReadError, RetentionWarning
from retention.experiments import (
    ESTIMATORS,
    RATIO_METRICS,
    Comparison,
    DesignResult,
    ExperimentAnalysis,
    ExperimentUnits,
    GroupSequential,
    MetricSpec,
    analyze_summaries,
    analyze_units,
    assign_variants,
    bandit_log_from_frame,
    bernoulli_ts_action_dist,
    check_weights,
    design,
    estimate_policy_value,
    fit_reward_model,
    relative_error_protocol,
    sequential_mode,
    store_moments,
)
from retention.workflows._common import json_clean, write_json
from retention.workflows._tracking import tracked

__all__ = [
    "AnalyzeCsvRequest",
    "AnalyzeExperimentRequest",
    "AssignReport",
    "AssignRequest",
    "CreateExperimentRequest",
    "DesignRequest",
    "ExperimentRecord",
    "ExperimentReport",
    "ExposureReport",
    "OffPolicyReport",
    "OffPolicyRequest",
    "analyze_csv",
    "analyze_experiment",
    "assign_users",
    "create_experiment",
    "design_experiment",
    "evaluate_offpolicy",
    "get_experiment",
    "list_experiments",
    "log_exposures",
    "measured_uplift",
    "write_experiment_json",
]

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("us")


def _check_id(value: Any, name: str = "experiment_id") -> str:
    if not isinstance(value, str) or not value.strip() or not set(value.strip()) <= _ID_CHARS:
        raise ConfigError(
            f"{name} must be a non-empty name of letters, digits, '_', '-' or '.'; got {value!r}."
        )
    return value.strip()


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ConfigError(f"alpha must be a number strictly between 0 and 1; got {alpha!r}.")
    return float(alpha)


def _sequential_design(req: Any) -> GroupSequential | None:
    """The group-sequential design of an analysis request (None unless it asks for one),
    checked: ``sequential`` must be "group" exactly when a planned sample is given."""
    design = None
    if req.planned_n is not None or req.looks is not None or req.look_n:
        if req.planned_n is None:
            raise ConfigError(
                "--looks and --look-n need --planned-n N (units planned in all arms together)."
            )
        design = GroupSequential(
            planned_n=req.planned_n, looks=req.looks, look_n=req.look_n, spending=req.spending
        )
    sequential_mode(req.sequential, design)
    return design


def _timestamp(value: Any, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} must be a date (YYYY-MM-DD) or timestamp; got {value!r}."
        ) from None
    if pd.isna(ts):
        raise ConfigError(f"{name} must be a date (YYYY-MM-DD) or timestamp; got {value!r}.")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


# ------------------------------------------------------------------------------ create and list
@dataclass(frozen=True)
class CreateExperimentRequest:
    """A new experiment.

    Attributes
    ----------
    experiment_id : str
    variants : tuple of str
        Variant names, the control first (unless ``control`` says otherwise).
    weights : tuple of float, optional
        Planned shares (equal by default).
    control : str, optional
        Default: the first variant.
    name, hypothesis : str, optional
    salt : str, optional
        The hashing salt (default: the id): the same salt, the same split.
    holdout : float
        Share of units kept out of every variant.
    stratify_by : {"risk_band"} or None
        Split within each churn-risk band (needs scores in the store).
    metrics : tuple of str
        Metrics to analyse, the primary first.
    guardrails : tuple of str
        Metrics that must not get worse.
    window_days : int
        Days after assignment over which event metrics are measured.
    start : timestamp, optional
        When units start (their default ``assigned_ts``); default the store's last event.
    """

    experiment_id: str
    variants: tuple[str, ...] = ("control", "treatment")
    weights: tuple[float, ...] | None = None
    control: str | None = None
    name: str | None = None
    hypothesis: str | None = None
    salt: str | None = None
    holdout: float = 0.0
    stratify_by: str | None = None
    metrics: tuple[str, ...] = ("retention_30",)
    guardrails: tuple[str, ...] = ()
    window_days: int = 30
    start: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "experiment_id", _check_id(self.experiment_id))
        names, weights = check_weights(self.variants, self.weights)
        object.__setattr__(self, "variants", tuple(names))
        object.__setattr__(self, "weights", tuple(weights))
        control = names[0] if self.control is None else str(self.control)
        if control not in names:
            raise ConfigError(
                f"The control {control!r} is not one of the variants ({', '.join(names)}); pass "
                "--control with one of them."
            )
        object.__setattr__(self, "control", control)
        h = self.holdout
        if isinstance(h, bool) or not isinstance(h, int | float) or not 0 <= h < 1:
            raise ConfigError(f"holdout must be a share in [0, 1); got {h!r}.")
        if self.stratify_by not in (None, "risk_band"):
            raise ConfigError(f"stratify_by must be 'risk_band' or None; got {self.stratify_by!r}.")
        w = self.window_days
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ConfigError(f"window_days must be a positive whole number; got {w!r}.")
        if not self.metrics:
            raise ConfigError("Name at least one metric (--metric), e.g. retention_30.")
        object.__setattr__(self, "metrics", tuple(str(m) for m in self.metrics))
        object.__setattr__(self, "guardrails", tuple(str(m) for m in self.guardrails))
        object.__setattr__(self, "start", _timestamp(self.start, "start"))
        if self.salt is not None and (not isinstance(self.salt, str) or not self.salt):
            raise ConfigError(f"salt must be a non-empty string; got {self.salt!r}.")


@dataclass(frozen=True)
class ExperimentRecord:
    """An experiment of the store, with its arm sizes."""

    experiment_id: str
    name: str | None
    hypothesis: str | None
    variants: list[str]
    weights: list[float]
    control: str
    salt: str
    holdout: float
    stratify_by: str | None
    metrics: list[str]
    guardrails: list[str]
    window_days: int
    start_ts: pd.Timestamp | None
    status: str
    created_at: pd.Timestamp | None
    arms: dict[str, int] = field(default_factory=dict)
    exposed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return json_clean({k: getattr(self, k) for k in self.__dataclass_fields__})


def _record_row(rec: ExperimentRecord) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "experiment_id": [rec.experiment_id],
            "name": [rec.name],
            "hypothesis": [rec.hypothesis],
            "variants": [list(rec.variants)],
            "weights": [list(rec.weights)],
            "control": [rec.control],
            "salt": [rec.salt],
            "holdout": [float(rec.holdout)],
            "stratify_by": [rec.stratify_by],
            "metrics": [list(rec.metrics)],
            "guardrails": [list(rec.guardrails)],
            "window_days": [int(rec.window_days)],
            "start_ts": pd.Series([rec.start_ts], dtype="datetime64[ns]"),
            "status": [rec.status],
            "created_at": pd.Series([rec.created_at], dtype="datetime64[ns]"),
        }
    )


def _write_record(store: Store, rec: ExperimentRecord) -> None:
    store.replace_rows("experiments", _record_row(rec), {"experiment_id": rec.experiment_id})


def create_experiment(store: Store, request: CreateExperimentRequest) -> ExperimentRecord:
    """Declare an experiment in the ``experiments`` table.

    Raises
    ------
    ConfigError
        An experiment of that id exists already.
    """
    store.check_writable("create an experiment")
    if _find(store, request.experiment_id) is not None:
        raise ConfigError(
            f"Experiment {request.experiment_id!r} exists already in {store.path}: pick another "
            "id (see `retention experiment list`)."
        )
    start = request.start
    if start is None:
        found = store.event_range(None)
        start = found[1].normalize() if found is not None else _now().normalize()
    rec = ExperimentRecord(
        experiment_id=request.experiment_id,
        name=request.name,
        hypothesis=request.hypothesis,
        variants=list(request.variants),
        weights=list(request.weights or ()),
        control=str(request.control),
        salt=request.salt or request.experiment_id,
        holdout=float(request.holdout),
        stratify_by=request.stratify_by,
        metrics=list(request.metrics),
        guardrails=list(request.guardrails),
        window_days=int(request.window_days),
        start_ts=start,
        status="created",
        created_at=_now(),
    )
    _write_record(store, rec)
    return rec


def _find(store: Store, experiment_id: str) -> ExperimentRecord | None:
    df = store.read_rows("experiments", where={"experiment_id": experiment_id})
    if df.empty:
        return None
    return _from_row(df.iloc[0])


def _from_row(r: pd.Series) -> ExperimentRecord:
    def lst(v: Any) -> list[Any]:
        return [] if v is None or (isinstance(v, float) and math.isnan(v)) else list(v)

    def opt(v: Any) -> Any:
        return None if v is None or (not isinstance(v, list | np.ndarray) and pd.isna(v)) else v

    return ExperimentRecord(
        experiment_id=str(r["experiment_id"]),
        name=opt(r["name"]),
        hypothesis=opt(r["hypothesis"]),
        variants=[str(v) for v in lst(r["variants"])],
        weights=[float(w) for w in lst(r["weights"])],
        control=str(r["control"]),
        salt=str(r["salt"]),
        holdout=float(r["holdout"]),
        stratify_by=opt(r["stratify_by"]),
        metrics=[str(m) for m in lst(r["metrics"])],
        guardrails=[str(m) for m in lst(r["guardrails"])],
        window_days=int(r["window_days"]),
        start_ts=None if pd.isna(r["start_ts"]) else pd.Timestamp(r["start_ts"]),
        status=str(r["status"]),
        created_at=None if pd.isna(r["created_at"]) else pd.Timestamp(r["created_at"]),
    )


def _arms(store: Store) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    rows = store.con.execute(
        "SELECT experiment_id, variant, count(*) FROM assignments GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    arms: dict[str, dict[str, int]] = {}
    for e, v, n in rows:
        arms.setdefault(str(e), {})[str(v)] = int(n)
    exposed = dict(
        store.con.execute("SELECT experiment_id, count(*) FROM exposures GROUP BY 1").fetchall()
    )
    return arms, {str(k): int(v) for k, v in exposed.items()}


def get_experiment(store: Store, experiment_id: str) -> ExperimentRecord:
    """The experiment ``experiment_id`` with its arm sizes.

    Raises
    ------
    ConfigError
        No such experiment (the message lists the known ids).
    """
    eid = _check_id(experiment_id)
    rec = _find(store, eid)
    arms, exposed = _arms(store)
    if rec is None and eid in arms:
        rec = _ingested(eid, arms[eid])
    if rec is None:
        known = sorted(set(store.read_rows("experiments")["experiment_id"].astype(str)) | set(arms))
        raise ConfigError(
            f"No experiment {eid!r} in {store.path}"
            + (f"; its experiments are {', '.join(known)}" if known else "")
            + ". Create one with `retention experiment create`."
        )
    return _with_counts(rec, arms.get(eid, {}), exposed.get(eid, 0))


def _ingested(eid: str, arms: dict[str, int]) -> ExperimentRecord:
    """The record of an experiment that exists only as ingested ``assignments``."""
    variants = sorted(arms)
    return ExperimentRecord(
        experiment_id=eid,
        name=None,
        hypothesis=None,
        variants=variants,
        weights=[1.0 / len(variants)] * len(variants),
        control=variants[0],
        salt=eid,
        holdout=0.0,
        stratify_by=None,
        metrics=[],
        guardrails=[],
        window_days=30,
        start_ts=None,
        status="ingested",
        created_at=None,
    )


def _with_counts(rec: ExperimentRecord, arms: dict[str, int], exposed: int) -> ExperimentRecord:
    return replace(rec, arms=dict(arms), exposed=int(exposed))


def list_experiments(store: Store) -> list[ExperimentRecord]:
    """Every experiment of the store, oldest first; experiments that exist only as
    ``assignments`` (ingested, e.g. Hillstrom) are listed too, as ``status="ingested"``."""
    df = store.read_rows("experiments", order_by=["created_at", "experiment_id"])
    arms, exposed = _arms(store)
    out = [_from_row(r) for _, r in df.iterrows()]
    seen = {r.experiment_id for r in out}
    out += [_ingested(eid, arms[eid]) for eid in sorted(set(arms) - seen)]
    return [
        _with_counts(r, arms.get(r.experiment_id, {}), exposed.get(r.experiment_id, 0)) for r in out
    ]


# ----------------------------------------------------------------------------------- assign
@dataclass(frozen=True)
class AssignRequest:
    """Which users to assign to an experiment's variants.

    Attributes
    ----------
    experiment_id : str
    users : tuple of str, optional
        These users; default every customer with a purchase before the experiment's start.
    risk_band : str, optional
        Keep only users of this churn-risk band (``high``, ``medium``, ``low``) in the latest
        scores on or before the start.
    assigned_at : timestamp, optional
        Their ``assigned_ts``; default the experiment's start.
    """

    experiment_id: str
    users: tuple[str, ...] | None = None
    risk_band: str | None = None
    assigned_at: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "experiment_id", _check_id(self.experiment_id))
        if self.users is not None:
            users = tuple(str(u).strip() for u in self.users)
            if not users or any(not u for u in users):
                raise ConfigError("users must be a non-empty list of non-empty user ids.")
            object.__setattr__(self, "users", users)
        if self.risk_band is not None and self.risk_band not in ("high", "medium", "low"):
            raise ConfigError(
                f"risk_band must be 'high', 'medium' or 'low'; got {self.risk_band!r}."
            )
        object.__setattr__(self, "assigned_at", _timestamp(self.assigned_at, "assigned_at"))


@dataclass(frozen=True)
class AssignReport:
    """What an assignment wrote."""

    experiment_id: str
    assigned: int
    already: int
    arms: dict[str, int]
    assigned_ts: pd.Timestamp | None
    stratified: bool

    def to_dict(self) -> dict[str, Any]:
        return json_clean({k: getattr(self, k) for k in self.__dataclass_fields__})


def _latest_scores(store: Store, at: pd.Timestamp | None) -> pd.DataFrame:
    if not store.has_table("scores"):
        return pd.DataFrame(columns=["user_id", "risk_band"])
    where = "cutoff <= ?" if at is not None else "true"
    params = [at.to_pydatetime()] if at is not None else []
    return store.con.execute(
        "SELECT user_id, risk_band, p_retained FROM scores WHERE (cutoff, model_version) = "
        f"(SELECT (cutoff, model_version) FROM scores WHERE {where} "
        "ORDER BY cutoff DESC, scored_at DESC NULLS LAST LIMIT 1)",
        params,
    ).df()


def assign_users(
    store: Store, request: AssignRequest, *, progress: Progress | None = None
) -> AssignReport:
    """Assign users to the experiment's variants (salted hashing) and write ``assignments``.

    Users assigned before keep their variant; only new ones are written. With the experiment's
    ``stratify_by="risk_band"``, each band is split in the planned shares.
    """
    store.check_writable("assign users")
    prog = as_progress(progress)
    rec = get_experiment(store, request.experiment_id)
    start = rec.start_ts
    with prog.stage("choosing the users"):
        if request.users is not None:
            users = pd.Index(pd.unique(pd.Series(request.users)), dtype=object)
        else:
            sql = "SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase'"
            params: list[Any] = []
            if start is not None:
                sql += " AND ts < ?"
                params.append(start.to_pydatetime())
            users = pd.Index(
                sorted(str(r[0]) for r in store.con.execute(sql, params).fetchall()), dtype=object
            )
        bands = None
        if request.risk_band is not None or rec.stratify_by == "risk_band":
            scores = _latest_scores(store, start)
            if scores.empty:
                raise ConfigError(
                    "Assigning by risk band needs the churn model's scores: run `retention "
                    "score --db ...` at a cutoff on or before the experiment's start first."
                )
            band = scores.set_index("user_id")["risk_band"].reindex(users)
            if request.risk_band is not None:
                users = users[(band == request.risk_band).to_numpy()]
                band = band.reindex(users)
            bands = band.fillna("(unscored)").to_numpy()
        if len(users) == 0:
            raise DataError(
                f"No users to assign to experiment {rec.experiment_id!r}: the store has no "
                "customer with a purchase before its start"
                + (f" in risk band {request.risk_band!r}" if request.risk_band else "")
                + ". Pass users explicitly, or another start."
            )
    with prog.stage(f"hashing {len(users):,} users"):
        variants = assign_variants(
            list(users),
            rec.variants,
            salt=rec.salt,
            weights=rec.weights,
            holdout=rec.holdout,
            strata=None if rec.stratify_by is None else bands,
        )
    existing = store.con.execute(
        "SELECT user_id FROM assignments WHERE experiment_id = ?", [rec.experiment_id]
    ).fetchall()
    have = {str(r[0]) for r in existing}
    new = variants[~variants.index.isin(list(have))]
    at = request.assigned_at or start
    rows = pd.DataFrame(
        {
            "experiment_id": rec.experiment_id,
            "user_id": new.index.astype(str),
            "variant": new.to_numpy().astype(str),
            "assigned_ts": pd.Series([at] * len(new), dtype="datetime64[ns]"),
        }
    )
    with store.transaction():
        if len(rows):
            store.replace_rows("assignments", rows, {})
        _write_record(
            store, replace(rec, status="running" if rec.status == "created" else rec.status)
        )
    arms, _ = _arms(store)
    return AssignReport(
        experiment_id=rec.experiment_id,
        assigned=len(rows),
        already=len(variants) - len(rows),
        arms=arms.get(rec.experiment_id, {}),
        assigned_ts=at,
        stratified=rec.stratify_by is not None,
    )


@dataclass(frozen=True)
class ExposureReport:
    """What an exposure log wrote."""

    experiment_id: str
    read: int
    logged: int
    already: int
    not_assigned: int

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def log_exposures(
    store: Store, experiment_id: str, exposures: pd.DataFrame, *, source: str | None = None
) -> ExposureReport:
    """Record the first exposure of each assigned user (``user_id``, ``exposed_ts`` columns).

    Users not assigned to the experiment are counted and skipped; a user already exposed keeps
    the earlier time.
    """
    store.check_writable("log exposures")
    rec = get_experiment(store, experiment_id)
    missing = [c for c in ("user_id", "exposed_ts") if c not in exposures.columns]
    if missing:
        raise DataError(
            f"The exposures lack column(s) {', '.join(missing)}; give one row per exposure with "
            "user_id and exposed_ts."
        )
    df = exposures[["user_id", "exposed_ts"]].copy()
    df["user_id"] = df["user_id"].astype(str)
    ts = pd.to_datetime(df["exposed_ts"], errors="coerce", utc=True)
    if ts.isna().any():
        raise DataError(
            f"{int(ts.isna().sum()):,} exposure(s) have no readable exposed_ts; give ISO "
            "timestamps (YYYY-MM-DD HH:MM:SS)."
        )
    df["exposed_ts"] = ts.dt.tz_localize(None).astype("datetime64[ns]")
    first = df.groupby("user_id", as_index=False)["exposed_ts"].min()
    assigned = {
        str(r[0])
        for r in store.con.execute(
            "SELECT user_id FROM assignments WHERE experiment_id = ?", [rec.experiment_id]
        ).fetchall()
    }
    known = first[first["user_id"].isin(assigned)]
    have = store.read_rows("exposures", where={"experiment_id": rec.experiment_id})
    old = (
        have.set_index("user_id")["exposed_ts"]
        if not have.empty
        else pd.Series(dtype="datetime64[ns]")
    )
    fresh = known[~known["user_id"].isin(old.index)]
    earlier = known[known["user_id"].isin(old.index)]
    earlier = earlier[earlier["exposed_ts"].to_numpy() < old.reindex(earlier["user_id"]).to_numpy()]
    with store.transaction():
        for _, r in earlier.iterrows():
            store.replace_rows(
                "exposures",
                pd.DataFrame(
                    {
                        "experiment_id": [rec.experiment_id],
                        "user_id": [r["user_id"]],
                        "exposed_ts": [r["exposed_ts"]],
                        "source": [source],
                    }
                ),
                {"experiment_id": rec.experiment_id, "user_id": r["user_id"]},
            )
        if len(fresh):
            store.replace_rows(
                "exposures", fresh.assign(experiment_id=rec.experiment_id, source=source), {}
            )
    return ExposureReport(
        experiment_id=rec.experiment_id,
        read=len(exposures),
        logged=len(fresh) + len(earlier),
        already=len(known) - len(fresh) - len(earlier),
        not_assigned=int(len(first) - len(known)),
    )


# ----------------------------------------------------------------------------------- analysis
@dataclass(frozen=True)
class ExperimentReport:
    """An analysis, where it came from, and (for a stored experiment) the uplift by segment."""

    analysis: ExperimentAnalysis
    source: str
    experiment_id: str | None = None
    population: str = "all rows"
    segments: pd.DataFrame | None = None
    seconds: float = 0.0
    written: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = self.analysis.to_dict()
        out.update(
            {
                "source": self.source,
                "experiment_id": self.experiment_id,
                "population": self.population,
                "seconds": self.seconds,
                "written": self.written,
            }
        )
        if self.segments is not None:
            out["segments"] = self.segments.to_dict(orient="records")
        return json_clean(out)


@dataclass(frozen=True, kw_only=True)
class _AnalysisOptions:
    """What both analyses take beside their data (:class:`AnalyzeCsvRequest`,
    :class:`AnalyzeExperimentRequest`), keyword-only: the level, the correction for many tests,
    and sequential looks.

    Attributes
    ----------
    sequential : bool or {"always-valid", "group"}
        Sequential intervals (looked at while it runs): ``True`` or ``"always-valid"`` for the
        confidence sequence, ``"group"`` for the group-sequential design of ``planned_n``,
        ``looks``, ``look_n`` and ``spending`` (see :func:`_sequential_design`).
    alpha : float
    correction : {"holm", "bh"}
    planned_n, looks, look_n, spending
        The group-sequential design (with ``sequential="group"``).
    """

    sequential: bool | Literal["always-valid", "group"] = False
    alpha: float = 0.05
    correction: Literal["holm", "bh"] = "holm"
    planned_n: int | None = None
    looks: int | None = None
    look_n: tuple[int, ...] = ()
    spending: Literal["obrien-fleming", "pocock"] = "obrien-fleming"

    def __post_init__(self) -> None:
        object.__setattr__(self, "look_n", tuple(self.look_n))
        _sequential_design(self)
        object.__setattr__(self, "alpha", _check_alpha(self.alpha))
        if self.correction not in ("holm", "bh"):
            raise ConfigError(f"correction must be 'holm' or 'bh'; got {self.correction!r}.")


@dataclass(frozen=True)
class AnalyzeCsvRequest(_AnalysisOptions):
    """An analysis of a CSV with one row per unit.

    Attributes
    ----------
    path : Path
    variant : str
        The column of the variant.
    control : str
        The control's value in that column.
    metrics : tuple of str
        Metric columns, the primary first.
    covariate : str, optional
        A pre-period column used for CUPED on every metric.
    denominator : str, optional
        A per-unit denominator column: every metric becomes a ratio metric.
    guardrails : tuple of str
        Guardrail metric columns (must not get worse).
    weights : dict, optional
        Planned share per variant, for the sample-ratio check (default equal).

    And the options of :class:`_AnalysisOptions` (``sequential``, ``alpha``, ``correction``,
    the group-sequential design), keyword-only.
    """

    path: Path
    variant: str
    control: str
    metrics: tuple[str, ...]
    covariate: str | None = None
    denominator: str | None = None
    guardrails: tuple[str, ...] = ()
    weights: dict[str, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "path", Path(self.path))
        if not self.metrics:
            raise ConfigError("Name at least one metric column (--metric COL).")
        object.__setattr__(self, "metrics", tuple(str(m) for m in self.metrics))
        object.__setattr__(self, "guardrails", tuple(str(m) for m in self.guardrails))
        object.__setattr__(self, "control", str(self.control))

    def specs(self) -> list[MetricSpec]:
        out = [
            MetricSpec(m, denominator=self.denominator, covariate=self.covariate)
            for m in self.metrics
        ]
        out += [
            MetricSpec(m, covariate=self.covariate, guardrail=True)
            for m in self.guardrails
            if m not in self.metrics
        ]
        return out


def _read_units(req: AnalyzeCsvRequest) -> pd.DataFrame:
    path = req.path
    if not path.is_file():
        raise ReadError(f"No file {path}: pass the CSV of one row per unit with --csv.")
    try:
        header = pd.read_csv(path, nrows=0)
    except (pd.errors.EmptyDataError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ReadError(
            f"Cannot read {path} as CSV ({exc}); pass a comma-separated file with a header."
        ) from None
    cols = [str(c) for c in header.columns]
    wanted = [req.variant, *req.metrics, *req.guardrails]
    wanted += [c for c in (req.covariate, req.denominator) if c is not None]
    for col, flag in (
        [(req.variant, "--variant")]
        + [(m, "--metric") for m in req.metrics]
        + [
            (c, f)
            for c, f in ((req.covariate, "--covariate"), (req.denominator, "--denominator"))
            if c is not None
        ]
        + [(g, "--guardrail") for g in req.guardrails]
    ):
        if col not in cols:
            raise ConfigError(
                f"Column {col!r} ({flag}) is not in {path.name}; its columns are {', '.join(cols)}."
            )
    try:
        return pd.read_csv(path, usecols=list(dict.fromkeys(wanted)), dtype={req.variant: str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise ReadError(
            f"Cannot read {path} ({str(exc).splitlines()[0]}); check the file."
        ) from None


@tracked("experiment", files=lambda req: (req.path,))
def analyze_csv(
    request: AnalyzeCsvRequest, *, progress: Progress | None = None
) -> ExperimentReport:
    """Analyse a CSV with one row per unit (Cookie Cats, Hillstrom, your own export)."""
    prog = as_progress(progress)
    started = time.perf_counter()
    with prog.stage(f"reading {request.path.name}"):
        units = _read_units(request)
    with prog.stage("analysing"):
        analysis = analyze_units(
            units,
            variant=request.variant,
            control=request.control,
            metrics=request.specs(),
            weights=request.weights,
            alpha=request.alpha,
            sequential=request.sequential,
            correction=request.correction,
            design=_sequential_design(request),
        )
    return ExperimentReport(
        analysis=analysis,
        source=str(request.path),
        population=f"{len(units):,} rows",
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class AnalyzeExperimentRequest(_AnalysisOptions):
    """An analysis of an experiment of the store.

    Attributes
    ----------
    experiment_id : str
    metrics : tuple of str, optional
        Default: the experiment's metrics (or every outcome of an ingested one).
    covariate : str, optional
        CUPED covariate for every metric: ``pre`` (the metric's pre-period), ``cupac`` (the
        churn model's prediction), an outcome or a ``users`` column.
    guardrails : tuple of str, optional
        Default: the experiment's guardrails.
    control : str, optional
        Default: the experiment's control.
    population : {"assigned", "exposed"}
    segment_by : str, optional
        Also measure the uplift by segment (``risk_band``, or a ``users`` column) and store it
        in ``segment_uplift``; default ``risk_band`` when the store has scores.
    write : bool
        Store the results (``experiment_results``, ``segment_uplift``) when the store is
        writable.

    And the options of :class:`_AnalysisOptions` (``sequential``, ``alpha``, ``correction``,
    the group-sequential design), keyword-only.
    """

    experiment_id: str
    metrics: tuple[str, ...] | None = None
    covariate: str | None = None
    guardrails: tuple[str, ...] | None = None
    control: str | None = None
    population: Literal["assigned", "exposed"] = "assigned"
    segment_by: str | None = "risk_band"
    write: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "experiment_id", _check_id(self.experiment_id))
        if self.population not in ("assigned", "exposed"):
            raise ConfigError(
                f"population must be 'assigned' or 'exposed'; got {self.population!r}."
            )
        if self.metrics is not None:
            if not self.metrics:
                raise ConfigError("Name at least one metric (--metric), or none for the defaults.")
            object.__setattr__(self, "metrics", tuple(str(m) for m in self.metrics))


def _segment_row(segment_by: str, segment: Any, control: str, c: Comparison) -> dict[str, Any]:
    """One row of ``segment_uplift``: comparison ``c`` (a variant against ``control`` on one
    metric) within ``segment`` of ``segment_by``."""
    return {
        "segment_by": segment_by,
        "segment": segment,
        "metric": c.metric,
        "variant": c.variant,
        "control": control,
        "n_control": c.n_control,
        "n_treatment": c.n_treatment,
        "uplift": c.difference,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "p_value": c.p_value,
    }


def _overall_rows(analysis: ExperimentAnalysis, control: str) -> list[dict[str, Any]]:
    """The rows of segment ``all``: the uplift of every non-guardrail metric over everyone."""
    return [_segment_row("all", "all", control, c) for c in analysis.comparisons if not c.guardrail]


def _segment_rows(
    store: Store,
    units: ExperimentUnits,
    specs: list[MetricSpec],
    control: str,
    analysis: ExperimentAnalysis,
    segment_by: str,
    alpha: float,
) -> pd.DataFrame:
    """The uplift per segment (and overall, segment ``all``) of every non-guardrail metric."""
    rows = _overall_rows(analysis, control)
    plain = [s for s in specs if not s.guardrail]
    moments, counts = store_moments(store, units, plain, segment_by=segment_by)
    for seg in sorted(moments):
        arms = counts[seg]
        if (
            arms.get(control, 0) < 2
            or sum(1 for v, n in arms.items() if v != control and n >= 2) == 0
        ):
            continue
        keep = {v: n for v, n in arms.items() if n >= 2}
        with warnings.catch_warnings():
            # a thin segment may have zero variance: its row is null, the warning is not news
            warnings.simplefilter("ignore", RetentionWarning)
            seg_analysis = analyze_summaries(
                {m: {v: a for v, a in per.items() if v in keep} for m, per in moments[seg].items()},
                keep,
                control=control,
                metrics=plain,
                alpha=alpha,
            )
        rows += [_segment_row(segment_by, seg, control, c) for c in seg_analysis.comparisons]
    return pd.DataFrame(rows)


@tracked("experiment")
def analyze_experiment(
    store: Store, request: AnalyzeExperimentRequest, *, progress: Progress | None = None
) -> ExperimentReport:
    """Analyse an experiment of the store, aggregating its metrics in DuckDB.

    Writes ``experiment_results`` (replacing the experiment's previous analysis) and
    ``segment_uplift`` when ``request.write`` and the store is writable.
    """
    prog = as_progress(progress)
    started = time.perf_counter()
    rec = get_experiment(store, request.experiment_id)
    if not rec.arms:
        raise DataError(
            f"Experiment {rec.experiment_id!r} has no assigned users yet: run `retention "
            f"experiment assign --experiment {rec.experiment_id}` first."
        )
    metrics = request.metrics or tuple(rec.metrics)
    if not metrics:  # an ingested experiment: its outcomes
        metrics = tuple(
            str(r[0])
            for r in store.con.execute(
                "SELECT DISTINCT metric FROM outcomes WHERE experiment_id = ? ORDER BY 1",
                [rec.experiment_id],
            ).fetchall()
        )
    if not metrics:
        raise ConfigError(
            f"Experiment {rec.experiment_id!r} names no metric and has no outcomes: pass "
            "--metric (retention_30, conversion, revenue, orders, revenue_per_order, ...)."
        )
    guardrails = (
        tuple(request.guardrails) if request.guardrails is not None else tuple(rec.guardrails)
    )
    control = request.control or rec.control
    notes: list[str] = []

    def cov(m: str) -> str | None:
        if request.covariate is not None and m in RATIO_METRICS:
            notes.append(f"{m} is a ratio metric: analysed without CUPED (delta method only).")
            return None
        return request.covariate

    specs = [MetricSpec(m, covariate=cov(m)) for m in metrics]
    specs += [
        MetricSpec(g, covariate=cov(g), guardrail=True) for g in guardrails if g not in metrics
    ]
    units = ExperimentUnits(
        rec.experiment_id, rec.start_ts, rec.window_days, population=request.population
    )
    weights = (
        dict(zip(rec.variants, rec.weights, strict=True)) if rec.status != "ingested" else None
    )
    with prog.stage(f"aggregating {sum(rec.arms.values()):,} units in the store"):
        moments, counts = store_moments(store, units, specs)
    if weights is not None:
        for v in counts:
            weights.setdefault(v, 0.0)
    with prog.stage("analysing"):
        analysis = analyze_summaries(
            moments,
            counts,
            control=control,
            metrics=specs,
            weights=weights,
            alpha=request.alpha,
            sequential=request.sequential,
            correction=request.correction,
            variant_column=f"assignments.variant of {rec.experiment_id}",
            design=_sequential_design(request),
        )
    segments = None
    if request.segment_by is not None:
        if request.segment_by == "risk_band" and (
            not store.has_table("scores") or _latest_scores(store, rec.start_ts).empty
        ):
            notes.append(
                "no churn scores on or before the start: the uplift by risk band was not "
                "measured (run `retention score` first); the overall uplift is stored."
            )
            segments = pd.DataFrame(_overall_rows(analysis, control))
        else:
            with prog.stage(f"measuring the uplift by {request.segment_by}"):
                segments = _segment_rows(
                    store, units, specs, control, analysis, request.segment_by, request.alpha
                )
    written = False
    if request.write and not store.read_only:
        _write_results(store, rec, analysis, segments, request)
        written = True
    if notes:
        analysis = replace(analysis, notes=[*analysis.notes, *notes])
    return ExperimentReport(
        analysis=analysis,
        source=f"store {store.path}",
        experiment_id=rec.experiment_id,
        population=request.population,
        segments=segments,
        seconds=time.perf_counter() - started,
        written=written,
    )


def _write_results(
    store: Store,
    rec: ExperimentRecord,
    analysis: ExperimentAnalysis,
    segments: pd.DataFrame | None,
    request: AnalyzeExperimentRequest,
) -> None:
    now = _now()
    res = pd.DataFrame(
        [
            {
                "experiment_id": rec.experiment_id,
                "metric": c.metric,
                "variant": c.variant,
                "control": c.control,
                "kind": c.kind,
                "n_control": c.n_control,
                "n_treatment": c.n_treatment,
                "mean_control": c.mean_control,
                "mean_treatment": c.mean_treatment,
                "difference": c.difference,
                "ci_low": c.ci_low,
                "ci_high": c.ci_high,
                "p_value": c.p_value,
                "p_value_adjusted": c.p_value_holm,
                "lift": c.lift,
                "lift_ci_low": c.lift_ci_low,
                "lift_ci_high": c.lift_ci_high,
                "chance_to_win": c.chance_to_win,
                "expected_loss": c.expected_loss,
                "covariate": c.covariate,
                "cuped_theta": c.cuped_theta,
                "variance_reduction": c.variance_reduction,
                "sequential": c.sequential,
                "guardrail": c.guardrail_status,
                "srm_p_value": analysis.srm.p_value,
                "population": request.population,
                "analysed_at": now,
            }
            for c in analysis.comparisons
        ]
    )
    res["analysed_at"] = res["analysed_at"].astype("datetime64[ns]")

    with store.transaction():
        store.replace_rows("experiment_results", res, {"experiment_id": rec.experiment_id})
        if segments is not None and len(segments):
            seg = segments.assign(experiment_id=rec.experiment_id, measured_at=now)
            seg["measured_at"] = seg["measured_at"].astype("datetime64[ns]")
            store.replace_rows("segment_uplift", seg, {"experiment_id": rec.experiment_id})
        if rec.status != "ingested":
            _write_record(store, replace(rec, status="analysed"))


def measured_uplift(
    store: Store,
    *,
    metric: str | None = None,
    segment_by: str = "risk_band",
    experiment_id: str | None = None,
) -> pd.DataFrame:
    """The uplift that analysed experiments measured, per segment: what ``retention plan`` uses
    in place of the model's estimate where a segment has been measured.

    Parameters
    ----------
    metric : str, optional
        Only this metric (e.g. ``retention_30``).
    segment_by : str
        ``risk_band`` (default), a ``users`` column, or ``all`` for the overall uplift.
    experiment_id : str, optional
        Only this experiment; default: for each segment, metric and variant, the latest
        measurement of any experiment.

    Returns
    -------
    pd.DataFrame
        Columns of the ``segment_uplift`` table (``segment``, ``variant``, ``uplift``,
        ``ci_low``, ``ci_high``, ``p_value``, ``n_control``, ``n_treatment``, ``measured_at``,
        ...) plus ``significant`` (the interval excludes 0); empty when nothing was measured.

    Examples
    --------
    >>> with Store("retention.duckdb", read_only=True) as store:  # doctest: +SKIP
    ...     uplift = measured_uplift(store, metric="retention_30")
    >>> uplift.set_index("segment")["uplift"]  # doctest: +SKIP
    """
    where: dict[str, Any] = {"segment_by": segment_by}
    if metric is not None:
        where["metric"] = metric
    if experiment_id is not None:
        where["experiment_id"] = _check_id(experiment_id)
    df = store.read_rows("segment_uplift", where=where, order_by=["measured_at"], descending=True)
    if df.empty:
        return df.assign(significant=pd.Series(dtype=bool))
    latest = df.drop_duplicates(["segment", "metric", "variant"], keep="first")
    latest = latest.sort_values(["metric", "variant", "segment"]).reset_index(drop=True)
    return latest.assign(significant=(latest["ci_low"] > 0) | (latest["ci_high"] < 0))


# ------------------------------------------------------------------------------------ design
@dataclass(frozen=True)
class DesignRequest:
    """Size an experiment with the baseline, variance and pre-period correlation measured in
    the store.

    Attributes
    ----------
    metric : str
        ``retention_7``, ``retention_30``, ``retention_90``, ``conversion``, ``revenue``,
        ``orders`` or ``revenue_per_order``.
    risk_band : str, optional
        The population: customers of this band (latest scores); default every customer with a
        purchase before the measurement date.
    cutoff : timestamp, optional
        The date up to which outcomes are known (default the last purchase); the baseline is
        measured from ``cutoff - window`` on, the pre-period before that.
    mde, relative_mde, n_per_variant
        Exactly one: the effect to detect, or the sample to size the effect for.
    alpha, power : float
    n_variants : int
    window_days : int
        The window of conversion, revenue and orders.
    cuped : bool
        Use the metric's pre-period as CUPED covariate (its correlation sets the variance cut).
    daily_units : float, optional
        Units enrolled per day; default the mean number of distinct customers with a purchase
        per day over the last 28 days of the population.
    """

    metric: str
    risk_band: str | None = None
    cutoff: Any = None
    mde: float | None = None
    relative_mde: float | None = None
    n_per_variant: int | None = None
    alpha: float = 0.05
    power: float = 0.8
    n_variants: int = 2
    window_days: int = 30
    cuped: bool = True
    daily_units: float | None = None

    def __post_init__(self) -> None:
        from retention.experiments import EVENT_METRICS

        known = (*EVENT_METRICS, *RATIO_METRICS)
        if self.metric not in known:
            raise ConfigError(
                f"Unknown metric {self.metric!r} for a design from the store: use one of "
                f"{', '.join(known)}."
            )
        if self.risk_band is not None and self.risk_band not in ("high", "medium", "low"):
            raise ConfigError(
                f"risk_band must be 'high', 'medium' or 'low'; got {self.risk_band!r}."
            )
        w = self.window_days
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ConfigError(f"window_days must be a positive whole number; got {w!r}.")
        object.__setattr__(self, "cutoff", _timestamp(self.cutoff, "cutoff"))


def design_experiment(
    store: Store, request: DesignRequest, *, progress: Progress | None = None
) -> DesignResult:
    """Sample size (or MDE) and duration for a metric and population of the store."""
    from retention.experiments import EVENT_METRICS

    prog = as_progress(progress)
    found = store.event_range("purchase")
    if found is None:
        raise ConfigError(
            f"The store {store.path} holds no purchases to measure a baseline on: ingest a "
            "purchase log first."
        )
    last = request.cutoff or found[1].normalize() + pd.Timedelta(days=1)
    metric = request.metric
    window = (
        EVENT_METRICS[metric][1] or request.window_days
        if metric in EVENT_METRICS
        else request.window_days
    )
    t0 = last - pd.Timedelta(days=int(window))
    with prog.stage("measuring the baseline"):
        users = [
            str(r[0])
            for r in store.con.execute(
                "SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase' AND ts < ? "
                "ORDER BY 1",
                [t0.to_pydatetime()],
            ).fetchall()
        ]
        if request.risk_band is not None:
            scores = _latest_scores(store, t0)
            if scores.empty:
                raise ConfigError(
                    "A design for a risk band needs the churn model's scores: run `retention "
                    "score` at a cutoff on or before the measurement date first."
                )
            band = set(scores.loc[scores["risk_band"] == request.risk_band, "user_id"].astype(str))
            users = [u for u in users if u in band]
        if len(users) < 10:
            raise DataError(
                f"Only {len(users)} customer(s) to measure {metric!r} on before {t0:%Y-%m-%d}: "
                "pass an earlier --cutoff or a larger population."
            )
        ratio = metric in RATIO_METRICS
        cov = "pre" if request.cuped and not ratio else None
        spec = MetricSpec(metric, covariate=cov)
        units = ExperimentUnits("", t0, request.window_days, users=tuple(users))
        moments, _ = store_moments(store, units, [spec])
        m = moments[metric]["all"]
        rho = 0.0
        if cov is not None:
            n = m.n
            vy = (m.sum_sq - m.sum**2 / n) / (n - 1)
            vx = (m.cov_sum_sq - m.cov_sum**2 / n) / (n - 1)
            cxy = (m.cov_prod - m.sum * m.cov_sum / n) / (n - 1)
            rho = abs(cxy / math.sqrt(vx * vy)) if vx > 0 and vy > 0 else 0.0
        daily = request.daily_units
        if daily is None:
            rows = store.con.execute(
                "SELECT count(DISTINCT (user_id, CAST(ts AS DATE))) / 28.0 FROM events WHERE "
                "event_type = 'purchase' AND ts >= ? AND ts < ? AND user_id IN "
                "(SELECT unnest(?::VARCHAR[]))",
                [(t0 - pd.Timedelta(days=28)).to_pydatetime(), t0.to_pydatetime(), users],
            ).fetchall()
            daily = float(rows[0][0] or 0.0) or None
    kind = "ratio" if ratio else ("proportion" if m.binary else "mean")
    baseline = float(m.mean)
    sd = math.sqrt(max(float(m.variance), 0.0))
    if kind == "proportion" and not 0 < baseline < 1:
        raise DataError(
            f"The baseline of {metric!r} is {baseline:.3g} in this population: nothing to "
            "detect a change of. Pick another metric or population."
        )
    return design(
        kind,  # type: ignore[arg-type]
        baseline,
        sd=sd if kind != "proportion" else None,
        mde=request.mde,
        relative_mde=request.relative_mde,
        n_per_variant=request.n_per_variant,
        alpha=request.alpha,
        power=request.power,
        n_variants=request.n_variants,
        rho=rho,
        daily_units=daily,
        window_days=int(window),
        population=len(users),
        source={
            "metric": metric,
            "measured_from": f"{t0:%Y-%m-%d}",
            "measured_to": f"{last:%Y-%m-%d}",
            "risk_band": request.risk_band,
            "covariate": cov,
        },
    )


# ------------------------------------------------------------------------------- off-policy
def _bundled(name: str) -> Path:
    path = Path(str(resources.files("retention.data").joinpath("files", name)))
    if not path.is_file():
        raise ReadError(
            f"The bundled file {name} is missing: the installation of retention is incomplete. "
            "Reinstall the package."
        )
    return path


@dataclass(frozen=True)
class OffPolicyRequest:
    """Off-policy evaluation of ZOZOTOWN's Bernoulli TS policy from the uniform-random log of
    the bundled Open Bandit sample (campaign "all").

    Attributes
    ----------
    n_runs : int
        Bootstrap runs of the relative-error protocol (0: only the estimates).
    n_sim : int
        Monte Carlo draws of the TS policy's action distribution.
    n_bootstrap : int
        Resamples of each estimate's interval.
    alpha : float
    seed : int
    """

    n_runs: int = 30
    n_sim: int = 100_000
    n_bootstrap: int = 1000
    alpha: float = 0.05
    seed: int = 12345

    def __post_init__(self) -> None:
        for name in ("n_runs", "n_sim", "n_bootstrap", "seed"):
            v = getattr(self, name)
            low = 0 if name in ("n_runs", "seed") else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{name} must be a whole number >= {low}; got {v!r}.")
        object.__setattr__(self, "alpha", _check_alpha(self.alpha))


@dataclass(frozen=True)
class OffPolicyReport:
    """Estimates of the evaluation policy's click rate, the truth, and the protocol's errors."""

    estimates: dict[str, dict[str, Any]]
    ground_truth: float
    logging_click_rate: float
    relative_error: dict[str, dict[str, float]]
    n_rounds: int
    n_runs: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return json_clean(
            {
                "policy": "Bernoulli Thompson sampling (ZOZOTOWN prior, campaign all)",
                "logged_by": "uniform random (Open Bandit sample, random/all)",
                "n_rounds": self.n_rounds,
                "ground_truth_click_rate": self.ground_truth,
                "logging_click_rate": self.logging_click_rate,
                "estimates": self.estimates,
                "relative_error": self.relative_error,
                "n_runs": self.n_runs,
                "seconds": self.seconds,
            }
        )


def evaluate_offpolicy(
    request: OffPolicyRequest, *, progress: Progress | None = None
) -> OffPolicyReport:
    """DM, IPW, SNIPW and DR estimates of the Bernoulli TS policy's click rate from the
    uniform-random log, against its on-policy click rate in the TS log (Open Bandit protocol)."""
    import json

    prog = as_progress(progress)
    started = time.perf_counter()
    log = pd.read_csv(_bundled("open_bandit_random_all.csv.gz"), index_col=0)
    items = pd.read_csv(_bundled("open_bandit_random_all_item_context.csv.gz"), index_col=0)
    bts = pd.read_csv(_bundled("open_bandit_bts_all.csv.gz"), index_col=0, usecols=[0, 4])
    prior = json.loads(_bundled("open_bandit_bts_prior.json").read_text(encoding="utf-8"))
    data = bandit_log_from_frame(log, items)
    truth = float(bts["click"].mean())
    with prog.stage("simulating the TS policy"):
        dist = bernoulli_ts_action_dist(
            prior["alpha"],
            prior["beta"],
            len_list=data.len_list,
            n_sim=request.n_sim,
            seed=request.seed,
        )
    with prog.stage("fitting the reward model"):
        q = fit_reward_model(data, seed=request.seed)
    est = estimate_policy_value(
        data, dist, q, alpha=request.alpha, n_bootstrap=request.n_bootstrap, seed=request.seed
    )
    rel: dict[str, dict[str, float]] = {}
    if request.n_runs:
        errors = relative_error_protocol(
            data, dist, truth, n_runs=request.n_runs, seed=request.seed
        )
        rel = {
            k: {"mean": float(errors[k].mean()), "std": float(errors[k].std())} for k in ESTIMATORS
        }
    return OffPolicyReport(
        estimates={k: v.to_dict() for k, v in est.items()},
        ground_truth=truth,
        logging_click_rate=float(log["click"].mean()),
        relative_error=rel,
        n_rounds=data.n_rounds,
        n_runs=request.n_runs,
        seconds=time.perf_counter() - started,
    )


def write_experiment_json(result: Any, path: str | Path) -> Path:
    """Write a result's ``to_dict()`` as JSON (``--json``)."""
    return write_json(result.to_dict(), path)

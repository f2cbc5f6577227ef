"""Monitoring and retraining (``retention monitor``, ``retention retrain``; issue 16, items 4-5).

* :func:`monitor` compares the data a model was trained on with the newest data, feature by
  feature and for the score (PSI and KS: :mod:`retention.experiments`), measures the realised
  performance of every earlier scoring run whose label window has passed (ROC-AUC, Brier,
  expected calibration error) against the model's reference ROC-AUC, raises flags by
  :class:`~retention.experiments.MonitorThresholds`, and writes the run to ``monitor_runs``,
  ``monitor_features`` and ``monitor_performance`` in one transaction;
* :func:`retrain` fits a new model on the newest cutoff, through :func:`train`, when a monitor
  run raises a flag (or always, for a schedule); the new model lands in the registry as a
  ``candidate`` and is never promoted here (``retention promote`` decides);
* :func:`dashboard_monitor` gives the latest monitor run to the dashboard.

The two windows:

* the *reference* (training) window: the features at the model's training cutoffs (from its
  metadata), and the model's scores on them;
* the *current* (latest) window: the features at the newest cutoff (the date of the last
  qualifying event, or ``cutoff``) and at the cutoffs before it, one every step of the training
  cutoffs, that fall within ``window_days`` of it; by default as many cutoffs as the training
  window has, so that both sides pool alike. When the training cutoffs lie within
  :data:`CENSORED_DAYS` of the store's first event, their histories were cut short by the
  store's start; the latest window's features are then computed on the same length of history
  (each latest cutoff reads events from ``cutoff - (training cutoff - first event)`` on, as
  ``make_frame(events_from=)`` does: ``history_matched``), unless ``full_history``. The
  training window's features are never changed.

Two kinds of feature are treated apart (their metadata comes from :mod:`retention.features`):

* features that age with the calendar (:func:`~retention.features.ages_with_calendar`: tenure,
  days since the sign-up, ...) grow with every cutoff by construction; they are measured and
  reported, marked ``ages_with_calendar``, but raise no flag unless ``include_ageing``;
* features that encode a category of the ``users`` table as a number recomputed at each cutoff
  (:func:`~retention.features.encoded_category`: ``user_country_freq``) are compared on the
  customers' categories, read from ``users`` (:func:`retention.experiments.category_psi`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import Store
from retention.exceptions import ConfigError, RetentionWarning
from retention.experiments import (
    MonitorThresholds,
    drift_table,
    ks_test,
    psi,
    realised_metrics,
)
from retention.features import (
    RETAINED_BY_DEFAULT,
    MinData,
    ages_with_calendar,
    build_labels,
    encoded_category,
    make_frame,
    to_cutoff,
    to_horizon,
    to_retained_by,
)
from retention.workflows._common import (
    LoadedModel,
    ModelCache,
    check_output_path,
    json_clean,
    write_json,
)
from retention.workflows._dashboard import DashboardPart
from retention.workflows._predict import TrainReport, TrainRequest, last_event_date, train
from retention.workflows._registry import production_model_id

__all__ = [
    "MONITOR_TABLES",
    "MonitorReport",
    "MonitorRequest",
    "RetrainReport",
    "RetrainRequest",
    "dashboard_monitor",
    "monitor",
    "monitor_history",
    "retrain",
    "write_monitor_json",
    "write_retrain_json",
]

#: the tables a monitor run writes
MONITOR_TABLES: tuple[str, ...] = ("monitor_runs", "monitor_features", "monitor_performance")
#: at most this many earlier scoring runs are evaluated (the newest ones)
MAX_SCORING_RUNS = 50
#: fewer matured customers than this and a scoring run's ROC-AUC is not reported
MIN_REALISED = 30
#: comma-separated glob patterns of features to leave out of the flags (``--ignore``)
IGNORE_ENV = "RETENTION_MONITOR_IGNORE"
#: a training window this close to the store's first event sees histories cut short by it
CENSORED_DAYS = 365


# ------------------------------------------------------------------------------------- requests
def _window(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"window_days must be a positive number of days; got {value!r}.")
    return int(value)


def _ignore(value: Any) -> tuple[str, ...] | None:
    """Glob patterns of features left out of the flags (``tenure_*``), or None (environment)."""
    if value is None:
        return None
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(
        isinstance(p, str) and p.strip() for p in items
    ):
        raise ConfigError(
            f"ignore must be feature names or glob patterns such as 'tenure_*'; got {value!r}."
        )
    return tuple(p.strip() for p in items)


def _ignore_from_env() -> tuple[str, ...]:
    raw = os.environ.get(IGNORE_ENV, "")
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def _thresholds(value: Any) -> MonitorThresholds | None:
    if value is not None and not isinstance(value, MonitorThresholds):
        raise ConfigError(
            f"thresholds must be a retention.experiments.MonitorThresholds or None; got {value!r}."
        )
    return value


@dataclass(frozen=True)
class MonitorRequest:
    """Which model to monitor, against which window.

    Attributes
    ----------
    model_id : str or None
        A model of the store's registry; default the production model, else the newest one.
    window_days : int or None
        How far back from the newest cutoff the current window reaches (see the module text);
        default: as many cutoffs as the model's training window.
    cutoff : pd.Timestamp or None
        The newest cutoff; default the date of the last qualifying event.
    thresholds : MonitorThresholds or None
        Default: :meth:`MonitorThresholds.from_env` (``RETENTION_MONITOR_*``, then defaults).
    ignore : sequence of str or None
        Features (names or glob patterns, ``tenure_*``) whose drift is measured and shown but
        raises no flag: columns known to move (a store's age); default
        ``RETENTION_MONITOR_IGNORE`` (comma-separated), else none.
    include_ageing : bool
        Let the features that age with the calendar (tenure, days since the sign-up: see
        :func:`retention.features.ages_with_calendar`) raise the drift flag too; by default they
        are measured and shown, marked, but raise none.
    full_history : bool
        Compute the latest window's features on every event even when the training window's
        histories were cut short by the store's start. By default, when the training cutoffs
        lie within :data:`CENSORED_DAYS` of the store's first event, each latest cutoff reads
        only as many days of events as its training cutoff had (``history_matched``), so that
        the store's history growing is not read as drift.
    write : bool
        Record the run in ``monitor_runs`` (and its features and performance).
    """

    model_id: str | None = None
    window_days: int | None = None
    cutoff: pd.Timestamp | None = None
    thresholds: MonitorThresholds | None = None
    ignore: tuple[str, ...] | None = None
    include_ageing: bool = False
    full_history: bool = False
    write: bool = True

    def __post_init__(self) -> None:
        if self.model_id is not None and (
            not isinstance(self.model_id, str) or not self.model_id.strip()
        ):
            raise ConfigError(f"model_id must be a non-empty string; got {self.model_id!r}.")
        if self.model_id is not None:
            object.__setattr__(self, "model_id", self.model_id.strip())
        object.__setattr__(self, "window_days", _window(self.window_days))
        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        object.__setattr__(self, "thresholds", _thresholds(self.thresholds))
        object.__setattr__(self, "ignore", _ignore(self.ignore))
        _check_bool(self.include_ageing, "include_ageing")
        _check_bool(self.full_history, "full_history")
        _check_bool(self.write, "write")


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False; got {value!r}.")


# --------------------------------------------------------------------------------------- report
@dataclass
class MonitorReport:
    """One monitor run: drift per feature and of the score, realised performance, flags.

    Attributes
    ----------
    run_id : str
    model_id, registry_name : str
        The monitored model.
    stage : str or None
        Its registry stage (candidate, production, archived).
    horizon_days : int
    retained_by : str
    reference_cutoffs, current_cutoffs : list of pd.Timestamp
        The cutoffs of the training window and of the latest window.
    n_reference, n_current : int
        Rows (customers x cutoffs) of each sample.
    features : pd.DataFrame
        :func:`retention.experiments.drift_table`, with ``ignored`` (``--ignore``),
        ``ages_with_calendar`` and ``drifted`` (PSI above the threshold, and neither ignored
        nor, unless ``include_ageing``, ageing).
    score : dict
        ``psi, ks, ks_p_value, reference_mean, current_mean`` of P(retained).
    performance : pd.DataFrame
        One row per earlier scoring run whose label window has passed (``model_version,
        cutoff, horizon_days, n_users, base_rate, mean_p, roc_auc, brier, ece,
        baseline_roc_auc, decay, monitored``), oldest first.
    baseline_roc_auc : float or None
        The monitored model's reference ROC-AUC, and ``baseline_source`` where it comes from.
    realised : dict or None
        The monitored model's newest matured scoring run (a row of ``performance``).
    decay : float or None
        ``baseline_roc_auc`` minus the realised ROC-AUC of that run.
    thresholds : MonitorThresholds
    flags : list of str
        ``feature_drift``, ``score_drift``, ``decay``: what passed its threshold.
    notes : list of str
        What could not be measured, and why.
    history_matched : bool
        The latest window's features were computed on the training window's length of
        history: at each latest cutoff only the events from ``history_starts`` on (in
        ``current_cutoffs`` order; ``history_days`` days before it, the days of history of the
        training cutoff it is paired with), as if the store had started there.
    created_at : pd.Timestamp
    """

    run_id: str
    model_id: str
    registry_name: str | None
    stage: str | None
    horizon_days: int
    retained_by: str
    reference_cutoffs: list[pd.Timestamp]
    current_cutoffs: list[pd.Timestamp]
    n_reference: int
    n_current: int
    features: pd.DataFrame
    score: dict[str, Any]
    performance: pd.DataFrame
    baseline_roc_auc: float | None
    baseline_source: str | None
    realised: dict[str, Any] | None
    decay: float | None
    thresholds: MonitorThresholds
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    include_ageing: bool = False
    history_matched: bool = False
    history_starts: list[pd.Timestamp] = field(default_factory=list)
    history_days: list[int] = field(default_factory=list)
    created_at: pd.Timestamp = field(
        default_factory=lambda: pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    )

    @property
    def drift(self) -> bool:
        """True when any flag was raised."""
        return bool(self.flags)

    @property
    def drifted_features(self) -> list[str]:
        """Features whose PSI passed the threshold and that raise the flag, most shifted
        first."""
        return [str(f) for f in self.features.loc[self.features["drifted"], "feature"]]

    @property
    def ageing_features(self) -> list[str]:
        """Features that age with the calendar (measured; they raise the flag only with
        ``include_ageing``)."""
        return [str(f) for f in self.features.loc[self.features["ages_with_calendar"], "feature"]]

    @property
    def flagged_features(self) -> pd.DataFrame:
        """The rows of :attr:`features` that may raise the flag: neither ignored nor (unless
        ``include_ageing``) ageing with the calendar."""
        f = self.features
        out = ~f["ignored"].astype(bool)
        if not self.include_ageing:
            out &= ~f["ages_with_calendar"].astype(bool)
        return f[out]

    def messages(self) -> list[str]:
        """One sentence per flag: what passed which threshold."""
        out = []
        t = self.thresholds
        if "feature_drift" in self.flags:
            worst = self.features[self.features["drifted"]].head(3)
            shown = ", ".join(f"{r.feature} (PSI {r.psi:.2f})" for r in worst.itertuples())
            n = int(self.features["drifted"].sum())
            out.append(
                f"{n} of {len(self.flagged_features)} features drifted (PSI > "
                f"{t.feature_psi:g}): {shown}"
            )
        if "score_drift" in self.flags:
            out.append(f"the score drifted: PSI {self.score['psi']:.3f} > {t.score_psi:g}")
        if "decay" in self.flags and self.decay is not None and self.realised is not None:
            out.append(
                f"performance decayed: realised ROC-AUC {self.realised['roc_auc']:.3f} at "
                f"{pd.Timestamp(self.realised['cutoff']):%Y-%m-%d} against "
                f"{self.baseline_roc_auc:.3f} ({self.baseline_source}), decay {self.decay:.3f} "
                f"> {t.decay:g}"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``json.dumps(..., allow_nan=False)`` accepts it)."""
        return json_clean(
            {
                "run_id": self.run_id,
                "model_id": self.model_id,
                "registry_name": self.registry_name,
                "stage": self.stage,
                "horizon_days": self.horizon_days,
                "retained_by": self.retained_by,
                "created_at": self.created_at,
                "drift": self.drift,
                "flags": list(self.flags),
                "messages": self.messages(),
                "notes": list(self.notes),
                "thresholds": self.thresholds.to_dict(),
                "binning": "PSI over the reference's deciles (distinct), or one bin per distinct "
                "value when it has at most 10, or one bin per category for a feature that "
                "encodes a category (user_country_freq: the users table's country), a bin for "
                "missing values, shares floored at 1e-4; KS on the finite values (scipy "
                "ks_2samp), on the reference's shares for an encoded category",
                "include_ageing": self.include_ageing,
                "ageing_features": self.ageing_features,
                "history_matched": self.history_matched,
                "history_start": min(self.history_starts) if self.history_starts else None,
                "history_starts": list(self.history_starts),
                "history_days": list(self.history_days),
                "reference": {"cutoffs": self.reference_cutoffs, "n_rows": self.n_reference},
                "current": {"cutoffs": self.current_cutoffs, "n_rows": self.n_current},
                "score": self.score,
                "features": self.features.assign(
                    drifted=self.features["drifted"].astype(bool),
                    ignored=self.features["ignored"].astype(bool),
                    ages_with_calendar=self.features["ages_with_calendar"].astype(bool),
                )
                .round(6)
                .to_dict("records"),
                "drifted_features": self.drifted_features,
                "performance": {
                    "baseline_roc_auc": self.baseline_roc_auc,
                    "baseline_source": self.baseline_source,
                    "realised": self.realised,
                    "decay": self.decay,
                    "runs": self.performance.to_dict("records"),
                },
            }
        )


def write_monitor_json(report: MonitorReport, path: str | os.PathLike[str]) -> Path:
    """Write ``report.to_dict()`` as indented JSON."""
    return write_json(report.to_dict(), path)


# -------------------------------------------------------------------------------------- helpers
def _registry(store: Store) -> pd.DataFrame:
    return store.read_rows("models", order_by=["created_at"], descending=True)


def _stage(store: Store, model_id: str) -> str | None:
    return store.model_stage(model_id)


def _default_model_id(store: Store) -> str:
    reg = _registry(store)
    if reg.empty:
        raise ConfigError(
            f"No model is registered in store {store.path}, so there is nothing to monitor: "
            f"train one first (`retention train --db {store.path}`)."
        )
    production = production_model_id(store)
    return production if production is not None else str(reg["model_id"].iloc[0])


def _metadata_cutoffs(meta: dict[str, Any], key: str) -> list[pd.Timestamp]:
    value = meta.get(key) or []
    if not isinstance(value, list):
        value = [value]
    return [to_cutoff(str(v)[:10]) for v in value if v]


def _baseline(meta: dict[str, Any]) -> tuple[float | None, str | None]:
    """The model's reference ROC-AUC: a backtest's when its metadata holds one, else the
    validation cutoff's (optimistic: the model also stopped early on it)."""
    metrics = meta.get("metrics") or {}
    for key, source in (("backtest", "backtest"), ("test", "backtest"), ("valid", "validation")):
        found = metrics.get(key) if isinstance(metrics, dict) else None
        value = found.get("roc_auc") if isinstance(found, dict) else None
        if isinstance(value, int | float) and math.isfinite(float(value)):
            assert isinstance(found, dict)
            where = found.get("cutoff") or (meta.get("valid_cutoff") if key == "valid" else None)
            label = f"{source} ROC-AUC" + (f" at {str(where)[:10]}" if where else "")
            if source == "validation":
                label += "; optimistic: also used for early stopping"
            return float(value), label
    return None, None


def _current_cutoffs(
    newest: pd.Timestamp, reference: Sequence[pd.Timestamp], horizon: int, window: int | None
) -> list[pd.Timestamp]:
    ref = sorted(reference)
    gaps = [int((b - a).days) for a, b in itertools.pairwise(ref) if b > a]
    step = min(gaps) if gaps else max(1, horizon // 3)
    count = len(ref) if window is None else max(1, math.ceil(window / step))
    return [newest - pd.Timedelta(days=k * step) for k in range(count)][::-1]


def _frames(
    store: Store,
    cutoffs: Sequence[pd.Timestamp],
    horizon: int,
    retained_by: str,
    starts: Sequence[pd.Timestamp] | None = None,
) -> list[Any]:
    froms: Sequence[pd.Timestamp | None] = starts if starts else [None] * len(cutoffs)
    return [
        make_frame(store, c, horizon, with_label=False, retained_by=retained_by, events_from=s)
        for c, s in zip(cutoffs, froms, strict=True)
    ]


def _pool(frames: Sequence[Any]) -> pd.DataFrame:
    parts = [f.features for f in frames if len(f)]
    if not parts:
        return pd.DataFrame()
    common = [c for c in parts[0].columns if all(c in p.columns for p in parts[1:])]
    return pd.concat([p[common] for p in parts], ignore_index=True)


def _pool_users(frames: Sequence[Any]) -> np.ndarray:
    """The customer of every row of :func:`_pool`, in its order."""
    parts = [f.features.index.astype(str).to_numpy() for f in frames if len(f)]
    return np.concatenate(parts) if parts else np.array([], dtype=object)


def _categories(
    store: Store, features: Sequence[str], ref_users: np.ndarray, cur_users: np.ndarray
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """The category labels of the features that encode one (``{feature: (reference labels,
    current labels)}``, read from ``users``) and the ``users`` column of each."""
    wanted = [str(f) for f in features if encoded_category(str(f)) is not None]
    if not wanted or not store.has_table("users"):
        return {}, {}
    typed = store.columns("users")
    if "user_id" not in {c for c, _ in typed}:
        return {}, {}
    columns = [c for c, t in typed if t.upper().startswith("VARCHAR")]
    sources = {f: encoded_category(f, columns) for f in wanted}
    found = {f: c for f, c in sources.items() if c is not None}
    if not found:
        return {}, {}
    users = store.table_df("users")
    users["user_id"] = users["user_id"].astype(str)
    users = users.sort_values("user_id", kind="stable").drop_duplicates("user_id")
    users = users.set_index("user_id")
    out = {
        f: (
            users[c].reindex(ref_users).to_numpy(dtype=object),
            users[c].reindex(cur_users).to_numpy(dtype=object),
        )
        for f, c in found.items()
    }
    return out, found


def _store_start(store: Store, reference: Sequence[pd.Timestamp]) -> pd.Timestamp | None:
    """The day of the store's first event when the training window's cutoffs lie within
    :data:`CENSORED_DAYS` of it (their histories were cut short by the store's start), else
    None."""
    span = store.event_range(None)
    if span is None:
        return None
    first = pd.Timestamp(span[0]).normalize()
    return first if int((min(reference) - first).days) < CENSORED_DAYS else None


def _matched_history(
    first: pd.Timestamp, reference: Sequence[pd.Timestamp], current: Sequence[pd.Timestamp]
) -> tuple[list[pd.Timestamp], list[int]]:
    """For each latest cutoff, the first day of events that gives it as many days of history
    as the training cutoff it is paired with had since the store's first event ``first``.

    Both windows are paired oldest with oldest, newest with newest (by rank, when their
    lengths differ: a single latest cutoff pairs with the newest training cutoff)."""
    ref = sorted(reference)
    n, m = len(ref), len(current)
    days = []
    for k in range(m):
        j = n - 1 if m == 1 else round(k * (n - 1) / (m - 1))
        days.append(max(1, int((ref[j] - first).days)))
    return [c - pd.Timedelta(days=d) for c, d in zip(current, days, strict=True)], days


def _censoring_note(
    first: pd.Timestamp, reference: Sequence[pd.Timestamp], matched: bool, days: Sequence[int]
) -> str:
    """The note of a training window whose histories were cut short by the store's start."""
    head = (
        f"the training window's first cutoff is {int((min(reference) - first).days)} days "
        f"after the store's first event ({first:%Y-%m-%d}): histories there are cut short by "
        "the store's start"
    )
    if matched:
        span = f"{min(days)} to {max(days)}" if min(days) != max(days) else f"{days[0]}"
        return (
            f"{head}, so the latest window's features are computed on as many days of history "
            f"({span} days before each cutoff; history_matched); --full-history compares them "
            "on every event"
        )
    return (
        f"{head}, so the features that look back further (recency, gaps, trends, the long "
        "windows, cumulative counts) are partly drifting because the store's history grew "
        "(--full-history; by default the latest window is computed on as many days of history)"
    )


def _scores(model: Any, frames: Sequence[Any]) -> np.ndarray:
    parts = [np.asarray(model.predict_proba(f), dtype=float) for f in frames if len(f)]
    return np.concatenate(parts) if parts else np.array([])


def _performance(
    store: Store,
    newest: pd.Timestamp,
    model_id: str,
    progress: Progress,
) -> tuple[pd.DataFrame, list[str]]:
    """Realised metrics of every scoring run whose label window ended by ``newest``."""
    columns = [
        "model_version",
        "cutoff",
        "horizon_days",
        "n_users",
        "base_rate",
        "mean_p",
        "roc_auc",
        "brier",
        "ece",
        "baseline_roc_auc",
        "decay",
        "monitored",
    ]
    notes: list[str] = []
    runs = store.con.execute(
        "SELECT model_version, cutoff, horizon_days, count(*) FROM scores "
        "WHERE horizon_days IS NOT NULL GROUP BY ALL ORDER BY cutoff DESC, model_version"
    ).fetchall()
    matured = [
        (str(v), pd.Timestamp(c), int(h), int(n))
        for v, c, h, n in runs
        if pd.Timestamp(c) + pd.Timedelta(days=int(h)) <= newest
    ]
    pending = [r for r in runs if pd.Timestamp(r[1]) + pd.Timedelta(days=int(r[2])) > newest]
    if len(matured) > MAX_SCORING_RUNS:
        notes.append(
            f"{len(matured)} scoring runs have a complete label window; the newest "
            f"{MAX_SCORING_RUNS} were evaluated"
        )
        matured = matured[:MAX_SCORING_RUNS]
    mine_pending = [r for r in pending if str(r[0]) == model_id]
    if mine_pending and not any(v == model_id for v, *_ in matured):
        first = min(pd.Timestamp(c) + pd.Timedelta(days=int(h)) for _, c, h, _ in mine_pending)
        notes.append(
            f"no score of model {model_id} has a complete label window yet: the first "
            f"completes on {first:%Y-%m-%d}"
        )
    rows = []
    metas: dict[str, dict[str, Any]] = {}
    with progress.task("realised performance", total=len(matured)) as task:
        for version, cutoff, horizon, _n in sorted(matured, key=lambda r: (r[1], r[0])):
            if version not in metas:
                record = store.model_record(version)
                metas[version] = record.metadata if record is not None else {}
            meta = metas[version]
            retained_by = to_retained_by(meta.get("retained_by", RETAINED_BY_DEFAULT))
            scored = store.read_scores(model_version=version, cutoff=cutoff)
            labels = build_labels(store, cutoff, horizon, retained_by=retained_by)
            labels.index = labels.index.astype(str)
            y = labels.reindex(scored["user_id"].astype(str)).fillna(0).to_numpy(dtype=float)
            m = realised_metrics(y, scored["p_retained"].to_numpy(dtype=float))
            if m["n_users"] < MIN_REALISED:
                m["roc_auc"] = float("nan")
            base, _source = _baseline(meta)
            rows.append(
                {
                    "model_version": version,
                    "cutoff": cutoff,
                    "horizon_days": horizon,
                    **m,
                    "baseline_roc_auc": np.nan if base is None else base,
                    "decay": np.nan if base is None else base - m["roc_auc"],
                    "monitored": version == model_id,
                }
            )
            task.advance()
    df = pd.DataFrame(rows, columns=columns)
    if not len(df):
        df = df.astype({"cutoff": "datetime64[ns]", "monitored": bool})
    return df, notes


def _run_id(model_id: str, created: pd.Timestamp, cutoffs: Sequence[pd.Timestamp]) -> str:
    text = f"{model_id}|{created.isoformat()}|{','.join(f'{c:%Y-%m-%d}' for c in cutoffs)}"
    return "mon-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _write(store: Store, report: MonitorReport) -> None:
    run = report.run_id
    realised = report.realised or {}
    row = pd.DataFrame(
        {
            "run_id": [run],
            "model_id": [report.model_id],
            "registry_name": [report.registry_name],
            "stage": [report.stage],
            "horizon_days": [report.horizon_days],
            "retained_by": [report.retained_by],
            "reference_cutoffs": [[c.to_pydatetime() for c in report.reference_cutoffs]],
            "current_cutoffs": [[c.to_pydatetime() for c in report.current_cutoffs]],
            "n_reference": [report.n_reference],
            "n_current": [report.n_current],
            "n_features": [len(report.features)],
            "n_drifted": [int(report.features["drifted"].sum())],
            "max_feature_psi": [
                float(report.features["psi"].max()) if len(report.features) else None
            ],
            "score_psi": [report.score.get("psi")],
            "score_ks": [report.score.get("ks")],
            "score_ks_p_value": [report.score.get("ks_p_value")],
            "realised_cutoff": pd.Series([realised.get("cutoff")], dtype="datetime64[ns]"),
            "realised_roc_auc": [realised.get("roc_auc")],
            "realised_brier": [realised.get("brier")],
            "realised_ece": [realised.get("ece")],
            "baseline_roc_auc": [report.baseline_roc_auc],
            "decay": [report.decay],
            "drift": [report.drift],
            "flags": [list(report.flags)],
            "thresholds": [json.dumps(report.thresholds.to_dict())],
            "include_ageing": [report.include_ageing],
            "history_matched": [report.history_matched],
            "history_starts": [
                [c.to_pydatetime() for c in report.history_starts]
                if report.history_matched
                else None
            ],
            "created_at": pd.Series([report.created_at], dtype="datetime64[ns]"),
        }
    )
    for c in ("max_feature_psi", "score_psi", "score_ks", "score_ks_p_value", "realised_roc_auc"):
        row[c] = row[c].astype("float64")
    for c in ("realised_brier", "realised_ece", "baseline_roc_auc", "decay"):
        row[c] = row[c].astype("float64")
    features = report.features.assign(run_id=run)
    performance = report.performance.assign(run_id=run)
    with store.transaction():
        store.replace_rows("monitor_runs", row, {"run_id": run})
        store.replace_rows("monitor_features", features, {"run_id": run})
        store.replace_rows("monitor_performance", performance, {"run_id": run})


# ------------------------------------------------------------------------------------- monitor
def monitor(
    store: Store,
    request: MonitorRequest | None = None,
    *,
    progress: Progress | None = None,
    cache: ModelCache | None = None,
) -> MonitorReport:
    """Drift of the features and the score since training, and realised performance.

    Parameters
    ----------
    store : Store
        Opened for writing when ``request.write`` (the run is recorded).
    request : MonitorRequest, optional
        The model, the window, the thresholds.
    progress : Progress, optional
    cache : ModelCache, optional
        Where the model is looked up (only models of the store's registry).

    Returns
    -------
    MonitorReport
    """
    request = request or MonitorRequest()
    progress = as_progress(progress)
    if request.write:
        store.check_writable("record the monitor run")
    thresholds = request.thresholds or MonitorThresholds.from_env()
    model_id = request.model_id or _default_model_id(store)
    cache = cache if cache is not None else ModelCache()
    loaded: LoadedModel = cache.get(store, model_id)
    meta = loaded.metadata
    horizon = to_horizon(int(meta.get("horizon_days") or loaded.horizon_days or 90))
    retained_by = to_retained_by(meta.get("retained_by", RETAINED_BY_DEFAULT))
    reference_cutoffs = _metadata_cutoffs(meta, "train_cutoffs")
    if not reference_cutoffs:
        raise ConfigError(
            f"Model {model_id} does not say which cutoffs it was trained on (its metadata has "
            "no train_cutoffs), so its training window is unknown: retrain it with "
            "`retention train` (or `retention retrain --always`)."
        )
    newest = request.cutoff if request.cutoff is not None else last_event_date(store, retained_by)
    current_cutoffs = _current_cutoffs(newest, reference_cutoffs, horizon, request.window_days)
    if current_cutoffs[-1] <= max(reference_cutoffs):
        raise ConfigError(
            f"The newest cutoff {newest:%Y-%m-%d} is not after the model's training window "
            f"(its last training cutoff is {max(reference_cutoffs):%Y-%m-%d}): pass a later "
            "--cutoff, or monitor once newer events are ingested."
        )
    first = _store_start(store, reference_cutoffs)
    matched = first is not None and not request.full_history
    starts: list[pd.Timestamp] = []
    days: list[int] = []
    if first is not None and matched:
        starts, days = _matched_history(first, reference_cutoffs, current_cutoffs)
    with progress.stage("building the training window's features"):
        reference = _frames(store, reference_cutoffs, horizon, retained_by)
    stage = "building the latest window's features" + (
        " on the training window's length of history" if matched else ""
    )
    with progress.stage(stage):
        current = _frames(store, current_cutoffs, horizon, retained_by, starts)
    ref_x, cur_x = _pool(reference), _pool(current)
    if ref_x.empty or cur_x.empty:
        raise ConfigError(
            "No customer has a qualifying event before the "
            f"{'training' if ref_x.empty else 'latest'} window's cutoffs, so there is nothing "
            "to compare: check --cutoff and the store's events."
        )
    with progress.stage(f"comparing {ref_x.shape[1]} features"):
        labels, sources = _categories(
            store, list(ref_x.columns), _pool_users(reference), _pool_users(current)
        )
        features = drift_table(ref_x, cur_x, categories=labels)
        for name, column in sources.items():
            features.loc[features["feature"] == name, "binning"] = f"categories of users.{column}"
        patterns = request.ignore if request.ignore is not None else _ignore_from_env()
        features["ignored"] = [
            any(fnmatch.fnmatchcase(str(f), p) for p in patterns) for f in features["feature"]
        ]
        features["ages_with_calendar"] = [ages_with_calendar(str(f)) for f in features["feature"]]
        may_flag = ~features["ignored"].to_numpy(dtype=bool)
        if not request.include_ageing:
            may_flag &= ~features["ages_with_calendar"].to_numpy(dtype=bool)
        features["drifted"] = (
            features["psi"].to_numpy(dtype=float) > thresholds.feature_psi
        ) & may_flag
    with progress.stage("scoring both windows"):
        ref_p, cur_p = _scores(loaded.model, reference), _scores(loaded.model, current)
    ks, p_value = ks_test(ref_p, cur_p)
    score = {
        "psi": psi(ref_p, cur_p),
        "ks": ks,
        "ks_p_value": p_value,
        "reference_mean": float(np.nanmean(ref_p)) if len(ref_p) else None,
        "current_mean": float(np.nanmean(cur_p)) if len(cur_p) else None,
    }
    performance, notes = _performance(store, newest, model_id, progress)
    ignored = [str(f) for f in features.loc[features["ignored"], "feature"]]
    if ignored:
        shown = ", ".join(ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        notes.append(f"{len(ignored)} feature(s) measured but left out of the flags: {shown}")
    ageing = features[features["ages_with_calendar"] & ~features["ignored"]]
    if len(ageing) and not request.include_ageing:
        moved = ageing[ageing["psi"] > thresholds.feature_psi]
        shown = ", ".join(f"{r.feature} (PSI {r.psi:.2f})" for r in moved.head(3).itertuples())
        notes.append(
            f"{len(ageing)} feature(s) age with the calendar and raise no flag "
            f"(--include-ageing to flag them); {len(moved)} of them passed the threshold"
            + (f": {shown}" if len(moved) else "")
        )
    if first is not None:
        notes.append(_censoring_note(first, reference_cutoffs, matched, days))
    base, source = _baseline(meta)
    mine = performance[performance["monitored"] & performance["roc_auc"].notna()]
    realised = None if mine.empty else json_clean(mine.iloc[-1].to_dict())
    decay = None
    if realised is not None and base is not None:
        decay = float(base - float(mine["roc_auc"].iloc[-1]))
    if base is None:
        notes.append(f"model {model_id} records no reference ROC-AUC, so decay is not measured")
    flags = []
    if bool(features["drifted"].any()):
        flags.append("feature_drift")
    if (
        score["psi"] is not None
        and math.isfinite(score["psi"])
        and score["psi"] > thresholds.score_psi
    ):
        flags.append("score_drift")
    if decay is not None and decay > thresholds.decay:
        flags.append("decay")
    created = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    report = MonitorReport(
        run_id=_run_id(model_id, created, current_cutoffs),
        model_id=model_id,
        registry_name=meta.get("registry_name"),
        stage=_stage(store, model_id),
        horizon_days=horizon,
        retained_by=retained_by,
        reference_cutoffs=reference_cutoffs,
        current_cutoffs=current_cutoffs,
        n_reference=len(ref_x),
        n_current=len(cur_x),
        features=features,
        score=score,
        performance=performance,
        baseline_roc_auc=base,
        baseline_source=source,
        realised=realised,
        decay=decay,
        thresholds=thresholds,
        flags=flags,
        notes=notes,
        include_ageing=request.include_ageing,
        history_matched=matched,
        history_starts=starts,
        history_days=days,
        created_at=created,
    )
    if request.write:
        _write(store, report)
    return report


def monitor_history(store: Store, *, model_id: str | None = None, limit: int = 50) -> pd.DataFrame:
    """The recorded monitor runs (of one model, or all), oldest first, at most ``limit``."""
    where = {"model_id": model_id} if model_id is not None else None
    df = store.read_rows(
        "monitor_runs", where=where, order_by=["created_at"], descending=True, limit=limit
    )
    return df.iloc[::-1].reset_index(drop=True)


# ------------------------------------------------------------------------------------- retrain
@dataclass(frozen=True)
class RetrainRequest:
    """When and how to retrain.

    Attributes
    ----------
    mode : {"if_drift", "always"}
        ``if_drift``: only when a monitor run raises a flag; ``always``: on a schedule.
    model_id : str or None
        The model to monitor and to take the configuration from (name, hyper-parameters,
        training cutoffs, what counts as coming back); default as :class:`MonitorRequest`.
    cutoff : pd.Timestamp or None
        The cutoff to train for; default the date of the last qualifying event.
    horizon_days : int or None
        Default: the model's.
    out : Path or None
        The new artifact; default beside the model's, named ``NAME-YYYY-MM-DD.retention``.
    window_days, thresholds, ignore, include_ageing, full_history
        As in :class:`MonitorRequest`.
    min_data : MinData or None
        As in :class:`~retention.workflows.TrainRequest`.
    """

    mode: Literal["if_drift", "always"] = "if_drift"
    model_id: str | None = None
    cutoff: pd.Timestamp | None = None
    horizon_days: int | None = None
    out: Path | None = None
    window_days: int | None = None
    thresholds: MonitorThresholds | None = None
    ignore: tuple[str, ...] | None = None
    include_ageing: bool = False
    full_history: bool = False
    min_data: MinData | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("if_drift", "always"):
            raise ConfigError(f"mode must be 'if_drift' or 'always'; got {self.mode!r}.")
        if self.model_id is not None and (
            not isinstance(self.model_id, str) or not self.model_id.strip()
        ):
            raise ConfigError(f"model_id must be a non-empty string; got {self.model_id!r}.")
        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        if self.horizon_days is not None:
            object.__setattr__(self, "horizon_days", to_horizon(self.horizon_days))
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "window_days", _window(self.window_days))
        object.__setattr__(self, "thresholds", _thresholds(self.thresholds))
        object.__setattr__(self, "ignore", _ignore(self.ignore))
        _check_bool(self.include_ageing, "include_ageing")
        _check_bool(self.full_history, "full_history")
        if self.min_data is not None and not isinstance(self.min_data, MinData):
            raise ConfigError(f"min_data must be a MinData or None; got {self.min_data!r}.")


@dataclass
class RetrainReport:
    """What :func:`retrain` did: why (or why not), and the new candidate."""

    triggered: bool
    reasons: list[str]
    model_id: str
    monitor: MonitorReport | None = None
    trained: TrainReport | None = None
    stage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return json_clean(
            {
                "triggered": self.triggered,
                "reasons": list(self.reasons),
                "monitored_model_id": self.model_id,
                "monitor": None if self.monitor is None else self.monitor.to_dict(),
                "new_model": None
                if self.trained is None
                else {
                    "model_id": self.trained.model_id,
                    "path": str(self.trained.path),
                    "sha256": self.trained.sha256,
                    "cutoff": self.trained.metadata.get("cutoff"),
                    "horizon_days": self.trained.metadata.get("horizon_days"),
                    "valid_metrics": (self.trained.metadata.get("metrics") or {}).get("valid"),
                    "stage": self.stage,
                },
            }
        )


def write_retrain_json(report: RetrainReport, path: str | os.PathLike[str]) -> Path:
    """Write ``report.to_dict()`` as indented JSON."""
    return write_json(report.to_dict(), path)


def _free_path(folder: Path, stem: str) -> Path:
    path = folder / f"{stem}.retention"
    k = 2
    while path.exists():
        path = folder / f"{stem}-{k}.retention"
        k += 1
    return path


def retrain(
    store: Store,
    request: RetrainRequest | None = None,
    *,
    progress: Progress | None = None,
    cache: ModelCache | None = None,
) -> RetrainReport:
    """Retrain on the newest cutoff when drift or decay passes a threshold, or always.

    In ``if_drift`` mode a :func:`monitor` run (recorded) decides; in ``always`` mode one is run
    too, for the record, when the model allows it. The new model is fitted by :func:`train` with
    the monitored model's name, hyper-parameters and number of training cutoffs, and registered
    as a ``candidate``: promoting it is ``retention promote``'s decision, never this one's.

    Returns
    -------
    RetrainReport
        ``triggered``, the ``reasons`` (the flags' messages, or ``"scheduled (--always)"``),
        the monitor run and the new model.
    """
    request = request or RetrainRequest()
    progress = as_progress(progress)
    store.check_writable("register the retrained model")
    cache = cache if cache is not None else ModelCache()
    model_id = request.model_id.strip() if request.model_id else _default_model_id(store)
    loaded = cache.get(store, model_id)
    meta = loaded.metadata
    report: MonitorReport | None = None
    mon = MonitorRequest(
        model_id=model_id,
        window_days=request.window_days,
        cutoff=request.cutoff,
        thresholds=request.thresholds,
        ignore=request.ignore,
        include_ageing=request.include_ageing,
        full_history=request.full_history,
    )
    if request.mode == "if_drift":
        report = monitor(store, mon, progress=progress, cache=cache)
        if not report.drift:
            return RetrainReport(False, [], model_id, monitor=report)
        reasons = report.messages()
    else:
        reasons = ["scheduled (--always)"]
        try:
            report = monitor(store, mon, progress=progress, cache=cache)
            reasons += report.messages()
        except ConfigError as exc:  # e.g. a cutoff inside the training window: train anyway
            warnings.warn(
                f"No monitor run before the scheduled retraining: {exc}", RetentionWarning, 2
            )
    name = str(meta.get("registry_name") or "ensemble")
    params = meta.get("model_params")
    if not isinstance(params, dict):
        params = {}
    n_train = meta.get("n_train") or len(_metadata_cutoffs(meta, "train_cutoffs")) or 3
    retained_by = to_retained_by(meta.get("retained_by", RETAINED_BY_DEFAULT))
    horizon = request.horizon_days or int(meta.get("horizon_days") or 90)
    at = request.cutoff if request.cutoff is not None else last_event_date(store, retained_by)
    out = request.out
    if out is None:
        out = _free_path(loaded.path.resolve().parent, f"{name}-{at:%Y-%m-%d}")
    check_output_path(out, "--out", "model.retention")
    trained = train(
        store,
        TrainRequest(
            out=out,
            model=name,
            cutoff=at,
            horizon_days=horizon,
            n_train=int(n_train),
            model_params=params,
            retained_by=retained_by,
            min_data=request.min_data,
        ),
        progress=progress,
    )
    return RetrainReport(
        True,
        reasons,
        model_id,
        monitor=report,
        trained=trained,
        stage=_stage(store, trained.model_id),
    )


# ----------------------------------------------------------------------------------- dashboard
def dashboard_monitor(store: Store) -> DashboardPart:
    """The latest monitor run: its flags, the most drifted features, the score's PSI and the
    realised performance, with the history of score PSI and decay over the runs."""
    if not store.has_table("monitor_runs"):
        return DashboardPart("monitor", {}, note="this store predates monitoring")
    history = monitor_history(store, limit=30)
    if history.empty:
        return DashboardPart(
            "monitor", {}, note="no monitor run yet: run `retention monitor --db STORE`"
        )
    last = history.iloc[-1].to_dict()
    run = str(last["run_id"])
    features = store.read_rows(
        "monitor_features", where={"run_id": run}, order_by=["psi"], descending=True, limit=15
    )
    performance = store.read_rows("monitor_performance", where={"run_id": run}, order_by=["cutoff"])
    flags = last.get("flags")
    data = {
        "run": {
            k: last.get(k)
            for k in (
                "run_id",
                "model_id",
                "registry_name",
                "created_at",
                "drift",
                "n_features",
                "n_drifted",
                "max_feature_psi",
                "score_psi",
                "score_ks",
                "realised_cutoff",
                "realised_roc_auc",
                "realised_brier",
                "realised_ece",
                "baseline_roc_auc",
                "decay",
                "history_matched",
            )
        }
        | {"flags": [] if flags is None else [str(f) for f in flags]},
        "thresholds": json.loads(str(last.get("thresholds") or "{}")),
        "features": features.reindex(
            columns=[
                "feature",
                "family",
                "psi",
                "ks",
                "ks_p_value",
                "drifted",
                "ignored",
                "ages_with_calendar",
                "binning",
            ]
        ).to_dict("records"),
        "performance": performance.drop(columns=["run_id"]).to_dict("records"),
        "history": history[["run_id", "created_at", "score_psi", "max_feature_psi", "decay"]]
        .assign(drift=history["drift"].astype(bool))
        .to_dict("records"),
    }
    return DashboardPart("monitor", json_clean(data))

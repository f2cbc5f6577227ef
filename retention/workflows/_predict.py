"""Prediction workflows: backtest, train, score (what ``retention backtest|train|score`` call).

* :func:`backtest` fits every model on cutoffs whose label windows end before a held-out test
  cutoff and measures them there (the JSON contract of DESIGN.md);
* :func:`train` fits a model on the latest cutoffs the data allow, saves a versioned artifact and
  registers it in the store's ``models`` table;
* :func:`score` writes, per customer, P(retained), P(alive), expected purchases, CLV and a risk
  band to the store's ``scores`` table, and the customers' reasons to ``score_reasons``, in one
  transaction (and to a CSV or Parquet file when asked).

Every workflow takes an open :class:`~retention.data.Store` and a frozen request; none opens a
file itself.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import ModelRecord, Store
from retention.exceptions import ConfigError, RetentionWarning
from retention.features import (
    RETAINED_BY_DEFAULT,
    MinData,
    check_activity,
    check_min_data,
    data_span,
    make_frame,
    to_cutoff,
    to_horizon,
    to_retained_by,
)
from retention.models import (
    BacktestResult,
    EnsembleModel,
    RetentionModel,
    classification_metrics,
    get_model,
    save_model,
    warn_if_drifted,
)
from retention.strategies import RISK_BANDS, risk_band
from retention.workflows._common import (
    ModelCache,
    check_model_ref,
    check_output_path,
    check_positive_int,
    file_sha256,
    json_clean,
    resolve_model,
    write_json,
)
from retention.workflows._explain import reasons_table
from retention.workflows._quality import backtest_quality, btyd_details
from retention.workflows._tracking import tracked

__all__ = [
    "DEFAULT_BACKTEST_MODELS",
    "BacktestRequest",
    "ScoreReport",
    "ScoreRequest",
    "TrainReport",
    "TrainRequest",
    "backtest",
    "last_event_date",
    "score",
    "train",
    "write_backtest_json",
]

#: models of ``retention backtest`` when ``--models`` is not given
DEFAULT_BACKTEST_MODELS: tuple[str, ...] = ("bgnbd", "paretonbd", "mbgnbd", "gbdt", "ensemble")

_SCORE_COLUMNS = ("p_retained", "p_alive", "expected_purchases", "clv")


# ---------------------------------------------------------------------------------------- helpers
def _model_names(models: Sequence[str] | str) -> tuple[str, ...]:
    from retention.models import MODEL_NAMES

    names = [m.strip() for m in models.split(",")] if isinstance(models, str) else list(models)
    names = [n for n in names if n]
    if not names:
        raise ConfigError("No model to run. Pass --models, e.g. --models bgnbd,gbdt,ensemble.")
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise ConfigError(
            f"Unknown model(s) {', '.join(unknown)}. Choose from: {', '.join(MODEL_NAMES)}."
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"Model(s) {', '.join(dupes)} listed twice; list each once.")
    return tuple(names)


def _params(value: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping of keyword arguments; got {value!r}.")
    return dict(value)


def last_event_date(store: Store, retained_by: str = RETAINED_BY_DEFAULT) -> pd.Timestamp:
    """The date (midnight) of the last qualifying event in the store (the last purchase by
    default): the default cutoff of train/score."""
    return check_activity(data_span(store, retained_by)).normalize()


def _check_min_data(value: Any) -> MinData | None:
    if value is not None and not isinstance(value, MinData):
        raise ConfigError(
            f"min_data must be a retention.features.MinData or None; got {value!r}. Pass e.g. "
            "MinData(customers=100)."
        )
    return value


def _fit_models(
    names: Sequence[str],
    train: Sequence[Any],
    valid: Any,
    model_params: Mapping[str, Mapping[str, Any]],
    progress: Progress,
) -> tuple[dict[str, RetentionModel], dict[str, float]]:
    """Fit each named model once; the ensemble stacks the other listed models."""
    from retention.models import DEFAULT_MEMBERS

    fitted: dict[str, RetentionModel] = {}
    timings: dict[str, float] = {}
    for name in names:
        if name == "ensemble":
            continue
        t0 = time.perf_counter()
        with progress.stage(f"fitting {name}"):
            fitted[name] = get_model(name, **model_params.get(name, {})).fit(train, valid)
        timings[name] = time.perf_counter() - t0
    if "ensemble" in names:
        others = [n for n in names if n != "ensemble"]
        members: list[Any] = [(n, fitted[n]) for n in others] if others else list(DEFAULT_MEMBERS)
        t0 = time.perf_counter()
        with progress.stage("fitting ensemble"):
            # the members listed were fitted above: only the stack learns (prefit)
            ensemble_params = {"prefit": bool(others), **model_params.get("ensemble", {})}
            fitted["ensemble"] = EnsembleModel(members=members, **ensemble_params).fit(train, valid)
        timings["ensemble"] = time.perf_counter() - t0
    return fitted, timings


# --------------------------------------------------------------------------------------- backtest
@dataclass(frozen=True)
class BacktestRequest:
    """A backtest at one held-out cutoff.

    Attributes
    ----------
    cutoff : pd.Timestamp
        The test cutoff (a date; ``"YYYY-MM-DD"`` is accepted and converted).
    horizon_days : int
        Length of the label window.
    models : tuple of str
        Registry names (a comma-separated string is accepted); ``ensemble`` stacks the other
        listed models (the default members when it is alone).
    n_train : int
        Number of training cutoffs.
    model_params : mapping of str to mapping
        Keyword arguments per model name, e.g. ``{"gbdt": {"num_leaves": 7}}``.
    retained_by : str
        The activity that counts as coming back: ``"purchase"`` (default), ``"any"`` or event
        types (``"review,view"``; :func:`retention.features.to_retained_by`). The label, the
        population and the BTYD inputs follow it; the features use every event type.
    min_data : MinData or None
        The least data to learn from (default: :class:`retention.features.MinData` from the
        ``RETENTION_MIN_*`` settings); below it the backtest refuses, near it it warns.
    """

    cutoff: pd.Timestamp
    horizon_days: int = 90
    models: tuple[str, ...] = DEFAULT_BACKTEST_MODELS
    n_train: int = 3
    model_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    retained_by: str = RETAINED_BY_DEFAULT
    min_data: MinData | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        object.__setattr__(self, "retained_by", to_retained_by(self.retained_by))
        object.__setattr__(self, "min_data", _check_min_data(self.min_data))
        object.__setattr__(self, "horizon_days", to_horizon(self.horizon_days))
        object.__setattr__(self, "models", _model_names(self.models))
        object.__setattr__(self, "n_train", check_positive_int(self.n_train, "n_train"))
        params = _params(self.model_params, "model_params")
        object.__setattr__(
            self,
            "model_params",
            {str(k): _params(v, f"model_params[{k!r}]") for k, v in params.items()},
        )


@tracked("backtest")
def backtest(
    store: Store, request: BacktestRequest, *, progress: Progress | None = None
) -> BacktestResult:
    """Fit the models on cutoffs before the test cutoff and score them on it.

    The test frame's label is "a purchase in [cutoff, cutoff + horizon)"; supervised models learn
    from ``n_train`` earlier cutoffs and a validation cutoff ``cutoff - horizon`` (early stopping,
    calibration, stacking), all of whose label windows end by the test cutoff.

    Parameters
    ----------
    store : Store
        An open store (read-only is enough).
    request : BacktestRequest
        Cutoff, horizon, models.
    progress : Progress, optional
        Where to report progress (default: nowhere).

    Returns
    -------
    BacktestResult
        Labels, scores, timings; ``extra`` holds the cohort retention table, the ensemble
        weights and the gradient boosting feature importance for the report. ``to_dict()`` is
        the JSON contract of ``retention backtest --json``.
    """
    from retention.features import cohort_retention, training_frames

    progress = as_progress(progress)
    test_cutoff, horizon_days = request.cutoff, request.horizon_days
    retained_by = request.retained_by
    span = data_span(store, retained_by)
    check_activity(span)
    with progress.stage("building features"):
        train, valid, test = training_frames(
            store, test_cutoff, horizon_days, n_train=request.n_train, retained_by=retained_by
        )
    if test.label is None or len(test) == 0:
        raise ConfigError(
            f"No customer has a qualifying event ({retained_by}) before {test_cutoff:%Y-%m-%d}. "
            "Choose a later cutoff."
        )
    sufficiency = check_min_data(train, valid, span, request.min_data, purpose="backtest")
    end = test_cutoff + pd.Timedelta(days=horizon_days)
    events = store.events_df(before=end, columns=("user_id", "ts", "event_type"))
    names = request.models
    fitted, timings = _fit_models(names, train, valid, request.model_params, progress)
    scores: dict[str, pd.Series] = {}
    with progress.task("scoring the test cutoff", total=len(names)) as task:
        for name in names:
            t0 = time.perf_counter()
            p = fitted[name].predict_proba(test)
            scores[name] = pd.Series(p, index=test.users, name=name)
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
            task.advance()
    extra: dict[str, Any] = {"retained_by": retained_by, "data": sufficiency.to_dict()}
    # BTYD fit flags, NBD twins left out of the scores, the CLV against realised spend
    extra.update(backtest_quality(store, fitted, scores, test))
    try:
        types = retained_by.split(",")
        if retained_by == "any" or len(types) > 1:  # cohorts of the qualifying events
            keep = events if retained_by == "any" else events[events["event_type"].isin(types)]
            extra["cohort_retention"] = cohort_retention(keep, event_type=None)
        else:
            extra["cohort_retention"] = cohort_retention(events, event_type=retained_by)
    except (ValueError, KeyError) as exc:  # the report simply leaves the heatmap out
        extra["cohort_retention_error"] = str(exc)
    ens = fitted.get("ensemble")
    if isinstance(ens, EnsembleModel):
        extra["ensemble_weights"] = dict(ens.weights_)
        extra["ensemble_choice"] = ens.choice()
    for name, model in fitted.items():
        booster = getattr(model, "booster_", None)
        feature_names = getattr(model, "feature_names_", None)
        if booster is not None and feature_names is not None:
            gain = booster.feature_importance(importance_type="gain")
            pairs = sorted(zip(feature_names, map(float, gain), strict=True), key=lambda kv: -kv[1])
            extra.setdefault("feature_importance", {})[name] = dict(pairs)
    return BacktestResult(
        cutoff=test_cutoff,
        horizon_days=horizon_days,
        y_true=test.label.astype(int),
        scores=scores,
        train_cutoffs=[f.cutoff for f in train],
        valid_cutoff=valid.cutoff,
        timings=timings,
        extra=extra,
    )


def write_backtest_json(result: BacktestResult, path: str | os.PathLike[str]) -> Path:
    """Write the JSON contract of ``retention backtest --json`` (non-finite numbers as null)."""
    return write_json(result.to_json_dict(), path)


# ------------------------------------------------------------------------------------------ train
@dataclass(frozen=True)
class TrainRequest:
    """A model to fit on the latest complete cutoffs and save.

    Attributes
    ----------
    out : Path
        The artifact to write (``*.retention``).
    model : str
        Registry name (default ``ensemble``: BG/NBD, Pareto/NBD and gradient boosting stacked).
    cutoff : pd.Timestamp or None
        The cutoff the model will score at; default the date of the last purchase.
    horizon_days : int
        Length of the label window.
    n_train : int
        Number of training cutoffs.
    model_params : mapping
        Keyword arguments of the model.
    retained_by : str
        The activity that counts as coming back (see :class:`BacktestRequest`); the model
        remembers it in its metadata and ``score`` uses it.
    min_data : MinData or None
        The least data to learn from (see :class:`BacktestRequest`).
    """

    out: Path
    model: str = "ensemble"
    cutoff: pd.Timestamp | None = None
    horizon_days: int = 90
    n_train: int = 3
    model_params: Mapping[str, Any] = field(default_factory=dict)
    retained_by: str = RETAINED_BY_DEFAULT
    min_data: MinData | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "retained_by", to_retained_by(self.retained_by))
        object.__setattr__(self, "min_data", _check_min_data(self.min_data))
        object.__setattr__(self, "model", _model_names([self.model])[0])
        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        object.__setattr__(self, "horizon_days", to_horizon(self.horizon_days))
        object.__setattr__(self, "n_train", check_positive_int(self.n_train, "n_train"))
        object.__setattr__(self, "model_params", _params(self.model_params, "model_params"))


@dataclass(frozen=True)
class TrainReport:
    """What :func:`train` did: the artifact, its registry entry and its metadata."""

    path: Path
    model_id: str
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return json_clean(
            {
                "path": str(self.path),
                "model_id": self.model_id,
                "sha256": self.sha256,
                "metadata": self.metadata,
            }
        )


@tracked("train", artifacts=lambda req, rep: {"model": rep.path})
def train(store: Store, request: TrainRequest, *, progress: Progress | None = None) -> TrainReport:
    """Fit a model on the latest cutoffs before the request's cutoff, save and register it.

    The validation cutoff is ``cutoff - horizon`` and the training cutoffs come before it, so the
    model learns only from complete label windows and can score customers at ``cutoff``. The
    artifact is recorded in the store's ``models`` table (id, path, sha256, name, cutoff,
    horizon, metadata), from which a service loads models by id.

    Parameters
    ----------
    store : Store
        Opened for writing (the registry is written).
    request : TrainRequest
        Model, cutoff, horizon, where to write the artifact.
    progress : Progress, optional
        Where to report progress (default: nowhere).

    Returns
    -------
    TrainReport
        The artifact path, id, sha256 and metadata (metrics are measured on the validation
        cutoff, which the model also used for early stopping, calibration and stacking:
        optimistic; run ``retention backtest`` for held-out figures).
    """
    from retention.features import backtest_cutoffs
    from retention.models import read_metadata

    progress = as_progress(progress)
    store.check_writable("register the trained model")
    check_output_path(request.out, "out", "model.retention")  # before training, not after
    horizon_days = request.horizon_days
    retained_by = request.retained_by
    span = data_span(store, retained_by)
    at = request.cutoff if request.cutoff is not None else check_activity(span).normalize()
    train_cutoffs, valid_cutoff = backtest_cutoffs(
        at, horizon_days, n_train=request.n_train, span=span
    )
    with progress.stage("building features"):
        frames = [
            make_frame(store, c, horizon_days, with_label=True, retained_by=retained_by)
            for c in train_cutoffs
        ]
        valid = make_frame(
            store, valid_cutoff, horizon_days, with_label=True, retained_by=retained_by
        )
    sufficiency = check_min_data(frames, valid, span, request.min_data, purpose="train")
    t0 = time.perf_counter()
    with progress.stage(f"fitting {request.model}"):
        fitted = get_model(request.model, **request.model_params).fit(frames, valid)
    seconds = time.perf_counter() - t0
    p_valid = fitted.predict_proba(valid)
    metrics = classification_metrics(np.asarray(valid.label, dtype=int), p_valid)
    metadata: dict[str, Any] = {
        "registry_name": request.model,
        # the configuration `retention promote` refits at the latest backtest cutoff
        "model_params": json_clean(dict(request.model_params)),
        "n_train": request.n_train,
        "cutoff": at,
        "horizon_days": horizon_days,
        "retained_by": retained_by,
        "data": sufficiency.to_dict(),
        "train_cutoffs": [f.cutoff for f in frames],
        "valid_cutoff": valid.cutoff,
        "n_users_valid": len(valid),
        "metrics": {"valid": json_clean(metrics)},
        "metrics_note": "measured on the validation cutoff, also used for early stopping, "
        "calibration and stacking (optimistic); run `retention backtest` for held-out figures",
        "fit_seconds": round(seconds, 2),
        "store": str(store.path),
    }
    path = save_model(fitted, request.out, metadata)
    saved = read_metadata(path)
    sha = file_sha256(path)
    model_id = str(saved.get("model_id", "unknown"))
    store.register_model(
        ModelRecord(
            model_id=model_id,
            path=path.resolve(),
            sha256=sha,
            registry_name=request.model,
            cutoff=at,
            horizon_days=horizon_days,
            metadata=json_clean(saved),
        )
    )
    return TrainReport(path=path, model_id=model_id, sha256=sha, metadata=saved)


# ------------------------------------------------------------------------------------------ score
@dataclass(frozen=True)
class ScoreRequest:
    """Which model scores, at which cutoff, into which table.

    Name the model by exactly one of ``model_path`` (an artifact, registered or not: the CLI's
    ``--model PATH``) and ``model_id`` (a model of the store's ``models`` registry: what a service
    uses).

    Attributes
    ----------
    model_path : Path or None
    model_id : str or None
    cutoff : pd.Timestamp or None
        Default: the date of the last purchase.
    horizon_days : int or None
        Must match the model's horizon when given.
    out : Path or None
        Also write the scores to this ``.csv`` or ``.parquet`` file.
    table : str
        The store table to write (created with the typed columns of ``scores`` when missing).
    reasons : bool
        Also store every customer's top reasons (models SHAP can explain).
    retained_by : str or None
        Must match the activity the model was trained on when given (default: the model's,
        from its metadata; ``"purchase"`` for artifacts that do not say).
    """

    model_path: Path | None = None
    model_id: str | None = None
    cutoff: pd.Timestamp | None = None
    horizon_days: int | None = None
    out: Path | None = None
    table: str = "scores"
    reasons: bool = True
    retained_by: str | None = None

    def __post_init__(self) -> None:
        if self.retained_by is not None:
            object.__setattr__(self, "retained_by", to_retained_by(self.retained_by))
        path, mid = check_model_ref(self.model_path, self.model_id)
        object.__setattr__(self, "model_path", path)
        object.__setattr__(self, "model_id", mid)
        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        if self.horizon_days is not None:
            object.__setattr__(self, "horizon_days", to_horizon(self.horizon_days))
        if self.out is not None:
            out = Path(self.out)
            if out.suffix.lower() not in {".csv", ".parquet"}:
                raise ConfigError(
                    f"Cannot tell the format of {out}: use a .csv or .parquet file name for --out."
                )
            object.__setattr__(self, "out", out)
        if not isinstance(self.table, str) or not self.table.isidentifier():
            raise ConfigError(
                f"Table name {self.table!r} is not a plain identifier; use e.g. 'scores'."
            )


@dataclass(frozen=True)
class ScoreReport:
    """What :func:`score` wrote."""

    scores: pd.DataFrame
    cutoff: pd.Timestamp
    model_version: str
    table: str
    out: Path | None
    bands: dict[str, int] = field(default_factory=dict)
    n_reasons: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the rows themselves are in the store table)."""
        return json_clean(
            {
                "n_users": len(self.scores),
                "cutoff": self.cutoff,
                "model_version": self.model_version,
                "table": self.table,
                "out": None if self.out is None else str(self.out),
                "bands": self.bands,
                "n_reasons": self.n_reasons,
            }
        )


def _btyd_fill(details: pd.DataFrame, frame: Any) -> pd.DataFrame:
    """Fill P(alive), expected purchases and CLV the model does not give (or P(alive) it gives
    as unknown) from the first BTYD model whose fit on this frame's history is not degenerate;
    warn when P(alive) stays unknown (NULL in the table)."""
    missing = [c for c in ("p_alive", "expected_purchases", "clv") if c not in details.columns]
    unknown = "p_alive" in details.columns and bool(details["p_alive"].isna().all())
    if missing or unknown:
        extra, source = btyd_details(frame)
        extra = extra.reindex(details.index)
        for c in missing + (["p_alive"] if unknown and source is not None else []):
            details[c] = extra[c].to_numpy(dtype=float) if c in extra.columns else np.nan
    if bool(details["p_alive"].isna().all()):
        warnings.warn(
            f"P(alive) is unavailable at {pd.Timestamp(frame.cutoff):%Y-%m-%d}: every BTYD fit "
            "on this log (MBG/NBD, Pareto/NBD, BG/NBD) is degenerate, nobody seeming to drop "
            "out, so a P(alive) would be about 1 for everyone and mean nothing. The p_alive "
            "column is left NULL; P(retained) and the CLV are unaffected.",
            RetentionWarning,
            stacklevel=3,
        )
    return details


def score(
    store: Store,
    request: ScoreRequest,
    *,
    progress: Progress | None = None,
    cache: ModelCache | None = None,
) -> ScoreReport:
    """Score every customer with a purchase before the cutoff.

    Writes ``user_id, p_retained, p_alive, expected_purchases, clv, risk_band, cutoff,
    horizon_days, model_version, scored_at`` to the store's table (rows of the same cutoff and
    model version are replaced) and, with ``request.reasons`` and a model SHAP can explain, every
    customer's top three reasons toward churn and toward retention to ``score_reasons``: both in
    one transaction, so a failed write changes neither. With ``request.out``, the scores also go
    to a ``.csv`` or ``.parquet`` file.

    Parameters
    ----------
    store : Store
        Opened for writing; read and written through this one handle.
    request : ScoreRequest
        Model, cutoff, table, file.
    progress : Progress, optional
        Where to report progress (default: nowhere).
    cache : ModelCache, optional
        Where to look the model up (a service passes its own; default: a fresh one).

    Returns
    -------
    ScoreReport
    """
    from retention.explain import supports_shap

    progress = as_progress(progress)
    store.check_writable("write scores")
    store.check_table_like(request.table, "scores")  # before scoring: `--table events` fails now
    loaded = resolve_model(store, cache, model_path=request.model_path, model_id=request.model_id)
    model = loaded.model
    trained_h = loaded.horizon_days
    wanted_h = request.horizon_days
    if wanted_h is not None and trained_h is not None and trained_h != wanted_h:
        raise ConfigError(
            f"The model was trained for a {trained_h}-day horizon; got --horizon {wanted_h}. "
            f"Drop --horizon or retrain with --horizon {wanted_h}."
        )
    h = request.horizon_days or trained_h or 90
    version = loaded.model_id
    retained_by = to_retained_by(loaded.metadata.get("retained_by", RETAINED_BY_DEFAULT))
    if request.retained_by is not None and request.retained_by != retained_by:
        raise ConfigError(
            f"The model was trained with --retained-by {retained_by}; got --retained-by "
            f"{request.retained_by}. Drop --retained-by or retrain with --retained-by "
            f"{request.retained_by}."
        )
    at = request.cutoff if request.cutoff is not None else last_event_date(store, retained_by)
    with progress.stage("building features"):
        frame = make_frame(store, at, h, with_label=False, retained_by=retained_by)
    if len(frame) == 0:
        raise ConfigError(f"No customer has a purchase before {at:%Y-%m-%d}; nothing to score.")
    warn_if_drifted(model, frame)  # a model trained on another store: say so
    with progress.stage(f"scoring {len(frame)} customers"):
        details = model.predict_details(frame)
        details = _btyd_fill(details.reindex(frame.users).copy(), frame)
    scored_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    df = pd.DataFrame({"user_id": frame.users.astype(str)})
    for c in _SCORE_COLUMNS:
        df[c] = details[c].to_numpy(dtype=float)
    df["risk_band"] = risk_band(df["p_retained"].to_numpy())
    df["cutoff"] = at
    df["horizon_days"] = h
    df["model_version"] = version
    df["scored_at"] = scored_at
    df["cutoff"] = df["cutoff"].astype("datetime64[ns]")
    df["scored_at"] = df["scored_at"].astype("datetime64[ns]")
    reasons: pd.DataFrame | None = None
    if request.reasons and supports_shap(model):
        # every customer's top reasons beside the scores (``retention explain --user`` and the
        # API read them), written in the same transaction as the scores
        with progress.stage(f"explaining {len(frame)} customers"):
            reasons = reasons_table(model, frame)
    store.write_scores(df, reasons, table=request.table)
    if request.out is not None:
        out_path = request.out
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            if out_path.suffix.lower() == ".csv":
                df.to_csv(out_path, index=False)
            else:
                df.to_parquet(out_path, index=False)
        except OSError as exc:
            raise ConfigError(
                f"Cannot write {out_path}: {exc.strerror or exc}. Pass another --out."
            ) from exc
    bands = {b: int((df["risk_band"] == b).sum()) for _, b in RISK_BANDS}
    return ScoreReport(
        scores=df,
        cutoff=at,
        model_version=version,
        table=request.table,
        out=request.out,
        bands=bands,
        n_reasons=0 if reasons is None else len(reasons),
    )

"""Prediction workflows: backtest, train, score (what ``retention backtest|train|score`` call).

* :func:`backtest` fits every model on cutoffs whose label windows end before a held-out test
  cutoff and measures them there (the JSON contract of DESIGN.md);
* :func:`train` fits a model on the latest cutoffs the data allow and saves a versioned artifact;
* :func:`score` loads an artifact and writes, per customer, P(retained), P(alive), expected
  purchases, CLV and a risk band to the store's ``scores`` table and to a CSV or Parquet file.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import status
from retention.exceptions import ConfigError, StoreError
from retention.models import (
    BacktestResult,
    EnsembleModel,
    RetentionModel,
    classification_metrics,
    get_model,
    load_model,
    save_model,
)
from retention.models._ensemble import DEFAULT_MEMBERS

__all__ = [
    "DEFAULT_BACKTEST_MODELS",
    "RISK_BANDS",
    "ScoreReport",
    "TrainReport",
    "backtest",
    "last_event_date",
    "parse_cutoff",
    "risk_band",
    "score",
    "train",
    "write_backtest_json",
]

#: models of ``retention backtest`` when ``--models`` is not given
DEFAULT_BACKTEST_MODELS: tuple[str, ...] = ("bgnbd", "paretonbd", "gbdt", "ensemble")

#: risk of *not* coming back, by P(retained): below 0.3 high, below 0.6 medium, else low
RISK_BANDS: tuple[tuple[float, str], ...] = ((0.3, "high"), (0.6, "medium"), (math.inf, "low"))

_SCORE_COLUMNS = ("p_retained", "p_alive", "expected_purchases", "clv")


# ---------------------------------------------------------------------------------------- helpers
def parse_cutoff(value: str | pd.Timestamp | dt.date | None) -> pd.Timestamp | None:
    """A cutoff as a midnight ``pd.Timestamp`` (from ``YYYY-MM-DD``), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            ts = pd.Timestamp(dt.date.fromisoformat(value.strip()))
        except ValueError:
            raise ConfigError(
                f"Cutoff {value!r} is not a date. Pass it as YYYY-MM-DD, e.g. 2011-09-10."
            ) from None
    else:
        ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    if ts != ts.normalize():
        raise ConfigError(f"A cutoff is a date at midnight; got {ts}. Pass YYYY-MM-DD.")
    return ts


def _check_horizon(horizon_days: int) -> int:
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int | np.integer):
        raise ConfigError(f"The horizon is a whole number of days; got {horizon_days!r}.")
    if horizon_days < 1:
        raise ConfigError(f"The horizon must be at least 1 day; got {horizon_days}.")
    return int(horizon_days)


def _open_store(db: str | os.PathLike[str], read_only: bool = True) -> Any:
    from retention.data import Store

    path = Path(db)
    if read_only and not path.exists():
        raise StoreError(
            f"No store at {path}. Load data first with `retention ingest FILE --db {path}` "
            "(or `retention datasets load online_retail --db ...`), or pass the right --db."
        )
    return Store(path, read_only=read_only)


def _replace_rows(
    db: str | os.PathLike[str], table: str, df: pd.DataFrame, at: pd.Timestamp, version: str
) -> None:
    """Write ``df`` to ``table`` (created from ``df``'s columns if missing), replacing the rows
    of cutoff ``at`` and model ``version``."""
    with _open_store(db, read_only=False) as store:
        con = store.con.cursor()  # a fresh cursor: no unfinished result from opening the store
        con.register("_retention_rows", df)
        try:
            con.execute(
                f'CREATE TABLE IF NOT EXISTS "{table}" AS SELECT * FROM _retention_rows LIMIT 0'
            )
            con.execute(
                f'DELETE FROM "{table}" WHERE cutoff = ? AND model_version = ?',
                [at.to_pydatetime(), version],
            )
            cols = ", ".join(f'"{c}"' for c in df.columns)
            con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM _retention_rows')
        finally:
            con.unregister("_retention_rows")
            con.close()


def _event_range(store: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    row = store.con.execute(
        "SELECT min(ts), max(ts) FROM events WHERE event_type = 'purchase'"
    ).fetchone()
    if row is None or row[0] is None:
        raise ConfigError(
            f"The store {store.path} holds no purchase events, so there is nothing to learn "
            "from. Ingest a purchase log first (`retention ingest`)."
        )
    return pd.Timestamp(row[0]), pd.Timestamp(row[1])


def last_event_date(db: str | os.PathLike[str]) -> pd.Timestamp:
    """The date (midnight) of the last purchase in the store: the default cutoff of train/score."""
    with _open_store(db) as store:
        return _event_range(store)[1].normalize()


def _json_clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fit_models(
    names: Sequence[str],
    train: Sequence[Any],
    valid: Any,
    model_params: dict[str, dict[str, Any]] | None,
) -> tuple[dict[str, RetentionModel], dict[str, float]]:
    """Fit each named model once; the ensemble stacks the other listed models."""
    params = model_params or {}
    fitted: dict[str, RetentionModel] = {}
    timings: dict[str, float] = {}
    for name in names:
        if name == "ensemble":
            continue
        t0 = time.perf_counter()
        with status(f"fitting {name}"):
            fitted[name] = get_model(name, **params.get(name, {})).fit(train, valid)
        timings[name] = time.perf_counter() - t0
    if "ensemble" in names:
        others = [n for n in names if n != "ensemble"]
        members: list[Any] = [(n, fitted[n]) for n in others] if others else list(DEFAULT_MEMBERS)
        t0 = time.perf_counter()
        with status("fitting ensemble"):
            fitted["ensemble"] = EnsembleModel(members=members, **params.get("ensemble", {})).fit(
                train, valid
            )
        timings["ensemble"] = time.perf_counter() - t0
    return fitted, timings


def _check_model_names(models: Sequence[str] | str) -> list[str]:
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
    return names


# --------------------------------------------------------------------------------------- backtest
def backtest(
    db: str | os.PathLike[str],
    cutoff: str | pd.Timestamp,
    horizon_days: int = 90,
    models: Sequence[str] | str = DEFAULT_BACKTEST_MODELS,
    *,
    n_train: int = 3,
    json_path: str | os.PathLike[str] | None = None,
    model_params: dict[str, dict[str, Any]] | None = None,
) -> BacktestResult:
    """Fit the models on cutoffs before ``cutoff`` and score them on it.

    The test frame's label is "a purchase in [cutoff, cutoff + horizon)"; supervised models learn
    from ``n_train`` earlier cutoffs and a validation cutoff ``cutoff - horizon`` (early stopping,
    calibration, stacking), all of whose label windows end by the test cutoff.

    Parameters
    ----------
    db : path
        The DuckDB store.
    cutoff : str or pd.Timestamp
        The test cutoff (``YYYY-MM-DD``).
    horizon_days : int
        Length of the label window.
    models : sequence of str or comma-separated str
        Registry names; ``ensemble`` stacks the other listed models (the default members when it
        is alone).
    n_train : int
        Number of training cutoffs.
    json_path : path, optional
        Write the JSON contract of ``retention backtest --json`` there.
    model_params : dict, optional
        Keyword arguments per model name, e.g. ``{"gbdt": {"num_leaves": 7}}``.

    Returns
    -------
    BacktestResult
        Labels, scores, timings; ``extra`` holds the cohort retention table, the ensemble
        weights and the gradient boosting feature importance for the report.
    """
    from retention.features import cohort_retention
    from retention.features._builder import training_frames

    names = _check_model_names(models)
    horizon_days = _check_horizon(horizon_days)
    test_cutoff = parse_cutoff(cutoff)
    if test_cutoff is None:
        raise ConfigError("backtest needs a test cutoff. Pass --cutoff YYYY-MM-DD.")
    if not isinstance(n_train, int) or n_train < 1:
        raise ConfigError(f"n_train must be a positive integer; got {n_train!r}.")
    with _open_store(db) as store:
        _event_range(store)
        with status("building features"):
            train, valid, test = training_frames(store, test_cutoff, horizon_days, n_train=n_train)
        end = test_cutoff + pd.Timedelta(days=horizon_days)
        events = store.con.execute(
            "SELECT user_id, ts, event_type FROM events WHERE ts < ?", [end.to_pydatetime()]
        ).df()
    if test.label is None or len(test) == 0:
        raise ConfigError(
            f"No customer has a purchase before {test_cutoff:%Y-%m-%d}. Choose a later cutoff."
        )
    fitted, timings = _fit_models(names, train, valid, model_params)
    scores: dict[str, pd.Series] = {}
    for name in names:
        t0 = time.perf_counter()
        with status(f"scoring {name}"):
            scores[name] = pd.Series(fitted[name].predict_proba(test), index=test.users, name=name)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
    extra: dict[str, Any] = {}
    try:
        extra["cohort_retention"] = cohort_retention(events)
    except (ValueError, KeyError) as exc:  # the report simply leaves the heatmap out
        extra["cohort_retention_error"] = str(exc)
    ens = fitted.get("ensemble")
    if isinstance(ens, EnsembleModel):
        extra["ensemble_weights"] = dict(ens.weights_)
    for name, model in fitted.items():
        booster = getattr(model, "booster_", None)
        feature_names = getattr(model, "feature_names_", None)
        if booster is not None and feature_names is not None:
            gain = booster.feature_importance(importance_type="gain")
            pairs = sorted(zip(feature_names, map(float, gain), strict=True), key=lambda kv: -kv[1])
            extra.setdefault("feature_importance", {})[name] = dict(pairs)
    result = BacktestResult(
        cutoff=test_cutoff,
        horizon_days=horizon_days,
        y_true=test.label.astype(int),
        scores=scores,
        train_cutoffs=[f.cutoff for f in train],
        valid_cutoff=valid.cutoff,
        timings=timings,
        extra=extra,
    )
    if json_path is not None:
        write_backtest_json(result, json_path)
    return result


def write_backtest_json(result: BacktestResult, path: str | os.PathLike[str]) -> Path:
    """Write the JSON contract of ``retention backtest --json`` (non-finite numbers as null)."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(
            json.dumps(_json_clean(result.to_json_dict()), indent=2, allow_nan=False) + "\n",
            encoding="utf-8",
        )
    except OSError as exc:
        raise ConfigError(f"Cannot write {p}: {exc.strerror or exc}. Pass another --json.") from exc
    return p


# ------------------------------------------------------------------------------------------ train
@dataclass
class TrainReport:
    """What :func:`train` did: the artifact and its metadata."""

    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)


def train(
    db: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str = "ensemble",
    cutoff: str | pd.Timestamp | None = None,
    horizon_days: int = 90,
    n_train: int = 3,
    model_params: dict[str, Any] | None = None,
) -> TrainReport:
    """Fit ``model`` on the latest cutoffs before ``cutoff`` and save a versioned artifact.

    The validation cutoff is ``cutoff - horizon`` and the training cutoffs come before it, so the
    model learns only from complete label windows and can score customers at ``cutoff``.

    Parameters
    ----------
    db : path
        The DuckDB store.
    out : path
        The artifact to write (``*.retention``).
    model : str
        Registry name (default ``ensemble``: BG/NBD, Pareto/NBD and gradient boosting stacked).
    cutoff : str, pd.Timestamp or None
        The cutoff the model will score at; default the date of the last purchase.
    horizon_days : int
        Length of the label window.
    n_train : int
        Number of training cutoffs.
    model_params : dict, optional
        Keyword arguments of the model.

    Returns
    -------
    TrainReport
        The artifact path and its metadata (metrics are measured on the validation cutoff, which
        the model also used for early stopping, calibration and stacking: optimistic; run
        ``retention backtest`` for held-out figures).
    """
    from retention.features._builder import make_frame
    from retention.features._cutoffs import backtest_cutoffs
    from retention.features._tables import data_span

    _check_model_names([model])
    horizon_days = _check_horizon(horizon_days)
    if not isinstance(n_train, int) or n_train < 1:
        raise ConfigError(f"n_train must be a positive integer; got {n_train!r}.")
    with _open_store(db) as store:
        _, last = _event_range(store)
        at = parse_cutoff(cutoff) or last.normalize()
        train_cutoffs, valid_cutoff = backtest_cutoffs(
            at, horizon_days, n_train=n_train, span=data_span(store.ibis())
        )
        with status("building features"):
            frames = [make_frame(store, c, horizon_days, with_label=True) for c in train_cutoffs]
            valid = make_frame(store, valid_cutoff, horizon_days, with_label=True)
    t0 = time.perf_counter()
    fitted = get_model(model, **(model_params or {})).fit(frames, valid)
    seconds = time.perf_counter() - t0
    p_valid = fitted.predict_proba(valid)
    metrics = classification_metrics(np.asarray(valid.label, dtype=int), p_valid)
    metadata: dict[str, Any] = {
        "registry_name": model,
        "cutoff": at,
        "horizon_days": horizon_days,
        "train_cutoffs": [f.cutoff for f in frames],
        "valid_cutoff": valid.cutoff,
        "n_users_valid": len(valid),
        "metrics": {"valid": _json_clean(metrics)},
        "metrics_note": "measured on the validation cutoff, also used for early stopping, "
        "calibration and stacking (optimistic); run `retention backtest` for held-out figures",
        "fit_seconds": round(seconds, 2),
        "store": str(Path(db)),
    }
    path = save_model(fitted, out, metadata)
    from retention.models import read_metadata

    return TrainReport(path=path, metadata=read_metadata(path))


# ------------------------------------------------------------------------------------------ score
def risk_band(p_retained: np.ndarray | pd.Series) -> np.ndarray:
    """Churn risk from P(retained): ``high`` below 0.3, ``medium`` below 0.6, else ``low``."""
    p = np.asarray(p_retained, dtype=float)
    out = np.full(p.shape, "low", dtype=object)
    out[p < RISK_BANDS[1][0]] = "medium"
    out[p < RISK_BANDS[0][0]] = "high"
    return out


@dataclass
class ScoreReport:
    """What :func:`score` wrote."""

    scores: pd.DataFrame
    cutoff: pd.Timestamp
    model_version: str
    table: str
    out: Path | None
    bands: dict[str, int] = field(default_factory=dict)


def _btyd_fill(details: pd.DataFrame, frame: Any) -> pd.DataFrame:
    """Fill P(alive), expected purchases and CLV from a BG/NBD fitted on this frame's history."""
    missing = [c for c in ("p_alive", "expected_purchases", "clv") if c not in details.columns]
    if not missing:
        return details
    bg = get_model("bgnbd").fit([frame], None)
    extra = bg.predict_details(frame).reindex(details.index)
    for c in missing:
        details[c] = extra[c].to_numpy(dtype=float) if c in extra.columns else np.nan
    return details


def score(
    db: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    *,
    cutoff: str | pd.Timestamp | None = None,
    horizon_days: int | None = None,
    out: str | os.PathLike[str] | None = None,
    table: str = "scores",
    reasons: bool = True,
) -> ScoreReport:
    """Score every customer with a purchase before ``cutoff`` with a saved model.

    Writes ``user_id, p_retained, p_alive, expected_purchases, clv, risk_band, cutoff,
    horizon_days, model_version, scored_at`` to the store's ``table`` (rows of the same cutoff and
    model version are replaced) and, when ``out`` is given, to a ``.csv`` or ``.parquet`` file.
    With ``reasons`` (the default) and a model SHAP can explain, every customer's top three reasons
    toward churn and toward retention go to the ``score_reasons`` table beside the scores.

    Parameters
    ----------
    db : path
        The DuckDB store (opened for writing).
    model_path : path
        An artifact written by :func:`train`.
    cutoff : str, pd.Timestamp or None
        Default: the date of the last purchase.
    horizon_days : int or None
        Must match the model's horizon when given.
    out : path, optional
        A ``.csv`` or ``.parquet`` file.
    table : str
        The store table to write.

    Returns
    -------
    ScoreReport
    """
    from retention.features._builder import make_frame

    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.suffix.lower() not in {".csv", ".parquet"}:
        raise ConfigError(
            f"Cannot tell the format of {out_path}: use a .csv or .parquet file name for --out."
        )
    if not table.isidentifier():
        raise ConfigError(f"Table name {table!r} is not a plain identifier; use e.g. 'scores'.")
    model = load_model(model_path)
    meta: dict[str, Any] = getattr(model, "artifact_metadata_", {})
    trained_h = meta.get("horizon_days")
    if horizon_days is not None:
        horizon_days = _check_horizon(horizon_days)
        if trained_h is not None and int(trained_h) != horizon_days:
            raise ConfigError(
                f"The model was trained for a {trained_h}-day horizon; got --horizon "
                f"{horizon_days}. Drop --horizon or retrain with --horizon {horizon_days}."
            )
    h = horizon_days or (int(trained_h) if trained_h is not None else 90)
    version = str(meta.get("model_id", "unknown"))
    with _open_store(db) as store:
        _, last = _event_range(store)
        at = parse_cutoff(cutoff) or last.normalize()
        with status("building features"):
            frame = make_frame(store, at, h, with_label=False)
    if len(frame) == 0:
        raise ConfigError(f"No customer has a purchase before {at:%Y-%m-%d}; nothing to score.")
    with status(f"scoring {len(frame)} customers"):
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
    _replace_rows(db, table, df, at, version)
    if out_path is not None:
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
    if reasons:
        # Store every customer's top reasons beside the scores (``retention explain --user`` and
        # the API read them). Imported here: ``_explain`` imports this module.
        from retention.explain import supports_shap
        from retention.workflows._explain import write_reasons

        if supports_shap(model):
            with status(f"explaining {len(frame)} customers"):
                write_reasons(db, model, frame, model_version=version)
    bands = {b: int((df["risk_band"] == b).sum()) for _, b in RISK_BANDS}
    return ScoreReport(
        scores=df, cutoff=at, model_version=version, table=table, out=out_path, bands=bands
    )

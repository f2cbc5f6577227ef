"""Explain workflows: one customer's reasons, reasons for everyone, and the explain backtest.

* :func:`explain_user` prints-ready: a customer's P(retained), risk band and top reasons toward
  churn and toward retention (what ``retention explain --user ID`` and the API show). It reads
  the reasons stored beside the scores when :func:`store_reasons` wrote them for the same model
  and cutoff, and computes them otherwise.
* :func:`store_reasons` writes every customer's reasons to the store's ``score_reasons`` table,
  beside the ``scores`` table of ``retention score``.
* :func:`explain_backtest` runs the whole explain stage at a held-out test cutoff: SHAP and
  permutation importance (on the validation cutoff), feature selection (validation cutoff only),
  the ROC-AUC of the selected set against the full set on the test cutoff, fairness by segment,
  and reasons for a sample of high-risk customers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import status
from retention.exceptions import ConfigError
from retention.explain import (
    DEFAULT_DISPARITY_THRESHOLD,
    Contributions,
    FairnessReport,
    SelectionResult,
    make_segments,
    permutation_importance,
    reasons,
    reasons_for,
    segment_report,
    select_features,
    shap_contributions,
    subset_frame,
    supports_shap,
)
from retention.models import (
    BacktestResult,
    GBDTModel,
    classification_metrics,
    get_model,
    load_model,
)
from retention.workflows._predict import (
    RISK_BANDS,
    _check_horizon,
    _event_range,
    _json_clean,
    _open_store,
    _replace_rows,
    parse_cutoff,
    risk_band,
)

__all__ = [
    "REASONS_TABLE",
    "ExplainReport",
    "ReasonsReport",
    "UserExplanation",
    "explain_backtest",
    "explain_user",
    "reasons_table",
    "store_reasons",
    "write_explain_json",
    "write_reasons",
]

#: the store table :func:`store_reasons` writes
REASONS_TABLE = "score_reasons"

#: P(retained) under which a customer is high-risk (the "high" band of ``retention score``)
HIGH_RISK_BELOW: float = float(RISK_BANDS[0][0])


# ------------------------------------------------------------------------------- one customer
@dataclass
class UserExplanation:
    """One customer's score and reasons.

    Attributes
    ----------
    user_id : str
    p_retained : float
        P(at least one purchase in the horizon).
    risk_band : str
        ``high``, ``medium`` or ``low`` churn risk.
    cutoff : pd.Timestamp
    horizon_days : int
    model_version : str
    churn, retention : list of dict
        Reasons, strongest first: ``feature``, ``family``, ``contribution`` (log-odds),
        ``value``, ``typical`` (population median) and ``text``.
    source : str
        ``"stored"`` (read from the ``score_reasons`` table) or ``"computed"``.
    note : str
        Why there are no reasons, when there are none.
    """

    user_id: str
    p_retained: float
    risk_band: str
    cutoff: pd.Timestamp
    horizon_days: int
    model_version: str
    churn: list[dict[str, Any]] = field(default_factory=list)
    retention: list[dict[str, Any]] = field(default_factory=list)
    source: str = "computed"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the REST API returns this)."""
        return _json_clean(
            {
                "user_id": self.user_id,
                "p_retained": float(self.p_retained),
                "risk_band": self.risk_band,
                "cutoff": f"{self.cutoff:%Y-%m-%d}",
                "horizon_days": int(self.horizon_days),
                "model_version": self.model_version,
                "reasons": {"churn": self.churn, "retention": self.retention},
                "source": self.source,
                "note": self.note,
            }
        )


def _model_and_meta(model_path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any], str, int]:
    model = load_model(model_path)
    meta: dict[str, Any] = getattr(model, "artifact_metadata_", {}) or {}
    version = str(meta.get("model_id", "unknown"))
    horizon = int(meta.get("horizon_days") or 90)
    return model, meta, version, horizon


def _stored(
    db: str | os.PathLike[str], user_id: str, cutoff: pd.Timestamp | None, version: str
) -> tuple[pd.Timestamp, float, pd.DataFrame] | None:
    """(cutoff, p_retained, reasons) stored by ``store_reasons``/``score`` for this model."""
    with _open_store(db) as store:
        if not (store.has_table(REASONS_TABLE) and store.has_table("scores")):
            return None
        sql = "SELECT cutoff, p_retained FROM scores WHERE user_id = ? AND model_version = ?"
        args: list[Any] = [user_id, version]
        if cutoff is not None:
            sql += " AND cutoff = ?"
            args.append(cutoff.to_pydatetime())
        row = store.con.execute(sql + " ORDER BY cutoff DESC LIMIT 1", args).fetchone()
        if row is None:
            return None
        at = pd.Timestamp(row[0])
        table = store.con.execute(
            f'SELECT * FROM "{REASONS_TABLE}" WHERE user_id = ? AND model_version = ? '
            "AND cutoff = ? ORDER BY direction, rank",
            [user_id, version, at.to_pydatetime()],
        ).df()
    if table.empty:
        return None
    return at, float(row[1]), table


def explain_user(
    db: str | os.PathLike[str],
    user_id: str,
    *,
    model_path: str | os.PathLike[str],
    cutoff: str | pd.Timestamp | None = None,
    top: int = 3,
    currency: str = "",
    use_stored: bool = True,
) -> UserExplanation:
    """One customer's P(retained), risk band and top reasons toward churn and retention.

    Parameters
    ----------
    db : path
        The DuckDB store.
    user_id : str
        The customer.
    model_path : path
        An artifact written by ``retention train``.
    cutoff : str, pd.Timestamp or None
        Default: the latest stored reasons for this model, else the date of the last purchase.
    top : int
        Reasons per direction.
    currency : str
        Put before money amounts (e.g. ``"£"``).
    use_stored : bool
        Read the reasons stored by :func:`store_reasons` when they match the model and cutoff.

    Returns
    -------
    UserExplanation

    Raises
    ------
    ConfigError
        The customer has no purchase before the cutoff (unknown id, or the cutoff is too early).
    """
    uid = str(user_id).strip()
    if not uid:
        raise ConfigError("Pass the customer to explain, e.g. --user 12347.")
    model, _meta, version, horizon = _model_and_meta(model_path)
    at = parse_cutoff(cutoff)
    if use_stored:
        found = _stored(db, uid, at, version)
        if found is not None:
            stored_at, p, table = found
            rs = reasons_for(table, uid)
            return UserExplanation(
                user_id=uid,
                p_retained=p,
                risk_band=str(risk_band(np.array([p]))[0]),
                cutoff=stored_at,
                horizon_days=horizon,
                model_version=version,
                churn=rs["churn"][:top],
                retention=rs["retention"][:top],
                source="stored",
            )
    from retention.features._builder import make_frame

    with _open_store(db) as store:
        _, last = _event_range(store)
        at = at or last.normalize()
        with status("building features"):
            frame = make_frame(store, at, horizon, with_label=False)
    if uid not in set(frame.users.astype(str)):
        example = ", ".join(map(str, frame.users[:3]))
        raise ConfigError(
            f"Customer {uid!r} has no purchase before {at:%Y-%m-%d}, so there is nothing to "
            f"explain. Check the id (for example {example}) or pass a later --cutoff."
        )
    pos = int(np.flatnonzero(frame.users.astype(str) == uid)[0])
    with status("explaining"):
        p_all = np.asarray(model.predict_proba(frame), dtype=float)
        churn: list[dict[str, Any]] = []
        retention: list[dict[str, Any]] = []
        note = ""
        if supports_shap(model):
            contrib = shap_contributions(model, frame)
            typical = contrib.data.median(axis=0)
            one = Contributions(
                values=contrib.values.iloc[[pos]],
                base_value=contrib.base_value,
                data=contrib.data.iloc[[pos]],
                margin=contrib.margin[[pos]],
                calibrated=contrib.calibrated,
            )
            rs = reasons_for(reasons(one, top=top, typical=typical, currency=currency), uid)
            churn, retention = rs["churn"], rs["retention"]
        else:
            note = (
                f"{type(model).__name__} gives no per-customer reasons (it reads the raw purchase "
                "history, not features); train a gbdt or ensemble model for reasons."
            )
    p = float(p_all[pos])
    return UserExplanation(
        user_id=uid,
        p_retained=p,
        risk_band=str(risk_band(np.array([p]))[0]),
        cutoff=at,
        horizon_days=horizon,
        model_version=version,
        churn=churn,
        retention=retention,
        note=note,
    )


# ---------------------------------------------------------------------------- every customer
@dataclass
class ReasonsReport:
    """What :func:`store_reasons` wrote."""

    reasons: pd.DataFrame
    cutoff: pd.Timestamp
    model_version: str
    table: str
    n_users: int
    seconds: float


def reasons_table(model: Any, frame: Any, *, top: int = 3, currency: str = "") -> pd.DataFrame:
    """Every customer's reasons for ``model`` at ``frame`` (columns ``REASON_COLUMNS``).

    The hook for ``score``: call it on the model and frame just scored and write the result
    beside the scores (see :func:`store_reasons`).
    """
    if not supports_shap(model):
        raise ConfigError(
            f"{type(model).__name__} gives no per-customer reasons (it reads the raw purchase "
            "history, not features). Train a gbdt or ensemble model: retention train --model gbdt."
        )
    contrib = shap_contributions(model, frame)
    return reasons(contrib, top=top, typical=contrib.data.median(axis=0), currency=currency)


def store_reasons(
    db: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    *,
    cutoff: str | pd.Timestamp | None = None,
    top: int = 3,
    currency: str = "",
    table: str = REASONS_TABLE,
) -> ReasonsReport:
    """Compute every customer's reasons and write them to the store beside the scores.

    Rows of the same cutoff and model version are replaced. The table has the columns of
    :data:`retention.explain.REASON_COLUMNS` plus ``cutoff`` and ``model_version``.
    """
    from retention.features._builder import make_frame

    if not table.isidentifier():
        raise ConfigError(
            f"Table name {table!r} is not a plain identifier; use e.g. {REASONS_TABLE}."
        )
    model, _meta, version, horizon = _model_and_meta(model_path)
    with _open_store(db) as store:
        _, last = _event_range(store)
        at = parse_cutoff(cutoff) or last.normalize()
        with status("building features"):
            frame = make_frame(store, at, horizon, with_label=False)
    return write_reasons(
        db, model, frame, model_version=version, top=top, currency=currency, table=table
    )


def write_reasons(
    db: str | os.PathLike[str],
    model: Any,
    frame: Any,
    *,
    model_version: str,
    top: int = 3,
    currency: str = "",
    table: str = REASONS_TABLE,
) -> ReasonsReport:
    """Write every customer's reasons for an already-built ``frame`` beside the scores.

    The hook for ``score``: after writing the ``scores`` rows of a model and cutoff, call
    ``write_reasons(db, model, frame, model_version=version)`` (when
    ``retention.explain.supports_shap(model)``) so that ``retention explain --user`` and the API
    read them instead of recomputing. Rows of the same cutoff and model version are replaced.
    """
    if not table.isidentifier():
        raise ConfigError(
            f"Table name {table!r} is not a plain identifier; use e.g. {REASONS_TABLE}."
        )
    at = pd.Timestamp(frame.cutoff)
    t0 = time.perf_counter()
    df = reasons_table(model, frame, top=top, currency=currency)
    seconds = time.perf_counter() - t0
    df["cutoff"] = at
    df["cutoff"] = df["cutoff"].astype("datetime64[ns]")
    df["model_version"] = str(model_version)
    _replace_rows(db, table, df, at, str(model_version))
    return ReasonsReport(
        reasons=df,
        cutoff=at,
        model_version=str(model_version),
        table=table,
        n_users=len(frame),
        seconds=seconds,
    )


# ----------------------------------------------------------------------------- explain backtest
@dataclass
class ExplainReport:
    """Everything the explain stage measured at one test cutoff.

    Attributes
    ----------
    cutoff, horizon_days, valid_cutoff
        The test cutoff (used for reporting only) and the validation cutoff (used for choices).
    shap : Contributions
        Exact SHAP values of the gradient boosting model on the test customers.
    shap_importance, shap_family_importance : pd.Series
        Mean absolute contribution per feature and per family.
    permutation : dict of str to pd.DataFrame
        Permutation importance on the validation cutoff per model (by feature).
    permutation_family : dict of str to pd.DataFrame
        The same with every feature of a family shuffled together.
    selection : SelectionResult
        Chosen on the validation cutoff only.
    test_auc : dict of str to float
        ROC-AUC on the test cutoff of the full (``full``) and selected (``selected``) sets.
    fairness : FairnessReport
        Segments of the test cutoff.
    sample_reasons : pd.DataFrame
        Reasons of a seeded sample of high-risk customers.
    backtest : BacktestResult
        Test scores of the full and the selected gradient boosting models.
    timings : dict of str to float
    """

    cutoff: pd.Timestamp
    horizon_days: int
    valid_cutoff: pd.Timestamp
    shap: Contributions
    shap_importance: pd.Series
    shap_family_importance: pd.Series
    permutation: dict[str, pd.DataFrame]
    permutation_family: dict[str, pd.DataFrame]
    selection: SelectionResult
    test_auc: dict[str, float]
    fairness: FairnessReport
    sample_reasons: pd.DataFrame
    backtest: BacktestResult
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``retention explain --json``)."""

        def imp(df: pd.DataFrame) -> dict[str, Any]:
            return {
                str(k): {"importance": float(r["importance"]), "std": float(r["std"])}
                for k, r in df.iterrows()
            }

        return _json_clean(
            {
                "cutoff": f"{self.cutoff:%Y-%m-%d}",
                "horizon_days": int(self.horizon_days),
                "valid_cutoff": f"{self.valid_cutoff:%Y-%m-%d}",
                "shap_method": self.shap.method,
                "shap_importance": {str(k): float(v) for k, v in self.shap_importance.items()},
                "shap_family_importance": {
                    str(k): float(v) for k, v in self.shap_family_importance.items()
                },
                "permutation_importance": {m: imp(df) for m, df in self.permutation.items()},
                "permutation_family_importance": {
                    m: imp(df) for m, df in self.permutation_family.items()
                },
                "selection": self.selection.to_dict(),
                "test_roc_auc": self.test_auc,
                "fairness": self.fairness.to_dict(),
                "sample_reasons": self.sample_reasons.to_dict("records"),
                "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            }
        )


def write_explain_json(report: ExplainReport, path: str | os.PathLike[str]) -> Path:
    """Write :meth:`ExplainReport.to_dict` as JSON (non-finite numbers as null)."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(
            json.dumps(report.to_dict(), indent=2, allow_nan=False, default=str, ensure_ascii=False)
            + "\n",
            encoding="utf-8",
        )
    except OSError as exc:
        raise ConfigError(f"Cannot write {p}: {exc.strerror or exc}. Pass another --json.") from exc
    return p


def explain_backtest(
    db: str | os.PathLike[str],
    cutoff: str | pd.Timestamp,
    horizon_days: int = 90,
    *,
    n_train: int = 3,
    model_params: dict[str, Any] | None = None,
    permutation_models: Sequence[str] = ("gbdt",),
    n_repeats: int = 3,
    level: str = "family",
    tolerance: float = 0.002,
    sensitive: Sequence[str] = (),
    threshold: float = DEFAULT_DISPARITY_THRESHOLD,
    n_sample: int = 10,
    random_state: int = 0,
    currency: str = "",
) -> ExplainReport:
    """Importance, selection, fairness and reasons of the gradient boosting model at ``cutoff``.

    The models learn from training cutoffs and the validation cutoff ``cutoff - horizon`` as in
    ``retention backtest``. Permutation importance and feature selection use the validation
    cutoff only; the test cutoff is used to report the ROC-AUC of the chosen set against the
    full set, the SHAP values, the fairness table and the sample of reasons.

    Parameters
    ----------
    db : path
        The DuckDB store.
    cutoff : str or pd.Timestamp
        The held-out test cutoff.
    horizon_days : int
        Length of the label window.
    n_train : int
        Number of training cutoffs.
    model_params : dict, optional
        Keyword arguments of the gradient boosting model.
    permutation_models : sequence of str
        Models whose permutation importance is measured (``gbdt``, ``ensemble``, ``bgnbd``,
        ``sequence`` ...); models that read events are measured by shuffling event fields.
    n_repeats : int
        Shuffles per feature.
    level : {"family", "feature"}
        What feature selection drops.
    tolerance : float
        Largest accepted fall in validation ROC-AUC from the full set.
    sensitive : sequence of str
        Columns of the ``users`` table to check fairness by (besides country and tenure band).
    threshold : float
        Disparity ratio under which a segment is warned about (0.8: four-fifths rule).
    n_sample : int
        High-risk customers whose reasons go into the report.
    random_state : int
        Seed of the shuffles and of the sample.
    currency : str
        Put before money amounts in the reasons.

    Returns
    -------
    ExplainReport
    """
    from retention.features._builder import training_frames

    horizon_days = _check_horizon(horizon_days)
    test_cutoff = parse_cutoff(cutoff)
    if test_cutoff is None:
        raise ConfigError("explain needs a test cutoff. Pass --cutoff YYYY-MM-DD.")
    timings: dict[str, float] = {}
    with _open_store(db) as store:
        _event_range(store)
        with status("building features"):
            train, valid, test = training_frames(store, test_cutoff, horizon_days, n_train=n_train)
        users = store.table_df("users") if store.has_table("users") else None
    if test.label is None or len(test) == 0:
        raise ConfigError(
            f"No customer has a purchase before {test_cutoff:%Y-%m-%d}. Choose a later cutoff."
        )
    params = dict(model_params or {})
    t0 = time.perf_counter()
    with status("fitting gradient boosting"):
        gbdt = GBDTModel(**params).fit(train, valid)
    timings["fit_gbdt"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with status("SHAP values"):
        contrib = shap_contributions(gbdt, test)
    timings["shap"] = time.perf_counter() - t0

    permutation: dict[str, pd.DataFrame] = {}
    permutation_family: dict[str, pd.DataFrame] = {}
    for name in permutation_models:
        t0 = time.perf_counter()
        if name == "gbdt":
            model: Any = gbdt
        elif name == "ensemble":
            model = get_model("ensemble", members=[("bgnbd", get_model("bgnbd")), ("gbdt", gbdt)])
            model.fit(train, valid)
        else:
            model = get_model(name).fit(train, valid)
        reads_features = hasattr(model, "transform_features") or hasattr(model, "stacker_")
        source = "features" if reads_features else "events"
        permutation[name] = permutation_importance(
            model, valid, source=source, n_repeats=n_repeats, random_state=random_state
        )
        if reads_features:
            permutation_family[name] = permutation_importance(
                model, valid, by="family", n_repeats=n_repeats, random_state=random_state
            )
        timings[f"permutation_{name}"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # the same model as the full one (BTYD features as the model's default decides)
    selection = select_features(
        train,
        valid,
        level=level,
        tolerance=tolerance,
        model_params={"btyd_features": None, **params},
    )
    timings["selection"] = time.perf_counter() - t0
    chosen = selection.selected
    with status("fitting the selected feature set"):
        selected_model = GBDTModel(**params).fit(
            [subset_frame(f, chosen) for f in train], subset_frame(valid, chosen)
        )
    y_test = test.label.astype(int)
    p_full = pd.Series(gbdt.predict_proba(test), index=test.users, name="gbdt")
    p_sel = pd.Series(selected_model.predict_proba(subset_frame(test, chosen)), index=test.users)
    test_auc = {
        "full": classification_metrics(y_test.to_numpy(), p_full.to_numpy())["roc_auc"],
        "selected": classification_metrics(y_test.to_numpy(), p_sel.to_numpy())["roc_auc"],
    }

    segments = make_segments(test.features, users, sensitive=sensitive)
    fairness = segment_report(
        y_test, p_full, segments, threshold=threshold, high_risk_below=HIGH_RISK_BELOW
    )

    high = np.flatnonzero(p_full.to_numpy() < HIGH_RISK_BELOW)
    rng = np.random.default_rng(random_state)
    pick: np.ndarray = np.sort(rng.choice(high, size=min(n_sample, len(high)), replace=False))
    sample = Contributions(
        values=contrib.values.iloc[pick],
        base_value=contrib.base_value,
        data=contrib.data.iloc[pick],
        margin=contrib.margin[pick],
    )
    sample_reasons = reasons(sample, typical=contrib.data.median(axis=0), currency=currency)
    sample_reasons.insert(1, "p_retained", p_full.reindex(sample_reasons["user_id"]).to_numpy())

    backtest = BacktestResult(
        cutoff=test_cutoff,
        horizon_days=horizon_days,
        y_true=y_test,
        scores={"gbdt": p_full, f"gbdt_selected ({len(chosen)} features)": p_sel},
        train_cutoffs=[f.cutoff for f in train],
        valid_cutoff=valid.cutoff,
    )
    return ExplainReport(
        cutoff=test_cutoff,
        horizon_days=horizon_days,
        valid_cutoff=valid.cutoff,
        shap=contrib,
        shap_importance=contrib.importance(),
        shap_family_importance=contrib.family_importance(),
        permutation=permutation,
        permutation_family=permutation_family,
        selection=selection,
        test_auc=test_auc,
        fairness=fairness,
        sample_reasons=sample_reasons,
        backtest=backtest,
        timings=timings,
    )

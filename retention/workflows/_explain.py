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

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import Store
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
from retention.features import make_frame, to_cutoff, to_horizon
from retention.models import BacktestResult, GBDTModel, classification_metrics, get_model
from retention.strategies import HIGH_RISK_BELOW, risk_band
from retention.workflows._common import (
    ModelCache,
    check_model_ref,
    check_positive_int,
    default_cutoff,
    json_clean,
    purchase_range,
    resolve_model,
    write_json,
)

__all__ = [
    "REASONS_TABLE",
    "ExplainBacktestRequest",
    "ExplainReport",
    "ExplainUserRequest",
    "ReasonsReport",
    "StoreReasonsRequest",
    "UserExplanation",
    "explain_backtest",
    "explain_user",
    "reasons_table",
    "store_reasons",
    "write_explain_json",
]

#: the store table :func:`store_reasons` and ``retention score`` write
REASONS_TABLE = "score_reasons"


def _check_top(top: Any) -> int:
    return check_positive_int(top, "top")


# ------------------------------------------------------------------------------- one customer
@dataclass(frozen=True)
class ExplainUserRequest:
    """Whose score to explain, with which model.

    Name the model by exactly one of ``model_path`` (an artifact: ``--model PATH``) and
    ``model_id`` (a model of the store's ``models`` registry).

    Attributes
    ----------
    user_id : str
        The customer.
    model_path : Path or None
    model_id : str or None
    cutoff : pd.Timestamp or None
        Default: the latest stored reasons for this model, else the date of the last purchase.
    top : int
        Reasons per direction.
    currency : str
        Put before money amounts (e.g. ``"£"``).
    use_stored : bool
        Read the reasons stored by ``retention score`` (or :func:`store_reasons`) when they match
        the model and cutoff.
    """

    user_id: str
    model_path: Path | None = None
    model_id: str | None = None
    cutoff: pd.Timestamp | None = None
    top: int = 3
    currency: str = ""
    use_stored: bool = True

    def __post_init__(self) -> None:
        uid = str(self.user_id).strip() if self.user_id is not None else ""
        if not uid:
            raise ConfigError("Pass the customer to explain, e.g. --user 12347.")
        object.__setattr__(self, "user_id", uid)
        path, mid = check_model_ref(self.model_path, self.model_id)
        object.__setattr__(self, "model_path", path)
        object.__setattr__(self, "model_id", mid)
        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        object.__setattr__(self, "top", _check_top(self.top))


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
        return json_clean(
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


def _stored(
    store: Store, user_id: str, cutoff: pd.Timestamp | None, version: str
) -> tuple[pd.Timestamp, float, pd.DataFrame] | None:
    """(cutoff, p_retained, reasons) stored by ``score``/``store_reasons`` for this model."""
    scores = store.read_scores(
        user_id=user_id, model_version=version, cutoff=cutoff, latest=cutoff is None
    )
    if scores.empty:
        return None
    at = pd.Timestamp(scores["cutoff"].iloc[0])
    table = store.read_reasons(user_id=user_id, model_version=version, cutoff=at)
    if table.empty:
        return None
    return at, float(scores["p_retained"].iloc[0]), table


def explain_user(
    store: Store,
    request: ExplainUserRequest,
    *,
    progress: Progress | None = None,
    cache: ModelCache | None = None,
) -> UserExplanation:
    """One customer's P(retained), risk band and top reasons toward churn and retention.

    The reasons ``retention score`` stored for this model are read when there are some (no
    feature is built, no model is run). Otherwise they are computed at the cutoff: the frame of
    the whole population is built, since the prediction of one customer depends on it (gradient
    boosting's ``btyd_*`` features come from a BG/NBD fitted on the population's history, an
    ensemble's level and its non-tree members' terms are centred on the population, the
    ``user_*_freq`` features and the "typical" values of the reasons are population shares and
    medians): a one-customer frame would give another score.

    Parameters
    ----------
    store : Store
        An open store (read-only is enough).
    request : ExplainUserRequest
        The customer and the model.
    progress : Progress, optional
        Where to report progress (default: nowhere).
    cache : ModelCache, optional
        Where to look the model up (default: a fresh one).

    Returns
    -------
    UserExplanation

    Raises
    ------
    ConfigError
        The customer has no purchase before the cutoff (unknown id, or the cutoff is too early).
    """
    progress = as_progress(progress)
    uid = request.user_id
    loaded = resolve_model(store, cache, model_path=request.model_path, model_id=request.model_id)
    model, version = loaded.model, loaded.model_id
    horizon = loaded.horizon_days or 90
    top = request.top
    if request.use_stored:
        found = _stored(store, uid, request.cutoff, version)
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
    retained_by = str(loaded.metadata.get("retained_by", "purchase"))  # what the model learned
    at = default_cutoff(store, request.cutoff, retained_by)
    with progress.stage("building features"):
        frame = make_frame(store, at, horizon, with_label=False, retained_by=retained_by)
    users = frame.users.astype(str)
    if uid not in set(users):
        example = ", ".join(map(str, frame.users[:3]))
        raise ConfigError(
            f"Customer {uid!r} has no purchase before {at:%Y-%m-%d}, so there is nothing to "
            f"explain. Check the id (for example {example}) or pass a later --cutoff."
        )
    pos = int(np.flatnonzero(users == uid)[0])
    with progress.stage("explaining"):
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
            rs = reasons_for(reasons(one, top=top, typical=typical, currency=request.currency), uid)
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
@dataclass(frozen=True)
class StoreReasonsRequest:
    """Whose reasons to store: every customer, for one model at one cutoff.

    Attributes
    ----------
    model_path : Path or None
    model_id : str or None
        Exactly one of them names the model (as in :class:`ExplainUserRequest`).
    cutoff : pd.Timestamp or None
        Default: the date of the last purchase.
    top : int
        Reasons per direction.
    currency : str
        Put before money amounts.
    table : str
        The reasons table (created with the typed columns of ``score_reasons`` when missing).
    """

    model_path: Path | None = None
    model_id: str | None = None
    cutoff: pd.Timestamp | None = None
    top: int = 3
    currency: str = ""
    table: str = REASONS_TABLE

    def __post_init__(self) -> None:
        path, mid = check_model_ref(self.model_path, self.model_id)
        object.__setattr__(self, "model_path", path)
        object.__setattr__(self, "model_id", mid)
        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        object.__setattr__(self, "top", _check_top(self.top))
        if not isinstance(self.table, str) or not self.table.isidentifier():
            raise ConfigError(
                f"Table name {self.table!r} is not a plain identifier; use e.g. {REASONS_TABLE}."
            )


@dataclass(frozen=True)
class ReasonsReport:
    """What :func:`store_reasons` wrote."""

    reasons: pd.DataFrame
    cutoff: pd.Timestamp
    model_version: str
    table: str
    n_users: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the rows themselves are in the store table)."""
        return json_clean(
            {
                "cutoff": self.cutoff,
                "model_version": self.model_version,
                "table": self.table,
                "n_users": self.n_users,
                "n_reasons": len(self.reasons),
                "seconds": round(self.seconds, 3),
            }
        )


def reasons_table(model: Any, frame: Any, *, top: int = 3, currency: str = "") -> pd.DataFrame:
    """Every customer's reasons for ``model`` at ``frame`` (columns ``REASON_COLUMNS``).

    What ``retention score`` stores beside the scores, and :func:`store_reasons` on its own.
    """
    if not supports_shap(model):
        raise ConfigError(
            f"{type(model).__name__} gives no per-customer reasons (it reads the raw purchase "
            "history, not features). Train a gbdt or ensemble model: retention train --model gbdt."
        )
    contrib = shap_contributions(model, frame)
    return reasons(contrib, top=top, typical=contrib.data.median(axis=0), currency=currency)


def store_reasons(
    store: Store,
    request: StoreReasonsRequest,
    *,
    progress: Progress | None = None,
    cache: ModelCache | None = None,
) -> ReasonsReport:
    """Compute every customer's reasons and write them to the store beside the scores.

    Rows of the same cutoff and model version are replaced. The table has the columns of
    :data:`retention.explain.REASON_COLUMNS` plus ``cutoff`` and ``model_version``.

    Parameters
    ----------
    store : Store
        Opened for writing.
    request : StoreReasonsRequest
    progress : Progress, optional
    cache : ModelCache, optional

    Returns
    -------
    ReasonsReport
    """
    progress = as_progress(progress)
    store.check_writable("write reasons")
    loaded = resolve_model(store, cache, model_path=request.model_path, model_id=request.model_id)
    horizon = loaded.horizon_days or 90
    retained_by = str(loaded.metadata.get("retained_by", "purchase"))  # what the model learned
    at = default_cutoff(store, request.cutoff, retained_by)
    with progress.stage("building features"):
        frame = make_frame(store, at, horizon, with_label=False, retained_by=retained_by)
    t0 = time.perf_counter()
    with progress.stage(f"explaining {len(frame)} customers"):
        df = reasons_table(loaded.model, frame, top=request.top, currency=request.currency)
    seconds = time.perf_counter() - t0
    store.write_reasons(df, cutoff=at, model_version=loaded.model_id, table=request.table)
    df = df.assign(cutoff=at, model_version=loaded.model_id)
    return ReasonsReport(
        reasons=df,
        cutoff=at,
        model_version=loaded.model_id,
        table=request.table,
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

        return json_clean(
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
    return write_json(report.to_dict(), path)


@dataclass(frozen=True)
class ExplainBacktestRequest:
    """The explain stage at one held-out test cutoff.

    Attributes
    ----------
    cutoff : pd.Timestamp
        The held-out test cutoff (a date; ``"YYYY-MM-DD"`` is accepted).
    horizon_days : int
        Length of the label window.
    n_train : int
        Number of training cutoffs.
    model_params : mapping
        Keyword arguments of the gradient boosting model.
    permutation_models : tuple of str
        Models whose permutation importance is measured (``gbdt``, ``ensemble``, ``bgnbd``,
        ``sequence`` ...); models that read events are measured by shuffling event fields.
    n_repeats : int
        Shuffles per feature.
    level : {"family", "feature"}
        What feature selection drops.
    tolerance : float
        Largest accepted fall in validation ROC-AUC from the full set.
    sensitive : tuple of str
        Columns of the ``users`` table to check fairness by (besides country and tenure band).
    threshold : float
        Disparity ratio under which a segment is warned about (0.8: four-fifths rule).
    n_sample : int
        High-risk customers whose reasons go into the report.
    random_state : int
        Seed of the shuffles and of the sample.
    currency : str
        Put before money amounts in the reasons.
    """

    cutoff: pd.Timestamp
    horizon_days: int = 90
    n_train: int = 3
    model_params: Mapping[str, Any] = field(default_factory=dict)
    permutation_models: tuple[str, ...] = ("gbdt",)
    n_repeats: int = 3
    level: str = "family"
    tolerance: float = 0.002
    sensitive: tuple[str, ...] = ()
    threshold: float = DEFAULT_DISPARITY_THRESHOLD
    n_sample: int = 10
    random_state: int = 0
    currency: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        object.__setattr__(self, "horizon_days", to_horizon(self.horizon_days))
        object.__setattr__(self, "n_train", check_positive_int(self.n_train, "n_train"))
        object.__setattr__(self, "n_repeats", check_positive_int(self.n_repeats, "n_repeats"))
        if not isinstance(self.model_params, Mapping):
            raise ConfigError(
                f"model_params must be a mapping of keyword arguments; got {self.model_params!r}."
            )
        object.__setattr__(self, "model_params", dict(self.model_params))
        for name in ("permutation_models", "sensitive"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(str(v) for v in value))


def explain_backtest(
    store: Store, request: ExplainBacktestRequest, *, progress: Progress | None = None
) -> ExplainReport:
    """Importance, selection, fairness and reasons of the gradient boosting model at a cutoff.

    The models learn from training cutoffs and the validation cutoff ``cutoff - horizon`` as in
    ``retention backtest``. Permutation importance and feature selection use the validation
    cutoff only; the test cutoff is used to report the ROC-AUC of the chosen set against the
    full set, the SHAP values, the fairness table and the sample of reasons.

    Parameters
    ----------
    store : Store
        An open store (read-only is enough).
    request : ExplainBacktestRequest
    progress : Progress, optional
        Where to report progress (default: nowhere).

    Returns
    -------
    ExplainReport
    """
    from retention.features import training_frames

    progress = as_progress(progress)
    test_cutoff, horizon_days = request.cutoff, request.horizon_days
    n_train, permutation_models = request.n_train, request.permutation_models
    n_repeats, random_state = request.n_repeats, request.random_state
    purchase_range(store)
    with progress.stage("building features"):
        train, valid, test = training_frames(store, test_cutoff, horizon_days, n_train=n_train)
    users = store.table_df("users") if store.has_table("users") else None
    timings: dict[str, float] = {}
    if test.label is None or len(test) == 0:
        raise ConfigError(
            f"No customer has a purchase before {test_cutoff:%Y-%m-%d}. Choose a later cutoff."
        )
    params = dict(request.model_params)
    t0 = time.perf_counter()
    with progress.stage("fitting gradient boosting"):
        gbdt = GBDTModel(**params).fit(train, valid)
    timings["fit_gbdt"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with progress.stage("SHAP values"):
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
        level=request.level,
        tolerance=request.tolerance,
        model_params={"btyd_features": None, **params},
    )
    timings["selection"] = time.perf_counter() - t0
    chosen = selection.selected
    with progress.stage("fitting the selected feature set"):
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

    segments = make_segments(test.features, users, sensitive=request.sensitive)
    fairness = segment_report(
        y_test, p_full, segments, threshold=request.threshold, high_risk_below=HIGH_RISK_BELOW
    )

    high = np.flatnonzero(p_full.to_numpy() < HIGH_RISK_BELOW)
    rng = np.random.default_rng(random_state)
    pick: np.ndarray = np.sort(
        rng.choice(high, size=min(request.n_sample, len(high)), replace=False)
    )
    sample = Contributions(
        values=contrib.values.iloc[pick],
        base_value=contrib.base_value,
        data=contrib.data.iloc[pick],
        margin=contrib.margin[pick],
    )
    sample_reasons = reasons(sample, typical=contrib.data.median(axis=0), currency=request.currency)
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

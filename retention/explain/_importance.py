"""Global importance: exact tree SHAP and permutation importance, by feature and by family.

Two methods, because they answer two questions:

* :func:`shap_contributions` splits each customer's log-odds of P(retained) into one additive
  term per feature (TreeSHAP, computed exactly by LightGBM's ``pred_contrib``, which is the same
  algorithm as ``shap.TreeExplainer`` and an order of magnitude faster). It works for
  :class:`~retention.models.GBDTModel` and for an :class:`~retention.models.EnsembleModel` whose
  gradient boosting members are Platt-calibrated (or not calibrated): the calibration and the
  stacking regression are linear in the log-odds, so the terms stay additive. The base value plus
  the terms equals the model's log-odds (``logit(predict_proba)``), checked on every call.
* :func:`permutation_importance` works for any model: how much the ROC-AUC on a labelled cutoff
  (the validation cutoff, never the test one when the result drives choices) falls when a
  feature's values are shuffled across customers. Models that do not read ``frame.features``
  (BTYD, the sequence transformer) are measured by shuffling fields of the raw events instead
  (``source="events"``): ``amount``, ``quantity``, ``item_id`` across all events, and ``timing``,
  which shuffles the gaps between a customer's own events (first and last date, and the count,
  stay the same). For BG/NBD and Pareto/NBD every such importance is zero by construction: they
  read only the count, the first and the last purchase date.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from retention._progress import track
from retention.exceptions import ConfigError, ModelError
from retention.features import CutoffFrame, feature_family
from retention.models import RetentionModel

__all__ = [
    "EVENT_FIELDS",
    "Contributions",
    "family_importance",
    "logit",
    "permutation_importance",
    "shap_contributions",
    "supports_shap",
]

#: event fields :func:`permutation_importance` shuffles with ``source="events"``
EVENT_FIELDS: tuple[str, ...] = ("amount", "quantity", "item_id", "timing")

_EPS = 1e-6  # as retention.models' logit: probabilities are clipped to [1e-6, 1 - 1e-6]

#: how a non-tree ensemble member appears as a pseudo-feature (prefix -> its family)
_MEMBER_PREFIX = {"bgnbd": "btyd_", "paretonbd": "btyd_", "sequence": "seq_"}


def logit(p: np.ndarray | pd.Series) -> np.ndarray:
    """Log-odds of probabilities ``p``, clipped away from 0 and 1 as the models do."""
    q = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    out: np.ndarray = np.log(q) - np.log1p(-q)
    return out


# ------------------------------------------------------------------------------------- SHAP
@dataclass
class Contributions:
    """Additive per-customer explanation of a model's log-odds of P(retained).

    ``base_value + values.sum(axis=1) == margin`` for every customer (within 1e-6).

    Attributes
    ----------
    values : pd.DataFrame
        One row per customer (index ``user_id``), one column per feature: its contribution to the
        log-odds. Positive pushes towards coming back, negative towards churn.
    base_value : float
        The log-odds of a customer whose every contribution is zero.
    data : pd.DataFrame
        The feature values the model saw (same index and columns; ensemble members that are not
        tree models appear as ``btyd_<member>_score``-style columns holding their probability).
    margin : np.ndarray
        The model's log-odds per customer (``logit(predict_proba)``, or of the uncalibrated score
        when the calibration is isotonic, which is not additive; see ``calibrated``).
    calibrated : bool
        True when ``margin`` is the log-odds of the calibrated probability the model returns.
    method : str
        How the values were computed.
    """

    values: pd.DataFrame
    base_value: float
    data: pd.DataFrame
    margin: np.ndarray
    calibrated: bool = True
    method: str = "TreeSHAP (LightGBM pred_contrib, exact)"
    notes: list[str] = field(default_factory=list)

    def importance(self) -> pd.Series:
        """Mean absolute contribution per feature, largest first (the SHAP global importance)."""
        imp = self.values.abs().mean(axis=0).astype(float)
        return imp.sort_values(ascending=False, kind="mergesort")

    def family_importance(self) -> pd.Series:
        """Mean absolute *summed* contribution per feature family, largest first.

        Terms of one family are added per customer before the absolute value, so a family whose
        features cancel out for a customer does not count twice.
        """
        fams = [feature_family(str(c)) for c in self.values.columns]
        summed = self.values.T.groupby(fams, sort=True).sum().T
        return (
            summed.abs().mean(axis=0).astype(float).sort_values(ascending=False, kind="mergesort")
        )

    def max_additivity_error(self) -> float:
        """Largest ``|base + sum(values) - margin|`` over the customers."""
        if len(self.values) == 0:
            return 0.0
        total = self.base_value + self.values.to_numpy().sum(axis=1)
        return float(np.max(np.abs(total - self.margin)))


def _is_gbdt(model: object) -> bool:
    return all(hasattr(model, a) for a in ("booster_", "feature_names_", "transform_features"))


def _is_ensemble(model: object) -> bool:
    return all(hasattr(model, a) for a in ("members_", "member_names_", "stacker_"))


def _platt(model: Any) -> tuple[float, float] | None:
    """``(a, b)`` with calibrated log-odds ``a * margin + b``; (1, 0) uncalibrated; None if not
    linear (isotonic)."""
    cal = getattr(model, "calibrator_", None)
    if cal is None:
        return 1.0, 0.0
    lr: Any = getattr(cal, "model_", None)
    coef = getattr(lr, "coef_", None)
    if coef is None:
        return None
    return float(np.ravel(coef)[0]), float(np.ravel(lr.intercept_)[0])


def supports_shap(model: object) -> bool:
    """True when :func:`shap_contributions` can explain ``model`` exactly."""
    if _is_gbdt(model):
        return True
    if _is_ensemble(model):
        return any(_is_gbdt(m) and _platt(m) is not None for m in model.members_)  # type: ignore[attr-defined]
    return False


def _gbdt_margin(model: Any, X: pd.DataFrame) -> np.ndarray:
    raw = np.asarray(
        model.booster_.predict(X.to_numpy(), num_iteration=model.best_iteration_, raw_score=True),
        dtype=float,
    )
    if getattr(model, "offset_", False):
        raw = raw + logit(X["btyd_p_retained"].to_numpy(dtype=float))
    return raw


def _gbdt_proba(model: Any, X: pd.DataFrame) -> np.ndarray:
    """What ``GBDTModel.predict_proba`` returns, from the matrix of ``transform_features``."""
    p = expit(_gbdt_margin(model, X))
    cal = getattr(model, "calibrator_", None)
    if cal is not None:
        p = cal.transform(p)
    out: np.ndarray = np.asarray(p, dtype=float)
    return out


def _gbdt_terms(model: Any, X: pd.DataFrame) -> tuple[np.ndarray, float, np.ndarray]:
    """(terms n x k, base, uncalibrated margin) of a GBDT model on its matrix ``X``."""
    contrib = np.asarray(
        model.booster_.predict(
            X.to_numpy(), num_iteration=model.best_iteration_, pred_contrib=True
        ),
        dtype=float,
    )
    terms = contrib[:, :-1].copy()
    base = float(contrib[0, -1]) if len(contrib) else 0.0
    if getattr(model, "offset_", False):
        # the BG/NBD offset is a function of one column: give it to that column, centred
        off = logit(X["btyd_p_retained"].to_numpy(dtype=float))
        mean = float(off.mean()) if len(off) else 0.0
        terms[:, list(X.columns).index("btyd_p_retained")] += off - mean
        base += mean
    margin = contrib.sum(axis=1)
    if getattr(model, "offset_", False):
        margin = margin + logit(X["btyd_p_retained"].to_numpy(dtype=float))
    return terms, base, margin


def _gbdt_contributions(model: Any, frame: CutoffFrame) -> Contributions:
    X = model.transform_features(frame)
    terms, base, margin = _gbdt_terms(model, X)
    ab = _platt(model)
    calibrated = ab is not None
    notes: list[str] = []
    if ab is None:
        notes.append(
            "Isotonic calibration is not additive: the contributions explain the uncalibrated "
            "log-odds, which rank customers the same way up to ties."
        )
        ab = (1.0, 0.0)
    a, b = ab
    if getattr(model, "offset_", False):
        notes.append(
            "The booster starts from the BG/NBD log-odds, a function of btyd_p_retained: that "
            "starting point is counted in btyd_p_retained's contributions."
        )
    values = pd.DataFrame(terms * a, index=frame.users, columns=[str(c) for c in X.columns])
    data = X.copy()
    data.columns = values.columns
    return Contributions(
        values=values,
        base_value=a * base + b,
        data=data,
        margin=a * margin + b,
        calibrated=calibrated,
        notes=notes,
    )


def _member_column(name: str) -> str:
    prefix = _MEMBER_PREFIX.get(name, "model_")
    return f"{prefix}{name}_score"


def _anchor_shift(model: Any, Z: np.ndarray) -> float:
    """The constant an ensemble adds to its stacked log-odds on one scored frame
    (:meth:`EnsembleModel.anchor_shift`): the same for every customer, so it belongs to the
    base value."""
    return float(model.anchor_shift(Z))


def _ensemble_contributions(model: Any, frame: CutoffFrame) -> Contributions:
    coef = np.ravel(model.stacker_.coef_)
    base = float(np.ravel(model.stacker_.intercept_)[0])
    parts: list[pd.DataFrame] = []
    datas: list[pd.DataFrame] = []
    zcols: list[np.ndarray] = []
    margin = np.full(len(frame), base)
    notes: list[str] = []
    for name, member, w in zip(model.member_names_, model.members_, coef, strict=True):
        ab = _platt(member) if _is_gbdt(member) else None
        if ab is not None:
            X = member.transform_features(frame)
            terms, mbase, mmargin = _gbdt_terms(member, X)
            a, b = ab
            parts.append(pd.DataFrame(terms * a * w, index=frame.users, columns=list(X.columns)))
            datas.append(X)
            base += w * (a * mbase + b)
            margin = margin + w * (a * mmargin + b)
            zcols.append(logit(expit(a * mmargin + b)))
        else:
            p = np.asarray(member.predict_proba(frame), dtype=float)
            term = w * logit(p)
            mean = float(term.mean()) if len(term) else 0.0
            col = _member_column(str(name))
            parts.append(pd.DataFrame({col: term - mean}, index=frame.users))
            datas.append(pd.DataFrame({col: p}, index=frame.users))
            base += mean
            margin = margin + term
            zcols.append(logit(p))
            notes.append(f"Member {name!r} is not a tree model: it appears as one term, {col}.")
    shift = _anchor_shift(model, np.column_stack(zcols)) if zcols else 0.0
    base += shift
    margin = margin + shift
    values = pd.concat(parts, axis=1)
    values = values.T.groupby(level=0, sort=False).sum().T  # same feature in two members: add
    data = pd.concat(datas, axis=1)
    data = data.loc[:, ~data.columns.duplicated()]
    values.index = frame.users
    data = data.reindex(columns=values.columns)
    return Contributions(
        values=values.astype(float),
        base_value=base,
        data=data,
        margin=margin,
        method="TreeSHAP (LightGBM pred_contrib, exact) through the stacking regression",
        notes=notes,
    )


def shap_contributions(
    model: RetentionModel, frame: CutoffFrame, *, atol: float = 1e-6
) -> Contributions:
    """Exact per-customer SHAP contributions to the log-odds of P(retained).

    Parameters
    ----------
    model : GBDTModel or EnsembleModel
        A fitted gradient boosting model, or an ensemble with at least one Platt-calibrated (or
        uncalibrated) gradient boosting member; other members become one term each.
    frame : CutoffFrame
        The customers to explain (no label needed).
    atol : float
        Tolerance of the additivity check ``base + sum(values) == margin``.

    Returns
    -------
    Contributions

    Raises
    ------
    ConfigError
        The model has no tree structure to explain (use :func:`permutation_importance`).
    ModelError
        The additivity check failed (a bug, never expected).

    Examples
    --------
    >>> c = shap_contributions(gbdt, frame)  # doctest: +SKIP
    >>> c.importance().head(3)  # doctest: +SKIP
    recency_days        0.61
    gap_current_days    0.22
    frequency_orders    0.19
    """
    if not isinstance(frame, CutoffFrame):
        raise ConfigError(
            f"shap_contributions explains a CutoffFrame; got {type(frame).__name__}. "
            "Build one with retention.features.make_frame(...)."
        )
    if _is_gbdt(model):
        out = _gbdt_contributions(model, frame)
    elif _is_ensemble(model) and supports_shap(model):
        out = _ensemble_contributions(model, frame)
    else:
        raise ConfigError(
            f"SHAP values need a fitted gradient boosting model (or an ensemble with one); got "
            f"{type(model).__name__}. Use permutation_importance(model, frame) for this model."
        )
    err = out.max_additivity_error()
    if not np.isfinite(err) or err > atol * max(
        1.0, float(np.max(np.abs(out.margin), initial=1.0))
    ):
        raise ModelError(
            f"The SHAP contributions do not add up to the model's log-odds (max error {err:.2e}). "
            "Report this as a bug with the model's metadata."
        )
    return out


# ------------------------------------------------------------------------------ permutation
Predictor = Callable[[pd.DataFrame], np.ndarray]


def _feature_predictor(model: Any, frame: CutoffFrame) -> tuple[pd.DataFrame, Predictor]:
    """The matrix whose columns are permuted and a function from it to P(retained)."""
    if _is_gbdt(model):
        X = model.transform_features(frame)
        return X, lambda M: _gbdt_proba(model, M)
    if _is_ensemble(model):
        mats: list[pd.DataFrame | None] = []
        fixed: list[np.ndarray | None] = []
        for member in model.members_:
            if _is_gbdt(member):
                mats.append(member.transform_features(frame))
                fixed.append(None)
            else:  # reads the events only: its log-odds do not move when features are shuffled
                mats.append(None)
                fixed.append(logit(member.predict_proba(frame)))
        present = [m for m in mats if m is not None]
        if not present:
            raise ConfigError(
                "No member of this ensemble reads frame.features, so feature permutation "
                "importance is zero by construction. Use source='events'."
            )
        X = pd.concat(present, axis=1)
        X = X.loc[:, ~X.columns.duplicated()]

        def ens(M: pd.DataFrame) -> np.ndarray:
            cols: list[np.ndarray] = []
            for member, mat, fix in zip(model.members_, mats, fixed, strict=True):
                if fix is not None:
                    cols.append(fix)
                elif mat is not None:
                    cols.append(logit(_gbdt_proba(member, M[list(mat.columns)])))
            Z = np.column_stack(cols)
            z = np.asarray(model.stacker_.decision_function(Z), dtype=float)
            out: np.ndarray = expit(z + _anchor_shift(model, Z))
            return out

        return X, ens

    def generic(M: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(replace(frame, features=M)), dtype=float)

    X = frame.features
    base = generic(X)
    if len(X.columns) and np.array_equal(generic(_shuffle_all(X)), base):
        raise ConfigError(
            f"{type(model).__name__} does not read frame.features (its scores do not move when "
            "every feature is shuffled), so their permutation importance is zero by construction. "
            "Use permutation_importance(..., source='events') to shuffle fields of its events."
        )
    return X, generic


def _shuffle_all(X: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(12345)
    return pd.DataFrame(
        {c: X[c].to_numpy()[rng.permutation(len(X))] for c in X.columns}, index=X.index
    )


def _shuffle_timing(events: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Shuffle the gaps between each customer's events (first and last time stay)."""
    ev = events.sort_values(["user_id", "ts"], kind="mergesort").reset_index(drop=True)
    ts = ev["ts"].to_numpy(dtype="datetime64[ns]").astype("int64")
    users = ev["user_id"].to_numpy()
    new = ts.copy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(ev)]
    for s, e in zip(starts, ends, strict=True):
        if e - s > 2:
            gaps = np.diff(ts[s:e])
            new[s + 1 : e] = ts[s] + np.cumsum(gaps[rng.permutation(len(gaps))])
    ev["ts"] = pd.to_datetime(new).astype("datetime64[ns]")
    return ev


def _event_predictor(
    model: Any, frame: CutoffFrame
) -> Callable[[str, np.random.Generator], np.ndarray]:
    def shuffled(name: str, rng: np.random.Generator) -> np.ndarray:
        if name == "timing":
            events = _shuffle_timing(frame.events, rng)
        else:
            events = frame.events.copy()
            events[name] = events[name].to_numpy()[rng.permutation(len(events))]
        return np.asarray(model.predict_proba(replace(frame, events=events)), dtype=float)

    return shuffled


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p))


def permutation_importance(
    model: RetentionModel,
    frame: CutoffFrame,
    *,
    by: str = "feature",
    source: str = "features",
    n_repeats: int = 3,
    random_state: int = 0,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Fall in ROC-AUC on ``frame`` when a feature (or family, or event field) is shuffled.

    Parameters
    ----------
    model : RetentionModel
        Any fitted model.
    frame : CutoffFrame
        A labelled cutoff; use the validation cutoff when the result drives a choice.
    by : {"feature", "family"}
        Shuffle one feature at a time, or every feature of a family together (one shared
        permutation of the customers, which keeps the family's internal relations).
    source : {"features", "events"}
        Shuffle columns of the model's feature matrix, or fields of the raw events
        (:data:`EVENT_FIELDS`) for models that read events (BTYD, the sequence transformer).
    n_repeats : int
        Shuffles per feature; the mean and standard deviation are reported.
    random_state : int
        Seed of the shuffles.
    columns : sequence of str, optional
        Only these features (or families, or event fields).

    Returns
    -------
    pd.DataFrame
        Index the feature, family or field; columns ``importance`` (mean fall in ROC-AUC),
        ``std``, ``family`` and ``n_features``; sorted largest first. ``attrs["baseline"]`` is
        the ROC-AUC with nothing shuffled.
    """
    if by not in {"feature", "family"}:
        raise ConfigError(f"by must be 'feature' or 'family'; got {by!r}.")
    if source not in {"features", "events"}:
        raise ConfigError(f"source must be 'features' or 'events'; got {source!r}.")
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, int) or n_repeats < 1:
        raise ConfigError(f"n_repeats must be a positive integer; got {n_repeats!r}.")
    if not isinstance(frame, CutoffFrame) or frame.label is None:
        what = type(frame).__name__ if not isinstance(frame, CutoffFrame) else "no label"
        raise ConfigError(
            "Permutation importance needs a labelled CutoffFrame (the validation cutoff); got "
            f"{what}."
            " Build it with make_frame(..., with_label=True)."
        )
    y = np.asarray(frame.label, dtype=int)
    if len(np.unique(y)) < 2:
        raise ModelError(
            f"The frame at cutoff {frame.cutoff:%Y-%m-%d} holds one outcome only, so ROC-AUC is "
            "undefined. Use a cutoff where some customers return and some do not."
        )
    rng = np.random.default_rng(random_state)
    rows: list[dict[str, Any]] = []
    if source == "events":
        shuffled = _event_predictor(model, frame)
        baseline = _auc(y, np.asarray(model.predict_proba(frame), dtype=float))
        fields = [f for f in (columns or EVENT_FIELDS)]
        unknown = [f for f in fields if f != "timing" and f not in frame.events.columns]
        if unknown:
            raise ConfigError(
                f"Unknown event field(s) {unknown}. Choose from: {', '.join(EVENT_FIELDS)}."
            )
        for name in track(fields, "permuting event fields", total=len(fields)):
            drops = [baseline - _auc(y, shuffled(name, rng)) for _ in range(n_repeats)]
            rows.append({"name": name, "drops": drops, "family": "events", "n_features": 1})
    else:
        X, predict = _feature_predictor(model, frame)
        baseline = _auc(y, predict(X))
        names = [str(c) for c in X.columns]
        if by == "family":
            groups: dict[str, list[str]] = {}
            for c in names:
                groups.setdefault(feature_family(c), []).append(c)
        else:
            groups = {c: [c] for c in names}
        if columns is not None:
            missing = [c for c in columns if c not in groups]
            if missing:
                raise ConfigError(
                    f"{missing[:5]} are not {'families' if by == 'family' else 'features'} of "
                    f"this model. Choose from: {', '.join(list(groups)[:20])}."
                )
            groups = {k: groups[k] for k in columns}
        for name, cols in track(list(groups.items()), "permutation importance", total=len(groups)):
            drops = []
            for _ in range(n_repeats):
                order = rng.permutation(len(X))
                M = X.copy()
                for c in cols:
                    M[c] = X[c].to_numpy()[order]
                drops.append(baseline - _auc(y, predict(M)))
            fam = name if by == "family" else feature_family(name)
            rows.append({"name": name, "drops": drops, "family": fam, "n_features": len(cols)})
    out = pd.DataFrame(
        {
            "importance": [float(np.mean(r["drops"])) for r in rows],
            "std": [float(np.std(r["drops"])) for r in rows],
            "family": [r["family"] for r in rows],
            "n_features": [int(r["n_features"]) for r in rows],
        },
        index=pd.Index([r["name"] for r in rows], name="feature" if by == "feature" else by),
    )
    out = out.sort_values("importance", ascending=False, kind="mergesort")
    out.attrs["baseline"] = baseline
    out.attrs["source"] = source
    return out


def family_importance(importance: pd.Series | pd.DataFrame) -> pd.Series:
    """Sum a per-feature importance (a Series, or the ``importance`` column) by feature family."""
    s = importance["importance"] if isinstance(importance, pd.DataFrame) else importance
    fams = [feature_family(str(c)) for c in s.index]
    return s.groupby(fams).sum().sort_values(ascending=False, kind="mergesort").astype(float)

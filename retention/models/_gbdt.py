"""Gradient boosting (LightGBM) on point-in-time features plus BTYD outputs, calibrated.

The model stacks the learning cutoffs into one table (one row per customer and cutoff), adds the
outputs of a BG/NBD model fitted on each cutoff's own history (``btyd_*`` columns: unsupervised, so
no label leaks), and cross-validates LightGBM on folds of *customers* (every cutoff of a customer in
one fold): the number of rounds and the calibration are learned from predictions for customers the
booster never saw, since the learning cutoffs' label windows overlap and their customers are the
same (see :mod:`retention.models._oof`). Everything is seeded and LightGBM runs in deterministic
mode, so two fits on the same data give the same scores bit for bit.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.special import expit

from retention._progress import progress_bar
from retention.exceptions import ConfigError, ModelError, RetentionWarning
from retention.features import FAMILIES, CutoffFrame, feature_family
from retention.models._base import RetentionModel, check_is_fitted
from retention.models._calibration import CALIBRATION_METHODS, Calibrator
from retention.models._drift import feature_profile
from retention.models._oof import N_FOLDS, check_n_folds, customer_folds

__all__ = ["RFM_FAMILIES", "GBDTModel", "btyd_details", "btyd_log_odds"]

#: the families of ``feature_set="rfm"``
RFM_FAMILIES: tuple[str, ...] = ("recency", "frequency", "monetary", "tenure")

#: BG/NBD outputs added as ``btyd_<name>`` columns
_BTYD_COLUMNS: tuple[str, ...] = ("p_retained", "p_alive", "expected_purchases", "monetary", "clv")

#: BG/NBD outputs of the frames seen last, shared by every GBDTModel of the process: they depend
#: on the frame alone (a default BG/NBD fitted on its own history), never on the model, and a
#: backtest scores the same validation and test frames several times. Held outside the models so
#: that predicting never changes a model; frames are held by weak reference, so a frame that is
#: gone is never matched. Entries: (frame, its events, its features, the outputs).
_BTYD_CACHE: list[
    tuple[
        weakref.ref[CutoffFrame], weakref.ref[pd.DataFrame], weakref.ref[pd.DataFrame], pd.DataFrame
    ]
] = []
_BTYD_CACHE_SIZE = 8
_BTYD_LOCK = threading.Lock()


def btyd_details(frame: CutoffFrame) -> pd.DataFrame:
    """The outputs of a default BG/NBD fitted on ``frame``'s own history (unsupervised), one row
    per customer of ``frame.users`` (columns of ``_BTYD_COLUMNS`` and ``degenerate``), from the
    module's cache of the frames seen last: what gradient boosting adds as ``btyd_*`` features
    and boosts from, and what the text LM starts from (``btyd_offset``)."""
    with _BTYD_LOCK:
        for f, events, features, details in _BTYD_CACHE:
            if f() is frame and events() is frame.events and features() is frame.features:
                return details
    details = _fit_btyd(frame)
    with _BTYD_LOCK:
        refs = (weakref.ref(frame), weakref.ref(frame.events), weakref.ref(frame.features))
        _BTYD_CACHE.append((*refs, details))
        del _BTYD_CACHE[:-_BTYD_CACHE_SIZE]
    return details


def btyd_log_odds(frame: CutoffFrame, users: pd.Index | None = None) -> np.ndarray:
    """The log-odds of :func:`btyd_details`' P(retained) for ``users`` (default
    ``frame.users``), in their order: the start a neural model's logit is added to
    (``btyd_offset`` of the text LM and the sequence model), as the booster's raw score is."""
    from retention.models._calibration import logit

    who = frame.users if users is None else users
    p = btyd_details(frame)["p_retained"].reindex(who).to_numpy(dtype=float)
    if np.isnan(p).any():
        raise ModelError(
            f"BG/NBD gave no P(retained) for some customers at {frame.cutoff:%Y-%m-%d}; set "
            "btyd_offset=False to train without it."
        )
    out: np.ndarray = logit(p)
    return out


def _fit_btyd(frame: CutoffFrame) -> pd.DataFrame:
    """BG/NBD fitted on ``frame``'s own history (unsupervised), predicted for ``frame``."""
    from retention.models._registry import get_model

    bg = get_model("bgnbd")
    unlabeled = CutoffFrame(
        cutoff=frame.cutoff,
        horizon_days=frame.horizon_days,
        features=frame.features,
        label=None,
        events=frame.events,
        items=frame.items,
        retained_by=frame.retained_by,
    )
    try:
        with warnings.catch_warnings():
            # a degenerate or thin BG/NBD still gives finite features, and the booster
            # learns how far to trust them; bgnbd warns where it is the model asked for
            warnings.simplefilter("ignore", RetentionWarning)
            bg.fit([unlabeled], None)
            # the features keep P(alive) even where the fit is degenerate (a number the
            # booster may learn to ignore); predict_details hides it then
            details = bg._details(unlabeled, mask_degenerate=False)
            degenerate = bool(bg.fit_report(unlabeled)["degenerate"])
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        raise ModelError(
            f"The BG/NBD features could not be computed at cutoff {frame.cutoff:%Y-%m-%d}: "
            f"{exc}. Set btyd_features=False (gbdt) or btyd_offset=False (text_lm, sequence) to "
            "train without them."
        ) from exc
    keep = [c for c in _BTYD_COLUMNS if c in details.columns]
    out = details[keep].reindex(frame.users)
    out["degenerate"] = float(degenerate)
    return out


def check_frames(
    train: Sequence[CutoffFrame], valid: CutoffFrame | None, *, model: str
) -> list[CutoffFrame]:
    """Validate the frames a supervised model learns from; return ``train`` as a list."""
    if isinstance(train, CutoffFrame):
        train = [train]
    frames = list(train)
    if not frames:
        raise ConfigError(
            f"{model} needs at least one training cutoff; got none. "
            "Pass the frames of training_frames(...) (n_train >= 1)."
        )
    for frame in [*frames, *([valid] if valid is not None else [])]:
        if not isinstance(frame, CutoffFrame):
            raise ConfigError(
                f"{model} learns from CutoffFrame objects; got {type(frame).__name__}. "
                "Build them with retention.features.make_frame(...)."
            )
        if frame.label is None:
            raise ConfigError(
                f"The frame at cutoff {frame.cutoff:%Y-%m-%d} has no label, so {model} cannot "
                "learn from it. Make training frames with make_frame(..., with_label=True)."
            )
        if len(frame) == 0:
            raise ModelError(
                f"The frame at cutoff {frame.cutoff:%Y-%m-%d} has no customers. "
                "Choose a later cutoff (the population is everyone with a purchase before it)."
            )
    horizons = {f.horizon_days for f in frames} | ({valid.horizon_days} if valid else set())
    if len(horizons) > 1:
        raise ConfigError(
            f"The frames have different horizons {sorted(horizons)}; {model} learns one horizon. "
            "Make every frame with the same horizon_days."
        )
    return frames


class GBDTModel(RetentionModel):
    """LightGBM on the features of a :class:`CutoffFrame` (plus BTYD outputs), calibrated.

    Parameters
    ----------
    feature_set : "all", "rfm" or sequence of str
        ``"all"``: every column of ``frame.features``; ``"rfm"``: the recency, frequency, monetary
        and tenure families only; or a list of family names (see ``retention.features.FAMILIES``).
    btyd_features : bool or None
        Add the outputs of a BG/NBD model fitted on each cutoff's own history as ``btyd_*``
        columns. None (default): on for ``feature_set="all"``, off otherwise.
    text_features : bool
        Join the output of ``retention.features.TextFeaturizer`` (``text_*`` columns).
    btyd_offset : bool or None
        Boost from the BG/NBD log-odds instead of from the base rate: the booster learns a
        correction to BG/NBD (``P = sigmoid(logit(btyd_p_retained) + booster raw score)``), which
        carries BG/NBD's adaptation to each cutoff (for example a seasonal base rate) into the
        model. Needs BTYD features. None (default): on whenever BTYD features are.
    calibration : {"platt", "isotonic"} or None
        Calibrate the scores on the out-of-fold predictions of the cross-validation. Platt keeps
        the ranking exactly.
    n_estimators : int
        Maximum number of boosting rounds.
    learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree, reg_lambda
        LightGBM hyper-parameters (``learning_rate``, ``num_leaves``, ``min_data_in_leaf``,
        ``bagging_fraction``, ``feature_fraction``, ``lambda_l2``). The defaults (small trees,
        large leaves, slow learning) were chosen among six settings by backtests held out at
        the *validation* cutoffs of the prediction benchmark (Online Retail 2011-06-12, CDNOW
        1997-12-31), never at its test cutoffs: a retention table of a few thousand customers
        per cutoff overfits deeper trees.
    early_stopping_rounds : int
        Stop when the mean held-out log loss of the cross-validation has not improved for this
        many rounds.
    cv_folds : int or None
        Folds of customers of the cross-validation (early stopping, calibration, and the
        out-of-fold predictions ``oof_`` an ensemble stacks on). None: no cross-validation,
        ``n_estimators`` rounds, no calibration.
    n_jobs : int
        LightGBM threads. Results do not depend on it (deterministic mode).
    random_state : int
        Seed of every random choice.

    Attributes
    ----------
    booster_ : lightgbm.Booster
        The trained booster (``best_iteration_`` rounds are used).
    feature_names_ : list of str
        Columns of :meth:`transform_features`, in the booster's order.
    calibrator_ : Calibrator or None
    oof_ : pd.DataFrame or None
        ``cutoff``, ``user_id``, ``p``: the calibrated out-of-fold P(retained) of every learning
        row, each from a booster that never saw the customer (None with ``cv_folds=None`` and
        after loading: it is not saved).
    cv_logloss_ : float
        Mean held-out log loss at ``best_iteration_`` (uncalibrated).
    profile_ : dict
        What the training data looked like (feature deciles, event types), for
        :func:`~retention.models.data_drift`.
    offset_ : bool
        True when the booster's raw score is added to ``logit(btyd_p_retained)`` (column of
        :meth:`transform_features`) before the sigmoid and the calibration.
    best_iteration_ : int
    train_cutoffs_, valid_cutoff_, horizon_days_
        What the model learned from.

    Examples
    --------
    >>> model = GBDTModel(feature_set="rfm", n_estimators=50)  # doctest: +SKIP
    >>> model.fit(train_frames, valid_frame).predict_proba(test_frame)[:3]  # doctest: +SKIP
    array([0.61, 0.08, 0.33])
    """

    name: ClassVar[str] = "gbdt"

    def __init__(
        self,
        feature_set: str | Sequence[str] = "all",
        btyd_features: bool | None = None,
        text_features: bool = False,
        btyd_offset: bool | None = None,
        calibration: str | None = "platt",
        n_estimators: int = 5000,
        learning_rate: float = 0.01,
        num_leaves: int = 4,
        min_child_samples: int = 200,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 100,
        cv_folds: int | None = N_FOLDS,
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        self.feature_set = feature_set
        self.btyd_features = btyd_features
        self.text_features = text_features
        self.btyd_offset = btyd_offset
        self.calibration = calibration
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.cv_folds = cv_folds
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------ validation and features
    def _validate_params(self) -> None:
        if isinstance(self.feature_set, str):
            if self.feature_set not in {"all", "rfm"}:
                raise ConfigError(
                    f"Unknown feature_set {self.feature_set!r}. Use 'all', 'rfm' or a list of "
                    f"families from: {', '.join(FAMILIES)}."
                )
        else:
            unknown = [f for f in self.feature_set if f not in FAMILIES]
            if unknown or not list(self.feature_set):
                raise ConfigError(
                    f"Unknown feature families {unknown or '(empty list)'}. "
                    f"Choose from: {', '.join(FAMILIES)}."
                )
        if self.calibration is not None and self.calibration not in CALIBRATION_METHODS:
            raise ConfigError(
                f"Unknown calibration {self.calibration!r}. "
                f"Use one of {', '.join(CALIBRATION_METHODS)} or None."
            )
        checks: list[tuple[str, Any, bool]] = [
            ("n_estimators", self.n_estimators, isinstance(self.n_estimators, int)),
            ("num_leaves", self.num_leaves, isinstance(self.num_leaves, int)),
            ("min_child_samples", self.min_child_samples, isinstance(self.min_child_samples, int)),
            ("early_stopping_rounds", self.early_stopping_rounds, True),
            ("n_jobs", self.n_jobs, True),
        ]
        for name, value, ok in checks:
            if not ok or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
        for name, value, low in [
            ("learning_rate", self.learning_rate, 0.0),
            ("subsample", self.subsample, 0.0),
            ("colsample_bytree", self.colsample_bytree, 0.0),
        ]:
            if not (isinstance(value, int | float) and low < value <= 1.0):
                raise ConfigError(f"{name} must be in (0, 1]; got {value!r}.")
        if not (isinstance(self.reg_lambda, int | float) and self.reg_lambda >= 0):
            raise ConfigError(f"reg_lambda must be >= 0; got {self.reg_lambda!r}.")
        if self.cv_folds is not None:
            check_n_folds(self.cv_folds)
        if self.btyd_offset and not self._use_btyd():
            raise ConfigError(
                "btyd_offset=True boosts from the BG/NBD predictions, which needs "
                "btyd_features=True. Turn BTYD features on or set btyd_offset=False."
            )

    def _use_offset(self) -> bool:
        if self.btyd_offset is None:
            return self._use_btyd()
        return bool(self.btyd_offset)

    def _offset(self, X: pd.DataFrame) -> np.ndarray | None:
        """Log-odds of BG/NBD for each row, or None without an offset."""
        if not getattr(self, "offset_", False):
            return None
        from retention.models._calibration import logit

        out: np.ndarray = logit(X["btyd_p_retained"].to_numpy(dtype=float))
        return out

    def _use_btyd(self) -> bool:
        if self.btyd_features is None:
            return self.feature_set == "all"
        return bool(self.btyd_features)

    def _families(self) -> tuple[str, ...] | None:
        if self.feature_set == "all":
            return None
        if self.feature_set == "rfm":
            return RFM_FAMILIES
        return tuple(self.feature_set)

    def _base_columns(self, frame: CutoffFrame) -> list[str]:
        families = self._families()
        cols = [str(c) for c in frame.features.columns]
        if families is not None:
            cols = [c for c in cols if feature_family(c) in families]
        # text_ columns come from the featurizer when text_features is on
        if self.text_features:
            cols = [c for c in cols if not c.startswith("text_")]
        return cols

    def _matrix(self, frame: CutoffFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        cols = self._base_columns(frame)
        X = frame.features[cols].copy()
        btyd = None
        if self._use_btyd():
            btyd = btyd_details(frame)
            for c in _BTYD_COLUMNS:
                if c in btyd.columns:
                    X[f"btyd_{c}"] = btyd[c].to_numpy(dtype=float)
        if self.text_features:
            featurizer = getattr(self, "text_featurizer_", None)
            if featurizer is None:
                raise ModelError("The text featurizer is not fitted. Call fit(...) first.")
            text = featurizer.transform(frame)
            text = text.reindex(frame.users)
            for c in text.columns:
                X[str(c)] = text[c].to_numpy(dtype=float)
        bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        if bad:
            raise ModelError(
                f"Feature columns must be numeric; {bad[:5]} are not. "
                "Encode them as numbers in the feature builder or leave them out."
            )
        X = X.astype(float)
        X.index = frame.users
        return X, btyd

    def transform_features(self, frame: CutoffFrame) -> pd.DataFrame:
        """The exact matrix the booster sees for ``frame`` (columns ``feature_names_``).

        Raises
        ------
        ModelError
            When ``frame`` lacks features the model was trained on.
        """
        check_is_fitted(self, "booster_")
        return self._features(frame)

    def _align(self, X: pd.DataFrame, frame: CutoffFrame, *, warn: bool = True) -> pd.DataFrame:
        """``X`` in the booster's column order. A feature the frame lacks (an event type or a
        side table the scored store does not have) is scored as unknown (NaN, which LightGBM
        routes as it learned to), with a warning; lacking most of them is an error."""
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing and len(missing) * 2 > len(self.feature_names_):
            raise ModelError(
                f"The frame at cutoff {frame.cutoff:%Y-%m-%d} lacks {len(missing)} of the "
                f"{len(self.feature_names_)} features the model was trained on, e.g. "
                f"{missing[:5]}: these events differ in kind from the ones it learnt from (a "
                "model trained on another store?). Train a model on this data (`retention train "
                "--db STORE`), or build the frame with the same feature builder (and version) "
                "as the training frames."
            )
        if missing:
            if warn:
                warnings.warn(
                    f"The frame at cutoff {frame.cutoff:%Y-%m-%d} lacks {len(missing)} feature(s) "
                    f"the model was trained on ({', '.join(missing[:5])}"
                    f"{', ...' if len(missing) > 5 else ''}); they are scored as unknown. The "
                    "data differs from the training data (a missing side table or event type): "
                    "retrain on it for full accuracy.",
                    RetentionWarning,
                    stacklevel=4,
                )
            X = X.reindex(columns=self.feature_names_)
        return X[self.feature_names_]

    # ------------------------------------------------------------------ fit and predict
    def _lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.num_leaves),
            "min_data_in_leaf": int(self.min_child_samples),
            "bagging_fraction": float(self.subsample),
            "bagging_freq": 1 if self.subsample < 1 else 0,
            "feature_fraction": float(self.colsample_bytree),
            "lambda_l2": float(self.reg_lambda),
            "seed": int(self.random_state),
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": int(self.n_jobs),
            "verbosity": -1,
            "feature_pre_filter": False,
        }

    def fit(
        self,
        train: Sequence[CutoffFrame],
        valid: CutoffFrame | None = None,
        *,
        callbacks: Sequence[Callable[[Any], None]] | None = None,
    ) -> GBDTModel:
        """Train on every learning cutoff; early stopping and calibration out of fold.

        The rows of ``train`` and ``valid`` (one per customer and cutoff) are stacked. Unless
        ``cv_folds`` is None, the customers are split into ``cv_folds`` folds
        (:func:`~retention.models.customer_folds`: all cutoffs of a customer in one fold) and
        LightGBM is cross-validated on them: the number of rounds is where the mean held-out log
        loss is lowest, the calibrator is fitted on the held-out predictions (each customer's
        from a booster that never saw that customer), and the final booster is trained on every
        row for that number of rounds. ``valid`` is simply the latest learning cutoff. With
        ``cv_folds=None`` the booster trains ``n_estimators`` rounds and is not calibrated.

        ``callbacks`` (like LightGBM's own ``callbacks``) are called after every round of the
        cross-validation with LightGBM's ``CallbackEnv`` (``evaluation_result_list`` holds the
        mean held-out log loss): what a hyper-parameter search uses to prune a trial, by raising
        from the callback (``retention.experiments`` tuning). They are not called with
        ``cv_folds=None``.
        """
        import lightgbm as lgb

        self._validate_params()
        frames = check_frames(train, valid, model=type(self).__name__)
        learning = [*frames, *([valid] if valid is not None else [])]
        if self.text_features:
            from retention.features import TextFeaturizer

            self.text_featurizer_ = TextFeaturizer().fit(learning)

        mats = [self._matrix(f)[0] for f in learning]
        names = list(mats[0].columns)
        if not names:
            raise ModelError(
                f"No feature columns to learn from with feature_set={self.feature_set!r}. "
                "Build frames with those feature families or choose another feature_set."
            )
        self.feature_names_ = names
        self.offset_ = self._use_offset() and "btyd_p_retained" in names
        X = pd.concat([self._align(m, f, warn=False) for m, f in zip(mats, learning, strict=True)])
        y = np.concatenate([np.asarray(f.label, dtype=int) for f in learning])
        if len(np.unique(y)) < 2:
            raise ModelError(
                f"The training cutoffs hold only one outcome ({int(y[0])}) for {len(y)} rows; "
                "a classifier needs both. Use more or longer training cutoffs."
            )
        offset = self._offset(X)
        dtrain = lgb.Dataset(
            X.to_numpy(), label=y, init_score=offset, feature_name=names, free_raw_data=False
        )
        params = self._lgb_params()
        oof_raw: np.ndarray | None = None
        with progress_bar(transient=True) as bar:
            task = bar.add_task("training gradient boosting", total=self.n_estimators)

            def _tick(env: Any) -> None:
                bar.update(task, completed=env.iteration + 1)

            if self.cv_folds is None:
                best = int(self.n_estimators)
            else:
                users = np.concatenate([f.users.to_numpy(dtype=str) for f in learning])
                best, oof_raw = self._cross_validate(
                    params, dtrain, X, y, users, offset, [_tick, *(callbacks or ())]
                )
            bar.update(task, description="training gradient boosting (all folds)")
            booster = lgb.train(params, dtrain, num_boost_round=best)
        self.booster_ = booster
        self.best_iteration_ = int(best)

        self.calibrator_: Calibrator | None = None
        self.oof_: pd.DataFrame | None = None
        if oof_raw is not None:
            p_oof = expit(oof_raw)
            if self.calibration is not None:
                self.calibrator_ = Calibrator(self.calibration).fit(p_oof, y)
                p_oof = self.calibrator_.transform(p_oof)
            self.oof_ = pd.DataFrame(
                {
                    "cutoff": np.concatenate(
                        [np.repeat(np.datetime64(f.cutoff, "ns"), len(f)) for f in learning]
                    ),
                    "user_id": np.concatenate([f.users.to_numpy(dtype=str) for f in learning]),
                    "p": p_oof,
                }
            )
        self.profile_: dict[str, Any] | None = feature_profile(X, learning)
        self.train_cutoffs_ = [f.cutoff for f in frames]
        self.valid_cutoff_ = valid.cutoff if valid is not None else None
        self.horizon_days_ = frames[0].horizon_days
        return self

    def _cross_validate(
        self,
        params: dict[str, Any],
        dtrain: Any,
        X: pd.DataFrame,
        y: np.ndarray,
        users: np.ndarray,
        offset: np.ndarray | None,
        callbacks: Sequence[Any],
    ) -> tuple[int, np.ndarray]:
        """Customer-grouped cross-validation: the best number of rounds and the out-of-fold
        raw probabilities' log-odds (offset included) at that number."""
        import lightgbm as lgb

        assert self.cv_folds is not None
        fold = customer_folds(users, int(self.cv_folds))
        idx = np.arange(len(y))
        folds = [(idx[fold != k], idx[fold == k]) for k in np.unique(fold)]
        if len(folds) < 2:
            raise ModelError(
                f"{len(np.unique(users))} customer(s) fill fewer than two of the {self.cv_folds} "
                "folds of the cross-validation. Use more customers, or cv_folds=None to train "
                "n_estimators rounds without early stopping and calibration."
            )
        result = lgb.cv(
            params,
            dtrain,
            num_boost_round=self.n_estimators,
            folds=folds,
            stratified=False,
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False), *callbacks],
            return_cvbooster=True,
        )
        curve = np.asarray(next(v for k, v in result.items() if k.endswith("logloss-mean")))
        best = int(np.argmin(curve)) + 1
        self.cv_logloss_ = float(curve[best - 1])
        raw = np.zeros(len(y))
        values = X.to_numpy()
        for (_, held), booster in zip(folds, result["cvbooster"].boosters, strict=True):
            raw[held] = booster.predict(values[held], num_iteration=best, raw_score=True)
        if offset is not None:
            raw = raw + offset
        return best, raw

    # ------------------------------------------------------------------ save/load as data
    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What :meth:`fit` learned, as data (see ``retention.models.save_model``): the booster
        as LightGBM's own model text, the calibrator and the text featurizer as nested parts."""
        check_is_fitted(self, "booster_")
        state = {
            "feature_names_": list(self.feature_names_),
            "offset_": bool(self.offset_),
            "best_iteration_": int(self.best_iteration_),
            "train_cutoffs_": list(self.train_cutoffs_),
            "valid_cutoff_": self.valid_cutoff_,
            "horizon_days_": int(self.horizon_days_),
            "cv_logloss_": getattr(self, "cv_logloss_", None),
        }
        parts: dict[str, Any] = {"booster.txt": self.booster_.model_to_string()}
        profile = getattr(self, "profile_", None)
        if profile is not None:
            parts["profile"] = profile
        if self.calibrator_ is not None:
            parts["calibrator"] = self.calibrator_
        featurizer = getattr(self, "text_featurizer_", None)
        if featurizer is not None:
            parts["text_featurizer"] = featurizer
        return state, parts

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned (``load_model``)."""
        import lightgbm as lgb

        booster = lgb.Booster(model_str=parts["booster.txt"])
        names = [str(n) for n in state["feature_names_"]]
        if booster.num_feature() != len(names):
            raise ModelError(
                f"The saved booster reads {booster.num_feature()} features but the model lists "
                f"{len(names)}."
            )
        calibrator = parts.get("calibrator")
        if not isinstance(calibrator, Calibrator | None):
            raise ModelError(f"A saved GBDTModel holds a {type(calibrator).__name__} calibrator.")
        if self.text_features and "text_featurizer" not in parts:
            raise ModelError("A saved GBDTModel with text_features=True has no text featurizer.")
        self.booster_ = booster
        self.feature_names_ = names
        self.offset_ = bool(state["offset_"])
        self.best_iteration_ = int(state["best_iteration_"])
        self.calibrator_ = calibrator
        if "text_featurizer" in parts:
            self.text_featurizer_ = parts["text_featurizer"]
        self.train_cutoffs_ = list(state["train_cutoffs_"])
        self.valid_cutoff_ = state["valid_cutoff_"]
        self.horizon_days_ = int(state["horizon_days_"])
        if state.get("cv_logloss_") is not None:
            self.cv_logloss_ = float(state["cv_logloss_"])
        profile = parts.get("profile")
        self.profile_ = profile if isinstance(profile, dict) else None
        self.oof_ = None  # only needed while an ensemble is stacked on the same frames

    def _features(self, frame: CutoffFrame) -> pd.DataFrame:
        X, _ = self._matrix(frame)
        return self._align(X, frame)

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated probabilities (with the BG/NBD offset when there is one)."""
        score = np.asarray(
            self.booster_.predict(X.to_numpy(), num_iteration=self.best_iteration_, raw_score=True),
            dtype=float,
        )
        offset = self._offset(X)
        if offset is not None:
            score = score + offset
        out: np.ndarray = expit(score)
        return out

    def _proba_from_matrix(self, X: pd.DataFrame) -> np.ndarray:
        p = self._raw(X)
        if self.calibrator_ is not None:
            p = self.calibrator_.transform(p)
        return p

    def predict_proba(self, frame: CutoffFrame) -> np.ndarray:
        """Calibrated P(retained) for every customer of ``frame``, in ``frame.users`` order."""
        check_is_fitted(self, "booster_")
        return self._proba_from_matrix(self.transform_features(frame))

    def predict_details(self, frame: CutoffFrame) -> pd.DataFrame:
        """``p_retained`` plus, with BTYD features, the BG/NBD ``p_alive`` (NaN when the BG/NBD
        fit at this cutoff is degenerate), ``expected_purchases``, ``monetary`` and ``clv``."""
        check_is_fitted(self, "booster_")
        X, btyd = self._matrix(frame)
        out = pd.DataFrame(
            {"p_retained": self._proba_from_matrix(self._align(X, frame))}, index=frame.users
        )
        if btyd is not None:
            for c in ("p_alive", "expected_purchases", "monetary", "clv"):
                if c in btyd.columns:
                    out[c] = btyd[c].to_numpy(dtype=float)
            if "p_alive" in out.columns and bool(btyd["degenerate"].max() > 0):
                out["p_alive"] = np.nan
        return out

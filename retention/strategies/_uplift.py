"""Uplift learners on LightGBM: S-, T- and X-learners and the transformed outcome, multi-treatment.

Each learner estimates, per unit, how much each treatment changes the outcome against the control
(the conditional average treatment effect) from randomised data. Arms are integer codes: 0 is the
control, 1..K-1 the treatments. Binary outcomes are modelled as probabilities (log-loss),
continuous ones by least squares.

* :class:`SLearner`: one model of the outcome with the arm as a feature; uplift is the difference
  of its predictions with the arm switched on and off.
* :class:`SCategoricalLearner`: the S-learner with the arm as one categorical feature, so that a
  split may send several treatments one way (``any e-mail`` against none): the treatments share
  strength. With two arms it is the S-learner.
* :class:`TLearner`: one outcome model per arm; uplift is the difference of two of them.
* :class:`XLearner` (Kuenzel et al. 2019): T-learner outcome models impute each unit's effect,
  which two more models learn, blended by the propensity.
* :class:`TransformedOutcome` (Athey & Imbens 2015): a direct method; ``y (w - e) / (e (1 - e))``
  has the effect as its expectation, so one regression learns the effect itself.
* :class:`MultiClassTransformation`: one multi-class model of the pair (arm, outcome) for a
  binary outcome, ``P(A=k, Y=1 | x) / e_k = P(Y=1 | A=k, x)`` under randomisation: a single
  model for all treatments at once (the class transformation of Jaskowski & Jaroszewicz 2012,
  with one class per arm and outcome).
* :class:`DRLearner` (Kennedy 2023): cross-fitted outcome models give each unit a doubly robust
  pseudo-outcome per treatment, ``mu_k - mu_0 + 1[A=k] (y - mu_k) / e_k - 1[A=0] (y - mu_0) /
  e_0``, whose regression on the covariates is the effect; every unit (of every arm) enters the
  model of every treatment.

(DESIGN.md names causalml for these. causalml 0.18 installs here, but its fitted learners can only
be saved by pickling, which a model artifact must not be (it holds no code: LightGBM text and JSON
only), and it brings xgboost with a 351 MB CUDA library, matplotlib and seaborn at run time; the
four learners are a few lines each on LightGBM, stored as LightGBM's own model text.)

Estimators follow scikit-learn: hyper-parameters stored as given, checked in ``fit``, learned
state in attributes ending in ``_``; :meth:`get_state` / :meth:`from_state` turn a fitted learner
into plain data and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from retention.exceptions import ConfigError, DataError, ModelError
from retention.models import check_is_fitted

__all__ = [
    "DEFAULT_UPLIFT_MODELS",
    "LEARNER_CLASSES",
    "UPLIFT_LEARNERS",
    "DRLearner",
    "MultiClassTransformation",
    "SCategoricalLearner",
    "SLearner",
    "SegmentLearner",
    "TLearner",
    "TransformedOutcome",
    "UpliftLearner",
    "XLearner",
    "get_uplift_learner",
    "make_uplift_learner",
    "uplift_learner_from_state",
]


class UpliftLearner(BaseEstimator):
    """Shared machinery of the uplift learners: LightGBM boosters with early stopping.

    Parameters
    ----------
    outcome : {"auto", "binary", "continuous"}
        How the outcome is modelled; ``auto`` reads it from the data (0/1 only: binary).
    n_estimators : int
        Most boosting rounds per model (early stopping on an inner validation split stops sooner).
    learning_rate, num_leaves, min_child_samples, reg_lambda : LightGBM hyper-parameters.
    early_stopping_rounds : int
        Rounds without improvement on the inner validation split before a model stops.
    validation_fraction : float
        Share of the training rows held out for early stopping (0 turns it off).
    random_state : int
        Seed of the inner split and of LightGBM.
    n_jobs : int
        LightGBM threads (results do not depend on it: deterministic mode).
    """

    name: ClassVar[str] = "uplift"

    def __init__(
        self,
        outcome: str = "auto",
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 50,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 30,
        validation_fraction: float = 0.2,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.outcome = outcome
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        if self.outcome not in ("auto", "binary", "continuous"):
            raise ConfigError(
                f"outcome must be 'auto', 'binary' or 'continuous'; got {self.outcome!r}."
            )
        for name in ("n_estimators", "num_leaves", "min_child_samples", "early_stopping_rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ConfigError(f"{name} must be a positive integer; got {v!r}.")
        if not 0 < float(self.learning_rate) <= 1:
            raise ConfigError(f"learning_rate must be in (0, 1]; got {self.learning_rate!r}.")
        if not 0 <= float(self.validation_fraction) < 0.5:
            raise ConfigError(
                f"validation_fraction must be in [0, 0.5); got {self.validation_fraction!r}."
            )
        if float(self.reg_lambda) < 0:
            raise ConfigError(f"reg_lambda must be >= 0; got {self.reg_lambda!r}.")

    def _check_data(
        self, X: pd.DataFrame, y: Any, arm: Any, propensity: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not isinstance(X, pd.DataFrame):
            raise ConfigError(
                f"X must be a pandas DataFrame (FeatureEncoder.transform); got {type(X).__name__}."
            )
        yv = np.asarray(y, dtype=float)
        codes = np.asarray(arm)
        if codes.dtype.kind not in "iu":
            raise ConfigError("arm must hold integer codes: 0 for the control, 1.. treatments.")
        codes = codes.astype(np.int64)
        if not (len(X) == len(yv) == len(codes)):
            raise ConfigError(f"X, y and arm differ in length ({len(X)}, {len(yv)}, {len(codes)}).")
        if np.isnan(yv).any():
            raise DataError("The outcome has missing values: drop or fill them before fitting.")
        n_arms = int(codes.max()) + 1 if len(codes) else 0
        if codes.min(initial=0) < 0 or n_arms < 2 or (np.bincount(codes) == 0).any():
            raise DataError(
                "arm must use every code from 0 (control) to K-1 with at least one unit each, "
                "K >= 2."
            )
        if propensity is None:
            shares = np.bincount(codes, minlength=n_arms) / len(codes)
            e = np.tile(shares, (len(codes), 1))
        else:
            e = np.asarray(propensity, dtype=float)
            if e.shape != (len(codes), n_arms):
                raise ConfigError(
                    f"propensity must have shape (n, K) = ({len(codes)}, {n_arms}); got {e.shape}."
                )
            if not np.all((e > 0) & (e < 1)):
                raise DataError("Propensities must lie strictly between 0 and 1.")
        self.n_arms_ = n_arms
        if self.outcome == "auto":
            self.binary_ = bool(np.isin(yv, (0.0, 1.0)).all())
        else:
            self.binary_ = self.outcome == "binary"
            if self.binary_ and not np.isin(yv, (0.0, 1.0)).all():
                raise DataError("outcome='binary' but y holds values other than 0 and 1.")
        return yv, codes, e

    # ------------------------------------------------------------------ LightGBM
    def _lgb_params(self, objective: str) -> dict[str, Any]:
        return {
            "objective": objective,
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.num_leaves),
            "min_data_in_leaf": int(self.min_child_samples),
            "lambda_l2": float(self.reg_lambda),
            "seed": int(self.random_state),
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": int(self.n_jobs),
            "verbosity": -1,
            "feature_pre_filter": False,
        }

    def _train(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        objective: str,
        salt: int,
        extra: dict[str, Any] | None = None,
    ) -> Any:
        """One booster; early stopping on a seeded inner split when there are rows enough."""
        import lightgbm as lgb

        params = {**self._lgb_params(objective), **(extra or {})}
        frac = float(self.validation_fraction)
        n = len(y)
        if objective == "binary" and len(np.unique(y)) < 2:
            # one outcome only in this arm: a constant model (LightGBM would refuse)
            params["objective"] = "regression"
        if frac > 0 and n >= 200:
            rng = np.random.default_rng([int(self.random_state), salt])
            valid = rng.random(n) < frac
            if 0 < valid.sum() < n:
                dtrain = lgb.Dataset(X.loc[~valid], label=y[~valid], free_raw_data=False)
                dvalid = lgb.Dataset(X.loc[valid], label=y[valid], reference=dtrain)
                return lgb.train(
                    params,
                    dtrain,
                    num_boost_round=int(self.n_estimators),
                    valid_sets=[dvalid],
                    callbacks=[lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)],
                )
        rounds = min(int(self.n_estimators), 100)
        return lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=rounds)

    @property
    def _outcome_objective(self) -> str:
        return "binary" if self.binary_ else "regression"

    @staticmethod
    def _predict_booster(booster: Any, X: pd.DataFrame) -> np.ndarray:
        best = booster.best_iteration if booster.best_iteration > 0 else None
        return np.asarray(booster.predict(X, num_iteration=best), dtype=float)

    # ------------------------------------------------------------------ API
    def fit(self, X: pd.DataFrame, y: Any, arm: Any, *, propensity: Any = None) -> UpliftLearner:
        """Learn the effect of each treatment from randomised data.

        Parameters
        ----------
        X : pd.DataFrame
            Covariates (numbers, and pandas categoricals), e.g. ``FeatureEncoder.transform``.
        y : array-like
            Outcome per unit.
        arm : array-like of int
            0 for the control, 1..K-1 for the treatments.
        propensity : array-like of shape (n, K), optional
            Each unit's probability of each arm; default: the arms' shares (complete
            randomisation).
        """
        self._check_params()
        yv, codes, e = self._check_data(X, y, arm, propensity)
        self.boosters_: dict[str, Any] = {}
        self.pair_share_ = [
            float(np.mean(e[:, k] / (e[:, k] + e[:, 0]))) for k in range(1, self.n_arms_)
        ]
        self._fit(X, yv, codes, e)
        return self

    def _fit(self, X: pd.DataFrame, y: np.ndarray, codes: np.ndarray, e: np.ndarray) -> None:
        raise NotImplementedError

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Estimated uplift of each treatment against the control.

        Returns
        -------
        np.ndarray
            Shape ``(n, K - 1)``: column ``k - 1`` is treatment ``k`` minus the control (a
            difference of probabilities for a binary outcome).
        """
        check_is_fitted(self, "boosters_")
        return self._predict(X)

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def predict_outcomes(self, X: pd.DataFrame) -> np.ndarray | None:
        """Expected outcome under each arm, shape ``(n, K)``, for learners that model it (S, T,
        X); None for the transformed outcome."""
        check_is_fitted(self, "boosters_")
        return None

    # ------------------------------------------------------------------ state as data
    def get_state(self) -> dict[str, Any]:
        """The fitted learner as JSON-ready data: hyper-parameters, and each booster as
        LightGBM's model text."""
        check_is_fitted(self, "boosters_")
        return {
            "learner": self.name,
            "params": self.get_params(),
            "n_arms": int(self.n_arms_),
            "binary": bool(self.binary_),
            "pair_share": [float(s) for s in self.pair_share_],
            "boosters": {k: b.model_to_string() for k, b in self.boosters_.items()},
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        import lightgbm as lgb

        self.n_arms_ = int(state["n_arms"])
        self.binary_ = bool(state["binary"])
        self.pair_share_ = [float(s) for s in state["pair_share"]]
        self.boosters_ = {
            str(k): lgb.Booster(model_str=str(v)) for k, v in state["boosters"].items()
        }


class SLearner(UpliftLearner):
    """One outcome model with the arm as features (one indicator per treatment)."""

    name = "s_learner"

    def _with_arm(self, X: pd.DataFrame, k: int | np.ndarray) -> pd.DataFrame:
        codes = np.broadcast_to(np.asarray(k), (len(X),))
        extra = {f"arm_{j}": (codes == j).astype(float) for j in range(1, self.n_arms_)}
        return pd.concat([X.reset_index(drop=True), pd.DataFrame(extra)], axis=1)

    def _fit(self, X: pd.DataFrame, y: np.ndarray, codes: np.ndarray, e: np.ndarray) -> None:
        self.boosters_["mu"] = self._train(self._with_arm(X, codes), y, self._outcome_objective, 0)

    def predict_outcomes(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "boosters_")
        return np.column_stack(
            [
                self._predict_booster(self.boosters_["mu"], self._with_arm(X, k))
                for k in range(self.n_arms_)
            ]
        )

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        mu = self.predict_outcomes(X)
        return mu[:, 1:] - mu[:, :1]


class SCategoricalLearner(SLearner):
    """The S-learner with the arm as one categorical feature (LightGBM's categorical splits): one
    split can group treatments together against the control, so that they share strength."""

    name = "s_learner_categorical"

    def _with_arm(self, X: pd.DataFrame, k: int | np.ndarray) -> pd.DataFrame:
        codes = np.broadcast_to(np.asarray(k), (len(X),))
        arm = pd.Categorical(codes, categories=list(range(self.n_arms_)))
        return pd.concat([X.reset_index(drop=True), pd.DataFrame({"arm": arm})], axis=1)


class TLearner(UpliftLearner):
    """One outcome model per arm."""

    name = "t_learner"

    def _fit(self, X: pd.DataFrame, y: np.ndarray, codes: np.ndarray, e: np.ndarray) -> None:
        for k in range(self.n_arms_):
            rows = codes == k
            self.boosters_[f"mu_{k}"] = self._train(
                X.loc[rows], y[rows], self._outcome_objective, k
            )

    def predict_outcomes(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "boosters_")
        return np.column_stack(
            [self._predict_booster(self.boosters_[f"mu_{k}"], X) for k in range(self.n_arms_)]
        )

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        mu = self.predict_outcomes(X)
        return mu[:, 1:] - mu[:, :1]


class XLearner(TLearner):
    """T-learner outcome models impute each unit's effect; two effect models per treatment learn
    it (one on the treated, one on the controls), blended by the treatment's share of the pair."""

    name = "x_learner"

    def _fit(self, X: pd.DataFrame, y: np.ndarray, codes: np.ndarray, e: np.ndarray) -> None:
        super()._fit(X, y, codes, e)
        mu = TLearner.predict_outcomes(self, X)
        control = codes == 0
        for k in range(1, self.n_arms_):
            treated = codes == k
            d1 = y[treated] - mu[treated, 0]  # effect on the treated: y(k) - mu_0
            d0 = mu[control, k] - y[control]  # effect on the controls: mu_k - y(0)
            self.boosters_[f"tau1_{k}"] = self._train(X.loc[treated], d1, "regression", 100 + k)
            self.boosters_[f"tau0_{k}"] = self._train(X.loc[control], d0, "regression", 200 + k)

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        cols = []
        for k in range(1, self.n_arms_):
            g = self.pair_share_[k - 1]  # weight of the control-side model: P(treated k | pair)
            tau0 = self._predict_booster(self.boosters_[f"tau0_{k}"], X)
            tau1 = self._predict_booster(self.boosters_[f"tau1_{k}"], X)
            cols.append(g * tau0 + (1 - g) * tau1)
        return np.column_stack(cols)


class TransformedOutcome(UpliftLearner):
    """A direct uplift method: per treatment, a least-squares model of the transformed outcome
    ``z = y (w - e) / (e (1 - e))`` on the units of the pair (control, treatment), whose
    expectation given the covariates is the effect."""

    name = "transformed_outcome"

    def _fit(self, X: pd.DataFrame, y: np.ndarray, codes: np.ndarray, e: np.ndarray) -> None:
        for k in range(1, self.n_arms_):
            rows = (codes == 0) | (codes == k)
            p = e[rows, k] / (e[rows, k] + e[rows, 0])
            w = (codes[rows] == k).astype(float)
            z = y[rows] * (w - p) / (p * (1 - p))
            self.boosters_[f"tau_{k}"] = self._train(X.loc[rows], z, "regression", 300 + k)

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack(
            [self._predict_booster(self.boosters_[f"tau_{k}"], X) for k in range(1, self.n_arms_)]
        )


class MultiClassTransformation(UpliftLearner):
    """One multi-class model of (arm, outcome) for a binary outcome: class ``2 k + y``.

    Under randomisation ``P(A=k, Y=1 | x) = e_k P(Y=1 | A=k, x)``, so each arm's outcome
    probability is the class probability over the arm's share (the arms' shares in the training
    units; with per-unit propensities their mean stands in). The trees are shared by all arms.
    """

    name = "multiclass_transformation"

    def _fit(self, X: pd.DataFrame, y: np.ndarray, codes: np.ndarray, e: np.ndarray) -> None:
        if not self.binary_:
            raise ConfigError(
                "multiclass_transformation models a binary outcome (0/1) only; choose another "
                "learner for a continuous outcome."
            )
        self.arm_share_ = [float(v) for v in e.mean(axis=0)]
        label = (codes * 2 + (y > 0)).astype(float)
        extra = {"num_class": 2 * self.n_arms_}
        self.boosters_["classes"] = self._train(X, label, "multiclass", 600, extra)

    def predict_outcomes(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "boosters_")
        proba = self._predict_booster(self.boosters_["classes"], X).reshape(len(X), -1)
        return np.column_stack(
            [proba[:, 2 * k + 1] / self.arm_share_[k] for k in range(self.n_arms_)]
        )

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        mu = self.predict_outcomes(X)
        return mu[:, 1:] - mu[:, :1]

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "arm_share": list(self.arm_share_)}

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.arm_share_ = [float(v) for v in state["arm_share"]]


class DRLearner(UpliftLearner):
    """Per treatment, a least-squares model of the doubly robust pseudo-outcome over all units.

    The outcome models behind the pseudo-outcomes are T-learners cross-fitted on two halves of
    the training units (each unit's pseudo-outcome uses the models fitted on the other half), so
    that no unit's own outcome leaks into its pseudo-outcome's model part.
    """

    name = "dr_learner"

    #: halves of the training units the outcome models are cross-fitted on
    folds: ClassVar[int] = 2

    def _fit(self, X: pd.DataFrame, y: np.ndarray, codes: np.ndarray, e: np.ndarray) -> None:
        n, arms = len(y), self.n_arms_
        rng = np.random.default_rng([int(self.random_state), 500])
        fold = np.zeros(n, dtype=np.int64)
        for k in range(arms):  # every arm in every fold
            idx = np.flatnonzero(codes == k)
            fold[rng.permutation(idx)] = np.arange(len(idx)) % self.folds
        mu = np.zeros((n, arms))
        for f in range(self.folds):
            fit, out = fold != f, fold == f
            if len(np.unique(codes[fit])) < arms:  # an arm too small to split: no cross-fit
                fit = np.ones(n, dtype=bool)
            outcome = TLearner(**self.get_params()).fit(
                X.loc[fit].reset_index(drop=True), y[fit], codes[fit], propensity=e[fit]
            )
            mu[out] = outcome.predict_outcomes(X.loc[out].reset_index(drop=True))
        control = codes == 0
        for k in range(1, arms):
            treated = codes == k
            phi = (
                mu[:, k]
                - mu[:, 0]
                + treated * (y - mu[:, k]) / e[:, k]
                - control * (y - mu[:, 0]) / e[:, 0]
            )
            self.boosters_[f"tau_{k}"] = self._train(X, phi, "regression", 400 + k)

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack(
            [self._predict_booster(self.boosters_[f"tau_{k}"], X) for k in range(1, self.n_arms_)]
        )


class SegmentLearner(UpliftLearner):
    """Each treatment's effect in each segment of the columns the user names: no model, the rule
    a marketer writes by hand, measured on the training units.

    A segment is a combination of the named columns' values (a number with more than
    :attr:`max_levels` values is cut at its training quartiles). Its effect of treatment ``k``
    is the difference of the propensity-weighted (Hajek) mean outcomes of arm ``k`` and the
    control among its units; a segment with fewer than ``min_child_samples`` units in either
    arm, or one not seen in training, gets the overall difference instead. The LightGBM
    parameters are accepted (every learner takes them) and unused.

    Parameters
    ----------
    segments : sequence of str
        Covariates (columns of ``X``) whose values make the segments, e.g. ``("mens", "womens")``.
    """

    name = "segments"
    #: a numeric column with more distinct values than this is cut at its quartiles
    max_levels: ClassVar[int] = 10

    def __init__(
        self,
        segments: tuple[str, ...] | list[str] = (),
        outcome: str = "auto",
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 50,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 30,
        validation_fraction: float = 0.2,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        super().__init__(
            outcome=outcome,
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            reg_lambda=reg_lambda,
            early_stopping_rounds=early_stopping_rounds,
            validation_fraction=validation_fraction,
            random_state=random_state,
            n_jobs=n_jobs,
        )
        self.segments = segments

    def _keys(self, X: pd.DataFrame) -> np.ndarray:
        parts = []
        for col in self.columns_:
            values = X[col]
            edges = self.edges_.get(col)
            if edges is not None:
                num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
                part = np.where(np.isnan(num), -1, np.searchsorted(edges, num, side="right"))
                parts.append(part.astype(str))
            else:
                parts.append(values.astype("string").fillna("<missing>").to_numpy(dtype=object))
        keys = pd.Series(parts[0], dtype=object).astype(str)
        for part in parts[1:]:
            keys = keys + "|" + pd.Series(part, dtype=object).astype(str)
        return keys.to_numpy(dtype=object)

    def _fit(self, X: pd.DataFrame, y: np.ndarray, codes: np.ndarray, e: np.ndarray) -> None:
        columns = [str(c) for c in self.segments]
        missing = [c for c in columns if c not in X.columns]
        need = "The segments learner needs the covariates its segments are made of: "
        if not columns:
            raise ConfigError(need + "name them (--segments COL,COL).")
        if missing:
            raise ConfigError(
                need + f"{', '.join(map(repr, missing))} not among them ({', '.join(X.columns)})."
            )
        self.columns_ = columns
        self.edges_: dict[str, list[float]] = {}
        for col in columns:
            values = X[col]
            if pd.api.types.is_numeric_dtype(values) and values.nunique() > self.max_levels:
                q = np.nanquantile(values.to_numpy(dtype=float), [0.25, 0.5, 0.75])
                self.edges_[col] = [float(v) for v in np.unique(q)]
        keys = self._keys(X)
        w = (codes[:, None] == np.arange(self.n_arms_)[None, :]) / e

        def effects(rows: np.ndarray) -> list[float] | None:
            n = np.bincount(codes[rows], minlength=self.n_arms_)
            if n.min() < int(self.min_child_samples):
                return None
            means = (w[rows] * y[rows, None]).sum(axis=0) / w[rows].sum(axis=0)
            return [float(means[k] - means[0]) for k in range(1, self.n_arms_)]

        overall = effects(np.ones(len(y), dtype=bool))
        if overall is None:  # too few units per arm even overall: plain means
            means = [float(y[codes == k].mean()) for k in range(self.n_arms_)]
            overall = [means[k] - means[0] for k in range(1, self.n_arms_)]
        self.overall_ = overall
        self.cells_: dict[str, list[float]] = {}
        for key in np.unique(keys):
            cell = effects(keys == key)
            self.cells_[str(key)] = overall if cell is None else cell

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        keys = self._keys(X)
        return np.array([self.cells_.get(str(k), self.overall_) for k in keys], dtype=float)

    def get_state(self) -> dict[str, Any]:
        return {
            **super().get_state(),
            "columns": list(self.columns_),
            "edges": {c: list(v) for c, v in self.edges_.items()},
            "cells": {k: list(v) for k, v in self.cells_.items()},
            "overall": list(self.overall_),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.columns_ = [str(c) for c in state["columns"]]
        self.edges_ = {str(c): [float(x) for x in v] for c, v in state["edges"].items()}
        self.cells_ = {str(k): [float(x) for x in v] for k, v in state["cells"].items()}
        self.overall_ = [float(x) for x in state["overall"]]


#: the learners by name (``--models``)
UPLIFT_LEARNERS: dict[str, type[UpliftLearner]] = {
    cls.name: cls
    for cls in (
        SLearner,
        TLearner,
        XLearner,
        TransformedOutcome,
        SCategoricalLearner,
        DRLearner,
        MultiClassTransformation,
    )
}
#: every learner class by name: the model learners and the segments one, which needs the
#: covariates of its segments (``segments=``, ``--segments``) and so is never in a default list
LEARNER_CLASSES: dict[str, type[UpliftLearner]] = {
    **UPLIFT_LEARNERS,
    SegmentLearner.name: SegmentLearner,
}
#: the learners :func:`~retention.strategies.evaluate_uplift` fits unless told otherwise
DEFAULT_UPLIFT_MODELS: tuple[str, ...] = (
    "s_learner",
    "t_learner",
    "x_learner",
    "transformed_outcome",
)


def _learner_class(name: str) -> type[UpliftLearner]:
    try:
        return LEARNER_CLASSES[name]
    except KeyError:
        raise ConfigError(
            f"Unknown uplift model {name!r}; choose from {', '.join(UPLIFT_LEARNERS)}."
        ) from None


def make_uplift_learner(name: str, params: Mapping[str, Any]) -> UpliftLearner:
    """A new learner of :data:`LEARNER_CLASSES` by name, given the parameters it takes out of
    ``params`` (the shared LightGBM ones, and ``segments`` for the segments learner only)."""
    cls = _learner_class(name)
    accepted = set(cls._get_param_names())
    return cls(**{k: v for k, v in params.items() if k in accepted})


def get_uplift_learner(name: str, **params: Any) -> UpliftLearner:
    """A new learner by name (a key of :data:`UPLIFT_LEARNERS`: ``s_learner``, ``t_learner``,
    ``x_learner``, ``transformed_outcome``, ``s_learner_categorical``, ``dr_learner``,
    ``multiclass_transformation``; or ``segments``, :class:`SegmentLearner`)."""
    return _learner_class(name)(**params)


def uplift_learner_from_state(state: dict[str, Any]) -> UpliftLearner:
    """Rebuild a fitted learner from :meth:`UpliftLearner.get_state` (data only, no code)."""
    try:
        cls = LEARNER_CLASSES[str(state["learner"])]
        learner = cls(**dict(state["params"]))
        learner._set_state(state)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"Cannot rebuild the uplift model from its stored state ({exc}): retrain it with "
            "`retention uplift train`."
        ) from None
    return learner

"""The targeting rule as one fitted model, stored as data: what ``retention uplift train`` keeps.

:func:`~retention.strategies.evaluate_uplift` chooses a :class:`PolicyRule` on the training half
(which learners, their mean or one, raw or calibrated per treatment, how far each unit's
differences between treatments are shrunk). :class:`UpliftPolicyModel` is that rule made a model:

* ``UpliftPolicyModel(rule=rule).fit(X, y, arm)`` refits everything the rule learns from the units
  on the units given: the cross-fitted scores of its learners give the calibration lines, each
  treatment's average effect and the anchor (as :func:`choose_policy_rule` computed them), then
  every learner it averages is fitted on all units. Fitted on a training half with the settings of
  the evaluation, it gives back the evaluation's rule and the policy's very scores.
* ``UpliftPolicyModel()`` (no rule) chooses the rule by cross-fitting first, as the evaluation does.
* :meth:`UpliftPolicyModel.predict` is the rule's uplift per treatment (the members' mean, then
  calibrated and shrunk): what the policy ranks and what ``uplift_scores`` holds.
* :meth:`~UpliftPolicyModel.get_state` / :func:`uplift_policy_from_state` turn it into plain data
  and back (the rule as numbers, each learner as LightGBM model text; no code). A state written
  before the rule was stored (one learner: ``{"learner": ...}``) reads as the rule "that learner's
  raw scores", which is what such a model scored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from retention.exceptions import ConfigError, DataError, ModelError
from retention.models import check_is_fitted
from retention.strategies._uplift import (
    DEFAULT_UPLIFT_MODELS,
    LEARNER_CLASSES,
    UPLIFT_LEARNERS,
    UpliftLearner,
    make_uplift_learner,
    uplift_learner_from_state,
)
from retention.strategies._uplift_eval import (
    POLICY_FOLDS,
    POLICY_SHRINKAGE,
    PolicyRule,
    choose_policy_rule,
    cross_fit_scores,
    fold_of_units,
    refit_policy_rule,
)

__all__ = ["UPLIFT_POLICY_FORMAT", "UpliftPolicyModel", "uplift_policy_from_state"]

#: the ``format`` key of a stored rule's state (a learner stored alone has none)
UPLIFT_POLICY_FORMAT = "uplift_policy/1"

_RETRAIN = "retrain it with `retention uplift train`"


class UpliftPolicyModel(BaseEstimator):
    """A targeting rule and the learners it reads, fitted on randomised units.

    Parameters
    ----------
    rule : PolicyRule, optional
        The rule to refit (its members, ``calibrated`` and ``shrinkage`` are kept; what it learned
        from units is learned again). None: the rule is chosen by cross-fitting among ``models``.
    models : sequence of str
        The learners to choose from when ``rule`` is None.
    folds : int
        Folds of the cross-fitting (0: none; then the rule must read raw, unshrunk scores).
    share, value_per_outcome, send_cost : as for :func:`target_policy` (the rule's value and
        anchor depend on them).
    shrinkage : sequence of float
        Shrinkages tried when ``rule`` is None.
    model_params : mapping, optional
        Keyword arguments of every learner (``random_state`` defaults to ``random_state``).
    random_state : int
        Seed of the folds and of the learners.
    nested : bool
        Value the rules nested (and try the ``stack`` when choosing), as
        ``evaluate_uplift(nested_values=True)``; False: as its default.
    """

    def __init__(
        self,
        rule: PolicyRule | None = None,
        *,
        models: Sequence[str] = DEFAULT_UPLIFT_MODELS,
        folds: int = POLICY_FOLDS,
        share: float = 0.3,
        value_per_outcome: float = 1.0,
        send_cost: Sequence[float] | None = None,
        shrinkage: Sequence[float] = POLICY_SHRINKAGE,
        model_params: Mapping[str, Any] | None = None,
        random_state: int = 0,
        nested: bool = False,
    ) -> None:
        self.rule = rule
        self.models = models
        self.folds = folds
        self.share = share
        self.value_per_outcome = value_per_outcome
        self.send_cost = send_cost
        self.shrinkage = shrinkage
        self.model_params = model_params
        self.random_state = random_state
        self.nested = nested

    # ------------------------------------------------------------------ fit
    def _names(self) -> list[str]:
        names = list(self.rule.members) if self.rule is not None else list(self.models)
        unknown = [m for m in names if m not in LEARNER_CLASSES]
        if unknown or not names:
            raise ConfigError(
                f"Unknown uplift model(s) {', '.join(unknown) or '(none given)'}; choose from "
                f"{', '.join(UPLIFT_LEARNERS)}."
            )
        return list(dict.fromkeys(names))

    def _params(self) -> dict[str, Any]:
        params = dict(self.model_params or {})
        params.setdefault("random_state", int(self.random_state))
        return params

    def fit(
        self, X: pd.DataFrame, y: Any, arm: Any, *, propensity: Any = None
    ) -> UpliftPolicyModel:
        """Refit the rule (or choose it) and fit its learners on every unit given.

        Parameters
        ----------
        X : pd.DataFrame
            Covariates (``FeatureEncoder.transform``).
        y : array-like
            Outcome per unit.
        arm : array-like of int
            0 for the control, 1..K-1 for the treatments.
        propensity : array-like (n, K), optional
            Default: the arms' shares (complete randomisation).
        """
        names = self._names()
        folds = self.folds
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 0 or folds == 1:
            raise ConfigError(
                f"folds must be 0 (no cross-fitting) or an integer >= 2; got {folds!r}."
            )
        if not 0 < float(self.share) < 1:
            raise ConfigError(f"share must be in (0, 1); got {self.share!r}.")
        yv = np.asarray(y, dtype=float)
        codes = np.asarray(arm)
        if codes.dtype.kind not in "iu" or len(codes) != len(yv) or len(X) != len(yv):
            raise ConfigError(
                "arm must hold integer codes (0 = control), one per row of X and y; got "
                f"{len(X)} rows, {len(yv)} outcomes and {len(codes)} arms."
            )
        codes = codes.astype(np.int64)
        if len(codes) == 0 or codes.min() < 0:
            raise DataError("arm must use the codes 0 (control) to K-1, with at least one unit.")
        n_arms = int(codes.max()) + 1
        if propensity is None:
            e = np.tile(np.bincount(codes, minlength=n_arms) / len(codes), (len(codes), 1))
        else:
            e = np.asarray(propensity, dtype=float)
        params = self._params()
        rule = self.rule
        vpo = float(self.value_per_outcome)
        send = None if self.send_cost is None else [float(c) for c in self.send_cost]
        self.rules_tried_: list[PolicyRule] = []
        if folds >= 2:
            X = X.reset_index(drop=True)
            oof, mu = cross_fit_scores(names, params, X, yv, codes, e, folds, self.random_state)
            fold = fold_of_units(codes, yv, folds, self.random_state)
            nested = bool(self.nested)
            if rule is None:
                rule, self.rules_tried_ = choose_policy_rule(
                    oof,
                    yv,
                    codes,
                    e,
                    mu,
                    float(self.share),
                    value_per_outcome=vpo,
                    send_cost=send,
                    shrinkage=self.shrinkage,
                    folds=fold,
                    nested=nested,
                )
            else:
                rule = refit_policy_rule(
                    rule,
                    oof,
                    yv,
                    codes,
                    e,
                    mu,
                    float(self.share),
                    value_per_outcome=vpo,
                    send_cost=send,
                    folds=fold if nested else None,
                )
        else:
            if rule is None:
                if len(names) != 1:
                    raise ConfigError(
                        "Without cross-fitting (folds=0) pass the rule, or one learner in models."
                    )
                rule = PolicyRule(model=names[0], members=(names[0],))
            if rule.calibrated or (rule.shrinkage > 0 and n_arms > 2):
                raise ConfigError(
                    f"The rule {rule.label} learns its calibration or shrinkage from cross-fitted "
                    "scores: pass folds >= 2."
                )
            rule = PolicyRule(model=rule.model, members=tuple(rule.members))
        self.rule_ = rule
        self.learners_: dict[str, UpliftLearner] = {}
        X = X.reset_index(drop=True)
        for name in rule.members:
            learner = make_uplift_learner(name, params)
            self.learners_[name] = learner.fit(X, yv, codes, propensity=e)
        self.n_arms_ = n_arms
        return self

    # ------------------------------------------------------------------ predict
    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        """The rule's input: its learners' uplift (their mean, or the stack's weighted sum per
        treatment), ``(n, K - 1)``."""
        check_is_fitted(self, "learners_")
        return self.rule_.scores({m: self.learners_[m].predict(X) for m in self.rule_.members})

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The rule's uplift per treatment against the control, ``(n, K - 1)``: its learners'
        mean, calibrated and shrunk as the rule says (what the policy ranks)."""
        return self.rule_.adjust(self.predict_raw(X))

    def predict_outcomes(self, X: pd.DataFrame) -> np.ndarray | None:
        """Expected outcome under each arm ``(n, K)``: the mean of the learners that model it
        (None when none does)."""
        check_is_fitted(self, "learners_")
        found = [
            o
            for o in (self.learners_[m].predict_outcomes(X) for m in self.rule_.members)
            if o is not None
        ]
        return np.mean(found, axis=0) if found else None

    # ------------------------------------------------------------------ state as data
    def get_state(self) -> dict[str, Any]:
        """JSON-ready data (``allow_nan=False`` accepts it): the format, the rule's numbers, each
        learner's :meth:`~UpliftLearner.get_state` (LightGBM model text) and the settings."""
        check_is_fitted(self, "learners_")
        rule = self.rule_.to_dict()
        if not math.isfinite(float(rule["cross_fitted_value"])):
            rule["cross_fitted_value"] = None
        return {
            "format": UPLIFT_POLICY_FORMAT,
            "rule": rule,
            "n_arms": int(self.n_arms_),
            "learners": {m: self.learners_[m].get_state() for m in self.rule_.members},
            "settings": {
                "folds": int(self.folds),
                "share": float(self.share),
                "value_per_outcome": float(self.value_per_outcome),
                "send_cost": None if self.send_cost is None else [float(c) for c in self.send_cost],
                "random_state": int(self.random_state),
                "model_params": dict(self.model_params or {}),
                "nested": bool(self.nested),
            },
        }

    @classmethod
    def from_learner(cls, learner: UpliftLearner) -> UpliftPolicyModel:
        """A fitted learner as the rule "its raw scores" (how a single stored learner scores)."""
        check_is_fitted(learner, "boosters_")
        rule = PolicyRule(model=learner.name, members=(learner.name,))
        model = cls(rule=rule, folds=0)
        model.rule_ = rule
        model.learners_ = {learner.name: learner}
        model.n_arms_ = int(learner.n_arms_)
        return model


def uplift_policy_from_state(state: Mapping[str, Any]) -> UpliftPolicyModel:
    """Rebuild a fitted :class:`UpliftPolicyModel` from :meth:`~UpliftPolicyModel.get_state`, or
    from a single learner's state (``{"learner": ...}``: a model stored before the rule was).

    Raises
    ------
    ModelError
        An unknown format, a malformed rule or learner, or a rule whose learners or number of
        treatments do not match.
    """
    if not isinstance(state, Mapping):
        raise ModelError(f"The stored uplift model is not a JSON object: {_RETRAIN}.")
    fmt = state.get("format")
    if fmt is None and "rule" not in state:
        learner_state = state.get("learner", state)
        if not isinstance(learner_state, Mapping):
            raise ModelError(f"The stored uplift learner is malformed: {_RETRAIN}.")
        return UpliftPolicyModel.from_learner(uplift_learner_from_state(dict(learner_state)))
    if fmt != UPLIFT_POLICY_FORMAT:
        raise ModelError(
            f"The stored uplift model has format {fmt!r}; this version reads "
            f"{UPLIFT_POLICY_FORMAT!r} and single learners: upgrade retention, or {_RETRAIN}."
        )
    rule = PolicyRule.from_dict(state.get("rule") or {})
    learners = state.get("learners")
    if not isinstance(learners, Mapping) or set(learners) != set(rule.members):
        raise ModelError(
            f"The stored rule {rule.label} averages {', '.join(rule.members)} but the state holds "
            f"the learners {', '.join(map(str, learners or {})) or 'none'}: {_RETRAIN}."
        )
    settings = state.get("settings") or {}
    try:
        n_arms = int(state["n_arms"])
        model = UpliftPolicyModel(
            rule=rule,
            folds=int(settings.get("folds", POLICY_FOLDS)),
            share=float(settings.get("share", 0.3)),
            value_per_outcome=float(settings.get("value_per_outcome", 1.0)),
            send_cost=settings.get("send_cost"),
            model_params=dict(settings.get("model_params") or {}),
            random_state=int(settings.get("random_state", 0)),
            nested=bool(settings.get("nested", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"The stored uplift model is malformed ({type(exc).__name__}: {exc}): {_RETRAIN}."
        ) from None
    fitted = {m: uplift_learner_from_state(dict(learners[m])) for m in rule.members}
    n_treat = n_arms - 1
    wrong = [m for m, lr in fitted.items() if int(lr.n_arms_) != n_arms]
    sizes = [len(v) for v in (rule.intercept, rule.slope, rule.arm_effect) if len(v)]
    if wrong or any(s != n_treat for s in sizes) or not 0 <= rule.anchor < max(n_treat, 1):
        raise ModelError(
            f"The stored rule {rule.label} does not match its learners' {n_treat} treatment(s): "
            f"{_RETRAIN}."
        )
    model.rule_ = replace(rule)
    model.learners_ = fitted
    model.n_arms_ = n_arms
    return model

"""The whole uplift protocol on one randomised campaign: fit, choose, measure, target, prove.

:func:`evaluate_uplift` splits the units at random into a training and a held-out half
(stratified by arm and outcome; a campaign's outcomes all follow its one assignment date, so a
random split leaks no future into the past), and then:

1. fits every learner on 70% of the training half and chooses the one with the best mean Qini
   coefficient on the other 30% (the held-out half plays no part in the choice);
2. refits every learner on the whole training half and measures each on the held-out half per
   treatment: Qini coefficient, uplift AUUC, both raw areas, uplift at 30%;
3. with two treatments or more, chooses the targeting rule by cross-fitting on the training half
   only (:func:`choose_policy_rule`): every learner is fitted on all folds but one and scores the
   one left out; each learner, and the mean of them all, is tried raw and with its uplift calibrated
   per treatment (a straight line from the score to the doubly robust pseudo-outcome), and, with
   several treatments, with each customer's differences between treatments shrunk toward the average
   difference (0, half, all the way: the noisy choice of treatment falls back on the better one on
   average); the rule whose policy has the largest doubly robust value on the left-out folds is kept
   (``nested_values=True``: each rule valued nested, what it learns from units fitted on the other
   folds for each fold's units, and the ``stack`` of all learners tried too: non-negative weights
   per treatment fitted by least squares to the doubly robust pseudo-outcomes); with one
   treatment the ranking is all there is to choose: the chosen model's, by validation Qini;
4. targets the held-out units with that rule (``policy``) and with each learner's raw scores
   (``model:NAME``): at most ``share`` of them get the treatment with the largest expected net
   gain (uplift x value per outcome - cost per send), when positive, ranked by that gain;
5. values those policies by IPW and doubly robust estimation, in the same run as random targeting
   of as many units, "everyone gets the best single treatment" and "nobody", with paired
   bootstrap intervals. Random targeting is defined three ways, which coincide with one
   treatment: ``random`` gives random units the policy's own mix of treatments (the ``ratio``
   column), ``random_best_single`` gives them the treatment with the best average net gain on the
   training half, ``random_uniform`` a treatment drawn uniformly (``ratio_vs_...`` columns).

The difference of each treatment's mean outcome from the control's (Welch interval and p-value)
is measured on all units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import progress_bar
from retention.exceptions import ConfigError, ModelError
from retention.strategies._budget import optimise_budget
from retention.strategies._policy import (
    PolicyComparison,
    dr_contributions,
    evaluate_policies,
    one_hot_policy,
)
from retention.strategies._uplift import (
    DEFAULT_UPLIFT_MODELS,
    LEARNER_CLASSES,
    UPLIFT_LEARNERS,
    SegmentLearner,
    TLearner,
    UpliftLearner,
    make_uplift_learner,
)
from retention.strategies._uplift_data import (
    FeatureEncoder,
    UpliftData,
    design_propensity,
    estimate_propensity,
)
from retention.strategies._uplift_metrics import (
    qini_area,
    qini_auc_score,
    qini_curve,
    uplift_area,
    uplift_at_k,
    uplift_auc_score,
)

__all__ = [
    "POLICY_FOLDS",
    "POLICY_SHRINKAGE",
    "PolicyRule",
    "UpliftEvaluation",
    "choose_policy_rule",
    "cross_fit_scores",
    "difference_in_means",
    "dr_pseudo_outcomes",
    "evaluate_uplift",
    "fold_of_units",
    "refit_policy_rule",
    "stratified_split",
    "target_policy",
]

#: share of units of the uplift@k figure in the JSON (``uplift_at_30``)
UPLIFT_AT = 0.3
#: points kept per curve for the report
CURVE_POINTS = 200
#: folds of the training half the targeting rule is cross-fitted on
POLICY_FOLDS = 3
#: shrinkage of each unit's differences between treatments toward the average difference, tried
#: by the cross-fitted choice of the targeting rule (with two treatments or more)
POLICY_SHRINKAGE = (0.0, 0.5, 1.0)
#: the name of the mean of all learners' uplift among the candidate rules
ENSEMBLE = "ensemble"
#: the name of the stacked combination of all learners' uplift among the candidate rules
STACK = "stack"


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def stratified_split(
    codes: np.ndarray, y: np.ndarray, fraction: float, random_state: int
) -> np.ndarray:
    """A boolean mask holding ``fraction`` of the units of every (arm, outcome non-zero) stratum,
    drawn at random."""
    rng = np.random.default_rng(random_state)
    mask = np.zeros(len(codes), dtype=bool)
    strata = codes * 2 + (np.asarray(y) != 0)
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        take = round(fraction * len(idx))
        mask[rng.permutation(idx)[:take]] = True
    return mask


def difference_in_means(
    y: np.ndarray, treated: np.ndarray, level: float = 0.95
) -> dict[str, float]:
    """Treatment minus control mean, with a Welch interval and two-sided p-value."""
    from scipy import stats

    a, b = y[treated], y[~treated]
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    if se > 0:
        dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        q = float(stats.t.ppf(0.5 + level / 2, dof))
        p = float(2 * stats.t.sf(abs(diff) / se, dof))
    else:
        q, p = 0.0, (1.0 if diff == 0 else 0.0)
    return {
        "estimate": diff,
        "low": diff - q * se,
        "high": diff + q * se,
        "p_value": p,
        "treatment_mean": float(a.mean()),
        "control_mean": float(b.mean()),
        "n_treatment": len(a),
        "n_control": len(b),
    }


def target_policy(
    uplift: np.ndarray,
    share: float,
    *,
    value_per_outcome: float = 1.0,
    send_cost: Sequence[float] | None = None,
) -> np.ndarray:
    """The arm per unit (0 = none) when at most ``share`` of the units are treated, each with
    the treatment of largest positive net gain ``uplift * value_per_outcome - send_cost``, chosen
    by the budget optimiser (one send per treated unit; the budget is the count)."""
    n, m = uplift.shape
    costs = np.zeros(m) if send_cost is None else np.asarray(send_cost, dtype=float)
    net = uplift * float(value_per_outcome) - costs[None, :]
    alloc = optimise_budget(net, np.ones_like(net), budget=float(np.floor(share * n)))
    return alloc.choice + 1


def _thin(
    x: np.ndarray, q: np.ndarray, points: int = CURVE_POINTS
) -> tuple[list[float], list[float]]:
    if len(x) <= points:
        return x.tolist(), q.tolist()
    keep = np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))
    return x[keep].tolist(), q[keep].tolist()


def dr_pseudo_outcomes(
    y: np.ndarray, codes: np.ndarray, propensity: np.ndarray, mu: np.ndarray
) -> np.ndarray:
    """Each unit's doubly robust estimate of each treatment's effect, shape ``(n, K - 1)``:
    ``mu_k - mu_0 + 1[A=k] (y - mu_k) / e_k - 1[A=0] (y - mu_0) / e_0`` (``mu`` fitted on other
    units); their mean over a group estimates the group's effect without bias."""
    yv, a, e, m = (np.asarray(v, dtype=float) for v in (y, codes, propensity, mu))
    control = a == 0
    return np.column_stack(
        [
            m[:, k]
            - m[:, 0]
            + (a == k) * (yv - m[:, k]) / e[:, k]
            - control * (yv - m[:, 0]) / e[:, 0]
            for k in range(1, e.shape[1])
        ]
    )


@dataclass(frozen=True)
class PolicyRule:
    """How uplift scores become a targeting policy; chosen on the training half by
    :func:`choose_policy_rule`.

    Attributes
    ----------
    model : str
        The learner whose scores the rule reads, ``ensemble`` (the mean of ``members``) or
        ``stack`` (a weighted sum of them per treatment, ``weights``).
    members : tuple of str
        The learners averaged (one for a single learner).
    calibrated : bool
        Whether each treatment's score is mapped by ``intercept + slope * score``.
    intercept, slope : tuple of float
        Per treatment: the straight line from the score to the doubly robust pseudo-outcome,
        fitted on the cross-fitted scores of the training half (slope at least 0).
    shrinkage : float
        Share (0..1) by which each unit's differences between a treatment and the anchor are
        pulled toward the average difference.
    anchor : int
        The treatment (0-based column) with the best average net gain on the training half.
    arm_effect : tuple of float
        Each treatment's average effect on the training half (mean pseudo-outcome).
    weights : tuple of tuple of float
        ``stack`` only: per treatment, each member's weight (at least 0), fitted by non-negative
        least squares of the doubly robust pseudo-outcome on the members' cross-fitted scores.
    value : float
        The rule's policy value on the training half: net gain per unit by doubly robust
        estimation on the cross-fitted scores (NaN when the rule was not cross-fitted).
    """

    model: str
    members: tuple[str, ...]
    calibrated: bool = False
    intercept: tuple[float, ...] = ()
    slope: tuple[float, ...] = ()
    shrinkage: float = 0.0
    anchor: int = 0
    arm_effect: tuple[float, ...] = ()
    value: float = float("nan")
    weights: tuple[tuple[float, ...], ...] = ()

    @property
    def label(self) -> str:
        """``model|shrink0.5|calibrated``: how the benchmark and the JSON name the rule."""
        return f"{self.model}|shrink{self.shrinkage:g}|{'calibrated' if self.calibrated else 'raw'}"

    def scores(self, uplift: Mapping[str, np.ndarray]) -> np.ndarray:
        """The rule's raw input: the member's uplift, the mean of the members', or (``stack``)
        their weighted sum per treatment."""
        if self.weights:
            w = np.asarray(self.weights, dtype=float)  # (K - 1, members)
            stacked = np.stack([np.asarray(uplift[m], dtype=float) for m in self.members], -1)
            return np.einsum("ntm,tm->nt", stacked, w)
        return np.mean([np.asarray(uplift[m], dtype=float) for m in self.members], axis=0)

    def adjust(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated and shrunk uplift per treatment, shape as ``scores`` ``(n, K - 1)``."""
        u = np.asarray(scores, dtype=float)
        if self.calibrated:
            u = np.asarray(self.intercept)[None, :] + np.asarray(self.slope)[None, :] * u
        if self.shrinkage > 0 and u.shape[1] > 1:
            lam, b = float(self.shrinkage), int(self.anchor)
            mean_diff = np.asarray(self.arm_effect) - self.arm_effect[b]
            u = u[:, [b]] + (1 - lam) * (u - u[:, [b]]) + lam * mean_diff[None, :]
        return u

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.label,
            "model": self.model,
            "members": list(self.members),
            "calibrated": self.calibrated,
            "intercept": list(self.intercept),
            "slope": list(self.slope),
            "shrinkage": self.shrinkage,
            "anchor": self.anchor,
            "arm_effect": list(self.arm_effect),
            "cross_fitted_value": self.value,
            "weights": [list(w) for w in self.weights],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyRule:
        """The rule of :meth:`to_dict` (``cross_fitted_value`` None reads as NaN).

        Raises
        ------
        ModelError
            A key is missing or holds a value of the wrong kind.
        """
        try:
            members = tuple(str(m) for m in data["members"])
            value = data.get("cross_fitted_value")
            rule = cls(
                model=str(data["model"]),
                members=members,
                calibrated=_as_bool(data["calibrated"]),
                intercept=tuple(float(v) for v in data["intercept"]),
                slope=tuple(float(v) for v in data["slope"]),
                shrinkage=float(data["shrinkage"]),
                anchor=int(data["anchor"]),
                arm_effect=tuple(float(v) for v in data["arm_effect"]),
                value=float("nan") if value is None else float(value),
                weights=tuple(tuple(float(v) for v in w) for w in data.get("weights") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"The stored targeting rule is malformed ({type(exc).__name__}: {exc}): retrain "
                "it with `retention uplift train`."
            ) from None
        bad_weights = rule.weights and (
            any(len(w) != len(members) for w in rule.weights)
            or len(rule.weights) != len(rule.intercept)
        )
        if (
            not members
            or (rule.calibrated and len(rule.intercept) != len(rule.slope))
            or bad_weights
        ):
            raise ModelError(
                "The stored targeting rule names no learner or has a calibration of the wrong "
                "length: retrain it with `retention uplift train`."
            )
        if not 0.0 <= rule.shrinkage <= 1.0:
            raise ModelError(
                f"The stored targeting rule's shrinkage must be in [0, 1]; got {rule.shrinkage!r}: "
                "retrain it with `retention uplift train`."
            )
        return rule

    def describe(self, treatments: Sequence[str] | None = None) -> str:
        """The rule in plain words (``treatments``: the names of the score's columns)."""
        if self.weights:
            what = (
                f"a stacked sum of {len(self.members)} learners' uplift "
                f"({', '.join(self.members)}; non-negative weights per treatment fitted to the "
                "doubly robust effect)"
            )
        elif self.model == ENSEMBLE or len(self.members) > 1:
            what = f"the mean uplift of {len(self.members)} learners ({', '.join(self.members)})"
        else:
            what = f"the uplift of the {self.members[0]}"
        how = (
            "calibrated per treatment (a straight line from the score to the doubly robust "
            "effect, fitted on cross-fitted scores)"
            if self.calibrated
            else "as scored (not calibrated)"
        )
        parts = [f"{what}, {how}"]
        n_treat = len(self.arm_effect) or (len(treatments) if treatments else 0)
        if self.shrinkage > 0 and n_treat > 1:
            anchor = (
                repr(treatments[self.anchor])
                if treatments and self.anchor < len(treatments)
                else f"treatment {self.anchor + 1}"
            )
            parts.append(
                f"each customer's differences between treatments shrunk "
                f"{100 * self.shrinkage:.0f}% toward the average difference (anchor {anchor}, "
                "the best on average)"
            )
        return "; ".join(parts)


def _calibration(raw: np.ndarray, phi: np.ndarray) -> tuple[list[float], list[float]]:
    """Per treatment, the straight line (slope at least 0) from the score to the pseudo-outcome."""
    intercept, slope = [], []
    for j in range(raw.shape[1]):
        x, t = raw[:, j], phi[:, j]
        var = float(np.var(x))
        b = max(float(np.cov(x, t, bias=True)[0, 1]) / var, 0.0) if var > 0 else 0.0
        intercept.append(float(t.mean() - b * x.mean()))
        slope.append(b)
    return intercept, slope


def _stack_weights(
    oof: Mapping[str, np.ndarray], members: Sequence[str], phi: np.ndarray, rows: np.ndarray
) -> tuple[list[list[float]], list[float]]:
    """Per treatment, non-negative weights of the members' scores and an intercept: the least
    squares fit of the pseudo-outcome on the scores of ``rows`` (centred, so the intercept is
    free)."""
    from scipy.optimize import nnls

    weights, intercept = [], []
    for j in range(phi.shape[1]):
        A = np.column_stack([np.asarray(oof[m], dtype=float)[rows, j] for m in members])
        t = phi[rows, j]
        centre = A.mean(axis=0)
        w, _ = nnls(A - centre, t - t.mean())
        weights.append([float(v) for v in w])
        intercept.append(float(t.mean() - w @ centre))
    return weights, intercept


def _fit_rule(
    template: PolicyRule,
    oof: Mapping[str, np.ndarray],
    phi: np.ndarray,
    rows: np.ndarray,
    value_per_outcome: float,
    costs: np.ndarray,
) -> PolicyRule:
    """``template``'s rule (model, members, calibrated, shrinkage) with everything it learns from
    units fitted on ``rows``: each treatment's average effect and the anchor, the calibration
    lines (raw scores: none), or the stack's weights and intercepts."""
    arm_effect = phi[rows].mean(axis=0)
    anchor = int(np.argmax(arm_effect * float(value_per_outcome) - costs))
    members = tuple(template.members)
    lam = float(template.shrinkage) if phi.shape[1] > 1 else 0.0
    common = {
        "model": template.model,
        "members": members,
        "shrinkage": lam,
        "anchor": anchor,
        "arm_effect": tuple(float(v) for v in arm_effect),
    }
    if template.model == STACK or template.weights:
        weights, offset = _stack_weights(oof, members, phi, rows)
        return PolicyRule(
            **common,  # type: ignore[arg-type]
            calibrated=True,
            intercept=tuple(offset),
            slope=tuple(1.0 for _ in offset),
            weights=tuple(tuple(w) for w in weights),
        )
    intercept: list[float] = []
    slope: list[float] = []
    if template.calibrated:
        raw = np.mean([np.asarray(oof[m], dtype=float)[rows] for m in members], axis=0)
        intercept, slope = _calibration(raw, phi[rows])
    return PolicyRule(
        **common,  # type: ignore[arg-type]
        calibrated=template.calibrated,
        intercept=tuple(intercept),
        slope=tuple(slope),
    )


def _fit_and_value(
    template: PolicyRule,
    oof: Mapping[str, np.ndarray],
    phi: np.ndarray,
    folds: np.ndarray | None,
    context: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    share: float,
    value_per_outcome: float,
    costs: np.ndarray,
) -> PolicyRule:
    """The rule fitted on every unit, with its doubly robust value on these units.

    With ``folds`` the value is nested: each fold's scores are adjusted by the rule as fitted on
    the other folds (calibration, stack weights, average effects), so that what the rule learns
    from the units is not valued on the same units; without, in-sample."""
    n = len(phi)
    rule = _fit_rule(template, oof, phi, np.ones(n, dtype=bool), value_per_outcome, costs)
    if folds is None:
        adjusted = rule.adjust(rule.scores(oof))
    else:
        adjusted = np.zeros_like(phi)
        for f in np.unique(folds):
            out = folds == f
            part = _fit_rule(template, oof, phi, ~out, value_per_outcome, costs)
            adjusted[out] = part.adjust(part.scores({m: np.asarray(oof[m])[out] for m in oof}))
    y, codes, propensity, mu, nobody = context
    arm = target_policy(
        adjusted, share, value_per_outcome=value_per_outcome, send_cost=costs.tolist()
    )
    pi = one_hot_policy(arm, phi.shape[1] + 1)
    gain = dr_contributions(y, codes, propensity, pi, mu) - nobody
    spent = np.r_[0.0, costs][arm]
    return replace(rule, value=float(np.mean(gain * float(value_per_outcome) - spent)))


def _rule_inputs(
    oof: Mapping[str, np.ndarray],
    y: np.ndarray,
    codes: np.ndarray,
    propensity: np.ndarray,
    mu: np.ndarray,
    send_cost: Sequence[float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(costs, phi, nobody)`` shared by every rule on these units."""
    costs = (
        np.zeros(next(iter(oof.values())).shape[1])
        if send_cost is None
        else np.asarray(send_cost, dtype=float)
    )
    phi = dr_pseudo_outcomes(y, codes, propensity, mu)
    nobody = dr_contributions(
        y, codes, propensity, one_hot_policy(np.zeros(len(y), int), phi.shape[1] + 1), mu
    )
    return costs, phi, nobody


def choose_policy_rule(
    oof: Mapping[str, np.ndarray],
    y: np.ndarray,
    codes: np.ndarray,
    propensity: np.ndarray,
    mu: np.ndarray,
    share: float,
    *,
    value_per_outcome: float = 1.0,
    send_cost: Sequence[float] | None = None,
    shrinkage: Sequence[float] = POLICY_SHRINKAGE,
    folds: np.ndarray | None = None,
    nested: bool = True,
) -> tuple[PolicyRule, list[PolicyRule]]:
    """Choose the targeting rule by its policy's doubly robust value on cross-fitted scores.

    Parameters
    ----------
    oof : mapping of learner name to array (n, K - 1)
        Each learner's uplift for the units of the training half, every unit scored by a model
        fitted without it (cross-fitting).
    y, codes, propensity : the training half's outcome, arm codes and ``(n, K)`` propensities.
    mu : array (n, K)
        Cross-fitted outcome predictions per arm (for the pseudo-outcomes).
    share, value_per_outcome, send_cost : as for :func:`target_policy`.
    shrinkage : sequence of float
        Shrinkages tried (with two treatments or more).
    folds : array of int (n,), optional
        The fold of each unit in the cross-fitting. Given (and ``nested``), every rule is valued
        nested: what it learns from units (calibration lines, average effects, stack weights) is
        fitted on the other folds for each fold's units, so that a rule that learns more is not
        favoured by valuing it on the units it learned from; and with two learners or more the
        ``stack`` rule is tried too (non-negative weights per treatment, fitted by least squares
        to the pseudo-outcomes). Without folds every value is in-sample, and no stack is tried.
    nested : bool
        False: in-sample values even when ``folds`` are given (and no stack).

    Returns
    -------
    rule : PolicyRule
        The best rule (the first of equals, in the order tried: learners as given, then the
        ensemble, then the stack; raw before calibrated; less shrinkage first), fitted on every
        unit.
    tried : list of PolicyRule
        Every rule tried, in that order, each with its cross-fitted ``value`` (net gain per unit).
    """
    if not oof:
        raise ConfigError("Pass the cross-fitted scores of at least one learner.")
    names = list(oof)
    costs, phi, nobody = _rule_inputs(oof, y, codes, propensity, mu, send_cost)
    fold = None if folds is None or not nested else np.asarray(folds)
    context = (y, codes, propensity, mu, nobody)
    candidates: list[tuple[str, tuple[str, ...], tuple[bool, ...]]] = [
        (m, (m,), (False, True)) for m in names
    ]
    if len(names) > 1:
        candidates.append((ENSEMBLE, tuple(names), (False, True)))
        if fold is not None:
            candidates.append((STACK, tuple(names), (True,)))
    levels = sorted({float(v) for v in shrinkage} | {0.0}) if phi.shape[1] > 1 else [0.0]
    tried: list[PolicyRule] = []
    for model, members, kinds in candidates:
        for calibrated in kinds:
            for lam in levels:
                template = PolicyRule(model, members, calibrated=calibrated, shrinkage=lam)
                tried.append(
                    _fit_and_value(
                        template,
                        {m: oof[m] for m in members},
                        phi,
                        fold,
                        context,
                        share,
                        value_per_outcome,
                        costs,
                    )
                )
    best = tried[0]
    for rule in tried[1:]:
        if rule.value > best.value:
            best = rule
    return best, tried


def refit_policy_rule(
    rule: PolicyRule,
    oof: Mapping[str, np.ndarray],
    y: np.ndarray,
    codes: np.ndarray,
    propensity: np.ndarray,
    mu: np.ndarray,
    share: float,
    *,
    value_per_outcome: float = 1.0,
    send_cost: Sequence[float] | None = None,
    folds: np.ndarray | None = None,
) -> PolicyRule:
    """The same rule (members, raw, calibrated or stacked, shrinkage) with what it learns from the
    units refitted on these cross-fitted scores: the calibration lines (or stacking weights), each
    treatment's average effect, the anchor, and its doubly robust value here (nested with
    ``folds``, as :func:`choose_policy_rule` values it).

    ``refit_policy_rule(best, oof, ...)`` on the scores and folds :func:`choose_policy_rule`
    chose ``best`` from gives ``best`` back."""
    missing = [m for m in rule.members if m not in oof]
    if missing:
        raise ConfigError(
            f"The rule {rule.label} averages {', '.join(missing)}: pass their cross-fitted scores."
        )
    mine = {m: oof[m] for m in rule.members}
    costs, phi, nobody = _rule_inputs(mine, y, codes, propensity, mu, send_cost)
    template = PolicyRule(
        rule.model,
        tuple(rule.members),
        calibrated=rule.calibrated,
        shrinkage=rule.shrinkage,
        weights=rule.weights,
    )
    return _fit_and_value(
        template,
        mine,
        phi,
        None if folds is None else np.asarray(folds),
        (y, codes, propensity, mu, nobody),
        share,
        value_per_outcome,
        costs,
    )


def fold_of_units(codes: np.ndarray, y: np.ndarray, k: int, random_state: int) -> np.ndarray:
    """Fold number per unit of :func:`cross_fit_scores`: every (arm, outcome non-zero) stratum
    dealt evenly over ``k`` folds at random (seeded by ``random_state``)."""
    rng = np.random.default_rng([int(random_state), 7919])
    fold = np.zeros(len(codes), dtype=np.int64)
    strata = codes * 2 + (np.asarray(y) != 0)
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % k
    return fold


@dataclass(frozen=True)
class UpliftEvaluation:
    """What :func:`evaluate_uplift` measured.

    Attributes
    ----------
    data : UpliftData
        The campaign.
    features : list of str
        Covariates the models learned from.
    dropped : dict of str to str
        Columns left out, with the reason.
    propensity : str
        ``design`` (the arms' shares), ``estimated`` or the name of a column.
    differences : dict
        Per treatment: :func:`difference_in_means` on all units.
    metrics : pd.DataFrame
        Held-out metrics, index ``(model, treatment)``: ``qini``, ``qini_area``, ``auuc``,
        ``uplift_area``, ``uplift_at_30``.
    selection : dict of str to float
        Mean Qini coefficient of each model on the validation part of the training half.
    chosen : str
        The model with the best selection score.
    policy : PolicyComparison
        Values of the policies on the held-out half.
    share : float
        Most share of units the policy treats.
    curves : dict
        ``{(model, treatment): (x, qini)}`` on the held-out half, thinned for plotting; the
        random baseline is the line to the last point.
    n_train, n_test : int
        Units in each half.
    costs : dict of str to float
        Cost per send of each treatment used by the policy.
    value_per_outcome : float
        Value of one unit of outcome for the policy.
    settings : dict
        Seed, test size, bootstrap resamples, model names.
    rule : PolicyRule
        The targeting rule of the ``policy`` row, chosen by cross-fitting on the training half.
    rule_search : list of PolicyRule
        Every rule tried, each with its cross-fitted value (empty without cross-fitting).
    held_out : dict
        For reuse (benchmarks): ``test`` (mask of the held-out units), ``uplift`` (each
        learner's scores on them), ``mu`` (the outcome model of the DR estimates), ``choice``
        (what the cross-fitted choice read on the training half: ``oof`` scores, ``mu``,
        ``folds``; empty without cross-fitting).
    """

    data: UpliftData
    features: list[str]
    dropped: dict[str, str]
    propensity: str
    differences: dict[str, dict[str, float]]
    metrics: pd.DataFrame
    selection: dict[str, float]
    chosen: str
    policy: PolicyComparison
    share: float
    curves: dict[tuple[str, str], tuple[list[float], list[float]]]
    n_train: int
    n_test: int
    costs: dict[str, float] = field(default_factory=dict)
    value_per_outcome: float = 1.0
    settings: dict[str, Any] = field(default_factory=dict)
    rule: PolicyRule | None = None
    rule_search: list[PolicyRule] = field(default_factory=list)
    held_out: dict[str, Any] = field(default_factory=dict)

    def policy_warnings(self) -> list[str]:
        """Plain-words warnings on the policy values (also ``policy.warnings`` of the JSON):
        the policy gains nothing over treating nobody on the held-out units, or random
        targeting does not, so that the ratios to it are left out."""
        out: list[str] = []
        gains = {key: float(v) for key, v in self.policy.table["incremental"].items()}
        if ("policy", "ipw") in gains:
            gain = gains[("policy", "ipw")]
            if gain <= 0:
                out.append(
                    f"The policy gains nothing over treating nobody on the held-out units (IPW "
                    f"gain {gain:.4g}): treating nobody is the better choice on this data."
                )
        ref = self.policy.reference
        if ref is not None and (ref, "ipw") in gains:
            gain = gains[(ref, "ipw")]
            if gain <= 0:
                out.append(
                    f"Random targeting ({ref}) gains nothing over treating nobody (IPW gain "
                    f"{gain:.4g}): no ratio to it is given, since a ratio of two losses would read "
                    "as a gain."
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per treatment the ``difference`` and, per model, ``qini`` and
        ``uplift_at_30`` (the contract of ``retention uplift evaluate --json``); the targeting
        rule of the ``policy`` row as ``chosen_rule`` (its label) with its description, and in
        full under ``policy.rule``."""
        treatments: dict[str, Any] = {}
        for t in self.data.treatments:
            per_model = {}
            for m in self.metrics.index.get_level_values(0).unique():
                row = self.metrics.loc[(m, t)]
                per_model[str(m)] = {k: float(v) for k, v in row.items()}
            treatments[t] = {
                "difference": self.differences[t],
                "models": per_model,
            }
        models = {
            m: {
                "validation_qini": float(self.selection[m]),
                "mean_qini": float(self.metrics.xs(m, level=0)["qini"].mean()),
                "mean_uplift_at_30": float(self.metrics.xs(m, level=0)["uplift_at_30"].mean()),
            }
            for m in self.selection
        }
        return {
            "outcome": self.data.outcome,
            "outcome_type": "binary" if self.data.binary else "continuous",
            "treatment_column": self.data.treatment,
            "control": self.data.control,
            "n_units": len(self.data.frame),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "treatments": treatments,
            "models": models,
            "chosen_model": self.chosen,
            "chosen_rule": None if self.rule is None else self.rule.label,
            "chosen_rule_description": (
                None if self.rule is None else self.rule.describe(self.data.treatments)
            ),
            "policy": {
                "share": self.share,
                "costs": self.costs,
                "value_per_outcome": self.value_per_outcome,
                "rule": None if self.rule is None else self.rule.to_dict(),
                "rules_tried": {r.label: r.value for r in self.rule_search},
                **self.policy.to_dict(),
                "warnings": self.policy_warnings(),
            },
            "features": self.features,
            "dropped": self.dropped,
            "propensity": self.propensity,
            "settings": self.settings,
        }


def _fit_predict(
    name: str,
    params: Mapping[str, Any],
    X_fit: pd.DataFrame,
    y_fit: np.ndarray,
    a_fit: np.ndarray,
    e_fit: np.ndarray,
    X_pred: pd.DataFrame,
) -> tuple[UpliftLearner, np.ndarray]:
    learner = make_uplift_learner(name, params).fit(X_fit, y_fit, a_fit, propensity=e_fit)
    return learner, learner.predict(X_pred)


def _mean_qini(y: np.ndarray, codes: np.ndarray, uplift: np.ndarray) -> float:
    scores = []
    for k in range(1, uplift.shape[1] + 1):
        rows = (codes == 0) | (codes == k)
        scores.append(qini_auc_score(y[rows], uplift[rows, k - 1], codes[rows] == k))
    return float(np.nanmean(scores))


def cross_fit_scores(
    names: Sequence[str],
    params: Mapping[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    codes: np.ndarray,
    e: np.ndarray,
    folds: int,
    random_state: int,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Cross-fitted scores: every learner of ``names`` (and a T-learner, for the outcomes per
    arm) fitted on all folds but one scores the fold left out.

    Returns ``(oof, mu)``: each learner's uplift ``(n, K - 1)`` and the outcome per arm
    ``(n, K)``, every unit scored by models fitted without it. The folds deal every (arm,
    outcome non-zero) stratum evenly and depend on ``random_state`` only."""
    fold = fold_of_units(codes, y, folds, random_state)
    n_arms = e.shape[1]
    oof = {name: np.zeros((len(y), n_arms - 1)) for name in names}
    mu = np.zeros((len(y), n_arms))
    with progress_bar(transient=True) as bar:
        task = bar.add_task("cross-fitting the targeting rule", total=folds * (len(names) + 1))
        for f in range(folds):
            fit, out = fold != f, fold == f
            X_fit, X_out = X.loc[fit].reset_index(drop=True), X.loc[out].reset_index(drop=True)
            for name in names:
                oof[name][out] = _fit_predict(
                    name, params, X_fit, y[fit], codes[fit], e[fit], X_out
                )[1]
                bar.advance(task)
            outcome = make_uplift_learner(TLearner.name, params).fit(
                X_fit, y[fit], codes[fit], propensity=e[fit]
            )
            mu[out] = outcome.predict_outcomes(X_out)
            bar.advance(task)
    return oof, mu


def _cross_fitted_rule(
    names: Sequence[str],
    params: Mapping[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    codes: np.ndarray,
    e: np.ndarray,
    folds: int,
    random_state: int,
    share: float,
    value_per_outcome: float,
    send: Sequence[float],
    nested: bool = False,
) -> tuple[PolicyRule, list[PolicyRule], dict[str, Any]]:
    """:func:`cross_fit_scores` on the training half, then :func:`choose_policy_rule` on the
    scores of the left-out folds; also returns what the choice read (for reuse)."""
    oof, mu = cross_fit_scores(names, params, X, y, codes, e, folds, random_state)
    fold = fold_of_units(codes, y, folds, random_state)
    rule, tried = choose_policy_rule(
        oof,
        y,
        codes,
        e,
        mu,
        share,
        value_per_outcome=value_per_outcome,
        send_cost=send,
        folds=fold,
        nested=nested,
    )
    return rule, tried, {"oof": oof, "mu": mu, "folds": fold}


def evaluate_uplift(
    data: UpliftData,
    features: Sequence[str],
    *,
    models: Sequence[str] = DEFAULT_UPLIFT_MODELS,
    policy_models: Sequence[str] | None = None,
    policy_folds: int | None = None,
    nested_values: bool = False,
    segments: Sequence[str] = (),
    share: float = 0.3,
    test_size: float = 0.5,
    propensity: str | np.ndarray | None = None,
    costs: Mapping[str, float] | None = None,
    value_per_outcome: float = 1.0,
    model_params: Mapping[str, Any] | None = None,
    n_boot: int = 500,
    random_state: int = 0,
    dropped: Mapping[str, str] | None = None,
) -> UpliftEvaluation:
    """Run the protocol of this module on a checked campaign.

    Parameters
    ----------
    data : UpliftData
        From :func:`check_uplift_frame`.
    features : sequence of str
        Covariates (from :func:`choose_features`).
    models : sequence of str
        Learner names (:data:`UPLIFT_LEARNERS`), measured on the held-out half and chosen from by
        validation Qini.
    policy_models : sequence of str, optional
        The learners the targeting rule is chosen from (default: ``models``); those not in
        ``models`` are fitted for the policy only.
    policy_folds : int, optional
        Folds of the training half the rule is cross-fitted on; 0: no cross-fitting, the policy
        is the chosen model's raw scores (as ``model:NAME``). Default: :data:`POLICY_FOLDS` when
        there are two treatments or more (a treatment to choose per unit), 0 with one (the
        ranking is then all there is to choose, and the validation Qini measures exactly that).
    nested_values : bool
        False (the default): each candidate rule is valued on the cross-fitted scores of the
        training half with what it learned from them (calibration lines, average effects) fitted
        on the same units. True: valued nested (those fitted on the other folds for each fold's
        units) and the ``stack`` of all learners tried too (see :func:`choose_policy_rule`);
        measured on Hillstrom in ``benchmarks/uplift.py``.
    segments : sequence of str
        Covariates whose values make segments the user targets by: the ``segments`` learner
        (:class:`~retention.strategies.SegmentLearner`, each segment's effects measured on the
        training units) joins ``models`` and the rule search.
    share : float
        Most share of the held-out units the policy treats (and random targeting treats).
    test_size : float
        Share of units held out.
    propensity : None, "estimate", or array (n, K)
        None: the design's arm shares (complete randomisation); ``"estimate"``: cross-fitted from
        the covariates, with an overlap warning; an array: known per-unit probabilities.
    costs : mapping of treatment to cost per send, optional
    value_per_outcome : float
        Value of one unit of outcome (a visit, a conversion, one currency unit of spend).
    model_params : mapping, optional
        Keyword arguments for every learner (e.g. ``{"n_estimators": 100}``).
    n_boot : int
        Bootstrap resamples of the policy values.
    random_state : int
        Seed of the splits, the learners and the bootstrap.
    dropped : mapping, optional
        Columns left out by :func:`choose_features`, reported as given.
    """
    names = list(models)
    pnames = list(dict.fromkeys(names if policy_models is None else policy_models))
    segs = [str(c) for c in segments]
    if segs:  # the rule over the user's segments joins the models and the rule search
        for group in (names, pnames):
            if SegmentLearner.name not in group:
                group.append(SegmentLearner.name)
    elif SegmentLearner.name in names + pnames:
        raise ConfigError(
            "The segments learner needs the covariates of its segments: pass segments= "
            "(--segments COL,COL)."
        )
    unknown = [m for m in names + pnames if m not in LEARNER_CLASSES]
    if unknown or not names or not pnames:
        raise ConfigError(
            f"Unknown uplift model(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(UPLIFT_LEARNERS)}."
        )
    if not 0 < float(share) < 1:
        raise ConfigError(f"share must be in (0, 1); got {share!r}.")
    if policy_folds is not None and (
        isinstance(policy_folds, bool) or not isinstance(policy_folds, int) or policy_folds < 0
    ):
        raise ConfigError(f"policy_folds must be None, 0 or an integer >= 2; got {policy_folds!r}.")
    if policy_folds == 1:
        raise ConfigError("policy_folds must be 0 (no cross-fitting) or at least 2; got 1.")
    if not 0.1 <= float(test_size) <= 0.9:
        raise ConfigError(f"test_size must be in [0.1, 0.9]; got {test_size!r}.")
    cost_map = {t: float((costs or {}).get(t, 0.0)) for t in data.treatments}
    unknown_cost = sorted(set(costs or {}) - set(data.treatments))
    if unknown_cost:
        raise ConfigError(
            f"--cost names treatment(s) {', '.join(map(repr, unknown_cost))} that the data does "
            f"not have; its treatments are {', '.join(map(repr, data.treatments))}."
        )
    params = dict(model_params or {})
    params.setdefault("random_state", random_state)
    frame, codes, y = data.frame, data.codes, data.y
    n_arms = len(data.arms)
    test = stratified_split(codes, y, float(test_size), random_state)
    train = ~test
    encoder = FeatureEncoder(list(features)).fit(frame.loc[train])
    if segs:
        params["segments"] = encoder.encoded(segs)
    X = encoder.transform(frame).reset_index(drop=True)
    if propensity is None:
        e, prop_label = design_propensity(codes, n_arms), "design"
    elif isinstance(propensity, str) and propensity == "estimate":
        e, prop_label = (
            estimate_propensity(X, codes, n_arms, random_state=random_state),
            "estimated",
        )
    else:
        e = np.asarray(propensity, dtype=float)
        prop_label = "given"
    X_tr, X_te = X.loc[train].reset_index(drop=True), X.loc[test].reset_index(drop=True)
    y_tr, y_te = y[train], y[test]
    a_tr, a_te = codes[train], codes[test]
    e_tr, e_te = e[train], e[test]

    inner_valid = stratified_split(a_tr, y_tr, 0.3, random_state + 1)
    inner_fit = ~inner_valid
    selection: dict[str, float] = {}
    rows = []
    curves: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    fitted: dict[str, UpliftLearner] = {}
    uplift_test: dict[str, np.ndarray] = {}
    with progress_bar(transient=True) as bar:
        task = bar.add_task("fitting uplift models", total=2 * len(names))
        for name in names:
            _, u_val = _fit_predict(
                name,
                params,
                X_tr.loc[inner_fit].reset_index(drop=True),
                y_tr[inner_fit],
                a_tr[inner_fit],
                e_tr[inner_fit],
                X_tr.loc[inner_valid].reset_index(drop=True),
            )
            selection[name] = _mean_qini(y_tr[inner_valid], a_tr[inner_valid], u_val)
            bar.advance(task)
            learner, u_te = _fit_predict(name, params, X_tr, y_tr, a_tr, e_tr, X_te)
            fitted[name], uplift_test[name] = learner, u_te
            bar.advance(task)
            for k, t in enumerate(data.treatments, start=1):
                pair = (a_te == 0) | (a_te == k)
                yy, uu, tt = y_te[pair], u_te[pair, k - 1], (a_te[pair] == k)
                rows.append(
                    {
                        "model": name,
                        "treatment": t,
                        "qini": qini_auc_score(yy, uu, tt),
                        "qini_area": qini_area(yy, uu, tt),
                        "auuc": uplift_auc_score(yy, uu, tt),
                        "uplift_area": uplift_area(yy, uu, tt),
                        "uplift_at_30": uplift_at_k(yy, uu, tt, UPLIFT_AT),
                    }
                )
                curves[(name, t)] = _thin(*qini_curve(yy, uu, tt))
    metrics = pd.DataFrame(rows).set_index(["model", "treatment"])
    finite = {m: s for m, s in selection.items() if np.isfinite(s)}
    chosen = max(finite, key=lambda m: finite[m]) if finite else names[0]

    # the policy of each model on the held-out half, and the references
    send = [cost_map[t] for t in data.treatments]
    policies: dict[str, np.ndarray] = {}
    for name in names:
        arm = target_policy(
            uplift_test[name], share, value_per_outcome=value_per_outcome, send_cost=send
        )
        policies[f"model:{name}"] = one_hot_policy(arm, n_arms)
    if policy_folds is None:  # a treatment to choose per unit: cross-fit; one treatment: not
        policy_folds = POLICY_FOLDS if n_arms > 2 else 0
    if policy_folds >= 2:
        for name in [m for m in pnames if m not in uplift_test]:  # learners for the policy only
            uplift_test[name] = _fit_predict(name, params, X_tr, y_tr, a_tr, e_tr, X_te)[1]
        rule, search, choice_inputs = _cross_fitted_rule(
            pnames,
            params,
            X_tr,
            y_tr,
            a_tr,
            e_tr,
            policy_folds,
            random_state,
            share,
            value_per_outcome,
            send,
            nested_values,
        )
    else:
        rule = PolicyRule(model=chosen, members=(chosen,))
        search = []
        choice_inputs = {}
    policy_arm = target_policy(
        rule.adjust(rule.scores(uplift_test)),
        share,
        value_per_outcome=value_per_outcome,
        send_cost=send,
    )
    policies["policy"] = one_hot_policy(policy_arm, n_arms)
    mix = policies["policy"].mean(axis=0)
    treated = 1 - mix[0]
    if treated <= 0:  # the policy treats nobody: random targeting of the same share
        mix = np.r_[1 - share, np.full(n_arms - 1, share / (n_arms - 1))]
    policies["random"] = np.tile(mix, (len(y_te), 1))
    ate_train = [
        (y_tr[a_tr == k].mean() - y_tr[a_tr == 0].mean()) * value_per_outcome - send[k - 1]
        for k in range(1, n_arms)
    ]
    best = int(np.argmax(ate_train)) + 1
    reach = float(treated) if treated > 0 else float(share)  # as many units as the policy
    single = np.zeros(n_arms)
    single[0], single[best] = 1 - reach, reach
    policies["random_best_single"] = np.tile(single, (len(y_te), 1))
    policies["random_uniform"] = np.tile(
        np.r_[1 - reach, np.full(n_arms - 1, reach / (n_arms - 1))], (len(y_te), 1)
    )
    policies["everyone_best_single"] = one_hot_policy(np.full(len(y_te), best), n_arms)
    policies["nobody"] = one_hot_policy(np.zeros(len(y_te), dtype=np.int64), n_arms)
    outcome_model = fitted[chosen].predict_outcomes(X_te)
    if outcome_model is None:  # the transformed outcome models no outcome: a T-learner does
        outcome_model = (
            make_uplift_learner(TLearner.name, params)
            .fit(X_tr, y_tr, a_tr, propensity=e_tr)
            .predict_outcomes(X_te)
        )
    comparison = evaluate_policies(
        y_te,
        a_te,
        e_te,
        policies,
        mu=outcome_model,
        reference="random",
        other_references=("random_best_single", "random_uniform"),
        n_boot=n_boot,
        random_state=random_state,
    )
    differences = {
        t: difference_in_means(
            y[(codes == 0) | (codes == k)], codes[(codes == 0) | (codes == k)] == k
        )
        for k, t in enumerate(data.treatments, start=1)
    }
    return UpliftEvaluation(
        data=data,
        features=list(features),
        dropped=dict(dropped or {}),
        propensity=prop_label,
        differences=differences,
        metrics=metrics,
        selection=selection,
        chosen=chosen,
        policy=comparison,
        share=float(share),
        curves=curves,
        n_train=int(train.sum()),
        n_test=int(test.sum()),
        costs=cost_map,
        value_per_outcome=float(value_per_outcome),
        settings={
            "random_state": int(random_state),
            "test_size": float(test_size),
            "n_boot": int(n_boot),
            "models": names,
            "policy_models": pnames,
            "policy_folds": int(policy_folds),
            "nested_values": bool(nested_values),
            "segments": segs,
            "best_single_treatment": data.treatments[best - 1],
        },
        rule=rule,
        rule_search=search,
        held_out={
            "test": test,
            "uplift": uplift_test,
            "mu": outcome_model,
            "choice": choice_inputs,
        },
    )

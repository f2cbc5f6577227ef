"""The whole uplift protocol on one randomised campaign: fit, choose, measure, target, prove.

:func:`evaluate_uplift` splits the units at random into a training and a held-out half
(stratified by arm and outcome; a campaign's outcomes all follow its one assignment date, so a
random split leaks no future into the past), and then:

1. fits every learner on 70% of the training half and chooses the one with the best mean Qini
   coefficient on the other 30% (the held-out half plays no part in the choice);
2. refits every learner on the whole training half and measures each on the held-out half per
   treatment: Qini coefficient, uplift AUUC, both raw areas, uplift at 30%;
3. targets the held-out units with the chosen model: at most ``share`` of them get the treatment
   with the largest expected net gain (uplift x value per outcome - cost per send), when positive;
4. values that policy by IPW and doubly robust estimation, in the same run as random targeting of
   as many units with the same mix of treatments, "everyone gets the best single treatment" and
   "nobody", with paired bootstrap intervals (ratios against random targeting included).

The difference of each treatment's mean outcome from the control's (Welch interval and p-value)
is measured on all units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import progress_bar
from retention.exceptions import ConfigError
from retention.strategies._budget import optimise_budget
from retention.strategies._policy import PolicyComparison, evaluate_policies, one_hot_policy
from retention.strategies._uplift import UPLIFT_LEARNERS, TLearner, UpliftLearner
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
    "UpliftEvaluation",
    "difference_in_means",
    "evaluate_uplift",
    "stratified_split",
    "target_policy",
]

#: share of units of the uplift@k figure in the JSON (``uplift_at_30``)
UPLIFT_AT = 0.3
#: points kept per curve for the report
CURVE_POINTS = 200


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per treatment the ``difference`` and, per model, ``qini`` and
        ``uplift_at_30`` (the contract of ``retention uplift evaluate --json``)."""
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
            "policy": {
                "share": self.share,
                "costs": self.costs,
                "value_per_outcome": self.value_per_outcome,
                **self.policy.to_dict(),
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
    learner = UPLIFT_LEARNERS[name](**params).fit(X_fit, y_fit, a_fit, propensity=e_fit)
    return learner, learner.predict(X_pred)


def _mean_qini(y: np.ndarray, codes: np.ndarray, uplift: np.ndarray) -> float:
    scores = []
    for k in range(1, uplift.shape[1] + 1):
        rows = (codes == 0) | (codes == k)
        scores.append(qini_auc_score(y[rows], uplift[rows, k - 1], codes[rows] == k))
    return float(np.nanmean(scores))


def evaluate_uplift(
    data: UpliftData,
    features: Sequence[str],
    *,
    models: Sequence[str] = tuple(UPLIFT_LEARNERS),
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
        Learner names (:data:`UPLIFT_LEARNERS`).
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
    unknown = [m for m in names if m not in UPLIFT_LEARNERS]
    if unknown or not names:
        raise ConfigError(
            f"Unknown uplift model(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(UPLIFT_LEARNERS)}."
        )
    if not 0 < float(share) < 1:
        raise ConfigError(f"share must be in (0, 1); got {share!r}.")
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
    chosen_arm = policies[f"model:{chosen}"]
    mix = chosen_arm.mean(axis=0)
    treated = 1 - mix[0]
    if treated <= 0:  # the chosen model treats nobody: random targeting of the same share
        mix = np.r_[1 - share, np.full(n_arms - 1, share / (n_arms - 1))]
    policies["random"] = np.tile(mix, (len(y_te), 1))
    ate_train = [
        (y_tr[a_tr == k].mean() - y_tr[a_tr == 0].mean()) * value_per_outcome - send[k - 1]
        for k in range(1, n_arms)
    ]
    best = int(np.argmax(ate_train)) + 1
    policies["everyone_best_single"] = one_hot_policy(np.full(len(y_te), best), n_arms)
    policies["nobody"] = one_hot_policy(np.zeros(len(y_te), dtype=np.int64), n_arms)
    outcome_model = fitted[chosen].predict_outcomes(X_te)
    if outcome_model is None:  # the transformed outcome models no outcome: a T-learner does
        outcome_model = (
            TLearner(**params).fit(X_tr, y_tr, a_tr, propensity=e_tr).predict_outcomes(X_te)
        )
    comparison = evaluate_policies(
        y_te,
        a_te,
        e_te,
        policies,
        mu=outcome_model,
        reference="random",
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
            "best_single_treatment": data.treatments[best - 1],
        },
    )

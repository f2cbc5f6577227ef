"""The targeting rule as a stored model (``UpliftPolicyModel``): refitted, it gives back the
evaluation's rule and policy scores; stored as data it scores exactly as in memory; old single
learner states still score; a malformed state is refused with a one-line error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from uplift_synth import campaign_frame, synthetic_campaign

from retention.exceptions import ConfigError, ModelError
from retention.strategies import (
    UPLIFT_POLICY_FORMAT,
    FeatureEncoder,
    PolicyRule,
    SLearner,
    UpliftPolicyModel,
    check_uplift_frame,
    choose_features,
    design_propensity,
    evaluate_uplift,
    target_policy,
    uplift_policy_from_state,
)

FAST = {"n_estimators": 40, "learning_rate": 0.2}


def _round_trip(model: UpliftPolicyModel) -> UpliftPolicyModel:
    text = json.dumps(model.get_state(), sort_keys=True, allow_nan=False)
    return uplift_policy_from_state(json.loads(text))


@pytest.fixture(scope="module")
def three_arms():
    X, arm, y, tau = synthetic_campaign(3000, arms=3, seed=4)
    X = FeatureEncoder(list(X.columns)).fit(X).transform(X).reset_index(drop=True)
    return X, arm, y, tau


@pytest.mark.slow
@pytest.mark.parametrize("nested", [False, True], ids=["in-sample", "nested"])
def test_refitted_rule_is_the_evaluations_rule_and_scores(nested) -> None:
    """Fitted on the evaluation's training half with its settings, the model gives back the rule
    the evaluation chose (calibration, effects, anchor, value) and its policy's very scores."""
    df = campaign_frame(2400, seed=7)
    data = check_uplift_frame(df, treatment="segment", control="none", outcome="outcome")
    features, _ = choose_features(data, ["x0", "x1", "x2", "x3", "grade"])
    ev = evaluate_uplift(
        data,
        features,
        models=("s_learner",),
        policy_models=("s_learner", "t_learner"),
        policy_folds=2,
        nested_values=nested,
        model_params=FAST,
        n_boot=0,
        random_state=3,
    )
    assert ev.rule is not None and ev.rule.members  # cross-fitted
    test = ev.held_out["test"]
    enc = FeatureEncoder(features).fit(data.frame.loc[~test])
    X = enc.transform(data.frame).reset_index(drop=True)
    model = UpliftPolicyModel(
        rule=ev.rule, folds=2, model_params=FAST, random_state=3, nested=nested
    )
    e = design_propensity(data.codes, len(data.arms))[~test]  # the design's, on all units
    model.fit(X.loc[~test].reset_index(drop=True), data.y[~test], data.codes[~test], propensity=e)
    assert model.rule_ == ev.rule  # every number the same, the value included
    expected = ev.rule.adjust(ev.rule.scores(ev.held_out["uplift"]))
    got = model.predict(X.loc[test].reset_index(drop=True))
    assert np.array_equal(got, expected)
    # and the policy of evaluate_uplift is the one these scores give
    treated = np.mean(target_policy(got, 0.3) > 0)
    assert treated == pytest.approx(ev.policy.table.loc[("policy", "ipw")]["treated_share"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "rule",
    [
        PolicyRule("ensemble", ("s_learner", "t_learner"), calibrated=True, shrinkage=0.5),
        PolicyRule("t_learner", ("t_learner",), shrinkage=1.0),
        PolicyRule("stack", ("s_learner", "t_learner"), calibrated=True, shrinkage=0.5),
    ],
    ids=["ensemble-calibrated-shrunk", "one-learner-shrunk", "stack-shrunk"],
)
def test_stored_rule_scores_exactly_as_in_memory_three_arms(three_arms, rule) -> None:
    X, arm, y, _ = three_arms
    model = UpliftPolicyModel(rule=rule, folds=2, model_params=FAST, random_state=1, nested=True)
    model.fit(X, y, arm)
    fitted = model.rule_
    assert (fitted.model, fitted.members, fitted.calibrated) == (
        rule.model,
        rule.members,
        rule.calibrated,
    )
    assert fitted.shrinkage == rule.shrinkage and np.isfinite(fitted.value)
    assert len(fitted.arm_effect) == 2 and len(fitted.slope) == (2 if rule.calibrated else 0)
    assert len(fitted.weights) == (2 if rule.model == "stack" else 0)
    stored = _round_trip(model)
    assert stored.rule_ == fitted
    u = model.predict(X)
    assert u.shape == (len(X), 2)
    assert np.array_equal(stored.predict(X), u)
    assert np.array_equal(stored.predict_outcomes(X), model.predict_outcomes(X))
    # the rule is applied, not only its learners: the raw mean differs from what is scored
    assert not np.allclose(model.predict_raw(X), u)
    assert np.allclose(u, fitted.adjust(model.predict_raw(X)))


@pytest.mark.slow
def test_two_arms_rule_and_choice_by_cross_fitting() -> None:
    X, arm, y, tau = synthetic_campaign(2500, arms=2, seed=2)
    X = FeatureEncoder(list(X.columns)).fit(X).transform(X)
    model = UpliftPolicyModel(
        models=("s_learner", "t_learner"), folds=2, model_params=FAST, nested=True
    )
    model.fit(X, y, arm)
    # 2 learners + their mean, raw or calibrated, and the stack (one treatment: no shrinkage)
    assert len(model.rules_tried_) == 3 * 2 + 1
    assert model.rule_.value == max(r.value for r in model.rules_tried_)
    stored = _round_trip(model)
    u = stored.predict(X)
    assert u.shape == (len(X), 1) and np.array_equal(u, model.predict(X))
    # it learned the effect: units the synthetic treatment helps score higher
    assert u[tau[:, 0] > 0, 0].mean() > u[tau[:, 0] <= 0, 0].mean() + 0.05
    # no cross-fitting: the learner's raw scores, as a single learner scored
    raw = UpliftPolicyModel(
        rule=PolicyRule("s_learner", ("s_learner",)), folds=0, model_params=FAST
    ).fit(X, y, arm)
    alone = SLearner(**FAST).fit(X, y, arm)
    assert np.array_equal(raw.predict(X), alone.predict(X))
    assert np.isnan(raw.rule_.value) and _round_trip(raw).rule_.label == "s_learner|shrink0|raw"


@pytest.mark.slow
def test_seeded_fit_is_deterministic(three_arms) -> None:
    X, arm, y, _ = three_arms
    rule = PolicyRule("ensemble", ("s_learner", "t_learner"), calibrated=True, shrinkage=0.5)

    def state(seed: int) -> str:
        m = UpliftPolicyModel(rule=rule, folds=2, model_params=FAST, random_state=seed)
        return json.dumps(m.fit(X, y, arm).get_state(), sort_keys=True)

    first = state(5)
    assert state(5) == first
    assert state(6) != first  # the seed matters (folds and boosters)


def test_old_single_learner_state_still_scores(three_arms) -> None:
    X, arm, y, _ = three_arms
    learner = SLearner(**FAST).fit(X, y, arm)
    old = json.loads(json.dumps({"learner": learner.get_state(), "encoder": {}}))
    model = uplift_policy_from_state(old)
    assert model.rule_.label == "s_learner|shrink0|raw"
    assert np.array_equal(model.predict(X), learner.predict(X))


def test_malformed_states_are_refused(three_arms) -> None:
    X, arm, y, _ = three_arms
    model = UpliftPolicyModel(
        rule=PolicyRule("ensemble", ("s_learner", "t_learner"), calibrated=True),
        folds=2,
        model_params=FAST,
    ).fit(X, y, arm)
    good = json.loads(json.dumps(model.get_state(), allow_nan=False))
    assert good["format"] == UPLIFT_POLICY_FORMAT

    def bad(change) -> dict:
        state = json.loads(json.dumps(good))
        change(state)
        return state

    cases = {
        "format": lambda s: s.update(format="uplift_policy/99"),
        "a learner missing": lambda s: s["learners"].pop("t_learner"),
        "calibration length": lambda s: s["rule"].update(slope=[1.0]),
        "shrinkage": lambda s: s["rule"].update(shrinkage=2.0),
        "rule type": lambda s: s["rule"].update(calibrated="yes"),
        "treatments": lambda s: s.update(n_arms=4),
        "booster": lambda s: s["learners"]["s_learner"].pop("boosters"),
    }
    for name, change in cases.items():
        with pytest.raises(ModelError, match=r"retrain|upgrade") as info:
            uplift_policy_from_state(bad(change))
        assert "\n" not in str(info.value), name
    with pytest.raises(ConfigError, match="folds >= 2"):
        UpliftPolicyModel(
            rule=PolicyRule("s_learner", ("s_learner",), calibrated=True), folds=0
        ).fit(X, y, arm)

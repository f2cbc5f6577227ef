"""The targeting rule chosen by cross-fitting: calibration, shrinkage of arm differences, the
choice by doubly robust value, and the policy rows of ``evaluate_uplift`` (random targeting three
ways)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from uplift_synth import campaign_frame

from retention.exceptions import ConfigError
from retention.strategies import (
    PolicyRule,
    check_uplift_frame,
    choose_features,
    choose_policy_rule,
    design_propensity,
    dr_pseudo_outcomes,
    evaluate_uplift,
    refit_policy_rule,
    target_policy,
)

FAST = {"n_estimators": 60, "learning_rate": 0.15}


def _campaign(n: int, seed: int, tau: np.ndarray, base: float = 0.2):
    """Three arms assigned with probabilities 1/3; ``tau`` (n, 2) the true effects."""
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, 3, size=n)
    p = base + np.where(arm > 0, tau[np.arange(n), np.maximum(arm - 1, 0)], 0.0)
    y = (rng.random(n) < p).astype(float)
    e = np.full((n, 3), 1 / 3)
    mu = np.column_stack([np.full(n, base), base + tau[:, 0], base + tau[:, 1]])
    return arm, y, e, mu


def test_pseudo_outcomes_are_unbiased_even_with_a_wrong_outcome_model() -> None:
    tau = np.tile([0.10, 0.04], (3000, 1))
    means = []
    for seed in range(60):
        arm, y, e, _ = _campaign(3000, seed, tau)
        means.append(dr_pseudo_outcomes(y, arm, e, np.zeros((3000, 3))).mean(axis=0))
    m = np.asarray(means)
    se = m.std(axis=0, ddof=1) / np.sqrt(len(m))
    assert np.all(np.abs(m.mean(axis=0) - [0.10, 0.04]) < 3.5 * se)
    # and the check can fail: a wrong propensity biases them
    arm, y, e, _ = _campaign(3000, 0, tau)
    wrong = dr_pseudo_outcomes(y, arm, np.tile([0.5, 0.25, 0.25], (3000, 1)), np.zeros((3000, 3)))
    assert abs(wrong.mean(axis=0)[0] - 0.10) > 5 * se[0]


def test_adjust_calibrates_and_shrinks_toward_the_average_difference() -> None:
    u = np.array([[0.10, 0.30], [0.20, 0.00]])
    rule = PolicyRule("m", ("m",), calibrated=True, intercept=(0.0, 0.1), slope=(2.0, 1.0))
    assert np.allclose(rule.adjust(u), [[0.20, 0.40], [0.40, 0.10]])
    # all the way: every unit's difference is the average one, so one treatment wins everywhere
    full = PolicyRule("m", ("m",), shrinkage=1.0, anchor=0, arm_effect=(0.08, 0.05))
    out = full.adjust(u)
    assert np.allclose(out[:, 0], u[:, 0]) and np.allclose(out[:, 1] - out[:, 0], -0.03)
    assert (out.argmax(axis=1) == 0).all()
    half = PolicyRule("m", ("m",), shrinkage=0.5, anchor=0, arm_effect=(0.08, 0.05))
    assert np.allclose(half.adjust(u)[:, 1], [0.10 + 0.5 * 0.20 - 0.015, 0.20 - 0.10 - 0.015])
    # one treatment: nothing to shrink
    assert np.allclose(full.adjust(u[:, :1]), u[:, :1])
    assert rule.label == "m|shrink0|calibrated" and half.label == "m|shrink0.5|raw"


def test_the_rule_follows_the_informative_scores() -> None:
    n = 12000
    rng = np.random.default_rng(3)
    x = rng.random(n)
    tau = np.column_stack([0.15 * (x > 0.7), np.full(n, 0.02)])
    arm, y, e, mu = _campaign(n, 4, tau)
    oof = {"oracle": tau + rng.normal(0, 0.01, tau.shape), "noise": rng.normal(0, 0.05, (n, 2))}
    best, tried = choose_policy_rule(oof, y, arm, e, mu, 0.3, shrinkage=(0.0, 1.0))
    assert len(tried) == 3 * 2 * 2  # (2 learners + the ensemble) x raw/calibrated x 2 shrinkages
    assert best.value == max(r.value for r in tried)
    assert best.model in ("oracle", "ensemble")
    assert best.value > max(r.value for r in tried if r.model == "noise") + 0.01


def test_the_stack_weighs_the_informative_learner_and_refits_to_itself() -> None:
    n = 12000
    rng = np.random.default_rng(8)
    x = rng.random(n)
    tau = np.column_stack([0.15 * (x > 0.7), 0.10 * (x < 0.2)])
    arm, y, e, mu = _campaign(n, 9, tau)
    oof = {
        "oracle": 0.5 * tau + rng.normal(0, 0.01, tau.shape),
        "noise": rng.normal(0, 0.2, (n, 2)),
    }
    folds = np.arange(n) % 3
    best, tried = choose_policy_rule(oof, y, arm, e, mu, 0.3, shrinkage=(0.0,), folds=folds)
    stack = [r for r in tried if r.model == "stack"]
    assert len(tried) == 3 * 2 + 1 and len(stack) == 1
    w = np.asarray(stack[0].weights)  # (treatments, members): oracle first
    assert w.shape == (2, 2) and np.all(w >= 0)
    assert np.all(w[:, 0] > 1.5) and np.all(w[:, 1] < 0.3)  # the oracle's half-size scores x2
    assert stack[0].label == "stack|shrink0|calibrated"
    assert stack[0].value > max(r.value for r in tried if r.model == "noise") + 0.01
    # refitted on the same scores and folds, every rule is itself again
    for rule in (best, stack[0], tried[1]):
        again = refit_policy_rule(rule, oof, y, arm, e, mu, 0.3, folds=folds)
        assert again == rule
    # without folds the stack is not tried (its value would be in-sample)
    assert all(r.model != "stack" for r in choose_policy_rule(oof, y, arm, e, mu, 0.3)[1])


def test_shrinkage_wins_when_arm_differences_are_noise() -> None:
    # treatment 1 is better by 0.05 for everyone; the scores' arm differences are pure noise
    n = 15000
    rng = np.random.default_rng(5)
    x = rng.random(n)
    lift = 0.05 + 0.10 * (x > 0.6)
    tau = np.column_stack([lift, lift - 0.05])
    arm, y, e, mu = _campaign(n, 6, tau)
    noisy = tau + rng.normal(0, 0.08, (n, 2)) * np.array([0.0, 1.0])  # treatment 2 noisy
    best, tried = choose_policy_rule({"m": noisy}, y, arm, e, mu, 0.3)
    assert best.shrinkage > 0
    value = {(r.shrinkage, r.calibrated): r.value for r in tried}
    assert value[(1.0, False)] > value[(0.0, False)]
    # with the shrunk rule, treatment 1 goes to nearly everyone treated
    arm_chosen = target_policy(best.adjust(noisy), 0.3)
    assert np.mean(arm_chosen[arm_chosen > 0] == 1) > 0.9


def test_choose_policy_rule_refuses_no_scores() -> None:
    arm, y, e, mu = _campaign(100, 0, np.zeros((100, 2)))
    with pytest.raises(ConfigError, match="at least one learner"):
        choose_policy_rule({}, y, arm, e, mu, 0.3)


@pytest.fixture(scope="module")
def campaign():
    df = campaign_frame(2000, seed=2)
    data = check_uplift_frame(df, treatment="segment", control="none", outcome="outcome")
    features, _ = choose_features(data, ["x0", "x1", "x2", "x3", "grade"])
    return data, features


@pytest.fixture(scope="module")
def evaluation(campaign):
    data, features = campaign
    return evaluate_uplift(
        data,
        features,
        models=("s_learner", "t_learner"),
        policy_models=("s_learner", "s_learner_categorical"),
        policy_folds=2,
        model_params=FAST,
        n_boot=50,
        random_state=1,
    )


@pytest.mark.slow
def test_evaluate_uplift_policy_rows(evaluation) -> None:
    ev = evaluation
    assert ev.rule is not None
    assert ev.rule.model in ("s_learner", "s_learner_categorical", "ensemble")
    assert len(ev.rule_search) == 3 * 2 * 3
    assert ev.settings["nested_values"] is False
    assert ev.rule.value == max(r.value for r in ev.rule_search)
    assert set(ev.held_out["uplift"]) == {"s_learner", "t_learner", "s_learner_categorical"}
    t = ev.policy.table
    for name in ("policy", "random", "random_best_single", "random_uniform", "model:t_learner"):
        assert (name, "ipw") in t.index and (name, "dr") in t.index
    pol, rnd = t.loc[("policy", "ipw")], t.loc[("random", "ipw")]
    # random targeting treats as many units as the policy, three ways
    for name in ("random", "random_best_single", "random_uniform"):
        assert t.loc[(name, "ipw")]["treated_share"] == pytest.approx(pol["treated_share"])
    assert pol["ratio"] == pytest.approx(pol["incremental"] / rnd["incremental"])
    best = t.loc[("random_best_single", "ipw")]["incremental"]
    assert pol["ratio_vs_random_best_single"] == pytest.approx(pol["incremental"] / best)
    # the rule's policy is the one its scores give
    arm = target_policy(ev.rule.adjust(ev.rule.scores(ev.held_out["uplift"])), 0.3)
    assert pol["treated_share"] == pytest.approx(np.mean(arm > 0))
    d = ev.to_dict()["policy"]
    assert d["rule"]["rule"] == ev.rule.label
    assert isinstance(d["rule"]["cross_fitted_value"], float)
    assert len(pd.Series(d["rules_tried"]).astype(float)) == 18
    # valued nested, the same scores give the stack too (3 shrinkages) and honest values
    choice = ev.held_out["choice"]
    train = ~ev.held_out["test"]
    data = ev.data
    args = (choice["oof"], data.y[train], data.codes[train])
    e = design_propensity(data.codes, 3)[train]
    again, tried = choose_policy_rule(
        *args, e, choice["mu"], 0.3, folds=choice["folds"], nested=False
    )
    assert again == ev.rule and [r.label for r in tried] == [r.label for r in ev.rule_search]
    _, nested = choose_policy_rule(*args, e, choice["mu"], 0.3, folds=choice["folds"])
    assert len(nested) == 18 + 3 and {r.model for r in nested[-3:]} == {"stack"}
    # raw unshrunk rules learn nothing from units: the same value either way
    assert nested[0].label == tried[0].label and nested[0].value == pytest.approx(tried[0].value)
    assert "ratio_vs_random_uniform" in d["policies"]["policy"]["ipw"]


def test_evaluate_uplift_without_cross_fitting_uses_the_chosen_model(campaign) -> None:
    data, features = campaign
    ev = evaluate_uplift(
        data,
        features,
        models=("s_learner", "x_learner"),
        model_params=FAST,
        n_boot=0,
        policy_folds=0,
    )
    assert ev.rule is not None and ev.rule.label == f"{ev.chosen}|shrink0|raw"
    assert ev.rule_search == []
    t = ev.policy.table
    a, b = t.loc[("policy", "ipw")], t.loc[(f"model:{ev.chosen}", "ipw")]
    assert a["incremental"] == pytest.approx(b["incremental"])
    with pytest.raises(ConfigError, match="policy_folds"):
        evaluate_uplift(data, features, policy_folds=1)
    with pytest.raises(ConfigError, match="Unknown uplift model"):
        evaluate_uplift(data, features, policy_models=("causal_forest",))


def test_with_one_treatment_the_policy_is_the_chosen_models_ranking(campaign) -> None:
    data, features = campaign
    frame = data.frame[data.frame["segment"] != "sms"]
    pair = check_uplift_frame(frame, treatment="segment", control="none", outcome="outcome")
    ev = evaluate_uplift(
        pair, features, models=("s_learner", "t_learner"), model_params=FAST, n_boot=0
    )
    assert ev.rule is not None and ev.rule.label == f"{ev.chosen}|shrink0|raw"
    assert ev.rule_search == [] and ev.settings["policy_folds"] == 0
    t = ev.policy.table
    for name in ("random_best_single", "random_uniform"):  # one treatment: the same baseline
        assert t.loc[(name, "ipw")]["incremental"] == pytest.approx(
            t.loc[("random", "ipw")]["incremental"]
        )
    # asked for, the rule is cross-fitted with one treatment too (no shrinkage to try)
    cf = evaluate_uplift(
        pair, features, models=("s_learner",), model_params=FAST, n_boot=0, policy_folds=2
    )
    assert len(cf.rule_search) == 2 and {r.shrinkage for r in cf.rule_search} == {0.0}


def test_a_harmful_campaign_is_said_so_and_gets_no_ratio() -> None:
    df = campaign_frame(3000, seed=5)
    rng = np.random.default_rng(0)
    treated = (df["segment"] != "none").to_numpy()
    df.loc[treated & (rng.random(len(df)) < 0.6), "outcome"] = 0.0  # the e-mails hurt
    data = check_uplift_frame(df, treatment="segment", control="none", outcome="outcome")
    features, _ = choose_features(data, ["x0", "x1", "x2", "x3", "grade"])
    ev = evaluate_uplift(
        data, features, models=("s_learner",), model_params=FAST, n_boot=50, policy_folds=0
    )
    t = ev.policy.table
    assert t.loc[("random", "ipw")]["incremental"] < 0
    assert np.isnan(t.loc[("policy", "ipw")]["ratio"])
    warnings = ev.to_dict()["policy"]["warnings"]
    assert any("Random targeting (random) gains nothing" in w for w in warnings)
    loses = t.loc[("policy", "ipw")]["incremental"] <= 0
    assert loses == any("The policy gains nothing" in w for w in warnings)
    # a campaign that works has no warning
    good = evaluate_uplift(
        check_uplift_frame(
            campaign_frame(3000, seed=5), treatment="segment", control="none", outcome="outcome"
        ),
        features,
        models=("s_learner",),
        model_params=FAST,
        n_boot=50,
        policy_folds=0,
    )
    assert good.policy_warnings() == []


def test_segments_join_the_models_and_the_rule_search(campaign) -> None:
    data, features = campaign
    ev = evaluate_uplift(
        data,
        features,
        models=("s_learner",),
        segments=("grade",),
        policy_folds=2,
        model_params=FAST,
        n_boot=0,
        random_state=3,
    )
    assert ev.settings["segments"] == ["grade"]
    assert "segments" in ev.held_out["uplift"] and "segments" in ev.selection
    assert any(r.model == "segments" for r in ev.rule_search)
    # each grade gets one effect per treatment on the held-out half
    test_grades = data.frame.loc[ev.held_out["test"], "grade"].to_numpy()
    u = ev.held_out["uplift"]["segments"]
    for g in np.unique(test_grades):
        assert len(np.unique(u[test_grades == g], axis=0)) == 1
    with pytest.raises(ConfigError, match="segments learner needs"):
        evaluate_uplift(data, features, models=("segments",), n_boot=0)
    with pytest.raises(ConfigError, match="not among the covariates"):
        evaluate_uplift(data, features, segments=("colour",), n_boot=0)

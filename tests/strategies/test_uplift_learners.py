"""The uplift learners recover a known effect, handle several treatments and continuous
outcomes, follow scikit-learn's conventions, and survive a round trip through plain data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

sys.path.insert(0, str(Path(__file__).parent))
from uplift_synth import synthetic_campaign

from retention.exceptions import ConfigError, DataError, ModelError, NotFittedError
from retention.strategies import (
    UPLIFT_LEARNERS,
    FeatureEncoder,
    get_uplift_learner,
    uplift_learner_from_state,
)

FAST = {"n_estimators": 80, "learning_rate": 0.15}


@pytest.fixture(scope="module")
def binary_three_arms():
    X, arm, y, tau = synthetic_campaign(8000, arms=3, seed=1)
    enc = FeatureEncoder(list(X.columns)).fit(X)
    return enc.transform(X), arm, y, tau


@pytest.mark.parametrize("name", list(UPLIFT_LEARNERS))
def test_learner_ranks_by_the_true_effect(name, binary_three_arms) -> None:
    X, arm, y, tau = binary_three_arms
    # one multi-class model splits its rounds over 2K classes: LightGBM's defaults, not FAST
    params = {} if name == "multiclass_transformation" else FAST
    learner = get_uplift_learner(name, **params).fit(X, y, arm)
    pred = learner.predict(X)
    assert pred.shape == (len(X), 2)
    for k in range(2):
        corr = np.corrcoef(pred[:, k], tau[:, k])[0, 1]
        assert corr > 0.35, f"{name}, treatment {k + 1}: correlation {corr:.2f}"
    # the average effect is about right: treatment 1 and 2 both average 0.15 * 0.5 - 0.03
    assert abs(pred.mean(axis=0) - tau.mean(axis=0)).max() < 0.06  # about 3.5 standard errors


@pytest.mark.parametrize("name", ["s_learner", "x_learner", "transformed_outcome"])
def test_continuous_outcome(name) -> None:
    X, arm, y, tau = synthetic_campaign(3000, arms=2, binary=False, seed=2)
    Xe = FeatureEncoder(list(X.columns)).fit(X).transform(X)
    learner = get_uplift_learner(name, **FAST).fit(Xe, y, arm)
    assert not learner.binary_
    corr = np.corrcoef(learner.predict(Xe)[:, 0], tau[:, 0])[0, 1]
    assert corr > 0.4


def test_state_round_trip_predicts_the_same(binary_three_arms) -> None:
    X, arm, y, _ = binary_three_arms
    for name in UPLIFT_LEARNERS:
        learner = get_uplift_learner(name, **FAST).fit(X, y, arm)
        state = json.loads(json.dumps(learner.get_state()))  # plain data only
        again = uplift_learner_from_state(state)
        assert np.allclose(again.predict(X), learner.predict(X))
        if learner.predict_outcomes(X) is not None:
            assert np.allclose(again.predict_outcomes(X), learner.predict_outcomes(X))


def test_sklearn_conventions(binary_three_arms) -> None:
    X, arm, y, _ = binary_three_arms
    learner = get_uplift_learner("t_learner", num_leaves=7)
    assert learner.get_params()["num_leaves"] == 7
    copy = clone(learner)
    assert copy.get_params() == learner.get_params()
    with pytest.raises(NotFittedError):
        learner.predict(X)
    assert learner.fit(X, y, arm) is learner
    assert not hasattr(copy, "boosters_")


def test_deterministic(binary_three_arms) -> None:
    X, arm, y, _ = binary_three_arms
    a = get_uplift_learner("x_learner", **FAST).fit(X, y, arm).predict(X)
    b = get_uplift_learner("x_learner", **FAST).fit(X, y, arm).predict(X)
    assert np.array_equal(a, b)


def test_bad_parameters_and_data_are_refused(binary_three_arms) -> None:
    X, arm, y, _ = binary_three_arms
    with pytest.raises(ConfigError, match="learning_rate"):
        get_uplift_learner("s_learner", learning_rate=0).fit(X, y, arm)
    with pytest.raises(ConfigError, match="outcome"):
        get_uplift_learner("s_learner", outcome="count").fit(X, y, arm)
    with pytest.raises(ConfigError, match="Unknown uplift model"):
        get_uplift_learner("causal_forest")
    with pytest.raises(DataError, match="code"):
        get_uplift_learner("t_learner").fit(X, y, np.where(arm == 1, 2, arm))
    with pytest.raises(DataError, match="other than 0 and 1"):
        get_uplift_learner("t_learner", outcome="binary").fit(X, y * 2, arm)
    with pytest.raises(ModelError, match="retrain"):
        uplift_learner_from_state({"learner": "s_learner", "params": {"bogus": 1}})


def test_categorical_s_learner_shares_a_split_between_treatments(binary_three_arms) -> None:
    X, arm, y, _ = binary_three_arms
    learner = get_uplift_learner("s_learner_categorical", **FAST).fit(X, y, arm)
    assert learner.boosters_["mu"].pandas_categorical[-1] == [0, 1, 2]  # the arm, one column
    # with two arms it is the S-learner with an indicator: the same splits, the same uplift
    two = arm < 2
    a = get_uplift_learner("s_learner", **FAST).fit(X.loc[two], y[two], arm[two]).predict(X)
    b = get_uplift_learner("s_learner_categorical", **FAST).fit(X.loc[two], y[two], arm[two])
    assert np.allclose(a, b.predict(X), atol=1e-6)


def test_multiclass_transformation_refuses_a_continuous_outcome() -> None:
    X, arm, y, _ = synthetic_campaign(600, arms=2, binary=False, seed=3)
    Xe = FeatureEncoder(list(X.columns)).fit(X).transform(X)
    with pytest.raises(ConfigError, match="binary outcome"):
        get_uplift_learner("multiclass_transformation").fit(Xe, y, arm)


def test_segment_learner_measures_each_segments_effect() -> None:
    from retention.strategies import SegmentLearner, make_uplift_learner

    X, arm, y, _ = synthetic_campaign(6000, arms=3, seed=4)
    enc = FeatureEncoder(list(X.columns)).fit(X)
    Xe = enc.transform(X)
    (grade,) = enc.encoded(["grade"])
    # the shared LightGBM parameters are taken and unused; segments reach this learner only
    learner = make_uplift_learner("segments", {**FAST, "segments": [grade]})
    assert isinstance(learner, SegmentLearner) and learner.n_estimators == FAST["n_estimators"]
    pred = learner.fit(Xe, y, arm).predict(Xe)
    for g in ("a", "b", "c"):
        rows = (X["grade"] == g).to_numpy()
        for k in (1, 2):
            want = y[rows & (arm == k)].mean() - y[rows & (arm == 0)].mean()
            assert pred[rows, k - 1] == pytest.approx(want)  # the design's shares: plain means
    overall = [y[arm == k].mean() - y[arm == 0].mean() for k in (1, 2)]
    # a segment not seen in training gets the overall effect
    unseen = Xe.head(3).copy()
    unseen[grade] = pd.Categorical([None] * 3, categories=Xe[grade].cat.categories)
    assert learner.predict(unseen) == pytest.approx(np.tile(overall, (3, 1)))
    # too few units per arm in every segment: the overall effect everywhere
    thin = SegmentLearner(segments=[grade], min_child_samples=10**6).fit(Xe, y, arm)
    assert thin.predict(Xe) == pytest.approx(np.tile(overall, (len(Xe), 1)))
    # a number of many values is cut at its quartiles: 4 segments
    (x0,) = enc.encoded(["x0"])
    binned = SegmentLearner(segments=[x0]).fit(Xe, y, arm)
    assert len(binned.cells_) == 4 and len(np.unique(binned.predict(Xe)[:, 0])) == 4
    # plain data round trip
    again = uplift_learner_from_state(json.loads(json.dumps(binned.get_state())))
    assert np.array_equal(again.predict(Xe), binned.predict(Xe))
    with pytest.raises(ConfigError, match="name them"):
        SegmentLearner().fit(Xe, y, arm)
    with pytest.raises(ConfigError, match="'colour' not among them"):
        SegmentLearner(segments=["colour"]).fit(Xe, y, arm)
    with pytest.raises(ConfigError, match="not among the covariates"):
        enc.encoded(["colour"])

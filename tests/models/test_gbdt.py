from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from retention_synth import synthetic_frames

from retention.exceptions import ConfigError, ModelError, NotFittedError, RetentionWarning
from retention.features import CutoffFrame
from retention.models import GBDTModel, classification_metrics, get_model

FAST = {"n_estimators": 300, "learning_rate": 0.08, "early_stopping_rounds": 30}


@pytest.fixture(scope="module")
def frames() -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    return synthetic_frames(n_users=400, seed=0)


def test_learns_signal_and_beats_a_constant(frames) -> None:
    train, valid, test = frames
    model = GBDTModel(btyd_features=False, **FAST).fit(train, valid)
    p = model.predict_proba(test)
    m = classification_metrics(test.label.to_numpy(), p)
    base = test.label.mean()
    assert m["roc_auc"] > 0.7
    assert m["brier"] < base * (1 - base)  # better than predicting the base rate
    assert 1 <= model.best_iteration_ < FAST["n_estimators"]  # early stopping stopped it


def test_rfm_feature_set_uses_only_rfm_columns(frames) -> None:
    train, valid, _ = frames
    model = get_model("gbdt_rfm", **FAST).fit(train, valid)
    assert set(model.feature_names_) == {
        "recency_days",
        "frequency_orders",
        "monetary_mean",
        "tenure_days",
    }
    families = GBDTModel(feature_set=["recency", "windows"], btyd_features=False, **FAST)
    families.fit(train, valid)
    assert families.feature_names_ == ["recency_days", "w90d_orders"]


def test_transform_features_is_what_the_booster_sees(frames) -> None:
    train, valid, test = frames
    model = GBDTModel(btyd_features=False, calibration=None, **FAST).fit(train, valid)
    X = model.transform_features(test)
    assert list(X.columns) == model.feature_names_
    assert X.index.equals(test.users)
    raw = model.booster_.predict(X.to_numpy(), num_iteration=model.best_iteration_)
    np.testing.assert_allclose(model.predict_proba(test), raw)


def test_order_follows_the_frame(frames) -> None:
    train, valid, test = frames
    model = GBDTModel(btyd_features=False, **FAST).fit(train, valid)
    p = pd.Series(model.predict_proba(test), index=test.users)
    shuffled = test.features.sample(frac=1.0, random_state=1)
    other = CutoffFrame(test.cutoff, test.horizon_days, shuffled, None, test.events)
    q = pd.Series(model.predict_proba(other), index=other.users)
    pd.testing.assert_series_equal(p.reindex(q.index), q)


def test_calibration_improves_log_loss_over_raw_on_held_out(frames) -> None:
    train, valid, test = frames
    raw = GBDTModel(btyd_features=False, calibration=None, **FAST).fit(train, valid)
    cal = GBDTModel(btyd_features=False, calibration="platt", **FAST).fit(train, valid)
    y = test.label.to_numpy()
    # Platt keeps the ranking exactly
    assert classification_metrics(y, cal.predict_proba(test))["roc_auc"] == pytest.approx(
        classification_metrics(y, raw.predict_proba(test))["roc_auc"]
    )
    # the calibration is learned from the out-of-fold predictions of every learning cutoff
    y_learn = np.concatenate([f.label.to_numpy() for f in [*train, valid]])
    assert cal.oof_["p"].mean() == pytest.approx(y_learn.mean(), abs=1e-3)
    ll_raw = classification_metrics(y_learn, raw.oof_["p"].to_numpy())["log_loss"]
    ll_cal = classification_metrics(y_learn, cal.oof_["p"].to_numpy())["log_loss"]
    assert ll_cal <= ll_raw + 1e-9


def test_without_cross_validation_trains_all_rounds_uncalibrated(frames) -> None:
    train, valid, test = frames
    model = GBDTModel(btyd_features=False, n_estimators=40, learning_rate=0.1, cv_folds=None)
    model.fit(train, valid)
    assert model.best_iteration_ == 40
    assert model.calibrator_ is None and model.oof_ is None
    assert len(model.predict_proba(test)) == len(test)


def test_without_valid_early_stopping_is_still_cross_validated(frames) -> None:
    train, _, test = frames
    model = GBDTModel(btyd_features=False, n_estimators=2000, learning_rate=0.1).fit(train)
    assert model.best_iteration_ < 2000  # stopped by the held-out folds
    assert model.calibrator_ is not None
    assert len(model.oof_) == sum(len(f) for f in train)
    assert len(model.predict_proba(test)) == len(test)


def test_user_errors_are_one_line(frames) -> None:
    train, valid, test = frames
    with pytest.raises(NotFittedError):
        GBDTModel().predict_proba(test)
    with pytest.raises(ConfigError, match="feature_set"):
        GBDTModel(feature_set="everything").fit(train, valid)
    with pytest.raises(ConfigError, match="families"):
        GBDTModel(feature_set=["nope"]).fit(train, valid)
    with pytest.raises(ConfigError, match="n_estimators"):
        GBDTModel(n_estimators=0, btyd_features=False).fit(train, valid)
    with pytest.raises(ConfigError, match="learning_rate"):
        GBDTModel(learning_rate=2.0, btyd_features=False).fit(train, valid)
    with pytest.raises(ConfigError, match="calibration"):
        GBDTModel(calibration="sigmoid", btyd_features=False).fit(train, valid)
    unlabeled = CutoffFrame(test.cutoff, test.horizon_days, test.features, None, test.events)
    with pytest.raises(ConfigError, match="no label"):
        GBDTModel(btyd_features=False).fit([unlabeled], valid)
    with pytest.raises(ConfigError, match="at least one training cutoff"):
        GBDTModel(btyd_features=False).fit([], valid)
    model = GBDTModel(btyd_features=False, **FAST).fit(train, valid)
    fewer = CutoffFrame(
        test.cutoff,
        test.horizon_days,
        test.features.drop(columns=["recency_days"]),
        None,
        test.events,
    )
    # a missing feature is scored as unknown, with a warning naming it
    with pytest.warns(RetentionWarning, match="recency_days"):
        p = model.predict_proba(fewer)
    assert np.isfinite(p).all() and len(p) == len(test)
    most = CutoffFrame(test.cutoff, test.horizon_days, test.features.iloc[:, :1], None, test.events)
    with pytest.raises(ModelError, match="lacks"):
        model.predict_proba(most)
    with pytest.raises(ConfigError, match="cv_folds"):
        GBDTModel(btyd_features=False, cv_folds=1).fit(train, valid)
    one_class = [
        CutoffFrame(f.cutoff, f.horizon_days, f.features, f.label * 0, f.events) for f in train
    ]
    with pytest.raises(ModelError, match="one outcome"):
        GBDTModel(btyd_features=False, calibration=None).fit(one_class)


def test_btyd_features_and_offset(frames) -> None:
    train, valid, test = frames
    model = GBDTModel(**FAST).fit(train, valid)  # BTYD features and offset on by default
    btyd = [c for c in model.feature_names_ if c.startswith("btyd_")]
    assert {"btyd_p_retained", "btyd_p_alive", "btyd_expected_purchases"} <= set(btyd)
    assert model.offset_
    X = model.transform_features(test)
    # the booster corrects the BG/NBD log-odds: its raw score is added to them
    from scipy.special import expit, logit

    raw = model.booster_.predict(X.to_numpy(), num_iteration=model.best_iteration_, raw_score=True)
    uncal = expit(raw + logit(np.clip(X["btyd_p_retained"].to_numpy(), 1e-6, 1 - 1e-6)))
    np.testing.assert_allclose(model.calibrator_.transform(uncal), model.predict_proba(test))
    details = model.predict_details(test)
    assert {"p_retained", "p_alive", "expected_purchases", "clv"} <= set(details.columns)
    assert details["p_alive"].between(0, 1).all()
    no_offset = GBDTModel(btyd_offset=False, **FAST).fit(train, valid)
    assert not no_offset.offset_ and "btyd_p_retained" in no_offset.feature_names_
    with pytest.raises(ConfigError, match="btyd_features"):
        GBDTModel(btyd_features=False, btyd_offset=True).fit(train, valid)

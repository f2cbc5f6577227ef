from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from explain_synth import FAST, synthetic_frames
from scipy.special import expit

from retention.exceptions import ConfigError
from retention.explain import (
    Contributions,
    family_importance,
    permutation_importance,
    shap_contributions,
    supports_shap,
)
from retention.explain._importance import logit
from retention.features import CutoffFrame
from retention.models import EnsembleModel, GBDTModel, get_model


@pytest.fixture(scope="module")
def frames() -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    return synthetic_frames(n_users=400, seed=0)


@pytest.fixture(scope="module")
def gbdt(frames) -> GBDTModel:
    train, valid, _ = frames
    return GBDTModel(btyd_features=False, **FAST).fit(train, valid)


def _check_additive(c: Contributions, model, frame: CutoffFrame) -> None:
    total = c.base_value + c.values.to_numpy().sum(axis=1)
    np.testing.assert_allclose(total, c.margin, atol=1e-8)
    # the margin is the model's own log-odds: sigmoid(base + sum) is predict_proba
    p = model.predict_proba(frame)
    inside = np.abs(c.margin) < 13  # predict_proba clips probabilities at 1e-6
    np.testing.assert_allclose(expit(total[inside]), p[inside], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("calibration", ["platt", None])
def test_shap_adds_up_to_the_models_log_odds(frames, calibration) -> None:
    train, valid, test = frames
    model = GBDTModel(btyd_features=False, calibration=calibration, **FAST).fit(train, valid)
    c = shap_contributions(model, test)
    assert list(c.values.columns) == model.feature_names_
    assert c.values.index.equals(test.users)
    assert c.calibrated
    _check_additive(c, model, test)


def test_shap_with_the_btyd_offset_adds_up(frames) -> None:
    train, valid, test = frames
    model = GBDTModel(**FAST).fit(train, valid)
    assert model.offset_
    c = shap_contributions(model, test)
    _check_additive(c, model, test)
    # the offset is given to the column it is computed from
    assert c.values["btyd_p_retained"].abs().mean() > 0


def test_isotonic_calibration_explains_the_uncalibrated_margin(frames) -> None:
    train, valid, test = frames
    model = GBDTModel(btyd_features=False, calibration="isotonic", **FAST).fit(train, valid)
    c = shap_contributions(model, test)
    assert not c.calibrated and c.notes
    raw = model.booster_.predict(
        model.transform_features(test).to_numpy(),
        num_iteration=model.best_iteration_,
        raw_score=True,
    )
    np.testing.assert_allclose(c.base_value + c.values.to_numpy().sum(axis=1), raw, atol=1e-8)


def test_a_feature_the_trees_never_use_gets_zero(frames) -> None:
    # SHAP's dummy axiom: a constant column is never split on, so it explains nothing.
    # (shap.TreeExplainer on a LightGBM booster calls pred_contrib itself, which we call directly.)
    train, valid, test = frames

    def with_const(f: CutoffFrame) -> CutoffFrame:
        feats = f.features.assign(habit_constant=1.0)
        return CutoffFrame(f.cutoff, f.horizon_days, feats, f.label, f.events)

    model = GBDTModel(btyd_features=False, **FAST).fit(
        [with_const(f) for f in train], with_const(valid)
    )
    c = shap_contributions(model, with_const(test))
    assert (c.values["habit_constant"] == 0).all()
    assert c.values["recency_days"].abs().max() > 0


def test_ensemble_contributions_are_additive(frames, gbdt) -> None:
    train, valid, test = frames
    ens = EnsembleModel(members=[("bgnbd", get_model("bgnbd")), ("gbdt", gbdt)]).fit(train, valid)
    assert supports_shap(ens)
    c = shap_contributions(ens, test)
    assert "btyd_bgnbd_score" in c.values.columns  # the BTYD member is one term
    assert set(gbdt.feature_names_) <= set(c.values.columns)
    _check_additive(c, ens, test)


def test_models_without_trees_are_refused(frames) -> None:
    train, valid, test = frames
    bg = get_model("bgnbd").fit(train, valid)
    assert not supports_shap(bg)
    with pytest.raises(ConfigError, match="permutation_importance"):
        shap_contributions(bg, test)


def test_global_importance_ranks_the_signal(gbdt, frames) -> None:
    c = shap_contributions(gbdt, frames[2])
    imp = c.importance()
    assert imp.index[0] == "recency_days"  # the synthetic process is driven by recency
    fam = c.family_importance()
    assert fam.index[0] == "recency"
    assert set(fam.index) == {"recency", "frequency", "monetary", "tenure", "windows", "gaps"}


def _with_noise(frame: CutoffFrame, seed: int) -> CutoffFrame:
    rng = np.random.default_rng(seed)
    feats = frame.features.copy()
    feats["diversity_noise"] = rng.normal(size=len(feats))
    return CutoffFrame(frame.cutoff, frame.horizon_days, feats, frame.label, frame.events)


def test_permutation_importance_of_pure_noise_is_about_zero(frames) -> None:
    train, valid, _ = frames
    train = [_with_noise(f, i) for i, f in enumerate(train)]
    valid = _with_noise(valid, 99)
    model = GBDTModel(btyd_features=False, **FAST).fit(train, valid)
    assert "diversity_noise" in model.feature_names_
    imp = permutation_importance(model, valid, n_repeats=5, random_state=0)
    assert abs(imp.loc["diversity_noise", "importance"]) < 0.01
    assert imp.loc["recency_days", "importance"] > 0.05
    assert imp.index[0] == "recency_days"
    baseline = imp.attrs["baseline"]
    assert baseline == pytest.approx(
        __import__("sklearn.metrics").metrics.roc_auc_score(valid.label, model.predict_proba(valid))
    )
    by_family = permutation_importance(model, valid, by="family", n_repeats=2)
    assert set(by_family.index) == {
        "recency",
        "frequency",
        "monetary",
        "tenure",
        "windows",
        "gaps",
        "diversity",
    }
    assert abs(by_family.loc["diversity", "importance"]) < 0.01


def test_permutation_importance_is_seeded(gbdt, frames) -> None:
    valid = frames[1]
    a = permutation_importance(gbdt, valid, n_repeats=2, random_state=3)
    b = permutation_importance(gbdt, valid, n_repeats=2, random_state=3)
    pd.testing.assert_frame_equal(a, b)


def test_ensemble_permutation_matches_predict_proba(frames, gbdt) -> None:
    from retention.explain._importance import _feature_predictor

    train, valid, _ = frames
    ens = EnsembleModel(members=[("bgnbd", get_model("bgnbd")), ("gbdt", gbdt)]).fit(train, valid)
    X, predict = _feature_predictor(ens, valid)
    np.testing.assert_allclose(predict(X), ens.predict_proba(valid), atol=1e-12)
    imp = permutation_importance(ens, valid, n_repeats=1, columns=["recency_days"])
    assert list(imp.index) == ["recency_days"] and imp["importance"].iloc[0] > 0


def test_event_models_use_event_fields(frames) -> None:
    train, valid, _ = frames
    bg = get_model("bgnbd").fit(train, valid)
    with pytest.raises(ConfigError, match="source='events'"):
        permutation_importance(bg, valid)
    imp = permutation_importance(bg, valid, source="events", n_repeats=1)
    assert set(imp.index) == {"amount", "quantity", "item_id", "timing"}
    # BG/NBD reads only the count, first and last purchase: shuffling amounts changes nothing
    assert imp.loc["amount", "importance"] == 0.0
    assert imp["importance"].abs().max() < 0.01


def test_bad_arguments(gbdt, frames) -> None:
    test = frames[2]
    unlabeled = CutoffFrame(test.cutoff, test.horizon_days, test.features, None, test.events)
    with pytest.raises(ConfigError, match="labelled"):
        permutation_importance(gbdt, unlabeled)
    with pytest.raises(ConfigError, match="by must be"):
        permutation_importance(gbdt, test, by="column")
    with pytest.raises(ConfigError, match="not features"):
        permutation_importance(gbdt, test, columns=["nope"])
    with pytest.raises(ConfigError, match="CutoffFrame"):
        shap_contributions(gbdt, test.features)  # type: ignore[arg-type]


def test_family_importance_sums_features() -> None:
    s = pd.Series({"recency_days": 0.2, "w30d_spend": 0.1, "w90d_purchases": 0.3})
    fam = family_importance(s)
    assert fam.to_dict() == pytest.approx({"windows": 0.4, "recency": 0.2})
    assert logit(np.array([0.5]))[0] == 0.0

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from explain_synth import FAST, synthetic_frames

from retention.exceptions import ConfigError
from retention.explain import select_features, subset_frame
from retention.features import CutoffFrame
from retention.models import GBDTModel


def _noisy(frame: CutoffFrame, seed: int) -> CutoffFrame:
    rng = np.random.default_rng(seed)
    feats = frame.features.assign(
        habit_noise_a=rng.normal(size=len(frame)), habit_noise_b=rng.normal(size=len(frame))
    )
    return CutoffFrame(frame.cutoff, frame.horizon_days, feats, frame.label, frame.events)


@pytest.fixture(scope="module")
def frames():
    train, valid, test = synthetic_frames(n_users=300, seed=2)
    return [_noisy(f, i) for i, f in enumerate(train)], _noisy(valid, 10), _noisy(test, 11)


def test_drops_noise_within_tolerance(frames) -> None:
    train, valid, _ = frames
    res = select_features(train, valid, model_params=FAST, tolerance=0.01)
    curve = res.curve
    assert curve["step"].tolist() == list(range(len(curve)))
    assert curve["n_features"].iloc[0] == len(valid.features.columns)
    assert curve["roc_auc"].iloc[0] == pytest.approx(res.full_auc)
    # every accepted step stays within the tolerance of the full set, every rejected one not
    acc = curve[curve["accepted"] & (curve["step"] > 0)]
    rej = curve[~curve["accepted"]]
    assert (acc["roc_auc"] >= res.full_auc - 0.01).all()
    assert (rej["roc_auc"] < res.full_auc - 0.01).all()
    assert "habits" in res.dropped  # the pure-noise family goes
    assert not any(c.startswith("habit_") for c in res.selected)
    assert "recency_days" in res.selected  # kept by default
    # the result is the last accepted step: its columns, its score, the families it dropped
    assert len(acc) >= 1
    assert res.dropped == acc["candidate"].tolist()
    assert len(res.selected) == acc["n_features"].iloc[-1] == acc["n_features"].min()
    assert res.selected_auc == pytest.approx(acc["roc_auc"].iloc[-1])
    assert res.selected_auc >= res.full_auc - 0.01
    d = res.to_dict()
    assert d["n_selected"] == len(res.selected) and d["curve"][0]["candidate"] == "(none)"


def test_the_test_cutoff_cannot_take_part(frames, monkeypatch) -> None:
    train, valid, test = frames
    train_cutoffs = {f.cutoff for f in train}
    assert test.cutoff not in train_cutoffs | {valid.cutoff}  # else the spies below see nothing
    # 1. there is no way to hand it a third frame, by position or by any keyword
    with pytest.raises(TypeError):
        select_features(train, valid, test)  # type: ignore[misc]
    for keyword in ("test", "test_frame", "holdout", "frames"):
        with pytest.raises(TypeError, match=keyword):
            select_features(train, valid, **{keyword: test})
    # 2. every fit inside the loop learns from training cutoffs only (early stopping included),
    # and every score is taken on the validation cutoff: one per candidate on the curve
    fitted: list[pd.Timestamp] = []
    scored: list[pd.Timestamp] = []
    fit, predict = GBDTModel.fit, GBDTModel.predict_proba

    def spy_fit(self, tr, va=None):
        fitted.extend(f.cutoff for f in tr)
        if va is not None:
            fitted.append(va.cutoff)
        return fit(self, tr, va)

    def spy_predict(self, frame):
        scored.append(frame.cutoff)
        return predict(self, frame)

    monkeypatch.setattr(GBDTModel, "fit", spy_fit)
    monkeypatch.setattr(GBDTModel, "predict_proba", spy_predict)
    res = select_features(train, valid, model_params=FAST, max_steps=2)
    assert len(res.curve) == 3
    assert fitted and set(fitted) <= train_cutoffs  # the validation label is never learnt
    assert scored == [valid.cutoff] * len(res.curve)


def test_selection_is_deterministic(frames) -> None:
    train, valid, _ = frames
    a = select_features(train, valid, model_params=FAST, max_steps=2)
    b = select_features(train, valid, model_params=FAST, max_steps=2)
    assert a.selected == b.selected
    assert a.curve.equals(b.curve)


def test_feature_level_and_subset(frames) -> None:
    train, valid, test = frames
    res = select_features(train, valid, level="feature", model_params=FAST, max_steps=2)
    assert len(res.curve) == 3 and res.level == "feature"
    assert set(res.curve["candidate"].iloc[1:]) <= set(valid.features.columns)
    sub = subset_frame(test, res.selected)
    assert list(sub.features.columns) == res.selected and sub.users.equals(test.users)


def test_bad_arguments(frames) -> None:
    train, valid, _ = frames
    with pytest.raises(ConfigError, match="level"):
        select_features(train, valid, level="column")
    with pytest.raises(ConfigError, match="tolerance"):
        select_features(train, valid, tolerance=-1)
    unlabeled = CutoffFrame(valid.cutoff, valid.horizon_days, valid.features, None, valid.events)
    with pytest.raises(ConfigError, match="labelled"):
        select_features(train, unlabeled)

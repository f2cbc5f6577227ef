"""Does the scored data resemble the training data? (feature deciles, event types)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from retention_synth import synthetic_frames

from retention.exceptions import RetentionWarning
from retention.features import CutoffFrame
from retention.models import GBDTModel, data_drift, load_model, save_model, warn_if_drifted
from retention.models._drift import PSI_SHIFT, SHIFTED_SHARE

FAST = {"n_estimators": 100, "learning_rate": 0.1, "early_stopping_rounds": 20}


@pytest.fixture(scope="module")
def fitted():
    train, valid, test = synthetic_frames(n_users=400, seed=5)
    return GBDTModel(btyd_features=False, **FAST).fit(train, valid), test


def test_a_later_cutoff_of_the_same_data_resembles_the_training_data(fitted) -> None:
    model, test = fitted
    report = warn_if_drifted(model, test)  # no warning (filterwarnings = error)
    assert report is not None and not report.drifted
    assert set(report.psi) == set(model.feature_names_)
    assert report.shifted_share < SHIFTED_SHARE
    assert not report.new_event_types and not report.lost_event_types


def test_another_stores_customers_are_flagged(fitted) -> None:
    model, test = fitted
    features = test.features.copy()
    features["monetary_mean"] *= 40.0  # another currency, another business
    features["frequency_orders"] += 25.0
    features["recency_days"] *= 6.0
    features["tenure_days"] *= 6.0
    features["w90d_orders"] += 9.0
    events = test.events.assign(event_type="view")  # and it logs views, not purchases
    other = CutoffFrame(test.cutoff, test.horizon_days, features, None, events)
    report = data_drift(model, other)
    assert report is not None and report.drifted
    assert report.shifted_share >= SHIFTED_SHARE
    assert all(report.psi[n] > PSI_SHIFT for n in report.shifted)
    assert report.new_event_types == ["view"] and report.lost_event_types == ["purchase"]
    with pytest.warns(RetentionWarning, match="does not resemble the data the model was trained"):
        warn_if_drifted(model, other)
    assert report.to_dict()["drifted"] is True


def test_event_types_alone_are_enough_to_flag(fitted) -> None:
    model, test = fitted
    extra = test.events.iloc[: len(test.events) // 2].assign(event_type="return")
    events = pd.concat([test.events, extra], ignore_index=True)
    other = CutoffFrame(test.cutoff, test.horizon_days, test.features, None, events)
    report = data_drift(model, other)
    assert report is not None and report.drifted and report.new_event_types == ["return"]
    assert "return" in report.message()


def test_the_profile_survives_save_and_load(fitted, tmp_path: Path) -> None:
    model, test = fitted
    loaded = load_model(save_model(model, tmp_path / "m.retention"))
    a, b = data_drift(model, test), data_drift(loaded, test)
    assert a is not None and b is not None
    assert a.psi == pytest.approx(b.psi)
    assert np.isfinite(list(a.psi.values())).all()

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retention.exceptions import ConfigError
from retention.explain import make_segments, segment_report


def _population(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    idx = pd.Index([f"u{i}" for i in range(n)], name="user_id")
    group = np.where(rng.uniform(size=n) < 0.5, "A", "B")
    truth = rng.uniform(size=n)
    y = pd.Series((rng.uniform(size=n) < truth).astype(int), index=idx)
    return idx, group, truth, y


def test_a_model_blind_on_one_group_is_flagged() -> None:
    idx, group, truth, y = _population()
    rng = np.random.default_rng(1)
    p = np.where(group == "A", truth, rng.uniform(size=len(idx)))  # guesses on B
    seg = pd.DataFrame({"country": group}, index=idx)
    rep = segment_report(y, pd.Series(p, index=idx), seg)
    t = rep.table.set_index("value")
    assert t.loc["A", "roc_auc"] > 0.7 and abs(t.loc["B", "roc_auc"] - 0.5) < 0.06
    assert t.loc["B", "auc_ratio"] < 0.8 and "ROC-AUC" in t.loc["B", "warning"]
    assert t.loc["A", "warning"] == ""
    assert any(w.startswith("country=B") for w in rep.warnings)
    assert rep.overall["n"] == len(idx)
    assert t["n"].sum() == len(idx)


def test_flagging_one_group_more_trips_the_four_fifths_rule() -> None:
    idx, group, truth, y = _population()
    p = np.where(group == "B", truth * 0.5, truth)  # B looks riskier than it is
    seg = pd.DataFrame({"tier": group}, index=idx)
    rep = segment_report(y, pd.Series(p, index=idx), seg, high_risk_below=0.3)
    t = rep.table.set_index("value")
    assert t.loc["B", "share_high_risk"] > 1.5 * t.loc["A", "share_high_risk"]
    assert "share flagged high-risk" in t.loc["A", "warning"]  # A is flagged far less often
    assert "calibration" in t.loc["B", "warning"]  # and B is under-predicted
    # a fair model raises nothing
    fair = segment_report(y, pd.Series(truth, index=idx), seg)
    assert fair.warnings == []
    # tiny segments are reported, never warned about
    small = segment_report(y, pd.Series(p, index=idx), seg, min_size=10_000)
    assert small.warnings == [] and len(small.table) == 2
    assert small.to_dict()["segments"][0]["value"] == "A"


def test_segments_country_top_n_tenure_and_sensitive() -> None:
    idx = pd.Index(["a", "b", "c", "d", "e", "f"], name="user_id")
    features = pd.DataFrame({"tenure_days": [10, 100, 200, 400, 800, np.nan]}, index=idx)
    users = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d", "e", "zz"],
            "country": ["UK", "UK", "UK", "DE", "FR", "UK"],
            "gender": ["f", "m", "f", None, "m", "f"],
        }
    )
    seg = make_segments(features, users, sensitive=["gender"], top_countries=1)
    assert seg.index.equals(idx)
    assert seg["tenure band"].tolist() == [
        "< 3 months",
        "3-6 months",
        "6-12 months",
        "1-2 years",
        "2+ years",
        "unknown",
    ]
    assert seg["country"].tolist() == ["UK", "UK", "UK", "other", "other", "other"]
    assert seg["gender"].tolist() == ["f", "m", "f", "unknown", "m", "unknown"]
    with pytest.raises(ConfigError, match="income"):
        make_segments(features, users, sensitive=["income"])


def test_bad_settings() -> None:
    idx, group, truth, y = _population(100)
    seg = pd.DataFrame({"g": group}, index=idx)
    with pytest.raises(ConfigError, match="threshold"):
        segment_report(y, pd.Series(truth, index=idx), seg, threshold=1.5)
    with pytest.raises(ConfigError, match="no score"):
        segment_report(y, pd.Series(truth[:50], index=idx[:50]), seg)

"""PSI, KS, calibration error and thresholds of monitoring, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from retention.exceptions import ConfigError
from retention.experiments import (
    PSI_EPS,
    MonitorThresholds,
    bin_shares,
    category_psi,
    category_shares,
    drift_edges,
    drift_table,
    expected_calibration_error,
    ks_test,
    psi,
    psi_edges,
    realised_metrics,
)
from retention.features import ages_with_calendar, encoded_category
from retention.models._drift import feature_profile


def test_psi_matches_a_hand_computation() -> None:
    # reference 1..10: deciles at 1.9, 2.8, ..., 9.1 -> one value per bin, shares 0.1 each
    reference = np.arange(1.0, 11.0)
    edges = psi_edges(reference)
    assert edges == pytest.approx([1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1])
    # current: five values in the first bin, five in the last
    current = np.array([1.0] * 5 + [10.0] * 5)
    a = np.array([0.5] + [PSI_EPS] * 8 + [0.5])
    e = np.full(10, 0.1)
    # the NaN bin is empty on both sides: floored to eps on both, it adds 0
    hand = float(np.sum((a - e) * np.log(a / e)))
    assert psi(reference, current) == pytest.approx(hand)
    assert psi(reference, current) == pytest.approx(
        2 * 0.4 * math.log(5) + 8 * (PSI_EPS - 0.1) * math.log(PSI_EPS / 0.1)
    )


def test_psi_is_zero_for_the_same_distribution_and_counts_missing_values() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=2000)
    assert psi(x, rng.permutation(x)) == pytest.approx(0.0, abs=1e-12)
    # half the current values missing: the NaN bin holds 0.5 against eps
    shares = bin_shares(np.r_[x[:1000], [np.nan] * 1000], psi_edges(x))
    assert shares[-1] == pytest.approx(0.5) and shares.sum() == pytest.approx(1.0)
    assert psi(x, np.r_[x[:1000], [np.nan] * 1000]) > 2.0
    assert math.isnan(psi([], x)) and math.isnan(psi(x, []))


def test_the_binning_is_that_of_the_models_training_profile() -> None:
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"a": rng.exponential(size=500), "b": rng.integers(0, 4, 500).astype(float)})
    profile = feature_profile(X, [])
    for name in X.columns:
        spec = profile["features"][name]
        assert psi_edges(X[name]) == pytest.approx(spec["edges"])
        assert bin_shares(X[name], psi_edges(X[name])) == pytest.approx(spec["shares"])


def test_ks_matches_a_hand_computation() -> None:
    # disjoint samples: the distribution functions are 1 apart at 3; exact p = 2 / C(6, 3) = 0.1
    stat, p = ks_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert stat == pytest.approx(1.0) and p == pytest.approx(0.1)
    # F_ref(x) - F_cur(x) peaks at x = 2: 2/4 - 0/4
    stat, _ = ks_test([1.0, 2.0, 3.0, 4.0], [2.5, 3.0, 4.0, 5.0])
    assert stat == pytest.approx(0.5)
    # NaN is left out, not compared
    assert ks_test([1.0, np.nan, 2.0], [1.0, 2.0])[0] == pytest.approx(0.0)
    assert all(math.isnan(v) for v in ks_test([np.nan], [1.0]))


def test_expected_calibration_error_matches_a_hand_computation() -> None:
    y = [0, 1, 1, 1, 0, 0]
    p = [0.05, 0.05, 0.95, 0.95, 0.55, 0.55]
    # bins: [0, .1): mean y .5, mean p .05 -> .45 x 2/6; [.9, 1]: 1 vs .95 -> .05 x 2/6;
    # [.5, .6): 0 vs .55 -> .55 x 2/6
    assert expected_calibration_error(y, p) == pytest.approx((0.45 + 0.05 + 0.55) * 2 / 6)
    assert expected_calibration_error([1, 0], [1.0, 0.0]) == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="differ in length"):
        expected_calibration_error([1], [0.5, 0.5])


def test_realised_metrics() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    m = realised_metrics(y, p)
    assert m["n_users"] == 4 and m["base_rate"] == pytest.approx(0.5)
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of the 4 pairs ranked right
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
    assert math.isnan(realised_metrics([1, 1], [0.2, 0.7])["roc_auc"])


def test_drift_table_ranks_the_shifted_feature_first() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame(
        {"w30d_spend": rng.lognormal(3, 1, 3000), "tenure_days": rng.uniform(0, 300, 3000)}
    )
    cur = pd.DataFrame(
        {"w30d_spend": rng.lognormal(4, 1, 3000), "tenure_days": rng.uniform(0, 300, 3000)}
    )
    ref["name"] = "x"  # not numeric: left out
    table = drift_table(ref, cur)
    assert list(table["feature"]) == ["w30d_spend", "tenure_days"]
    assert table["psi"].iloc[0] > 0.25 > 0.1 > table["psi"].iloc[1]
    assert table["family"].iloc[0] == "windows"
    assert table["ks_p_value"].iloc[0] < 1e-10 < table["ks_p_value"].iloc[1]


def test_thresholds_from_defaults_env_and_flags() -> None:
    t = MonitorThresholds.from_env({})
    assert (t.feature_psi, t.score_psi, t.decay) == (0.2, 0.1, 0.05)
    env = {"RETENTION_MONITOR_FEATURE_PSI": "0.3", "RETENTION_MONITOR_DECAY": " 0.02 "}
    t = MonitorThresholds.from_env(env, decay=0.1)
    assert (t.feature_psi, t.score_psi, t.decay) == (0.3, 0.1, 0.1)
    with pytest.raises(ConfigError, match="RETENTION_MONITOR_SCORE_PSI must be a number"):
        MonitorThresholds.from_env({"RETENTION_MONITOR_SCORE_PSI": "high"})
    with pytest.raises(ConfigError, match="feature_psi must be a number >= 0"):
        MonitorThresholds(feature_psi=-1)
    with pytest.raises(ConfigError, match="Unknown threshold"):
        MonitorThresholds.from_env({}, psi=0.1)


def test_a_low_cardinality_feature_gets_a_bin_per_distinct_value() -> None:
    # 0 (60%), 1 (5%), 2 (35%): the deciles merge 1 with 2; one bin per value keeps them apart
    reference = np.array([0.0] * 60 + [1.0] * 5 + [2.0] * 35)
    deciles = psi_edges(reference)
    assert np.searchsorted(deciles, 1.0) == np.searchsorted(deciles, 2.0)
    edges, kind = drift_edges(reference)
    assert kind == "distinct values" and list(edges) == [0.0, 1.0, 2.0]
    # the current sample trades the 1s for 2s: invisible to the deciles, seen per value
    current = np.array([0.0] * 60 + [2.0] * 40)
    e = np.array([0.6, 0.05, 0.35, PSI_EPS, PSI_EPS])
    a = np.array([0.6, PSI_EPS, 0.4, PSI_EPS, PSI_EPS])
    hand = float(np.sum((a - e) * np.log(a / e)))
    table = drift_table(
        pd.DataFrame({"w7d_purchases": reference}), pd.DataFrame({"w7d_purchases": current})
    )
    assert table["binning"].iloc[0] == "distinct values"
    assert table["psi"].iloc[0] == pytest.approx(hand)
    assert psi(reference, current) == pytest.approx(0.0, abs=1e-9)
    # many distinct values: the deciles, as before
    x = np.random.default_rng(4).normal(size=500)
    assert drift_edges(x)[1] == "deciles" and drift_edges(x)[0] == pytest.approx(psi_edges(x))


def test_category_psi_matches_a_hand_computation() -> None:
    reference = ["uk"] * 80 + ["de"] * 15 + [None] * 5
    current = ["uk"] * 70 + ["de"] * 10 + ["fr"] * 10 + [None] * 10
    # bins: de, uk, a category the reference never saw, missing
    assert category_shares(reference, ["de", "uk"]) == pytest.approx([0.15, 0.8, 0.0, 0.05])
    e = np.array([0.15, 0.8, PSI_EPS, 0.05])
    a = np.array([0.1, 0.7, 0.1, 0.1])
    assert category_psi(reference, current) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert category_psi(reference, list(reversed(reference))) == pytest.approx(0.0)
    assert math.isnan(category_psi([], current))


def test_an_encoded_category_is_compared_on_its_categories() -> None:
    """A share recomputed at each cutoff (0.90 -> 0.91 for the same country) is not drift; the
    decile binning read it as a large shift, the categories do not."""
    ref_country = ["uk"] * 900 + ["de"] * 100
    cur_country = ["uk"] * 910 + ["de"] * 90
    share = {"uk": 0.9, "de": 0.1}
    ref = pd.DataFrame({"user_country_freq": [share[c] for c in ref_country]})
    cur = pd.DataFrame({"user_country_freq": [0.91 if c == "uk" else 0.09 for c in cur_country]})
    plain = drift_table(ref, cur)
    assert plain["psi"].iloc[0] > 5  # every customer "moved"
    table = drift_table(ref, cur, categories={"user_country_freq": (ref_country, cur_country)})
    row = table.iloc[0]
    assert row["binning"] == "categories" and row["psi"] == pytest.approx(
        category_psi(ref_country, cur_country)
    )
    assert row["psi"] < 0.01 and row["ks"] == pytest.approx(0.01)  # shares frozen: 1% moved
    assert row["reference_mean"] == pytest.approx(0.82)  # the feature's own values
    with pytest.raises(ConfigError, match="one per row of each frame"):
        drift_table(ref, cur, categories={"user_country_freq": (ref_country[:5], cur_country)})


def test_feature_metadata_says_what_ages_and_what_encodes_a_category() -> None:
    assert all(
        ages_with_calendar(f)
        for f in ("tenure_days", "tenure_first_event_days", "tenure_activity_days")
    )
    assert ages_with_calendar("user_days_since_signup") and ages_with_calendar(
        "user_vip_since_days"
    )
    for f in ("recency_days", "tenure_active_days", "w365d_spend", "gap_current_days"):
        assert not ages_with_calendar(f), f
    assert encoded_category("user_country_freq") == "country"
    assert encoded_category("user_segment_freq", ["user_id", "Segment", "country"]) == "Segment"
    assert encoded_category("user_segment_freq", ["user_id"]) is None
    assert encoded_category("user_country_united_kingdom") is None  # a one-hot: plain 0/1

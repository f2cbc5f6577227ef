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
    drift_table,
    expected_calibration_error,
    ks_test,
    psi,
    psi_edges,
    realised_metrics,
)
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

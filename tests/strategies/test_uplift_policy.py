"""Policy values by IPW and doubly robust estimation are unbiased on simulated randomised data
with known effects; the paired bootstrap gives ratios against a reference policy."""

from __future__ import annotations

import numpy as np
import pytest

from retention.exceptions import ConfigError, DataError
from retention.strategies import (
    dr_contributions,
    evaluate_policies,
    ipw_contributions,
    one_hot_policy,
)

# three covariate values, three arms: the mean outcome of each arm, the assignment probabilities
MU = np.array([[0.10, 0.20, 0.05], [0.30, 0.25, 0.45], [0.50, 0.70, 0.40]])  # [x, arm]
E = np.array([[0.5, 0.3, 0.2], [0.2, 0.4, 0.4], [0.6, 0.2, 0.2]])  # [x, arm]
POLICY = np.array([1, 2, 1])  # the arm the policy gives each x
TRUTH = float(np.mean(MU[np.arange(3), POLICY]))


def _sample(seed: int, n: int = 1500):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=n)
    u = rng.random(n)
    arm = (u[:, None] > np.cumsum(E[x], axis=1)).sum(axis=1)
    y = (rng.random(n) < MU[x, arm]).astype(float)
    return x, arm, y


def test_ipw_and_dr_are_unbiased_over_many_seeds() -> None:
    est = {"ipw": [], "dr": [], "dr_wrong_mu": []}
    for seed in range(300):
        x, arm, y = _sample(seed)
        e, pi = E[x], one_hot_policy(POLICY[x], 3)
        est["ipw"].append(ipw_contributions(y, arm, e, pi).mean())
        est["dr"].append(dr_contributions(y, arm, e, pi, MU[x]).mean())
        est["dr_wrong_mu"].append(dr_contributions(y, arm, e, pi, np.zeros_like(e)).mean())
    for name, values in est.items():
        v = np.asarray(values)
        se = v.std(ddof=1) / np.sqrt(len(v))
        assert abs(v.mean() - TRUTH) < 3.5 * se, f"{name}: {v.mean():.4f} vs {TRUTH:.4f}"
    # a right outcome model takes variance off
    assert np.std(est["dr"]) < np.std(est["ipw"])


def test_ipw_is_biased_with_wrong_propensities() -> None:
    # the check above can fail: with the design's propensities swapped for uniform ones the
    # estimate is off (so the unbiasedness test is not vacuous)
    values = []
    for seed in range(100):
        x, arm, y = _sample(seed)
        values.append(
            ipw_contributions(
                y, arm, np.full((len(y), 3), 1 / 3), one_hot_policy(POLICY[x], 3)
            ).mean()
        )
    v = np.asarray(values)
    assert abs(v.mean() - TRUTH) > 5 * v.std(ddof=1) / np.sqrt(len(v))


def test_comparison_table_and_ratios() -> None:
    x, arm, y = _sample(7, n=20000)
    n = len(y)
    policies = {
        "policy": one_hot_policy(POLICY[x], 3),
        "random": np.tile([0.5, 0.25, 0.25], (n, 1)),
        "nobody": one_hot_policy(np.zeros(n, dtype=int), 3),
    }
    comp = evaluate_policies(y, arm, E[x], policies, mu=MU[x], reference="random", n_boot=200)
    t = comp.table
    assert set(t.index.get_level_values(1)) == {"ipw", "dr"}
    nobody = t.loc[("nobody", "ipw")]
    assert nobody["incremental"] == pytest.approx(0.0)
    assert nobody["value"] == pytest.approx(np.mean(MU[x, 0]), abs=0.02)
    pol = t.loc[("policy", "dr")]
    assert t.loc[("random", "ipw")]["ratio"] == pytest.approx(1.0)
    assert pol["ratio_low"] <= pol["ratio"] <= pol["ratio_high"]
    assert pol["treated_share"] == pytest.approx(1.0)
    d = comp.to_dict()
    assert d["policies"]["policy"]["dr"]["per_1000"] == pytest.approx(1000 * pol["incremental"] / n)


def test_bad_policies_are_refused() -> None:
    x, arm, y = _sample(0, n=50)
    with pytest.raises(DataError, match="sum to 1"):
        ipw_contributions(y, arm, E[x], np.full((50, 3), 0.5))
    with pytest.raises(ConfigError, match="reference"):
        evaluate_policies(y, arm, E[x], {"a": one_hot_policy(POLICY[x], 3)}, reference="b")
    with pytest.raises(ConfigError, match="arms must be"):
        one_hot_policy([0, 3], 3)


def test_bootstrap_intervals_cover_the_truth() -> None:
    n, hits, seeds = 3000, 0, 40
    true_gain = n * float(np.mean(MU[np.arange(3), POLICY] - MU[:, 0]))
    for seed in range(seeds):
        x, arm, y = _sample(1000 + seed, n=n)
        comp = evaluate_policies(
            y, arm, E[x], {"policy": one_hot_policy(POLICY[x], 3)}, n_boot=100, random_state=seed
        )
        row = comp.table.loc[("policy", "ipw")]
        hits += row["incremental_low"] <= true_gain <= row["incremental_high"]
    assert hits / seeds >= 0.85  # 95% intervals; 40 draws


def test_other_references_and_the_bootstrap_sums() -> None:
    x, arm, y = _sample(11, n=5000)
    n = len(y)
    policies = {
        "policy": one_hot_policy(POLICY[x], 3),
        "random": np.tile([0.5, 0.25, 0.25], (n, 1)),
        "first": np.tile([0.5, 0.5, 0.0], (n, 1)),
    }
    comp = evaluate_policies(
        y, arm, E[x], policies, reference="random", other_references=("first",), n_boot=120
    )
    row = comp.table.loc[("policy", "ipw")]
    first = comp.table.loc[("first", "ipw")]["incremental"]
    assert row["ratio_vs_first"] == pytest.approx(row["incremental"] / first)
    assert row["ratio_vs_first_low"] < row["ratio_vs_first"] < row["ratio_vs_first_high"]
    # the counts-times-matrix bootstrap equals resampling the units one by one
    nobody = ipw_contributions(y, arm, E[x], one_hot_policy(np.zeros(n, dtype=int), 3))
    gain = ipw_contributions(y, arm, E[x], policies["policy"]) - nobody
    rng = np.random.default_rng(0)
    sums = np.concatenate([gain[rng.integers(0, n, size=(s, n))].sum(axis=1) for s in (50, 50, 20)])
    assert row["incremental_low"] == pytest.approx(np.quantile(sums, 0.025), rel=1e-9)
    assert row["incremental_high"] == pytest.approx(np.quantile(sums, 0.975), rel=1e-9)
    with pytest.raises(ConfigError, match="not among the policies"):
        evaluate_policies(y, arm, E[x], policies, other_references=("nobody",))


def test_no_ratio_to_a_reference_that_loses() -> None:
    # arm 1 lowers the outcome everywhere: random targeting and the policy both lose, and
    # their ratio (two losses) would read as a gain above 1
    mu = np.array([[0.40, 0.20, 0.60], [0.40, 0.20, 0.60], [0.40, 0.20, 0.60]])
    rng = np.random.default_rng(3)
    n = 6000
    x = rng.integers(0, 3, size=n)
    arm = (rng.random(n)[:, None] > np.cumsum(E[x], axis=1)).sum(axis=1)
    y = (rng.random(n) < mu[x, arm]).astype(float)
    policies = {
        "worse": one_hot_policy(np.ones(n, dtype=int), 3),
        "random": np.tile([0.5, 0.5, 0.0], (n, 1)),
        "good": one_hot_policy(np.full(n, 2), 3),
    }
    t = evaluate_policies(
        y, arm, E[x], policies, reference="random", other_references=("good",), n_boot=100
    ).table
    assert t.loc[("random", "ipw")]["incremental"] < 0
    for name in ("worse", "random", "good"):
        row = t.loc[(name, "ipw")]
        assert np.isnan(row["ratio"]) and np.isnan(row["ratio_low"]) and np.isnan(row["ratio_high"])
    # against a reference that gains, the ratios stay
    worse = t.loc[("worse", "ipw")]
    assert worse["ratio_vs_good"] == pytest.approx(
        worse["incremental"] / t.loc[("good", "ipw")]["incremental"]
    )
    assert worse["ratio_vs_good_low"] <= worse["ratio_vs_good"] <= worse["ratio_vs_good_high"]

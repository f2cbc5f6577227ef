"""The comparison statistics against scipy and statsmodels, on real data where there is some."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from retention.experiments import (
    ArmMoments,
    bayesian,
    confidence_sequence,
    cuped_theta,
    srm_test,
    welch,
)


def moments(y: np.ndarray, *, binary: bool = False, x: np.ndarray | None = None) -> ArmMoments:
    extra = {}
    if x is not None:
        extra = {
            "cov_sum": float(x.sum()),
            "cov_sum_sq": float((x * x).sum()),
            "cov_prod": float((x * y).sum()),
        }
    return ArmMoments(
        n=len(y), sum=float(y.sum()), sum_sq=float((y * y).sum()), binary=binary, **extra
    )


def arms(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    a = df.loc[df["version"] == "gate_30", col].to_numpy(dtype=float)
    b = df.loc[df["version"] == "gate_40", col].to_numpy(dtype=float)
    return a, b


def test_welch_on_a_mean_metric_equals_scipy_and_statsmodels(cookie_cats: pd.DataFrame) -> None:
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    a, b = arms(cookie_cats, "sum_gamerounds")
    est = welch(moments(a), moments(b))
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert est.difference == pytest.approx(b.mean() - a.mean(), rel=1e-12)
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert est.dof == pytest.approx(ref.df, rel=1e-9)
    lo, hi = CompareMeans(DescrStatsW(b), DescrStatsW(a)).tconfint_diff(usevar="unequal")
    assert (est.ci_low, est.ci_high) == pytest.approx((lo, hi), rel=1e-9)


def test_proportions_use_p_one_minus_p_like_the_wald_test_of_statsmodels(
    cookie_cats: pd.DataFrame,
) -> None:
    from statsmodels.stats.proportion import test_proportions_2indep

    a, b = arms(cookie_cats, "retention_7")
    est = welch(moments(a, binary=True), moments(b, binary=True))
    ref = test_proportions_2indep(
        b.sum(), len(b), a.sum(), len(a), method="wald", compare="diff", correction=False
    )
    assert est.difference == pytest.approx(ref.diff, rel=1e-12)
    assert est.se == pytest.approx(np.sqrt(ref.variance), rel=1e-12)
    assert est.difference / est.se == pytest.approx(ref.statistic, rel=1e-12)
    # the p-value uses a Welch t (about 90,000 degrees of freedom), statsmodels the normal:
    # they differ in the fourth digit only
    assert est.p_value == pytest.approx(2 * stats.t.sf(abs(ref.statistic), est.dof), rel=1e-12)
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-3)
    assert est.p_value < 0.01  # Cookie Cats' known result: gate_40 keeps fewer players a week


def test_relative_lift_interval_is_the_delta_method(cookie_cats: pd.DataFrame) -> None:
    a, b = arms(cookie_cats, "sum_gamerounds")
    est = welch(moments(a), moments(b))
    ma, mb = a.mean(), b.mean()
    var = b.var(ddof=1) / (ma**2 * len(b)) + a.var(ddof=1) * mb**2 / (ma**4 * len(a))
    assert est.lift == pytest.approx(mb / ma - 1, rel=1e-12)
    half = stats.t.ppf(0.975, est.dof) * np.sqrt(var)
    assert est.lift_ci_high - est.lift == pytest.approx(half, rel=1e-9)


def test_cuped_pools_theta_and_adjusts_the_difference() -> None:
    rng = np.random.default_rng(7)
    x = rng.gamma(2.0, 1.0, 4000)
    y = 0.8 * x + rng.normal(0, 1, 4000)
    t = rng.random(4000) < 0.5
    c_m, t_m = moments(y[~t], x=x[~t]), moments(y[t], x=x[t])
    theta = cuped_theta(c_m, t_m)
    assert theta == pytest.approx(np.cov(y, x, ddof=1)[0, 1] / np.var(x, ddof=1), rel=1e-12)
    adj = y - theta * (x - x.mean())
    est = welch(c_m, t_m)
    assert est.difference == pytest.approx(adj[t].mean() - adj[~t].mean(), rel=1e-9)
    plain = welch(c_m, t_m, cuped=False)
    rho = np.corrcoef(x, y)[0, 1]
    assert est.variance_reduction == pytest.approx(rho**2, abs=0.03)
    assert est.se < plain.se


def test_ratio_metric_variance_is_the_delta_method_of_the_per_unit_sums() -> None:
    rng = np.random.default_rng(3)
    orders = rng.poisson(2.0, (2, 3000)) + 1.0
    revenue = orders * rng.gamma(3.0, 10.0, (2, 3000))

    def ratio_arm(i: int) -> ArmMoments:
        r, o = revenue[i], orders[i]
        return ArmMoments(
            n=3000,
            sum=r.sum(),
            sum_sq=(r * r).sum(),
            den_sum=o.sum(),
            den_sum_sq=(o * o).sum(),
            num_den=(r * o).sum(),
        )

    est = welch(ratio_arm(0), ratio_arm(1))
    ratios = revenue.sum(axis=1) / orders.sum(axis=1)
    assert est.difference == pytest.approx(ratios[1] - ratios[0], rel=1e-12)
    # the delta method against the linearisation r_i - R o_i, computed per unit
    var = 0.0
    for i in range(2):
        lin = (revenue[i] - ratios[i] * orders[i]) / orders[i].mean()
        var += lin.var(ddof=1) / 3000
    assert est.se == pytest.approx(np.sqrt(var), rel=1e-9)


def test_confidence_sequence_is_wider_than_the_fixed_interval_and_shrinks() -> None:
    lo, hi, p = confidence_sequence(0.01, 1e-5, 20_000)
    fixed = 1.96 * np.sqrt(1e-5)
    assert hi - 0.01 > fixed
    lo2, hi2, _ = confidence_sequence(0.01, 1e-6, 200_000)
    assert hi2 - lo2 < hi - lo
    _, _, p_fixed = (None, None, 2 * stats.norm.sf(0.01 / np.sqrt(1e-5)))
    assert p >= p_fixed  # always-valid p-values are never smaller


def test_bayesian_chance_to_win_and_expected_loss_match_their_integrals() -> None:
    out = bayesian(0.02, 0.01**2)
    assert out["chance_to_win"] == pytest.approx(stats.norm.cdf(2.0), rel=1e-12)
    rng = np.random.default_rng(0)
    draws = rng.normal(0.02, 0.01, 2_000_000)
    assert out["expected_loss"] == pytest.approx(np.maximum(-draws, 0).mean(), rel=0.02)
    assert out["expected_loss_control"] == pytest.approx(np.maximum(draws, 0).mean(), rel=0.01)
    inverse = bayesian(0.02, 0.01**2, inverse=True)
    assert inverse["chance_to_win"] == pytest.approx(1 - out["chance_to_win"], rel=1e-12)
    shrunk = bayesian(0.02, 0.01**2, prior_variance=0.01**2)
    assert shrunk["mean"] == pytest.approx(0.01, rel=1e-12)


def test_srm_equals_scipy_chisquare_and_flags_a_half_percent_skew() -> None:
    chi2, p = srm_test([101_000, 99_000], [0.5, 0.5])
    ref = stats.chisquare([101_000, 99_000], [100_000, 100_000])
    assert (chi2, p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    assert p < 1e-3
    assert srm_test([100_100, 99_900], [1, 1])[1] > 0.1

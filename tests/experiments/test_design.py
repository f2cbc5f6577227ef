"""Sample size, MDE and CUPED's variance cut, against statsmodels' power solvers."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize

from retention.exceptions import ConfigError
from retention.experiments import design


def test_proportion_sample_size_is_statsmodels_normal_power() -> None:
    r = design("proportion", 0.19, relative_mde=0.05)
    h = proportion_effectsize(0.19 * 1.05, 0.19)
    n = NormalIndPower().solve_power(abs(h), alpha=0.05, power=0.8, ratio=1.0)
    assert r.n_per_variant == math.ceil(n)
    assert r.n_total == 2 * r.n_per_variant


def test_mean_sample_size_mde_round_trip_and_cuped_cut() -> None:
    r = design("mean", 50.0, sd=100.0, mde=2.0, rho=0.6, daily_units=1000, window_days=7)
    n = TTestIndPower().solve_power(2.0 / 100.0, alpha=0.05, power=0.8)
    assert r.n_per_variant == math.ceil(n)
    assert r.n_per_variant_cuped == math.ceil(r.n_per_variant * (1 - 0.36))
    assert r.duration_days == math.ceil(r.n_total_cuped / 1000) + 7
    back = design("mean", 50.0, sd=100.0, n_per_variant=r.n_per_variant)
    assert back.mde == pytest.approx(2.0, rel=1e-3)
    cuped = design("mean", 50.0, sd=100.0, n_per_variant=r.n_per_variant, rho=0.6)
    assert cuped.mde_cuped == pytest.approx(back.mde * 0.8, rel=1e-9)


def test_proportion_mde_inverts_cohens_h() -> None:
    r = design("proportion", 0.3, n_per_variant=5000)
    h = NormalIndPower().solve_power(nobs1=5000, alpha=0.05, power=0.8, ratio=1.0)
    assert proportion_effectsize(0.3 + r.mde, 0.3) == pytest.approx(h, rel=1e-9)


def test_design_refuses_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="exactly one of"):
        design("proportion", 0.2)
    with pytest.raises(ConfigError, match="standard deviation"):
        design("mean", 10.0, mde=1.0)
    with pytest.raises(ConfigError, match="baseline"):
        design("proportion", 1.5, mde=0.1)

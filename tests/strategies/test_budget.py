"""The budget optimiser: budget and caps hold exactly, the integer programme matches brute force,
the heuristics stay within their reported gap, and the totals add up."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.exceptions import ConfigError, DataError
from retention.strategies import (
    lagrangian_bound,
    lp_bound,
    optimise_budget,
    summarise_allocation,
)

METHODS = ("milp", "lagrangian", "greedy")


def brute_force(v: np.ndarray, c: np.ndarray, budget: float, caps: list[int | None]) -> float:
    n, m = v.shape
    best = 0.0
    for combo in itertools.product(range(-1, m), repeat=n):
        ch = np.array(combo)
        rows = np.flatnonzero(ch >= 0)
        if c[rows, ch[rows]].sum() > budget + 1e-9:
            continue
        if any(cap is not None and (ch == j).sum() > cap for j, cap in enumerate(caps)):
            continue
        best = max(best, float(v[rows, ch[rows]].sum()))
    return best


def _check_feasible(a, c: np.ndarray, budget: float, caps: list[int | None]) -> None:
    rows = np.flatnonzero(a.choice >= 0)
    spent = c[rows, a.choice[rows]].sum()
    assert spent <= budget + 1e-9
    assert a.cost == pytest.approx(spent)
    for j, cap in enumerate(caps):
        if cap is not None:
            assert (a.choice == j).sum() <= cap


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 6),
    m=st.integers(1, 3),
    budget=st.floats(0, 6),
    capped=st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=3, max_size=3),
)
def test_matches_brute_force_and_respects_budget_and_caps(seed, n, m, budget, capped) -> None:
    rng = np.random.default_rng(seed)
    v = np.round(rng.normal(1, 1.2, (n, m)), 2)
    c = np.round(rng.uniform(0, 2, (n, m)), 2)
    caps = capped[:m]
    best = brute_force(v, c, budget, caps)
    for method in METHODS:
        a = optimise_budget(v, c, budget, caps, method=method)
        _check_feasible(a, c, budget, caps)
        assert a.value <= best + 1e-9
        assert a.bound >= best - 1e-7  # a valid upper bound
        assert a.value >= a.bound * (1 - a.gap) - 1e-9
        if method == "milp":
            assert a.value == pytest.approx(best, abs=1e-7)
            assert a.status == "optimal"


def test_larger_case_lagrangian_gap_is_small_and_bounds_agree() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    v = rng.normal(0.02, 0.05, (n, 3)) * rng.lognormal(3, 1, (n, 1))
    c = np.tile([1.0, 2.0, 5.0], (n, 1)) + rng.uniform(0, 1, (n, 3))
    caps = [None, n // 10, n // 20]
    lag = optimise_budget(v, c, n * 0.5, caps, method="lagrangian")
    _check_feasible(lag, c, n * 0.5, caps)
    lp = lp_bound(v, c, n * 0.5, caps)
    # the dual bound is never below the LP optimum, and the solution never above it
    assert lagrangian_bound(v, c, n * 0.5, caps) >= lp - 1e-6
    assert lag.value <= lp + 1e-6
    assert (lp - lag.value) / lp < 1e-3
    greedy = optimise_budget(v, c, n * 0.5, caps, method="greedy")
    assert greedy.value <= lag.value + 1e-9  # the priced order does at least as well here


def test_auto_switches_by_size_and_free_offers_are_taken() -> None:
    v = np.array([[1.0, 0.5], [0.2, -1.0], [0.0, 0.3]])
    c = np.zeros_like(v)
    a = optimise_budget(v, c, 0.0)
    assert a.method == "milp" and a.choice.tolist() == [0, 0, 1]
    big = optimise_budget(np.ones((50, 2)), np.ones((50, 2)), 10, exact_max_vars=20)
    assert big.method == "lagrangian" and (big.choice >= 0).sum() == 10


def test_negative_values_are_never_chosen() -> None:
    a = optimise_budget(-np.ones((5, 2)), np.zeros((5, 2)), 100)
    assert (a.choice == -1).all() and a.value == 0.0


def test_summary_totals_and_intervals() -> None:
    rng = np.random.default_rng(1)
    v = rng.uniform(0, 2, (400, 2))
    c = rng.uniform(0.5, 1, (400, 2))
    a = optimise_budget(v, c, 100)
    t = summarise_allocation(a.choice, v, c, conversions=v / 10, names=["a", "b"], n_boot=100)
    assert list(t.index) == ["a", "b", "total"]
    assert t.loc["total", "customers"] == (a.choice >= 0).sum()
    assert t.loc["total", "incremental_value"] == pytest.approx(a.value)
    assert t.loc["total", "cost"] == pytest.approx(a.cost)
    assert t.loc["a", "cost"] + t.loc["b", "cost"] == pytest.approx(a.cost)
    roi = (a.value - a.cost) / a.cost
    assert t.loc["total", "roi"] == pytest.approx(roi)
    assert t.loc["total", "roi_low"] <= roi <= t.loc["total", "roi_high"]
    assert t.loc["total", "incremental_conversions"] == pytest.approx(a.value / 10)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ConfigError, match="budget"):
        optimise_budget([[1.0]], [[1.0]], -1)
    with pytest.raises(DataError, match=">= 0"):
        optimise_budget([[1.0]], [[-1.0]], 1)
    with pytest.raises(DataError, match="same shape"):
        optimise_budget([[1.0, 2.0]], [[1.0]], 1)
    with pytest.raises(ConfigError, match="one cap per offer"):
        optimise_budget([[1.0, 2.0]], [[1.0, 1.0]], 1, caps=[1])
    with pytest.raises(ConfigError, match="method"):
        optimise_budget([[1.0]], [[1.0]], 1, method="simplex")
    with pytest.raises(DataError, match="finite"):
        optimise_budget([[np.nan]], [[1.0]], 1)

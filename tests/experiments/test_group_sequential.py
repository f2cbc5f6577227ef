"""The group-sequential design: Lan-DeMets boundaries against published values and against the
multivariate normal law they are defined by; repeated p-values; the looks' fractions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from retention.exceptions import ConfigError
from retention.experiments import (
    GroupSequential,
    alpha_spent,
    classical_boundary,
    group_sequential_boundaries,
    group_sequential_p_value,
)

FIVE = np.arange(1, 6) / 5


def test_lan_demets_boundaries_for_five_looks_match_ldbounds() -> None:
    # R ldbounds::ldBounds(t = 1:5/5, iuse = 1 or 2, alpha = 0.05, sides = 2), to 4 decimals
    obf = group_sequential_boundaries(FIVE, alpha=0.05, spending="obrien-fleming")
    pocock = group_sequential_boundaries(FIVE, alpha=0.05, spending="pocock")
    assert obf == pytest.approx([4.8769, 3.3570, 2.6803, 2.2898, 2.0310], abs=2e-4)
    assert pocock == pytest.approx([2.4380, 2.4268, 2.4102, 2.3966, 2.3860], abs=2e-4)


def test_classical_pocock_and_obrien_fleming_constants() -> None:
    # Jennison and Turnbull (2000), tables 2.1 and 2.3: K = 5, two-sided alpha 0.05
    assert classical_boundary(5, 0.05, shape="pocock") == pytest.approx(2.413, abs=5e-4)
    assert classical_boundary(5, 0.05, shape="obrien-fleming") == pytest.approx(2.040, abs=5e-4)
    assert classical_boundary(1, 0.05) == pytest.approx(1.959964, abs=1e-5)


@pytest.mark.parametrize("spending", ["obrien-fleming", "pocock"])
def test_boundaries_spend_alpha_under_the_joint_normal_law(spending: str) -> None:
    # unequal looks: the rejection probability of the first k looks, from scipy's multivariate
    # normal of the cumulative z statistics (corr sqrt(t_i / t_j)), is the spent alpha(t_k)
    t = np.array([0.1, 0.35, 0.6, 0.8, 1.0])
    c = group_sequential_boundaries(t, alpha=0.05, spending=spending)
    corr = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    for k in (2, 4, 5):
        law = multivariate_normal(np.zeros(k), corr[:k, :k], seed=0, abseps=1e-7, releps=1e-7)
        box = law.cdf(c[:k], lower_limit=-c[:k])
        assert 1 - box == pytest.approx(alpha_spent(t[k - 1], 0.05, spending), abs=1e-6)
    assert alpha_spent(1.0, 0.05, spending) == pytest.approx(0.05, abs=1e-15)


def test_a_look_past_the_planned_horizon_has_nothing_left_to_spend() -> None:
    c = group_sequential_boundaries([0.5, 1.0, 1.2])
    assert np.isfinite(c[:2]).all() and np.isinf(c[2])
    one = group_sequential_boundaries([1.0])
    assert one[0] == pytest.approx(1.959964, abs=1e-5)  # one look: the fixed-horizon test


def test_repeated_p_value_is_under_alpha_exactly_when_the_boundary_is_crossed() -> None:
    t = np.arange(1, 8) / 10
    c = group_sequential_boundaries(t, alpha=0.05)[-1]
    assert group_sequential_p_value(c, t) == pytest.approx(0.05, rel=1e-3)
    assert group_sequential_p_value(c + 0.01, t) < 0.05 < group_sequential_p_value(c - 0.01, t)
    # never smaller than the fixed-horizon p-value of the same z
    assert group_sequential_p_value(2.5, t) > 2 * (1 - 0.99379)
    assert group_sequential_p_value(0.0, t) == pytest.approx(1.0)


def test_design_fractions_from_planned_or_actual_looks() -> None:
    planned = GroupSequential(planned_n=1000, looks=4)
    assert planned.fractions(260) == pytest.approx([0.26])
    assert planned.fractions(760) == pytest.approx([0.25, 0.5, 0.76])  # stands for look 3
    assert planned.fractions(1100) == pytest.approx([0.25, 0.5, 0.75, 1.1])
    actual = GroupSequential(planned_n=1000, look_n=(100, 400))
    assert actual.fractions(700) == pytest.approx([0.1, 0.4, 0.7])
    look = planned.describe(760, 0.05)
    assert look["look"] == 3 and not look["final"]
    assert look["alpha_spent"] == pytest.approx(alpha_spent(0.76, 0.05, "obrien-fleming"))


def test_bad_designs_are_one_line_config_errors() -> None:
    for kwargs, match in (
        ({"planned_n": 0}, "planned_n must be"),
        ({"planned_n": 100, "looks": 0}, "looks must be"),
        ({"planned_n": 100, "spending": "linear"}, "spending must be one of"),
        ({"planned_n": 100, "look_n": (50, 20)}, "increasing"),
    ):
        with pytest.raises(ConfigError, match=match) as info:
            GroupSequential(**kwargs)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="fewer units than this one"):
        GroupSequential(planned_n=100, look_n=(80,)).fractions(60)
    with pytest.raises(ConfigError, match="must increase"):
        group_sequential_boundaries([0.5, 0.5])

"""Qini and uplift curves: known values, an oracle beats random, a random score is about zero."""

from __future__ import annotations

import numpy as np
import pytest

from retention.exceptions import DataError
from retention.strategies import (
    qini_area,
    qini_auc_score,
    qini_curve,
    uplift_at_k,
    uplift_auc_score,
    uplift_curve,
)


def test_qini_curve_by_hand() -> None:
    # ranked: (t=1,y=1), (t=0,y=0), (t=1,y=0), (t=0,y=1)
    y = np.array([1, 0, 0, 1])
    t = np.array([1, 0, 1, 0])
    u = np.array([4.0, 3.0, 2.0, 1.0])
    x, q = qini_curve(y, u, t)
    assert x.tolist() == [0, 1, 2, 3, 4]
    # Q(k) = Y_t - Y_c * N_t / N_c
    assert q.tolist() == pytest.approx([0, 1, 1 - 0, 1 - 0 * 2, 1 - 1 * 2 / 2])
    _, uu = uplift_curve(y, u, t)
    assert uu[-1] == pytest.approx((1 / 2 - 1 / 2) * 4)
    assert uplift_at_k(y, u, t, 0.5) == pytest.approx(1.0 - 0.0)


def test_ties_form_one_step() -> None:
    y = np.array([1, 0, 1, 0])
    t = np.array([1, 0, 0, 1])
    x, _ = qini_curve(y, np.ones(4), t)
    assert x.tolist() == [0, 4]  # one score: one step, start and end


def _campaign(seed: int, n: int = 6000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tau = rng.choice([0.0, 0.3], size=n)
    t = rng.integers(0, 2, size=n)
    y = (rng.random(n) < 0.2 + t * tau).astype(float)
    return y, t, tau


def test_oracle_beats_random_and_random_is_about_zero() -> None:
    oracle, rand = [], []
    for seed in range(20):
        y, t, tau = _campaign(seed)
        noise = np.random.default_rng(100 + seed).random(len(y))
        oracle.append(qini_auc_score(y, tau + 1e-6 * noise, t))
        rand.append(qini_auc_score(y, noise, t))
    oracle_a, rand_a = np.array(oracle), np.array(rand)
    assert (oracle_a > 0.1).all()
    assert abs(rand_a.mean()) < 3 * rand_a.std(ddof=1) / np.sqrt(len(rand_a)) + 0.01
    assert oracle_a.min() > rand_a.max()


def test_perfect_score_is_one_and_reversed_is_negative() -> None:
    y, t, _ = _campaign(1, 2000)
    perfect = y * t - y * (1 - t)
    assert qini_auc_score(y, perfect, t) == pytest.approx(1.0)
    assert uplift_auc_score(y, perfect + 0.5 * (y == t), t) > 0.5
    assert qini_auc_score(y, -perfect, t) < 0


def test_raw_areas_are_in_outcome_units() -> None:
    y, t, tau = _campaign(2)
    assert qini_area(y, tau, t) > 0
    assert qini_area(y, np.random.default_rng(0).random(len(y)), t) < qini_area(y, tau, t)


def test_continuous_outcome_works() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    tau = rng.choice([0.0, 5.0], size=n)
    t = rng.integers(0, 2, size=n)
    y = rng.exponential(10, size=n) + t * tau
    assert qini_auc_score(y, tau, t) > 0.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(DataError, match="both"):
        qini_auc_score([1, 0], [0.1, 0.2], [1, 1])
    with pytest.raises(DataError, match="differ in length"):
        qini_curve([1, 0, 1], [0.1, 0.2], [1, 0])
    with pytest.raises(DataError, match="share"):
        uplift_at_k([1, 0], [0.1, 0.2], [1, 0], k=1.5)

"""Off-policy estimators: OBP's formulas on small inputs, the TS action distribution, the
bundled Open Bandit log."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import bundled

from retention.experiments import (
    BanditLog,
    bandit_log_from_frame,
    bernoulli_ts_action_dist,
    estimate_policy_value,
    fit_reward_model,
    round_values,
)


def tiny_log(n: int = 500, seed: int = 0) -> BanditLog:
    rng = np.random.default_rng(seed)
    n_actions, n_pos = 5, 2
    return BanditLog(
        action=rng.integers(0, n_actions, n),
        position=rng.integers(0, n_pos, n),
        reward=(rng.random(n) < 0.2).astype(float),
        pscore=np.full(n, 1 / n_actions),
        context=rng.normal(size=(n, 3)),
        action_context=rng.normal(size=(n_actions, 2)),
    )


def test_estimators_are_the_published_formulas() -> None:
    log = tiny_log()
    rng = np.random.default_rng(1)
    pi = rng.dirichlet(np.ones(5), size=2).T  # (n_actions, len_list), columns sum to 1
    q = rng.random((log.n_rounds, 5, 2))
    v = round_values(log, pi, q)
    w = pi[log.action, log.position] / log.pscore
    assert v["ipw"].mean() == pytest.approx(np.mean(w * log.reward), rel=1e-12)
    assert v["snipw"].mean() == pytest.approx(np.sum(w * log.reward) / np.sum(w), rel=1e-12)
    dm = np.array([pi[:, k] @ q[i, :, k] for i, k in enumerate(log.position)])
    assert v["dm"].mean() == pytest.approx(dm.mean(), rel=1e-12)
    q_obs = q[np.arange(log.n_rounds), log.action, log.position]
    assert v["dr"].mean() == pytest.approx(dm.mean() + np.mean(w * (log.reward - q_obs)), rel=1e-12)
    est = estimate_policy_value(log, pi, q, n_bootstrap=200)
    for name, e in est.items():
        assert e.ci_low <= e.value <= e.ci_high, name


def test_ts_action_dist_matches_one_draw_at_a_time() -> None:
    alpha, beta = np.array([5.0, 1.0, 3.0, 2.0]), np.array([50.0, 40.0, 20.0, 60.0])
    fast = bernoulli_ts_action_dist(alpha, beta, len_list=2, n_sim=3000, seed=7, batch=700)
    rs = np.random.RandomState(7)
    counts = np.zeros((4, 2))
    for _ in range(3000):  # OBP's loop: one Beta draw per item, then rank
        ranked = rs.beta(alpha, beta).argsort()[::-1][:2]
        for k in range(2):
            counts[ranked[k], k] += 1
    np.testing.assert_allclose(fast, counts / 3000, rtol=0, atol=1e-15)
    assert fast.sum(axis=0) == pytest.approx([1.0, 1.0])


def test_bundled_open_bandit_log_in_obp_features() -> None:
    log = pd.read_csv(bundled("open_bandit_random_all.csv.gz"), index_col=0)
    items = pd.read_csv(bundled("open_bandit_random_all_item_context.csv.gz"), index_col=0)
    data = bandit_log_from_frame(log, items)
    assert data.n_rounds == 10_000 and data.n_actions == 80 and data.len_list == 3
    assert data.pscore == pytest.approx(np.full(10_000, 1 / 80))
    prior = json.loads(bundled("open_bandit_bts_prior.json").read_text())
    dist = bernoulli_ts_action_dist(prior["alpha"], prior["beta"], n_sim=5000, seed=1)
    assert dist.shape == (80, 3)
    # IPW with the TS policy is an average of click * 80 * pi(a, k)
    v = round_values(data, dist)["ipw"].mean()
    ref = np.mean(data.reward * dist[data.action, data.position] * 80)
    assert v == pytest.approx(ref, rel=1e-12)
    sample = data.take(np.arange(1500))
    q = fit_reward_model(sample, n_folds=2, max_iter=200)
    assert q.shape == (1500, 80, 3) and ((q >= 0) & (q < 1)).all()

"""Off-policy evaluation: what a new recommendation policy would earn, from a log of another.

The estimators follow the Open Bandit Pipeline's definitions (Saito et al. 2021) for a log of
rounds ``i`` with context ``x_i``, shown item ``a_i`` at position ``k_i``, reward ``r_i`` and the
logging policy's propensity ``p_i``; ``pi(a | x, k)`` is the evaluation policy and
``q(x, a, k)`` a reward model:

- IPW: ``mean(w_i r_i)`` with ``w_i = pi(a_i | x_i, k_i) / p_i``;
- SNIPW: ``sum(w_i r_i) / sum(w_i)``;
- DM: ``mean_i sum_a pi(a | x_i, k_i) q(x_i, a, k_i)``;
- DR: DM plus ``mean(w_i (r_i - q(x_i, a_i, k_i)))``.

Intervals are percentile bootstraps of the per-round values (as OBP's ``estimate_interval``).
:func:`bernoulli_ts_action_dist` computes a (context-free) Bernoulli Thompson-sampling policy's
probability of showing each item at each position by Monte Carlo from its Beta posteriors;
:func:`fit_reward_model` is OBP's ``RegressionModel`` protocol (one logistic regression per
position on the context and the item's features, cross-fitted over folds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import track
from retention.exceptions import ConfigError, DataError

__all__ = [
    "ESTIMATORS",
    "BanditLog",
    "PolicyEstimate",
    "bandit_log_from_frame",
    "bernoulli_ts_action_dist",
    "estimate_policy_value",
    "fit_reward_model",
    "relative_error_protocol",
    "round_values",
]

ESTIMATORS = ("dm", "ipw", "snipw", "dr")


@dataclass(frozen=True)
class BanditLog:
    """A logged-bandit dataset in arrays (OBP's ``bandit_feedback``).

    Attributes
    ----------
    action, position : ndarray of int, shape (n,)
        Item shown (0 .. n_actions - 1) and its position (0 .. len_list - 1).
    reward : ndarray of float, shape (n,)
    pscore : ndarray of float, shape (n,)
        The logging policy's probability of that item at that position.
    context : ndarray, shape (n, d)
        Features of each round (one-hot user features).
    action_context : ndarray, shape (n_actions, e)
        Features of each item.
    """

    action: np.ndarray
    position: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    context: np.ndarray
    action_context: np.ndarray

    @property
    def n_rounds(self) -> int:
        return len(self.action)

    @property
    def n_actions(self) -> int:
        return int(self.action_context.shape[0])

    @property
    def len_list(self) -> int:
        return int(self.position.max()) + 1

    def take(self, idx: np.ndarray) -> BanditLog:
        """The rounds ``idx`` (a bootstrap sample)."""
        return BanditLog(
            self.action[idx],
            self.position[idx],
            self.reward[idx],
            self.pscore[idx],
            self.context[idx],
            self.action_context,
        )


def bandit_log_from_frame(log: pd.DataFrame, items: pd.DataFrame) -> BanditLog:
    """Arrays of an Open Bandit log in OBP's default feature engineering.

    ``log`` has ``item_id``, ``position`` (1-based), ``click``, ``propensity_score`` and
    ``user_feature_0..3``; ``items`` has ``item_id``, ``item_feature_0`` (numeric) and further
    categorical ``item_feature_*`` columns. The context is the one-hot coding of the user
    features with the first level of each dropped; the item features are the label codes of the
    categorical ones and ``item_feature_0``, as OBP's ``OpenBanditDataset.pre_process``.
    """
    need = {"item_id", "position", "click", "propensity_score"}
    missing = sorted(need - set(log.columns))
    if missing:
        raise DataError(
            f"The bandit log lacks column(s) {', '.join(missing)}; it needs item_id, position, "
            "click, propensity_score and user_feature_* columns."
        )
    user_cols = [c for c in log.columns if str(c).startswith("user_feature")]
    if not user_cols:
        raise DataError("The bandit log has no user_feature_* columns to use as context.")
    if (log["propensity_score"] <= 0).any() or log["propensity_score"].isna().any():
        raise DataError("Every propensity_score of the log must be a positive probability.")
    ctx = pd.get_dummies(log[user_cols].astype(str), drop_first=True).to_numpy(dtype=float)
    item_cols = [
        c for c in items.columns if str(c).startswith("item_feature") and c != "item_feature_0"
    ]
    cat = (
        np.column_stack([pd.factorize(items[c].astype(str), sort=True)[0] for c in item_cols])
        if item_cols
        else np.zeros((len(items), 0))
    )
    order = items["item_id"].astype(int).to_numpy()
    action_context = np.empty((len(items), cat.shape[1] + 1))
    action_context[order, : cat.shape[1]] = cat
    action_context[order, cat.shape[1]] = items["item_feature_0"].astype(float).to_numpy()
    return BanditLog(
        action=log["item_id"].astype(int).to_numpy(),
        position=log["position"].astype(int).to_numpy() - 1,
        reward=log["click"].astype(float).to_numpy(),
        pscore=log["propensity_score"].astype(float).to_numpy(),
        context=ctx,
        action_context=action_context,
    )


def bernoulli_ts_action_dist(
    alpha: Sequence[float],
    beta: Sequence[float],
    *,
    len_list: int = 3,
    n_sim: int = 100_000,
    seed: int = 12345,
    batch: int = 20_000,
) -> np.ndarray:
    """``pi(a, k)``: how often Thompson sampling from ``Beta(alpha, beta)`` ranks item ``a`` at
    position ``k`` (shape ``(n_actions, len_list)``), by ``n_sim`` Monte Carlo draws.

    Each draw samples one value per item and ranks the items by it, as a context-free Bernoulli
    TS policy does; the draws use numpy's legacy ``RandomState(seed)`` in the same order as
    OBP's ``BernoulliTS.compute_batch_action_dist``, in vectorised batches.
    """
    a = np.asarray(alpha, dtype=float)
    b = np.asarray(beta, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or (a <= 0).any() or (b <= 0).any():
        raise ConfigError("alpha and beta must be two positive vectors of the same length.")
    if not 1 <= len_list <= len(a):
        raise ConfigError(f"len_list must be in [1, {len(a)}]; got {len_list!r}.")
    rs = np.random.RandomState(seed)
    counts = np.zeros((len(a), len_list))
    done = 0
    while done < n_sim:
        m = min(batch, n_sim - done)
        draws = rs.beta(np.broadcast_to(a, (m, len(a))), np.broadcast_to(b, (m, len(a))))
        top = np.argsort(draws, axis=1)[:, ::-1][:, :len_list]
        for k in range(len_list):
            counts[:, k] += np.bincount(top[:, k], minlength=len(a))
        done += m
    return counts / n_sim


def fit_reward_model(
    log: BanditLog,
    *,
    n_folds: int = 3,
    seed: int = 12345,
    C: float = 100.0,
    max_iter: int = 10_000,
) -> np.ndarray:
    """``q(x_i, a, k)`` for every round, item and position (shape ``(n, n_actions, len_list)``).

    One logistic regression per position on ``[context, item features]``, fitted on the other
    folds of a shuffled ``KFold(n_folds)`` and predicted on each round's own fold (cross-fitting).
    A position whose training rounds hold a single reward value gets that constant.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    n, n_actions, n_pos = log.n_rounds, log.n_actions, log.len_list
    q = np.zeros((n, n_actions, n_pos))
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(log.context)
    for train, test in folds:
        models = []
        for k in range(n_pos):
            idx = train[log.position[train] == k]
            x = np.c_[log.context[idx], log.action_context[log.action[idx]]]
            y = log.reward[idx]
            if len(np.unique(y)) < 2:  # no click (or only clicks) here: a constant model
                models.append(float(y.mean()) if len(y) else 0.0)
                continue
            model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
            models.append(model.fit(x, y))
        ctx = log.context[test]
        for a in range(n_actions):
            x = np.c_[ctx, np.repeat(log.action_context[a][None, :], len(test), axis=0)]
            for k in range(n_pos):
                m = models[k]
                q[test, a, k] = m if isinstance(m, float) else m.predict_proba(x)[:, 1]
    return q


def round_values(
    log: BanditLog, action_dist: np.ndarray, q_hat: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-round values whose mean is each estimate (SNIPW's normalised by the mean weight).

    ``action_dist`` is ``(n_actions, len_list)`` for a context-free policy or
    ``(n, n_actions, len_list)``.
    """
    n = log.n_rounds
    dist = (
        action_dist
        if action_dist.ndim == 3
        else np.broadcast_to(action_dist, (n, *action_dist.shape))
    )
    if dist.shape[1:] != (log.n_actions, log.len_list) or dist.shape[0] != n:
        raise ConfigError(
            f"action_dist must have shape (n_actions, len_list) = ({log.n_actions}, "
            f"{log.len_list}) or (n_rounds, n_actions, len_list); got {action_dist.shape}."
        )
    rows = np.arange(n)
    w = dist[rows, log.action, log.position] / log.pscore
    out = {"ipw": w * log.reward, "snipw": w * log.reward / w.mean()}
    if q_hat is not None:
        pi_k = dist[rows, :, log.position]  # (n, n_actions) at each round's position
        q_k = q_hat[rows, :, log.position]
        dm = (pi_k * q_k).sum(axis=1)
        out["dm"] = dm
        out["dr"] = dm + w * (log.reward - q_hat[rows, log.action, log.position])
    return out


@dataclass(frozen=True)
class PolicyEstimate:
    """One estimator's value of the evaluation policy, with a bootstrap interval."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "value": self.value,
            "interval": [self.ci_low, self.ci_high],
        }


def estimate_policy_value(
    log: BanditLog,
    action_dist: np.ndarray,
    q_hat: np.ndarray | None = None,
    *,
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    seed: int = 12345,
) -> dict[str, PolicyEstimate]:
    """IPW, SNIPW and (with ``q_hat``) DM and DR estimates with percentile-bootstrap intervals."""
    values = round_values(log, action_dist, q_hat)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, log.n_rounds, size=(n_bootstrap, log.n_rounds))
    out = {}
    for name in ESTIMATORS:
        if name not in values:
            continue
        v = values[name]
        boot = v[idx].mean(axis=1)
        lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
        out[name] = PolicyEstimate(name, float(v.mean()), float(lo), float(hi))
    return out


def relative_error_protocol(
    log: BanditLog,
    action_dist: np.ndarray,
    ground_truth: float,
    *,
    n_runs: int = 30,
    seed: int = 12345,
    n_folds: int = 3,
) -> pd.DataFrame:
    """OBP's evaluation of estimators: ``n_runs`` bootstrap samples of the log (legacy
    ``RandomState(b)`` draws, ``b = 0 .. n_runs - 1``), a reward model cross-fitted on each,
    and every estimator's relative error ``|estimate - truth| / truth``.

    Returns
    -------
    pd.DataFrame
        One row per run, one column per estimator.
    """
    if not ground_truth > 0:
        raise ConfigError(f"ground_truth must be a positive policy value; got {ground_truth!r}.")
    rows = []
    for b in track(range(n_runs), "off-policy bootstrap", total=n_runs):
        idx = np.random.RandomState(b).choice(
            np.arange(log.n_rounds), size=log.n_rounds, replace=True
        )
        sample = log.take(idx)
        q = fit_reward_model(sample, n_folds=n_folds, seed=seed)
        values = round_values(sample, action_dist, q)
        rows.append(
            {k: abs(float(values[k].mean()) - ground_truth) / ground_truth for k in ESTIMATORS}
        )
    return pd.DataFrame(rows, columns=list(ESTIMATORS))

"""What a targeting policy is worth, measured on held-out randomised data.

A policy gives each unit a probability of each arm, ``pi`` of shape ``(n, K)`` (a deterministic
policy puts 1 on one arm). On units assigned at random with known propensities ``e``:

* **IPW** (inverse-propensity weighting, Horvitz-Thompson): a unit whose logged arm ``a`` the
  policy would also choose counts ``pi(a | x) y / e(a | x)``; the mean over units estimates the
  mean outcome had everyone been treated by the policy. Unbiased when ``e`` is right.
* **DR** (doubly robust): ``sum_a pi(a|x) mu_a(x) + pi(A|x) (y - mu_A(x)) / e(A|x)`` with an
  outcome model ``mu`` (fitted on other units): unbiased when either ``e`` or ``mu`` is right,
  with a smaller variance than IPW when ``mu`` is good.

:func:`evaluate_policies` reports each policy's value and its gain over treating nobody (the
incremental outcome), per unit and in total, with paired bootstrap intervals: the same resampled
units for every policy, so that differences and ratios between policies get intervals too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from retention.exceptions import ConfigError, DataError

__all__ = [
    "PolicyComparison",
    "dr_contributions",
    "evaluate_policies",
    "ipw_contributions",
    "one_hot_policy",
]


def one_hot_policy(choice: npt.ArrayLike, n_arms: int) -> np.ndarray:
    """A deterministic policy (arm index per unit) as probabilities ``(n, n_arms)``."""
    c = np.asarray(choice, dtype=np.int64)
    if c.min(initial=0) < 0 or c.max(initial=0) >= n_arms:
        raise ConfigError(f"Policy arms must be in 0..{n_arms - 1}.")
    pi = np.zeros((len(c), n_arms))
    pi[np.arange(len(c)), c] = 1.0
    return pi


def _check(
    y: npt.ArrayLike, arm: npt.ArrayLike, propensity: npt.ArrayLike, pi: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    yv = np.asarray(y, dtype=float)
    a = np.asarray(arm, dtype=np.int64)
    e = np.asarray(propensity, dtype=float)
    p = np.asarray(pi, dtype=float)
    n = len(yv)
    if e.ndim != 2 or e.shape[0] != n or p.shape != e.shape or len(a) != n:
        raise DataError(
            f"y ({n}), arm ({len(a)}), propensity {e.shape} and policy {p.shape} do not match: "
            "one row per unit, one column per arm."
        )
    if not np.all(e > 0):
        raise DataError("Propensities must be positive for every arm a policy may choose.")
    if not np.allclose(p.sum(axis=1), 1.0):
        raise DataError("Each unit's policy probabilities must sum to 1.")
    return yv, a, e, p


def ipw_contributions(
    y: npt.ArrayLike, arm: npt.ArrayLike, propensity: npt.ArrayLike, pi: npt.ArrayLike
) -> np.ndarray:
    """Each unit's IPW term ``pi(A|x) y / e(A|x)``; their mean is the policy's value."""
    yv, a, e, p = _check(y, arm, propensity, pi)
    rows = np.arange(len(yv))
    return p[rows, a] * yv / e[rows, a]


def dr_contributions(
    y: npt.ArrayLike,
    arm: npt.ArrayLike,
    propensity: npt.ArrayLike,
    pi: npt.ArrayLike,
    mu: npt.ArrayLike,
) -> np.ndarray:
    """Each unit's doubly robust term; their mean is the policy's value.

    ``mu`` is the outcome model's prediction under each arm, shape ``(n, K)``, fitted on other
    units than these.
    """
    yv, a, e, p = _check(y, arm, propensity, pi)
    m = np.asarray(mu, dtype=float)
    if m.shape != p.shape:
        raise DataError(f"mu must have shape {p.shape}; got {m.shape}.")
    rows = np.arange(len(yv))
    return (p * m).sum(axis=1) + p[rows, a] * (yv - m[rows, a]) / e[rows, a]


@dataclass(frozen=True)
class PolicyComparison:
    """Policies valued on the same held-out units.

    Attributes
    ----------
    table : pd.DataFrame
        One row per policy and estimator (``ipw``, ``dr``): ``treated_share``, ``value`` (mean
        outcome per unit), ``incremental`` (total gain over treating nobody, on these units),
        ``incremental_low`` / ``incremental_high`` (bootstrap interval), ``per_1000`` (gain per
        1,000 units), and, when a reference policy is named, ``ratio`` (incremental over the
        reference's) with ``ratio_low`` / ``ratio_high``. A ratio is NaN when the reference
        gains nothing over treating nobody (its incremental is 0 or less, where a ratio of two
        losses would read as a gain), its interval NaN too when the reference's resampled gain is
        0 or less in more than ``1 - level`` of the resamples (the ratio is then unbounded).
    n_units : int
        Units valued.
    n_boot : int
        Bootstrap resamples.
    level : float
        Coverage of the intervals.
    reference : str or None
        The policy the ratios divide by.
    """

    table: pd.DataFrame
    n_units: int
    n_boot: int
    level: float
    reference: str | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ``{policy: {estimator: {...}}}`` plus the settings."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for key, row in self.table.iterrows():
            policy, estimator = (str(k) for k in key)  # type: ignore[attr-defined]
            out.setdefault(policy, {})[estimator] = {str(k): float(v) for k, v in row.items()}
        return {
            "policies": out,
            "n_units": self.n_units,
            "n_boot": self.n_boot,
            "level": self.level,
            "reference": self.reference,
        }


def _bootstrap_sums(
    values: Mapping[str, np.ndarray], n_boot: int, random_state: int
) -> dict[str, np.ndarray]:
    """Sums of each array over the same ``n_boot`` resamples of its units.

    The resamples are drawn 50 at a time as unit indices, turned into counts per unit, and every
    array is summed at once as one product (counts x arrays): memory stays at about 50
    resamples' worth, and many policies cost about as much as one.
    """
    if n_boot <= 0 or not values:
        return {}
    names = list(values)
    matrix = np.column_stack([np.asarray(values[name], dtype=float) for name in names])
    n = matrix.shape[0]
    rng = np.random.default_rng(random_state)
    parts: list[np.ndarray] = []
    done = 0
    while done < n_boot:
        size = min(50, n_boot - done)
        idx = rng.integers(0, n, size=(size, n))
        counts = np.stack([np.bincount(row, minlength=n) for row in idx]).astype(float)
        parts.append(counts @ matrix)
        done += size
    sums = np.concatenate(parts, axis=0)
    return {name: sums[:, j] for j, name in enumerate(names)}


def evaluate_policies(
    y: npt.ArrayLike,
    arm: npt.ArrayLike,
    propensity: npt.ArrayLike,
    policies: Mapping[str, npt.ArrayLike],
    *,
    mu: npt.ArrayLike | None = None,
    reference: str | None = None,
    other_references: Sequence[str] = (),
    n_boot: int = 500,
    level: float = 0.95,
    random_state: int = 0,
) -> PolicyComparison:
    """Value several policies on the same units, with paired bootstrap intervals.

    Parameters
    ----------
    y, arm, propensity : the held-out units: outcome, logged arm (0 = control), ``(n, K)``
        propensities.
    policies : mapping of str to array (n, K)
        The policies, as probabilities per arm.
    mu : array (n, K), optional
        Outcome predictions per arm from a model fitted elsewhere: adds the DR estimate.
    reference : str, optional
        A policy in ``policies`` whose incremental outcome the others are divided by (the ratio
        "policy / random targeting").
    other_references : sequence of str
        More policies in ``policies`` to divide by: each adds the columns ``ratio_vs_NAME`` with
        ``ratio_vs_NAME_low`` / ``ratio_vs_NAME_high`` (e.g. random targeting defined two ways).
    n_boot : int
        Bootstrap resamples of the units.
    level : float
        Interval coverage.
    random_state : int
        Seed of the resampling.
    """
    if not policies:
        raise ConfigError("Pass at least one policy to evaluate.")
    if reference is not None and reference not in policies:
        raise ConfigError(f"reference {reference!r} is not one of the policies.")
    missing = [r for r in other_references if r not in policies]
    if missing:
        raise ConfigError(f"reference(s) {', '.join(map(repr, missing))} not among the policies.")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1); got {level!r}.")
    yv = np.asarray(y, dtype=float)
    e = np.asarray(propensity, dtype=float)
    n, k = e.shape
    nobody = one_hot_policy(np.zeros(n, dtype=np.int64), k)
    estimators: dict[str, dict[str, np.ndarray]] = {"ipw": {}}
    base = {"ipw": ipw_contributions(yv, arm, e, nobody)}
    if mu is not None:
        estimators["dr"] = {}
        base["dr"] = dr_contributions(yv, arm, e, nobody, mu)
    for name, pi in policies.items():
        estimators["ipw"][name] = ipw_contributions(yv, arm, e, pi)
        if mu is not None:
            estimators["dr"][name] = dr_contributions(yv, arm, e, pi, mu)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    rows = []
    for est, contribs in estimators.items():
        gains = {name: c - base[est] for name, c in contribs.items()}
        boot = _bootstrap_sums(gains, int(n_boot), random_state)
        for name, c in contribs.items():
            pi = np.asarray(policies[name], dtype=float)
            total = float(gains[name].sum())
            row = {
                "policy": name,
                "estimator": est,
                "treated_share": float(1 - pi[:, 0].mean()),
                "value": float(c.mean()),
                "incremental": total,
                "incremental_low": float(np.quantile(boot[name], lo_q)) if boot else np.nan,
                "incremental_high": float(np.quantile(boot[name], hi_q)) if boot else np.nan,
                "per_1000": 1000 * total / n,
            }
            refs = ([] if reference is None else [("ratio", reference)]) + [
                (f"ratio_vs_{r}", r) for r in other_references
            ]
            for column, ref in refs:
                # a ratio to a reference that gains nothing (or loses) means nothing: two
                # losses would divide to a "gain" above 1
                ref_total = float(gains[ref].sum())
                row[column] = total / ref_total if ref_total > 0 else np.nan
                low = high = np.nan
                if boot and ref_total > 0:
                    keep = boot[ref] > 0
                    if keep.mean() >= level:  # else the ratio's interval is unbounded
                        r = boot[name][keep] / boot[ref][keep]
                        low, high = float(np.quantile(r, lo_q)), float(np.quantile(r, hi_q))
                row[f"{column}_low"], row[f"{column}_high"] = low, high
            rows.append(row)
    table = pd.DataFrame(rows).set_index(["policy", "estimator"])
    return PolicyComparison(table, n, int(n_boot), float(level), reference)

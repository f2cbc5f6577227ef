"""Validation by simulation: the analysis run on thousands of simulated experiments at once.

Each function draws seeded experiments with numpy and feeds their per-arm moments, as arrays,
to the very functions of :mod:`retention.experiments._stats` that analyse real ones; nothing is
looped per run in Python, so 2,000 runs take well under a second.

- :func:`simulate_aa`: A/A tests (no effect): the share of runs with ``p < alpha`` should be
  ``alpha``.
- :func:`simulate_coverage`: experiments with a true effect: the share of intervals holding it
  should be ``1 - alpha``.
- :func:`simulate_peeking`: experiments looked at daily, the fixed-horizon t test against the
  confidence sequence and the group-sequential design: on A/A tests the first's false-positive
  rate inflates, the confidence sequence's stays under alpha, the group design's is alpha; with
  an effect, the same runs give each one's power.
- :func:`simulate_srm`: a planned 50/50 split delivered 50.5/49.5 (or any share): how often the
  sample-ratio check flags it, and how often it flags a correct split.
- :func:`simulate_cuped`: experiments drawn over real units (pre-period and outcome values):
  the variance of the CUPED estimate against the plain one, to compare with ``1 - rho^2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from retention.exceptions import ConfigError
from retention.experiments._stats import (
    ArmMoments,
    group_sequential_boundaries,
    srm_test,
    welch,
)

__all__ = [
    "SimulationResult",
    "simulate_aa",
    "simulate_coverage",
    "simulate_cuped",
    "simulate_peeking",
    "simulate_srm",
]


@dataclass(frozen=True)
class SimulationResult:
    """What a simulation measured: ``rate`` (a false-positive rate, a coverage, a detection
    rate or a variance ratio) over ``n_runs`` runs, with its binomial standard error, and the
    details of the set-up."""

    name: str
    rate: float
    n_runs: int
    se: float
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rate": self.rate,
            "n_runs": self.n_runs,
            "se": self.se,
            **self.details,
        }


def _check_runs(n_runs: int, n: int) -> None:
    for name, value in (("n_runs", n_runs), ("n_per_arm", n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ConfigError(f"{name} must be a whole number >= 2; got {value!r}.")


def _arm(
    kind: str, rng: np.random.Generator, n_runs: int, n: int, shift: float = 0.0, p: float = 0.2
) -> ArmMoments:
    """Moments of ``n_runs`` simulated arms of ``n`` units each."""
    if kind == "binary":
        s = rng.binomial(n, p + shift, size=n_runs).astype(float)
        return ArmMoments(n=np.full(n_runs, float(n)), sum=s, sum_sq=s, binary=True)
    # a skewed revenue-like metric: lognormal, mean about 1 before the shift
    y = rng.lognormal(mean=-0.5, sigma=1.0, size=(n_runs, n)) + shift
    return ArmMoments(n=np.full(n_runs, float(n)), sum=y.sum(axis=1), sum_sq=(y * y).sum(axis=1))


def _rate(hits: Any) -> tuple[float, float]:
    r = float(np.mean(hits))
    return r, float(np.sqrt(r * (1 - r) / len(hits)))


def simulate_aa(
    n_runs: int = 2000,
    n_per_arm: int = 1000,
    *,
    kind: str = "binary",
    alpha: float = 0.05,
    seed: int = 0,
) -> SimulationResult:
    """False-positive rate of the fixed-horizon Welch test on A/A experiments.

    Parameters
    ----------
    n_runs : int
        Simulated experiments.
    n_per_arm : int
        Units per arm.
    kind : {"binary", "mean"}
        A conversion-like 0/1 metric (rate 0.2) or a skewed revenue-like one (lognormal).
    alpha : float
    seed : int
    """
    _check_runs(n_runs, n_per_arm)
    rng = np.random.default_rng(seed)
    a, b = _arm(kind, rng, n_runs, n_per_arm), _arm(kind, rng, n_runs, n_per_arm)
    est = welch(a, b, alpha=alpha)
    rate, se = _rate(np.asarray(est.p_value) < alpha)
    return SimulationResult(
        "aa_false_positive_rate",
        rate,
        n_runs,
        se,
        {"kind": kind, "n_per_arm": n_per_arm, "alpha": alpha, "seed": seed},
    )


def simulate_coverage(
    n_runs: int = 2000,
    n_per_arm: int = 1000,
    *,
    kind: str = "binary",
    effect: float = 0.02,
    alpha: float = 0.05,
    seed: int = 1,
) -> SimulationResult:
    """Share of intervals that hold the true difference ``effect`` (should be ``1 - alpha``)."""
    _check_runs(n_runs, n_per_arm)
    rng = np.random.default_rng(seed)
    a = _arm(kind, rng, n_runs, n_per_arm)
    b = _arm(kind, rng, n_runs, n_per_arm, shift=effect)
    est = welch(a, b, alpha=alpha)
    lift_truth = effect / (0.2 if kind == "binary" else float(np.exp(-0.5 + 0.5)))
    covered = (np.asarray(est.ci_low) <= effect) & (effect <= np.asarray(est.ci_high))
    rate, se = _rate(covered)
    lift_cov = float(
        np.mean((np.asarray(est.lift_ci_low) <= lift_truth) & (lift_truth <= est.lift_ci_high))
    )
    return SimulationResult(
        "interval_coverage",
        rate,
        n_runs,
        se,
        {
            "kind": kind,
            "n_per_arm": n_per_arm,
            "effect": effect,
            "alpha": alpha,
            "seed": seed,
            "lift_coverage": lift_cov,
        },
    )


def simulate_peeking(
    n_runs: int = 2000,
    days: int = 28,
    units_per_day: int = 200,
    *,
    kind: str = "binary",
    alpha: float = 0.05,
    tuning: float = 5000.0,
    design: str = "always-valid",
    spending: str = "obrien-fleming",
    effect: float = 0.0,
    seed: int = 2,
) -> SimulationResult:
    """Experiments looked at after every day: the share of runs that ever reject.

    Every run is analysed at each of the ``days`` looks by three tests on the same data: the
    confidence sequence (``always-valid``), the group-sequential design planned for the
    ``days`` looks (``group``: Lan-DeMets ``spending`` at fractions ``day / days``, boundaries
    from :func:`~retention.experiments._stats.group_sequential_boundaries`, the rule that
    :func:`~retention.experiments.analyze_summaries` applies at one look), and the fixed-horizon
    t test peeked at daily. ``rate`` is that of ``design``; ``details`` holds all three
    (``always_valid_rate``, ``group_rate``, ``fixed_horizon_rate``), and
    ``fixed_horizon_last_look_rate``, the t test at the end only, the planned-horizon
    reference. With ``effect = 0`` (A/A) these are false-positive rates; with an effect (the
    treatment's shift in the metric) they are powers, and ``group_mean_stop_fraction`` is the
    group design's mean share of the planned units used (it stops at its first crossing).
    """
    _check_runs(n_runs, units_per_day)
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"days must be a whole number >= 1; got {days!r}.")
    if design not in ("always-valid", "group"):
        raise ConfigError(f"design must be 'always-valid' or 'group'; got {design!r}.")
    rng = np.random.default_rng(seed)

    def daily(shift: float) -> tuple[np.ndarray, np.ndarray]:
        if kind == "binary":
            s = rng.binomial(units_per_day, 0.2 + shift, size=(n_runs, days)).astype(float)
            return np.cumsum(s, axis=1), np.cumsum(s, axis=1)
        y = rng.lognormal(-0.5, 1.0, size=(n_runs, days, units_per_day)) + shift
        return np.cumsum(y.sum(axis=2), axis=1), np.cumsum((y * y).sum(axis=2), axis=1)

    (sa, qa), (sb, qb) = daily(0.0), daily(effect)
    n = np.broadcast_to(units_per_day * np.arange(1, days + 1, dtype=float), sa.shape)
    binary = kind == "binary"
    a = ArmMoments(n=n, sum=sa, sum_sq=qa, binary=binary)
    b = ArmMoments(n=n, sum=sb, sum_sq=qb, binary=binary)
    seq = welch(a, b, alpha=alpha, sequential=True, tuning=tuning)
    fixed = welch(a, b, alpha=alpha)
    seq_hits = (np.asarray(seq.p_value) < alpha).any(axis=1)
    fixed_hits = (np.asarray(fixed.p_value) < alpha).any(axis=1)
    # the group design: the z statistic of each look against that look's boundary
    fractions = np.arange(1, days + 1, dtype=float) / days
    bounds = group_sequential_boundaries(fractions, alpha=alpha, spending=spending)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.asarray(fixed.difference) / np.asarray(fixed.se)
    crossed = np.abs(np.nan_to_num(z)) >= bounds
    group_hits = crossed.any(axis=1)
    stop = np.where(group_hits, crossed.argmax(axis=1) + 1, days) / days
    rates = {"always-valid": _rate(seq_hits), "group": _rate(group_hits)}
    rate, se = rates[design]
    f_rate, f_se = _rate(fixed_hits)
    final_fpr = float(np.mean(np.asarray(fixed.p_value)[:, -1] < alpha))
    return SimulationResult(
        "sequential_peeking_false_positive_rate" if effect == 0 else "sequential_peeking_power",
        rate,
        n_runs,
        se,
        {
            "kind": kind,
            "design": design,
            "days": days,
            "units_per_day": units_per_day,
            "alpha": alpha,
            "effect": effect,
            "tuning": tuning,
            "spending": spending,
            "seed": seed,
            "always_valid_rate": rates["always-valid"][0],
            "always_valid_se": rates["always-valid"][1],
            "group_rate": rates["group"][0],
            "group_se": rates["group"][1],
            "group_boundaries_z": [float(v) if np.isfinite(v) else None for v in bounds],
            "group_mean_stop_fraction": float(np.mean(stop)),
            "fixed_horizon_rate": f_rate,
            "fixed_horizon_se": f_se,
            "fixed_horizon_last_look_rate": final_fpr,
        },
    )


def simulate_srm(
    n_runs: int = 2000,
    n_units: int = 200_000,
    *,
    delivered_share: float = 0.505,
    planned_share: float = 0.5,
    threshold: float = 1e-3,
    seed: int = 3,
) -> SimulationResult:
    """How often the sample-ratio check flags a split delivered at ``delivered_share`` when
    ``planned_share`` was planned (``rate``), and how often it flags a correct split
    (``details["false_alarm_rate"]``)."""
    _check_runs(n_runs, n_units)
    rng = np.random.default_rng(seed)
    w = [planned_share, 1 - planned_share]

    def flagged(share: float) -> np.ndarray:
        first = rng.binomial(n_units, share, size=n_runs).astype(float)
        counts = np.stack([first, n_units - first], axis=1)
        return np.asarray(srm_test(counts, w)[1]) < threshold

    rate, se = _rate(flagged(delivered_share))
    false_alarm, _ = _rate(flagged(planned_share))
    exact = [round(n_units * delivered_share), n_units - round(n_units * delivered_share)]
    return SimulationResult(
        "srm_detection_rate",
        rate,
        n_runs,
        se,
        {
            "n_units": n_units,
            "delivered_share": delivered_share,
            "planned_share": planned_share,
            "threshold": threshold,
            "seed": seed,
            "false_alarm_rate": false_alarm,
            "p_value_at_exact_split": float(srm_test(exact, w)[1]),
        },
    )


def simulate_cuped(
    pre: np.ndarray,
    post: np.ndarray,
    *,
    n_runs: int = 2000,
    effect: float = 0.0,
    seed: int = 4,
) -> SimulationResult:
    """Randomise real units 50/50 ``n_runs`` times; compare the spread of the CUPED and of the
    plain difference across runs.

    ``rate`` is ``var(CUPED estimate) / var(plain estimate)`` over the runs;
    ``details["one_minus_rho2"]`` is what theory expects, from the correlation of ``pre`` and
    ``post`` over all units. A treatment ``effect`` is added to the treated units' outcome.
    """
    x = np.asarray(pre, dtype=float)
    y = np.asarray(post, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 4:
        raise ConfigError("pre and post must be two 1-d arrays of the same length (>= 4 units).")
    _check_runs(n_runs, len(x))
    rng = np.random.default_rng(seed)
    treat = rng.random((n_runs, len(x))) < 0.5  # (runs, units) boolean assignment
    yt = y + effect

    def moments(mask: np.ndarray, values: np.ndarray) -> ArmMoments:
        m = mask.astype(float)
        return ArmMoments(
            n=m.sum(axis=1),
            sum=m @ values,
            sum_sq=m @ (values * values),
            cov_sum=m @ x,
            cov_sum_sq=m @ (x * x),
            cov_prod=m @ (values * x),
        )

    ctrl, trt = moments(~treat, y), moments(treat, yt)
    adjusted = welch(ctrl, trt)
    plain = welch(ctrl, trt, cuped=False)
    ratio = float(np.var(adjusted.difference) / np.var(plain.difference))
    rho = float(np.corrcoef(x, y)[0, 1])
    # the standard error of a variance ratio of two correlated samples: bootstrap over runs
    idx = rng.integers(0, n_runs, size=(200, n_runs))
    boot = np.var(np.asarray(adjusted.difference)[idx], axis=1) / np.var(
        np.asarray(plain.difference)[idx], axis=1
    )
    return SimulationResult(
        "cuped_variance_ratio",
        ratio,
        n_runs,
        float(np.std(boot)),
        {
            "n_units": len(x),
            "rho": rho,
            "one_minus_rho2": 1 - rho**2,
            "effect": effect,
            "seed": seed,
            "mean_reported_variance_reduction": float(np.mean(adjusted.variance_reduction)),
            "plain_mean_difference": float(np.mean(plain.difference)),
            "cuped_mean_difference": float(np.mean(adjusted.difference)),
        },
    )

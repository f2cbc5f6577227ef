"""The statistics of an A/B comparison, from sufficient statistics (counts, sums, sums of squares
and of products), vectorised over numpy arrays.

Every estimate here is a function of per-arm moments, never of unit rows, so the same code serves
a CSV of 100 rows, a store of 10 million units aggregated in SQL, and 10,000 simulated
experiments at once (each argument may be an array; the result broadcasts).

Conventions, chosen to be those of GrowthBook's stats engine (``gbstats`` 0.8.0), against which
``benchmarks/experiments.py`` checks every number:

- A binary metric's per-unit variance is ``p (1 - p)``; any other metric's is the sample variance
  (``n - 1`` in the denominator).
- The difference of means has variance ``var_t / n_t + var_c / n_c`` and a Welch-Satterthwaite
  t distribution; the relative lift ``(m_t - m_c) / m_c`` has the delta-method variance
  ``var_t / (m_c^2 n_t) + var_c m_t^2 / (m_c^4 n_c)``.
- A ratio metric (revenue per order) is ``sum(num) / sum(den)`` per arm with the delta-method
  variance; CUPED subtracts ``theta (x - mean x)`` with one ``theta`` pooled over both arms.
- The sequential interval is the asymptotic confidence sequence of Waudby-Smith et al. (2023,
  eq. 9; GrowthBook's "GAVI"), valid at every look; its p-value is the inverse of the e-value.
  It holds for an unbounded horizon, so over a planned one it is conservative.
- The group-sequential test spends exactly ``alpha`` over a planned horizon: Lan-DeMets
  alpha-spending (O'Brien-Fleming-type or Pocock-type) at the information fractions
  ``n_look / n_planned`` of the looks that happened, boundaries from the joint normal law of the
  cumulative z statistics (the Armitage-McPherson-Rowe recursion), repeated confidence intervals
  and repeated p-values (Jennison and Turnbull 2000, ch. 7 and 9).
- The Bayesian result uses a flat (or a Gaussian) prior on the effect and the normal likelihood
  of the estimate: chance to beat control ``P(effect > 0)`` and expected loss
  ``E[max(-effect, 0)]``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from retention.exceptions import ConfigError

__all__ = [
    "SPENDING",
    "ArmMoments",
    "Estimate",
    "GroupSequential",
    "alpha_spent",
    "bayesian",
    "classical_boundary",
    "confidence_sequence",
    "cuped_theta",
    "group_sequential_boundaries",
    "group_sequential_p_value",
    "srm_test",
    "welch",
]

Array = Any  # a float or an ndarray of floats


@dataclass(frozen=True)
class ArmMoments:
    """Sufficient statistics of one metric in one arm (each field a number or an array).

    Attributes
    ----------
    n : units in the arm.
    sum, sum_sq : sum and sum of squares of the metric (the numerator of a ratio metric).
    binary : whether the metric is 0/1 (variance ``p (1 - p)``).
    den_sum, den_sum_sq, num_den : the denominator of a ratio metric: its sum, sum of squares,
        and the sum of numerator times denominator; None for a plain metric.
    cov_sum, cov_sum_sq, cov_prod : the CUPED covariate: its sum, sum of squares, and the sum of
        metric times covariate; None without covariate.
    cov_binary : whether the covariate is 0/1.
    """

    n: Array
    sum: Array
    sum_sq: Array
    binary: bool = False
    den_sum: Array | None = None
    den_sum_sq: Array | None = None
    num_den: Array | None = None
    cov_sum: Array | None = None
    cov_sum_sq: Array | None = None
    cov_prod: Array | None = None
    cov_binary: bool = False

    @property
    def is_ratio(self) -> bool:
        return self.den_sum is not None

    @property
    def has_covariate(self) -> bool:
        return self.cov_sum is not None

    # -- the metric's own moments ------------------------------------------------------------
    @property
    def mean(self) -> Array:
        """The arm's unadjusted mean (a ratio of sums for a ratio metric)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.is_ratio:
                return _div(self.sum, self.den_sum)
            return _div(self.sum, self.n)

    @property
    def variance(self) -> Array:
        """Per-unit variance of the metric (delta method for a ratio), before CUPED."""
        if self.is_ratio:
            return _ratio_variance(self)
        return _variance(self.n, self.sum, self.sum_sq, self.binary)


def _div(a: Array, b: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    return out if np.ndim(out) else np.float64(out)


def _variance(n: Array, s: Array, sq: Array, binary: bool) -> Array:
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if binary:
            p = s / n
            out = p * (1.0 - p)
        else:
            out = (np.asarray(sq, dtype=float) - np.square(s) / n) / (n - 1.0)
    return out if np.ndim(out) else np.float64(out)


def _covariance(n: Array, sa: Array, sb: Array, sab: Array) -> Array:
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (np.asarray(sab, dtype=float) - np.asarray(sa) * np.asarray(sb) / n) / (n - 1.0)
    return out if np.ndim(out) else np.float64(out)


def _ratio_variance(m: ArmMoments) -> Array:
    n = np.asarray(m.n, dtype=float)
    var_num = _variance(n, m.sum, m.sum_sq, m.binary)
    var_den = _variance(n, m.den_sum, m.den_sum_sq, False)
    cov = _covariance(n, m.sum, m.den_sum, m.num_den)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu_n = np.asarray(m.sum, dtype=float) / n
        mu_d = np.asarray(m.den_sum, dtype=float) / n
        out = var_num / mu_d**2 - 2.0 * cov * mu_n / mu_d**3 + mu_n**2 * var_den / mu_d**4
    return out if np.ndim(out) else np.float64(out)


def cuped_theta(control: ArmMoments, treatment: ArmMoments) -> Array:
    """CUPED's ``theta = cov(y, x) / var(x)``, pooled over both arms (0 when undefined).

    Pooling keeps the adjustment the same in both arms, so the adjusted difference stays unbiased
    under randomisation.
    """
    if not (control.has_covariate and treatment.has_covariate):
        raise ValueError("cuped_theta needs the covariate moments of both arms")
    n = np.asarray(control.n, dtype=float) + np.asarray(treatment.n, dtype=float)
    sy = np.asarray(control.sum, dtype=float) + treatment.sum
    syy = np.asarray(control.sum_sq, dtype=float) + treatment.sum_sq
    sx = np.asarray(control.cov_sum, dtype=float) + treatment.cov_sum
    sxx = np.asarray(control.cov_sum_sq, dtype=float) + treatment.cov_sum_sq
    sxy = np.asarray(control.cov_prod, dtype=float) + treatment.cov_prod
    var_x = _variance(n, sx, sxx, control.cov_binary)
    var_y = _variance(n, sy, syy, control.binary)
    cov = _covariance(n, sy, sx, sxy)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where((np.asarray(var_x) > 0) & (np.asarray(var_y) > 0), cov / var_x, 0.0)
    return theta if np.ndim(theta) else float(theta)


def _adjusted(m: ArmMoments, theta: Array) -> tuple[Array, Array]:
    """CUPED-adjusted mean and per-unit variance of an arm."""
    n = np.asarray(m.n, dtype=float)
    var_y = _variance(n, m.sum, m.sum_sq, m.binary)
    var_x = _variance(n, m.cov_sum, m.cov_sum_sq, m.cov_binary)
    cov = _covariance(n, m.sum, m.cov_sum, m.cov_prod)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.asarray(m.sum, dtype=float) / n - theta * np.asarray(m.cov_sum, dtype=float) / n
    var = var_y + np.square(theta) * var_x - 2.0 * theta * cov
    return mean, var


@dataclass(frozen=True)
class Estimate:
    """A treatment-minus-control comparison (each field a number or an array).

    ``difference`` and its interval are absolute; ``lift`` is relative to the control's
    unadjusted mean. With CUPED, ``mean_*`` are adjusted means and ``variance_reduction`` is
    ``1 - var(adjusted) / var(unadjusted)`` of the difference.
    """

    n_control: Array
    n_treatment: Array
    mean_control: Array
    mean_treatment: Array
    raw_mean_control: Array
    raw_mean_treatment: Array
    var_control: Array
    var_treatment: Array
    difference: Array
    se: Array
    dof: Array
    ci_low: Array
    ci_high: Array
    p_value: Array
    lift: Array
    lift_se: Array
    lift_ci_low: Array
    lift_ci_high: Array
    lift_p_value: Array
    theta: Array = 0.0
    variance_reduction: Array = 0.0
    sequential: bool = False
    boundary: Array | None = None


def _welch_dof(var_c: Array, n_c: Array, var_t: Array, n_t: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = var_t / n_t, var_c / n_c
        return (a + b) ** 2 / (
            var_t**2 / (n_t**2 * (n_t - 1.0)) + var_c**2 / (n_c**2 * (n_c - 1.0))
        )


def welch(
    control: ArmMoments,
    treatment: ArmMoments,
    *,
    alpha: float = 0.05,
    cuped: bool = True,
    sequential: bool = False,
    tuning: float = 5000.0,
    fractions: Any = None,
    spending: str = "obrien-fleming",
) -> Estimate:
    """Compare two arms: difference of means (Welch t), relative lift (delta method), with CUPED
    when both arms carry covariate moments, and with a confidence sequence when ``sequential``
    (or a group-sequential boundary, when ``fractions`` is given).

    Parameters
    ----------
    control, treatment : ArmMoments
        The arms' sufficient statistics (fields may be arrays: one comparison per element).
    alpha : float
        Two-sided level of the intervals and tests.
    cuped : bool
        Adjust with the covariate when the moments have one.
    sequential : bool
        Always-valid intervals and p-values (a confidence sequence; see
        :func:`confidence_sequence`) instead of fixed-horizon ones.
    tuning : float
        The confidence sequence's tuning parameter: the total sample size at which it is
        tightest (GrowthBook's default is 5,000).
    fractions : sequence of float, optional
        With ``sequential``: the information fractions of every look so far, this one last
        (see :meth:`GroupSequential.fractions`). The interval is then the repeated confidence
        interval ``estimate +- c_k se`` at this look's group-sequential boundary ``c_k`` and the
        p-value the repeated p-value (:func:`group_sequential_p_value`); ``estimate.boundary``
        holds ``c_k``.
    spending : {"obrien-fleming", "pocock"}
        The alpha-spending function of the group-sequential design.

    Returns
    -------
    Estimate
    """
    n_c = np.asarray(control.n, dtype=float)
    n_t = np.asarray(treatment.n, dtype=float)
    raw_c, raw_t = control.mean, treatment.mean
    var_c0, var_t0 = control.variance, treatment.variance
    theta: Array = 0.0
    use_cuped = cuped and control.has_covariate and treatment.has_covariate
    if use_cuped:
        if control.is_ratio:
            raise ValueError("CUPED is not defined here for ratio metrics")
        theta = cuped_theta(control, treatment)
        mean_c, var_c = _adjusted(control, theta)
        mean_t, var_t = _adjusted(treatment, theta)
    else:
        mean_c, var_c, mean_t, var_t = raw_c, var_c0, raw_t, var_t0
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.asarray(mean_t) - mean_c
        var_abs = var_t / n_t + var_c / n_c
        se = np.sqrt(var_abs)
        dof = _welch_dof(var_c, n_c, var_t, n_t)
        lift = diff / raw_c
        var_rel = var_t / (raw_c**2 * n_t) + var_c * raw_t**2 / (raw_c**4 * n_c)
        lift_se = np.sqrt(var_rel)
        reduction = 1.0 - var_abs / (var_t0 / n_t + var_c0 / n_c) if use_cuped else 0.0
    boundary = None
    if sequential and fractions is not None:
        fr = np.asarray(fractions, dtype=float)
        boundary = float(group_sequential_boundaries(fr, alpha=alpha, spending=spending)[-1])
        lo, hi, p = _group_interval(diff, se, boundary, fr, spending)
        llo, lhi, lp = _group_interval(lift, lift_se, boundary, fr, spending)
    elif sequential:
        lo, hi, p = confidence_sequence(diff, var_abs, n_c + n_t, alpha=alpha, tuning=tuning)
        llo, lhi, lp = confidence_sequence(lift, var_rel, n_c + n_t, alpha=alpha, tuning=tuning)
    else:
        lo, hi, p = _t_interval(diff, se, dof, alpha)
        llo, lhi, lp = _t_interval(lift, lift_se, dof, alpha)
    return Estimate(
        n_control=_out(n_c),
        n_treatment=_out(n_t),
        mean_control=_out(mean_c),
        mean_treatment=_out(mean_t),
        raw_mean_control=_out(raw_c),
        raw_mean_treatment=_out(raw_t),
        var_control=_out(var_c),
        var_treatment=_out(var_t),
        difference=_out(diff),
        se=_out(se),
        dof=_out(dof),
        ci_low=_out(lo),
        ci_high=_out(hi),
        p_value=_out(p),
        lift=_out(lift),
        lift_se=_out(lift_se),
        lift_ci_low=_out(llo),
        lift_ci_high=_out(lhi),
        lift_p_value=_out(lp),
        theta=_out(theta),
        variance_reduction=_out(reduction),
        sequential=sequential,
        boundary=boundary,
    )


def _out(x: Array) -> Array:
    a = np.asarray(x, dtype=float)
    return a if a.ndim else float(a)


def _t_interval(est: Array, se: Array, dof: Array, alpha: float) -> tuple[Array, Array, Array]:
    with np.errstate(divide="ignore", invalid="ignore"):
        q = stats.t.ppf(1.0 - alpha / 2.0, dof)
        width = q * se
        p = 2.0 * stats.t.sf(np.abs(est / se), dof)
    return est - width, est + width, p


def confidence_sequence(
    estimate: Array, variance: Array, n: Array, *, alpha: float = 0.05, tuning: float = 5000.0
) -> tuple[Array, Array, Array]:
    """An asymptotic confidence sequence around ``estimate`` and its always-valid p-value.

    The interval ``estimate +- sqrt(variance * n) * sqrt(2 (n rho^2 + 1) / (n rho)^2 *
    log(sqrt(n rho^2 + 1) / alpha))`` holds at every sample size at once (Waudby-Smith et al.
    2023, eq. 9), so the experiment may be looked at daily and stopped at any look;
    ``rho`` is chosen to make it tightest at ``n = tuning``. The p-value is ``min(1, 1 / e)`` for
    the e-value of that paper's eq. 155.

    Parameters
    ----------
    estimate, variance : float or ndarray
        The estimate and the variance of the estimate (not per unit).
    n : float or ndarray
        Units in both arms together.
    """
    n = np.asarray(n, dtype=float)
    rho2 = (-2.0 * np.log(alpha) + np.log(-2.0 * np.log(alpha) + 1.0)) / tuning
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s2 = np.asarray(variance, dtype=float) * n
        tr2p1 = n * rho2 + 1.0
        width = np.sqrt(s2) * np.sqrt(2.0 * tr2p1 * np.log(np.sqrt(tr2p1) / alpha) / (n**2 * rho2))
        # the e-value of eq. 155: S_t^2 = n * estimate^2 / variance (the sum of standardised
        # increments, squared), in logs so that a large effect does not overflow
        st2 = np.square(estimate) * n / np.asarray(variance, dtype=float)
        log_e = rho2 * st2 / (2.0 * tr2p1) - 0.5 * np.log(tr2p1)
        p = np.minimum(1.0, np.exp(-log_e))
    est = np.asarray(estimate, dtype=float)
    return _out(est - width), _out(est + width), _out(p)


# --------------------------------------------------------------------- group-sequential design
#: the alpha-spending functions of :func:`group_sequential_boundaries`
SPENDING = ("obrien-fleming", "pocock")

_ZMAX = 8.5  # |z| beyond this holds under 1e-16 of the null mass: the grids stop there
_ROOT_2PI = float(np.sqrt(2.0 * np.pi))


def _check_spending(spending: str) -> None:
    if spending not in SPENDING:
        raise ConfigError(
            f"spending must be one of {', '.join(SPENDING)} (the alpha-spending function of the "
            f"group-sequential design); got {spending!r}."
        )


def _check_fractions(fractions: Any) -> np.ndarray:
    t = np.asarray(fractions, dtype=float)
    if t.ndim != 1 or not len(t) or not np.isfinite(t).all() or (t <= 0).any():
        raise ConfigError(
            f"The looks' information fractions must be positive numbers; got {fractions!r}."
        )
    if (np.diff(t) <= 0).any():
        raise ConfigError(
            "The looks' information fractions must increase (each look has more units than the "
            f"one before); got {list(map(float, t))}."
        )
    return t


def alpha_spent(fractions: Array, alpha: float = 0.05, spending: str = "obrien-fleming") -> Array:
    """The two-sided type I error spent by information fraction ``t`` (capped at 1).

    Lan and DeMets (1983), each side spending ``alpha / 2`` (the convention of gsDesign and
    ldbounds for a symmetric two-sided design):

    - ``obrien-fleming``: ``2 * (2 - 2 Phi(z_{1 - alpha/4} / sqrt(t)))``, which spends almost
      nothing early and keeps the last boundary near the fixed-horizon one;
    - ``pocock``: ``alpha * log(1 + (e - 1) t)``, nearly flat boundaries.

    Both spend exactly ``alpha`` at ``t = 1``.
    """
    _check_spending(spending)
    t = np.clip(np.asarray(fractions, dtype=float), 0.0, 1.0)
    if spending == "obrien-fleming":
        z = special.ndtri(1.0 - alpha / 4.0)
        safe = np.where(t > 0, t, 1.0)
        out = np.where(t > 0, 4.0 * special.ndtr(-z / np.sqrt(safe)), 0.0)
    else:
        out = alpha * np.log1p((np.e - 1.0) * t)
    return _out(out)


def _simpson(b: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Simpson nodes and weights on ``[-b, b]`` with a step of at most ``h``."""
    m = min(max(2, 2 * int(np.ceil(b / h))), 4000)  # looks very close together: capped
    x = np.linspace(-b, b, m + 1)
    w = np.full(m + 1, 2.0)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    return x, w * (2.0 * b / m) / 3.0


class _Looks:
    """The null law of the cumulative z statistics look by look: ``S_k = Z_k sqrt(t_k)`` has
    independent normal increments of variance ``t_k - t_{k-1}``; the sub-density of ``S_k`` on
    the continuation region is carried on a Simpson grid (Jennison and Turnbull 2000, ch. 19)."""

    def __init__(self, t: np.ndarray) -> None:
        self.t = t
        self.j = 0
        self.x = np.zeros(0)
        self.f = np.zeros(0)  # sub-density times Simpson weights at the nodes x

    def cross(self, c: float) -> float:
        """P(no earlier crossing, |Z_j| >= c) at the current look j."""
        tj = self.t[self.j]
        if self.j == 0:
            return float(2.0 * special.ndtr(-c))
        s = np.sqrt(tj - self.t[self.j - 1])
        b = c * np.sqrt(tj)
        return float(self.f @ (special.ndtr((self.x - b) / s) + special.ndtr((-b - self.x) / s)))

    def advance(self, c: float) -> None:
        """Move on to the next look, having continued at this one (``|Z_j| < c``)."""
        tj = self.t[self.j]
        nxt = self.t[self.j + 1] if self.j + 1 < len(self.t) else tj + 1.0
        x, w = _simpson(min(c, _ZMAX) * np.sqrt(tj), min(np.sqrt(nxt - tj), np.sqrt(tj)) / 8.0)
        if self.j == 0:
            dens = np.exp(-0.5 * x * x / tj) / (_ROOT_2PI * np.sqrt(tj))
        else:
            s = np.sqrt(tj - self.t[self.j - 1])
            d = (x[:, None] - self.x[None, :]) / s
            dens = (np.exp(-0.5 * d * d) / (_ROOT_2PI * s)) @ self.f
        self.x, self.f = x, dens * w
        self.j += 1


def group_sequential_boundaries(
    fractions: Any, alpha: float = 0.05, spending: str = "obrien-fleming"
) -> np.ndarray:
    """Two-sided z boundaries ``c_1 .. c_K`` of a Lan-DeMets alpha-spending design at the
    information fractions of the looks that happened.

    Look ``k`` rejects when ``|Z_k| >= c_k``; ``c_k`` solves ``P(|Z_j| < c_j for j < k,
    |Z_k| >= c_k) = alpha(t_k) - alpha(t_{k-1})`` under the null, where the cumulative z
    statistics are jointly normal with ``corr(Z_j, Z_k) = sqrt(t_j / t_k)``. The probabilities
    come from the Armitage-McPherson-Rowe recursion (numerical integration, about 1e-6 on
    the boundary), so the design spends exactly ``alpha(t_K)``; a look at which nothing is left
    to spend (``t`` past 1) gets an infinite boundary. For ``K = 5`` equal looks at alpha 0.05
    this gives ldbounds' 4.877, 3.357, 2.680, 2.290, 2.031 (O'Brien-Fleming-type) and
    2.438 .. 2.386 (Pocock-type).

    Parameters
    ----------
    fractions : sequence of float
        Increasing information fractions ``n_look / n_planned`` (values past 1 count as 1).
    alpha : float
        The two-sided level spent by ``t = 1``.
    spending : {"obrien-fleming", "pocock"}
    """
    t = _check_fractions(fractions)
    cum = np.atleast_1d(alpha_spent(t, alpha, spending))
    looks = _Looks(t)
    out = np.empty(len(t))
    spent = 0.0
    top = _ZMAX + 2.0
    for j in range(len(t)):
        target = float(cum[j]) - spent
        if target <= 1e-15:
            c = np.inf
        elif looks.cross(top) >= target:
            c = top
        else:
            c = float(optimize.brentq(lambda v, g=target: looks.cross(v) - g, 0.0, top, xtol=1e-10))
        out[j] = c
        if np.isfinite(c):
            spent += looks.cross(c)
        if j + 1 < len(t):
            looks.advance(c)
    return out


def classical_boundary(looks: int, alpha: float = 0.05, shape: str = "pocock") -> float:
    """The constant ``C`` of Pocock's (``|Z_k| >= C`` at every look) or O'Brien and Fleming's
    (``|Z_k| >= C sqrt(K / k)``) design of ``looks`` equally spaced looks, from the same
    recursion as :func:`group_sequential_boundaries`: Pocock's 2.413 and O'Brien-Fleming's
    2.040 for ``K = 5`` at two-sided 0.05 (Jennison and Turnbull 2000, tables 2.1 and 2.3)."""
    if isinstance(looks, bool) or not isinstance(looks, int) or looks < 1:
        raise ConfigError(f"looks must be a whole number >= 1; got {looks!r}.")
    if shape not in ("pocock", "obrien-fleming"):
        raise ConfigError(f"shape must be 'pocock' or 'obrien-fleming'; got {shape!r}.")
    t = np.arange(1, looks + 1) / looks
    scale = np.ones(looks) if shape == "pocock" else np.sqrt(looks / np.arange(1, looks + 1))

    def excess(c: float) -> float:
        walk, total = _Looks(t), 0.0
        for j in range(looks):
            total += walk.cross(c * scale[j])
            if j + 1 < looks:
                walk.advance(c * scale[j])
        return total - alpha

    return float(optimize.brentq(excess, 0.5, _ZMAX, xtol=1e-10))


def group_sequential_p_value(z: float, fractions: Any, spending: str = "obrien-fleming") -> float:
    """The repeated p-value at the last look: the smallest ``alpha`` whose design (same
    fractions, same spending function) has ``c_K(alpha) <= |z|`` (Jennison and Turnbull 2000,
    sec. 9.1). ``p < alpha`` exactly when the look crosses its boundary, and the chance that any
    look's repeated p-value falls under ``alpha`` is at most ``alpha`` under the null."""
    t = _check_fractions(fractions)
    az = abs(float(z))
    if not np.isfinite(az):
        return float("nan")

    def gap(log_a: float) -> float:
        c = group_sequential_boundaries(t, alpha=float(np.exp(log_a)), spending=spending)[-1]
        return float(min(c, 1e3) - az)

    # c_K(alpha) >= z_{1 - alpha/2}: the repeated p-value is at least the fixed-horizon one
    fixed = float(2.0 * special.ndtr(-az))
    if fixed < 1e-15:
        return fixed
    lo, hi = np.log(fixed), np.log(1.0 - 1e-12)
    if gap(lo) <= 0:
        return fixed
    if gap(hi) > 0:
        return 1.0
    return float(np.exp(optimize.brentq(gap, lo, hi, xtol=1e-5)))


def _group_interval(
    est: Array, se: Array, boundary: float, fractions: np.ndarray, spending: str
) -> tuple[Array, Array, Array]:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        width = boundary * np.asarray(se, dtype=float)
        z = np.asarray(est, dtype=float) / np.asarray(se, dtype=float)
    p = np.vectorize(lambda v: group_sequential_p_value(v, fractions, spending), otypes=[float])(z)
    e = np.asarray(est, dtype=float)
    return _out(e - width), _out(e + width), _out(p)


@dataclass(frozen=True)
class GroupSequential:
    """A planned-horizon group-sequential design: ``alpha`` spent over the looks up to
    ``planned_n`` units, whatever their number and timing.

    Attributes
    ----------
    planned_n : int
        Units planned in all arms together (information fraction ``n / planned_n``).
    looks : int, optional
        Planned looks, equally spaced in units (``planned_n * k / looks``): the present look
        stands for the nearest planned one, and the planned looks before that are taken to have
        happened. Default: this look is the first.
    look_n : tuple of int
        Units at the looks that actually happened before this one (overrides ``looks``).
    spending : {"obrien-fleming", "pocock"}
    """

    planned_n: int
    looks: int | None = None
    look_n: tuple[int, ...] = ()
    spending: str = "obrien-fleming"

    def __post_init__(self) -> None:
        n = self.planned_n
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
            raise ConfigError(
                f"planned_n must be the whole number of units planned in all arms (>= 2); got "
                f"{n!r}. Pass --planned-n N."
            )
        k = self.looks
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ConfigError(f"looks must be a whole number >= 1; got {k!r}. Pass --looks K.")
        _check_spending(self.spending)
        prior = tuple(int(v) for v in self.look_n)
        if any(v < 1 for v in prior) or any(b <= a for a, b in itertools.pairwise(prior)):
            raise ConfigError(
                f"look_n must be the increasing unit counts of the earlier looks; got {prior!r}."
            )
        object.__setattr__(self, "look_n", prior)

    def fractions(self, n: int) -> np.ndarray:
        """Information fractions of every look so far, the look at ``n`` units last."""
        if self.look_n:
            earlier = [float(v) for v in self.look_n]
            if earlier[-1] >= n:
                raise ConfigError(
                    f"The earlier looks (look_n {list(self.look_n)}) must have fewer units than "
                    f"this one ({n:,}); pass the unit counts of the looks before this analysis."
                )
        elif self.looks is not None:
            # this look stands for the nearest planned one; the planned looks before it happened
            step = self.planned_n / self.looks
            nearest = max(1, round(n / step))
            earlier = [step * k for k in range(1, min(nearest, self.looks))]
        else:
            earlier = []
        return np.array([*earlier, n], dtype=float) / float(self.planned_n)

    def describe(self, n: int, alpha: float) -> dict[str, Any]:
        """The look at ``n`` units: its number, fraction, boundary and the alpha spent."""
        t = self.fractions(n)
        c = group_sequential_boundaries(t, alpha=alpha, spending=self.spending)
        return {
            "design": "group",
            "spending": self.spending,
            "planned_n": int(self.planned_n),
            "looks_planned": self.looks,
            "look": len(t),
            "information_fraction": float(t[-1]),
            "fractions": [float(v) for v in t],
            "boundary_z": float(c[-1]) if np.isfinite(c[-1]) else None,
            "boundaries_z": [float(v) if np.isfinite(v) else None for v in c],
            "alpha_spent": float(alpha_spent(min(float(t[-1]), 1.0), alpha, self.spending)),
            "final": bool(t[-1] >= 1.0 or (self.looks is not None and len(t) >= self.looks)),
        }


def bayesian(
    estimate: Array,
    variance: Array,
    *,
    alpha: float = 0.05,
    prior_mean: float = 0.0,
    prior_variance: float | None = None,
    inverse: bool = False,
) -> dict[str, Array]:
    """Posterior of an effect from its normal estimate: chance to beat control, interval, risk.

    Parameters
    ----------
    estimate, variance : float or ndarray
        The effect's estimate (absolute or relative) and its variance.
    prior_mean, prior_variance : float
        A Gaussian prior on the effect; ``prior_variance=None`` is the flat (improper) prior, for
        which the posterior is the likelihood itself.
    inverse : bool
        Lower values are better (the chance to win is then ``P(effect < 0)``).

    Returns
    -------
    dict
        ``mean``, ``sd``, ``chance_to_win``, ``ci_low``, ``ci_high``, ``expected_loss``
        (what choosing the treatment costs on average when it is worse: ``E[max(-effect, 0)]``,
        or ``E[max(effect, 0)]`` when ``inverse``) and ``expected_loss_control`` (the same for
        keeping the control).
    """
    var = np.asarray(variance, dtype=float)
    est = np.asarray(estimate, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if prior_variance is None:
            mean, post_var = est, var
        else:
            prec = 1.0 / var + 1.0 / prior_variance
            mean = (est / var + prior_mean / prior_variance) / prec
            post_var = 1.0 / prec
        sd = np.sqrt(post_var)
        z = mean / sd
        p_pos = stats.norm.sf(-z)  # P(effect > 0)
        pdf = stats.norm.pdf(z)
        loss_neg = sd * pdf - mean * stats.norm.cdf(-z)  # E[max(-effect, 0)]
        loss_pos = mean * stats.norm.cdf(z) + sd * pdf  # E[max(effect, 0)]
        q = stats.norm.ppf(1.0 - alpha / 2.0)
    win = 1.0 - p_pos if inverse else p_pos
    loss_t, loss_c = (loss_pos, loss_neg) if inverse else (loss_neg, loss_pos)
    return {
        "mean": _out(mean),
        "sd": _out(sd),
        "chance_to_win": _out(win),
        "ci_low": _out(mean - q * sd),
        "ci_high": _out(mean + q * sd),
        "expected_loss": _out(loss_t),
        "expected_loss_control": _out(loss_c),
    }


def srm_test(counts: Array, weights: Array) -> tuple[float, float]:
    """Sample-ratio mismatch: Pearson's chi-square of the arm counts against the planned weights.

    Returns
    -------
    (chi2, p_value)
        ``p_value`` of the chi-square with ``k - 1`` degrees of freedom (1.0 with no units).
        Arms of zero weight are left out.
    """
    obs = np.asarray(counts, dtype=float)
    w = np.asarray(weights, dtype=float)
    keep = w > 0
    obs, w = obs[..., keep], w[keep]
    total = obs.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = w / w.sum() * total
        chi2 = np.where(total[..., 0] > 0, (np.square(obs - expected) / expected).sum(axis=-1), 0.0)
    p = stats.chi2.sf(chi2, obs.shape[-1] - 1)
    return _out(chi2), _out(p)

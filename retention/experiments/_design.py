"""Experiment design: sample size, minimum detectable effect and duration (statsmodels power).

A proportion is sized with Cohen's ``h`` (``proportion_effectsize``) and the normal power of
``NormalIndPower``; a mean or a ratio metric with the standardised effect ``mde / sd`` and the
t power of ``TTestIndPower`` (a ratio metric's ``sd`` is its delta-method per-unit standard
deviation). CUPED with a pre-period covariate of correlation ``rho`` leaves the variance
``(1 - rho^2)`` of what it was, so the standardised effect grows by ``1 / sqrt(1 - rho^2)`` and
the sample needed shrinks by about ``1 - rho^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from retention.exceptions import ConfigError

__all__ = ["DesignResult", "design"]

DesignKind = Literal["proportion", "mean", "ratio"]


@dataclass(frozen=True)
class DesignResult:
    """The size of an experiment for one metric.

    Attributes
    ----------
    kind : str
        ``proportion``, ``mean`` or ``ratio``.
    baseline : float
        The control's expected value of the metric.
    sd : float
        Its per-unit standard deviation (``sqrt(p (1 - p))`` for a proportion).
    mde : float
        The smallest absolute difference the design detects with ``power``.
    relative_mde : float
        ``mde / baseline``.
    alpha, power : float
    n_variants : int
        Arms, control included (each gets ``n_per_variant`` units, the control ``ratio`` times
        fewer or more: ``n_control = n_per_variant / ratio``).
    n_per_variant : int
        Units per treatment arm, without CUPED.
    n_total : int
        Units in all arms, without CUPED.
    rho : float
        Correlation of the metric with its CUPED covariate (0: no CUPED).
    variance_cut : float
        ``rho^2``: the share of variance CUPED is expected to remove.
    n_per_variant_cuped, n_total_cuped : int
        The same with CUPED (for a fixed sample, the sample itself).
    mde_cuped : float
        The effect detectable with CUPED (for a fixed sample: ``mde * sqrt(1 - rho^2)``; else
        ``mde``).
    daily_units : float or None
        Units entering the experiment per day.
    duration_days : int or None
        Days to enrol ``n_total_cuped`` (or ``n_total`` when ``rho`` is 0) at ``daily_units``,
        plus the metric's window (an outcome needs its window to be measured).
    window_days : int
        The metric's window (0 when not given).
    """

    kind: str
    baseline: float
    sd: float
    mde: float
    relative_mde: float
    alpha: float
    power: float
    n_variants: int
    ratio: float
    n_per_variant: int
    n_total: int
    rho: float
    variance_cut: float
    n_per_variant_cuped: int
    n_total_cuped: int
    mde_cuped: float
    daily_units: float | None
    duration_days: int | None
    window_days: int = 0
    population: int | None = None
    source: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return out


def _check(name: str, value: Any, low: float, high: float, *, closed: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low <= value <= high if closed else low < value < high)
    if not ok:
        side = "[" if closed else "("
        raise ConfigError(
            f"{name} must be a number in {side}{low}, {high}{']' if closed else ')'}; got "
            f"{value!r}."
        )
    return float(value)


def design(
    kind: DesignKind,
    baseline: float,
    *,
    sd: float | None = None,
    mde: float | None = None,
    relative_mde: float | None = None,
    n_per_variant: int | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    n_variants: int = 2,
    ratio: float = 1.0,
    rho: float = 0.0,
    daily_units: float | None = None,
    window_days: int = 0,
    population: int | None = None,
    source: dict[str, Any] | None = None,
) -> DesignResult:
    """Size an experiment: the sample for an effect, or the effect for a sample.

    Give ``mde`` (absolute) or ``relative_mde`` to get the sample size; give ``n_per_variant``
    instead to get the minimum detectable effect of that sample.

    Parameters
    ----------
    kind : {"proportion", "mean", "ratio"}
    baseline : float
        The control's expected value (a rate in (0, 1) for a proportion).
    sd : float, optional
        Per-unit standard deviation (required for means and ratios).
    mde, relative_mde : float, optional
        The effect to detect, absolute or relative to ``baseline``.
    n_per_variant : int, optional
        A fixed sample per treatment arm (then the MDE is solved for).
    alpha, power : float
    n_variants : int
        Arms including the control.
    ratio : float
        ``n_treatment / n_control``.
    rho : float
        Correlation with the CUPED covariate, in [0, 1).
    daily_units : float, optional
        Units enrolled per day, for the duration.
    window_days : int
        The metric's window, added to the enrolment time.

    Examples
    --------
    >>> r = design("proportion", 0.19, relative_mde=0.05)
    >>> r.n_per_variant > 20_000
    True
    """
    from statsmodels.stats.power import NormalIndPower, TTestIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    if kind not in ("proportion", "mean", "ratio"):
        raise ConfigError(f"kind must be 'proportion', 'mean' or 'ratio'; got {kind!r}.")
    alpha = _check("alpha", alpha, 0.0, 1.0)
    power = _check("power", power, 0.0, 1.0)
    rho = _check("rho", rho, 0.0, 1.0 - 1e-12, closed=True) if rho else 0.0
    ratio = _check("ratio", ratio, 0.0, math.inf)
    if isinstance(n_variants, bool) or not isinstance(n_variants, int) or n_variants < 2:
        raise ConfigError(f"n_variants must be a whole number >= 2; got {n_variants!r}.")
    if kind == "proportion":
        baseline = _check("baseline", baseline, 0.0, 1.0)
        sd = math.sqrt(baseline * (1 - baseline))
    else:
        if not isinstance(baseline, int | float) or not math.isfinite(baseline):
            raise ConfigError(f"baseline must be a finite number; got {baseline!r}.")
        baseline = float(baseline)
        if sd is None:
            raise ConfigError(f"A {kind} metric needs its per-unit standard deviation (sd).")
        sd = _check("sd", sd, 0.0, math.inf)
    given = [x is not None for x in (mde, relative_mde, n_per_variant)]
    if sum(given) != 1:
        raise ConfigError(
            "Give exactly one of mde (absolute effect), relative_mde, or n_per_variant (to "
            f"solve for the effect); got mde={mde!r}, relative_mde={relative_mde!r}, "
            f"n_per_variant={n_per_variant!r}."
        )
    shrink = math.sqrt(1.0 - rho**2)
    if n_per_variant is not None:
        if (
            isinstance(n_per_variant, bool)
            or not isinstance(n_per_variant, int)
            or n_per_variant < 2
        ):
            raise ConfigError(f"n_per_variant must be a whole number >= 2; got {n_per_variant!r}.")
        n1 = n_per_variant / ratio  # statsmodels' nobs1 is the control arm
        if kind == "proportion":
            h = NormalIndPower().solve_power(nobs1=n1, alpha=alpha, power=power, ratio=ratio)
            # invert Cohen's h = 2 asin(sqrt(p1)) - 2 asin(sqrt(p0)) for p1 > p0
            target = min(math.pi / 2, 2 * math.asin(math.sqrt(baseline)) / 2 + float(h) / 2)
            mde = math.sin(target) ** 2 - baseline
        else:
            d = TTestIndPower().solve_power(nobs1=n1, alpha=alpha, power=power, ratio=ratio)
            mde = float(d) * sd
        n_base = n_per_variant
        mde_cuped = float(mde) * shrink
    else:
        if relative_mde is not None:
            if baseline == 0:
                raise ConfigError("relative_mde needs a non-zero baseline; give mde instead.")
            mde = _check("relative_mde", relative_mde, 0.0, math.inf) * abs(baseline)
        mde = _check("mde", mde, 0.0, math.inf)
        if kind == "proportion":
            if baseline + mde >= 1:
                raise ConfigError(
                    f"baseline + mde must stay below 1 for a proportion; got {baseline} + {mde}."
                )
            effect = abs(float(proportion_effectsize(baseline + mde, baseline)))
            n1 = NormalIndPower().solve_power(effect, alpha=alpha, power=power, ratio=ratio)
        else:
            effect = mde / sd
            n1 = TTestIndPower().solve_power(effect, alpha=alpha, power=power, ratio=ratio)
        n_base = math.ceil(float(n1) * ratio)
        mde_cuped = float(mde)
    n_c = math.ceil(n_base / ratio)
    n_total = n_c + (n_variants - 1) * n_base
    fixed = n_per_variant is not None
    n_cuped = math.ceil(n_base * shrink**2) if rho and not fixed else n_base
    n_total_cuped = math.ceil(n_cuped / ratio) + (n_variants - 1) * n_cuped
    duration = None
    if daily_units is not None:
        daily = _check("daily_units", daily_units, 0.0, math.inf)
        need = n_total_cuped if rho else n_total
        duration = math.ceil(need / daily) + int(window_days)
    return DesignResult(
        kind=kind,
        baseline=baseline,
        sd=float(sd),
        mde=float(mde),
        relative_mde=float(mde) / abs(baseline) if baseline else float("nan"),
        alpha=alpha,
        power=power,
        n_variants=n_variants,
        ratio=ratio,
        n_per_variant=int(n_base),
        n_total=int(n_total),
        rho=rho,
        variance_cut=rho**2,
        n_per_variant_cuped=int(n_cuped),
        n_total_cuped=int(n_total_cuped),
        mde_cuped=mde_cuped,
        daily_units=None if daily_units is None else float(daily_units),
        duration_days=duration,
        window_days=int(window_days),
        population=population,
        source=source,
    )

"""Analysis of an experiment: every variant against the control, on one or more metrics.

:func:`summarize_units` turns unit rows (one per user) into per-arm sufficient statistics;
:func:`analyze_summaries` turns those into an :class:`ExperimentAnalysis` (differences, lifts,
intervals, p-values with Holm and Benjamini-Hochberg corrections, CUPED, the sample-ratio check,
guardrails, the Bayesian chance to win and expected loss, optionally sequential intervals:
always-valid ones for open-ended monitoring, or a group-sequential design that spends exactly
alpha over a planned horizon). :func:`analyze_units` chains the two. A store aggregates the
same statistics in SQL and calls :func:`analyze_summaries` directly, so 10 million units never
become a DataFrame.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from retention.exceptions import ConfigError, DataError, RetentionWarning, SchemaError
from retention.experiments._stats import (
    ArmMoments,
    GroupSequential,
    bayesian,
    srm_test,
    welch,
)

__all__ = [
    "SEQUENTIAL_DESIGNS",
    "SRM_THRESHOLD",
    "Comparison",
    "ExperimentAnalysis",
    "MetricSpec",
    "SampleRatio",
    "analyze_summaries",
    "analyze_units",
    "sequential_mode",
    "summarize_units",
]

#: p-value under which the sample-ratio check flags a mismatch
SRM_THRESHOLD = 1e-3

Kind = Literal["auto", "binary", "mean"]

#: the sequential designs: always-valid confidence sequences, or group-sequential boundaries
SEQUENTIAL_DESIGNS = ("always-valid", "group")

_SPENDING_NAMES = {"obrien-fleming": "O'Brien-Fleming-type", "pocock": "Pocock-type"}


def sequential_mode(sequential: Any, design: GroupSequential | None = None) -> str | None:
    """``None`` (fixed horizon), ``"always-valid"`` or ``"group"`` from the ``sequential``
    option (False; True, which is ``"always-valid"``; or a design's name), checked against the
    group-sequential ``design`` (needed by ``"group"``, refused by the others)."""
    if sequential is None or sequential is False:
        mode = None
    elif sequential is True:
        mode = "always-valid"
    elif isinstance(sequential, str) and sequential in SEQUENTIAL_DESIGNS:
        mode = sequential
    else:
        raise ConfigError(
            f"sequential must be false, true, 'always-valid' or 'group'; got {sequential!r}."
        )
    if mode == "group" and design is None:
        raise ConfigError(
            "The group-sequential design needs the planned sample: pass --planned-n N (units in "
            "all arms) and --looks K (planned looks), or use --sequential-design always-valid."
        )
    if design is not None and mode != "group":
        raise ConfigError(
            "A planned sample (--planned-n, --looks) applies to the group-sequential design only; "
            "pass --sequential-design group, or drop them."
        )
    return mode


def _method(mode: str | None, spending: str | None) -> str:
    if mode == "group":
        return f"group sequential ({_SPENDING_NAMES.get(spending or '', spending)} alpha spending)"
    return "sequential (confidence sequence)" if mode else "Welch t"


@dataclass(frozen=True)
class MetricSpec:
    """One metric of an analysis.

    Parameters
    ----------
    name : str
        The metric's name in the results (and its column, unless ``column`` is given).
    column : str, optional
        The column of unit rows holding it (the numerator of a ratio metric).
    denominator : str, optional
        For a ratio metric (revenue per order): the column of the denominator per unit.
    covariate : str, optional
        A pre-period column for CUPED (or a model's prediction, for CUPAC).
    kind : {"auto", "binary", "mean"}
        ``binary`` for a 0/1 metric (variance ``p (1 - p)``); ``auto`` decides from the values.
    guardrail : bool
        A metric that must not get worse; its status is reported and it stays out of the
        multiple-testing family.
    inverse : bool
        Lower is better (churn, returns): the chance to win and guardrails are flipped.
    """

    name: str
    column: str | None = None
    denominator: str | None = None
    covariate: str | None = None
    kind: Kind = "auto"
    guardrail: bool = False
    inverse: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"A metric needs a non-empty name; got {self.name!r}.")
        if self.kind not in ("auto", "binary", "mean"):
            raise ConfigError(f"kind must be 'auto', 'binary' or 'mean'; got {self.kind!r}.")
        if self.denominator is not None and self.covariate is not None:
            raise ConfigError(
                f"Metric {self.name!r}: CUPED is supported for plain metrics, not ratio metrics; "
                "drop the covariate or the denominator."
            )

    @property
    def source(self) -> str:
        return self.column or self.name


@dataclass(frozen=True)
class SampleRatio:
    """The sample-ratio check: were units split as planned?"""

    counts: dict[str, int]
    expected_shares: dict[str, float]
    chi2: float
    p_value: float
    flagged: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "expected_shares": dict(self.expected_shares),
            "observed_shares": {
                k: (v / total if (total := sum(self.counts.values())) else None)
                for k, v in self.counts.items()
            },
            "chi2": _num(self.chi2),
            "p_value": _num(self.p_value),
            "threshold": SRM_THRESHOLD,
            "flagged": bool(self.flagged),
        }


@dataclass(frozen=True)
class Comparison:
    """One variant against the control on one metric."""

    metric: str
    variant: str
    control: str
    kind: str
    n_control: int
    n_treatment: int
    mean_control: float
    mean_treatment: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    lift: float
    lift_ci_low: float
    lift_ci_high: float
    lift_p_value: float
    chance_to_win: float
    expected_loss: float
    expected_loss_control: float
    raw_mean_control: float
    raw_mean_treatment: float
    se: float
    dof: float
    cuped_theta: float | None = None
    variance_reduction: float | None = None
    covariate: str | None = None
    sequential: bool = False
    guardrail: bool = False
    inverse: bool = False
    p_value_holm: float | None = None
    p_value_bh: float | None = None
    alpha: float = 0.05
    sequential_design: str | None = None
    boundary_z: float | None = None
    spending: str | None = None

    @property
    def significant(self) -> bool:
        """Whether the (Holm-adjusted, when there are several comparisons) p-value is under
        alpha."""
        p = self.p_value_holm if self.p_value_holm is not None else self.p_value
        return bool(p is not None and math.isfinite(p) and p < self.alpha)

    @property
    def guardrail_status(self) -> str | None:
        """``fail`` (significantly worse), ``warn`` (worse, not significantly) or ``pass``."""
        if not self.guardrail:
            return None
        worse_high = self.ci_high < 0 if not self.inverse else self.ci_low > 0
        worse_point = self.difference < 0 if not self.inverse else self.difference > 0
        if worse_high:
            return "fail"
        return "warn" if worse_point else "pass"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric": self.metric,
            "variant": self.variant,
            "control": self.control,
            "kind": self.kind,
            "n_control": int(self.n_control),
            "n_treatment": int(self.n_treatment),
            "mean_control": _num(self.mean_control),
            "mean_treatment": _num(self.mean_treatment),
            "difference": _num(self.difference),
            "interval": [_num(self.ci_low), _num(self.ci_high)],
            "ci_low": _num(self.ci_low),
            "ci_high": _num(self.ci_high),
            "p_value": _num(self.p_value),
            "p_value_holm": _num(self.p_value_holm),
            "p_value_bh": _num(self.p_value_bh),
            "significant": self.significant,
            "lift": _num(self.lift),
            "lift_interval": [_num(self.lift_ci_low), _num(self.lift_ci_high)],
            "lift_p_value": _num(self.lift_p_value),
            "chance_to_win": _num(self.chance_to_win),
            "expected_loss": _num(self.expected_loss),
            "expected_loss_control": _num(self.expected_loss_control),
            "se": _num(self.se),
            "dof": _num(self.dof),
            "method": _method(self.sequential_design, self.spending),
            "sequential_design": self.sequential_design,
            "alpha": self.alpha,
        }
        if self.sequential_design == "group":
            z = self.difference / self.se if self.se and math.isfinite(self.se) else None
            out["group_sequential"] = {
                "z": _num(z),
                "boundary_z": _num(self.boundary_z),
                "crossed": bool(
                    z is not None and self.boundary_z is not None and abs(z) >= self.boundary_z
                ),
            }
        if self.covariate is not None:
            out["cuped"] = {
                "covariate": self.covariate,
                "theta": _num(self.cuped_theta),
                "variance_reduction": _num(self.variance_reduction),
                "unadjusted_mean_control": _num(self.raw_mean_control),
                "unadjusted_mean_treatment": _num(self.raw_mean_treatment),
            }
        if self.guardrail:
            out["guardrail"] = self.guardrail_status
        return out


@dataclass(frozen=True)
class ExperimentAnalysis:
    """Every variant against the control, on every metric, with the sample-ratio check.

    Attributes
    ----------
    control : str
    variants : list of str
        The treatment variants, in order.
    metrics : list of MetricSpec
    comparisons : list of Comparison
        One per variant and metric.
    srm : SampleRatio
    counts : dict
        Units per arm (control included).
    alpha, sequential, correction
        How it was analysed.
    """

    control: str
    variants: list[str]
    metrics: list[MetricSpec]
    comparisons: list[Comparison]
    srm: SampleRatio
    counts: dict[str, int]
    alpha: float = 0.05
    sequential: bool = False
    correction: str = "holm"
    notes: list[str] = field(default_factory=list)
    sequential_design: str | None = None
    group_sequential: dict[str, Any] | None = None

    @property
    def method(self) -> str:
        """How the intervals and p-values were computed, in words."""
        g = self.group_sequential or {}
        text = _method(self.sequential_design, g.get("spending"))
        if self.sequential_design == "group":
            planned = g.get("looks_planned")
            text += (
                f", look {g['look']}"
                + (f" of {planned}" if planned else "")
                + f" at {g['information_fraction']:.0%} of {g['planned_n']:,} planned units"
                + f" (alpha spent {g['alpha_spent']:.3g})"
            )
        return text

    def comparison(self, variant: str, metric: str | None = None) -> Comparison:
        """The comparison of ``variant`` on ``metric`` (default: the first metric)."""
        name = metric or self.metrics[0].name
        for c in self.comparisons:
            if c.variant == variant and c.metric == name:
                return c
        raise ConfigError(
            f"No comparison of variant {variant!r} on metric {name!r}; variants: "
            f"{', '.join(self.variants)}; metrics: {', '.join(m.name for m in self.metrics)}."
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per comparison (for tables and the store)."""
        return pd.DataFrame(
            [
                {
                    **{k: v for k, v in c.to_dict().items() if not isinstance(v, dict | list)},
                    "theta": c.cuped_theta,
                    "variance_reduction": c.variance_reduction,
                    "guardrail": c.guardrail_status,
                }
                for c in self.comparisons
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per variant, the first metric's ``difference``, ``interval`` and
        ``p_value`` at the top, every metric under ``metrics``; all comparisons under
        ``comparisons``."""
        primary = self.metrics[0].name
        variants: dict[str, Any] = {}
        for v in self.variants:
            mine = [c for c in self.comparisons if c.variant == v]
            head = next(c for c in mine if c.metric == primary).to_dict()
            variants[v] = {
                "n": int(self.counts.get(v, 0)),
                **{k: head[k] for k in _HEADLINE},
                "metrics": {c.metric: c.to_dict() for c in mine},
            }
        return {
            "control": self.control,
            "n_control": int(self.counts.get(self.control, 0)),
            "n_units": int(sum(self.counts.values())),
            "metric": primary,
            "metrics": [
                {
                    "name": m.name,
                    "denominator": m.denominator,
                    "covariate": m.covariate,
                    "guardrail": m.guardrail,
                    "inverse": m.inverse,
                    "kind": next((c.kind for c in self.comparisons if c.metric == m.name), None),
                }
                for m in self.metrics
            ],
            "alpha": self.alpha,
            "sequential": self.sequential,
            "sequential_design": self.sequential_design,
            "method": self.method,
            "group_sequential": self.group_sequential,
            "correction": self.correction,
            "srm": self.srm.to_dict(),
            "variants": variants,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "notes": list(self.notes),
        }


_HEADLINE = (
    "difference",
    "interval",
    "ci_low",
    "ci_high",
    "p_value",
    "p_value_holm",
    "lift",
    "lift_interval",
    "chance_to_win",
    "expected_loss",
    "mean_control",
    "mean_treatment",
    "significant",
)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


# ------------------------------------------------------------------------ unit rows -> moments
def _numeric(df: pd.DataFrame, column: str, role: str, flag: str) -> np.ndarray:
    if column not in df.columns:
        raise SchemaError(
            f"The {role} column {column!r} is not in the data; its columns are "
            f"{', '.join(map(str, df.columns))}. Pass {flag} with one of them."
        )
    s = df[column]
    if pd.api.types.is_bool_dtype(s):
        values = s.astype("float64").to_numpy()
    elif pd.api.types.is_numeric_dtype(s):
        values = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
    else:
        text = s.astype("string").str.strip().str.lower()
        as_bool = text.map({"true": 1.0, "false": 0.0})
        if as_bool.notna().sum() == text.notna().sum() and text.notna().any():
            values = as_bool.astype("float64").to_numpy()
        else:
            bad = s[pd.to_numeric(s, errors="coerce").isna() & s.notna()]
            if len(bad):
                raise SchemaError(
                    f"The {role} column {column!r} is not numeric (it holds e.g. "
                    f"{str(bad.iloc[0])!r}); pass {flag} with a numeric or true/false column."
                )
            values = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
    missing = int(np.isnan(values).sum())
    if missing:
        first = int(np.flatnonzero(np.isnan(values))[0])
        raise DataError(
            f"The {role} column {column!r} has {missing:,} missing value(s) (the first in row "
            f"{first + 1:,}); fill them (e.g. with 0) or drop those units before the analysis."
        )
    if not np.isfinite(values).all():
        raise DataError(
            f"The {role} column {column!r} holds infinite values; every unit needs a finite number."
        )
    return values


def _is_binary(values: np.ndarray) -> bool:
    return bool(len(values)) and bool(np.isin(values, (0.0, 1.0)).all())


def summarize_units(
    units: pd.DataFrame,
    *,
    variant: str,
    metrics: Sequence[MetricSpec | str],
) -> tuple[dict[str, dict[str, ArmMoments]], dict[str, int]]:
    """Per-arm sufficient statistics of unit rows (one row per unit).

    Parameters
    ----------
    units : pd.DataFrame
        One row per unit, with the variant column and the metrics' columns.
    variant : str
        The column naming each unit's variant.
    metrics : sequence of MetricSpec or str

    Returns
    -------
    (moments, counts)
        ``moments[metric][variant]`` and the units per variant.

    Raises
    ------
    SchemaError
        A column is missing or not numeric.
    DataError
        A variant, metric or covariate value is missing.
    """
    specs = [m if isinstance(m, MetricSpec) else MetricSpec(str(m)) for m in metrics]
    if not specs:
        raise ConfigError("Name at least one metric to analyse (--metric COL).")
    if variant not in units.columns:
        raise SchemaError(
            f"The variant column {variant!r} is not in the data; its columns are "
            f"{', '.join(map(str, units.columns))}. Pass --variant with one of them."
        )
    arms = units[variant]
    if arms.isna().any():
        n_bad = int(arms.isna().sum())
        raise DataError(
            f"{n_bad:,} unit(s) have no value in the variant column {variant!r}; every unit "
            "needs its variant (drop the unassigned ones first)."
        )
    codes, labels = pd.factorize(arms.astype(str), sort=True)
    k = len(labels)
    counts = np.bincount(codes, minlength=k).astype(np.int64)

    def sums(values: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=values, minlength=k)

    out: dict[str, dict[str, ArmMoments]] = {}
    for spec in specs:
        y = _numeric(units, spec.source, "metric", "--metric")
        binary = spec.kind == "binary" or (
            spec.kind == "auto" and spec.denominator is None and _is_binary(y)
        )
        if spec.kind == "binary" and not _is_binary(y):
            raise DataError(
                f"Metric {spec.name!r} was declared binary but holds values other than 0 and 1; "
                "declare it kind='mean'."
            )
        fields: dict[str, Any] = {"sum": sums(y), "sum_sq": sums(y * y)}
        if spec.denominator is not None:
            d = _numeric(units, spec.denominator, "denominator", "--denominator")
            fields.update(den_sum=sums(d), den_sum_sq=sums(d * d), num_den=sums(y * d))
        cov_binary = False
        if spec.covariate is not None:
            x = _numeric(units, spec.covariate, "covariate", "--covariate")
            cov_binary = _is_binary(x)
            fields.update(cov_sum=sums(x), cov_sum_sq=sums(x * x), cov_prod=sums(x * y))
        out[spec.name] = {
            str(label): ArmMoments(
                n=int(counts[i]),
                binary=binary,
                cov_binary=cov_binary,
                **{key: float(v[i]) for key, v in fields.items()},
            )
            for i, label in enumerate(labels)
        }
    return out, {str(label): int(counts[i]) for i, label in enumerate(labels)}


# ------------------------------------------------------------------------- moments -> analysis
def _check_arms(counts: Mapping[str, int], control: str, column: str) -> list[str]:
    present = [v for v, n in counts.items() if n > 0]
    if len(present) < 2:
        only = ", ".join(repr(v) for v in present) or "nothing"
        raise DataError(
            f"An experiment needs at least two variants, but the variant column {column!r} "
            f"holds only {only}; pass a file (or experiment) with a control and a treatment."
        )
    if control not in counts or counts[control] == 0:
        raise ConfigError(
            f"The control value {control!r} is not in the variant column {column!r}; its "
            f"values are {', '.join(repr(v) for v in present)}. Pass --control with one of them."
        )
    return [v for v in present if v != control]


def _adjust(pvalues: list[float], method: str) -> list[float]:
    from statsmodels.stats.multitest import multipletests

    finite = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    out = [float("nan")] * len(pvalues)
    if finite:
        adjusted = multipletests([pvalues[i] for i in finite], method=method)[1]
        for i, p in zip(finite, adjusted, strict=True):
            out[i] = float(p)
    return out


def analyze_summaries(
    moments: Mapping[str, Mapping[str, ArmMoments]],
    counts: Mapping[str, int],
    *,
    control: str,
    metrics: Sequence[MetricSpec | str],
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    sequential: bool | str = False,
    tuning: float = 5000.0,
    correction: Literal["holm", "bh"] = "holm",
    prior_variance: float | None = None,
    variant_column: str = "variant",
    design: GroupSequential | None = None,
) -> ExperimentAnalysis:
    """Compare every variant with ``control`` on every metric, from per-arm moments.

    Parameters
    ----------
    moments : mapping
        ``moments[metric][variant]`` (from :func:`summarize_units` or a store's SQL).
    counts : mapping
        Units per variant (for the sample-ratio check).
    control : str
        The control variant.
    metrics : sequence of MetricSpec or str
        In order; the first is the primary metric.
    weights : mapping, optional
        Planned share of each variant (default: equal), for the sample-ratio check.
    alpha : float
        Two-sided level of tests and intervals.
    sequential : bool or {"always-valid", "group"}
        Sequential intervals and p-values, for an experiment looked at while it runs: ``True``
        or ``"always-valid"`` for the confidence sequence (valid however long it runs: for
        open-ended monitoring), ``"group"`` for the group-sequential design ``design`` (which
        spends exactly alpha over its planned horizon: more power for a planned test).
    tuning : float
        The confidence sequence's tuning parameter (units at which it is tightest).
    design : GroupSequential, optional
        The planned sample, looks and spending function of the group-sequential design; the
        present look is at ``sum(counts)`` units (all arms).
    correction : {"holm", "bh"}
        Which adjusted p-value decides ``significant`` (both are reported).
    prior_variance : float, optional
        Variance of a Gaussian prior on the relative lift, centred on 0; default flat.
    variant_column : str
        The variant column's name, for messages.

    Returns
    -------
    ExperimentAnalysis
    """
    if not (isinstance(alpha, float | int) and 0 < float(alpha) < 1):
        raise ConfigError(f"alpha must be a number strictly between 0 and 1; got {alpha!r}.")
    if correction not in ("holm", "bh"):
        raise ConfigError(f"correction must be 'holm' or 'bh'; got {correction!r}.")
    if not (isinstance(tuning, float | int) and tuning > 0):
        raise ConfigError(f"tuning must be a positive number of units; got {tuning!r}.")
    mode = sequential_mode(sequential, design)
    specs = [m if isinstance(m, MetricSpec) else MetricSpec(str(m)) for m in metrics]
    treatments = _check_arms(counts, control, variant_column)
    arms = [control, *treatments]
    group: dict[str, Any] | None = None
    fractions = None
    if mode == "group" and design is not None:
        n_now = int(sum(counts[v] for v in arms))
        fractions = design.fractions(n_now)
        group = design.describe(n_now, float(alpha))
    planned = (
        {v: 1.0 for v in arms} if weights is None else {v: float(weights.get(v, 0.0)) for v in arms}
    )
    if weights is not None and any(w <= 0 for w in planned.values()):
        missing = [v for v, w in planned.items() if w <= 0]
        raise ConfigError(
            f"The planned weights give no share to variant(s) {', '.join(map(repr, missing))}, "
            "which hold units; give every variant a positive weight."
        )
    total_w = sum(planned.values())
    chi2, p_srm = srm_test([counts[v] for v in arms], [planned[v] for v in arms])
    srm = SampleRatio(
        counts={v: int(counts[v]) for v in arms},
        expected_shares={v: planned[v] / total_w for v in arms},
        chi2=float(chi2),
        p_value=float(p_srm),
        flagged=bool(p_srm < SRM_THRESHOLD),
    )
    notes: list[str] = []
    if srm.flagged:
        notes.append(
            f"sample-ratio mismatch (chi-square p = {srm.p_value:.2g} < {SRM_THRESHOLD}): the "
            "units were not split as planned, so the comparisons may be biased; find out why "
            "before trusting them."
        )
    if group is not None:
        if group["information_fraction"] > 1.0:
            notes.append(
                f"{group['information_fraction']:.0%} of the planned {group['planned_n']:,} "
                "units: the group-sequential design's alpha is spent by the planned horizon, "
                "so this look has only what earlier looks left."
            )
        if group["boundary_z"] is None:
            notes.append(
                "the group-sequential design has no alpha left for this look (an earlier look "
                "was at or past the planned sample): nothing can be significant now."
            )
    comparisons: list[Comparison] = []
    for spec in specs:
        by_arm = moments[spec.name]
        c = by_arm[control]
        for v in treatments:
            t = by_arm[v]
            est = welch(
                c,
                t,
                alpha=float(alpha),
                sequential=mode is not None,
                tuning=float(tuning),
                fractions=fractions,
                spending=design.spending if design is not None else "obrien-fleming",
            )
            post = bayesian(
                est.lift,
                est.lift_se**2,
                alpha=float(alpha),
                prior_variance=prior_variance,
                inverse=spec.inverse,
            )
            comparisons.append(
                Comparison(
                    metric=spec.name,
                    variant=v,
                    control=control,
                    kind="ratio" if c.is_ratio else ("binary" if c.binary else "mean"),
                    n_control=int(est.n_control),
                    n_treatment=int(est.n_treatment),
                    mean_control=float(est.mean_control),
                    mean_treatment=float(est.mean_treatment),
                    difference=float(est.difference),
                    ci_low=float(est.ci_low),
                    ci_high=float(est.ci_high),
                    p_value=float(est.p_value),
                    lift=float(est.lift),
                    lift_ci_low=float(est.lift_ci_low),
                    lift_ci_high=float(est.lift_ci_high),
                    lift_p_value=float(est.lift_p_value),
                    chance_to_win=float(post["chance_to_win"]),
                    expected_loss=float(post["expected_loss"]),
                    expected_loss_control=float(post["expected_loss_control"]),
                    raw_mean_control=float(est.raw_mean_control),
                    raw_mean_treatment=float(est.raw_mean_treatment),
                    se=float(est.se),
                    dof=float(est.dof),
                    cuped_theta=float(est.theta) if c.has_covariate else None,
                    variance_reduction=float(est.variance_reduction) if c.has_covariate else None,
                    covariate=spec.covariate if c.has_covariate else None,
                    sequential=mode is not None,
                    guardrail=spec.guardrail,
                    inverse=spec.inverse,
                    alpha=float(alpha),
                    sequential_design=mode,
                    boundary_z=(
                        est.boundary
                        if est.boundary is not None and math.isfinite(est.boundary)
                        else None
                    ),
                    spending=design.spending if mode == "group" and design else None,
                )
            )
            if not math.isfinite(float(est.p_value)):
                warnings.warn(
                    f"Metric {spec.name!r}, variant {v!r}: no test was possible (a variance is "
                    "zero, or an arm has a single unit); its p-value and interval are null.",
                    RetentionWarning,
                    stacklevel=2,
                )
    family = [i for i, c in enumerate(comparisons) if not c.guardrail]
    if family:
        pvals = [comparisons[i].p_value for i in family]
        holm, bh = _adjust(pvals, "holm"), _adjust(pvals, "fdr_bh")
        for j, i in enumerate(family):
            comparisons[i] = replace(comparisons[i], p_value_holm=holm[j], p_value_bh=bh[j])
    if correction == "bh":
        comparisons = [
            replace(c, p_value_holm=c.p_value_bh) if c.p_value_bh is not None else c
            for c in comparisons
        ]
    for cmp in comparisons:
        if cmp.guardrail_status == "fail":
            notes.append(
                f"guardrail {cmp.metric!r} failed for variant {cmp.variant!r}: significantly "
                f"worse than control (difference {cmp.difference:.4g}, interval "
                f"{cmp.ci_low:.4g} .. {cmp.ci_high:.4g})."
            )
    return ExperimentAnalysis(
        control=control,
        variants=treatments,
        metrics=specs,
        comparisons=comparisons,
        srm=srm,
        counts={v: int(counts[v]) for v in arms},
        alpha=float(alpha),
        sequential=mode is not None,
        correction=correction,
        notes=notes,
        sequential_design=mode,
        group_sequential=group,
    )


def analyze_units(
    units: pd.DataFrame,
    *,
    variant: str,
    control: str,
    metrics: Sequence[MetricSpec | str],
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    sequential: bool | str = False,
    tuning: float = 5000.0,
    correction: Literal["holm", "bh"] = "holm",
    prior_variance: float | None = None,
    design: GroupSequential | None = None,
) -> ExperimentAnalysis:
    """Analyse unit rows (one per unit): :func:`summarize_units` then :func:`analyze_summaries`.

    Examples
    --------
    >>> import pandas as pd
    >>> units = pd.DataFrame({"arm": ["a", "b"] * 50, "y": [0, 1, 1, 1] * 25})
    >>> result = analyze_units(units, variant="arm", control="a", metrics=["y"])
    >>> round(result.comparison("b").difference, 2)
    0.5
    """
    control = str(control)
    sequential_mode(sequential, design)  # a bad option fails before the data are read
    moments, counts = summarize_units(units, variant=variant, metrics=metrics)
    return analyze_summaries(
        moments,
        counts,
        control=control,
        metrics=metrics,
        weights=weights,
        alpha=alpha,
        sequential=sequential,
        tuning=tuning,
        correction=correction,
        prior_variance=prior_variance,
        variant_column=variant,
        design=design,
    )

"""Monitoring: has the data drifted since the model was trained, and do its scores still hold?

Two questions, answered with plain statistics (what ``retention monitor`` computes):

* **Drift** of each feature and of the score between a *reference* sample (the features at the
  model's training cutoffs, and its scores on them) and a *current* one (the features at the
  newest cutoffs). Two measures per column:

  - the population stability index, ``PSI = sum((a - e) * ln(a / e))`` over bins, where ``e`` and
    ``a`` are the reference and current shares of each bin. The binning is the one of the model's
    training profile (``feature_profile`` of ``retention/models/_drift.py``): cut at the distinct
    deciles (10%, 20%, ..., 90%) of the reference's finite values, a bin ``(edge_i-1, edge_i]``
    each, one more for the missing values, and every share floored at :data:`PSI_EPS` (so that an
    empty bin costs a large but finite amount). 0 means the same distribution; the credit-scoring
    rule of thumb reads below 0.1 as stable and above 0.25 as a significant shift.
    :func:`drift_table` bins two kinds of feature otherwise (:func:`drift_edges`,
    :func:`category_psi`): a feature with at most :data:`PSI_BINS` distinct values in the
    reference gets one bin per distinct value (deciles would merge rare values with their
    neighbours), and a feature that encodes a category as a number recomputed at each cutoff
    (``user_country_freq``, the share of the population in the customer's country:
    :func:`retention.features.encoded_category`) is compared on the categories themselves, one
    bin each, one more for categories the reference never saw, and its KS statistic on the shares
    frozen at the reference (a share that moves from 0.889 to 0.891 is not a customer who moved);
  - the two-sample Kolmogorov-Smirnov statistic (the largest gap between the two empirical
    distribution functions of the finite values) with its two-sided p-value
    (``scipy.stats.ks_2samp``). On tens of thousands of customers a trivial difference has a
    tiny p-value, so the flags are raised by the PSI; the KS statistic says how far apart the
    distributions are and the p-value whether the difference could be chance. The samples pool
    several cutoffs (a customer appears once per cutoff), so the p-value is approximate.

* **Realised performance** of earlier scores whose label window has passed: ROC-AUC, the Brier
  score and the expected calibration error (:func:`expected_calibration_error`), against the
  model's own reference ROC-AUC (*decay* = reference minus realised).

:class:`MonitorThresholds` turns them into flags: a feature with PSI above ``feature_psi``
(default 0.2), a score PSI above ``score_psi`` (0.1), a decay above ``decay`` (0.05); each can be
set by a keyword, or by ``RETENTION_MONITOR_FEATURE_PSI``, ``RETENTION_MONITOR_SCORE_PSI`` and
``RETENTION_MONITOR_DECAY``.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> before, after = rng.normal(0, 1, 5000), rng.normal(0.5, 1, 5000)
>>> round(psi(before, before[::-1]), 3), psi(before, after) > 0.2
(0.0, True)
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from retention.exceptions import ConfigError
from retention.features import feature_family

__all__ = [
    "DECAY",
    "ECE_BINS",
    "FEATURE_PSI",
    "PSI_BINS",
    "PSI_EPS",
    "SCORE_PSI",
    "MonitorThresholds",
    "bin_shares",
    "category_psi",
    "category_shares",
    "drift_edges",
    "drift_table",
    "expected_calibration_error",
    "ks_test",
    "psi",
    "psi_edges",
    "realised_metrics",
]

#: bins of the PSI: the reference's deciles (fewer when values tie)
PSI_BINS = 10
#: a bin's share is floored at this before the logarithm (an empty bin is then finite)
PSI_EPS = 1e-4
#: default thresholds of the flags (documented in docs/monitoring.md)
FEATURE_PSI = 0.2
SCORE_PSI = 0.1
DECAY = 0.05
#: equal-width bins of the expected calibration error
ECE_BINS = 10

_ENV = {
    "feature_psi": "RETENTION_MONITOR_FEATURE_PSI",
    "score_psi": "RETENTION_MONITOR_SCORE_PSI",
    "decay": "RETENTION_MONITOR_DECAY",
}


# ---------------------------------------------------------------------------------- statistics
def _floats(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be numbers; got {type(values).__name__}.") from None
    return arr


def psi_edges(reference: Any, bins: int = PSI_BINS) -> np.ndarray:
    """The cut points of the PSI: the distinct quantiles ``1/bins, ..., (bins-1)/bins`` of the
    reference's finite values (empty when it has none)."""
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise ConfigError(f"bins must be an integer >= 2; got {bins!r}.")
    ref = _floats(reference, "reference")
    finite = ref[np.isfinite(ref)]
    if not len(finite):
        return np.array([])
    return np.unique(np.quantile(finite, np.linspace(0, 1, int(bins) + 1)[1:-1]))


def bin_shares(values: Any, edges: np.ndarray) -> np.ndarray:
    """Shares of ``values`` in the bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)`` and a last
    bin for missing (NaN) values; ``len(edges) + 2`` shares summing to 1 (zeros when empty)."""
    arr = _floats(values, "values")
    nan = ~np.isfinite(arr)
    idx = np.searchsorted(np.asarray(edges, dtype=float), arr[~nan], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    out = np.append(counts, float(nan.sum()))
    total = out.sum()
    return out / total if total else out


def drift_edges(reference: Any, bins: int = PSI_BINS) -> tuple[np.ndarray, str]:
    """The cut points :func:`drift_table` bins a numeric feature by, and their name: the
    reference's distinct finite values when it has at most ``bins`` of them (``"distinct
    values"``: a bin ``(previous, value]`` each, so that no value shares a bin with another),
    else :func:`psi_edges` (``"deciles"``)."""
    edges = psi_edges(reference, bins)
    ref = _floats(reference, "reference")
    distinct = np.unique(ref[np.isfinite(ref)])
    if 0 < len(distinct) <= bins:
        return distinct, "distinct values"
    return edges, "deciles"


def _labels(values: Any) -> pd.Series:
    series = pd.Series(np.asarray(values, dtype=object).ravel(), dtype=object)
    return series.where(series.notna(), None)


def category_shares(values: Any, categories: Any) -> np.ndarray:
    """Shares of ``values`` (category labels) in each of ``categories``, then in one bin for
    the labels not among them and one for missing labels: ``len(categories) + 2`` shares
    summing to 1 (zeros when empty)."""
    labels = _labels(values)
    known = list(categories)
    missing = labels.isna().to_numpy()
    counts = labels[~missing].astype(str).value_counts()
    inside = np.array([float(counts.get(str(c), 0)) for c in known])
    out = np.append(inside, [float(counts.sum()) - inside.sum(), float(missing.sum())])
    total = out.sum()
    return out / total if total else out


def category_psi(reference: Any, current: Any) -> float:
    """Population stability index of two samples of category labels: one bin per category of
    the reference, one for categories it never saw, one for missing labels (shares floored at
    :data:`PSI_EPS`, as :func:`psi`). NaN when either sample is empty."""
    ref, cur = _labels(reference), _labels(current)
    if not len(ref) or not len(cur):
        return float("nan")
    categories = sorted(ref.dropna().astype(str).unique())
    return _psi_from_shares(category_shares(ref, categories), category_shares(cur, categories))


def _frozen_shares(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Both samples' labels mapped to the reference's share of each category (0 for a category
    the reference never saw, NaN for a missing label)."""
    ref, cur = _labels(reference), _labels(current)
    shares = ref.dropna().astype(str).value_counts() / max(len(ref), 1)

    def encode(labels: pd.Series) -> np.ndarray:
        mapped = labels.dropna().astype(str).map(shares).fillna(0.0)
        return mapped.reindex(labels.index).to_numpy(dtype=float, na_value=np.nan)

    return encode(ref), encode(cur)


def _psi_from_shares(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected, PSI_EPS, None)
    a = np.clip(actual, PSI_EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(reference: Any, current: Any, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference`` (see the module text for
    the binning). NaN when either sample is empty."""
    ref, cur = _floats(reference, "reference"), _floats(current, "current")
    if not len(ref) or not len(cur):
        return float("nan")
    edges = psi_edges(ref, bins)
    return _psi_from_shares(bin_shares(ref, edges), bin_shares(cur, edges))


def ks_test(reference: Any, current: Any) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov ``(statistic, two-sided p-value)`` of the finite values;
    ``(nan, nan)`` when a side has none."""
    ref, cur = _floats(reference, "reference"), _floats(current, "current")
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if not len(ref) or not len(cur):
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        # scipy falls back from the exact p-value to the asymptotic one on large samples
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
        result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def drift_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    bins: int = PSI_BINS,
    categories: Mapping[str, tuple[Any, Any]] | None = None,
) -> pd.DataFrame:
    """PSI and KS of every numeric column the two frames share, most shifted first.

    Parameters
    ----------
    reference, current : pd.DataFrame
        One row per customer (and cutoff).
    bins : int
        At most this many bins of a numeric feature (:func:`drift_edges`).
    categories : mapping, optional
        ``{feature: (reference labels, current labels)}`` for features that encode a category
        as a number: the labels (one per row of each frame, in its order) are binned by
        :func:`category_psi`, and KS compares the shares frozen at the reference.

    Returns
    -------
    pd.DataFrame
        One row per feature: ``feature, family, psi, ks, ks_p_value, reference_mean,
        current_mean, reference_missing, current_missing`` (missing: the share of NaN) and
        ``binning`` (``deciles``, ``distinct values`` or ``categories``).
    """
    if not isinstance(reference, pd.DataFrame) or not isinstance(current, pd.DataFrame):
        raise ConfigError("drift_table needs two DataFrames (reference, current).")
    categories = dict(categories or {})
    for name, pair in categories.items():
        if name not in reference.columns or name not in current.columns:
            continue
        if len(pair) != 2 or len(pair[0]) != len(reference) or len(pair[1]) != len(current):
            raise ConfigError(
                f"categories[{name!r}] must be (reference labels, current labels), one per row "
                f"of each frame ({len(reference)} and {len(current)})."
            )
    rows = []
    for name in reference.columns:
        if name not in current.columns:
            continue
        r, c = reference[name], current[name]
        if not (pd.api.types.is_numeric_dtype(r) and pd.api.types.is_numeric_dtype(c)):
            continue
        if pd.api.types.is_bool_dtype(r) or pd.api.types.is_bool_dtype(c):
            r, c = r.astype(float), c.astype(float)
        rv, cv = r.to_numpy(dtype=float, na_value=np.nan), c.to_numpy(dtype=float, na_value=np.nan)
        if name in categories:
            ref_labels, cur_labels = (pd.Series(list(v), dtype=object) for v in categories[name])
            value = category_psi(ref_labels, cur_labels)
            ks, p = ks_test(*_frozen_shares(ref_labels, cur_labels))
            binning = "categories"
        else:
            ks, p = ks_test(rv, cv)
            if len(rv) and len(cv):
                edges, binning = drift_edges(rv, bins)
                value = _psi_from_shares(bin_shares(rv, edges), bin_shares(cv, edges))
            else:
                value, binning = float("nan"), "deciles"
        rows.append(
            {
                "feature": str(name),
                "family": feature_family(str(name)),
                "psi": value,
                "ks": ks,
                "ks_p_value": p,
                "reference_mean": float(np.nanmean(rv)) if np.isfinite(rv).any() else np.nan,
                "current_mean": float(np.nanmean(cv)) if np.isfinite(cv).any() else np.nan,
                "reference_missing": float(np.mean(~np.isfinite(rv))) if len(rv) else np.nan,
                "current_missing": float(np.mean(~np.isfinite(cv))) if len(cv) else np.nan,
                "binning": binning,
            }
        )
    columns = [
        "feature",
        "family",
        "psi",
        "ks",
        "ks_p_value",
        "reference_mean",
        "current_mean",
        "reference_missing",
        "current_missing",
        "binning",
    ]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(
        ["psi", "feature"], ascending=[False, True], kind="mergesort"
    ).reset_index(drop=True)


def expected_calibration_error(y_true: Any, p: Any, bins: int = ECE_BINS) -> float:
    """``sum_b (n_b / n) * |mean(y in b) - mean(p in b)|`` over ``bins`` equal-width bins of
    ``[0, 1]`` (the last one closed); NaN when there is nothing to compare."""
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ConfigError(f"bins must be a positive integer; got {bins!r}.")
    y = _floats(y_true, "y_true")
    q = _floats(p, "p")
    if len(y) != len(q):
        raise ConfigError(f"y_true and p differ in length ({len(y)} and {len(q)}).")
    ok = np.isfinite(q) & np.isfinite(y)
    y, q = y[ok], np.clip(q[ok], 0.0, 1.0)
    if not len(y):
        return float("nan")
    idx = np.minimum((q * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        mine = idx == b
        total += mine.sum() * abs(float(y[mine].mean()) - float(q[mine].mean()))
    return total / len(y)


def realised_metrics(y_true: Any, p: Any) -> dict[str, float]:
    """``n_users, base_rate, mean_p, roc_auc, brier, ece`` of scores ``p`` against outcomes
    ``y_true`` (0/1); ROC-AUC is NaN when only one outcome occurred."""
    from sklearn.metrics import roc_auc_score

    y = _floats(y_true, "y_true")
    q = _floats(p, "p")
    if len(y) != len(q):
        raise ConfigError(f"y_true and p differ in length ({len(y)} and {len(q)}).")
    ok = np.isfinite(q) & np.isfinite(y)
    y, q = y[ok].astype(int), q[ok]
    if not len(y):
        nan = float("nan")
        return dict.fromkeys(("base_rate", "mean_p", "roc_auc", "brier", "ece"), nan) | {
            "n_users": 0
        }
    return {
        "n_users": len(y),
        "base_rate": float(y.mean()),
        "mean_p": float(q.mean()),
        "roc_auc": float(roc_auc_score(y, q)) if len(np.unique(y)) == 2 else float("nan"),
        "brier": float(np.mean((q - y) ** 2)),
        "ece": expected_calibration_error(y, q),
    }


# ---------------------------------------------------------------------------------- thresholds
def _threshold(value: Any, name: str, source: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if isinstance(value, bool) or not math.isfinite(f) or f < 0:
        raise ConfigError(f"{source} must be a number >= 0, such as 0.2; got {value!r}.")
    return f


@dataclass(frozen=True)
class MonitorThresholds:
    """When monitoring raises a flag.

    Attributes
    ----------
    feature_psi : float
        A feature whose PSI exceeds this has drifted (default :data:`FEATURE_PSI`, 0.2).
    score_psi : float
        The score has drifted when its PSI exceeds this (default :data:`SCORE_PSI`, 0.1).
    decay : float
        Performance has decayed when the reference ROC-AUC minus the realised one exceeds this
        (default :data:`DECAY`, 0.05).
    """

    feature_psi: float = FEATURE_PSI
    score_psi: float = SCORE_PSI
    decay: float = DECAY

    def __post_init__(self) -> None:
        for name in ("feature_psi", "score_psi", "decay"):
            object.__setattr__(self, name, _threshold(getattr(self, name), name, name))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: float | None
    ) -> MonitorThresholds:
        """Defaults, replaced by ``RETENTION_MONITOR_FEATURE_PSI``, ``..._SCORE_PSI`` and
        ``..._DECAY`` when set, then by ``overrides`` that are not None (the CLI's flags)."""
        env = os.environ if environ is None else environ
        unknown = sorted(set(overrides) - set(_ENV))
        if unknown:
            raise ConfigError(
                f"Unknown threshold(s) {', '.join(unknown)}; choose from {', '.join(_ENV)}."
            )
        values: dict[str, float] = {}
        for name, var in _ENV.items():
            given = overrides.get(name)
            if given is not None:
                values[name] = _threshold(given, name, name)
            elif str(env.get(var, "")).strip():
                values[name] = _threshold(env[var].strip(), name, var)
        return cls(**values)

    def to_dict(self) -> dict[str, float]:
        """JSON-ready."""
        return asdict(self)

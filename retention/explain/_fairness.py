"""Fairness and stability by segment: ROC-AUC, calibration and share flagged high-risk.

For each segment column (country, tenure band, any sensitive attribute the user names) and each
of its values, :func:`segment_report` measures on a labelled cutoff:

* ``roc_auc``: how well the model ranks within the segment;
* ``mean_predicted`` against ``observed`` (calibration in the large) and their ratio;
* ``share_high_risk``: the share flagged high-risk (P(retained) below ``high_risk_below``, the
  "high" band of ``retention score``).

Disparity ratios compare each segment with the whole population: ``auc_ratio`` is the segment's
ROC-AUC over the overall one, ``high_risk_ratio`` the segment's share flagged over the overall
share, taken as ``min(r, 1/r)`` so that 1 is parity either way (the four-fifths rule of thumb
reads a ratio under 0.8 as a disparity), and ``calibration_ratio`` is ``min(pred/obs, obs/pred)``.
A segment whose ratio falls below ``threshold`` (default 0.8) gets a warning; segments smaller
than ``min_size`` are reported but not warned about (their figures are noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from retention.exceptions import ConfigError

__all__ = [
    "DEFAULT_DISPARITY_THRESHOLD",
    "DEFAULT_HIGH_RISK_BELOW",
    "TENURE_BANDS",
    "FairnessReport",
    "make_segments",
    "segment_report",
]

#: the four-fifths rule of thumb
DEFAULT_DISPARITY_THRESHOLD = 0.8
#: P(retained) under which a customer is flagged high-risk (the "high" risk band of scoring)
DEFAULT_HIGH_RISK_BELOW = 0.3
#: tenure bands in days since the first order: (upper bound, label)
TENURE_BANDS: tuple[tuple[float, str], ...] = (
    (90.0, "< 3 months"),
    (180.0, "3-6 months"),
    (365.0, "6-12 months"),
    (730.0, "1-2 years"),
    (np.inf, "2+ years"),
)


@dataclass
class FairnessReport:
    """The segment table and its warnings.

    Attributes
    ----------
    table : pd.DataFrame
        One row per (``segment``, ``value``): ``n``, ``observed``, ``mean_predicted``,
        ``calibration_ratio``, ``roc_auc``, ``auc_ratio``, ``share_high_risk``,
        ``high_risk_ratio``, ``warning`` (text, empty when none).
    overall : dict
        The same figures for the whole population.
    warnings : list of str
        One line per segment past the threshold.
    threshold, high_risk_below, min_size
        The settings used.
    """

    table: pd.DataFrame
    overall: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    threshold: float = DEFAULT_DISPARITY_THRESHOLD
    high_risk_below: float = DEFAULT_HIGH_RISK_BELOW
    min_size: int = 50

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        table = self.table.astype(object).where(self.table.notna(), None)
        return {
            "overall": self.overall,
            "threshold": self.threshold,
            "high_risk_below": self.high_risk_below,
            "min_size": self.min_size,
            "segments": table.to_dict("records"),
            "warnings": list(self.warnings),
        }


def _tenure_band(days: pd.Series) -> pd.Series:
    d = pd.to_numeric(days, errors="coerce")
    out = pd.Series("unknown", index=d.index, dtype=object)
    lower = -np.inf
    for upper, label in TENURE_BANDS:
        out[(d >= lower) & (d < upper)] = label
        lower = upper
    return out


def make_segments(
    features: pd.DataFrame,
    users: pd.DataFrame | None = None,
    *,
    sensitive: Sequence[str] = (),
    top_countries: int = 8,
    numeric_bins: int = 4,
) -> pd.DataFrame:
    """Segment columns for the customers of ``features``: country, tenure band, sensitive ones.

    Parameters
    ----------
    features : pd.DataFrame
        ``frame.features`` (index ``user_id``); ``tenure_days`` gives the tenure band.
    users : pd.DataFrame, optional
        The ``users`` side table (``user_id`` column or index); ``country`` gives the country
        segment (the ``top_countries`` most common, the rest as ``"other"``).
    sensitive : sequence of str
        More columns of ``users`` to segment by; numeric ones are cut into ``numeric_bins``
        quantile bins.

    Returns
    -------
    pd.DataFrame
        Index as ``features``; one string column per segment.

    Raises
    ------
    ConfigError
        A sensitive column is not in ``users``.
    """
    out = pd.DataFrame(index=features.index)
    if "tenure_days" in features.columns:
        out["tenure band"] = _tenure_band(features["tenure_days"]).to_numpy()
    u: pd.DataFrame | None = None
    if users is not None:
        u = users.set_index("user_id") if "user_id" in users.columns else users
        u = u[~u.index.duplicated()]
        u.index = u.index.astype(str)
        u = u.reindex(features.index.astype(str))
    missing = [c for c in sensitive if u is None or c not in u.columns]
    if missing:
        have = ", ".join(map(str, u.columns)) if u is not None else "(no users table)"
        raise ConfigError(
            f"Sensitive column(s) {missing} are not in the users table; it has: {have}. "
            "Add them to the users table (retention ingest --table users) or drop --sensitive."
        )
    if u is not None and "country" in u.columns and u["country"].notna().any():
        country = u["country"].astype(object).where(u["country"].notna(), "unknown").astype(str)
        common = country.value_counts().index[:top_countries]
        out["country"] = country.where(country.isin(common), "other").to_numpy()
    for col in sensitive:
        assert u is not None
        values = u[col]
        if pd.api.types.is_numeric_dtype(values) and values.nunique() > numeric_bins:
            binned = pd.qcut(values, numeric_bins, duplicates="drop").astype(str)
            out[col] = binned.where(values.notna(), "unknown").to_numpy()
        else:
            out[col] = values.astype(object).where(values.notna(), "unknown").astype(str).to_numpy()
    return out


def _ratio(a: float, b: float) -> float:
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 0 or b <= 0:
        return float("nan")
    return float(min(a / b, b / a))


def _figures(y: np.ndarray, p: np.ndarray, cut: float) -> dict[str, float]:
    both = len(np.unique(y)) == 2
    return {
        "n": len(y),
        "observed": float(y.mean()) if len(y) else float("nan"),
        "mean_predicted": float(p.mean()) if len(p) else float("nan"),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "share_high_risk": float((p < cut).mean()) if len(p) else float("nan"),
    }


def segment_report(
    y_true: pd.Series,
    p_retained: pd.Series,
    segments: pd.DataFrame,
    *,
    threshold: float = DEFAULT_DISPARITY_THRESHOLD,
    high_risk_below: float = DEFAULT_HIGH_RISK_BELOW,
    min_size: int = 50,
) -> FairnessReport:
    """ROC-AUC, calibration and share flagged high-risk per segment, with disparity ratios.

    Parameters
    ----------
    y_true : pd.Series
        0/1 outcome per customer (index ``user_id``).
    p_retained : pd.Series
        The model's P(retained), same index.
    segments : pd.DataFrame
        One column per segment (see :func:`make_segments`), same index.
    threshold : float
        A ratio under it is a disparity (0.8: the four-fifths rule).
    high_risk_below : float
        P(retained) under which a customer is flagged high-risk.
    min_size : int
        Smaller segments are reported without warnings.

    Returns
    -------
    FairnessReport

    Examples
    --------
    >>> import pandas as pd
    >>> idx = pd.Index([f"u{i}" for i in range(8)])
    >>> y = pd.Series([1, 0, 1, 0, 1, 0, 1, 0], index=idx)
    >>> p = pd.Series([.9, .1, .8, .2, .6, .5, .4, .45], index=idx)
    >>> seg = pd.DataFrame({"country": ["A"] * 4 + ["B"] * 4}, index=idx)
    >>> rep = segment_report(y, p, seg, min_size=1)
    >>> rep.table[["value", "roc_auc", "auc_ratio"]].round(2).to_dict("list")
    {'value': ['A', 'B'], 'roc_auc': [1.0, 0.5], 'auc_ratio': [1.14, 0.57]}
    """
    if not (isinstance(threshold, int | float) and 0 < threshold <= 1):
        raise ConfigError(f"threshold is a ratio in (0, 1]; got {threshold!r}. The default is 0.8.")
    if not (isinstance(high_risk_below, int | float) and 0 < high_risk_below < 1):
        raise ConfigError(f"high_risk_below is a probability in (0, 1); got {high_risk_below!r}.")
    idx = y_true.index
    p_all = pd.Series(p_retained).reindex(idx)
    if p_all.isna().any():
        raise ConfigError(
            f"{int(p_all.isna().sum())} customers of y_true have no score. "
            "Pass scores indexed by the same user_id as the labels."
        )
    seg = segments.reindex(idx)
    y = np.asarray(y_true, dtype=int)
    p = p_all.to_numpy(dtype=float)
    overall = _figures(y, p, high_risk_below)
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for col in seg.columns:
        values = seg[col].astype(object).where(seg[col].notna(), "unknown").astype(str).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            f = _figures(y[mask], p[mask], high_risk_below)
            auc_ratio = (
                f["roc_auc"] / overall["roc_auc"]
                if np.isfinite(f["roc_auc"]) and np.isfinite(overall["roc_auc"])
                else float("nan")
            )
            row = {
                "segment": str(col),
                "value": value,
                **f,
                "calibration_ratio": _ratio(f["mean_predicted"], f["observed"]),
                "auc_ratio": float(auc_ratio),
                "high_risk_ratio": _ratio(f["share_high_risk"], overall["share_high_risk"]),
            }
            problems = []
            if f["n"] >= min_size:
                for key, what in (
                    ("auc_ratio", "ROC-AUC"),
                    ("high_risk_ratio", "share flagged high-risk"),
                    ("calibration_ratio", "calibration (predicted vs observed)"),
                ):
                    r = row[key]
                    if np.isfinite(r) and r < threshold:
                        problems.append(f"{what} ratio {r:.2f}")
            row["warning"] = "; ".join(problems)
            if problems:
                warnings.append(
                    f"{col}={value} (n={f['n']:,}): " + ", ".join(problems) + f" < {threshold:g}"
                )
            rows.append(row)
    columns = [
        "segment",
        "value",
        "n",
        "observed",
        "mean_predicted",
        "calibration_ratio",
        "roc_auc",
        "auc_ratio",
        "share_high_risk",
        "high_risk_ratio",
        "warning",
    ]
    return FairnessReport(
        table=pd.DataFrame(rows, columns=columns),
        overall=overall,
        warnings=warnings,
        threshold=float(threshold),
        high_risk_below=float(high_risk_below),
        min_size=int(min_size),
    )

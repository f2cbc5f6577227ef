"""Metrics of a retention backtest and the result object the report and the JSON contract use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

__all__ = ["BacktestResult", "classification_metrics", "lift_at", "paired_auc_bootstrap"]


def lift_at(y_true: np.ndarray, score: np.ndarray, share: float = 0.1) -> float:
    """Base-rate-relative hit rate among the top ``share`` of customers ranked by ``score``."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(score, dtype=float)
    if len(y) == 0 or y.mean() == 0:
        return float("nan")
    k = max(1, round(share * len(y)))
    top = np.argsort(-s, kind="mergesort")[:k]
    return float(y[top].mean() / y.mean())


def classification_metrics(y_true: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier score, log loss and lift at 10% of probabilities ``p``."""
    y = np.asarray(y_true, dtype=int)
    q = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, q)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, q)) if both else float("nan"),
        "brier": float(brier_score_loss(y, q)),
        "log_loss": float(log_loss(y, q, labels=[0, 1])),
        "lift_at_10": lift_at(y, q, 0.1),
    }


def paired_auc_bootstrap(
    y_true: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    n: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Paired bootstrap of ROC-AUC(a) - ROC-AUC(b) on the same customers.

    Each resample draws customers with replacement and scores both models on the same draw
    (resamples with one class only are skipped).

    Parameters
    ----------
    y_true : array of 0/1
        Labels.
    a, b : array of float
        Scores of the two models, aligned with ``y_true``.
    n : int, default 1000
        Resamples.
    seed : int, default 0
        Seed of the resampling.

    Returns
    -------
    dict
        ``difference`` (on all customers), ``low`` and ``high`` (the 2.5% and 97.5% quantiles
        of the resampled differences), ``share_below_0`` and ``resamples`` (those used).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400)
    >>> good, noise = y + rng.normal(0, 1, 400), rng.normal(0, 1, 400)
    >>> gain = paired_auc_bootstrap(y, good, noise, n=200)
    >>> gain["low"] > 0
    True
    """
    y = np.asarray(y_true, dtype=int)
    sa, sb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not (len(y) == len(sa) == len(sb)) or len(np.unique(y)) < 2:
        raise ValueError(
            "paired_auc_bootstrap needs labels of both classes and two score arrays of the "
            f"same length; got {len(y)} labels ({len(np.unique(y))} class(es)), {len(sa)} and "
            f"{len(sb)} scores."
        )
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) < 2:
            continue
        diffs.append(roc_auc_score(y[idx], sa[idx]) - roc_auc_score(y[idx], sb[idx]))
    d = np.asarray(diffs)
    return {
        "difference": float(roc_auc_score(y, sa) - roc_auc_score(y, sb)),
        "low": float(np.quantile(d, 0.025)),
        "high": float(np.quantile(d, 0.975)),
        "share_below_0": float((d < 0).mean()),
        "resamples": len(d),
    }


@dataclass
class BacktestResult:
    """Scores of several models on one held-out cutoff, and their metrics.

    Attributes
    ----------
    cutoff, horizon_days
        The test cutoff and horizon.
    y_true : pd.Series
        Labels of the test population, index ``user_id``.
    scores : dict of str to pd.Series
        P(retained) per model, aligned with ``y_true``.
    train_cutoffs, valid_cutoff
        The cutoffs the supervised models learned from.
    timings : dict of str to float
        Seconds each model took to fit and score.
    extra : dict
        Anything the report may show (for example the cohort table, feature importance).
    """

    cutoff: pd.Timestamp
    horizon_days: int
    y_true: pd.Series
    scores: dict[str, pd.Series]
    train_cutoffs: list[pd.Timestamp] = field(default_factory=list)
    valid_cutoff: pd.Timestamp | None = None
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """Metrics per model."""
        return {
            name: classification_metrics(
                self.y_true.to_numpy(), s.reindex(self.y_true.index).to_numpy()
            )
            for name, s in self.scores.items()
        }

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON contract of ``retention backtest --json`` (see DESIGN.md)."""
        return {
            "cutoff": self.cutoff.strftime("%Y-%m-%d"),
            "horizon_days": int(self.horizon_days),
            "n_users": len(self.y_true),
            "base_rate": float(self.y_true.mean()) if len(self.y_true) else float("nan"),
            "train_cutoffs": [c.strftime("%Y-%m-%d") for c in self.train_cutoffs],
            "valid_cutoff": self.valid_cutoff.strftime("%Y-%m-%d")
            if self.valid_cutoff is not None
            else None,
            # the activity that counts as coming back (label, population, BTYD): --retained-by
            "retained_by": str(self.extra.get("retained_by", "purchase")),
            "models": self.metrics,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            # how each BTYD fit went on the test cutoff (degenerate, collapsed to the NBD), the
            # models left out of "models" as the same NBD under another name, where P(alive)
            # comes from (null: unavailable, every fit degenerate), and the CLV (expected spend
            # over the horizon, net of returns) against the spend realised in the label window
            "fits": self.extra.get("fits", {}),
            "twins": self.extra.get("twins", {}),
            "p_alive_source": self.extra.get("p_alive_source"),
            "clv": self.extra.get("clv"),
        }

    def to_dict(self) -> dict[str, Any]:
        """:meth:`to_json_dict` with non-finite numbers as None: ``json.dumps`` works on it."""
        return _finite(self.to_json_dict())


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value

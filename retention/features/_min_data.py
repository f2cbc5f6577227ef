"""The least data a model can learn from: refuse below it, warn near it.

``backtest`` and ``train`` learn at a few cutoffs (training cutoffs and a validation cutoff, see
:func:`retention.features.backtest_cutoffs`). Below the minimum, what they would report is noise
(a model trained on 5 customers reported "valid ROC-AUC 0.750"), so they refuse with a message
that names what the store holds and what is needed; below :data:`WARN_FACTORS` times the
minimum they run and emit a :class:`~retention.exceptions.RetentionWarning`. Three quantities
count:

- customers: the population at the validation cutoff (customers with a qualifying event
  before it);
- retained and churned customers: the fewer of the two classes, at every learning cutoff (a
  ranking needs both; the stacker and the calibration are fitted on the validation cutoff);
- days of history: from the first qualifying event to the validation cutoff; by default one
  horizon (a model that predicts 90 days ahead needs at least 90 days of past to look at).

The customer and class minimums come from the learning curve of
``benchmarks/prediction.py --learning-curve`` (random subsets of customers of Online Retail and
CDNOW, the split kept temporal): see :data:`MIN_CUSTOMERS`. They are documented constants, not
tuned to any test; a request field (``min_data=MinData(...)``) or the ``RETENTION_MIN_*``
settings change them, for experiments on small data at one's own risk.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from retention.exceptions import ConfigError, InsufficientDataError, RetentionWarning
from retention.features._frame import CutoffFrame
from retention.features._tables import DataSpan, describe_retained_by

__all__ = [
    "MIN_CUSTOMERS",
    "MIN_RETAINED",
    "WARN_FACTORS",
    "DataSufficiency",
    "MinData",
    "check_min_data",
]

#: refuse below this many customers at the validation cutoff. On the learning curve
#: (``benchmarks/prediction.py --learning-curve``, ``benchmarks/results/learning_curve.json``),
#: Online Retail stores of 100 customers (64 at the validation cutoff) rank no better than the
#: plain recency rule on one seed in five and spread by +-0.05 against it.
MIN_CUSTOMERS = 100
#: refuse when fewer than this many customers are retained, or churned, at a learning cutoff: a
#: ranking, early stopping and the calibration need both classes (a CDNOW store of 100 customers
#: holds 16 retained ones at its earliest training cutoff).
MIN_RETAINED = 20
#: warn below these multiples of the minimums. Customers: below 500 at the validation cutoff the
#: engine was not reliably above both baselines on the learning curve (Online Retail at 126 and
#: fewer: the boosted model stops at its BG/NBD start, so the engine is BG/NBD; CDNOW at 200 and
#: 500: not above the recency rule, from 1,000 above it on every seed). Retained/churned: 50.
#: History: two horizons before the validation cutoff (a rule of thumb: history was not varied
#: on the curve).
WARN_FACTORS: dict[str, float] = {
    "customers": 5.0,
    "retained": 2.5,
    "churned": 2.5,
    "history_days": 2.0,
}


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ConfigError(f"{name} must be a whole number >= 0, such as 200; got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class MinData:
    """The least data ``backtest`` and ``train`` learn from.

    Attributes
    ----------
    customers : int
        Customers in the population at the validation cutoff (default :data:`MIN_CUSTOMERS`).
    retained : int
        Retained customers, and churned customers, at every learning cutoff (default
        :data:`MIN_RETAINED`).
    history_days : int or None
        Days from the first qualifying event to the validation cutoff; None (the default) means
        one horizon.

    Every minimum of 0 turns that check off; :meth:`off` turns them all off.
    """

    customers: int = MIN_CUSTOMERS
    retained: int = MIN_RETAINED
    history_days: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "customers", _count(self.customers, "min_data.customers"))
        object.__setattr__(self, "retained", _count(self.retained, "min_data.retained"))
        if self.history_days is not None:
            days = _count(self.history_days, "min_data.history_days")
            object.__setattr__(self, "history_days", days)

    @classmethod
    def from_settings(cls) -> MinData:
        """The defaults, overridden by ``RETENTION_MIN_CUSTOMERS``, ``RETENTION_MIN_RETAINED``
        and ``RETENTION_MIN_HISTORY_DAYS`` where set."""
        from retention._settings import get_settings

        s = get_settings()
        return cls(
            customers=MIN_CUSTOMERS if s.min_customers is None else s.min_customers,
            retained=MIN_RETAINED if s.min_retained is None else s.min_retained,
            history_days=s.min_history_days,
        )

    @classmethod
    def off(cls) -> MinData:
        """No minimum at all (benchmarks that measure what happens below it)."""
        return cls(customers=0, retained=0, history_days=0)

    def history_for(self, horizon_days: int) -> int:
        """The days of history needed for a horizon."""
        return int(horizon_days) if self.history_days is None else int(self.history_days)


@dataclass(frozen=True)
class DataSufficiency:
    """What the learning cutoffs hold, measured against a :class:`MinData`.

    Attributes
    ----------
    customers : int
        Customers at the validation cutoff.
    retained, churned : int
        The fewest retained and the fewest churned customers over the learning cutoffs.
    worst_cutoff : pd.Timestamp
        The learning cutoff with the fewest of the smaller class.
    history_days : int
        Days from the first qualifying event to the validation cutoff.
    valid_cutoff : pd.Timestamp
    retained_by : str
    refused, warned : tuple of str
        What fell below the minimum, and below :data:`WARN_FACTORS` times it.
    """

    customers: int
    retained: int
    churned: int
    worst_cutoff: pd.Timestamp
    history_days: int
    valid_cutoff: pd.Timestamp
    retained_by: str
    needed: MinData
    horizon_days: int
    refused: tuple[str, ...] = ()
    warned: tuple[str, ...] = ()

    def holds(self) -> str:
        """What the store holds, in words."""
        who = describe_retained_by(self.retained_by)
        return (
            f"{self.customers:,} customers with {who} before the validation cutoff "
            f"{self.valid_cutoff:%Y-%m-%d}, at least {self.retained:,} retained and "
            f"{self.churned:,} churned at every learning cutoff (fewest at "
            f"{self.worst_cutoff:%Y-%m-%d}), and {self.history_days:,} days of history before "
            "the validation cutoff"
        ).replace(" 1 days", " 1 day")

    def needs(self, *, warn: bool = False) -> str:
        """What is needed, in words: the minimums, or (``warn``) where the warning stops."""
        need = self.needed

        def level(value: float, name: str) -> str:
            return f"{round(value * (WARN_FACTORS[name] if warn else 1.0)):,}"

        days = need.history_for(self.horizon_days)
        days_txt = f"{level(days, 'history_days')} days of history"
        if need.history_days is None:
            days_txt += " (two horizons)" if warn else " (one horizon)"
        return (
            f"{level(need.customers, 'customers')} customers, "
            f"{level(need.retained, 'retained')} retained and as many churned at every "
            f"learning cutoff, and {days_txt}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "customers": self.customers,
            "retained": self.retained,
            "churned": self.churned,
            "worst_cutoff": f"{self.worst_cutoff:%Y-%m-%d}",
            "history_days": self.history_days,
            "valid_cutoff": f"{self.valid_cutoff:%Y-%m-%d}",
            "retained_by": self.retained_by,
            "min_customers": self.needed.customers,
            "min_retained": self.needed.retained,
            "min_history_days": self.needed.history_for(self.horizon_days),
            "refused": list(self.refused),
            "warned": list(self.warned),
        }


_FIX = (
    "Ingest more customers or a longer history, use a shorter horizon or a later cutoff, or "
    "lower the limits at your own risk (RETENTION_MIN_CUSTOMERS, RETENTION_MIN_RETAINED, "
    "RETENTION_MIN_HISTORY_DAYS, or min_data=MinData(...) in a request)."
)


def check_min_data(
    train: Sequence[CutoffFrame],
    valid: CutoffFrame,
    span: DataSpan,
    min_data: MinData | None = None,
    *,
    purpose: str = "learn",
) -> DataSufficiency:
    """Refuse to learn from too little data, and warn near the minimum.

    Parameters
    ----------
    train : sequence of CutoffFrame
        The labelled training frames.
    valid : CutoffFrame
        The labelled validation frame.
    span : DataSpan
        The data's span for the same ``retained_by`` (:func:`retention.features.data_span`).
    min_data : MinData, optional
        The minimums; default :meth:`MinData.from_settings`.
    purpose : str
        What is refused, for the message (``"backtest"``, ``"train"``).

    Returns
    -------
    DataSufficiency
        What the cutoffs hold (also when a warning was emitted).

    Raises
    ------
    InsufficientDataError
        Below a minimum; the one-line message names what the store holds and what is needed.
    """
    need = MinData.from_settings() if min_data is None else min_data
    frames = [*train, valid]
    counts: list[tuple[pd.Timestamp, int, int]] = []
    for frame in frames:
        if frame.label is None:
            raise ConfigError("check_min_data needs labelled frames; got one without a label.")
        positives = int(pd.Series(frame.label).sum())
        counts.append((pd.Timestamp(frame.cutoff), positives, len(frame) - positives))
    worst = min(counts, key=lambda c: (min(c[1], c[2]), c[0]))
    first = span.first_qualifying
    history = 0 if first is None else max((pd.Timestamp(valid.cutoff) - first).days, 0)
    customers = len(valid)
    retained = min(c[1] for c in counts)
    churned = min(c[2] for c in counts)
    horizon = int(valid.horizon_days)
    checks = (
        ("customers", customers, need.customers),
        ("retained", retained, need.retained),
        ("churned", churned, need.retained),
        ("history_days", history, need.history_for(horizon)),
    )
    refused = tuple(name for name, have, minimum in checks if have < minimum)
    warned = tuple(
        name
        for name, have, minimum in checks
        if name not in refused and have < WARN_FACTORS[name] * minimum
    )
    result = DataSufficiency(
        customers=customers,
        retained=retained,
        churned=churned,
        worst_cutoff=worst[0],
        history_days=history,
        valid_cutoff=pd.Timestamp(valid.cutoff),
        retained_by=span.retained_by,
        needed=need,
        horizon_days=horizon,
        refused=refused,
        warned=warned,
    )
    if refused:
        raise InsufficientDataError(
            f"Too little data to {purpose}: the store holds {result.holds()}; it needs at least "
            f"{result.needs()}. {_FIX}"
        )
    if warned:
        warnings.warn(
            f"Thin data for {purpose} ({', '.join(warned)} near the minimum): the store holds "
            f"{result.holds()}; below {result.needs(warn=True)}, the engine was not reliably "
            "better than BG/NBD or a plain recency rule on the learning curve (README: how much "
            "data), and its figures vary from one sample of customers to the next.",
            RetentionWarning,
            stacklevel=2,
        )
    return result

"""The unit every model consumes: one population at one cutoff.

A model sees the world through :class:`CutoffFrame`: one cutoff, the population of customers with a
purchase before it, their point-in-time features, their raw events before the cutoff, and (for
training cutoffs) the label "at least one purchase in [cutoff, cutoff + horizon)". Each model takes
what it needs: BTYD models the purchase events, gradient boosting the features, transformers the
event sequences and texts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["CutoffFrame"]


@dataclass
class CutoffFrame:
    """Everything known about one population at one cutoff.

    Attributes
    ----------
    cutoff : pd.Timestamp
        Features use events strictly before it; the label window starts at it.
    horizon_days : int
        Length of the label window.
    features : pd.DataFrame
        One row per customer, index ``user_id`` (str), numeric columns. The index fixes the
        population and the order of every prediction.
    label : pd.Series or None
        1 when the customer purchased in ``[cutoff, cutoff + horizon)``, else 0; same index as
        ``features``. None when the future is not known yet (scoring).
    events : pd.DataFrame
        The contract's columns for these customers' events strictly before the cutoff, sorted by
        ``user_id`` then ``ts``.
    items : pd.DataFrame or None
        The ``items`` side table (``item_id``, ``title``, ``description``, ``category``, ``price``).
    extra : dict
        Anything a stage adds for later stages (for example text embeddings), keyed by name.
    retained_by : str
        The activity that counts as coming back (``"purchase"``, ``"any"`` or event types
        joined by commas; :func:`retention.features.to_retained_by`): the population and the
        label follow it, and so do the BTYD models (:meth:`qualifying_events`).
    """

    cutoff: pd.Timestamp
    horizon_days: int
    features: pd.DataFrame
    label: pd.Series | None
    events: pd.DataFrame
    items: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    retained_by: str = "purchase"

    @property
    def users(self) -> pd.Index:
        """The population, in prediction order."""
        return self.features.index

    def __len__(self) -> int:
        return len(self.features)

    def qualifying_events(self) -> pd.DataFrame:
        """The events that count as coming back (``retained_by``): what purchase-counting models
        (BTYD) take as this frame's transactions. Only purchases keep their ``amount`` (a review
        or a return is not spend)."""
        events = self.events
        if "event_type" not in events.columns:
            return events
        kind = events["event_type"].astype(str)
        if self.retained_by == "any":
            keep = pd.Series(True, index=events.index)
        else:
            keep = kind.isin(self.retained_by.split(","))
        out = events[keep.to_numpy()]
        if "amount" in out.columns and self.retained_by != "purchase":
            out = out.assign(amount=out["amount"].where(kind[keep.to_numpy()] == "purchase"))
        return out

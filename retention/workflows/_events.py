"""Ingest a batch of events given as records (``POST /events``), through the same validation,
quarantine and accounting as ``retention ingest``.

The records carry the contract's canonical names, so no column map is needed; values are
checked by the ingest itself (a bad time, a negative amount, an unknown event type go to the
quarantine with their reason, as from a file). A retried batch adds nothing: each event's
``event_id`` is the one given, or the stable hash of its columns, and a stored id is counted as
a duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import IngestReport, Store, ingest_frame
from retention.exceptions import ConfigError

__all__ = ["EVENT_FIELDS", "MAX_EVENTS_PER_BATCH", "EventBatchRequest", "ingest_events"]

#: the fields of one event record: the event contract's columns
EVENT_FIELDS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "ts",
    "event_type",
    "item_id",
    "order_id",
    "quantity",
    "amount",
    "rating",
    "text",
)
_TEXT = ("event_id", "user_id", "ts", "event_type", "item_id", "order_id", "text")
_NUMBERS = ("quantity", "amount", "rating")

#: the largest batch one call takes (a service may set a lower limit)
MAX_EVENTS_PER_BATCH = 10_000


@dataclass(frozen=True)
class EventBatchRequest:
    """A batch of event records.

    Attributes
    ----------
    events : sequence of mapping
        One mapping per event, keyed by :data:`EVENT_FIELDS` (``user_id`` and ``ts`` required;
        ``event_type`` defaults to ``purchase``, as for a file without an event-type column).
        Times are ISO strings (naive UTC).
    strict : bool
        Load nothing when any record would be quarantined.
    source : str
        Recorded as the ``file`` of the ingest (``ingests`` table).
    """

    events: Sequence[Mapping[str, Any]]
    strict: bool = False
    source: str = "api"

    def __post_init__(self) -> None:
        if isinstance(self.events, Mapping | str) or not isinstance(self.events, Sequence):
            raise ConfigError(
                f"events must be a list of event records; got {type(self.events).__name__}."
            )
        if not self.events:
            raise ConfigError("events is empty: send at least one event.")
        if len(self.events) > MAX_EVENTS_PER_BATCH:
            raise ConfigError(
                f"events holds {len(self.events):,} records; send at most "
                f"{MAX_EVENTS_PER_BATCH:,} per batch."
            )
        for i, rec in enumerate(self.events):
            if not isinstance(rec, Mapping):
                raise ConfigError(f"events[{i}] must be an object; got {type(rec).__name__}.")
            unknown = sorted(set(map(str, rec)) - set(EVENT_FIELDS))
            if unknown:
                raise ConfigError(
                    f"events[{i}] has unknown field(s) {', '.join(unknown)}; the fields are "
                    f"{', '.join(EVENT_FIELDS)}."
                )
        object.__setattr__(self, "events", tuple(self.events))
        object.__setattr__(self, "strict", bool(self.strict))


def _frame(events: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The records as a frame of the contract's columns (text as strings, numbers as floats)."""
    cols: dict[str, Any] = {}
    for name in _TEXT:
        values = [rec.get(name) for rec in events]
        if name == "event_type":
            values = ["purchase" if v is None else v for v in values]
        cols[name] = pd.Series(
            [None if v is None else str(v) for v in values], dtype=object, name=name
        )
    for name in _NUMBERS:
        cols[name] = pd.Series([_number(rec, i, name) for i, rec in enumerate(events)])
    return pd.DataFrame(cols)[list(EVENT_FIELDS)]


def _number(rec: Mapping[str, Any], i: int, name: str) -> float:
    value = rec.get(name)
    if value is None:
        return np.nan
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(
            f"events[{i}].{name} must be a number or null; got a {type(value).__name__}."
        )
    return float(value)


def ingest_events(
    store: Store, request: EventBatchRequest, *, progress: Progress | None = None
) -> IngestReport:
    """Validate a batch of records, quarantine the bad ones, append the rest (one transaction).

    Parameters
    ----------
    store : Store
        Opened for writing.
    request : EventBatchRequest
    progress : Progress, optional

    Returns
    -------
    IngestReport
        ``read == loaded + duplicates + quarantined``, with the reasons. A batch whose every
        record is quarantined is reported, not raised (its quarantine is committed).

    Raises
    ------
    QuarantineError
        ``strict`` and at least one record would be quarantined (nothing is written).
    """
    store.check_writable("ingest events")
    df = _frame(request.events)
    with as_progress(progress).stage(f"ingesting {len(df)} events"):
        return ingest_frame(
            store,
            df,
            table="events",
            source_name=request.source,
            strict=request.strict,
            allow_all_quarantined=True,
        )

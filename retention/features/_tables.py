"""Access to the event store through Ibis: the backend, the contract's columns, the data's span.

Feature code runs on any Ibis backend that holds a table ``events`` with the event contract's
columns (DuckDB by default, Spark for data that outgrows one machine). This module resolves what
the caller passed (a :class:`retention.data.Store` or an Ibis backend) to a backend, and gives the
``events`` table with every contract column present and typed, so the feature code never has to
ask which optional columns exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
from ibis.common.exceptions import TableNotFound

from retention.exceptions import DataError, SchemaError

__all__ = [
    "EVENT_COLUMNS",
    "RETAINED_BY_DEFAULT",
    "DataSpan",
    "as_backend",
    "data_span",
    "describe_retained_by",
    "events_table",
    "has_table",
    "qualifying",
    "qualifying_mask",
    "retained_types",
    "to_retained_by",
]

#: the event contract: column -> Ibis type (``user_id``, ``ts`` and ``event_type`` are required)
EVENT_COLUMNS: dict[str, str] = {
    "event_id": "string",
    "user_id": "string",
    "ts": "timestamp",
    "event_type": "string",
    "item_id": "string",
    "order_id": "string",
    "quantity": "float64",
    "amount": "decimal(18, 2)",
    "rating": "float64",
    "text": "string",
}
REQUIRED_COLUMNS = ("user_id", "ts", "event_type")

#: the activity that counts as coming back unless the caller names another (``--retained-by``)
RETAINED_BY_DEFAULT = "purchase"
_ANY = "any"


def to_retained_by(value: Any) -> str:
    """The activity that counts as coming back, in its one canonical spelling.

    The one ``retained_by`` rule of retention (every workflow and the CLI's ``--retained-by``
    use it): ``"purchase"`` (the default), ``"any"`` (every event type), or event types as a
    comma-separated string or a sequence (``"review,view"``, ``["review", "view"]``), which are
    stripped, deduplicated and sorted. The label, the population and the BTYD inputs follow it.

    Parameters
    ----------
    value : str or sequence of str or None
        None means the default, ``"purchase"``.

    Returns
    -------
    str
        ``"purchase"``, ``"any"`` or the sorted types joined by commas.

    Raises
    ------
    ConfigError
        Nothing is named, a name is empty, or ``any`` is mixed with event types.

    Examples
    --------
    >>> to_retained_by(" view, review ,view")
    'review,view'
    >>> to_retained_by(None)
    'purchase'
    """
    from retention.exceptions import ConfigError

    hint = "pass purchase (the default), any, or event types such as review,view."
    if value is None:
        return RETAINED_BY_DEFAULT
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list | tuple | set | frozenset) and all(
        isinstance(v, str) for v in value
    ):
        parts = [p for v in value for p in v.split(",")]
    else:
        raise ConfigError(
            f"retained_by must be a string or a list of event types, got {value!r}; {hint}"
        )
    names = [p.strip() for p in parts]
    if not names or any(not n for n in names):
        raise ConfigError(f"retained_by {value!r} names an empty event type; {hint}")
    unique = sorted(set(names))
    if _ANY in unique:
        if len(unique) > 1:
            raise ConfigError(
                f"retained_by {value!r} mixes 'any' with event types; 'any' already counts every "
                f"event type: {hint}"
            )
        return _ANY
    return ",".join(unique)


def retained_types(retained_by: Any) -> tuple[str, ...] | None:
    """The event types that count as coming back, or None for ``any`` (every type).

    Examples
    --------
    >>> retained_types("review,view"), retained_types("any")
    (('review', 'view'), None)
    """
    canonical = to_retained_by(retained_by)
    return None if canonical == _ANY else tuple(canonical.split(","))


def qualifying(events: ir.Table, retained_by: Any) -> ir.BooleanValue:
    """The Ibis predicate "this event counts as coming back" on an events table."""
    types = retained_types(retained_by)
    if types is None:
        return ibis.literal(True)
    if len(types) == 1:
        return events.event_type == types[0]
    return events.event_type.isin(list(types))


def qualifying_mask(events: pd.DataFrame, retained_by: Any) -> pd.Series:
    """The same predicate on a pandas frame of events (True where the event qualifies)."""
    types = retained_types(retained_by)
    if types is None or "event_type" not in events.columns:
        return pd.Series(True, index=events.index)
    return events["event_type"].astype(str).isin(types)


def describe_retained_by(retained_by: Any) -> str:
    """``"a purchase"``, ``"an event of any type"``, ``"an event of type review or view"``."""
    types = retained_types(retained_by)
    if types is None:
        return "an event of any type"
    if types == ("purchase",):
        return "a purchase"
    return "an event of type " + " or ".join(repr(t) for t in types)


def as_backend(source: Any) -> Any:
    """The Ibis backend behind ``source``.

    Parameters
    ----------
    source : retention.data.Store or Ibis backend
        Anything with an ``ibis()`` method (a store) is asked for its backend; anything else is
        taken to be an Ibis backend already.

    Returns
    -------
    Ibis backend
    """
    if hasattr(source, "ibis") and callable(source.ibis):
        return source.ibis()
    if not hasattr(source, "table"):
        raise DataError(
            f"expected a retention Store or an Ibis backend, got {type(source).__name__}; "
            "pass Store(path) or ibis.duckdb.connect(path)."
        )
    return source


def has_table(backend: Any, name: str) -> bool:
    """Whether ``backend`` holds a table (or view) called ``name``.

    Asks for the table rather than listing tables: ``list_tables`` of Ibis 12 fails on DuckDB 2.
    """
    try:
        backend.table(name)
    except TableNotFound:
        return False
    return True


def events_table(backend: Any) -> ir.Table:
    """The ``events`` table with every contract column, typed as the contract says.

    Optional columns the table lacks are added as typed nulls; ``user_id`` is cast to string.

    Raises
    ------
    SchemaError
        No ``events`` table, a required column is missing, or ``ts`` is not a timestamp without
        time zone.
    """
    if not has_table(backend, "events"):
        raise SchemaError(
            "the backend has no table 'events'; ingest events first "
            "(`retention ingest FILE --db DB`) or create a table named 'events'."
        )
    table = backend.table("events")
    schema = table.schema()
    missing = [c for c in REQUIRED_COLUMNS if c not in schema]
    if missing:
        raise SchemaError(
            f"the events table lacks the required column(s) {', '.join(missing)} "
            f"(it has {', '.join(schema.names)}); map them at ingest with --map."
        )
    ts_type = schema["ts"]
    if ts_type.is_date():
        table = table.mutate(ts=table.ts.cast("timestamp"))
    elif not ts_type.is_timestamp():
        raise SchemaError(
            f"events.ts must be a TIMESTAMP, got {ts_type}; cast it when ingesting "
            '(--map ts="CAST(col AS TIMESTAMP)").'
        )
    elif getattr(ts_type, "timezone", None) is not None:
        raise SchemaError(
            f"events.ts has time zone {ts_type.timezone!r}; store naive UTC timestamps "
            "(TIMESTAMP without time zone)."
        )
    columns: dict[str, ir.Value] = {}
    for name, dtype in EVENT_COLUMNS.items():
        if name in schema:
            value = table[name]
            if name in {"user_id", "event_type", "item_id", "order_id", "event_id"}:
                value = value.cast("string") if not value.type().is_string() else value
            columns[name] = value
        else:
            columns[name] = ibis.null(dtype)
    return table.select(**columns)


@dataclass(frozen=True)
class DataSpan:
    """When the data starts and ends, and when the activity that counts as coming back does.

    Attributes
    ----------
    first_event, last_event : pd.Timestamp or None
        First and last event of any type (None when there are no events).
    first_qualifying : pd.Timestamp or None
        First event that counts as coming back (a purchase by default, see ``retained_by``);
        None when there is none.
    n_events : int
        Number of events.
    last_qualifying : pd.Timestamp or None
        Last event that counts as coming back.
    retained_by : str
        The activity that counts (:func:`to_retained_by`).
    types : tuple of (str, int)
        Event types and their counts, most frequent first; filled only when no event qualifies
        (for the message that says what the store holds).
    """

    first_event: pd.Timestamp | None
    last_event: pd.Timestamp | None
    first_qualifying: pd.Timestamp | None
    n_events: int
    last_qualifying: pd.Timestamp | None = None
    retained_by: str = RETAINED_BY_DEFAULT
    types: tuple[tuple[str, int], ...] = ()

    def describe(self) -> str:
        """``"2010-12-01 to 2011-12-09"``, for messages."""
        if self.first_event is None or self.last_event is None:
            return "no events"
        return f"{self.first_event:%Y-%m-%d} to {self.last_event:%Y-%m-%d}"

    def describe_types(self) -> str:
        """``"review (5,050), view (12)"``, for messages (empty when not filled)."""
        return ", ".join(f"{t} ({n:,})" for t, n in self.types)


def _ts_or_none(value: Any) -> pd.Timestamp | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).as_unit("ns")


def data_span(backend: Any, retained_by: Any = RETAINED_BY_DEFAULT) -> DataSpan:
    """First and last event, and first and last qualifying event, of the ``events`` table.

    One query; a second one lists the event types when no event qualifies (for the message).

    Parameters
    ----------
    backend : Ibis backend or retention.data.Store
    retained_by : str or sequence of str, default "purchase"
        The activity that counts as coming back (:func:`to_retained_by`).
    """
    canonical = to_retained_by(retained_by)
    t = events_table(as_backend(backend))
    counts = qualifying(t, canonical)
    row = (
        t.aggregate(
            first_event=t.ts.min(),
            last_event=t.ts.max(),
            first_qualifying=t.ts.min(where=counts),
            last_qualifying=t.ts.max(where=counts),
            n_events=t.ts.count(),
        )
        .to_pandas()
        .iloc[0]
    )
    first = _ts_or_none(row["first_qualifying"])
    types: tuple[tuple[str, int], ...] = ()
    if first is None and int(row["n_events"]) > 0:
        by_type = t.group_by("event_type").aggregate(n=t.ts.count()).to_pandas()
        by_type = by_type.sort_values(["n", "event_type"], ascending=[False, True])
        types = tuple(
            (str(e), int(n)) for e, n in zip(by_type["event_type"], by_type["n"], strict=True)
        )
    return DataSpan(
        first_event=_ts_or_none(row["first_event"]),
        last_event=_ts_or_none(row["last_event"]),
        first_qualifying=first,
        n_events=int(row["n_events"]),
        last_qualifying=_ts_or_none(row["last_qualifying"]),
        retained_by=canonical,
        types=types,
    )

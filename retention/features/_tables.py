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

__all__ = ["EVENT_COLUMNS", "DataSpan", "as_backend", "data_span", "events_table", "has_table"]

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
    """When the data starts and ends.

    Attributes
    ----------
    first_event, last_event : pd.Timestamp or None
        First and last event of any type (None when there are no events).
    first_purchase : pd.Timestamp or None
        First purchase (None when there is none).
    n_events : int
        Number of events.
    """

    first_event: pd.Timestamp | None
    last_event: pd.Timestamp | None
    first_purchase: pd.Timestamp | None
    n_events: int

    def describe(self) -> str:
        """``"2010-12-01 to 2011-12-09"``, for messages."""
        if self.first_event is None or self.last_event is None:
            return "no events"
        return f"{self.first_event:%Y-%m-%d} to {self.last_event:%Y-%m-%d}"


def _ts_or_none(value: Any) -> pd.Timestamp | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).as_unit("ns")


def data_span(backend: Any) -> DataSpan:
    """First and last event and first purchase of the ``events`` table (one query)."""
    t = events_table(backend)
    row = (
        t.aggregate(
            first_event=t.ts.min(),
            last_event=t.ts.max(),
            first_purchase=t.ts.min(where=t.event_type == "purchase"),
            n_events=t.ts.count(),
        )
        .to_pandas()
        .iloc[0]
    )
    return DataSpan(
        first_event=_ts_or_none(row["first_event"]),
        last_event=_ts_or_none(row["last_event"]),
        first_purchase=_ts_or_none(row["first_purchase"]),
        n_events=int(row["n_events"]),
    )

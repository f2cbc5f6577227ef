"""The population at a cutoff and its retention label.

What counts as coming back is the shop's choice, ``retained_by`` (:func:`to_retained_by`):
``"purchase"`` by default, ``"any"`` event, or a list of event types (``"review"``,
``"view,cart"``). With ``Q`` the qualifying events:

- population: every customer with an event of ``Q`` before the cutoff (``ts < cutoff``);
- label: 1 when the customer has at least one event of ``Q`` in ``[cutoff, cutoff + horizon)``,
  else 0.

The features of these customers still use every event type present.
"""

from __future__ import annotations

from typing import Any

import ibis
import pandas as pd
from ibis import _

from retention.features._cutoffs import (
    check_cutoff,
    check_label_window,
    to_cutoff,
    to_events_from,
    to_horizon,
)
from retention.features._tables import (
    RETAINED_BY_DEFAULT,
    as_backend,
    data_span,
    events_table,
    qualifying,
    to_retained_by,
)

__all__ = ["build_labels", "population"]


def _lit(stamp: pd.Timestamp) -> Any:
    return ibis.literal(stamp.to_pydatetime(warn=False), type="timestamp")


def _user_index(values: pd.Series) -> pd.Index:
    return pd.Index(values.astype(str), name="user_id", dtype="str").sort_values()


def population(backend: Any, cutoff: Any, *, retained_by: Any = RETAINED_BY_DEFAULT) -> pd.Index:
    """The customers with a qualifying event before ``cutoff``, sorted: the rows of every frame.

    Parameters
    ----------
    backend : Ibis backend or retention.data.Store
        Holds the ``events`` table.
    cutoff : str or pd.Timestamp
        Only events with ``ts < cutoff`` count.
    retained_by : str or sequence of str, default "purchase"
        The activity that counts as coming back (:func:`to_retained_by`).

    Returns
    -------
    pd.Index
        ``user_id`` strings, named ``user_id``, in the order of :func:`build_features`' rows.

    Raises
    ------
    DataError
        No events, the cutoff is after the last event, or no qualifying event lies before it.
    """
    backend = as_backend(backend)
    cutoff = to_cutoff(cutoff)
    retained_by = to_retained_by(retained_by)
    check_cutoff(data_span(backend, retained_by), cutoff)
    events = events_table(backend)
    users = (
        events.filter((_.ts < _lit(cutoff)) & qualifying(events, retained_by))
        .select("user_id")
        .distinct()
        .to_pandas()
    )
    return _user_index(users["user_id"])


def build_labels(
    backend: Any,
    cutoff: Any,
    horizon_days: int,
    *,
    retained_by: Any = RETAINED_BY_DEFAULT,
    events_from: Any = None,
) -> pd.Series:
    """1 for each customer of the population who comes back in ``[cutoff, cutoff + horizon)``.

    Parameters
    ----------
    backend : Ibis backend or retention.data.Store
        Holds the ``events`` table.
    cutoff : str or pd.Timestamp
        Start of the label window; the population has a qualifying event before it.
    horizon_days : int
        Length of the label window in days.
    retained_by : str or sequence of str, default "purchase"
        The activity that counts as coming back (:func:`to_retained_by`): the same for the
        population and the label.
    events_from : str or pd.Timestamp, optional
        The population counts only events with ``ts >= events_from`` (as the features'
        ``events_from``); default every event.

    Returns
    -------
    pd.Series
        int64 0/1 named ``retained``, indexed like :func:`population` (and the features).

    Raises
    ------
    ConfigError
        ``horizon_days`` is not a positive whole number, or ``retained_by`` is malformed.
    DataError
        The cutoff is unusable (see :func:`population`) or the label window runs past the data.

    Examples
    --------
    >>> import ibis, pandas as pd
    >>> con = ibis.duckdb.connect()
    >>> events = pd.DataFrame({
    ...     "user_id": ["a", "a", "b", "b"],
    ...     "event_type": ["purchase", "purchase", "purchase", "view"],
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-01-15", "2024-01-05", "2024-01-12"])})
    >>> _ = con.create_table("events", events)
    >>> build_labels(con, "2024-01-10", 6).to_dict()
    {'a': 1, 'b': 0}
    >>> build_labels(con, "2024-01-10", 6, retained_by="any").to_dict()
    {'a': 1, 'b': 1}
    """
    backend = as_backend(backend)
    cutoff = to_cutoff(cutoff)
    horizon = to_horizon(horizon_days)
    retained_by = to_retained_by(retained_by)
    check_label_window(data_span(backend, retained_by), cutoff, horizon)
    events = events_table(backend)
    end = cutoff + pd.Timedelta(days=horizon)
    start = _lit(cutoff)
    if events_from is not None:  # as if the store's history started there
        events = events.filter(_.ts >= _lit(to_events_from(events_from, cutoff)))
    counts = (
        events.filter(qualifying(events, retained_by) & (_.ts < _lit(end)))
        .group_by("user_id")
        .aggregate(past=_.ts.count(where=_.ts < start), future=_.ts.count(where=_.ts >= start))
        .filter(_.past > 0)
        .to_pandas()
    )
    counts.index = pd.Index(counts.pop("user_id").astype(str), name="user_id", dtype="str")
    counts = counts.sort_index()
    return (counts["future"] > 0).astype("int64").rename("retained")

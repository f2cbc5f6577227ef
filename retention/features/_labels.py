"""The population at a cutoff and its retention label.

- population: every customer with a purchase before the cutoff (``ts < cutoff``);
- label: 1 when the customer purchases at least once in ``[cutoff, cutoff + horizon)``, else 0.
"""

from __future__ import annotations

from typing import Any

import ibis
import pandas as pd
from ibis import _

from retention.features._cutoffs import check_cutoff, check_label_window, to_cutoff, to_horizon
from retention.features._tables import as_backend, data_span, events_table

__all__ = ["build_labels", "population"]


def _lit(stamp: pd.Timestamp) -> Any:
    return ibis.literal(stamp.to_pydatetime(warn=False), type="timestamp")


def _user_index(values: pd.Series) -> pd.Index:
    return pd.Index(values.astype(str), name="user_id", dtype="str").sort_values()


def population(backend: Any, cutoff: Any) -> pd.Index:
    """The customers with a purchase before ``cutoff``, sorted: the rows of every frame.

    Parameters
    ----------
    backend : Ibis backend or retention.data.Store
        Holds the ``events`` table.
    cutoff : str or pd.Timestamp
        Only events with ``ts < cutoff`` count.

    Returns
    -------
    pd.Index
        ``user_id`` strings, named ``user_id``, in the order of :func:`build_features`' rows.

    Raises
    ------
    DataError
        No events, the cutoff is after the last event, or no purchase lies before it.
    """
    backend = as_backend(backend)
    cutoff = to_cutoff(cutoff)
    check_cutoff(data_span(backend), cutoff)
    events = events_table(backend)
    users = (
        events.filter((_.ts < _lit(cutoff)) & (_.event_type == "purchase"))
        .select("user_id")
        .distinct()
        .to_pandas()
    )
    return _user_index(users["user_id"])


def build_labels(backend: Any, cutoff: Any, horizon_days: int) -> pd.Series:
    """1 for each customer of the population who purchases in ``[cutoff, cutoff + horizon)``.

    Parameters
    ----------
    backend : Ibis backend or retention.data.Store
        Holds the ``events`` table.
    cutoff : str or pd.Timestamp
        Start of the label window; the population purchased before it.
    horizon_days : int
        Length of the label window in days.

    Returns
    -------
    pd.Series
        int64 0/1 named ``retained``, indexed like :func:`population` (and the features).

    Raises
    ------
    ConfigError
        ``horizon_days`` is not a positive whole number.
    DataError
        The cutoff is unusable (see :func:`population`) or the label window runs past the data.

    Examples
    --------
    >>> import ibis, pandas as pd
    >>> con = ibis.duckdb.connect()
    >>> events = pd.DataFrame({
    ...     "user_id": ["a", "a", "b"], "event_type": ["purchase"] * 3,
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-01-15", "2024-01-05"])})
    >>> _ = con.create_table("events", events)
    >>> build_labels(con, "2024-01-10", 6).to_dict()
    {'a': 1, 'b': 0}
    """
    backend = as_backend(backend)
    cutoff = to_cutoff(cutoff)
    horizon = to_horizon(horizon_days)
    check_label_window(data_span(backend), cutoff, horizon)
    events = events_table(backend)
    end = cutoff + pd.Timedelta(days=horizon)
    start = _lit(cutoff)
    counts = (
        events.filter((_.event_type == "purchase") & (_.ts < _lit(end)))
        .group_by("user_id")
        .aggregate(past=_.ts.count(where=_.ts < start), future=_.ts.count(where=_.ts >= start))
        .filter(_.past > 0)
        .to_pandas()
    )
    counts.index = pd.Index(counts.pop("user_id").astype(str), name="user_id", dtype="str")
    counts = counts.sort_index()
    return (counts["future"] > 0).astype("int64").rename("retained")

"""Cohort retention: the share of each first-purchase cohort that is active in later periods.

A cohort is the set of customers whose first event of ``event_type`` falls in the same period
(month by default). For every cohort and every number of periods since that first period, the
table holds the share of the cohort with at least one such event in that period. Periods after
the end of the data are unknown, not zero: they are left missing, which gives the familiar
triangle.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from retention.exceptions import ConfigError, DataError, SchemaError

__all__ = ["cohort_retention"]

#: period codes accepted by :func:`cohort_retention`, and their pandas period frequency
_PERIODS: dict[str, str] = {"D": "D", "W": "W", "M": "M", "Q": "Q", "Y": "Y"}

PeriodCode = Literal["D", "W", "M", "Q", "Y"]


def _event_times(events: pd.DataFrame) -> pd.Series:
    ts = events["ts"]
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        return ts.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(ts):
        return ts
    try:
        return pd.to_datetime(ts, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise SchemaError(
            f"Column 'ts' must hold timestamps; got dtype {ts.dtype} that does not parse as dates "
            f"({exc}). Pass naive UTC timestamps (datetime64) or ISO 8601 strings."
        ) from None


def cohort_retention(
    events: pd.DataFrame,
    *,
    period: PeriodCode | str = "M",
    event_type: str | None = "purchase",
    counts: bool = False,
) -> pd.DataFrame:
    """Share of each first-purchase cohort that is active 0, 1, 2, ... periods later.

    Parameters
    ----------
    events : pd.DataFrame
        Events in the contract's columns; ``user_id`` and ``ts`` are required, and
        ``event_type`` unless ``event_type`` is None.
    period : {"D", "W", "M", "Q", "Y"}, default "M"
        Length of a period: day, week, month, quarter or year (calendar periods).
    event_type : str or None, default "purchase"
        The event that defines both the cohort (the first one) and activity. None counts
        every event.
    counts : bool, default False
        Return the number of active customers instead of the share.

    Returns
    -------
    pd.DataFrame
        Index ``cohort`` (a ``PeriodIndex``, the period of the first event), columns
        ``0 .. N`` (periods since the first; name ``periods_since_first``). Values are the
        share of the cohort active in that period (period 0 is always 1), or the count when
        ``counts`` is set. Cells past the last period present in ``events`` are NaN: they are
        not observed yet. ``result.attrs["cohort_size"]`` is a ``pd.Series`` with the number
        of customers in each cohort and ``result.attrs["last_period"]`` the last period of the
        data (which may be partial).

    Raises
    ------
    SchemaError
        A required column is missing or ``ts`` does not hold timestamps.
    ConfigError
        ``period`` is not one of the codes above.
    DataError
        No event of ``event_type`` is present.

    Examples
    --------
    >>> import pandas as pd
    >>> events = pd.DataFrame({
    ...     "user_id": ["a", "a", "b", "c"],
    ...     "ts": pd.to_datetime(["2024-01-03", "2024-02-10", "2024-01-20", "2024-02-01"]),
    ...     "event_type": "purchase",
    ... })
    >>> table = cohort_retention(events)
    >>> print(table.round(2).to_string())
    periods_since_first    0    1
    cohort
    2024-01              1.0  0.5
    2024-02              1.0  NaN
    >>> table.attrs["cohort_size"].tolist()
    [2, 1]
    """
    if not isinstance(events, pd.DataFrame):
        raise SchemaError(
            f"events must be a pandas DataFrame; got {type(events).__name__}. "
            "Pass the event table (for example Store.events_df())."
        )
    code = str(period).upper()
    if code not in _PERIODS:
        raise ConfigError(
            f"Unknown cohort period {period!r}. Use one of {', '.join(_PERIODS)} "
            "(day, week, month, quarter, year)."
        )
    required = ["user_id", "ts"] + (["event_type"] if event_type is not None else [])
    missing = [c for c in required if c not in events.columns]
    if missing:
        raise SchemaError(
            f"events lack the column(s) {', '.join(missing)} that cohort_retention needs; got "
            f"{', '.join(map(str, events.columns)) or 'no columns'}. Map them to the contract's "
            "names (user_id, ts, event_type)."
        )
    ts = _event_times(events)
    valid = ts.notna() & events["user_id"].notna()
    if not valid.any():
        raise DataError("events hold no row with both a user_id and a ts; pass non-empty events.")
    freq = _PERIODS[code]
    last_ordinal = int(ts[valid].dt.to_period(freq).array.asi8.max())

    keep = valid
    if event_type is not None:
        keep = keep & events["event_type"].isin([event_type])
    if not keep.any():
        found = sorted(map(str, events["event_type"].dropna().unique()))[:10]
        raise DataError(
            f"No {event_type!r} events to build cohorts from; event types present: "
            f"{', '.join(found) or 'none'}. Pass event_type= one of them (or None for any event)."
        )
    users = events.loc[keep, "user_id"].astype(str).to_numpy()
    ordinals = ts[keep].dt.to_period(freq).array.asi8

    active = pd.DataFrame({"user_id": users, "p": ordinals}).drop_duplicates()
    first = active.groupby("user_id", sort=False)["p"].transform("min")
    active["cohort"] = first.to_numpy()
    active["k"] = (active["p"] - active["cohort"]).to_numpy()

    table = active.groupby(["cohort", "k"]).size().unstack("k", fill_value=0)
    n_periods = int(last_ordinal - table.index.min()) + 1
    table = table.reindex(columns=range(n_periods), fill_value=0).astype(float)
    sizes = table[0].astype(np.int64)

    # cohort c is observed up to period last_ordinal, i.e. for k <= last_ordinal - c
    cohort_ord = table.index.to_numpy()[:, None]
    unobserved = cohort_ord + np.arange(n_periods)[None, :] > last_ordinal
    values = table.to_numpy()
    if not counts:
        values = values / sizes.to_numpy()[:, None]
    values = np.where(unobserved, np.nan, values)

    index = pd.PeriodIndex(
        pd.Index(table.index.to_numpy(), dtype=np.int64).map(
            lambda o: pd.Period(ordinal=o, freq=freq)
        ),
        name="cohort",
    )
    result = pd.DataFrame(
        values,
        index=index,
        columns=pd.RangeIndex(n_periods, name="periods_since_first"),
    )
    result.attrs["cohort_size"] = pd.Series(sizes.to_numpy(), index=index, name="cohort_size")
    result.attrs["last_period"] = pd.Period(ordinal=last_ordinal, freq=freq)
    return result

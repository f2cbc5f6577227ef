"""Cutoffs, horizons and the backtest design.

A cutoff splits time: features use events strictly before it (``ts < cutoff``), the label window
is ``[cutoff, cutoff + horizon)``. A backtest evaluates at a test cutoff and learns only from
earlier cutoffs whose label windows end at or before it, so no label a model learns from reaches
into the test period.
"""

from __future__ import annotations

import datetime as _dt
import numbers
from typing import Any

import numpy as np
import pandas as pd

from retention.exceptions import ConfigError, DataError
from retention.features._tables import RETAINED_BY_DEFAULT, DataSpan, describe_retained_by

__all__ = [
    "backtest_cutoffs",
    "check_activity",
    "check_cutoff",
    "check_label_window",
    "to_cutoff",
    "to_horizon",
]

_DAY = pd.Timedelta(days=1)


def to_cutoff(value: Any) -> pd.Timestamp:
    """A cutoff: a date, as a naive midnight ``pd.Timestamp``.

    The one cutoff rule of retention (every workflow and the CLI use it): a cutoff is a date.
    ``YYYY-MM-DD`` strings, dates and timestamps at midnight are accepted (an aware timestamp is
    converted to UTC first); a time of day is refused, since "before the cutoff" means before
    that day.

    Parameters
    ----------
    value : str, datetime, date or pd.Timestamp
        For example ``"2011-09-10"``.

    Raises
    ------
    ConfigError
        ``value`` is not a date, or has a time of day.

    Examples
    --------
    >>> to_cutoff("2011-09-10")
    Timestamp('2011-09-10 00:00:00')
    """
    hint = "pass it as YYYY-MM-DD, e.g. '2011-09-10'."
    if not isinstance(value, pd.Timestamp | _dt.datetime | _dt.date | np.datetime64 | str):
        raise ConfigError(f"cutoff {value!r} is not a date; {hint}")
    try:
        if isinstance(value, str):
            # ISO only: pd.Timestamp would read "10/09/2011" as October 9th
            stamp = pd.Timestamp(_dt.datetime.fromisoformat(value.strip()))
        else:
            stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cutoff {value!r} is not a date; {hint}") from exc
    if pd.isna(stamp):
        raise ConfigError(f"cutoff is missing (NaT); {hint}")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    if stamp != stamp.normalize():
        raise ConfigError(
            f"cutoff {value!r} has a time of day ({stamp:%H:%M:%S}); a cutoff is a date: {hint}"
        )
    return stamp.as_unit("ns")


def to_events_from(value: Any, cutoff: pd.Timestamp) -> pd.Timestamp:
    """The start bound of the events a frame at ``cutoff`` reads (``events_from``): a date
    before the cutoff, parsed as :func:`to_cutoff` parses one."""
    try:
        start = to_cutoff(value)
    except ConfigError as exc:
        raise ConfigError(f"events_from: {exc}") from exc
    if start >= cutoff:
        raise ConfigError(
            f"events_from {start:%Y-%m-%d} is not before cutoff {cutoff:%Y-%m-%d}; pass an "
            "earlier date, or None to read every event."
        )
    return start


def to_horizon(value: Any, name: str = "horizon_days") -> int:
    """A positive whole number of days (``90`` and ``90.0``; not ``90.5``, ``True`` or ``0``).

    The one horizon rule of retention: every workflow and the CLI use it.

    Raises
    ------
    ConfigError
        ``value`` is not a positive integer.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(
                f"{name} must be a whole number of days, got {value!r}; pass e.g. 90."
            )
    days = int(value)
    if days <= 0:
        raise ConfigError(f"{name} must be positive, got {days}; pass a number of days such as 90.")
    return days


def _days(n: int) -> str:
    """``"1 day"``, ``"90 days"``."""
    return f"{n} day" if n == 1 else f"{n} days"


def _no_activity_message(span: DataSpan) -> str:
    """What to do when no event of the qualifying types exists (names the CLI flags)."""
    held = span.describe_types() or "no event types"
    if span.retained_by == RETAINED_BY_DEFAULT:
        others = [t for t, _n in span.types if t != RETAINED_BY_DEFAULT]
        example = others[0] if others else "review"
        return (
            f"the events ({span.describe()}) hold no event of type 'purchase' (they hold "
            f"{held}). Name the activity that counts as coming back: retained_by="
            f"'{example}' (`--retained-by {example}`, or `--retained-by any`), or map your "
            "order events to 'purchase' at ingest: `retention ingest FILE --event-type "
            "SOURCE=purchase` (repeatable), or an [event_types] table in the --mapping file."
        )
    return (
        f"the events ({span.describe()}) hold no event that counts as coming back with "
        f"retained_by={span.retained_by!r} (they hold {held}). Pass event types the store "
        "holds (`--retained-by TYPE,...`) or `--retained-by any`."
    )


def check_activity(span: DataSpan) -> pd.Timestamp:
    """The last qualifying event (a purchase by default), or a clear error when there is none.

    Raises
    ------
    DataError
        There are no events, or none counts as coming back with ``span.retained_by``: the
        message says which event types the store holds and names ``--retained-by``.
    """
    if span.last_event is None:
        raise DataError(
            "the events table is empty; ingest events first (`retention ingest FILE --db DB`)."
        )
    if span.last_qualifying is None:
        raise DataError(_no_activity_message(span))
    return span.last_qualifying


def check_cutoff(span: DataSpan, cutoff: pd.Timestamp) -> None:
    """Fail clearly when no features can be built at ``cutoff``.

    Raises
    ------
    DataError
        There are no events, the cutoff is after the last event, or no qualifying event (a
        purchase by default: ``span.retained_by``) lies before it.
    """
    if span.last_event is None or span.first_event is None:
        raise DataError(
            "the events table is empty; ingest events first (`retention ingest FILE --db DB`)."
        )
    if cutoff > span.last_event:
        raise DataError(
            f"cutoff {cutoff:%Y-%m-%d} is after the last event ({span.last_event}); the data "
            f"spans {span.describe()}. Pick a cutoff on or before {span.last_event:%Y-%m-%d}."
        )
    if span.first_qualifying is None:
        raise DataError(_no_activity_message(span))
    if cutoff <= span.first_qualifying:
        what = describe_retained_by(span.retained_by)
        first = "purchase" if span.retained_by == RETAINED_BY_DEFAULT else "qualifying event"
        raise DataError(
            f"no customer has {what} before cutoff {cutoff:%Y-%m-%d}: the first {first} is "
            f"at {span.first_qualifying} (data spans {span.describe()}). Pick a later cutoff."
        )


def check_label_window(span: DataSpan, cutoff: pd.Timestamp, horizon_days: int) -> None:
    """Fail when the label window ``[cutoff, cutoff + horizon)`` runs past the data.

    The data counts as covering the whole day of its last event.

    Raises
    ------
    DataError
        The window ends after the day of the last event, so the labels would be incomplete.
    """
    check_cutoff(span, cutoff)
    assert span.last_event is not None  # checked above
    data_end = span.last_event.normalize() + _DAY
    end = cutoff + pd.Timedelta(days=horizon_days)
    if end > data_end:
        latest = data_end - pd.Timedelta(days=horizon_days)
        room = max((data_end - cutoff).days, 1)  # check_cutoff: the cutoff is in the data
        raise DataError(
            f"the label window [{cutoff:%Y-%m-%d}, {end:%Y-%m-%d}) runs past the data, which "
            f"ends on {span.last_event:%Y-%m-%d}: labels would be incomplete. Pick a cutoff on "
            f"or before {latest:%Y-%m-%d} or a horizon of at most {_days(room)}."
        )


def backtest_cutoffs(
    test_cutoff: Any,
    horizon_days: int,
    n_train: int = 3,
    step_days: int | None = None,
    *,
    span: DataSpan | None = None,
) -> tuple[list[pd.Timestamp], pd.Timestamp]:
    """The learning cutoffs of a backtest at ``test_cutoff``.

    ``valid = test - horizon`` and ``train_k = valid - k * step`` for ``k = 1..n_train``, so every
    label window used for learning, ``[c, c + horizon)``, ends at or before the test cutoff.

    Parameters
    ----------
    test_cutoff : str or pd.Timestamp
        Where the model is evaluated (or scores).
    horizon_days : int
        Length of the label window.
    n_train : int, default 3
        Number of training cutoffs stacked into the training table.
    step_days : int, optional
        Days between training cutoffs; default ``max(horizon // 3, 1)``.
    span : DataSpan, optional
        The data's span (:func:`retention.features.data_span`). When given, training cutoffs
        with no qualifying event (a purchase by default) before them are dropped, and an error
        names the span when none remain.

    Returns
    -------
    train : list of pd.Timestamp
        Training cutoffs, oldest first.
    valid : pd.Timestamp
        The validation cutoff (early stopping, calibration).

    Raises
    ------
    ConfigError
        A bad horizon, step or number of cutoffs.
    DataError
        With ``span``: the data has no purchase history before the validation cutoff or before
        any training cutoff.

    Examples
    --------
    >>> train, valid = backtest_cutoffs("2011-09-10", 90)
    >>> [f"{c:%Y-%m-%d}" for c in train], f"{valid:%Y-%m-%d}"
    (['2011-03-14', '2011-04-13', '2011-05-13'], '2011-06-12')
    """
    test = to_cutoff(test_cutoff)
    horizon = to_horizon(horizon_days)
    if isinstance(n_train, bool) or not isinstance(n_train, numbers.Integral) or n_train < 1:
        raise ConfigError(f"n_train must be a positive whole number, got {n_train!r}; pass e.g. 3.")
    step = max(horizon // 3, 1) if step_days is None else to_horizon(step_days, "step_days")
    valid = test - pd.Timedelta(days=horizon)
    train = [valid - pd.Timedelta(days=k * step) for k in range(int(n_train), 0, -1)]
    if span is not None:
        check_cutoff(span, test)  # name the cutoff asked for, not a training cutoff before it
        first = span.first_qualifying
        if first is None:
            raise DataError(_no_activity_message(span))
        what = describe_retained_by(span.retained_by)
        if valid <= first:
            raise DataError(
                f"the validation cutoff {valid:%Y-%m-%d} (test cutoff {test:%Y-%m-%d} minus "
                f"{_days(horizon)}) has no {what.split(' ', 1)[1]} before it: the data spans "
                f"{span.describe()}. Pick a later test cutoff or a shorter horizon."
            )
        train = [c for c in train if c > first]
        if not train:
            raise DataError(
                f"no training cutoff has history ({what} before it): the data spans "
                f"{span.describe()} and "
                f"the latest training cutoff would be {valid - pd.Timedelta(days=step):%Y-%m-%d}. "
                "Pick a later test cutoff, a shorter horizon or a smaller step_days."
            )
    return train, valid

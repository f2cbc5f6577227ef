"""Frames for models: features, label and raw history of one population at one cutoff.

:func:`make_frame` builds one :class:`~retention.features.CutoffFrame`; :func:`training_frames`
builds the frames of a backtest: training cutoffs, a validation cutoff (early stopping,
calibration) and the test cutoff, such that no label window used for learning ends after the
test cutoff.
"""

from __future__ import annotations

from typing import Any

import ibis
import pandas as pd
from ibis import _

from retention._progress import track
from retention.exceptions import DataError, LeakageError
from retention.features._aggregates import compute_features
from retention.features._cutoffs import (
    backtest_cutoffs,
    check_cutoff,
    to_cutoff,
    to_events_from,
    to_horizon,
)
from retention.features._frame import CutoffFrame
from retention.features._labels import build_labels
from retention.features._tables import (
    EVENT_COLUMNS,
    RETAINED_BY_DEFAULT,
    as_backend,
    data_span,
    events_table,
    has_table,
    qualifying,
    to_retained_by,
)

__all__ = ["make_frame", "training_frames"]


def _lit(stamp: pd.Timestamp) -> Any:
    return ibis.literal(stamp.to_pydatetime(warn=False), type="timestamp")


def _tidy_events(df: pd.DataFrame) -> pd.DataFrame:
    """The contract's columns in order, money and numbers as float64, ``ts`` as ns."""
    df = df.copy()
    for col in EVENT_COLUMNS:
        if col not in df:
            df[col] = None
    df = df[list(EVENT_COLUMNS)]
    for col in ("quantity", "amount", "rating"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["ts"] = pd.to_datetime(df["ts"]).astype("datetime64[ns]")
    df["user_id"] = df["user_id"].astype(str)
    return df.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)


def _history(
    source: Any,
    backend: Any,
    cutoff: pd.Timestamp,
    users: pd.Index,
    retained_by: str = RETAINED_BY_DEFAULT,
    start: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Events of ``users`` strictly before the cutoff (every type), sorted by user and time;
    from ``start`` on when given."""
    if hasattr(source, "events_df") and callable(source.events_df):
        df = source.events_df(before=cutoff, users=list(users))
    else:
        events = events_table(backend)
        before = events.filter(_.ts < _lit(cutoff))
        buyers = before.filter(qualifying(before, retained_by)).select("user_id").distinct()
        df = (
            before.semi_join(buyers, "user_id")
            .mutate(amount=_.amount.cast("float64"))
            .order_by(["user_id", "ts", "event_id"])
            .to_pandas()
        )
    df = _tidy_events(df)
    df = df[(df["ts"] < cutoff) & df["user_id"].isin(users)]
    if start is not None:
        df = df[df["ts"] >= start]
    return df.reset_index(drop=True)


def _items(backend: Any) -> pd.DataFrame | None:
    if not has_table(backend, "items"):
        return None
    items = backend.table("items")
    if "price" in items.schema():
        items = items.mutate(price=items.price.cast("float64"))
    return items.to_pandas()


def make_frame(
    source: Any,
    cutoff: Any,
    horizon_days: int,
    *,
    with_label: bool = True,
    countries: list[str] | None = None,
    retained_by: Any = RETAINED_BY_DEFAULT,
    events_from: Any = None,
) -> CutoffFrame:
    """The :class:`CutoffFrame` of one cutoff: features, label, history and items.

    Parameters
    ----------
    source : retention.data.Store or Ibis backend
        The event store.
    cutoff : str or pd.Timestamp
        Features and history use events strictly before it.
    horizon_days : int
        Length of the label window ``[cutoff, cutoff + horizon)``.
    with_label : bool, default True
        Compute the label; False when the future is not known yet (scoring).
    countries : list of str, optional
        Countries with a one-hot ``user_country_*`` column (see :func:`build_features`).
    retained_by : str or sequence of str, default "purchase"
        The activity that counts as coming back (:func:`retention.features.to_retained_by`):
        the population, the label and what BTYD models count follow it; the features and
        ``events`` keep every event type.
    events_from : str or pd.Timestamp, optional
        Read only events with ``ts >= events_from`` (a date before the cutoff), as if the
        store's history started there: the population, the features, the label's population
        and ``events`` follow it. ``retention monitor`` uses it to compare features on the same
        length of history. Default: every event (the frame is exactly what it is without it).

    Returns
    -------
    CutoffFrame
        ``features`` indexed by ``user_id``; ``label`` on the same index (or None); ``events``
        the contract's columns of these customers before the cutoff (``amount`` float64,
        ``ts`` ``datetime64[ns]``, sorted by ``user_id, ts``); ``items`` or None.

    Raises
    ------
    ConfigError
        A bad cutoff or horizon.
    DataError
        The cutoff is after the last event or before the first purchase, or (with the label)
        the label window runs past the data.

    Examples
    --------
    >>> import ibis, pandas as pd
    >>> con = ibis.duckdb.connect()
    >>> events = pd.DataFrame({
    ...     "user_id": ["a", "a", "b"], "event_type": ["purchase"] * 3,
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-01-15", "2024-01-05"])})
    >>> _ = con.create_table("events", events)
    >>> frame = make_frame(con, "2024-01-10", 6)
    >>> list(frame.users), frame.label.tolist(), len(frame.events)
    (['a', 'b'], [1, 0], 2)
    """
    backend = as_backend(source)
    cutoff = to_cutoff(cutoff)
    horizon = to_horizon(horizon_days)
    retained_by = to_retained_by(retained_by)
    start = None if events_from is None else to_events_from(events_from, cutoff)
    features, _chosen = compute_features(
        backend, cutoff, countries=countries, retained_by=retained_by, events_from=start
    )
    label = None
    if with_label:
        label = build_labels(backend, cutoff, horizon, retained_by=retained_by, events_from=start)
        if not label.index.equals(features.index):  # both are the population, sorted
            raise DataError(
                f"the labels at cutoff {cutoff:%Y-%m-%d} cover {len(label)} customers but the "
                f"features {len(features)}; the events table changed while building the frame."
            )
    return CutoffFrame(
        cutoff=cutoff,
        horizon_days=horizon,
        features=features,
        label=label,
        events=_history(source, backend, cutoff, features.index, retained_by, start),
        items=_items(backend),
        retained_by=retained_by,
    )


def training_frames(
    source: Any,
    test_cutoff: Any,
    horizon_days: int,
    n_train: int = 3,
    step_days: int | None = None,
    *,
    test_label: bool = True,
    retained_by: Any = RETAINED_BY_DEFAULT,
) -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    """The frames of a backtest at ``test_cutoff``: train, validation and test.

    Training cutoffs are ``valid - k * step`` and the validation cutoff ``test - horizon``
    (:func:`backtest_cutoffs`), so every label window a model learns from ends at or before the
    test cutoff; this is checked here too. Training cutoffs with no purchase before them are
    dropped. All frames get the same columns (the union; a column missing at an earlier cutoff,
    such as an event type that did not exist yet, is NaN there).

    Parameters
    ----------
    source : retention.data.Store or Ibis backend
        The event store.
    test_cutoff : str or pd.Timestamp
        Where the model is evaluated, or scores.
    horizon_days : int
        Length of every label window.
    n_train : int, default 3
        Number of training cutoffs.
    step_days : int, optional
        Days between training cutoffs (default ``max(horizon // 3, 1)``).
    test_label : bool, default True
        Label the test frame; False to score a cutoff whose future is not known yet.
    retained_by : str or sequence of str, default "purchase"
        The activity that counts as coming back, for every frame (see :func:`make_frame`).

    Returns
    -------
    train : list of CutoffFrame
        Oldest first.
    valid : CutoffFrame
    test : CutoffFrame

    Raises
    ------
    LeakageError
        A learning label window would end after the test cutoff (a bug, never expected).
    DataError
        No history before the learning cutoffs, or the test label window runs past the data.
    """
    backend = as_backend(source)
    test = to_cutoff(test_cutoff)
    horizon = to_horizon(horizon_days)
    retained_by = to_retained_by(retained_by)
    span = data_span(backend, retained_by)
    check_cutoff(span, test)
    train_cutoffs, valid_cutoff = backtest_cutoffs(test, horizon, n_train, step_days, span=span)
    window = pd.Timedelta(days=horizon)
    for cutoff in [*train_cutoffs, valid_cutoff]:
        if cutoff + window > test:
            raise LeakageError(
                f"the label window [{cutoff:%Y-%m-%d}, {cutoff + window:%Y-%m-%d}) of a learning "
                f"cutoff ends after the test cutoff {test:%Y-%m-%d}; learning cutoffs must be at "
                f"most test - horizon."
            )
    plan = [(c, True) for c in [*train_cutoffs, valid_cutoff]] + [(test, test_label)]
    frames = [
        make_frame(source, cutoff, horizon, with_label=labelled, retained_by=retained_by)
        for cutoff, labelled in track(plan, "building features", total=len(plan))
    ]
    columns = list(frames[-1].features.columns)
    for frame in frames[:-1]:
        columns += [c for c in frame.features.columns if c not in columns]
    for frame in frames:
        frame.features = frame.features.reindex(columns=columns)
    return frames[:-2], frames[-2], frames[-1]

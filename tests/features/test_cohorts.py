"""Cohort retention table, checked by hand on tiny event tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retention.exceptions import ConfigError, DataError, SchemaError
from retention.features import cohort_retention


def _events() -> pd.DataFrame:
    rows = [
        # a: first purchase in January, again in January (same period) and in March
        ("a", "2024-01-05", "purchase"),
        ("a", "2024-01-20", "purchase"),
        ("a", "2024-03-02", "purchase"),
        # b: January, a view in February (not a purchase), a purchase late February
        ("b", "2024-01-15", "purchase"),
        ("b", "2024-02-10", "view"),
        ("b", "2024-02-28 23:59:59", "purchase"),
        # c: February, then April
        ("c", "2024-02-01", "purchase"),
        ("c", "2024-04-30", "purchase"),
        # d: only ever viewed
        ("d", "2024-01-01", "view"),
    ]
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "ts": pd.to_datetime([r[1] for r in rows], format="ISO8601"),
            "event_type": [r[2] for r in rows],
        }
    )


def test_monthly_shares_match_a_hand_count() -> None:
    table = cohort_retention(_events())
    assert [str(p) for p in table.index] == ["2024-01", "2024-02"]
    assert list(table.columns) == [0, 1, 2, 3]
    # January cohort {a, b}: Feb -> b, Mar -> a, Apr -> nobody
    assert table.loc[pd.Period("2024-01", "M")].tolist() == [1.0, 0.5, 0.5, 0.0]
    # February cohort {c}: Mar -> nobody, Apr -> c, May is past the end of the data
    feb = table.loc[pd.Period("2024-02", "M")]
    assert feb.iloc[:3].tolist() == [1.0, 0.0, 1.0]
    assert np.isnan(feb.iloc[3])
    assert table.attrs["cohort_size"].tolist() == [2, 1]
    assert table.attrs["last_period"] == pd.Period("2024-04", "M")


def test_counts_and_any_event_type() -> None:
    counts = cohort_retention(_events(), counts=True)
    assert counts.iloc[0].tolist() == [2.0, 1.0, 1.0, 0.0]
    # with every event counted, d's view opens the January cohort and b's view counts in February
    table = cohort_retention(_events(), event_type=None)
    assert table.attrs["cohort_size"].tolist() == [3, 1]
    assert table.iloc[0].tolist() == pytest.approx([1.0, 1 / 3, 1 / 3, 0.0])


def test_weekly_periods_and_observed_triangle() -> None:
    events = pd.DataFrame(
        {
            "user_id": ["x", "x", "y"],
            # Monday 2024-01-01 starts a week; 2024-01-09 is in the next week
            "ts": pd.to_datetime(["2024-01-01", "2024-01-09", "2024-01-10"]),
            "event_type": "purchase",
        }
    )
    table = cohort_retention(events, period="W")
    assert table.shape == (2, 2)
    assert table.iloc[0].tolist() == [1.0, 1.0]
    assert table.iloc[1, 0] == 1.0 and np.isnan(table.iloc[1, 1])


def test_string_and_tz_aware_timestamps_give_the_same_table() -> None:
    events = _events()
    expected = cohort_retention(events)
    as_text = events.assign(ts=events["ts"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    pd.testing.assert_frame_equal(cohort_retention(as_text), expected)
    aware = events.assign(ts=events["ts"].dt.tz_localize("UTC"))
    pd.testing.assert_frame_equal(cohort_retention(aware), expected)


def test_mistakes_give_one_line_errors() -> None:
    events = _events()
    with pytest.raises(SchemaError, match="event_type"):
        cohort_retention(events.drop(columns="event_type"))
    with pytest.raises(ConfigError, match="period"):
        cohort_retention(events, period="fortnight")
    with pytest.raises(DataError, match=r"'order'.*purchase, view"):
        cohort_retention(events, event_type="order")
    with pytest.raises(SchemaError, match="timestamps"):
        cohort_retention(events.assign(ts="not a date"))

"""Point-in-time features against values computed by hand on a four-customer store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pit_synth import CUTOFF, hand_events, hand_items, hand_users, load_duckdb

from retention.exceptions import DataError, SchemaError
from retention.features import FAMILIES, build_features, feature_family

DAY = pd.Timedelta(days=1)


def days(since: str, until: pd.Timestamp = CUTOFF) -> float:
    return (until - pd.Timestamp(since)) / DAY


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return build_features(load_duckdb(hand_events(), hand_items(), hand_users()), CUTOFF)


def test_population_index_and_types(features):
    # c only viewed before the cutoff; d's purchase exactly at the cutoff does not count
    assert list(features.index) == ["a", "b", "d"]
    assert features.index.name == "user_id"
    assert all(isinstance(u, str) for u in features.index)
    assert (features.dtypes == "float64").all()
    assert all(feature_family(c) != "other" for c in features.columns)
    # every family of the issue is present
    families = {feature_family(c) for c in features.columns}
    expected = {
        "recency",
        "frequency",
        "monetary",
        "tenure",
        "windows",
        "gaps",
        "trend",
        "diversity",
        "returns",
        "reviews",
        "habits",
        "user attributes",
    }
    assert expected <= set(FAMILIES)
    assert families == expected


def test_recency_frequency_monetary_tenure(features):
    a, b, d = (features.loc[u] for u in "abd")
    assert a["recency_days"] == pytest.approx(days("2024-06-21 20:00"))
    assert a["recency_last_event_days"] == pytest.approx(days("2024-06-26 08:00"))
    assert b["recency_days"] == pytest.approx(days("2024-06-28 23:30"))
    # d's purchase at the cutoff itself is in the future: last order is 2023-05-03
    assert d["recency_days"] == pytest.approx(days("2023-05-03 14:00"))
    assert a["frequency_orders"] == 3  # o1 has two lines
    assert b["frequency_orders"] == 1  # two lines without order_id at one timestamp
    assert a["frequency_lines"] == 4 and b["frequency_lines"] == 2
    assert a["frequency_units"] == 5 and b["frequency_units"] == 3
    assert a["frequency_purchase_days"] == 3
    assert a["frequency_views"] == 1 and a["frequency_carts"] == 1 and d["frequency_views"] == 0
    assert a["monetary_sum"] == pytest.approx(75.75)
    assert a["monetary_mean"] == pytest.approx(75.75 / 3)
    assert a["monetary_max"] == pytest.approx(40.25)
    assert b["monetary_sum"] == pytest.approx(15.0) and b["monetary_max"] == pytest.approx(15.0)
    assert d["monetary_mean"] == pytest.approx(75.0)
    assert a["tenure_days"] == pytest.approx(days("2024-01-10 10:00"))
    assert b["tenure_first_event_days"] == pytest.approx(days("2024-05-01 12:00"))
    assert d["tenure_active_days"] == pytest.approx(
        days("2023-05-01 09:00", pd.Timestamp("2023-05-03 14:00"))
    )
    assert a["frequency_orders_per_30d"] == pytest.approx(3 / days("2024-01-10 10:00") * 30)


def test_windows(features):
    a, b, d = (features.loc[u] for u in "abd")
    # a's orders: 2024-01-10, 2024-03-16, 2024-06-21; cutoff 2024-07-01
    assert [a[f"w{n}d_purchases"] for n in (7, 30, 90, 180, 365)] == [0, 1, 1, 3, 3]
    assert a["w30d_spend"] == pytest.approx(40.25)
    assert a["w180d_spend"] == pytest.approx(75.75)
    assert a["w7d_views"] == 1 and a["w7d_carts"] == 1
    assert a["w7d_returns"] == 0 and a["w30d_returns"] == 1  # return on 2024-06-23 12:00
    assert a["w7d_reviews"] == 2  # 2024-06-24 10:00 and 2024-06-26
    assert b["w7d_purchases"] == 1 and b["w7d_spend"] == pytest.approx(15.0)
    assert b["w30d_views"] == 0 and b["w90d_views"] == 1  # view on 2024-05-01
    assert d["w365d_purchases"] == 0 and d["w365d_spend"] == 0.0


def test_gaps_and_trend(features):
    a, b, d = (features.loc[u] for u in "abd")
    # purchase days 2024-01-10, 2024-03-16, 2024-06-21: gaps of 66 and 97 days
    assert a["gap_mean_days"] == pytest.approx(81.5)
    assert a["gap_std_days"] == pytest.approx(31 / math.sqrt(2))
    assert a["gap_last_days"] == 97
    assert a["gap_last_vs_mean"] == pytest.approx(97 / 81.5)
    assert a["gap_current_days"] == 10
    assert a["gap_current_vs_mean"] == pytest.approx(10 / 81.5)
    # one purchase day: no gap; two: a mean but no standard deviation
    assert np.isnan(b["gap_mean_days"]) and np.isnan(b["gap_std_days"])
    assert d["gap_mean_days"] == 2 and np.isnan(d["gap_std_days"])
    # last 90 days: one order (40.25); the 90 before: two (25.50 + 10.00)
    assert a["trend_purchases_diff"] == -1
    assert a["trend_purchases_log_ratio"] == pytest.approx(math.log(2) - math.log(3))
    assert a["trend_spend_log_ratio"] == pytest.approx(math.log1p(40.25) - math.log1p(35.5))


def test_diversity_returns_reviews_habits(features):
    a, b, d = (features.loc[u] for u in "abd")
    assert a["diversity_items"] == 3 and a["diversity_items_per_order"] == 1
    assert a["diversity_categories"] == 2  # i1, i3 in A; i2 in B
    assert d["diversity_items_per_order"] == 0.5
    assert a["returns_count"] == 1 and a["returns_rate"] == pytest.approx(1 / 4)
    assert a["returns_spend"] == pytest.approx(40.25)
    assert a["returns_value_rate"] == pytest.approx(40.25 / 75.75)
    assert b["returns_count"] == 0 and b["returns_value_rate"] == 0
    assert a["reviews_count"] == 2 and a["reviews_rating_count"] == 2
    assert a["reviews_rating_mean"] == pytest.approx(4.5)
    assert np.isnan(b["reviews_rating_mean"])
    # a orders Wednesday 10:00, Saturday 15:30, Friday 20:00
    assert a["habit_weekend_share"] == pytest.approx(1 / 3)
    assert a["habit_morning_share"] == pytest.approx(1 / 3)
    assert a["habit_afternoon_share"] == pytest.approx(1 / 3)
    assert a["habit_evening_share"] == pytest.approx(1 / 3)
    assert a["habit_night_share"] == 0
    assert a["habit_hour_mean"] == pytest.approx(15.0)
    assert a["habit_hour_std"] == pytest.approx(5.0)
    assert b["habit_evening_share"] == 1 and np.isnan(b["habit_hour_std"])


def test_user_attributes(features):
    a, b = features.loc["a"], features.loc["b"]
    assert a["user_days_since_signup"] == pytest.approx(days("2023-12-01"))
    assert np.isnan(b["user_days_since_signup"])  # signed up after the cutoff
    # frequency over the population {a, b, d} only (c, in Germany, is not in it)
    assert a["user_country_freq"] == pytest.approx(2 / 3)
    assert b["user_country_freq"] == pytest.approx(1 / 3)
    assert not any(c.startswith("user_country_germany") for c in features.columns)


def test_country_one_hot_columns_are_fixed_by_the_caller():
    con = load_duckdb(hand_events(), hand_items(), hand_users())
    f = build_features(con, CUTOFF, countries=["France", "Germany"])
    assert f["user_country_france"].tolist() == [0.0, 1.0, 0.0]
    assert f["user_country_germany"].tolist() == [0.0, 0.0, 0.0]
    top = build_features(con, CUTOFF, n_countries=1)
    assert top["user_country_united_kingdom"].tolist() == [1.0, 0.0, 1.0]
    assert "user_country_france" not in top
    bare = build_features(con, CUTOFF, users_table=False)
    assert not any(c.startswith("user_") for c in bare.columns)


def test_event_types_that_do_not_exist_are_left_out():
    events = hand_events()
    events = events[events["event_type"] == "purchase"]
    f = build_features(load_duckdb(events), CUTOFF)
    for prefix in ("w7d_views", "w30d_carts", "returns_", "reviews_", "frequency_views", "user_"):
        assert not any(c.startswith(prefix) for c in f.columns), prefix
    assert "diversity_categories" not in f  # no items table
    assert f.loc["a", "w180d_purchases"] == 3


def test_types_are_decided_before_the_cutoff():
    # the only review is after the cutoff: no review column
    events = hand_events()
    events = events[(events["event_type"] != "review") | (events["user_id"] != "a")]
    late = events.iloc[[0]].assign(event_type="review", ts=CUTOFF, rating=5.0)
    f = build_features(load_duckdb(pd.concat([events, late])), CUTOFF)
    assert not any(c.startswith("reviews_") or c.endswith("_reviews") for c in f.columns)


def test_no_money_no_money_columns():
    events = hand_events().assign(amount=np.nan)
    f = build_features(load_duckdb(events), CUTOFF)
    money = [c for c in f.columns if "spend" in c or c.startswith("monetary_") or "value" in c]
    assert money == []
    assert f.loc["a", "frequency_orders"] == 3


def test_bad_cutoffs_and_stores():
    con = load_duckdb(hand_events())
    with pytest.raises(DataError, match=r"after the last event.*2024-07-31"):
        build_features(con, "2025-01-01")
    with pytest.raises(DataError, match="no customer has a purchase before cutoff 2023-01-01"):
        build_features(con, "2023-01-01")
    import ibis

    with pytest.raises(SchemaError, match="no table 'events'"):
        build_features(ibis.duckdb.connect(), CUTOFF)
    bare = ibis.duckdb.connect()
    bare.con.execute("CREATE TABLE events AS SELECT 'a' AS user_id, TIMESTAMP '2024-01-01' AS ts")
    with pytest.raises(SchemaError, match="event_type"):
        build_features(bare, CUTOFF)

"""``retained_by``: the activity that counts as coming back decides the label, the population and
the BTYD inputs; the features still use every event type (issue 11, item 4)."""

from __future__ import annotations

import warnings

import ibis
import numpy as np
import pandas as pd
import pytest

from retention.exceptions import ConfigError, DataError, RetentionWarning
from retention.features import (
    build_features,
    build_labels,
    data_span,
    make_frame,
    population,
    to_retained_by,
    training_frames,
)
from retention.models import BGNBDModel

CUTOFF = pd.Timestamp("2024-07-01")
HORIZON = 30  # the label window is [2024-07-01, 2024-07-31)


def _ev(user: str, ts: str, kind: str, amount: float | None = None) -> dict:
    return {"user_id": user, "ts": pd.Timestamp(ts), "event_type": kind, "amount": amount}


def hand_log() -> pd.DataFrame:
    """Six customers whose label differs by what counts as coming back."""
    rows = [
        # a buys, reviews, and reviews again in the window (but does not buy again)
        _ev("a", "2024-06-01 10:00", "purchase", 20.0),
        _ev("a", "2024-06-10 12:00", "review"),
        _ev("a", "2024-07-05 09:00", "review"),
        # b only reviewed before the cutoff, and buys in the window
        _ev("b", "2024-05-01 08:00", "review"),
        _ev("b", "2024-07-10 08:00", "purchase", 15.0),
        # c views before and in the window
        _ev("c", "2024-06-20 18:00", "view"),
        _ev("c", "2024-07-02 18:00", "view"),
        # d buys before and in the window
        _ev("d", "2024-05-15 11:00", "purchase", 30.0),
        _ev("d", "2024-07-20 11:00", "purchase", 10.0),
        # e views before; reviews exactly at the window's end (outside: half-open)
        _ev("e", "2024-06-30 23:00", "view"),
        _ev("e", "2024-07-31 00:00", "review"),
        # f returned something before the cutoff, nothing after
        _ev("f", "2024-06-05 10:00", "return", 20.0),
    ]
    return pd.DataFrame(rows)


EXPECTED = {
    "purchase": {"a": 0, "d": 1},
    "review": {"a": 1, "b": 0},
    "view": {"c": 1, "e": 0},
    "return": {"f": 0},
    "review,view": {"a": 1, "b": 0, "c": 1, "e": 0},
    "any": {"a": 1, "b": 1, "c": 1, "d": 1, "e": 0, "f": 0},
}


@pytest.fixture(scope="module")
def con():
    con = ibis.duckdb.connect()
    con.create_table("events", hand_log())
    return con


@pytest.mark.parametrize("retained_by", list(EXPECTED))
def test_labels_and_population_follow_retained_by_exactly(con, retained_by):
    y = build_labels(con, CUTOFF, HORIZON, retained_by=retained_by)
    assert y.to_dict() == EXPECTED[retained_by]
    assert list(population(con, CUTOFF, retained_by=retained_by)) == sorted(EXPECTED[retained_by])


def test_the_default_is_purchase_and_lists_are_one_spelling(con):
    assert build_labels(con, CUTOFF, HORIZON).to_dict() == EXPECTED["purchase"]
    for spelling in ("view,review", " review , view ", ["view", "review"], ("review", "view")):
        y = build_labels(con, CUTOFF, HORIZON, retained_by=spelling)
        assert y.to_dict() == EXPECTED["review,view"]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("", "empty event type"),
        ("review,,view", "empty event type"),
        ("any,review", "mixes 'any'"),
        (3, "string or a list"),
        ([], "empty event type"),
    ],
)
def test_malformed_retained_by_is_refused(value, match):
    with pytest.raises(ConfigError, match=match):
        to_retained_by(value)


def test_features_still_use_every_event_type(con):
    x = build_features(con, CUTOFF, retained_by="review")
    assert list(x.index) == ["a", "b"]
    # views and returns exist before the cutoff: their columns are there, from every event
    assert {"frequency_views", "w30d_views", "returns_count", "reviews_count"} <= set(x.columns)
    # purchases exist (a, d): purchase columns are kept, NaN/0 for a reviewer who never bought
    assert x.loc["a", "frequency_orders"] == 1 and x.loc["b", "frequency_orders"] == 0
    assert x.loc["a", "monetary_sum"] == 20.0 and np.isnan(x.loc["b", "recency_days"])
    # the qualifying activity gets its own columns: a's last review 21 days before, b's 61
    assert x.loc["a", "recency_activity_days"] == pytest.approx(20.5)
    assert x.loc["b", "recency_activity_days"] == pytest.approx(61 - 8 / 24)
    assert x.loc["a", "frequency_activity_events"] == 1 and x.loc["b", "w90d_activity"] == 1
    # the default keeps its columns exactly: no activity columns
    assert not any("activity" in c for c in build_features(con, CUTOFF).columns)


def test_the_frame_keeps_all_events_and_btyd_counts_the_qualifying_ones(con):
    frame = make_frame(con, CUTOFF, HORIZON, retained_by="any")
    assert frame.retained_by == "any" and frame.label.to_dict() == EXPECTED["any"]
    assert set(frame.events["event_type"]) == {"purchase", "review", "view", "return"}
    # only purchases keep their money in what BTYD sees: f's return is not spend
    q = frame.qualifying_events()
    assert len(q) == len(frame.events)
    assert q.loc[q["event_type"] == "return", "amount"].isna().all()
    review = make_frame(con, CUTOFF, HORIZON, retained_by="review")
    assert set(review.qualifying_events()["event_type"]) == {"review"}
    assert set(review.events["event_type"]) == {"purchase", "review"}  # a bought too
    with warnings.catch_warnings():  # two customers: thin and degenerate by design
        warnings.simplefilter("ignore", RetentionWarning)
        bg = BGNBDModel(unit_days=1.0).fit([review])
    assert list(bg.summary_.index) == ["a", "b"]  # the reviewers, not the buyers
    assert bg.summary_["T"].to_dict() == {"a": 20.0, "b": 60.0}  # from their first review


def review_only_log() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    users = np.repeat([f"r{i}" for i in range(40)], 3)
    days = rng.integers(0, 200, size=len(users))
    ts = pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D")
    return pd.DataFrame({"user_id": users, "ts": ts, "event_type": "review", "rating": 4.0})


def test_a_review_only_log_needs_the_flag_and_works_with_it():
    con = ibis.duckdb.connect()
    con.create_table("events", review_only_log())
    with pytest.raises(DataError, match="--retained-by review") as info:
        population(con, "2024-05-01")
    assert "review (120)" in str(info.value)  # what the store holds
    x = build_features(con, "2024-05-01", retained_by="review")
    # no purchase exists: no purchase column at all, only activity and review columns
    assert not [c for c in x.columns if c.startswith(("monetary_", "habit_", "gap_mean"))]
    assert "frequency_orders" not in x.columns and "reviews_rating_mean" in x.columns
    assert x["recency_activity_days"].notna().all()
    train, valid, test = training_frames(con, "2024-06-01", 30, retained_by="review")
    assert {f.retained_by for f in [*train, valid, test]} == {"review"}
    assert list(test.features.columns) == list(train[0].features.columns)


def test_a_typo_names_what_the_store_holds(con):
    span = data_span(con, "revew")
    assert span.first_qualifying is None
    with pytest.raises(DataError, match=r"retained_by='revew'.*purchase \(4\).*--retained-by"):
        population(con, CUTOFF, retained_by="revew")


def test_events_after_the_cutoff_change_no_feature_whatever_counts():
    """The leakage check of the default, for the activity columns too."""
    log = hand_log()
    later = pd.DataFrame(
        [
            _ev("a", "2024-07-01 00:00", "review"),
            _ev("b", "2024-07-02", "view"),
            _ev("c", "2024-07-03", "purchase", 5.0),
        ]
    )
    before, after = ibis.duckdb.connect(), ibis.duckdb.connect()
    before.create_table("events", log)
    after.create_table("events", pd.concat([log, later], ignore_index=True))
    for retained_by in ("review,view", "any"):
        x0 = build_features(before, CUTOFF, retained_by=retained_by)
        x1 = build_features(after, CUTOFF, retained_by=retained_by)
        pd.testing.assert_frame_equal(x0, x1)

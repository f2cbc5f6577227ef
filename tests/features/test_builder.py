"""make_frame and training_frames on an Ibis backend and on a retention Store."""

from __future__ import annotations

import pandas as pd
import pytest
from pit_synth import (
    CUTOFF,
    EVENT_COLUMNS,
    hand_events,
    hand_items,
    hand_users,
    load_duckdb,
    random_events,
)

import retention.features._builder as builder
from retention.data import Store
from retention.exceptions import DataError, LeakageError
from retention.features import CutoffFrame, make_frame, training_frames


@pytest.fixture(scope="module")
def con():
    return load_duckdb(hand_events(), hand_items(), hand_users())


def test_make_frame(con):
    frame = make_frame(con, CUTOFF, 30)
    assert isinstance(frame, CutoffFrame)
    assert frame.cutoff == CUTOFF and frame.horizon_days == 30
    assert list(frame.users) == ["a", "b", "d"]
    assert frame.label is not None and frame.label.to_dict() == {"a": 1, "b": 0, "d": 1}
    ev = frame.events
    assert list(ev.columns) == EVENT_COLUMNS
    assert set(ev["user_id"]) == {"a", "b", "d"}  # c is not in the population
    assert (ev["ts"] < CUTOFF).all() and len(ev) == 9 + 3 + 2
    assert ev["amount"].dtype == "float64" and ev["ts"].dtype == "datetime64[ns]"
    assert ev[["user_id", "ts"]].equals(ev.sort_values(["user_id", "ts"])[["user_id", "ts"]])
    assert ev.loc[ev["user_id"] == "a", "amount"].sum() == pytest.approx(75.75 + 40.25)
    assert frame.items is not None and frame.items["price"].dtype == "float64"


def test_make_frame_for_scoring_needs_no_future(con):
    # 90 days after the cutoff is past the data: fine without a label, refused with one
    frame = make_frame(con, CUTOFF, 90, with_label=False)
    assert frame.label is None and len(frame) == 3
    with pytest.raises(DataError, match="runs past the data"):
        make_frame(con, CUTOFF, 90)


def test_make_frame_on_a_store():
    events = hand_events()
    store = Store(":memory:")
    store.con.register("src", events)
    cols = ", ".join(EVENT_COLUMNS)
    store.con.execute(f"INSERT INTO events ({cols}) SELECT {cols} FROM src")
    frame = make_frame(store, CUTOFF, 30)
    direct = make_frame(load_duckdb(events), CUTOFF, 30)
    pd.testing.assert_frame_equal(frame.features, direct.features)
    pd.testing.assert_series_equal(frame.label, direct.label)
    pd.testing.assert_frame_equal(frame.events, direct.events, check_dtype=False)
    store.close()


@pytest.fixture(scope="module")
def long_store():
    # a year of random history before 2024-07-01 and 40 days after it
    events = pd.concat([random_events(seed, n_events=150) for seed in (3, 4)], ignore_index=True)
    return load_duckdb(events)


@pytest.mark.slow
def test_training_frames(long_store):
    test_cutoff = pd.Timestamp("2024-07-15")  # the data ends on 2024-08-05
    train, valid, test = training_frames(long_store, test_cutoff, 20, n_train=3, step_days=10)
    assert valid.cutoff == pd.Timestamp("2024-06-25")  # test - horizon
    assert [f.cutoff for f in train] == [
        pd.Timestamp("2024-05-26"),
        pd.Timestamp("2024-06-05"),
        pd.Timestamp("2024-06-15"),
    ]
    for frame in [*train, valid]:
        assert frame.label is not None
        assert frame.cutoff + pd.Timedelta(days=frame.horizon_days) <= test_cutoff
        assert list(frame.features.columns) == list(test.features.columns)
        assert (frame.events["ts"] < frame.cutoff).all()
    assert test.cutoff == test_cutoff and test.label is not None
    scoring = training_frames(long_store, test_cutoff, 20, n_train=1, test_label=False)[2]
    assert scoring.label is None


def test_training_frames_refuse_a_leaking_design(long_store, monkeypatch):
    def leaky(test, horizon, n_train, step_days, span=None):
        return [test - pd.Timedelta(days=5)], test - pd.Timedelta(days=horizon)

    monkeypatch.setattr(builder, "backtest_cutoffs", leaky)
    with pytest.raises(LeakageError, match="ends after the test cutoff"):
        training_frames(long_store, "2024-07-20", 20)


def test_training_frames_without_history(long_store):
    with pytest.raises(DataError, match=r"no purchase before it.*2023-"):
        training_frames(long_store, "2023-06-10", 30)

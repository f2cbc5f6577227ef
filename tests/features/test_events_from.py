"""``make_frame(events_from=)``: a frame on a given length of history is the frame of a store
whose history starts there, and the default (or a start at the store's first day) is the frame
as it always was. On the bundled Online Retail (real data)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from retention.data import Store
from retention.exceptions import ConfigError
from retention.features import build_features, build_labels, make_frame

CUTOFF = pd.Timestamp("2011-04-01")
HORIZON = 60
START = pd.Timestamp("2011-02-01")


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.features, b.features)
    assert (a.label is None) == (b.label is None)
    if a.label is not None:
        pd.testing.assert_series_equal(a.label, b.label)
    pd.testing.assert_frame_equal(a.events, b.events)


@pytest.fixture(scope="module")
def young_db(retail_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the store whose events start at START (everything before deleted)."""
    path = tmp_path_factory.mktemp("young") / "young.duckdb"
    shutil.copy(retail_db, path)
    with Store(path) as store:
        store.con.execute("DELETE FROM events WHERE ts < ?", [START.to_pydatetime()])
    return path


def test_events_from_is_the_store_starting_there(retail_store, young_db: Path) -> None:
    bounded = make_frame(retail_store, CUTOFF, HORIZON, events_from=START)
    with Store(young_db, read_only=True) as young:
        expected = make_frame(young, CUTOFF, HORIZON)
    _same(bounded, expected)
    # and it is a different frame from the full history's: fewer customers, shorter histories
    full = make_frame(retail_store, CUTOFF, HORIZON)
    assert len(bounded) < len(full)
    assert bounded.events["ts"].min() >= START
    shared = bounded.features.index
    assert (
        bounded.features["frequency_orders"] <= full.features.loc[shared, "frequency_orders"]
    ).all()
    assert (
        bounded.features["frequency_orders"] < full.features.loc[shared, "frequency_orders"]
    ).any()
    # the lower-level builders take the same bound
    pd.testing.assert_frame_equal(
        build_features(retail_store, CUTOFF, events_from=START), bounded.features
    )
    assert bounded.label is not None
    pd.testing.assert_series_equal(
        build_labels(retail_store, CUTOFF, HORIZON, events_from=START), bounded.label
    )


def test_the_default_frame_is_unchanged(retail_store) -> None:
    default = make_frame(retail_store, CUTOFF, HORIZON)
    first = retail_store.event_range(None)[0].normalize()
    # a start on the store's first day reads every event: exactly the same frame
    _same(make_frame(retail_store, CUTOFF, HORIZON, events_from=f"{first:%Y-%m-%d}"), default)


def test_events_from_is_checked(retail_store) -> None:
    with pytest.raises(ConfigError, match="events_from 2011-04-01 is not before cutoff"):
        make_frame(retail_store, CUTOFF, HORIZON, events_from=CUTOFF)
    with pytest.raises(ConfigError, match="events_from: cutoff 'soon' is not a date"):
        make_frame(retail_store, CUTOFF, HORIZON, events_from="soon")

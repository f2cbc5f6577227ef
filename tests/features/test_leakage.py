"""Property: adding, deleting or changing any event at or after the cutoff changes nothing a
model is handed at that cutoff: the features, and the raw events of the frame (``make_frame``
reads them from an Ibis backend or through ``Store.events_df``; both are checked).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pit_synth import (
    CUTOFF,
    EVENT_COLUMNS,
    hand_events,
    hand_items,
    hand_users,
    load_duckdb,
    random_events,
)

from retention.data import Store
from retention.features import CutoffFrame, build_features, make_frame

SEEDS = (1, 2)
USERS = ["a", "b", "c", "d", "u00", "u03", "new1", "new2"]
TYPES = ["purchase", "view", "cart", "return", "review", "wishlist"]
ITEMS = ["i1", "i3", "i5", "i9-new"]
ORDERS = [None, "o1", "o3", "o5", "o7", "o12", "new-order"]  # some orders began before the cutoff


@functools.cache
def _base(seed: int) -> pd.DataFrame:
    """The hand store, random events, and an anchor far after the cutoff (never deleted)."""
    events = pd.concat([hand_events(), random_events(seed, n_events=120)], ignore_index=True)
    anchor = (
        hand_events()
        .iloc[[0]]
        .assign(event_id="anchor", ts=CUTOFF + pd.Timedelta(days=200), user_id="z")
    )
    return pd.concat([events, anchor], ignore_index=True)


@functools.cache
def _users() -> pd.DataFrame:
    base = hand_users()
    extra = pd.DataFrame(
        {
            "user_id": [f"u{i:02d}" for i in range(12)],
            "signup_ts": pd.Timestamp("2023-01-01"),
            "country": ["France", "Spain", "Italy"] * 4,
        }
    )
    return pd.concat([base, extra], ignore_index=True)


@functools.cache
def _features(seed: int) -> pd.DataFrame:
    return build_features(load_duckdb(_base(seed), hand_items(), _users()), CUTOFF)


@contextmanager
def _source(kind: str, events: pd.DataFrame) -> Iterator[Any]:
    """The events, items and users as an Ibis DuckDB backend, or as an in-memory ``Store``."""
    if kind == "ibis":
        yield load_duckdb(events, hand_items(), _users())
        return
    with Store(":memory:") as store:
        for table, df in (("events", events), ("items", hand_items()), ("users", _users())):
            cols = EVENT_COLUMNS if table == "events" else list(df.columns)
            store.con.register("_src", df[cols].astype("object").where(df[cols].notna(), None))
            store.con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM _src")
            store.con.unregister("_src")
        yield store


def _frame(kind: str, events: pd.DataFrame) -> CutoffFrame:
    """What a scoring model is handed at the cutoff (no label: that one looks ahead by design)."""
    with _source(kind, events) as source:
        return make_frame(source, CUTOFF, 30, with_label=False)


@functools.cache
def _base_frame(seed: int, kind: str) -> CutoffFrame:
    return _frame(kind, _base(seed))


def _assert_same_frame(changed: CutoffFrame, base: CutoffFrame) -> None:
    pd.testing.assert_frame_equal(changed.features, base.features, check_exact=True)
    pd.testing.assert_frame_equal(changed.events, base.events, check_exact=True)
    assert changed.items is not None and base.items is not None
    pd.testing.assert_frame_equal(changed.items, base.items, check_exact=True)
    assert changed.label is None and changed.extra == base.extra == {}


future_ts = st.integers(0, 120 * 86400).map(lambda s: CUTOFF + pd.Timedelta(seconds=s))
# half of the added events land exactly on the cutoff, the boundary most likely to leak
at_or_after = st.one_of(st.just(CUTOFF), future_ts)

event = st.fixed_dictionaries(
    {
        "user_id": st.sampled_from(USERS),
        "ts": at_or_after,
        "event_type": st.sampled_from(TYPES),
        "item_id": st.sampled_from(ITEMS),
        "order_id": st.sampled_from(ORDERS),
        "quantity": st.sampled_from([1.0, 3.0, None]),
        "amount": st.sampled_from([0.01, 19.99, 1000.0, None]),
        "rating": st.sampled_from([1.0, 5.0, None]),
        "text": st.sampled_from([None, "late review"]),
    }
)


@st.composite
def perturbation(draw: st.DrawFn) -> tuple[int, pd.DataFrame]:
    seed = draw(st.sampled_from(SEEDS))
    events = _base(seed).copy()
    future = events.index[(events["ts"] >= CUTOFF) & (events["event_id"] != "anchor")].tolist()
    deleted = draw(st.sets(st.sampled_from(future))) if future else set()
    kept = [i for i in future if i not in deleted]
    changed = draw(st.lists(st.sampled_from(kept), unique=True, max_size=6)) if kept else []
    for i in changed:
        new = draw(event)
        for column in draw(st.sets(st.sampled_from(sorted(new)), min_size=1)):
            events.at[i, column] = new[column]
    events = events.drop(index=list(deleted))
    added = draw(st.lists(event, max_size=6))
    if added:
        extra = pd.DataFrame(added)
        extra.insert(0, "event_id", [f"added{i}" for i in range(len(added))])
        events = pd.concat([events, extra], ignore_index=True)
    return seed, events


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(perturbation())
def test_events_at_or_after_the_cutoff_change_no_feature(case):
    seed, events = case
    assert (events.loc[events["ts"] < CUTOFF].shape[0]) == (_base(seed)["ts"] < CUTOFF).sum()
    changed = build_features(load_duckdb(events, hand_items(), _users()), CUTOFF)
    pd.testing.assert_frame_equal(changed, _features(seed), check_exact=True)


@pytest.mark.slow
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(perturbation(), st.sampled_from(["ibis", "store"]))
def test_events_at_or_after_the_cutoff_change_nothing_make_frame_hands_to_models(case, kind):
    seed, events = case
    base = _base_frame(seed, kind)
    assert len(base.events) and (base.events["ts"] < CUTOFF).all()
    _assert_same_frame(_frame(kind, events), base)


def test_the_property_is_not_vacuous():
    # the same change one second before the cutoff does change the features
    events = _base(SEEDS[0]).copy()
    late = events.index[events["ts"] >= CUTOFF][0]
    events.at[late, "ts"] = CUTOFF - pd.Timedelta(seconds=1)
    events.at[late, "event_type"] = "purchase"
    events.at[late, "amount"] = 12.34
    changed = build_features(load_duckdb(events, hand_items(), _users()), CUTOFF)
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(changed, _features(SEEDS[0]), check_exact=True)


@pytest.mark.parametrize("kind", ["ibis", "store"])
def test_the_frame_property_is_not_vacuous(kind):
    base = _base_frame(SEEDS[0], kind)
    # a change to a past event's text shows in the frame's events (features aside)
    events = _base(SEEDS[0]).copy()
    past = base.events["event_id"].iloc[-1]
    events.loc[events["event_id"] == past, "text"] = "edited before the cutoff"
    changed = _frame(kind, events)
    with pytest.raises(AssertionError, match="text"):
        pd.testing.assert_frame_equal(changed.events, base.events, check_exact=True)
    # the same change one second before the cutoff adds an event to the frame
    events = _base(SEEDS[0]).copy()
    late = events.index[(events["ts"] >= CUTOFF) & events["user_id"].isin(base.users)][0]
    events.at[late, "ts"] = CUTOFF - pd.Timedelta(seconds=1)
    changed = _frame(kind, events)
    assert len(changed.events) == len(base.events) + 1
    with pytest.raises(AssertionError):
        _assert_same_frame(changed, base)

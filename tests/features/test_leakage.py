"""Property: adding, deleting or changing any event at or after the cutoff changes no feature."""

from __future__ import annotations

import functools

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pit_synth import CUTOFF, hand_events, hand_items, hand_users, load_duckdb, random_events

from retention.features import build_features

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

"""Events -> padded token arrays for the sequence transformer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retention.exceptions import ConfigError, LeakageError, SchemaError
from retention.features import EventSequences, event_sequences
from retention.features._sequences import (
    CLS_TOKEN,
    CONTEXT_COLUMNS,
    N_GAP_BUCKETS,
    UNKNOWN_TOKEN,
    gap_bucket,
    item_hash_bucket,
)

CUTOFF = pd.Timestamp("2011-06-01")


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b", "z"],
            "ts": pd.to_datetime(
                ["2011-01-01", "2011-03-01", "2011-05-01", "2011-05-20", "2011-02-01", "2011-01-01"]
            ),
            "event_type": ["purchase", "return", "purchase", "view", "purchase", "purchase"],
            "item_id": ["x", "y", None, "x", "w", "x"],
            "order_id": ["o1", "o2", "o3", None, "o4", "o9"],
            "amount": [10.0, 5.0, np.nan, 0.0, 30.0, 1.0],
        }
    )


def test_shapes_order_and_padding_layout() -> None:
    seq = event_sequences(_events(), ["b", "a", "c"], CUTOFF, max_events=2)
    assert isinstance(seq, EventSequences)
    assert list(seq.users) == ["b", "a", "c"]
    # CLS + at most 2 events
    for name in ("event_type", "item_bucket", "amount", "gap_cutoff", "gap_prev", "mask"):
        assert getattr(seq, name).shape == (3, 3), name
    assert seq.context.shape == (3, len(CONTEXT_COLUMNS))
    assert (seq.event_type[:, 0] == CLS_TOKEN).all()
    # b: purchase (Feb) then view (May; not in the vocabulary), sorted by time
    assert seq.event_type[0].tolist() == [CLS_TOKEN, 3, UNKNOWN_TOKEN]
    # a keeps its last two events: return (Mar) then purchase (May)
    assert seq.event_type[1].tolist() == [CLS_TOKEN, 4, 3]
    # c has no events: only CLS, the rest is padding
    assert seq.mask[2].tolist() == [True, False, False]
    assert seq.event_type[2, 1:].tolist() == [0, 0]
    # recency position: 1 is the most recent
    assert seq.position[1].tolist() == [0, 2, 1]
    assert seq.lengths.tolist() == [3, 3, 1]


def test_values_of_the_tokens() -> None:
    seq = event_sequences(_events(), ["a"], CUTOFF, max_events=5)
    assert seq.amount[0, 1:].tolist() == pytest.approx([np.log1p(10.0), np.log1p(5.0), 0.0])
    days_to_cutoff = (CUTOFF - pd.to_datetime(["2011-01-01", "2011-03-01", "2011-05-01"])).days
    assert seq.gap_cutoff[0, 1:].tolist() == gap_bucket(days_to_cutoff.to_numpy()).tolist()
    # the first event has no previous one; then gaps of 59 and 61 days
    assert seq.gap_prev[0, 1] == N_GAP_BUCKETS
    assert seq.gap_prev[0, 2:].tolist() == gap_bucket(np.array([59.0, 61.0])).tolist()
    # a missing item has bucket 0, the same item id always the same bucket
    assert seq.item_bucket[0, 3] == 0
    again = event_sequences(_events(), ["z", "a"], CUTOFF)
    assert again.item_bucket[1, 1] == seq.item_bucket[0, 1] == again.item_bucket[0, 1]


def test_context_counts_all_events_not_only_the_kept_ones() -> None:
    seq = event_sequences(_events(), ["a", "b"], CUTOFF, max_events=1)
    assert seq.mask.sum(axis=1).tolist() == [2, 2]
    ctx = pd.DataFrame(seq.context, columns=CONTEXT_COLUMNS, index=seq.users)
    assert ctx.loc["a", "log_n_events"] == pytest.approx(np.log1p(3))
    assert ctx.loc["a", "log_n_orders"] == pytest.approx(np.log1p(3))
    assert ctx.loc["a", "log_total_amount"] == pytest.approx(np.log1p(15.0))
    assert ctx.loc["a", "share_returns"] == pytest.approx(1 / 3)
    # b's view has no order id: one order plus the "no order" group
    assert ctx.loc["b", "log_n_orders"] == pytest.approx(np.log1p(2))
    assert ctx.loc["b", "log_days_since_last"] == pytest.approx(np.log1p(12.0))


def test_item_vocabulary_gives_rows_of_an_embedding_table() -> None:
    vocab = pd.Index(["w", "x"])
    seq = event_sequences(_events(), ["a", "b"], CUTOFF, item_vocabulary=vocab)
    # a: x (row 2), y (not in the vocabulary: 0), missing (0); b: w (row 1), x (row 2)
    assert seq.item_index[0, 1:4].tolist() == [2, 0, 0]
    assert seq.item_index[1, 1:3].tolist() == [1, 2]
    without = event_sequences(_events(), ["a", "b"], CUTOFF)
    assert (without.item_index == 0).all()


def test_padded_and_take_keep_the_real_tokens() -> None:
    seq = event_sequences(_events(), ["a", "b", "c"], CUTOFF)
    wide = seq.padded(seq.length + 5)
    assert wide.length == seq.length + 5
    assert (wide.event_type[:, : seq.length] == seq.event_type).all()
    assert not wide.mask[:, seq.length :].any()
    assert (wide.position[:, seq.length :] == 0).all()
    sub = wide.take(np.array([2]))
    assert sub.length == 1 and list(sub.users) == ["c"]
    with pytest.raises(ConfigError, match="pad"):
        seq.padded(1)


def _reference(events: pd.DataFrame, users: list[str], max_events: int) -> list[list[int]]:
    """Per-user loop: the event-type rows a slow, obvious implementation would give."""
    vocab = {"purchase": 3, "return": 4}
    rows = []
    for user in users:
        ev = events[events["user_id"] == user].sort_values("ts", kind="stable").tail(max_events)
        ids = [vocab.get(t, UNKNOWN_TOKEN) for t in ev["event_type"]]
        rows.append([CLS_TOKEN, *ids])
    return rows


def test_vectorised_tokens_match_a_per_user_loop() -> None:
    rng = np.random.default_rng(3)
    n = 400
    events = pd.DataFrame(
        {
            "user_id": rng.choice([f"u{i}" for i in range(30)], n),
            "ts": CUTOFF - pd.to_timedelta(rng.integers(1, 10_000, n), unit="h"),
            "event_type": rng.choice(["purchase", "return", "view"], n),
            "amount": rng.gamma(2.0, 10.0, n),
        }
    ).sample(frac=1.0, random_state=1)
    users = [f"u{i}" for i in range(32)]
    seq = event_sequences(events, users, CUTOFF, max_events=7)
    expected = _reference(events, users, 7)
    for i, row in enumerate(expected):
        got = seq.event_type[i][seq.mask[i]].tolist()
        assert got == row, users[i]


def test_events_at_the_cutoff_are_leakage() -> None:
    ev = _events()
    ev.loc[0, "ts"] = CUTOFF
    with pytest.raises(LeakageError, match="at or after cutoff 2011-06-01"):
        event_sequences(ev, ["a"], CUTOFF)
    # another customer's late event is not this population's problem
    event_sequences(ev, ["b"], CUTOFF)


def test_user_mistakes_give_one_line_errors() -> None:
    with pytest.raises(SchemaError, match="event_type"):
        event_sequences(_events().drop(columns="event_type"), ["a"], CUTOFF)
    with pytest.raises(ConfigError, match="max_events"):
        event_sequences(_events(), ["a"], CUTOFF, max_events=0)


def test_hash_buckets_are_in_range_and_stable() -> None:
    ids = pd.Series([f"item{i}" for i in range(200)] + [None])
    b = item_hash_bucket(ids, 16)
    assert b[-1] == 0
    assert b[:-1].min() >= 1 and b[:-1].max() <= 16
    assert len(np.unique(b[:-1])) > 8
    assert (item_hash_bucket(ids, 16) == b).all()


def _order_events() -> pd.DataFrame:
    """Two customers; a's first order has three lines (one a return), b's lines have no order id."""
    return pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "b"],
            "ts": pd.to_datetime(
                [
                    "2011-01-01 10:00",
                    "2011-01-01 10:00",
                    "2011-01-01 10:05",
                    "2011-03-01 00:00",
                    "2011-02-01 09:00",
                    "2011-02-01 18:00",
                    "2011-02-03 00:00",
                ]
            ),
            "event_type": ["purchase", "purchase", "return", "purchase"] + ["purchase"] * 3,
            "item_id": ["x", "y", "z", "x", "w", "v", "w"],
            "order_id": ["o1", "o1", "o1", "o2", None, None, None],
            "quantity": [2.0, -1.0, 3.0, 1.0, 1.0, 1.0, 4.0],
            "amount": [10.0, 30.0, 5.0, 7.0, 1.0, 2.0, 3.0],
        }
    )


def test_per_order_sums_the_lines_of_an_order_into_one_token() -> None:
    from retention.features import ORDER_NUMERIC_COLUMNS

    seq = event_sequences(_order_events(), ["a", "b"], CUTOFF, per="order", items_per_order=2)
    # a: o1, o2; b: the two lines of Feb 1 (no order id: one day) and the line of Feb 3
    assert seq.lengths.tolist() == [3, 3]
    assert seq.item_bucket.shape == (2, 3, 2) and seq.item_index.shape == (2, 3, 2)
    assert seq.numeric is not None and seq.numeric.shape == (2, 3, len(ORDER_NUMERIC_COLUMNS))
    assert seq.amount[0, 1:].tolist() == pytest.approx([np.log1p(45.0), np.log1p(7.0)])
    assert seq.amount[1, 1:].tolist() == pytest.approx([np.log1p(3.0), np.log1p(3.0)])
    numeric = pd.DataFrame(seq.numeric[0, 1], index=ORDER_NUMERIC_COLUMNS)[0]
    assert numeric["log_n_lines"] == pytest.approx(np.log1p(3))
    assert numeric["log_units"] == pytest.approx(np.log1p(6.0))  # |quantity| summed
    assert numeric["share_returns"] == pytest.approx(1 / 3)
    # two purchase lines and one return: the order is a purchase
    assert seq.event_type[0].tolist() == [CLS_TOKEN, 3, 3]
    # the order's items, largest line first: y (30), x (10); z (5) is beyond items_per_order
    buckets = item_hash_bucket(pd.Series(["y", "x", "z"]), 4096)
    assert seq.item_bucket[0, 1].tolist() == buckets[:2].tolist()
    assert seq.item_bucket[0, 2].tolist() == [buckets[1], 0]  # o2: x, then no item
    # time of an order is its first line's; gaps are between orders
    first = (CUTOFF - pd.Timestamp("2011-01-01 10:00")) / pd.Timedelta(days=1)
    assert seq.gap_cutoff[0, 1] == gap_bucket(np.array([first]))[0]
    assert seq.gap_prev[0, 1] == N_GAP_BUCKETS
    gap = (pd.Timestamp("2011-03-01") - pd.Timestamp("2011-01-01 10:00")) / pd.Timedelta(days=1)
    assert seq.gap_prev[0, 2] == gap_bucket(np.array([gap]))[0]
    assert seq.position[0].tolist() == [0, 2, 1]
    # the context still counts every line
    ctx = pd.DataFrame(seq.context, columns=CONTEXT_COLUMNS, index=seq.users)
    assert ctx.loc["a", "log_n_events"] == pytest.approx(np.log1p(4))


def test_per_order_matches_a_groupby_reference() -> None:
    rng = np.random.default_rng(5)
    n = 600
    events = pd.DataFrame(
        {
            "user_id": rng.choice([f"u{i}" for i in range(25)], n),
            "ts": CUTOFF - pd.to_timedelta(rng.integers(1, 400, n), unit="D"),
            "event_type": rng.choice(["purchase", "return"], n, p=[0.9, 0.1]),
            "amount": rng.gamma(2.0, 10.0, n).round(2),
            "item_id": rng.choice([f"i{i}" for i in range(40)], n),
        }
    )
    events["order_id"] = events["user_id"] + ":" + events["ts"].dt.strftime("%Y%m%d")
    events.loc[rng.random(n) < 0.2, "order_id"] = None  # these lines: one order per day
    users = [f"u{i}" for i in range(26)]
    seq = event_sequences(events, users, CUTOFF, max_events=6, per="order")
    for i, user in enumerate(users):
        ev = events[events["user_id"] == user].sort_values("ts", kind="stable")
        # an order id's lines, or a day's lines without one; orders in time order
        key = ev["order_id"].fillna("day " + ev["ts"].dt.strftime("%Y%m%d"))
        orders = ev.groupby(key, sort=False)["amount"].sum().tail(6)
        got = seq.amount[i][seq.mask[i]][1:]
        assert got.tolist() == pytest.approx(np.log1p(orders.to_numpy()).tolist(), rel=1e-6), user
        assert seq.position[i][seq.mask[i]][1:].tolist() == list(range(len(orders), 0, -1))


def test_per_order_padding_and_take_keep_the_item_axis() -> None:
    seq = event_sequences(_order_events(), ["a", "b", "c"], CUTOFF, per="order")
    wide = seq.padded(seq.length + 3)
    assert wide.item_bucket.shape == (3, seq.length + 3, 4)
    assert wide.numeric is not None and wide.numeric.shape[1] == seq.length + 3
    assert (wide.item_bucket[:, : seq.length] == seq.item_bucket).all()
    sub = wide.take(np.array([2]))
    assert sub.length == 1 and sub.item_bucket.shape == (1, 1, 4) and sub.numeric is not None
    assert "numeric" in seq.token_fields
    assert "numeric" not in event_sequences(_order_events(), ["a"], CUTOFF).token_fields


def test_per_order_without_order_or_quantity_columns() -> None:
    ev = _order_events().drop(columns=["order_id", "quantity"])
    seq = event_sequences(ev, ["a"], CUTOFF, per="order")
    # without order ids, a's lines of Jan 1 are one order
    assert seq.lengths.tolist() == [3]
    assert seq.numeric is not None
    assert seq.numeric[0, 1, 1] == pytest.approx(np.log1p(3.0))  # a line counts one unit


def test_per_order_user_mistakes() -> None:
    with pytest.raises(ConfigError, match="per must be one of"):
        event_sequences(_order_events(), ["a"], CUTOFF, per="invoice")
    with pytest.raises(ConfigError, match="items_per_order"):
        event_sequences(_order_events(), ["a"], CUTOFF, per="order", items_per_order=0)

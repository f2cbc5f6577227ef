"""The points ledger: the balance never goes below zero and is the running sum, points are
conserved, and replaying the same events (again, shuffled, duplicated) gives the same entries."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.strategies import LoyaltyProgram, build_ledger, ledger_entry_id

PROGRAM = dataclasses.replace(LoyaltyProgram.default(), expiry_days=30)
START = pd.Timestamp("2021-01-01")

event = st.tuples(
    st.sampled_from(["u1", "u2", "u3"]),
    st.integers(0, 200),  # day
    st.sampled_from(["purchase", "purchase", "redeem", "return", "view"]),
    st.floats(0, 300, allow_nan=False),  # amount
    st.one_of(st.none(), st.integers(1, 400)),  # quantity (points asked for)
)


def _events(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user_id", "day", "event_type", "amount", "quantity"])
    df["ts"] = START + pd.to_timedelta(df["day"], unit="D")
    df["event_id"] = [f"e{i}" for i in range(len(df))]
    df["quantity"] = df["quantity"].astype(float)
    return df.drop(columns=["day"])


def _check_invariants(ledger, events: pd.DataFrame) -> None:
    e = ledger.entries
    assert (e["balance"] >= 0).all()
    for uid, part in e.groupby("user_id", sort=False):
        assert part["ts"].is_monotonic_increasing
        assert np.array_equal(part["balance"].to_numpy(), np.cumsum(part["points"].to_numpy()))
        assert ledger.balances[uid] == part["balance"].iloc[-1]
    assert (e.loc[e["kind"] == "earn", "points"] > 0).all()
    assert (e.loc[e["kind"] != "earn", "points"] < 0).all()
    assert e["entry_id"].is_unique
    # conserved: earned = redeemed + expired + clawed back + held
    assert int(e["points"].sum()) == int(ledger.balances.sum())


@settings(max_examples=80, deadline=None)
@given(st.lists(event, min_size=0, max_size=40), st.integers(0, 10_000))
def test_balance_invariant_and_idempotent_replay(rows, seed) -> None:
    events = _events(rows)
    as_of = START + pd.Timedelta(days=250)
    ledger = build_ledger(events, PROGRAM, as_of=as_of)
    _check_invariants(ledger, events)
    shuffled = events.sample(frac=1.0, random_state=seed)
    doubled = pd.concat([shuffled, events])  # the same events twice
    again = build_ledger(doubled, PROGRAM, as_of=as_of)
    pd.testing.assert_frame_equal(again.entries, ledger.entries)
    # an earlier date gives a ledger whose entries before it are the same
    mid = START + pd.Timedelta(days=100)
    early = build_ledger(events, PROGRAM, as_of=mid)
    _check_invariants(early, events)
    later = ledger.entries[ledger.entries["ts"] < mid].reset_index(drop=True)
    before = early.entries[early.entries["ts"] < mid].reset_index(drop=True)
    pd.testing.assert_frame_equal(before, later)


def test_fifo_expiry_redemption_and_refusal() -> None:
    events = _events(
        [
            ("u", 0, "purchase", 100.0, None),  # +100
            ("u", 10, "purchase", 50.0, None),  # +50
            ("u", 20, "redeem", 0.0, 120),  # -120: 100 from the first lot, 20 from the second
            ("u", 45, "redeem", 0.0, 100),  # the second lot (30 left) expired on day 40
        ]
    )
    ledger = build_ledger(events, PROGRAM, as_of=START + pd.Timedelta(days=60))
    e = ledger.entries
    assert e["kind"].tolist() == ["earn", "earn", "redeem", "expire"]
    assert e["points"].tolist() == [100, 50, -120, -30]
    assert e["ts"].iloc[-1] == START + pd.Timedelta(days=40)
    assert ledger.balances["u"] == 0 and ledger.refused == 100
    assert e["entry_id"].iloc[0] == ledger_entry_id(PROGRAM.name, "earn", "e0")


def test_multiplier_holdout_and_returns() -> None:
    events = _events(
        [
            ("a", 0, "purchase", 10.0, None),
            ("a", 20, "purchase", 10.0, None),  # after the tier run on day 10: x2
            ("a", 25, "return", 10.0, None),  # takes back the 10 points its amount earned
            ("h", 5, "purchase", 99.0, None),  # held out: earns nothing
        ]
    )
    mult = pd.DataFrame(
        {"user_id": ["a"], "from_ts": [START + pd.Timedelta(days=10)], "multiplier": [2.0]}
    )
    ledger = build_ledger(
        events, PROGRAM, as_of=START + pd.Timedelta(days=28), multipliers=mult, exclude={"h"}
    )
    assert ledger.entries["points"].tolist() == [10, 20, -10]
    assert ledger.entries["kind"].tolist() == ["earn", "earn", "clawback"]
    assert "h" not in ledger.balances.index

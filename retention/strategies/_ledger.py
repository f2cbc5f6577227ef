"""The points ledger: earn, redeem, expire and clawback entries derived from the events.

:func:`build_ledger` replays purchases (earn ``floor(amount * per_currency_unit * multiplier)``
points), redemption events (``quantity`` points, or ``amount / point_value`` when no quantity)
and returns (take back ``floor(amount * per_currency_unit)``, as far as the balance goes) in time
order, customer by customer. Points are spent first-in first-out; a lot not spent within
``expiry_days`` expires at that moment. The balance never goes below zero: a redemption larger
than the balance is cut to it (and counted in ``refused``).

The ledger is a function of the events, the programme and the date: replaying the same events
(twice, or in another order, or with duplicates of one event id) gives the same entries with the
same ids, so writing it again adds nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from retention.strategies._loyalty import LoyaltyProgram

__all__ = ["LEDGER_COLUMNS", "Ledger", "build_ledger", "ledger_entry_id"]

#: columns of :attr:`Ledger.entries` (the ``loyalty_ledger`` table without created_at)
LEDGER_COLUMNS = ("entry_id", "program", "user_id", "ts", "kind", "points", "balance", "source_id")


def ledger_entry_id(program: str, kind: str, source_id: str) -> str:
    """The id of an entry: an md5 of the programme, the kind and the source (one entry per kind
    and source event, so a replay adds nothing)."""
    return hashlib.md5(f"{program}\x1f{kind}\x1f{source_id}".encode()).hexdigest()


@dataclass(frozen=True)
class Ledger:
    """Entries and per-customer balances at ``as_of``.

    Attributes
    ----------
    entries : pd.DataFrame
        :data:`LEDGER_COLUMNS`, customer by customer in time order: ``balance`` is the running
        sum of ``points``.
    balances : pd.Series
        Points per customer at ``as_of`` (index user_id; only customers with entries).
    refused : int
        Points asked for by redemptions beyond the balance (not granted).
    """

    entries: pd.DataFrame
    balances: pd.Series
    refused: int


def _expire(
    lots: deque[list[Any]],
    t: pd.Timestamp,
    expiry: pd.Timedelta | None,
    balance: int,
    rows: list[tuple[Any, ...]],
    program: str,
    user: str,
) -> int:
    """Expire the lots older than ``expiry`` at ``t`` (first in, first out); the new balance."""
    if expiry is None:
        return balance
    while lots and lots[0][0] + expiry <= t:
        lot_ts, remaining, source = lots.popleft()
        if remaining > 0:
            balance -= remaining
            rows.append(
                (
                    ledger_entry_id(program, "expire", source),
                    user,
                    lot_ts + expiry,
                    "expire",
                    -remaining,
                    balance,
                    source,
                )
            )
    return balance


def _take(lots: deque[list[Any]], points: int, balance: int) -> int:
    """Spend ``points`` from the oldest lots first; the new balance."""
    left = points
    while left > 0 and lots:
        take = min(left, lots[0][1])
        lots[0][1] -= take
        left -= take
        if lots[0][1] == 0:
            lots.popleft()
    return balance - points


def build_ledger(
    events: pd.DataFrame,
    program: LoyaltyProgram,
    *,
    as_of: pd.Timestamp,
    multipliers: pd.DataFrame | None = None,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> Ledger:
    """Replay events into a points ledger.

    Parameters
    ----------
    events : pd.DataFrame
        ``event_id, user_id, ts, event_type, amount`` and, for redemptions, ``quantity``; only
        events before ``as_of`` count.
    program : LoyaltyProgram
        Points per currency unit, expiry, the redemption event type, the tiers' multipliers.
    as_of : pd.Timestamp
        The ledger's date: lots older than ``expiry_days`` by then are expired.
    multipliers : pd.DataFrame, optional
        ``user_id, from_ts, multiplier``: a customer's points multiplier from ``from_ts`` on
        (their tier's at each run); 1 before their first.
    exclude : set of str
        Customers who earn nothing (the holdout).
    """
    cols = ["event_id", "user_id", "ts", "event_type", "amount"]
    ev = events.loc[:, [c for c in [*cols, "quantity"] if c in events.columns]].copy()
    if "quantity" not in ev.columns:
        ev["quantity"] = np.nan
    kinds = ["purchase", program.redeem_event, program.return_event]
    ev = ev[(ev["ts"] < as_of) & ev["event_type"].isin(kinds)]
    ev = ev[~ev["user_id"].astype(str).isin(exclude)]
    ev = ev.drop_duplicates("event_id").sort_values(["user_id", "ts", "event_id"], kind="mergesort")
    expiry = pd.Timedelta(days=program.expiry_days) if program.expiry_days is not None else None
    mult_by_user: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if multipliers is not None and len(multipliers):
        m = multipliers.sort_values(["user_id", "from_ts"], kind="mergesort")
        for uid, part in m.groupby("user_id", sort=False):
            mult_by_user[str(uid)] = (
                part["from_ts"].to_numpy(dtype="datetime64[ns]"),
                part["multiplier"].to_numpy(dtype=float),
            )
    rows: list[tuple[Any, ...]] = []
    balances: dict[str, int] = {}
    refused = 0
    name = program.name
    per_unit = float(program.per_currency_unit)
    point_value = float(program.point_value)
    for uid, part in ev.groupby("user_id", sort=False):
        user = str(uid)
        lots: deque[list[Any]] = deque()  # [ts, remaining, source_id]
        balance = 0
        mts, mval = mult_by_user.get(user, (None, None))

        for eid, ts, etype, amount, qty in zip(
            part["event_id"].astype(str),
            part["ts"],
            part["event_type"],
            part["amount"],
            part["quantity"],
            strict=True,
        ):
            balance = _expire(lots, ts, expiry, balance, rows, name, user)
            if etype == "purchase":
                if amount is None or not math.isfinite(float(amount)) or amount <= 0:
                    continue
                mult = 1.0
                if mts is not None and mval is not None:
                    k = int(np.searchsorted(mts, np.datetime64(ts, "ns"), side="right")) - 1
                    mult = float(mval[k]) if k >= 0 else 1.0
                points = math.floor(float(amount) * per_unit * mult + 1e-9)
                if points <= 0:
                    continue
                balance += points
                lots.append([ts, points, eid])
                rows.append(
                    (ledger_entry_id(name, "earn", eid), user, ts, "earn", points, balance, eid)
                )
            elif etype == program.return_event:
                # a return takes back the points its amount earned, as far as the balance goes
                if amount is None or not math.isfinite(float(amount)) or amount <= 0:
                    continue
                back = min(math.floor(float(amount) * per_unit + 1e-9), balance)
                if back <= 0:
                    continue
                balance = _take(lots, back, balance)
                rows.append(
                    (
                        ledger_entry_id(name, "clawback", eid),
                        user,
                        ts,
                        "clawback",
                        -back,
                        balance,
                        eid,
                    )
                )
            else:
                if qty is not None and math.isfinite(float(qty)) and qty > 0:
                    want = round(float(qty))
                elif amount is not None and math.isfinite(float(amount)) and point_value > 0:
                    want = round(float(amount) / point_value)
                else:
                    continue
                granted = min(want, balance)
                refused += want - granted
                if granted <= 0:
                    continue
                balance = _take(lots, granted, balance)
                rows.append(
                    (
                        ledger_entry_id(name, "redeem", eid),
                        user,
                        ts,
                        "redeem",
                        -granted,
                        balance,
                        eid,
                    )
                )
        balance = _expire(lots, as_of, expiry, balance, rows, name, user)
        balances[user] = balance
    entries = pd.DataFrame(
        rows, columns=["entry_id", "user_id", "ts", "kind", "points", "balance", "source_id"]
    )
    entries.insert(1, "program", name)
    for col in ("entry_id", "program", "user_id", "kind", "source_id"):
        entries[col] = entries[col].astype(object)
    entries["ts"] = pd.to_datetime(entries["ts"]).astype("datetime64[ns]")
    entries["points"] = entries["points"].astype("int64")
    entries["balance"] = entries["balance"].astype("int64")
    # rows are in replay order (chronological per customer), so balance is the running sum
    bal = pd.Series(balances, dtype="int64", name="points")
    bal.index.name = "user_id"
    return Ledger(entries, bal, int(refused))

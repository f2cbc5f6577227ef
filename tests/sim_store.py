"""Simulated purchases into a store, for the tests that build their own logs (monitoring)."""

from __future__ import annotations

import pandas as pd

from retention.data import Store


def insert_purchases(store: Store, events: pd.DataFrame) -> None:
    """Insert ``events`` (``event_id``, ``user_id``, ``ts``, ``amount``) as purchases, each its
    own order."""
    store.con.register("_ev", events)
    store.con.execute(
        "INSERT INTO events (event_id, user_id, ts, event_type, order_id, amount) "
        "SELECT event_id, user_id, ts, 'purchase', event_id, CAST(amount AS DECIMAL(18,2)) "
        "FROM _ev"
    )
    store.con.unregister("_ev")

"""Small synthetic event stores for the point-in-time feature tests.

``hand_example()`` is a store small enough to compute every feature by hand (the expected values
live in ``test_aggregates.py``); ``load_duckdb`` / ``load_spark`` put the same pandas tables into
an in-memory DuckDB or a local Spark session with the event contract's types.
"""

from __future__ import annotations

from typing import Any

import ibis
import numpy as np
import pandas as pd

CUTOFF = pd.Timestamp("2024-07-01")

EVENT_COLUMNS = [
    "event_id",
    "user_id",
    "ts",
    "event_type",
    "item_id",
    "order_id",
    "quantity",
    "amount",
    "rating",
    "text",
]


def _ev(user, ts, kind, item=None, order=None, qty=None, amount=None, rating=None, text=None):
    return {
        "user_id": user,
        "ts": pd.Timestamp(ts),
        "event_type": kind,
        "item_id": item,
        "order_id": order,
        "quantity": qty,
        "amount": amount,
        "rating": rating,
        "text": text,
    }


def hand_events() -> pd.DataFrame:
    """Four customers around the cutoff 2024-07-01 (a Monday)."""
    rows = [
        # a: three orders (Wed 10:00, Sat 15:30, Fri 20:00), a view, a cart, a return, 2 reviews
        _ev("a", "2024-01-10 10:00", "purchase", "i1", "o1", 2.0, 20.00),
        _ev("a", "2024-01-10 10:00", "purchase", "i2", "o1", 1.0, 5.50),
        _ev("a", "2024-03-16 15:30", "purchase", "i1", "o2", 1.0, 10.00),
        _ev("a", "2024-06-21 20:00", "purchase", "i3", "o3", 1.0, 40.25),
        _ev("a", "2024-06-23 12:00", "return", "i3", "o3", 1.0, 40.25),
        _ev("a", "2024-06-24 10:00", "review", "i1", rating=4.0, text="good"),
        _ev("a", "2024-06-25 09:00", "view", "i4"),
        _ev("a", "2024-06-25 09:05", "cart", "i4"),
        _ev("a", "2024-06-26 08:00", "review", "i3", rating=5.0, text="great"),
        _ev("a", "2024-07-05 11:00", "purchase", "i4", "o4", 1.0, 9.99),  # label window
        # b: one order of two lines without order_id (Fri 23:30), one old view
        _ev("b", "2024-05-01 12:00", "view", "i5"),
        _ev("b", "2024-06-28 23:30", "purchase", "i5", None, 1.0, 12.00),
        _ev("b", "2024-06-28 23:30", "purchase", "i5", None, 2.0, 3.00),
        _ev("b", "2024-07-31 00:00", "purchase", "i5", "o9", 1.0, 1.00),  # just after 30 days
        # c: only a view before the cutoff: not in the population
        _ev("c", "2024-06-30 23:59:59", "view", "i1"),
        _ev("c", "2024-07-02 10:00", "purchase", "i1", "o7", 1.0, 10.00),
        # d: two orders more than a year ago, and a purchase exactly at the cutoff
        _ev("d", "2023-05-01 09:00", "purchase", "i6", "o5", 1.0, 100.00),
        _ev("d", "2023-05-03 14:00", "purchase", "i6", "o6", 1.0, 50.00),
        _ev("d", "2024-07-01 00:00", "purchase", "i6", "o8", 1.0, 7.00),
    ]
    df = pd.DataFrame(rows)
    df.insert(0, "event_id", [f"e{i:03d}" for i in range(len(df))])
    return df[EVENT_COLUMNS]


def hand_items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4", "i5", "i6"],
            "title": ["t1", "t2", "t3", "t4", "t5", "t6"],
            "description": ["d"] * 6,
            "category": ["A", "B", "A", "C", "C", "D"],
            "price": [10.0, 5.5, 40.25, 9.99, 6.0, 50.0],
        }
    )


def hand_users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "signup_ts": pd.to_datetime(["2023-12-01", "2024-08-01", "2024-06-01", "2023-01-01"]),
            "country": ["United Kingdom", "France", "Germany", "United Kingdom"],
        }
    )


def _events_sql(view: str) -> str:
    return (
        f"SELECT CAST(event_id AS VARCHAR) AS event_id, CAST(user_id AS VARCHAR) AS user_id, "
        f"CAST(ts AS TIMESTAMP) AS ts, CAST(event_type AS VARCHAR) AS event_type, "
        f"CAST(item_id AS VARCHAR) AS item_id, CAST(order_id AS VARCHAR) AS order_id, "
        f"CAST(quantity AS DOUBLE) AS quantity, CAST(amount AS DECIMAL(18,2)) AS amount, "
        f"CAST(rating AS DOUBLE) AS rating, CAST(text AS VARCHAR) AS text FROM {view}"
    )


def _complete(events: pd.DataFrame) -> pd.DataFrame:
    events = events.copy()
    for col in EVENT_COLUMNS:
        if col not in events:
            events[col] = None
    for col in ("quantity", "amount", "rating"):
        events[col] = pd.to_numeric(events[col]).astype("float64")
    for col in ("event_id", "user_id", "event_type", "item_id", "order_id", "text"):
        values = events[col].astype("object")
        events[col] = values.where(values.notna(), None)  # NaN would become the string "NaN"
    events["ts"] = pd.to_datetime(events["ts"]).astype("datetime64[ns]")
    return events[EVENT_COLUMNS]


def load_duckdb(
    events: pd.DataFrame, items: pd.DataFrame | None = None, users: pd.DataFrame | None = None
) -> Any:
    """An in-memory Ibis DuckDB backend with ``events`` (contract types), ``items``, ``users``."""
    con = ibis.duckdb.connect()
    raw = con.con
    raw.register("events_src", _complete(events))
    raw.execute("CREATE TABLE events AS " + _events_sql("events_src"))
    raw.unregister("events_src")
    if items is not None:
        raw.register("items_src", items)
        raw.execute(
            "CREATE TABLE items AS SELECT CAST(item_id AS VARCHAR) AS item_id, title, "
            "description, category, CAST(price AS DECIMAL(18,2)) AS price FROM items_src"
        )
        raw.unregister("items_src")
    if users is not None:
        raw.register("users_src", users)
        raw.execute(
            "CREATE TABLE users AS SELECT * REPLACE (CAST(signup_ts AS TIMESTAMP) AS signup_ts) "
            "FROM users_src"
        )
        raw.unregister("users_src")
    return con


def load_spark(
    session: Any,
    events: pd.DataFrame,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
) -> Any:
    """The same tables as temporary views of a Spark session, behind an Ibis backend."""
    from pyspark.sql import types as st

    text, number = st.StringType(), st.DoubleType()
    schema = st.StructType(
        [
            st.StructField("event_id", text),
            st.StructField("user_id", text),
            st.StructField("ts", st.TimestampType()),
            st.StructField("event_type", text),
            st.StructField("item_id", text),
            st.StructField("order_id", text),
            st.StructField("quantity", number),
            st.StructField("amount", number),
            st.StructField("rating", number),
            st.StructField("text", text),
        ]
    )
    rows = _complete(events).astype("object")
    rows = rows.where(rows.notna(), None)
    records = [
        (*r[:2], pd.Timestamp(r[2]).to_pydatetime(), *r[3:])
        for r in rows.itertuples(index=False, name=None)
    ]
    session.createDataFrame(records, schema).createOrReplaceTempView("events_src")
    session.sql(_events_sql("events_src").replace("VARCHAR", "STRING")).createOrReplaceTempView(
        "events"
    )
    if items is not None:
        session.createDataFrame(items).selectExpr(
            "CAST(item_id AS STRING) AS item_id",
            "title",
            "description",
            "category",
            "CAST(price AS DECIMAL(18,2)) AS price",
        ).createOrReplaceTempView("items")
    if users is not None:
        session.createDataFrame(
            users.astype({"signup_ts": "datetime64[us]"})
        ).createOrReplaceTempView("users")
    return ibis.pyspark.connect(session)


def random_events(seed: int, n_users: int = 12, n_events: int = 160) -> pd.DataFrame:
    """Random events of every type from 400 days before to 40 days after the cutoff."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["purchase", "purchase", "purchase", "view", "cart", "return", "review"])
    kind = rng.choice(kinds, n_events)
    seconds = rng.integers(-400 * 86400, 40 * 86400, n_events)
    ts = CUTOFF + pd.to_timedelta(seconds, unit="s")
    users = rng.integers(0, n_users, n_events)
    orders = rng.integers(0, 40, n_events)
    has_order = rng.random(n_events) < 0.8
    money = np.isin(kind, ["purchase", "return"])
    return pd.DataFrame(
        {
            "event_id": [f"r{seed}-{i}" for i in range(n_events)],
            "user_id": [f"u{u:02d}" for u in users],
            "ts": ts,
            "event_type": kind,
            "item_id": [f"i{k}" for k in rng.integers(0, 6, n_events)],
            "order_id": [f"o{o}" if h else None for o, h in zip(orders, has_order, strict=True)],
            "quantity": rng.integers(1, 5, n_events).astype(float),
            "amount": np.where(money, rng.integers(1, 99999, n_events) / 100, np.nan),
            "rating": np.where(kind == "review", rng.integers(1, 6, n_events), np.nan),
            "text": None,
        }
    )

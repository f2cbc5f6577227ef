"""Histories as short text, one clause per order (the text the fine-tuned language model reads)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retention.exceptions import ConfigError, DataError
from retention.features import history_text

CUT = pd.Timestamp("2011-03-11")


def _events() -> pd.DataFrame:
    rows = [
        # user, ts, type, order, item, amount, rating, text
        ("a", "2011-01-01 10:00", "purchase", "o1", "x", 10.0, np.nan, None),
        ("a", "2011-01-01 10:00", "purchase", "o1", "y", 5.4, np.nan, None),
        ("a", "2011-03-01 09:00", "purchase", "o2", "y", 20.4, np.nan, None),
        ("a", "2011-03-02 09:00", "return", "c2", "y", 20.4, np.nan, None),
        ("a", "2011-03-20 09:00", "purchase", "o3", "z", 99.0, np.nan, None),  # after the cutoff
        ("b", "2011-02-01 12:00", "purchase", None, "z", 7.0, np.nan, None),
        ("b", "2011-02-05 12:00", "review", None, "z", np.nan, 2.0, "Broke  in a week"),
        ("b", "2011-02-06 12:00", "view", None, "x", np.nan, np.nan, None),
    ]
    ev = pd.DataFrame(
        rows,
        columns=["user_id", "ts", "event_type", "order_id", "item_id", "amount", "rating", "text"],
    )
    ev["ts"] = pd.to_datetime(ev["ts"])
    return ev


ITEMS = pd.DataFrame({"item_id": ["x", "y"], "title": ["Red  OVEN Glove", "Cake Stand"]})


def test_summary_then_orders_newest_first_before_the_cutoff() -> None:
    text = history_text(_events(), ITEMS, CUT)
    a = text["a"]
    assert a.startswith(
        "2 orders in 68 days, last 9 days ago, every 59 days, spent 36, 1 return for 20. "
    )
    # one clause per order, newest first, titles lower-cased from the items table
    body = a.split(". ", 1)[1].split("; ")
    assert body == [
        "8 days ago returned 1 item for 20: cake stand",
        "9 days ago bought 1 item for 20: cake stand",
        "68 days ago bought 2 items for 15: red oven glove, cake stand",
    ]
    assert "z" not in a  # the purchase after the cutoff is not written
    # without order ids, events of a day form a clause; reviews and views are counted
    b = text["b"]
    assert b.startswith("1 order, 37 days ago, spent 7, 1 views, 1 reviews. ")
    assert "33 days ago reviewed z 2/5: Broke in a week" in b
    assert "32 days ago viewed 1 item: red oven glove" in b


def test_cut_at_whole_orders_keeping_the_summary() -> None:
    full = history_text(_events(), ITEMS, CUT, max_chars=1000)["a"]
    short = history_text(_events(), ITEMS, CUT, max_chars=130)["a"]
    assert len(short) <= 130 and full.startswith(short)
    assert short.endswith("8 days ago returned 1 item for 20: cake stand")
    tiny = history_text(_events(), ITEMS, CUT, max_chars=30)["a"]
    assert tiny == full[:30]  # the summary alone, cut to the limit
    no_titles = history_text(_events(), ITEMS, CUT, titles_per_order=0)["a"]
    assert "cake" not in no_titles and "9 days ago bought 1 item for 20;" in no_titles


def test_follows_the_requested_users() -> None:
    text = history_text(_events(), None, CUT, users=["b", "zz", "a"])
    assert text.index.tolist() == ["b", "zz", "a"] and text["zz"] == "no history"
    assert "bought 2 items for 15: x, y" in text["a"]  # item ids without an items table


def test_errors() -> None:
    with pytest.raises(ConfigError, match="max_chars must be at least 20"):
        history_text(_events(), None, CUT, max_chars=5)
    with pytest.raises(ConfigError, match="titles_per_order"):
        history_text(_events(), None, CUT, titles_per_order=-1)
    with pytest.raises(DataError, match=r"lack the column.*event_type"):
        history_text(_events().drop(columns="event_type"), None, CUT)

"""Customer histories as short text, one group of events (an order) per clause, newest first.

Written for a language model with a short token budget: what a reader would have to count comes
first (orders, days since the last and the first, the usual gap, the spend, the returns), then
the orders from the most recent back, each as ``"23 days ago bought 5 items for 99: red oven
glove, airline bag, night light"``, cut at the last whole order that fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from retention.exceptions import ConfigError, DataError

__all__ = ["history_text"]

_VERBS = {
    "purchase": "bought",
    "return": "returned",
    "view": "viewed",
    "cart": "added to cart",
    "review": "reviewed",
}
_COUNTED = {"view": "views", "cart": "cart additions", "review": "reviews"}


def _int_text(values: pd.Series) -> pd.Series:
    """Whole numbers as text (rounded; NaN as empty)."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    out = pd.Series("", index=values.index, dtype=object)
    ok = np.isfinite(v)
    out[ok] = np.round(v[ok]).astype("int64").astype(str)
    return out


def history_text(
    events: pd.DataFrame,
    items: pd.DataFrame | None,
    cutoff: pd.Timestamp | str,
    max_chars: int = 400,
    users: Sequence[str] | pd.Index | None = None,
    titles_per_order: int = 3,
) -> pd.Series:
    """Each customer's events before ``cutoff`` as one short line of text, most recent first.

    The line starts with a summary, ``"4 orders in 210 days, last 23 days ago, every 62 days,
    spent 812, 1 return for 15. "`` (views, cart additions and reviews are counted when the log
    has them), followed by one clause per order (events of one ``order_id`` and type; without
    order ids, of one day and type), newest first: days before the cutoff, the verb, the number
    of lines, the amount rounded to whole units and the first ``titles_per_order`` item titles
    (lower case). A review reads ``"12 days ago reviewed guitar strings 2/5: broke in a
    week"``. Clauses are joined by ``"; "`` and the line is cut at the last whole clause
    within ``max_chars`` (the summary is always kept).

    Parameters
    ----------
    events : pd.DataFrame
        Contract columns (``user_id``, ``ts``, ``event_type``; optionally ``item_id``,
        ``order_id``, ``amount``, ``rating``, ``text``).
    items : pd.DataFrame, optional
        Items side table: an item's ``title`` names it, else its ``item_id``.
    cutoff : pd.Timestamp or str
        Only events with ``ts < cutoff`` are written.
    max_chars : int
        Longest text per customer (about 4 characters per token of a BERT tokenizer).
    users : sequence of str, optional
        The customers to return, in this order (those without events get ``"no history"``).
    titles_per_order : int
        Item titles written per order (0: none).

    Returns
    -------
    pd.Series
        Index ``user_id``, the text of each customer.

    Examples
    --------
    >>> ev = pd.DataFrame({"user_id": ["a", "a"], "ts": pd.to_datetime(["2011-01-01",
    ...     "2011-03-01"]), "event_type": "purchase", "order_id": ["o1", "o2"],
    ...     "item_id": ["x", "y"], "amount": [10.0, 20.4]})
    >>> for part in history_text(ev, None, "2011-03-11")["a"].split(". "):
    ...     print(part)
    2 orders in 69 days, last 10 days ago, every 59 days, spent 30
    10 days ago bought 1 item for 20: y; 69 days ago bought 1 item for 10: x
    """
    if max_chars < 20:
        raise ConfigError(f"max_chars must be at least 20, got {max_chars!r}.")
    if not isinstance(titles_per_order, int) or titles_per_order < 0:
        raise ConfigError(
            f"titles_per_order must be a whole number >= 0, got {titles_per_order!r}."
        )
    missing = [c for c in ("user_id", "ts", "event_type") if c not in events.columns]
    if missing:
        raise DataError(
            f"The events lack the column(s) {', '.join(missing)} needed to write histories. "
            "Pass events with the contract's columns (user_id, ts, event_type, ...)."
        )
    cut = pd.Timestamp(cutoff)
    ts = pd.to_datetime(events["ts"])
    ev_src = events.loc[ts < cut]
    ev = pd.DataFrame(
        {
            "user_id": ev_src["user_id"].astype(str).to_numpy(),
            "ts": pd.to_datetime(ev_src["ts"]).to_numpy(),
            "event_type": ev_src["event_type"].astype(str).to_numpy(),
            "amount": (
                pd.to_numeric(ev_src["amount"], errors="coerce").to_numpy(dtype=float)
                if "amount" in ev_src.columns
                else np.nan
            ),
        }
    )
    for c in ("order_id", "item_id", "text"):
        ev[c] = ev_src[c].astype("string").to_numpy() if c in ev_src.columns else pd.NA
    ev["rating"] = (
        pd.to_numeric(ev_src["rating"], errors="coerce").to_numpy(dtype=float)
        if "rating" in ev_src.columns
        else np.nan
    )
    ev["days"] = (cut - ev["ts"]).dt.days.astype(int)
    name = ev["item_id"].astype("string")
    if items is not None and len(items) and "item_id" in items.columns:
        col = "title" if "title" in items.columns else None
        if col is not None:
            titles = items.set_index(items["item_id"].astype(str))[col].astype("string")
            titles = titles[~titles.index.duplicated()]
            mapped = name.map(titles)
            name = mapped.where(mapped.notna() & (mapped.str.strip() != ""), name)
    ev["name"] = name.fillna("").str.lower().str.replace(r"\s+", " ", regex=True).str.strip()
    key = ev["order_id"].astype("string")
    ev["group"] = key.where(key.notna(), ev["ts"].dt.strftime("%Y-%m-%d").astype("string"))

    # one clause per (customer, event type, order)
    grouped = ev.groupby(["user_id", "event_type", "group"], sort=False)
    clauses = grouped.agg(
        ts=("ts", "max"),
        days=("days", "min"),
        n=("ts", "size"),
        amount=("amount", lambda a: a.sum(min_count=1)),
        rating=("rating", "mean"),
    ).reset_index()
    if titles_per_order:
        k = titles_per_order
        names = grouped["name"].agg(lambda s: ", ".join(list(dict.fromkeys(t for t in s if t))[:k]))
        clauses["names"] = names.to_numpy()
    else:
        clauses["names"] = ""
    texts = grouped["text"].agg(lambda s: next((str(t) for t in s if pd.notna(t) and t), ""))
    clauses["text"] = texts.to_numpy()
    clauses = clauses.sort_values(
        ["user_id", "ts"], ascending=[True, False], kind="mergesort"
    ).reset_index(drop=True)

    etype = clauses["event_type"]
    verb = etype.map(_VERBS).fillna(etype).astype(object)
    n_lines = clauses["n"].astype(int)
    line = _int_text(clauses["days"]) + " days ago " + verb
    is_review = etype == "review"
    count: pd.Series = n_lines.astype(str) + np.where(n_lines == 1, " item", " items")
    line = line.where(is_review, line + " " + count)
    amount = _int_text(clauses["amount"])
    line = line.where(is_review | (amount == ""), line + " for " + amount)
    has_names = clauses["names"] != ""
    sep = pd.Series(np.where(is_review, " ", ": "), index=clauses.index)
    line = line.where(~has_names, line + sep + clauses["names"])
    rating = _int_text(clauses["rating"])
    has_rating = rating != ""
    line = line.where(~has_rating, line + " " + rating + "/5")
    review_text = clauses["text"].astype(str).str.slice(0, 120).str.replace(r"\s+", " ", regex=True)
    has_text = review_text.str.strip() != ""
    line = line.where(~has_text, line + ": " + review_text)

    # the summary of each customer
    header = _summary(clauses)

    # keep whole clauses while they fit
    lengths = line.str.len().to_numpy() + 2
    budget = max_chars - header.reindex(clauses["user_id"]).fillna("").str.len().to_numpy()
    running = pd.Series(lengths).groupby(clauses["user_id"].to_numpy(), sort=False).cumsum()
    keep = running.to_numpy() - 2 <= budget
    kept = line[keep]
    body = kept.groupby(clauses["user_id"][keep].to_numpy(), sort=False).agg("; ".join)
    out = header.copy()
    body = body.reindex(out.index).fillna("")
    out = (out + body).str.strip().str.slice(0, max_chars)
    out.index.name = "user_id"
    out.name = "history"
    if users is not None:
        out = out.reindex(pd.Index([str(u) for u in users], name="user_id")).fillna("no history")
    return out.astype(object)


def _summary(clauses: pd.DataFrame) -> pd.Series:
    """``"4 orders in 210 days, last 23 days ago, every 62 days, spent 812, 1 return for 15. "``
    per customer (index user_id)."""
    users = pd.Index(clauses["user_id"].unique(), name="user_id")
    buy = clauses[clauses["event_type"] == "purchase"].groupby("user_id", sort=False)
    n = buy.size().reindex(users).fillna(0).astype(int)
    first = buy["days"].max().reindex(users)
    last = buy["days"].min().reindex(users)
    spend = buy["amount"].sum(min_count=1).reindex(users)
    has = n > 0
    text = pd.Series("", index=users, dtype=object)
    orders: pd.Series = n.astype(str) + np.where(n == 1, " order", " orders")
    several = n > 1
    text[has & several] = (
        orders
        + " in "
        + _int_text(first)
        + " days, last "
        + _int_text(last)
        + " days ago, every "
        + _int_text((first - last) / (n - 1).clip(lower=1))
        + " days"
    )[has & several]
    text[has & ~several] = (orders + ", " + _int_text(last) + " days ago")[has & ~several]
    text[~has] = "no orders"
    spent = _int_text(spend)
    text = text.where(spent == "", text + ", spent " + spent)

    ret = clauses[clauses["event_type"] == "return"].groupby("user_id", sort=False)
    n_ret = ret.size().reindex(users).fillna(0).astype(int)
    ret_amount = _int_text(ret["amount"].sum(min_count=1).reindex(users))
    has_ret = n_ret > 0
    ret_text: pd.Series = n_ret.astype(str) + np.where(n_ret == 1, " return", " returns")
    ret_text = ret_text.where(ret_amount == "", ret_text + " for " + ret_amount)
    text = text.where(~has_ret, text + ", " + ret_text)
    for etype, word in _COUNTED.items():
        is_type = clauses["event_type"] == etype
        k: pd.Series = is_type.groupby(clauses["user_id"], sort=False).sum()
        k = k.reindex(users).fillna(0).astype(int)
        text = text.where(k == 0, text + ", " + k.astype(str) + " " + word)
    return (text + ". ").astype(object)

"""Each customer's last events or orders as padded token arrays, for the sequence transformer.

One row per customer, one column per token. Column 0 is a summary token (``CLS``) every row has, so
a customer without events still has something to attend to; the customer's last ``max_events``
tokens follow in time order, then padding. A token is one event (``per="event"``: one line of an
order is one token) or one order (``per="order"``: the lines of an ``order_id``, or of a day when
the order id is missing, summed into one token; see :func:`event_sequences`). Every token carries:

- an event-type id (0 padding, 1 ``CLS``, 2 an event type not in the vocabulary, 3... the
  vocabulary),
- an item id (a stable hash bucket of ``item_id``, 0 for none) and, when an item vocabulary is
  given, the item's row in that vocabulary (0 for none or unknown),
- ``log1p(amount)`` (0 when missing),
- the time gap to the cutoff and to the customer's previous event, as log-scaled day buckets,
- a recency position (1 the most recent event, 2 the one before...; 0 for ``CLS`` and padding),
- per order only: the ``items_per_order`` largest lines' items (a third axis of the item arrays)
  and ``numeric`` summaries (``ORDER_NUMERIC_COLUMNS``: log lines, log units, share of returns).

Padding sits at the end of a row and real tokens never depend on how much of it there is, so a
model that masks it scores a customer the same whatever the batch. Everything is vectorised (no
Python loop over events). Pure numpy and pandas: torch is not needed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from retention.exceptions import ConfigError, LeakageError, SchemaError

__all__ = [
    "CLS_TOKEN",
    "CONTEXT_COLUMNS",
    "N_GAP_BUCKETS",
    "ORDER_NUMERIC_COLUMNS",
    "PAD_TOKEN",
    "TOKEN_UNITS",
    "UNKNOWN_TOKEN",
    "EventSequences",
    "event_sequences",
    "gap_bucket",
    "item_hash_bucket",
]

PAD_TOKEN = 0
CLS_TOKEN = 1
UNKNOWN_TOKEN = 2
#: gap buckets are 1..N_GAP_BUCKETS (0 is padding); the last bucket is "no previous event"
N_GAP_BUCKETS = 26
_NO_PREVIOUS = N_GAP_BUCKETS
#: summary columns of :attr:`EventSequences.context`
CONTEXT_COLUMNS = (
    "log_n_events",
    "log_n_orders",
    "log_total_amount",
    "log_days_since_first",
    "log_days_since_last",
    "share_returns",
)
_REQUIRED = ("user_id", "ts", "event_type")
#: what one token stands for (``event_sequences(per=...)``)
TOKEN_UNITS = ("event", "order")
#: per-token summaries of :attr:`EventSequences.numeric` when a token is an order
ORDER_NUMERIC_COLUMNS = ("log_n_lines", "log_units", "share_returns")


def gap_bucket(days: np.ndarray) -> np.ndarray:
    """Log-scaled bucket (1..``N_GAP_BUCKETS - 1``) of gaps in days (half-octave resolution).

    Examples
    --------
    >>> gap_bucket(np.array([0.0, 1.0, 7.0, 30.0, 365.0])).tolist()
    [1, 3, 7, 10, 18]
    """
    d = np.clip(np.nan_to_num(np.asarray(days, dtype=np.float64), nan=0.0), 0.0, None)
    b = np.floor(2.0 * np.log2(1.0 + d)).astype(np.int64) + 1
    return np.clip(b, 1, N_GAP_BUCKETS - 1)


def item_hash_bucket(item_ids: pd.Series | np.ndarray, n_buckets: int) -> np.ndarray:
    """A stable hash bucket (1..``n_buckets``) of each item id; 0 for a missing id.

    The hash (``pandas.util.hash_array``) is the same in every process and on every machine, so a
    saved model maps the same item to the same bucket.
    """
    values = pd.Series(item_ids, dtype=object)
    missing = values.isna().to_numpy()
    hashed = pd.util.hash_array(values.fillna("").astype(str).to_numpy(dtype=object))
    buckets = (hashed % np.uint64(n_buckets)).astype(np.int64) + 1
    buckets[missing] = 0
    return buckets


@dataclass
class EventSequences:
    """Padded token arrays of a population (row ``i`` is ``users[i]``).

    Attributes
    ----------
    users : pd.Index
        The customers, in row order.
    event_type, gap_cutoff, gap_prev, position : np.ndarray
        ``int64`` arrays of shape ``(n_users, length)``; 0 is padding.
    item_bucket, item_index : np.ndarray
        ``int64``, shape ``(n_users, length)`` per event, ``(n_users, length, items_per_order)``
        per order (the order's largest lines first; 0 for no item).
    amount : np.ndarray
        ``float32`` ``log1p(amount)`` (of the order's lines summed, per order), shape
        ``(n_users, length)``.
    mask : np.ndarray
        ``bool``, True where a token is real (``CLS`` included), shape ``(n_users, length)``.
    context : np.ndarray
        ``float32`` per-customer summaries over *all* events before the cutoff (not only the last
        ones), shape ``(n_users, len(CONTEXT_COLUMNS))``: log counts of events and orders, log total
        amount, log days since the first and the last event, share of returns.
    numeric : np.ndarray or None
        Per order, ``float32`` summaries of shape ``(n_users, length, len(ORDER_NUMERIC_COLUMNS))``
        (0 for ``CLS`` and padding); None per event.
    """

    users: pd.Index
    event_type: np.ndarray
    item_bucket: np.ndarray
    item_index: np.ndarray
    amount: np.ndarray
    gap_cutoff: np.ndarray
    gap_prev: np.ndarray
    position: np.ndarray
    mask: np.ndarray
    context: np.ndarray
    numeric: np.ndarray | None = None

    _TOKEN_FIELDS: ClassVar[tuple[str, ...]] = (
        "event_type",
        "item_bucket",
        "item_index",
        "amount",
        "gap_cutoff",
        "gap_prev",
        "position",
        "mask",
    )

    def __len__(self) -> int:
        return len(self.users)

    @property
    def token_fields(self) -> tuple[str, ...]:
        """Names of the per-token arrays this instance holds (``numeric`` only per order)."""
        return (*self._TOKEN_FIELDS, "numeric") if self.numeric is not None else self._TOKEN_FIELDS

    @property
    def length(self) -> int:
        """Number of token columns (``CLS`` + events + padding)."""
        return int(self.event_type.shape[1])

    @property
    def lengths(self) -> np.ndarray:
        """Real tokens per customer (``CLS`` included)."""
        return self.mask.sum(axis=1)

    def padded(self, length: int) -> EventSequences:
        """The same sequences with padding up to ``length`` columns (never truncates)."""
        if length < self.length:
            raise ConfigError(
                f"Cannot pad {self.length} token columns down to {length}; "
                "pass a length at least as large as the current one."
            )
        extra = length - self.length
        arrays = {}
        for name in self.token_fields:
            a = getattr(self, name)
            arrays[name] = np.pad(a, ((0, 0), (0, extra), *[(0, 0)] * (a.ndim - 2)))
        return EventSequences(users=self.users, context=self.context, **arrays)

    def take(self, rows: np.ndarray | slice, trim: bool = True) -> EventSequences:
        """A subset of rows; with ``trim`` drop the padding columns no selected row needs."""
        arrays = {name: getattr(self, name)[rows] for name in self.token_fields}
        if trim and len(arrays["mask"]):
            width = max(1, int(arrays["mask"].sum(axis=1).max()))
            arrays = {name: a[:, :width] for name, a in arrays.items()}
        return EventSequences(users=self.users[rows], context=self.context[rows], **arrays)


def _check_events(events: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in events.columns]
    if missing:
        raise SchemaError(
            f"The events have no column {', '.join(map(repr, missing))} "
            f"(received {list(events.columns)}). Pass events with the contract's columns "
            "user_id, ts, event_type (see retention.data)."
        )


def _rank_in_group(group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts per group and each row's 0-based rank inside its group (rows sorted by group)."""
    counts = np.bincount(group, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return counts, np.arange(len(group)) - starts[group]


def _orders(
    codes: np.ndarray,
    ts: np.ndarray,
    order_ids: np.ndarray | None,
    type_ids: np.ndarray,
    amount: np.ndarray,
    quantity: np.ndarray,
    is_return: np.ndarray,
    items: np.ndarray | None,
    items_per_order: int,
) -> dict[str, np.ndarray]:
    """Sum the lines (sorted by customer, time) into one token per order, in the same order.

    An order is a customer's lines with one ``order_id``; lines without one are grouped by
    calendar day. The token's time is its first line's, its event type the most frequent among its
    lines (the lowest id on a tie), its items the ``items_per_order`` lines of largest amount.
    """
    no_order = (
        np.ones(len(codes), dtype=bool)
        if order_ids is None
        else pd.isna(pd.Series(order_ids, dtype=object)).to_numpy()
    )
    key = np.empty(len(codes), dtype=object)
    if order_ids is not None:
        key[~no_order] = pd.Series(order_ids[~no_order], dtype=object).astype(str).to_numpy()
    if no_order.any():  # "\x00day<n>" never equals an order id read from a file
        day = ts[no_order].astype("datetime64[D]").astype(np.int64)
        key[no_order] = np.char.add("\x00day", day.astype(str)).astype(object)
    # groups numbered by first appearance: the lines are sorted by (customer, time), so the
    # orders come out sorted by (customer, first time)
    group = (
        pd.DataFrame({"u": codes, "k": key})
        .groupby(["u", "k"], sort=False)
        .ngroup()
        .to_numpy(dtype=np.int64)
    )
    n_groups = int(group.max()) + 1 if len(group) else 0
    # the lines of a group may be apart (another order at the same second): sort by group, stably
    by_group = np.argsort(group, kind="stable")
    group = group[by_group]
    n_lines, first = _rank_in_group(group, n_groups)
    first_row = by_group[first == 0]
    n_types = int(type_ids.max()) + 1 if len(type_ids) else 1
    type_counts = np.bincount(
        group * n_types + type_ids[by_group], minlength=n_groups * n_types
    ).reshape(n_groups, n_types)
    out = {
        "codes": codes[first_row],
        "ts": ts[first_row],
        "type_ids": type_counts.argmax(axis=1).astype(np.int64),
        "amount": np.bincount(group, weights=amount[by_group], minlength=n_groups),
        "n_lines": n_lines.astype(np.float64),
        "units": np.bincount(group, weights=quantity[by_group], minlength=n_groups),
        "returns": np.bincount(group, weights=is_return[by_group], minlength=n_groups) / n_lines,
    }
    if items is not None:
        # each order's largest lines first (ties: time order), the first items_per_order kept
        rank_order = np.lexsort((np.arange(len(group)), -amount[by_group], group))
        ranked = by_group[rank_order]
        _, rank = _rank_in_group(group[rank_order], n_groups)
        keep = rank < items_per_order
        top = np.full((n_groups, items_per_order), None, dtype=object)
        top[group[rank_order][keep], rank[keep]] = items[ranked[keep]]
        out["items"] = top
    return out


def event_sequences(
    events: pd.DataFrame,
    users: Sequence[str] | pd.Index,
    cutoff: pd.Timestamp | str,
    max_events: int = 64,
    event_types: Sequence[str] = ("purchase", "return"),
    item_vocabulary: pd.Index | None = None,
    n_item_buckets: int = 4096,
    *,
    per: str = "event",
    items_per_order: int = 4,
) -> EventSequences:
    """Turn the events before ``cutoff`` into padded token arrays, one row per user of ``users``.

    Parameters
    ----------
    events : pd.DataFrame
        The event contract's columns (``user_id``, ``ts``, ``event_type`` required; ``item_id``,
        ``order_id``, ``amount``, ``quantity`` used when present). Events of other users are
        ignored.
    users : sequence of str or pd.Index
        The population, in the row order wanted.
    cutoff : pd.Timestamp or str
        Every event must be strictly before it; gaps to the cutoff are measured from it.
    max_events : int
        Keep each customer's last ``max_events`` tokens (events, or orders with ``per="order"``).
    event_types : sequence of str
        The event-type vocabulary (ids 3, 4, ...); other types get ``UNKNOWN_TOKEN``.
    item_vocabulary : pd.Index, optional
        Item ids with a row in an item-embedding table: ``item_index`` is 1 + the position in it,
        0 when the item is missing or not in it. Without it ``item_index`` is all 0.
    n_item_buckets : int
        Number of hash buckets of ``item_bucket``.
    per : {"event", "order"}
        What a token is: one event (one line of an order), or one order: the customer's lines
        with the same ``order_id`` (lines without one: the same calendar day) summed into one
        token, at its first line's time, with the summed amount, the most frequent event type,
        the ``items_per_order`` largest lines' items and :data:`ORDER_NUMERIC_COLUMNS`. An
        invoice of 20 lines is then one token instead of 20.
    items_per_order : int
        Items kept per order token (its lines of largest amount); only with ``per="order"``.

    Returns
    -------
    EventSequences
        Arrays of ``1 + max(tokens per user, capped at max_events)`` columns.

    Raises
    ------
    SchemaError
        When a required column is missing.
    LeakageError
        When an event of the population is at or after the cutoff.

    Examples
    --------
    >>> ev = pd.DataFrame({
    ...     "user_id": ["a", "a", "b"],
    ...     "ts": pd.to_datetime(["2011-01-01", "2011-02-01", "2011-01-15"]),
    ...     "event_type": ["purchase", "purchase", "return"],
    ...     "amount": [10.0, 20.0, 5.0],
    ... })
    >>> seq = event_sequences(ev, ["a", "b", "c"], "2011-03-01")
    >>> seq.event_type.tolist()
    [[1, 3, 3], [1, 4, 0], [1, 0, 0]]
    >>> seq.position.tolist()
    [[0, 2, 1], [0, 1, 0], [0, 0, 0]]
    """
    if not isinstance(max_events, int | np.integer) or max_events < 1:
        raise ConfigError(f"max_events must be a positive integer, received {max_events!r}.")
    if n_item_buckets < 1:
        raise ConfigError(f"n_item_buckets must be positive, received {n_item_buckets!r}.")
    if per not in TOKEN_UNITS:
        raise ConfigError(f"per must be one of {TOKEN_UNITS}, received {per!r}.")
    if (
        not isinstance(items_per_order, int | np.integer)
        or isinstance(items_per_order, bool)
        or items_per_order < 1
    ):
        raise ConfigError(
            f"items_per_order must be a positive integer, received {items_per_order!r}."
        )
    _check_events(events)
    cutoff = pd.Timestamp(cutoff)
    users = pd.Index(users)
    n_users = len(users)

    if users.has_duplicates:
        raise ConfigError(
            f"The population has {int(users.duplicated().sum())} repeated user ids; "
            "pass each customer once (CutoffFrame.users)."
        )
    codes = users.get_indexer(pd.Index(events["user_id"]))
    keep = codes >= 0
    ev = events.loc[keep]
    codes = codes[keep].astype(np.int64)
    ts = pd.to_datetime(ev["ts"]).to_numpy(dtype="datetime64[ns]")
    cut_ns = np.asarray(cutoff.to_datetime64()).astype("datetime64[ns]")
    late = ts >= cut_ns
    if late.any():
        n_late_users = len(np.unique(codes[late]))
        raise LeakageError(
            f"{int(late.sum())} events for {n_late_users} customers are at or after cutoff "
            f"{cutoff.date()}. Pass only events before the cutoff (CutoffFrame.events)."
        )

    # order by (customer row, time), stably, so ties keep the input order
    order = np.lexsort((ts, codes))
    codes = codes[order]
    ts = ts[order]
    etype = ev["event_type"].to_numpy(dtype=object)[order]
    amount = (
        pd.to_numeric(ev["amount"], errors="coerce").to_numpy(dtype=np.float64)[order]
        if "amount" in ev.columns
        else np.full(len(ev), np.nan)
    )
    item = ev["item_id"].to_numpy(dtype=object)[order] if "item_id" in ev.columns else None
    order_ids = ev["order_id"].to_numpy(dtype=object)[order] if "order_id" in ev.columns else None
    safe_amount = np.nan_to_num(np.clip(amount, 0.0, None), nan=0.0)
    is_return = etype == "return"
    vocab = {t: i + 3 for i, t in enumerate(event_types)}
    type_ids = (
        pd.Series(etype, dtype=object).map(vocab).fillna(UNKNOWN_TOKEN).to_numpy(dtype=np.int64)
    )

    # per-customer context over all events
    n = len(codes)
    counts = np.bincount(codes, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    day_ns = np.float64(86_400e9)
    days_to_cutoff = (cut_ns - ts).astype(np.float64) / day_ns
    ctx = np.zeros((n_users, len(CONTEXT_COLUMNS)), dtype=np.float32)
    ctx[:, 0] = np.log1p(counts)
    if order_ids is not None and n:
        key = pd.DataFrame({"u": codes, "o": pd.Series(order_ids, dtype=object).fillna("")})
        n_orders = key.drop_duplicates().groupby("u").size()
        ctx[n_orders.index.to_numpy(), 1] = np.log1p(n_orders.to_numpy())
    else:
        ctx[:, 1] = ctx[:, 0]
    ctx[:, 2] = np.log1p(np.bincount(codes, weights=safe_amount, minlength=n_users))
    has = counts > 0
    first_idx = starts[has]
    last_idx = starts[has] + counts[has] - 1
    ctx[has, 3] = np.log1p(days_to_cutoff[first_idx])
    ctx[has, 4] = np.log1p(days_to_cutoff[last_idx])
    ctx[has, 5] = np.bincount(codes, weights=is_return, minlength=n_users)[has] / counts[has]

    numeric = None
    if per == "order":
        quantity = (
            np.abs(pd.to_numeric(ev["quantity"], errors="coerce").to_numpy(dtype=np.float64))[order]
            if "quantity" in ev.columns
            else np.ones(n)
        )
        grouped = _orders(
            codes,
            ts,
            order_ids,
            type_ids,
            safe_amount,
            np.nan_to_num(quantity, nan=1.0),
            is_return.astype(np.float64),
            item,
            int(items_per_order),
        )
        codes, ts, type_ids = grouped["codes"], grouped["ts"], grouped["type_ids"]
        safe_amount = grouped["amount"]
        item = grouped.get("items")
        numeric = np.stack(
            [np.log1p(grouped["n_lines"]), np.log1p(grouped["units"]), grouped["returns"]], axis=1
        ).astype(np.float32)
        days_to_cutoff = (cut_ns - ts).astype(np.float64) / day_ns
        n = len(codes)

    # tokens (events or orders), sorted by (customer, time)
    counts, rank_in_user = _rank_in_group(codes, n_users)
    from_end = counts[codes] - 1 - rank_in_user  # 0 = most recent token
    prev_gap = np.full(n, np.nan)
    if n > 1:
        same = codes[1:] == codes[:-1]
        prev_gap[1:] = np.where(same, (ts[1:] - ts[:-1]).astype(np.float64) / day_ns, np.nan)

    # keep the last max_events of each customer; column 1.. in time order, CLS at column 0
    last = from_end < max_events
    kept = np.minimum(counts, max_events)
    width = 1 + (int(kept.max()) if n_users and n else 0)
    rows = codes[last]
    cols = 1 + (kept[rows] - 1 - from_end[last])

    def grid(dtype: type, fill: float | int = 0, depth: int = 0) -> np.ndarray:
        shape = (n_users, width, depth) if depth else (n_users, width)
        return np.full(shape, fill, dtype=dtype)

    out_type = grid(np.int64)
    out_type[:, 0] = CLS_TOKEN
    out_type[rows, cols] = type_ids[last]
    depth = int(items_per_order) if per == "order" else 0
    out_bucket = grid(np.int64, depth=depth)
    out_index = grid(np.int64, depth=depth)
    if item is not None:
        kept_items = item[last]
        flat = kept_items.reshape(-1)
        buckets = item_hash_bucket(flat, n_item_buckets).reshape(kept_items.shape)
        out_bucket[rows, cols] = buckets
        if item_vocabulary is not None and len(item_vocabulary):
            pos = pd.Index(item_vocabulary).get_indexer(pd.Index(flat, dtype=object))
            out_index[rows, cols] = np.where(pos >= 0, pos + 1, 0).reshape(kept_items.shape)
    out_amount = grid(np.float32)
    out_amount[rows, cols] = np.log1p(safe_amount[last]).astype(np.float32)
    out_gap_cut = grid(np.int64)
    out_gap_cut[rows, cols] = gap_bucket(days_to_cutoff[last])
    out_gap_prev = grid(np.int64)
    prev = prev_gap[last]
    out_gap_prev[rows, cols] = np.where(np.isnan(prev), _NO_PREVIOUS, gap_bucket(prev))
    out_pos = grid(np.int64)
    out_pos[rows, cols] = from_end[last] + 1
    out_mask = grid(bool, False)
    out_mask[:, 0] = True
    out_mask[rows, cols] = True
    out_numeric = None
    if numeric is not None:
        out_numeric = grid(np.float32, depth=numeric.shape[1])
        out_numeric[rows, cols] = numeric[last]
    return EventSequences(
        users=users,
        event_type=out_type,
        item_bucket=out_bucket,
        item_index=out_index,
        amount=out_amount,
        gap_cutoff=out_gap_cut,
        gap_prev=out_gap_prev,
        position=out_pos,
        mask=out_mask,
        context=ctx,
        numeric=out_numeric,
    )

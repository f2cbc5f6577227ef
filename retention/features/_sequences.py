"""Each customer's last events as padded token arrays, for the sequence transformer.

One row per customer, one column per token. Column 0 is a summary token (``CLS``) every row has, so
a customer without events still has something to attend to; the customer's last ``max_events``
events follow in time order, then padding. Every token carries:

- an event-type id (0 padding, 1 ``CLS``, 2 an event type not in the vocabulary, 3... the
  vocabulary),
- an item id (a stable hash bucket of ``item_id``, 0 for none) and, when an item vocabulary is
  given, the item's row in that vocabulary (0 for none or unknown),
- ``log1p(amount)`` (0 when missing),
- the time gap to the cutoff and to the customer's previous event, as log-scaled day buckets,
- a recency position (1 the most recent event, 2 the one before...; 0 for ``CLS`` and padding).

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
    "PAD_TOKEN",
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
    event_type, item_bucket, item_index, gap_cutoff, gap_prev, position : np.ndarray
        ``int64`` arrays of shape ``(n_users, length)``; 0 is padding.
    amount : np.ndarray
        ``float32`` ``log1p(amount)``, shape ``(n_users, length)``.
    mask : np.ndarray
        ``bool``, True where a token is real (``CLS`` included), shape ``(n_users, length)``.
    context : np.ndarray
        ``float32`` per-customer summaries over *all* events before the cutoff (not only the last
        ones), shape ``(n_users, len(CONTEXT_COLUMNS))``: log counts of events and orders, log total
        amount, log days since the first and the last event, share of returns.
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
        arrays = {
            name: np.pad(getattr(self, name), ((0, 0), (0, extra))) for name in self._TOKEN_FIELDS
        }
        return EventSequences(users=self.users, context=self.context, **arrays)

    def take(self, rows: np.ndarray | slice, trim: bool = True) -> EventSequences:
        """A subset of rows; with ``trim`` drop the padding columns no selected row needs."""
        arrays = {name: getattr(self, name)[rows] for name in self._TOKEN_FIELDS}
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


def event_sequences(
    events: pd.DataFrame,
    users: Sequence[str] | pd.Index,
    cutoff: pd.Timestamp | str,
    max_events: int = 64,
    event_types: Sequence[str] = ("purchase", "return"),
    item_vocabulary: pd.Index | None = None,
    n_item_buckets: int = 4096,
) -> EventSequences:
    """Turn the events before ``cutoff`` into padded token arrays, one row per user of ``users``.

    Parameters
    ----------
    events : pd.DataFrame
        The event contract's columns (``user_id``, ``ts``, ``event_type`` required; ``item_id``,
        ``order_id``, ``amount`` used when present). Events of other users are ignored.
    users : sequence of str or pd.Index
        The population, in the row order wanted.
    cutoff : pd.Timestamp or str
        Every event must be strictly before it; gaps to the cutoff are measured from it.
    max_events : int
        Keep each customer's last ``max_events`` events.
    event_types : sequence of str
        The event-type vocabulary (ids 3, 4, ...); other types get ``UNKNOWN_TOKEN``.
    item_vocabulary : pd.Index, optional
        Item ids with a row in an item-embedding table: ``item_index`` is 1 + the position in it,
        0 when the item is missing or not in it. Without it ``item_index`` is all 0.
    n_item_buckets : int
        Number of hash buckets of ``item_bucket``.

    Returns
    -------
    EventSequences
        Arrays of ``1 + max(events per user, capped at max_events)`` columns.

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

    n = len(codes)
    counts = np.bincount(codes, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank_in_user = np.arange(n) - starts[codes]  # 0 = first event
    from_end = counts[codes] - 1 - rank_in_user  # 0 = most recent event

    day_ns = np.float64(86_400e9)
    days_to_cutoff = (cut_ns - ts).astype(np.float64) / day_ns
    prev_gap = np.full(n, np.nan)
    if n > 1:
        same = codes[1:] == codes[:-1]
        prev_gap[1:] = np.where(same, (ts[1:] - ts[:-1]).astype(np.float64) / day_ns, np.nan)

    # per-customer context over all events
    ctx = np.zeros((n_users, len(CONTEXT_COLUMNS)), dtype=np.float32)
    ctx[:, 0] = np.log1p(counts)
    if order_ids is not None and n:
        key = pd.DataFrame({"u": codes, "o": pd.Series(order_ids, dtype=object).fillna("")})
        n_orders = key.drop_duplicates().groupby("u").size()
        ctx[n_orders.index.to_numpy(), 1] = np.log1p(n_orders.to_numpy())
    else:
        ctx[:, 1] = ctx[:, 0]
    safe_amount = np.nan_to_num(np.clip(amount, 0.0, None), nan=0.0)
    ctx[:, 2] = np.log1p(np.bincount(codes, weights=safe_amount, minlength=n_users))
    has = counts > 0
    first_idx = starts[has]
    last_idx = starts[has] + counts[has] - 1
    ctx[has, 3] = np.log1p(days_to_cutoff[first_idx])
    ctx[has, 4] = np.log1p(days_to_cutoff[last_idx])
    is_return = etype == "return"
    ctx[has, 5] = np.bincount(codes, weights=is_return, minlength=n_users)[has] / counts[has]

    # keep the last max_events of each customer; column 1.. in time order, CLS at column 0
    last = from_end < max_events
    kept = np.minimum(counts, max_events)
    width = 1 + (int(kept.max()) if n_users and n else 0)
    rows = codes[last]
    cols = 1 + (kept[rows] - 1 - from_end[last])

    vocab = {t: i + 3 for i, t in enumerate(event_types)}
    type_ids = pd.Series(etype[last], dtype=object).map(vocab).fillna(UNKNOWN_TOKEN)

    def grid(dtype: type, fill: float | int = 0) -> np.ndarray:
        return np.full((n_users, width), fill, dtype=dtype)

    out_type = grid(np.int64)
    out_type[:, 0] = CLS_TOKEN
    out_type[rows, cols] = type_ids.to_numpy(dtype=np.int64)
    out_bucket = grid(np.int64)
    out_index = grid(np.int64)
    if item is not None:
        kept_items = item[last]
        out_bucket[rows, cols] = item_hash_bucket(kept_items, n_item_buckets)
        if item_vocabulary is not None and len(item_vocabulary):
            pos = pd.Index(item_vocabulary).get_indexer(pd.Index(kept_items, dtype=object))
            out_index[rows, cols] = np.where(pos >= 0, pos + 1, 0)
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
    )

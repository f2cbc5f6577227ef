"""Item sequences: what every recommender learns from, and the leave-last-out split.

A :class:`ItemSequences` holds, for each customer, the items they interacted with in time order,
as codes into one item vocabulary (CSR-like: ``codes[indptr[u]:indptr[u + 1]]`` is customer
``u``'s history). It is built from the store's events (:meth:`ItemSequences.from_events`), from a
file with one line per customer (:func:`read_sequences`, the format of the Amazon Beauty
benchmark: ``user item1 item2 ...``) or from Python lists (:meth:`ItemSequences.from_lists`).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention.exceptions import ConfigError, DataError, ReadError, SchemaError

__all__ = ["ItemSequences", "LeaveLastOut", "leave_last_out", "read_sequences"]


@dataclass(frozen=True)
class ItemSequences:
    """Each customer's items in time order, as codes of one item vocabulary.

    Attributes
    ----------
    users : pd.Index
        Customer ids (str), row ``u`` of the sequences.
    items : pd.Index
        Item ids (str); an item's code is its position here.
    indptr : np.ndarray
        ``int64`` offsets, length ``len(users) + 1``.
    codes : np.ndarray
        ``int64`` item codes, customer after customer, each in time order.
    ts : np.ndarray or None
        ``datetime64[ns]`` time of each code (None for a file without times).
    """

    users: pd.Index
    items: pd.Index
    indptr: np.ndarray
    codes: np.ndarray
    ts: np.ndarray | None = None

    # ------------------------------------------------------------------------------- building
    @classmethod
    def from_lists(
        cls,
        histories: Mapping[str, Sequence[str]] | Iterable[tuple[str, Sequence[str]]],
        items: Sequence[str] | pd.Index | None = None,
    ) -> ItemSequences:
        """Sequences from ``{user: [item, ...]}`` (or ``(user, items)`` pairs), items in time
        order. ``items`` fixes the vocabulary (default: items in order of first appearance);
        an item outside a given vocabulary is an error."""
        pairs = list(histories.items()) if isinstance(histories, Mapping) else list(histories)
        users = pd.Index([str(u) for u, _ in pairs], dtype=object)
        if users.has_duplicates:
            raise DataError(
                f"{int(users.duplicated().sum())} customer(s) are listed twice (first: "
                f"{users[users.duplicated()][0]!r}); give each customer one sequence."
            )
        flat = [str(i) for _, seq in pairs for i in seq]
        if items is None:
            vocab = pd.Index(list(dict.fromkeys(flat)), dtype=object)
        else:
            vocab = pd.Index([str(i) for i in items], dtype=object)
        codes = vocab.get_indexer(pd.Index(flat, dtype=object)).astype(np.int64)
        if (codes < 0).any():
            missing = pd.Index(flat)[codes < 0][0]
            raise DataError(
                f"Item {missing!r} is not in the item vocabulary given; pass items that "
                "include every item of the sequences (or items=None)."
            )
        lengths = np.array([len(seq) for _, seq in pairs], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return cls(users=users, items=vocab, indptr=indptr, codes=codes)

    @classmethod
    def from_events(
        cls,
        events: pd.DataFrame,
        *,
        event_types: Sequence[str] | None = ("purchase",),
        items: Sequence[str] | pd.Index | None = None,
        users: Sequence[str] | pd.Index | None = None,
    ) -> ItemSequences:
        """Sequences from events with the contract's ``user_id``, ``ts``, ``item_id`` (and
        ``event_type`` when ``event_types`` filters them).

        Events without an item are left out; each customer's events are in time order (ties
        keep the order of the rows). ``items`` fixes the vocabulary (events of other items are
        left out); default the items of the events, most frequent first. ``users`` fixes the
        rows (customers without events get an empty history); default the customers of the
        events, sorted.
        """
        need = ["user_id", "ts", "item_id"] + (["event_type"] if event_types is not None else [])
        missing = [c for c in need if c not in events.columns]
        if missing:
            raise SchemaError(
                f"The events have no column {', '.join(map(repr, missing))} (received "
                f"{list(events.columns)}); pass events with the contract's columns."
            )
        ev = events
        if event_types is not None:
            ev = ev[ev["event_type"].isin(list(event_types))]
        ev = ev[ev["item_id"].notna()]
        item_ids = ev["item_id"].astype(str).to_numpy(dtype=object)
        user_ids = ev["user_id"].astype(str).to_numpy(dtype=object)
        if items is None:
            counts = pd.Series(item_ids, dtype=object).value_counts(sort=False)
            order = np.lexsort((counts.index.to_numpy(dtype=str), -counts.to_numpy()))
            vocab = pd.Index(counts.index.to_numpy(dtype=object)[order], dtype=object)
        else:
            vocab = pd.Index([str(i) for i in items], dtype=object)
        if users is None:
            rows = pd.Index(np.unique(user_ids.astype(str)).astype(object), dtype=object)
        else:
            rows = pd.Index([str(u) for u in users], dtype=object)
        item_codes = vocab.get_indexer(pd.Index(item_ids, dtype=object)).astype(np.int64)
        user_codes = rows.get_indexer(pd.Index(user_ids, dtype=object)).astype(np.int64)
        keep = (item_codes >= 0) & (user_codes >= 0)
        ts = pd.to_datetime(ev["ts"]).to_numpy(dtype="datetime64[ns]")[keep]
        item_codes, user_codes = item_codes[keep], user_codes[keep]
        order = np.lexsort((np.arange(len(ts)), ts, user_codes))
        counts_u = np.bincount(user_codes, minlength=len(rows))
        indptr = np.concatenate([[0], np.cumsum(counts_u)]).astype(np.int64)
        return cls(users=rows, items=vocab, indptr=indptr, codes=item_codes[order], ts=ts[order])

    # ------------------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Size of the item vocabulary."""
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        """Items per customer."""
        return np.diff(self.indptr)

    def history(self, row: int) -> np.ndarray:
        """Item codes of customer ``row`` in time order."""
        return self.codes[self.indptr[row] : self.indptr[row + 1]]

    def histories(self) -> list[np.ndarray]:
        """Every customer's item codes (views, not copies)."""
        return [self.codes[a:b] for a, b in zip(self.indptr[:-1], self.indptr[1:], strict=True)]

    def user_rows(self) -> np.ndarray:
        """The row of each code (``codes[i]`` belongs to customer ``user_rows()[i]``)."""
        return np.repeat(np.arange(len(self.users), dtype=np.int64), self.lengths)

    def user_item_matrix(self, binary: bool = True) -> Any:
        """A ``scipy.sparse.csr_matrix`` of shape ``(n_users, n_items)``: 1 where a customer
        had the item (``binary``) or the number of times."""
        from scipy import sparse

        data = np.ones(len(self.codes), dtype=np.float32)
        mat = sparse.csr_matrix(
            (data, (self.user_rows(), self.codes)), shape=(len(self.users), self.n_items)
        )
        mat.sum_duplicates()
        if binary:
            mat.data[:] = 1.0
        return mat

    def last_time(self) -> pd.Timestamp | None:
        """The time of the latest code (None without times or codes)."""
        if self.ts is None or len(self.ts) == 0:
            return None
        return pd.Timestamp(self.ts.max())

    # ---------------------------------------------------------------------------- reshaping
    def drop_last(self, n: int = 1) -> tuple[ItemSequences, np.ndarray]:
        """The sequences without each customer's last ``n`` items, and the first of the removed
        items per customer (``-1`` where the customer had ``n`` items or fewer, who keeps an
        empty history)."""
        lengths = self.lengths
        keep = np.maximum(lengths - n, 0)
        target = np.full(len(self.users), -1, dtype=np.int64)
        has = lengths > n
        target[has] = self.codes[self.indptr[:-1][has] + keep[has]]
        starts = self.indptr[:-1]
        offs = np.arange(len(self.codes)) - np.repeat(starts, lengths)
        mask = offs < np.repeat(keep, lengths)
        indptr = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        ts = None if self.ts is None else self.ts[mask]
        return (
            ItemSequences(self.users, self.items, indptr, self.codes[mask], ts),
            target,
        )

    def take(self, rows: np.ndarray | Sequence[int]) -> ItemSequences:
        """The customers at ``rows`` (same vocabulary)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        parts = [self.codes[self.indptr[r] : self.indptr[r + 1]] for r in rows]
        codes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        ts = None
        if self.ts is not None:
            tparts = [self.ts[self.indptr[r] : self.indptr[r + 1]] for r in rows]
            ts = np.concatenate(tparts) if tparts else np.zeros(0, dtype="datetime64[ns]")
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return ItemSequences(self.users[rows], self.items, indptr, codes, ts)


@dataclass(frozen=True)
class LeaveLastOut:
    """The standard leave-last-out split of sequences (last item test, second-to-last validation).

    Attributes
    ----------
    search : ItemSequences
        Every customer's items but the last two: what a model learns from while its choices
        (epochs, blend weights) are made on ``valid_targets``.
    refit : ItemSequences
        Every item but the last: what the final model is refitted on (the validation item
        included) and the history the test item is predicted from.
    valid_targets : np.ndarray
        The second-to-last item of each customer (``-1`` for fewer than 3 items).
    test_targets : np.ndarray
        The last item of each customer (``-1`` for fewer than 3 items: not evaluated).
    """

    search: ItemSequences
    refit: ItemSequences
    valid_targets: np.ndarray
    test_targets: np.ndarray

    @property
    def evaluated(self) -> np.ndarray:
        """Rows with a validation and a test item."""
        return np.flatnonzero((self.valid_targets >= 0) & (self.test_targets >= 0))


def leave_last_out(sequences: ItemSequences, min_length: int = 3) -> LeaveLastOut:
    """Split off each customer's last item (test) and second-to-last (validation).

    Customers with fewer than ``min_length`` items are kept whole in the training data and not
    evaluated (their targets are ``-1``).
    """
    if min_length < 3:
        raise ConfigError(f"min_length must be at least 3 (train, valid, test); got {min_length}.")
    short = sequences.lengths < min_length
    refit, test = sequences.drop_last(1)
    search, valid = refit.drop_last(1)
    if short.any():
        # the short ones keep everything, in both training sets, and are not evaluated
        rows = np.flatnonzero(short)
        refit = _replace_rows(refit, sequences, rows)
        search = _replace_rows(search, sequences, rows)
        test = test.copy()
        valid = valid.copy()
        test[rows] = -1
        valid[rows] = -1
    return LeaveLastOut(search=search, refit=refit, valid_targets=valid, test_targets=test)


def _replace_rows(base: ItemSequences, full: ItemSequences, rows: np.ndarray) -> ItemSequences:
    """``base`` with the histories of ``rows`` taken from ``full``."""
    hist = base.histories()
    for r in rows:
        hist[r] = full.history(int(r))
    lengths = np.array([len(h) for h in hist], dtype=np.int64)
    codes = np.concatenate(hist) if hist else np.zeros(0, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return ItemSequences(base.users, base.items, indptr, codes.astype(np.int64), None)


def read_sequences(path: str | os.PathLike[str]) -> ItemSequences:
    """Read a file with one line per customer, ``user item1 item2 ...`` (items in time order,
    separated by spaces or tabs), the format of the Amazon Beauty benchmark.

    Blank lines are skipped; a ``.gz`` file is read decompressed. The item vocabulary is every
    item of the file, in order of first appearance.

    Raises
    ------
    ReadError
        The file is missing or not UTF-8 text.
    DataError
        A line has a user and no item, or a user appears on two lines (the message names the
        line).
    """
    p = Path(path)
    if not p.is_file():
        raise ReadError(f"No sequences file at {p}: pass a file with one line per customer.")
    users: list[str] = []
    seqs: list[list[str]] = []
    seen: dict[str, int] = {}
    try:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 2:
                    raise DataError(
                        f"Line {number} of {p} has a user ({parts[0][:40]!r}) but no item; "
                        "every line must be 'user item1 item2 ...'."
                    )
                user = parts[0]
                if user in seen:
                    raise DataError(
                        f"Line {number} of {p} repeats user {user[:40]!r} (first on line "
                        f"{seen[user]}); put each customer's items on one line."
                    )
                seen[user] = number
                users.append(user)
                seqs.append(parts[1:])
    except UnicodeDecodeError as exc:
        raise ReadError(
            f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start}); pass a text file with "
            "one line per customer."
        ) from None
    if not users:
        raise DataError(f"{p} holds no sequence; every line must be 'user item1 item2 ...'.")
    return ItemSequences.from_lists(list(zip(users, seqs, strict=True)))

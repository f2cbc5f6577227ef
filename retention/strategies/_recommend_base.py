"""The base class every recommender shares, and its helpers (see ``_recommend.py``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from retention.exceptions import ConfigError, NotFittedError
from retention.strategies._recommend_data import ItemSequences
from retention.strategies._recommend_metrics import evaluate_ranking, top_k

__all__ = ["Recommender"]

#: weight of popularity added to a model's scores: it only orders the items the model gives the
#: same score (a popularity fallback), never reorders items the model tells apart
_TIE_BREAK = 1e-6


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def _check_int(value: Any, name: str, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        extra = " or None" if allow_none else ""
        raise ConfigError(f"{name} must be an integer >= {minimum}{extra}; got {value!r}.")
    return int(value)


def _check_float(value: Any, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if ok:
        f = float(value)
        ok = math.isfinite(f) and (f > minimum if strict else f >= minimum)
    if not ok:
        sign = ">" if strict else ">="
        raise ConfigError(f"{name} must be a number {sign} {minimum}; got {value!r}.")
    return float(value)


def _check_sequences(sequences: Any) -> ItemSequences:
    if not isinstance(sequences, ItemSequences):
        raise ConfigError(
            f"fit needs an ItemSequences (ItemSequences.from_events(events) or "
            f"read_sequences(path)); got {type(sequences).__name__}."
        )
    if sequences.n_items == 0:
        raise ConfigError("The sequences have no item, so there is nothing to recommend.")
    return sequences


def _normalise_rows(scores: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Rows clipped at 0 and scaled to sum 1; a row with nothing positive gets ``fallback``."""
    s = np.clip(np.nan_to_num(scores, nan=0.0), 0.0, None)
    total = s.sum(axis=1, keepdims=True)
    out = np.where(total > 0, s / np.where(total > 0, total, 1.0), fallback[None, :])
    return out.astype(np.float32)


def _popularity_words(window_days: int | None) -> str:
    if window_days is None:
        return "popular with other customers"
    if window_days == 7:
        return "popular this week"
    if window_days in (30, 31):
        return "popular this month"
    return f"popular in the last {window_days} days"


# --------------------------------------------------------------------------------------------
# the base class
# --------------------------------------------------------------------------------------------


class Recommender(BaseEstimator):
    """What every recommender shares: popularity, the fitted histories, ``recommend``.

    Subclasses implement ``_fit(sequences, valid_targets)`` and ``_score(histories)`` (scores of
    every item, higher is better), and may implement ``_reason(history, item)``.

    Common hyper-parameters (every subclass takes them):

    exclude_seen : bool
        Leave out the items a customer already has (False allows repeat purchases).
    window_days : int or None
        Popularity (the fallback, and the cold-start list) counts the last ``window_days`` days
        before the latest event; None counts everything (and a file without times always does).
    """

    #: registry name
    name: ClassVar[str] = ""

    # -- fitting --------------------------------------------------------------------------------
    def _check_common(self) -> None:
        if not isinstance(getattr(self, "exclude_seen", True), bool | np.bool_):
            raise ConfigError(f"exclude_seen must be True or False; got {self.exclude_seen!r}.")
        _check_int(getattr(self, "window_days", None), "window_days", allow_none=True)

    def fit(
        self,
        sequences: ItemSequences,
        valid_targets: np.ndarray | None = None,
        *,
        items: pd.DataFrame | None = None,
    ) -> Recommender:
        """Learn from ``sequences``.

        Parameters
        ----------
        sequences : ItemSequences
            Each customer's items in time order (the vocabulary is the catalogue ranked).
        valid_targets : np.ndarray, optional
            Each customer's next item (code, ``-1`` for none), for early stopping and choices;
            never the test item.
        items : pd.DataFrame, optional
            The items side table (``item_id``, ``title``, ``description``): titles for the
            reasons, text for :class:`TextSimilarityRecommender`.

        Returns
        -------
        self
        """
        seqs = _check_sequences(sequences)
        self._check_common()
        if valid_targets is not None:
            valid_targets = np.asarray(valid_targets, dtype=np.int64)
            if valid_targets.shape != (len(seqs),):
                raise ConfigError(
                    f"valid_targets must hold one item code per customer ({len(seqs)}); got "
                    f"shape {valid_targets.shape}."
                )
        self._check_params()
        self.items_ = seqs.items
        self.users_ = seqs.users
        self.indptr_ = seqs.indptr.copy()
        self.codes_ = seqs.codes.copy()
        self.popularity_ = self._popularity(seqs)
        self.titles_ = _item_column(items, seqs.items, "title")
        self._fit(seqs, valid_targets, items)
        return self

    def _check_params(self) -> None:
        """Validate the model's own hyper-parameters (raise ConfigError naming one)."""

    def _fit(self, sequences: ItemSequences, valid_targets: np.ndarray | None, items: Any) -> None:
        raise NotImplementedError

    def _popularity(self, seqs: ItemSequences) -> np.ndarray:
        codes = seqs.codes
        window = getattr(self, "window_days", None)
        if window is not None and seqs.ts is not None and len(codes):
            last = seqs.ts.max()
            recent = seqs.ts >= last - np.timedelta64(int(window), "D")
            if recent.any():
                codes = codes[recent]
        counts = np.bincount(codes, minlength=seqs.n_items).astype(np.float64)
        total = counts.sum()
        return counts / total if total > 0 else np.full(seqs.n_items, 1.0 / seqs.n_items)

    # -- scoring --------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if getattr(self, "items_", None) is None:
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet. Call fit(...) before using it."
            )

    def _score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Scores of every item (columns in the order of ``items_``) for each history (item
        codes in time order); higher is better. Seen items are not removed here."""
        self._check_fitted()
        hist = [np.asarray(h, dtype=np.int64) for h in histories]
        if not hist:
            return np.zeros((0, len(self.items_)), dtype=np.float32)
        return np.asarray(self._score(hist), dtype=np.float32)

    def item_probabilities(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Each history's scores as a distribution over the items (rows sum to 1): what a blend
        mixes. The default clips scores at 0 and rescales; popularity where nothing is left."""
        return _normalise_rows(self.score_histories(histories), self.popularity_)

    def user_histories(self, users: Sequence[str]) -> list[np.ndarray]:
        """The fitted history of each customer (empty for a customer the model never saw)."""
        self._check_fitted()
        rows = self.users_.get_indexer(pd.Index([str(u) for u in users], dtype=object))
        empty = np.zeros(0, dtype=np.int64)
        return [
            self.codes_[self.indptr_[r] : self.indptr_[r + 1]] if r >= 0 else empty for r in rows
        ]

    def evaluate(
        self,
        histories: Sequence[np.ndarray],
        targets: Sequence[np.ndarray] | np.ndarray,
        *,
        k: int = 10,
        exclude_seen: bool = True,
    ) -> Any:
        """Full-ranking metrics of this model (see :func:`evaluate_ranking`)."""
        self._check_fitted()
        return evaluate_ranking(
            self.score_histories,
            histories,
            targets,
            len(self.items_),
            k=k,
            exclude_seen=exclude_seen,
            description=f"ranking with {self.name or type(self).__name__}",
        )

    # -- recommending ---------------------------------------------------------------------------
    def _reason(self, history: np.ndarray, item: int) -> str | None:
        """Why ``item`` is recommended after ``history`` (None: popularity's words)."""
        return None

    def _title(self, code: int) -> str:
        title = self.titles_[code] if self.titles_ is not None else None
        if title:
            text = " ".join(str(title).split())
            return text if len(text) <= 60 else text[:57].rstrip() + "..."
        return f"item {self.items_[code]}"

    def frozen_params(self) -> dict[str, Any]:
        """Hyper-parameters that refit this model without validation data the way it was fitted
        (a transformer's epoch count found by early stopping, a blend's chosen weights)."""
        return self.get_params(deep=False)

    def recommend(
        self,
        users: Sequence[str],
        k: int = 10,
        *,
        histories: Mapping[str, Sequence[str]] | None = None,
        candidates: Sequence[str] | None = None,
        exclude_seen: bool | None = None,
    ) -> pd.DataFrame:
        """The top ``k`` items of each customer, with a reason in plain words.

        Parameters
        ----------
        users : sequence of str
            Customers; one the model never saw (and without a history given) gets the popular
            items, and its reason says so.
        k : int
            Items per customer.
        histories : mapping of str to sequence of str, optional
            Item ids (in time order) to use instead of a customer's fitted history (items
            outside the vocabulary are skipped).
        candidates : sequence of str, optional
            Only these items may be recommended (items recently sold, in stock...).
        exclude_seen : bool, optional
            Override the model's ``exclude_seen``.

        Returns
        -------
        pd.DataFrame
            ``user_id, rank (1..k), item_id, score, reason``; fewer than ``k`` rows for a
            customer when fewer candidates are left.
        """
        self._check_fitted()
        k = _check_int(k, "k") or 10
        users = [str(u) for u in users]
        hist = self.user_histories(users)
        known = self.users_.get_indexer(pd.Index(users, dtype=object)) >= 0
        if histories is not None:
            for i, u in enumerate(users):
                if u in histories:
                    codes = self.items_.get_indexer(
                        pd.Index([str(x) for x in histories[u]], dtype=object)
                    )
                    hist[i] = codes[codes >= 0].astype(np.int64)
                    known[i] = True
        excl = self.exclude_seen if exclude_seen is None else bool(exclude_seen)
        allowed = None
        if candidates is not None:
            codes = self.items_.get_indexer(pd.Index([str(c) for c in candidates], dtype=object))
            allowed = np.zeros(len(self.items_), dtype=bool)
            allowed[codes[codes >= 0]] = True
        rows: list[dict[str, Any]] = []
        pop_words = _popularity_words(getattr(self, "window_days", None))
        for start in range(0, len(users), 256):
            block = hist[start : start + 256]
            scores = np.asarray(self.score_histories(block), dtype=np.float64)
            for j, h in enumerate(block):
                if not known[start + j] or len(h) == 0:
                    scores[j] = self.popularity_  # a new customer: popularity, said as such
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            exclude = [np.unique(h) for h in block] if excl else None
            best = top_k(scores, k, exclude)
            for j, h in enumerate(block):
                i = start + j
                cold = not known[i] or len(h) == 0
                for rank, code in enumerate(best[j], 1):
                    value = scores[j, code]
                    if not np.isfinite(value):
                        break
                    if cold:
                        reason = f"{pop_words} (a new customer: no history yet)"
                    else:
                        reason = self._reason(h, int(code)) or pop_words
                    rows.append(
                        {
                            "user_id": users[i],
                            "rank": rank,
                            "item_id": str(self.items_[code]),
                            "score": float(value),
                            "reason": reason,
                        }
                    )
        out = pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score", "reason"])
        out["rank"] = out["rank"].astype(np.int64)
        out["score"] = out["score"].astype(np.float64)
        return out

    # -- persistence ----------------------------------------------------------------------------
    _BASE_STATE: ClassVar[tuple[str, ...]] = ("indptr_", "codes_", "popularity_")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        parts: dict[str, Any] = {k: getattr(self, k) for k in self._BASE_STATE}
        parts["items_"] = np.asarray(self.items_, dtype=object)
        parts["users_"] = np.asarray(self.users_, dtype=object)
        if self.titles_ is not None:
            parts["titles_"] = np.asarray(
                ["" if t is None else str(t) for t in self.titles_], dtype=object
            )
        state, more = self._model_state()
        parts.update(more)
        return state, parts

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        for k in self._BASE_STATE:
            setattr(self, k, parts[k])
        self.items_ = pd.Index(parts["items_"], dtype=object)
        self.users_ = pd.Index(parts["users_"], dtype=object)
        titles = parts.get("titles_")
        self.titles_ = None if titles is None else np.asarray(titles, dtype=object)
        self._set_model_state(state, parts)

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {}

    def _set_model_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        return None


def _item_column(items: pd.DataFrame | None, vocab: pd.Index, column: str) -> np.ndarray | None:
    """Each item of ``vocab``'s ``column`` in the items table, as text (None where it has none);
    None without an items table or without that column."""
    if items is None or "item_id" not in items.columns or column not in items.columns:
        return None
    col = items.assign(item_id=items["item_id"].astype(str)).drop_duplicates("item_id")
    values = col.set_index("item_id")[column].reindex(vocab).to_numpy(dtype=object)
    return np.array([None if pd.isna(t) else str(t) for t in values], dtype=object)


def _last_items(history: np.ndarray, n: int) -> np.ndarray:
    """The last ``n`` distinct items of a history, most recent first."""
    out: list[int] = []
    for code in history[::-1]:
        c = int(code)
        if c not in out:
            out.append(c)
            if len(out) == n:
                break
    return np.asarray(out, dtype=np.int64)

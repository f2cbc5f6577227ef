"""Ranking metrics over the full catalogue (never sampled negatives).

Every item of the vocabulary is ranked for every customer. Items of the customer's history are
removed from the ranking when ``exclude_seen`` (as RecBole's and RecTools' evaluations do; a
test item the customer had before then counts as a miss). Ties are broken by item code, the
order :meth:`Recommender.recommend` lists them in, so a metric and a recommendation list agree.

For one target item per customer, with ``r`` its 0-based rank: HR@k is the share of customers
with ``r < k``, NDCG@k the mean of ``1 / log2(r + 2)`` over hits (0 otherwise), MRR the mean of
``1 / (r + 1)`` over the whole ranking. With several target items (a customer's purchases in a
test window) HR@k counts a customer with any hit, NDCG@k is DCG@k / ideal DCG@k, MRR uses the
first hit, recall@k is the share of the targets found. Catalogue coverage@k is the share of items
that appear in at least one top-k list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retention._progress import progress_bar
from retention.exceptions import ConfigError

__all__ = ["RankingResult", "evaluate_ranking", "ranking_metrics", "target_ranks"]


def _masked(scores: np.ndarray, exclude: Sequence[np.ndarray] | None) -> np.ndarray:
    """``scores`` as float32 with NaN and the excluded items at -inf (a copy when changed)."""
    s = np.asarray(scores, dtype=np.float32)
    copied = s is not scores
    nan = np.isnan(s)
    if nan.any():
        s = np.where(nan, np.float32(-np.inf), s)
        copied = True
    if exclude is not None:
        if not copied:
            s = s.copy()
        for i, items in enumerate(exclude):
            if len(items):
                s[i, items] = -np.inf
    return s


def target_ranks(
    scores: np.ndarray, targets: np.ndarray, exclude: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """0-based rank of ``targets[i]`` among all items of ``scores[i]``.

    Parameters
    ----------
    scores : np.ndarray
        ``(n, n_items)`` scores, higher is better (NaN counts as lowest).
    targets : np.ndarray
        ``(n,)`` item codes.
    exclude : sequence of arrays, optional
        Item codes removed from each row's ranking; a removed target gets rank ``n_items``
        (a miss at every k).

    Examples
    --------
    >>> target_ranks(np.array([[0.1, 0.9, 0.5], [0.3, 0.3, 0.3]]), np.array([2, 2])).tolist()
    [1, 2]
    """
    s = _masked(scores, exclude)
    targets = np.asarray(targets, dtype=np.int64)
    n, n_items = s.shape
    t = s[np.arange(n), targets]
    greater = (s > t[:, None]).sum(axis=1)
    equal = s == t[:, None]
    ties_before = np.zeros(n, dtype=np.int64)
    for i in np.flatnonzero(equal.sum(axis=1) > 1):
        ties_before[i] = int(np.count_nonzero(equal[i, : targets[i]]))
    ranks = greater + ties_before
    ranks[np.isneginf(t)] = n_items
    return ranks.astype(np.int64)


def _largest(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes and values of the ``k`` largest of each row (in no particular order)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency; numpy is slower
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        return part, np.take_along_axis(s, part, axis=1)
    vals, idx = torch.topk(torch.from_numpy(np.ascontiguousarray(s)), k, dim=1, sorted=False)
    return idx.numpy().astype(np.int64), vals.numpy()


def top_k(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Item codes of the ``k`` best scores of each row, best first (ties by item code)."""
    s = _masked(scores, exclude)
    n_items = s.shape[1]
    k = min(k, n_items)
    if k == n_items:
        return np.lexsort((np.broadcast_to(np.arange(n_items), s.shape), -s), axis=1)
    part, vals = _largest(s, k)
    # argpartition may cut a tie at the k-th place anywhere: take the lowest codes among those
    kth = vals.min(axis=1)
    tied = np.flatnonzero((s >= kth[:, None]).sum(axis=1) > k)
    for i in tied:
        above = np.flatnonzero(s[i] > kth[i])
        at = np.flatnonzero(s[i] == kth[i])[: k - len(above)]
        part[i] = np.concatenate([above, at])
        vals[i] = s[i, part[i]]
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def ranking_metrics(
    ranks: np.ndarray, k: int = 10, n_targets: np.ndarray | None = None
) -> dict[str, float]:
    """HR@k, NDCG@k and MRR of 0-based ranks of one target per customer.

    Examples
    --------
    >>> m = ranking_metrics(np.array([0, 1, 20]), k=10)
    >>> round(m["hr@10"], 4), round(m["ndcg@10"], 4), round(m["mrr"], 4)
    (0.6667, 0.5437, 0.5159)
    """
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        return {f"hr@{k}": float("nan"), f"ndcg@{k}": float("nan"), "mrr": float("nan")}
    hit = r < k
    ndcg = np.where(hit, 1.0 / np.log2(r + 2.0), 0.0)
    return {
        f"hr@{k}": float(hit.mean()),
        f"ndcg@{k}": float(ndcg.mean()),
        "mrr": float((1.0 / (r + 1.0)).mean()),
    }


@dataclass
class RankingResult:
    """Full-ranking metrics of one model on one set of customers.

    Attributes
    ----------
    metrics : dict
        ``hr@k``, ``ndcg@k``, ``mrr``, ``recall@k``, ``coverage@k``, ``n_users``.
    per_user : dict of str to np.ndarray
        ``hit``, ``ndcg``, ``rr``, ``recall`` per evaluated customer, for the segments.
    history_lengths : np.ndarray
        Items in each evaluated customer's history.
    """

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]
    history_lengths: np.ndarray
    k: int = 10
    segments: dict[str, dict[str, float]] = field(default_factory=dict)

    def segment(self, name: str, mask: np.ndarray) -> dict[str, float]:
        """The metrics over the customers where ``mask`` holds (stored under ``name``)."""
        m = np.asarray(mask, dtype=bool)
        out: dict[str, float] = {"n_users": int(m.sum())}
        for key, label in (("hit", f"hr@{self.k}"), ("ndcg", f"ndcg@{self.k}"), ("rr", "mrr")):
            vals = self.per_user[key][m]
            out[label] = float(vals.mean()) if len(vals) else float("nan")
        self.segments[name] = out
        return out

    def to_dict(self) -> dict[str, Any]:
        """Metrics and segments, JSON-ready (NaN stays NaN: clean before dumping)."""
        return {**self.metrics, "segments": dict(self.segments)}


def evaluate_ranking(
    score_fn: Any,
    histories: Sequence[np.ndarray],
    targets: Sequence[np.ndarray] | np.ndarray,
    n_items: int,
    *,
    k: int = 10,
    exclude_seen: bool = True,
    batch_size: int = 512,
    description: str = "ranking",
) -> RankingResult:
    """Rank every item for each customer and measure where their target item(s) land.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(histories) -> (len(histories), n_items)`` scores (a recommender's
        ``score_histories``).
    histories : sequence of arrays
        Each customer's item codes in time order (what the model sees).
    targets : array or sequence of arrays
        One item code per customer, or several per customer (a test window).
    n_items : int
        Size of the catalogue: every item is ranked.
    k : int
        Cut-off of HR, NDCG, recall and coverage.
    exclude_seen : bool
        Remove the history's items from the ranking (a seen target is then a miss).
    batch_size : int
        Customers scored at once.
    """
    if k < 1:
        raise ConfigError(f"k must be a positive integer; got {k!r}.")
    n = len(histories)
    if len(targets) != n:
        raise ConfigError(f"{n} histories but {len(targets)} targets; give one per customer.")
    multi = not (isinstance(targets, np.ndarray) and targets.ndim == 1)
    target_sets = [np.atleast_1d(np.asarray(t, dtype=np.int64)) for t in targets]
    hit = np.zeros(n)
    ndcg = np.zeros(n)
    rr = np.zeros(n)
    recall = np.zeros(n)
    covered = np.zeros(n_items, dtype=bool)
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    with progress_bar(transient=True) as bar:
        task = bar.add_task(description, total=n)
        for start in range(0, n, batch_size):
            hist = [np.asarray(h, dtype=np.int64) for h in histories[start : start + batch_size]]
            scores = np.asarray(score_fn(hist), dtype=np.float32)
            if scores.shape != (len(hist), n_items):
                raise ConfigError(
                    f"The model scored {scores.shape} items; expected {(len(hist), n_items)}."
                )
            exclude = [np.unique(h) for h in hist] if exclude_seen else None
            scores = _masked(scores, exclude)
            exclude = None  # applied
            best = top_k(scores, k)
            covered[best.ravel()] = True
            rows = np.arange(start, start + len(hist))
            if not multi:
                ranks = target_ranks(
                    scores,
                    np.array([t[0] for t in target_sets[start : start + len(hist)]]),
                    exclude,
                )
                found = ranks < k
                hit[rows] = found
                ndcg[rows] = np.where(found, 1.0 / np.log2(ranks + 2.0), 0.0)
                rr[rows] = np.where(ranks < n_items, 1.0 / (ranks + 1.0), 0.0)
                recall[rows] = found
            else:
                for j, i in enumerate(rows):
                    row_targets = np.unique(target_sets[i])
                    if len(row_targets) == 0:
                        continue
                    ex = [exclude[j]] * len(row_targets) if exclude is not None else None
                    block = np.repeat(scores[j : j + 1], len(row_targets), axis=0)
                    ranks = np.sort(target_ranks(block, row_targets, ex))
                    got = ranks[ranks < k]
                    ideal = discounts[: min(len(row_targets), k)].sum()
                    hit[i] = float(len(got) > 0)
                    ndcg[i] = float(discounts[got].sum() / ideal)
                    rr[i] = float(1.0 / (ranks[0] + 1.0)) if ranks[0] < n_items else 0.0
                    recall[i] = len(got) / len(row_targets)
            bar.advance(task, len(hist))
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    metrics = {
        f"hr@{k}": float(hit.mean()) if n else float("nan"),
        f"ndcg@{k}": float(ndcg.mean()) if n else float("nan"),
        "mrr": float(rr.mean()) if n else float("nan"),
        f"recall@{k}": float(recall.mean()) if n else float("nan"),
        f"coverage@{k}": float(covered.mean()) if n_items else float("nan"),
        "n_users": int(n),
    }
    return RankingResult(
        metrics=metrics,
        per_user={"hit": hit, "ndcg": ndcg, "rr": rr, "recall": recall},
        history_lengths=lengths,
        k=k,
    )

"""Recommenders behind one interface: fit on item sequences, score the whole catalogue, recommend.

Every recommender is a scikit-learn style estimator (hyper-parameters stored as given in
``__init__``, validated in ``fit``, learned state in attributes ending in ``_``, ``fit`` returns
``self``). It learns from an :class:`~retention.strategies.ItemSequences` (each customer's items
in time order) and then

- ``score_histories(histories)`` scores every item of the vocabulary for each history (what the
  full-ranking evaluation ranks),
- ``item_probabilities(histories)`` turns those scores into a distribution over items (what a
  :class:`BlendRecommender` mixes),
- ``recommend(users, k)`` lists each customer's top ``k`` items with a reason in plain words
  (``often bought after X``, ``similar to Y you bought``, ``popular this week``); a customer the
  model never saw gets the popular items, and the reason says so.

The models: :class:`PopularityRecommender` (recent window), :class:`CoOccurrenceRecommender`
(item-to-item), :class:`TransitionRecommender` (first-order item transitions of the last three
items, weighted 1, 1/2, 1/3), :class:`EASERecommender` (Steck's linear autoencoder),
:class:`ALSRecommender` (``implicit``'s alternating least squares),
:class:`TextSimilarityRecommender` (the pretrained text encoder over item titles and
descriptions: cold start), :class:`~retention.strategies.SASRecRecommender` (a SASRec-style
transformer in PyTorch) and :class:`BlendRecommender` (a weighted mixture of any of them, weights
chosen on validation items).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from retention.exceptions import ConfigError
from retention.strategies._recommend_base import (
    _TIE_BREAK,
    Recommender,
    _check_float,
    _check_int,
    _last_items,
    _normalise_rows,
)
from retention.strategies._recommend_data import ItemSequences
from retention.strategies._sasrec import SASRecRecommender

__all__ = [
    "RECOMMENDER_NAMES",
    "ALSRecommender",
    "BlendRecommender",
    "CoOccurrenceRecommender",
    "EASERecommender",
    "PopularityRecommender",
    "Recommender",
    "TextSimilarityRecommender",
    "TransitionRecommender",
    "get_recommender",
]

#: registry names of :func:`get_recommender`
RECOMMENDER_NAMES: tuple[str, ...] = (
    "popularity",
    "cooccurrence",
    "transition",
    "ease",
    "als",
    "text",
    "sasrec",
    "blend",
)


# --------------------------------------------------------------------------------------------
# popularity
# --------------------------------------------------------------------------------------------


class PopularityRecommender(Recommender):
    """The most popular items over a recent window, the same for everyone.

    Parameters
    ----------
    window_days : int or None
        Count the last ``window_days`` days before the latest event (None: everything).
    exclude_seen : bool
        Leave out the items a customer already has.

    Examples
    --------
    >>> seqs = ItemSequences.from_lists({"a": ["x", "y"], "b": ["y"], "c": ["y", "z"]})
    >>> PopularityRecommender().fit(seqs).recommend(["b"], k=2)["item_id"].tolist()
    ['x', 'z']
    """

    name = "popularity"

    def __init__(self, window_days: int | None = 30, exclude_seen: bool = True) -> None:
        self.window_days = window_days
        self.exclude_seen = exclude_seen

    def _fit(self, sequences: ItemSequences, valid_targets: Any, items: Any) -> None:
        self.n_items_ = sequences.n_items

    def _score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.tile(self.popularity_.astype(np.float32), (len(histories), 1))


# --------------------------------------------------------------------------------------------
# item-to-item
# --------------------------------------------------------------------------------------------


class _SparseItemModel(Recommender):
    """A model whose learned state is one sparse item-by-item matrix ``matrix_``."""

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        m = self.matrix_.tocsr()
        return {"shape": list(m.shape)}, {
            "data": m.data.astype(np.float32),
            "indices": m.indices.astype(np.int64),
            "indptr": m.indptr.astype(np.int64),
        }

    def _set_model_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        from scipy import sparse

        shape = tuple(int(x) for x in state["shape"])
        self.matrix_ = sparse.csr_matrix(
            (parts["data"], parts["indices"], parts["indptr"]), shape=shape
        )

    def _weighted_rows(self, histories: Sequence[np.ndarray]) -> Any:
        """A sparse ``(n, n_items)`` matrix of each history's item weights."""
        from scipy import sparse

        rows, cols, vals = [], [], []
        for i, h in enumerate(histories):
            last = _last_items(h, self._n_last())
            w = self._weights(len(last))
            rows.extend([i] * len(last))
            cols.extend(last.tolist())
            vals.extend(w.tolist())
        return sparse.csr_matrix(
            (np.asarray(vals, dtype=np.float32), (rows, cols)),
            shape=(len(histories), len(self.items_)),
        )

    def _n_last(self) -> int:
        raise NotImplementedError

    def _weights(self, n: int) -> np.ndarray:
        return 1.0 / np.arange(1, n + 1, dtype=np.float64)

    def _score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        w = self._weighted_rows(histories)
        scores = np.asarray((w @ self.matrix_).todense(), dtype=np.float64)
        scores += _TIE_BREAK * self.popularity_ / max(self.popularity_.max(), 1e-12)
        return scores.astype(np.float32)

    def _best_source(self, history: np.ndarray, item: int) -> int | None:
        last = _last_items(history, self._n_last())
        if not len(last):
            return None
        w = self._weights(len(last))
        contrib = np.asarray(self.matrix_[last][:, item].todense()).ravel() * w
        j = int(np.argmax(contrib))
        return int(last[j]) if contrib[j] > 0 else None


class TransitionRecommender(_SparseItemModel):
    """First-order item transitions: the items that followed the customer's last items in other
    customers' sequences.

    The score of item ``b`` is ``sum_j weights[j] * count(a_j -> b)`` over the customer's last
    ``len(weights)`` distinct items ``a_1`` (most recent), ``a_2``, ...; popularity orders the
    rest (the fallback).

    Parameters
    ----------
    weights : tuple of float
        Weight of the most recent item, the one before, ... (default 1, 1/2, 1/3).
    window_days : int or None
        Popularity window of the fallback.
    exclude_seen : bool
        Leave out the items a customer already has.

    Examples
    --------
    >>> seqs = ItemSequences.from_lists({"a": ["x", "y"], "b": ["x", "y"], "c": ["z", "x"]})
    >>> rec = TransitionRecommender().fit(seqs)
    >>> rec.recommend(["c"], k=1)[["item_id", "reason"]].values.tolist()
    [['y', 'often bought after item x']]
    """

    name = "transition"

    def __init__(
        self,
        weights: tuple[float, ...] = (1.0, 0.5, 1.0 / 3.0),
        window_days: int | None = 30,
        exclude_seen: bool = True,
    ) -> None:
        self.weights = weights
        self.window_days = window_days
        self.exclude_seen = exclude_seen

    def _check_params(self) -> None:
        w = self.weights
        if not isinstance(w, tuple | list) or not w:
            raise ConfigError(f"weights must be a non-empty tuple of numbers >= 0; got {w!r}.")
        for x in w:
            _check_float(x, "weights")

    def _n_last(self) -> int:
        return len(self.weights)

    def _weights(self, n: int) -> np.ndarray:
        return np.asarray(self.weights, dtype=np.float64)[:n]

    def _fit(self, sequences: ItemSequences, valid_targets: Any, items: Any) -> None:
        from scipy import sparse

        codes = sequences.codes
        rows = sequences.user_rows()
        same = rows[1:] == rows[:-1]
        src, dst = codes[:-1][same], codes[1:][same]
        n = sequences.n_items
        m = sparse.csr_matrix((np.ones(len(src), dtype=np.float32), (src, dst)), shape=(n, n))
        m.sum_duplicates()
        self.matrix_ = m

    def _reason(self, history: np.ndarray, item: int) -> str | None:
        src = self._best_source(history, item)
        return None if src is None else f"often bought after {self._title(src)}"


class CoOccurrenceRecommender(_SparseItemModel):
    """Item-to-item co-occurrence: items bought by the same customers as the customer's recent
    items (cosine-normalised counts, the last ``n_last`` items weighted 1, 1/2, ...).

    Parameters
    ----------
    n_last : int
        Recent distinct items of the customer that vote.
    window_days : int or None
        Popularity window of the fallback.
    exclude_seen : bool
        Leave out the items a customer already has.
    """

    name = "cooccurrence"

    def __init__(self, n_last: int = 10, window_days: int | None = 30, exclude_seen: bool = True):
        self.n_last = n_last
        self.window_days = window_days
        self.exclude_seen = exclude_seen

    def _check_params(self) -> None:
        _check_int(self.n_last, "n_last")

    def _n_last(self) -> int:
        return int(self.n_last)

    def _fit(self, sequences: ItemSequences, valid_targets: Any, items: Any) -> None:
        from scipy import sparse

        x = sequences.user_item_matrix(binary=True)
        c = (x.T @ x).tocsr()
        c.setdiag(0)
        c.eliminate_zeros()
        n = np.asarray(x.sum(axis=0)).ravel()
        inv = 1.0 / np.sqrt(np.maximum(n, 1.0))
        self.matrix_ = (sparse.diags(inv) @ c @ sparse.diags(inv)).astype(np.float32).tocsr()

    def _reason(self, history: np.ndarray, item: int) -> str | None:
        src = self._best_source(history, item)
        return None if src is None else f"often bought with {self._title(src)}"


# --------------------------------------------------------------------------------------------
# EASE
# --------------------------------------------------------------------------------------------


class EASERecommender(Recommender):
    """EASE (Steck, 2019): a linear item-to-item model with a closed-form solution,
    ``B = I - P / diag(P)`` with ``P = (X'X + l2 I)^-1``.

    The dense item-by-item matrix limits it to ``max_items`` items (the most popular; the others
    are scored by popularity only).

    Parameters
    ----------
    l2 : float
        L2 strength (the paper's default 500).
    max_items : int
        Items the dense matrix covers.
    window_days : int or None
        Popularity window of the fallback.
    exclude_seen : bool
        Leave out the items a customer already has.
    """

    name = "ease"

    def __init__(
        self,
        l2: float = 500.0,
        max_items: int = 20_000,
        window_days: int | None = 30,
        exclude_seen: bool = True,
    ) -> None:
        self.l2 = l2
        self.max_items = max_items
        self.window_days = window_days
        self.exclude_seen = exclude_seen

    def _check_params(self) -> None:
        _check_float(self.l2, "l2", strict=True)
        _check_int(self.max_items, "max_items")

    def _fit(self, sequences: ItemSequences, valid_targets: Any, items: Any) -> None:
        import scipy.linalg

        x = sequences.user_item_matrix(binary=True)
        counts = np.asarray(x.sum(axis=0)).ravel()
        order = np.lexsort((np.arange(len(counts)), -counts))
        keep = np.sort(order[: min(int(self.max_items), len(counts))])
        xs = x[:, keep]
        gram = np.asarray((xs.T @ xs).todense(), dtype=np.float64)
        gram[np.diag_indices_from(gram)] += float(self.l2)
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.kept_ = keep.astype(np.int64)
        self.b_ = b.astype(np.float32)

    def _score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        pos = np.full(len(self.items_), -1, dtype=np.int64)
        pos[self.kept_] = np.arange(len(self.kept_))
        x = np.zeros((len(histories), len(self.kept_)), dtype=np.float32)
        for i, h in enumerate(histories):
            p = pos[h]
            x[i, p[p >= 0]] = 1.0
        out = np.tile(
            (_TIE_BREAK * self.popularity_ / max(self.popularity_.max(), 1e-12)).astype(np.float32),
            (len(histories), 1),
        )
        out[:, self.kept_] += x @ self.b_
        return out

    def _reason(self, history: np.ndarray, item: int) -> str | None:
        pos = np.searchsorted(self.kept_, item)
        if pos >= len(self.kept_) or self.kept_[pos] != item:
            return None
        last = _last_items(history, 20)
        src_pos = np.searchsorted(self.kept_, last)
        ok = (src_pos < len(self.kept_)) & (
            self.kept_[np.minimum(src_pos, len(self.kept_) - 1)] == last
        )
        if not ok.any():
            return None
        contrib = self.b_[src_pos[ok], pos]
        j = int(np.argmax(contrib))
        if contrib[j] <= 0:
            return None
        return f"often bought by customers who bought {self._title(int(last[ok][j]))}"

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {"kept": self.kept_, "b": self.b_}

    def _set_model_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        self.kept_ = parts["kept"]
        self.b_ = parts["b"]


# --------------------------------------------------------------------------------------------
# ALS (implicit)
# --------------------------------------------------------------------------------------------


class ALSRecommender(Recommender):
    """Matrix factorisation by alternating least squares for implicit feedback (Hu, Koren &
    Volinsky, 2008), fitted by the ``implicit`` library.

    A customer is scored from their history by one least-squares step against the item factors
    (fold-in), so a history the model did not train on is scored the same way.

    Parameters
    ----------
    factors : int
        Latent dimensions.
    regularization : float
        L2 strength.
    alpha : float
        Confidence weight of an observed interaction.
    iterations : int
        ALS sweeps.
    random_state : int
        Seed of the initial factors.
    window_days : int or None
        Popularity window of the fallback.
    exclude_seen : bool
        Leave out the items a customer already has.
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        random_state: int = 0,
        window_days: int | None = 30,
        exclude_seen: bool = True,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.window_days = window_days
        self.exclude_seen = exclude_seen

    def _check_params(self) -> None:
        _check_int(self.factors, "factors")
        _check_float(self.regularization, "regularization")
        _check_float(self.alpha, "alpha", strict=True)
        _check_int(self.iterations, "iterations")
        _check_int(self.random_state, "random_state", minimum=0)

    def _fit(self, sequences: ItemSequences, valid_targets: Any, items: Any) -> None:
        import warnings

        from threadpoolctl import threadpool_limits

        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError:  # pragma: no cover - a declared dependency
            raise ConfigError(
                "The ALS recommender needs the implicit package: pip install implicit"
            ) from None
        x = sequences.user_item_matrix(binary=True).tocsr()
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # implicit warns about BLAS threads it has just been given one of
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="implicit")
            model = AlternatingLeastSquares(
                factors=int(self.factors),
                regularization=float(self.regularization),
                alpha=float(self.alpha),
                iterations=int(self.iterations),
                random_state=int(self.random_state),
                num_threads=1,
                calculate_training_loss=False,
            )
            model.fit(x, show_progress=False)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _fold_in(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        y = self.item_factors_.astype(np.float64)
        f = y.shape[1]
        yty = y.T @ y
        reg = float(self.regularization) * np.eye(f)
        out = np.zeros((len(histories), f), dtype=np.float64)
        a = float(self.alpha)
        for i, h in enumerate(histories):
            if len(h) == 0:
                continue
            yh = y[np.unique(h)]
            lhs = yty + a * (yh.T @ yh) + reg
            rhs = (1.0 + a) * yh.sum(axis=0)
            out[i] = np.linalg.solve(lhs, rhs)
        return out

    def _score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        u = self._fold_in(histories)
        scores = u @ self.item_factors_.T.astype(np.float64)
        scores += _TIE_BREAK * self.popularity_ / max(self.popularity_.max(), 1e-12)
        return scores.astype(np.float32)

    def _reason(self, history: np.ndarray, item: int) -> str | None:
        last = _last_items(history, 20)
        if not len(last):
            return None
        sims = self.item_factors_[last] @ self.item_factors_[item]
        j = int(np.argmax(sims))
        return f"liked by customers who bought {self._title(int(last[j]))}" if sims[j] > 0 else None

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {"item_factors": self.item_factors_}

    def _set_model_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        self.item_factors_ = parts["item_factors"]


# --------------------------------------------------------------------------------------------
# text similarity (cold start)
# --------------------------------------------------------------------------------------------


class TextSimilarityRecommender(Recommender):
    """Items whose title and description read like those of the customer's recent items, by the
    pretrained text encoder: it needs no interactions, so it recommends new items and serves
    customers with a single event (cold start).

    Parameters
    ----------
    encoder : TextEncoder or str, optional
        The encoder or its name (default: the setting ``RETENTION_ENCODER``).
    n_last : int
        Recent distinct items of the customer that make the profile (weighted 1, 1/2, ...).
    cache : EmbeddingCache, optional
        Item embeddings are read from and written to it (the store's ``embeddings`` table).
    window_days : int or None
        Popularity window of the fallback.
    exclude_seen : bool
        Leave out the items a customer already has.
    """

    name = "text"

    def __init__(
        self,
        encoder: Any = None,
        n_last: int = 5,
        cache: Any = None,
        window_days: int | None = 30,
        exclude_seen: bool = True,
    ) -> None:
        self.encoder = encoder
        self.n_last = n_last
        self.cache = cache
        self.window_days = window_days
        self.exclude_seen = exclude_seen

    def _check_params(self) -> None:
        _check_int(self.n_last, "n_last")

    def _fit(self, sequences: ItemSequences, valid_targets: Any, items: Any) -> None:
        from retention.features import item_embeddings, resolve_encoder

        if items is None or "item_id" not in getattr(items, "columns", ()):
            raise ConfigError(
                "The text recommender needs the items side table (item_id, title, description): "
                "pass items=store.table_df('items'), or choose another recommender."
            )
        enc = resolve_encoder(self.encoder)
        emb = item_embeddings(
            items[items["item_id"].astype(str).isin(set(sequences.items))], enc, self.cache
        )
        vectors = np.zeros((sequences.n_items, enc.dim), dtype=np.float32)
        pos = sequences.items.get_indexer(pd.Index(emb.index.astype(str), dtype=object))
        vectors[pos[pos >= 0]] = emb.to_numpy(dtype=np.float32)[pos >= 0]
        self.vectors_ = vectors
        self.encoder_name_ = enc.name
        self.has_text_ = np.abs(vectors).sum(axis=1) > 0

    def _profiles(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(histories), self.vectors_.shape[1]), dtype=np.float32)
        for i, h in enumerate(histories):
            last = _last_items(h, int(self.n_last))
            if len(last):
                w = 1.0 / np.arange(1, len(last) + 1, dtype=np.float32)
                out[i] = (w[:, None] * self.vectors_[last]).sum(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def _score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        sims = self._profiles(histories) @ self.vectors_.T
        # cosine in [-1, 1] shifted to [0, 2]; items without text score only by popularity
        scores = np.where(self.has_text_[None, :], 1.0 + sims, 0.0).astype(np.float64)
        scores += _TIE_BREAK * self.popularity_ / max(self.popularity_.max(), 1e-12)
        return scores.astype(np.float32)

    def item_probabilities(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """A softmax of the cosine similarities (temperature 0.05)."""
        sims = self._profiles(histories) @ self.vectors_.T
        logits = np.where(self.has_text_[None, :], sims / 0.05, -np.inf)
        logits -= np.max(np.where(np.isfinite(logits), logits, -1e30), axis=1, keepdims=True)
        p = np.exp(logits)
        total = p.sum(axis=1, keepdims=True)
        return np.where(
            total > 0, p / np.where(total > 0, total, 1.0), self.popularity_[None, :]
        ).astype(np.float32)

    def _reason(self, history: np.ndarray, item: int) -> str | None:
        last = _last_items(history, int(self.n_last))
        if not len(last) or not self.has_text_[item]:
            return None
        sims = self.vectors_[last] @ self.vectors_[item]
        j = int(np.argmax(sims))
        return f"similar to {self._title(int(last[j]))} you bought"

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"encoder_name": self.encoder_name_}, {"vectors": self.vectors_}

    def _set_model_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        self.vectors_ = parts["vectors"]
        self.encoder_name_ = str(state["encoder_name"])
        self.has_text_ = np.abs(self.vectors_).sum(axis=1) > 0


# --------------------------------------------------------------------------------------------
# blend
# --------------------------------------------------------------------------------------------


class BlendRecommender(Recommender):
    """A weighted mixture of recommenders' item distributions.

    ``p(item) = sum_m w_m p_m(item)`` with each member's :meth:`item_probabilities`. With
    ``weights=None`` and validation items given to :meth:`fit`, the weights are chosen on them
    (NDCG@10 over a grid of the simplex, step ``grid_step``); without validation items the
    members weigh the same.

    Parameters
    ----------
    members : sequence of (str, Recommender) or str
        The members (registry names or ``(name, estimator)`` pairs); each is cloned and fitted
        unless ``prefit``.
    prefit : bool
        The members are fitted already (on the same sequences): :meth:`fit` only chooses the
        weights, and uses the members as given (never changed).
    weights : sequence of float, optional
        Fixed weights (normalised to sum 1).
    grid_step : float
        Step of the weight grid.
    window_days : int or None
        Popularity window of the fallback.
    exclude_seen : bool
        Leave out the items a customer already has.
    """

    name = "blend"

    def __init__(
        self,
        members: Sequence[Any] = ("sasrec", "transition"),
        prefit: bool = False,
        weights: Sequence[float] | None = None,
        grid_step: float = 0.1,
        window_days: int | None = 30,
        exclude_seen: bool = True,
    ) -> None:
        self.members = members
        self.prefit = prefit
        self.weights = weights
        self.grid_step = grid_step
        self.window_days = window_days
        self.exclude_seen = exclude_seen

    def _named_members(self) -> list[tuple[str, Recommender]]:
        out: list[tuple[str, Recommender]] = []
        if (
            isinstance(self.members, str)
            or not isinstance(self.members, Sequence)
            or not self.members
        ):
            raise ConfigError(
                f"members must be a non-empty list of recommender names or (name, recommender) "
                f"pairs; got {self.members!r}."
            )
        for m in self.members:
            if isinstance(m, str):
                out.append((m, get_recommender(m)))
            elif isinstance(m, tuple | list) and len(m) == 2 and isinstance(m[1], Recommender):
                out.append((str(m[0]), m[1] if self.prefit else clone(m[1])))
            elif isinstance(m, Recommender):
                out.append((m.name or type(m).__name__, clone(m)))
            else:
                raise ConfigError(
                    f"members must be recommender names or (name, recommender) pairs; got {m!r}."
                )
        names = [n for n, _ in out]
        if len(set(names)) != len(names):
            raise ConfigError(f"members has repeated names {names}; name each member once.")
        return out

    def _check_params(self) -> None:
        step = _check_float(self.grid_step, "grid_step", strict=True)
        if step > 1:
            raise ConfigError(f"grid_step must be a number in (0, 1]; got {self.grid_step!r}.")
        members = self._named_members()
        if self.weights is not None:
            w = list(self.weights)
            if (
                len(w) != len(members)
                or any(not isinstance(x, int | float) or not math.isfinite(x) or x < 0 for x in w)
                or sum(w) <= 0
            ):
                raise ConfigError(
                    f"weights must be {len(members)} numbers >= 0 with a positive sum, one per "
                    f"member; got {self.weights!r}."
                )

    def _fit(self, sequences: ItemSequences, valid_targets: np.ndarray | None, items: Any) -> None:
        members = self._named_members()
        fitted = []
        for name, est in members:
            if self.prefit:
                est._check_fitted()
                if len(est.items_) != sequences.n_items:
                    raise ConfigError(
                        f"prefit member {name!r} ranks {len(est.items_)} items, the sequences "
                        f"{sequences.n_items}; fit the members on the same sequences."
                    )
                fitted.append((name, est))
            else:
                fitted.append((name, est.fit(sequences, valid_targets, items=items)))
        self.members_ = fitted
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)
            self.weights_ = (w / w.sum()).tolist()
        elif valid_targets is not None and (valid_targets >= 0).any():
            self.weights_ = self._choose_weights(sequences, valid_targets)
        else:
            self.weights_ = [1.0 / len(fitted)] * len(fitted)

    def _grid(self, n: int) -> list[np.ndarray]:
        steps = max(1, round(1.0 / float(self.grid_step)))
        out: list[np.ndarray] = []

        def rec(prefix: list[int], left: int, slots: int) -> None:
            if slots == 1:
                out.append(np.asarray([*prefix, left], dtype=np.float64) / steps)
                return
            for v in range(left + 1):
                rec([*prefix, v], left - v, slots - 1)

        rec([], steps, n)
        return out

    def _choose_weights(self, sequences: ItemSequences, valid_targets: np.ndarray) -> list[float]:
        rows = np.flatnonzero(valid_targets >= 0)
        hist = [sequences.history(int(r)) for r in rows]
        targets = valid_targets[rows]
        excl = [np.unique(h) for h in hist] if self.exclude_seen else None
        probs = [
            np.concatenate(
                [m.item_probabilities(hist[s : s + 1024]) for s in range(0, len(hist), 1024)]
            )
            for _, m in self.members_
        ]
        from retention.strategies._recommend_metrics import ranking_metrics, target_ranks

        best, best_w = -1.0, None
        for w in self._grid(len(probs)):
            mix = sum(wi * p for wi, p in zip(w, probs, strict=True))
            ranks = target_ranks(np.asarray(mix), targets, excl)
            score = ranking_metrics(ranks, 10)["ndcg@10"]
            if score > best + 1e-12:
                best, best_w = score, w
        assert best_w is not None
        self.valid_ndcg_ = float(best)
        return [float(x) for x in best_w]

    def _mix(self, histories: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        parts = [
            w * m.item_probabilities(histories)
            for w, (_, m) in zip(self.weights_, self.members_, strict=True)
        ]
        return np.sum(parts, axis=0), parts

    def _score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        mix, _ = self._mix(histories)
        mix = mix + _TIE_BREAK * 1e-3 * self.popularity_[None, :] / max(
            self.popularity_.max(), 1e-12
        )
        return mix.astype(np.float32)

    def item_probabilities(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return _normalise_rows(self._mix(histories)[0], self.popularity_)

    def _reason(self, history: np.ndarray, item: int) -> str | None:
        _, parts = self._mix([history])
        order = np.argsort([-p[0, item] for p in parts])
        for j in order:
            why = self.members_[int(j)][1]._reason(history, item)
            if why:
                return why
        return None

    def frozen_params(self) -> dict[str, Any]:
        params = self.get_params(deep=False)
        params["members"] = [(name, type(m)(**m.frozen_params())) for name, m in self.members_]
        params["weights"] = list(self.weights_)
        params["prefit"] = False
        return params

    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"weights": list(self.weights_), "names": [n for n, _ in self.members_]}, {
            f"member{i}": m for i, (_, m) in enumerate(self.members_)
        }

    def _set_model_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        self.weights_ = [float(x) for x in state["weights"]]
        self.members_ = [(str(n), parts[f"member{i}"]) for i, n in enumerate(state["names"])]


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


def get_recommender(name: str, **params: Any) -> Recommender:
    """A new recommender by registry name (:data:`RECOMMENDER_NAMES`).

    Examples
    --------
    >>> get_recommender("transition", window_days=7)
    TransitionRecommender(window_days=7)
    """
    classes: dict[str, Any] = {
        "popularity": PopularityRecommender,
        "cooccurrence": CoOccurrenceRecommender,
        "transition": TransitionRecommender,
        "ease": EASERecommender,
        "als": ALSRecommender,
        "text": TextSimilarityRecommender,
        "sasrec": SASRecRecommender,
        "blend": BlendRecommender,
    }
    if name not in classes:
        raise ConfigError(
            f"Unknown recommender {name!r}. Choose from: {', '.join(RECOMMENDER_NAMES)}."
        )
    try:
        model: Recommender = classes[name](**params)
    except TypeError as exc:
        raise ConfigError(f"Bad parameters for recommender {name!r}: {exc}.") from None
    return model

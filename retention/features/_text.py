"""Text features: item embeddings, per-customer text features, and histories written as text.

- :func:`item_embeddings` embeds each item's title and description with a :class:`TextEncoder`.
- :class:`TextFeaturizer` turns them into per-customer ``text_*`` columns: the recency-weighted
  mean embedding of what a customer bought before the cutoff, reduced by a PCA fitted on the
  training cutoffs only, plus review signals (count, mean rating, share of low ratings and the
  sentiment of the review texts) where reviews exist.
- :func:`serialise_history` writes a customer's events before the cutoff as one line of text,
  most recent first, for the fine-tuned language model (:class:`retention.models.TextLMModel`).

Review sentiment is measured without labels: each review text is embedded and compared with a
few positive and a few negative anchor sentences (:data:`POSITIVE_ANCHORS`,
:data:`NEGATIVE_ANCHORS`); its sentiment is the mean cosine similarity to the positive anchors
minus the mean similarity to the negative ones (about -0.3 to 0.3; above 0 reads positive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from retention.exceptions import ConfigError, DataError, ModelError, NotFittedError
from retention.features._encoder import EmbeddingCache, TextEncoder
from retention.features._frame import CutoffFrame

__all__ = [
    "NEGATIVE_ANCHORS",
    "POSITIVE_ANCHORS",
    "TextFeaturizer",
    "item_embeddings",
    "item_texts",
    "resolve_encoder",
    "review_sentiment",
    "serialise_history",
]

POSITIVE_ANCHORS: tuple[str, ...] = (
    "I love it, excellent quality and works perfectly.",
    "Great product, highly recommend, five stars.",
    "Very happy with this purchase, exactly as described.",
    "Fantastic value, I would buy it again.",
)
NEGATIVE_ANCHORS: tuple[str, ...] = (
    "Terrible quality, it broke after a few days.",
    "Waste of money, very disappointed, one star.",
    "Does not work as described, I returned it.",
    "Awful product, I would never buy it again.",
)

#: ratings at or below this are "low"
LOW_RATING = 2.0


def resolve_encoder(encoder: TextEncoder | str | None) -> TextEncoder:
    """The :class:`TextEncoder` itself, or a new one for an encoder name (None: the default)."""
    if isinstance(encoder, TextEncoder):
        return encoder
    if encoder is None or isinstance(encoder, str):
        return TextEncoder(encoder)
    raise ConfigError(
        f"encoder must be a TextEncoder, an encoder name or None, got {type(encoder).__name__}."
    )


def item_texts(items: pd.DataFrame) -> pd.Series:
    """The text of each item: its title, then its description when that says something more.

    Returns a Series indexed by ``item_id`` (str) holding the items that have any text.
    """
    if "item_id" not in items.columns:
        raise DataError(
            "The items table has no item_id column (columns: "
            f"{', '.join(map(str, items.columns))}). Pass the items side table with item_id, "
            "title and description."
        )
    title = (
        items["title"].astype("string").fillna("").str.strip()
        if "title" in items.columns
        else pd.Series("", index=items.index, dtype="string")
    )
    desc = (
        items["description"].astype("string").fillna("").str.strip()
        if "description" in items.columns
        else pd.Series("", index=items.index, dtype="string")
    )
    extra = desc.where((desc != title) & (desc != ""), "")
    text = title.where(extra == "", title + ". " + extra).str.strip(". ").str.strip()
    text = text.where(text != "", desc)
    out = pd.Series(text.to_numpy(dtype=object), index=items["item_id"].astype(str), name="text")
    out = out[out.astype(str).str.len() > 0]
    out.index.name = "item_id"
    return out[~out.index.duplicated(keep="first")]


def item_embeddings(
    items: pd.DataFrame,
    encoder: TextEncoder | str | None = None,
    cache: EmbeddingCache | None = None,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Embed each item's title and description.

    Parameters
    ----------
    items : pd.DataFrame
        The items side table (``item_id`` and ``title`` and/or ``description``).
    encoder : TextEncoder or str, optional
        The encoder or its name (default: the setting ``RETENTION_ENCODER``).
    cache : EmbeddingCache, optional
        Embeddings already computed are read from it, new ones written to it.
    batch_size : int
        Texts per forward pass.

    Returns
    -------
    pd.DataFrame
        Index ``item_id`` (items without any text are left out), columns ``e0 .. e{dim-1}``
        (float32, unit length).
    """
    enc = resolve_encoder(encoder)
    texts = item_texts(items)
    vectors = enc.encode(
        texts.tolist(), batch_size=batch_size, cache=cache, description="embedding items"
    )
    return pd.DataFrame(
        vectors,
        index=texts.index,
        columns=[f"e{i}" for i in range(vectors.shape[1] if len(vectors) else enc.dim)],
    )


def review_sentiment(
    texts: Sequence[str], encoder: TextEncoder, cache: EmbeddingCache | None = None
) -> np.ndarray:
    """Sentiment of each text: mean similarity to positive anchors minus to negative ones."""
    if len(texts) == 0:
        return np.zeros(0)
    anchors = encoder.encode(list(POSITIVE_ANCHORS) + list(NEGATIVE_ANCHORS), cache=cache)
    pos = anchors[: len(POSITIVE_ANCHORS)].mean(axis=0)
    neg = anchors[len(POSITIVE_ANCHORS) :].mean(axis=0)
    vectors = encoder.encode(list(texts), cache=cache, description="embedding reviews")
    return np.asarray(vectors @ (pos - neg), dtype=float)


# --------------------------------------------------------------------------------------------
# histories as text
# --------------------------------------------------------------------------------------------

_VERBS = {
    "purchase": "bought",
    "return": "returned",
    "view": "viewed",
    "cart": "added to cart",
    "review": "reviewed",
}


def _fmt_number(values: pd.Series) -> pd.Series:
    v = pd.to_numeric(values, errors="coerce").astype(float)
    whole = np.isfinite(v) & (np.round(v) == v)
    out = pd.Series("", index=values.index, dtype=object)
    out[whole] = v[whole].astype("int64").astype(str)
    frac = np.isfinite(v) & ~whole
    out[frac] = v[frac].map(lambda x: f"{x:g}")
    return out


def serialise_history(
    events: pd.DataFrame,
    items: pd.DataFrame | None,
    cutoff: pd.Timestamp | str,
    max_chars: int = 600,
    summary: bool = True,
    users: Sequence[str] | pd.Index | None = None,
) -> pd.Series:
    """Each customer's events before ``cutoff`` as one line of text, most recent first.

    An event reads ``"2011-08-03 bought 12 x REGENCY CAKESTAND 3 TIER for 153.00"`` (returns,
    views, cart additions and reviews likewise, a review with its rating and text); events are
    joined by ``"; "`` and the line is cut at the last whole event within ``max_chars``. With
    ``summary`` the line starts with what a reader would otherwise have to count:
    ``"as of 2011-09-01: 7 orders, last 12 days ago, first 210 days ago. "``.

    Parameters
    ----------
    events : pd.DataFrame
        Contract columns (``user_id``, ``ts``, ``event_type`` and optionally ``item_id``,
        ``order_id``, ``quantity``, ``amount``, ``rating``, ``text``).
    items : pd.DataFrame, optional
        Items side table; an item's title names it, else its ``item_id``.
    cutoff : pd.Timestamp or str
        Only events with ``ts < cutoff`` are written.
    max_chars : int
        Longest text kept per customer (fit it to the model's token limit: about 4-5
        characters per token).
    summary : bool
        Start with the order count and the days since the last and the first order.
    users : sequence of str, optional
        The customers to return, in this order (those without events get ``"no purchases"``).

    Returns
    -------
    pd.Series
        Index ``user_id``, the text of each customer.
    """
    if max_chars < 20:
        raise ConfigError(f"max_chars must be at least 20, got {max_chars}.")
    missing = [c for c in ("user_id", "ts", "event_type") if c not in events.columns]
    if missing:
        raise DataError(
            f"The events lack the column(s) {', '.join(missing)} needed to write histories. "
            "Pass events with the contract's columns (user_id, ts, event_type, ...)."
        )
    cut = pd.Timestamp(cutoff)
    ev = events.loc[pd.to_datetime(events["ts"]) < cut]
    ev = ev.assign(
        user_id=ev["user_id"].astype(str),
        ts=pd.to_datetime(ev["ts"]),
    ).sort_values(["user_id", "ts"], ascending=[True, False], kind="mergesort")

    names: pd.Series
    if "item_id" in ev.columns:
        item_id = ev["item_id"].astype("string")
        names = item_id.fillna("").astype(object)
        if items is not None and len(items):
            titles = item_texts(items)
            mapped = item_id.map(titles)
            names = mapped.where(mapped.notna(), names).astype(object)
    else:
        names = pd.Series("", index=ev.index, dtype=object)

    etype = ev["event_type"].astype(str)
    verb = etype.map(_VERBS).fillna(etype).astype(object)
    qty = _fmt_number(ev["quantity"]) if "quantity" in ev.columns else None
    line = ev["ts"].dt.strftime("%Y-%m-%d").astype(object) + " " + verb
    if qty is not None:
        has_qty = (qty != "") & (etype != "review")
        line = line.where(~has_qty, line + " " + qty + " x")
    line = line + " " + names.astype(str)
    if "amount" in ev.columns:
        amount = pd.to_numeric(ev["amount"], errors="coerce")
        has_amt = amount.notna() & (etype != "review")
        line = line.where(~has_amt, line + " for " + amount.map(lambda x: f"{x:.2f}"))
    if "rating" in ev.columns:
        rating = pd.to_numeric(ev["rating"], errors="coerce")
        has_r = rating.notna()
        line = line.where(~has_r, line + " " + _fmt_number(rating) + "/5")
    if "text" in ev.columns:
        text = ev["text"].astype("string").fillna("").str.slice(0, 200)
        has_t = text != ""
        line = line.where(~has_t, line + ' "' + text.astype(str) + '"')
    line = line.str.replace(r"\s+", " ", regex=True).str.strip()

    header = pd.Series(dtype=object)
    if summary and len(ev):
        purchases = ev.loc[etype == "purchase"]
        key = (
            purchases["order_id"].astype("string").fillna(purchases["ts"].astype(str))
            if "order_id" in purchases.columns
            else purchases["ts"].astype(str)
        )
        grouped = purchases.assign(_order=key).groupby("user_id", sort=False)
        n_orders = grouped["_order"].nunique()
        last = ((cut - grouped["ts"].max()).dt.days).astype(int)
        first = ((cut - grouped["ts"].min()).dt.days).astype(int)
        header = (
            f"as of {cut:%Y-%m-%d}: "
            + n_orders.astype(str)
            + np.where(n_orders == 1, " order, last ", " orders, last ")
            + last.astype(str)
            + " days ago, first "
            + first.astype(str)
            + " days ago. "
        )

    # keep whole events while the running length fits
    lengths = line.str.len() + 2
    budget = max_chars - header.reindex(ev["user_id"]).fillna("").str.len().to_numpy()
    running = lengths.groupby(ev["user_id"], sort=False).cumsum().to_numpy()
    first_of_user = ~ev["user_id"].duplicated().to_numpy()
    keep = (running - 2 <= budget) | first_of_user
    kept = line[keep]
    joined = kept.groupby(ev["user_id"][keep], sort=False).agg("; ".join)
    if len(header):
        joined = header.reindex(joined.index).fillna("") + joined
    joined = joined.str.slice(0, max_chars)
    joined.index.name = "user_id"
    joined.name = "history"
    if users is not None:
        joined = joined.reindex(pd.Index([str(u) for u in users], name="user_id"))
        joined = joined.fillna("no purchases")
    return joined.astype(object)


# --------------------------------------------------------------------------------------------
# per-customer text features
# --------------------------------------------------------------------------------------------


class TextFeaturizer(BaseEstimator):
    """Per-customer text features for gradient boosting (columns ``text_*``).

    ``text_pc{k}``: the recency-weighted mean embedding of the items a customer bought before the
    cutoff (weight ``0.5 ** (age_days / half_life_days)`` per purchase line), projected on the
    principal components of the purchased-item embeddings of the *training* frames (NaN without
    any purchased item that has text). ``text_item_coverage``: share of purchase lines whose item
    has text. Review signals (0 or NaN without reviews): ``text_review_count``,
    ``text_rating_mean``, ``text_low_rating_share`` (rating <= 2) and ``text_sentiment_mean``
    (see :func:`review_sentiment`).

    Parameters
    ----------
    encoder : TextEncoder or str, optional
        The encoder or its name (default: the setting ``RETENTION_ENCODER``).
    n_components : int
        PCA components kept (at most the number of distinct training items).
    half_life_days : float
        Recency weighting of purchases.
    random_state : int
        Seed of the PCA solver.
    cache : EmbeddingCache, optional
        Embedding cache in the store (not pickled). Without it, a frame's
        ``extra["embedding_cache"]`` is used when it holds one.

    Attributes
    ----------
    encoder_ : TextEncoder
        The encoder used (resolved from ``encoder`` in :meth:`fit`).
    pca_ : sklearn.decomposition.PCA or None
        Fitted on the purchased-item embeddings of the training frames (None with fewer than
        two such items).
    item_coords_ : dict of str to np.ndarray
        PCA coordinates of the training items. Items first met in :meth:`transform` are
        projected there for that call only: transforming never changes the featurizer.
    feature_names_out_ : list of str

    Examples
    --------
    >>> feats = TextFeaturizer(n_components=8).fit(train_frames)  # doctest: +SKIP
    >>> feats.transform(test_frame).columns[:3].tolist()  # doctest: +SKIP
    ['text_pc0', 'text_pc1', 'text_pc2']
    """

    def __init__(
        self,
        encoder: TextEncoder | str | None = None,
        n_components: int = 16,
        half_life_days: float = 90.0,
        random_state: int = 0,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.encoder = encoder
        self.n_components = n_components
        self.half_life_days = half_life_days
        self.random_state = random_state
        self.cache = cache

    # -- pickling: drop the store connection, keep the learned state ---------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["cache"] = None
        return state

    def _cache(self, frames: Sequence[CutoffFrame]) -> EmbeddingCache | None:
        """The cache given, else one a frame carries in ``extra["embedding_cache"]``."""
        if self.cache is not None:
            return self.cache
        for frame in frames:
            found = frame.extra.get("embedding_cache") if frame.extra else None
            if isinstance(found, EmbeddingCache):
                return found
        return None

    def _encoder(self) -> TextEncoder:
        """The encoder resolved in :meth:`fit`."""
        self._check()
        enc: TextEncoder = self.encoder_
        return enc

    @staticmethod
    def _purchases(frame: CutoffFrame) -> pd.DataFrame:
        ev = frame.events
        if ev is None or not len(ev) or "item_id" not in ev.columns:
            return pd.DataFrame(columns=["user_id", "ts", "item_id"])
        mask = pd.to_datetime(ev["ts"]) < frame.cutoff
        if "event_type" in ev.columns:
            mask &= ev["event_type"].astype(str) == "purchase"
        out = ev.loc[mask & ev["item_id"].notna(), ["user_id", "ts", "item_id"]]
        return out.assign(user_id=out["user_id"].astype(str), item_id=out["item_id"].astype(str))

    def _new_item_coords(
        self, frames: Sequence[CutoffFrame], ids: set[str]
    ) -> dict[str, np.ndarray]:
        """PCA coordinates of the items of ``ids`` unknown to the fit (encoding only those).

        They are returned, not stored: transforming a frame never changes the featurizer.
        """
        new = sorted(i for i in ids if i not in self.item_coords_)
        if not new:
            return {}
        texts = pd.concat(
            [item_texts(f.items) for f in frames if f.items is not None and len(f.items)]
            or [pd.Series(dtype=object)]
        )
        texts = texts[~texts.index.duplicated(keep="last")]
        known = [i for i in new if i in texts.index]
        if not known:
            return {}
        vectors = self._encoder().encode(
            texts.loc[known].tolist(), cache=self._cache(frames), description="embedding items"
        )
        coords = self.pca_.transform(vectors).astype(np.float32)
        return dict(zip(known, coords, strict=True))

    def fit(self, frames: Sequence[CutoffFrame] | CutoffFrame) -> TextFeaturizer:
        """Fit the PCA on the embeddings of the items bought in the training ``frames``."""
        from sklearn.decomposition import PCA

        if isinstance(frames, CutoffFrame):
            frames = [frames]
        if not frames:
            raise ConfigError("TextFeaturizer.fit needs at least one training CutoffFrame.")
        n = self.n_components
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"n_components must be a positive integer; got {n!r}.")
        h = self.half_life_days
        if not (isinstance(h, int | float) and not isinstance(h, bool) and h > 0):
            raise ConfigError(f"half_life_days must be a positive number of days; got {h!r}.")
        enc = resolve_encoder(self.encoder)
        self.encoder_ = enc
        bought = set().union(*(set(self._purchases(f)["item_id"]) for f in frames))
        texts = pd.concat(
            [item_texts(f.items) for f in frames if f.items is not None and len(f.items)]
            or [pd.Series(dtype=object)]
        )
        texts = texts[~texts.index.duplicated(keep="last")]
        ids = sorted(i for i in bought if i in texts.index)
        self.n_components_ = 0
        self.item_coords_: dict[str, np.ndarray] = {}
        self.pca_: Any = None
        if len(ids) >= 2:
            vectors = enc.encode(
                texts.loc[ids].tolist(), cache=self._cache(frames), description="embedding items"
            )
            k = min(self.n_components, len(ids) - 1, vectors.shape[1])
            self.pca_ = PCA(n_components=k, random_state=self.random_state).fit(vectors)
            self.n_components_ = k
            coords = self.pca_.transform(vectors).astype(np.float32)
            self.item_coords_ = dict(zip(ids, coords, strict=True))
        self.encoder_name_ = enc.name
        self.feature_names_out_ = [f"text_pc{k}" for k in range(self.n_components_)] + [
            "text_item_coverage",
            "text_review_count",
            "text_rating_mean",
            "text_low_rating_share",
            "text_sentiment_mean",
        ]
        return self

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What :meth:`fit` learned, as data (``retention.models.save_model`` writes it): the
        encoder by name (its weights stay in its package), the PCA, and the training items'
        coordinates as an id list and a float32 matrix. The embedding cache is not state."""
        self._check()
        k = int(self.n_components_)
        ids = list(self.item_coords_)
        coords = (
            np.stack([self.item_coords_[i] for i in ids]).astype(np.float32)
            if ids
            else np.zeros((0, k), dtype=np.float32)
        )
        state = {
            "encoder_": self.encoder_,
            "encoder_name_": self.encoder_name_,
            "n_components_": k,
            "feature_names_out_": list(self.feature_names_out_),
        }
        parts: dict[str, Any] = {"item_ids": ids, "item_coords": coords}
        if self.pca_ is not None:
            parts["pca"] = self.pca_
        return state, parts

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        """Restore what :meth:`_get_state` returned (``retention.models.load_model``)."""
        encoder = state["encoder_"]
        ids = [str(i) for i in parts["item_ids"]]
        coords = np.asarray(parts["item_coords"], dtype=np.float32)
        if not isinstance(encoder, TextEncoder) or coords.shape[0] != len(ids):
            raise ModelError(
                f"The saved TextFeaturizer is inconsistent: encoder {type(encoder).__name__}, "
                f"{len(ids)} item ids for {coords.shape[0]} coordinate rows."
            )
        if encoder.name != state["encoder_name_"]:
            raise ConfigError(
                f"The saved TextFeaturizer was fitted with the encoder {state['encoder_name_']!r}"
                f", but {encoder.model_name!r} now resolves to {encoder.name!r}. Install the "
                "encoder it was trained with, or retrain."
            )
        self.encoder_ = encoder
        self.encoder_name_ = str(state["encoder_name_"])
        self.n_components_ = int(state["n_components_"])
        self.pca_ = parts.get("pca")
        self.item_coords_ = dict(zip(ids, coords, strict=True))
        self.feature_names_out_ = [str(c) for c in state["feature_names_out_"]]

    def get_feature_names_out(self) -> list[str]:
        """The columns :meth:`transform` returns."""
        self._check()
        return list(self.feature_names_out_)

    def _check(self) -> None:
        if getattr(self, "feature_names_out_", None) is None:
            raise NotFittedError(
                "This TextFeaturizer is not fitted yet. Call fit(train_frames) before transform."
            )

    def transform(self, frame: CutoffFrame) -> pd.DataFrame:
        """The ``text_*`` columns for every customer of ``frame`` (index ``frame.users``)."""
        self._check()
        users = pd.Index(frame.users.astype(str), name="user_id")
        out = pd.DataFrame(index=users)
        # purchased-item profile
        purchases = self._purchases(frame)
        purchases = purchases[purchases["user_id"].isin(users)]
        pcs = [f"text_pc{k}" for k in range(self.n_components_)]
        item_coords = self.item_coords_
        if self.pca_ is not None and len(purchases):
            new = self._new_item_coords([frame], set(purchases["item_id"]))
            item_coords = {**item_coords, **new} if new else item_coords
        if len(purchases):
            has = purchases["item_id"].isin(item_coords.keys())
            coverage = has.groupby(purchases["user_id"]).mean()
            out["text_item_coverage"] = coverage.reindex(users).fillna(0.0).to_numpy()
            for c in pcs:
                out[c] = np.nan
            if pcs and has.any():
                sub = purchases.loc[has]
                age = (frame.cutoff - pd.to_datetime(sub["ts"])).dt.total_seconds() / 86400.0
                w = np.power(0.5, age.to_numpy(dtype=float) / float(self.half_life_days))
                coords = np.stack([item_coords[i] for i in sub["item_id"]]).astype(float)
                weighted = pd.DataFrame(coords * w[:, None], columns=pcs)
                weighted["_w"] = w
                sums = weighted.groupby(sub["user_id"].to_numpy()).sum()
                means = sums[pcs].div(sums["_w"], axis=0)
                for c in pcs:
                    out[c] = means[c].reindex(users).to_numpy()
        else:
            out["text_item_coverage"] = 0.0
            for c in pcs:
                out[c] = np.nan
        # reviews
        ev = frame.events
        reviews = pd.DataFrame()
        if ev is not None and len(ev) and "event_type" in ev.columns:
            mask = (ev["event_type"].astype(str) == "review") & (
                pd.to_datetime(ev["ts"]) < frame.cutoff
            )
            reviews = ev.loc[mask]
            reviews = reviews[reviews["user_id"].astype(str).isin(users)]
        count = pd.Series(0.0, index=users)
        rating_mean = pd.Series(np.nan, index=users)
        low_share = pd.Series(np.nan, index=users)
        sentiment = pd.Series(np.nan, index=users)
        if len(reviews):
            uid = reviews["user_id"].astype(str).to_numpy()
            count = reviews.groupby(uid).size().astype(float).reindex(users).fillna(0.0)
            if "rating" in reviews.columns:
                rating = pd.to_numeric(reviews["rating"], errors="coerce")
                rating_mean = rating.groupby(uid).mean().reindex(users)
                low = (rating <= LOW_RATING).where(rating.notna())
                low_share = low.astype(float).groupby(uid).mean().reindex(users)
            if "text" in reviews.columns:
                text = reviews["text"].astype("string")
                has_text = (text.fillna("").str.strip() != "").to_numpy()
                if has_text.any():
                    score = review_sentiment(
                        text[has_text].astype(str).tolist(), self._encoder(), self._cache([frame])
                    )
                    sentiment = pd.Series(score).groupby(uid[has_text]).mean().reindex(users)
        out["text_review_count"] = count.to_numpy()
        out["text_rating_mean"] = rating_mean.to_numpy()
        out["text_low_rating_share"] = low_share.to_numpy()
        out["text_sentiment_mean"] = sentiment.to_numpy()
        out = out[self.feature_names_out_].astype(float)
        out.index = frame.users
        return out

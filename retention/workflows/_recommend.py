"""Recommendation workflow: what ``retention recommend`` (and the API) call.

:func:`recommend` fits a recommender on the purchases before a cutoff (or loads a saved one),
lists each asked customer's top ``k`` items with a reason in words, and with ``all_users`` writes
every customer's list to the store's ``recommendations`` table (and to a CSV or Parquet file).
Candidates are the items sold in a recent window before the cutoff, and only those the ``items``
table marks active or in stock when it has such a column. :func:`stored_recommendations` reads
a customer's latest stored list back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import Store
from retention.exceptions import ConfigError
from retention.features import to_cutoff
from retention.workflows._common import check_positive_int, default_cutoff, json_clean

__all__ = [
    "DEFAULT_RECOMMENDER",
    "RECOMMENDATIONS_TABLE",
    "RecommendReport",
    "RecommendRequest",
    "recommend",
    "stored_recommendations",
]

#: the recommender ``retention recommend`` fits when none is named: first-order item transitions
#: with a popularity fallback (seconds to fit, and its reasons name the item bought before)
DEFAULT_RECOMMENDER = "transition"
RECOMMENDATIONS_TABLE = "recommendations"
#: columns of ``items`` that, when a store has one, say whether an item can be recommended
_ACTIVE_COLUMNS = ("active", "in_stock", "is_active", "available")
#: recommenders whose choices need validation items (their epoch count, their weights)
_CHOOSE_ON_VALIDATION = ("sasrec", "blend")


@dataclass(frozen=True)
class RecommendRequest:
    """Which customers get recommendations, from which recommender, at which cutoff.

    Attributes
    ----------
    users : tuple of str
        Customers to list (empty with ``all_users``).
    all_users : bool
        Every customer with an event before the cutoff; the lists go to the store's
        ``recommendations`` table.
    k : int
        Items per customer.
    cutoff : pd.Timestamp or None
        Learn from events before it (default: the date of the last purchase).
    recommender : str
        Registry name of the recommender to fit (ignored with ``model_path``).
    model_path : Path or None
        A recommender saved earlier (``save_model``), used instead of fitting one.
    save_model : Path or None
        Save the fitted recommender there.
    exclude_seen : bool
        Leave out items the customer already bought (False allows repeat purchases).
    candidate_window_days : int or None
        Only items sold in the last this many days before the cutoff may be recommended (None:
        the whole catalogue).
    popularity_window_days : int or None
        The window of the popularity fallback.
    event_types : tuple of str
        The events that make the sequences.
    out : Path or None
        Also write the rows to this ``.csv`` or ``.parquet`` file.
    params : dict
        Hyper-parameters of the recommender.
    """

    users: tuple[str, ...] = ()
    all_users: bool = False
    k: int = 10
    cutoff: pd.Timestamp | None = None
    recommender: str = DEFAULT_RECOMMENDER
    model_path: Path | None = None
    save_model: Path | None = None
    exclude_seen: bool = True
    candidate_window_days: int | None = 90
    popularity_window_days: int | None = 30
    event_types: tuple[str, ...] = ("purchase",)
    out: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from retention.strategies import RECOMMENDER_NAMES

        users = (self.users,) if isinstance(self.users, str) else tuple(self.users)
        users = tuple(str(u).strip() for u in users)
        if any(not u for u in users):
            raise ConfigError("A customer id is empty; pass --user ID with a non-empty id.")
        object.__setattr__(self, "users", users)
        if bool(users) == bool(self.all_users):
            raise ConfigError(
                "Say whom to recommend for: pass --user ID (one or more) or --all, not both "
                f"or neither; got users {list(users)!r} and all={self.all_users!r}."
            )
        object.__setattr__(self, "k", check_positive_int(self.k, "k"))
        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        if self.recommender not in RECOMMENDER_NAMES:
            raise ConfigError(
                f"Unknown recommender {self.recommender!r}. Choose from: "
                f"{', '.join(RECOMMENDER_NAMES)}."
            )
        for name in ("candidate_window_days", "popularity_window_days"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_positive_int(value, name))
        for name in ("model_path", "save_model"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if self.out is not None:
            out = Path(self.out)
            if out.suffix.lower() not in {".csv", ".parquet"}:
                raise ConfigError(
                    f"Cannot tell the format of {out}: use a .csv or .parquet file name for --out."
                )
            object.__setattr__(self, "out", out)
        types = (
            (self.event_types,) if isinstance(self.event_types, str) else tuple(self.event_types)
        )
        if not types or any(not isinstance(t, str) or not t for t in types):
            raise ConfigError(f"event_types must name event types; got {self.event_types!r}.")
        object.__setattr__(self, "event_types", types)
        object.__setattr__(self, "params", dict(self.params or {}))


@dataclass(frozen=True)
class RecommendReport:
    """What :func:`recommend` listed (and wrote).

    Attributes
    ----------
    recommendations : pd.DataFrame
        ``user_id, rank, item_id, title, score, reason, known``.
    cutoff : pd.Timestamp
    recommender : str
    model_version : str
        The recommender's id (the digest of what it learned, or the loaded artifact's id).
    n_users : int
        Customers listed.
    n_new_users : int
        Of those, customers the recommender had no history for (popular items).
    n_candidates : int
        Items that could be recommended.
    table : str or None
        The store table written (``--all``).
    out : Path or None
    saved_model : Path or None
    seconds : float
    """

    recommendations: pd.DataFrame
    cutoff: pd.Timestamp
    recommender: str
    model_version: str
    n_users: int
    n_new_users: int
    n_candidates: int
    table: str | None = None
    out: Path | None = None
    saved_model: Path | None = None
    seconds: float = 0.0

    def to_dict(self, *, rows: bool | None = None) -> dict[str, Any]:
        """JSON-ready: the summary, and the rows when few customers were listed (or ``rows``)."""
        show = rows if rows is not None else self.n_users <= 100
        payload: dict[str, Any] = {
            "cutoff": self.cutoff,
            "recommender": self.recommender,
            "model_version": self.model_version,
            "n_users": self.n_users,
            "n_new_users": self.n_new_users,
            "n_candidates": self.n_candidates,
            "n_rows": len(self.recommendations),
            "table": self.table,
            "out": None if self.out is None else str(self.out),
            "saved_model": None if self.saved_model is None else str(self.saved_model),
            "seconds": round(self.seconds, 3),
        }
        if show:
            payload["recommendations"] = self.recommendations.to_dict(orient="records")
        return json_clean(payload)


def _candidates(
    events: pd.DataFrame, items: pd.DataFrame, cutoff: pd.Timestamp, window: int | None
) -> list[str] | None:
    """Items sold in the window before the cutoff and active where the items table says so."""
    allowed: set[str] | None = None
    if window is not None:
        recent = events[events["ts"] >= cutoff - pd.Timedelta(days=window)]
        allowed = set(recent["item_id"].dropna().astype(str))
    active = next((c for c in _ACTIVE_COLUMNS if c in items.columns), None)
    if active is not None:
        flag = items[active].astype(str).str.strip().str.lower()
        off = set(items.loc[flag.isin({"0", "false", "no", "n", "f"}), "item_id"].astype(str))
        if allowed is None:
            allowed = set(items["item_id"].astype(str)) | set(
                events["item_id"].dropna().astype(str)
            )
        allowed -= off
    return None if allowed is None else sorted(allowed)


def recommend(
    store: Store, request: RecommendRequest, *, progress: Progress | None = None
) -> RecommendReport:
    """Recommend ``k`` items to each asked customer (or every customer, into the store).

    Parameters
    ----------
    store : Store
        Open; read-only is enough unless ``request.all_users`` (which writes the
        ``recommendations`` table).
    request : RecommendRequest
    progress : Progress, optional
        Where to report progress (default: nowhere).

    Returns
    -------
    RecommendReport
    """
    from retention.strategies import (
        ItemSequences,
        get_recommender,
        load_recommender,
        read_recommender_metadata,
        recommender_digest,
        save_recommender,
    )

    t0 = time.perf_counter()
    progress = as_progress(progress)
    if request.all_users:
        store.check_writable("write the recommendations table")
    at = default_cutoff(store, request.cutoff)
    with progress.stage("reading purchases"):
        events = store.events_df(before=at, columns=("user_id", "ts", "event_type", "item_id"))
        events = events[events["event_type"].isin(list(request.event_types))]
        items = store.table_df("items")
    if events["item_id"].notna().sum() == 0:
        raise ConfigError(
            f"No {'/'.join(request.event_types)} event with an item before {at:%Y-%m-%d} in "
            f"{store.path}: recommendations need item ids (map item_id when ingesting), or "
            "choose a later --cutoff."
        )
    if request.model_path is not None:
        meta = read_recommender_metadata(request.model_path)
        model = load_recommender(request.model_path)
        version = str(meta.get("model_id"))
        name = str(meta.get("recommender", type(model).__name__))
        saved_cutoff = meta.get("cutoff")
        if saved_cutoff is not None and pd.Timestamp(saved_cutoff) != at:
            raise ConfigError(
                f"The recommender in {request.model_path} learned from events before "
                f"{pd.Timestamp(saved_cutoff):%Y-%m-%d}, not {at:%Y-%m-%d}: pass --cutoff "
                f"{pd.Timestamp(saved_cutoff):%Y-%m-%d}, or fit a new one."
            )
    else:
        name = request.recommender
        params = {
            "window_days": request.popularity_window_days,
            "exclude_seen": request.exclude_seen,
            **request.params,
        }
        if name == "text":
            from retention.features import EmbeddingCache

            params.setdefault("cache", EmbeddingCache(store))
        model = get_recommender(name, **params)
        vocab = pd.Index(
            list(
                dict.fromkeys(
                    [
                        *events["item_id"].dropna().astype(str).value_counts().index,
                        *items["item_id"].astype(str),
                    ]
                )
            ),
            dtype=object,
        )
        sequences = ItemSequences.from_events(events, event_types=None, items=vocab)
        with progress.stage(f"fitting {name} on {len(sequences):,} customers"):
            if name in _CHOOSE_ON_VALIDATION:
                # epochs (SASRec) and weights (blend) are chosen on each customer's last item,
                # then the model is refitted on everything with those choices
                shorter, last = sequences.drop_last(1)
                search = model.fit(shorter, last, items=items)
                model = type(search)(**search.frozen_params())
            model.fit(sequences, items=items)
        version = recommender_digest(model)
    saved = None
    if request.save_model is not None and request.model_path is None:
        saved = save_recommender(
            model,
            request.save_model,
            {"cutoff": at, "store": str(store.path), "event_types": list(request.event_types)},
        )
    users = list(model.users_) if request.all_users else list(request.users)
    candidates = _candidates(events, items, at, request.candidate_window_days)
    known = model.users_.get_indexer(pd.Index(users, dtype=object)) >= 0
    frames = []
    with progress.task(f"recommending for {len(users):,} customers", total=len(users)) as task:
        for start in range(0, len(users), 2048):
            block = users[start : start + 2048]
            frames.append(
                model.recommend(
                    block, request.k, candidates=candidates, exclude_seen=request.exclude_seen
                )
            )
            task.advance(len(block))
    recs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    titles = items.assign(item_id=items["item_id"].astype(str)).drop_duplicates("item_id")
    title_of = titles.set_index("item_id")["title"] if "title" in titles.columns else None
    recs["title"] = recs["item_id"].map(title_of).astype(object) if title_of is not None else None
    recs["title"] = recs["title"].where(recs["title"].notna(), None)
    known_set = {u for u, k in zip(users, known, strict=True) if k}
    recs["known"] = recs["user_id"].isin(known_set)
    recs = recs[["user_id", "rank", "item_id", "title", "score", "reason", "known"]]
    table = None
    if request.all_users:
        rows = recs[["user_id", "rank", "item_id", "score", "reason"]].copy()
        rows["rank"] = rows["rank"].astype(np.int32)
        rows["recommender"] = name
        rows["cutoff"] = pd.Series([at] * len(rows), dtype="datetime64[ns]")
        rows["model_version"] = version
        now = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
        rows["created_at"] = pd.Series([now] * len(rows), dtype="datetime64[ns]")
        with progress.stage(f"writing {len(rows):,} rows"), store.transaction():
            store.replace_rows(
                RECOMMENDATIONS_TABLE, rows, {"cutoff": at, "model_version": version}
            )
        table = RECOMMENDATIONS_TABLE
    if request.out is not None:
        try:
            request.out.parent.mkdir(parents=True, exist_ok=True)
            if request.out.suffix.lower() == ".csv":
                recs.to_csv(request.out, index=False)
            else:
                recs.to_parquet(request.out, index=False)
        except OSError as exc:
            raise ConfigError(
                f"Cannot write {request.out}: {exc.strerror or exc}. Pass another --out."
            ) from exc
    return RecommendReport(
        recommendations=recs.reset_index(drop=True),
        cutoff=at,
        recommender=name,
        model_version=version,
        n_users=len(users),
        n_new_users=int((~known).sum()),
        n_candidates=len(candidates) if candidates is not None else len(model.items_),
        table=table,
        out=request.out,
        saved_model=saved,
        seconds=time.perf_counter() - t0,
    )


def stored_recommendations(store: Store, user_id: str, k: int | None = None) -> pd.DataFrame:
    """A customer's latest stored list from the ``recommendations`` table (newest cutoff, then
    newest write), best first; empty when there is none.

    Returns
    -------
    pd.DataFrame
        The table's columns.
    """
    k = None if k is None else check_positive_int(k, "k")
    table = store.ibis().table(RECOMMENDATIONS_TABLE)
    mine = table.filter(table.user_id == str(user_id))
    latest = mine.order_by([mine.cutoff.desc(), mine.created_at.desc()]).limit(1).execute()
    if latest.empty:
        return latest
    cutoff, created = latest["cutoff"].iloc[0], latest["created_at"].iloc[0]
    same = mine.filter((mine.cutoff == cutoff) & (mine.created_at == created))
    df = same.order_by(same["rank"]).execute()
    return df.head(k) if k is not None else df

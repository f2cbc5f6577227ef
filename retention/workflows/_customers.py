"""The customer view: what the service and the dashboard show of one customer, and of many.

:func:`customer_view` gathers, from what the store already holds (no model runs, no feature is
built): the customer's latest scores and reasons (``retention score``), activity (events), and
the sections of the later stages: recommendations, the planned action, the loyalty tier and
points. A stage that has not written its table yet gives ``None`` (or an empty list) and a note
saying what to run; nothing here needs to change when it lands, provided its table is keyed by
``user_id`` (see :data:`SECTIONS`; a stage whose table has another shape registers its own
reader with :func:`register_section`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from retention.data import TABLE_COLUMNS, Store
from retention.exceptions import ConfigError, NotFoundError
from retention.workflows._common import check_positive_int, json_clean

__all__ = [
    "MAX_BATCH_IDS",
    "SECTIONS",
    "CustomerIndex",
    "CustomerRequest",
    "CustomerView",
    "PlanPage",
    "ScoreBatch",
    "Section",
    "check_user_id",
    "current_run",
    "customer_view",
    "plan_page",
    "recommendations_for",
    "register_section",
    "stored_scores",
]

#: most customer ids one ``POST /score`` may ask for
MAX_BATCH_IDS = 1000
_MAX_ID = 256
#: a customer's score fields: the ``scores`` table's columns but the id
_SCORE_FIELDS = tuple(name for name, _ in TABLE_COLUMNS["scores"] if name != "user_id")


_REASON_FIELDS = ("feature", "family", "contribution", "value", "typical", "text")


def check_user_id(value: Any, name: str = "user_id") -> str:
    """A customer id: a non-empty string of at most 256 printable characters."""
    uid = str(value).strip() if value is not None else ""
    if not uid or len(uid) > _MAX_ID or not uid.isprintable():
        raise ConfigError(
            f"{name} must be 1 to {_MAX_ID} printable characters; got {len(uid)} character(s)."
        )
    return uid


# ------------------------------------------------------------------------------------ sections
@dataclass(frozen=True)
class Section:
    """How the customer view reads one later stage's table.

    Only the stage's current run is shown: the rows of the newest ``cutoff``, and among them of
    the run (``run_column``) written last (``latest_by``); older runs stay in the table.

    Attributes
    ----------
    table : str
        The table the stage writes (keyed by ``user_id``).
    many : bool
        Several rows per customer (recommendations) or one (the plan, the tier).
    note : str
        Shown while the table is empty (the stage has not run).
    order_by : str or None
        Column to sort a customer's rows by (``rank``).
    run_column : str or None
        The column naming a run (``model_version``, ``plan_id``).
    latest_by : str or None
        The column telling which run is the latest (``created_at``, ``as_of``).
    hide : tuple of str
        Columns not shown (keys repeated on every row).
    reader : callable, optional
        ``reader(store, user_id, k) -> rows`` replacing the generic read.
    """

    table: str
    many: bool
    note: str
    order_by: str | None = None
    run_column: str | None = None
    latest_by: str | None = None
    hide: tuple[str, ...] = ()
    reader: Callable[[Store, str, int], list[dict[str, Any]]] | None = None


#: the later stages the customer view shows (name -> how to read it), in the shape of the tables
#: their migrations declare; a section whose table is missing or empty is left empty, with a note
SECTIONS: dict[str, Section] = {
    "recommendations": Section(
        table="recommendations",
        many=True,
        order_by="rank",
        run_column="model_version",
        latest_by="created_at",
        hide=("cutoff", "model_version", "created_at"),
        note="no recommendations yet: run `retention recommend --all`",
    ),
    "planned_action": Section(
        table="plan",
        many=False,
        run_column="plan_id",
        latest_by="created_at",
        note="no plan yet: run `retention plan --budget AMOUNT`",
    ),
    "loyalty": Section(
        table="loyalty",
        many=False,
        order_by="program",
        note="no loyalty tiers yet: run the loyalty programme (`retention loyalty`)",
    ),
}


def register_section(name: str, section: Section) -> None:
    """Add or replace a section of the customer view (a stage whose table is not the generic
    ``user_id``-keyed shape passes its own ``reader``)."""
    if not isinstance(section, Section):
        raise ConfigError(f"section must be a Section; got {type(section).__name__}.")
    SECTIONS[str(name)] = section


def _current_run(store: Store, section: Section) -> dict[str, Any] | None:
    """``column = value`` conditions of a section's current run (``{}``: the whole table), or
    None when the table is missing, not keyed by ``user_id``, or empty."""
    if not store.has_table(section.table):
        return None
    cols = {c for c, _ in store.columns(section.table)}
    if "user_id" not in cols:
        return None
    keys = [c for c in ("cutoff", section.latest_by) if c and c in cols]
    head = store.read_rows(section.table, order_by=keys, descending=True, limit=1)
    if head.empty:
        return None
    where: dict[str, Any] = {}
    if "cutoff" in cols and pd.notna(head["cutoff"].iloc[0]):
        where["cutoff"] = pd.Timestamp(head["cutoff"].iloc[0])
    if section.run_column and section.run_column in cols:
        where[section.run_column] = head[section.run_column].iloc[0]
    return where


def _section_rows(df: pd.DataFrame, section: Section, k: int) -> list[dict[str, Any]]:
    shown = df.drop(columns=[c for c in ("user_id", *section.hide) if c in df.columns])
    rows: list[dict[str, Any]] = json_clean(shown.to_dict("records"))
    return rows[:k] if section.many else rows[:1]


def _read_section(store: Store, section: Section, uid: str, k: int) -> list[dict[str, Any]] | None:
    """The customer's rows of a section's current run, or None when the stage has no run."""
    if section.reader is not None:
        return section.reader(store, uid, k) if store.has_table(section.table) else None
    where = _current_run(store, section)
    if where is None:
        return None
    cols = {c for c, _ in store.columns(section.table)}
    order = [section.order_by] if section.order_by in cols else []
    df = store.read_rows(section.table, where={**where, "user_id": uid}, order_by=order)
    return _section_rows(df, section, k)


# ---------------------------------------------------------------------------------- the view
@dataclass(frozen=True)
class CustomerRequest:
    """Whose view to build.

    Attributes
    ----------
    user_id : str
    model_version : str or None
        The model whose scores to show; default: the one that scored the customer last at the
        newest cutoff.
    k : int
        Recommendations to show.
    """

    user_id: str
    model_version: str | None = None
    k: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_id", check_user_id(self.user_id))
        if self.model_version is not None:
            object.__setattr__(
                self, "model_version", check_user_id(self.model_version, "model_version")
            )
        k = check_positive_int(self.k, "k")
        if k > 100:
            raise ConfigError(f"k must be at most 100; got {k}.")
        object.__setattr__(self, "k", k)


@dataclass
class CustomerView:
    """One customer as the service shows them.

    Attributes
    ----------
    user_id : str
    scores : dict or None
        ``p_retained, p_alive, expected_purchases, clv, risk_band, cutoff, horizon_days,
        model_version, scored_at`` of the latest scoring; None before ``retention score``.
    reasons : dict
        ``{"churn": [...], "retention": [...]}`` stored beside those scores.
    activity : dict
        Events, purchases, orders, revenue, first and last event of the customer.
    tier : str or None
        Loyalty tier; ``points`` the customer's points (the loyalty stage).
    recommendations : list of dict
        Items to show, best first (the recommendation stage).
    planned_action : dict or None
        What the plan does for the customer (the plan stage).
    notes : dict of str to str
        Per part left empty, why, and what to run.
    """

    user_id: str
    scores: dict[str, Any] | None
    reasons: dict[str, list[dict[str, Any]]]
    activity: dict[str, Any]
    tier: str | None = None
    points: float | None = None
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    planned_action: dict[str, Any] | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``GET /customers/{id}``)."""
        return json_clean(
            {
                "user_id": self.user_id,
                "scores": self.scores,
                "reasons": self.reasons,
                "activity": self.activity,
                "tier": self.tier,
                "points": self.points,
                "recommendations": self.recommendations,
                "planned_action": self.planned_action,
                "notes": self.notes,
            }
        )


def _default_version(store: Store) -> str | None:
    """The production model of the registry when it scored anyone, else the model that scored
    last at the newest cutoff of the ``scores`` table."""
    prod = store.production_model_id()
    if prod is not None and store.count_rows("scores", where={"model_version": prod}):
        return prod
    df = store.read_rows("scores", order_by=["cutoff", "scored_at"], descending=True, limit=1)
    return None if df.empty else str(df["model_version"].iloc[0])


def _scores_of(store: Store, version: str) -> pd.DataFrame:
    """The latest scores of one model, one row per customer, indexed by ``user_id``."""
    df = store.read_scores(model_version=version, latest=True)
    return df.drop_duplicates("user_id").set_index("user_id")


def _score_dict(row: Any) -> dict[str, Any]:
    return json_clean({k: row.get(k) for k in _SCORE_FIELDS})


def _reason_dict(rows: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"churn": [], "retention": []}
    for rec in rows.sort_values(["direction", "rank"]).to_dict("records"):
        out.setdefault(str(rec["direction"]), []).append(
            {
                k: rec.get(k)
                for k in ("feature", "family", "contribution", "value", "typical", "text")
            }
        )
    return json_clean(out)


def _activity_frame(store: Store, user_id: str | None = None) -> pd.DataFrame:
    """Per customer: events, purchases, orders, revenue, first and last event, last purchase."""
    t = store.ibis().table("events")
    if user_id is not None:
        t = t.filter(t.user_id == user_id)
    buy = t.event_type == "purchase"
    agg = t.group_by("user_id").aggregate(
        events=t.count(),
        purchases=t.count(where=buy),
        # lines without an order id count as an order each (CDNOW has none)
        orders=t.order_id.nunique(where=buy) + t.count(where=buy & t.order_id.isnull()),
        revenue=t.amount.cast("float64").sum(where=buy),
        first_event=t.ts.min(),
        last_event=t.ts.max(),
        last_purchase=t.ts.max(where=buy),
    )
    return agg.to_pandas().set_index("user_id")


_NO_ACTIVITY = {
    "events": 0,
    "purchases": 0,
    "orders": 0,
    "revenue": 0.0,
    "first_event": None,
    "last_event": None,
    "last_purchase": None,
}


def _activity_dict(df: pd.DataFrame, uid: str) -> dict[str, Any]:
    if uid not in df.index:
        return dict(_NO_ACTIVITY)
    row = df.loc[uid]
    out = {k: row.get(k) for k in _NO_ACTIVITY}
    out["revenue"] = round(float(out["revenue"] or 0.0), 2)
    return json_clean(out)


class CustomerIndex:
    """What :func:`customer_view` reads, held in memory: a lookup then runs no query.

    Built from the store in one pass (the default model's latest scores and reasons, every
    customer's activity, the later stages' tables), and valid until the store changes: the
    service builds a new one after a write, and keeps answering from the old one meanwhile.
    Memory grows with the customers (about 2 KB each with reasons and ten recommendations).

    Parameters
    ----------
    store : Store
        Read through once, in the constructor.
    max_section_rows : int
        A later stage's table with more rows is not held, but queried per lookup.

    Attributes
    ----------
    model_version : str or None
        The model whose scores are held (the one that scored last at the newest cutoff).
    built_at : float
        ``time.monotonic()`` when the index was built.
    """

    def __init__(self, store: Store, *, max_section_rows: int = 2_000_000) -> None:
        self.model_version = _default_version(store)
        scores = (
            _scores_of(store, self.model_version)
            if self.model_version is not None
            else pd.DataFrame()
        )
        # JSON-ready per customer, built once (a lookup then copies, never converts)
        self._scores: dict[str, dict[str, Any]] = {}
        self._reasons: dict[str, dict[str, list[dict[str, Any]]]] = {}
        if not scores.empty:
            cols = [c for c in _SCORE_FIELDS if c in scores.columns]
            records = json_clean(scores[cols].to_dict("records"))
            self._scores = dict(zip(scores.index.astype(str), records, strict=True))
            cutoff = pd.Timestamp(scores["cutoff"].iloc[0])
            reasons = store.read_reasons(model_version=self.model_version, cutoff=cutoff)
            keep = ["user_id", "direction", *_REASON_FIELDS]
            for rec in json_clean(reasons[keep].to_dict("records")):
                mine = self._reasons.setdefault(str(rec.pop("user_id")), {})
                mine.setdefault(str(rec.pop("direction")), []).append(rec)
        activity = _activity_frame(store)
        self._activity: dict[str, dict[str, Any]] = {}
        if not activity.empty:
            records = json_clean(activity[list(_NO_ACTIVITY)].to_dict("records"))
            for rec in records:
                rec["revenue"] = round(float(rec["revenue"] or 0.0), 2)
            self._activity = dict(zip(activity.index.astype(str), records, strict=True))
        self.tables = set(store.tables())
        self.sections: dict[str, dict[str, list[dict[str, Any]]] | None] = {}
        for name, section in SECTIONS.items():
            if section.table not in self.tables or section.reader is not None:
                continue
            where = _current_run(store, section)
            if where is None:
                self.tables.discard(section.table)  # no run yet: the note is shown
                continue
            if store.count_rows(section.table, where=where) > max_section_rows:
                self.sections[name] = None  # read per lookup
                continue
            have = {c for c, _ in store.columns(section.table)}
            order = [section.order_by] if section.order_by in have else []
            df = store.read_rows(section.table, where=where, order_by=order)
            users = df["user_id"].astype(str).tolist()
            shown = df.drop(columns=[c for c in ("user_id", *section.hide) if c in df.columns])
            held: dict[str, list[dict[str, Any]]] = {}
            for uid, rec in zip(users, json_clean(shown.to_dict("records")), strict=True):
                held.setdefault(uid, []).append(rec)
            self.sections[name] = held
        self.built_at = time.monotonic()
        self.activity_stale = False

    @property
    def n_customers(self) -> int:
        """Customers with scores or events in the index."""
        return len(self._scores.keys() | self._activity.keys())

    def stale_activity(self) -> CustomerIndex:
        """This index, with its activity marked out of date (events were added since it was
        built): :func:`customer_view` then reads the customer's activity from the store."""
        other = copy.copy(self)
        other.activity_stale = True
        return other

    def score(self, uid: str) -> dict[str, Any] | None:
        """The customer's held scores, or None."""
        found = self._scores.get(uid)
        return None if found is None else dict(found)

    def scores_of(self, uids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The held scores of those of ``uids`` that have some."""
        return {u: dict(self._scores[u]) for u in uids if u in self._scores}

    def activity_of(self, uid: str) -> dict[str, Any]:
        """The customer's held activity (zeros when they have no event)."""
        return dict(self._activity.get(uid, _NO_ACTIVITY))

    def reasons_of(self, uid: str) -> dict[str, list[dict[str, Any]]] | None:
        """The customer's held reasons, or None when none are stored."""
        found = self._reasons.get(uid)
        if found is None:
            return None
        return {
            "churn": [dict(r) for r in found.get("churn", [])],
            "retention": [dict(r) for r in found.get("retention", [])],
        }

    def section(
        self, store: Store, name: str, section: Section, uid: str, k: int
    ) -> list[dict[str, Any]] | None:
        """The customer's rows of a later stage's table (None: the stage has no run)."""
        if section.table not in self.tables:
            return None
        held = self.sections.get(name)
        if held is None:
            return _read_section(store, section, uid, k)
        rows = [dict(r) for r in held.get(uid, [])]
        return rows[:k] if section.many else rows[:1]


def customer_view(
    store: Store, request: CustomerRequest, *, index: CustomerIndex | None = None
) -> CustomerView:
    """Everything the store holds about one customer (see the module docstring).

    Parameters
    ----------
    store : Store
        An open store (read-only is enough).
    request : CustomerRequest
    index : CustomerIndex, optional
        Answer from this index (a service keeps one) instead of querying the store; used when
        the request asks for no other model than the index's.

    Returns
    -------
    CustomerView

    Raises
    ------
    NotFoundError
        The store has neither events nor scores for the customer.
    """
    uid = request.user_id
    if index is not None and request.model_version not in (None, index.model_version):
        index = None
    if index is not None:
        scores = index.score(uid)
        if index.activity_stale:
            activity = _activity_dict(_activity_frame(store, uid), uid)
        else:
            activity = index.activity_of(uid)
    else:
        version = request.model_version or _default_version(store)
        scores = None
        if version is not None:
            found = store.read_scores(user_id=uid, model_version=version, latest=True)
            scores = None if found.empty else _score_dict(found.iloc[0])
        activity = _activity_dict(_activity_frame(store, uid), uid)
    if scores is None and not activity["events"]:
        raise NotFoundError(
            "No customer of that id in this store (no events, no scores): check the id."
        )
    notes: dict[str, str] = {}
    reasons: dict[str, list[dict[str, Any]]] | None = {"churn": [], "retention": []}
    if scores is not None:  # the registry stage of the model that scored (issue 16)
        scores = {**scores, "model_stage": store.model_stage(str(scores["model_version"]))}
    if scores is None:
        notes["scores"] = (
            "not scored yet: run `retention score` (or POST /jobs/score) after training a model"
        )
    else:
        if index is not None:
            reasons = index.reasons_of(uid)
        else:
            table = store.read_reasons(
                user_id=uid,
                model_version=str(scores["model_version"]),
                cutoff=pd.Timestamp(scores["cutoff"]),
            )
            reasons = None if table.empty else _reason_dict(table)
        if reasons is None:
            reasons = {"churn": [], "retention": []}
            notes["reasons"] = (
                "no reasons stored for this model: its kind gives none (BTYD), or it was scored "
                "before reasons were stored"
            )
    shown = reasons if reasons is not None else {"churn": [], "retention": []}
    view = CustomerView(user_id=uid, scores=scores, reasons=shown, activity=activity)
    for name, section in SECTIONS.items():
        if index is not None:
            rows = index.section(store, name, section, uid, request.k)
        else:
            rows = _read_section(store, section, uid, request.k)
        if rows is None:
            notes[name] = section.note
            continue
        if name == "recommendations":
            view.recommendations = rows
            if not rows:
                notes[name] = "the latest recommendation run has none for this customer"
        elif name == "planned_action":
            view.planned_action = rows[0] if rows else None
            if not rows:
                notes[name] = "the plan has no action for this customer"
        elif name == "loyalty":
            row = rows[0] if rows else {}
            if not rows:
                notes[name] = "the loyalty programme has no tier for this customer"
            tier = row.get("tier")
            points = row.get("points")
            view.tier = None if tier is None else str(tier)
            view.points = None if points is None else float(points)
    view.notes = notes
    return view


def recommendations_for(
    store: Store, user_id: str, k: int = 10, *, index: CustomerIndex | None = None
) -> tuple[list[dict[str, Any]], str]:
    """The stored recommendations of one customer (best first) and a note ('' when there are
    some, else why not); from ``index`` when one is given."""
    uid = check_user_id(user_id)
    k = check_positive_int(k, "k")
    if k > 100:
        raise ConfigError(f"k must be at most 100; got {k}.")
    section = SECTIONS["recommendations"]
    if index is not None:
        rows = index.section(store, "recommendations", section, uid, k)
    else:
        rows = _read_section(store, section, uid, k)
    if rows is None:
        return [], section.note
    return rows, "" if rows else "no recommendations stored for this customer"


# ---------------------------------------------------------------------------- stored scores
@dataclass
class ScoreBatch:
    """Stored scores of a batch of customers (``POST /score``)."""

    scores: list[dict[str, Any]]
    missing: list[str]
    model_version: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return json_clean(
            {"scores": self.scores, "missing": self.missing, "model_version": self.model_version}
        )


def stored_scores(
    store: Store,
    user_ids: Sequence[str],
    *,
    model_version: str | None = None,
    index: CustomerIndex | None = None,
) -> ScoreBatch:
    """The latest stored scores of each customer of ``user_ids`` (at most
    :data:`MAX_BATCH_IDS`), in the order asked; ids without scores are listed in ``missing``.

    Scores come from one model: ``model_version``, or the one that scored last at the newest
    cutoff. With an ``index`` of that model, no query runs.
    """
    ids = [check_user_id(u, f"user_ids[{i}]") for i, u in enumerate(user_ids)]
    if not ids:
        raise ConfigError("user_ids is empty: pass at least one customer id.")
    if len(ids) > MAX_BATCH_IDS:
        raise ConfigError(
            f"user_ids holds {len(ids)} ids; ask for at most {MAX_BATCH_IDS} per request."
        )
    wanted = list(dict.fromkeys(ids))
    if index is not None and model_version in (None, index.model_version):
        version, found = index.model_version, index.scores_of(wanted)
    else:
        version = model_version if model_version is not None else _default_version(store)
        found = {}
        if version is not None:
            df = _scores_of(store, version)
            found = {u: _score_dict(df.loc[u]) for u in wanted if u in df.index}
    if version is None:
        return ScoreBatch(scores=[], missing=wanted, model_version=None)
    out = [{"user_id": u, **found[u]} for u in wanted if u in found]
    missing = [u for u in wanted if u not in found]
    return ScoreBatch(scores=json_clean(out), missing=missing, model_version=version)


# ------------------------------------------------------------------------------------ the plan
@dataclass
class PlanPage:
    """One page of the plan (``GET /plan``)."""

    rows: list[dict[str, Any]]
    page: int
    per_page: int
    total: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return json_clean(
            {
                "rows": self.rows,
                "page": self.page,
                "per_page": self.per_page,
                "total": self.total,
                "pages": -(-self.total // self.per_page) if self.per_page else 0,
                "note": self.note,
            }
        )


def plan_page(store: Store, *, page: int = 1, per_page: int = 50) -> PlanPage:
    """Rows ``(page - 1) * per_page ..`` of the plan's current run (by ``user_id``), or none
    with a note while the plan stage has not run."""
    page = check_positive_int(page, "page")
    per_page = check_positive_int(per_page, "per_page")
    if per_page > 500:
        raise ConfigError(f"per_page must be at most 500; got {per_page}.")
    section = SECTIONS["planned_action"]
    where = _current_run(store, section)
    if where is None:
        return PlanPage(rows=[], page=page, per_page=per_page, total=0, note=section.note)
    total = store.count_rows(section.table, where=where)
    df = store.read_rows(
        section.table,
        where=where,
        order_by=["user_id"],
        limit=per_page,
        offset=(page - 1) * per_page,
    )
    return PlanPage(
        rows=json_clean(df.to_dict("records")), page=page, per_page=per_page, total=total
    )


def current_run(store: Store, name: str) -> dict[str, Any] | None:
    """``column = value`` conditions of the current run of section ``name`` of
    :data:`SECTIONS` (the rows the service shows), or None when the stage has no run."""
    return _current_run(store, SECTIONS[name])

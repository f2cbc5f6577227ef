"""Point-in-time customer features at a cutoff, defined once in Ibis.

Every feature of a customer at cutoff ``c`` is computed from events with ``ts < c`` only, so
adding, deleting or changing events at or after ``c`` changes nothing (a property test checks
it). The heavy lifting (scans, group-bys, windows) is one Ibis expression that runs on DuckDB or
Spark; the engine returns per-customer integer counts, integer cents, timestamps and dates, and
the final ratios and day counts are taken in pandas on one row per customer. That split avoids
the measured cross-engine pitfalls: no ``delta`` on timestamps (gaps are between dates), money
summed as integer cents, means and standard deviations computed from exact integer sums.

Definitions
-----------
An *order* is the set of purchase events sharing ``order_id`` (purchase events without an
``order_id`` form one order per timestamp); its time is its first event and its value the sum of
its ``amount``. A *purchase day* is a calendar day with at least one purchase. Day counts are
fractional days (``(c - ts) / 1 day``) unless the name says otherwise.

Columns (all float64, index ``user_id``; NaN where a value is undefined, as noted):

- ``recency_days`` (since the last order), ``recency_last_event_days`` (since any event).
- ``frequency_orders``, ``frequency_purchase_days``, ``frequency_lines`` (purchase events),
  ``frequency_units`` (sum of ``quantity``; only when quantities exist),
  ``frequency_orders_per_30d`` (orders per 30 days of tenure, tenure floored at one day),
  ``frequency_views``, ``frequency_carts`` (when those event types exist).
- ``monetary_sum``, ``monetary_mean`` (per order with an amount), ``monetary_max`` (largest
  order); NaN for a customer none of whose orders has an amount. Left out, with every other
  money column, when no purchase before the cutoff has an amount.
- ``tenure_days`` (since the first order), ``tenure_first_event_days`` (since any first event),
  ``tenure_active_days`` (first to last order).
- ``w{7,30,90,180,365}d_purchases`` (orders) and ``w..d_spend`` in the last N days, and
  ``w..d_views``, ``w..d_carts``, ``w..d_returns``, ``w..d_reviews`` for the event types that
  exist.
- ``gap_mean_days``, ``gap_std_days`` (sample), ``gap_last_days`` (between the last two purchase
  days), ``gap_last_vs_mean``, ``gap_current_days`` (from the last purchase day to the cutoff's
  day), ``gap_current_vs_mean``: whole days between purchase days; the mean is NaN with fewer than
  two purchase days and the standard deviation with fewer than three.
- ``trend_purchases_diff`` (orders in the last 90 days minus the 90 before),
  ``trend_purchases_log_ratio`` (``log1p(last 90) - log1p(90 before)``),
  ``trend_spend_log_ratio`` (same on spend).
- ``diversity_items`` (distinct items bought), ``diversity_items_per_order``, and
  ``diversity_categories`` (distinct categories bought, when ``items`` gives a ``category`` to
  at least one item the population bought).
- ``returns_count``, ``returns_rate`` (return events per purchase event), ``returns_spend``,
  ``returns_value_rate`` (returned over purchased money; NaN when nothing was paid): when returns
  exist.
- ``reviews_count``, ``reviews_rating_count``, ``reviews_rating_mean`` (NaN without a rating):
  when reviews or ratings exist.
- ``habit_weekend_share``, ``habit_night_share`` (0-6h), ``habit_morning_share`` (6-12h),
  ``habit_afternoon_share`` (12-18h), ``habit_evening_share`` (18-24h) of orders;
  ``habit_hour_mean`` and ``habit_hour_std`` (NaN with one order) of the order hour.
- ``user_*`` from the ``users`` table (see :func:`user_attributes`).

- ``*_activity*`` when the activity that counts as coming back is not purchases alone
  (``retained_by``, see :func:`retention.features.to_retained_by`), computed on the qualifying
  events: ``recency_activity_days`` (since the last one), ``frequency_activity_events``,
  ``frequency_activity_days`` (distinct days), ``tenure_activity_days`` (since the first one),
  ``w{7,30,90,180,365}d_activity``, ``gap_activity_mean_days`` (between activity days; NaN with
  one day), ``gap_activity_current_vs_mean`` and ``trend_activity_log_ratio``.

Columns of an event type that does not occur before the cutoff are left out rather than filled
with zeros; which types occur is decided from events before the cutoff only, so the column set
itself cannot leak the future. The population is every customer with a qualifying event before
the cutoff (a purchase by default); with another ``retained_by`` a customer may have no purchase,
and the purchase columns are then NaN (or 0 for counts), and left out when nobody purchased.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from ibis import _

from retention.features._cutoffs import check_cutoff, to_cutoff, to_events_from
from retention.features._tables import (
    RETAINED_BY_DEFAULT,
    DataSpan,
    as_backend,
    events_table,
    has_table,
    qualifying,
    to_retained_by,
)
from retention.features._users import user_attributes

__all__ = ["OPTIONAL_TYPES", "WINDOWS", "build_features"]

#: look-back windows in days
WINDOWS: tuple[int, ...] = (7, 30, 90, 180, 365)
#: event types besides ``purchase`` that get their own columns when they occur
OPTIONAL_TYPES: dict[str, str] = {
    "view": "views",
    "cart": "carts",
    "return": "returns",
    "review": "reviews",
}
_DAY = pd.Timedelta(days=1)


def _lit(stamp: pd.Timestamp) -> ir.TimestampScalar:
    return ibis.literal(stamp.to_pydatetime(warn=False), type="timestamp")


@dataclass(frozen=True)
class _Inventory:
    """What the events before the cutoff hold: decides which columns exist."""

    span: DataSpan
    types: tuple[str, ...]
    money: bool
    quantity: bool
    items: bool
    ratings: bool
    purchases: bool = True
    retained_by: str = RETAINED_BY_DEFAULT

    @property
    def activity(self) -> bool:
        """Whether the qualifying activity gets its own columns (it is not purchases alone)."""
        return self.retained_by != RETAINED_BY_DEFAULT


def _inventory(
    events: ir.Table, cutoff: pd.Timestamp, retained_by: str = RETAINED_BY_DEFAULT
) -> _Inventory:
    """One query: the data's span and which event types and columns occur before the cutoff."""
    before = events.ts < _lit(cutoff)
    purchase = before & (events.event_type == "purchase")
    counts = qualifying(events, retained_by)
    aggs: dict[str, ir.Scalar] = {
        "first_event": events.ts.min(),
        "last_event": events.ts.max(),
        "first_qualifying": events.ts.min(where=counts),
        "last_qualifying": events.ts.max(where=counts),
        "n_purchase": events.ts.count(where=purchase),
        "n_events": events.ts.count(),
        "n_amount": events.amount.count(where=purchase),
        "n_quantity": events.quantity.count(where=purchase),
        "n_item": events.item_id.count(where=purchase),
        "n_rating": events.rating.count(where=before),
    }
    for kind in OPTIONAL_TYPES:
        aggs[f"n_{kind}"] = events.ts.count(where=before & (events.event_type == kind))
    row = events.aggregate(**aggs).to_pandas().iloc[0]

    def stamp(value: Any) -> pd.Timestamp | None:
        return None if value is None or pd.isna(value) else pd.Timestamp(value).as_unit("ns")

    span = DataSpan(
        first_event=stamp(row["first_event"]),
        last_event=stamp(row["last_event"]),
        first_qualifying=stamp(row["first_qualifying"]),
        n_events=int(row["n_events"]),
        last_qualifying=stamp(row["last_qualifying"]),
        retained_by=retained_by,
    )
    types = tuple(kind for kind in OPTIONAL_TYPES if int(row[f"n_{kind}"]) > 0)
    return _Inventory(
        span=span,
        types=types,
        money=int(row["n_amount"]) > 0,
        quantity=int(row["n_quantity"]) > 0,
        items=int(row["n_item"]) > 0,
        ratings=int(row["n_rating"]) > 0 or "review" in types,
        purchases=int(row["n_purchase"]) > 0,
        retained_by=retained_by,
    )


def _has_categories(backend: Any) -> bool:
    return has_table(backend, "items") and "category" in backend.table("items").schema()


def _aggregate_expr(
    backend: Any, events: ir.Table, cutoff: pd.Timestamp, inv: _Inventory
) -> ir.Table:
    """One row per customer with a qualifying event before the cutoff: counts, cents, times."""
    before = events.filter(_.ts < _lit(cutoff)).mutate(
        cents=(_.amount * 100).round(0).cast("int64")
    )
    purch = before.filter(_.event_type == "purchase")
    population = before.filter(qualifying(before, inv.retained_by)).select("user_id").distinct()

    # orders: lines sharing order_id; lines without one form an order per timestamp
    orders = (
        purch.mutate(ts_key=ibis.ifelse(_.order_id.isnull(), _.ts, ibis.null("timestamp")))
        .group_by(["user_id", "order_id", "ts_key"])
        .aggregate(order_ts=_.ts.min(), order_cents=_.cents.sum())
    )
    orders = orders.mutate(
        dow=orders.order_ts.day_of_week.index().cast("int64"),
        hour=orders.order_ts.hour().cast("int64"),
    )

    def since(days: int) -> ir.BooleanValue:
        return orders.order_ts >= _lit(cutoff - pd.Timedelta(days=days))

    o_aggs: dict[str, ir.Scalar] = {
        "n_orders": orders.order_ts.count(),
        "first_purchase": orders.order_ts.min(),
        "last_purchase": orders.order_ts.max(),
        "weekend": orders.order_ts.count(where=orders.dow >= 5),
        "hour_sum": orders.hour.sum(),
        "hour_sq": (orders.hour * orders.hour).sum(),
        "night": orders.order_ts.count(where=orders.hour < 6),
        "morning": orders.order_ts.count(where=(orders.hour >= 6) & (orders.hour < 12)),
        "afternoon": orders.order_ts.count(where=(orders.hour >= 12) & (orders.hour < 18)),
        "evening": orders.order_ts.count(where=orders.hour >= 18),
    }
    prev90 = since(180) & ~since(90)
    for days in WINDOWS:
        o_aggs[f"w{days}_orders"] = orders.order_ts.count(where=since(days))
    o_aggs["prev90_orders"] = orders.order_ts.count(where=prev90)
    if inv.money:
        o_aggs["cents_sum"] = orders.order_cents.sum()
        o_aggs["cents_max"] = orders.order_cents.max()
        o_aggs["n_orders_money"] = orders.order_cents.count()
        for days in WINDOWS:
            o_aggs[f"w{days}_cents"] = orders.order_cents.sum(where=since(days))
        o_aggs["prev90_cents"] = orders.order_cents.sum(where=prev90)
    by_orders = orders.group_by("user_id").aggregate(**o_aggs)

    # purchase days and the gaps between them (dates, never timestamp deltas)
    days_t = purch.select("user_id", day=purch.ts.date()).distinct()
    window = ibis.window(group_by=days_t.user_id, order_by=days_t.day)
    days_t = days_t.mutate(gap=days_t.day.delta(days_t.day.lag().over(window), unit="day"))
    gap = days_t.gap.cast("int64")
    by_days = days_t.group_by("user_id").aggregate(
        n_days=days_t.day.count(),
        first_day=days_t.day.min(),
        last_day=days_t.day.max(),
        n_gaps=gap.count(),
        gap_sum=gap.sum(),
        gap_sq=(gap * gap).sum(),
        last_gap=gap.argmax(days_t.day),
    )

    # every event of these customers: other event types, items, returns, ratings
    lines = before.semi_join(population, "user_id")
    is_purchase = lines.event_type == "purchase"
    l_aggs: dict[str, ir.Scalar] = {
        "first_event": lines.ts.min(),
        "last_event": lines.ts.max(),
        "n_lines": lines.ts.count(where=is_purchase),
    }
    if inv.quantity:
        l_aggs["units"] = lines.quantity.sum(where=is_purchase)
    if inv.items:
        l_aggs["n_items"] = lines.item_id.nunique(where=is_purchase)
    for kind in inv.types:
        is_kind = lines.event_type == kind
        l_aggs[f"n_{kind}"] = lines.ts.count(where=is_kind)
        for days in WINDOWS:
            recent = lines.ts >= _lit(cutoff - pd.Timedelta(days=days))
            l_aggs[f"w{days}_{kind}"] = lines.ts.count(where=is_kind & recent)
    if "return" in inv.types and inv.money:
        l_aggs["return_cents"] = lines.cents.sum(where=lines.event_type == "return")
    if inv.ratings:
        l_aggs["rating_sum"] = lines.rating.sum()
        l_aggs["rating_n"] = lines.rating.count()
    by_lines = lines.group_by("user_id").aggregate(**l_aggs)

    if not inv.activity:  # the population is the purchasers: every table has each of them
        expr = by_orders.join(by_days, "user_id").join(by_lines, "user_id")
    else:  # by_lines has every customer of the population; purchases may be missing
        expr = by_lines.join(_activity_expr(before, cutoff, inv), "user_id")
        if inv.purchases:
            p_part = by_orders.join(by_days, "user_id").rename(p_user="user_id")
            expr = expr.left_join(p_part, expr.user_id == p_part.p_user).drop("p_user")
    if inv.items and _has_categories(backend):
        items = backend.table("items")
        items = items.select(
            cat_item=items.item_id.cast("string"), category=items.category.cast("string")
        )
        bought = purch.select("user_id", "item_id")
        by_cat = (
            bought.join(items, bought.item_id == items.cat_item)
            .group_by("user_id")
            .aggregate(n_categories=_.category.nunique())
            .rename(cat_user="user_id")
        )
        expr = expr.left_join(by_cat, expr.user_id == by_cat.cat_user).drop("cat_user")
    return expr


def _activity_expr(before: ir.Table, cutoff: pd.Timestamp, inv: _Inventory) -> ir.Table:
    """Per customer: the qualifying events' count, first and last time, windows and day gaps."""
    act = before.filter(qualifying(before, inv.retained_by))
    a_aggs: dict[str, ir.Scalar] = {
        "act_n": act.ts.count(),
        "act_first": act.ts.min(),
        "act_last": act.ts.max(),
        "act_prev90": act.ts.count(
            where=(act.ts >= _lit(cutoff - pd.Timedelta(days=180)))
            & (act.ts < _lit(cutoff - pd.Timedelta(days=90)))
        ),
    }
    for days in WINDOWS:
        a_aggs[f"act_w{days}"] = act.ts.count(
            where=act.ts >= _lit(cutoff - pd.Timedelta(days=days))
        )
    by_events = act.group_by("user_id").aggregate(**a_aggs)
    days_t = act.select("user_id", day=act.ts.date()).distinct()
    window = ibis.window(group_by=days_t.user_id, order_by=days_t.day)
    days_t = days_t.mutate(gap=days_t.day.delta(days_t.day.lag().over(window), unit="day"))
    gap = days_t.gap.cast("int64")
    by_days = days_t.group_by("user_id").aggregate(
        act_days=days_t.day.count(),
        act_last_day=days_t.day.max(),
        act_n_gaps=gap.count(),
        act_gap_sum=gap.sum(),
    )
    return by_events.join(by_days, "user_id")


def _activity_features(r: pd.DataFrame, cutoff: pd.Timestamp) -> dict[str, Any]:
    """The ``*_activity*`` columns from :func:`_activity_expr`'s raw values."""
    out: dict[str, Any] = {}
    out["recency_activity_days"] = _days(cutoff - _dates(r["act_last"]))
    out["frequency_activity_events"] = r["act_n"].astype("float64")
    out["frequency_activity_days"] = r["act_days"].astype("float64")
    out["tenure_activity_days"] = _days(cutoff - _dates(r["act_first"]))
    for days in WINDOWS:
        out[f"w{days}d_activity"] = r[f"act_w{days}"].astype("float64")
    n_gaps = r["act_n_gaps"].astype("float64")
    mean = (r["act_gap_sum"].astype("float64") / n_gaps).where(n_gaps >= 1)
    out["gap_activity_mean_days"] = mean
    current = _days(cutoff.normalize() - _dates(r["act_last_day"]))
    out["gap_activity_current_vs_mean"] = current / mean.where(mean > 0)
    last90 = r["act_w90"].astype("float64")
    out["trend_activity_log_ratio"] = np.log1p(last90) - np.log1p(r["act_prev90"].astype("float64"))
    return out


#: raw purchase values of the engine (orders and purchase days), when purchases exist
_PURCHASE_RAW = (
    "first_purchase",
    "last_purchase",
    "hour_sum",
    "hour_sq",
    "first_day",
    "last_day",
    "gap_sum",
    "gap_sq",
    "last_gap",
)
#: columns that describe other event types than purchases: all that is kept without purchases
_NOT_PURCHASE = re.compile(
    r"^(recency_last_event_days|tenure_first_event_days|frequency_(views|carts)|"
    r"w\d+d_(views|carts|returns|reviews)|returns_count|reviews_.*|.*activity.*)$"
)
#: purchase counts that are 0, not unknown, for a customer of the population without purchases
_PURCHASE_COUNTS = (
    "n_lines",
    "n_orders",
    "n_days",
    "n_gaps",
    "weekend",
    "night",
    "morning",
    "afternoon",
    "evening",
    "prev90_orders",
    *(f"w{days}_orders" for days in WINDOWS),
)


def _days(delta: pd.Series) -> pd.Series:
    return delta / _DAY  # type: ignore[operator]  # pandas-stubs lacks Series / Timedelta


def _dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).astype("datetime64[ns]")


def _derive(raw: pd.DataFrame, cutoff: pd.Timestamp, inv: _Inventory) -> pd.DataFrame:
    """Finish the features in pandas from the engine's per-customer counts and times."""
    r = raw
    out: dict[str, Any] = {}  # column -> pd.Series (numpy ufuncs keep the index)
    if inv.activity:
        out.update(_activity_features(r, cutoff))
        r = r.copy()
        for col in _PURCHASE_RAW:  # absent when nobody purchased before the cutoff
            if col not in r:
                r[col] = np.nan
        for col in _PURCHASE_COUNTS:
            r[col] = r[col].astype("float64").fillna(0.0) if col in r else 0.0
    first_purchase = _dates(r["first_purchase"])
    last_purchase = _dates(r["last_purchase"])
    n_orders = r["n_orders"].astype("float64")

    def cents(col: str) -> pd.Series:
        return r[col].astype("float64").fillna(0.0) / 100.0

    # recency, frequency, monetary, tenure
    out["recency_days"] = _days(cutoff - last_purchase)
    out["recency_last_event_days"] = _days(cutoff - _dates(r["last_event"]))
    tenure = _days(cutoff - first_purchase)
    out["frequency_orders"] = n_orders
    out["frequency_purchase_days"] = r["n_days"].astype("float64")
    out["frequency_lines"] = r["n_lines"].astype("float64")
    if inv.quantity:
        out["frequency_units"] = r["units"].astype("float64")
    out["frequency_orders_per_30d"] = n_orders / tenure.clip(lower=1.0) * 30.0
    for kind in ("view", "cart"):
        if kind in inv.types:
            out[f"frequency_{OPTIONAL_TYPES[kind]}"] = r[f"n_{kind}"].astype("float64")
    if inv.money:
        n_money = r["n_orders_money"].astype("float64")
        known = n_money > 0
        total = r["cents_sum"].astype("float64") / 100.0
        out["monetary_sum"] = total.where(known)
        out["monetary_mean"] = (total / n_money).where(known)
        out["monetary_max"] = (r["cents_max"].astype("float64") / 100.0).where(known)
    out["tenure_days"] = tenure
    out["tenure_first_event_days"] = _days(cutoff - _dates(r["first_event"]))
    out["tenure_active_days"] = _days(last_purchase - first_purchase)

    # windows
    for days in WINDOWS:
        out[f"w{days}d_purchases"] = r[f"w{days}_orders"].astype("float64")
        if inv.money:
            out[f"w{days}d_spend"] = cents(f"w{days}_cents")
        for kind in inv.types:
            out[f"w{days}d_{OPTIONAL_TYPES[kind]}"] = r[f"w{days}_{kind}"].astype("float64")

    # gaps between purchase days
    n_gaps = r["n_gaps"].astype("float64")
    gap_sum = r["gap_sum"].astype("float64")
    gap_sq = r["gap_sq"].astype("float64")
    gap_mean = (gap_sum / n_gaps).where(n_gaps >= 1)
    variance = ((gap_sq - gap_sum * gap_sum / n_gaps) / (n_gaps - 1)).where(n_gaps >= 2)
    out["gap_mean_days"] = gap_mean
    out["gap_std_days"] = np.sqrt(variance.clip(lower=0.0))
    last_gap = r["last_gap"].astype("float64")
    out["gap_last_days"] = last_gap
    out["gap_last_vs_mean"] = last_gap / gap_mean.where(gap_mean > 0)
    current = _days(cutoff.normalize() - _dates(r["last_day"]))
    out["gap_current_days"] = current
    out["gap_current_vs_mean"] = current / gap_mean.where(gap_mean > 0)

    # trend: the last 90 days against the 90 before
    last90 = r["w90_orders"].astype("float64")
    prev90 = r["prev90_orders"].astype("float64")
    out["trend_purchases_diff"] = last90 - prev90
    out["trend_purchases_log_ratio"] = np.log1p(last90) - np.log1p(prev90)
    if inv.money:
        spend90 = cents("w90_cents").clip(lower=0.0)
        spend_prev = cents("prev90_cents").clip(lower=0.0)
        out["trend_spend_log_ratio"] = np.log1p(spend90) - np.log1p(spend_prev)

    # diversity
    if inv.items:
        n_items = r["n_items"].astype("float64")
        out["diversity_items"] = n_items
        out["diversity_items_per_order"] = n_items / n_orders
        # left out when no bought item has a category (no or an empty items table)
        if "n_categories" in r and r["n_categories"].notna().any():
            out["diversity_categories"] = r["n_categories"].astype("float64").fillna(0.0)

    # returns
    if "return" in inv.types:
        n_returns = r["n_return"].astype("float64")
        out["returns_count"] = n_returns
        n_lines = r["n_lines"].astype("float64")
        out["returns_rate"] = n_returns / n_lines.where(n_lines > 0)
        if inv.money:
            returned = cents("return_cents")
            paid = cents("cents_sum")
            out["returns_spend"] = returned
            out["returns_value_rate"] = returned / paid.where(paid > 0)

    # reviews and ratings
    if inv.ratings:
        if "review" in inv.types:
            out["reviews_count"] = r["n_review"].astype("float64")
        rating_n = r["rating_n"].astype("float64")
        out["reviews_rating_count"] = rating_n
        out["reviews_rating_mean"] = r["rating_sum"].astype("float64") / rating_n.where(
            rating_n > 0
        )

    # habits: when orders happen
    out["habit_weekend_share"] = r["weekend"].astype("float64") / n_orders
    for part in ("night", "morning", "afternoon", "evening"):
        out[f"habit_{part}_share"] = r[part].astype("float64") / n_orders
    hour_sum = r["hour_sum"].astype("float64")
    hour_sq = r["hour_sq"].astype("float64")
    out["habit_hour_mean"] = hour_sum / n_orders
    hour_var = ((hour_sq - hour_sum * hour_sum / n_orders) / (n_orders - 1)).where(n_orders >= 2)
    out["habit_hour_std"] = np.sqrt(hour_var.clip(lower=0.0))

    frame = pd.DataFrame(out)
    if not inv.purchases:  # nobody purchased before the cutoff: no purchase columns
        frame = frame[[c for c in frame.columns if _NOT_PURCHASE.match(c)]]
    return frame.astype("float64")


def compute_features(
    backend: Any,
    cutoff: Any,
    *,
    users_table: bool = True,
    countries: list[str] | None = None,
    n_countries: int = 0,
    retained_by: Any = RETAINED_BY_DEFAULT,
    events_from: Any = None,
) -> tuple[pd.DataFrame, list[str]]:
    """:func:`build_features`, also returning the countries that got a one-hot column."""
    backend = as_backend(backend)
    cutoff = to_cutoff(cutoff)
    events = events_table(backend)
    if events_from is not None:  # as if the store's history started there
        events = events.filter(events.ts >= _lit(to_events_from(events_from, cutoff)))
    inv = _inventory(events, cutoff, to_retained_by(retained_by))
    check_cutoff(inv.span, cutoff)
    raw = _aggregate_expr(backend, events, cutoff, inv).to_pandas()
    raw.index = pd.Index(raw.pop("user_id").astype(str), name="user_id", dtype="str")
    raw = raw.sort_index()
    features = _derive(raw, cutoff, inv)
    chosen: list[str] = []
    if users_table and has_table(backend, "users"):
        population = events.filter(
            (events.ts < _lit(cutoff)) & qualifying(events, inv.retained_by)
        ).select("user_id")
        attrs, chosen = user_attributes(
            backend,
            population.distinct(),
            features.index,
            cutoff,
            countries=countries,
            n_countries=n_countries,
        )
        features = features.join(attrs)
    features.index.name = "user_id"
    return features.astype("float64"), chosen


def build_features(
    backend: Any,
    cutoff: Any,
    *,
    users_table: bool = True,
    countries: list[str] | None = None,
    n_countries: int = 0,
    retained_by: Any = RETAINED_BY_DEFAULT,
    events_from: Any = None,
) -> pd.DataFrame:
    """Point-in-time features of every customer with a qualifying event before ``cutoff``.

    Defined once in Ibis; runs on DuckDB (the store) and on Spark. Only events with
    ``ts < cutoff`` are read, so events at or after the cutoff cannot change any value or column.
    The columns are documented in :mod:`retention.features._aggregates`.

    Parameters
    ----------
    backend : Ibis backend or retention.data.Store
        Holds ``events`` (the event contract), optionally ``items`` and ``users``.
    cutoff : str or pd.Timestamp
        Features use events strictly before it.
    users_table : bool, default True
        Add ``user_*`` columns from the ``users`` table when it exists.
    countries : list of str, optional
        Countries that get a one-hot column ``user_country_<name>``. Without it the
        ``n_countries`` most common in the population at this cutoff get one; since that choice
        can differ between cutoffs, pass one list to every cutoff of a model instead.
    n_countries : int, default 0
        How many countries get a one-hot column when ``countries`` is not given (by default
        none: the country is frequency-encoded as ``user_country_freq`` only, a column every
        cutoff has).
    retained_by : str or sequence of str, default "purchase"
        The activity that counts as coming back (:func:`retention.features.to_retained_by`): it
        decides the population; features still use every event type, and another activity than
        purchases gets its own ``*_activity*`` columns.
    events_from : str or pd.Timestamp, optional
        Read only events with ``ts >= events_from``, as if the store's history started there
        (the population too): features on a given length of history. Default: every event.

    Returns
    -------
    pd.DataFrame
        Index ``user_id`` (str, sorted), one float64 column per feature, named by family prefix
        (see :data:`retention.features.FAMILIES`). NaN marks undefined values (for example the
        mean gap of a one-time buyer); gradient boosting handles them.

    Raises
    ------
    DataError
        No events, the cutoff is after the last event, or no qualifying event lies before it.
    SchemaError
        The ``events`` table is missing or lacks ``user_id``, ``ts`` or ``event_type``.

    Examples
    --------
    >>> import ibis, pandas as pd
    >>> con = ibis.duckdb.connect()
    >>> events = pd.DataFrame({
    ...     "user_id": ["a", "a", "b"], "event_type": ["purchase"] * 3,
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-01-11", "2024-01-25"]),
    ...     "amount": [10.0, 30.0, 5.0]})
    >>> _ = con.create_table("events", events)
    >>> features = build_features(con, "2024-01-21")
    >>> features.loc["a", ["recency_days", "frequency_orders", "monetary_mean"]].tolist()
    [10.0, 2.0, 20.0]
    """
    features, _chosen = compute_features(
        backend,
        cutoff,
        users_table=users_table,
        countries=countries,
        n_countries=n_countries,
        retained_by=retained_by,
        events_from=events_from,
    )
    return features

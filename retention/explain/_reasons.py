"""Per-customer reasons: the top drivers toward churn and toward retention, in plain words.

Each reason is one feature's SHAP contribution (see :func:`shap_contributions`) written with a
template of its family, the customer's value against the typical one (the population median at
the same cutoff), for example "no purchase for 64 days, 2.5x their usual gap of 26 days" or
"spent 1,240 in the last 90 days, 3.1x the typical customer". Ties are broken by feature name, so
the same model and data always give the same reasons.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from retention._progress import progress_bar
from retention.exceptions import ConfigError
from retention.explain._importance import Contributions
from retention.features import feature_family

__all__ = ["REASON_COLUMNS", "describe_feature", "reasons", "reasons_for"]

#: columns of the table :func:`reasons` returns (and the store's ``score_reasons`` table holds)
REASON_COLUMNS: tuple[str, ...] = (
    "user_id",
    "direction",
    "rank",
    "feature",
    "family",
    "contribution",
    "value",
    "typical",
    "text",
)

_WINDOW = re.compile(r"^w(\d+)d_(\w+)$")
_EVENT_WORDS = {
    "purchases": "orders",
    "views": "product views",
    "carts": "add-to-carts",
    "returns": "returns",
    "reviews": "reviews",
    "activity": "qualifying events",  # the activity that counts as coming back (retained_by)
}


_MEMBER_WORDS = {
    "bgnbd": "BG/NBD",
    "paretonbd": "Pareto/NBD",
    "sequence": "sequence transformer",
    "text_lm": "language",
}


@dataclass(frozen=True)
class _Ctx:
    """What a template sees: the value, the typical value, the customer's other values."""

    value: float
    typical: float
    row: dict[str, float]
    currency: str


def _num(x: float, digits: int = 0) -> str:
    if x is None or not math.isfinite(x):
        return "unknown"
    if digits == 0 or abs(x) >= 100 or float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def _ndays(x: float) -> str:
    """``"1 day"``, ``"12 days"`` (``_num`` of a number of days)."""
    text = _num(x)
    return f"{text} day" if text == "1" else f"{text} days"


def _money(x: float, currency: str) -> str:
    if not math.isfinite(x):
        return "unknown"
    return f"{currency}{x:,.2f}" if 0 < abs(x) < 10 else f"{currency}{_num(x)}"


def _pct(x: float) -> str:
    if not math.isfinite(x):
        return "unknown"
    if 0 < x < 0.01:
        return "under 1%"
    if 0.99 < x < 1:
        return "over 99%"
    return f"{x:.0%}"


def _times(value: float, typical: float, what: str = "the typical customer") -> str:
    """ ", 2.5x the typical customer" / ", a third of ..." / " (typical: 12)" style comparison."""
    if not (math.isfinite(value) and math.isfinite(typical)):
        return ""
    if typical > 0 and value > 0:
        r = value / typical
        if r >= 1.25:
            return f", {r:.1f}x {what}"
        if r <= 0.8:
            return f", {_pct(r)} of {what}"
        return f", about {what}"
    if typical == 0 and value > 0:
        return " (the typical customer: none)"
    return f" (typical: {_num(typical, 1)})"


def _recency(c: _Ctx) -> str:
    text = f"no purchase for {_ndays(c.value)}"
    gap = c.row.get("gap_mean_days", math.nan)
    if math.isfinite(gap) and gap >= 2 and math.isfinite(c.value):
        return f"{text}, {c.value / gap:.1f}x their usual gap of {_ndays(gap)}"
    return f"{text} (typical customer: {_num(c.typical)})"


def _gap(name: str) -> Callable[[_Ctx], str]:
    def f(c: _Ctx) -> str:
        mean = c.row.get("gap_mean_days", math.nan)
        if name in {"gap_current_days", "gap_current_vs_mean"}:
            days = c.row.get("gap_current_days", math.nan)
            if math.isfinite(mean) and mean >= 2 and math.isfinite(days):
                return (
                    f"no purchase for {_ndays(days)}, {days / mean:.1f}x their usual gap "
                    f"of {_ndays(mean)}"
                )
            return f"no purchase for {_ndays(days)} and no usual gap yet (one purchase day)"
        if name == "gap_mean_days":
            if not math.isfinite(c.value):
                return "only one purchase day so far, so no usual rhythm yet"
            return f"buys every {_ndays(c.value)} on average (typical customer: {_num(c.typical)})"
        if name == "gap_std_days":
            return f"gaps between purchases vary by {_ndays(c.value)} (typical: {_num(c.typical)})"
        if name in {"gap_last_days", "gap_last_vs_mean"}:
            last = c.row.get("gap_last_days", math.nan)
            if math.isfinite(last) and math.isfinite(mean) and mean >= 2:
                return f"last gap between purchases {_ndays(last)}, {last / mean:.1f}x their usual"
            return f"last gap between purchases {_ndays(last)}"
        return _generic(name)(c)

    return f


def _window(name: str) -> Callable[[_Ctx], str] | None:
    m = _WINDOW.match(name)
    if not m:
        return None
    days, what = m.group(1), m.group(2)

    def f(c: _Ctx) -> str:
        if what == "spend":
            return f"spent {_money(c.value, c.currency)} in the last {days} days" + _times(
                c.value, c.typical
            )
        word = _EVENT_WORDS.get(what, what.replace("_", " "))
        if c.value == 1 and word.endswith("s"):
            word = word[:-1]
        return f"{_num(c.value)} {word} in the last {days} days" + _times(c.value, c.typical)

    return f


def _generic(name: str) -> Callable[[_Ctx], str]:
    label = name.split("_", 1)[-1].replace("_", " ") if "_" in name else name

    def f(c: _Ctx) -> str:
        digits = 2 if abs(c.typical) < 10 or abs(c.value) < 10 else 0
        value, typical = _num(c.value, digits), _num(c.typical, digits)
        return f"{feature_family(name)}: {label} {value} (typical: {typical})"

    return f


def _fixed(fmt: str, kind: str = "count") -> Callable[[_Ctx], str]:
    def f(c: _Ctx) -> str:
        if kind == "money":
            v = _money(c.value, c.currency)
            return fmt.format(v=v) + _times(c.value, c.typical)
        if kind == "share":
            return fmt.format(v=_pct(c.value)) + f" (typical: {_pct(c.typical)})"
        if kind == "prob":
            return fmt.format(v=_pct(c.value)) + f" (typical: {_pct(c.typical)})"
        if kind == "ratio":
            return fmt.format(v=_num(c.value, 1)) + f" (typical: {_num(c.typical, 1)})"
        text = fmt.format(v=_num(c.value, 1 if abs(c.value) < 10 else 0))
        if c.value == 1:
            text = text.replace("1 orders", "1 order").replace("1 days", "1 day")
        return text + _times(c.value, c.typical)

    return f


_TEMPLATES: dict[str, Callable[[_Ctx], str]] = {
    "recency_days": _recency,
    "recency_last_event_days": lambda c: (
        f"no activity of any kind for {_ndays(c.value)} (typical customer: {_num(c.typical)})"
    ),
    # the activity that counts as coming back when it is not purchases alone (retained_by)
    "recency_activity_days": lambda c: (
        f"no qualifying event for {_num(c.value)} days (typical customer: {_num(c.typical)})"
    ),
    "frequency_activity_events": _fixed("{v} qualifying events so far"),
    "frequency_activity_days": _fixed("active on {v} different days"),
    "tenure_activity_days": _fixed("first active {v} days ago"),
    "gap_activity_mean_days": _fixed("active every {v} days on average"),
    "gap_activity_current_vs_mean": _fixed("{v}x their usual gap since last active", "ratio"),
    "trend_activity_log_ratio": lambda c: (
        "activity "
        + ("rising" if c.value > 0 else "falling" if c.value < 0 else "flat")
        + " over the last 90 days against the 90 before"
    ),
    "frequency_orders": _fixed("{v} orders so far"),
    "frequency_purchase_days": _fixed("bought on {v} different days"),
    "frequency_lines": _fixed("{v} order lines so far"),
    "frequency_units": _fixed("{v} units bought"),
    "frequency_orders_per_30d": _fixed("{v} orders a month"),
    "frequency_views": _fixed("{v} product views"),
    "frequency_carts": _fixed("{v} add-to-carts"),
    "monetary_sum": _fixed("spent {v} in total", "money"),
    "monetary_mean": _fixed("spends {v} per order", "money"),
    "monetary_max": _fixed("largest order {v}", "money"),
    "tenure_days": _fixed("a customer for {v} days"),
    "tenure_first_event_days": _fixed("first seen {v} days ago"),
    "tenure_active_days": _fixed("{v} days between first and last order"),
    "trend_purchases_diff": lambda c: (
        f"{c.value:+,.0f} orders in the last 90 days against the 90 before"
    ),
    "trend_purchases_log_ratio": lambda c: (
        "orders "
        + ("rising" if c.value > 0 else "falling" if c.value < 0 else "flat")
        + " over the last 90 days against the 90 before"
    ),
    "trend_spend_log_ratio": lambda c: (
        "spend "
        + ("rising" if c.value > 0 else "falling" if c.value < 0 else "flat")
        + " over the last 90 days against the 90 before"
    ),
    "diversity_items": _fixed("bought {v} different products"),
    "diversity_items_per_order": _fixed("{v} different products per order"),
    "diversity_categories": _fixed("bought from {v} categories"),
    "returns_count": _fixed("returned {v} times"),
    "returns_rate": _fixed("returns {v} of what they buy", "share"),
    "returns_spend": _fixed("returned goods worth {v}", "money"),
    "returns_value_rate": _fixed("returned {v} of the money spent", "share"),
    "reviews_count": _fixed("wrote {v} reviews"),
    "reviews_rating_count": _fixed("rated {v} products"),
    "reviews_rating_mean": _fixed("rates products {v} stars on average", "ratio"),
    "habit_weekend_share": _fixed("{v} of orders at weekends", "share"),
    "habit_night_share": _fixed("{v} of orders at night", "share"),
    "habit_morning_share": _fixed("{v} of orders in the morning", "share"),
    "habit_afternoon_share": _fixed("{v} of orders in the afternoon", "share"),
    "habit_evening_share": _fixed("{v} of orders in the evening", "share"),
    "habit_hour_mean": _fixed("orders around {v}h on average", "ratio"),
    "habit_hour_std": _fixed("order time varies by {v} hours", "ratio"),
    "user_days_since_signup": _fixed("signed up {v} days ago"),
    "user_country_freq": _fixed("from a country with {v} of the customers", "share"),
    "btyd_p_retained": _fixed(
        "the purchase-rate model (BG/NBD) puts their chance to buy again at {v}", "prob"
    ),
    "btyd_p_alive": _fixed("{v} chance of still being an active customer (BG/NBD)", "prob"),
    "btyd_expected_purchases": _fixed("{v} purchases expected in the horizon (BG/NBD)"),
    "btyd_monetary": _fixed("expected spend per order {v} (Gamma-Gamma)", "money"),
    "btyd_clv": _fixed("expected value over the horizon {v}", "money"),
}


def _template(name: str) -> Callable[[_Ctx], str]:
    if name in _TEMPLATES:
        return _TEMPLATES[name]
    if name.startswith("gap_"):
        return _gap(name)
    win = _window(name)
    if win is not None:
        return win
    if name.startswith("user_country_"):
        country = name.removeprefix("user_country_").replace("_", " ").title()
        return lambda c: f"based in {country}" if c.value >= 0.5 else f"not based in {country}"
    if name.startswith("text_"):
        return lambda c: (
            f"what their reviews and purchases say (text signal {name.removeprefix('text_')})"
        )
    if name.endswith("_score") and (name.startswith(("btyd_", "seq_", "model_"))):
        member = name.removesuffix("_score").split("_", 1)[-1]
        member = _MEMBER_WORDS.get(member, member)
        return lambda c: (
            f"the {member} model puts their chance to buy again at {_pct(c.value)} "
            f"(typical: {_pct(c.typical)})"
        )
    return _generic(name)


def describe_feature(
    name: str,
    value: float,
    typical: float,
    row: dict[str, float] | None = None,
    *,
    currency: str = "",
) -> str:
    """One feature of one customer in plain words, against the typical value.

    Examples
    --------
    >>> describe_feature("recency_days", 64, 30, {"gap_mean_days": 25.6})
    'no purchase for 64 days, 2.5x their usual gap of 26 days'
    >>> describe_feature("w90d_spend", 1240, 400, currency="£")
    'spent £1,240 in the last 90 days, 3.1x the typical customer'
    """
    ctx = _Ctx(float(value), float(typical), dict(row or {}), currency)
    try:
        return _template(name)(ctx)
    except (TypeError, ValueError, ZeroDivisionError):  # odd values: fall back to plain numbers
        return _generic(name)(ctx)


def reasons(
    contributions: Contributions,
    *,
    top: int = 3,
    typical: pd.Series | None = None,
    currency: str = "",
    min_contribution: float = 1e-9,
) -> pd.DataFrame:
    """The ``top`` drivers toward churn and toward retention of every customer, in words.

    Parameters
    ----------
    contributions : Contributions
        From :func:`shap_contributions`.
    top : int
        Reasons per direction (fewer when fewer features push that way).
    typical : pd.Series, optional
        The typical value of each feature; default the median over the explained customers
        (use the whole population at the cutoff for stable wording).
    currency : str
        Put before money amounts, e.g. ``"£"``.
    min_contribution : float
        Contributions smaller in size are not reasons.

    Returns
    -------
    pd.DataFrame
        Columns :data:`REASON_COLUMNS`; ``direction`` is ``"churn"`` (pushes P(retained) down)
        or ``"retention"``; ``rank`` 1 is the strongest; ``contribution`` in log-odds. Features
        whose words would repeat an earlier reason of the same customer (for example recency and
        the current gap) are merged into the first one.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"top must be a positive integer; got {top!r}.")
    if not isinstance(contributions, Contributions):
        raise ConfigError(
            f"reasons() needs the Contributions of shap_contributions(); got "
            f"{type(contributions).__name__}."
        )
    values = contributions.values
    cols = sorted(str(c) for c in values.columns)  # ties break by name, whatever the order
    V = values[cols].to_numpy(dtype=float)
    D = contributions.data.reindex(columns=cols).to_numpy(dtype=float)
    med = (
        typical.reindex(cols).to_numpy(dtype=float)
        if typical is not None
        else np.nanmedian(np.where(np.isfinite(D), D, np.nan), axis=0)
        if len(D)
        else np.full(len(cols), np.nan)
    )
    templates = [_template(c) for c in cols]
    fams = [feature_family(c) for c in cols]
    # order of columns per row: most negative first (churn), most positive first (retention)
    up = np.argsort(V, axis=1, kind="stable")
    down = np.argsort(-V, axis=1, kind="stable")
    users = values.index.astype(str)
    rows: list[tuple[object, ...]] = []
    with progress_bar(transient=True) as bar:
        task = bar.add_task("writing reasons", total=len(users))
        for i, user in enumerate(users):
            rowvals = dict(zip(cols, D[i].tolist(), strict=True))
            for direction, order, sign in (("churn", up[i], -1.0), ("retention", down[i], 1.0)):
                seen: set[str] = set()
                rank = 0
                for j in order:
                    c = V[i, j]
                    if sign * c <= min_contribution:
                        break
                    ctx = _Ctx(float(D[i, j]), float(med[j]), rowvals, currency)
                    try:
                        text = templates[j](ctx)
                    except (TypeError, ValueError, ZeroDivisionError):
                        text = _generic(cols[j])(ctx)
                    if text in seen:
                        continue
                    seen.add(text)
                    rank += 1
                    rows.append(
                        (
                            user,
                            direction,
                            rank,
                            cols[j],
                            fams[j],
                            float(c),
                            float(D[i, j]),
                            float(med[j]),
                            text,
                        )
                    )
                    if rank >= top:
                        break
            if i % 2048 == 0:
                bar.update(task, completed=i + 1)
    out = pd.DataFrame(rows, columns=list(REASON_COLUMNS))
    out["rank"] = out["rank"].astype("int64")
    return out


def reasons_for(table: pd.DataFrame, user_id: str) -> dict[str, list[dict[str, object]]]:
    """The reasons of one customer from a :func:`reasons` table, ready for JSON.

    Returns ``{"churn": [...], "retention": [...]}``, each a list of dicts with ``feature``,
    ``family``, ``contribution``, ``value``, ``typical`` and ``text``, strongest first.
    """
    mine = table[table["user_id"].astype(str) == str(user_id)].sort_values(["direction", "rank"])
    out: dict[str, list[dict[str, object]]] = {"churn": [], "retention": []}
    for rec in mine.to_dict("records"):
        out[str(rec["direction"])].append(
            {
                k: (None if isinstance(rec[k], float) and not math.isfinite(rec[k]) else rec[k])
                for k in ("feature", "family", "contribution", "value", "typical", "text")
            }
        )
    return out

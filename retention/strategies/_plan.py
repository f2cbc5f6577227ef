"""One action per customer: the offer (or none) that the budget is best spent on, and why.

Offers are declared in a TOML file (:func:`read_offers`)::

    [[offers]]
    name = "coupon10"           # what the plan calls it
    treatment = "Womens E-Mail" # the uplift model's treatment (or the experiment's variant)
    send_cost = 0.10            # cost of one send
    redemption_cost = 5.0       # cost when the coupon is used (its value)
    cap = 10000                 # most sends (optional)
    assumed_uplift = 0.01       # used where neither a model nor an experiment says (optional)
    value = 25.0                # value of one incremental outcome (optional; default: the
                                # customer's value if retained, CLV / P(retained), x margin)
    margin = 0.3                # share of that value that is profit (default 1)

Per customer ``i`` and offer ``j`` (:func:`offer_economics`):

* expected incremental value ``v = uplift * value_i`` (``value_i``: the offer's ``value``, or
  ``margin * CLV / P(retained)``, what a returning customer is worth);
* expected cost ``c = send_cost + redemption_cost * P(redeem)``, with ``P(redeem)`` the chance of
  the outcome when treated, ``P(retained) + uplift`` (every converting holder uses the coupon,
  including those who would have bought anyway: the hidden cost of couponing), or 1 when no
  probability is known (the cautious bound);
* the optimiser (:func:`retention.strategies.optimise_budget`) maximises the total ``v`` within
  the budget and the caps (the plan's ``objective = "value"``: spend the budget where it changes
  behaviour most), or the net value ``v - c`` over the pairs where it is positive
  (``objective = "net"``: only offers that pay for themselves).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention.exceptions import ConfigError

__all__ = ["Offer", "explain_actions", "offer_economics", "read_offers", "top_items"]

_OFFER_KEYS = (
    "name",
    "treatment",
    "metric",
    "send_cost",
    "redemption_cost",
    "cap",
    "assumed_uplift",
    "value",
    "margin",
    "message",
)


@dataclass(frozen=True)
class Offer:
    """One offer of the plan (see the module docstring for the keys)."""

    name: str
    treatment: str | None = None
    metric: str | None = None
    send_cost: float = 0.0
    redemption_cost: float = 0.0
    cap: int | None = None
    assumed_uplift: float | None = None
    value: float | None = None
    margin: float = 1.0
    message: str = ""

    @property
    def arm(self) -> str:
        """The treatment whose uplift applies (the name when none is given)."""
        return self.treatment if self.treatment is not None else self.name

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _num(
    raw: dict[str, Any], key: str, where: str, *, low: float = 0.0, high: float = math.inf
) -> float | None:
    if key not in raw:
        return None
    v = raw[key]
    if (
        isinstance(v, bool)
        or not isinstance(v, int | float)
        or not math.isfinite(v)
        or not low <= v <= high
    ):
        rng = f">= {low:g}" + (f" and <= {high:g}" if high < math.inf else "")
        raise ConfigError(f"{where}.{key} must be a number {rng}; got {v!r}.")
    return float(v)


def read_offers(
    path: str | Path | None = None, *, data: dict[str, Any] | None = None
) -> tuple[Offer, ...]:
    """Read and validate an offers file (or an already parsed document ``data``); a one-line
    :class:`ConfigError` names the key of any problem."""
    source = "the offers"
    if data is None:
        if path is None:
            raise ConfigError("Pass the offers file (--offers FILE).")
        p = Path(path)
        source = p.name
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"No offers file {p}: check the path given to --offers.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Cannot read {p} ({exc}): pass a UTF-8 TOML file.") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p.name} is not valid TOML ({exc}): fix the syntax.") from None
    unknown = sorted(set(data) - {"offers"})
    if unknown:
        raise ConfigError(
            f"{source} has unknown section(s) {', '.join(unknown)}; declare offers as [[offers]]."
        )
    raw_offers = data.get("offers")
    if not isinstance(raw_offers, list) or not raw_offers:
        raise ConfigError(f"{source}: declare at least one offer as [[offers]] with a name.")
    offers = []
    for i, raw in enumerate(raw_offers, start=1):
        where = f"{source}: offers[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a table ([[offers]]).")
        bad = sorted(set(raw) - set(_OFFER_KEYS))
        if bad:
            raise ConfigError(
                f"{where} has unknown key(s) {', '.join(bad)}; the keys are "
                f"{', '.join(_OFFER_KEYS)}."
            )
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip() or name == "none":
            raise ConfigError(
                f"{where}.name must be a non-empty name other than 'none'; got {name!r}."
            )
        for key in ("treatment", "metric", "message"):
            if key in raw and not isinstance(raw[key], str):
                raise ConfigError(f"{where}.{key} must be text; got {raw[key]!r}.")
        cap = raw.get("cap")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise ConfigError(f"{where}.cap must be a whole number >= 0; got {cap!r}.")
        offers.append(
            Offer(
                name=name.strip(),
                treatment=raw.get("treatment"),
                metric=raw.get("metric"),
                send_cost=_num(raw, "send_cost", where) or 0.0,
                redemption_cost=_num(raw, "redemption_cost", where) or 0.0,
                cap=cap,
                assumed_uplift=_num(raw, "assumed_uplift", where, low=-1.0, high=1.0),
                value=_num(raw, "value", where),
                margin=1.0
                if "margin" not in raw
                else float(_num(raw, "margin", where, high=1.0) or 0.0),
                message=str(raw.get("message", "")),
            )
        )
    names = [o.name for o in offers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"{source}: offer name(s) {', '.join(dupes)} appear twice; name each once."
        )
    return tuple(offers)


def offer_economics(
    uplift: np.ndarray,
    offers: Sequence[Offer],
    *,
    value_if_retained: np.ndarray | None = None,
    base_rate: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected incremental value and expected cost of each offer for each customer.

    Parameters
    ----------
    uplift : array (n, m)
        Expected uplift per customer and offer (NaN: unknown, the pair is never chosen).
    offers : sequence of Offer
    value_if_retained : array (n,), optional
        What a returning customer is worth (CLV / P(retained)); used by offers without a
        ``value``. Missing values count as 0.
    base_rate : array (n,), optional
        Chance of the outcome without the offer (P(retained)); NaN or missing: redemption is
        costed as certain.

    Returns
    -------
    (value, cost) : arrays (n, m)
        ``value`` is NaN where the uplift is.
    """
    u = np.asarray(uplift, dtype=float)
    n, m = u.shape
    if m != len(offers):
        raise ConfigError(f"uplift has {m} column(s) for {len(offers)} offer(s).")
    vir = (
        np.nan_to_num(np.asarray(value_if_retained, dtype=float), nan=0.0)
        if value_if_retained is not None
        else np.zeros(n)
    )
    base = np.asarray(base_rate, dtype=float) if base_rate is not None else np.full(n, np.nan)
    value = np.empty((n, m))
    cost = np.empty((n, m))
    for j, o in enumerate(offers):
        per = np.full(n, o.value) if o.value is not None else o.margin * vir
        value[:, j] = u[:, j] * per
        p_redeem = np.where(np.isnan(base), 1.0, np.clip(base + np.nan_to_num(u[:, j]), 0.0, 1.0))
        cost[:, j] = o.send_cost + o.redemption_cost * p_redeem
    return value, cost


def explain_actions(
    choice: np.ndarray,
    offers: Sequence[Offer],
    uplift: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray,
    sources: np.ndarray,
    *,
    outcome: str = "coming back",
) -> list[str]:
    """Why each customer got their action, in plain words.

    ``choice`` is the offer index (-1 none); ``sources`` (n, m) says where each uplift comes from
    (``model``, ``measured``, ``model, calibrated to measured``, ``assumed`` or empty).
    """
    if not offers:
        return [
            "No offer is defined: pass --offers FILE, or train an uplift model (`retention uplift "
            "train`) whose treatments become the offers."
        ] * len(choice)
    net = value - cost
    caps = [o.cap for o in offers]
    counts = np.bincount(choice[choice >= 0], minlength=len(offers))
    texts = []
    for i, j in enumerate(choice.tolist()):
        if j >= 0:
            o = offers[j]
            texts.append(
                f"{o.name}: expected to raise the chance of {outcome} by {uplift[i, j]:+.1%} "
                f"({sources[i, j]}), worth {value[i, j]:.2f} against an expected cost of "
                f"{cost[i, j]:.2f}."
            )
            continue
        known = ~np.isnan(uplift[i])
        if not known.any():
            texts.append("No offer: no uplift estimate for this customer.")
            continue
        row = np.where(known, net[i], -np.inf)
        b = int(np.argmax(row))
        o = offers[b]
        if row[b] <= 0:
            texts.append(
                f"No offer pays for itself: the best, {o.name}, is expected to add "
                f"{value[i, b]:.2f} for a cost of {cost[i, b]:.2f}."
            )
        elif caps[b] is not None and counts[b] >= caps[b]:
            texts.append(
                f"No offer: {o.name} would earn {row[b]:.2f} net, but its cap of {caps[b]:,} "
                "sends went to customers where it earns more."
            )
        else:
            ratio = row[b] / cost[i, b] if cost[i, b] > 0 else math.inf
            texts.append(
                f"No offer: {o.name} would earn {row[b]:.2f} net ({ratio:.2f} per unit of cost), "
                "but the budget went to customers where offers earn more."
            )
    return texts


def top_items(recs: pd.DataFrame, k: int) -> dict[str, list[str]]:
    """Each customer's first ``k`` recommended items (by rank) from rows of the
    ``recommendations`` table."""
    if recs.empty:
        return {}
    r = recs.sort_values(["user_id", "rank"], kind="mergesort")
    r = r.groupby("user_id", sort=False).head(k)
    return {
        str(u): [str(x) for x in part["item_id"]] for u, part in r.groupby("user_id", sort=False)
    }

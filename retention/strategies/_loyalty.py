"""A loyalty programme: tiers, points with expiry, tier benefits, coupons, a holdout, its cost.

The programme is declared in a TOML file (:meth:`LoyaltyProgram.from_toml`; every key checked,
errors name the key) and run on the customers' scores or spend:

* **tiers** from a score per customer, ``basis = "value"`` (predicted CLV, which weighs
  P(retained) and spend) or ``"spend"`` (rolling spend over ``spend_window_days``); thresholds set
  to target shares (``thresholds = "shares"``), given as scores (``"scores"``), or chosen to
  maximise the expected value of the programme under a cost budget (``"optimise"``, with each
  tier's assumed retention lift; an assumption the holdout later checks);
* **points** per currency unit (times the tier's multiplier), expiring ``expiry_days`` after they
  were earned, redeemed by events of type ``redeem_event``: the ledger is
  :func:`retention.strategies.build_ledger`;
* **a persistent random holdout**: a customer is held out when a salted hash of their id falls
  below ``holdout.share`` (:func:`holdout_assignment`); held-out customers get no tier, benefits
  or points, so that the programme's incremental effect is measured against them;
* **cost**: per member, the tier's fixed benefit cost, its discount on the expected spend, and the
  points the expected spend earns times their value and redemption rate; programme-wide, the
  total and the retention lift needed to pay for it (:func:`programme_economics`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention.exceptions import ConfigError

__all__ = [
    "DEFAULT_PROGRAM_TOML",
    "CouponRule",
    "LoyaltyProgram",
    "Tier",
    "assign_tiers",
    "holdout_assignment",
    "member_costs",
    "optimise_thresholds",
    "programme_economics",
    "share_thresholds",
    "tier_movement",
]

#: the programme ``retention loyalty run`` uses without ``--config`` (``retention loyalty
#: example`` prints it): four tiers by predicted value, 1 point per currency unit worth 0.01
DEFAULT_PROGRAM_TOML = """\
# A loyalty programme for `retention loyalty run --config FILE`. Every key is optional except the
# tiers; unknown keys are refused with a message that names them.

[program]
name = "rewards"
basis = "value"            # "value": predicted CLV from `retention score`; "spend": rolling spend
spend_window_days = 365    # the window of rolling spend (basis = "spend")
horizon_days = 90          # the window of the expected cost
thresholds = "shares"      # "shares" (tier shares below), "scores" (min_score), "optimise"
# budget = 10000.0         # thresholds = "optimise": most expected cost over the horizon

[points]
per_currency_unit = 1.0    # points per unit of spend, times the tier's multiplier
point_value = 0.01         # what one redeemed point costs
redemption_rate = 0.6      # share of points expected to be redeemed (the rest expire)
expiry_days = 365          # points expire this long after they were earned
redeem_event = "redeem"    # events of this type redeem points (quantity = points)
return_event = "return"    # events of this type take back the points their amount earned

[holdout]
share = 0.05               # persistent random holdout: no tier, no points
salt = "rewards"           # change it only to draw a new holdout

# Tiers, lowest first. share: the share of members (thresholds = "shares"); min_score: the
# lowest score of the tier (thresholds = "scores"); expected_lift: the absolute rise in
# P(retained) the tier's benefits are assumed to bring (thresholds = "optimise"; an assumption
# the holdout measures).
[[tiers]]
name = "Bronze"
share = 0.5
min_score = 0.0
message = "Welcome to Rewards: 1 point for every pound you spend."

[[tiers]]
name = "Silver"
share = 0.3
min_score = 100.0
points_multiplier = 1.25
expected_lift = 0.01
message = "You are Silver: 25% more points on every order."

[[tiers]]
name = "Gold"
share = 0.15
min_score = 500.0
points_multiplier = 1.5
discount = 0.02
expected_lift = 0.02
message = "You are Gold: 50% more points and 2% off every order."

[[tiers]]
name = "Platinum"
share = 0.05
min_score = 2000.0
points_multiplier = 2.0
discount = 0.05
benefit_cost = 5.0
expected_lift = 0.03
message = "You are Platinum: double points, 5% off and free delivery."

# Coupons members may buy with points.
[[coupons]]
name = "5 off"
points = 500
value = 5.0

[[coupons]]
name = "20 off"
points = 1800
value = 20.0
min_tier = "Gold"
"""

_BASES = ("value", "spend")
_THRESHOLDS = ("shares", "scores", "optimise")


@dataclass(frozen=True)
class Tier:
    """One tier of the programme (see the module docstring for the keys)."""

    name: str
    share: float | None = None
    min_score: float | None = None
    points_multiplier: float = 1.0
    discount: float = 0.0
    benefit_cost: float = 0.0
    expected_lift: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class CouponRule:
    """A coupon members buy with points."""

    name: str
    points: int
    value: float
    min_tier: str | None = None


@dataclass(frozen=True)
class LoyaltyProgram:
    """A validated programme; build it with :meth:`from_toml` or :meth:`from_dict`."""

    tiers: tuple[Tier, ...]
    name: str = "rewards"
    basis: str = "value"
    spend_window_days: int = 365
    horizon_days: int = 90
    thresholds: str = "shares"
    budget: float | None = None
    per_currency_unit: float = 1.0
    point_value: float = 0.01
    redemption_rate: float = 0.6
    expiry_days: int | None = 365
    redeem_event: str = "redeem"
    return_event: str = "return"
    holdout_share: float = 0.05
    holdout_salt: str = "rewards"
    coupons: tuple[CouponRule, ...] = field(default_factory=tuple)

    @property
    def tier_names(self) -> list[str]:
        """Tier names, lowest first."""
        return [t.name for t in self.tiers]

    def tier(self, name: str) -> Tier:
        """The tier called ``name``."""
        for t in self.tiers:
            if t.name == name:
                return t
        raise ConfigError(f"No tier {name!r}; the tiers are {', '.join(self.tier_names)}.")

    def to_dict(self) -> dict[str, Any]:
        """The programme as JSON-ready data (stored with each run)."""
        return asdict(self)

    @classmethod
    def default(cls) -> LoyaltyProgram:
        """The programme of :data:`DEFAULT_PROGRAM_TOML`."""
        return cls.from_dict(tomllib.loads(DEFAULT_PROGRAM_TOML), source="the default programme")

    @classmethod
    def from_toml(cls, path: str | Path) -> LoyaltyProgram:
        """Read and validate a programme file; a one-line :class:`ConfigError` names any
        problem's key."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"No loyalty programme file {p}: pass --config FILE (`retention loyalty example` "
                "prints one)."
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Cannot read {p} ({exc}): pass a UTF-8 TOML file.") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p.name} is not valid TOML ({exc}): fix the syntax.") from None
        return cls.from_dict(data, source=p.name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "the programme") -> LoyaltyProgram:
        """Validate a parsed TOML document (see :data:`DEFAULT_PROGRAM_TOML` for the keys)."""
        return _parse(dict(data), source)


# ---------------------------------------------------------------------------------- validation
class _Reader:
    """Typed access to one table of the TOML document, naming the key in every error."""

    def __init__(self, table: Any, where: str, source: str, known: Sequence[str]) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {where} must be a table; got {type(table).__name__}.")
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise ConfigError(
                f"{source}: {where} has unknown key(s) {', '.join(unknown)}; the keys are "
                f"{', '.join(known)}."
            )
        self.table, self.where, self.source = table, where, source

    def _fail(self, key: str, want: str) -> ConfigError:
        return ConfigError(
            f"{self.source}: {self.where}.{key} must be {want}; got {self.table[key]!r}."
        )

    def number(
        self,
        key: str,
        default: float | None,
        *,
        low: float = -math.inf,
        high: float = math.inf,
        strict_low: bool = False,
    ) -> float | None:
        if key not in self.table:
            return default
        v = self.table[key]
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if ok:
            ok = (v > low if strict_low else v >= low) and v <= high
        if not ok:
            bound = f"{'>' if strict_low else '>='} {low:g}" if low > -math.inf else "a number"
            extra = f" and <= {high:g}" if high < math.inf else ""
            raise self._fail(key, f"a number {bound}{extra}" if low > -math.inf else "a number")
        return float(v)

    def integer(self, key: str, default: int | None, *, low: int = 0) -> int | None:
        if key not in self.table:
            return default
        v = self.table[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise self._fail(key, f"a whole number >= {low}")
        return int(v)

    def text(self, key: str, default: str | None, choices: Sequence[str] = ()) -> str | None:
        if key not in self.table:
            return default
        v = self.table[key]
        if not isinstance(v, str) or (choices and v not in choices) or (not choices and not v):
            raise self._fail(key, f"one of {', '.join(map(repr, choices))}" if choices else "text")
        return v


_PROGRAM_KEYS = ("name", "basis", "spend_window_days", "horizon_days", "thresholds", "budget")
_POINTS_KEYS = (
    "per_currency_unit",
    "point_value",
    "redemption_rate",
    "expiry_days",
    "redeem_event",
    "return_event",
)
_HOLDOUT_KEYS = ("share", "salt")
_TIER_KEYS = tuple(f.name for f in Tier.__dataclass_fields__.values())
_COUPON_KEYS = ("name", "points", "value", "min_tier")


def _parse(data: dict[str, Any], source: str) -> LoyaltyProgram:
    top = _Reader(data, "the file", source, ("program", "points", "holdout", "tiers", "coupons"))
    prog = _Reader(data.get("program", {}), "[program]", source, _PROGRAM_KEYS)
    pts = _Reader(data.get("points", {}), "[points]", source, _POINTS_KEYS)
    hold = _Reader(data.get("holdout", {}), "[holdout]", source, _HOLDOUT_KEYS)
    del top
    raw_tiers = data.get("tiers")
    if not isinstance(raw_tiers, list) or not raw_tiers:
        raise ConfigError(
            f"{source}: declare at least one tier as [[tiers]] with a name (lowest first)."
        )
    tiers = []
    for i, raw in enumerate(raw_tiers, start=1):
        r = _Reader(raw, f"tiers[{i}]", source, _TIER_KEYS)
        name = r.text("name", None)
        if name is None:
            raise ConfigError(f"{source}: tiers[{i}].name is missing: give every tier a name.")
        tiers.append(
            Tier(
                name=name,
                share=r.number("share", None, low=0.0, high=1.0),
                min_score=r.number("min_score", None),
                points_multiplier=float(r.number("points_multiplier", 1.0, low=0.0) or 0.0),
                discount=float(r.number("discount", 0.0, low=0.0, high=1.0) or 0.0),
                benefit_cost=float(r.number("benefit_cost", 0.0, low=0.0) or 0.0),
                expected_lift=float(r.number("expected_lift", 0.0, low=-1.0, high=1.0) or 0.0),
                message=r.text("message", "") or "",
            )
        )
    names = [t.name for t in tiers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"{source}: tier name(s) {', '.join(dupes)} appear twice; name each once."
        )
    basis = prog.text("basis", "value", _BASES)
    mode = prog.text("thresholds", "shares", _THRESHOLDS)
    budget = prog.number("budget", None, low=0.0)
    if mode == "shares":
        missing = [f"tiers[{i}].share" for i, t in enumerate(tiers, 1) if t.share is None]
        if missing:
            raise ConfigError(
                f'{source}: thresholds = "shares" needs a share per tier; missing '
                f"{', '.join(missing)}."
            )
        total = sum(float(t.share or 0.0) for t in tiers)
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(
                f"{source}: the tiers' shares must add up to 1; they add up to {total:g}."
            )
    if mode == "scores":
        missing = [f"tiers[{i}].min_score" for i, t in enumerate(tiers, 1) if t.min_score is None]
        if missing:
            raise ConfigError(
                f'{source}: thresholds = "scores" needs min_score per tier; missing '
                f"{', '.join(missing)}."
            )
        mins = [float(t.min_score or 0.0) for t in tiers]
        if any(b <= a for a, b in itertools.pairwise(mins)):
            raise ConfigError(
                f"{source}: tiers' min_score must rise from the lowest tier to the highest; got "
                f"{mins}."
            )
    if mode == "optimise" and budget is None:
        raise ConfigError(
            f'{source}: thresholds = "optimise" needs [program].budget, the most expected cost '
            "over the horizon."
        )
    coupons = []
    for i, raw in enumerate(data.get("coupons", []) or [], start=1):
        r = _Reader(raw, f"coupons[{i}]", source, _COUPON_KEYS)
        name = r.text("name", None)
        points = r.integer("points", None, low=1)
        value = r.number("value", None, low=0.0)
        if name is None or points is None or value is None:
            raise ConfigError(f"{source}: coupons[{i}] needs name, points and value.")
        min_tier = r.text("min_tier", None)
        if min_tier is not None and min_tier not in names:
            raise ConfigError(
                f"{source}: coupons[{i}].min_tier {min_tier!r} is not a tier; the tiers are "
                f"{', '.join(names)}."
            )
        coupons.append(CouponRule(name, int(points), float(value), min_tier))
    expiry = pts.integer("expiry_days", 365, low=0)
    return LoyaltyProgram(
        tiers=tuple(tiers),
        name=prog.text("name", "rewards") or "rewards",
        basis=basis or "value",
        spend_window_days=int(prog.integer("spend_window_days", 365, low=1) or 365),
        horizon_days=int(prog.integer("horizon_days", 90, low=1) or 90),
        thresholds=mode or "shares",
        budget=budget,
        per_currency_unit=float(pts.number("per_currency_unit", 1.0, low=0.0) or 0.0),
        point_value=float(pts.number("point_value", 0.01, low=0.0) or 0.0),
        redemption_rate=float(pts.number("redemption_rate", 0.6, low=0.0, high=1.0) or 0.0),
        expiry_days=None if expiry == 0 else expiry,
        redeem_event=pts.text("redeem_event", "redeem") or "redeem",
        return_event=pts.text("return_event", "return") or "return",
        holdout_share=float(hold.number("share", 0.05, low=0.0, high=0.5) or 0.0),
        holdout_salt=hold.text("salt", "rewards") or "rewards",
        coupons=tuple(coupons),
    )


# -------------------------------------------------------------------------------- the holdout
def holdout_assignment(user_ids: Sequence[str] | pd.Index, share: float, salt: str) -> np.ndarray:
    """Whether each customer is in the holdout: the first 8 bytes of SHA-256(``salt:user_id``)
    as a fraction of 2**64, below ``share``. The same id and salt always give the same answer,
    so the holdout persists across runs and machines."""
    if not 0 <= share <= 1:
        raise ConfigError(f"The holdout share must be in [0, 1]; got {share!r}.")
    out = np.empty(len(user_ids), dtype=bool)
    prefix = f"{salt}:".encode()
    for i, uid in enumerate(user_ids):
        digest = hashlib.sha256(prefix + str(uid).encode("utf-8")).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0**64 < share
    return out


# ------------------------------------------------------------------------------------ tiers
def assign_tiers(
    scores: pd.Series, program: LoyaltyProgram, thresholds: Sequence[float] | None = None
) -> pd.Series:
    """Each customer's tier from their score (index: user_id).

    ``thresholds`` (the lowest score of each tier above the first) overrides the programme's;
    with ``thresholds = "shares"``, tiers are cut at the score quantiles of the target shares
    (ties stay together, in the higher tier).
    """
    s = pd.to_numeric(scores, errors="coerce").fillna(0.0).astype(float)
    names = program.tier_names
    if thresholds is None:
        if program.thresholds == "scores":
            thresholds = [float(t.min_score or 0.0) for t in program.tiers[1:]]
        elif program.thresholds == "shares":
            thresholds = share_thresholds(
                s.to_numpy(), [float(t.share or 0) for t in program.tiers]
            )
        else:
            raise ConfigError(
                'thresholds = "optimise": compute them with optimise_thresholds first.'
            )
    cuts = np.asarray(list(thresholds), dtype=float)
    if len(cuts) != len(names) - 1:
        raise ConfigError(f"Pass {len(names) - 1} threshold(s) for {len(names)} tiers.")
    idx = np.searchsorted(cuts, s.to_numpy(), side="right")
    return pd.Series(np.asarray(names, dtype=object)[idx], index=s.index, name="tier")


def share_thresholds(scores: np.ndarray, shares: Sequence[float]) -> list[float]:
    """Lowest score of each tier above the first so that the tiers hold about ``shares`` (lowest
    tier first) of the customers."""
    s = np.sort(np.asarray(scores, dtype=float))
    if not len(s):
        return [math.inf] * (len(shares) - 1)
    cum = np.cumsum(shares)[:-1]
    out = []
    for c in cum:
        k = round(float(c) * len(s))
        out.append(float(s[k]) if k < len(s) else math.inf)
    # keep thresholds non-decreasing (ties at a cut go to the higher tier)
    return list(np.maximum.accumulate(np.asarray(out))) if out else []


def member_costs(
    tiers: pd.Series,
    expected_spend: pd.Series,
    program: LoyaltyProgram,
    *,
    balance: pd.Series | None = None,
) -> pd.DataFrame:
    """Expected cost per member over the horizon: the tier's fixed benefit, its discount on the
    expected spend, and the points that spend earns times their value and redemption rate; plus
    the liability of the current balance.

    Returns
    -------
    pd.DataFrame
        ``benefit``, ``discount``, ``points``, ``liability`` and ``expected_cost`` (their sum),
        indexed like ``tiers``; zero for customers without a tier (the holdout).
    """
    spend = expected_spend.reindex(tiers.index).fillna(0.0).clip(lower=0.0)
    by = {t.name: t for t in program.tiers}
    have = tiers.notna()
    mult = tiers.map(lambda n: by[n].points_multiplier if n in by else 0.0).astype(float)
    disc = tiers.map(lambda n: by[n].discount if n in by else 0.0).astype(float)
    fixed = tiers.map(lambda n: by[n].benefit_cost if n in by else 0.0).astype(float)
    point_cost = program.point_value * program.redemption_rate
    bal = balance.reindex(tiers.index).fillna(0.0) if balance is not None else 0.0 * spend
    out = pd.DataFrame(
        {
            "benefit": fixed.where(have, 0.0),
            "discount": (disc * spend).where(have, 0.0),
            "points": (spend * program.per_currency_unit * mult * point_cost).where(have, 0.0),
            "liability": (bal.astype(float) * point_cost).where(have, 0.0),
        },
        index=tiers.index,
    )
    out["expected_cost"] = out.sum(axis=1)
    return out


def optimise_thresholds(
    scores: pd.Series,
    value_if_retained: pd.Series,
    expected_spend: pd.Series,
    program: LoyaltyProgram,
    *,
    grid: int = 40,
) -> tuple[list[float], float, float]:
    """Tier thresholds (monotone in the score) maximising the programme's expected net value
    ``sum(expected_lift * value_if_retained - cost)`` with total cost within ``program.budget``.

    The thresholds are searched over ``grid`` score quantiles (every monotone combination, by
    prefix sums). Returns ``(thresholds, net value, cost)``.
    """
    if program.budget is None:
        raise ConfigError('thresholds = "optimise" needs [program].budget.')
    s = pd.to_numeric(scores, errors="coerce").fillna(0.0)
    order = np.argsort(-s.to_numpy(), kind="mergesort")  # highest first
    sv = s.to_numpy()[order]
    value = value_if_retained.reindex(s.index).fillna(0.0).to_numpy()[order]
    spend = expected_spend.reindex(s.index).fillna(0.0).clip(lower=0).to_numpy()[order]
    n, T = len(sv), len(program.tiers)
    if n == 0 or T == 1:
        return [], 0.0, 0.0
    point_cost = program.point_value * program.redemption_rate * program.per_currency_unit
    net_cum, cost_cum = [], []
    for t in program.tiers:
        cost = t.benefit_cost + t.discount * spend + spend * t.points_multiplier * point_cost
        net = t.expected_lift * value - cost
        net_cum.append(np.r_[0.0, np.cumsum(net)])
        cost_cum.append(np.r_[0.0, np.cumsum(cost)])
    # candidate cut positions (number of customers in tiers above a cut), highest first
    cuts = np.unique(np.linspace(0, n, grid + 1).round().astype(int))
    best: tuple[float, float, tuple[int, ...]] | None = None
    for combo in itertools.combinations_with_replacement(cuts, T - 1):
        # combo[0] <= combo[1] <= ...: customers [0, combo[0]) in the top tier, and so on
        bounds = (0, *(int(c) for c in combo), n)
        total_net = total_cost = 0.0
        for k in range(T):
            tier_i = T - 1 - k  # top tier first
            a, b = bounds[k], bounds[k + 1]
            total_net += float(net_cum[tier_i][b] - net_cum[tier_i][a])
            total_cost += float(cost_cum[tier_i][b] - cost_cum[tier_i][a])
        if total_cost <= program.budget and (best is None or total_net > best[0]):
            best = (total_net, total_cost, tuple(int(c) for c in combo))
    if best is None:
        raise ConfigError(
            f"No tier thresholds keep the cost within the budget {program.budget:g}: even the "
            "cheapest assignment costs more. Raise [program].budget or lower the lowest tier's "
            "benefits."
        )
    best_net, best_cost, best_combo = best
    thresholds: list[float] = []
    for k in range(T - 1):  # the cut between tier k and k+1 (lowest first)
        pos = best_combo[T - 2 - k]  # customers above that cut
        thresholds.append(float(sv[pos - 1]) if pos > 0 else math.inf)
    thresholds = [float(t) for t in np.maximum.accumulate(np.asarray(thresholds))]
    return thresholds, best_net, best_cost


def tier_movement(
    tiers: pd.Series, previous: pd.Series | None, program: LoyaltyProgram
) -> pd.Series:
    """``new``, ``up``, ``down``, ``same`` or ``holdout`` per customer, against the last run."""
    rank = {n: i for i, n in enumerate(program.tier_names)}
    prev = (
        previous.reindex(tiers.index)
        if previous is not None
        else pd.Series(None, index=tiers.index, dtype=object)
    )
    out = []
    for now, before in zip(tiers.tolist(), prev.tolist(), strict=True):
        if now is None or (isinstance(now, float) and math.isnan(now)):
            out.append("holdout")
        elif (
            before is None
            or (isinstance(before, float) and math.isnan(before))
            or before not in rank
        ):
            out.append("new")
        elif rank[now] > rank[before]:
            out.append("up")
        elif rank[now] < rank[before]:
            out.append("down")
        else:
            out.append("same")
    return pd.Series(out, index=tiers.index, name="movement", dtype=object)


def programme_economics(
    costs: pd.DataFrame, clv: pd.Series | None, p_retained: pd.Series | None
) -> dict[str, float]:
    """What the programme costs and the retention lift that would pay for it.

    ``break_even_lift``: the rise in P(retained), the same for every member, whose extra value
    (``lift * value if retained``, with value if retained = CLV / P(retained)) equals the
    expected cost; ``break_even_relative``: the relative rise in members' expected value (CLV)
    that pays for it. NaN without scores.
    """
    total = float(costs["expected_cost"].sum())
    horizon = float(costs[["benefit", "discount", "points"]].sum().sum())
    out = {
        "expected_cost": total,
        "horizon_cost": horizon,
        "liability": float(costs["liability"].sum()),
        "break_even_lift": math.nan,
        "break_even_relative": math.nan,
    }
    if clv is not None and p_retained is not None:
        c = clv.reindex(costs.index).fillna(0.0).clip(lower=0)
        p = p_retained.reindex(costs.index).fillna(0.0).clip(lower=0.05)
        value_if_retained = float((c / p).sum())
        if value_if_retained > 0:
            out["break_even_lift"] = horizon / value_if_retained
        if float(c.sum()) > 0:
            out["break_even_relative"] = horizon / float(c.sum())
    return out

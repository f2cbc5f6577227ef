"""Spend a promotion budget where it changes behaviour: at most one offer per customer.

Given, per customer ``i`` and offer ``j``, the expected incremental value ``v[i, j]`` (uplift x
CLV or margin) and the expected cost ``c[i, j]`` (the send, plus the redemption cost times the
chance the coupon is used), :func:`optimise_budget` chooses ``x[i, j]`` in {0, 1} to maximise
``sum v x`` subject to

* ``sum_j x[i, j] <= 1`` (one offer per customer at most),
* ``sum c x <= budget``,
* ``sum_i x[i, j] <= cap[j]`` (per-offer caps, e.g. the coupons printed).

Methods:

* ``milp``: the exact integer programme, solved by HiGHS (``scipy.optimize.milp``). Only pairs
  with a positive value are variables. Up to :data:`EXACT_MAX_VARS` pairs by default (measured
  in ``benchmarks/promote.py``); the Lagrangian's choice is kept when HiGHS stops at its time
  limit with a worse one.
* ``lagrangian``: the budget and the caps are priced (``lambda``, ``mu_j``) and the dual is
  minimised coordinate by coordinate (each a bisection on a monotone subgradient); customers take
  their best priced offer, the few over the budget or a cap are dropped, and the money left is
  filled greedily. Any prices give an upper bound on the LP optimum (hence on the integer
  optimum), so the reported gap ``(bound - value) / bound`` is an upper bound on the true gap.
* ``greedy``: pairs by value per cost, taken while they fit (the baseline; bound as above).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from retention.exceptions import ConfigError, DataError

__all__ = [
    "EXACT_MAX_VARS",
    "Allocation",
    "lagrangian_bound",
    "lp_bound",
    "optimise_budget",
    "summarise_allocation",
]

#: ``method="auto"`` solves the exact integer programme up to this many candidate pairs (value >
#: 0) and the Lagrangian beyond. Measured by benchmarks/promote.py (shared machine): HiGHS proves
#: optimality for 2,900 pairs in 2.5 s, 9,000 in 18 s and 30,000 in 74 s, where the Lagrangian
#: takes 0.1 s and ends within 1e-5 of the optimum
EXACT_MAX_VARS = 5_000
_METHODS = ("auto", "milp", "lagrangian", "greedy")


@dataclass(frozen=True)
class Allocation:
    """The chosen offers.

    Attributes
    ----------
    choice : np.ndarray
        Per customer, the offer's column index, or -1 for none.
    value : float
        Total expected incremental value of the choice.
    cost : float
        Its total expected cost (never above the budget).
    bound : float
        An upper bound on the best total value (LP or Lagrangian dual bound).
    gap : float
        ``(bound - value) / bound`` (0 when the bound is 0): how far from optimal at most.
    method : str
        ``milp``, ``lagrangian`` or ``greedy``.
    status : str
        ``optimal``, ``time limit`` (milp stopped early: best found so far) or ``heuristic``.
    seconds : float
        Time taken.
    budget : float
        The budget.
    """

    choice: np.ndarray
    value: float
    cost: float
    bound: float
    gap: float
    method: str
    status: str
    seconds: float
    budget: float

    def counts(self, n_offers: int) -> np.ndarray:
        """Customers given each offer."""
        chosen = self.choice[self.choice >= 0]
        return np.bincount(chosen, minlength=n_offers)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary (not the choice itself)."""
        return {
            "method": self.method,
            "status": self.status,
            "value": float(self.value),
            "cost": float(self.cost),
            "budget": float(self.budget),
            "bound": float(self.bound),
            "gap": float(self.gap),
            "seconds": float(self.seconds),
            "n_treated": int((self.choice >= 0).sum()),
        }


def _check(
    value: npt.ArrayLike, cost: npt.ArrayLike, budget: float, caps: Sequence[int | None] | None
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    v = np.asarray(value, dtype=float)
    c = np.asarray(cost, dtype=float)
    if v.ndim == 1:
        v, c = v[:, None], c.reshape(-1, 1)
    if v.ndim != 2 or c.shape != v.shape:
        raise DataError(
            f"value and cost must be arrays of the same shape (customers, offers); got {v.shape} "
            f"and {c.shape}."
        )
    if not (np.isfinite(v).all() and np.isfinite(c).all()):
        raise DataError("value and cost must be finite numbers (no NaN or infinity).")
    if (c < 0).any():
        raise DataError("Costs must be >= 0.")
    try:
        b = float(budget)
    except (TypeError, ValueError):
        raise ConfigError(f"The budget must be a number >= 0; got {budget!r}.") from None
    if not np.isfinite(b) or b < 0:
        raise ConfigError(f"The budget must be a number >= 0; got {budget!r}.")
    m = v.shape[1]
    if caps is None:
        k = np.full(m, np.inf)
    else:
        if len(caps) != m:
            raise ConfigError(f"Pass one cap per offer ({m}); got {len(caps)}.")
        k = np.array([np.inf if x is None else float(x) for x in caps])
        if (k < 0).any() or np.any(np.isnan(k)):
            raise ConfigError(f"Caps must be >= 0 (or None for no cap); got {list(caps)}.")
        k = np.floor(k)
    return v, c, b, k


def _bound_gap(value: float, bound: float) -> float:
    if bound <= 0:
        return 0.0
    return max(0.0, (bound - value) / bound)


def _totals(choice: np.ndarray, v: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    rows = np.flatnonzero(choice >= 0)
    cols = choice[rows]
    return float(v[rows, cols].sum()), float(c[rows, cols].sum())


def _repair(
    choice: np.ndarray, v: np.ndarray, c: np.ndarray, budget: float, caps: np.ndarray
) -> np.ndarray:
    """Drop the fewest worst picks so that every cap and the budget hold exactly."""
    choice = choice.copy()
    for j in np.flatnonzero(np.isfinite(caps)):
        rows = np.flatnonzero(choice == j)
        if len(rows) > caps[j]:
            keep = rows[np.argsort(-v[rows, j], kind="mergesort")[: int(caps[j])]]
            choice[np.setdiff1d(rows, keep)] = -1
    rows = np.flatnonzero(choice >= 0)
    cols = choice[rows]
    if c[rows, cols].sum() > budget:
        ratio = v[rows, cols] / np.maximum(c[rows, cols], 1e-300)
        order = np.argsort(-ratio, kind="mergesort")
        spent = np.cumsum(c[rows[order], cols[order]])
        choice[rows[order[spent > budget * (1 + 1e-12)]]] = -1
        # numerical safety: recheck the exact sum
        while True:
            r2 = np.flatnonzero(choice >= 0)
            total = c[r2, choice[r2]].sum()
            if total <= budget or not len(r2):
                break
            worst = r2[np.argmin(v[r2, choice[r2]] / np.maximum(c[r2, choice[r2]], 1e-300))]
            choice[worst] = -1
    return choice


def _greedy_fill(
    choice: np.ndarray,
    v: np.ndarray,
    c: np.ndarray,
    budget: float,
    caps: np.ndarray,
    order_score: np.ndarray | None = None,
) -> np.ndarray:
    """Give free customers their pairs in decreasing ``order_score`` (default value per cost)
    while the budget and the caps allow."""
    choice = choice.copy()
    rows, cols = np.nonzero((v > 0) & (choice < 0)[:, None])
    if not len(rows):
        return choice
    cv, cc = v[rows, cols], c[rows, cols]
    score = (
        order_score[rows, cols]
        if order_score is not None
        else np.where(cc > 0, cv / np.maximum(cc, 1e-300), np.inf)
    )
    order = np.lexsort((rows, -cv, -score))
    used = np.zeros(v.shape[1])
    assigned = choice >= 0
    np.add.at(used, choice[assigned], 1)
    left = budget - float(c[np.flatnonzero(assigned), choice[assigned]].sum())
    min_cost = np.minimum.accumulate(cc[order][::-1])[::-1]
    taken = np.zeros(len(choice), dtype=bool)
    rows_o, cols_o, cost_o = rows[order].tolist(), cols[order].tolist(), cc[order].tolist()
    caps_l = caps.tolist()
    used_l = used.tolist()
    out = choice.tolist()
    for pos in range(len(rows_o)):
        if left < min_cost[pos]:
            break
        i, j, cost = rows_o[pos], cols_o[pos], cost_o[pos]
        if taken[i] or used_l[j] >= caps_l[j] or cost > left:
            continue
        out[i] = j
        taken[i] = True
        used_l[j] += 1
        left -= cost
    return np.asarray(out, dtype=np.int64)


def _dual_parts(
    v: np.ndarray, c: np.ndarray, lam: float, mu: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's best priced offer and its priced value (0 and -1 when none is worth it)."""
    s = v - lam * c - mu[None, :]
    best = s.argmax(axis=1)
    top = s[np.arange(len(s)), best]
    return np.where(top > 0, best, -1), np.maximum(top, 0.0)


def _dual_value(
    v: np.ndarray, c: np.ndarray, budget: float, caps: np.ndarray, lam: float, mu: np.ndarray
) -> float:
    _, top = _dual_parts(v, c, lam, mu)
    finite = np.isfinite(caps)
    return float(lam * budget + (mu[finite] * caps[finite]).sum() + top.sum())


def _minimise_dual(
    v: np.ndarray, c: np.ndarray, budget: float, caps: np.ndarray, *, sweeps: int = 12
) -> tuple[float, np.ndarray]:
    """Prices ``(lambda, mu)`` minimising the Lagrangian dual, coordinate by coordinate."""
    m = v.shape[1]
    lam, mu = 0.0, np.zeros(m)
    pos_c = c > 0
    lam_hi0 = float((v[pos_c] / c[pos_c]).max()) if pos_c.any() else 0.0
    mu_hi0 = float(v.max(initial=0.0))

    def spend(lam_: float, mu_: np.ndarray) -> float:
        best, _ = _dual_parts(v, c, lam_, mu_)
        rows = np.flatnonzero(best >= 0)
        return float(c[rows, best[rows]].sum())

    def count(j: int, lam_: float, mu_: np.ndarray) -> int:
        best, _ = _dual_parts(v, c, lam_, mu_)
        return int((best == j).sum())

    def bisect(over: object, lo: float, hi: float) -> float:
        """Smallest price in [lo, hi] at which ``over(price)`` is False (monotone)."""
        if not over(lo):  # type: ignore[operator]
            return lo
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if over(mid):  # type: ignore[operator]
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-12 * max(1.0, hi):
                break
        return hi

    for _ in range(sweeps):
        before = (lam, mu.copy())
        if lam_hi0 > 0:
            lam = bisect(lambda x: spend(x, mu) > budget, 0.0, lam_hi0 * (1 + 1e-9))
        for j in np.flatnonzero(np.isfinite(caps)):

            def over_cap(x: float, j: int = int(j), lam: float = lam) -> bool:
                trial = mu.copy()
                trial[j] = x
                return count(j, lam, trial) > caps[j]

            mu[j] = bisect(over_cap, 0.0, mu_hi0 * (1 + 1e-9) + 1e-12)
        if abs(lam - before[0]) <= 1e-9 * max(1.0, lam) and np.allclose(mu, before[1]):
            break
    return lam, mu


def lagrangian_bound(
    value: npt.ArrayLike,
    cost: npt.ArrayLike,
    budget: float,
    caps: Sequence[int | None] | None = None,
) -> float:
    """An upper bound on the best total value: the Lagrangian dual at the prices it finds."""
    v, c, b, k = _check(value, cost, budget, caps)
    lam, mu = _minimise_dual(v, c, b, k)
    return _dual_value(v, c, b, k, lam, mu)


def lp_bound(
    value: npt.ArrayLike,
    cost: npt.ArrayLike,
    budget: float,
    caps: Sequence[int | None] | None = None,
) -> float:
    """The LP relaxation's optimum (HiGHS), the tightest bound of this kind; sized for tests and
    benchmarks (it builds the whole constraint matrix)."""
    from scipy.optimize import linprog

    v, c, b, k = _check(value, cost, budget, caps)
    rows, cols, A, ub = _constraints(v, c, b, k)
    if not len(rows):
        return 0.0
    res = linprog(-v[rows, cols], A_ub=A, b_ub=ub, bounds=(0, 1), method="highs")
    if res.status != 0:
        raise DataError(f"The LP relaxation could not be solved: {res.message}")
    return float(-res.fun)


def _constraints(
    v: np.ndarray, c: np.ndarray, budget: float, caps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, object, np.ndarray]:
    from scipy import sparse

    rows, cols = np.nonzero((v > 0) & (c <= budget))
    p = len(rows)
    per_customer = np.bincount(rows, minlength=v.shape[0])
    multi = np.flatnonzero(per_customer > 1)  # one-offer rows only where it can bind
    row_of = np.full(v.shape[0], -1)
    row_of[multi] = np.arange(len(multi))
    keep = row_of[rows] >= 0
    r_cust = row_of[rows[keep]]
    c_cust = np.flatnonzero(keep)
    n_rows = len(multi)
    budget_row = np.full(p, n_rows)
    capped = np.flatnonzero(np.isfinite(caps))
    cap_row = {int(j): n_rows + 1 + i for i, j in enumerate(capped)}
    cap_sel = np.isin(cols, capped)
    r_cap = np.array([cap_row[int(j)] for j in cols[cap_sel]], dtype=np.int64)
    data = np.r_[np.ones(len(r_cust)), c[rows, cols], np.ones(int(cap_sel.sum()))]
    r_all = np.r_[r_cust, budget_row, r_cap]
    c_all = np.r_[c_cust, np.arange(p), np.flatnonzero(cap_sel)]
    A = sparse.csr_array((data, (r_all, c_all)), shape=(n_rows + 1 + len(capped), p))
    ub = np.r_[np.ones(n_rows), budget, caps[capped]]
    return rows, cols, A, ub


def _milp(
    v: np.ndarray,
    c: np.ndarray,
    budget: float,
    caps: np.ndarray,
    time_limit: float,
    mip_rel_gap: float,
) -> tuple[np.ndarray, float, str]:
    from scipy.optimize import Bounds, LinearConstraint, milp

    choice = np.full(v.shape[0], -1, dtype=np.int64)
    rows, cols, A, ub = _constraints(v, c, budget, caps)
    if not len(rows):
        return choice, 0.0, "optimal"
    res = milp(
        -v[rows, cols],
        integrality=np.ones(len(rows)),
        bounds=Bounds(0, 1),
        constraints=LinearConstraint(A, -np.inf, ub),
        options={"time_limit": float(time_limit), "mip_rel_gap": float(mip_rel_gap)},
    )
    bound = getattr(res, "mip_dual_bound", None)
    bound_v = -float(bound) if bound is not None and np.isfinite(bound) else np.inf
    if res.x is None:  # time limit before a first solution: the caller keeps its incumbent
        return choice, bound_v, "time limit"
    pick = res.x > 0.5
    choice[rows[pick]] = cols[pick]
    if not np.isfinite(bound_v):
        bound_v = float(-res.fun) if res.status == 0 else np.inf
    status = "optimal" if res.status == 0 else "time limit"
    return choice, bound_v, status


def optimise_budget(
    value: npt.ArrayLike,
    cost: npt.ArrayLike,
    budget: float,
    caps: Sequence[int | None] | None = None,
    *,
    method: str = "auto",
    exact_max_vars: int = EXACT_MAX_VARS,
    time_limit: float = 120.0,
    mip_rel_gap: float = 1e-6,
) -> Allocation:
    """Choose at most one offer per customer to maximise the expected incremental value within
    the budget and the per-offer caps.

    Parameters
    ----------
    value : array (n, m)
        Expected incremental value of each offer for each customer (pairs <= 0 are never chosen).
    cost : array (n, m)
        Expected cost of each offer for each customer (>= 0).
    budget : float
        Total cost allowed.
    caps : sequence of int or None, optional
        Most customers per offer (None: no cap).
    method : {"auto", "milp", "lagrangian", "greedy"}
        ``auto``: ``milp`` up to ``exact_max_vars`` candidate pairs, ``lagrangian`` beyond.
    exact_max_vars : int
        See ``method``.
    time_limit : float
        Seconds HiGHS may take (the best solution found so far is returned, status
        ``time limit``).
    mip_rel_gap : float
        Relative gap at which HiGHS stops.

    Returns
    -------
    Allocation

    Examples
    --------
    >>> a = optimise_budget([[3.0, 1.0], [2.0, 2.5]], [[1.0, 1.0], [1.0, 2.0]], budget=2)
    >>> a.choice.tolist(), a.value, a.cost
    ([0, 0], 5.0, 2.0)
    """
    if method not in _METHODS:
        raise ConfigError(f"method must be one of {', '.join(_METHODS)}; got {method!r}.")
    v, c, b, k = _check(value, cost, budget, caps)
    t0 = time.perf_counter()
    n_vars = int(((v > 0) & (c <= b)).sum())
    chosen = method if method != "auto" else ("milp" if n_vars <= exact_max_vars else "lagrangian")
    if chosen in ("milp", "lagrangian"):
        lam, mu = _minimise_dual(v, c, b, k)
        first, _ = _dual_parts(v, c, lam, mu)
        choice = _greedy_fill(_repair(first, v, c, b, k), v, c, b, k)
        bound, status = _dual_value(v, c, b, k, lam, mu), "heuristic"
    if chosen == "milp":
        # the Lagrangian's choice is the incumbent: HiGHS may stop at its time limit
        exact, milp_bound, status = _milp(v, c, b, k, time_limit, mip_rel_gap)
        exact = _repair(exact, v, c, b, k)  # only ever drops a pick at solver tolerance
        if _totals(exact, v, c)[0] >= _totals(choice, v, c)[0]:
            choice = exact
        bound = min(bound, milp_bound)
    elif chosen == "greedy":
        choice = _greedy_fill(np.full(v.shape[0], -1, dtype=np.int64), v, c, b, k)
        lam, mu = _minimise_dual(v, c, b, k)
        bound, status = _dual_value(v, c, b, k, lam, mu), "heuristic"
    total_v, total_c = _totals(choice, v, c)
    bound = max(bound, total_v)
    return Allocation(
        choice=choice,
        value=total_v,
        cost=total_c,
        bound=bound,
        gap=_bound_gap(total_v, bound),
        method=chosen,
        status=status,
        seconds=time.perf_counter() - t0,
        budget=b,
    )


def summarise_allocation(
    choice: npt.ArrayLike,
    value: npt.ArrayLike,
    cost: npt.ArrayLike,
    *,
    conversions: npt.ArrayLike | None = None,
    names: Sequence[str] | None = None,
    n_boot: int = 200,
    level: float = 0.95,
    random_state: int = 0,
) -> pd.DataFrame:
    """Totals per offer and overall: customers, expected incremental conversions, value, cost and
    ROI ``(value - cost) / cost``, with bootstrap intervals.

    The intervals resample the customers (Poisson bootstrap, so that a million customers fit in
    memory): how much the totals would vary over populations like this one. They do not include
    the uplift model's own error, which the held-out evaluation measures.

    Parameters
    ----------
    choice : array (n,)
        Offer index per customer, -1 for none.
    value, cost : arrays (n, m)
        As given to :func:`optimise_budget`.
    conversions : array (n, m), optional
        Expected incremental conversions (the uplift itself, for a binary outcome).
    names : sequence of str, optional
        Offer names (default ``offer_0``, ...).
    """
    ch = np.asarray(choice, dtype=np.int64)
    v = np.asarray(value, dtype=float).reshape(len(ch), -1)
    c = np.asarray(cost, dtype=float).reshape(len(ch), -1)
    m = v.shape[1]
    labels = list(names) if names is not None else [f"offer_{j}" for j in range(m)]
    rows = np.flatnonzero(ch >= 0)
    cols = ch[rows]
    parts = {
        "incremental_value": v[rows, cols],
        "cost": c[rows, cols],
        "incremental_conversions": (
            np.asarray(conversions, dtype=float).reshape(len(ch), -1)[rows, cols]
            if conversions is not None
            else np.full(len(rows), np.nan)
        ),
    }
    groups = [(labels[j], cols == j) for j in range(m)] + [("total", np.ones(len(rows), bool))]
    rng = np.random.default_rng(random_state)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    boot: dict[str, list[np.ndarray]] = {k: [] for k in parts}
    done = 0
    while done < n_boot and len(rows):
        size = min(20, n_boot - done)
        w = rng.poisson(1.0, size=(size, len(rows))).astype(float)
        for key, arr in parts.items():
            boot[key].append(np.stack([w[:, g] @ arr[g] for _, g in groups], axis=1))
        done += size
    stacked = {k: np.concatenate(b) if b else None for k, b in boot.items()}
    out = []
    for gi, (name, g) in enumerate(groups):
        rec: dict[str, float | str] = {"offer": name, "customers": float(g.sum())}
        for key, arr in parts.items():
            rec[key] = float(arr[g].sum())
            sample = stacked[key]
            rec[f"{key}_low"] = (
                float(np.quantile(sample[:, gi], lo_q)) if sample is not None else np.nan
            )
            rec[f"{key}_high"] = (
                float(np.quantile(sample[:, gi], hi_q)) if sample is not None else np.nan
            )
        cst = float(parts["cost"][g].sum())
        rec["roi"] = (float(parts["incremental_value"][g].sum()) - cst) / cst if cst > 0 else np.nan
        s_cost, s_value = stacked["cost"], stacked["incremental_value"]
        if s_cost is not None and s_value is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                r = (s_value[:, gi] - s_cost[:, gi]) / s_cost[:, gi]
            r = r[np.isfinite(r)]
            rec["roi_low"] = float(np.quantile(r, lo_q)) if len(r) else np.nan
            rec["roi_high"] = float(np.quantile(r, hi_q)) if len(r) else np.nan
        else:
            rec["roi_low"] = rec["roi_high"] = np.nan
        out.append(rec)
    table = pd.DataFrame(out).set_index("offer")
    table["customers"] = table["customers"].astype(int)
    return table

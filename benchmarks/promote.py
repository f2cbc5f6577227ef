"""The budget optimiser: exact integer programme against the Lagrangian and greedy methods, up to
1,000,000 customers x 3 offers: seconds, peak memory, gap; the plan's totals with intervals.

    nice .venv/bin/python benchmarks/promote.py [--sizes 1000,3000,10000,100000,1000000]
                                                [--json benchmarks/results/promote.json]

The problem is built from real data: a three-arm S-learner fitted on Hillstrom (visit) predicts
each of its 64,000 customers' uplift for the Mens and the Womens e-mail; a third offer, a coupon,
is assumed to lift visits 1.5 times the better e-mail's and costs 3 per use, used by every
visitor who holds it (P(visit | no mail) + uplift, from the same model). A visit is worth the
customer's past spend scaled to Hillstrom's mean spend per visit. Offers cost 0.10 per send; the
budget is 0.10 per customer; the coupon is capped at 5% of the customers. Larger populations
resample the 64,000 customers (seeded, with a 10% log-normal jitter of their values).

Each size and method runs in a fresh process, so that its peak resident memory (``ru_maxrss``)
is its own; the same process first builds the problem alone, which gives the baseline memory.
Reported per run: seconds; peak memory and its excess over the baseline; the value found; the
bound (the integer programme's dual bound, or the Lagrangian dual at the prices found; the LP
optimum by HiGHS where it is solved) and the gap to it; for sizes the integer programme solves,
the Lagrangian's distance from the proven optimum. Ratios are within one run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import retention.data
from retention.exceptions import RetentionWarning

FILES = Path(retention.data.__file__).parent / "files"
SEND_COST = 0.10
COUPON_COST = 3.0
COUPON_LIFT = 1.5
BUDGET_PER_CUSTOMER = 0.10
COUPON_CAP_SHARE = 0.05


def base_population() -> dict[str, np.ndarray]:
    """Per Hillstrom customer: uplift of the two e-mails, P(visit | no mail), value of a visit."""
    from retention.strategies import FeatureEncoder, SLearner, check_uplift_frame

    df = pd.read_csv(FILES / "hillstrom.csv.gz", dtype={"zip_code": str, "channel": str})
    data = check_uplift_frame(df, treatment="segment", control="No E-Mail", outcome="visit")
    cols = [
        "recency",
        "history_segment",
        "history",
        "mens",
        "womens",
        "zip_code",
        "newbie",
        "channel",
    ]
    X = FeatureEncoder(cols).fit(data.frame).transform(data.frame).reset_index(drop=True)
    model = SLearner().fit(X, data.y, data.codes)
    uplift = model.predict(X)  # columns: Mens E-Mail, Womens E-Mail
    base = model.predict_outcomes(X)[:, 0]
    per_visit = df["spend"].sum() / df["visit"].sum()
    value = df["history"].to_numpy() / df["history"].mean() * per_visit
    return {"uplift": uplift, "base": base, "value": value}


def problem(pop: dict[str, np.ndarray], n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    m = len(pop["base"])
    idx = np.arange(n) if n == m else rng.integers(0, m, size=n)
    jitter = rng.lognormal(0.0, 0.1, size=n) if n != m else np.ones(n)
    u = pop["uplift"][idx]
    coupon = COUPON_LIFT * u.max(axis=1)
    uplift = np.column_stack([u, coupon])
    visit_value = pop["value"][idx] * jitter
    value = uplift * visit_value[:, None]
    p_treated = np.clip(pop["base"][idx][:, None] + uplift, 0, 1)
    cost = np.full((n, 3), SEND_COST)
    cost[:, 2] += COUPON_COST * p_treated[:, 2]
    caps = [None, None, int(COUPON_CAP_SHARE * n)]
    return value, cost, uplift, n * BUDGET_PER_CUSTOMER, caps


def _child(args: tuple[dict[str, np.ndarray], int, str, float]) -> dict[str, object]:
    pop, n, method, time_limit = args
    from retention.strategies import lagrangian_bound, lp_bound, optimise_budget

    value, cost, uplift, budget, caps = problem(pop, n)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out: dict[str, object] = {"n": n, "method": method, "pairs": int((value > 0).sum())}
    t0 = time.perf_counter()
    if method == "lp":
        out["lp_bound"] = lp_bound(value, cost, budget, caps)
        out["dual_bound"] = lagrangian_bound(value, cost, budget, caps)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = optimise_budget(
                value,
                cost,
                budget,
                caps,
                method=method,
                time_limit=time_limit,
                exact_max_vars=10**9,
            )
        out.update(
            {
                "value": a.value,
                "cost": a.cost,
                "budget": budget,
                "bound": a.bound,
                "gap": a.gap,
                "status": a.status,
                "treated": int((a.choice >= 0).sum()),
                "by_offer": a.counts(3).tolist(),
            }
        )
        if method == "lagrangian" and n == max(SIZES):
            from retention.strategies import summarise_allocation

            t = summarise_allocation(
                a.choice,
                value,
                cost,
                conversions=uplift,
                names=["Mens E-Mail", "Womens E-Mail", "coupon"],
                n_boot=200,
            )
            out["totals"] = json.loads(t.to_json(orient="index"))
    out["seconds"] = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_mb"] = peak
    out["baseline_mb"] = baseline_mb
    out["excess_mb"] = peak - baseline_mb
    return out


SIZES: list[int] = []


def run(pop: dict[str, np.ndarray], n: int, method: str, time_limit: float) -> dict[str, object]:
    ctx = mp.get_context("fork")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_child, ((pop, n, method, time_limit),))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000,10000,100000,1000000")
    parser.add_argument("--milp-max", type=int, default=10000, help="Largest n given to milp.")
    parser.add_argument("--lp-max", type=int, default=100000, help="Largest n whose LP is solved.")
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore", RetentionWarning)
    SIZES[:] = [int(s) for s in args.sizes.split(",")]
    t0 = time.perf_counter()
    pop = base_population()
    print(f"population built in {time.perf_counter() - t0:.1f}s", flush=True)
    rows = []
    for n in SIZES:
        methods = ["lagrangian", "greedy"]
        if n <= args.milp_max:
            methods.insert(0, "milp")
        if n <= args.lp_max:
            methods.append("lp")
        for method in methods:
            r = run(pop, n, method, args.time_limit)
            rows.append(r)
            print(
                f"n={n:>9,} {method:>10}: {r['seconds']:8.2f}s, peak {r['peak_mb']:7.0f} MB "
                f"(+{r['excess_mb']:.0f}), gap {r.get('gap', float('nan')):.2e}",
                flush=True,
            )
    table = pd.DataFrame(rows)
    summary: dict[str, object] = {
        "runs": json.loads(
            table.drop(columns=["totals"], errors="ignore").to_json(orient="records")
        )
    }
    by = {(r["n"], r["method"]): r for r in rows}
    compare = []
    for n in SIZES:
        lag, greedy = by.get((n, "lagrangian")), by.get((n, "greedy"))
        row: dict[str, object] = {"n": n}
        if lag and greedy:
            row["lagrangian_value_over_greedy"] = lag["value"] / greedy["value"]
            row["lagrangian_seconds_over_greedy"] = lag["seconds"] / greedy["seconds"]
            row["lagrangian_gap_to_its_bound"] = lag["gap"]
        milp = by.get((n, "milp"))
        if milp and lag:
            row["milp_status"] = milp["status"]
            row["lagrangian_below_milp"] = (milp["value"] - lag["value"]) / milp["value"]
            row["milp_seconds_over_lagrangian"] = milp["seconds"] / lag["seconds"]
        lp = by.get((n, "lp"))
        if lp and lag:
            row["lagrangian_gap_to_lp"] = (lp["lp_bound"] - lag["value"]) / lp["lp_bound"]
            row["dual_bound_over_lp"] = lp["dual_bound"] / lp["lp_bound"]
        compare.append(row)
    summary["comparison"] = compare
    largest = by.get((max(SIZES), "lagrangian"))
    if largest is not None:
        summary["largest"] = {
            k: largest[k] for k in ("n", "seconds", "peak_mb", "excess_mb", "gap", "value", "cost")
        }
        summary["largest"]["totals"] = largest.get("totals")
    summary["seconds"] = time.perf_counter() - t0
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

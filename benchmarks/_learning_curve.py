"""Learning curve: how many customers the engine needs (``prediction.py --learning-curve``).

For Online Retail (test cutoff 2011-09-10) and CDNOW master (1998-03-31), horizon 90 days, the
backtest of ``retention backtest`` runs on random subsets of the store's customers (100, 200,
500, 1,000, 2,000 and all; several seeds): the subset is of customers, every event of a chosen
customer is kept, and the split stays temporal (same cutoffs as the full backtest). In the same
run, on the same test population, it scores two baselines: BG/NBD (a backtest model) and a plain
recency rule (the fewer days since the last purchase, the likelier to come back). It prints
ROC-AUC per size as the mean and spread over seeds, the ensemble minus the recency rule, how
many seeds the ensemble beats the rule on, and what the learning cutoffs held (customers at the
validation cutoff, fewest retained / churned): what ``retention.features.MinData`` refers to.

A sample whose last event comes before the end of the test label window (a subset of CDNOW's
customers may stop buying before 1998-06-29, and the subset store cannot know that the
observation ran to 1998-06-30) cannot be labelled: it is drawn again with the next seed, and the
skipped seeds are listed (``redrawn``).

The thin-data rule is switched off here (``MinData.off()``): this benchmark measures what
happens below it. Writes ``benchmarks/results/learning_curve.json``.

    python benchmarks/prediction.py --learning-curve [--datasets online_retail,cdnow_master]
        [--sizes 100,200,500,1000,2000,all] [--seeds 5]
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from retention import __version__, workflows
from retention.data import Store, load_dataset
from retention.exceptions import RetentionError
from retention.features import MinData

MODELS = ("bgnbd", "paretonbd", "gbdt", "ensemble")
REPORTED = ("ensemble", "gbdt", "bgnbd", "recency")
DEFAULT_SIZES = "100,200,500,1000,2000,all"


def _customers(store: Store) -> np.ndarray:
    rows = store.con.execute("SELECT DISTINCT user_id FROM events ORDER BY user_id").fetchall()
    return np.array([r[0] for r in rows], dtype=object)


def _subset_store(master: Path, path: Path, users: np.ndarray) -> None:
    """A store holding every event (and user row) of ``users``, and all items, of ``master``."""
    with Store(path) as store:
        con = store.con
        con.execute(f"ATTACH '{master}' AS m (READ_ONLY)")
        try:
            con.register("__chosen", pd.DataFrame({"user_id": users.astype(str)}))
            con.execute(
                "INSERT INTO events BY NAME SELECT e.* FROM m.events e "
                "SEMI JOIN __chosen c ON e.user_id = c.user_id"
            )
            tables = {r[0] for r in con.execute("SHOW ALL TABLES").fetchall()}
            if "items" in tables:
                con.execute("INSERT INTO items BY NAME SELECT * FROM m.items")
            if "users" in tables:
                con.execute(
                    "INSERT INTO users BY NAME SELECT u.* FROM m.users u "
                    "SEMI JOIN __chosen c ON u.user_id = c.user_id"
                )
            con.unregister("__chosen")
        finally:
            con.execute("DETACH m")


def _recency_scores(store: Store, cutoff: pd.Timestamp, users: pd.Index) -> np.ndarray:
    """The recency rule: minus the days since the last purchase before the cutoff."""
    rows = store.con.execute(
        "SELECT user_id, max(ts) FROM events WHERE event_type = 'purchase' AND ts < ? "
        "GROUP BY user_id",
        [cutoff.to_pydatetime()],
    ).fetchall()
    last = pd.Series({str(u): pd.Timestamp(t) for u, t in rows})
    days = (cutoff - last.reindex(users.astype(str))).dt.total_seconds() / 86400.0
    return -days.to_numpy(dtype=float)


def _covers_label_window(db: Path, spec: dict[str, Any]) -> bool:
    """Whether the store's data run to the end of the test label window."""
    with Store(db, read_only=True) as store:
        ((last,),) = store.con.execute("SELECT max(ts) FROM events").fetchall()
    end = pd.Timestamp(spec["cutoff"]) + pd.Timedelta(days=int(spec["horizon"]))
    return pd.Timestamp(last).normalize() + pd.Timedelta(days=1) >= end


def _one_run(db: Path, spec: dict[str, Any]) -> dict[str, Any]:
    request = workflows.BacktestRequest(
        cutoff=spec["cutoff"],
        horizon_days=spec["horizon"],
        models=MODELS,
        min_data=MinData.off(),
    )
    t0 = time.perf_counter()
    with Store(db, read_only=True) as store, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = workflows.backtest(store, request)
        recency = _recency_scores(store, result.cutoff, result.y_true.index)
    y = result.y_true.to_numpy(dtype=int)
    auc = {name: m["roc_auc"] for name, m in result.metrics.items()}
    auc["recency"] = float(roc_auc_score(y, recency)) if 0 < y.sum() < len(y) else float("nan")
    data = result.extra.get("data", {})
    return {
        "n_test": len(y),
        "test_retained": int(y.sum()),
        "valid_customers": data.get("customers"),
        "fewest_retained": data.get("retained"),
        "fewest_churned": data.get("churned"),
        "roc_auc": auc,
        # the stack or one member alone, chosen on the learning cutoffs' out-of-fold predictions
        "ensemble_chose": result.extra.get("ensemble_choice", {}).get("chosen"),
        "seconds": round(time.perf_counter() - t0, 1),
        "warnings": len(caught),
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "roc_auc" in r]
    out: dict[str, Any] = {"runs": len(runs), "failed": len(runs) - len(ok)}
    if not ok:
        return out
    for name in REPORTED:
        vals = np.array([r["roc_auc"].get(name, np.nan) for r in ok], dtype=float)
        vals = vals[np.isfinite(vals)]
        out[name] = {
            "mean": float(vals.mean()) if len(vals) else None,
            "sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            "min": float(vals.min()) if len(vals) else None,
            "max": float(vals.max()) if len(vals) else None,
        }
    for baseline in ("recency", "bgnbd"):
        diff = np.array(
            [r["roc_auc"]["ensemble"] - r["roc_auc"][baseline] for r in ok], dtype=float
        )
        diff = diff[np.isfinite(diff)]
        out[f"ensemble_minus_{baseline}"] = {
            "mean": float(diff.mean()) if len(diff) else None,
            "sd": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
            "wins": int((diff > 0).sum()),
            "of": len(diff),
        }
    for key in ("n_test", "valid_customers", "fewest_retained", "fewest_churned"):
        vals = [r[key] for r in ok if r.get(key) is not None]
        out[key] = float(np.median(vals)) if vals else None
    return out


def run(
    datasets: dict[str, dict[str, Any]], names: list[str], sizes: list[int | None], seeds: int
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            spec = datasets[name]
            master = Path(tmp) / f"{name}.duckdb"
            with Store(master) as store:
                load_dataset(name, store)
                customers = _customers(store)
            per_size: dict[str, Any] = {}
            for size in sizes:
                whole = size is None or size >= len(customers)
                label = "all" if whole else str(size)
                runs: list[dict[str, Any]] = []
                redrawn: list[int] = []
                seed = -1
                while len(runs) < (1 if whole else seeds) and seed < 3 * seeds:
                    seed += 1
                    if whole:
                        db = master
                    else:
                        rng = np.random.default_rng(seed)
                        chosen = rng.choice(customers, size=int(size or 0), replace=False)
                        db = Path(tmp) / f"{name}_{size}_{seed}.duckdb"
                        _subset_store(master, db, chosen)
                        if not _covers_label_window(db, spec):
                            redrawn.append(seed)
                            db.unlink(missing_ok=True)
                            continue
                    try:
                        run_ = _one_run(db, spec)
                    except RetentionError as exc:  # too little for a model: counted as failed
                        run_ = {"error": f"{type(exc).__name__}: {exc}"}
                    run_["seed"] = seed
                    runs.append(run_)
                    if db != master:
                        db.unlink(missing_ok=True)
                    aucs = run_.get("roc_auc", {})
                    shown = " ".join(f"{m}={aucs.get(m, float('nan')):.3f}" for m in REPORTED)
                    print(
                        f"{name} n={label} seed={seed}: {run_.get('error', shown)} "
                        f"({run_.get('seconds', 0)} s)",
                        flush=True,
                    )
                per_size[label] = {
                    "customers": len(customers) if whole else size,
                    "runs": runs,
                    "redrawn": redrawn,
                }
                per_size[label]["summary"] = _summary(runs)
            results[name] = {"store_customers": len(customers), "sizes": per_size, **spec}
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| dataset | customers | test pop. | valid pop. | fewest retained/churned | ensemble | "
        "gbdt | bgnbd | recency rule | ensemble - recency (seeds won) | "
        "ensemble - bgnbd (seeds won) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(s: dict[str, Any] | None) -> str:
        if not s or s.get("mean") is None:
            return "n/a"
        return f"{s['mean']:.3f} ± {s['sd']:.3f}"

    for name, res in results.items():
        for label, entry in res["sizes"].items():
            s = entry["summary"]
            if "ensemble" not in s:
                lines.append(f"| {name} | {label} | failed ({s['failed']} runs) |" + " |" * 7)
                continue
            d, b = s["ensemble_minus_recency"], s["ensemble_minus_bgnbd"]
            lines.append(
                f"| {name} | {label} | {s['n_test']:,.0f} | {s['valid_customers']:,.0f} | "
                f"{s['fewest_retained']:,.0f} / {s['fewest_churned']:,.0f} | "
                f"{cell(s['ensemble'])} | {cell(s['gbdt'])} | {cell(s['bgnbd'])} | "
                f"{cell(s['recency'])} | {d['mean']:+.3f} ± {d['sd']:.3f} ({d['wins']}/{d['of']}) | "
                f"{b['mean']:+.3f} ± {b['sd']:.3f} ({b['wins']}/{b['of']}) |"
            )
    return "\n".join(lines)


def main(
    datasets: dict[str, dict[str, Any]],
    names: list[str],
    sizes_text: str,
    seeds: int,
    out: Path,
) -> None:
    sizes: list[int | None] = [
        None if s.strip() == "all" else int(s) for s in sizes_text.split(",") if s.strip()
    ]
    t0 = time.perf_counter()
    results = run(datasets, names, sizes, seeds)
    print()
    print(table(results))
    meta = {
        "retention": __version__,
        "python": platform.python_version(),
        "models": list(MODELS),
        "seeds": seeds,
        "sizes": sizes_text,
        "protocol": "random subsets of the store's customers (all their events), temporal "
        "backtest at the dataset's test cutoff, horizon 90; thin-data rule off",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\nwritten: {out}")

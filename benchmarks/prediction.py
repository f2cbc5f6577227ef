"""Prediction benchmark: model x dataset x (ROC-AUC, PR-AUC, Brier), CLV error, in one run.

Loads the bundled Online Retail (test cutoff 2011-09-10) and CDNOW master (test cutoff 1998-03-31)
into temporary stores and runs exactly what ``retention backtest`` (and so ``make demo``) runs: the
default models (``workflows.DEFAULT_BACKTEST_MODELS``: ``bgnbd``, ``paretonbd``, ``mbgnbd``,
``gbdt``, ``ensemble``), 3 training cutoffs and a validation cutoff whose label windows end by the
test cutoff, horizon 90 days. Early stopping, calibration and the ensemble's stacker learn from
out-of-fold predictions grouped by customer over those learning cutoffs; the test cutoff is
untouched. A BTYD model that collapses to the same NBD as an earlier one is listed once (the
backtest JSON's ``twins``). Prints the markdown table of the README, what the ensemble chose on the
out-of-fold predictions (the stack or one member alone, and where its level comes from: see
``retention/models/_ensemble.py``), the paired-bootstrap interval of the ensemble's ROC-AUC minus
its best member's on the test cutoff (the same resamples of customers for both), the
CLV's error against the spend realised in the label window next to the textbook CLV's (BG/NBD x
Gamma-Gamma on repeat purchases, returns ignored) as a ratio, and whether each target is met;
writes ``benchmarks/results/prediction.json``. Nothing is tuned on the test cutoffs: every model
runs with its default hyper-parameters.

    python benchmarks/prediction.py [--datasets online_retail,cdnow_master] [--at-valid]

``--at-valid`` runs the same design one horizon earlier, with each test cutoff's *validation*
cutoff as the held-out cutoff (2011-06-12 and 1997-12-31): the only place where default
hyper-parameters were compared. It writes ``prediction_at_valid.json``.

``--learning-curve`` backtests the same design on random subsets of customers (``--sizes``,
``--seeds``) against BG/NBD and a plain recency rule, and writes ``learning_curve.json``: see
``benchmarks/_learning_curve.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from retention import __version__, workflows
from retention.data import Store, load_dataset
from retention.models import paired_auc_bootstrap

HERE = Path(__file__).parent
#: what `retention backtest` runs by default: the demo and this benchmark run the same models
MODELS = list(workflows.DEFAULT_BACKTEST_MODELS)
N_BOOTSTRAP = 1000
DATASETS = {
    "online_retail": {"cutoff": "2011-09-10", "horizon": 90},
    "cdnow_master": {"cutoff": "1998-03-31", "horizon": 90},
}


def bootstrap_gain(
    y: np.ndarray, ens: np.ndarray, best: np.ndarray, n: int = N_BOOTSTRAP, seed: int = 0
) -> dict[str, float]:
    """Paired bootstrap of ROC-AUC(ensemble) - ROC-AUC(best member): the same resampled
    customers for both; the 2.5% and 97.5% quantiles and the share of resamples below 0
    (:func:`retention.models.paired_auc_bootstrap`, which `retention promote` uses too)."""
    return paired_auc_bootstrap(y, ens, best, n=n, seed=seed)


def targets(name: str, payload: dict) -> list[tuple[str, bool]]:
    """The issue's targets for ``ensemble`` against its best member, met or not."""
    metrics = payload["models"]
    ens = metrics["ensemble"]
    members = {k: v for k, v in metrics.items() if k != "ensemble"}
    best = max(members, key=lambda k: members[k]["roc_auc"])
    best_auc = members[best]["roc_auc"]
    best_brier = min(v["brier"] for v in members.values())
    gain = payload["bootstrap"]
    interval = f"(paired bootstrap 95% interval {gain['low']:+.4f} to {gain['high']:+.4f})"
    never_below = (
        f"ROC-AUC {ens['roc_auc']:.4f} >= best member {best} {best_auc:.4f} (never below it; "
        f"out-of-fold choice: {payload['ensemble_choice']['chosen']})",
        ens["roc_auc"] >= best_auc,
    )
    if name == "online_retail":
        return [
            never_below,
            (f"ROC-AUC {ens['roc_auc']:.4f} >= 0.755", ens["roc_auc"] >= 0.755),
            (
                f"ROC-AUC {ens['roc_auc']:.4f} >= best member {best} {best_auc:.4f} + 0.005 "
                + interval,
                ens["roc_auc"] >= best_auc + 0.005,
            ),
            (
                f"Brier {ens['brier']:.4f} below every member (best {best_brier:.4f})",
                ens["brier"] < best_brier,
            ),
        ]
    return [
        never_below,
        (f"ROC-AUC {ens['roc_auc']:.4f} >= 0.840 " + interval, ens["roc_auc"] >= 0.840),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--at-valid",
        action="store_true",
        help="hold out the validation cutoffs instead of the test cutoffs (for choosing defaults)",
    )
    parser.add_argument(
        "--learning-curve",
        action="store_true",
        help="backtest on random subsets of customers (see benchmarks/_learning_curve.py)",
    )
    parser.add_argument("--sizes", default="100,200,500,1000,2000,all")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    if args.learning_curve:
        from _learning_curve import main as learning_curve

        names = [n.strip() for n in args.datasets.split(",") if n.strip()]
        out = args.out or HERE / "results" / "learning_curve.json"
        learning_curve(DATASETS, names, args.sizes, args.seeds, out)
        return
    stem = "prediction_at_valid" if args.at_valid else "prediction"
    args.out = args.out or HERE / "results" / f"{stem}.json"
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            spec = dict(DATASETS[name])
            if args.at_valid:
                valid = pd.Timestamp(spec["cutoff"]) - pd.Timedelta(days=spec["horizon"])
                spec["cutoff"] = f"{valid:%Y-%m-%d}"
            db = Path(tmp) / f"{name}.duckdb"
            t0 = time.perf_counter()
            with Store(db) as store:
                load_dataset(name, store)
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            request = workflows.BacktestRequest(
                cutoff=spec["cutoff"], horizon_days=spec["horizon"], models=tuple(MODELS)
            )
            with Store(db, read_only=True) as store:
                result = workflows.backtest(store, request)
            payload = result.to_json_dict()
            payload["load_seconds"] = round(load_s, 1)
            payload["backtest_seconds"] = round(time.perf_counter() - t0, 1)
            payload["ensemble_weights"] = result.extra.get("ensemble_weights", {})
            payload["ensemble_choice"] = result.extra.get("ensemble_choice", {})
            y = result.y_true.to_numpy(dtype=int)
            members = {k: v for k, v in payload["models"].items() if k != "ensemble"}
            best = max(members, key=lambda k: members[k]["roc_auc"])
            payload["bootstrap"] = {
                "best_member": best,
                **bootstrap_gain(
                    y,
                    result.scores["ensemble"].reindex(result.y_true.index).to_numpy(),
                    result.scores[best].reindex(result.y_true.index).to_numpy(),
                ),
            }
            payload["targets"] = [
                {"target": t, "met": bool(ok)} for t, ok in targets(name, payload)
            ]
            results[name] = payload
            print(f"{name}: {payload['n_users']:,} customers, {payload['backtest_seconds']} s")

    lines = [
        "| dataset | test cutoff | customers | base rate | model | ROC-AUC | PR-AUC | Brier |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, payload in results.items():
        for model in payload["models"]:
            m = payload["models"][model]
            lines.append(
                f"| {name} | {payload['cutoff']} | {payload['n_users']:,} | "
                f"{payload['base_rate']:.3f} | {model} | {m['roc_auc']:.4f} | "
                f"{m['pr_auc']:.4f} | {m['brier']:.4f} |"
            )
    print()
    print("\n".join(lines))
    print()
    for name, payload in results.items():
        if payload["twins"]:
            same = ", ".join(f"{k} = {v}" for k, v in payload["twins"].items())
            print(f"{name}: the same NBD under another name, listed once: {same}")
        print(f"{name}: P(alive) from {payload['p_alive_source'] or 'none (unavailable)'}")
    print()
    for name, payload in results.items():
        choice = payload["ensemble_choice"]
        oof = ", ".join(f"{k} {v:.4f}" for k, v in choice["out_of_fold_roc_auc"].items())
        levels = ", ".join(f"{k} {v:.4f}" for k, v in choice["level_log_loss"].items())
        print(
            f"{name}: ensemble = {choice['chosen']} (cross-fitted out-of-fold ROC-AUC: {oof}); "
            f"level from {choice['level']} (log loss over the learning cutoffs: {levels})"
        )
    print()
    clv_lines = [
        "| dataset | CLV MAE | textbook MAE | ratio | CLV total / realised | textbook total / realised |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, payload in results.items():
        c = payload["clv"]
        b = c["baseline"]
        c["mae_ratio"] = c["mae"] / b["mae"]
        clv_lines.append(
            f"| {name} | {c['mae']:.1f} | {b['mae']:.1f} | {c['mae_ratio']:.3f} | "
            f"{c['predicted_total'] / c['realised_total']:.3f} | "
            f"{b['predicted_total'] / b['realised_total']:.3f} |"
        )
    print("\n".join(clv_lines))
    print()
    for name, payload in results.items():
        for t in payload["targets"]:
            print(f"{name}: {'MET   ' if t['met'] else 'MISSED'} {t['target']}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "retention": __version__,
        "python": platform.python_version(),
        "models": MODELS,
        "held_out": "validation cutoffs" if args.at_valid else "test cutoffs",
    }
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()

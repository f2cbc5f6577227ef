"""The sequence transformer with one network per fold of customers, against one network + refits.

Issue 11 follow-up. ``SequenceTransformerModel(cv_folds=None)`` trains one network; an ensemble
then refits it on the 5 folds of customers (``out_of_fold_proba``) to get predictions it can stack.
``cv_folds=5`` trains one network per fold instead (early stopping on the held-out folds, ``oof_``
kept, prediction the mean of the fold networks), so the ensemble refits nothing. In one run, on
one dataset at one cutoff (the backtest design of ``retention backtest``: 3 training cutoffs and a
validation cutoff whose label windows end by the test cutoff, horizon 90 days), this fits:

- the default backtest members (``workflows.DEFAULT_BACKTEST_MODELS``: bgnbd, paretonbd, mbgnbd,
  gbdt);
- ``sequence`` (one network) and its refits on the folds (timed: ``out_of_fold_seconds``), unless
  ``--no-single``;
- ``sequence_cv`` (``cv_folds=--folds``);

then stacks, with prefitted members (as ``retention backtest`` does): ``ensemble`` (the default),
``ensemble+sequence`` / ``ensemble+sequence_cv``, ``gbdt+sequence`` / ``gbdt+sequence_cv``. An
ensemble's training time is its members' (refits included) plus the stacking. Prints the
markdown table, what each ensemble chose out of fold, the paired-bootstrap interval of each
ensemble minus its best member, and the issue's targets for Online Retail; writes JSON
(``benchmarks/results/sequence_folds_<dataset>_<cutoff>.json``). Nothing is tuned on the held-out
cutoff: every model runs with its defaults (``--epochs`` caps the sequence epochs, as in
``benchmarks/transformers.py``).

    python benchmarks/sequence_folds.py --dataset online_retail --cutoff 2011-06-12 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd

from retention import __version__, workflows
from retention.data import Store, load_dataset
from retention.features import training_frames
from retention.models import (
    EnsembleModel,
    classification_metrics,
    get_model,
    out_of_fold_proba,
    paired_auc_bootstrap,
)

HERE = Path(__file__).parent
DEFAULT = [m for m in workflows.DEFAULT_BACKTEST_MODELS if m != "ensemble"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="online_retail")
    parser.add_argument("--cutoff", default="2011-09-10", help="the held-out (test) cutoff")
    parser.add_argument("--horizon", type=int, default=90)
    parser.add_argument("--folds", type=int, default=5, help="cv_folds of sequence_cv")
    parser.add_argument("--epochs", type=int, default=30, help="sequence epochs (most)")
    parser.add_argument("--no-single", action="store_true", help="skip sequence (1 + refits)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the networks")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or HERE / "results" / f"sequence_folds_{args.dataset}_{args.cutoff}.json"
    seq_params = {"epochs": args.epochs, "n_threads": args.threads}
    members: dict[str, Any] = {name: get_model(name) for name in DEFAULT}
    if not args.no_single:
        members["sequence"] = get_model("sequence", **seq_params)
    members["sequence_cv"] = get_model("sequence", cv_folds=args.folds, **seq_params)

    rows: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds: the machine is shared, wall time moves with its load
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / f"{args.dataset}.duckdb"
        with Store(db) as store:
            load_dataset(args.dataset, store)
        with Store(db, read_only=True) as store:
            train, valid, test = training_frames(store, args.cutoff, args.horizon)
    learning = [*train, valid]
    y = test.label.reindex(test.users).to_numpy(dtype=int)
    print(
        f"{args.dataset} at {args.cutoff}: learning {[len(f) for f in learning]} at "
        f"{[f'{f.cutoff:%Y-%m-%d}' for f in learning]}, test {len(test)} (base rate "
        f"{y.mean():.3f})",
        flush=True,
    )
    scores: dict[str, np.ndarray] = {}

    def record(name: str, model: Any, fit_s: float, cpu_s: float) -> None:
        p = model.predict_proba(test)
        scores[name] = p
        rows[name] = {
            **classification_metrics(y, p),
            "train_seconds": round(fit_s, 1),
            "train_cpu_seconds": round(cpu_s, 1),
        }
        print(f"{name}: {json.dumps(rows[name])}", flush=True)

    for name, model in members.items():
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(train, valid)
        seconds[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
        record(name, model, seconds[name], cpu[name])
        if name == "sequence":
            # one network keeps no out-of-fold predictions: every ensemble refits it on the
            # folds of customers; do it once here, and count it in each ensemble it joins
            t0, c0 = time.perf_counter(), time.process_time()
            oof = out_of_fold_proba(model, learning, description="out-of-fold sequence")
            model.oof_ = pd.concat(
                [
                    pd.DataFrame({"cutoff": f.cutoff, "user_id": f.users.astype(str), "p": p})
                    for f, p in zip(learning, oof, strict=True)
                ],
                ignore_index=True,
            )
            refit_s, refit_cpu = time.perf_counter() - t0, time.process_time() - c0
            seconds[name] += refit_s
            cpu[name] += refit_cpu
            rows[name]["out_of_fold_seconds"] = round(refit_s, 1)
            rows[name]["out_of_fold_cpu_seconds"] = round(refit_cpu, 1)
        if name.startswith("sequence"):
            rows[name]["best_epoch"] = int(model.best_epoch_)
            rows[name]["epochs_run"] = int(max(h["epoch"] for h in model.history_))

    ensembles = {"ensemble": DEFAULT}
    for seq in ("sequence", "sequence_cv"):
        if seq in members:
            ensembles[f"ensemble+{seq}"] = [*DEFAULT, seq]
            ensembles[f"gbdt+{seq}"] = ["gbdt", seq]
    for name, names in ensembles.items():
        ens = EnsembleModel(members=[(m, members[m]) for m in names], prefit=True)
        t0, c0 = time.perf_counter(), time.process_time()
        ens.fit(train, valid)
        record(
            name,
            ens,
            sum(seconds[m] for m in names) + time.perf_counter() - t0,
            sum(cpu[m] for m in names) + time.process_time() - c0,
        )
        best = max(names, key=lambda m: rows[m]["roc_auc"])
        rows[name]["choice"] = ens.choice()
        rows[name]["weights"] = {k: round(v, 3) for k, v in ens.weights_.items()}
        rows[name]["best_member"] = best
        rows[name]["vs_best_member"] = paired_auc_bootstrap(y, scores[name], scores[best])
        print(f"{name}: {json.dumps(rows[name]['choice'])}", flush=True)

    print()
    print(
        "| model | ROC-AUC | PR-AUC | Brier | train s (fold refits included) | train CPU s "
        "(refits included) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        wall = f"{r['train_seconds']:.0f}"
        cpu_s = f"{r['train_cpu_seconds']:.0f}"
        if "out_of_fold_seconds" in r:
            # the network's own fit + its refits on the folds of customers
            wall = f"{r['train_seconds']:.0f} + {r['out_of_fold_seconds']:.0f}"
            cpu_s = f"{r['train_cpu_seconds']:.0f} + {r['out_of_fold_cpu_seconds']:.0f}"
        chosen = f" (chose {r['choice']['chosen']})" if "choice" in r else ""
        print(
            f"| {name}{chosen} | {r['roc_auc']:.4f} | {r['pr_auc']:.4f} | {r['brier']:.4f} | "
            f"{wall} | {cpu_s} |"
        )
    print()
    for name in ensembles:
        r = rows[name]
        best = r["best_member"]
        gap = r["roc_auc"] - rows[best]["roc_auc"]
        interval = r["vs_best_member"]
        briers = {m: rows[m]["brier"] for m in ensembles[name]}
        checks = [
            (f"never below its best member {best} ({gap:+.4f})", gap >= 0),
            (f"ROC-AUC {r['roc_auc']:.4f} >= 0.755", r["roc_auc"] >= 0.755),
            (
                f">= 0.005 above {best} ({gap:+.4f}, 95% interval {interval['low']:+.4f} to "
                f"{interval['high']:+.4f})",
                gap >= 0.005,
            ),
            (
                f"Brier {r['brier']:.4f} below every member (best {min(briers.values()):.4f})",
                r["brier"] < min(briers.values()),
            ),
        ]
        for text, met in checks:
            print(f"{name}: {'MET   ' if met else 'MISSED'} {text}")
    cost = {}
    if "sequence" in rows:
        cost = {
            "single_plus_refits_s": round(seconds["sequence"], 1),
            "folds_s": round(seconds["sequence_cv"], 1),
            "ratio_wall": round(seconds["sequence_cv"] / seconds["sequence"], 3),
            "single_plus_refits_cpu_s": round(cpu["sequence"], 1),
            "folds_cpu_s": round(cpu["sequence_cv"], 1),
            "ratio_cpu": round(cpu["sequence_cv"] / cpu["sequence"], 3),
        }
        print(
            f"\ncost: {args.folds} fold networks {seconds['sequence_cv']:.0f} s "
            f"({cpu['sequence_cv']:.0f} CPU s) against 1 network + {args.folds} refits "
            f"{seconds['sequence']:.0f} s ({cpu['sequence']:.0f} CPU s): ratio "
            f"{cost['ratio_wall']} wall, {cost['ratio_cpu']} CPU"
        )
    meta = {
        "retention": __version__,
        "python": platform.python_version(),
        "dataset": args.dataset,
        "cutoff": args.cutoff,
        "horizon_days": args.horizon,
        "learning_cutoffs": [f"{f.cutoff:%Y-%m-%d}" for f in learning],
        "n_test": len(test),
        "base_rate": float(y.mean()),
        "sequence": seq_params,
        "folds": args.folds,
        "cost": cost,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "models": rows}, indent=2, default=str) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()

"""Monitoring benchmark: does ``retention monitor`` see drift injected into real data, how large is
the drift the data has on its own, how far do realised scores fall from the reference, and what
does a run cost, all in one process.

On the bundled Online Retail (a one-year log) it trains a gbdt for ``--train-cutoff`` (default
2011-08-01: training cutoffs 2011-02-02..2011-04-03, validation 2011-05-03, horizon 90 days),
scores at that cutoff and a month later (both label windows end before the last event), then:

* ``as_is``: monitors the unchanged store (training window against the latest window, ending at
  the last event, 2011-12-09): the drift the data has on its own, and the realised ROC-AUC,
  Brier and calibration error of both scoring runs against the model's reference ROC-AUC (its
  validation cutoff's: optimistic);
* ``injected``: the same on a copy where every order line after ``--drift-from`` (2011-10-01) is
  worth ``--factor`` (3) times as much and half the purchases after it are dropped: the spend and
  frequency features must move further than on the unchanged data (the ratio of their PSI);
* ``retrained``: ``retention retrain --if-drift`` on the injected copy, then a monitor run of the
  new candidate on the same data (it was trained on the drifted data: its features' PSI falls).

Every figure is a ratio against a baseline of the same run: injected against as-is PSI, realised
against reference ROC-AUC, monitor wall time against the training's. Writes
``benchmarks/results/monitor.json`` and prints it.

    python benchmarks/monitor.py [--train-cutoff 2011-08-01] [--drift-from 2011-10-01]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from retention import workflows
from retention.exceptions import RetentionWarning

SPEND = ("w7d_spend", "w30d_spend", "w90d_spend", "w180d_spend", "monetary_mean", "monetary_max")
FREQUENCY = ("w30d_purchases", "w90d_purchases", "frequency_orders_per_30d")


def _psi_of(report: Any, names: tuple[str, ...]) -> dict[str, float]:
    f = report.features.set_index("feature")["psi"]
    return {n: round(float(f[n]), 4) for n in names if n in f.index}


def _summary(report: Any, seconds: float) -> dict[str, Any]:
    perf = report.performance
    return {
        "flags": report.flags,
        "n_features": len(report.features),
        "n_drifted": len(report.drifted_features),
        "most_drifted": report.features.head(5)[["feature", "psi", "ks"]]
        .round(4)
        .to_dict("records"),
        "score_psi": round(float(report.score["psi"]), 4),
        "score_ks": round(float(report.score["ks"]), 4),
        "spend_psi": _psi_of(report, SPEND),
        "frequency_psi": _psi_of(report, FREQUENCY),
        "realised": [
            {
                "cutoff": f"{r['cutoff']:%Y-%m-%d}",
                "n_users": int(r["n_users"]),
                "roc_auc": round(float(r["roc_auc"]), 4),
                "brier": round(float(r["brier"]), 4),
                "ece": round(float(r["ece"]), 4),
                "reference_roc_auc": round(float(r["baseline_roc_auc"]), 4),
                "realised_over_reference": round(
                    float(r["roc_auc"]) / float(r["baseline_roc_auc"]), 4
                ),
            }
            for r in perf.to_dict("records")
        ],
        "decay": None if report.decay is None else round(report.decay, 4),
        "seconds": round(seconds, 1),
    }


def _monitor(db: Path, model_id: str | None = None) -> tuple[Any, float]:
    t0 = time.perf_counter()
    with workflows.Store(db) as store:
        rep = workflows.monitor(store, workflows.MonitorRequest(model_id=model_id))
    return rep, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="online_retail")
    parser.add_argument("--train-cutoff", default="2011-08-01")
    parser.add_argument("--drift-from", default="2011-10-01")
    parser.add_argument("--factor", type=float, default=3.0)
    parser.add_argument("--model", default="gbdt")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "monitor.json"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", RetentionWarning)  # thin-data and P(alive) notes: known
    cutoff = pd.Timestamp(args.train_cutoff)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = folder / "store.duckdb"
        with workflows.Store(db) as store:
            workflows.load_dataset(store, args.dataset)
            t0 = time.perf_counter()
            trained = workflows.train(
                store,
                workflows.TrainRequest(
                    out=folder / "model.retention", model=args.model, cutoff=cutoff
                ),
            )
            train_seconds = time.perf_counter() - t0
            for at in (cutoff, cutoff + pd.Timedelta(days=31)):
                workflows.score(
                    store,
                    workflows.ScoreRequest(model_id=trained.model_id, cutoff=at, reasons=False),
                )
        injected = folder / "injected.duckdb"
        shutil.copy(db, injected)
        with workflows.Store(injected) as store:
            at = pd.Timestamp(args.drift_from).to_pydatetime()
            store.con.execute(
                "UPDATE events SET amount = CAST(amount * ? AS DECIMAL(18,2)) WHERE ts >= ?",
                [args.factor, at],
            )
            # half the orders after the date are dropped (a stable half: by the order's hash)
            store.con.execute(
                "DELETE FROM events WHERE ts >= ? AND event_type = 'purchase' AND "
                "hash(coalesce(order_id, event_id)) % 2 = 0",
                [at],
            )
        as_is, s_as_is = _monitor(db)
        drifted, s_drifted = _monitor(injected)
        with workflows.Store(injected) as store:
            t0 = time.perf_counter()
            re = workflows.retrain(store, workflows.RetrainRequest(mode="if_drift"))
            retrain_seconds = time.perf_counter() - t0
        assert re.trained is not None, "the injected drift did not trigger retraining"
        fresh, s_fresh = _monitor(injected, re.trained.model_id)
        with workflows.Store(injected, read_only=True) as store:
            stages = {m: store.model_stage(m) for m in (trained.model_id, re.trained.model_id)}

    def ratio(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: round(a[k] / b[k], 2) for k in a if k in b and b[k] > 0}

    a, d = _summary(as_is, s_as_is), _summary(drifted, s_drifted)
    result = {
        "dataset": args.dataset,
        "model": args.model,
        "train_cutoff": args.train_cutoff,
        "reference_cutoffs": [f"{c:%Y-%m-%d}" for c in as_is.reference_cutoffs],
        "current_cutoffs": [f"{c:%Y-%m-%d}" for c in as_is.current_cutoffs],
        "thresholds": as_is.thresholds.to_dict(),
        "injection": {"from": args.drift_from, "amount_factor": args.factor, "orders_kept": 0.5},
        "train_seconds": round(train_seconds, 1),
        "monitor_over_train_seconds": round(s_as_is / train_seconds, 3),
        "as_is": a,
        "injected": d,
        "injected_over_as_is_psi": {
            "spend": ratio(d["spend_psi"], a["spend_psi"]),
            "frequency": ratio(d["frequency_psi"], a["frequency_psi"]),
            "score": round(d["score_psi"] / a["score_psi"], 2) if a["score_psi"] else None,
        },
        "retrain": {
            "triggered": re.triggered,
            "reasons": re.reasons,
            "seconds": round(retrain_seconds, 1),
            "stages": stages,
            "new_model_monitor": _summary(fresh, s_fresh),
            "new_over_old_max_feature_psi": round(
                float(fresh.features["psi"].max()) / float(drifted.features["psi"].max()), 3
            ),
            "new_over_old_n_drifted": round(
                len(fresh.drifted_features) / max(1, len(drifted.drifted_features)), 3
            ),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

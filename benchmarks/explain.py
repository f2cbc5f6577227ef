"""Explain: seconds to explain 100,000 customers, and the selected feature set on Online Retail.

    nice .venv/bin/python benchmarks/explain.py [--cutoff 2011-09-10] [--horizon 90] [--json OUT]

1. Online Retail (bundled) loaded into a temporary store; the frames of a backtest at the test
   cutoff (3 training cutoffs, validation cutoff = test - horizon).
2. The default gradient boosting model (LightGBM + BG/NBD features and offset, Platt) is fitted
   on the training cutoffs with early stopping and calibration on the validation cutoff.
3. Feature selection by family on the validation cutoff only (tolerance 0.002 ROC-AUC); the
   selected set is refitted the same way; both sets are scored on the test cutoff.
4. The test population is tiled (features and events, with renamed customers) to 100,000
   customers, then timed: exact SHAP values (LightGBM ``pred_contrib``, including the feature
   matrix with its BG/NBD fit), plain-words reasons for everyone (3 toward churn, 3 toward
   retention), and permutation importance (every feature shuffled once, ROC-AUC recomputed).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("RETENTION_PROGRESS", "0")

from retention.data import Store, load_dataset
from retention.explain import (
    permutation_importance,
    reasons,
    select_features,
    shap_contributions,
    subset_frame,
)
from retention.features import CutoffFrame, training_frames
from retention.models import GBDTModel, classification_metrics


def tile(frame: CutoffFrame, n: int) -> CutoffFrame:
    """``frame`` repeated (customers renamed ``id#k``) up to exactly ``n`` customers."""
    k = int(np.ceil(n / len(frame)))
    feats, events, labels = [], [], []
    for i in range(k):
        f = frame.features.copy()
        f.index = f.index.astype(str) + f"#{i}"
        feats.append(f)
        e = frame.events.copy()
        e["user_id"] = e["user_id"].astype(str) + f"#{i}"
        events.append(e)
        if frame.label is not None:
            lab = frame.label.copy()
            lab.index = f.index
            labels.append(lab)
    features = pd.concat(feats).iloc[:n]
    features.index.name = "user_id"
    keep = set(features.index)
    ev = pd.concat(events, ignore_index=True)
    ev = ev[ev["user_id"].isin(keep)].sort_values(["user_id", "ts"], kind="mergesort")
    label = pd.concat(labels).iloc[:n] if labels else None
    return replace(frame, features=features, events=ev.reset_index(drop=True), label=label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutoff", default="2011-09-10")
    parser.add_argument("--horizon", type=int, default=90)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    out: dict[str, object] = {"dataset": "online_retail", "cutoff": args.cutoff}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "retail.duckdb"
        t0 = time.perf_counter()
        with Store(db) as store:
            load_dataset("online_retail", store)
        with Store(db, read_only=True) as store:
            train, valid, test = training_frames(store, args.cutoff, args.horizon, n_train=3)
        out["seconds_load_and_frames"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    full = GBDTModel().fit(train, valid)
    out["seconds_fit_full"] = round(time.perf_counter() - t0, 1)
    y = test.label.to_numpy()
    auc_full = classification_metrics(y, full.predict_proba(test))["roc_auc"]

    t0 = time.perf_counter()
    sel = select_features(train, valid, model_params={"btyd_features": None}, tolerance=0.002)
    out["seconds_selection"] = round(time.perf_counter() - t0, 1)
    chosen = sel.selected
    picked = GBDTModel().fit([subset_frame(f, chosen) for f in train], subset_frame(valid, chosen))
    auc_sel = classification_metrics(y, picked.predict_proba(subset_frame(test, chosen)))["roc_auc"]
    out["selection"] = {
        "n_features_full": int(sel.curve["n_features"].iloc[0]),
        "n_features_selected": len(chosen),
        "dropped_families": sel.dropped,
        "valid_roc_auc_full": round(sel.full_auc, 4),
        "valid_roc_auc_selected": round(sel.selected_auc, 4),
        "test_roc_auc_full": round(auc_full, 4),
        "test_roc_auc_selected": round(auc_sel, 4),
        "n_test_customers": len(test),
        "curve": sel.curve.round(4).to_dict("records"),
    }
    print(json.dumps(out["selection"], indent=1, default=str), flush=True)

    big = tile(test, args.n)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    X = full.transform_features(big)
    timing["feature_matrix_with_bgnbd"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    contrib = shap_contributions(full, big)
    timing["shap_total"] = time.perf_counter() - t0
    timing["shap_excluding_matrix"] = timing["shap_total"] - timing["feature_matrix_with_bgnbd"]
    t0 = time.perf_counter()
    table = reasons(contrib, typical=contrib.data.median(axis=0), currency="£")
    timing["reasons"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    perm = permutation_importance(full, big, n_repeats=1, random_state=0)
    timing["permutation_1_repeat"] = time.perf_counter() - t0
    out["explain_100k"] = {
        "n_customers": len(big),
        "n_features": len(X.columns),
        "seconds": {k: round(v, 2) for k, v in timing.items()},
        "max_additivity_error": contrib.max_additivity_error(),
        "n_reasons": len(table),
        "top_shap_features": list(contrib.importance().index[:5]),
        "top_permutation_features": list(perm.index[:5]),
        "example_reasons": table.head(6)["text"].tolist(),
    }
    print(json.dumps(out["explain_100k"], indent=1, default=str), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

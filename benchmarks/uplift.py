"""Uplift on Hillstrom (visit): our learners against scikit-uplift's, and the policy against random
targeting, on the same five random 50/50 splits, measured in one run.

    nice .venv/bin/python benchmarks/uplift.py [--splits 5] [--json benchmarks/results/uplift.json]

1. **Qini, Womens E-Mail vs No E-Mail** (the Mens rows dropped, as in scikit-uplift's tutorial):
   per split (stratified by arm and outcome, seeds 0..4), ``retention.strategies.evaluate_uplift``
   fits S-, T-, X-learners and the transformed outcome on the training half and picks one on a
   validation part of it; scikit-uplift 0.5.1's SoloModel (S), TwoModels (T) and
   ClassTransformation, each with LightGBM's defaults, fit on the same training half with the same
   encoded covariates (and again on one-hot columns, as in scikit-uplift's tutorial; its best is
   the best of both). Every model's normalised Qini AUUC and uplift@30% on the held-out half
   (the same function for both libraries; it equals scikit-uplift's ``qini_auc_score``, which a
   check below confirms). Target: our best model's Qini >= scikit-uplift's best learner's (mean
   over the splits), reported for our validation-chosen model (per split) and for our best
   single learner (scikit-uplift's best learner is picked on the held-out half, in its favour).
2. **Policy at 30% treated**, three arms (Mens, Womens, No E-Mail) and the pair: the chosen model
   treats 30% of the held-out half with its best e-mail; random targeting treats as many with the
   same mix; both valued by IPW and doubly robust estimation on the held-out half with a paired
   bootstrap. Target: at least 1.3x the incremental visits of random targeting.

scikit-uplift is a benchmark-only reference (in the ``bench`` extra). Its models and metrics
need no matplotlib, so it can sit beside the project's environment without touching it::

    .venv/bin/pip install --target /tmp/sklift --no-deps scikit-uplift==0.5.1
    PYTHONPATH=/tmp/sklift nice .venv/bin/python benchmarks/uplift.py

Without it the first part reports our models only.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import retention.data
from retention.exceptions import RetentionWarning
from retention.strategies import (
    FeatureEncoder,
    check_uplift_frame,
    choose_features,
    evaluate_uplift,
    qini_auc_score,
    stratified_split,
    uplift_at_k,
)

FILES = Path(retention.data.__file__).parent / "files"
COVARIATES = [
    "recency",
    "history_segment",
    "history",
    "mens",
    "womens",
    "zip_code",
    "newbie",
    "channel",
]


def hillstrom(pair: bool) -> pd.DataFrame:
    df = pd.read_csv(FILES / "hillstrom.csv.gz", dtype={"zip_code": str, "channel": str})
    return df[df["segment"] != "Mens E-Mail"].reset_index(drop=True) if pair else df


def one_hot(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as 0/1 columns, named c0, c1, ... (LightGBM refuses some characters)."""
    out = pd.get_dummies(frame, dtype=float).reset_index(drop=True)
    out.columns = [f"c{i}" for i in range(out.shape[1])]
    return out


def sklift_models() -> dict[str, object] | None:
    try:
        import lightgbm as lgb
        from sklift.models import ClassTransformation, SoloModel, TwoModels
    except ImportError:
        return None

    def clf() -> object:
        return lgb.LGBMClassifier(verbose=-1, random_state=0, n_jobs=1)

    return {
        "sklift_solo (S)": lambda: SoloModel(clf()),
        "sklift_two_models (T)": lambda: TwoModels(clf(), clf(), method="vanilla"),
        "sklift_class_transformation": lambda: ClassTransformation(clf()),
    }


def qini_part(splits: int, n_boot: int) -> dict[str, object]:
    df = hillstrom(pair=True)
    data = check_uplift_frame(df, treatment="segment", control="No E-Mail", outcome="visit")
    features, _ = choose_features(data, COVARIATES)
    refs = sklift_models()
    rows = []
    checked = False
    for seed in range(splits):
        t0 = time.perf_counter()
        ev = evaluate_uplift(data, features, n_boot=n_boot, random_state=seed)
        ours = ev.metrics.xs("Womens E-Mail", level=1)
        row: dict[str, object] = {"split": seed, "chosen": ev.chosen, "seconds_ours": 0.0}
        for m, r in ours.iterrows():
            row[f"qini:{m}"] = float(r["qini"])
            row[f"uplift_at_30:{m}"] = float(r["uplift_at_30"])
        row["seconds_ours"] = time.perf_counter() - t0
        if refs is not None:
            test = stratified_split(data.codes, data.y, 0.5, seed)  # the split evaluate_uplift used
            enc = FeatureEncoder(features).fit(data.frame.loc[~test])
            encodings = {
                # our encoding (LightGBM categories), and one-hot columns as in scikit-uplift's
                # tutorial: scikit-uplift's best is the best of both
                "": enc.transform(data.frame).reset_index(drop=True),
                ", one-hot": one_hot(data.frame[features]),
            }
            t, y = data.codes, data.y
            t1 = time.perf_counter()
            for suffix, X in encodings.items():
                for name, make in refs.items():
                    model = make()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model.fit(X.loc[~test], y[~test], t[~test])
                        u = np.asarray(model.predict(X.loc[test]), dtype=float)
                    key = name + suffix
                    row[f"qini:{key}"] = qini_auc_score(y[test], u, t[test])
                    row[f"uplift_at_30:{key}"] = uplift_at_k(y[test], u, t[test], 0.3)
                    if not checked:
                        from sklift.metrics import qini_auc_score as sk_qini

                        assert abs(sk_qini(y[test], u, t[test]) - row[f"qini:{key}"]) < 1e-9
                        checked = True
            row["seconds_sklift"] = time.perf_counter() - t1
        rows.append(row)
        print(f"split {seed}: chosen {ev.chosen}, {row['seconds_ours']:.1f}s", flush=True)
    table = pd.DataFrame(rows).set_index("split")
    qini = table[[c for c in table.columns if c.startswith("qini:")]]
    qini.columns = [c.removeprefix("qini:") for c in qini.columns]
    ours_cols = [c for c in qini.columns if not c.startswith("sklift")]
    sk_cols = [c for c in qini.columns if c.startswith("sklift")]
    chosen_qini = np.array([qini.loc[s, table.loc[s, "chosen"]] for s in table.index])
    out: dict[str, object] = {
        "protocol": "Hillstrom, Womens E-Mail vs No E-Mail, outcome visit, stratified 50/50 "
        f"splits seeds 0..{splits - 1}; normalised Qini AUUC on the held-out half",
        "per_split": json.loads(table.to_json(orient="index")),
        "mean_qini": {c: float(qini[c].mean()) for c in qini.columns},
        "mean_uplift_at_30": {
            c.removeprefix("uplift_at_30:"): float(table[c].mean())
            for c in table.columns
            if c.startswith("uplift_at_30:")
        },
        "ours_chosen_mean_qini": float(chosen_qini.mean()),
        "ours_best_single_model_mean_qini": float(qini[ours_cols].mean().max()),
    }
    if sk_cols:
        sk_best = float(qini[sk_cols].mean().max())
        out["sklift_best"] = str(qini[sk_cols].mean().idxmax())
        out["sklift_best_mean_qini"] = sk_best
        out["ratio_chosen_vs_sklift_best"] = float(chosen_qini.mean() / sk_best)
        out["ratio_best_vs_sklift_best"] = float(qini[ours_cols].mean().max() / sk_best)
        out["target_met (ours >= sklift best)"] = bool(chosen_qini.mean() >= sk_best)
    else:
        out["sklift"] = "not installed: pip install scikit-uplift (the bench extra)"
    return out


def policy_part(splits: int, n_boot: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for label, pair in (("three_arms", False), ("womens_vs_none", True)):
        data = check_uplift_frame(
            hillstrom(pair), treatment="segment", control="No E-Mail", outcome="visit"
        )
        features, _ = choose_features(data, COVARIATES)
        rows = []
        for seed in range(splits):
            ev = evaluate_uplift(data, features, share=0.3, n_boot=n_boot, random_state=seed)
            t = ev.policy.table
            chosen = f"model:{ev.chosen}"
            row: dict[str, object] = {"split": seed, "chosen": ev.chosen}
            for name in ev.selection:  # every model's policy, for reference
                row[f"ipw_ratio:{name}"] = float(t.loc[(f"model:{name}", "ipw")]["ratio"])
            for est in ("ipw", "dr"):
                r = t.loc[(chosen, est)]
                row[f"{est}_ratio"] = float(r["ratio"])
                row[f"{est}_ratio_low"] = float(r["ratio_low"])
                row[f"{est}_ratio_high"] = float(r["ratio_high"])
                row[f"{est}_policy_per_1000"] = float(r["per_1000"])
                row[f"{est}_random_per_1000"] = float(t.loc[("random", est)]["per_1000"])
            rows.append(row)
            print(f"{label} split {seed}: x{row['ipw_ratio']:.2f} (IPW)", flush=True)
        table = pd.DataFrame(rows).set_index("split")
        out[label] = {
            "per_split": json.loads(table.to_json(orient="index")),
            "mean_ipw_ratio": float(table["ipw_ratio"].mean()),
            "mean_dr_ratio": float(table["dr_ratio"].mean()),
            "mean_ipw_ratio_by_model": {
                c.removeprefix("ipw_ratio:"): float(table[c].mean())
                for c in table.columns
                if c.startswith("ipw_ratio:")
            },
            "splits_with_ipw_ratio_low_above_1": int((table["ipw_ratio_low"] > 1).sum()),
            "target_met (mean IPW ratio >= 1.3)": bool(table["ipw_ratio"].mean() >= 1.3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--n-boot", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore", RetentionWarning)
    t0 = time.perf_counter()
    result = {
        "qini_vs_scikit_uplift": qini_part(args.splits, args.n_boot),
        "policy_at_30pct": policy_part(args.splits, args.n_boot),
        "seconds": time.perf_counter() - t0,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

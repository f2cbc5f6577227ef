"""Monitoring benchmark: does ``retention monitor`` see drift injected into real data, how large is
the drift the data has on its own, how far do realised scores fall from the reference, and what
does a run cost, all in one process.

On the bundled Online Retail (a one-year log) it trains a gbdt for ``--train-cutoff`` (default
2011-08-01: training cutoffs 2011-02-02..2011-04-03, validation 2011-05-03, horizon 90 days),
scores at that cutoff and a month later (both label windows end before the last event), then:

* ``as_is``: monitors the unchanged store (training window against the latest window, ending at
  the last event, 2011-12-09) as ``retention monitor`` does by default: the training cutoffs lie
  63 to 123 days after the store's first event, so the latest window's features are computed on
  the same length of history (``history_matched``: each latest cutoff reads only as many days
  of events as its training cutoff had). Also the realised ROC-AUC, Brier and calibration error
  of both scoring runs against the model's reference ROC-AUC (its validation cutoff's:
  optimistic). ``as_is_full_history`` is the same run on every event (``--full-history``, the
  comparison before history matching), and ``as_is_previous_protocol`` counts, on its pooled
  features, what the first monitor flagged (decile bins for every feature, the country share
  binned as a number, the ageing features flagging). ``history_matched_check`` recomputes the
  history-matched window independently, on copies of the store whose events before each start
  are deleted, and gives the largest PSI difference from the monitor's;
* ``injected``: the same (history-matched, and on every event) on a copy where every order line
  after ``--drift-from`` (2011-10-01) is worth ``--factor`` (3) times as much and half the
  purchases after it are dropped: the spend and frequency features must move further than on
  the unchanged data (the ratio of their PSI, like against like);
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
from retention.experiments import drift_table, psi
from retention.features import ages_with_calendar, make_frame

SPEND = ("w7d_spend", "w30d_spend", "w90d_spend", "w180d_spend", "monetary_mean", "monetary_max")
FREQUENCY = ("w30d_purchases", "w90d_purchases", "frequency_orders_per_30d")


def _psi_of(report: Any, names: tuple[str, ...]) -> dict[str, float]:
    f = report.features.set_index("feature")["psi"]
    return {n: round(float(f[n]), 4) for n in names if n in f.index}


def _summary(report: Any, seconds: float) -> dict[str, Any]:
    perf = report.performance
    f = report.features
    threshold = report.thresholds.feature_psi
    ageing = f[f["ages_with_calendar"]]
    return {
        "history_matched": report.history_matched,
        "flags": report.flags,
        "messages": report.messages(),
        "n_features": len(f),
        "n_drifted": len(report.drifted_features),
        "drifted": report.drifted_features,
        "ageing_over_threshold": [str(x) for x in ageing.loc[ageing["psi"] > threshold, "feature"]],
        "user_country_freq": f.set_index("feature")
        .reindex(["user_country_freq"])[["psi", "ks", "binning"]]
        .round(4)
        .to_dict("records"),
        "most_drifted": f.head(5)[["feature", "psi", "ks"]].round(4).to_dict("records"),
        "most_drifted_flagging": f[f["drifted"]]
        .head(5)[["feature", "psi", "ks"]]
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


def _monitor(db: Path, model_id: str | None = None, full: bool = False) -> tuple[Any, float]:
    t0 = time.perf_counter()
    with workflows.Store(db) as store:
        rep = workflows.monitor(
            store, workflows.MonitorRequest(model_id=model_id, full_history=full)
        )
    return rep, time.perf_counter() - t0


def _pooled(db: Path, cutoffs: list[pd.Timestamp], horizon: int) -> pd.DataFrame:
    with workflows.Store(db, read_only=True) as store:
        parts = [make_frame(store, c, horizon, with_label=False).features for c in cutoffs]
    return pd.concat(parts)


def _countries(db: Path, users: pd.Index) -> list[Any]:
    with workflows.Store(db, read_only=True) as store:
        table = store.table_df("users")
    table["user_id"] = table["user_id"].astype(str)
    country = table.drop_duplicates("user_id").set_index("user_id")["country"]
    return list(country.reindex(users.astype(str)).to_numpy(dtype=object))


def _protocols(report: Any, matched: Any, db: Path, folder: Path) -> dict[str, Any]:
    """The previous protocol's flags (on the full-history ``report``'s windows) and an
    independent check of the history-matched ``matched`` run (see the docstring)."""
    horizon = report.horizon_days
    threshold = report.thresholds.feature_psi
    ref = _pooled(db, report.reference_cutoffs, horizon)
    cur = _pooled(db, report.current_cutoffs, horizon)
    common = [c for c in ref.columns if c in cur.columns]
    old = {c: psi(ref[c].to_numpy(dtype=float), cur[c].to_numpy(dtype=float)) for c in common}
    previous = sorted((c for c in common if old[c] > threshold), key=lambda c: -old[c])
    with workflows.Store(db, read_only=True) as store:
        first = store.event_range(None)[0].normalize()
    parts = []
    for r, c in zip(matched.reference_cutoffs, matched.current_cutoffs, strict=True):
        copy = folder / f"matched-{c:%Y%m%d}.duckdb"
        shutil.copy(db, copy)
        start = c - (r - first)  # as many days of history as the training cutoff had
        with workflows.Store(copy) as store:
            store.con.execute("DELETE FROM events WHERE ts < ?", [start.to_pydatetime()])
            parts.append(make_frame(store, c, horizon, with_label=False).features)
        copy.unlink()
    deleted = pd.concat(parts)
    table = drift_table(
        ref,
        deleted,
        categories={
            "user_country_freq": (_countries(db, ref.index), _countries(db, deleted.index))
        },
    ).set_index("feature")
    mine = matched.features.set_index("feature")["psi"]
    return {
        "previous_protocol": {
            "n_drifted": len(previous),
            "drifted": previous,
            "user_country_freq_psi_deciles": round(float(old["user_country_freq"]), 4),
        },
        "history_matched_check": {
            "method": "events before each start deleted from a copy of the store",
            "n_rows": len(deleted),
            "n_rows_monitor": matched.n_current,
            "n_over_threshold_not_ageing": int(
                sum(
                    1
                    for f, v in table["psi"].items()
                    if v > threshold and not ages_with_calendar(str(f))
                )
            ),
            "max_abs_psi_difference": float((table["psi"] - mine.reindex(table.index)).abs().max()),
        },
    }


def _matched(report: Any) -> dict[str, Any]:
    threshold = report.thresholds.feature_psi
    f = report.features
    return {
        "history_matched": report.history_matched,
        "history_starts": [f"{s:%Y-%m-%d}" for s in report.history_starts],
        "days_of_history": report.history_days,
        "n_rows": report.n_current,
        "n_drifted": len(report.drifted_features),
        "max_psi_flagging": round(float(report.flagged_features["psi"].max()), 4),
        "ageing_over_threshold": [
            str(x) for x in f.loc[f["ages_with_calendar"] & (f["psi"] > threshold), "feature"]
        ],
    }


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
        full, s_full = _monitor(db, full=True)
        protocols = _protocols(full, as_is, db, folder)
        drifted, s_drifted = _monitor(injected)
        drifted_full, s_drifted_full = _monitor(injected, full=True)
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
    af, df = _summary(full, s_full), _summary(drifted_full, s_drifted_full)
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
        "monitor_full_history_over_train_seconds": round(s_full / train_seconds, 3),
        "as_is": a,
        "as_is_history_matched": _matched(as_is),
        "as_is_full_history": af,
        "as_is_previous_protocol": protocols["previous_protocol"],
        "history_matched_check": protocols["history_matched_check"],
        "as_is_matched_over_full_history_n_drifted": round(
            a["n_drifted"] / max(1, af["n_drifted"]), 3
        ),
        "as_is_matched_over_full_history_score_psi": round(a["score_psi"] / af["score_psi"], 3),
        "full_history_over_previous_n_drifted": round(
            af["n_drifted"] / max(1, protocols["previous_protocol"]["n_drifted"]), 3
        ),
        "country_psi_categories_over_deciles": round(
            af["user_country_freq"][0]["psi"]
            / protocols["previous_protocol"]["user_country_freq_psi_deciles"],
            4,
        ),
        "injected": d,
        "injected_history_matched": _matched(drifted),
        "injected_full_history": df,
        "injected_over_as_is_psi": {
            "spend": ratio(d["spend_psi"], a["spend_psi"]),
            "frequency": ratio(d["frequency_psi"], a["frequency_psi"]),
            "score": round(d["score_psi"] / a["score_psi"], 2) if a["score_psi"] else None,
        },
        "injected_over_as_is_psi_full_history": {
            "spend": ratio(df["spend_psi"], af["spend_psi"]),
            "frequency": ratio(df["frequency_psi"], af["frequency_psi"]),
            "score": round(df["score_psi"] / af["score_psi"], 2) if af["score_psi"] else None,
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

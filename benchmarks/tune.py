"""Tuning benchmark: 50 Optuna trials for gbdt on Online Retail, then the tuned model against the
defaults at the held-out test cutoff, in one run.

Loads the bundled Online Retail into a temporary store and runs what ``retention tune --db DB
--trials 50 --cutoff 2011-09-10 --horizon 90`` runs: a TPE study with the median pruner over the
gradient-boosting hyper-parameters, each trial valued by the mean ROC-AUC of customer-grouped
out-of-fold predictions over the learning cutoffs (3 training cutoffs and the validation cutoff
2011-06-12, whose label windows all end by 2011-09-10). The first trial runs the defaults. Then,
in the same process, ``retention backtest --models gbdt`` at 2011-09-10 with the defaults and with
the tuned parameters: the test cutoff is seen only here, after the search.

Prints and writes (``benchmarks/results/tune.json``) the wall time of the search and its ratio
to one default gbdt fit timed in the same run, trials complete and pruned, the objective of the
best trial and of the defaults, and the test ROC-AUC (PR-AUC, Brier) of both with the paired
bootstrap interval of the difference. Tuning may not help: the figures are reported as they come.

    nice -n 10 python benchmarks/tune.py [--trials 50] [--sampler tpe] [--seed 0] [--timeout 1200]

``--timeout`` stops starting trials after that many seconds (default 20 minutes: the machine is
shared); the trials that ran are reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from retention import __version__, workflows
from retention.data import Store, load_dataset
from retention.features import backtest_cutoffs, make_frame
from retention.models import get_model, paired_auc_bootstrap

HERE = Path(__file__).parent
DATASET = "online_retail"
CUTOFF = "2011-09-10"
HORIZON = 90


def _backtest(db: Path, params: dict) -> tuple[dict, object]:
    request = workflows.BacktestRequest(
        cutoff=CUTOFF, horizon_days=HORIZON, models=("gbdt",), model_params={"gbdt": params}
    )
    with Store(db, read_only=True) as store:
        result = workflows.backtest(store, request)
    return result.to_json_dict()["models"]["gbdt"], result


def _default_fit_seconds(db: Path) -> float:
    """One fit of the default gbdt on the learning frames (frames built first, not timed)."""
    train_c, valid_c = backtest_cutoffs(CUTOFF, HORIZON, n_train=3)
    with Store(db, read_only=True) as store:
        frames = [make_frame(store, c, HORIZON) for c in [*train_c, valid_c]]
    get_model("gbdt").fit(frames[:-1], frames[-1])  # warm the BTYD features (as the study does)
    t0 = time.perf_counter()
    get_model("gbdt").fit(frames[:-1], frames[-1])
    return time.perf_counter() - t0


def plot_history(payload: dict, path: Path) -> Path:
    """The objective of every trial (pruned ones at their last intermediate step are left out)
    and the best so far, against the defaults' value: a self-contained Plotly HTML file."""
    import plotly.graph_objects as go

    trials = payload["trials"]
    done = [t for t in trials if t["state"] == "COMPLETE"]
    best, running = [], float("-inf")
    for t in trials:
        if t["state"] == "COMPLETE":
            running = max(running, t["value"])
        best.append(running if running > float("-inf") else None)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[t["number"] for t in done],
            y=[t["value"] for t in done],
            mode="markers",
            name="complete trial",
        )
    )
    pruned = [t["number"] for t in trials if t["state"] == "PRUNED"]
    if pruned:
        low = min(t["value"] for t in done) if done else 0.0
        fig.add_trace(
            go.Scatter(
                x=pruned,
                y=[low] * len(pruned),
                mode="markers",
                marker_symbol="x",
                name="pruned (no value)",
            )
        )
    fig.add_trace(go.Scatter(x=[t["number"] for t in trials], y=best, mode="lines", name="best"))
    default = payload["study"].get("default_value")
    if default is not None:
        fig.add_hline(y=default, line_dash="dot", annotation_text="defaults")
    test = payload["test"]
    fig.update_layout(
        title=(
            f"gbdt on Online Retail: {len(trials)} trials ({payload['meta']['sampler']}); test "
            f"ROC-AUC tuned {test['tuned']['roc_auc']:.4f} vs defaults "
            f"{test['defaults']['roc_auc']:.4f}"
        ),
        xaxis_title="trial",
        yaxis_title="objective: out-of-fold ROC-AUC on the learning cutoffs",
    )
    fig.write_html(path, include_plotlyjs="cdn")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--sampler", default="tpe", choices=["tpe", "random", "grid"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--timeout",
        type=float,
        default=1200.0,
        help="start no trial after this many seconds (a shared machine: report what fitted)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "tune.json")
    parser.add_argument("--no-prune", action="store_true", help="run every trial to the end")
    parser.add_argument(
        "--plot", type=Path, default=None, help="only redraw the HTML plot of a written JSON"
    )
    args = parser.parse_args()
    if args.plot is not None:
        payload = json.loads(args.plot.read_text())
        print(f"written: {plot_history(payload, args.plot.with_suffix('.html'))}")
        return

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / f"{DATASET}.duckdb"
        with Store(db) as store:
            load_dataset(DATASET, store)
        fit_s = _default_fit_seconds(db)
        print(f"one default gbdt fit: {fit_s:.1f} s")

        request = workflows.TuneRequest(
            n_trials=args.trials,
            model="gbdt",
            sampler=args.sampler,
            cutoff=CUTOFF,
            horizon_days=HORIZON,
            seed=args.seed,
            timeout=args.timeout,
            prune=not args.no_prune,
            storage=Path(tmp) / "study.sqlite3",
        )
        t0 = time.perf_counter()
        with Store(db, read_only=True) as store:
            report = workflows.tune(store, request)
        tune_s = time.perf_counter() - t0
        study = report.to_dict()
        print(
            f"{study['n_trials']} trials ({study['n_complete']} complete, {study['n_pruned']} "
            f"pruned, {study['n_failed']} failed) in {tune_s:.0f} s"
        )

        default_m, default_r = _backtest(db, {})
        tuned_m, tuned_r = _backtest(db, report.params)
        y = default_r.y_true.to_numpy(dtype=int)
        idx = default_r.y_true.index
        gain = paired_auc_bootstrap(
            y,
            tuned_r.scores["gbdt"].reindex(idx).to_numpy(),
            default_r.scores["gbdt"].reindex(idx).to_numpy(),
        )

    helped = tuned_m["roc_auc"] > default_m["roc_auc"]
    significant = gain["low"] > 0 or gain["high"] < 0
    verdict = (
        f"tuning {'raised' if helped else 'did not raise'} the test ROC-AUC "
        f"({tuned_m['roc_auc']:.4f} tuned vs {default_m['roc_auc']:.4f} defaults, "
        f"{tuned_m['roc_auc'] - default_m['roc_auc']:+.4f}; paired bootstrap 95% interval "
        f"{gain['low']:+.4f} to {gain['high']:+.4f}, "
        f"{'excluding' if significant else 'including'} 0)"
    )
    lines = [
        "| gbdt | objective (OOF ROC-AUC, learning cutoffs) | test ROC-AUC | PR-AUC | Brier |",
        "|---|---:|---:|---:|---:|",
        f"| defaults | {study['default_value'] or float('nan'):.4f} | {default_m['roc_auc']:.4f} | "
        f"{default_m['pr_auc']:.4f} | {default_m['brier']:.4f} |",
        f"| tuned ({study['n_trials']} trials, {args.sampler}"
        f"{'' if not args.no_prune else ', no pruning'}) | {study['best_value']:.4f} | "
        f"{tuned_m['roc_auc']:.4f} | {tuned_m['pr_auc']:.4f} | {tuned_m['brier']:.4f} |",
    ]
    print()
    print("\n".join(lines))
    print()
    print(
        f"search wall time {tune_s:.0f} s = {tune_s / fit_s:.1f} default fits "
        f"({tune_s / max(study['n_trials'], 1):.1f} s a trial)"
    )
    print(verdict)
    print("best parameters:", json.dumps(study["best_params"]))

    payload = {
        "meta": {
            "retention": __version__,
            "python": platform.python_version(),
            "dataset": DATASET,
            "cutoff": CUTOFF,
            "horizon_days": HORIZON,
            "sampler": args.sampler,
            "prune": not args.no_prune,
            "seed": args.seed,
            "trials_asked": args.trials,
            "timeout_seconds": args.timeout,
            "cpu_count": os.cpu_count(),
            "load_average_at_end": list(os.getloadavg()),
        },
        "search_seconds": round(tune_s, 1),
        "default_fit_seconds": round(fit_s, 2),
        "search_over_default_fit": round(tune_s / fit_s, 2),
        "study": {k: v for k, v in study.items() if k != "trials"},
        "trials": study["trials"],
        "test": {
            "defaults": default_m,
            "tuned": tuned_m,
            "roc_auc_gain": tuned_m["roc_auc"] - default_m["roc_auc"],
            "roc_auc_ratio": tuned_m["roc_auc"] / default_m["roc_auc"],
            "bootstrap": gain,
        },
        "verdict": verdict,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwritten: {args.out}")
    print(f"written: {plot_history(payload, args.out.with_suffix('.html'))}")


if __name__ == "__main__":
    main()

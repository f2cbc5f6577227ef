"""What run tracking (MLflow, issue 16 item 2) costs a command, measured against the same
command with tracking off, in one process.

On bundled real data: a backtest of Online Retail (UCI) at 2011-09-10, horizon 90 days (models
``bgnbd,gbdt`` by default, the CLI's default set with ``--models default``), and the analysis of
the Cookie Cats A/B test CSV (90,189 players; a command of about a second, where the cost of
tracking weighs most). Each is run ``--repeats`` times with ``RETENTION_TRACKING=0`` and with it
on, alternating (off first), after one untimed warm-up; the ratio is the median time on over
the median time off. Separately, in the same process:

* ``first_run_s``: logging a run at a fresh place (MLflow creates its SQLite tables);
* ``next_run_s``: logging one more run there (median of the repeats);
* ``import_s``: importing MLflow in a fresh interpreter (paid once per command that tracks;
  the CLI itself never imports it: ``cli_imports_mlflow`` checks).

Writes ``benchmarks/results/tracking.json`` and prints it.

    python benchmarks/tracking.py [--repeats 3] [--models bgnbd,gbdt|default]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from retention import __version__, workflows
from retention.data import Store, load_dataset
from retention.workflows import _tracking

CUTOFF = "2011-09-10"
HORIZON = 90


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _off_on(fn: Any, repeats: int) -> dict[str, Any]:
    """Median seconds of ``fn`` with tracking off and on (alternating, after a warm-up)."""
    os.environ["RETENTION_TRACKING"] = "0"
    fn()  # warm-up: imports, caches, the tracking store made by the first run below
    os.environ["RETENTION_TRACKING"] = "1"
    fn()
    off, on = [], []
    for _ in range(repeats):
        os.environ["RETENTION_TRACKING"] = "0"
        off.append(_timed(fn)[0])
        os.environ["RETENTION_TRACKING"] = "1"
        on.append(_timed(fn)[0])
    m_off, m_on = statistics.median(off), statistics.median(on)
    return {
        "off_s": [round(x, 3) for x in off],
        "on_s": [round(x, 3) for x in on],
        "median_off_s": round(m_off, 3),
        "median_on_s": round(m_on, 3),
        "overhead_s": round(m_on - m_off, 3),
        "ratio_on_over_off": round(m_on / m_off, 3),
    }


def _import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import mlflow.tracking; "
    code += "print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(float(done.stdout.strip()), 3)


def _cli_imports_mlflow() -> bool:
    code = "import sys, retention.serving.cli; print('mlflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip() == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="bgnbd,gbdt")
    args = parser.parse_args()
    models = (
        workflows.DEFAULT_BACKTEST_MODELS
        if args.models == "default"
        else tuple(m.strip() for m in args.models.split(","))
    )
    os.environ.pop("RETENTION_TRACKING_URI", None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("RETENTION_PROGRESS", "0")
    warnings.simplefilter("ignore")  # thin-data and fit notes are not what is measured here
    out: dict[str, Any] = {
        "version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        tmpdir = Path(tmp)
        db = tmpdir / "online_retail.duckdb"
        with Store(db) as store:
            load_dataset("online_retail", store)
        os.environ["RETENTION_DB"] = str(db)
        request = workflows.BacktestRequest(cutoff=CUTOFF, horizon_days=HORIZON, models=models)
        with Store(db, read_only=True) as store:
            os.environ["RETENTION_TRACKING"] = "0"
            result = workflows.backtest(store, request)
            # the cost of logging itself: a fresh place, then one more run there
            os.environ["RETENTION_TRACKING"] = "1"
            first, _ = _timed(lambda: _tracking.track("backtest", request, result, store=store))
            nxt = [
                _timed(lambda: _tracking.track("backtest", request, result, store=store))[0]
                for _ in range(args.repeats)
            ]
            out["first_run_s"] = round(first, 3)
            out["next_run_s"] = round(statistics.median(nxt), 3)
            out["backtest"] = {
                "dataset": "online_retail",
                "cutoff": CUTOFF,
                "horizon_days": HORIZON,
                "models": list(models),
                **_off_on(lambda: workflows.backtest(store, request), args.repeats),
            }
        src = Path(str(resources.files("retention.data").joinpath("files", "cookie_cats.csv.gz")))
        csv = tmpdir / "cookie_cats.csv"
        pd.read_csv(src).to_csv(csv, index=False)
        analyze = workflows.AnalyzeCsvRequest(
            path=csv, variant="version", control="gate_30", metrics=("retention_7",)
        )
        out["experiment_analyze"] = {
            "dataset": "cookie_cats",
            **_off_on(lambda: workflows.analyze_csv(analyze), args.repeats),
        }
        with Store(db, read_only=True) as store:
            out["runs_logged"] = len(workflows.list_runs(store, limit=1000).runs)
    out["import_s"] = _import_seconds()
    out["cli_imports_mlflow"] = _cli_imports_mlflow()
    text = json.dumps(out, indent=2)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "tracking.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

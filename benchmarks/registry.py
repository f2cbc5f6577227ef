"""Model registry benchmark: the promote / rollback flow of README on bundled Online Retail.

Runs the CLI in this process on a temporary store holding the bundled Online Retail and prints
its transcript: BG/NBD is trained and promoted first (no production model yet, so no
comparison), then gradient boosting (``gbdt``, default hyper-parameters) and gradient boosting
on RFM features only (``gbdt_rfm``) are trained as candidates and offered to ``retention
promote``: each time both configurations are refit at the latest backtest cutoff whose label
window has fully passed (the last purchase, 2011-12-09, minus the 90-day horizon) on training
and validation cutoffs whose label windows end by it, and scored on the same customers, with the
paired-bootstrap interval of the ROC-AUC difference (1,000 resamples). The baseline of every
figure is the production model refit in the same run. Then ``retention rollback`` and
``retention models``. Writes ``benchmarks/results/registry.json`` (each decision, its evidence
and the seconds each command took).

    python benchmarks/registry.py [--dataset online_retail] [--horizon 90]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from retention import __version__
from retention.serving.cli import main

HERE = Path(__file__).parent


def run(argv: list[str]) -> tuple[int, str, str, float]:
    """One CLI command in this process: exit status, stdout, stderr, seconds."""
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue(), time.perf_counter() - t0


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="online_retail")
    parser.add_argument("--horizon", type=int, default=90)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "registry.json")
    args = parser.parse_args()
    os.environ.setdefault("RETENTION_PROGRESS", "0")
    steps: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "retention.duckdb")
        h = str(args.horizon)

        def step(argv: list[str], show: list[str] | None = None) -> tuple[int, str]:
            code, out, err, seconds = run(argv)
            out, err = (
                t.replace(db, "retention.duckdb").replace(tmp + "/", "") for t in (out, err)
            )
            shown = " ".join(["retention", *(show or argv)])
            print(f"$ {shown}")
            print(out.rstrip())
            if err.strip():
                print(err.rstrip())
            print(f"[exit {code}, {seconds:.0f} s]\n")
            steps.append({"command": shown, "exit": code, "seconds": round(seconds, 1)})
            return code, out

        def hide(argv: list[str]) -> list[str]:  # the transcript names the store retention.duckdb
            return [a.replace(db, "retention.duckdb").replace(tmp + "/", "") for a in argv]

        load = ["datasets", "load", args.dataset, "--db", db]
        step(load, hide(load))
        ids = {}
        for name in ("bgnbd", "gbdt", "gbdt_rfm"):
            argv = ["train", "--db", db, "--horizon", h, "--model", name]
            argv += ["--out", str(Path(tmp) / f"{name}.retention")]
            _, out = step(argv, hide(argv))
            ids[name] = out.split("(id ")[1].split(")")[0]
            if name == "bgnbd":
                argv = ["promote", "--db", db]
                step(argv, hide(argv))
            else:
                report = Path(tmp) / f"promote_{name}.json"
                argv = ["promote", "--db", db, "--model", ids[name], "--json", str(report)]
                step(argv, hide(argv[:-2]))
                steps[-1]["report"] = json.loads(report.read_text())
        for argv in (["rollback", "--db", db], ["models", "--db", db]):
            step(argv, hide(argv))
        for argv in (["score", "--db", db],):
            step(argv, hide(argv))
    payload = {
        "dataset": args.dataset,
        "horizon_days": args.horizon,
        "models": ids,
        "steps": steps,
        "retention_version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    for s in steps:
        if "report" in s:
            ev = s["report"]["evidence"]
            c, p = ev["candidate"]["metrics"]["roc_auc"], ev["production"]["metrics"]["roc_auc"]
            print(
                f"{ev['candidate']['name']} vs {ev['production']['name']}: ROC-AUC {c:.4f} vs "
                f"{p:.4f} (ratio {c / p:.4f}), difference {ev['difference']:+.4f} "
                f"[{ev['ci_low']:+.4f}, {ev['ci_high']:+.4f}], margin {ev['margin']}: "
                f"{s['report']['decision']} ({s['seconds']:.0f} s)"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main_()

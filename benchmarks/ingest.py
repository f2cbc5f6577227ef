"""Ingest benchmark: retention.ingest against DuckDB's own load and plain pandas.

Generates N synthetic events (1% exact duplicate rows), writes them as Parquet and CSV, then
loads each file into a fresh DuckDB file once per side, each in its own subprocess so that peak
RSS is measured per side:

- retention: ``Store(db)`` + ``ingest(store, file)`` (SHA-256 of the file, validation,
  quarantine, md5 event ids, dedup within the file and against the store, one transaction);
- duckdb: ``CREATE TABLE events AS SELECT DISTINCT * FROM read_csv(file)`` (``read_parquet``
  for Parquet): the engine's own load with exact-duplicate removal and no validation, the
  floor any ingest on DuckDB stands on;
- pandas: ``read_parquet``/``read_csv`` + ``drop_duplicates`` + ``CREATE TABLE ... AS SELECT``
  into DuckDB (no validation); ``--no-pandas`` leaves it out.

The other sides keep DuckDB's default settings. By default ``ingest`` turns off DuckDB's
``dict_fsst`` string compression while it writes
(``retention.data._ingest.INGEST_COMPRESS_STRINGS``): faster, but its strings are stored
uncompressed (the store file is about twice the size). That choice belongs to the product, so
the other sides keep the defaults a plain script would have.

The machines this runs on are shared and noisy (the same command varies by 10-15% from one
minute to the next), so each format runs ``--rounds`` rounds (default 3), every side in each,
and the table shows the median seconds per side, its ratio to DuckDB's median (seconds over
DuckDB's seconds: lower is better), the range of the per-round ratios and the speed against
pandas. Peak RSS is the largest seen. Results are also written as JSON (``--out``, default
``benchmarks/results/ingest.json``).
Target at 2,000,000 rows: retention at or under 2x DuckDB's ``CREATE TABLE AS SELECT
DISTINCT`` (from CSV and from Parquet), peak RSS < 2 GB.

    python benchmarks/ingest.py --rows 2000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_files(rows: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_unique = rows - rows // 100
    users = rng.integers(1, max(rows // 20, 2), n_unique)
    start = np.datetime64("2022-01-01T00:00:00", "s")
    ts = start + rng.integers(0, 3 * 365 * 86400, n_unique).astype("timedelta64[s]")
    types = np.array(["view", "cart", "purchase", "return"])[
        rng.choice(4, n_unique, p=[0.6, 0.2, 0.17, 0.03])
    ]
    items = rng.integers(1, 50_000, n_unique)
    orders = rng.integers(1, rows // 3 + 2, n_unique)
    qty = rng.integers(1, 10, n_unique).astype(float)
    amount = np.round(rng.gamma(2.0, 15.0, n_unique), 2)
    dup = rng.integers(0, n_unique, rows - n_unique)
    idx = np.concatenate([np.arange(n_unique), dup])

    def prefixed(prefix: str, values: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pa.array(values).cast(pa.string()), "")

    table = pa.table(
        {
            "user_id": prefixed("u", users[idx]),
            "ts": pa.array(ts[idx]),
            "event_type": pa.array(types[idx]),
            "item_id": prefixed("i", items[idx]),
            "order_id": pa.array(orders[idx]).cast(pa.string()),
            "quantity": pa.array(qty[idx]),
            "amount": pa.array(amount[idx]),
        }
    )
    parquet, csv = folder / "events.parquet", folder / "events.csv"
    pq.write_table(table, parquet)
    pacsv.write_csv(table, csv)
    return parquet, csv


def _peak_mb() -> float:
    """Peak RSS of this process in MB: VmHWM (reset by exec, unlike ru_maxrss, which a
    child inherits from the parent that forked it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_side(side: str, file: str, db: str) -> dict[str, float]:
    """Run one side in this process; returns seconds, rows stored and peak RSS (MB)."""
    os.environ["RETENTION_PROGRESS"] = "0"
    if side == "retention":
        from retention.data import Store, ingest

        t0 = time.perf_counter()
        with Store(db) as store:
            report = ingest(store, file)
        seconds = time.perf_counter() - t0
        stored = report.loaded
        assert report.balanced
    elif side == "duckdb":
        import duckdb

        reader = "read_parquet" if file.endswith(".parquet") else "read_csv"
        quoted = "'" + file.replace("'", "''") + "'"
        t0 = time.perf_counter()
        con = duckdb.connect(db)
        con.execute(f"CREATE TABLE events AS SELECT DISTINCT * FROM {reader}({quoted})")
        row = con.execute("SELECT count(*) FROM events").fetchone()
        con.close()
        seconds = time.perf_counter() - t0
        stored = int(row[0]) if row else 0
    else:
        import duckdb
        import pandas as pd

        t0 = time.perf_counter()
        if file.endswith(".parquet"):
            df = pd.read_parquet(file)
        else:
            df = pd.read_csv(file, parse_dates=["ts"])
        df = df.drop_duplicates()
        con = duckdb.connect(db)
        con.register("df_view", df)
        con.execute("CREATE TABLE events AS SELECT * FROM df_view")
        con.close()
        seconds = time.perf_counter() - t0
        stored = len(df)
    return {"seconds": seconds, "stored": stored, "peak_mb": _peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per format (default 3)")
    parser.add_argument("--no-pandas", action="store_true", help="leave the pandas side out")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).parent / "results" / "ingest.json"),
        help="JSON results file ('' to skip)",
    )
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.file, args.db)))
        return

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        parquet, csv = make_files(args.rows, folder)
        print(
            f"generated {args.rows:,} events in {time.perf_counter() - t0:.1f} s "
            f"(parquet {parquet.stat().st_size / 1e6:.0f} MB, csv {csv.stat().st_size / 1e6:.0f} MB)",
            file=sys.stderr,
        )
        sides = ("duckdb", "retention") if args.no_pandas else ("duckdb", "pandas", "retention")
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for fmt, file in (("parquet", parquet), ("csv", csv)):
            for round_ in range(args.rounds):
                for side in sides:
                    db = folder / f"{fmt}_{side}.duckdb"
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--side",
                            side,
                            "--file",
                            str(file),
                            "--db",
                            str(db),
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    runs.setdefault((fmt, side), []).append(result)
                    db.unlink(missing_ok=True)
                    print(
                        f"{fmt} round {round_ + 1}: {side} {result['seconds']:.2f} s",
                        file=sys.stderr,
                    )
    header = (
        f"{'format':8} {'side':10} {'rows':>11} {'stored':>11} {'median s':>9} "
        f"{'events/s':>12} {'peak RSS MB':>12} {'vs duckdb':>10} {'per round':>12} "
        f"{'speed vs pandas':>16}"
    )
    print(header)
    print("-" * len(header))
    summary: dict[str, object] = {"rows": args.rows, "rounds": args.rounds}
    target: list[str] = []
    for fmt in ("parquet", "csv"):
        duck_runs = runs[(fmt, "duckdb")]
        duck = statistics.median(r["seconds"] for r in duck_runs)
        pandas_runs = runs.get((fmt, "pandas"))
        pandas = statistics.median(r["seconds"] for r in pandas_runs) if pandas_runs else None
        for side in sides:
            side_runs = runs[(fmt, side)]
            seconds = statistics.median(r["seconds"] for r in side_runs)
            peak = max(r["peak_mb"] for r in side_runs)
            # seconds over DuckDB's seconds, round by round (each round runs every side)
            ratios = [
                r["seconds"] / d["seconds"] for d, r in zip(duck_runs, side_runs, strict=True)
            ]
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}x"
            vs_pandas = f"{pandas / seconds:>15.2f}x" if pandas else f"{'-':>16}"
            print(
                f"{fmt:8} {side:10} {args.rows:>11,} {int(side_runs[0]['stored']):>11,} "
                f"{seconds:>9.2f} {args.rows / seconds:>12,.0f} {peak:>12,.0f} "
                f"{seconds / duck:>9.2f}x {spread:>12} {vs_pandas}"
            )
            summary[f"{fmt}_{side}"] = {
                "median_seconds": seconds,
                "seconds": [r["seconds"] for r in side_runs],
                "peak_rss_mb": peak,
                "ratio_vs_duckdb": seconds / duck,
                "round_ratios_vs_duckdb": ratios,
                "speed_vs_pandas": pandas / seconds if pandas else None,
            }
            if side == "retention":
                target.append(f"{fmt} {seconds / duck:.2f}x ({spread})")
    print(
        "retention ingest / DuckDB CREATE TABLE AS SELECT DISTINCT: "
        + ", ".join(target)
        + f" at {args.rows:,} rows (target: at or under 2x)"
    )
    if args.out:
        out_file = Path(args.out)
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

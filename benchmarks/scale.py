"""Scale benchmark: the point-in-time features on DuckDB and on Spark as the log grows.

Simulates event logs of 1M, 5M, 10M and 50M events (``--sizes``) as Parquet, written by DuckDB
from a counter: about 20 events per customer (``--events-per-user``), 40% purchases (2 lines
per order on average), 40% views, 10% carts, 5% returns, 5% reviews, 1,000 items, money as
DECIMAL(18,2), 540 days from 2023-01-01 at microsecond resolution. Then, each in its own
subprocess so that time and peak memory are its own:

- ``duckdb``: ``feature_table(events_backend("duckdb", file), cutoff)`` at every size;
- ``spark``: the same on a ``local[2]`` session (``--spark-sizes``, default 1M and 10M),
  timed from the first query (the session start is reported apart);
- the spill probe (``--spill-size``, default 10M): DuckDB again under decreasing
  ``memory_limit`` values (``--spill-limits``) with a fresh ``temp_directory``, whose size is
  polled while it runs: the largest limit at which DuckDB writes temporary files is where it
  starts spilling on this log.

Peak memory is the largest sum of the resident set sizes of the subprocess and its children
(Spark's JVM included), polled every 50 ms. Figures are ratios measured in this run: every
time and memory against the 1M DuckDB run, Spark against DuckDB at the same size, and the
growth exponents from a log-log least-squares fit of time and peak memory against events.
The machine is shared and noisy: the subprocesses run under ``nice``; rerun to see the spread.

    python benchmarks/scale.py                          # the full run (50M needs ~6 GB of disk)
    python benchmarks/scale.py --sizes 200000 1000000 --spark-sizes 200000 --spill-size 1000000

Writes ``benchmarks/results/scale.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CUTOFF = "2024-04-01"
HORIZON = 90
ROOT = Path(__file__).resolve().parents[1]


def make_log(n_events: int, path: Path, events_per_user: int) -> float:
    """Write ``n_events`` simulated events as Parquet with DuckDB; returns the seconds."""
    import duckdb

    n_users = max(n_events // events_per_user, 1)
    start = time.perf_counter()
    con = duckdb.connect()
    # deterministic pseudo-random columns from the row number (hash of a counter)
    con.execute(
        f"""
        COPY (
          WITH base AS (
            SELECT i,
                   hash(i, 1) % {n_users} AS u,
                   hash(i, 2) % 100 AS k,
                   hash(i, 3) % (540 * 86400 * 1000000::UBIGINT) AS us,
                   hash(i, 4) % 1000 AS item,
                   hash(i, 5) % 99999 AS cents
            FROM range({n_events}) t(i)
          )
          SELECT 'e' || i AS event_id,
                 'u' || u AS user_id,
                 TIMESTAMP '2023-01-01' + to_microseconds(us::BIGINT) AS ts,
                 CASE WHEN k < 40 THEN 'purchase' WHEN k < 80 THEN 'view'
                      WHEN k < 90 THEN 'cart' WHEN k < 95 THEN 'return' ELSE 'review' END
                   AS event_type,
                 'i' || item AS item_id,
                 CASE WHEN k < 40 OR (k >= 90 AND k < 95)
                      THEN 'o' || u || '-' || (us // (86400 * 1000000::UBIGINT)) END AS order_id,
                 CASE WHEN k < 40 OR (k >= 90 AND k < 95) THEN 1 + (cents % 3) END::DOUBLE
                   AS quantity,
                 CASE WHEN k < 40 OR (k >= 90 AND k < 95)
                      THEN (1 + cents) / 100 END::DECIMAL(18, 2) AS amount,
                 CASE WHEN k >= 95 THEN 1 + cents % 5 END::DOUBLE AS rating,
                 NULL::VARCHAR AS text
          FROM base
        ) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)
        """
    )
    con.close()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------ the subprocess
def worker(args: argparse.Namespace) -> None:
    """Run one measurement and print its JSON on the last line of stdout."""
    os.environ.setdefault("RETENTION_PROGRESS", "0")
    from retention.features import events_backend, feature_table, spark_session

    out: dict[str, object] = {}
    session = None
    if args.engine == "spark":
        start = time.perf_counter()
        session = spark_session(
            args.spark_master,
            shuffle_partitions=args.shuffle_partitions,
            driver_memory=args.driver_memory,
            config={"spark.ui.enabled": "false"},
        )
        out["session_seconds"] = time.perf_counter() - start
        backend = events_backend("spark", str(args.events), session=session)
    else:
        backend = events_backend(
            "duckdb",
            args.events,
            memory_limit=args.memory_limit,
            temp_directory=args.temp_directory,
        )
        if args.threads:
            backend.con.execute(f"SET threads = {int(args.threads)}")
    start = time.perf_counter()
    table = feature_table(backend, CUTOFF)
    out["seconds"] = time.perf_counter() - start
    out["n_users"] = len(table)
    out["n_features"] = table.shape[1] - 1
    if session is not None:
        session.stop()
    print(json.dumps(out))


def _tree_rss(proc: object) -> int:
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]  # type: ignore[attr-defined]
    except psutil.Error:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def _dir_bytes(folder: Path | None) -> int:
    if folder is None or not folder.exists():
        return 0
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


def measure(argv: list[str], temp_dir: Path | None = None, timeout: float = 3600) -> dict:
    """Run ``scale.py --worker ARGV`` niced; its JSON plus peak RSS (and peak spill bytes)."""
    import psutil

    cmd = ["nice", "-n", "10", sys.executable, __file__, "--worker", *argv]
    env = {**os.environ, "RETENTION_PROGRESS": "0"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    handle = psutil.Process(proc.pid)
    peak = spill = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(handle))
        spill = max(spill, _dir_bytes(temp_dir))
        if time.perf_counter() - start > timeout:
            proc.kill()
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        tail = stderr.strip().splitlines()[-5:]
        return {
            "error": " | ".join(tail) or f"exit {proc.returncode}",
            "wall": time.perf_counter() - start,
        }
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(peak / 2**20, 1)
    result["wall_seconds"] = round(time.perf_counter() - start, 2)
    if temp_dir is not None:
        result["spill_mb"] = round(spill / 2**20, 1)
    return result


def fit_exponent(sizes: list[int], values: list[float]) -> float | None:
    """Slope of log(value) against log(size): 1.0 is linear growth."""
    pairs = [(s, v) for s, v in zip(sizes, values, strict=True) if v and v > 0]
    if len(pairs) < 2:
        return None
    x = np.log([p[0] for p in pairs])
    y = np.log([p[1] for p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000, 10_000_000, 50_000_000]
    )
    parser.add_argument("--spark-sizes", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument("--spill-size", type=int, default=10_000_000)
    parser.add_argument(
        "--spill-limits", nargs="*", default=["2GB", "1GB", "512MB", "256MB", "128MB"]
    )
    parser.add_argument("--events-per-user", type=int, default=20)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (0: its default)")
    parser.add_argument(
        "--data", type=Path, default=None, help="folder for the logs (default temp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    # the subprocess
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="duckdb", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory-limit", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--temp-directory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    folder = args.data or Path(tempfile.mkdtemp(prefix="retention-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    sizes = sorted(
        set(args.sizes)
        | set(args.spark_sizes)
        | ({args.spill_size} if args.spill_limits else set())
    )
    results: dict[str, object] = {
        "cutoff": CUTOFF,
        "events_per_user": args.events_per_user,
        "spark_master": args.spark_master,
        "duckdb_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "duckdb": {},
        "spark": {},
        "spill": {},
    }
    common = ["--threads", str(args.threads)]
    try:
        for n in sizes:
            path = folder / f"events_{n}.parquet"
            if not path.exists():
                seconds = make_log(n, path, args.events_per_user)
                print(
                    f"generated {n:,} events in {seconds:.1f} s ({path.stat().st_size / 2**20:.0f} MB)",
                    flush=True,
                )
            if n in args.sizes:
                r = measure(
                    ["--engine", "duckdb", "--events", str(path), *common], timeout=args.timeout
                )
                results["duckdb"][str(n)] = r  # type: ignore[index]
                print(f"duckdb {n:>11,}: {r}", flush=True)
            if n in args.spark_sizes:
                spark_args = [
                    "--engine",
                    "spark",
                    "--events",
                    str(path),
                    "--spark-master",
                    args.spark_master,
                ]
                spark_args += [
                    "--shuffle-partitions",
                    str(args.shuffle_partitions),
                    "--driver-memory",
                    args.driver_memory,
                ]
                r = measure(spark_args, timeout=args.timeout)
                results["spark"][str(n)] = r  # type: ignore[index]
                print(f"spark  {n:>11,}: {r}", flush=True)
            if n == args.spill_size:
                for limit in args.spill_limits:
                    temp = Path(tempfile.mkdtemp(prefix="retention-spill-"))
                    spill_args = ["--engine", "duckdb", "--events", str(path), *common]
                    spill_args += ["--memory-limit", limit, "--temp-directory", str(temp)]
                    r = measure(spill_args, temp_dir=temp, timeout=args.timeout)
                    shutil.rmtree(temp, ignore_errors=True)
                    results["spill"][limit] = r  # type: ignore[index]
                    print(f"duckdb {n:>11,} memory_limit {limit}: {r}", flush=True)
            if not args.keep:
                path.unlink(missing_ok=True)
    finally:
        if not args.keep and args.data is None:
            shutil.rmtree(folder, ignore_errors=True)
    summarise(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


def summarise(results: dict) -> None:
    """Ratios and exponents, added to ``results`` and printed."""
    duck = {int(k): v for k, v in results["duckdb"].items() if "seconds" in v}
    spark = {int(k): v for k, v in results["spark"].items() if "seconds" in v}
    if duck:
        base_n = min(duck)
        base = duck[base_n]
        sizes = sorted(duck)
        results["duckdb_time_exponent"] = fit_exponent(sizes, [duck[n]["seconds"] for n in sizes])
        results["duckdb_memory_exponent"] = fit_exponent(
            sizes, [duck[n]["peak_rss_mb"] for n in sizes]
        )
        print(f"\nDuckDB, against its {base_n:,}-event run:")
        print(
            f"{'events':>12} {'seconds':>9} {'x time':>8} {'peak MB':>9} {'x memory':>9} {'customers':>10}"
        )
        for n in sizes:
            r = duck[n]
            r["time_ratio_to_smallest"] = r["seconds"] / base["seconds"]
            r["memory_ratio_to_smallest"] = r["peak_rss_mb"] / base["peak_rss_mb"]
            print(
                f"{n:>12,} {r['seconds']:>9.1f} {r['time_ratio_to_smallest']:>8.2f} "
                f"{r['peak_rss_mb']:>9.0f} {r['memory_ratio_to_smallest']:>9.2f} {r['n_users']:>10,}"
            )
        if len(sizes) >= 2:
            print(
                f"growth exponents (log-log fit): time {results['duckdb_time_exponent']:.2f}, "
                f"peak memory {results['duckdb_memory_exponent']:.2f}"
            )
    if spark:
        print("\nSpark local[2] against DuckDB at the same size:")
        for n in sorted(spark):
            r = spark[n]
            if n in duck:
                r["time_ratio_to_duckdb"] = r["seconds"] / duck[n]["seconds"]
                r["memory_ratio_to_duckdb"] = r["peak_rss_mb"] / duck[n]["peak_rss_mb"]
                print(
                    f"{n:>12,}: {r['seconds']:.1f} s ({r['time_ratio_to_duckdb']:.2f}x DuckDB), "
                    f"peak {r['peak_rss_mb']:.0f} MB ({r['memory_ratio_to_duckdb']:.2f}x), "
                    f"session start {r.get('session_seconds', 0):.1f} s"
                )
        if len(spark) >= 2:
            sizes = sorted(spark)
            results["spark_time_exponent"] = fit_exponent(
                sizes, [spark[n]["seconds"] for n in sizes]
            )
            print(f"Spark time exponent: {results['spark_time_exponent']:.2f}")
    spill = {k: v for k, v in results["spill"].items() if "seconds" in v}
    if results["spill"]:
        spilled = [k for k, v in spill.items() if v.get("spill_mb", 0) > 0]
        results["spill_starts_at"] = spilled[0] if spilled else None
        print("\nDuckDB memory_limit probe:")
        for limit, r in spill.items():
            print(
                f"  {limit:>6}: {r['seconds']:.1f} s, spilled {r['spill_mb']:.0f} MB, peak {r['peak_rss_mb']:.0f} MB"
            )
        failed = {k: v["error"] for k, v in results["spill"].items() if "error" in v}
        results["spill_fails_at"] = next(iter(failed), None)  # out of memory instead of spilling
        for limit, error in failed.items():
            print(f"  {limit:>6}: failed: {error[:200]}")
        print(f"DuckDB first spills at memory_limit {results['spill_starts_at']}")


if __name__ == "__main__":
    main()

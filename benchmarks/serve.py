"""Service benchmark: latency and throughput of ``retention serve`` on loopback, bounded.

The service runs in its own process (``python -m retention serve``, as a user starts it) over a
copy of a scored store: by default the bundled UCI Online Retail, loaded, trained (gradient
boosting) and scored first (about a minute on two cores); ``--db`` takes a scored store instead
(``make demo`` writes one). Clients are threads of this process, each with one keep-alive HTTP
connection (``http.client``), sending requests one after another:

- ``GET /health`` at 8 clients: the floor of the HTTP stack on this machine, the baseline every
  figure is divided by (measured in the same run: the machine is shared and noisy);
- ``GET /customers/{id}`` (stored scores, reasons, activity, the later stages' parts) of random
  scored customers at 8 and 32 clients;
- ``POST /events`` with batches of 1,000 new events, at 1 and 4 clients (batches are written one
  at a time: the figure is the store's ingest rate through the API).

Each scenario is bounded in count (``--requests``, ``--batches``) and time (``--max-seconds``).
The key's rate limit is lifted for the run (``RETENTION_API_RATE_LIMIT_*``). Target (issue 15):
p99 under 50 ms for a lookup at 8 clients on 2 cores.

    python benchmarks/serve.py                 # builds the store
    python benchmarks/serve.py --db demo-output/retention.duckdb
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET_P99_MS = 50.0


def build_store(folder: Path) -> Path:
    """Online Retail loaded, a gradient boosting model trained and every customer scored."""
    from retention import workflows

    db = folder / "bench.duckdb"
    with workflows.Store.open(db) as store:
        t0 = time.perf_counter()
        workflows.load_dataset(store, "online_retail")
        rep = workflows.train(
            store, workflows.TrainRequest(out=folder / "gbdt.retention", model="gbdt")
        )
        workflows.score(store, workflows.ScoreRequest(model_id=rep.model_id))
        print(
            f"built a scored Online Retail store in {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )
    return db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_clients(
    port: int, n_clients: int, n_requests: int, max_seconds: float, make: Any
) -> dict[str, Any]:
    """``n_requests`` requests over ``n_clients`` threads; ``make(i)`` gives (method, path, body)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n_requests))
    deadline = time.monotonic() + max_seconds

    def client(headers: dict[str, str]) -> None:
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine: list[float] = []
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                method, path, body = make(i)
                data = None if body is None else json.dumps(body).encode()
                t0 = time.perf_counter()
                con.request(method, path, body=data, headers=headers)
                res = con.getresponse()
                res.read()
                mine.append(time.perf_counter() - t0)
                if res.status != 200:
                    with lock:
                        errors.append(f"{res.status} {method} {path}")
        finally:
            con.close()
            with lock:
                latencies.extend(mine)

    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    threads = [threading.Thread(target=client, args=(headers,)) for _ in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = [x * 1000 for x in latencies]
    return {
        "clients": n_clients,
        "requests": len(ms),
        "errors": len(errors),
        "first_errors": errors[:3],
        "seconds": round(wall, 3),
        "throughput_rps": round(len(ms) / wall, 1) if wall else None,
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
    }


KEY = ""


def main() -> int:
    global KEY
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--db", type=Path, help="a scored store (default: build one from Online Retail)"
    )
    ap.add_argument("--requests", type=int, default=3000, help="requests per lookup scenario")
    ap.add_argument("--batches", type=int, default=20, help="event batches per ingest scenario")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--max-seconds", type=float, default=120.0, help="time bound per scenario")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = ap.parse_args()

    from retention import workflows

    work = Path(tempfile.mkdtemp(prefix="retention-serve-bench-"))
    proc = None
    try:
        source = args.db if args.db is not None else build_store(work)
        db = work / "served.duckdb"
        shutil.copy(source, db)
        with workflows.Store.open(db) as store:
            KEY = workflows.create_api_key(store, workflows.ApiKeyRequest("write", "benchmark")).key
            ids = sorted(store.read_scores(latest=True)["user_id"].astype(str).unique())
            n_events = store.count_rows("events")
        if not ids:
            raise SystemExit(f"{source} holds no scores: run `retention score` first")
        port = free_port()
        env = {
            **os.environ,
            "RETENTION_PROGRESS": "0",
            "RETENTION_API_RATE_LIMIT_PER_MINUTE": str(10**9),
            "RETENTION_API_RATE_LIMIT_BURST": str(10**9),
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "retention",
                "serve",
                "--db",
                str(db),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(
                    "the service did not start: "
                    + (proc.stderr.read().decode() if proc.stderr else "")
                )
            time.sleep(0.2)

        rng = np.random.default_rng(0)
        picks = [ids[i] for i in rng.integers(0, len(ids), args.requests)]
        results: dict[str, Any] = {}
        # warm up: every worker thread opens its connection once
        run_clients(
            port, 32, 200, 30, lambda i: ("GET", f"/customers/{picks[i % len(picks)]}", None)
        )
        results["health_8"] = run_clients(
            port, 8, args.requests, args.max_seconds, lambda i: ("GET", "/health", None)
        )
        for n in (8, 32):
            results[f"customer_{n}"] = run_clients(
                port,
                n,
                args.requests,
                args.max_seconds,
                lambda i: ("GET", f"/customers/{picks[i]}", None),
            )

        def batch(i: int) -> tuple[str, str, dict[str, Any]]:
            events = [
                {
                    "user_id": f"bench-{i}-{j % 97}",
                    "ts": f"2011-12-{1 + j % 9:02d}T{j % 24:02d}:{j % 60:02d}:00",
                    "item_id": f"item-{j % 500}",
                    "order_id": f"bench-{i}-o{j // 4}",
                    "quantity": 1 + j % 3,
                    "amount": round(1.5 + j % 40, 2),
                }
                for j in range(args.batch_size)
            ]
            return "POST", "/events", {"events": events}

        offset = [0]

        def fresh(i: int) -> tuple[str, str, dict[str, Any]]:
            return batch(offset[0] + i)

        for n in (1, 4):
            results[f"events_{n}"] = run_clients(port, n, args.batches, args.max_seconds, fresh)
            offset[0] += args.batches
            r = results[f"events_{n}"]
            r["events_per_s"] = round(r["requests"] * args.batch_size / r["seconds"], 0)
        base = results["health_8"]
        for r in results.values():
            r["p50_vs_health"] = round(r["p50_ms"] / base["p50_ms"], 1)
            r["p99_vs_health"] = round(r["p99_ms"] / base["p99_ms"], 1)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        loaded = None
        if proc is not None:
            with workflows.Store.open(db, read_only=True) as store:
                loaded = store.count_rows("events") - n_events
        shutil.rmtree(work, ignore_errors=True)

    lookup = results["customer_8"]
    summary = {
        "machine": {"cpus": os.cpu_count()},
        "customers_scored": len(ids),
        "scenarios": results,
        "events_loaded": loaded,
        "events_sent": (results["events_1"]["requests"] + results["events_4"]["requests"])
        * args.batch_size,
        "target": {
            "p99_lookup_8_clients_ms": TARGET_P99_MS,
            "measured_ms": lookup["p99_ms"],
            "met": bool(lookup["p99_ms"] < TARGET_P99_MS and lookup["errors"] == 0),
        },
    }
    print(
        f"{'scenario':<14}{'clients':>8}{'requests':>9}{'errors':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p50/h':>7}{'p99/h':>7}"
    )
    for name, r in results.items():
        print(
            f"{name:<14}{r['clients']:>8}{r['requests']:>9}{r['errors']:>7}{r['throughput_rps']:>9}"
            f"{r['p50_ms']:>9}{r['p99_ms']:>9}{r['p50_vs_health']:>7}{r['p99_vs_health']:>7}"
        )
    for n in (1, 4):
        print(
            f"POST /events at {n} client(s): {results[f'events_{n}']['events_per_s']:,.0f} events/s"
        )
    print(
        f"events sent {summary['events_sent']:,}, loaded {loaded:,} (nothing lost: {loaded == summary['events_sent']})"
    )
    t = summary["target"]
    print(
        f"target p99 < {TARGET_P99_MS:.0f} ms for GET /customers/{{id}} at 8 clients: {t['measured_ms']} ms, {'met' if t['met'] else 'MISSED'}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"results: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

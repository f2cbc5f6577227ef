"""Crash safety: a process killed in the middle of an ingest leaves the store as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention.data import Store, ingest

TABLES = ("events", "quarantine", "ingests", "items", "users")


def _snapshot(db: Path) -> dict[str, tuple]:
    with Store(db, read_only=True) as store:
        out = {}
        for name in TABLES:
            row = store.con.execute(
                f"SELECT count(*), coalesce(sum(hash(t)), 0) FROM {name} t"
            ).fetchone()
            assert row is not None
            out[name] = tuple(row)
        return out


def _seed(tmp_path: Path) -> Path:
    db = tmp_path / "s.duckdb"
    first = tmp_path / "first.csv"
    first.write_text("user_id,ts,amount\na,2021-01-01,1\nb,2021-01-02,2\n,2021-01-03,3\n")
    with Store(db) as store:
        ingest(store, first)
    return db


def _big_csv(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "user_id": rng.integers(0, 5000, rows).astype(str),
            "ts": pd.Timestamp("2021-01-01")
            + pd.to_timedelta(rng.integers(0, 10**7, rows), unit="s"),
            "amount": rng.gamma(2, 10, rows).round(2),
            "item_id": rng.integers(0, 900, rows).astype(str),
        }
    ).to_csv(path, index=False)
    return path


KILL_INSIDE_TRANSACTION = textwrap.dedent(
    """
    import os, signal, sys
    os.environ["RETENTION_PROGRESS"] = "0"
    import retention.data._ingest as ingest_module
    from retention.data import Store, ingest

    write = ingest_module._write

    def write_then_die(*args, **kwargs):
        report = write(*args, **kwargs)  # every row of the file is written, not committed
        print("written", report.loaded, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    ingest_module._write = write_then_die
    with Store(sys.argv[1]) as store:
        ingest(store, sys.argv[2])
    """
)


def test_kill_after_writing_before_commit_leaves_the_store_unchanged(tmp_path: Path) -> None:
    db = _seed(tmp_path)
    before = _snapshot(db)
    big = _big_csv(tmp_path / "big.csv", 20_000)
    proc = subprocess.run(
        [sys.executable, "-c", KILL_INSIDE_TRANSACTION, str(db), str(big)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "written" in proc.stdout  # the kill came after the rows were inserted
    assert _snapshot(db) == before
    # the store is usable: the same file loads completely
    with Store(db) as store:
        report = ingest(store, big)
        assert report.read == 20_000
        assert report.read == report.loaded + report.duplicates + report.quarantined


@pytest.mark.slow
def test_kill_at_a_random_moment_is_all_or_nothing(tmp_path: Path) -> None:
    db = _seed(tmp_path)
    before = _snapshot(db)
    big = _big_csv(tmp_path / "big.csv", 100_000)
    script = (
        "import os, sys; os.environ['RETENTION_PROGRESS'] = '0'\n"
        "from retention.data import Store, ingest\n"
        "print('start', flush=True)\n"
        "with Store(sys.argv[1]) as s: ingest(s, sys.argv[2])\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(db), str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "start"
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    after = _snapshot(db)
    if after != before:  # the ingest had committed before the kill: then all of it is there
        assert after["ingests"][0] == before["ingests"][0] + 1
        with Store(db, read_only=True) as store:
            row = store.con.execute(
                "SELECT read, loaded, duplicates, quarantined FROM ingests "
                "ORDER BY ingest_id DESC LIMIT 1"
            ).fetchone()
        assert row is not None and row[0] == 100_000
        assert after["events"][0] == before["events"][0] + row[1]
    with Store(db) as store:  # usable either way
        assert ingest(store, big).read == 100_000

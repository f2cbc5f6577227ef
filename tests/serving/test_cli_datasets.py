"""``retention datasets list`` and ``retention datasets load``, run as a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb

from retention.data import list_datasets


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RETENTION_PROGRESS": "0", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "retention", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def test_list_prints_every_dataset_with_rows_and_licence(tmp_path: Path) -> None:
    proc = _cli("datasets", "list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for info in list_datasets():
        row = next(line for line in lines if re.search(rf"\b{info.name}\b", line))
        assert f"{info.rows:,}" in row
        assert info.licence in row


def test_load_prints_the_accounting_and_fills_the_store(tmp_path: Path) -> None:
    db = tmp_path / "cdnow.duckdb"
    proc = _cli("datasets", "load", "cdnow_sample", "--db", str(db), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = re.sub(r"\s+", " ", proc.stdout)
    assert "events: read 6,919 = loaded 6,919 + duplicates 0 + quarantined 0" in out
    assert "users: read 2,357 = loaded 2,357" in out
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT count(*), count(DISTINCT user_id) FROM events").fetchall()
    assert rows == [(6_919, 2_357)]


def test_load_of_an_unknown_name_fails_in_one_line_and_creates_no_store(tmp_path: Path) -> None:
    db = tmp_path / "nope.duckdb"
    proc = _cli("datasets", "load", "online-retail", "--db", str(db), cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())
    assert "Unknown dataset 'online-retail'" in message
    assert "online_retail" in message and "open_bandit_random_all" in message
    assert not db.exists()

"""``retention ingest`` and ``retention info``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retention.serving.cli import main

TRANSACTIONS = (
    "Order Ref;Client;Date;SKU;Units;Unit price;Kind\r\n"
    "A-1;c001;2023-03-01 10:00;p1;2;9.99;sale\r\n"
    "A-1;c001;2023-03-01 10:00;p2;1;5.00;sale\r\n"
    "A-2;c002;2023-03-02 11:30;p1;1;9.99;sale\r\n"
    "R-1;c001;2023-03-05 09:00;p2;1;5.00;refund\r\n"
    "A-3;;2023-03-06 12:00;p3;1;1.00;sale\r\n"
    "A-4;c003;2023-03-07 12:00;p3;1;1.00;gift\r\n"
)
MAPS = [
    "--map",
    "user_id=Client",
    "--map",
    "ts=Date",
    "--map",
    "item_id=SKU",
    "--map",
    "order_id=Order Ref",
    "--map",
    "quantity=Units",
    "--map",
    'amount=Units * "Unit price"',
    "--map",
    "event_type=Kind",
    "--event-type",
    "sale=purchase",
    "--event-type",
    "refund=return",
]


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


def test_ingest_a_never_seen_transactions_file_then_info(tmp_path: Path, capsys) -> None:
    path = tmp_path / "shop.csv"
    path.write_text(TRANSACTIONS, encoding="utf-8")
    db = tmp_path / "shop.duckdb"
    assert main(["ingest", str(path), "--db", str(db), *MAPS]) == 0
    out = capsys.readouterr().out
    assert "read" in out and "6" in out
    assert "missing user_id" in out and "unmapped event type" in out
    # 6 read = 4 loaded + 0 duplicates + 2 quarantined
    for label, value in (("loaded", "4"), ("duplicates", "0"), ("quarantined", "2")):
        line = next(li for li in out.splitlines() if label in li)
        assert line.rstrip(" │").split()[-1] == value, line
    assert main(["ingest", str(path), "--db", str(db), *MAPS]) == 0
    out = capsys.readouterr().out
    line = next(li for li in out.splitlines() if "duplicates" in li)
    assert line.rstrip(" │").split()[-1] == "6"  # 4 events + 2 rows already in the quarantine
    assert main(["info", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "purchase" in out and "return" in out
    assert "2023-03-01" in out and "2023-03-05" in out
    assert "missing user_id" in out


def test_ingest_uses_retention_db_when_no_db_flag(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "e.csv"
    path.write_text("user_id,ts\nu,2021-01-01\n")
    monkeypatch.setenv("RETENTION_DB", str(tmp_path / "env.duckdb"))
    assert main(["ingest", str(path)]) == 0
    assert (tmp_path / "env.duckdb").exists()


def test_mapping_file_and_strict(tmp_path: Path, capsys) -> None:
    path = tmp_path / "shop.csv"
    path.write_text(TRANSACTIONS, encoding="utf-8")
    mapping = tmp_path / "shop.toml"
    mapping.write_text(
        '[columns]\nuser_id = "Client"\nts = "Date"\nevent_type = "Kind"\n'
        '[event_types]\nsale = "purchase"\nrefund = "return"\ngift = "purchase"\n'
        '[reader]\ndelimiter = ";"\n',
        encoding="utf-8",
    )
    db = tmp_path / "s.duckdb"
    assert main(["ingest", str(path), "--db", str(db), "--mapping", str(mapping), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "--strict" in err and "missing user_id" in err
    assert main(["ingest", str(path), "--db", str(db), "--mapping", str(mapping)]) == 0
    out = capsys.readouterr().out
    assert "unmapped" not in out  # gift is mapped by the file


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["ingest", "{tmp}/nope.csv"], "does not exist"),
        (["ingest", "{tmp}/shop.csv", "--map", "user_id"], "--map"),
        (["ingest", "{tmp}/shop.csv", "--map", "userid=Client"], "canonical names"),
        (["ingest", "{tmp}/shop.csv", "--table", "orders"], "--table"),
        (["ingest", "{tmp}/shop.csv", "--db", "{tmp}/no/dir/s.duckdb"], "does not exist"),
        (["info", "--db", "{tmp}/absent.duckdb"], "retention ingest"),
    ],
)
def test_errors_are_one_line_with_exit_2(tmp_path: Path, capsys, args, needle) -> None:
    (tmp_path / "shop.csv").write_text(TRANSACTIONS, encoding="utf-8")
    argv = [a.format(tmp=tmp_path) for a in args]
    if "--db" not in argv:
        argv += ["--db", str(tmp_path / "s.duckdb")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_subprocess_missing_column_exits_non_zero_and_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "shop.csv"
    path.write_text(TRANSACTIONS, encoding="utf-8")
    proc = _cli("ingest", str(path), "--db", str(tmp_path / "s.duckdb"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--map user_id=Client --map ts=Date" in proc.stderr
    assert proc.stderr.count("error:") == 1


@pytest.mark.slow
def test_subprocess_unreadable_file_and_bad_store(tmp_path: Path) -> None:
    binary = tmp_path / "data.csv"
    binary.write_bytes(bytes(range(256)) * 50)
    not_a_db = tmp_path / "notes.duckdb"
    not_a_db.write_text("not a database\n" * 200)
    proc = _cli("ingest", str(binary), "--db", str(tmp_path / "s.duckdb"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "binary" in proc.stderr and "CSV, Parquet or JSON Lines" in proc.stderr
    proc = _cli("info", "--db", str(not_a_db), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Cannot open" in proc.stderr


def test_ingest_refuses_another_apps_database_and_leaves_it_byte_identical(
    tmp_path: Path, capsys
) -> None:
    import hashlib

    import duckdb

    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE events (order_no INTEGER, sku VARCHAR)")
        con.execute("INSERT INTO events VALUES (1, 'their row')")
    before = hashlib.sha256(other.read_bytes()).hexdigest()
    path = tmp_path / "shop.csv"
    path.write_text(TRANSACTIONS, encoding="utf-8")
    for argv in (["ingest", str(path), "--db", str(other), *MAPS], ["info", "--db", str(other)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "not a retention store" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) <= 3  # one line, soft-wrapped
    assert hashlib.sha256(other.read_bytes()).hexdigest() == before

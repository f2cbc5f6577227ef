"""``retention ingest`` on files that used to leave a store behind or exit 0 having loaded
nothing (issue 10, the data layer's side)."""

from __future__ import annotations

from pathlib import Path

from retention.serving.cli import main


def test_a_missing_file_creates_no_store(tmp_path: Path, capsys) -> None:
    db = tmp_path / "new.duckdb"
    assert main(["ingest", str(tmp_path / "nope.csv"), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert not db.exists()  # was: an empty store file
    assert not list(tmp_path.glob("new.duckdb*"))


def test_a_file_whose_rows_are_all_quarantined_exits_non_zero(tmp_path: Path, capsys) -> None:
    path = tmp_path / "epoch.csv"
    path.write_text("user_id,ts\nu1,17\nu2,42\n", encoding="utf-8")
    db = tmp_path / "s.duckdb"
    assert main(["ingest", str(path), "--db", str(db)]) == 2  # was: exit 0, 0 loaded
    err = capsys.readouterr().err
    assert "All 2 rows" in err and "epoch_s" in err and "Traceback" not in err


def test_epoch_seconds_load_from_the_command_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "epoch.csv"
    path.write_text("user_id,ts\nu1,1600000000\nu2,1600003600\n", encoding="utf-8")
    assert main(["ingest", str(path), "--db", str(tmp_path / "s.duckdb")]) == 0
    assert main(["info", "--db", str(tmp_path / "s.duckdb")]) == 0
    out = capsys.readouterr().out
    assert "2020-09-13" in out

"""`retention apikey create|list|revoke`, `retention serve` refusing a store without a key, and
`retention openapi` matching the checked-in docs/openapi.json."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from retention.serving.api import openapi_spec
from retention.serving.cli import main

DOCS = Path(__file__).parents[3] / "docs" / "openapi.json"


def test_apikey_create_prints_the_key_once_and_list_never(
    cdnow_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.duckdb"
    shutil.copy(cdnow_db, db)
    assert main(["apikey", "create", "--db", str(db), "--scope", "read", "--name", "crm"]) == 0
    out, err = capsys.readouterr()
    key = out.strip().splitlines()[-1]
    # what other tools grep for: the last long token of the output is the key
    assert re.findall(r"[A-Za-z0-9_\-]{20,}", out)[-1] == key
    assert key.startswith("rk_") and "not shown again" in err
    assert main(["apikey", "list", "--db", str(db)]) == 0
    listed = capsys.readouterr().out
    key_id = key.split("_")[1]
    assert key_id in listed and "crm" in listed and "read" in listed
    assert key.split("_", 2)[2] not in listed
    raw = db.read_bytes()
    assert key.encode() not in raw and key.split("_", 2)[2].encode() not in raw  # never stored
    assert main(["apikey", "revoke", key_id, "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["apikey", "list", "--db", str(db)]) == 0
    assert "revoked" in capsys.readouterr().out


def test_apikey_errors_are_one_line(
    cdnow_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.duckdb"
    shutil.copy(cdnow_db, db)
    assert main(["apikey", "create", "--db", str(db), "--scope", "root"]) == 2
    err = capsys.readouterr().err
    assert "scope must be one of read, write, admin" in err and "Traceback" not in err
    assert main(["apikey", "revoke", "abc", "--db", str(db)]) == 2
    assert "12 hex digits" in capsys.readouterr().err
    assert main(["apikey", "revoke", "ffffffffffff", "--db", str(db)]) == 2
    assert "No API key ffffffffffff" in capsys.readouterr().err
    assert main(["apikey", "list", "--db", str(tmp_path / "missing.duckdb")]) == 2
    assert "No store at" in capsys.readouterr().err


def test_serve_refuses_a_store_without_keys(
    cdnow_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.duckdb"
    shutil.copy(cdnow_db, db)
    assert main(["serve", "--db", str(db), "--port", "0"]) == 2
    assert "--port must be between 1 and 65535" in capsys.readouterr().err
    assert main(["serve", "--db", str(db), "--port", "8123"]) == 2
    err = capsys.readouterr().err
    assert "no active API key" in err and "retention apikey create" in err
    assert len(err.strip().splitlines()) == 1


def test_checked_in_spec_is_the_served_one(tmp_path: Path) -> None:
    assert json.loads(DOCS.read_text(encoding="utf-8")) == openapi_spec(), (
        "docs/openapi.json is out of date: run `retention openapi --out docs/openapi.json`"
    )
    assert main(["openapi", "--out", str(tmp_path / "o.json")]) == 0
    assert json.loads((tmp_path / "o.json").read_text()) == openapi_spec()

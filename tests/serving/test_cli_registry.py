"""``retention models|promote|rollback`` and the default model of ``retention score``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import synthetic_store

from retention.serving.cli import main

#: 250 synthetic customers sit inside the thin-data rule's warning zone: lowered for the tests
THIN = {"RETENTION_MIN_CUSTOMERS": "20", "RETENTION_MIN_RETAINED": "5"}


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in THIN.items():
        monkeypatch.setenv(k, v)


def _model_id(out: str) -> str:
    return out.split("(id ")[1].split(")")[0]


@pytest.mark.slow  # trains two BTYD models and refits both at the latest backtest cutoff
def test_promote_rollback_and_the_default_model_of_score(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = synthetic_store(tmp_path / "s.duckdb", n_users=150, seed=4)
    ids = []
    for name in ("bgnbd", "paretonbd"):
        argv = ["train", "--db", str(db), "--horizon", "45", "--model", name]
        assert main([*argv, "--out", str(tmp_path / f"{name}.retention")]) == 0
        ids.append(_model_id(capsys.readouterr().out))
    first, second = ids

    assert main(["models", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert first in out and second in out and "candidate" in out and "production: none" in out

    # no production model yet: score uses the newest candidate and says so once
    assert main(["score", "--db", str(db)]) == 0
    captured = capsys.readouterr()
    assert f"with model {second} (candidate)" in captured.out
    assert captured.err.count("warning: No production model") == 1

    assert main(["promote", "--db", str(db), "--model", first]) == 0
    assert "without comparison" in capsys.readouterr().out

    # a margin no model can meet: refused, non-zero, production unchanged, with the figures
    report = tmp_path / "promote.json"
    argv = ["promote", "--db", str(db), "--margin", "0.9", "--json", str(report)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "candidate" in captured.out and "production" in captured.out
    assert "paired bootstrap 95% interval" in captured.out and "decision: refuse" in captured.out
    assert captured.err.startswith("error: candidate") and "--force" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    payload = json.loads(report.read_text())
    assert payload["promoted"] is False and payload["candidate"] == second
    ev = payload["evidence"]
    assert ev["ci_low"] <= ev["difference"] <= ev["ci_high"] and ev["margin"] == 0.9

    assert main(["promote", "--db", str(db), "--margin", "0.9", "--force"]) == 0
    assert "by --force" in capsys.readouterr().out
    listing = tmp_path / "models.json"
    assert main(["models", "--db", str(db), "--json", str(listing)]) == 0
    capsys.readouterr()
    models = json.loads(listing.read_text())
    assert models["production"] == second
    stages = {m["model_id"]: m["stage"] for m in models["models"]}
    assert stages == {first: "archived", second: "production"}
    assert all(m["backtest"]["roc_auc"] for m in models["models"])  # both were refit

    # production is used by default, with no warning
    assert main(["score", "--db", str(db)]) == 0
    captured = capsys.readouterr()
    assert f"with model {second} (production)" in captured.out and "warning" not in captured.err
    # --model takes a registry id too
    assert main(["score", "--db", str(db), "--model", first]) == 0
    assert f"with model {first} (archived)" in capsys.readouterr().out

    assert main(["rollback", "--db", str(db), "--reason", "forced in by mistake"]) == 0
    assert f"from {second} to {first}" in capsys.readouterr().out
    assert main(["rollback", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Production model") and "Traceback" not in err


def test_registry_commands_fail_in_one_line(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = synthetic_store(tmp_path / "s.duckdb", n_users=60, seed=1)
    assert main(["models", "--db", str(db)]) == 0
    assert "no model registered" in capsys.readouterr().out
    cases = [
        (["promote", "--db", str(db)], "No candidate model"),
        (["promote", "--db", str(db), "--margin", "2"], "margin must be"),
        (["rollback", "--db", str(db)], "no production model to roll back"),
        (["rollback", "--db", str(db), "--to", "nope"], "no production model"),
        (["score", "--db", str(db)], "No model in the registry"),
        (["score", "--db", str(db), "--model", "abc123"], "No model 'abc123'"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1

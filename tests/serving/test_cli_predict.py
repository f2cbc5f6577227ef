from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import START, synthetic_store

from retention.serving.cli import main

CUTOFF = (START + pd.Timedelta(days=480)).strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("cli") / "synth.duckdb", n_users=250, seed=4)


def test_backtest_train_score(db: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bt.json"
    args = ["backtest", "--db", str(db), "--cutoff", CUTOFF, "--horizon", "45"]
    assert main([*args, "--models", "bgnbd,gbdt_rfm,ensemble", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert set(payload["models"]) == {"bgnbd", "gbdt_rfm", "ensemble"}
    html = out.with_suffix(".html")
    assert html.exists() and html.stat().st_size > 1000
    assert str(html) in printed.replace("\n", "")

    model = tmp_path / "m.retention"
    args = ["train", "--db", str(db), "--horizon", "45", "--model", "gbdt_rfm"]
    assert main([*args, "--out", str(model)]) == 0
    assert model.exists()
    scores = tmp_path / "s.csv"
    assert main(["score", "--db", str(db), "--model", str(model), "--out", str(scores)]) == 0
    df = pd.read_csv(scores)
    assert {"p_retained", "p_alive", "expected_purchases", "clv", "risk_band"} <= set(df.columns)


def test_errors_are_one_line_with_exit_2(db: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.retention"
    bad.write_bytes(b"garbage")
    assert main(["score", "--db", str(db), "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a retention model artifact" in err and "Traceback" not in err

    # an artifact from an incompatible version names both versions
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"format_version": 1, "retention_version": "7.0"}))
    assert main(["score", "--db", str(db), "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "7.0" in err and "Retrain" in err

    assert main(["backtest", "--db", str(db), "--cutoff", "2099-01-01"]) == 2
    assert "after the last event" in capsys.readouterr().err
    missing = tmp_path / "none.duckdb"
    assert main(["backtest", "--db", str(missing), "--cutoff", CUTOFF]) == 2
    assert "No store" in capsys.readouterr().err


def test_backtest_without_a_cutoff_takes_the_latest_with_its_horizon_seen(
    db: Path, tmp_path: Path, capsys
) -> None:
    from retention.data import Store

    with Store(db, read_only=True) as store:
        row = store.con.execute(
            "SELECT max(ts) FROM events WHERE event_type = 'purchase'"
        ).fetchone()
    assert row is not None
    expected = pd.Timestamp(row[0]).normalize() - pd.Timedelta(days=45)
    out = tmp_path / "bt.json"
    args = ["backtest", "--db", str(db), "--horizon", "45", "--models", "bgnbd"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"cutoff {expected:%Y-%m-%d}: the latest with its 45 days" in printed
    assert json.loads(out.read_text())["cutoff"][:10] == f"{expected:%Y-%m-%d}"
    # a history shorter than the horizon: one line naming the fixes
    csv = tmp_path / "short.csv"
    csv.write_text("user_id,ts\nu1,2015-01-01\nu2,2015-01-05\n", encoding="utf-8")
    short = tmp_path / "short.duckdb"
    assert main(["ingest", str(csv), "--db", str(short)]) == 0
    capsys.readouterr()
    assert main(["backtest", "--db", str(short)]) == 2
    err = capsys.readouterr().err
    assert "spans 4 days" in err and "--horizon" in err and "--cutoff" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_backtest_params_reach_the_named_model(db: Path, tmp_path: Path, capsys) -> None:
    args = ["backtest", "--db", str(db), "--cutoff", CUTOFF, "--horizon", "45"]
    args += ["--models", "bgnbd,gbdt_rfm"]
    runs = {}
    for label, extra in {
        "default": [],
        "stumps": ["--params", 'gbdt_rfm={"num_leaves": 2, "n_estimators": 3}'],
    }.items():
        out = tmp_path / f"{label}.json"
        assert main([*args, *extra, "--json", str(out)]) == 0
        runs[label] = json.loads(out.read_text())["models"]
    assert runs["stumps"]["bgnbd"] == runs["default"]["bgnbd"]  # the other model is untouched
    assert runs["stumps"]["gbdt_rfm"]["log_loss"] != runs["default"]["gbdt_rfm"]["log_loss"]
    capsys.readouterr()

    for bad, message in {
        "gbdt_rfm": "not MODEL=JSON",
        'gbdt={"num_leaves": 2}': "not in --models",
        "gbdt_rfm={num_leaves": "not a valid JSON object",
    }.items():
        assert main([*args, "--params", bad]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_backtest_on_online_retail_end_to_end(retail_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "retail.json"
    args = ["backtest", "--db", str(retail_db), "--cutoff", "2011-09-10", "--horizon", "90"]
    assert main([*args, "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert {"cutoff", "horizon_days", "n_users", "base_rate", "models"} <= set(payload)
    assert {"bgnbd", "gbdt", "ensemble"} <= set(payload["models"])
    assert payload["n_users"] > 3000
    assert payload["models"]["ensemble"]["roc_auc"] > 0.7
    assert out.with_suffix(".html").exists()


def test_cli_default_models_match_the_workflow_default() -> None:
    from retention import workflows
    from retention.serving.cli._predict import DEFAULT_MODELS

    assert DEFAULT_MODELS.split(",") == list(workflows.DEFAULT_BACKTEST_MODELS)


def test_cli_import_does_not_import_the_models() -> None:
    import subprocess
    import sys

    code = "import sys, retention.serving.cli; print('retention.models' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

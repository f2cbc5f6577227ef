from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import synthetic_store

from retention.data import Store
from retention.serving.cli import main

FAST = {"n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 20}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, str]:
    from retention import workflows
    from retention.features import MinData

    folder = tmp_path_factory.mktemp("cli_explain")
    db = synthetic_store(folder / "synth.duckdb", n_users=200, seed=5)
    model = folder / "m.retention"
    with Store(db) as store:
        workflows.train(
            store,
            workflows.TrainRequest(
                out=model,
                model="gbdt",
                horizon_days=45,
                model_params=FAST,
                # 200 customers on purpose (fast): under the thin-data rule's warning, lowered
                min_data=MinData(customers=20, retained=5),
            ),
        )
    with Store(db, read_only=True) as store:
        user = store.con.execute("SELECT max(user_id) FROM events").fetchone()[0]
    return db, model, user


def test_explain_user_prints_score_and_reasons(trained, tmp_path, capsys) -> None:
    db, model, user = trained
    out = tmp_path / "u.json"
    args = ["explain", "--user", user, "--db", str(db), "--model", str(model)]
    assert main([*args, "--json", str(out), "--currency", "£"]) == 0
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert payload["user_id"] == user
    assert f"Customer {user}" in printed and "P(retained)" in printed
    first = (payload["reasons"]["churn"] or payload["reasons"]["retention"])[0]["text"]
    assert first[:25] in printed.replace("\n", " ")
    assert ("Toward churn" in printed) == bool(payload["reasons"]["churn"])


def test_store_reasons_then_explain_reads_them(trained, tmp_path, capsys) -> None:
    import shutil

    db0, model, user = trained
    db = tmp_path / "copy.duckdb"
    shutil.copy(db0, db)
    assert main(["score", "--db", str(db), "--model", str(model)]) == 0
    assert main(["explain", "--store-reasons", "--db", str(db), "--model", str(model)]) == 0
    assert "score_reasons" in capsys.readouterr().out
    assert main(["explain", "--user", user, "--db", str(db), "--model", str(model)]) == 0
    assert "reasons stored" in capsys.readouterr().out


def test_explain_user_after_score_reads_the_stored_reasons_only(
    trained, tmp_path, capsys, monkeypatch
) -> None:
    import shutil

    from retention.workflows import _explain

    db0, model, user = trained
    db = tmp_path / "copy.duckdb"
    shutil.copy(db0, db)
    assert main(["score", "--db", str(db), "--model", str(model)]) == 0
    capsys.readouterr()

    def no_features(*args, **kwargs):
        raise AssertionError("explain --user built features although reasons were stored")

    monkeypatch.setattr(_explain, "make_frame", no_features)
    out = tmp_path / "u.json"
    args = ["explain", "--user", user, "--db", str(db), "--model", str(model)]
    assert main([*args, "--json", str(out)]) == 0
    assert "reasons stored" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert payload["source"] == "stored"
    assert payload["reasons"]["churn"] or payload["reasons"]["retention"]


def test_errors_are_one_line(trained, capsys) -> None:
    db, model, _ = trained
    assert main(["explain", "--user", "nobody", "--db", str(db), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "'nobody' has no purchase" in err and "Check the id" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3  # one line, soft-wrapped
    assert main(["explain", "--db", str(db), "--model", str(model)]) == 2
    assert "--user ID" in capsys.readouterr().err
    assert main(["explain", "--report", "x.html", "--db", str(db)]) == 2
    assert "--cutoff" in capsys.readouterr().err


@pytest.mark.slow
def test_report_writes_html_and_json(trained, tmp_path, capsys) -> None:
    import pandas as pd
    from retention_synth import START

    db, _, _ = trained
    cutoff = (START + pd.Timedelta(days=480)).strftime("%Y-%m-%d")
    html, out = tmp_path / "explain.html", tmp_path / "explain.json"
    args = ["explain", "--db", str(db), "--cutoff", cutoff, "--horizon", "45"]
    assert main([*args, "--report", str(html), "--json", str(out), "--tolerance", "0.01"]) == 0
    printed = capsys.readouterr().out.replace("\n", " ")
    payload = json.loads(out.read_text())
    n = payload["selection"]["n_selected"]
    assert f"selected {n} of {payload['selection']['n_full']} features" in printed
    assert payload["valid_cutoff"] < payload["cutoff"] == cutoff
    assert {"full", "selected"} == set(payload["test_roc_auc"])
    text = html.read_text()
    for title in (
        "Feature importance (SHAP)",
        "SHAP beeswarm",
        "Fairness and stability by segment",
    ):
        assert title in text

"""``retention monitor`` and ``retention retrain`` on a small synthetic store: output, exit
statuses (3 with ``--fail-on-drift``), JSON and HTML, one-line errors, and ``/stats/monitor``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
sys.path.insert(0, str(Path(__file__).parent / "api"))
from retention_synth import START, synthetic_store

from retention import workflows
from retention.features import MinData
from retention.serving.cli import main

HORIZON = 45
TRAIN_AT = START + pd.Timedelta(days=420)
FAST = {"n_estimators": 100, "learning_rate": 0.1, "early_stopping_rounds": 20}
#: thresholds no real data passes, and thresholds every data passes
NEVER = ["--feature-psi", "1000", "--score-psi", "1000", "--decay", "1000"]
ALWAYS = ["--feature-psi", "0"]

pytestmark = pytest.mark.slow  # a training, then several monitor runs: ~20 s on 2 cores


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A synthetic store with a gbdt trained for day 420 and its scores there (matured)."""
    path = synthetic_store(tmp_path_factory.mktemp("mon") / "synth.duckdb", n_users=300, seed=2)
    with workflows.Store(path) as store:
        rep = workflows.train(
            store,
            workflows.TrainRequest(
                out=path.parent / "gbdt.retention",
                model="gbdt",
                cutoff=TRAIN_AT,
                horizon_days=HORIZON,
                model_params=FAST,
                min_data=MinData(customers=20, retained=5),
            ),
        )
        workflows.score(
            store, workflows.ScoreRequest(model_id=rep.model_id, reasons=False, cutoff=TRAIN_AT)
        )
    return path


@pytest.fixture
def db(base: Path, tmp_path: Path) -> Path:
    path = tmp_path / "synth.duckdb"
    shutil.copy(base, path)
    return path


def test_monitor_prints_writes_json_and_html(db: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mon" / "monitor.json"
    assert main(["monitor", "--db", str(db), "--json", str(out), *NEVER]) == 0
    printed = capsys.readouterr().out
    assert "Most shifted features" in printed and "OK: no feature PSI > 1000" in printed
    assert "Realised performance" in printed  # the day-420 scores have matured
    payload = json.loads(out.read_text())
    assert payload["drift"] is False and payload["flags"] == []
    assert payload["thresholds"] == {"feature_psi": 1000.0, "score_psi": 1000.0, "decay": 1000.0}
    assert len(payload["performance"]["runs"]) == 1
    assert payload["performance"]["decay"] is not None
    html = out.with_suffix(".html").read_text()
    assert "Population stability index per feature" in html and "Decay over time" in html


def test_a_flag_exits_0_unless_fail_on_drift(db: Path, capsys) -> None:
    assert main(["monitor", "--db", str(db), *ALWAYS]) == 0
    printed = capsys.readouterr().out
    assert "DRIFT:" in printed and "features drifted (PSI > 0)" in printed
    assert main(["monitor", "--db", str(db), *ALWAYS, "--fail-on-drift"]) == 3
    assert main(["monitor", "--db", str(db), *NEVER, "--fail-on-drift"]) == 0
    ignore_all = ["--ignore", "*", "--score-psi", "1000", "--decay", "1000"]
    assert main(["monitor", "--db", str(db), *ALWAYS, *ignore_all, "--fail-on-drift"]) == 0
    assert "left out of the flags" in capsys.readouterr().out
    with workflows.Store(db, read_only=True) as store:
        runs = workflows.monitor_history(store)
    assert list(runs["drift"]) == [True, True, False, False]


def test_ageing_features_flag_only_with_include_ageing(db: Path, tmp_path: Path, capsys) -> None:
    # everything but the ageing features left out of the flags: they alone could raise one
    others = ["--ignore", "[!t]*", "--ignore", "tr*", "--ignore", "tenure_active*"]
    others += ["--score-psi", "1000"]
    quiet = [*others, "--decay", "1000", "--feature-psi", "0.0001", "--fail-on-drift"]
    out = tmp_path / "ageing.json"
    assert main(["monitor", "--db", str(db), *quiet, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ageing, no flag" in printed and "2 feature(s) age with the calendar" in printed
    payload = json.loads(out.read_text())
    assert payload["include_ageing"] is False and "tenure_days" in payload["ageing_features"]
    rows = {f["feature"]: f for f in payload["features"]}
    assert rows["tenure_days"]["ages_with_calendar"] and not rows["tenure_days"]["drifted"]
    assert main(["monitor", "--db", str(db), *quiet, "--include-ageing"]) == 3
    printed = capsys.readouterr().out
    assert "DRIFT:" in printed and "tenure_days" in printed


def test_history_matched_by_default_on_a_young_store_and_full_history(
    db: Path, tmp_path: Path, capsys
) -> None:
    # the training cutoffs lie under a year after the store's first event (days 330 to 360)
    out = tmp_path / "matched.json"
    assert main(["monitor", "--db", str(db), *NEVER, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ", history-matched (events from " in printed
    assert "computed on as many days of history" in printed and "--full-history" in printed
    payload = json.loads(out.read_text())
    assert payload["history_matched"] is True and len(payload["history_days"]) == 3
    assert payload["history_start"] == min(payload["history_starts"])
    assert payload["history_starts"][-1] < payload["current"]["cutoffs"][-1]
    assert "length of history (events from " in out.with_suffix(".html").read_text()
    full = tmp_path / "full.json"
    assert main(["monitor", "--db", str(db), *NEVER, "--full-history", "--json", str(full)]) == 0
    printed = capsys.readouterr().out
    assert "history-matched" not in printed and "(--full-history; by default" in printed
    payload = json.loads(full.read_text())
    assert payload["history_matched"] is False and payload["history_starts"] == []
    assert payload["history_start"] is None
    assert payload["reference"] == json.loads(out.read_text())["reference"]
    assert payload["current"]["n_rows"] > json.loads(out.read_text())["current"]["n_rows"]
    assert main(["retrain", "--db", str(db), "--if-drift", "--full-history", *NEVER]) == 0
    assert "not retrained" in capsys.readouterr().out


def test_thresholds_come_from_the_environment(db: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RETENTION_MONITOR_FEATURE_PSI", "0")
    assert main(["monitor", "--db", str(db), "--fail-on-drift"]) == 3
    monkeypatch.setenv("RETENTION_MONITOR_FEATURE_PSI", "lots")
    assert main(["monitor", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "RETENTION_MONITOR_FEATURE_PSI must be a number" in err and "Traceback" not in err


def test_retrain_if_drift_and_always(db: Path, tmp_path: Path, capsys) -> None:
    assert main(["retrain", "--db", str(db), "--if-drift", *NEVER]) == 0
    assert "not retrained" in capsys.readouterr().out
    with workflows.Store(db, read_only=True) as store:
        assert store.count_rows("models") == 1
    out = tmp_path / "new.retention"
    args = [
        "retrain",
        "--db",
        str(db),
        *ALWAYS,
        "--out",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert (
        "retrained:" in printed and "features drifted" in printed and "stage candidate" in printed
    )
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["triggered"] and payload["new_model"]["stage"] == "candidate"
    assert out.exists()
    with workflows.Store(db, read_only=True) as store:
        assert store.count_rows("models") == 2
        assert store.model_stage(payload["new_model"]["model_id"]) == "candidate"


def test_one_line_errors(db: Path, tmp_path: Path, capsys) -> None:
    assert main(["retrain", "--db", str(db), "--if-drift", "--always"]) == 2
    err = capsys.readouterr().err
    assert "not both" in err and len(err.strip().splitlines()) == 1
    assert main(["monitor", "--db", str(db), "--model", "nope"]) == 2
    assert "No model 'nope'" in capsys.readouterr().err
    empty = tmp_path / "empty.duckdb"
    with workflows.Store(empty):
        pass
    assert main(["monitor", "--db", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "train one first" in err and "Traceback" not in err
    assert main(["monitor", "--db", str(db), "--window", "0"]) == 2


def test_the_dashboard_serves_the_latest_run(db: Path) -> None:
    from api_helpers import make_client

    assert main(["monitor", "--db", str(db), *ALWAYS]) == 0
    with workflows.Store(db) as store:
        key = workflows.create_api_key(store, workflows.ApiKeyRequest("read", "t")).key
    with make_client(db) as client:
        res = client.get("/stats/monitor", headers={"X-API-Key": key})
        assert res.status_code == 200, res.text
        data = res.json()["data"]
        assert "feature_drift" in data["run"]["flags"] and data["run"]["drift"] is True
        assert data["features"] and data["performance"]
        assert client.get("/stats/monitor").status_code == 401

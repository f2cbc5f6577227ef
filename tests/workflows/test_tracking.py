"""Run tracking with MLflow (issue 16, item 2): what a tracked workflow logs, the data
fingerprint, tracking off, a location that cannot be written, and ``retention runs``.

tests/conftest.py turns tracking off for the suite; the tests here turn it on. Creating a fresh
MLflow SQLite store runs MLflow's migrations (seconds), so one migrated empty store is made per
module and copied where a test's runs go.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import START, synthetic_events

from retention import workflows
from retention.data import Store, ingest_frame
from retention.exceptions import RetentionWarning
from retention.features import MinData
from retention.serving.cli import main
from retention.workflows import _tracking

HORIZON = 45
CUTOFF = (START + pd.Timedelta(days=480)).strftime("%Y-%m-%d")
FAST = {"n_estimators": 40, "learning_rate": 0.1, "early_stopping_rounds": 10}
SMALL = MinData(customers=20, retained=5)


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def _tracking_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_TRACKING", "1")
    monkeypatch.delenv("RETENTION_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _tracking._WARNED.clear()


@pytest.fixture(scope="module")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables made and no retention experiment yet."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "template.mlflow.db"
    with _tracking._quiet():
        MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def _events_db(path: Path, empty_mlflow_db: Path, *, n_users: int = 300, seed: int = 0) -> Path:
    """A store at ``path`` whose events came in through ``ingest_frame`` (an ``ingests`` row),
    with a migrated MLflow store at its default tracking place."""
    with Store(path, create=True) as store:
        ingest_frame(store, synthetic_events(n_users=n_users, seed=seed), source_name="synth")
    shutil.copy(empty_mlflow_db, path.with_name(path.name + ".mlflow.db"))
    return path


@pytest.fixture(scope="module")
def store_db(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> Path:
    return _events_db(tmp_path_factory.mktemp("trk") / "shop.duckdb", empty_mlflow_db)


@pytest.fixture
def units_csv(tmp_path: Path) -> Path:
    """A small randomised test: one row per unit, arm and a 0/1 outcome."""
    rng = np.random.default_rng(3)
    n = 800
    arm = rng.choice(["control", "offer"], n)
    y = (rng.random(n) < np.where(arm == "offer", 0.30, 0.20)).astype(int)
    path = tmp_path / "units.csv"
    pd.DataFrame({"arm": arm, "y": y, "x": rng.normal(size=n)}).to_csv(path, index=False)
    return path


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _run(uri: str, run_id: str) -> Any:
    with _tracking._quiet():
        return _client(uri).get_run(run_id)


def _artifacts(uri: str, run_id: str, folder: str | None = None) -> set[str]:
    with _tracking._quiet():
        return {a.path for a in _client(uri).list_artifacts(run_id, folder)}


# ----------------------------------------------------------------------- backtest and train
@pytest.mark.slow
def test_backtest_and_train_log_runs_with_params_metrics_fingerprint_and_artifacts(
    store_db: Path, tmp_path: Path
) -> None:
    request = workflows.BacktestRequest(
        cutoff=CUTOFF,
        horizon_days=HORIZON,
        models=("bgnbd", "gbdt"),
        model_params={"gbdt": FAST},
        min_data=SMALL,
    )
    with Store(store_db, read_only=True) as store:
        result = workflows.backtest(store, request)
        found = workflows.list_runs(store)
    assert len(found.runs) == 1
    bt = found.runs[0]
    uri = found.tracking_uri
    assert uri == f"sqlite:///{store_db.with_name('shop.duckdb.mlflow.db').resolve()}"
    run = _run(uri, bt.run_id)
    # parameters: the request's fields
    params = run.data.params
    assert params["cutoff"] == CUTOFF and params["horizon_days"] == str(HORIZON)
    assert params["models"] == "bgnbd,gbdt" and params["n_train"] == "3"
    assert json.loads(params["model_params"]) == {"gbdt": FAST}
    assert json.loads(params["min_data"])["customers"] == 20
    # metrics: the result's figures, the main one named in a tag
    payload = result.to_json_dict()
    for name in ("bgnbd", "gbdt"):
        for metric in ("roc_auc", "pr_auc", "brier", "log_loss", "lift_at_10"):
            key = f"models.{name}.{metric}"
            assert run.data.metrics[key] == pytest.approx(payload["models"][name][metric])
    assert run.data.metrics["base_rate"] == pytest.approx(payload["base_rate"])
    tags = run.data.tags
    assert tags["retention.kind"] == "backtest" and tags["retention.cutoff"] == CUTOFF
    assert tags["retention.main_metric"] == "models.gbdt.roc_auc" == bt.main_metric
    assert bt.value == pytest.approx(payload["models"]["gbdt"]["roc_auc"])
    assert tags["retention.store"] == str(store_db.resolve())
    with Store(store_db, read_only=True) as store:
        assert tags["retention.fingerprint"] == workflows.data_fingerprint(store, request.cutoff)
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    # the result as an artifact, equal to the contract JSON
    assert _artifacts(uri, bt.run_id) == {"result.json"}
    local = Path(run.info.artifact_uri.removeprefix("file://")) / "result.json"
    assert json.loads(local.read_text())["models"] == payload["models"]

    out = tmp_path / "m.retention"
    with Store(store_db) as store:  # train registers the model: the store is written
        rep = workflows.train(
            store,
            workflows.TrainRequest(
                out=out, model="gbdt", horizon_days=HORIZON, model_params=FAST, min_data=SMALL
            ),
        )
        found = workflows.list_runs(store)
    assert [r.kind for r in found.runs] == ["train", "backtest"]
    tr = found.runs[0]
    run = _run(uri, tr.run_id)
    assert run.data.params["model"] == "gbdt" and run.data.params["out"] == str(out)
    assert run.data.params["cutoff"] == "None"  # not given: the last purchase's date
    last = pd.Timestamp(rep.metadata["cutoff"]).strftime("%Y-%m-%d")
    assert run.data.tags["retention.cutoff"] == last == tr.cutoff
    valid_auc = rep.metadata["metrics"]["valid"]["roc_auc"]
    assert run.data.metrics["metadata.metrics.valid.roc_auc"] == pytest.approx(valid_auc)
    assert tr.value == pytest.approx(valid_auc)
    # another cutoff, the same data: another fingerprint
    assert run.data.tags["retention.fingerprint"] != bt.fingerprint
    # the model file itself, byte for byte
    assert _artifacts(uri, tr.run_id) == {"result.json", "model"}
    assert _artifacts(uri, tr.run_id, "model") == {"model/m.retention"}
    logged = Path(run.info.artifact_uri.removeprefix("file://")) / "model" / "m.retention"
    assert logged.read_bytes() == out.read_bytes()


@pytest.mark.slow
def test_a_retrain_to_the_same_out_leaves_the_earlier_model_in_its_run_only(
    tmp_path: Path, empty_mlflow_db: Path
) -> None:
    """Why train copies the artifact into its run rather than tagging its path: ``--out``
    (default ``model.retention``) is overwritten by the next train, and the registry keeps only
    the path and SHA-256, so the run's copy is then the one left of the earlier model."""
    from retention.workflows._common import file_sha256

    db = _events_db(tmp_path / "r.duckdb", empty_mlflow_db, n_users=200, seed=4)
    out = tmp_path / "model.retention"
    reports = []
    with Store(db) as store:
        for n in (20, 40):
            params = {**FAST, "n_estimators": n}
            request = workflows.TrainRequest(
                out=out, model="gbdt", horizon_days=HORIZON, model_params=params, min_data=SMALL
            )
            reports.append(workflows.train(store, request))
        trains = [r for r in workflows.list_runs(store).runs if r.kind == "train"]  # newest first
        first = store.model_record(reports[0].model_id)
    assert reports[0].sha256 != reports[1].sha256 == file_sha256(out)
    assert first.sha256 == reports[0].sha256  # the registry still names the earlier bytes
    copies = [Path(r.artifact_uri.removeprefix("file://")) / "model" / out.name for r in trains]
    assert [file_sha256(c) for c in copies] == [reports[1].sha256, reports[0].sha256]


@pytest.mark.slow
def test_tune_logs_its_best_value_as_the_main_metric(tmp_path: Path, empty_mlflow_db: Path) -> None:
    db = _events_db(tmp_path / "t.duckdb", empty_mlflow_db, n_users=200, seed=2)
    request = workflows.TuneRequest(
        n_trials=2,
        model="gbdt",
        sampler="random",
        cutoff=CUTOFF,
        horizon_days=HORIZON,
        fixed_params={"n_estimators": 30},
        min_data=SMALL,
    )
    with Store(db, read_only=True) as store:
        report = workflows.tune(store, request)
        (run,) = workflows.list_runs(store).runs
    payload = report.to_dict()
    assert run.kind == "tune" and run.main_metric == "best_value"
    assert run.value == pytest.approx(payload["best_value"])
    logged = _run(workflows.tracking_location(db)[0], run.run_id)
    assert logged.data.params["n_trials"] == "2" and logged.data.params["sampler"] == "random"
    assert logged.data.metrics["n_trials_run"] == payload["n_trials_run"] == 2


# --------------------------------------------------------------------------------- fingerprint
def test_fingerprint_changes_with_a_new_ingest_and_the_cutoff_only(tmp_path: Path) -> None:
    ev = synthetic_events(n_users=40, seed=1)
    first, second = ev.iloc[: len(ev) // 2], ev.iloc[len(ev) // 2 :]
    a = tmp_path / "a.csv"
    first.to_csv(a, index=False)
    with Store(tmp_path / "s.duckdb", create=True) as store:
        empty = workflows.data_fingerprint(store, "2021-01-01")
        workflows.ingest_file(store, workflows.IngestRequest(path=a))
        fp = workflows.data_fingerprint(store, pd.Timestamp("2021-01-01"))
        assert fp != empty and len(fp) == 64
        assert workflows.data_fingerprint(store, "2021-01-01") == fp  # the same cutoff, as text
        # the same file again loads nothing: the same data, the same fingerprint
        again = workflows.ingest_file(store, workflows.IngestRequest(path=a))
        assert again.loaded == 0
        assert workflows.data_fingerprint(store, "2021-01-01") == fp
        assert workflows.data_fingerprint(store, "2021-02-01") != fp  # another cutoff
        # a new ingest lands: the fingerprint changes
        b = tmp_path / "b.csv"
        second.to_csv(b, index=False)
        assert workflows.ingest_file(store, workflows.IngestRequest(path=b)).loaded > 0
        assert workflows.data_fingerprint(store, "2021-01-01") not in {fp, empty}


def test_fingerprint_of_a_run_on_a_file_follows_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("arm,y\nc,0\nt,1\n")
    fp = workflows.data_fingerprint(None, None, (path,))
    assert workflows.data_fingerprint(None, None, (path,)) == fp
    path.write_text("arm,y\nc,1\nt,1\n")
    assert workflows.data_fingerprint(None, None, (path,)) != fp


# -------------------------------------------------------------------------- where, on and off
def test_location_is_beside_the_store_unless_a_uri_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "shop.duckdb"
    uri, art = workflows.tracking_location(db)
    assert uri == f"sqlite:///{(tmp_path / 'shop.duckdb.mlflow.db').resolve()}"
    assert art == (tmp_path / "shop.duckdb.mlflow-artifacts").resolve()
    monkeypatch.setenv("RETENTION_DB", str(tmp_path / "default.duckdb"))
    assert workflows.tracking_location()[0].endswith("/default.duckdb.mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert workflows.tracking_location(db) == ("http://mlflow.example:5000", None)
    monkeypatch.setenv("RETENTION_TRACKING_URI", str(tmp_path / "runs.db"))  # wins; a path
    uri, art = workflows.tracking_location(db)
    assert uri == f"sqlite:///{(tmp_path / 'runs.db').resolve()}"
    assert art == (tmp_path / "runs-artifacts").resolve()


def test_tracking_off_writes_nothing(
    tmp_path: Path, units_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_TRACKING", "0")
    monkeypatch.setenv("RETENTION_DB", str(tmp_path / "default.duckdb"))
    before = set(tmp_path.iterdir())
    request = workflows.AnalyzeCsvRequest(
        path=units_csv, variant="arm", control="control", metrics=("y",)
    )
    report = workflows.analyze_csv(request)
    assert report.analysis.to_dict()["variants"]["offer"]["difference"] > 0
    assert _tracking.track("experiment", request, report) is None
    assert not workflows.track_artifact(units_csv)
    assert set(tmp_path.iterdir()) == before  # no mlflow.db, no artifacts folder
    assert "mlflow" not in " ".join(p.name for p in tmp_path.iterdir())


def test_an_unwritable_location_warns_once_and_the_command_succeeds(
    tmp_path: Path, units_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RETENTION_TRACKING_URI", f"sqlite:///{blocker}/runs/mlflow.db")
    request = workflows.AnalyzeCsvRequest(
        path=units_csv, variant="arm", control="control", metrics=("y",)
    )
    with pytest.warns(RetentionWarning, match=r"Run tracking failed at sqlite.*RETENTION_TRACKING"):
        report = workflows.analyze_csv(request)
    assert report.analysis.to_dict()["variants"]["offer"]["n"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per place: the second run is silent
        workflows.analyze_csv(request)


def test_the_cli_command_succeeds_with_one_warning_line(
    tmp_path: Path, units_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RETENTION_TRACKING_URI", f"sqlite:///{blocker}/mlflow.db")
    out = tmp_path / "e.json"
    argv = ["experiment", "analyze", "--csv", str(units_csv), "--variant", "arm"]
    assert main([*argv, "--control", "control", "--metric", "y", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["variants"]["offer"]["difference"] > 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: Run tracking failed at sqlite")


# ------------------------------------------------------------- files, reports, nesting, listing
@pytest.mark.slow  # MLflow's tables are made once per module (seconds)
def test_a_csv_analysis_and_its_report_go_to_the_default_place(
    tmp_path: Path,
    units_csv: Path,
    empty_mlflow_db: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    db = tmp_path / "default.duckdb"
    Store(db, create=True).close()
    shutil.copy(empty_mlflow_db, tmp_path / "default.duckdb.mlflow.db")
    monkeypatch.setenv("RETENTION_DB", str(db))
    page = tmp_path / "e.html"
    argv = ["experiment", "analyze", "--csv", str(units_csv), "--variant", "arm"]
    assert main([*argv, "--control", "control", "--metric", "y", "--report", str(page)]) == 0
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    (run,) = listed["runs"]
    assert run["kind"] == "experiment" and run["main_metric"] == "variants.offer.difference"
    assert run["store"] == "" and 0 < run["value"] < 0.2
    assert run["fingerprint"] == workflows.data_fingerprint(None, None, (units_csv,))
    uri = listed["tracking_uri"]
    assert _artifacts(uri, run["run_id"]) == {"result.json", "report"}
    assert _artifacts(uri, run["run_id"], "report") == {"report/e.html"}
    tags = _run(uri, run["run_id"]).data.tags
    assert tags["retention.files"] == str(units_csv)
    # the table: the run's id (cut), its kind and its main figure
    assert main(["runs", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert run["run_id"][:12] in text and "experiment" in text and "difference" in text
    assert "mlflow ui --backend-store-uri" in text


@pytest.mark.slow  # MLflow's tables are made once per module (seconds)
def test_a_nested_tracked_call_is_logged_as_the_outer_run_only(
    tmp_path: Path, units_csv: Path, empty_mlflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "x.duckdb"
    Store(db, create=True).close()
    shutil.copy(empty_mlflow_db, tmp_path / "x.duckdb.mlflow.db")
    monkeypatch.setenv("RETENTION_DB", str(db))
    request = workflows.AnalyzeCsvRequest(
        path=units_csv, variant="arm", control="control", metrics=("y",)
    )

    @_tracking.tracked("tune")
    def outer(req: workflows.AnalyzeCsvRequest) -> Any:
        workflows.analyze_csv(req)
        return workflows.analyze_csv(req)

    outer(request)
    with Store(db, read_only=True) as store:
        runs = workflows.list_runs(store).runs
        assert [r.kind for r in runs] == ["tune"]
        assert workflows.list_runs(store, kind="experiment").runs == []


def test_runs_lists_nothing_where_nothing_was_logged_and_refuses_bad_options(
    tmp_path: Path, capsys: Any
) -> None:
    db = tmp_path / "new.duckdb"
    Store(db, create=True).close()
    assert main(["runs", "--db", str(db)]) == 0
    assert "No tracked runs at sqlite:///" in capsys.readouterr().out
    assert not (tmp_path / "new.duckdb.mlflow.db").exists()  # listing creates nothing
    assert main(["runs", "--db", str(db), "--kind", "drop table"]) == 2
    assert capsys.readouterr().err.startswith("error: kind must be a run kind")
    assert main(["runs", "--db", str(tmp_path / "missing.duckdb")]) == 2


@pytest.mark.slow
def test_a_fresh_location_prints_nothing_but_the_command_output(
    tmp_path: Path, units_csv: Path
) -> None:
    """The first run at a place creates MLflow's tables: none of MLflow's or Alembic's log
    lines or warnings reach the terminal (a real process, so that MLflow configures logging)."""
    env = {**os.environ, "RETENTION_TRACKING": "1", "RETENTION_DB": str(tmp_path / "d.duckdb")}
    env.pop("RETENTION_TRACKING_URI", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    argv = [sys.executable, "-W", "default", "-c", "from retention.serving.cli import main; "]
    argv[-1] += "import sys; sys.exit(main(sys.argv[1:]))"
    argv += ["experiment", "analyze", "--csv", str(units_csv), "--variant", "arm"]
    argv += ["--control", "control", "--metric", "y"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (tmp_path / "d.duckdb.mlflow.db").is_file()
    assert list((tmp_path / "d.duckdb.mlflow-artifacts").glob("*/artifacts/result.json"))


def test_the_cli_and_the_workflows_start_without_importing_mlflow() -> None:
    code = (
        "import sys, retention.serving.cli, retention.workflows._tracking; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'sqlalchemy')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

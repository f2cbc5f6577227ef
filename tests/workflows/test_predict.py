from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import START, synthetic_store

from retention import workflows
from retention.exceptions import ConfigError, DataError, StoreError
from retention.models import read_metadata

HORIZON = 45
CUTOFF = (START + pd.Timedelta(days=480)).strftime("%Y-%m-%d")
FAST = {"n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 20}
CONTRACT = {"roc_auc", "pr_auc", "brier", "log_loss", "lift_at_10"}


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("wf") / "synth.duckdb", n_users=300)


def test_backtest_writes_the_json_contract_without_leakage(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "bt" / "backtest.json"
    result = workflows.backtest(
        db,
        CUTOFF,
        HORIZON,
        "bgnbd,gbdt_rfm,gbdt,ensemble",
        json_path=out,
        model_params={"gbdt": FAST, "gbdt_rfm": FAST},
    )
    payload = json.loads(out.read_text())
    assert payload["cutoff"] == CUTOFF and payload["horizon_days"] == HORIZON
    assert payload["n_users"] == len(result.y_true) > 0
    assert payload["base_rate"] == pytest.approx(result.y_true.mean())
    assert set(payload["models"]) == {"bgnbd", "gbdt_rfm", "gbdt", "ensemble"}
    for metrics in payload["models"].values():
        assert set(metrics) >= CONTRACT
        assert 0.5 < metrics["roc_auc"] <= 1
    # every label window used for learning ends by the test cutoff
    test_cutoff = pd.Timestamp(CUTOFF)
    for c in [*result.train_cutoffs, result.valid_cutoff]:
        assert c + pd.Timedelta(days=HORIZON) <= test_cutoff
    # the ensemble stacked the other listed models
    assert set(result.extra["ensemble_weights"]) == {"bgnbd", "gbdt_rfm", "gbdt"}
    assert "cohort_retention" in result.extra
    for s in result.scores.values():
        assert s.index.equals(result.y_true.index)


def test_backtest_user_errors(db: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="incomplete"):
        workflows.backtest(db, "2021-06-20", HORIZON, "bgnbd")
    with pytest.raises(DataError, match="no purchase before"):
        workflows.backtest(db, "2020-02-15", HORIZON, "bgnbd")
    with pytest.raises(ConfigError, match="Unknown model"):
        workflows.backtest(db, CUTOFF, HORIZON, "bgnbd,xgboost")
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        workflows.backtest(db, "10/09/2011", HORIZON, "bgnbd")
    with pytest.raises(ConfigError, match="horizon"):
        workflows.backtest(db, CUTOFF, 0, "bgnbd")
    with pytest.raises(StoreError, match="No store"):
        workflows.backtest(tmp_path / "missing.duckdb", CUTOFF, HORIZON, "bgnbd")


def test_train_then_score_writes_table_and_files(db: Path, tmp_path: Path) -> None:
    rep = workflows.train(
        db, tmp_path / "m.retention", model="gbdt", horizon_days=HORIZON, model_params=FAST
    )
    meta = read_metadata(rep.path)
    last = workflows.last_event_date(db)
    assert meta["cutoff"].startswith(f"{last:%Y-%m-%d}")
    assert meta["horizon_days"] == HORIZON
    assert meta["features"] and all(isinstance(f, str) for f in meta["features"])
    assert any(f.startswith("btyd_") for f in meta["features"])
    assert 0.5 < meta["metrics"]["valid"]["roc_auc"] <= 1
    for c in meta["train_cutoffs"]:
        assert pd.Timestamp(c) + pd.Timedelta(days=HORIZON) <= last

    csv = tmp_path / "scores.csv"
    sc = workflows.score(db, rep.path, out=csv)
    df = pd.read_csv(csv)
    cols = ["user_id", "p_retained", "p_alive", "expected_purchases", "clv", "risk_band"]
    assert set(cols) <= set(df.columns)
    assert len(df) == len(sc.scores) > 0 and df["user_id"].is_unique
    assert df["p_retained"].between(0, 1).all() and df["p_alive"].between(0, 1).all()
    assert (df["expected_purchases"] >= 0).all() and (df["clv"] >= 0).all()
    expected_band = np.where(
        df["p_retained"] < 0.3, "high", np.where(df["p_retained"] < 0.6, "medium", "low")
    )
    assert (df["risk_band"] == expected_band).all()
    assert sum(sc.bands.values()) == len(df)

    # the store's scores table, replaced (not duplicated) when scoring again
    parquet = tmp_path / "scores.parquet"
    workflows.score(db, rep.path, out=parquet)
    assert len(pd.read_parquet(parquet)) == len(df)
    con = duckdb.connect(str(db), read_only=True)
    try:
        n, versions, cutoffs = con.execute(
            "SELECT count(*), count(DISTINCT model_version), count(DISTINCT cutoff) FROM scores"
        ).fetchone()
    finally:
        con.close()
    assert (n, versions, cutoffs) == (len(df), 1, 1)

    # every scored customer's reasons stored beside the scores (three each way at most)
    con = duckdb.connect(str(db), read_only=True)
    try:
        reason_users = con.execute("SELECT count(DISTINCT user_id) FROM score_reasons").fetchone()
    finally:
        con.close()
    assert reason_users == (len(df),)


def test_score_user_errors(db: Path, tmp_path: Path) -> None:
    rep = workflows.train(
        db, tmp_path / "m.retention", model="gbdt_rfm", horizon_days=HORIZON, model_params=FAST
    )
    with pytest.raises(ConfigError, match="45-day horizon"):
        workflows.score(db, rep.path, horizon_days=90)
    with pytest.raises(ConfigError, match=r"\.csv or \.parquet"):
        workflows.score(db, rep.path, out=tmp_path / "scores.xlsx")
    with pytest.raises(ConfigError, match="identifier"):
        workflows.score(db, rep.path, table="scores; drop table events")


def test_risk_band_thresholds() -> None:
    bands = workflows.risk_band(np.array([0.0, 0.29, 0.3, 0.59, 0.6, 1.0]))
    assert bands.tolist() == ["high", "high", "medium", "medium", "low", "low"]

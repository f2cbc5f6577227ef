from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import START, synthetic_events, synthetic_store

from retention import workflows
from retention.data import Store
from retention.exceptions import ConfigError, DataError, StoreError
from retention.features import MinData
from retention.models import read_metadata

HORIZON = 45
CUTOFF = (START + pd.Timedelta(days=480)).strftime("%Y-%m-%d")
FAST = {"n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 20}
CONTRACT = {"roc_auc", "pr_auc", "brier", "log_loss", "lift_at_10"}
#: 300 synthetic customers (fast): inside the thin-data rule's warning zone (issue 11), lowered
SMALL = MinData(customers=20, retained=5)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("wf") / "synth.duckdb", n_users=300)


@pytest.fixture(scope="module")
def model(db: Path, tmp_path_factory) -> workflows.TrainReport:
    """A gbdt trained on (and registered in) the module store."""
    out = tmp_path_factory.mktemp("wf_model") / "m.retention"
    with Store(db) as store:
        return workflows.train(
            store,
            workflows.TrainRequest(
                out=out, model="gbdt", horizon_days=HORIZON, model_params=FAST, min_data=SMALL
            ),
        )


def _copy(db: Path, tmp_path: Path) -> Path:
    path = tmp_path / "copy.duckdb"
    shutil.copy(db, path)
    return path


def test_backtest_writes_the_json_contract_without_leakage(db: Path, tmp_path: Path) -> None:
    request = workflows.BacktestRequest(
        cutoff=CUTOFF,
        horizon_days=HORIZON,
        models=("bgnbd", "gbdt_rfm", "gbdt", "ensemble"),
        model_params={"gbdt": FAST, "gbdt_rfm": FAST},
        min_data=SMALL,
    )
    with Store(db, read_only=True) as store:
        result = workflows.backtest(store, request)
    out = workflows.write_backtest_json(result, tmp_path / "bt" / "backtest.json")
    payload = json.loads(out.read_text())
    assert payload == json.loads(json.dumps(result.to_dict(), allow_nan=False))
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
    with Store(db, read_only=True) as store:
        with pytest.raises(DataError, match="incomplete"):
            workflows.backtest(store, workflows.BacktestRequest("2021-06-20", HORIZON, ("bgnbd",)))
        with pytest.raises(DataError, match="no purchase before"):
            workflows.backtest(store, workflows.BacktestRequest("2020-02-15", HORIZON, ("bgnbd",)))
    with pytest.raises(ConfigError, match="Unknown model"):
        workflows.BacktestRequest(CUTOFF, HORIZON, ("bgnbd", "xgboost"))
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        workflows.BacktestRequest("10/09/2011", HORIZON)
    with pytest.raises(ConfigError, match="horizon"):
        workflows.BacktestRequest(CUTOFF, 0)


def test_train_registers_the_artifact_then_score_writes_table_and_files(
    db: Path, model: workflows.TrainReport, tmp_path: Path
) -> None:
    meta = read_metadata(model.path)
    with Store(db, read_only=True) as store:
        last = workflows.last_event_date(store)
        record = store.model_record(model.model_id)
    assert meta["cutoff"].startswith(f"{last:%Y-%m-%d}")
    assert meta["horizon_days"] == HORIZON
    assert meta["features"] and all(isinstance(f, str) for f in meta["features"])
    assert any(f.startswith("btyd_") for f in meta["features"])
    assert 0.5 < meta["metrics"]["valid"]["roc_auc"] <= 1
    for c in meta["train_cutoffs"]:
        assert pd.Timestamp(c) + pd.Timedelta(days=HORIZON) <= last
    json.dumps(model.to_dict(), allow_nan=False)
    # the registry row names the artifact, its hash, model, cutoff and horizon
    assert record is not None and record.path == model.path.resolve()
    assert record.sha256 == model.sha256 == workflows._common.file_sha256(model.path)
    assert (record.registry_name, record.horizon_days, record.cutoff) == ("gbdt", HORIZON, last)

    path = _copy(db, tmp_path)
    csv = tmp_path / "scores.csv"
    with Store(path) as store:
        sc = workflows.score(store, workflows.ScoreRequest(model_path=model.path, out=csv))
    assert json.loads(json.dumps(sc.to_dict(), allow_nan=False))["n_users"] == len(sc.scores)
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

    # the store's scores table, replaced (not duplicated) when scoring again, here by model id
    parquet = tmp_path / "scores.parquet"
    with Store(path) as store:
        workflows.score(store, workflows.ScoreRequest(model_id=model.model_id, out=parquet))
    assert len(pd.read_parquet(parquet)) == len(df)
    with duckdb.connect(str(path), read_only=True) as con:
        n, versions, cutoffs = con.execute(
            "SELECT count(*), count(DISTINCT model_version), count(DISTINCT cutoff) FROM scores"
        ).fetchone()
        # every scored customer's reasons stored beside the scores (three each way at most)
        reason_users = con.execute("SELECT count(DISTINCT user_id) FROM score_reasons").fetchone()
    assert (n, versions, cutoffs) == (len(df), 1, 1)
    assert reason_users == (len(df),)


def test_score_uses_the_one_store_handle_it_is_given(
    db: Path, model: workflows.TrainReport, tmp_path: Path, monkeypatch
) -> None:
    path = _copy(db, tmp_path)
    with Store(path) as store:

        def no_second_connection(*args, **kwargs):
            raise AssertionError("a workflow opened the DuckDB file itself")

        monkeypatch.setattr(duckdb, "connect", no_second_connection)
        rep = workflows.score(store, workflows.ScoreRequest(model_path=model.path))
        monkeypatch.undo()
        assert len(store.read_scores()) == len(rep.scores) > 0
    with Store(path, read_only=True) as store, pytest.raises(StoreError, match="read-only"):
        workflows.score(store, workflows.ScoreRequest(model_path=model.path))


def test_score_into_another_table_gets_the_typed_columns(
    db: Path, model: workflows.TrainReport, tmp_path: Path
) -> None:
    with Store(_copy(db, tmp_path)) as store:
        rep = workflows.score(store, workflows.ScoreRequest(model_path=model.path, table="s2"))
        assert store.columns("s2") == store.columns("scores")
        assert len(store.read_scores(table="s2")) == len(rep.scores)
        assert store.read_scores().empty  # the default table was not written


# five customers: every BTYD fit is degenerate, so P(alive) is left NULL with a warning (by design)
@pytest.mark.filterwarnings(
    "ignore:P\\(alive\\) is unavailable:retention.exceptions.RetentionWarning"
)
def test_score_of_five_customers_without_reasons_then_a_second_score(
    db: Path, model: workflows.TrainReport, tmp_path: Path, monkeypatch
) -> None:
    """Issue 9: a score that produced no reasons left NULL-typed score_reasons columns, and
    every later score failed after replacing the scores."""
    small = tmp_path / "five.duckdb"
    events = synthetic_events(n_users=300, seed=0)
    events = events[events["user_id"].isin(sorted(events["user_id"].unique())[:5])]
    with Store(small) as store:
        store.con.register("_five", events)
        store.con.execute(
            "INSERT INTO events (event_id, user_id, ts, event_type, item_id, order_id, quantity, "
            "amount, rating, text) SELECT event_id, user_id, ts, event_type, item_id, order_id, "
            "quantity, CAST(amount AS DECIMAL(18,2)), rating, text FROM _five"
        )
        store.con.unregister("_five")
    real = workflows._predict.reasons_table
    monkeypatch.setattr(
        workflows._predict, "reasons_table", lambda m, f: real(m, f).iloc[0:0].astype(object)
    )
    with Store(small) as store:
        first = workflows.score(store, workflows.ScoreRequest(model_path=model.path))
        assert first.n_reasons == 0 and len(first.scores) == 5
    monkeypatch.undo()
    with Store(small) as store:
        second = workflows.score(store, workflows.ScoreRequest(model_path=model.path))
        assert second.n_reasons > 0
        assert len(store.read_scores()) == 5
        assert set(store.read_reasons()["user_id"]) <= set(second.scores["user_id"])


def test_a_failed_reasons_write_leaves_the_scores_table_unchanged(
    db: Path, model: workflows.TrainReport, tmp_path: Path, monkeypatch
) -> None:
    with Store(_copy(db, tmp_path)) as store:
        first = workflows.score(store, workflows.ScoreRequest(model_path=model.path))
        before = store.read_scores()
        real = workflows._predict.reasons_table
        monkeypatch.setattr(
            workflows._predict,
            "reasons_table",
            lambda m, f: real(m, f).assign(rank="not a number"),
        )
        with pytest.raises(StoreError, match="rolled back"):
            workflows.score(store, workflows.ScoreRequest(model_path=model.path))
        after = store.read_scores()
        pd.testing.assert_frame_equal(before, after)
        assert len(store.read_reasons()) == first.n_reasons


def test_score_user_errors(db: Path, model: workflows.TrainReport, tmp_path: Path) -> None:
    with Store(_copy(db, tmp_path)) as store:
        with pytest.raises(ConfigError, match="45-day horizon"):
            workflows.score(store, workflows.ScoreRequest(model_path=model.path, horizon_days=90))
        with pytest.raises(ConfigError, match="registry"):
            workflows.score(store, workflows.ScoreRequest(model_id="nope"))
    with pytest.raises(ConfigError, match=r"\.csv or \.parquet"):
        workflows.ScoreRequest(model_path=model.path, out=tmp_path / "scores.xlsx")
    with pytest.raises(ConfigError, match="identifier"):
        workflows.ScoreRequest(model_path=model.path, table="scores; drop table events")
    with pytest.raises(ConfigError, match="not both or neither"):
        workflows.ScoreRequest(model_path=model.path, model_id=model.model_id)
    with pytest.raises(ConfigError, match="not both or neither"):
        workflows.ScoreRequest()


def test_risk_band_thresholds() -> None:
    bands = workflows.risk_band(np.array([0.0, 0.29, 0.3, 0.59, 0.6, 1.0]))
    assert bands.tolist() == ["high", "high", "medium", "medium", "low", "low"]
    assert [b for _, b in workflows.RISK_BANDS] == ["high", "medium", "low"]

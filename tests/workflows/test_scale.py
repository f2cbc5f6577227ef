"""Batch scoring on Spark equals local scoring, on a real slice of Online Retail.

A model is trained on a store holding 300 customers of the bundled Online Retail log; the same
events, exported as Parquet, are scored by ``retention score`` (DuckDB, the store) and by
``spark_score`` (Spark, ``mapInPandas``, the artifact broadcast): every score agrees to 1e-12.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from spark_marks import spark_test

from retention import workflows
from retention.data import Store, ingest
from retention.exceptions import ConfigError, RetentionWarning
from retention.features import MinData
from retention.serving.cli import main
from retention.workflows._scale import SCORE_COLUMNS, check_spark_model


@pytest.fixture(scope="module")
def retail_slice(retail_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store and a Parquet log of the first 300 customers of Online Retail, and two models
    trained on it (gradient boosting with BG/NBD features, and BG/NBD)."""
    root = tmp_path_factory.mktemp("scale")
    parquet = root / "events.parquet"
    with Store(retail_db, read_only=True) as full:
        full.con.execute(
            "COPY (SELECT * EXCLUDE (ingest_id) FROM events WHERE user_id IN (SELECT user_id "
            "FROM (SELECT DISTINCT user_id FROM events) ORDER BY user_id LIMIT 300)) "
            f"TO '{parquet}' (FORMAT parquet)"
        )
    db = root / "slice.duckdb"
    paths = {"db": db, "events": parquet}
    with Store(db) as store:
        ingest(store, parquet)
        with warnings.catch_warnings():
            # 300 customers: thin data and degenerate BTYD fits are expected, not tested here
            warnings.simplefilter("ignore", RetentionWarning)
            for name, params in (("gbdt", {"n_estimators": 30}), ("bgnbd", {})):
                out = root / f"{name}.retention"
                workflows.train(
                    store,
                    workflows.TrainRequest(
                        out=out,
                        model=name,
                        horizon_days=60,
                        model_params=params,
                        min_data=MinData(customers=50, retained=10),
                    ),
                )
                paths[name] = out
    return paths


def _local_scores(paths: dict[str, Path], name: str, tmp_path: Path) -> pd.DataFrame:
    db = tmp_path / "local.duckdb"
    db.write_bytes(paths["db"].read_bytes())
    with Store(db) as store, warnings.catch_warnings():
        warnings.simplefilter("ignore", RetentionWarning)  # degenerate fits on a small slice
        rep = workflows.score(store, workflows.ScoreRequest(model_path=paths[name], reasons=False))
    return rep.scores.sort_values("user_id").reset_index(drop=True)


@spark_test
@pytest.mark.parametrize("name", ["gbdt", "bgnbd"])
def test_spark_scores_equal_local_scores(
    spark, retail_slice: dict[str, Path], tmp_path: Path, name: str
) -> None:
    local = _local_scores(retail_slice, name, tmp_path)
    out = tmp_path / "scores.parquet"
    request = workflows.SparkScoreRequest(
        events=str(retail_slice["events"]), out=str(out), model_path=retail_slice[name]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RetentionWarning)
        rep = workflows.spark_score(None, request, session=spark)
    got = pd.read_parquet(out)
    assert list(got.columns) == list(SCORE_COLUMNS)
    assert list(got["user_id"]) == list(local["user_id"]) and len(got) > 200
    for column in ("p_retained", "p_alive", "expected_purchases", "clv"):
        a, b = got[column].to_numpy(float), local[column].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-12, atol=1e-12)
    assert (got["risk_band"] == local["risk_band"]).all()
    assert (got["cutoff"] == local["cutoff"]).all() and (got["horizon_days"] == 60).all()
    assert (got["model_version"] == local["model_version"]).all()
    assert rep.partitions == 2 and rep.n_users == len(local)
    assert sum(rep.bands.values()) == len(local)
    assert got["p_retained"].std() > 0  # a real ranking, not a constant
    json.dumps(rep.to_dict(), allow_nan=False)


@spark_test
def test_cli_scores_on_spark_by_registry_id(
    spark, retail_slice: dict[str, Path], tmp_path: Path, capsys
) -> None:
    with Store(retail_slice["db"], read_only=True) as store:
        ids = store.con.execute("SELECT model_id FROM models ORDER BY model_id").fetchall()
    model_id = next(
        i for (i,) in ids if workflows.ModelCache().from_path(retail_slice["bgnbd"]).model_id == i
    )
    out = tmp_path / "cli.parquet"
    args = ["score", "--engine", "spark", "--events", str(retail_slice["events"])]
    args += ["--db", str(retail_slice["db"]), "--model", model_id, "--out", str(out)]
    args += ["--cutoff", "2011-09-01", "--spark-master", "local[2]"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "on Spark" in printed and model_id in printed
    got = pd.read_parquet(out)
    assert (got["cutoff"] == pd.Timestamp("2011-09-01")).all()
    assert (got["model_version"] == model_id).all()


def test_requests_and_cli_errors_are_one_line(
    retail_slice: dict[str, Path], tmp_path: Path, capsys
) -> None:
    events = str(retail_slice["events"])
    with pytest.raises(ConfigError, match="not both or neither"):
        workflows.SparkScoreRequest(events=events, out=str(tmp_path / "s.parquet"))
    with pytest.raises(ConfigError, match=r"name it \*\.parquet"):
        workflows.SparkScoreRequest(events=events, out="s.csv", model_path=Path("m"))
    with pytest.raises(ConfigError, match="partitions must be"):
        workflows.SparkScoreRequest(
            events=events, out=str(tmp_path / "s.parquet"), model_path=Path("m"), partitions=0
        )
    req = workflows.SparkScoreRequest(
        events=events, out=str(tmp_path / "s.parquet"), model_id="abc"
    )
    with pytest.raises(ConfigError, match="pass --db DB"):
        workflows.spark_score(None, req)
    req = workflows.SparkScoreRequest(
        events=events,
        out=str(tmp_path / "s.parquet"),
        model_path=retail_slice["bgnbd"],
        horizon_days=30,
    )
    with pytest.raises(ConfigError, match="60-day horizon; got --horizon 30"):
        workflows.spark_score(None, req)
    base = ["score", "--events", events, "--model", str(retail_slice["bgnbd"])]
    cases = [
        ([*base, "--engine", "spark"], "pass --out scores.parquet"),
        ([*base, "--out", str(tmp_path / "x.parquet")], "add --engine spark"),
        ([*base, "--engine", "flink", "--out", "x.parquet"], "--engine must be duckdb or spark"),
    ]
    for args, message in cases:
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err


def test_models_that_read_texts_are_refused() -> None:
    from retention.models import EnsembleModel, GBDTModel

    check_spark_model(GBDTModel())
    with pytest.raises(ConfigError, match="texts or event sequences"):
        check_spark_model(EnsembleModel(members=[("gbdt", GBDTModel(text_features=True))]))


def test_feature_request_checks() -> None:
    with pytest.raises(ConfigError, match="--labels needs"):
        workflows.FeaturesRequest(cutoff="2024-01-01", out="f.parquet", labels=True)
    with pytest.raises(ConfigError, match="not both"):
        workflows.FeaturesRequest(
            cutoff="2024-01-01",
            out="f.parquet",
            engine="spark",
            events="e.parquet",
            spark_master="local[1]",
            spark_remote="sc://h:15002",
        )
    req = workflows.FeaturesRequest(
        cutoff="2024-01-01", out="hdfs://nn/f", engine="spark", events="e"
    )
    assert req.out == "hdfs://nn/f" and req.engine == "spark"

"""The feature engines: DuckDB and Spark read the same Parquet log and give the same table.

Spark tests share one local session (``spark_local`` in tests/conftest.py); the checks of the
one-line errors need no Spark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pit_synth import CUTOFF, EVENT_COLUMNS, _complete, hand_events, random_events
from spark_marks import spark_test

from retention.exceptions import ConfigError, ReadError
from retention.features import events_backend, feature_table, spark_session, to_engine
from retention.serving.cli import main

HORIZON = 30
END = CUTOFF + pd.Timedelta(days=HORIZON)


def _ev(user, ts, kind, order=None, amount=None, item="i1"):
    return {
        "user_id": user,
        "ts": pd.Timestamp(ts),
        "event_type": kind,
        "item_id": item,
        "order_id": order,
        "quantity": 1.0,
        "amount": amount,
    }


def edge_events() -> pd.DataFrame:
    """Hand-made cutoff edge cases around CUTOFF (2024-07-01) and END (+30 days)."""
    rows = [
        # a purchase exactly at the cutoff: not a feature, but the label
        _ev("x_at_cutoff", "2024-05-01 10:00", "purchase", "o1", 10.10),
        _ev("x_at_cutoff", CUTOFF, "purchase", "o2", 20.20),
        # a purchase exactly at the end of the label window: outside it
        _ev("x_at_end", "2024-06-01 12:00", "purchase", "o3", 0.10),
        _ev("x_at_end", END, "purchase", "o4", 0.20),
        # one microsecond before the end: inside it
        _ev("x_before_end", "2024-06-01 12:00", "purchase", "o5", 0.70),
        _ev("x_before_end", END - pd.Timedelta(microseconds=1), "purchase", "o6", 1.00),
        # one microsecond before the cutoff: a feature, recency of a microsecond
        _ev("x_before_cutoff", CUTOFF - pd.Timedelta(microseconds=1), "purchase", "o7", 3.33),
        # same-day purchases: two orders (one of two lines) on one day, float-unfriendly cents
        _ev("x_same_day", "2024-06-10 09:00", "purchase", "o8", 0.10),
        _ev("x_same_day", "2024-06-10 18:00", "purchase", "o9", 0.20),
        _ev("x_same_day", "2024-06-10 18:00", "purchase", "o9", 0.30, item="i2"),
        _ev("x_same_day", "2024-06-10 18:00", "return", "o9", 0.30, item="i2"),
        # only returns: outside the purchase population, inside "any"
        _ev("x_returns_only", "2024-06-01 08:00", "return", "o10", 5.55),
        _ev("x_returns_only", "2024-06-05 08:00", "return", "o11", 4.45),
        _ev("x_returns_only", "2024-07-02 08:00", "return", "o12", 1.00),
    ]
    df = pd.DataFrame(rows)
    df.insert(0, "event_id", [f"x{i:03d}" for i in range(len(df))])
    return df


def write_events(events: pd.DataFrame, path: Path) -> Path:
    """The log as Parquet with the contract's types: money DECIMAL(18,2), microsecond times."""
    df = _complete(events)
    money = [None if pd.isna(v) else Decimal(f"{v:.2f}") for v in df["amount"]]
    table = pa.Table.from_pandas(df.drop(columns="amount"), preserve_index=False)
    table = table.append_column("amount", pa.array(money, type=pa.decimal128(18, 2)))
    table = table.select(EVENT_COLUMNS)
    pq.write_table(table, path, coerce_timestamps="us")
    return path


@pytest.fixture(scope="module")
def log_100k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100,000 simulated events of every type, the hand examples and the edge cases."""
    events = pd.concat(
        [
            hand_events(),
            edge_events(),
            random_events(seed=17, n_users=3000, n_events=100_000 - 33),
        ],
        ignore_index=True,
    )
    assert len(events) == 100_000
    return write_events(events, tmp_path_factory.mktemp("spark") / "events.parquet")


def test_the_log_holds_every_edge_case(log_100k: Path) -> None:
    df = pd.read_parquet(log_100k)
    assert len(df) == 100_000
    assert pq.read_schema(log_100k).field("amount").type == pa.decimal128(18, 2)
    assert (df["ts"] == CUTOFF).sum() >= 2 and (df["ts"] == END).sum() >= 2


@spark_test
def test_duckdb_and_spark_give_identical_features_and_labels(spark, log_100k: Path) -> None:
    duck = feature_table(
        events_backend("duckdb", log_100k), CUTOFF, horizon_days=HORIZON, labels=True
    )
    on_spark = feature_table(
        events_backend("spark", str(log_100k), session=spark),
        CUTOFF,
        horizon_days=HORIZON,
        labels=True,
    )
    assert len(duck) > 3000 and duck.shape[1] > 60
    pd.testing.assert_frame_equal(duck, on_spark, check_exact=True)
    rows = duck.set_index("user_id")
    # the cutoff edge cases, as the definitions say
    assert rows.loc["x_at_cutoff", "frequency_orders"] == 1.0
    assert rows.loc["x_at_cutoff", "retained"] == 1
    assert rows.loc["x_at_end", "retained"] == 0
    assert rows.loc["x_before_end", "retained"] == 1
    assert rows.loc["x_before_cutoff", "recency_days"] == pytest.approx(1e-6 / 86400, rel=1e-6)
    same_day = rows.loc["x_same_day"]
    assert (same_day["frequency_orders"], same_day["frequency_purchase_days"]) == (2.0, 1.0)
    assert same_day["frequency_lines"] == 3.0
    assert same_day["monetary_sum"] == 0.6  # cents, not float sums: exactly 0.60
    assert same_day["returns_spend"] == 0.3
    assert "x_returns_only" not in rows.index
    assert set(duck["retained"].unique()) == {0, 1}


@spark_test
def test_any_activity_counts_a_customer_with_only_returns(spark, tmp_path) -> None:
    path = write_events(pd.concat([hand_events(), edge_events()]), tmp_path / "edge.parquet")
    kwargs = {"horizon_days": HORIZON, "labels": True, "retained_by": "any"}
    duck = feature_table(events_backend("duckdb", path), CUTOFF, **kwargs)
    on_spark = feature_table(events_backend("spark", str(path), session=spark), CUTOFF, **kwargs)
    pd.testing.assert_frame_equal(duck, on_spark, check_exact=True)
    rows = duck.set_index("user_id")
    assert rows.loc["x_returns_only", "frequency_activity_events"] == 2.0
    assert rows.loc["x_returns_only", "retained"] == 1  # the return on 2024-07-02
    assert rows.loc["x_returns_only", "frequency_orders"] == 0.0


@spark_test
def test_cli_features_on_both_engines_write_the_same_parquet(spark, tmp_path, capsys) -> None:
    path = write_events(pd.concat([hand_events(), edge_events()]), tmp_path / "edge.parquet")
    outs = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.parquet"
        args = ["features", "--engine", engine, "--events", str(path), "--cutoff", "2024-07-01"]
        args += ["--horizon", "30", "--labels", "--out", str(out)]
        args += ["--json", str(tmp_path / f"{engine}.json")]
        if engine == "spark":
            args += ["--spark-master", "local[2]"]
        assert main(args) == 0
        outs[engine] = pd.read_parquet(out)
        summary = json.loads((tmp_path / f"{engine}.json").read_text())
        assert summary["engine"] == engine and summary["n_users"] == len(outs[engine])
    assert "on spark" in capsys.readouterr().out
    pd.testing.assert_frame_equal(outs["duckdb"], outs["spark"], check_exact=True)
    assert list(outs["spark"].columns[:2]) == ["user_id", "recency_days"]
    assert outs["spark"].columns[-1] == "retained"
    # the session the CLI joined is still there for the other tests
    assert spark.range(3).count() == 3


@spark_test
def test_spark_names_an_unreadable_path(spark, tmp_path) -> None:
    with pytest.raises(ReadError, match="Spark cannot read the Parquet events"):
        events_backend("spark", str(tmp_path / "missing.parquet"), session=spark)
    nanos = tmp_path / "nanos.parquet"
    pd.DataFrame(
        {"user_id": ["a"], "ts": pd.to_datetime(["2024-01-01"]), "event_type": ["purchase"]}
    ).astype({"ts": "datetime64[ns]"}).to_parquet(nanos)
    try:
        events_backend("spark", str(nanos), session=spark)
    except ReadError as exc:  # Spark 4 refuses nanoseconds: the message says what to write
        assert "microseconds" in str(exc)


# --------------------------------------------------------------------- errors that need no Spark
def test_duckdb_names_a_missing_file_and_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="does not exist"):
        events_backend("duckdb", tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"customer": ["a"], "ts": pd.to_datetime(["2024-01-01"])}).to_parquet(bad)
    with pytest.raises(ReadError, match=r"lacks the event contract's column.*user_id, event_type"):
        events_backend("duckdb", bad)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet")
    with pytest.raises(ReadError, match="DuckDB cannot read"):
        events_backend("duckdb", garbage)


def test_engine_names_are_checked() -> None:
    assert to_engine(" Spark ") == "spark"
    with pytest.raises(ConfigError, match="engine must be one of duckdb, spark"):
        to_engine("polars")


def test_a_missing_pyspark_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(ConfigError, match=r"pip install 'retention\[spark\]'"):
        spark_session()


def test_a_missing_java_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyspark")
    import shutil

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs Java"):
        spark_session("local[1]")
    with pytest.raises(ConfigError, match="not both"):
        spark_session("local[1]", "sc://localhost:15002")
    with pytest.raises(ConfigError, match="starts with sc://"):
        spark_session(remote="localhost:15002")


def test_cli_errors_are_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    path = write_events(edge_events(), tmp_path / "edge.parquet")
    cases = [
        (["--events", str(tmp_path / "nope.parquet")], "does not exist"),
        (["--events", str(path), "--labels"], "--labels needs the label window"),
        (["--engine", "spark"], "pass --events PATH"),
        (["--events", str(path), "--spark-master", "local[1]"], "need --engine spark"),
        (["--events", str(path), "--engine", "flink"], "engine must be one of"),
    ]
    for extra, message in cases:
        args = ["features", "--cutoff", "2024-07-01", "--out", str(tmp_path / "f.parquet")]
        assert main(args + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err
    assert main(["features", "--cutoff", "2024-07-01", "--events", str(path), "--out", "f.csv"])
    assert "name it *.parquet" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pyspark", None)
    args = ["features", "--engine", "spark", "--events", str(path), "--cutoff", "2024-07-01"]
    assert main([*args, "--out", str(tmp_path / "f.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'retention[spark]'" in err and "\n" not in err


def test_duckdb_reads_the_store_or_a_folder_of_parts(tmp_path: Path, capsys) -> None:
    events = pd.concat([hand_events(), edge_events()], ignore_index=True)
    folder = tmp_path / "parts"
    folder.mkdir()
    write_events(events.iloc[:15], folder / "part-0.parquet")
    write_events(events.iloc[15:], folder / "part-1.parquet")
    whole = write_events(events, tmp_path / "all.parquet")
    a = feature_table(events_backend("duckdb", folder), CUTOFF)
    b = feature_table(events_backend("duckdb", whole), CUTOFF)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    from retention.data import Store, ingest

    db = tmp_path / "store.duckdb"
    with Store(db) as store:
        ingest(store, whole)
    out = tmp_path / "from_store.parquet"
    assert main(["features", "--db", str(db), "--cutoff", "2024-07-01", "--out", str(out)]) == 0
    from_store = pd.read_parquet(out)
    pd.testing.assert_frame_equal(from_store, b, check_exact=True)
    assert np.isfinite(from_store["recency_days"]).all()


# --------------------------------------------------------------------------------- Spark Connect
_CONNECT = """
import sys, time
import pandas as pd
from retention.features import build_labels, events_backend, population, spark_session
start = time.perf_counter()
session = spark_session(remote="local", shuffle_partitions=2)
assert type(session).__module__.startswith("pyspark.sql.connect"), type(session)
up = time.perf_counter() - start
on_connect = events_backend("spark", {path!r}, session=session)
duck = events_backend("duckdb", {path!r})
pd.testing.assert_index_equal(population(duck, "2024-07-01"), population(on_connect, "2024-07-01"))
want = build_labels(duck, "2024-07-01", 30)
pd.testing.assert_series_equal(want, build_labels(on_connect, "2024-07-01", 30))
session.stop()
print("connect ok", len(want), round(up, 1))
"""
#: how long the Connect check may take: the server's JVM starts in ~35 s on an idle machine
CONNECT_TIMEOUT_S = 420


@spark_test
def test_spark_connect_server_starts_locally_and_agrees(tmp_path: Path) -> None:
    """pyspark 4 ships the spark-connect jar: ``remote="local"`` starts a server in a child JVM
    (in a fresh process, beside the shared classic session), within CONNECT_TIMEOUT_S. The
    population and labels are compared here (a few queries); the whole feature table agrees
    too (docs/spark.md), but takes a minute more through Connect."""
    pytest.importorskip("grpc")
    path = write_events(pd.concat([hand_events(), edge_events()]), tmp_path / "edge.parquet")
    code = textwrap.dedent(_CONNECT).format(path=str(path))
    env = {**os.environ, "RETENTION_PROGRESS": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=CONNECT_TIMEOUT_S,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "connect ok" in done.stdout

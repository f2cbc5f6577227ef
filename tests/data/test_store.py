"""Store: opening, migrations, errors, and the DataFrame accessors."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from retention.data import SCHEMA_VERSION, TABLE_COLUMNS, Store, ingest_frame
from retention.exceptions import ConfigError, StoreError


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["b", "a", "a", "c"],
            "ts": pd.to_datetime(["2021-01-03", "2021-01-02", "2021-01-01", "2021-02-01"]),
            "amount": [1.25, 2.5, 3.0, 4.0],
        }
    )


def test_new_store_has_the_tables_and_schema_version(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        assert store.schema_version == SCHEMA_VERSION
        for name in (
            "events",
            "items",
            "users",
            "assignments",
            "outcomes",
            "quarantine",
            "ingests",
            "schema_version",
        ):
            assert store.has_table(name), name
        assert not store.has_table("nope")
        types = dict(store.columns("events"))
    assert types["amount"] == "DECIMAL(18,2)"
    assert types["ts"] == "TIMESTAMP"
    # reopening does not migrate twice
    with Store(tmp_path / "s.duckdb") as store:
        n = store.con.execute("SELECT count(*) FROM schema_version").fetchone()
        assert n is not None and n[0] == SCHEMA_VERSION


def test_store_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        store.con.execute(
            "INSERT INTO schema_version VALUES (?, now()::TIMESTAMP)", [SCHEMA_VERSION + 1]
        )
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_missing_folder_and_non_duckdb_file_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist") as info:
        Store(tmp_path / "no" / "such" / "s.duckdb")
    assert "\n" not in str(info.value)
    text = tmp_path / "notes.duckdb"
    text.write_text("hello, I am not a database\n" * 100)
    with pytest.raises(StoreError, match="Cannot open") as info:
        Store(text)
    assert "\n" not in str(info.value)
    with pytest.raises(StoreError, match="No store"):
        Store(tmp_path / "absent.duckdb", read_only=True)
    with pytest.raises(StoreError, match="folder"):
        Store(tmp_path)


def test_plain_duckdb_file_without_our_schema_read_only(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(StoreError, match="not a retention store"):
        Store(path, read_only=True)
    with Store(path) as store:  # writable: migrated in place
        assert store.schema_version == SCHEMA_VERSION


def test_events_df_sorts_filters_and_types(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        ingest_frame(store, _events(), source_name="frame")
        df = store.events_df()
        assert list(df["user_id"]) == ["a", "a", "b", "c"]
        assert df["ts"].is_monotonic_increasing or list(df["ts"])[:2] == sorted(df["ts"][:2])
        assert df["amount"].dtype == "float64"
        assert df["ts"].dtype == "datetime64[ns]"
        assert df.loc[0, "amount"] == 3.0
        assert list(df.columns) == [
            "event_id",
            "user_id",
            "ts",
            "event_type",
            "item_id",
            "order_id",
            "quantity",
            "amount",
            "rating",
            "text",
        ]
        before = store.events_df(before=pd.Timestamp("2021-01-03"))
        assert sorted(before["user_id"]) == ["a", "a"]
        some = store.events_df(users=["c", "b"])
        assert list(some["user_id"]) == ["b", "c"]
        assert store.events_df(users=[]).empty
        ingests = store.table_df("ingests")
        assert ingests.loc[0, "loaded"] == 4
        with pytest.raises(ConfigError, match="no table"):
            store.table_df("events; DROP TABLE events")


def test_ibis_backend_shares_the_connection(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        ingest_frame(store, _events(), source_name="frame")
        backend = store.ibis()
        assert backend.table("events").count().execute() == 4
        assert store.ibis() is backend


def test_read_only_store_refuses_to_ingest(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()
    with Store(path, read_only=True) as store, pytest.raises(StoreError, match="read-only"):
        ingest_frame(store, _events(), source_name="frame")


# -- migration 2: every table typed, foreign files refused --------------------------------------
def _doc_tables() -> dict[str, list[tuple[str, str]]]:
    """``{table: [(column, type), ...]}`` as docs/tables.md lists them."""
    import re

    text = (Path(__file__).parents[2] / "docs" / "tables.md").read_text(encoding="utf-8")
    tables: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"^### `(\w+)`", line)
        if head:
            current = head.group(1)
            tables[current] = []
            continue
        row = re.match(r"^\| `(\w+)` \| ([A-Z0-9(),\[\] ]+) \|", line)
        if row and current is not None:
            tables[current].append((row.group(1), row.group(2).strip()))
    return tables


def test_docs_list_every_table_and_column_of_a_new_store(tmp_path: Path) -> None:
    documented = _doc_tables()
    with Store(tmp_path / "s.duckdb") as store:
        actual = {name: store.columns(name) for name in store.tables()}
    assert set(documented) == set(actual)
    for name, columns in actual.items():
        assert documented[name] == columns, name


def test_workflow_tables_are_typed_by_the_migration(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        for name in ("scores", "score_reasons", "embeddings", "bandit_feedback", "models"):
            assert store.has_table(name), name
        assert dict(store.columns("scores"))["p_retained"] == "DOUBLE"
        assert dict(store.columns("score_reasons"))["rank"] == "INTEGER"
        assert dict(store.columns("embeddings"))["vector"] == "FLOAT[]"
        assert dict(store.columns("models"))["metadata"] == "JSON"


def test_another_apps_database_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE events (id INTEGER, what VARCHAR)")
    con.execute("INSERT INTO events VALUES (1, 'theirs')")
    con.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for read_only in (False, True):
        with pytest.raises(StoreError, match="not a retention store") as info:
            Store(path, read_only=read_only)
        assert "\n" not in str(info.value) and "events" in str(info.value)
    with pytest.raises(StoreError, match="not a retention store"):
        Store.open(path, read_only=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT table_name FROM duckdb_tables()").fetchall() == [("events",)]
    # a schema_version table of its own does not make a file ours either
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER, note VARCHAR)")
    con.execute("INSERT INTO schema_version VALUES (1, 'their migrations')")
    con.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="not ours"):
        Store(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_version_1_store_with_untyped_workflow_tables_is_migrated(tmp_path: Path) -> None:
    from retention.data._store import MIGRATIONS

    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
    for sql in MIGRATIONS[0]:
        con.execute(sql)
    con.execute("INSERT INTO schema_version VALUES (1, now()::TIMESTAMP)")
    # what version 1 made of a score that produced no reasons: NULL-typed columns
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in ("user_id", "text", "rank")})
    con.register("_empty", empty)
    con.execute("CREATE TABLE score_reasons AS SELECT * FROM _empty LIMIT 0")
    con.execute(
        "CREATE TABLE scores AS SELECT 'u1' AS user_id, 0.25 AS p_retained, "
        "TIMESTAMP '2021-01-01' AS cutoff, 'm1' AS model_version"
    )
    con.close()
    with pytest.raises(StoreError, match="older than"):
        Store(path, read_only=True)
    # what the CLI does for a read-only command: migrate once, then open read-only
    with Store.open(path, read_only=True) as store:
        assert store.read_only
        assert store.schema_version == SCHEMA_VERSION
        assert store.columns("score_reasons") == [
            (c, t.replace(" NOT NULL", "")) for c, t in TABLE_COLUMNS["score_reasons"]
        ]
        kept = store.read_scores()
        assert kept[["user_id", "p_retained", "model_version"]].values.tolist() == [
            ["u1", 0.25, "m1"]
        ]
        assert pd.isna(kept.loc[0, "risk_band"])


def _scores(version: str = "m1", n: int = 3, p: float = 0.5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "p_retained": [p] * n,
            "risk_band": ["medium"] * n,
            "cutoff": pd.Series([pd.Timestamp("2021-06-01")] * n, dtype="datetime64[ns]"),
            "horizon_days": [90] * n,
            "model_version": [version] * n,
        }
    )


def _reasons(users: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": users,
            "direction": ["churn"] * len(users),
            "rank": [1] * len(users),
            "feature": ["recency_days"] * len(users),
            "family": ["recency"] * len(users),
            "contribution": [-0.4] * len(users),
            "value": [120.0] * len(users),
            "typical": [40.0] * len(users),
            "text": ["last order 120 days ago"] * len(users),
        }
    )


def test_write_scores_replaces_rows_and_an_empty_reasons_table_breaks_nothing(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        no_reasons = _reasons([]).astype(object)  # what a score without reasons hands over
        store.write_scores(_scores(), no_reasons)
        store.write_scores(_scores(p=0.7), _reasons(["u0", "u1"]))
        scores = store.read_scores()
        assert len(scores) == 3 and (scores["p_retained"] == 0.7).all()
        reasons = store.read_reasons(model_version="m1")
        assert reasons["user_id"].tolist() == ["u0", "u1"]
        assert reasons["rank"].dtype.kind == "i"
        assert len(store.read_reasons(user_id="u0")) == 1
        store.write_scores(_scores(version="m2", n=1))  # another model: m1 rows stay
        assert sorted(store.read_scores()["model_version"]) == ["m1", "m1", "m1", "m2"]


def test_a_failed_reasons_write_leaves_the_scores_unchanged(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        store.write_scores(_scores(p=0.2), _reasons(["u0"]))
        bad = _reasons(["u1"]).assign(rank=["first"])  # not an integer: the insert fails
        with pytest.raises(StoreError, match="rolled back") as info:
            store.write_scores(_scores(p=0.9), bad)
        assert "\n" not in str(info.value)
        assert (store.read_scores()["p_retained"] == 0.2).all()
        assert store.read_reasons()["user_id"].tolist() == ["u0"]
        # the store is usable after the rollback
        store.write_scores(_scores(p=0.9), _reasons(["u1"]))
        assert (store.read_scores()["p_retained"] == 0.9).all()


def test_another_scores_table_gets_the_typed_columns(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        store.write_scores(_scores(), table="scores_b")
        assert store.columns("scores_b") == store.columns("scores")
        store.con.execute("CREATE TABLE other (user_id VARCHAR)")
        with pytest.raises(ConfigError, match="other columns"):
            store.write_scores(_scores(), table="other")
        with pytest.raises(ConfigError, match="identifier"):
            store.write_scores(_scores(), table="x; DROP TABLE events")


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.replace_rows("scores", _scores(), {})
            raise RuntimeError("boom")
        assert store.read_scores().empty
        with store.transaction():
            store.replace_rows("scores", _scores(), {})
            with store.transaction():  # nested: joins the outer transaction
                store.replace_rows("scores", _scores(n=1, p=0.1), {"user_id": "u0"})
        scores = store.read_scores().set_index("user_id")["p_retained"]
        assert scores.to_dict() == {"u0": 0.1, "u1": 0.5, "u2": 0.5}
        with pytest.raises(ConfigError, match="no column"):
            store.replace_rows("scores", _scores(), {"nope": 1})


def test_a_read_only_store_refuses_every_write(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()
    with Store(path, read_only=True) as store:
        for write in (
            lambda: store.write_scores(_scores()),
            lambda: store.replace_rows("scores", _scores(), {}),
            lambda: store.transaction().__enter__(),
        ):
            with pytest.raises(StoreError, match="read-only") as info:
                write()
            assert "\n" not in str(info.value)


def test_model_registry_round_trip(tmp_path: Path) -> None:
    from retention.data import ModelRecord

    record = ModelRecord(
        model_id="abc123",
        path=tmp_path / "m.retention",
        sha256="0" * 64,
        registry_name="gbdt",
        cutoff=pd.Timestamp("2021-06-01"),
        horizon_days=90,
        metadata={"model_id": "abc123", "features": ["recency_days"]},
    )
    with Store(tmp_path / "s.duckdb") as store:
        store.register_model(record)
        store.register_model(record)  # again: replaced, not duplicated
        got = store.model_record("abc123")
        assert store.model_record("nope") is None
        assert store.table_df("models").shape[0] == 1
    assert got is not None
    assert (got.path, got.sha256, got.registry_name, got.horizon_days) == (
        record.path,
        record.sha256,
        "gbdt",
        90,
    )
    assert got.cutoff == record.cutoff and got.metadata == record.metadata


def test_event_range_and_column_subsets(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        assert store.event_range() is None
        ingest_frame(store, _events(), source_name="frame")
        assert store.event_range() == (pd.Timestamp("2021-01-01"), pd.Timestamp("2021-02-01"))
        df = store.events_df(columns=("user_id", "amount"))
        assert list(df.columns) == ["user_id", "amount"] and df["amount"].dtype == "float64"
        with pytest.raises(ConfigError, match="no column"):
            store.events_df(columns=("user_id", "nope"))
        # every query is read to the end: the Ibis backend on the same connection still works
        store.event_range()
        assert store.ibis().table("events").count().execute() == 4


def test_create_false_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="No store"):
        Store(tmp_path / "absent.duckdb", create=False)
    assert not (tmp_path / "absent.duckdb").exists()

"""Store: opening, migrations, errors, and the DataFrame accessors."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from retention.data import SCHEMA_VERSION, Store, ingest_frame
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

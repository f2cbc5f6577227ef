"""The bundled datasets: registry, mapping files, and the accounting of every load."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from retention.data import (
    TABLES,
    IngestReport,
    Mapping,
    Store,
    dataset_path,
    get_dataset,
    list_datasets,
    load_dataset,
)
from retention.data._datasets import AMAZON_BEAUTY_START, FILES, HILLSTROM_ASSIGNED_TS
from retention.exceptions import ConfigError

NAMES = [
    "online_retail",
    "cdnow_master",
    "cdnow_sample",
    "hillstrom",
    "amazon_beauty",
    "amazon_musical_instruments",
    "open_bandit_random_all",
]
RETAIL = FILES / "online_retail.parquet"


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> object:
    rows = con.execute(sql, params or []).fetchall()
    return rows[0][0]


def _check_accounting(reports: list[IngestReport], con: duckdb.DuckDBPyConnection) -> None:
    """read = loaded + duplicates + quarantined; reasons add up; the store agrees."""
    for r in reports:
        assert r.read == r.loaded + r.duplicates + r.quarantined, r
        assert sum(r.reasons.values()) == r.quarantined, r
        assert all(reason and n > 0 for reason, n in r.reasons.items()), r
        written = _one(con, f'SELECT count(*) FROM "{r.table}" WHERE ingest_id = ?', [r.ingest_id])
        assert written == r.loaded, r
        jailed = _one(con, "SELECT count(*) FROM quarantine WHERE ingest_id = ?", [r.ingest_id])
        assert jailed == r.quarantined, r
        logged = con.execute(
            "SELECT table_name, read, loaded, duplicates, quarantined FROM ingests "
            "WHERE ingest_id = ?",
            [r.ingest_id],
        ).fetchall()
        assert logged == [(r.table, r.read, r.loaded, r.duplicates, r.quarantined)]


# -- registry and mapping files ------------------------------------------------------------------


def test_registry_lists_the_names_of_the_interface() -> None:
    assert [d.name for d in list_datasets()] == NAMES
    for info in list_datasets():
        assert info.licence and info.source and info.citation and info.rows > 0
        assert get_dataset(info.name) is info


def test_every_bundled_file_exists_compressed_and_small() -> None:
    for info in list_datasets():
        for file in info.files:
            path = dataset_path(info.name, file)
            assert path.suffix in {".gz", ".parquet"}, path
            assert 0 < path.stat().st_size < 8 * 2**20, path


@pytest.mark.parametrize("toml", sorted(FILES.glob("*.toml")), ids=lambda p: p.name)
def test_mapping_files_parse_and_name_canonical_columns(toml: Path) -> None:
    name, table = toml.name.removesuffix(".toml").rsplit(".", 1)
    assert name in NAMES
    assert table in get_dataset(name).tables
    spec = TABLES[table]
    mapping = Mapping.from_toml(toml)
    mapping.check(spec.names, table, allow_extra=spec.extra_columns)
    assert all(col in mapping.columns for col in spec.required)


def test_every_contract_table_of_a_dataset_has_its_mapping_file() -> None:
    for info in list_datasets():
        for table in info.tables:
            if table in TABLES:
                assert (FILES / f"{info.name}.{table}.toml").is_file(), (info.name, table)


def test_unknown_name_raises_config_error_listing_the_names(tmp_path: Path) -> None:
    with Store(tmp_path / "x.duckdb") as store, pytest.raises(ConfigError) as err:
        load_dataset("online_retial", store)
    message = str(err.value)
    assert "online_retial" in message
    assert all(name in message for name in NAMES)
    with pytest.raises(ConfigError, match="has no file"):
        dataset_path("cdnow_sample", "cdnow_master.csv.gz")


# -- Online Retail (the session fixture retail_db) -------------------------------------------------


def test_online_retail_accounting_and_quarantine(retail_store: Store) -> None:
    con = retail_store.con
    source = duckdb.connect()
    no_customer = _one(source, f"SELECT count(*) FROM '{RETAIL}' WHERE CustomerID IS NULL")
    rows = _one(source, f"SELECT count(*) FROM '{RETAIL}'")
    assert (rows, no_customer) == (get_dataset("online_retail").rows, 135_080)

    logged = con.execute(
        "SELECT table_name, read, loaded, duplicates, quarantined, reasons FROM ingests "
        "ORDER BY ingest_id"
    ).fetchall()
    assert [row[0] for row in logged] == ["events", "items", "users"]
    for _, read, loaded, duplicates, quarantined, _ in logged:
        assert read == loaded + duplicates + quarantined
    _, read, loaded, duplicates, quarantined, _ = logged[0]
    assert read == rows
    assert loaded == _one(con, "SELECT count(*) FROM events")
    # every line without a customer is in the quarantine with its reason, nothing else is
    by_reason = dict(con.execute("SELECT reason, count(*) FROM quarantine GROUP BY 1").fetchall())
    assert by_reason == {"missing user_id": no_customer}
    assert quarantined == no_customer
    # the two "Adjust bad debt" lines with a negative price are among them, kept whole in `raw`
    negative = _one(con, """SELECT count(*) FROM quarantine WHERE raw LIKE '%"UnitPrice":-%'""")
    assert negative == _one(source, f"SELECT count(*) FROM '{RETAIL}' WHERE UnitPrice < 0") == 2
    # exact repeats of a line are duplicates, not events
    repeats = _one(
        source,
        f"SELECT count(*) - count(DISTINCT (InvoiceNo, StockCode, Quantity, InvoiceDate, "
        f"UnitPrice, CustomerID)) FROM '{RETAIL}' WHERE CustomerID IS NOT NULL",
    )
    assert duplicates == repeats


def test_online_retail_returns_and_event_columns(retail_store: Store) -> None:
    con = retail_store.con
    by_type = dict(con.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())
    assert set(by_type) == {"purchase", "return"}
    assert by_type["return"] > 1000
    # returns are exactly the C invoices, with positive quantity and non-negative amount
    assert (
        _one(
            con,
            "SELECT count(*) FROM events WHERE (event_type = 'return') "
            "<> starts_with(order_id, 'C')",
        )
        == 0
    )
    assert _one(con, "SELECT min(quantity) FROM events") > 0
    assert _one(con, "SELECT min(amount) FROM events") >= 0
    # user ids are the integral customer numbers, not floats
    assert (
        _one(con, "SELECT count(*) FROM events WHERE NOT regexp_full_match(user_id, '\\d+')") == 0
    )
    source = duckdb.connect()
    customers = _one(source, f"SELECT count(DISTINCT CustomerID) FROM '{RETAIL}'")
    assert _one(con, "SELECT count(DISTINCT user_id) FROM events") == customers
    # amount = |Quantity| * UnitPrice, rounded to cents: the totals by type match the source
    expected = dict(
        source.execute(
            "SELECT CASE WHEN starts_with(InvoiceNo, 'C') THEN 'return' ELSE 'purchase' END, "
            "round(sum(round(abs(Quantity) * UnitPrice, 2)), 2) FROM (SELECT DISTINCT "
            f"InvoiceNo, StockCode, Quantity, InvoiceDate, UnitPrice, CustomerID FROM '{RETAIL}' "
            "WHERE CustomerID IS NOT NULL) GROUP BY 1"
        ).fetchall()
    )
    got = dict(
        con.execute(
            "SELECT event_type, CAST(sum(amount) AS DOUBLE) FROM events GROUP BY 1"
        ).fetchall()
    )
    assert got == pytest.approx(expected, abs=0.01)


def test_online_retail_side_tables(retail_store: Store) -> None:
    con = retail_store.con
    source = duckdb.connect()
    assert _one(con, "SELECT count(*) FROM items") == _one(
        source, f"SELECT count(DISTINCT StockCode) FROM '{RETAIL}'"
    )
    assert _one(con, "SELECT count(*) FROM users") == _one(
        con, "SELECT count(DISTINCT user_id) FROM events"
    )
    assert _one(con, "SELECT count(*) FROM users WHERE country IS NULL") == 0
    row = con.execute("SELECT title, price FROM items WHERE item_id = '85123A'").fetchall()[0]
    assert "WHITE HANGING HEART" in row[0] and 2 < float(row[1]) < 4
    # every event's item is described
    assert _one(con, "SELECT count(*) FROM events e ANTI JOIN items i USING (item_id)") == 0


@pytest.mark.slow
def test_online_retail_reload_adds_nothing(retail_db: Path, tmp_path: Path) -> None:
    copy = tmp_path / "again.duckdb"
    shutil.copy(retail_db, copy)
    with Store(copy) as store:
        before = {t: _one(store.con, f'SELECT count(*) FROM "{t}"') for t in store.tables()}
        ids = _one(store.con, "SELECT md5(string_agg(event_id, ',' ORDER BY event_id)) FROM events")
        reports = load_dataset("online_retail", store)
        _check_accounting(reports, store.con)
        assert [r.loaded for r in reports] == [0, 0, 0]
        # bad rows are in the quarantine already: duplicates, like the good ones
        assert reports[0].quarantined == 0 and reports[0].duplicates == reports[0].read
        after = {t: _one(store.con, f'SELECT count(*) FROM "{t}"') for t in store.tables()}
        assert (
            _one(store.con, "SELECT md5(string_agg(event_id, ',' ORDER BY event_id)) FROM events")
            == ids
        )
    for table in ("events", "items", "users"):
        assert after[table] == before[table]
    assert after["quarantine"] == before["quarantine"]  # one row per file, line and reason


# -- every other dataset, loaded once ------------------------------------------------------------


def _check_cdnow(store: Store, name: str) -> None:
    con = store.con
    id_col = "customer_id" if name == "cdnow_master" else "id"
    path = dataset_path(name)
    source = duckdb.connect()
    want = source.execute(
        f"SELECT count(*), count(DISTINCT {id_col}), round(sum(CAST(dollars AS DOUBLE)), 2), "
        f"sum(CAST(cds AS DOUBLE)) FROM read_csv('{path}', all_varchar = true)"
    ).fetchall()[0]
    got = con.execute(
        "SELECT count(*), count(DISTINCT user_id), round(CAST(sum(amount) AS DOUBLE), 2), "
        "sum(quantity) FROM events WHERE event_type = 'purchase'"
    ).fetchall()[0]
    assert got == pytest.approx(want)  # identical same-day rows are kept as separate purchases
    assert _one(con, "SELECT min(ts) FROM events").isoformat() == "1997-01-01T00:00:00"
    assert _one(con, "SELECT max(ts) FROM events").isoformat() == "1998-06-30T00:00:00"
    assert _one(con, "SELECT count(*) FROM events WHERE length(user_id) <> 5") == 0
    if name == "cdnow_sample":
        ids = con.execute("SELECT CAST(sample_id AS INTEGER) FROM users").fetchall()
        assert sorted(i for (i,) in ids) == list(range(1, 2358))


def _check_hillstrom(store: Store, name: str) -> None:
    con = store.con
    assert _one(con, "SELECT count(*) FROM events") == 0
    variants = dict(con.execute("SELECT variant, count(*) FROM assignments GROUP BY 1").fetchall())
    assert set(variants) == {"Mens E-Mail", "Womens E-Mail", "No E-Mail"}
    assert sum(variants.values()) == 64_000 and min(variants.values()) > 21_000
    assert _one(con, "SELECT count(DISTINCT assigned_ts) FROM assignments") == 1
    assert _one(con, "SELECT min(assigned_ts) FROM assignments") == HILLSTROM_ASSIGNED_TS
    metrics = dict(con.execute("SELECT metric, sum(value) FROM outcomes GROUP BY 1").fetchall())
    source = pd.read_csv(dataset_path(name))
    assert metrics["visit"] == source["visit"].sum()
    assert metrics["conversion"] == source["conversion"].sum()
    assert metrics["spend"] == pytest.approx(source["spend"].sum())
    # user 1 is the first row of the file, with its covariates
    row = con.execute(
        "SELECT u.recency, u.channel, a.variant FROM users u JOIN assignments a USING (user_id) "
        "WHERE user_id = '1'"
    ).fetchall()[0]
    first = source.iloc[0]
    assert row == (str(first["recency"]), first["channel"], first["segment"])


def _check_amazon(store: Store, name: str) -> None:
    con = store.con
    assert _one(con, "SELECT count(DISTINCT user_id) FROM events") == 22_363
    assert _one(con, "SELECT count(DISTINCT item_id) FROM events") == 12_101
    assert _one(con, "SELECT min(ts) FROM events") == AMAZON_BEAUTY_START
    # the order of each user's line survives: rebuild line 2 from the store
    with gzip.open(dataset_path(name), "rt") as fh:
        next(fh)
        user, *items = next(fh).split()
    got = con.execute("SELECT item_id FROM events WHERE user_id = ? ORDER BY ts", [user]).fetchall()
    assert [i for (i,) in got] == items
    assert _one(con, "SELECT count(*) FROM items WHERE category IS NULL") == 0


def _check_bandit(store: Store, name: str) -> None:
    con = store.con
    clicks = _one(con, "SELECT sum(click) FROM bandit_feedback")
    assert clicks > 0
    by_type = dict(con.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())
    assert by_type == {"view": 10_000, "click": clicks}
    assert _one(con, "SELECT count(DISTINCT position) FROM bandit_feedback") == 3
    assert _one(con, "SELECT min(len(affinity)) FROM bandit_feedback") == 80
    assert _one(con, "SELECT count(*) FROM bandit_feedback WHERE propensity_score <= 0") == 0
    assert _one(con, "SELECT count(*) FROM items") == 80
    # the log and the events agree on who saw what, when
    mismatched = _one(
        con,
        "SELECT count(*) FROM bandit_feedback b ANTI JOIN events e ON e.event_type = 'view' "
        "AND e.user_id = b.user_id AND e.item_id = b.item_id AND e.ts = b.ts",
    )
    assert mismatched == 0


def _check_musical_instruments(store: Store, name: str) -> None:
    """Review events with their real dates, ratings and texts (issue 11: a review-only log)."""
    con = store.con
    assert _one(con, "SELECT count(DISTINCT user_id) FROM events") == 1_381
    assert _one(con, "SELECT count(DISTINCT event_type) FROM events") == 1
    assert _one(con, "SELECT min(ts) FROM events") == pd.Timestamp("2004-09-18")
    assert _one(con, "SELECT max(ts) FROM events") == pd.Timestamp("2014-07-20")
    assert _one(con, "SELECT count(*) FROM events WHERE rating NOT BETWEEN 1 AND 5") == 0
    first = pd.read_csv(dataset_path(name), nrows=1, dtype=str).iloc[0]
    row = con.execute(
        "SELECT ts, rating, text FROM events WHERE user_id = ? AND item_id = ?",
        [first["reviewerID"], first["asin"]],
    ).fetchall()
    stamp = pd.Timestamp(int(first["unixReviewTime"]), unit="s")
    assert row == [(stamp, float(first["overall"]), first["reviewText"])]


CHECKS = {
    "cdnow_master": _check_cdnow,
    "cdnow_sample": _check_cdnow,
    "hillstrom": _check_hillstrom,
    "amazon_beauty": _check_amazon,
    "amazon_musical_instruments": _check_musical_instruments,
    "open_bandit_random_all": _check_bandit,
}


@pytest.mark.parametrize(
    "name",
    [
        "cdnow_sample",
        pytest.param("cdnow_master", marks=pytest.mark.slow),
        pytest.param("hillstrom", marks=pytest.mark.slow),
        pytest.param("amazon_beauty", marks=pytest.mark.slow),
        "amazon_musical_instruments",
        "open_bandit_random_all",
    ],
)
def test_dataset_loads_with_balanced_accounting(name: str, tmp_path: Path) -> None:
    info = get_dataset(name)
    with Store(tmp_path / f"{name}.duckdb") as store:
        reports = load_dataset(name, store)
        assert [r.table for r in reports] == list(info.tables)
        _check_accounting(reports, store.con)
        assert reports[0].read == info.rows
        assert all(r.quarantined == 0 and r.loaded > 0 for r in reports)
        CHECKS[name](store, name)


def test_reload_of_a_small_dataset_is_idempotent(tmp_path: Path) -> None:
    with Store(tmp_path / "bandit.duckdb") as store:
        first = load_dataset("open_bandit_random_all", store)
        ids = _one(store.con, "SELECT md5(string_agg(event_id, ',' ORDER BY event_id)) FROM events")
        again = load_dataset("open_bandit_random_all", store)
        _check_accounting(again, store.con)
        assert [r.loaded for r in again] == [0, 0, 0]
        assert [r.duplicates for r in again] == [r.loaded for r in first]
        assert (
            _one(store.con, "SELECT md5(string_agg(event_id, ',' ORDER BY event_id)) FROM events")
            == ids
        )


def test_cdnow_fixture_is_the_sample(cdnow_db: Path) -> None:
    with Store(cdnow_db, read_only=True) as store:
        assert _one(store.con, "SELECT count(DISTINCT user_id) FROM events") == 2_357
        assert _one(store.con, "SELECT count(*) FROM events") == get_dataset("cdnow_sample").rows

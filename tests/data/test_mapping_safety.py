"""Column maps run no arbitrary SQL: one checked expression, or a refusal that changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retention.data import MAP_FUNCTIONS, Mapping, Store, ingest
from retention.data._expr import _duckdb_check, _Refused, parse_map_expression
from retention.exceptions import ConfigError, SchemaError
from retention.serving.cli import main

COLUMNS = ["InvoiceNo", "Quantity", "UnitPrice", "CustomerID", "InvoiceDate", "Unit price"]
EVENTS = "user_id,ts,amount,note\na,2021-01-01,5,x\nb,2021-01-02,6,y\nc,2021-01-03,7,z\n"
HOSTNAME = Path("/etc/hostname")


def _check(text: str, columns: list[str] = COLUMNS) -> Any:
    return parse_map_expression(text, columns, target="amount", label="orders.csv")


# -- the checker on its own ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sql", "reads"),
    [
        ("abs(Quantity) * UnitPrice", 'ABS("Quantity") * "UnitPrice"', {"Quantity", "UnitPrice"}),
        (
            "CASE WHEN starts_with(InvoiceNo, 'C') THEN 'return' ELSE 'purchase' END",
            "CASE WHEN STARTS_WITH(\"InvoiceNo\", 'C') THEN 'return' ELSE 'purchase' END",
            {"InvoiceNo"},
        ),
        ("to_timestamp(CustomerID)", 'TO_TIMESTAMP("CustomerID")', {"CustomerID"}),
        ("'review'", "'review'", set()),
        ('Quantity * "Unit price"', '"Quantity" * "Unit price"', {"Quantity", "Unit price"}),
        # DuckDB matches names ignoring case: the file's spelling is what runs
        ("quantity + unitprice", '"Quantity" + "UnitPrice"', {"Quantity", "UnitPrice"}),
        ("TRY_CAST(Quantity AS DECIMAL(18,2))", 'TRY_CAST("Quantity" AS DECIMAL(18, 2))', None),
        ("row_number() OVER (PARTITION BY CustomerID)", None, {"CustomerID"}),
        # comments are dropped, never carried into the SQL that runs
        ("Quantity /* ; DROP TABLE events */", '"Quantity"', {"Quantity"}),
    ],
)
def test_allowed_expressions_are_rebuilt_from_the_tree(
    text: str, sql: str | None, reads: set[str] | None
) -> None:
    checked = _check(text)
    if sql is not None:
        assert checked.sql == sql
    if reads is not None:
        assert set(checked.columns) == reads
    assert checked.text == text
    assert "/*" not in checked.sql and "--" not in checked.sql


@pytest.mark.parametrize(
    "text",
    [
        "abs(q) * p",
        "round(p * 1.2, 1)",
        "CASE WHEN starts_with(s, 'C') THEN 'return' WHEN q < 0 THEN 'x' ELSE 'purchase' END",
        "lower(trim(s)) || '-' || upper(s)",
        "coalesce(nullif(s, ''), 'none')",
        "strftime(strptime(d, '%d/%m/%Y'), '%Y-%m-%d')",
        "date_trunc('month', strptime(d, '%d/%m/%Y'))",
        "strptime(d, '%d/%m/%Y') + INTERVAL 1 DAY",
        "epoch_ms(CAST(q AS BIGINT) * 1000)",
        "make_timestamp(CAST(q AS BIGINT) * 1000000)",
        "regexp_replace(s, '[0-9]+', '#')",
        "substr(s, 2, 3) || replace(s, 'C', 'K')",
        "greatest(q, 0) + least(p, 10)",
        "if(q > 1, 'many', 'one')",
        "length(s) BETWEEN 2 AND 5 AND s LIKE 'C%' OR s IN ('A1', 'B2')",
        "TRY_CAST(s AS INTEGER) IS NULL",
        "q // 2 + q % 2 - -p",
        "md5(concat_ws('|', s, q, row_number() OVER (PARTITION BY s ORDER BY q)))",
    ],
)
def test_generated_sql_computes_what_was_written(text: str) -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM (VALUES ('C12', 3, 2.5, '01/02/2021'), "
        "('A1', -1, 4.0, '15/03/2021'), ('', 2, 0.1, '31/12/2020')) v(s, q, p, d)"
    )
    checked = parse_map_expression(text, ["s", "q", "p", "d"], target="x", label="t")
    expected = con.execute(f"SELECT {text} FROM t ORDER BY d").fetchall()
    assert con.execute(f"SELECT {checked.sql} FROM t ORDER BY d").fetchall() == expected


HOSTILE = [
    ("1); DELETE FROM events; SELECT (1", "';' chains statements"),
    ("user_id); DROP TABLE events; SELECT (1", "';' chains statements"),
    ("Quantity; DROP TABLE events", "';' chains statements"),
    ("abs(Quantity);", "';' chains statements"),
    ("DROP TABLE events", "SQL statement (DROP"),
    ("DELETE FROM events", "SQL statement (DELETE"),
    ("COPY events TO '/tmp/leak.csv'", "SQL statement (COPY"),
    ("ATTACH '/tmp/other.duckdb' AS other", "SQL statement (ATTACH"),
    ("PRAGMA database_list", "SQL statement (PRAGMA"),
    ("SET enable_external_access = true", "SQL statement (SET"),
    ("INSTALL httpfs", "SQL statement (INSTALL"),
    ("LOAD httpfs", "SQL statement (LOAD"),
    ("SELECT 1", "SQL statement (SELECT"),
    ("WITH x AS (SELECT 1) SELECT * FROM x", "SQL statement (WITH"),
    ("(SELECT content FROM read_text('/etc/hostname'))", "subqueries"),
    ("Quantity + (SELECT count(*) FROM events)", "subqueries"),
    ("CASE WHEN Quantity > 0 THEN (SELECT 1) END", "subqueries"),
    ("Quantity IN (SELECT 1)", "not a subquery"),
    ("EXISTS (SELECT 1)", "subqueries"),
    ("read_csv('/etc/passwd')", "read_csv() reads files"),
    ("CASE WHEN Quantity > 0 THEN read_text('/etc/hostname') END", "read_text() reads files"),
    ("getenv('HOME')", "getenv() reads files, the environment"),
    ("current_setting('threads')", "current_setting() reads"),
    ("query('SELECT 1')", "query() reads"),
    ("glob('/etc/*')", "glob() reads"),
    ("nextval('seq')", "function nextval() is not allowed"),
    ("sum(Quantity)", "function sum() is not allowed"),
    ("sum(Quantity) OVER ()", "may take OVER"),
    ("row_number()", "needs OVER"),
    ("*", "star"),
    ("events.user_id", "qualified name"),
    ("main.abs(Quantity)", "is not allowed"),
    ("$1", "parameters"),
    ("?", "parameters"),
    ("list_transform([1], x -> x + 1)", "is not allowed"),
    ("Quantity AS q", "not one SQL expression"),
    ("abs(Quantty) * UnitPrice", "'Quantty' is not a column of orders.csv"),
    ("rowid + 1", "'rowid' is not a column"),
]


@pytest.mark.parametrize(("text", "why"), HOSTILE)
def test_hostile_expressions_are_refused_in_one_line(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        _check(text)
    message = str(info.value)
    assert why in message
    assert message.startswith(f"Cannot use {text!r} for amount: ")
    assert "CAST/TRY_CAST" in message and "MAP_FUNCTIONS" in message  # what is allowed
    assert "\n" not in message


def test_a_bare_name_that_is_no_column_is_a_missing_column() -> None:
    with pytest.raises(SchemaError, match=r"not a column of orders\.csv") as info:
        _check("CustomerId2")
    assert "CustomerID" in str(info.value)  # the columns found
    assert "--map amount=COLUMN" in str(info.value)


def test_a_very_long_expression_is_refused_with_a_short_message() -> None:
    with pytest.raises(ConfigError, match="longer than") as info:
        _check(" + ".join(["Quantity"] * 3000))
    assert len(str(info.value)) < 800


def test_allowed_functions_cover_the_documented_ones_and_nothing_that_reads() -> None:
    documented = {"abs", "round", "lower", "upper", "trim", "concat", "coalesce", "nullif"}
    documented |= {"strptime", "to_timestamp", "make_timestamp", "epoch_ms", "date_trunc"}
    documented |= {"regexp_replace", "substr", "length", "replace", "greatest", "least", "if"}
    assert documented <= MAP_FUNCTIONS
    readers = {"read_csv", "read_text", "read_parquet", "getenv", "current_setting", "query"}
    assert not readers & MAP_FUNCTIONS


@pytest.mark.parametrize(
    "sql",
    [
        "getenv('HOME')",
        "(SELECT 1)",
        '"events"."user_id"',
        '"other_column"',
        "1; DROP TABLE t",
        "[1, 2]",
        'sum("a") OVER ()',
        "x -> x",
    ],
)
def test_duckdb_reading_of_the_sql_is_checked_too(sql: str) -> None:
    # the second gate, on DuckDB's own parse of what will run, refuses on its own
    with pytest.raises(_Refused):
        _duckdb_check(sql, ["a"])
    _duckdb_check('ABS("a") * 2', ["a"])  # and lets allowed SQL through


# -- through ingest: refused, and the store is unchanged ----------------------------------------


def _snapshot(store: Store) -> tuple[object, ...]:
    con = store.con
    tables = con.execute(
        "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() "
        "WHERE NOT temporary ORDER BY ALL"
    ).fetchall()
    events = con.execute(
        "SELECT count(*), string_agg(event_id || user_id || coalesce(text, ''), ',' "
        "ORDER BY event_id) FROM events"
    ).fetchone()
    counts = [
        con.execute(f"SELECT count(*) FROM {t}").fetchone() for t in ("ingests", "quarantine")
    ]
    return tuple(tables), events, tuple(counts)


@pytest.fixture
def loaded(tmp_path: Path):
    path = tmp_path / "events.csv"
    path.write_text(EVENTS, encoding="utf-8")
    with Store(tmp_path / "s.duckdb") as store:
        ingest(store, path)
        yield store, path


ISSUE_MAPS = [
    "user_id=1); DELETE FROM events; SELECT (1",
    "user_id=1); DROP TABLE events; SELECT (1",
    "user_id=DROP TABLE events",
    "text=(SELECT content FROM read_text('/etc/hostname'))",
    "text=CASE WHEN true THEN (SELECT content FROM read_text('/etc/hostname')) END",
    "text=getenv('HOME')",
    "text=note || current_setting('memory_limit')",
    "user_id=user_id); COPY events TO '{tmp}/leak.csv'; SELECT (1",
    "user_id=ATTACH '{tmp}/other.duckdb' AS other",
    "text=(SELECT string_agg(column0, ',') FROM read_csv('{tmp}/events.csv'))",
]


@pytest.mark.parametrize("entry", ISSUE_MAPS)
def test_hostile_maps_are_refused_and_change_nothing(loaded, tmp_path: Path, entry: str) -> None:
    store, path = loaded
    before = _snapshot(store)
    mapping = Mapping.from_cli([entry.format(tmp=tmp_path)])
    with pytest.raises(ConfigError, match="Cannot use"):
        ingest(store, path, mapping)
    assert _snapshot(store) == before
    assert not (tmp_path / "leak.csv").exists()
    assert not (tmp_path / "other.duckdb").exists()
    # the connection is still usable, and nothing of the host reached the events
    assert ingest(store, path).duplicates == 3
    if HOSTNAME.exists():
        texts = store.con.execute("SELECT text FROM events WHERE text IS NOT NULL").fetchall()
        assert texts == []


def test_a_shared_toml_mapping_cannot_carry_sql_either(loaded, tmp_path: Path) -> None:
    store, path = loaded
    before = _snapshot(store)
    toml = tmp_path / "shared.toml"
    toml.write_text(
        '[columns]\nuser_id = "user_id"\ntext = "CASE WHEN amount > 0 THEN '
        "(SELECT content FROM read_text('/etc/hostname')) END\"\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="subqueries are not allowed"):
        ingest(store, path, Mapping.from_toml(toml))
    toml.write_text('[columns]\namount = "amount); DELETE FROM events; SELECT (1"\n')
    with pytest.raises(ConfigError, match="';' chains statements"):
        ingest(store, path, Mapping.from_toml(toml))
    assert _snapshot(store) == before


def test_expressions_still_load(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "InvoiceNo,Quantity,UnitPrice,CustomerID,Epoch\n"
        "536365,6,2.55,17850,1291191960\n"
        "C536379,-2,27.50,14527,1291196460\n"
        "C536379,-2,27.50,14527,1291196460\n",
        encoding="utf-8",
    )
    mapping = Mapping.from_cli(
        [
            "user_id=CustomerID",
            "ts=to_timestamp(Epoch)",
            "order_id=InvoiceNo",
            "quantity=abs(Quantity)",
            "amount=abs(Quantity) * UnitPrice",
            "event_type=CASE WHEN starts_with(InvoiceNo, 'C') THEN 'return' ELSE 'purchase' END",
            "event_id=md5(concat_ws('|', InvoiceNo, row_number() OVER (PARTITION BY InvoiceNo)))",
            "text='review'",
        ]
    )
    with Store(tmp_path / "s.duckdb") as store:
        report = ingest(store, path, mapping)
        assert (report.loaded, report.quarantined) == (3, 0)
        assert report.columns["amount"] == "abs(Quantity) * UnitPrice"  # as written
        df = store.events_df().sort_values(["user_id", "event_id"])
    assert sorted(df["amount"]) == [15.3, 55.0, 55.0]
    assert sorted(df["event_type"]) == ["purchase", "return", "return"]
    assert set(df["text"]) == {"review"}
    assert str(df["ts"].min()) == "2010-12-01 08:26:00"


# -- through the CLI: one line, exit 2, store unchanged -----------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--map", "user_id=1); DELETE FROM events; SELECT (1"],
        ["--map", "text=(SELECT content FROM read_text('/etc/hostname'))"],
        ["--map", "amount=getenv('HOME')"],
        ["--mapping", "{tmp}/shared.toml"],
    ],
)
def test_cli_refuses_in_one_line(loaded, tmp_path: Path, capsys, args: list[str]) -> None:
    store, path = loaded
    (tmp_path / "shared.toml").write_text(
        "[columns]\ntext = \"read_csv('/etc/passwd')\"\n", encoding="utf-8"
    )
    before = _snapshot(store)
    db = Path(str(store.path))
    store.close()
    capsys.readouterr()
    argv = ["ingest", str(path), "--db", str(db), *(a.format(tmp=tmp_path) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and "Cannot use" in err
    with Store(db) as again:
        assert _snapshot(again) == before


@pytest.mark.slow
def test_the_issue_command_exits_non_zero_and_leaves_events(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(EVENTS, encoding="utf-8")
    db = tmp_path / "s.duckdb"
    env = {**os.environ, "RETENTION_PROGRESS": "0", "COLUMNS": "200"}
    cli = [sys.executable, "-m", "retention", "ingest", str(path), "--db", str(db)]
    first = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    proc = subprocess.run(
        [*cli, "--map", "user_id=1); DELETE FROM events; SELECT (1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1 and len(proc.stderr.strip().splitlines()) == 1
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (3,)

"""ingest: readers, mapping, validation with quarantine, idempotency, accounting."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from retention.data import IngestReport, Mapping, Store, ingest, ingest_frame
from retention.exceptions import QuarantineError, ReadError, RetentionWarning, SchemaError

RETAIL_MAP = Mapping.from_cli(
    [
        "user_id=CustomerID",
        "ts=InvoiceDate",
        "item_id=StockCode",
        "order_id=InvoiceNo",
        "quantity=abs(Quantity)",
        "amount=abs(Quantity) * UnitPrice",
        "event_type=CASE WHEN starts_with(InvoiceNo, 'C') THEN 'return' ELSE 'purchase' END",
    ]
)
RETAIL_CSV = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    "536365,85123A,WHITE HEART,6,12/1/2010 8:26,2.55,17850.0,United Kingdom\n"
    "536365,71053,LANTERN,6,12/1/2010 8:26,3.39,17850.0,United Kingdom\n"
    "C536379,D,Discount,-1,12/1/2010 9:41,27.5,14527.0,United Kingdom\n"
    "536380,22139,NO CUSTOMER,3,12/1/2010 9:45,4.25,,United Kingdom\n"
    "536381,22140,BAD QTY,lots,12/13/2010 9:45,4.25,15100.0,United Kingdom\n"
)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def _file(tmp_path: Path, name: str, text: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    data = text if isinstance(text, bytes) else text.encode(encoding)
    if name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _balanced(report: IngestReport) -> None:
    assert report.read == report.loaded + report.duplicates + report.quarantined
    assert sum(report.reasons.values()) == report.quarantined


def _count(store: Store, sql: str) -> int:
    row = store.con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_transactions_file_with_a_cli_map(store: Store, tmp_path: Path) -> None:
    path = _file(tmp_path, "retail.csv", RETAIL_CSV)
    report = ingest(store, path, RETAIL_MAP)
    _balanced(report)
    assert (report.read, report.loaded, report.duplicates, report.quarantined) == (5, 3, 0, 2)
    assert report.reasons == {"missing user_id": 1, "unparseable quantity": 1}
    events = store.events_df()
    assert sorted(events["user_id"].unique()) == ["14527", "17850"]  # 17850.0 -> "17850"
    ret = events[events["event_type"] == "return"].iloc[0]
    assert ret["amount"] == 27.5 and ret["quantity"] == 1.0  # abs(Quantity) * UnitPrice
    first = events[events["item_id"] == "85123A"].iloc[0]
    assert first["ts"] == pd.Timestamp("2010-12-01 08:26")  # m/d/Y sniffed
    assert first["amount"] == pytest.approx(15.30)
    # the quarantine keeps the raw row, its reason and its file line
    rows = store.con.execute(
        "SELECT source_line, reason, raw FROM quarantine ORDER BY source_line"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(5, "missing user_id"), (6, "unparseable quantity")]
    assert json.loads(rows[1][2])["Quantity"] == "lots"
    logged = store.table_df("ingests").iloc[0]
    assert (logged["read"], logged["loaded"], logged["quarantined"]) == (5, 3, 2)
    assert logged["sha256"] == report.sha256 and len(report.sha256 or "") == 64


def test_reingest_same_and_overlapping_file_adds_nothing(store: Store, tmp_path: Path) -> None:
    path = _file(tmp_path, "retail.csv", RETAIL_CSV)
    first = ingest(store, path, RETAIL_MAP)
    again = ingest(store, path, RETAIL_MAP)
    _balanced(again)
    # its bad rows are in the quarantine already: duplicates too (one quarantine row each)
    assert again.loaded == 0 and again.duplicates == first.loaded + first.quarantined
    assert again.quarantined == 0
    assert _count(store, "SELECT count(*) FROM quarantine") == first.quarantined
    lines = RETAIL_CSV.splitlines()
    overlap = "\n".join(
        [lines[0], *lines[2:4], "536999,X1,NEW,2,12/2/2010 10:00,1.5,17850,United Kingdom"]
    )
    report = ingest(store, _file(tmp_path, "overlap.csv", overlap + "\n"), RETAIL_MAP)
    _balanced(report)
    assert (report.loaded, report.duplicates) == (1, 2)
    assert _count(store, "SELECT count(*) FROM events") == 4
    assert _count(store, "SELECT count(DISTINCT event_id) FROM events") == 4


def test_duplicates_inside_one_file_count_as_duplicates(store: Store, tmp_path: Path) -> None:
    text = "user_id,ts\nu1,2021-01-01\nu1,2021-01-01\nu1,2021-01-01\nu2,2021-01-01\n"
    report = ingest(store, _file(tmp_path, "d.csv", text))
    _balanced(report)
    assert (report.read, report.loaded, report.duplicates) == (4, 2, 2)


def test_same_events_from_csv_and_parquet_get_the_same_ids(store: Store, tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "user_id": ["1", "2"],
            "ts": pd.to_datetime(["2021-03-01 10:00:00", "2021-03-02 11:30:00"]),
            "item_id": ["A", "B"],
            "quantity": [2.0, 1.0],
            "amount": [10.5, 3.0],
        }
    )
    parquet = tmp_path / "e.parquet"
    df.to_parquet(parquet)
    csv = _file(tmp_path, "e.csv", df.to_csv(index=False))
    assert ingest(store, parquet).loaded == 2
    report = ingest(store, csv)
    assert (report.loaded, report.duplicates) == (0, 2)


def test_no_event_type_column_means_purchase(store: Store, tmp_path: Path) -> None:
    ingest(store, _file(tmp_path, "p.csv", "user_id,ts,amount\n1,2021-01-01,5\n"))
    assert store.events_df()["event_type"].tolist() == ["purchase"]


def test_event_type_value_map_and_unmapped_values(store: Store, tmp_path: Path) -> None:
    text = (
        "uid,when,kind\n1,2021-01-01,PageView\n1,2021-01-02,Purchase\n1,2021-01-03,sale\n"
        "1,2021-01-04,refund\n1,2021-01-05,\n"
    )
    mapping = Mapping.from_cli(
        ["user_id=uid", "ts=when", "event_type=kind"], ["PageView=view", "sale=purchase"]
    )
    report = ingest(store, _file(tmp_path, "k.csv", text), mapping)
    _balanced(report)
    assert sorted(store.events_df()["event_type"]) == ["purchase", "purchase", "view"]
    assert report.reasons == {"unmapped event type": 1, "missing event_type": 1}
    no_column = Mapping.from_cli(["user_id=uid", "ts=when"], ["sale=purchase"])
    with pytest.raises(SchemaError, match="--map event_type=COLUMN"):
        ingest(store, _file(tmp_path, "k.csv", text), no_column)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (",2021-01-01,1,", "missing user_id"),
        ("u,,1,", "missing ts"),
        ("u,not a date,1,", "unparseable ts"),
        ("u,2031-01-01,1,", "ts in the future"),
        ("u,2021-01-01,-3,", "negative amount"),
        ("u,2021-01-01,abc,", "unparseable amount"),
        ("u,2021-01-01,1,7", "rating outside 1-5"),
        ("u,2021-01-01,1,0", "rating outside 1-5"),
    ],
)
def test_each_bad_row_is_quarantined_with_its_reason(
    store: Store, tmp_path: Path, row: str, reason: str
) -> None:
    text = f"user_id,ts,amount,rating\nok,2021-01-01,1,5\n{row}\n"
    report = ingest(store, _file(tmp_path, "b.csv", text), now=pd.Timestamp("2030-01-01"))
    _balanced(report)
    assert report.loaded == 1
    assert report.reasons == {reason: 1}
    line = store.con.execute("SELECT source_line FROM quarantine").fetchone()
    assert line == (3,)


def test_future_tolerance(store: Store, tmp_path: Path) -> None:
    text = "user_id,ts\na,2030-01-01 12:00\nb,2030-01-03\n"
    report = ingest(
        store,
        _file(tmp_path, "f.csv", text),
        now=pd.Timestamp("2030-01-01"),
        future_tolerance=pd.Timedelta("1D"),
    )
    assert (report.loaded, report.reasons) == (1, {"ts in the future": 1})


def test_strict_fails_and_loads_nothing(store: Store, tmp_path: Path) -> None:
    path = _file(tmp_path, "retail.csv", RETAIL_CSV)
    with pytest.raises(QuarantineError, match="--strict") as info:
        ingest(store, path, RETAIL_MAP, strict=True)
    assert "missing user_id" in str(info.value)
    assert _count(store, "SELECT count(*) FROM events") == 0
    assert _count(store, "SELECT count(*) FROM quarantine") == 0
    assert _count(store, "SELECT count(*) FROM ingests") == 0


def test_missing_required_column_names_the_columns_and_the_fix(
    store: Store, tmp_path: Path
) -> None:
    path = _file(tmp_path, "retail.csv", RETAIL_CSV)
    with pytest.raises(SchemaError) as info:
        ingest(store, path)
    message = str(info.value)
    assert "user_id" in message and "ts" in message
    assert "CustomerID" in message and "InvoiceDate" in message
    # the usual names of the required columns are named in the fix
    assert "--map user_id=CustomerID --map ts=InvoiceDate" in message
    with pytest.raises(SchemaError, match="not a column"):
        ingest(store, path, RETAIL_MAP.merge(Mapping.from_cli(["user_id=CustomerId2"])))
    # a column of no usual name: the fix keeps the placeholder
    odd = _file(tmp_path, "odd.csv", "who,when\nu1,2015-01-01\n")
    with pytest.raises(SchemaError, match=r"--map user_id=COLUMN --map ts=COLUMN\."):
        ingest(store, odd)


def test_unread_columns_are_reported_and_usual_names_get_the_map_that_reads_them(
    tmp_path: Path,
) -> None:
    text = "customer,date,type,price,qty,colour\nu1,2015-01-01,view,9.5,2,red\n"
    path = _file(tmp_path, "shop.csv", text)
    base = Mapping.from_cli(["user_id=customer", "ts=date"])
    with Store(tmp_path / "a.duckdb") as store:
        with pytest.warns(RetentionWarning) as caught:
            report = ingest(store, path, base)
        assert report.unread == ["type", "price", "qty", "colour"]
        assert report.to_dict()["unread"] == report.unread
        (message,) = [str(w.message) for w in caught]
        assert "--map event_type=type --map quantity=qty --map amount=price" in message
        assert "new store" in message and "unit price times quantity" in message
        assert "colour" not in message  # no canonical column is called that
        # unmapped, the event type is the default and the money is empty
        row = store.con.execute("SELECT event_type, amount FROM events").fetchone()
        assert row == ("purchase", None)
    # following the hint reads them, and nothing is left to point out
    fixed = base.merge(Mapping.from_cli(["event_type=type", "amount=price", "quantity=qty"]))
    with Store(tmp_path / "b.duckdb") as store, warnings.catch_warnings():
        warnings.simplefilter("error", RetentionWarning)
        report = ingest(store, path, fixed)
        assert report.unread == ["colour"]
        row = store.con.execute("SELECT event_type, amount, quantity FROM events").fetchone()
        assert row is not None and row[0] == "view" and float(row[1]) == 9.5 and row[2] == 2.0
    # a column an expression reads is read
    expr = base.merge(Mapping.from_cli(["amount=price * qty", "event_type=type"]))
    with Store(tmp_path / "c.duckdb") as store:
        assert ingest(store, path, expr).unread == ["colour"]


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("empty.csv", b"", "empty"),
        ("blank.csv", b"\n\n  \n", "empty"),
        ("header.csv", b"user_id,ts\n", "no rows"),
        ("binary.csv", bytes(range(256)) * 20, "binary"),
        ("zip.csv", b"PK\x03\x04" + b"\x00" * 100, "zip"),
        ("utf16.csv", "user_id,ts\n".encode("utf-16"), "UTF-16"),
        ("broken.parquet", b"PAR1 this is not really parquet", "Parquet"),
        ("bad.csv.gz", b"\x1f\x8b\x08\x00garbage", "gzip"),
        ("array.json", b'[{"user_id": 1, "ts": "2021-01-01"}]', "JSON Lines"),
    ],
)
def test_unreadable_files_raise_read_error(
    store: Store, tmp_path: Path, name: str, data: bytes, needle: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ReadError) as info:
        ingest(store, path)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)
    assert _count(store, "SELECT count(*) FROM ingests") == 0


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz", "events.csv"])
def test_wrong_encoding_without_bom_is_a_read_error(
    store: Store, tmp_path: Path, name: str
) -> None:
    # utf-16 asked for a UTF-8 file: Python raises a bare UnicodeError (no BOM), not a decode error
    line = (
        '{"user_id": "a", "ts": "2021-01-01"}\n'
        if "jsonl" in name
        else "user_id,ts\na,2021-01-01\n"
    )
    data = line.encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(ReadError, match="utf-16"):
        ingest(store, path, Mapping(encoding="utf-16"))
    assert _count(store, "SELECT count(*) FROM ingests") == 0


def test_missing_file(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="does not exist"):
        ingest(store, tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("name", "text", "encoding"),
    [
        ("semi.csv", "user_id;ts;amount\r\nu1;2021-01-01;1.5\r\nu2;2021-01-02;2\r\n", "utf-8"),
        ("tab.tsv", "user_id\tts\tamount\nu1\t2021-01-01\t1\nu2\t2021-01-02\t2\n", "utf-8"),
        ("pipe.txt", "user_id|ts|amount\nu1|2021-01-01|1\nu2|2021-01-02|2\n", "utf-8"),
        ("bom.csv", "\ufeffuser_id,ts,amount\r\nu1,2021-01-01,1\r\nu2,2021-01-02,2\r\n", "utf-8"),
        ("latin.csv", "user_id,ts,text\nJosé,2021-01-01,crème\nAnn,2021-01-02,ok\n", "latin-1"),
        ("gz.csv.gz", "user_id,ts\nu1,2021-01-01\nu2,2021-01-02\n", "utf-8"),
        (
            "quoted.csv",
            'user_id,ts,text\nu1,2021-01-01,"a, b\nc"\nu2,2021-01-02,"x ""y"""\n',
            "utf-8",
        ),
    ],
)
def test_csv_dialects(store: Store, tmp_path: Path, name: str, text: str, encoding: str) -> None:
    report = ingest(store, _file(tmp_path, name, text, encoding))
    _balanced(report)
    assert (report.read, report.loaded) == (2, 2)
    users = sorted(store.events_df()["user_id"])
    assert users in (["u1", "u2"], ["Ann", "José"])
    if name == "latin.csv":
        assert "crème" in store.events_df()["text"].tolist()
    if name == "quoted.csv":
        assert sorted(store.events_df()["text"]) == ["a, b\nc", 'x "y"']


def test_malformed_csv_rows_are_quarantined_and_counted(store: Store, tmp_path: Path) -> None:
    text = "user_id,ts,amount\nu1,2021-01-01,1\nu2,2021-01-02,2,extra,cols\nu3,2021-01-03,3\n"
    report = ingest(store, _file(tmp_path, "m.csv", text))
    _balanced(report)
    assert report.read == 3 and report.loaded == 2 and report.quarantined == 1
    assert next(iter(report.reasons)).startswith("malformed row")
    assert store.con.execute("SELECT source_line FROM quarantine").fetchall() == [(3,)]


def test_jsonl_with_bad_lines(store: Store, tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "user_id": 1,
                "ts": "2021-01-01T10:00:00Z",
                "event_type": "purchase",
                "amount": 3.5,
                "extra": [1],
            }
        ),
        "{not json",
        json.dumps([1, 2]),
        "",
        json.dumps({"user_id": "2", "ts": "2021-01-01T10:00:00+02:00", "event_type": "view"}),
    ]
    report = ingest(store, _file(tmp_path, "e.jsonl", "\n".join(lines) + "\n"))
    _balanced(report)
    assert (report.read, report.loaded, report.quarantined) == (4, 2, 2)
    events = store.events_df()
    assert events["ts"].tolist() == [
        pd.Timestamp("2021-01-01 10:00"),
        pd.Timestamp("2021-01-01 08:00"),
    ]  # offset -> UTC
    lines_q = store.con.execute("SELECT source_line, reason FROM quarantine ORDER BY 1").fetchall()
    assert lines_q == [(2, "malformed JSON line"), (3, "JSON line is not an object")]


def test_parquet_with_typed_columns(store: Store, tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "cust": [17850.0, None, 12.0],
            "when": pd.to_datetime(["2021-01-01", "2021-01-02", "2021-01-03"]).tz_localize(
                "Europe/Paris"
            ),
            "price": [1.005, 2.0, 3.0],
        }
    )
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    report = ingest(store, path, Mapping.from_cli(["user_id=cust", "ts=when", "amount=price"]))
    _balanced(report)
    assert report.reasons == {"missing user_id": 1}
    events = store.events_df()
    assert events["user_id"].tolist() == ["12", "17850"]
    assert events["ts"].min() == pd.Timestamp("2020-12-31 23:00")  # Paris midnight in UTC


def test_integer_yyyymmdd_dates_and_ts_format(store: Store, tmp_path: Path) -> None:
    df = pd.DataFrame({"id": [1, 2], "date": [19970101, 19970315], "d": ["01/02/1997", "x"]})
    report = ingest_frame(
        store, df, Mapping.from_cli(["user_id=id", "ts=date"]), source_name="cdnow"
    )
    assert report.loaded == 2
    assert store.events_df()["ts"].tolist() == [
        pd.Timestamp("1997-01-01"),
        pd.Timestamp("1997-03-15"),
    ]
    path = _file(tmp_path, "dm.csv", "user_id,ts\na,01/02/1997\nb,13/02/1997\n")
    report = ingest(store, path, Mapping(ts_format="%d/%m/%Y"))
    assert report.loaded == 2
    ts = store.events_df(users=["a", "b"])["ts"].tolist()
    assert ts == [pd.Timestamp("1997-02-01"), pd.Timestamp("1997-02-13")]


def test_ingest_frame_accounting_and_name(store: Store) -> None:
    df = pd.DataFrame({"user_id": ["a", "a", None], "ts": ["2021-01-01"] * 3})
    report = ingest_frame(store, df, source_name="my frame")
    _balanced(report)
    assert (report.loaded, report.duplicates, report.quarantined) == (1, 1, 1)
    assert store.table_df("ingests")["file"].tolist() == ["my frame"]
    assert store.con.execute("SELECT source_line FROM quarantine").fetchall() == [(3,)]


def test_side_tables_items_and_users(store: Store, tmp_path: Path) -> None:
    items = "sku,name,cat,price\nA,Apple,fruit,1.5\nB,Bread,bakery,2\nA,Apple2,fruit,9\n,x,y,1\n"
    report = ingest(
        store,
        _file(tmp_path, "items.csv", items),
        Mapping.from_cli(["item_id=sku", "title=name", "category=cat"]),
        table="items",
    )
    _balanced(report)
    assert (report.loaded, report.duplicates, report.reasons) == (2, 1, {"missing item_id": 1})
    assert store.table_df("items").set_index("item_id").loc["A", "title"] == "Apple"
    users = "cid,country,segment,Signup Date\n1,UK,gold,2020-01-01\n2,FR,silver,2020-02-01\n"
    report = ingest(
        store,
        _file(tmp_path, "users.csv", users),
        Mapping.from_cli(["user_id=cid", "signup_ts=Signup Date"]),
        table="users",
    )
    assert report.loaded == 2
    df = store.table_df("users").set_index("user_id")
    assert df.loc["1", "segment"] == "gold"  # unmapped columns kept as extra columns
    assert df.loc["2", "signup_ts"] == pd.Timestamp("2020-02-01")
    again = ingest(
        store,
        _file(tmp_path, "users.csv", users),
        Mapping.from_cli(["user_id=cid", "signup_ts=Signup Date"]),
        table="users",
    )
    assert (again.loaded, again.duplicates) == (0, 2)


def test_assignments_and_outcomes(store: Store) -> None:
    a = pd.DataFrame(
        {"experiment_id": ["e"] * 3, "user_id": ["1", "2", "1"], "variant": ["A", "B", "A"]}
    )
    assert ingest_frame(store, a, table="assignments", source_name="a").duplicates == 1
    o = pd.DataFrame(
        {
            "experiment_id": ["e", "e"],
            "user_id": ["1", "2"],
            "metric": ["spend", "spend"],
            "value": [1.0, "x"],
        }
    )
    report = ingest_frame(store, o, table="outcomes", source_name="o")
    assert (report.loaded, report.reasons) == (1, {"unparseable value": 1})


def test_bad_cell_in_an_expression_quarantines_only_its_row(store: Store, tmp_path: Path) -> None:
    text = "u,t,q,p\na,2021-01-01,2,1.5\nb,2021-01-01,x,1.5\nc,2021-01-01,3,2\n"
    mapping = Mapping.from_cli(["user_id=u", "ts=t", "amount=q * p"])
    report = ingest(store, _file(tmp_path, "x.csv", text), mapping)
    _balanced(report)
    assert report.loaded == 2
    assert report.reasons == {"unparseable amount": 1}
    assert sorted(store.events_df()["amount"]) == [3.0, 6.0]


def test_failed_ingest_leaves_the_store_unchanged(store: Store, tmp_path: Path) -> None:
    ingest(store, _file(tmp_path, "a.csv", "user_id,ts\na,2021-01-01\n"))
    before = store.con.execute("SELECT count(*) FROM events").fetchone()
    bad = Mapping.from_cli(["amount=CAST(user_id AS INTEGER)"])  # fails at run time
    with pytest.raises(ReadError, match="TRY_CAST"):
        ingest(store, _file(tmp_path, "b.csv", "user_id,ts\nb,2021-01-01\n"), bad)
    assert store.con.execute("SELECT count(*) FROM events").fetchone() == before
    assert _count(store, "SELECT count(*) FROM ingests") == 1
    # and the store is still usable
    assert ingest(store, _file(tmp_path, "c.csv", "user_id,ts\nc,2021-01-01\n")).loaded == 1

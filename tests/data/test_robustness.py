"""Ingest robustness (issue 10, data layer): what a careless or hostile file does to an ingest.

Each test here failed before the fix it covers: an unterminated quote, epoch times, times that
cannot be real, UTF-16 without a byte-order mark, repeated column names, a 20 MB field, NUL
bytes, re-ingesting bad rows, a full disk.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import retention.data._ingest as ingest_module
from retention.data import Mapping, Store, ingest, ingest_frame
from retention.data._validate import EPOCH_HINT, MIXED_HINT
from retention.exceptions import (
    ConfigError,
    QuarantineError,
    ReadError,
    RetentionWarning,
    SchemaError,
    StoreError,
)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def _count(store: Store, sql: str, params: list[object] | None = None) -> int:
    rows = store.con.execute(sql, params or []).fetchall()
    return int(rows[0][0])


def _quarantine(store: Store) -> list[tuple[int, str]]:
    rows = store.con.execute(
        "SELECT source_line, reason FROM quarantine ORDER BY source_line, reason"
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def _balanced(report) -> None:
    assert report.read == report.loaded + report.duplicates + report.quarantined
    assert sum(report.reasons.values()) == report.quarantined


def _rows(n: int, bad: dict[int, str] | None = None, text: bool = False) -> str:
    """``user_id,ts,amount[,text]`` with ``n`` records; record ``i`` (0-based) replaced by
    ``bad[i]``. Record ``i`` sits on file line ``i + 2``."""
    lines = ["user_id,ts,amount" + (",text" if text else "")]
    for i in range(n):
        if bad and i in bad:
            lines.append(bad[i])
        else:
            extra = ',"hello, world"' if text else ""
            lines.append(f"u{i + 1},2020-01-0{1 + i % 9},{i % 50}.5{extra}")
    return "\n".join(lines) + "\n"


# -- 1. an unterminated quote ----------------------------------------------------------------------


def test_one_unterminated_quote_quarantines_its_record_not_the_file(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "quote.csv"
    path.write_text(_rows(1000, {499: 'u500,2020-01-01,"5'}))
    report = ingest(store, path)  # was: SchemaError "has no user_id and no ts column"
    _balanced(report)
    assert (report.read, report.loaded, report.quarantined) == (1000, 999, 1)
    assert _quarantine(store) == [(501, "malformed row (unterminated quote)")]
    raw = store.con.execute("SELECT raw FROM quarantine").fetchall()[0][0]
    assert raw == 'u500,2020-01-01,"5'
    # the records after it are all there, with their own values
    assert _count(store, "SELECT count(*) FROM events WHERE user_id IN ('u501', 'u1000')") == 2


def test_an_unterminated_quote_keeps_the_quoting_of_the_other_records(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "quoted.csv"
    bad = {499: 'u500,2020-01-01,5,"oops', 799: ",2020-01-01,5,x"}  # and a missing user_id
    path.write_text(_rows(1000, bad, text=True))
    report = ingest(store, path)
    _balanced(report)
    assert (report.loaded, report.quarantined) == (998, 2)
    # the line numbers of the records after the cut line are those of the file
    assert _quarantine(store) == [
        (501, "malformed row (unterminated quote)"),
        (801, "missing user_id"),
    ]
    texts = store.con.execute("SELECT DISTINCT text FROM events").fetchall()
    assert texts == [("hello, world",)]  # quoted delimiters still read as one field


def test_an_unterminated_quote_the_sniffer_never_saw_does_not_swallow_the_rest(
    store: Store, tmp_path: Path
) -> None:
    # far past DuckDB's sniffing sample: the scan itself meets the quote, which then runs on
    # to the end of the file (it used to end the read there: 30,000 records read of 40,000)
    path = tmp_path / "late.csv"
    path.write_text(_rows(40_000, {29_999: 'u30000,2020-01-01,"5', 35_000: 'u35001,x,"7'}))
    report = ingest(store, path)
    _balanced(report)
    assert (report.read, report.loaded, report.quarantined) == (40_000, 39_998, 2)
    assert _quarantine(store) == [
        (30_001, "malformed row (unterminated quote)"),
        (35_002, "malformed row (unterminated quote)"),
    ]


def test_unterminated_quote_with_a_latin1_gzip_file(store: Store, tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "quote.csv.gz"
    text = _rows(300, {99: 'u100,2020-01-01,"5', 10: "u11\xe9,2020-01-02,1"})
    path.write_bytes(gzip.compress(text.encode("latin-1")))
    report = ingest(store, path)
    _balanced(report)
    assert (report.loaded, report.quarantined) == (299, 1)
    assert _quarantine(store) == [(101, "malformed row (unterminated quote)")]
    assert _count(store, "SELECT count(*) FROM events WHERE user_id = 'u11\xe9'") == 1


# -- 3. epoch times and files where every row is quarantined ---------------------------------------

SECONDS = [1_600_000_000 + 3600 * i for i in range(50)]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("s.csv", "user_id,ts\n" + "".join(f"u{i},{t}\n" for i, t in enumerate(SECONDS))),
        ("ms.csv", "user_id,ts\n" + "".join(f"u{i},{t * 1000}\n" for i, t in enumerate(SECONDS))),
        (
            "us.csv",
            "user_id,ts\n" + "".join(f"u{i},{t * 1_000_000}\n" for i, t in enumerate(SECONDS)),
        ),
        (
            "numbers.jsonl",
            "".join(
                json.dumps({"user_id": f"u{i}", "ts": t}) + "\n" for i, t in enumerate(SECONDS)
            ),
        ),
        (
            "strings.jsonl",
            "".join(
                json.dumps({"user_id": f"u{i}", "ts": str(t * 1000)}) + "\n"
                for i, t in enumerate(SECONDS)
            ),
        ),
        (
            "fractions.jsonl",
            "".join(
                json.dumps({"user_id": f"u{i}", "ts": t + 0.5}) + "\n"
                for i, t in enumerate(SECONDS)
            ),
        ),
    ],
)
def test_epoch_times_are_read_by_their_magnitude(
    store: Store, tmp_path: Path, name: str, content: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    report = ingest(store, path)  # was: every row "unparseable ts"
    assert (report.loaded, report.quarantined) == (50, 0)
    ts = store.events_df().sort_values("ts")["ts"].reset_index(drop=True)
    expected = pd.to_datetime(pd.Series(SECONDS), unit="s")
    if name.startswith("fractions"):
        expected = expected + pd.Timedelta("500ms")
    assert (ts == expected).all()


def test_epoch_milliseconds_are_not_read_as_calendar_digits(store: Store, tmp_path: Path) -> None:
    # 13 digits used to go through %Y%m%d%H%M%S and load as the year 1600
    path = tmp_path / "ms.csv"
    path.write_text("user_id,ts\nu1,1600010800000\nu2,1600014400000\n")
    ingest(store, path)
    years = store.events_df()["ts"].dt.year.unique().tolist()
    assert years == [2020]


def test_calendar_digits_stay_dates(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "ymd.csv"
    path.write_text("user_id,ts\nu1,20200101\nu2,20211231\n")
    ingest(store, path)
    assert sorted(store.events_df()["ts"].dt.strftime("%Y-%m-%d")) == ["2020-01-01", "2021-12-31"]


def test_epoch_unit_given_outright(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "given.csv"
    path.write_text("user_id,ts\nu1,1600000000000\nu2,1600000000\n")
    report = ingest(store, path, Mapping(ts_format="EPOCH_MS"))
    # the second is read as milliseconds too (one unit per column): 1970-01-19, before the floor
    assert report.loaded == 1 and report.reasons == {"ts before 1990-01-01": 1}
    assert store.events_df()["ts"].iloc[0] == pd.Timestamp(1_600_000_000, unit="s")
    frame = pd.DataFrame({"user_id": ["a"], "ts": [1_600_000_000_000]})
    ingest_frame(store, frame, Mapping(ts_format="epoch_ms"), source_name="f")
    assert _count(store, "SELECT count(*) FROM events WHERE user_id = 'a'") == 1


def test_epoch_numbers_of_mixed_units_say_how_to_map_them(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    rows = [f"u{i},{t}" for i, t in enumerate(SECONDS[:5])]
    rows += [f"v{i},{t * 1000}" for i, t in enumerate(SECONDS[:5])]
    path.write_text("user_id,ts\n" + "\n".join(rows) + "\n" + "w1,2020-01-01\n")
    report = ingest(store, path)
    assert report.loaded == 1  # the ISO time
    assert report.reasons == {f"unparseable ts ({MIXED_HINT})": 10}
    assert "epoch_ms" in MIXED_HINT and "ts_format" in MIXED_HINT


def test_every_row_quarantined_raises_after_keeping_the_quarantine(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "small.csv"
    path.write_text("user_id,ts\nu1,17\nu2,42\nu3,99\n")
    with pytest.raises(QuarantineError) as info:
        ingest(store, path)  # was: exit 0 with 0 loaded and no hint
    message = str(info.value)
    assert "All 3 rows" in message and "nothing was loaded" in message
    assert EPOCH_HINT in message and "allow_all_quarantined=True" in message
    assert "\n" not in message
    # committed: the quarantine keeps the rows and the ingest log the accounting
    assert _count(store, "SELECT count(*) FROM quarantine") == 3
    assert store.con.execute("SELECT read, loaded, quarantined FROM ingests").fetchall() == [
        (3, 0, 3)
    ]
    assert _count(store, "SELECT count(*) FROM events") == 0
    # again: still an error (the file is no better), and its rows are not stored twice
    with pytest.raises(QuarantineError, match="All 3 rows"):
        ingest(store, path)
    assert _count(store, "SELECT count(*) FROM quarantine") == 3
    # told otherwise: accepted; the rows already quarantined count as duplicates
    report = ingest(store, path, allow_all_quarantined=True)
    assert (report.loaded, report.duplicates, report.quarantined) == (0, 3, 0)
    assert _count(store, "SELECT count(*) FROM quarantine") == 3


def test_duplicates_only_is_not_all_quarantined(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("user_id,ts\nu1,2020-01-01\n")
    ingest(store, path)
    again = ingest(store, path)  # nothing new, nothing bad: no error
    assert (again.loaded, again.duplicates, again.quarantined) == (0, 1, 0)


# -- 4. times that cannot be real ------------------------------------------------------------------


def test_times_before_the_floor_are_quarantined(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "old.csv"
    path.write_text(
        "user_id,ts\nu1,0001-01-01\nu2,1900-01-01\nu3,1970-01-01\nu4,1989-12-31 23:59:59\n"
        "u5,1990-01-01\nu6,2020-01-01\n"
    )
    report = ingest(store, path)  # was: all six loaded
    assert report.loaded == 2
    assert _quarantine(store) == [(i, "ts before 1990-01-01") for i in (2, 3, 4, 5)]


def test_the_floor_is_configurable(store: Store, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "old.csv"
    path.write_text("user_id,ts\nu1,1900-01-01\nu2,1970-01-01\nu3,2020-01-01\n")
    monkeypatch.setenv("RETENTION_MIN_TS", "1950-06-01")
    report = ingest(store, path)
    assert report.reasons == {"ts before 1950-06-01": 1}
    # the mapping's min_ts wins over the setting, and the keyword over both
    other = tmp_path / "other.csv"
    other.write_text("user_id,ts\nv1,1900-01-01\nv2,1970-01-01\n")
    assert ingest(store, other, Mapping(min_ts="none")).loaded == 2
    third = tmp_path / "third.csv"
    third.write_text("user_id,ts\nw1,1900-01-01\nw2,1970-01-01\n")
    report = ingest(store, third, Mapping(min_ts="none"), min_ts=pd.Timestamp("1960-01-01"))
    assert (report.loaded, report.reasons) == (1, {"ts before 1960-01-01": 1})
    monkeypatch.setenv("RETENTION_MIN_TS", "last tuesday")
    with pytest.raises(ConfigError, match="RETENTION_MIN_TS must be a date"):
        ingest(store, third)
    with pytest.raises(ConfigError, match="min_ts must be a date"):
        Mapping(min_ts="soon")


def test_the_floor_applies_to_frames_and_other_time_columns(store: Store) -> None:
    frame = pd.DataFrame(
        {"user_id": ["a", "b"], "signup_ts": pd.to_datetime(["1970-01-01", "2015-03-01"])}
    )
    report = ingest_frame(store, frame, table="users", source_name="users")
    assert (report.loaded, report.reasons) == (1, {"signup_ts before 1990-01-01": 1})


# -- 5. smaller ones -------------------------------------------------------------------------------


def test_utf16_without_a_byte_order_mark_is_named_not_called_binary(
    store: Store, tmp_path: Path
) -> None:
    text = "user_id,ts\nu1,2020-01-01\nu2,2020-01-02\n"
    path = tmp_path / "le.csv"
    path.write_bytes(text.encode("utf-16-le"))
    with pytest.raises(ReadError) as info:
        ingest(store, path)
    message = str(info.value)
    assert "UTF-16LE" in message and "binary" in message  # "not binary"
    assert "iconv -f UTF-16LE -t UTF-8" in message and 'encoding = "utf-16-le"' in message
    assert ingest(store, path, Mapping(encoding="utf-16le")).loaded == 2
    big_endian = tmp_path / "be.csv"
    big_endian.write_bytes(text.replace("u1", "x1").replace("u2", "x2").encode("utf-16-be"))
    with pytest.raises(ReadError, match="UTF-16BE"):
        ingest(store, big_endian)
    assert ingest(store, big_endian, Mapping(encoding="utf-16-be")).loaded == 2
    jsonl = tmp_path / "le.jsonl"
    jsonl.write_bytes('{"user_id": "j1", "ts": "2020-01-01"}\n'.encode("utf-16"))
    assert ingest(store, jsonl, Mapping(encoding="utf-16")).loaded == 1


def test_a_binary_file_is_still_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    with pytest.raises(ReadError, match="binary file"):
        ingest(store, path)


def test_a_duplicated_column_the_mapping_uses_is_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("user_id,ts,amount,Amount\nu1,2020-01-01,1,2\n")
    with pytest.raises(SchemaError) as info:
        ingest(store, path)  # was: the first amount, silently
    message = str(info.value)
    assert "'amount' 2 times" in message and "columns 3 and 4" in message
    assert "--map amount=Amount_1" in message
    # in an expression too
    with pytest.raises(SchemaError, match="'amount' 2 times"):
        ingest(store, path, Mapping.from_cli(["amount=amount * 2"]))
    # naming the other copy says which one is meant: loaded, with a warning that says so
    with pytest.warns(RetentionWarning, match="Amount_1 for amount is used"):
        report = ingest(store, path, Mapping.from_cli(["amount=Amount_1"]))
    assert report.loaded == 1 and store.events_df()["amount"].iloc[0] == 2.0


def test_a_duplicated_column_nobody_uses_warns(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("user_id,ts,note,note\nu1,2020-01-01,a,b\n")
    with pytest.warns(RetentionWarning, match="'note' 2 times .*none is mapped"):
        report = ingest(store, path)
    assert report.loaded == 1


def test_a_20_mb_field_quarantines_its_record_on_its_line(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as fh:
        fh.write("user_id,ts,text\nu1,2020-01-01,a\nu2,2020-01-01,")
        fh.write("x" * (20 << 20))
        fh.write("\nu3,2020-01-02,b\n")
    report = ingest(store, path)  # was: the whole file refused, naming line 1
    _balanced(report)
    assert (report.loaded, report.quarantined) == (2, 1)
    assert _quarantine(store) == [(3, "malformed row (longer than 16 MiB)")]


@pytest.mark.parametrize("padding", [0, 70_000], ids=["in the head", "after 64 KiB"])
def test_a_nul_byte_quarantines_its_record_wherever_it_is(
    store: Store, tmp_path: Path, padding: int
) -> None:
    n = padding // 16
    body = b"".join(b"p%d,2020-01-01\n" % i for i in range(n))
    path = tmp_path / "nul.csv"
    path.write_bytes(b"user_id,ts\n" + body + b"u\x002,2020-01-01\nu3,2020-01-02\n")
    report = ingest(store, path)  # was: refused as binary, or stored with the NUL
    _balanced(report)
    assert (report.loaded, report.quarantined) == (n + 1, 1)
    assert _quarantine(store) == [(n + 2, "NUL byte")]
    assert _count(store, "SELECT count(*) FROM events WHERE contains(user_id, chr(0))") == 0


def test_a_nul_byte_in_json_lines_but_not_in_a_typed_frame(store: Store, tmp_path: Path) -> None:
    # JSON Lines: a NUL from an escape, invisible in the file's bytes, is caught too
    path = tmp_path / "nul.jsonl"
    path.write_text(
        '{"user_id": "c\\u0000", "ts": "2020-01-01"}\n{"user_id": "d", "ts": "2020-01-02"}\n'
    )
    report = ingest(store, path)
    assert report.reasons == {"NUL byte": 1} and report.loaded == 1
    # a frame (like Parquet) is typed data, not a text file: its strings are kept as given
    frame = pd.DataFrame({"user_id": ["a\x00", "b"], "ts": pd.to_datetime(["2020-01-01"] * 2)})
    assert ingest_frame(store, frame, source_name="frame").loaded == 2


def test_reingesting_bad_rows_adds_no_quarantine_rows(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("user_id,ts\nu1,2020-01-01\n,2020-01-02\nu3,soon\n")
    first = ingest(store, path)
    again = ingest(store, path)  # was: two more quarantine rows
    for report in (first, again):
        _balanced(report)
    assert (first.loaded, first.duplicates, first.quarantined) == (1, 0, 2)
    # the bad rows are stored once: the second time they are duplicates, like the good one
    assert (again.loaded, again.duplicates, again.quarantined, again.reasons) == (0, 3, 0, {})
    assert _count(store, "SELECT count(*) FROM quarantine") == 2
    logged = store.con.execute(
        "SELECT i.quarantined, count(q.ingest_id) FROM ingests i "
        "LEFT JOIN quarantine q USING (ingest_id) GROUP BY i.ingest_id, 1 ORDER BY i.ingest_id"
    ).fetchall()
    assert logged == [(2, 2), (0, 0)]  # the log agrees with the quarantine, ingest by ingest
    # another file with bad rows on the same lines keeps its own
    other = tmp_path / "other.csv"
    other.write_text("user_id,ts\nv1,2020-01-01\n,2020-01-03\nv3,later\n")
    assert ingest(store, other).quarantined == 2
    assert _count(store, "SELECT count(*) FROM quarantine") == 4
    # the same file changed (one more bad row): a new file hash, so all three are its own
    path.write_text("user_id,ts\nu1,2020-01-01\n,2020-01-02\nu3,soon\nu4,1970-01-01\n")
    assert ingest(store, path).quarantined == 3
    assert _count(store, "SELECT count(*) FROM quarantine") == 7
    # a file into another table is its own ingest; again, it adds nothing
    items = tmp_path / "items.csv"
    items.write_text("item_id,price\n,1\ni2,-3\n")
    assert ingest(store, items, table="items", allow_all_quarantined=True).quarantined == 2
    assert ingest(store, items, table="items", allow_all_quarantined=True).quarantined == 0


def test_a_missing_file_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store, pytest.raises(ReadError, match="does not exist"):
        ingest(store, tmp_path / "nope.csv")
    with Store(tmp_path / "s.duckdb", read_only=True) as store:
        assert _count(store, "SELECT count(*) FROM ingests") == 0


def test_a_full_disk_is_one_line_and_the_store_is_intact(
    store: Store, tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "e.csv"
    path.write_text("user_id,ts\nu1,2020-01-01\n,2020-01-02\n")
    ingest(store, path)
    before = [
        _count(store, f"SELECT count(*) FROM {t}") for t in ("events", "quarantine", "ingests")
    ]

    def full(*args: object, **kwargs: object) -> int:
        raise duckdb.IOException(
            'IO Error: Could not write file "s.duckdb.wal": No space left on device'
        )

    monkeypatch.setattr(ingest_module, "_append_events", full)
    more = tmp_path / "more.csv"
    more.write_text("user_id,ts\nu2,2020-01-01\n,2020-01-05\n")
    with pytest.raises(StoreError) as info:
        ingest(store, more)  # was: an IOException traceback
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message
    assert "rolled back" in message and "Free disk space" in message
    after = [
        _count(store, f"SELECT count(*) FROM {t}") for t in ("events", "quarantine", "ingests")
    ]
    assert after == before


def test_io_errors_while_reading_stay_read_errors() -> None:
    reading = duckdb.IOException("IO Error: Could not read from file: Permission denied")
    writing = duckdb.IOException("IO Error: Could not write file: No space left on device")
    assert not ingest_module._write_failure(reading, writing=False)
    assert ingest_module._write_failure(writing, writing=False)
    assert ingest_module._write_failure(reading, writing=True)
    assert not ingest_module._write_failure(ValueError("x"), writing=True)


def test_clean_files_raise_no_warning(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "clean.csv"
    path.write_text(_rows(20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = ingest(store, path)
    assert report.ok


def test_crlf_file_with_an_unterminated_quote(store: Store, tmp_path: Path) -> None:
    # DuckDB places a CRLF record one byte early (on the line feed before it)
    path = tmp_path / "crlf.csv"
    text = _rows(1000, {499: 'u500,2020-01-01,"5', 700: ",2020-01-01,1"}).replace("\n", "\r\n")
    path.write_bytes(text.encode())
    report = ingest(store, path)
    assert (report.read, report.loaded) == (1000, 998)
    assert _quarantine(store) == [
        (501, "malformed row (unterminated quote)"),
        (702, "missing user_id"),
    ]


def test_past_the_repair_limit_a_runaway_quote_is_said(
    store: Store, tmp_path: Path, monkeypatch
) -> None:
    import retention.data._readers as readers

    monkeypatch.setattr(readers, "MAX_QUOTE_REPAIRS", 2)
    path = tmp_path / "many.csv"
    path.write_text(_rows(500, {i: f'u{i},2020-01-01,"5' for i in (100, 200, 300)}))
    with pytest.warns(RetentionWarning, match="more than 2 unterminated quotes.*line 302 runs on"):
        report = ingest(store, path)
    _balanced(report)
    assert report.loaded == 300 - 2  # the records after line 302 went with it
    lines = [line for line, _ in _quarantine(store)]
    assert lines == [102, 202, 302]

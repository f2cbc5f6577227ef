"""ingest's fast path: stable id form, repeated ids, store overlap, settings restored."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from retention.data import Store, ingest, ingest_frame
from retention.exceptions import QuarantineError

CSV = (
    "user_id,ts,event_type,item_id,order_id,quantity,amount\n"
    "u1,2024-01-02 03:04:05,purchase,i1,,2,10.5\n"
    "u1,2024-01-02 03:04:05,purchase,i1,,2,10.5\n"  # repeated: a duplicate
    "u2,2024-01-03 00:00:00,view,i2,o9,,\n"
    "u3,2024-01-04 00:00:00,cart,i3,o1,1,1.25\n"
    "u3,2024-01-04 00:00:00,cart,i3,o1,1,1.25\n"  # repeated: a duplicate
    "u3,2024-01-04 00:00:00,cart,i3,o1,1,1.25\n"  # and again
    ",2024-01-05 00:00:00,view,i4,,,\n"  # missing user_id: quarantined
    "u4,2024-01-06 00:00:00,view,i5,,,-3\n"  # negative amount: quarantined
)


def _one(store: Store, sql: str) -> object:
    row = store.con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _setting(store: Store, name: str) -> str:
    return str(_one(store, f"SELECT current_setting('{name}')"))


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def test_generated_ids_keep_their_documented_form(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(CSV)
    ingest(store, path)
    # md5 of the canonical values joined by chr(31), a missing optional value as chr(30)
    expected = hashlib.md5(
        "\x1f".join(
            ["u1", "2024-01-02 03:04:05", "purchase", "i1", "\x1e", "2.0", "10.50", "\x1e", "\x1e"]
        ).encode()
    ).hexdigest()
    assert _one(store, "SELECT event_id FROM events WHERE user_id = 'u1'") == expected
    # every stored id equals the original concat_ws formula over the stored values
    mismatched = _one(
        store,
        "SELECT count(*) FROM events WHERE event_id <> md5(concat_ws(chr(31), user_id, "
        "CAST(ts AS VARCHAR), event_type, coalesce(item_id, chr(30)), "
        "coalesce(order_id, chr(30)), coalesce(CAST(quantity AS VARCHAR), chr(30)), "
        "coalesce(CAST(amount AS VARCHAR), chr(30)), coalesce(CAST(rating AS VARCHAR), "
        "chr(30)), coalesce(text, chr(30))))",
    )
    assert mismatched == 0


def test_repeated_rows_bad_rows_and_store_overlap_balance(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(CSV)
    first = ingest(store, path)
    assert (first.read, first.loaded, first.duplicates, first.quarantined) == (8, 3, 3, 2)
    assert first.reasons == {"missing user_id": 1, "negative amount": 1}
    assert _one(store, "SELECT count(DISTINCT event_id) FROM events") == 3

    # overlap: two stored events (one repeated in the file), one new event repeated twice
    overlap = tmp_path / "o.csv"
    lines = CSV.splitlines()
    new = "u9,2024-02-01 00:00:00,purchase,i9,o9,1,2.00"
    overlap.write_text("\n".join([lines[0], lines[1], lines[1], lines[3], new, new]) + "\n")
    second = ingest(store, overlap)
    assert (second.read, second.loaded, second.duplicates, second.quarantined) == (5, 1, 4, 0)
    assert _one(store, "SELECT count(*) FROM events") == 4
    assert _one(store, "SELECT count(DISTINCT event_id) FROM events") == 4
    assert _one(store, "SELECT count(*) FROM events WHERE user_id = 'u9'") == 1

    # the same file again adds nothing: its bad rows are in the quarantine already (same file,
    # line and reason), so they count as duplicates, like its good rows
    again = ingest(store, path)
    assert (again.loaded, again.duplicates, again.quarantined) == (0, 8, 0)
    lines_q = store.con.execute(
        "SELECT ingest_id, source_line FROM quarantine ORDER BY 2"
    ).fetchall()
    assert [(int(r[0]), int(r[1])) for r in lines_q] == [(first.ingest_id, 8), (first.ingest_id, 9)]


def test_file_without_repeats_loads_every_good_row(store: Store) -> None:
    df = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(50)],
            "ts": pd.date_range("2024-01-01", periods=50, freq="h"),
            "amount": [float(i) for i in range(50)],
        }
    )
    report = ingest_frame(store, df, source_name="frame")
    assert (report.loaded, report.duplicates, report.quarantined) == (50, 0, 0)
    assert _one(store, "SELECT count(DISTINCT event_id) FROM events") == 50


def test_duckdb_settings_are_restored_after_ingest(store: Store, tmp_path: Path) -> None:
    default_memory = _setting(store, "memory_limit")
    store.con.execute("SET disabled_compression_methods = 'rle'")
    disabled = _setting(store, "disabled_compression_methods")
    assert disabled.lower() == "rle"
    path = tmp_path / "e.csv"
    path.write_text(CSV)
    ingest(store, path)
    assert _setting(store, "disabled_compression_methods") == disabled
    assert _setting(store, "memory_limit") == default_memory
    with pytest.raises(QuarantineError):
        ingest(store, path, strict=True)  # a failed ingest restores them too
    assert _setting(store, "disabled_compression_methods") == disabled
    assert _setting(store, "memory_limit") == default_memory


@pytest.mark.parametrize("via", ["csv", "frame"])
def test_values_padded_with_spaces_are_trimmed(store: Store, tmp_path: Path, via: str) -> None:
    df = pd.DataFrame(
        {
            "user_id": [" u7 ", "u8", "   ", "\tu9"],
            "ts": [" 2024-01-01 00:00:00", "2024-01-02 00:00:00 ", "2024-01-03", "2024-01-04"],
            "event_type": [" VIEW ", "cart", "view", "view"],
            "amount": [" 2.5 ", "1", "1", "1"],
        }
    )
    if via == "csv":
        path = tmp_path / "p.csv"
        df.to_csv(path, index=False)
        report = ingest(store, path)
    else:
        report = ingest_frame(store, df, source_name="frame")
    assert (report.loaded, report.quarantined) == (3, 1)
    assert report.reasons == {"missing user_id": 1}
    rows = dict(
        store.con.execute(
            "SELECT user_id, event_type || ' ' || CAST(amount AS VARCHAR) FROM events"
        ).fetchall()
    )
    # spaces are trimmed (as DuckDB's trim does: spaces only, a tab stays)
    assert rows == {"u7": "view 2.50", "u8": "cart 1.00", "\tu9": "view 1.00"}


def test_string_compression_switch(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import retention.data._ingest as ingest_module

    path = tmp_path / "e.csv"
    path.write_text(CSV)
    monkeypatch.setattr(ingest_module, "INGEST_COMPRESS_STRINGS", True)
    report = ingest(store, path)
    assert (report.loaded, report.duplicates, report.quarantined) == (3, 3, 2)
    assert _setting(store, "disabled_compression_methods") == ""
    with Store(tmp_path / "other.duckdb") as other:
        monkeypatch.setattr(ingest_module, "INGEST_COMPRESS_STRINGS", False)
        ingest(other, path)
        assert _setting(other, "disabled_compression_methods") == ""
        ids = "SELECT string_agg(event_id, ',' ORDER BY event_id) FROM events"
        assert _one(other, ids) == _one(store, ids)


@pytest.mark.parametrize("numpy_max", [0, 10**9])
def test_repeated_ids_found_by_numpy_and_by_duckdb_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, numpy_max: int
) -> None:
    """Repeats are found by sorting hashes with numpy, or (very large files) by DuckDB."""
    import retention.data._ingest as ingest_module

    monkeypatch.setattr(ingest_module, "NUMPY_REPEATS_MAX", numpy_max)
    path = tmp_path / "e.csv"
    path.write_text(CSV)
    with Store(tmp_path / f"s{numpy_max}.duckdb") as store:
        report = ingest(store, path)
        assert (report.loaded, report.duplicates, report.quarantined) == (3, 3, 2)
        ids = "SELECT string_agg(event_id, ',' ORDER BY event_id) FROM events"
        loaded = _one(store, ids)
    with Store(tmp_path / "reference.duckdb") as reference:
        monkeypatch.setattr(ingest_module, "NUMPY_REPEATS_MAX", 10**9 - numpy_max)
        ingest(reference, path)
        assert _one(reference, ids) == loaded


def test_supplied_ids_keep_the_first_row_and_fill_missing_ones(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "s.csv"
    path.write_text(
        "id,user_id,ts,amount\n"
        "e1,u1,2024-01-01 00:00:00,1\n"
        "e1,u2,2024-01-02 00:00:00,2\n"  # same supplied id, other values: a duplicate
        ",u3,2024-01-03 00:00:00,3\n"  # no id: generated from the values
        ",u3,2024-01-03 00:00:00,3\n"  # the same values: the same generated id
    )
    from retention.data import Mapping

    report = ingest(store, path, Mapping(columns={"event_id": "id"}))
    assert (report.loaded, report.duplicates, report.quarantined) == (2, 2, 0)
    assert _one(store, "SELECT user_id FROM events WHERE event_id = 'e1'") == "u1"
    parts = ["u3", "2024-01-03 00:00:00", "purchase", *["\x1e"] * 3, "3.00", "\x1e", "\x1e"]
    generated = hashlib.md5("\x1f".join(parts).encode()).hexdigest()
    assert _one(store, "SELECT event_id FROM events WHERE user_id = 'u3'") == generated


def test_numbers_padded_blank_or_bad(store: Store, tmp_path: Path) -> None:
    """Numbers are cast as written (spaces allowed); a blank cell is missing, not bad."""
    path = tmp_path / "n.csv"
    path.write_text(
        "user_id,ts,quantity,amount\n"
        "u1,2024-01-01 00:00:00, 2 ,  3.5\n"
        'u2,2024-01-02 00:00:00,"   ",\n'
        "u3,2024-01-03 00:00:00,1,abc\n"
        "u4,2024-01-04 00:00:00,1,inf\n"
    )
    report = ingest(store, path)
    assert (report.loaded, report.quarantined) == (2, 2)
    assert report.reasons == {"unparseable amount": 2}
    rows = store.con.execute(
        "SELECT user_id, quantity, CAST(amount AS VARCHAR) FROM events ORDER BY 1"
    ).fetchall()
    assert rows == [("u1", 2.0, "3.50"), ("u2", None, None)]


def test_csv_is_sniffed_once_and_sampled_from_a_small_table(tmp_path: Path) -> None:
    """The scan spells out what the sniffer found (no sniffing per query) and sampling reads
    a table of the first rows, not the file."""
    import duckdb

    from retention.data._readers import SAMPLE_ROWS, read_file

    path = tmp_path / "big.csv"
    rows = SAMPLE_ROWS + 500
    path.write_text(
        "user_id;ts;amount\n" + "".join(f"u{i};2024-01-01 00:00:00;{i}\n" for i in range(rows))
    )
    con = duckdb.connect()
    source = read_file(con, path)
    assert "auto_detect=false" in source.scan.replace(" ", "")
    assert "delim=';'" in source.scan.replace(" ", "")
    assert source.first_line == 2
    sampled = con.execute(f"SELECT count(*) FROM {source.view}").fetchone()
    assert sampled == (SAMPLE_ROWS,)
    scanned = con.execute(f"SELECT count(*) FROM {source.scan}").fetchone()
    assert scanned == (rows,)
    source.close(con)


def test_a_nul_in_a_column_name_is_replaced_not_fatal(store: Store) -> None:
    df = pd.DataFrame({"user_id": ["u1"], "ts": ["2024-01-01"], "note\x00": ["x"]})
    report = ingest_frame(store, df, source_name="frame")
    assert (report.loaded, report.quarantined) == (1, 0)

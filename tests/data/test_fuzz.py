"""Property-based fuzzing of the readers: no crash, no uncounted row."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from retention.data import IngestReport, Mapping, Store, ingest
from retention.exceptions import DataError

pytestmark = pytest.mark.slow

HUGE = "x" * 100_000
FUZZ = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _ingest_bytes(data: bytes, name: str, mapping: Mapping | None = None) -> IngestReport | None:
    """Ingest ``data`` as file ``name`` into a fresh in-memory store; None on a clean error."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        with Store(":memory:") as store:
            try:
                # every row bad is an error by default; here it is a file to count
                report = ingest(store, path, mapping, allow_all_quarantined=True)
            except DataError as exc:  # a clean, one-line error is fine; anything else is not
                assert "\n" not in str(exc)
                return None
            assert report.read == report.loaded + report.duplicates + report.quarantined
            assert sum(report.reasons.values()) == report.quarantined
            stored = store.con.execute("SELECT count(*) FROM events").fetchone()
            assert stored == (report.loaded,)
            quarantined = store.con.execute("SELECT count(*) FROM quarantine").fetchone()
            assert quarantined == (report.quarantined,)
            return report


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash(data: bytes) -> None:
    _ingest_bytes(data, "random.csv")


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_after_a_valid_header_are_all_counted(data: bytes) -> None:
    _ingest_bytes(b"user_id,ts,amount\n" + data, "body.csv")


_cell = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=",;\t|\"'\r\n ", max_size=6),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.dates().map(str),
    st.just("<HUGE>"),  # a 100,000-character field (expanded when written)
    st.just(""),
)


@FUZZ
@given(
    rows=st.lists(st.tuples(_cell, _cell, _cell), min_size=1, max_size=30),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    bom=st.booleans(),
    crlf=st.booleans(),
    latin=st.booleans(),
)
def test_well_formed_csv_every_row_is_counted(
    rows: list[tuple[str, str, str]], delimiter: str, bom: bool, crlf: bool, latin: bool
) -> None:
    out = io.StringIO()
    # RFC 4180 wants a carriage return inside a field quoted; QUOTE_MINIMAL only quotes it
    # when it is part of the line terminator, so quote everything when one appears
    bare_cr = any("\r" in cell for row in rows for cell in row)
    writer = csv.writer(
        out,
        delimiter=delimiter,
        lineterminator="\r\n" if crlf else "\n",
        quoting=csv.QUOTE_ALL if bare_cr else csv.QUOTE_MINIMAL,
    )
    writer.writerow(["user_id", "ts", "amount"])
    writer.writerows([[HUGE if c == "<HUGE>" else c for c in row] for row in rows])
    text = out.getvalue()
    if latin:
        data = text.encode("latin-1", errors="replace")
        mapping = Mapping(delimiter=delimiter, header=True, encoding="latin-1")
    else:
        data = ("\ufeff" if bom else "").encode() + text.encode("utf-8", errors="surrogatepass")
        mapping = Mapping(delimiter=delimiter, header=True)
    try:
        data.decode("utf-8" if not latin else "latin-1")
    except UnicodeDecodeError:
        return  # lone surrogates: not valid text in any encoding we claim to read
    report = _ingest_bytes(data, "rows.csv", mapping)
    assert report is not None
    assert report.read == len(rows)


_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_record = st.fixed_dictionaries(
    {"user_id": _json_value, "ts": st.one_of(st.dates().map(str), _json_value)},
    optional={"amount": _json_value, "event_type": _json_value, "junk": _json_value},
)
_line = st.one_of(
    _record.map(json.dumps),
    _json_value.map(json.dumps),
    st.text(max_size=30).filter(lambda s: "\n" not in s and "\r" not in s),
)


@FUZZ
@given(st.lists(_line, min_size=1, max_size=30))
@example(['{"user_id": null, "ts": null}', '{"\\u0000":null}'])  # a NUL in a key (found in CI)
def test_jsonl_every_non_blank_line_is_counted(lines: list[str]) -> None:
    data = "\n".join(lines).encode("utf-8", errors="surrogatepass")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    report = _ingest_bytes(data, "records.jsonl")
    # lines as a text file splits them (\n, \r, \r\n), not as str.splitlines (which also
    # splits on \x1c-\x1e, \x85, \u2028...)
    expected = sum(1 for line in io.StringIO(text, newline=None) if line.strip())
    if report is not None:
        assert report.read == expected

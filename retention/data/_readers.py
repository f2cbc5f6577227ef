"""Readers: put a CSV, Parquet or JSON Lines file (or a DataFrame) in front of DuckDB.

Every reader yields a :class:`Source`: a relation whose rows are the file's records, in file
order, plus the records the reader itself could not parse (malformed CSV rows, lines that are not
JSON) so that they can be quarantined and counted rather than lost.

CSV files are read with every column as text (DuckDB ``read_csv(all_varchar=true)``, delimiter,
quoting and header sniffed, UTF-8 with or without BOM, latin-1 or UTF-16, LF or CRLF, gzip):
typing happens later, cell by cell, so one bad cell quarantines its row instead of failing the
file. What DuckDB's sniffer says is checked against the header line: when it cannot read the
file (a 20 MB field) or gives an answer the header contradicts (one column where the header has
several: an unterminated quote in its sample), the file is read with the header's delimiter and
RFC 4180 quoting instead, and the malformed records are quarantined with their line. A record
whose unterminated quote runs on over later lines is cut back to its own line: that line is
quarantined and the file is read again without it (at most :data:`MAX_QUOTE_REPAIRS` times; a
cost paid only by such files).

One rule for NUL bytes everywhere: a file whose first 64 KiB are mostly control bytes is refused
as binary (or, when every other byte is zero, as probably UTF-16 without a byte-order mark);
otherwise a record that carries a NUL byte is quarantined with reason ``NUL byte`` (by the
ingest, see :mod:`retention.data._ingest`).
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from retention.data._mapping import Mapping
from retention.exceptions import ReadError, RetentionWarning

__all__ = ["Source", "detect_format", "read_file", "read_frame"]

_EXT = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".txt": "csv",
    ".dat": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_HEAD_BYTES = 1 << 20
#: records of a CSV file kept for sampling types and formats (see :attr:`Source.view`)
SAMPLE_ROWS = 20000
#: longest CSV record DuckDB reads (bytes); a longer one is quarantined
MAX_LINE_SIZE = 16777216
#: how many runaway unterminated quotes are cut back to their line (one re-read of the file
#: each); beyond that, the record that runs on is quarantined whole
MAX_QUOTE_REPAIRS = 10
#: delimiters looked for in the header line, in order of preference on a tie
_DELIMITERS = (",", "\t", ";", "|")
_UTF16 = ("utf-16", "utf-16-le", "utf-16-be")


@dataclass
class Source:
    """A file or frame staged for ingest.

    Attributes
    ----------
    view : str
        Temporary view of the source columns, for sampling and type checks (for CSV files, a
        temporary table of the first :data:`SAMPLE_ROWS` records: a CSV scan under a
        ``LIMIT`` still reads ahead by many megabytes, so each sample query would cost a
        partial scan).
    scan : str
        Relation (SQL) that reads every record once, in file order: the stage is built from it
        with ``CREATE TABLE AS`` so that the stage's ``rowid`` is the 0-based record number.
    columns : list of str
        Source column names, in file order.
    types : dict of str to str
        DuckDB type of each column.
    text : bool
        Every column arrived as text (CSV, JSON Lines): values are typed later, cell by cell.
    first_line : int
        File line of record 0 (line numbers are exact unless quoted fields span lines); for
        Parquet files and frames, 1 (the record number counts from 1).
    has_line : bool
        The relation has a ``__line`` column with the source line of each record (JSON Lines).
    rejects : str or None
        After :meth:`after_scan`, a temporary table ``(line BIGINT, reason VARCHAR,
        raw VARCHAR)`` of records the reader could not parse, or None.
    drops : list of str
        SQL that removes the temporary objects.
    duplicates : dict of str to list of str
        A column name the header gives more than once (ignoring case) -> the names its
        occurrences are read as, in file order (``amount`` -> ``["amount", "amount_1"]``).
    positions : dict of str to int
        1-based position in the header of each column of ``duplicates``' lists.
    decoded : bool
        Values were decoded from escapes (JSON Lines: ``\\u0000``), so the file's bytes do not
        show every NUL its records hold.
    """

    view: str
    scan: str
    columns: list[str]
    types: dict[str, str]
    text: bool
    first_line: int = 1
    has_line: bool = False
    rejects: str | None = None
    drops: list[str] = field(default_factory=list)
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    decoded: bool = False
    _after: list[str] = field(default_factory=list)
    _repair: Callable[[duckdb.DuckDBPyConnection], Source | None] | None = None

    def after_scan(self, con: duckdb.DuckDBPyConnection) -> None:
        """Collect what the full scan rejected (CSV rows that could not be parsed)."""
        for sql in self._after:
            con.execute(sql)
        self._after.clear()

    def repair(self, con: duckdb.DuckDBPyConnection) -> Source | None:
        """After :meth:`after_scan`: a source that reads the file again without the line of
        a runaway unterminated quote (which swallowed the lines after it), or None when the
        scan had none (or :data:`MAX_QUOTE_REPAIRS` were made). The caller closes this source
        and stages the new one."""
        return self._repair(con) if self._repair is not None else None

    def close(self, con: duckdb.DuckDBPyConnection) -> None:
        """Drop the temporary objects (errors ignored: the connection may be gone)."""
        for sql in reversed(self.drops):
            try:
                if sql.startswith("__unregister__"):
                    con.unregister(sql.removeprefix("__unregister__"))
                elif sql.startswith("__unlink__"):
                    Path(sql.removeprefix("__unlink__")).unlink(missing_ok=True)
                else:
                    con.execute(sql)
            except duckdb.Error:
                pass
        self.drops.clear()


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _head(path: Path) -> tuple[bytes, bool]:
    """The first MiB of the file, decompressed when it is gzip; and whether it is gzip."""
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as gz:
                return gz.read(_HEAD_BYTES), True
        except (OSError, EOFError) as exc:
            raise ReadError(
                f"{path} looks gzip-compressed but cannot be decompressed ({exc}): "
                "check that the download is complete."
            ) from None
    with path.open("rb") as fh:
        return fh.read(_HEAD_BYTES), False


def check_file(path: str | Path) -> Path:
    """The path of a readable, non-empty file, or a :class:`ReadError` saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise ReadError(f"File {path} does not exist: check the path and try again.")
    if path.is_dir():
        raise ReadError(f"{path} is a folder: pass a data file (CSV, Parquet or JSON Lines).")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ReadError(f"Cannot open {path} ({exc.strerror}): check its permissions.") from None
    if size == 0:
        raise ReadError(f"File {path} is empty: pass a file with a header and at least one row.")
    return path


def detect_format(path: Path, mapping: Mapping | None = None) -> str:
    """``csv``, ``parquet`` or ``jsonl``: the mapping's format, else the extension, else sniffed."""
    if mapping is not None and mapping.format:
        return mapping.format
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in {".gz", ".gzip"}:
        suffixes.pop()
    if suffixes and suffixes[-1] in _EXT:
        return _EXT[suffixes[-1]]
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        return "parquet"
    head, _ = _head(path)
    if head.lstrip()[:1] == b"{":
        return "jsonl"
    return "csv"


def _utf16_guess(sample: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when every other byte of ``sample`` is zero (ASCII text in
    UTF-16 without a byte-order mark), else None."""
    half = len(sample) // 2
    if half < 2:
        return None
    zero_even = sample[0 : 2 * half : 2].count(0)
    zero_odd = sample[1 : 2 * half : 2].count(0)
    if zero_odd >= 0.4 * half and zero_even <= 0.05 * half:
        return "utf-16-le"
    if zero_even >= 0.4 * half and zero_odd <= 0.05 * half:
        return "utf-16-be"
    return None


def _looks_binary(sample: bytes) -> bool:
    """Not text: NUL bytes, among more than 1% (and at least 8) control bytes other than tab,
    line feed, form feed and carriage return. A NUL here and there is a bad record, not a
    binary file (and other control characters are text, as they always were)."""
    if b"\x00" not in sample:
        return False
    controls = sum(sample.count(b) for b in range(32) if b not in (9, 10, 12, 13))
    return controls >= 8 and controls > 0.01 * len(sample)


def _check_text(path: Path, head: bytes, encoding: str | None = None) -> None:
    if head[:4] == b"PK\x03\x04":
        raise ReadError(
            f"{path} is a zip archive: unzip it and ingest the CSV, Parquet or JSON Lines "
            "file inside."
        )
    if head[:4] == b"PAR1":
        raise ReadError(
            f"{path} is a Parquet file but its name says text: rename it to .parquet or "
            'set format = "parquet" in the [reader] mapping.'
        )
    if encoding in _UTF16:
        return  # its bytes are not ASCII-like: checked when decoded
    if head[:2] in {b"\xff\xfe", b"\xfe\xff"}:
        raise ReadError(
            f"{path} is UTF-16 encoded: convert it to UTF-8 (e.g. iconv -f UTF-16 -t UTF-8), "
            'or read it with encoding = "utf-16" in the [reader] mapping.'
        )
    if not head.strip():
        raise ReadError(f"File {path} is empty: pass a file with a header and at least one row.")
    sample = head[:65536]
    if b"\x00" in sample:
        utf16 = _utf16_guess(sample)
        if utf16 is not None:
            name = "UTF-16" + utf16[-2:].upper()
            raise ReadError(
                f"{path} looks {name} encoded without a byte-order mark (every other byte is "
                f"zero), not binary: convert it to UTF-8 (e.g. iconv -f {name} -t UTF-8), or "
                f'read it with encoding = "{utf16}" in the [reader] mapping.'
            )
    if _looks_binary(sample):
        raise ReadError(
            f"{path} is a binary file, not text: pass a CSV, Parquet or JSON Lines file."
        )


def _encoding(head: bytes, mapping: Mapping | None) -> str:
    if mapping is not None and mapping.encoding:
        return mapping.encoding
    sample = head if len(head) < _HEAD_BYTES else head[:-4]
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def read_file(
    con: duckdb.DuckDBPyConnection, path: str | Path, mapping: Mapping | None = None
) -> Source:
    """Stage ``path`` (CSV, Parquet or JSON Lines, optionally gzip) on ``con``.

    Raises
    ------
    ReadError
        Missing, empty, binary, undecodable or otherwise unreadable files.
    """
    path = check_file(path)
    fmt = detect_format(path, mapping)
    if fmt == "parquet":
        return _read_parquet(con, path)
    head, _ = _head(path)
    _check_text(path, head, mapping.encoding if mapping is not None else None)
    encoding = _encoding(head, mapping)
    if fmt == "jsonl":
        if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
            raise ReadError(
                f"{path} holds a JSON array; retention reads JSON Lines (one object per line): "
                "convert it, e.g. with jq -c '.[]'."
            )
        return _read_jsonl(con, path, encoding)
    return _read_csv(con, path, mapping, encoding)


def _describe(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def _read_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> Source:
    view = f"__src_{_tag()}"
    relation = f"read_parquet({_lit(str(path))})"
    try:
        cols = _describe(con, relation)
        if not cols:
            raise ReadError(f"Parquet file {path} has no columns: pass a file with data.")
        con.execute(f"CREATE TEMP VIEW {view} AS SELECT * FROM {relation}")
    except duckdb.Error as exc:
        raise ReadError(
            f"Cannot read {path} as Parquet ({_first_line(exc)}): check that the file is a "
            "complete Parquet file, or set the format in the mapping."
        ) from None
    return Source(
        view=view,
        scan=view,
        columns=list(cols),
        types=cols,
        text=False,
        first_line=1,
        drops=[f"DROP VIEW IF EXISTS {view}"],
    )


def _to_utf8(path: Path, encoding: str = "latin-1") -> Path:
    """A temporary UTF-8 copy of a latin-1 or UTF-16 (optionally gzip) file."""
    fd, name = tempfile.mkstemp(prefix="retention-", suffix=".csv")
    opener: Any = gzip.open if _head(path)[1] else open
    try:
        with (
            opener(path, "rt", encoding=encoding, newline="") as src,
            os.fdopen(fd, "w", encoding="utf-8", newline="") as dst,
        ):
            shutil.copyfileobj(src, dst, 1 << 22)
    except UnicodeError as exc:
        Path(name).unlink(missing_ok=True)
        raise ReadError(
            f"{path} is not valid {encoding} ({exc}): check the encoding = option of the "
            "[reader] mapping, or convert the file to UTF-8."
        ) from None
    except (OSError, EOFError) as exc:
        Path(name).unlink(missing_ok=True)
        raise ReadError(f"Cannot read {path} ({exc}): check that the file is complete.") from None
    return Path(name)


def _header_fields(text: str, skip: int, delimiter: str | None) -> tuple[str | None, list[str]]:
    """The delimiter of the header line (line ``skip`` of ``text``) and its fields, read with
    RFC 4180 quoting: ``delimiter`` if given, else the candidate that splits the line into the
    most fields (None, and the line as one field, when none splits it)."""
    lines = (line for line in io.StringIO(text.lstrip("\ufeff"), newline=None) if line.strip())
    line = next(itertools.islice(lines, skip, None), "").rstrip("\r\n")
    if not line:
        return delimiter, []
    best: tuple[str | None, list[str]] = (None, [line])
    for delim in (delimiter,) if delimiter else _DELIMITERS:
        try:
            fields = next(csv.reader(io.StringIO(line), delimiter=delim, quotechar='"'), [])
        except csv.Error:
            continue
        if delimiter or len(fields) > len(best[1]):
            best = (delim, fields)
    return best


@dataclass(frozen=True)
class _Cut:
    """A line cut out of a CSV file by a quote repair."""

    at: int  # its line number in the version of the file it was cut from
    line: int  # its line number in the original file
    raw: str


def _csv_names(fields: list[str]) -> list[str]:
    """Column names for header ``fields`` as DuckDB gives them: a blank one is ``column<i>``,
    a repeated one (ignoring case) gets ``_1``, ``_2``... ."""
    seen: dict[str, int] = {}
    taken = {f.strip().lower() for f in fields if f.strip()}
    out = []
    for i, name in enumerate(fields):
        name = name.replace("\x00", "\ufffd")
        base = name if name.strip() else f"column{i}"
        n = seen.get(base.lower(), 0)
        seen[base.lower()] = n + 1
        candidate = base
        while n and (candidate := f"{base}_{n}").lower() in taken:
            n += 1
        taken.add(candidate.lower())
        out.append(candidate)
    return out


def _duplicates(
    text: str, skip: int, columns: list[str]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Header names given more than once (ignoring case), as :attr:`Source.duplicates` and
    :attr:`Source.positions`, from the header line (line ``skip``) split into ``columns``."""
    fields: list[str] = []
    for delim in _DELIMITERS:
        found = _header_fields(text, skip, delim)[1]
        if len(found) == len(columns):
            fields = found
            break
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(fields):
        if name.strip():
            groups.setdefault(name.strip().lower(), []).append(i)
    dups = {fields[ix[0]]: [columns[i] for i in ix] for ix in groups.values() if len(ix) > 1}
    positions = {columns[i]: i + 1 for ix in groups.values() if len(ix) > 1 for i in ix}
    return dups, positions


def _read_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    mapping: Mapping | None,
    encoding: str,
    *,
    label: str | Path | None = None,
    cuts: tuple[_Cut, ...] = (),
) -> Source:
    """Stage a CSV file. ``cuts``: the lines already cut out by quote repairs (``path`` is
    then the repaired UTF-8 copy, owned by the new source)."""
    label = label or path
    tag = _tag()
    view = f"__src_{tag}"
    scans, errors, rejects = f"__rejscan_{tag}", f"__rejerr_{tag}", f"__rej_{tag}"
    cleanup: list[str] = [f"__unlink__{path}"] if cuts else []
    if encoding != "utf-8":
        # DuckDB's latin-1 decoder refuses bytes 0x80-0x9F; Python's maps every byte, so
        # transcode to a temporary UTF-8 copy (UTF-16 too)
        path = _to_utf8(path, encoding)
        cleanup.append(f"__unlink__{path}")
    base = [
        "all_varchar = true",
        "encoding = 'utf-8'",
        f"max_line_size = {MAX_LINE_SIZE}",
        # without it DuckDB reads in buffers of 16 x max_line_size (256 MiB): slower scans, and
        # a LIMIT still reads a whole buffer
        "buffer_size = 33554432",
    ]
    opts = list(base)
    if mapping is not None and mapping.delimiter:
        opts.append(f"delim = {_lit(mapping.delimiter)}")
    if mapping is not None and mapping.header is not None:
        opts.append(f"header = {'true' if mapping.header else 'false'}")
    head = _head(path)[0]
    text = head.decode("utf-8", errors="replace")
    newline = (
        "\\r\\n" if b"\r\n" in head else ("\\n" if b"\n" in head or b"\r" not in head else "\\r")
    )
    quoted = ["quote = '\"'", "escape = '\"'"]
    # RFC 4180 quoting and the line ending seen in the head first (DuckDB's sniffer can take a
    # quoted carriage return for a line end), then DuckDB's own sniffing, then lenient parsing
    fallbacks = [[*quoted, f"new_line = '{newline}'"], quoted, [], [*quoted, "strict_mode = false"]]
    error: duckdb.Error | None = None
    lenient = full = ""
    cols: dict[str, str] = {}
    skip, header = 0, mapping is None or mapping.header is not False
    delimiter = mapping.delimiter if mapping is not None else None
    accepted = contradicted = False
    for extra in fallbacks:
        if contradicted and (not extra or "strict_mode = false" in extra):
            continue  # quoting broke the sniff: reading without it (or leniently) would not do
        attempt = [*opts, *extra, "ignore_errors = true"]
        try:
            lenient, full, cols, sniffed = _sniffed_csv(con, path, attempt, scans, errors)
        except duckdb.Error as exc:
            error = error or exc
            if "maximum line size" in str(exc).lower():
                break  # a record too long for any dialect: the others would fail too, slowly
            continue
        at = sniffed[0] if sniffed is not None else 0
        if len(cols) < len(_header_fields(text, at, delimiter)[1]):
            # the header line has more fields than the sniffer found (one column, split on a
            # character that is no delimiter): what it sampled broke its quoting, e.g. an
            # unterminated quote. Its answers without quotes would split quoted fields, so
            # after the quoted ones, read with the header's delimiter and RFC 4180 quoting
            contradicted = True
            continue
        if sniffed is not None:
            skip, header = sniffed
        accepted = True
        break
    if not accepted:
        # the header line's own line ending (a quoted field further on may hold another)
        end = head.find(b"\n")
        if end < 0:
            ending = "\\r" if b"\r" in head else "\\n"
        else:
            ending = "\\r\\n" if end and head[end - 1 : end] == b"\r" else "\\n"
        explicit = _explicit_csv(path, text, base, delimiter, header, ending, scans, errors)
        if explicit is not None:
            lenient, full, cols = explicit
            skip, error = 0, None
        elif error is None:
            error = duckdb.InvalidInputException("the header line cannot be read")
    try:
        if error is not None:
            raise error
        con.execute(f"CREATE TEMP TABLE {view} AS SELECT * FROM {lenient} LIMIT {SAMPLE_ROWS}")
    except duckdb.Error as exc:
        for item in cleanup:
            Path(item.removeprefix("__unlink__")).unlink(missing_ok=True)
        raise ReadError(
            f"Cannot read {label} as CSV ({_first_line(exc)}): check the file, or set "
            "delimiter, encoding and header in the [reader] section of a --mapping file."
        ) from None
    dups, positions = _duplicates(text, skip, list(cols)) if header else ({}, {})
    after = [
        f"""CREATE TEMP TABLE {rejects} AS
        SELECT CAST(line AS BIGINT) AS line, CASE
            WHEN any_value(error_type) = 'INVALID ENCODING' THEN 'undecodable row'
            WHEN min(error_type) = 'LINE SIZE OVER MAXIMUM'
                THEN 'malformed row (longer than {MAX_LINE_SIZE >> 20} MiB)'
            WHEN min(error_type) = 'UNQUOTED VALUE' THEN 'malformed row (unterminated quote)'
            ELSE 'malformed row (' || lower(min(error_type)) || ')' END AS reason,
            any_value(csv_line) AS raw
        FROM {errors} GROUP BY line"""
    ]
    # lines after a cut moved up by one in the copy: number them as in the original file
    after += [f"UPDATE {rejects} SET line = line + 1 WHERE line >= {c.at}" for c in reversed(cuts)]
    after += [
        f"INSERT INTO {rejects} VALUES ({c.line}, 'malformed row (unterminated quote)', "
        f"{_lit(c.raw)})"
        for c in cuts
    ]
    source = Source(
        view=view,
        scan=full,
        columns=list(cols),
        types=dict.fromkeys(cols, "VARCHAR"),
        text=True,
        first_line=1 + int(skip or 0) + (1 if header else 0),
        rejects=rejects,
        drops=[
            *cleanup,
            f"DROP TABLE IF EXISTS {view}",
            f"DROP TABLE IF EXISTS {errors}",
            f"DROP TABLE IF EXISTS {scans}",
            f"DROP TABLE IF EXISTS {rejects}",
        ],
        duplicates=dups,
        positions=positions,
        _after=after,
    )
    if len(cuts) < MAX_QUOTE_REPAIRS:
        source._repair = lambda c: _repair_quote(c, path, mapping, label, cuts, errors)
    else:
        source._repair = lambda c: _warn_runaway(c, label, errors, cuts)
    return source


def _runaway(con: duckdb.DuckDBPyConnection, errors: str) -> list[tuple[Any, ...]]:
    """The first rejected record of ``errors`` whose unterminated quote ran on over lines."""
    return con.execute(
        f"""SELECT line, line_byte_position, csv_line FROM {errors}
        WHERE error_type = 'UNQUOTED VALUE'
          AND regexp_matches(trim(csv_line, chr(13) || chr(10)), '[\r\n]')
        ORDER BY line LIMIT 1"""
    ).fetchall()


def _original_line(line: int, cuts: tuple[_Cut, ...]) -> int:
    """The line of the original file that is ``line`` of the copy made by ``cuts``."""
    for c in reversed(cuts):
        line += 1 if line >= c.at else 0
    return line


def _warn_runaway(
    con: duckdb.DuckDBPyConnection, label: str | Path, errors: str, cuts: tuple[_Cut, ...]
) -> None:
    """Past :data:`MAX_QUOTE_REPAIRS`: say that a record runs on, rather than repair it."""
    row = _runaway(con, errors)
    if row:
        warnings.warn(
            f"{label} has more than {MAX_QUOTE_REPAIRS} unterminated quotes: the record on "
            f"line {_original_line(int(row[0][0]), cuts)} runs on over the lines after it, "
            "which are quarantined with it as one record. Fix the quotes in the file (each "
            'line with an odd number of ") and ingest it again.',
            RetentionWarning,
            stacklevel=8,  # the caller of ingest()
        )


def _explicit_csv(
    path: Path,
    text: str,
    base: list[str],
    delimiter: str | None,
    header: bool,
    newline: str,
    scans: str,
    errors: str,
) -> tuple[str, str, dict[str, str]] | None:
    """The lenient and full relations (and columns) that read ``path`` with the header line's
    delimiter and RFC 4180 quoting, without DuckDB's sniffer; None without a header line."""
    delim, fields = _header_fields(text, 0, delimiter)
    if not fields or (delim is None and len(fields) == 1 and not fields[0].strip()):
        return None
    names = _csv_names(fields) if header else [f"column{i}" for i in range(len(fields))]
    columns = "{" + ", ".join(f"{_lit(n)}: 'VARCHAR'" for n in names) + "}"
    args = [
        *base,
        "auto_detect = false",
        f"delim = {_lit(delim or ',')}",
        "quote = '\"'",
        "escape = '\"'",
        f"new_line = '{newline}'",
        "skip = 0",
        f"header = {'true' if header else 'false'}",
        f"columns = {columns}",
        "ignore_errors = true",
    ]
    lenient = f"read_csv({_lit(str(path))}, {', '.join(args)})"
    rejects = f"store_rejects = true, rejects_scan = {_lit(scans)}, rejects_table = {_lit(errors)}"
    return lenient, f"{lenient.removesuffix(')')}, {rejects})", dict.fromkeys(names, "VARCHAR")


def _repair_quote(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    mapping: Mapping | None,
    label: str | Path,
    cuts: tuple[_Cut, ...],
    errors: str,
) -> Source | None:
    """A source reading ``path`` without the line of its first runaway unterminated quote (a
    rejected record that ran on over the lines after it), or None when there is none."""
    row = _runaway(con, errors)
    if not row or row[0][1] is None:
        return None
    line, position, raw = int(row[0][0]), int(row[0][1]), str(row[0][2])
    # DuckDB's position is within a byte of the line's start (on the line feed before it, in
    # CRLF files, whose record text then starts with it): the line is the one holding the
    # byte after it
    copy, cut = _cut_line(path, position + 1)
    text = cut.decode("utf-8", errors="replace").rstrip("\r\n")
    if not text or not raw.lstrip("\r\n").startswith(text):
        copy.unlink(missing_ok=True)
        return None  # not where DuckDB said: leave the record as it was rejected
    done = (*cuts, _Cut(at=line, line=_original_line(line, cuts), raw=text[:10000]))
    return _read_csv(con, copy, mapping, "utf-8", label=label, cuts=done)


def _cut_line(path: Path, position: int) -> tuple[Path, bytes]:
    """A temporary copy of ``path`` (decompressed) without the line that holds the byte
    before ``position``; and that line."""
    fd, name = tempfile.mkstemp(prefix="retention-", suffix=".csv")
    opener: Any = gzip.open if _head(path)[1] else open
    try:
        with opener(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            offset, pending = 0, b""
            while offset < position:
                chunk = src.read(min(1 << 22, position - offset))
                if not chunk:
                    break
                offset += len(chunk)
                data = pending + chunk
                end = data.rfind(b"\n") + 1
                dst.write(data[:end])
                pending = data[end:]
            line = pending
            while True:
                chunk = src.read(1 << 16)
                if not chunk:
                    break
                end = chunk.find(b"\n")
                if end >= 0:
                    line += chunk[: end + 1]
                    dst.write(chunk[end + 1 :])
                    break
                line += chunk
            shutil.copyfileobj(src, dst, 1 << 22)
    except (OSError, EOFError) as exc:
        Path(name).unlink(missing_ok=True)
        raise ReadError(f"Cannot read {path} ({exc}): check that the file is complete.") from None
    return Path(name), line


def _sniffed_csv(
    con: duckdb.DuckDBPyConnection, path: Path, opts: list[str], scans: str, errors: str
) -> tuple[str, str, dict[str, str], tuple[int, bool] | None]:
    """Sniff ``path`` once with ``opts``; returns the lenient relation, the full one (which
    stores rejects in ``scans``/``errors``), the columns and their types, and ``(skipped rows,
    has header)`` (None if the sniffer gave no answer).

    Both relations spell out what the sniffer found (``auto_detect = false``), so reading
    them does not sniff the file again: DuckDB would otherwise sniff on every query.
    """
    args = ", ".join(opts)
    row = con.execute(
        f"SELECT Prompt, SkipRows, HasHeader FROM sniff_csv({_lit(str(path))}, {args})"
    ).fetchone()
    lenient = f"read_csv({_lit(str(path))}, {args})"
    cols: dict[str, str] | None = None
    prompt = str(row[0]).strip() if row and row[0] else ""
    if prompt.startswith("FROM read_csv(") and prompt.endswith(");"):
        explicit = prompt.removeprefix("FROM ").removesuffix(";")
        try:
            cols = _describe(con, explicit)
            lenient = explicit
        except duckdb.Error:
            pass  # keep the sniffing relation
    if cols is None:
        cols = _describe(con, lenient)
    rejects = f"store_rejects = true, rejects_scan = {_lit(scans)}, rejects_table = {_lit(errors)}"
    full = f"{lenient.removesuffix(')')}, {rejects})"
    sniffed = (int(row[1] or 0), bool(row[2])) if row else None
    return lenient, full, cols, sniffed


def _unique_names(names: list[str]) -> list[str]:
    """Column names DuckDB accepts: none empty, none with a NUL character (shown as U+FFFD),
    none equal ignoring case."""
    seen: set[str] = set()
    out = []
    for i, name in enumerate(names):
        name = name.replace("\x00", "\ufffd")
        base = name if name.strip() else f"column{i}"
        candidate, n = base, 2
        while candidate.lower() in seen or candidate.lower() in {"__line", "rowid"}:
            candidate = f"{base}_{n}"
            n += 1
        seen.add(candidate.lower())
        out.append(candidate)
    return out


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _read_jsonl(con: duckdb.DuckDBPyConnection, path: Path, encoding: str) -> Source:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    bad: list[tuple[int, str, str]] = []
    opener: Any = gzip.open if _head(path)[1] else open
    try:
        with opener(path, "rt", encoding=encoding, errors="strict", newline=None) as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    bad.append((number, "malformed JSON line", line[:10000]))
                    continue
                if not isinstance(obj, dict):
                    bad.append((number, "JSON line is not an object", line[:10000]))
                    continue
                records.append(obj)
                lines.append(number)
    except UnicodeDecodeError as exc:
        raise ReadError(
            f"{path} is not valid {encoding} ({exc.reason} at byte {exc.start}): "
            'set encoding = "latin-1" in the [reader] mapping or convert it to UTF-8.'
        ) from None
    except UnicodeError as exc:  # e.g. UTF-16 without its byte-order mark
        raise ReadError(
            f"{path} is not valid {encoding} ({exc}): pass the file's real encoding "
            "(--encoding utf-8 or latin-1) or convert it to UTF-8."
        ) from None
    except (OSError, EOFError) as exc:
        raise ReadError(f"Cannot read {path} ({exc}): check that the file is complete.") from None
    keys: dict[str, None] = {}
    for rec in records:
        for key in rec:
            keys.setdefault(key, None)
    if not keys and not bad:
        raise ReadError(f"File {path} has no JSON records: pass one JSON object per line.")
    names = _unique_names(list(keys))
    data = {
        name: pa.array([_scalar_text(rec.get(key)) for rec in records], type=pa.string())
        for key, name in zip(keys, names, strict=True)
    }
    data["__line"] = pa.array(lines, type=pa.int64())
    table = pa.table(data)
    source = _stage_arrow(con, table, text=True, line_column="__line")
    source.decoded = True
    rejects = f"__rej_{_tag()}"
    con.execute(f"CREATE TEMP TABLE {rejects} (line BIGINT, reason VARCHAR, raw VARCHAR)")
    source.drops.append(f"DROP TABLE IF EXISTS {rejects}")
    if bad:
        con.executemany(f"INSERT INTO {rejects} VALUES (?, ?, ?)", bad)
    source.rejects = rejects
    return source


def _stage_arrow(
    con: duckdb.DuckDBPyConnection, table: pa.Table, text: bool, line_column: str | None = None
) -> Source:
    tag = _tag()
    arrow_name, view = f"__arrow_{tag}", f"__src_{tag}"
    columns = [c for c in table.column_names if c != line_column]
    con.register(arrow_name, table)
    select = [_ident(c) for c in columns]
    if line_column:
        select.append(f"{_ident(line_column)} AS __line")
    con.execute(f"CREATE TEMP VIEW {view} AS SELECT {', '.join(select)} FROM {arrow_name}")
    types = _describe(con, view)
    return Source(
        view=view,
        scan=view,
        columns=columns,
        types={c: types[c] for c in columns},
        text=text,
        first_line=1,
        has_line=line_column is not None,
        drops=[f"DROP VIEW IF EXISTS {view}", f"__unregister__{arrow_name}"],
    )


def read_frame(con: duckdb.DuckDBPyConnection, df: pd.DataFrame) -> Source:
    """Stage an in-memory DataFrame (its columns keep their types)."""
    if not isinstance(df, pd.DataFrame):
        raise ReadError(f"Expected a pandas DataFrame, got {type(df).__name__}.")
    frame = df.reset_index(drop=True)
    frame.columns = _unique_names([str(c) for c in frame.columns])
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError):
        fixed = frame.copy()
        for col in fixed.columns:
            if fixed[col].dtype == object:
                fixed[col] = [_scalar_text(v) if not _isna(v) else None for v in fixed[col]]
        table = pa.Table.from_pandas(fixed, preserve_index=False)
    return _stage_arrow(con, table, text=False)


def _isna(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False

"""Validation: the SQL that turns a staged source into canonical, typed rows with a reason.

:func:`plan_stage` resolves the mapping against the source's columns and builds one DuckDB
``SELECT`` that yields, for every source record, its canonical columns (parsed cell by cell with
``TRY_CAST``) and ``__reason``: ``NULL`` for a good row, else why it goes to the quarantine:

- ``missing <column>`` a required value is empty (``user_id``, ``ts``, an ``event_type`` column);
- ``unparseable <column>`` a value is present but cannot be read as its type (for a time that
  is a number, with a hint on how to read epoch times: :data:`EPOCH_HINT`, :data:`MIXED_HINT`);
- ``<column> in the future`` a timestamp after ``now + future_tolerance``;
- ``<column> before <date>`` a timestamp before the floor (``RETENTION_MIN_TS``, default
  1990-01-01): ``0001-01-01``, ``1900-01-01`` and epoch zero are default values, not times;
- ``unmapped event type`` an event type that is neither canonical nor in the value map;
- ``negative <column>`` money below zero (a return is its own event type);
- ``rating outside 1-5``.

Times given as numbers in a text column (CSV, JSON Lines) are read as epoch seconds,
milliseconds or microseconds when the sampled values say so by their magnitude, one unit for the
whole column (:func:`_sniff_epoch`); ``ts_format = "epoch_ms"`` (and ``epoch_s``, ``epoch_us``,
``epoch_ns``) says it outright. Numbers in a numeric column (Parquet) keep their per-value rule.

A header that names a column twice (ignoring case) is refused when the mapping uses that name,
since either copy could be meant; otherwise a :class:`~retention.exceptions.RetentionWarning`
says how the copies are read.
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from retention.data._contract import COLUMN_SYNONYMS, EVENT_TYPES, ColumnSpec, TableSpec
from retention.data._expr import MapExpression, parse_map_expression
from retention.data._mapping import EPOCH_UNITS, Mapping
from retention.data._readers import SAMPLE_ROWS, Source
from retention.exceptions import RetentionWarning, SchemaError

__all__ = ["EPOCH_HINT", "MIXED_HINT", "StagePlan", "plan_stage"]

#: the reason of a time that is a number no format reads
EPOCH_HINT = "a number: if it counts from 1970, set ts_format to epoch_s, epoch_ms or epoch_us"
#: the reason of a time that is a number, in a column of epoch numbers of several magnitudes
MIXED_HINT = (
    "epoch numbers of mixed units in the column: set ts_format to epoch_s, epoch_ms or epoch_us"
)
#: magnitude bands of epoch numbers (seconds, milliseconds, microseconds since 1970): seconds
#: from 1973 to 5138, milliseconds and microseconds over the same years
_EPOCH_BANDS: tuple[tuple[str, float, float], ...] = (
    ("epoch_s", 1e8, 1e11),
    ("epoch_ms", 1e11, 1e14),
    ("epoch_us", 1e14, 1e17),
)
#: the largest |microseconds| a TIMESTAMP holds, with a margin
_MAX_US = 9.2e18

_TS_FORMATS: tuple[str, ...] = (
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y",
    "%m/%d/%y %H:%M",
    "%m/%d/%y",
    "%d/%m/%y",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%Y%m%d",
    "%Y%m%d%H%M%S",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%d %b %Y %H:%M:%S",
    "%d %b %Y",
    "%b %d %Y",
    "%a, %d %b %Y %H:%M:%S",
)
#: the values a generated event id hashes, in this order. Written out rather than taken from the
#: contract on purpose: a column added to the contract must not change the ids of stored events.
_ID_PARTS = (
    "user_id",
    "ts",
    "event_type",
    "item_id",
    "order_id",
    "quantity",
    "amount",
    "rating",
    "text",
)
_FLOAT_TYPES = ("FLOAT", "DOUBLE", "REAL", "DECIMAL")
_INT_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _base(sql_type: str) -> str:
    return sql_type.upper().split("(")[0].strip()


def _blank_to_null(x: str, text: bool = True) -> str:
    """SQL for ``nullif(trim(x), '')`` (``x`` cast to text unless ``text``), cheaper per row.

    ``trim`` removes spaces only, so a value that neither starts nor ends with one is its own
    trim: testing that first costs a third of calling ``trim`` on every value. The test repeats
    ``x``, so plain column references get it and other expressions the plain form.
    """
    v = x if text else f"CAST({x} AS VARCHAR)"
    if text and re.fullmatch(r'__r\d+|"(?:[^"]|"")+"', x):
        padded = f"starts_with({x}, ' ') OR suffix({x}, ' ')"
        return f"nullif(CASE WHEN {padded} THEN trim({x}) ELSE {x} END, '')"
    return f"nullif(trim({v}), '')"


@dataclass
class StagePlan:
    """The resolved mapping and the SQL of the stage.

    Attributes
    ----------
    sql : str
        ``SELECT [__line,] <mapped columns>, <extras>, __reason, __raw[, __h] FROM ...``, one
        row per record in file order (``CREATE TABLE AS`` keeps the order, so ``rowid`` is
        the record number). Events only: ``event_id`` when the mapping supplies one, and
        ``__h``, a 64-bit hash of what decides the id (equal ids give equal hashes).
    columns : list of str
        Columns written to the table (extras included), in insert order.
    select : list of str
        The SQL of each of ``columns`` over the stage aliased ``s``: a stage column, a constant
        for an unmapped column, or the generated ``event_id``.
    sources : dict of str to str
        Canonical column -> what it was read from (column name or expression), for reports.
    extras : dict of str to str
        Extra store column -> source column (``users`` only).
    text_columns : list of str
        Stage columns that hold text (ids, text, event types, extras): where a NUL byte is
        looked for.
    epoch : dict of str to str
        Time column -> the epoch unit its numbers were read in (``epoch_s``...), when sniffed or
        given.
    unread : list of str
        Source columns that nothing reads (not kept: the table has no column for them).
    """

    sql: str
    columns: list[str]
    select: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    extras: dict[str, str] = field(default_factory=dict)
    text_columns: list[str] = field(default_factory=list)
    epoch: dict[str, str] = field(default_factory=dict)
    unread: list[str] = field(default_factory=list)


def _find(columns: list[str], name: str) -> str | None:
    if name in columns:
        return name
    unq = name.strip()
    if len(unq) > 1 and unq[0] == unq[-1] == '"' and unq[1:-1] in columns:
        return unq[1:-1]
    matches = [c for c in columns if c.lower() == unq.lower()]
    return matches[0] if len(matches) == 1 else None


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", name.lower())


def _synonyms(columns: list[str], wanted: list[str]) -> dict[str, str]:
    """Canonical column -> the one column of ``columns`` whose name is a usual name for it
    (:data:`COLUMN_SYNONYMS`), for those of ``wanted`` that have exactly one."""
    out: dict[str, str] = {}
    for canonical in wanted:
        names = set(COLUMN_SYNONYMS.get(canonical, ()))
        hits = [c for c in columns if _norm(c) in names]
        if len(hits) == 1 and hits[0] not in out.values():
            out[canonical] = hits[0]
    return out


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _map_flag(canonical: str, column: str) -> str:
    value = f"{canonical}={column}"
    return f"--map {value}" if re.fullmatch(r"[\w.=-]+", value) else f"--map '{value}'"


def _sanitize(name: str, taken: set[str]) -> str:
    out = re.sub(r"[^0-9a-z_]+", "_", name.strip().lower()).strip("_") or "column"
    if out[0].isdigit():
        out = "c_" + out
    base, i = out, 2
    while out in taken:
        out = f"{base}_{i}"
        i += 1
    taken.add(out)
    return out


def _found(columns: list[str]) -> str:
    shown = ", ".join(columns[:25]) + (
        f", ... ({len(columns)} in all)" if len(columns) > 25 else ""
    )
    return shown or "none"


def _sniff_numeric(con: duckdb.DuckDBPyConnection, view: str, col: str) -> str:
    row = con.execute(
        f"SELECT count(v), count(TRY_CAST(v AS DOUBLE)) FROM "
        f"(SELECT nullif(trim({_ident(col)}), '') AS v FROM {view} LIMIT {SAMPLE_ROWS})"
    ).fetchone()
    if row and row[0] and row[1] >= 0.5 * row[0]:
        return "DOUBLE"
    return "VARCHAR"


def _sniff_ts_format(con: duckdb.DuckDBPyConnection, view: str, x: str) -> str | None:
    """The strptime format that reads most sampled values; None when ISO casts do best."""
    sample = (
        f"(SELECT DISTINCT nullif(trim(CAST({x} AS VARCHAR)), '') AS v "
        f"FROM (SELECT * FROM {view} LIMIT {SAMPLE_ROWS}) s)"
    )
    counts = ", ".join(
        ["count(TRY_CAST(v AS TIMESTAMPTZ))"]
        + [f"count(try_strptime(v, {_lit(fmt)}))" for fmt in _TS_FORMATS]
    )
    row = con.execute(
        f"SELECT count(v), count(TRY_CAST(v AS TIMESTAMPTZ)) FROM {sample} t"
    ).fetchone()
    if row is None or not row[0] or row[1] == row[0]:
        return None
    row = con.execute(f"SELECT {counts} FROM {sample} t WHERE v IS NOT NULL").fetchone()
    if row is None:
        return None
    best = max(range(len(row)), key=lambda i: (row[i] or 0, -i))
    if best == 0 or not row[best]:
        return None
    return _TS_FORMATS[best - 1]


def _ts_sample(con: duckdb.DuckDBPyConnection, view: str, x: str) -> tuple[int, int, int]:
    """Distinct sampled values of ``x``: how many, how many are ISO times, how many numbers."""
    rows = con.execute(
        f"SELECT count(v), count(TRY_CAST(v AS TIMESTAMPTZ)), count(TRY_CAST(v AS DOUBLE)) "
        f"FROM (SELECT DISTINCT nullif(trim(CAST({x} AS VARCHAR)), '') AS v "
        f"FROM (SELECT * FROM {view} LIMIT {SAMPLE_ROWS}) s) t"
    ).fetchall()
    return (int(rows[0][0] or 0), int(rows[0][1] or 0), int(rows[0][2] or 0)) if rows else (0, 0, 0)


def _sniff_epoch(con: duckdb.DuckDBPyConnection, view: str, x: str) -> str | None:
    """The epoch unit of a text column of numbers, from the magnitudes of the sampled values.

    Returns one of :data:`EPOCH_UNITS`, ``"mixed"`` when the numbers fall into several bands of
    :data:`_EPOCH_BANDS` with none holding 90% of them, or None when the values are not
    (mostly) numbers, or are calendar numbers (``YYYYMMDD``, ``YYYYMMDDHHMMSS``).
    """
    bands = ", ".join(
        f"count(*) FILTER (WHERE a >= {lo} AND a < {hi})" for _, lo, hi in _EPOCH_BANDS
    )
    row = con.execute(
        f"""SELECT count(*), count(d), count(*) FILTER (WHERE d IS NOT NULL AND (
                (length(v) = 8 AND try_strptime(v, '%Y%m%d') IS NOT NULL)
                OR (length(v) = 14 AND try_strptime(v, '%Y%m%d%H%M%S') IS NOT NULL))
                AND left(v, 4) BETWEEN '1800' AND '2200'), {bands}
        FROM (SELECT v, d, abs(d) AS a FROM (
            SELECT v, CASE WHEN regexp_full_match(v, '[+-]?[0-9]+([.][0-9]*)?')
                THEN TRY_CAST(v AS DOUBLE) END AS d
            FROM (SELECT DISTINCT nullif(trim(CAST({x} AS VARCHAR)), '') AS v
                  FROM (SELECT * FROM {view} LIMIT {SAMPLE_ROWS}) s) t
            WHERE v IS NOT NULL))"""
    ).fetchall()
    if not row:
        return None
    n, numbers, calendar, *counts = (int(c or 0) for c in row[0])
    if not numbers or numbers < 0.9 * n or calendar == numbers:
        return None
    in_bands = sum(counts)
    if not in_bands:
        return None
    best = max(range(len(counts)), key=lambda i: counts[i])
    if counts[best] >= 0.9 * in_bands:
        return _EPOCH_BANDS[best][0]
    return "mixed"


def _epoch_sql(d: str, unit: str) -> str:
    """SQL of the time ``d`` (a DOUBLE) counts in ``unit`` since 1970 (NULL out of range)."""
    scale = EPOCH_UNITS[unit]
    return (
        f"CASE WHEN isfinite({d}) AND abs({d}) * {scale} < {_MAX_US} "
        f"THEN make_timestamp(CAST(round({d} * {scale}) AS BIGINT)) END"
    )


class _Builder:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        source: Source,
        spec: TableSpec,
        mapping: Mapping,
        label: str,
        future_limit: pd.Timestamp,
        min_ts: pd.Timestamp | None = None,
    ) -> None:
        self.con, self.source, self.spec, self.mapping = con, source, spec, mapping
        self.label, self.future_limit, self.min_ts = label, future_limit, min_ts
        self.raw = {c: f"__r{i}" for i, c in enumerate(source.columns)}
        self.typed: dict[str, str] = {}  # source col -> DuckDB type used in expressions
        self.exprs: dict[str, MapExpression] = {}  # mapped name -> its checked expression
        self.epoch: dict[str, str] = {}  # time input SQL -> epoch unit (or "mixed")

    def check_expr(self, name: str, text: str) -> MapExpression:
        """Check the mapped value ``text`` of ``name`` as one expression over the source's
        columns (:func:`parse_map_expression`); only the SQL generated from it ever runs."""
        checked = parse_map_expression(text, self.source.columns, target=name, label=self.label)
        self.exprs[name] = checked
        return checked

    # ------------------------------------------------------------------ inner select
    def inner(self, full: bool = False) -> str:
        """The source with raw columns as ``__r<i>`` and typed ones under their own names."""
        s = self.source
        parts = ["__line"] if s.has_line else []
        for col in s.columns:
            parts.append(f"{_ident(col)} AS {self.raw[col]}")
            typ = self.typed.get(col)
            if typ and typ != "VARCHAR":
                parts.append(f"TRY_CAST({_blank_to_null(_ident(col))} AS {typ}) AS {_ident(col)}")
            else:
                parts.append(_ident(col))
        return f"(SELECT {', '.join(parts)} FROM {s.scan if full else s.view})"

    def expr_type(self, expr: str) -> str:
        rows = self.con.execute(f"DESCRIBE SELECT ({expr}) AS v FROM {self.inner()} LIMIT 0")
        return str(rows.fetchall()[0][1])

    def bind(self, name: str, checked: MapExpression) -> str:
        """The DuckDB type of ``checked``, demoting sniffed column types until it binds."""
        expr, refs = checked.sql, list(checked.columns)
        if self.source.text:
            for col in refs:
                if col not in self.typed:
                    self.typed[col] = _sniff_numeric(self.con, self.source.view, col)
        try:
            return self.expr_type(expr)
        except duckdb.Error as first:
            error = first
        if self.source.text and refs:
            # try the other type (text <-> number) for the fewest columns that make it bind
            flips = refs[:5]
            combos = sorted(
                (c for c in itertools.product((False, True), repeat=len(flips)) if any(c)),
                key=sum,
            )
            for combo in combos:
                saved = dict(self.typed)
                for col, flip in zip(flips, combo, strict=True):
                    if flip:
                        self.typed[col] = "DOUBLE" if saved[col] == "VARCHAR" else "VARCHAR"
                try:
                    return self.expr_type(expr)
                except duckdb.Error:
                    self.typed = saved
        raise SchemaError(
            f"Cannot use {checked.text!r} for {name}: DuckDB cannot apply it to the columns "
            f"of {self.label} ({_first_line(error)}). Fix the expression (TRY_CAST converts "
            f"text), or map a column with --map {name}=COLUMN."
        )

    # ------------------------------------------------------------------ parsing by kind
    def parse(self, col: ColumnSpec, x: str, typ: str) -> tuple[str, str]:
        """(value SQL, present SQL) of input ``x`` of DuckDB type ``typ`` for column ``col``."""
        base = _base(typ)
        text = base == "VARCHAR"
        v = _blank_to_null(x) if text else x
        present = f"({v} IS NOT NULL)"
        kind = col.kind
        if kind == "id":
            if text:
                value = (
                    f"CASE WHEN suffix({v}, '.0') "
                    f"THEN regexp_replace({v}, '^(-?[0-9]+)\\.0+$', '\\1') ELSE {v} END"
                )
            elif base in _FLOAT_TYPES:
                d = f"CAST({x} AS DOUBLE)"
                value = (
                    f"CASE WHEN isfinite({d}) AND {d} = trunc({d}) AND abs({d}) < 1e15 "
                    f"THEN CAST(CAST({d} AS BIGINT) AS VARCHAR) ELSE CAST({x} AS VARCHAR) END"
                )
            else:
                value = _blank_to_null(x, text=False)
                present = f"({value} IS NOT NULL)"
        elif kind == "text":
            value = f"nullif({x}, '')" if text else f"CAST({x} AS VARCHAR)"
            present = f"({value} IS NOT NULL)"
        elif kind in {"double", "money", "rating"}:
            if text:
                # DuckDB's cast to DOUBLE skips surrounding spaces, so the text is cast as it
                # is; only a value that does not cast is trimmed, to tell blank from bad
                d = f"TRY_CAST({x} AS DOUBLE)"
                present = f"(CASE WHEN {d} IS NOT NULL THEN true ELSE {v} IS NOT NULL END)"
            elif base in _FLOAT_TYPES or base in _INT_TYPES:
                d = f"CAST({x} AS DOUBLE)"
            elif base == "BOOLEAN":
                d = f"CAST(CAST({x} AS INTEGER) AS DOUBLE)"
            else:
                d = f"TRY_CAST({x} AS DOUBLE)"
            d = f"(CASE WHEN isfinite({d}) THEN {d} END)"
            value = f"TRY_CAST(round({d}, 2) AS DECIMAL(18,2))" if kind == "money" else d
        elif kind == "ts":
            value = self.parse_ts(x, typ)
        elif kind == "event_type":
            s = _blank_to_null(x, text)
            present = f"({s} IS NOT NULL)"
            # a simple CASE, not ``lower(s) IN (...)``: DuckDB plans an IN list as a hash
            # join, which costs several times more per row
            canon = " ".join(f"WHEN {_lit(t)} THEN {_lit(t)}" for t in EVENT_TYPES)
            fallback = f"CASE lower({s}) {canon} END"
            if self.mapping.event_types:
                whens = " ".join(
                    f"WHEN {_lit(k)} THEN {_lit(t)}" for k, t in self.mapping.event_types.items()
                )
                value = f"CASE {s} {whens} ELSE {fallback} END"
            else:
                value = fallback
        else:  # pragma: no cover - specs are fixed
            raise AssertionError(kind)
        return value, present

    def parse_ts(self, x: str, typ: str) -> str:
        base = _base(typ)
        given = self.mapping.ts_format if self.mapping.ts_format in EPOCH_UNITS else None
        if base == "TIMESTAMP":
            return x
        if base.startswith("TIMESTAMP") or base == "DATE":
            return f"CAST({x} AS TIMESTAMP)"
        if given is not None and (base in _INT_TYPES or base in _FLOAT_TYPES):
            self.epoch[x] = given
            return _epoch_sql(f"CAST({x} AS DOUBLE)", given)
        if base in _INT_TYPES or base in _FLOAT_TYPES:
            b = f"CAST({x} AS BIGINT)"
            return (
                f"CASE WHEN {b} BETWEEN 18000101 AND 22001231 "
                f"THEN try_strptime(CAST({b} AS VARCHAR), '%Y%m%d') "
                f"WHEN abs({b}) < 100000000000 THEN make_timestamp({b} * 1000000) "
                f"WHEN abs({b}) < 100000000000000 THEN make_timestamp({b} * 1000) END"
            )
        v = _blank_to_null(x, base == "VARCHAR")
        # ISO times: a plain cast, except when a UTC offset follows the time (the plain cast
        # would drop it), which goes through TIMESTAMPTZ (the session time zone is UTC)
        tail = f"substr({v}, 17)"
        iso_sql = (
            f"CASE WHEN length({v}) > 19 AND (suffix({v}, 'Z') OR contains({tail}, '+') "
            f"OR contains({tail}, '-')) "
            f"THEN CAST(TRY_CAST({v} AS TIMESTAMPTZ) AS TIMESTAMP) "
            f"ELSE TRY_CAST({v} AS TIMESTAMP) END"
        )
        unit = given
        iso = False  # every sampled value is an ISO time: nothing to sniff
        if unit is None and self.mapping.ts_format is None:
            n, n_iso, numbers = _ts_sample(self.con, self.inner(), x)
            iso = n_iso == n
            if not iso and numbers >= 0.9 * n:
                unit = _sniff_epoch(self.con, self.inner(), x)
        if unit is not None:
            # numbers by the column's one unit, anything else as an ISO time; "mixed": no
            # unit reads the column, so its numbers are quarantined (with MIXED_HINT)
            self.epoch[x] = unit
            d = f"TRY_CAST({v} AS DOUBLE)"
            number = "NULL" if unit == "mixed" else _epoch_sql(d, unit)
            return f"CASE WHEN {d} IS NOT NULL THEN {number} ELSE {iso_sql} END"
        fmt = self.mapping.ts_format
        if fmt is None and not iso:
            fmt = _sniff_ts_format(self.con, self.inner(), x)
        if fmt is None:
            return iso_sql
        return f"coalesce(try_strptime({v}, {_lit(fmt)}), {iso_sql})"

    def check_duplicates(self, resolved: dict[str, tuple[str, str]]) -> None:
        """Refuse a header name given twice that the mapping uses; warn about the others."""
        s = self.source
        if not s.duplicates:
            return
        used: dict[str, str] = {}  # source column -> the canonical column that uses it
        for name, (kind, v) in resolved.items():
            if kind == "col":
                used.setdefault(v, name)
        for name, checked in self.exprs.items():
            for col in checked.columns:
                used.setdefault(col, name)
        for original, names in s.duplicates.items():
            spots = [str(s.positions.get(n, "?")) for n in names]
            where = ", ".join(spots[:-1]) + " and " + spots[-1]
            read_as = " and ".join(names)
            if names[0] in used:
                others = [n for n in names[1:] if n not in used]
                alt = f" --map {used[names[0]]}={others[0]}," if others else ""
                raise SchemaError(
                    f"{self.label} names the column {original!r} {len(names)} times (columns "
                    f"{where}, read as {read_as}), and {used[names[0]]} would be read from "
                    f"it: rename the columns in the file, or map another copy by the name it "
                    f"is read as, e.g.{alt} to say which one you mean."
                )
            chosen = [f"{n} for {used[n]}" for n in names if n in used]
            warnings.warn(
                f"{self.label} names the column {original!r} {len(names)} times (columns "
                f"{where}); they are read as {read_as}"
                + (f", and {', '.join(chosen)} is used." if chosen else ", and none is mapped."),
                RetentionWarning,
                stacklevel=8,  # the caller of ingest()
            )

    # ------------------------------------------------------------------ plan
    def plan(self) -> StagePlan:
        spec, mapping, s = self.spec, self.mapping, self.source
        resolved: dict[str, tuple[str, str]] = {}
        for canonical in spec.names:
            src = mapping.columns.get(canonical)
            if src is not None:
                found = _find(s.columns, src)
                if found is not None:
                    resolved[canonical] = ("col", found)
                else:
                    resolved[canonical] = ("expr", src)
                    self.check_expr(canonical, src)
            else:
                found = _find(s.columns, canonical)
                if found is not None:
                    resolved[canonical] = ("col", found)
        missing = [c for c in spec.required if c not in resolved]
        if missing:
            likely = _synonyms(s.columns, missing)
            fix = " ".join(_map_flag(c, likely.get(c, "COLUMN")) for c in missing)
            hint = ""
            if s.columns and all(re.fullmatch(r"column\d+", c) for c in s.columns):
                hint = " (the file seems to have no header: map by position, e.g. column0)"
            raise SchemaError(
                f"{self.label} has no {' and no '.join(missing)} column (found: "
                f"{_found(s.columns)}){hint}: name the source column with {fix}."
            )
        self.check_duplicates(resolved)
        if mapping.event_types and spec.name == "events" and "event_type" not in resolved:
            raise SchemaError(
                f"--event-type maps values of the event_type column, but {self.label} has none "
                f"(found: {_found(s.columns)}): add --map event_type=COLUMN."
            )
        extras: dict[str, str] = {}
        extra_values: dict[str, tuple[str, str]] = {}
        if spec.extra_columns:
            taken = set(spec.names) | {"ingest_id"}
            for name, src in mapping.columns.items():
                if name in spec.names:
                    continue
                found = _find(s.columns, src)
                store_col = _sanitize(name, taken)
                extra_values[store_col] = ("col", found) if found else ("expr", src)
                if not found:
                    self.check_expr(store_col, src)
                extras[store_col] = src
            used = self.read_columns(resolved)
            used |= {v for kind, v in extra_values.values() if kind == "col"}
            for source_col in s.columns:
                if source_col not in used:
                    store_col = _sanitize(source_col, taken)
                    extra_values[store_col] = ("col", source_col)
                    extras[store_col] = source_col
        unread = self.unread(resolved) if not spec.extra_columns else []

        # types of expressions (binding may demote sniffed types, so bind all first)
        expr_types: dict[str, str] = {}
        for name, checked in self.exprs.items():
            self.bind(name, checked)
        for name, checked in self.exprs.items():
            expr_types[name] = self.expr_type(checked.sql)

        level1: list[str] = ["__line"] if s.has_line else []
        level1 += [f"{self.raw[c]}" for c in s.columns]
        checks: list[str] = []
        out_cols: list[str] = []
        # unmapped columns hold one value on every row: they stay out of the stage and are
        # written as constants, which keeps the stage (held in memory) narrow
        constants: dict[str, str] = {}
        for col in spec.columns:
            name = col.name
            if name not in resolved:
                if name == "event_type":
                    constants[name] = "'purchase'"
                elif name != "event_id":
                    constants[name] = f"CAST(NULL AS {col.sql_type})"
                continue
            kind, v = resolved[name]
            if kind == "col":
                x, typ = self.raw[v], s.types[v]
            else:
                x, typ = f"({self.exprs[name].sql})", expr_types[name]
            value, present = self.parse(col, x, typ)
            level1.append(f"{value} AS __v_{name}")
            level1.append(f"{present} AS __p_{name}")
            if kind == "expr" and s.text:
                bad = [
                    f"({_blank_to_null(self.raw[r])} IS NOT NULL AND {_ident(r)} IS NULL)"
                    for r in self.exprs[name].columns
                    if self.typed.get(r, "VARCHAR") != "VARCHAR"
                ]
                level1.append(f"({' OR '.join(bad) if bad else 'false'}) AS __c_{name}")
            else:
                level1.append(f"false AS __c_{name}")
            if name != "event_id":
                out_cols.append(name)
            if col.required or name == "event_type":
                checks.append(f"WHEN NOT __p_{name} THEN 'missing {name}'")
            label = "unmapped event type" if col.kind == "event_type" else f"unparseable {name}"
            label_sql = _lit(label)
            if col.kind == "ts" and kind == "col" and _base(typ) == "VARCHAR":
                # a time that is a number: say how epoch times are read
                hint = MIXED_HINT if self.epoch.get(x) == "mixed" else EPOCH_HINT
                label_sql = (
                    f"CASE WHEN TRY_CAST({x} AS DOUBLE) IS NOT NULL "
                    f"THEN {_lit(f'{label} ({hint})')} ELSE {label_sql} END"
                )
            checks.append(f"WHEN __p_{name} AND __v_{name} IS NULL THEN {label_sql}")
            checks.append(f"WHEN __c_{name} THEN 'unparseable {name}'")
            if col.kind == "ts":
                limit = self.future_limit.strftime("%Y-%m-%d %H:%M:%S.%f")
                checks.append(f"WHEN __v_{name} > TIMESTAMP '{limit}' THEN '{name} in the future'")
                if self.min_ts is not None:
                    floor = self.min_ts.strftime("%Y-%m-%d %H:%M:%S.%f")
                    shown = _shown_ts(self.min_ts)
                    checks.append(
                        f"WHEN __v_{name} < TIMESTAMP '{floor}' THEN '{name} before {shown}'"
                    )
            elif col.kind == "money":
                checks.append(f"WHEN __v_{name} < 0 THEN 'negative {name}'")
            elif col.kind == "rating":
                checks.append(f"WHEN __v_{name} < 1 OR __v_{name} > 5 THEN 'rating outside 1-5'")
        for store_col, (kind, v) in extra_values.items():
            if kind == "col":
                x, typ = self.raw[v], s.types[v]
            else:
                x, typ = f"({self.exprs[store_col].sql})", expr_types[store_col]
            value, _ = self.parse(ColumnSpec(store_col, "text", "VARCHAR"), x, typ)
            level1.append(f"{value} AS __v_{store_col}")
            out_cols.append(store_col)

        reason = f"CASE {' '.join(checks)} END" if checks else "CAST(NULL AS VARCHAR)"
        raw_json = (
            "to_json(struct_pack("
            + ", ".join(f"{_ident(c)} := {self.raw[c]}" for c in s.columns)
            + "))"
            if s.columns
            else "'{}'"
        )
        level2 = ["__line"] if s.has_line else []
        level2 += [self.raw[c] for c in s.columns]
        level2 += [f"__v_{c} AS {_ident(c)}" for c in out_cols]
        level2.append(f"{reason} AS __reason")
        stage_cols = list(out_cols)
        select = {c: f"s.{_ident(c)}" for c in out_cols}
        select.update(constants)
        columns = [c for c in (col.name for col in spec.columns) if c in select]
        columns += [c for c in out_cols if c not in columns]
        hashed = ""
        if spec.name == "events":
            supplied = "event_id" in resolved
            if supplied:
                stage_cols = ["event_id", *stage_cols]
                level2.append("__v_event_id AS event_id")
            # the id is computed once, when the row is written; the stage keeps a 64-bit hash
            # of what decides it (never stored: DuckDB's hash() may change between releases),
            # to find the ids repeated within the file cheaply
            values = ", ".join(f"__v_{c}" for c in out_cols)
            hashed = f"hash({values})"
            if supplied:
                hashed = (
                    f"CASE WHEN __v_event_id IS NOT NULL THEN hash(__v_event_id) ELSE {hashed} END"
                )
            level2.append(f"{hashed} AS __h")
            generated = self.event_id({c: f"s.{_ident(c)}" for c in out_cols}, constants)
            select["event_id"] = f"coalesce(s.event_id, {generated})" if supplied else generated
            columns = ["event_id", *columns]
        level3 = (["__line"] if s.has_line else []) + [_ident(c) for c in stage_cols]
        level3 += ["__reason", f"CASE WHEN __reason IS NOT NULL THEN {raw_json} END AS __raw"]
        if hashed:
            level3.append("__h")
        sql = (
            f"SELECT {', '.join(level3)} FROM (SELECT {', '.join(level2)} FROM "
            f"(SELECT {', '.join(level1)} FROM {self.inner(full=True)}))"
        )
        sources = {c: v for c, (_, v) in resolved.items()}
        kinds = {col.name: col.kind for col in spec.columns}
        text_columns = [
            c
            for c in stage_cols
            if kinds.get(c, "text") in {"id", "text", "event_type"} or c in extras
        ]
        epoch = {}
        for name, (kind, v) in resolved.items():
            x = self.raw[v] if kind == "col" else f"({self.exprs[name].sql})"
            if x in self.epoch:
                epoch[name] = self.epoch[x]
        return StagePlan(
            sql=sql,
            columns=columns,
            select=[select[c] for c in columns],
            sources=sources,
            extras=extras,
            text_columns=text_columns,
            epoch=epoch,
            unread=unread,
        )

    def read_columns(self, resolved: dict[str, tuple[str, str]]) -> set[str]:
        """The source columns the mapping reads: mapped as they are, or in an expression."""
        used = {v for kind, v in resolved.values() if kind == "col"}
        for checked in self.exprs.values():
            used |= set(checked.columns)
        return used

    def unread(self, resolved: dict[str, tuple[str, str]]) -> list[str]:
        """The source columns nothing reads; a warning names the ``--map`` for those whose name
        is a usual one for a canonical column the mapping leaves empty."""
        used = self.read_columns(resolved)
        unread = [c for c in self.source.columns if c not in used]
        empty = [c for c in self.spec.names if c not in resolved and c != "event_id"]
        likely = _synonyms(unread, empty)
        if likely:
            flags = " ".join(_map_flag(c, col) for c, col in likely.items())
            cols = _and([repr(col) for col in likely.values()])
            one = len(likely) == 1
            note = ""
            if "amount" in likely and "price" in _norm(likely["amount"]):
                note = "; amount is the money of the whole line, a unit price times quantity"
            warnings.warn(
                f"{self.label}: the column{'' if one else 's'} {cols} {'is' if one else 'are'} "
                f"not read but look{'s' if one else ''} like {_and(list(likely))}; to read "
                f"{'it' if one else 'them'}, ingest the file into a new store (with a column "
                f"more, the same rows would be new events) with {flags}{note}.",
                RetentionWarning,
                stacklevel=8,  # the caller of ingest()
            )
        return unread

    @staticmethod
    def event_id(values: dict[str, str], constants: dict[str, str]) -> str:
        """The generated id: md5 (32 hex digits) of the canonical values joined by chr(31).

        The form is part of the store's contract (ids must not change between versions, or
        re-ingesting a file would add it again): ``user_id, CAST(ts AS VARCHAR), event_type,
        item_id, order_id, CAST(quantity AS VARCHAR), CAST(amount AS VARCHAR),
        CAST(rating AS VARCHAR), text``, a missing optional value written as chr(30). It is
        built with ``concat`` and literal separators, which is cheaper than ``concat_ws`` and
        gives the same string: every part is non-NULL on a row that is loaded (the required
        parts are present on every good row, the optional ones are coalesced). ``values`` maps
        the columns read from the source to their SQL; the others are ``constants`` (an
        unmapped optional column is NULL, so its part is the literal chr(30)).

        The joined string is ambiguous only for values that contain chr(30) or chr(31) (ASCII
        record and unit separators); two such rows could share an id, and within one file both
        would be kept (repeats are found by a hash of the values, not of the joined string).
        """
        sep, null = "\x1f", "\x1e"
        parts: list[tuple[bool, str]] = []  # (is a literal, text or SQL)
        for name in _ID_PARTS:
            if name in values:
                v = values[name]
                if name in {"ts", "quantity", "amount", "rating"}:
                    v = f"CAST({v} AS VARCHAR)"
                required = name in {"user_id", "ts", "event_type"}
                parts.append((False, v if required else f"coalesce({v}, '{null}')"))
            elif constants.get(name, "").startswith("'"):
                parts.append((True, constants[name].strip("'")))
            else:
                parts.append((True, null))
        args: list[str] = []
        literal = ""
        for i, (is_literal, text) in enumerate(parts):
            if i:
                literal += sep
            if is_literal:
                literal += text
                continue
            if literal:
                args.append(f"'{literal}'")
                literal = ""
            args.append(text)
        if literal:
            args.append(f"'{literal}'")
        return f"md5(concat({', '.join(args)}))"


def _shown_ts(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat(sep=" ")


def plan_stage(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    spec: TableSpec,
    mapping: Mapping,
    *,
    label: str,
    future_limit: pd.Timestamp,
    min_ts: pd.Timestamp | None = None,
) -> StagePlan:
    """Resolve ``mapping`` against ``source`` and build the stage SQL for table ``spec``.

    Times after ``future_limit`` or before ``min_ts`` (None: no floor) are quarantined.

    Raises
    ------
    SchemaError
        A required column cannot be found, a mapped expression does not bind, or the
        mapping uses a column name the header gives more than once.
    ConfigError
        A mapped value is neither a column nor an allowed expression over the columns
        (:func:`~retention.data._expr.parse_map_expression`): nothing has run.
    """
    return _Builder(con, source, spec, mapping, label, future_limit, min_ts).plan()

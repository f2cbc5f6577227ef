"""Ingest: read, validate, quarantine, deduplicate and append, in one transaction.

Accounting: ``read == loaded + duplicates + quarantined``, and each count is rows this ingest
wrote or found stored: ``loaded`` rows appended to the table, ``quarantined`` rows added to the
quarantine (as many as the quarantine holds for this ``ingest_id``), ``duplicates`` rows already
stored. Bad rows are idempotent like events: the quarantine keeps one row per (file, line,
reason), so a bad record that an earlier ingest of the same file (same SHA-256, same table)
already quarantined for the same reason is not stored again and counts as a duplicate.
Re-ingesting a file adds nothing, bad rows included.

A file whose every record is bad raises :class:`QuarantineError` (unless
``allow_all_quarantined``) *after* the ingest is committed: the quarantine rows and the ingest
log are kept (nothing is lost, and they say what was wrong); no event was loaded. It does so on
every ingest of such a file, a re-ingest included.

A write that fails on the store's disk (full, read-only, gone) rolls the transaction back and
raises one-line :class:`StoreError`: the store holds what it held before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from retention._progress import status
from retention._settings import get_settings, parse_min_ts
from retention.data._contract import TableSpec, table_spec
from retention.data._mapping import Mapping
from retention.data._readers import MAX_QUOTE_REPAIRS, Source, check_file, read_file, read_frame
from retention.data._store import Store
from retention.data._validate import StagePlan, plan_stage
from retention.exceptions import QuarantineError, ReadError, RetentionWarning, StoreError

__all__ = [
    "INGEST_COMPRESS_STRINGS",
    "INGEST_MEMORY_LIMIT",
    "IngestReport",
    "ingest",
    "ingest_frame",
]

#: DuckDB memory limit while an ingest runs (the stage spills to disk beyond it)
INGEST_MEMORY_LIMIT = "1GB"

#: Compress the strings an ingest writes with DuckDB's ``dict_fsst`` (its only string
#: compression for new data). Off by default, for speed: with it, an ingest of 5M synthetic
#: events took 24 s instead of 17 s (two busy cores); without it, strings are stored
#: uncompressed and the store file is about twice the size (451 MB instead of 225 MB).
#: Data written either way reads the same. Set True to favour disk space over ingest speed.
INGEST_COMPRESS_STRINGS = False


def _ingest_settings() -> dict[str, str]:
    """DuckDB settings held while an ingest runs (restored afterwards)."""
    settings = {"memory_limit": INGEST_MEMORY_LIMIT}
    if not INGEST_COMPRESS_STRINGS:
        settings["disabled_compression_methods"] = "dict_fsst"
    return settings


@dataclass
class IngestReport:
    """The accounting of one ingest: ``read == loaded + duplicates + quarantined``.

    Attributes
    ----------
    ingest_id : int
        Id of the ingest in the ``ingests`` table (``ingest_id`` column of the rows it wrote).
    file : str
        The file (or the ``source_name`` of a frame).
    table : str
        Table written.
    sha256 : str or None
        SHA-256 of the file's bytes (of the frame's row hashes for frames).
    read : int
        Records read (including rows the reader could not parse).
    loaded : int
        Rows appended.
    duplicates : int
        Valid rows already in the store or repeated earlier in the same file.
    quarantined : int
        Rows sent to the ``quarantine`` table.
    reasons : dict of str to int
        Quarantined rows by reason.
    seconds : float
        Wall time of the ingest.
    columns : dict of str to str
        Canonical column -> the source it was read from.
    unread : list of str
        Source columns nothing read (the table has no column for them; a warning named the
        ``--map`` of those whose name is a usual one for an empty canonical column).
    """

    ingest_id: int
    file: str
    table: str
    sha256: str | None
    read: int
    loaded: int
    duplicates: int
    quarantined: int
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    columns: dict[str, str] = field(default_factory=dict)
    unread: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the accounting adds up and nothing was quarantined."""
        return self.balanced and self.quarantined == 0

    @property
    def balanced(self) -> bool:
        """``read == loaded + duplicates + quarantined``."""
        return self.read == self.loaded + self.duplicates + self.quarantined

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ingest_id": self.ingest_id,
            "file": self.file,
            "table": self.table,
            "sha256": self.sha256,
            "read": self.read,
            "loaded": self.loaded,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "reasons": dict(self.reasons),
            "seconds": self.seconds,
            "columns": dict(self.columns),
            "unread": list(self.unread),
        }


def _sha256(path: Path) -> tuple[str, bool]:
    """The SHA-256 of the file's bytes, and whether a NUL byte may be in its records (one was
    seen, or the file is compressed or binary, where the raw bytes do not tell)."""
    digest = hashlib.sha256()
    nul = False
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)  # releases the GIL: runs beside DuckDB's threads
            nul = nul or b"\x00" in chunk
    return digest.hexdigest(), nul


def _frame_sha256(df: pd.DataFrame) -> str | None:
    try:
        hashed = pd.util.hash_pandas_object(df, index=False).to_numpy()
    except (TypeError, ValueError):
        return None
    digest = hashlib.sha256(hashed.tobytes())
    digest.update("\x1f".join(map(str, df.columns)).encode())
    return digest.hexdigest()


def _now(now: pd.Timestamp | None) -> pd.Timestamp:
    if now is None:
        return pd.Timestamp.now(tz="UTC").tz_localize(None)
    now = pd.Timestamp(now)
    return now.tz_convert("UTC").tz_localize(None) if now.tzinfo is not None else now


def _run(
    store: Store,
    label: str,
    open_source: Callable[[duckdb.DuckDBPyConnection], Source],
    mapping: Mapping | None,
    table: str,
    strict: bool,
    now: pd.Timestamp | None,
    future_tolerance: pd.Timedelta,
    digest: Callable[[], tuple[str | None, bool]],
    min_ts: pd.Timestamp | str | None = None,
    allow_all_quarantined: bool = False,
) -> IngestReport:
    spec = table_spec(table)
    mapping = mapping if mapping is not None else Mapping()
    mapping.check(spec.names, spec.name, allow_extra=spec.extra_columns)
    if store.read_only:
        raise StoreError(
            f"Store {store.path} is open read-only: open it with read_only=False to ingest."
        )
    limit = _now(now) + pd.Timedelta(future_tolerance)
    floor = _floor(min_ts, mapping)
    con = store.con
    started = time.perf_counter()
    started_at = pd.Timestamp.now(tz="UTC").tz_localize(None)
    sources: list[Source] = []
    saved = _apply_settings(con)
    try:
        # reading, planning and validating touch only temporary tables: the store's
        # transaction starts when the first row is written. Mapped expressions reach this
        # connection only as SQL rebuilt from a checked tree (see _expr.py). Its configuration
        # is not locked on purpose: enable_external_access=false, lock_configuration=true and
        # allowed_paths act on the whole DuckDB instance and cannot be undone while it runs,
        # and this is the store's one connection of the process (the CLI's, the service's), which
        # must read the next file and restore the settings below. A separate locked instance
        # would need the stage copied across (about 0.8 s more per 2M rows, doubling its memory).
        with status(f"Reading {label}"):
            sources.append(open_source(con))
        report, all_bad = _load(
            store, sources, spec, mapping, label, limit, floor, strict, digest, started_at, started
        )
    finally:
        for source in reversed(sources):
            source.close(con)
        _restore_settings(con, saved)
    if all_bad is not None and not allow_all_quarantined:
        top = ", ".join(f"{n} {r}" for r, n in list(all_bad.items())[:3])
        raise QuarantineError(
            f"All {report.read} rows of {label} were quarantined ({top}), so nothing was "
            f"loaded; the rows and their reasons are kept in the quarantine table (ingest "
            f"{report.ingest_id} or the earlier ingest of the same file). Fix the file or the "
            "mapping, or pass allow_all_quarantined=True to accept an ingest that loads nothing."
        )
    return report


def _floor(min_ts: pd.Timestamp | str | None, mapping: Mapping) -> pd.Timestamp | None:
    """The earliest real time: ``min_ts``, else the mapping's ``min_ts``, else the
    ``RETENTION_MIN_TS`` setting; None when the one that applies says ``none``."""
    if min_ts is not None and not isinstance(min_ts, str):
        ts = pd.Timestamp(min_ts)
        return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts
    if min_ts is not None:
        value = parse_min_ts(min_ts, "min_ts")
    elif mapping.min_ts is not None:
        value = parse_min_ts(mapping.min_ts, "min_ts")
    else:
        value = get_settings().min_ts
    return None if value is None else pd.Timestamp(value)


def _write_failure(exc: BaseException, writing: bool) -> bool:
    """DuckDB could not write: any IO error while ``writing`` the store (the file has been read
    by then), else one that says so (a full disk while the stage spills to the temp folder),
    as opposed to an error reading the file."""
    if not isinstance(exc, duckdb.IOException):
        return False
    msg = str(exc).lower()
    return writing or any(s in msg for s in ("no space", "could not write", "disk full", "quota"))


def _store_error(store: Store, exc: BaseException) -> StoreError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreError(
        f"Cannot write to store {store.path} ({msg}): the ingest was rolled back and the store "
        "holds what it held before. Free disk space (or make the store's folder writable) and "
        "ingest again."
    )


def _apply_settings(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Apply :func:`_ingest_settings`; returns the previous values of those it set."""
    saved: dict[str, str] = {}
    for name, value in _ingest_settings().items():
        try:
            row = con.execute(f"SELECT current_setting('{name}')").fetchone()
            current = "" if row is None or row[0] is None else str(row[0])
            if name == "disabled_compression_methods" and current:
                # keep what the session already disabled
                value = ",".join(dict.fromkeys([*current.split(","), value]))
            con.execute(f"SET {name} = '{value}'")
        except duckdb.Error:  # an older or newer DuckDB without the setting: skip it
            continue
        saved[name] = current
    return saved


def _restore_settings(con: duckdb.DuckDBPyConnection, saved: dict[str, str]) -> None:
    for name, value in saved.items():
        with contextlib.suppress(duckdb.Error):
            if name == "memory_limit" or not value:
                # memory: DuckDB's default (80% of RAM), as the limit reads back rounded
                con.execute(f"RESET {name}")
            else:
                con.execute(f"SET {name} = '{value}'")


def _stage(
    store: Store,
    sources: list[Source],
    spec: TableSpec,
    mapping: Mapping,
    label: str,
    limit: pd.Timestamp,
    floor: pd.Timestamp | None,
) -> tuple[Source, StagePlan, str]:
    """Plan and build the stage of the last of ``sources``; when its scan met a runaway
    unterminated quote, stage the repaired source instead (appended to ``sources``)."""
    con = store.con
    source = sources[-1]
    for attempt in range(MAX_QUOTE_REPAIRS + 1):
        with warnings.catch_warnings():
            if attempt:  # said once, for the first reading
                warnings.simplefilter("ignore", RetentionWarning)
            plan = plan_stage(
                con, source, spec, mapping, label=label, future_limit=limit, min_ts=floor
            )
        stage = f"__stage_{uuid.uuid4().hex[:12]}"
        source.drops.append(f"DROP TABLE IF EXISTS {stage}")
        with status(f"Validating {label}"):
            try:
                con.execute(f"CREATE TEMP TABLE {stage} AS {plan.sql}")
                source.after_scan(con)
                repaired = source.repair(con)
            except duckdb.Error as exc:
                if _write_failure(exc, writing=False):
                    raise _store_error(store, exc) from None
                msg = str(exc).strip().splitlines()[0]
                raise ReadError(
                    f"Cannot read the rows of {label} ({msg}): check the file and the --map "
                    "expressions (use TRY_CAST in expressions that cast)."
                ) from None
        if repaired is None:
            break
        sources.append(repaired)
        source.close(con)
        source = repaired
    return source, plan, stage


def _quarantine_nul(con: duckdb.DuckDBPyConnection, stage: str, plan: StagePlan) -> None:
    """Send the good staged rows with a NUL byte in a text value to the quarantine (their raw
    record is the JSON of the staged values)."""
    if not plan.text_columns:
        return
    cols = [f'"{c}"' for c in plan.text_columns]
    found = " OR ".join(f"contains({c}, chr(0))" for c in cols)
    raw = "to_json(struct_pack(" + ", ".join(f"{c} := {c}" for c in cols) + "))"
    con.execute(
        f"UPDATE {stage} SET __reason = 'NUL byte', __raw = {raw} "
        f"WHERE __reason IS NULL AND ({found})"
    )


def _load(
    store: Store,
    sources: list[Source],
    spec: TableSpec,
    mapping: Mapping,
    label: str,
    limit: pd.Timestamp,
    floor: pd.Timestamp | None,
    strict: bool,
    digest: Callable[[], tuple[str | None, bool]],
    started_at: pd.Timestamp,
    started: float,
) -> tuple[IngestReport, dict[str, int] | None]:
    """Stage, check and write; the report, and the reasons when every record was bad."""
    con = store.con
    source, plan, stage = _stage(store, sources, spec, mapping, label, limit, floor)
    # the file's hash is ready by now (it is read faster than DuckDB parses it); its reading
    # also tells whether any byte is NUL, which spares the check in the usual case. The rule
    # is for text files (CSV, JSON Lines), where a NUL byte is corruption; Parquet files and
    # frames keep their typed strings as given
    sha256, nul = digest()
    if source.text and (nul or source.decoded):
        _quarantine_nul(con, stage, plan)
    row = con.execute(f"SELECT count(*), count(__reason) FROM {stage}").fetchone()
    assert row is not None
    staged, bad = int(row[0]), int(row[1])
    rejected = 0
    if source.rejects:
        row = con.execute(f"SELECT count(*) FROM {source.rejects}").fetchone()
        rejected = int(row[0]) if row else 0
    read = staged + rejected
    if read == 0:
        raise ReadError(f"{label} has no rows: pass a file with a header and at least one row.")
    reasons = dict(
        con.execute(
            f"SELECT reason, count(*) FROM (SELECT __reason AS reason FROM {stage} "
            f"WHERE __reason IS NOT NULL"
            + (f" UNION ALL SELECT reason FROM {source.rejects}" if source.rejects else "")
            + ") GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    )
    quarantined = bad + rejected
    if strict and quarantined:
        top = ", ".join(f"{n} {r}" for r, n in list(reasons.items())[:3])
        raise QuarantineError(
            f"{quarantined} of {read} rows of {label} would be quarantined ({top}); with "
            "--strict nothing was loaded: fix those rows, or drop --strict to load the rest."
        )
    con.execute("BEGIN TRANSACTION")
    try:
        report = _write(
            store,
            source,
            spec,
            plan,
            stage,
            label,
            sha256,
            started_at,
            read,
            staged,
            bad,
            quarantined,
            reasons,
        )
        report.seconds = time.perf_counter() - started
        con.execute(
            "UPDATE ingests SET seconds = ? WHERE ingest_id = ?",
            [report.seconds, report.ingest_id],
        )
        con.execute("COMMIT")
    except BaseException as exc:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        if _write_failure(exc, writing=True):
            raise _store_error(store, exc) from None
        raise
    return report, (reasons if quarantined == read else None)


def _write(
    store: Store,
    source: Source,
    spec: TableSpec,
    plan: StagePlan,
    stage: str,
    label: str,
    sha256: str | None,
    started_at: pd.Timestamp,
    read: int,
    staged: int,
    bad: int,
    quarantined: int,
    reasons: dict[str, int],
) -> IngestReport:
    con = store.con
    row = con.execute("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingests").fetchone()
    ingest_id = int(row[0]) if row else 1

    known = 0  # bad records already in the quarantine from an earlier ingest of the file
    if quarantined:
        with status(f"Quarantining {quarantined} rows"):
            stored = _quarantine(con, source, stage, ingest_id, sha256, spec.name)
        if stored < quarantined:
            known, quarantined = quarantined - stored, stored
            reasons = dict(
                con.execute(
                    "SELECT reason, count(*) FROM quarantine WHERE ingest_id = ? "
                    "GROUP BY 1 ORDER BY 2 DESC, 1",
                    [ingest_id],
                ).fetchall()
            )

    with status(f"Appending to {spec.name}"):
        if spec.extra_columns:
            for col in plan.extras:
                con.execute(f'ALTER TABLE {spec.name} ADD COLUMN IF NOT EXISTS "{col}" VARCHAR')
        cols = ", ".join(f'"{c}"' for c in plan.columns)
        rows = ", ".join(
            f'{sql} AS "{c}"' for c, sql in zip(plan.columns, plan.select, strict=True)
        )
        if spec.name == "events" and "event_id" not in plan.sources:
            loaded = _append_events(con, stage, cols, rows, ingest_id, staged - bad)
        else:
            # the first row of each key in file order, unless the store has the key
            key = ", ".join(f'"{k}"' for k in spec.key)
            match = " AND ".join(f't."{k}" = n."{k}"' for k in spec.key)
            inserted = con.execute(
                f"""INSERT INTO {spec.name} ({cols}, ingest_id)
                SELECT {cols}, {ingest_id} FROM (
                    SELECT {rows}, s.rowid AS __row FROM {stage} s WHERE s.__reason IS NULL
                ) n
                WHERE NOT EXISTS (SELECT 1 FROM {spec.name} t WHERE {match})
                QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY n.__row) = 1"""
            ).fetchone()
            loaded = int(inserted[0]) if inserted else 0
    duplicates = staged - bad - loaded + known
    con.execute(
        "INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ingest_id,
            label,
            spec.name,
            sha256,
            read,
            loaded,
            duplicates,
            quarantined,
            json.dumps(reasons),
            started_at.to_pydatetime(),
            0.0,
        ],
    )
    return IngestReport(
        ingest_id=ingest_id,
        file=label,
        table=spec.name,
        sha256=sha256,
        read=read,
        loaded=loaded,
        duplicates=duplicates,
        quarantined=quarantined,
        reasons={str(k): int(v) for k, v in reasons.items()},
        columns=plan.sources,
        unread=plan.unread,
    )


#: above this many good rows, ids repeated within a file are found by DuckDB (which can spill
#: to disk) instead of by sorting their hashes in memory (8 bytes a row) with numpy
NUMPY_REPEATS_MAX = 50_000_000


def _repeated_hashes(con: duckdb.DuckDBPyConnection, stage: str, good: int, table: str) -> int:
    """Create ``table (h UBIGINT)``: the ``__h`` hashes seen on more than one good row.

    Returns how many. Sorting the 64-bit hashes with numpy costs a fraction of a DuckDB hash
    aggregate over millions of distinct keys; very large files go to DuckDB, which can spill.
    """
    if good <= NUMPY_REPEATS_MAX:
        hashes = con.execute(f"SELECT __h FROM {stage} WHERE __reason IS NULL").fetchnumpy()
        h = np.asarray(hashes["__h"], dtype=np.uint64)
        h.sort()
        repeated = np.unique(h[1:][h[1:] == h[:-1]])
        arrow = f"__repeated_arrow_{uuid.uuid4().hex[:12]}"
        con.register(arrow, pa.table({"h": pa.array(repeated, type=pa.uint64())}))
        try:
            con.execute(f"CREATE TEMP TABLE {table} AS SELECT h FROM {arrow}")
        finally:
            con.unregister(arrow)
        return len(repeated)
    con.execute(
        f"CREATE TEMP TABLE {table} AS SELECT __h AS h FROM {stage} "
        "WHERE __reason IS NULL GROUP BY 1 HAVING count(*) > 1"
    )
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _append_events(
    con: duckdb.DuckDBPyConnection, stage: str, cols: str, rows: str, ingest_id: int, good: int
) -> int:
    """Append the good staged events whose generated id is new; returns how many.

    Generated ids hash every column, so rows with the same id are identical and any one of
    them will do. Rather than deduplicating every row (a hash aggregate carrying every column),
    the rows that may repeat are found first from the stage's 64-bit hashes ``__h`` (equal
    ids give equal hashes; a collision only sends a few more rows through ``DISTINCT ON``,
    which compares the ids themselves). Rows with a unique hash go straight in. The anti-join
    against the stored events is skipped when none are stored. The id (an md5) is computed
    here, once per row, rather than held in the stage.
    """
    if good == 0:
        return 0
    repeated = f"__repeated_{uuid.uuid4().hex[:12]}"
    stored = con.execute("SELECT count(*) FROM (SELECT 1 FROM events LIMIT 1)").fetchone()
    new = (
        "WHERE NOT EXISTS (SELECT 1 FROM events t WHERE t.event_id = n.event_id)"
        if stored and stored[0]
        else ""
    )
    try:
        n_repeated = _repeated_hashes(con, stage, good, repeated)
        unique = (
            f" AND NOT EXISTS (SELECT 1 FROM {repeated} r WHERE r.h = s.__h)" if n_repeated else ""
        )
        row = con.execute(
            f"""INSERT INTO events ({cols}, ingest_id)
            SELECT {cols}, {ingest_id} FROM (
                SELECT {rows} FROM {stage} s WHERE s.__reason IS NULL{unique}
            ) n {new}"""
        ).fetchone()
        loaded = int(row[0]) if row else 0
        if n_repeated:
            row = con.execute(
                f"""INSERT INTO events ({cols}, ingest_id)
                SELECT DISTINCT ON (event_id) {cols}, {ingest_id} FROM (
                    SELECT {rows} FROM {stage} s WHERE s.__reason IS NULL
                      AND s.__h IN (SELECT h FROM {repeated})
                ) n {new}"""
            ).fetchone()
            loaded += int(row[0]) if row else 0
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DROP TABLE IF EXISTS {repeated}")
    return loaded


def _quarantine(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    stage: str,
    ingest_id: int,
    sha256: str | None,
    table: str,
) -> int:
    """Store the bad records with their line and reason, except those an earlier ingest of
    the same file into the same table already stored with the same line and reason; returns
    how many were stored."""
    first = source.first_line
    if source.has_line:
        line = "q.__line"
    elif source.rejects:
        # the k-th good record sits on the k-th file line that the reader did not reject
        line = (
            f"{first} + q.rowid + (SELECT count(*) FROM (SELECT line - {first} - "
            f"(row_number() OVER (ORDER BY line) - 1) AS g FROM {source.rejects}) r "
            "WHERE r.g <= q.rowid)"
        )
    else:
        line = f"{first} + q.rowid"
    rows = f"SELECT {line} AS line, q.__reason AS reason, CAST(q.__raw AS VARCHAR) AS raw "
    rows += f"FROM {stage} q "
    rows += "WHERE q.__reason IS NOT NULL"
    if source.rejects:
        rows += f" UNION ALL SELECT line, reason, raw FROM {source.rejects}"
    new, params = "", []
    if sha256 is not None:
        seen = con.execute(
            "SELECT count(*) FROM (SELECT 1 FROM quarantine q JOIN ingests i USING (ingest_id) "
            "WHERE i.sha256 = ? AND i.table_name = ? LIMIT 1)",
            [sha256, table],
        ).fetchall()
        if seen and seen[0][0]:
            new = (
                " WHERE NOT EXISTS (SELECT 1 FROM quarantine q JOIN ingests i USING (ingest_id) "
                "WHERE i.sha256 = ? AND i.table_name = ? AND q.reason = n.reason "
                "AND q.source_line IS NOT DISTINCT FROM n.line)"
            )
            params = [sha256, table]
    inserted = con.execute(
        f"INSERT INTO quarantine SELECT {ingest_id}, line, reason, raw FROM ({rows}) n{new}",
        params,
    ).fetchall()
    return int(inserted[0][0]) if inserted else 0


def ingest(
    store: Store,
    path: str | Path,
    mapping: Mapping | None = None,
    *,
    table: str = "events",
    strict: bool = False,
    now: pd.Timestamp | None = None,
    future_tolerance: pd.Timedelta = pd.Timedelta("1D"),
    min_ts: pd.Timestamp | str | None = None,
    allow_all_quarantined: bool = False,
) -> IngestReport:
    """Ingest a CSV, Parquet or JSON Lines file into ``table``, in one transaction.

    Bad rows go to the ``quarantine`` table with their reason and source line; rows already in
    the store (or repeated in the file) count as duplicates; the rest are appended. The
    accounting ``read = loaded + duplicates + quarantined`` is stored in ``ingests``. A failure
    or a kill leaves the store as it was.

    Parameters
    ----------
    store : Store
        An open, writable store.
    path : str or Path
        The file (``.csv``, ``.tsv``, ``.parquet``, ``.jsonl``, optionally ``.gz``).
    mapping : Mapping, optional
        Column map, event-type value map and reader options; by default the file's columns
        are used by their canonical names and every row is a purchase.
    table : str
        ``events`` (default), ``items``, ``users``, ``assignments`` or ``outcomes``.
    strict : bool
        Raise :class:`QuarantineError` (and load nothing) when any row would be quarantined.
    now : pd.Timestamp, optional
        Reference time for "in the future" (default: the current UTC time).
    future_tolerance : pd.Timedelta
        Timestamps after ``now + future_tolerance`` are quarantined.
    min_ts : pd.Timestamp or str, optional
        Timestamps before it are quarantined as not real (``ts before 1990-01-01``); ``"none"``
        keeps every time. Default: the mapping's ``min_ts``, else the ``RETENTION_MIN_TS``
        setting (``1990-01-01``).
    allow_all_quarantined : bool
        Accept an ingest whose every row is quarantined (by default it raises
        :class:`QuarantineError`, after committing the quarantine rows and the ingest log).

    Returns
    -------
    IngestReport

    Raises
    ------
    ReadError
        The file is missing, empty, binary or cannot be read (checked before anything is
        written to the store).
    SchemaError
        A required column (``user_id``, ``ts``) cannot be found, or a column the mapping uses
        is named twice in the header.
    QuarantineError
        ``strict`` and at least one row would be quarantined (nothing is written); or every
        row was quarantined and not ``allow_all_quarantined`` (the quarantine is committed).
    StoreError
        The store cannot be written (a full disk): the ingest was rolled back.
    """
    label = str(path)
    file = check_file(path)
    # the file's hash is computed while DuckDB reads and validates it
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="retention-sha256") as pool:
        digest = pool.submit(_sha256, file)
        try:
            return _run(
                store,
                label,
                lambda con: read_file(con, file, mapping),
                mapping,
                table,
                strict,
                now,
                future_tolerance,
                lambda: _digest(digest, file),
                min_ts,
                allow_all_quarantined,
            )
        finally:
            digest.cancel()


def _digest(future: Future[tuple[str, bool]], file: Path) -> tuple[str, bool]:
    try:
        return future.result()
    except OSError as exc:
        raise ReadError(f"Cannot read {file} ({exc.strerror}): check the file.") from None


def ingest_frame(
    store: Store,
    df: pd.DataFrame,
    mapping: Mapping | None = None,
    *,
    table: str = "events",
    source_name: str,
    strict: bool = False,
    now: pd.Timestamp | None = None,
    future_tolerance: pd.Timedelta = pd.Timedelta("1D"),
    min_ts: pd.Timestamp | str | None = None,
    allow_all_quarantined: bool = False,
) -> IngestReport:
    """Ingest an in-memory DataFrame like :func:`ingest` (columns keep their types).

    ``source_name`` is recorded as the ``file`` of the ingest; source lines in the quarantine
    are 1-based row positions.
    """
    if not isinstance(df, pd.DataFrame):
        raise ReadError(f"ingest_frame expects a pandas DataFrame, got {type(df).__name__}.")
    return _run(
        store,
        source_name,
        lambda con: read_frame(con, df),
        mapping,
        table,
        strict,
        now,
        future_tolerance,
        lambda: (_frame_sha256(df), True),
        min_ts,
        allow_all_quarantined,
    )

"""The store: one embedded DuckDB file with versioned schema migrations."""

from __future__ import annotations

import re
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pandas as pd

from retention.exceptions import ConfigError, StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Store", "store_info"]

#: versioned migrations: ``MIGRATIONS[v - 1]`` brings a store from version ``v - 1`` to ``v``.
#: Append new ones; never edit a released one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # events.event_id is unique: ingest dedups with an anti-join (an ART index on millions
        # of keys would cost more memory and time than the join, and only ingest writes events)
        """CREATE TABLE IF NOT EXISTS events (
            event_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL,
            event_type VARCHAR NOT NULL, item_id VARCHAR, order_id VARCHAR, quantity DOUBLE,
            amount DECIMAL(18,2), rating DOUBLE, text VARCHAR, ingest_id BIGINT)""",
        """CREATE TABLE IF NOT EXISTS items (
            item_id VARCHAR PRIMARY KEY, title VARCHAR, description VARCHAR, category VARCHAR,
            price DECIMAL(18,2), ingest_id BIGINT)""",
        """CREATE TABLE IF NOT EXISTS users (
            user_id VARCHAR PRIMARY KEY, signup_ts TIMESTAMP, country VARCHAR,
            ingest_id BIGINT)""",
        """CREATE TABLE IF NOT EXISTS assignments (
            experiment_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, variant VARCHAR NOT NULL,
            assigned_ts TIMESTAMP, ingest_id BIGINT, PRIMARY KEY (experiment_id, user_id))""",
        """CREATE TABLE IF NOT EXISTS outcomes (
            experiment_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, metric VARCHAR NOT NULL,
            value DOUBLE, ingest_id BIGINT, PRIMARY KEY (experiment_id, user_id, metric))""",
        """CREATE TABLE IF NOT EXISTS quarantine (
            ingest_id BIGINT NOT NULL, source_line BIGINT, reason VARCHAR NOT NULL,
            raw VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS ingests (
            ingest_id BIGINT PRIMARY KEY, file VARCHAR, table_name VARCHAR, sha256 VARCHAR,
            read BIGINT, loaded BIGINT, duplicates BIGINT, quarantined BIGINT,
            reasons JSON, started_at TIMESTAMP, seconds DOUBLE)""",
    ),
)
#: the schema version this code writes
SCHEMA_VERSION = len(MIGRATIONS)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Store:
    """One DuckDB file holding events, side tables, the quarantine and the ingest log.

    Opening a store creates it when needed (unless ``read_only``) and applies the schema
    migrations it lacks; a store written by a newer version of retention is refused.

    Parameters
    ----------
    path : str or Path
        The DuckDB file (``--db``; default ``./retention.duckdb`` via ``resolve_db``).
    read_only : bool
        Open without writing (several readers may share a file); the file must exist.

    Examples
    --------
    >>> with Store("retention.duckdb") as store:  # doctest: +SKIP
    ...     events = store.events_df(before=pd.Timestamp("2011-06-01"))
    """

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._ibis: Any = None
        if str(self.path) != ":memory:":
            if self.path.is_dir():
                raise StoreError(
                    f"Store path {self.path} is a folder: pass a file name, e.g. "
                    f"--db {self.path / 'retention.duckdb'}."
                )
            if not self.path.parent.exists():
                raise StoreError(
                    f"The folder of store {self.path} does not exist: create "
                    f"{self.path.parent} first or pass another --db path."
                )
            if read_only and not self.path.exists():
                raise StoreError(
                    f"No store at {self.path}: ingest data first with "
                    f"`retention ingest FILE --db {self.path}`, or pass the right --db."
                )
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            msg = str(exc)
            if "lock" in msg.lower():
                raise StoreError(
                    f"Store {self.path} is in use by another process: close it "
                    "(or open this one read-only) and try again."
                ) from None
            raise StoreError(
                f"Cannot open {self.path} as a DuckDB store ({_first_line(exc)}): pass a "
                "retention store made by `retention ingest`, or a new file name."
            ) from None
        try:
            self.con.execute("SET TimeZone = 'UTC'")
            self.con.execute("SET enable_progress_bar = false")
            self._migrate()
        except BaseException:
            self.con.close()
            raise

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self.con.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, read_only={self.read_only})"

    # ------------------------------------------------------------------ schema
    @property
    def schema_version(self) -> int:
        """The schema version of the file (0 for an empty read-only file)."""
        if not self.has_table("schema_version"):
            return 0
        row = self.con.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"Store {self.path} has schema version {version}, written by a newer "
                f"retention (this one knows up to {SCHEMA_VERSION}): upgrade retention."
            )
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            raise StoreError(
                f"Store {self.path} has schema version {version}, older than "
                f"{SCHEMA_VERSION}: open it once for writing (e.g. `retention info --db "
                f"{self.path}`... or any ingest) to migrate it."
                if version
                else f"{self.path} is not a retention store (no schema_version table): "
                "pass a store made by `retention ingest`."
            )
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"
            )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for sql in MIGRATIONS[v - 1]:
                    con.execute(sql)
                con.execute(
                    "INSERT INTO schema_version VALUES (?, current_timestamp::TIMESTAMP)", [v]
                )
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise StoreError(
                f"Cannot migrate store {self.path} to schema {SCHEMA_VERSION} "
                f"({_first_line(exc)}): check that the file is writable."
            ) from None

    # ------------------------------------------------------------------ access
    def has_table(self, name: str) -> bool:
        """Whether the store has a table (or view) called ``name``."""
        row = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary "
            "AND schema_name = 'main'",
            [name],
        ).fetchone()
        if row and row[0]:
            return True
        row = self.con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND NOT internal",
            [name],
        ).fetchone()
        return bool(row and row[0])

    def columns(self, name: str) -> list[tuple[str, str]]:
        """``(column, type)`` pairs of table ``name``."""
        self._check_table(name)
        rows = self.con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE table_name = ? AND schema_name = 'main' ORDER BY column_index",
            [name],
        ).fetchall()
        return [(str(c), str(t)) for c, t in rows]

    def _check_table(self, name: str) -> None:
        if not _NAME.match(name) or not self.has_table(name):
            raise ConfigError(
                f"The store {self.path} has no table {name!r}: its tables are "
                f"{', '.join(self.tables())}."
            )

    def tables(self) -> list[str]:
        """Names of the tables in the store."""
        rows = self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary "
            "AND schema_name = 'main' ORDER BY table_name"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def table_df(self, name: str) -> pd.DataFrame:
        """Table ``name`` as a DataFrame (money as float64, timestamps as ``datetime64[ns]``)."""
        cols = self.columns(name)
        select = ", ".join(
            f'CAST("{c}" AS DOUBLE) AS "{c}"' if t.startswith("DECIMAL") else f'"{c}"'
            for c, t in cols
        )
        df = self.con.execute(f'SELECT {select} FROM "{name}"').df()
        return _ns(df)

    def events_df(self, before: pd.Timestamp | None = None, users: Any = None) -> pd.DataFrame:
        """Events as a DataFrame with the contract's columns, sorted by ``user_id, ts``.

        Parameters
        ----------
        before : pd.Timestamp, optional
            Only events with ``ts < before``.
        users : iterable of str, optional
            Only these users.

        Returns
        -------
        pd.DataFrame
            ``event_id, user_id, ts, event_type, item_id, order_id, quantity, amount, rating,
            text``; ``amount`` as float64, ``ts`` as ``datetime64[ns]``.
        """
        where: list[str] = []
        params: list[Any] = []
        if before is not None:
            where.append("ts < ?")
            params.append(pd.Timestamp(before).to_pydatetime())
        if users is not None:
            where.append("user_id IN (SELECT unnest(?::VARCHAR[]))")
            params.append([str(u) for u in users])
        sql = (
            "SELECT event_id, user_id, ts, event_type, item_id, order_id, quantity, "
            "CAST(amount AS DOUBLE) AS amount, rating, text FROM events"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY user_id, ts, event_id"
        )
        return _ns(self.con.execute(sql, params).df())

    def ibis(self) -> Any:
        """An Ibis DuckDB backend over this store's connection."""
        if self._ibis is None:
            import ibis

            self._ibis = ibis.duckdb.from_connection(self.con)
        return self._ibis


def _ns(df: pd.DataFrame) -> pd.DataFrame:
    for col in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[col]) and df[col].dtype != "datetime64[ns]":
            df[col] = df[col].astype("datetime64[ns]")
    return df


def store_info(store: Store) -> dict[str, Any]:
    """What the store holds, for ``retention info``.

    Returns
    -------
    dict
        ``path``, ``schema_version``, ``events`` (total), ``events_by_type`` ({type: n}),
        ``users``, ``items`` (distinct ids in events), ``first_ts``, ``last_ts`` (ISO strings
        or None), ``tables`` ({table: rows}), ``quarantine_by_reason`` ({reason: n}) and
        ``ingests`` (list of dicts, oldest first).
    """
    con = store.con
    by_type = dict(
        con.execute(
            "SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    )
    row = con.execute(
        "SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id), min(ts), max(ts) "
        "FROM events"
    ).fetchone()
    assert row is not None
    n, n_users, n_items, first, last = row
    tables = {}
    for name in store.tables():
        count = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()
        tables[name] = int(count[0]) if count else 0
    reasons = dict(
        con.execute(
            "SELECT reason, count(*) FROM quarantine GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    )
    ingests = (
        con.execute(
            "SELECT ingest_id, file, table_name, sha256, read, loaded, duplicates, quarantined, "
            "started_at, seconds FROM ingests ORDER BY ingest_id"
        )
        .df()
        .to_dict(orient="records")
    )
    for rec in ingests:
        rec["started_at"] = str(rec["started_at"])
        for key in ("ingest_id", "read", "loaded", "duplicates", "quarantined"):
            rec[key] = int(rec[key])
        rec["seconds"] = float(rec["seconds"])
    return {
        "path": str(store.path),
        "schema_version": store.schema_version,
        "events": int(n),
        "events_by_type": {str(k): int(v) for k, v in by_type.items()},
        "users": int(n_users),
        "items": int(n_items),
        "first_ts": first.isoformat() if first is not None else None,
        "last_ts": last.isoformat() if last is not None else None,
        "tables": tables,
        "quarantine_by_reason": {str(k): int(v) for k, v in reasons.items()},
        "ingests": ingests,
    }

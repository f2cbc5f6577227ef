"""The store: one embedded DuckDB file with versioned schema migrations."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Mapping as MappingABC
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pandas as pd

from retention.exceptions import ConfigError, StoreError

__all__ = [
    "MIGRATIONS",
    "MODEL_STAGES",
    "SCHEMA_VERSION",
    "TABLE_COLUMNS",
    "ModelRecord",
    "Store",
    "store_info",
]

#: One step of a migration: a SQL statement, or a function of the connection for a step that
#: depends on what the file holds (adopting a table an older version created untyped).
MigrationStep = str | Callable[[duckdb.DuckDBPyConnection], None]

#: Typed columns of the tables a workflow writes row by row (``(name, type)`` in order). The
#: ``scores`` columns are also those of any other table ``retention score --table NAME`` writes.
TABLE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "scores": (
        ("user_id", "VARCHAR NOT NULL"),
        ("p_retained", "DOUBLE"),
        ("p_alive", "DOUBLE"),
        ("expected_purchases", "DOUBLE"),
        ("clv", "DOUBLE"),
        ("risk_band", "VARCHAR"),
        ("cutoff", "TIMESTAMP NOT NULL"),
        ("horizon_days", "INTEGER"),
        ("model_version", "VARCHAR NOT NULL"),
        ("scored_at", "TIMESTAMP"),
    ),
    "score_reasons": (
        ("user_id", "VARCHAR NOT NULL"),
        ("direction", "VARCHAR NOT NULL"),
        ("rank", "INTEGER NOT NULL"),
        ("feature", "VARCHAR"),
        ("family", "VARCHAR"),
        ("contribution", "DOUBLE"),
        ("value", "DOUBLE"),
        ("typical", "DOUBLE"),
        ("text", "VARCHAR"),
        ("cutoff", "TIMESTAMP NOT NULL"),
        ("model_version", "VARCHAR NOT NULL"),
    ),
}


def _create_sql(name: str, columns: Sequence[tuple[str, str]]) -> str:
    body = ", ".join(f'"{c}" {t}' for c, t in columns)
    return f'CREATE TABLE IF NOT EXISTS "{name}" ({body})'


def _main_table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary "
        "AND schema_name = 'main' AND database_name = current_database()",
        [name],
    ).fetchall()
    return bool(row and row[0][0])


def _adopt(name: str) -> Callable[[duckdb.DuckDBPyConnection], None]:
    """A step creating table ``name`` typed; an untyped one that version 1 created from a
    DataFrame (``scores``, ``score_reasons``) is rebuilt typed, its rows cast over."""
    columns = TABLE_COLUMNS[name]

    def step(con: duckdb.DuckDBPyConnection) -> None:
        if not _main_table_exists(con, name):
            con.execute(_create_sql(name, columns))
            return
        old = f"__retention_v1_{name}"
        have = {
            str(r[0])
            for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                "AND schema_name = 'main' AND database_name = current_database()",
                [name],
            ).fetchall()
        }
        con.execute(f'ALTER TABLE "{name}" RENAME TO "{old}"')
        con.execute(_create_sql(name, columns))
        select = ", ".join(
            f'TRY_CAST("{c}" AS {t.replace(" NOT NULL", "")})' if c in have else "NULL"
            for c, t in columns
        )
        required = [c for c, t in columns if t.endswith("NOT NULL") and c in have]
        where = " AND ".join(f'"{c}" IS NOT NULL' for c in required) or "true"
        cols = ", ".join(f'"{c}"' for c, _ in columns)
        con.execute(f'INSERT INTO "{name}" ({cols}) SELECT {select} FROM "{old}" WHERE {where}')
        con.execute(f'DROP TABLE "{old}"')

    return step


#: versioned migrations: ``MIGRATIONS[v - 1]`` brings a store from version ``v - 1`` to ``v``.
#: Append new ones; never edit a released one. Every table of the store is declared here, with
#: typed columns (``docs/tables.md`` describes them; a test checks that page against a new store).
MIGRATIONS: tuple[tuple[MigrationStep, ...], ...] = (
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
    (
        # written by `retention score` (one row per model_version, cutoff and customer) and the
        # reasons beside them; both were created from DataFrames before version 2
        _adopt("scores"),
        _adopt("score_reasons"),
        # the text-embedding cache of retention.features.EmbeddingCache
        """CREATE TABLE IF NOT EXISTS embeddings (
            text_hash VARCHAR, model VARCHAR, vector FLOAT[], PRIMARY KEY (text_hash, model))""",
        # the raw Open Bandit log of the bundled dataset open_bandit_random_all
        """CREATE TABLE IF NOT EXISTS bandit_feedback (
            dataset VARCHAR NOT NULL, row_id BIGINT NOT NULL, ts TIMESTAMP NOT NULL,
            user_id VARCHAR NOT NULL, item_id VARCHAR NOT NULL, position INTEGER NOT NULL,
            click INTEGER NOT NULL, propensity_score DOUBLE NOT NULL,
            user_feature_0 VARCHAR, user_feature_1 VARCHAR, user_feature_2 VARCHAR,
            user_feature_3 VARCHAR, affinity DOUBLE[], ingest_id BIGINT,
            PRIMARY KEY (dataset, row_id))""",
        # the model registry: artifacts `retention train` wrote for this store
        """CREATE TABLE IF NOT EXISTS models (
            model_id VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, sha256 VARCHAR NOT NULL,
            registry_name VARCHAR, cutoff TIMESTAMP, horizon_days INTEGER,
            created_at TIMESTAMP, metadata JSON)""",
    ),
    (
        # service API keys (issue 15, `retention apikey`): a salted hash of each secret, never
        # the secret itself; revoked keys stay listed
        """CREATE TABLE IF NOT EXISTS api_keys (
            key_id VARCHAR PRIMARY KEY, name VARCHAR, scope VARCHAR NOT NULL,
            salt VARCHAR NOT NULL, key_hash VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL,
            revoked_at TIMESTAMP, last_used_at TIMESTAMP)""",
    ),
    (
        # experiments (issue 14, `retention experiment`): their design, the first exposure of
        # each assigned user, the latest analysis, and the uplift measured by segment (what
        # `retention plan` reads through retention.workflows.measured_uplift)
        """CREATE TABLE IF NOT EXISTS experiments (
            experiment_id VARCHAR PRIMARY KEY, name VARCHAR, hypothesis VARCHAR,
            variants VARCHAR[] NOT NULL, weights DOUBLE[] NOT NULL, control VARCHAR NOT NULL,
            salt VARCHAR NOT NULL, holdout DOUBLE NOT NULL, stratify_by VARCHAR,
            metrics VARCHAR[], guardrails VARCHAR[], window_days INTEGER NOT NULL,
            start_ts TIMESTAMP, status VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS exposures (
            experiment_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL,
            exposed_ts TIMESTAMP NOT NULL, source VARCHAR,
            PRIMARY KEY (experiment_id, user_id))""",
        """CREATE TABLE IF NOT EXISTS experiment_results (
            experiment_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, variant VARCHAR NOT NULL,
            control VARCHAR NOT NULL, kind VARCHAR, n_control BIGINT, n_treatment BIGINT,
            mean_control DOUBLE, mean_treatment DOUBLE, difference DOUBLE, ci_low DOUBLE,
            ci_high DOUBLE, p_value DOUBLE, p_value_adjusted DOUBLE, lift DOUBLE,
            lift_ci_low DOUBLE, lift_ci_high DOUBLE, chance_to_win DOUBLE, expected_loss DOUBLE,
            covariate VARCHAR, cuped_theta DOUBLE, variance_reduction DOUBLE,
            sequential BOOLEAN, guardrail VARCHAR, srm_p_value DOUBLE, population VARCHAR,
            analysed_at TIMESTAMP NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS segment_uplift (
            experiment_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, segment_by VARCHAR NOT NULL,
            segment VARCHAR NOT NULL, variant VARCHAR NOT NULL, control VARCHAR NOT NULL,
            n_control BIGINT, n_treatment BIGINT, uplift DOUBLE, ci_low DOUBLE, ci_high DOUBLE,
            p_value DOUBLE, measured_at TIMESTAMP NOT NULL)""",
    ),
    (
        # recommendations (issue 12, `retention recommend --all`): each customer's top k items
        # at a cutoff, with the reason in words; one model version and cutoff replaced at a time
        """CREATE TABLE IF NOT EXISTS recommendations (
            user_id VARCHAR NOT NULL, rank INTEGER NOT NULL, item_id VARCHAR NOT NULL,
            score DOUBLE, reason VARCHAR, recommender VARCHAR, cutoff TIMESTAMP NOT NULL,
            model_version VARCHAR NOT NULL, created_at TIMESTAMP)""",
    ),
    (
        # promotions, loyalty and the plan (issue 13, `retention uplift|loyalty|plan`): uplift
        # models (LightGBM text as JSON, no code) and their scores; the loyalty programme's
        # points ledger, current tiers, tier history, holdout and runs; the plan, one row per
        # customer, and the totals of each plan run
        """CREATE TABLE IF NOT EXISTS uplift_models (
            model_id VARCHAR PRIMARY KEY, experiment_id VARCHAR, outcome VARCHAR NOT NULL,
            control VARCHAR NOT NULL, treatments VARCHAR[] NOT NULL, learner VARCHAR NOT NULL,
            features VARCHAR[], state JSON NOT NULL, sha256 VARCHAR NOT NULL, metrics JSON,
            cutoff TIMESTAMP, created_at TIMESTAMP NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS uplift_scores (
            user_id VARCHAR NOT NULL, treatment VARCHAR NOT NULL, uplift DOUBLE,
            outcome_control DOUBLE, model_id VARCHAR NOT NULL, cutoff TIMESTAMP NOT NULL,
            scored_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS loyalty_ledger (
            entry_id VARCHAR PRIMARY KEY, program VARCHAR NOT NULL, user_id VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL, kind VARCHAR NOT NULL, points BIGINT NOT NULL,
            balance BIGINT NOT NULL, source_id VARCHAR, created_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS loyalty (
            program VARCHAR NOT NULL, user_id VARCHAR NOT NULL, tier VARCHAR,
            previous_tier VARCHAR, movement VARCHAR, score DOUBLE, points BIGINT,
            expected_cost DOUBLE, holdout BOOLEAN NOT NULL, tier_message VARCHAR,
            as_of TIMESTAMP NOT NULL, run_id VARCHAR NOT NULL, PRIMARY KEY (program, user_id))""",
        """CREATE TABLE IF NOT EXISTS loyalty_history (
            run_id VARCHAR NOT NULL, program VARCHAR NOT NULL, as_of TIMESTAMP NOT NULL,
            user_id VARCHAR NOT NULL, tier VARCHAR, PRIMARY KEY (run_id, user_id))""",
        """CREATE TABLE IF NOT EXISTS loyalty_holdout (
            program VARCHAR NOT NULL, user_id VARCHAR NOT NULL, holdout BOOLEAN NOT NULL,
            share DOUBLE NOT NULL, salt_digest VARCHAR NOT NULL, assigned_at TIMESTAMP,
            PRIMARY KEY (program, user_id))""",
        """CREATE TABLE IF NOT EXISTS loyalty_runs (
            run_id VARCHAR PRIMARY KEY, program VARCHAR NOT NULL, as_of TIMESTAMP NOT NULL,
            config JSON, summary JSON, created_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS plan (
            user_id VARCHAR NOT NULL, plan_id VARCHAR NOT NULL, cutoff TIMESTAMP,
            p_retained DOUBLE, clv DOUBLE, risk_band VARCHAR, reason VARCHAR, tier VARCHAR,
            tier_message VARCHAR, action VARCHAR NOT NULL, uplift DOUBLE, uplift_source VARCHAR,
            expected_value DOUBLE, expected_cost DOUBLE, items JSON, why VARCHAR,
            created_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS plan_runs (
            plan_id VARCHAR PRIMARY KEY, created_at TIMESTAMP NOT NULL, cutoff TIMESTAMP,
            budget DOUBLE NOT NULL, spent DOUBLE, expected_value DOUBLE, method VARCHAR,
            gap DOUBLE, offers JSON, totals JSON, notes JSON)""",
    ),
    (
        # the model registry's stages (issue 16, `retention promote|rollback|models`): every
        # stage change of a model of `models` (candidate, production, archived), in order, with
        # its reason and evidence; a model's stage is that of its last row. Models registered
        # before this version become candidates.
        """CREATE TABLE IF NOT EXISTS model_stages (
            seq BIGINT PRIMARY KEY, model_id VARCHAR NOT NULL, stage VARCHAR NOT NULL,
            previous_stage VARCHAR, action VARCHAR NOT NULL, forced BOOLEAN NOT NULL,
            reason VARCHAR, evidence JSON, changed_at TIMESTAMP NOT NULL)""",
        """INSERT INTO model_stages
            SELECT row_number() OVER (ORDER BY created_at, model_id), model_id, 'candidate',
                NULL, 'register', false, 'registered before the registry had stages', NULL,
                coalesce(created_at, current_timestamp::TIMESTAMP)
            FROM models""",
    ),
    (
        # monitoring (issue 16, `retention monitor`): one row per monitor run (drift of the
        # features and the score between the model's training window and the latest one, the
        # realised performance, the flags), each feature's PSI and KS, and the realised
        # performance of every earlier scoring run whose label window had passed
        """CREATE TABLE IF NOT EXISTS monitor_runs (
            run_id VARCHAR PRIMARY KEY, model_id VARCHAR NOT NULL, registry_name VARCHAR,
            stage VARCHAR, horizon_days INTEGER, retained_by VARCHAR,
            reference_cutoffs TIMESTAMP[], current_cutoffs TIMESTAMP[], n_reference BIGINT,
            n_current BIGINT, n_features INTEGER, n_drifted INTEGER, max_feature_psi DOUBLE,
            score_psi DOUBLE, score_ks DOUBLE, score_ks_p_value DOUBLE,
            realised_cutoff TIMESTAMP, realised_roc_auc DOUBLE, realised_brier DOUBLE,
            realised_ece DOUBLE, baseline_roc_auc DOUBLE, decay DOUBLE, drift BOOLEAN NOT NULL,
            flags VARCHAR[], thresholds JSON, created_at TIMESTAMP NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS monitor_features (
            run_id VARCHAR NOT NULL, feature VARCHAR NOT NULL, family VARCHAR, psi DOUBLE,
            ks DOUBLE, ks_p_value DOUBLE, reference_mean DOUBLE, current_mean DOUBLE,
            reference_missing DOUBLE, current_missing DOUBLE, drifted BOOLEAN, ignored BOOLEAN,
            PRIMARY KEY (run_id, feature))""",
        """CREATE TABLE IF NOT EXISTS monitor_performance (
            run_id VARCHAR NOT NULL, model_version VARCHAR NOT NULL, cutoff TIMESTAMP NOT NULL,
            horizon_days INTEGER, n_users BIGINT, base_rate DOUBLE, mean_p DOUBLE,
            roc_auc DOUBLE, brier DOUBLE, ece DOUBLE, baseline_roc_auc DOUBLE, decay DOUBLE,
            monitored BOOLEAN)""",
    ),
    (
        # monitoring, second pass (issue 16 follow-up): whether a feature ages with the calendar
        # (left out of the drift flags unless the run had --include-ageing) and how it was
        # binned (deciles, distinct values, the categories of a users column)
        "ALTER TABLE monitor_features ADD COLUMN IF NOT EXISTS ages_with_calendar BOOLEAN",
        "ALTER TABLE monitor_features ADD COLUMN IF NOT EXISTS binning VARCHAR",
        "ALTER TABLE monitor_runs ADD COLUMN IF NOT EXISTS include_ageing BOOLEAN",
    ),
    (
        # monitoring, third pass: whether the latest window was computed on the training
        # window's length of history (a young store), and from which date at each cutoff
        "ALTER TABLE monitor_runs ADD COLUMN IF NOT EXISTS history_matched BOOLEAN",
        "ALTER TABLE monitor_runs ADD COLUMN IF NOT EXISTS history_starts TIMESTAMP[]",
    ),
)
#: the schema version this code writes
SCHEMA_VERSION = len(MIGRATIONS)

#: the stages of a registered model (``model_stages``): trained models are candidates, the one
#: ``retention promote`` chose scores by default, replaced or rolled-back ones are archived
MODEL_STAGES: tuple[str, ...] = ("candidate", "production", "archived")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EVENT_COLUMNS = (
    "event_id",
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


def _check_duckdb_file(path: Path) -> None:
    """Refuse an existing file that is not a DuckDB database (a CSV passed as ``--db``): DuckDB
    would read some as databases of its own, or fail with a message about in-memory databases."""
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(
            f"Cannot read store {path} ({exc.strerror or exc}): pass another --db."
        ) from None
    if head and head[8:12] != b"DUCK":
        raise StoreError(
            f"Cannot open {path} as a store: it is not a DuckDB file, so it was left untouched. "
            f"Pass the store made by `retention ingest` as --db (a data file is loaded with "
            f"`retention ingest {path} --db STORE`)."
        )


@functools.cache
def _declared_tables() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """``(table, ((column, type), ...))`` of every table the migrations declare, in name order
    (read off a new in-memory database: no list to keep beside ``MIGRATIONS``)."""
    with duckdb.connect(":memory:") as con:
        for migration in MIGRATIONS:
            for step in migration:
                if callable(step):
                    step(con)
                else:
                    con.execute(step)
        rows = con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'main' AND table_name IN (SELECT table_name FROM "
            "duckdb_tables() WHERE schema_name = 'main') ORDER BY table_name, column_index"
        ).fetchall()
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in rows:
        tables.setdefault(str(table), []).append((str(column), str(kind)))
    return tuple((t, tuple(cols)) for t, cols in tables.items())


def _read_only_message(path: Path) -> str:
    """A store (or its folder) the process may not write."""
    if path.exists():
        return (
            f"Store {path} is read-only (permission denied): chmod u+w {path} or pass another --db."
        )
    return (
        f"Cannot create store {path}: its folder {path.parent} is not writable (permission "
        "denied). Pass a --db in a folder you can write."
    )


def _in_use_message(path: Path, msg: str, read_only: bool) -> str:
    """Another process holds the file's lock (DuckDB allows one writer and no reader beside it)."""
    found = re.search(r"PID (\d+)", msg)
    who = f"another process (PID {found.group(1)})" if found else "another process"
    if read_only:
        return (
            f"Store {path} is being written by {who}, and DuckDB lets no one read it meanwhile: "
            "wait for that command to finish (or stop it) and try again."
        )
    return (
        f"Store {path} is in use by {who}: wait for that command to finish (or stop it) and "
        "try again."
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class ModelRecord:
    """One row of the store's ``models`` table: an artifact ``retention train`` registered.

    Attributes
    ----------
    model_id : str
        The artifact's id (its metadata ``model_id``).
    path : Path
        Where the artifact was written.
    sha256 : str
        SHA-256 of the artifact file when it was registered (checked before loading).
    registry_name : str or None
        The model name (``gbdt``, ``ensemble``...).
    cutoff : pd.Timestamp or None
        The cutoff the model scores at.
    horizon_days : int or None
        The label window it was trained for.
    created_at : pd.Timestamp or None
        When it was registered (UTC).
    metadata : dict
        The artifact's metadata header.
    """

    model_id: str
    path: Path
    sha256: str
    registry_name: str | None = None
    cutoff: pd.Timestamp | None = None
    horizon_days: int | None = None
    created_at: pd.Timestamp | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


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
    create : bool
        Create the file when it does not exist (when not ``read_only``); False for the commands
        that write into an existing store (train, score), so that a wrong ``--db`` fails clearly.

    Examples
    --------
    >>> with Store("retention.duckdb") as store:  # doctest: +SKIP
    ...     events = store.events_df(before=pd.Timestamp("2011-06-01"))
    """

    def __init__(self, path: str | Path, read_only: bool = False, *, create: bool = True) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._ibis: Any = None
        self._in_transaction = False
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
            if (read_only or not create) and not self.path.exists():
                raise StoreError(
                    f"No store at {self.path}: ingest data first with "
                    f"`retention ingest FILE --db {self.path}`, or pass the right --db."
                )
            if not read_only and self.path.exists() and not os.access(self.path, os.W_OK):
                raise StoreError(_read_only_message(self.path))
            _check_duckdb_file(self.path)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            msg = str(exc)
            # the path itself may hold these words ("/data/locked/x.duckdb"): match DuckDB's
            if "could not set lock" in msg.lower() or "conflicting lock" in msg.lower():
                raise StoreError(_in_use_message(self.path, msg, read_only)) from None
            if msg.lower().endswith("permission denied"):
                raise StoreError(_read_only_message(self.path)) from None
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

    @classmethod
    def open(cls, path: str | Path, read_only: bool = False, *, create: bool = True) -> Store:
        """Like ``Store(path, read_only, create=create)``, but a store of an older schema opened
        read-only is first migrated (opened for writing once, then closed), so that a read-only
        command works on a store an older retention wrote."""
        p = Path(path)
        if read_only and str(p) != ":memory:" and p.is_file():
            try:
                with duckdb.connect(str(p), read_only=True) as con:
                    rows = con.execute("SELECT max(version) FROM schema_version").fetchall()
                version = int(rows[0][0]) if rows and rows[0][0] is not None else 0
            except duckdb.Error:
                version = 0  # not ours, or not DuckDB: Store() below says which
            if 0 < version < SCHEMA_VERSION:
                cls(p).close()
        return cls(p, read_only=read_only, create=create)

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
        # fetchall, never fetchone: an unfinished result blocks the Ibis backend on this
        # connection (DuckDB 2.0), so every query of the store reads its result to the end
        rows = self.con.execute("SELECT max(version) FROM schema_version").fetchall()
        row = rows[0] if rows else None
        return int(row[0]) if row and row[0] is not None else 0

    def _foreign_tables(self) -> list[str]:
        """Tables and views of a file without our ``schema_version`` (empty for a new file)."""
        rows = self.con.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE NOT temporary "
            "AND database_name = current_database() UNION ALL "
            "SELECT schema_name || '.' || view_name FROM duckdb_views() WHERE NOT internal "
            "AND NOT temporary AND database_name = current_database() ORDER BY 1"
        ).fetchall()
        return [str(r[0]).removeprefix("main.") for r in rows]

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"Store {self.path} has schema version {version}, written by a newer "
                f"retention (this one knows up to {SCHEMA_VERSION}): upgrade retention."
            )
        if version and (
            self.columns("schema_version") != [("version", "INTEGER"), ("applied_at", "TIMESTAMP")]
            or not self.has_table("events")
        ):
            raise StoreError(
                f"{self.path} is not a retention store: its schema_version table is not ours "
                "(or it has no events table), so it was left untouched. Pass a store made by "
                "`retention ingest`, or a new file name."
            )
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            # a database without our schema_version is ours only when it is empty: never add
            # tables to another application's file
            foreign = self._foreign_tables()
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise StoreError(
                    f"{self.path} is not a retention store: it holds {len(foreign)} table(s) "
                    f"({shown}) but no schema_version table, so it was left untouched. Pass a "
                    "store made by `retention ingest`, or a new file name."
                )
        if self.read_only:
            raise StoreError(
                f"Store {self.path} has schema version {version}, older than "
                f"{SCHEMA_VERSION}: open it once for writing to migrate it (any retention "
                "command does, or Store.open(path, read_only=True))."
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
                for step in MIGRATIONS[v - 1]:
                    if callable(step):
                        step(con)
                    else:
                        con.execute(step)
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

    # ------------------------------------------------------------------ writing
    def check_writable(self, action: str = "write to it") -> None:
        """Raise :class:`StoreError` when the store is open read-only.

        Parameters
        ----------
        action : str
            What the caller wanted to do, for the message (``"write scores"``).
        """
        if self.read_only:
            raise StoreError(
                f"Store {self.path} is open read-only, so it cannot {action}: open it with "
                "read_only=False (the CLI does for the commands that write)."
            )

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        Nested blocks join the outer transaction, so several writes (scores and their reasons)
        commit or fail together.

        Examples
        --------
        >>> with Store("retention.duckdb") as store, store.transaction():  # doctest: +SKIP
        ...     store.replace_rows("scores", df, where={"model_version": "abc"})
        """
        self.check_writable("start a write transaction")
        if self._in_transaction:
            yield self
            return
        self.con.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield self
        except duckdb.Error as exc:
            self._in_transaction = False
            self.con.execute("ROLLBACK")
            raise StoreError(
                f"Cannot write to store {self.path} ({_first_line(exc)}); the transaction was "
                "rolled back, nothing was written."
            ) from None
        except BaseException:
            self._in_transaction = False
            self.con.execute("ROLLBACK")
            raise
        self._in_transaction = False
        try:
            self.con.execute("COMMIT")
        except duckdb.Error as exc:
            self.con.execute("ROLLBACK")
            raise StoreError(
                f"Cannot commit to store {self.path} ({_first_line(exc)}); nothing was written."
            ) from None

    def ensure_table(self, name: str, like: str) -> None:
        """Create table ``name`` with the typed columns of ``like`` (a key of
        :data:`TABLE_COLUMNS`), or check that an existing one has them.

        Raises
        ------
        ConfigError
            ``name`` is not a plain identifier, or an existing table has other columns.
        """
        if self.check_table_like(name, like):
            return
        self.check_writable(f"create table {name}")
        self.con.execute(_create_sql(name, TABLE_COLUMNS[like]))

    def check_table_like(self, name: str, like: str) -> bool:
        """Whether table ``name`` exists, after checking that it can hold rows of ``like``.

        ``name`` must be a plain identifier, and not one of the store's own tables of another
        shape (``events``, ``models``...; DuckDB matches names case-insensitively): call it
        before the work whose rows will go there, so that a wrong name fails first.

        Raises
        ------
        ConfigError
            ``name`` is not a plain identifier, or names a table with other columns.
        """
        columns = TABLE_COLUMNS[like]
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"Table name {name!r} is not a plain identifier; use e.g. {like!r}.")
        tables = self.tables()
        found = next((t for t in tables if t.lower() == name.lower()), None)
        if found is None:
            return False
        want = [(c, t.replace(" NOT NULL", "")) for c, t in columns]
        have = self.columns(found)
        if have == want:
            return True
        declared = _declared_tables()
        if found.lower() in {t.lower() for t, _ in declared}:
            own = [t for t, cols in declared if cols != tuple(want)]
            raise ConfigError(
                f"Table {name!r} is one of the store's own tables ({', '.join(own)}), not a "
                f"{like} table: pass another table name, e.g. {like!r} or '{like}_2'."
            )
        raise ConfigError(
            f"Table {name!r} of store {self.path} exists with other columns "
            f"({', '.join(f'{c} {t}' for c, t in have)}) than a {like} table needs: pass "
            "another table name."
        )

    def replace_rows(self, table: str, df: pd.DataFrame, where: MappingABC[str, Any]) -> int:
        """Delete the rows of ``table`` matching ``where``, then append ``df``, in one transaction.

        Parameters
        ----------
        table : str
            An existing table (declared by a migration, or made by :meth:`ensure_table`).
        df : pd.DataFrame
            Rows to append, matched to the table's columns by name; columns it lacks are NULL.
        where : mapping of str to value
            ``column = value`` conditions (all must hold) of the rows to replace, e.g.
            ``{"cutoff": ts, "model_version": "abc"}``; empty replaces nothing.

        Returns
        -------
        int
            Rows appended.
        """
        self._check_table(table)
        known = {c for c, _ in self.columns(table)}
        unknown = [c for c in [*where, *map(str, df.columns)] if c not in known]
        if unknown:
            raise ConfigError(
                f"Table {table!r} has no column(s) {', '.join(map(repr, unknown))}; its columns "
                f"are {', '.join(sorted(known))}."
            )
        params = [v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for v in where.values()]
        view = "__retention_rows"
        with self.transaction():
            if where:
                cond = " AND ".join(f'"{c}" = ?' for c in where)
                self.con.execute(f'DELETE FROM "{table}" WHERE {cond}', params)
            if len(df.columns) == 0:
                return 0
            cols = ", ".join(f'"{c}"' for c in df.columns)
            self.con.register(view, df)
            try:
                self.con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM {view}')
            finally:
                self.con.unregister(view)
        return len(df)

    def replace_table(self, table: str, df: pd.DataFrame) -> int:
        """Replace every row of ``table`` with ``df``, in one transaction (a table that holds one
        run only, such as ``plan``). Returns the rows appended."""
        self._check_table(table)
        with self.transaction():
            self.con.execute(f'DELETE FROM "{table}"')
            return self.replace_rows(table, df, {})

    def write_scores(
        self,
        scores: pd.DataFrame,
        reasons: pd.DataFrame | None = None,
        *,
        table: str = "scores",
    ) -> None:
        """Write one model's scores at one cutoff, and the customers' reasons, in ONE transaction.

        Rows of the same ``cutoff`` and ``model_version`` are replaced in ``table`` and (when
        ``reasons`` is given, even empty) in ``score_reasons``; if any write fails, neither
        table changes.

        Parameters
        ----------
        scores : pd.DataFrame
            Columns of :data:`TABLE_COLUMNS` ``["scores"]``; one ``cutoff`` and one
            ``model_version``.
        reasons : pd.DataFrame, optional
            Columns of ``score_reasons`` (``cutoff`` and ``model_version`` are filled in from
            the scores when missing).
        table : str
            The scores table; created with the typed columns of ``scores`` when missing.
        """
        self.check_writable("write scores")
        cutoff, version = _single_key(scores, table)
        with self.transaction():
            self.ensure_table(table, "scores")
            self.replace_rows(table, scores, {"cutoff": cutoff, "model_version": version})
            if reasons is not None:
                self.write_reasons(reasons, cutoff=cutoff, model_version=version)

    def write_reasons(
        self,
        reasons: pd.DataFrame,
        *,
        cutoff: pd.Timestamp,
        model_version: str,
        table: str = "score_reasons",
    ) -> None:
        """Replace the reasons of one model at one cutoff in ``table`` (one transaction).

        ``reasons`` may be empty (a model with nothing to say); the rows of that model and
        cutoff are then removed. ``table`` is created with the typed columns of
        ``score_reasons`` when missing.
        """
        self.check_writable("write reasons")
        at = pd.Timestamp(cutoff)
        rows = reasons.assign(cutoff=at, model_version=str(model_version))
        rows["cutoff"] = rows["cutoff"].astype("datetime64[ns]")
        with self.transaction():
            self.ensure_table(table, "score_reasons")
            self.replace_rows(table, rows, {"cutoff": at, "model_version": str(model_version)})

    def register_model(self, record: ModelRecord) -> None:
        """Add (or replace) an artifact in the ``models`` registry."""
        self.check_writable("register a model")
        row = pd.DataFrame(
            {
                "model_id": [record.model_id],
                "path": [str(record.path)],
                "sha256": [record.sha256],
                "registry_name": [record.registry_name],
                "cutoff": pd.Series([record.cutoff], dtype="datetime64[ns]"),
                "horizon_days": pd.Series([record.horizon_days], dtype="Int64"),
                "created_at": pd.Series(
                    [record.created_at or pd.Timestamp.now(tz="UTC").tz_localize(None)],
                    dtype="datetime64[ns]",
                ),
                "metadata": [json.dumps(record.metadata, default=str, allow_nan=False)],
            }
        )
        with self.transaction():
            self.replace_rows("models", row, {"model_id": record.model_id})
            if self.model_stage(record.model_id) is None:  # a new model is a candidate
                self.record_model_stage(
                    record.model_id, "candidate", action="register", reason="trained"
                )

    def record_model_stage(
        self,
        model_id: str,
        stage: str,
        *,
        action: str,
        reason: str | None = None,
        evidence: MappingABC[str, Any] | None = None,
        forced: bool = False,
    ) -> int:
        """Append one stage change of a registered model to ``model_stages``; returns its
        ``seq``. The model's stage before it is recorded as ``previous_stage``.

        Raises
        ------
        ConfigError
            ``stage`` is not one of :data:`MODEL_STAGES`, or no model ``model_id`` is
            registered.
        """
        self.check_writable("change a model's stage")
        if stage not in MODEL_STAGES:
            raise ConfigError(f"stage must be one of {', '.join(MODEL_STAGES)}; got {stage!r}.")
        mid = str(model_id)
        if not self.con.execute("SELECT 1 FROM models WHERE model_id = ?", [mid]).fetchall():
            raise ConfigError(
                f"No model {mid!r} in the registry of store {self.path}: pass the id of a "
                "registered model (`retention models`)."
            )
        with self.transaction():
            ((last,),) = self.con.execute("SELECT max(seq) FROM model_stages").fetchall()
            seq = 1 if last is None else int(last) + 1
            self.con.execute(
                "INSERT INTO model_stages VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                "current_timestamp::TIMESTAMP)",
                [
                    seq,
                    mid,
                    stage,
                    self.model_stage(mid),
                    str(action),
                    bool(forced),
                    reason,
                    None
                    if evidence is None
                    else json.dumps(dict(evidence), default=str, allow_nan=False),
                ],
            )
        return seq

    # ------------------------------------------------------------------ reading
    def model_stage(self, model_id: str) -> str | None:
        """The current stage of model ``model_id`` (its last ``model_stages`` row), or None."""
        rows = self.con.execute(
            "SELECT stage FROM model_stages WHERE model_id = ? ORDER BY seq DESC LIMIT 1",
            [str(model_id)],
        ).fetchall()
        return None if not rows else str(rows[0][0])

    def production_model_id(self) -> str | None:
        """The model whose stage is ``production`` (the latest to become so, should a file
        hold several), or None before the first promotion."""
        if not self.has_table("model_stages"):  # an empty read-only file
            return None
        rows = self.con.execute(
            "SELECT model_id FROM (SELECT model_id, arg_max(stage, seq) AS stage, max(seq) AS "
            "last FROM model_stages GROUP BY model_id) WHERE stage = 'production' "
            "ORDER BY last DESC LIMIT 1"
        ).fetchall()
        return None if not rows else str(rows[0][0])

    def model_stage_history(self, model_id: str | None = None) -> pd.DataFrame:
        """Rows of ``model_stages`` (of one model, or all), oldest first; ``evidence`` as text."""
        where, params = _conditions(model_id=model_id)
        return _ns(
            self.con.execute(
                "SELECT seq, model_id, stage, previous_stage, action, forced, reason, "
                f"CAST(evidence AS VARCHAR) AS evidence, changed_at FROM model_stages{where} "
                "ORDER BY seq",
                params,
            ).df()
        )

    def model_record(self, model_id: str) -> ModelRecord | None:
        """The registered artifact ``model_id``, or None."""
        df = self.con.execute(
            "SELECT model_id, path, sha256, registry_name, cutoff, horizon_days, created_at, "
            "CAST(metadata AS VARCHAR) AS metadata FROM models WHERE model_id = ?",
            [str(model_id)],
        ).fetchall()
        if not df:
            return None
        mid, path, sha, name, cutoff, horizon, created, meta = df[0]
        return ModelRecord(
            model_id=str(mid),
            path=Path(path),
            sha256=str(sha),
            registry_name=None if name is None else str(name),
            cutoff=None if cutoff is None else pd.Timestamp(cutoff),
            horizon_days=None if horizon is None else int(horizon),
            created_at=None if created is None else pd.Timestamp(created),
            metadata=json.loads(meta) if meta else {},
        )

    def read_scores(
        self,
        *,
        user_id: str | None = None,
        model_version: str | None = None,
        cutoff: pd.Timestamp | None = None,
        latest: bool = False,
        table: str = "scores",
    ) -> pd.DataFrame:
        """Rows of a scores table, newest cutoff first.

        Parameters
        ----------
        user_id, model_version, cutoff : optional
            Keep only rows with these values.
        latest : bool
            Keep only the rows of the newest cutoff among those that match.
        table : str
            The scores table.
        """
        self._check_table(table)
        where, params = _conditions(user_id=user_id, model_version=model_version, cutoff=cutoff)
        sql = f'SELECT * FROM "{table}"' + where
        if latest:
            sql += (" AND " if where else " WHERE ") + (
                f'cutoff = (SELECT max(cutoff) FROM "{table}"{where})'
            )
            params = params + params
        df = self.con.execute(sql + " ORDER BY cutoff DESC, user_id", params).df()
        return _ns(df)

    def read_rows(
        self,
        table: str,
        *,
        where: MappingABC[str, Any] | None = None,
        order_by: Sequence[str] = (),
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> pd.DataFrame:
        """Rows of any table of the store, filtered by ``column = value`` and paged (what the
        service reads of tables other stages write: recommendations, the plan).

        Column names are checked against the table (never put into SQL unchecked); values are
        bound parameters; money comes back as float64.

        Parameters
        ----------
        table : str
        where : mapping of str to value, optional
            ``column = value`` conditions, all of which must hold.
        order_by : sequence of str
            Columns to sort by (then the rest of the row order is DuckDB's).
        descending : bool
            Sort ``order_by`` descending.
        limit, offset : int
            Paging.
        """
        cols = self.columns(table)
        known = {c for c, _ in cols}
        unknown = [c for c in [*(where or {}), *order_by] if c not in known]
        if unknown:
            raise ConfigError(
                f"Table {table!r} has no column(s) {', '.join(map(repr, unknown))}; its columns "
                f"are {', '.join(sorted(known))}."
            )
        select = ", ".join(
            f'CAST("{c}" AS DOUBLE) AS "{c}"' if t.startswith("DECIMAL") else f'"{c}"'
            for c, t in cols
        )
        cond, params = _conditions(**dict(where or {}))
        sql = f'SELECT {select} FROM "{table}"{cond}'
        if order_by:
            way = " DESC" if descending else ""
            sql += " ORDER BY " + ", ".join(f'"{c}"{way}' for c in order_by)
        if limit is not None:
            sql += f" LIMIT {max(0, int(limit))}"
        if offset:
            sql += f" OFFSET {max(0, int(offset))}"
        return _ns(self.con.execute(sql, params).df())

    def count_rows(self, table: str, *, where: MappingABC[str, Any] | None = None) -> int:
        """How many rows of ``table`` match ``column = value`` conditions."""
        known = {c for c, _ in self.columns(table)}
        unknown = [c for c in (where or {}) if c not in known]
        if unknown:
            raise ConfigError(
                f"Table {table!r} has no column(s) {', '.join(map(repr, unknown))}; its columns "
                f"are {', '.join(sorted(known))}."
            )
        cond, params = _conditions(**dict(where or {}))
        ((n,),) = self.con.execute(f'SELECT count(*) FROM "{table}"{cond}', params).fetchall()
        return int(n)

    def read_reasons(
        self,
        *,
        user_id: str | None = None,
        model_version: str | None = None,
        cutoff: pd.Timestamp | None = None,
        table: str = "score_reasons",
    ) -> pd.DataFrame:
        """Rows of ``score_reasons``: newest cutoff first, then customer, direction, rank."""
        self._check_table(table)
        where, params = _conditions(user_id=user_id, model_version=model_version, cutoff=cutoff)
        sql = f'SELECT * FROM "{table}"{where} ORDER BY cutoff DESC, user_id, direction, rank'
        return _ns(self.con.execute(sql, params).df())

    def event_range(
        self, event_type: str | None = "purchase"
    ) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """``(first, last)`` timestamp of the events of ``event_type`` (all events when None), or
        None when there are none."""
        sql = "SELECT min(ts), max(ts) FROM events"
        params: list[Any] = []
        if event_type is not None:
            sql += " WHERE event_type = ?"
            params.append(event_type)
        (first, last), *_ = self.con.execute(sql, params).fetchall()
        if first is None:
            return None
        return pd.Timestamp(first), pd.Timestamp(last)

    # ------------------------------------------------------------------ access
    def has_table(self, name: str) -> bool:
        """Whether the store has a table (or view) called ``name``."""
        ((n_tables,),) = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary "
            "AND schema_name = 'main'",
            [name],
        ).fetchall()
        if n_tables:
            return True
        ((n_views,),) = self.con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND NOT internal",
            [name],
        ).fetchall()
        return bool(n_views)

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

    def events_df(
        self,
        before: pd.Timestamp | None = None,
        users: Any = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Events as a DataFrame with the contract's columns, sorted by ``user_id, ts``.

        Parameters
        ----------
        before : pd.Timestamp, optional
            Only events with ``ts < before``.
        users : iterable of str, optional
            Only these users.
        columns : sequence of str, optional
            Only these of the columns below (in this order).

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
        exprs = {c: c for c in _EVENT_COLUMNS}
        exprs["amount"] = "CAST(amount AS DOUBLE) AS amount"
        wanted = list(_EVENT_COLUMNS) if columns is None else list(columns)
        bad = [c for c in wanted if c not in exprs]
        if bad:
            raise ConfigError(
                f"events has no column(s) {', '.join(map(repr, bad))}; choose from "
                f"{', '.join(_EVENT_COLUMNS)}."
            )
        sql = (
            f"SELECT {', '.join(exprs[c] for c in wanted)} FROM events"
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


def _single_key(df: pd.DataFrame, table: str) -> tuple[pd.Timestamp, str]:
    """The one ``(cutoff, model_version)`` of the rows about to be written."""
    missing = [c for c in ("cutoff", "model_version") if c not in df.columns]
    if missing:
        raise ConfigError(
            f"The rows for {table} lack column(s) {', '.join(missing)}; every row names the "
            "cutoff and the model_version it belongs to."
        )
    cutoffs, versions = df["cutoff"].drop_duplicates(), df["model_version"].drop_duplicates()
    if len(cutoffs) != 1 or len(versions) != 1:
        raise ConfigError(
            f"The rows for {table} hold {len(cutoffs)} cutoff(s) and {len(versions)} model "
            "version(s); write one model at one cutoff at a time."
        )
    return pd.Timestamp(cutoffs.iloc[0]), str(versions.iloc[0])


def _conditions(**values: Any) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for column, value in values.items():
        if value is None:
            continue
        parts.append(f'"{column}" = ?')
        params.append(value.to_pydatetime() if isinstance(value, pd.Timestamp) else value)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


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
    ((n, n_users, n_items, first, last),) = con.execute(
        "SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id), min(ts), max(ts) "
        "FROM events"
    ).fetchall()
    tables = {}
    for name in store.tables():
        ((count,),) = con.execute(f'SELECT count(*) FROM "{name}"').fetchall()
        tables[name] = int(count)
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

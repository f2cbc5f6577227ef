"""Engines for the point-in-time features: DuckDB on one machine, Apache Spark beyond it.

The feature and label definitions (:func:`retention.features.build_features`,
:func:`retention.features.build_labels`) are written once in Ibis. This module gives them an
Ibis backend over an events file, on either engine:

* :func:`spark_session` starts (or joins) a Spark session: ``local[*]`` by default, a cluster
  through ``master="spark://..."``/``"yarn"``, or a Spark Connect server through
  ``remote="sc://host:15002"``; the session time zone is UTC (the contract's timestamps are
  naive UTC);
* :func:`events_backend` reads events from Parquet (a file, a folder of part files or a glob,
  on any filesystem the engine reads: local, ``hdfs://``, ``s3a://``...) or from a table of
  the session, and exposes them as the view ``events`` with the contract's types (``ts`` a
  timestamp without time zone, ``amount`` ``DECIMAL(18,2)``): the two measured cross-engine
  pitfalls of DESIGN.md (timestamp deltas, float money) cannot reach the definitions;
* :func:`feature_table` runs the definitions at one cutoff: one row per customer of the
  population, its features, and optionally its label; :func:`write_feature_table` writes it as
  Parquet (through Spark for a URI such as ``hdfs://``).

The engines compute the heavy part (scans, group-bys, windows over every event) and return one
row of integer counts, cents and dates per customer; the last ratios are taken in pandas on the
driver (see :mod:`retention.features._aggregates`). The driver therefore holds one row per
customer of the population, never the events.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from retention.exceptions import ConfigError, ReadError
from retention.features._aggregates import build_features
from retention.features._builder import _tidy_events
from retention.features._labels import build_labels
from retention.features._tables import (
    RETAINED_BY_DEFAULT,
    as_backend,
    events_table,
    qualifying,
    retained_types,
    to_retained_by,
)

__all__ = [
    "ENGINES",
    "SPARK_INSTALL_HINT",
    "events_backend",
    "feature_table",
    "model_history",
    "spark_session",
    "to_engine",
    "write_feature_table",
]

#: the engines the feature definitions run on
ENGINES: tuple[str, ...] = ("duckdb", "spark")
#: how to get the Spark engine, named in every error about it
SPARK_INSTALL_HINT = "pip install 'retention[spark]' (pyspark < 4.1) and install Java 17"

#: a URI with a scheme (``hdfs://``, ``s3a://``, ``file://``), as opposed to a local path
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

#: the contract's casts, in Spark SQL (and DuckDB's, with VARCHAR for STRING)
_CASTS: dict[str, str] = {
    "event_id": "STRING",
    "user_id": "STRING",
    "ts": "TIMESTAMP",
    "event_type": "STRING",
    "item_id": "STRING",
    "order_id": "STRING",
    "quantity": "DOUBLE",
    "amount": "DECIMAL(18,2)",
    "rating": "DOUBLE",
    "text": "STRING",
}
_REQUIRED = ("user_id", "ts", "event_type")


def to_engine(value: Any) -> str:
    """``"duckdb"`` or ``"spark"`` (case and spaces ignored).

    Raises
    ------
    ConfigError
        Any other value.
    """
    name = str(value).strip().lower() if isinstance(value, str) else None
    if name not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}; got {value!r}.")
    return name


def _is_uri(path: str) -> bool:
    return bool(_URI.match(path)) and not path.startswith("file://")


def _local(path: str) -> Path:
    return Path(path[len("file://") :] if path.startswith("file://") else path)


# ----------------------------------------------------------------------------------- the session
def _import_pyspark() -> Any:
    try:
        import pyspark
        from pyspark.sql import SparkSession  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"The Spark engine needs pyspark, which is not installed ({exc}); {SPARK_INSTALL_HINT}."
        ) from exc
    try:
        import ibis.backends.pyspark  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"The Spark engine needs Ibis' pyspark backend ({exc}); {SPARK_INSTALL_HINT}."
        ) from exc
    return pyspark


def _check_java() -> None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return
    if shutil.which("java") is None:
        raise ConfigError(
            "The Spark engine needs Java (17), and no `java` is on the PATH nor in JAVA_HOME; "
            "install a JDK (apt install openjdk-17-jre-headless) or set JAVA_HOME, or use "
            "--engine duckdb."
        )


def spark_session(
    master: str | None = None,
    remote: str | None = None,
    *,
    app_name: str = "retention",
    shuffle_partitions: int | None = None,
    driver_memory: str | None = None,
    config: dict[str, str] | None = None,
) -> Any:
    """A Spark session for the feature definitions (created, or the active one joined).

    Parameters
    ----------
    master : str, optional
        The cluster: ``local[*]`` (the default), ``local[2]``, ``spark://host:7077``, ``yarn``...
    remote : str, optional
        A Spark Connect server, ``sc://host:15002`` (exclusive with ``master``). ``"local"``
        starts a Spark Connect server in this process (it needs the ``spark-connect`` jar, which
        the pyspark 4 wheel ships).
    app_name : str, default "retention"
    shuffle_partitions : int, optional
        ``spark.sql.shuffle.partitions`` (Spark's default, 200, is far too many for one machine).
    driver_memory : str, optional
        ``spark.driver.memory`` of a session started here (``"2g"``).
    config : dict of str, optional
        Any other Spark settings.

    Returns
    -------
    pyspark.sql.SparkSession

    Raises
    ------
    ConfigError
        pyspark or Java is missing, both ``master`` and ``remote`` are given, or the session
        cannot start; the message names the fix.
    """
    if master is not None and remote is not None:
        raise ConfigError(
            f"Pass a Spark master or a Spark Connect address, not both; got master {master!r} "
            f"and remote {remote!r}."
        )
    if remote is not None and not (remote == "local" or remote.startswith("sc://")):
        raise ConfigError(
            f"A Spark Connect address starts with sc:// (sc://host:15002); got {remote!r}."
        )
    _import_pyspark()
    from pyspark.sql import SparkSession

    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        **(
            {}
            if shuffle_partitions is None
            else {"spark.sql.shuffle.partitions": str(int(shuffle_partitions))}
        ),
        **(config or {}),
    }
    if remote is None:
        _check_java()
        # the workers run this interpreter, which has retention and its dependencies
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if remote is not None:
        if remote == "local":
            _check_java()
        builder = builder.remote(remote)
    else:
        builder = builder.master(master or "local[*]")
        if driver_memory is not None:
            builder = builder.config("spark.driver.memory", driver_memory)
    if remote == "local":  # the server logs every probe for an optional table as an error
        settings.setdefault("spark.log.level", "FATAL")
    for key, value in settings.items():
        if remote not in {None, "local"} and key.startswith("spark.ui"):
            continue  # a server's settings, not the client's
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except ImportError as exc:  # Spark Connect's client needs grpcio
        raise ConfigError(
            f"The Spark Connect client cannot start ({exc}); {SPARK_INSTALL_HINT} (it brings "
            "grpcio)."
        ) from exc
    except Exception as exc:  # a Java gateway or a server that does not start
        first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        where = remote if remote is not None else (master or "local[*]")
        raise ConfigError(
            f"Spark could not start a session on {where}: {first[:300]}. Check the master or "
            f"Spark Connect address and that Java 17 works (`java -version`), or use "
            "--engine duckdb."
        ) from exc
    # a joined session may have been made with another time zone (read-only on some clusters)
    with contextlib.suppress(Exception):
        session.conf.set("spark.sql.session.timeZone", "UTC")
    if remote is None:
        session.sparkContext.setLogLevel("ERROR")
    return session


# ------------------------------------------------------------------------------------- the events
def _select_sql(columns: list[str], source: str, string: str) -> str:
    """``SELECT`` of the contract's columns with their casts (absent optional ones left out)."""
    parts = []
    for name, cast in _CASTS.items():
        if name in columns:
            cast = string if cast == "STRING" else cast
            parts.append(f"CAST(`{name}` AS {cast}) AS `{name}`")
    return f"SELECT {', '.join(parts)} FROM {source}"


def _check_columns(columns: list[str], where: str) -> None:
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise ReadError(
            f"{where} lacks the event contract's column(s) {', '.join(missing)} (it has "
            f"{', '.join(columns) or 'no columns'}); write user_id, ts and event_type (ingest "
            "it into a store with --map, or rename the columns)."
        )


def _spark_events(session: Any, source: str, *, table: bool) -> Any:
    from pyspark.errors import AnalysisException

    try:
        df = session.table(source) if table else session.read.parquet(source)
        columns = list(df.columns)
    except AnalysisException as exc:
        first = next(iter(str(exc).strip().splitlines()), "")
        if "TIMESTAMP(NANOS" in first:
            raise ReadError(
                f"Spark cannot read the nanosecond timestamps of {source!r}; write them as "
                "microseconds (pandas: to_parquet(..., coerce_timestamps='us'); DuckDB's COPY "
                "and Spark write microseconds), or use --engine duckdb."
            ) from exc
        what = "table" if table else "Parquet events"
        raise ReadError(
            f"Spark cannot read the {what} {source!r}: {first[:300]}. Pass a readable Parquet "
            "file or folder (local, hdfs://, s3a://...) or an existing table."
        ) from exc
    _check_columns(columns, f"The events {source!r}")
    df.createOrReplaceTempView("retention_events_source")
    session.sql(_select_sql(columns, "retention_events_source", "STRING")).createOrReplaceTempView(
        "events"
    )


def _duckdb_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _duckdb_events(con: Any, source: str) -> None:
    import duckdb

    if not _is_uri(source):
        local = _local(source)
        if not any(ch in source for ch in "*?[") and not local.exists():
            raise ReadError(
                f"The events file {source} does not exist; pass a Parquet file, a folder of "
                "Parquet files or a glob."
            )
        source = str(local / "**" / "*.parquet") if local.is_dir() else str(local)
    scan = f"read_parquet({_duckdb_quote(source)}, union_by_name = true)"
    try:
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
    except duckdb.Error as exc:
        first = next(iter(str(exc).strip().splitlines()), "")
        raise ReadError(
            f"DuckDB cannot read the Parquet events {source!r}: {first[:300]}. Pass a readable "
            "Parquet file, folder or glob."
        ) from exc
    _check_columns(columns, f"The events {source!r}")
    con.execute("CREATE OR REPLACE VIEW events AS " + _select_sql(columns, scan, "VARCHAR"))


def events_backend(
    engine: str,
    events: str | os.PathLike[str],
    *,
    session: Any = None,
    table: bool = False,
    memory_limit: str | None = None,
    temp_directory: str | os.PathLike[str] | None = None,
) -> Any:
    """An Ibis backend whose view ``events`` holds the events of ``events``, typed by contract.

    Parameters
    ----------
    engine : {"duckdb", "spark"}
    events : str or path
        Parquet: a file, a folder of part files or a glob, on a filesystem the engine reads
        (Spark: local, ``hdfs://``, ``s3a://``...). With ``table=True``, a table name of the
        Spark session.
    session : SparkSession, optional
        For ``engine="spark"`` (default: :func:`spark_session` with its defaults).
    table : bool, default False
        ``events`` names a table of the session, not a path (Spark only).
    memory_limit : str, optional
        DuckDB's ``memory_limit`` (``"2GB"``): beyond it DuckDB spills to temporary files.
    temp_directory : path, optional
        Where DuckDB spills (default: DuckDB's, ``.tmp`` beside a file database).

    Returns
    -------
    Ibis backend
        Ready for :func:`feature_table`, ``build_features`` and ``build_labels``.

    Raises
    ------
    ReadError
        The events cannot be read or lack ``user_id``, ``ts`` or ``event_type``.
    ConfigError
        Unknown engine, or the Spark engine is unavailable.
    """
    import ibis

    engine = to_engine(engine)
    source = os.fspath(events)
    if engine == "duckdb":
        if table:
            raise ConfigError(
                "table=True names a table of a Spark session; with DuckDB open the store "
                "(--db) or pass a Parquet path."
            )
        kwargs: dict[str, str] = {}
        if memory_limit is not None:
            kwargs["memory_limit"] = memory_limit
        if temp_directory is not None:
            kwargs["temp_directory"] = os.fspath(temp_directory)
        backend = ibis.duckdb.connect(**kwargs)
        _duckdb_events(backend.con, source)
        return backend
    if session is None:
        session = spark_session()
    _import_pyspark()
    _spark_events(session, source, table=table)
    return ibis.pyspark.connect(session)


# ----------------------------------------------------------------------------- the feature table
def feature_table(
    backend: Any,
    cutoff: Any,
    *,
    horizon_days: int | None = None,
    labels: bool = False,
    retained_by: Any = RETAINED_BY_DEFAULT,
) -> pd.DataFrame:
    """Features (and labels) of every customer of the population at ``cutoff``, as a table.

    Parameters
    ----------
    backend : Ibis backend or retention.data.Store
        From :func:`events_backend` (either engine) or a store.
    cutoff : str or pd.Timestamp
        Features use events strictly before it.
    horizon_days : int, optional
        The label window ``[cutoff, cutoff + horizon)``; needed with ``labels``.
    labels : bool, default False
        Add the label column ``retained`` (int64 0/1).
    retained_by : str or sequence of str, default "purchase"
        The activity that counts as coming back (population and label).

    Returns
    -------
    pd.DataFrame
        Column ``user_id`` (sorted), then the feature columns (float64), then ``retained``.

    Raises
    ------
    ConfigError
        ``labels`` without ``horizon_days``.
    DataError
        The cutoff is unusable, or the label window runs past the data.
    """
    retained_by = to_retained_by(retained_by)
    if labels and horizon_days is None:
        raise ConfigError("Labels need a horizon: pass horizon_days (--horizon DAYS).")
    features = build_features(backend, cutoff, retained_by=retained_by)
    if labels:
        assert horizon_days is not None
        label = build_labels(backend, cutoff, horizon_days, retained_by=retained_by)
        features = features.join(label.reindex(features.index))
    features.index.name = "user_id"
    return features.reset_index()


def write_feature_table(
    table: pd.DataFrame, out: str | os.PathLike[str], *, session: Any = None
) -> str:
    """Write ``table`` as Parquet at ``out`` and return where it went.

    A local path (or ``file://``) becomes one Parquet file; a URI of another filesystem
    (``hdfs://``, ``s3a://``...) is written by Spark (a folder of part files), which needs
    ``session``.

    Raises
    ------
    ConfigError
        The file cannot be written, or a URI without a Spark session.
    """
    target = os.fspath(out)
    if _is_uri(target):
        if session is None:
            raise ConfigError(
                f"Writing to {target} needs the Spark engine (--engine spark); DuckDB writes "
                "local files only."
            )
        session.createDataFrame(table).write.mode("overwrite").parquet(target)
        return target
    path = _local(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(path, index=False)
    except OSError as exc:
        raise ConfigError(
            f"Cannot write {path}: {exc.strerror or exc}. Pass another --out."
        ) from exc
    return str(path)


def model_history(
    backend: Any,
    cutoff: Any,
    users: pd.Index,
    *,
    retained_by: Any = RETAINED_BY_DEFAULT,
    columns: tuple[str, ...] = ("event_id", "user_id", "ts", "event_type", "amount"),
) -> pd.DataFrame:
    """What purchase-counting models (BTYD) read of a frame's history, and nothing more.

    The events before ``cutoff`` of ``users`` that count as coming back, and their purchases and
    returns (net spend), with ``columns`` only, in the order and types of
    ``CutoffFrame.events`` (sorted by ``user_id, ts, event_id``; ``amount`` float64). Scoring on
    Spark sends this, not the whole log, to every worker: BTYD models fit on the population's
    history and give the same numbers on it as on every event.

    Parameters
    ----------
    backend : Ibis backend or retention.data.Store
    cutoff : str or pd.Timestamp
    users : pd.Index
        The population (``features.index``).
    retained_by : str or sequence of str, default "purchase"
    columns : tuple of str
        Contract columns to keep (the others are null).
    """
    import ibis
    from ibis import _

    backend = as_backend(backend)
    at = pd.Timestamp(cutoff)
    canonical = to_retained_by(retained_by)
    events = events_table(backend)
    before = events.filter(_.ts < ibis.literal(at.to_pydatetime(warn=False), type="timestamp"))
    buyers = before.filter(qualifying(before, canonical)).select("user_id").distinct()
    types = retained_types(canonical)
    kept = before.semi_join(buyers, "user_id")
    if types is not None:
        kept = kept.filter(_.event_type.isin(sorted({*types, "purchase", "return"})))
    df = (
        kept.mutate(amount=_.amount.cast("float64"))
        .select(*[c for c in columns])
        .order_by(["user_id", "ts", "event_id"] if "event_id" in columns else ["user_id", "ts"])
        .to_pandas()
    )
    df = _tidy_events(df)
    df = df[(df["ts"] < at) & df["user_id"].isin(pd.Index(users).astype(str))]
    return df.reset_index(drop=True)

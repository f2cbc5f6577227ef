"""Scale-out: feature tables on DuckDB or Spark, and batch scoring on Spark.

* :func:`feature_file` runs the Ibis feature (and label) definitions on DuckDB (a Parquet log or
  the store) or on a Spark session (a Parquet log on any filesystem Spark reads, or a table),
  and writes one row per customer as Parquet: ``retention features``.
* :func:`spark_score` scores a trained model on Spark: the features come from the same
  definitions on Spark, the artifact's bytes are broadcast once (data only: each worker loads
  them with :func:`retention.models.load_model`, which checks every SHA-256), and
  ``mapInPandas`` scores each partition of customers. The rows have the columns of the store's
  ``scores`` table (``docs/tables.md``) and equal what ``retention score`` computes on the
  same log (to 1e-12, a test checks it): the BTYD parts of a model fit on the population's
  history, which every worker receives with the model (what counts as coming back, purchases
  and returns, five columns), so every partition refits the same models as one local run does.
  ``retention score --engine spark``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention._progress import Progress, as_progress
from retention.data import TABLE_COLUMNS, Store
from retention.exceptions import ConfigError
from retention.features import (
    RETAINED_BY_DEFAULT,
    CutoffFrame,
    build_features,
    check_activity,
    data_span,
    events_backend,
    feature_table,
    model_history,
    spark_session,
    to_cutoff,
    to_engine,
    to_horizon,
    to_retained_by,
    write_feature_table,
)
from retention.strategies import RISK_BANDS, risk_band
from retention.workflows._common import (
    ModelCache,
    check_model_ref,
    check_output_path,
    json_clean,
    resolve_model,
)

__all__ = [
    "FeaturesReport",
    "FeaturesRequest",
    "SparkScoreReport",
    "SparkScoreRequest",
    "feature_file",
    "spark_score",
]

#: the columns of the ``scores`` table, in its order (docs/tables.md)
SCORE_COLUMNS: tuple[str, ...] = tuple(name for name, _ in TABLE_COLUMNS["scores"])
#: the Spark type of each DuckDB column type of ``scores``
_SPARK_TYPES = {
    "VARCHAR": "StringType",
    "DOUBLE": "DoubleType",
    "INTEGER": "IntegerType",
    "TIMESTAMP": "TimestampNTZType",
}
_NUMBERS = ("p_retained", "p_alive", "expected_purchases", "clv")


def _is_uri(path: str) -> bool:
    head, sep, _rest = path.partition("://")
    return bool(sep) and head.isidentifier() and head != "file"


def _check_out(out: Any, example: str) -> str:
    if out is None or not str(out).strip():
        raise ConfigError(f"Name the output: pass --out PATH (e.g. --out {example}).")
    target = os.fspath(out)
    if not _is_uri(target):
        local = target[len("file://") :] if target.startswith("file://") else target
        if Path(local).suffix.lower() != ".parquet":
            raise ConfigError(
                f"The output is written as Parquet: name it *.parquet; got {target} (e.g. --out "
                f"{example})."
            )
        check_output_path(local, "--out", example)
    return target


def _spark_options(master: str | None, remote: str | None) -> None:
    if master is not None and remote is not None:
        raise ConfigError(
            "Pass --spark-master or --spark-remote, not both: a Spark Connect server "
            "(--spark-remote sc://...) has its own master."
        )


# ------------------------------------------------------------------------------------ features
@dataclass(frozen=True)
class FeaturesRequest:
    """What :func:`feature_file` computes and where it writes it.

    Attributes
    ----------
    cutoff : pd.Timestamp
        Features use events strictly before it.
    out : str
        The Parquet output: a local ``*.parquet`` file, or a URI Spark writes (``hdfs://``...).
    engine : {"duckdb", "spark"}
    events : str or None
        The Parquet log (a file, a folder or a glob; Spark: any filesystem it reads), or with
        ``events_table`` a table of the Spark session. None with DuckDB reads the store.
    horizon_days : int or None
        The label window; needed with ``labels``.
    labels : bool
        Add the label column ``retained``.
    retained_by : str
        What counts as coming back (:func:`retention.features.to_retained_by`).
    spark_master, spark_remote : str or None
        Where Spark runs: a master URL (default ``local[*]``) or a Spark Connect address.
    events_table : bool
        ``events`` names a table of the Spark session, not a path.
    shuffle_partitions : int or None
        ``spark.sql.shuffle.partitions`` of a session started here (default 2 x the cores of a
        ``local`` master, Spark's own default elsewhere).
    """

    cutoff: pd.Timestamp
    out: str
    engine: str = "duckdb"
    events: str | None = None
    horizon_days: int | None = None
    labels: bool = False
    retained_by: str = RETAINED_BY_DEFAULT
    spark_master: str | None = None
    spark_remote: str | None = None
    events_table: bool = False
    shuffle_partitions: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "engine", to_engine(self.engine))
        object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        object.__setattr__(self, "retained_by", to_retained_by(self.retained_by))
        if self.horizon_days is not None:
            object.__setattr__(self, "horizon_days", to_horizon(self.horizon_days))
        if self.labels and self.horizon_days is None:
            raise ConfigError("--labels needs the label window: pass --horizon DAYS.")
        object.__setattr__(self, "out", _check_out(self.out, "features.parquet"))
        if self.events is not None:
            object.__setattr__(self, "events", os.fspath(self.events))
        if self.engine == "spark":
            _spark_options(self.spark_master, self.spark_remote)
            if self.events is None:
                raise ConfigError(
                    "--engine spark reads the events from Parquet or a table: pass --events PATH."
                )
        elif self.spark_master is not None or self.spark_remote is not None:
            raise ConfigError("--spark-master and --spark-remote need --engine spark.")
        elif self.events_table:
            raise ConfigError("A table of events needs --engine spark.")


@dataclass(frozen=True)
class FeaturesReport:
    """What :func:`feature_file` wrote."""

    engine: str
    cutoff: pd.Timestamp
    n_users: int
    n_features: int
    out: str
    seconds: float
    horizon_days: int | None = None
    base_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return json_clean(
            {
                "engine": self.engine,
                "cutoff": self.cutoff,
                "horizon_days": self.horizon_days,
                "n_users": self.n_users,
                "n_features": self.n_features,
                "base_rate": self.base_rate,
                "out": self.out,
                "seconds": round(self.seconds, 3),
            }
        )


def _local_partitions(master: str | None) -> int | None:
    """2 x the cores of a ``local[N]`` master (Spark's 200 are far too many on one machine)."""
    name = master or "local[*]"
    if not name.startswith("local"):
        return None
    inside = name[name.find("[") + 1 : name.find("]")] if "[" in name else "1"
    head = inside.split(",")[0].strip()
    cores = (os.cpu_count() or 1) if head in {"*", ""} or not head.isdigit() else int(head)
    return max(2 * cores, 2)


def _session(
    master: str | None, remote: str | None, partitions: int | None, session: Any
) -> tuple[Any, bool]:
    """The session to use and whether this call started it (to stop it after)."""
    if session is not None:
        return session, False
    parts = partitions if partitions is not None else _local_partitions(master)
    if remote is not None:
        parts = partitions
    active = None
    if remote is None:
        try:
            from pyspark.sql import SparkSession

            active = SparkSession.getActiveSession()
        except ImportError:  # spark_session says what to install
            active = None
    # a session this process already runs is joined, and left running
    return spark_session(master, remote, shuffle_partitions=parts), active is None


def feature_file(
    store: Store | None,
    request: FeaturesRequest,
    *,
    progress: Progress | None = None,
    session: Any = None,
) -> FeaturesReport:
    """Compute the feature table at ``request.cutoff`` and write it as Parquet.

    Parameters
    ----------
    store : Store or None
        With ``engine="duckdb"`` and no ``request.events``: the store to read.
    request : FeaturesRequest
    progress : Progress, optional
    session : SparkSession, optional
        A session to run on (default: one started from the request's master or remote, and
        stopped at the end).

    Returns
    -------
    FeaturesReport

    Raises
    ------
    ConfigError
        Neither a store nor events with DuckDB, Spark unavailable, an unwritable output.
    ReadError
        The events cannot be read.
    DataError
        The cutoff is unusable, or the label window runs past the data.
    """
    progress = as_progress(progress)
    start = time.perf_counter()
    started = False
    spark = None
    try:
        if request.engine == "duckdb":
            if request.events is None:
                if store is None:
                    raise ConfigError(
                        "--engine duckdb reads a Parquet log (--events PATH) or a store (--db)."
                    )
                backend: Any = store
            else:
                backend = events_backend("duckdb", request.events)
        else:
            with progress.stage("starting Spark"):
                spark, started = _session(
                    request.spark_master,
                    request.spark_remote,
                    request.shuffle_partitions,
                    session,
                )
            assert request.events is not None
            backend = events_backend(
                "spark", request.events, session=spark, table=request.events_table
            )
        with progress.stage(f"features at {request.cutoff:%Y-%m-%d} on {request.engine}"):
            table = feature_table(
                backend,
                request.cutoff,
                horizon_days=request.horizon_days,
                labels=request.labels,
                retained_by=request.retained_by,
            )
        with progress.stage("writing Parquet"):
            out = write_feature_table(table, request.out, session=spark)
    finally:
        if started and spark is not None:
            spark.stop()
    n_features = table.shape[1] - 1 - int(request.labels)
    base = float(table["retained"].mean()) if request.labels and len(table) else None
    return FeaturesReport(
        engine=request.engine,
        cutoff=request.cutoff,
        n_users=len(table),
        n_features=n_features,
        out=out,
        seconds=time.perf_counter() - start,
        horizon_days=request.horizon_days,
        base_rate=base,
    )


# ----------------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class SparkScoreRequest:
    """Which model scores which Parquet log on Spark, and where the scores go.

    Attributes
    ----------
    events : str
        The Parquet log (any filesystem Spark reads), or with ``events_table`` a table.
    out : str
        The scores as Parquet: a local ``*.parquet`` file or a URI (``hdfs://``...).
    model_path, model_id : Path or str or None
        Exactly one: an artifact, or a model of the store's registry.
    cutoff : pd.Timestamp or None
        Default: the date of the last event that counts as coming back.
    horizon_days : int or None
        Must match the model's when given.
    retained_by : str or None
        Must match the model's when given.
    spark_master, spark_remote, events_table, shuffle_partitions
        As in :class:`FeaturesRequest`.
    partitions : int or None
        Partitions of customers scored in parallel (default: the session's parallelism).
    """

    events: str
    out: str
    model_path: Path | None = None
    model_id: str | None = None
    cutoff: pd.Timestamp | None = None
    horizon_days: int | None = None
    retained_by: str | None = None
    spark_master: str | None = None
    spark_remote: str | None = None
    events_table: bool = False
    shuffle_partitions: int | None = None
    partitions: int | None = None

    def __post_init__(self) -> None:
        path, mid = check_model_ref(self.model_path, self.model_id)
        object.__setattr__(self, "model_path", path)
        object.__setattr__(self, "model_id", mid)
        if self.events is None or not str(self.events).strip():
            raise ConfigError("Scoring on Spark reads the events from Parquet: pass --events PATH.")
        object.__setattr__(self, "events", os.fspath(self.events))
        object.__setattr__(self, "out", _check_out(self.out, "scores.parquet"))
        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", to_cutoff(self.cutoff))
        if self.horizon_days is not None:
            object.__setattr__(self, "horizon_days", to_horizon(self.horizon_days))
        if self.retained_by is not None:
            object.__setattr__(self, "retained_by", to_retained_by(self.retained_by))
        _spark_options(self.spark_master, self.spark_remote)
        if self.partitions is not None and (
            isinstance(self.partitions, bool)
            or not isinstance(self.partitions, int)
            or self.partitions < 1
        ):
            raise ConfigError(f"partitions must be a whole number >= 1; got {self.partitions!r}.")


@dataclass(frozen=True)
class SparkScoreReport:
    """What :func:`spark_score` wrote."""

    n_users: int
    cutoff: pd.Timestamp
    horizon_days: int
    model_version: str
    out: str
    seconds: float
    bands: dict[str, int] = field(default_factory=dict)
    partitions: int = 1
    engine: str = "spark"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the rows are in the Parquet output)."""
        return json_clean(
            {
                "engine": self.engine,
                "n_users": self.n_users,
                "cutoff": self.cutoff,
                "horizon_days": self.horizon_days,
                "model_version": self.model_version,
                "out": self.out,
                "bands": self.bands,
                "partitions": self.partitions,
                "seconds": round(self.seconds, 3),
            }
        )


def _walk(model: Any) -> Iterator[Any]:
    yield model
    for member in getattr(model, "members_", None) or getattr(model, "members", None) or ():
        yield from _walk(member[1] if isinstance(member, tuple) else member)


def check_spark_model(model: Any) -> None:
    """Refuse a model Spark cannot score here: one that reads texts or event sequences (its
    workers would need the whole log, not the population's purchase history)."""
    for part in _walk(model):
        name = type(part).__name__
        if name in {"SequenceTransformerModel", "TextLMModel"} or getattr(
            part, "text_features", False
        ):
            raise ConfigError(
                f"Scoring on Spark sends each worker the features and the purchase history, not "
                f"the texts or event sequences a {name} reads; score this model with "
                "`retention score --db DB` (DuckDB), or train a model without text or sequence "
                "members (gbdt, the BTYD models, an ensemble of them)."
            )


# what a worker loads once per payload: (model, history)
_WORKER_CACHE: dict[str, tuple[Any, pd.DataFrame]] = {}
_WORKER_LOCK = threading.Lock()


def _arrow_bytes(df: pd.DataFrame) -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    table = pa.Table.from_pandas(df, preserve_index=False)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _from_arrow(data: bytes) -> pd.DataFrame:
    import pyarrow as pa

    return pa.ipc.open_stream(io.BytesIO(data)).read_all().to_pandas()


def _worker_context(payload: dict[str, Any]) -> tuple[Any, pd.DataFrame]:
    """The model and history of ``payload``, loaded once per worker process."""
    from retention.models import load_model

    key = payload["key"]
    with _WORKER_LOCK:
        hit = _WORKER_CACHE.get(key)
        if hit is not None:
            return hit
        with tempfile.TemporaryDirectory(prefix="retention-score-") as tmp:
            path = Path(tmp) / "model.retention"
            path.write_bytes(payload["artifact"])
            model = load_model(path)  # checks the header's SHA-256 of every part
        history = _from_arrow(payload["history"])
        history["ts"] = history["ts"].astype("datetime64[ns]")
        _WORKER_CACHE.clear()  # one model at a time per worker
        _WORKER_CACHE[key] = (model, history)
        return model, history


def score_frame(
    model: Any, features: pd.DataFrame, history: pd.DataFrame, meta: dict[str, Any]
) -> pd.DataFrame:
    """The ``scores`` rows of the customers of ``features`` (what one partition computes).

    The frame holds these customers' features and the whole population's history, so that the
    BTYD fits a model makes at scoring time are the ones a local run makes; predictions are
    then taken for these customers only.
    """
    from retention.workflows._predict import _btyd_fill

    cutoff = pd.Timestamp(meta["cutoff"])
    frame = CutoffFrame(
        cutoff=cutoff,
        horizon_days=int(meta["horizon_days"]),
        features=features,
        label=None,
        events=history,
        items=None,
        retained_by=str(meta["retained_by"]),
    )
    details = model.predict_details(frame)
    details = _btyd_fill(details.reindex(frame.users).copy(), frame)
    df = pd.DataFrame({"user_id": frame.users.astype(str)})
    for c in _NUMBERS:
        df[c] = details[c].to_numpy(dtype=float)
    df["risk_band"] = risk_band(df["p_retained"].to_numpy())
    df["cutoff"] = cutoff
    df["horizon_days"] = np.int32(meta["horizon_days"])
    df["model_version"] = str(meta["model_version"])
    df["scored_at"] = pd.Timestamp(meta["scored_at"])
    df["horizon_days"] = df["horizon_days"].astype("int32")
    for c in ("cutoff", "scored_at"):
        df[c] = df[c].astype("datetime64[us]")
    return df[list(SCORE_COLUMNS)].reset_index(drop=True)


def _score_partition(
    batches: Iterator[pd.DataFrame],
    *,
    payload: Any,
    meta: dict[str, Any],
    columns: list[str],
) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` body: every batch of one partition scored at once (one BTYD refit, from
    the worker's cache, per partition rather than per batch)."""
    data = payload.value if hasattr(payload, "value") else payload
    parts = [b for b in batches if len(b)]
    if not parts:
        return
    model, history = _worker_context(data)
    features = pd.concat(parts, ignore_index=True)
    index = pd.Index(features.pop("user_id").astype(str), name="user_id", dtype="str")
    features.index = index
    features = features[columns].astype("float64")
    yield score_frame(model, features, history, meta)


def _scores_schema() -> Any:
    """The ``scores`` table's columns as a Spark schema (every field nullable, as before)."""
    from pyspark.sql import types as st

    return st.StructType(
        [
            st.StructField(name, getattr(st, _SPARK_TYPES[kind.split()[0]])())
            for name, kind in TABLE_COLUMNS["scores"]
        ]
    )


def _is_connect(session: Any) -> bool:
    return type(session).__module__.startswith("pyspark.sql.connect")


def spark_score(
    store: Store | None,
    request: SparkScoreRequest,
    *,
    progress: Progress | None = None,
    cache: ModelCache | None = None,
    session: Any = None,
) -> SparkScoreReport:
    """Score every customer of the population of a Parquet log on Spark; write Parquet.

    Parameters
    ----------
    store : Store or None
        Needed for ``request.model_id`` (the model is looked up in its registry).
    request : SparkScoreRequest
    progress : Progress, optional
    cache : ModelCache, optional
    session : SparkSession, optional
        A session to run on (default: one started from the request, stopped at the end).

    Returns
    -------
    SparkScoreReport

    Raises
    ------
    ConfigError
        A model id without a store, a horizon or ``retained_by`` other than the model's, a model
        with text or sequence members, Spark unavailable, an unwritable output.
    ReadError
        The events cannot be read.
    """
    progress = as_progress(progress)
    start = time.perf_counter()
    if request.model_id is not None and store is None:
        raise ConfigError(
            f"Model {request.model_id!r} is looked up in a store's registry: pass --db DB, or "
            "the artifact with --model PATH."
        )
    loaded = resolve_model(
        store,  # type: ignore[arg-type]  # only read for a model id, checked above
        cache,
        model_path=request.model_path,
        model_id=request.model_id,
    )
    model = loaded.model
    check_spark_model(model)
    trained_h = loaded.horizon_days
    if (
        request.horizon_days is not None
        and trained_h is not None
        and trained_h != request.horizon_days
    ):
        raise ConfigError(
            f"The model was trained for a {trained_h}-day horizon; got --horizon "
            f"{request.horizon_days}. Drop --horizon or retrain with --horizon "
            f"{request.horizon_days}."
        )
    h = request.horizon_days or trained_h or 90
    retained_by = to_retained_by(loaded.metadata.get("retained_by", RETAINED_BY_DEFAULT))
    if request.retained_by is not None and request.retained_by != retained_by:
        raise ConfigError(
            f"The model was trained with --retained-by {retained_by}; got --retained-by "
            f"{request.retained_by}. Drop --retained-by or retrain with --retained-by "
            f"{request.retained_by}."
        )
    artifact = Path(loaded.path).read_bytes()
    spark = None
    started = False
    try:
        with progress.stage("starting Spark"):
            spark, started = _session(
                request.spark_master, request.spark_remote, request.shuffle_partitions, session
            )
        backend = events_backend("spark", request.events, session=spark, table=request.events_table)
        at = request.cutoff
        if at is None:
            at = check_activity(data_span(backend, retained_by)).normalize()
        with progress.stage(f"features at {at:%Y-%m-%d} on Spark"):
            features = build_features(backend, at, retained_by=retained_by)
        if len(features) == 0:
            raise ConfigError(f"No customer has a purchase before {at:%Y-%m-%d}; nothing to score.")
        with progress.stage("purchase history for the BTYD fits"):
            history = model_history(backend, at, features.index, retained_by=retained_by)
        history_bytes = _arrow_bytes(history)
        key = hashlib.sha256(
            hashlib.sha256(artifact).digest() + hashlib.sha256(history_bytes).digest()
        ).hexdigest()
        data = {"key": key, "artifact": artifact, "history": history_bytes}
        # classic Spark broadcasts once to every executor; Spark Connect has no broadcast
        # variables, and sends the payload once with the plan instead
        payload: Any = data if _is_connect(spark) else spark.sparkContext.broadcast(data)
        scored_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
        meta = {
            "cutoff": at.isoformat(),
            "horizon_days": int(h),
            "retained_by": retained_by,
            "model_version": loaded.model_id,
            "scored_at": scored_at.isoformat(),
        }
        columns = [str(c) for c in features.columns]
        if request.partitions is not None:
            n_parts = request.partitions
        elif _is_connect(spark):  # no SparkContext to ask
            n_parts = 2
        else:
            n_parts = int(spark.sparkContext.defaultParallelism)
        n_parts = max(1, min(int(n_parts), len(features)))
        body: Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]] = functools.partial(
            _score_partition, payload=payload, meta=meta, columns=columns
        )
        with progress.stage(f"scoring {len(features):,} customers on {n_parts} partitions"):
            frame = features.reset_index()
            sdf = spark.createDataFrame(frame).repartition(n_parts, "user_id")
            scored = sdf.mapInPandas(body, schema=_scores_schema())
            if _is_uri(request.out):
                scored.write.mode("overwrite").parquet(request.out)
                back = spark.read.parquet(request.out)
                counts = {r[0]: int(r[1]) for r in back.groupBy("risk_band").count().collect()}
                n_users = int(sum(counts.values()))
            else:
                table = scored.toArrow() if hasattr(scored, "toArrow") else None
                result = table.to_pandas() if table is not None else scored.toPandas()
                result = result.sort_values("user_id", kind="stable").reset_index(drop=True)
                local = (
                    request.out[len("file://") :]
                    if request.out.startswith("file://")
                    else request.out
                )
                write_scores_parquet(result, local)
                counts = result["risk_band"].value_counts().to_dict()
                n_users = len(result)
        if payload is not data:
            payload.unpersist()
    finally:
        if started and spark is not None:
            spark.stop()
    bands = {b: int(counts.get(b, 0)) for _, b in RISK_BANDS}
    return SparkScoreReport(
        n_users=n_users,
        cutoff=at,
        horizon_days=int(h),
        model_version=loaded.model_id,
        out=request.out,
        seconds=time.perf_counter() - start,
        bands=bands,
        partitions=n_parts,
    )


def write_scores_parquet(scores: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Scores as one Parquet file with the ``scores`` table's types (``horizon_days`` int32,
    timestamps without time zone)."""
    out = Path(path)
    df = scores[list(SCORE_COLUMNS)].copy()
    df["horizon_days"] = df["horizon_days"].astype("int32")
    for c in ("cutoff", "scored_at"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[us]")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(out, index=False)
    except OSError as exc:
        raise ConfigError(
            f"Cannot write {out}: {exc.strerror or exc}. Pass another --out."
        ) from exc
    return out

"""Run tracking with MLflow: every train, backtest, tune, uplift and experiment analysis is a run.

One place for it. A workflow is decorated with :func:`tracked` (or calls :func:`track` at its
end); when it returns, a run is logged to MLflow with

* the parameters: the fields of the frozen request (paths, dates and tuples as text, mappings as
  JSON);
* the metrics: every finite number of the result's ``to_dict()``, keyed by its path
  (``models.gbdt.roc_auc``); the kind's main figure is named in the tag ``retention.main_metric``;
* the tags ``retention.kind``, ``retention.store``, ``retention.cutoff`` and
  ``retention.fingerprint``: a SHA-256 over the store's ingests (table, file hash, rows loaded,
  for every ingest that loaded rows) and the cutoff, so two runs on the same data and cutoff
  share it and a new ingest changes it (a run on a file: the file's SHA-256 instead);
* the artifacts: ``result.json`` (the result's ``to_dict()``), the model file where the workflow
  writes one, and the HTML report the CLI renders afterwards (:func:`track_artifact`).

Where: ``RETENTION_TRACKING_URI``, else ``MLFLOW_TRACKING_URI`` (a server, or any URI MLflow
takes), else an SQLite file next to the store, ``<store>.mlflow.db``, with the artifacts in
``<store>.mlflow-artifacts/`` (workflows without a store use the default store's place,
``RETENTION_DB``). ``RETENTION_TRACKING=0`` turns tracking off. MLflow is imported only when a
run is logged (the CLI starts without it), its log lines and warnings are kept off the user's
terminal, and a failure (an unwritable folder, a server that does not answer) is one
:class:`~retention.exceptions.RetentionWarning` per place and process, never a failed command.
A tracked workflow called inside another (a tuning trial's backtest) is logged as part of the
outer run only.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from retention._settings import get_settings
from retention.exceptions import RetentionWarning

if TYPE_CHECKING:  # pragma: no cover
    from retention.data import Store

__all__ = [
    "EXPERIMENT_NAME",
    "TrackedRun",
    "TrackedRuns",
    "data_fingerprint",
    "list_runs",
    "track",
    "track_artifact",
    "tracked",
    "tracking_enabled",
    "tracking_location",
]

#: the MLflow experiment every run goes to
EXPERIMENT_NAME = "retention"

#: MLflow's limits on what one run holds (values are cut, extra metrics left out)
_MAX_PARAM_CHARS = 6000
_MAX_KEY_CHARS = 250
_MAX_METRICS = 1000

#: the main figure of each kind: the first flattened metric key that matches
_MAIN_METRIC: dict[str, tuple[str, ...]] = {
    "backtest": (
        r"models\.ensemble\.roc_auc",
        r"models\.gbdt\.roc_auc",
        r"models\.[^.]+\.roc_auc",
    ),
    "train": (r"metadata\.metrics\.valid\.roc_auc",),
    "tune": (r"best_value", r"best[._]?\w*roc_auc", r"test\.roc_auc", r".*roc_auc"),
    "uplift_evaluate": (r"models\.{chosen}\.mean_qini", r"models\.[^.]+\.mean_qini"),
    "uplift_train": (r"models\.{chosen}\.mean_qini", r"models\.[^.]+\.mean_qini"),
    "experiment": (r"variants\.[^.]+\.difference",),
}

#: MLflow's HTTP settings while we log, unless the user set them (MLflow's defaults retry a
#: server that does not answer for about four minutes)
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: depth of tracked workflows on this thread's call stack (a nested one is not logged)
_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("retention_tracking_depth", default=0)
#: (tracking URI, run id) of the last run logged here, for :func:`track_artifact`
_LAST_RUN: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "retention_tracking_last_run", default=None
)
#: places whose failure was already reported in this process (warn once)
_WARNED: set[str] = set()
_LOCK = threading.Lock()


# --------------------------------------------------------------------------------- where and if
def tracking_enabled() -> bool:
    """Whether runs are logged: on unless ``RETENTION_TRACKING`` is ``0``/``false``/``off``."""
    value = os.environ.get("RETENTION_TRACKING", "1").strip().lower()
    return value not in {"0", "false", "no", "off"}


def _sqlite_uri(path: Path) -> str:
    return "sqlite:///" + str(path.expanduser().resolve())


def _sqlite_file(uri: str) -> Path | None:
    """The file of an ``sqlite:///PATH`` URI (None for another scheme or an in-memory one)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None


def _store_path(store: Store | None) -> Path | None:
    path = getattr(store, "path", None)
    if path is None or str(path) == ":memory:":
        return None
    return Path(path).expanduser().resolve()


def tracking_location(store_path: str | os.PathLike[str] | None = None) -> tuple[str, Path | None]:
    """The tracking URI for a store and the folder its artifacts go to (None: MLflow decides).

    ``RETENTION_TRACKING_URI`` first, then ``MLFLOW_TRACKING_URI``, then
    ``sqlite:///<store>.mlflow.db`` beside the store (``store_path``, default the
    ``RETENTION_DB`` store). A plain path in either variable is an SQLite file. The artifacts of
    an SQLite location go to ``<file stem>-artifacts/`` beside the file.
    """
    uri = ""
    for name in ("RETENTION_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        value = os.environ.get(name, "").strip()
        if value:
            uri = value if "://" in value or value.startswith("file:") else _sqlite_uri(Path(value))
            break
    if not uri:
        db = Path(store_path) if store_path is not None else get_settings().db
        db = db.expanduser().resolve()
        uri = _sqlite_uri(db.with_name(db.name + ".mlflow.db"))
    file = _sqlite_file(uri)
    artifacts = file.with_name(file.stem + "-artifacts") if file is not None else None
    return uri, artifacts


# ---------------------------------------------------------------------------------- fingerprint
def data_fingerprint(store: Store | None, cutoff: Any = None, files: tuple[Path, ...] = ()) -> str:
    """SHA-256 of what a run learned from: the store's ingests and the cutoff (or input files).

    The ingests are taken as (table, file SHA-256, rows loaded) for every ingest that loaded
    rows, sorted: ingesting a new file changes the fingerprint, ingesting the same file again
    (nothing loaded) does not. ``files`` (a CSV a workflow read) add their SHA-256.
    """
    from retention.workflows._common import file_sha256

    parts: list[str] = []
    if store is not None:
        rows = store.con.execute(
            "SELECT table_name, sha256, loaded FROM ingests WHERE loaded > 0"
        ).fetchall()
        parts += sorted(f"ingest:{t}:{h}:{int(n)}" for t, h, n in rows)
    for path in files:
        parts.append(f"file:{file_sha256(path) if Path(path).is_file() else 'missing'}")
    parts.append(f"cutoff:{_text(cutoff) if cutoff is not None else ''}")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------- parameters and metrics
def _text(value: Any) -> str:
    """A parameter value as text: dates as ``YYYY-MM-DD``, tuples comma-joined, mappings JSON."""
    import pandas as pd

    from retention.workflows._common import json_clean

    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else value.isoformat()
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return ",".join(map(str, value))
    if is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(json_clean(value), sort_keys=True, default=str)
    return str(value)


def _key(text: str) -> str:
    """An MLflow key: letters, digits and ``_-. /:``; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-. /:]", "_", text)[:_MAX_KEY_CHARS]


def request_params(request: Any) -> dict[str, str]:
    """The fields of a frozen request as MLflow parameters."""
    if request is None:
        return {}
    if is_dataclass(request) and not isinstance(request, type):
        items = {f.name: getattr(request, f.name) for f in fields(request)}
    elif isinstance(request, Mapping):
        items = dict(request)
    else:
        items = dict(vars(request))
    return {_key(str(k)): _text(v)[:_MAX_PARAM_CHARS] for k, v in items.items()}


def result_dict(result: Any) -> dict[str, Any]:
    """The JSON form of a result (``to_json_dict()`` of a backtest, ``to_dict()`` otherwise)."""
    from retention.workflows._common import json_clean

    for name in ("to_json_dict", "to_dict"):
        method = getattr(result, name, None)
        if callable(method):
            out = method()
            return dict(json_clean(out)) if isinstance(out, Mapping) else {"value": out}
    return dict(json_clean(result)) if isinstance(result, Mapping) else {}


def flatten_metrics(payload: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite number of a nested dict, keyed by its path (lists and booleans left out)."""
    out: dict[str, float] = {}
    for k, v in payload.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_metrics(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[_key(key)] = float(v)
    return out


def main_metric(kind: str, metrics: Mapping[str, float], payload: Mapping[str, Any]) -> str | None:
    """The key of the kind's main figure among ``metrics`` (None when it has none)."""
    chosen = re.escape(str(payload.get("chosen_model", "")))
    for pattern in _MAIN_METRIC.get(kind, ()):
        regex = re.compile(pattern.replace("{chosen}", chosen) + r"\Z")
        for key in metrics:
            if regex.match(key):
                return key
    return None


def _cutoff(request: Any, payload: Mapping[str, Any]) -> Any:
    """The run's cutoff: the request's, else the result's (a trained model's metadata)."""
    import pandas as pd

    value = getattr(request, "cutoff", None)
    if value is None:
        value = payload.get("cutoff")
    if value is None and isinstance(payload.get("metadata"), Mapping):
        value = payload["metadata"].get("cutoff")
    if isinstance(value, str):
        with contextlib.suppress(ValueError, TypeError):
            return pd.Timestamp(value)
    return value


# ----------------------------------------------------------------------------------- logging
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow, Alembic and SQLAlchemy say nothing on the user's terminal while we log.

    MLflow is imported first (it sets up its own logger when imported), then its loggers are
    raised to ERROR for the time of the block and set back after.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow  # noqa: F401  (its import configures the "mlflow" logger)

        loggers = [logging.getLogger(n) for n in ("mlflow", "alembic", "sqlalchemy")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        # a tracking server that does not answer costs seconds, not MLflow's minutes of retries
        unset = [k for k in _HTTP_DEFAULTS if k not in os.environ]
        os.environ.update({k: _HTTP_DEFAULTS[k] for k in unset})
        try:
            yield
        finally:
            for k in unset:
                os.environ.pop(k, None)
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _client(uri: str, artifacts: Path | None, *, create: bool) -> tuple[Any, str | None]:
    """An ``MlflowClient`` on ``uri`` and the id of the retention experiment (made if asked)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    if exp is not None:
        return client, str(exp.experiment_id)
    if not create:
        return client, None
    location = artifacts.resolve().as_uri() if artifacts is not None else None
    return client, str(client.create_experiment(EXPERIMENT_NAME, artifact_location=location))


def _warn_failure(uri: str, exc: BaseException) -> None:
    if uri in _WARNED:
        return
    _WARNED.add(uri)
    first = next(iter(str(exc).strip().splitlines()), "") or type(exc).__name__
    warnings.warn(
        f"Run tracking failed at {uri} ({type(exc).__name__}: {first[:200]}); the command's "
        "result is unaffected but this run was not logged. Set RETENTION_TRACKING_URI to a "
        "writable place (or a tracking server), or RETENTION_TRACKING=0 to turn tracking off.",
        RetentionWarning,
        stacklevel=4,
    )


def track(
    kind: str,
    request: Any,
    result: Any,
    *,
    store: Store | None = None,
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    files: tuple[str | os.PathLike[str], ...] = (),
    started: float | None = None,
) -> str | None:
    """Log one run of a workflow to MLflow; returns its run id (None when off or failed).

    Parameters
    ----------
    kind : str
        ``backtest``, ``train``, ``tune``, ``uplift_evaluate``, ``uplift_train``,
        ``experiment``, ... (the tag ``retention.kind``; it picks the main metric).
    request : frozen dataclass
        Its fields are the run's parameters.
    result : object with ``to_dict()``
        Its numbers are the run's metrics; it is also logged as ``result.json``.
    store : Store, optional
        The store the workflow read: the fingerprint covers its ingests, and the runs go beside
        it unless a tracking URI is set.
    artifacts : mapping of folder to path, optional
        Files to log, under that folder of the run (``{"model": path}``).
    files : tuple of paths
        Input files the workflow read without a store (their SHA-256 enter the fingerprint).
    started : float, optional
        ``time.time()`` when the workflow began (the run's start; default now).

    Never raises: a failure to log is a :class:`~retention.exceptions.RetentionWarning`, once
    per place and process.
    """
    if not tracking_enabled():
        return None
    store_path = _store_path(store)
    uri, art_dir = tracking_location(store_path)
    ended = time.time()
    try:
        with _LOCK, _quiet():
            run_id = _log(
                kind,
                request,
                result,
                uri=uri,
                art_dir=art_dir,
                store=store,
                store_path=store_path,
                artifacts=artifacts or {},
                files=tuple(Path(f) for f in files),
                started=started if started is not None else ended,
                ended=ended,
            )
    except Exception as exc:  # tracking never fails the user's command
        _warn_failure(uri, exc)
        return None
    _LAST_RUN.set((uri, run_id))
    return run_id


def _log(
    kind: str,
    request: Any,
    result: Any,
    *,
    uri: str,
    art_dir: Path | None,
    store: Store | None,
    store_path: Path | None,
    artifacts: Mapping[str, str | os.PathLike[str]],
    files: tuple[Path, ...],
    started: float,
    ended: float,
) -> str:
    from mlflow.entities import Metric, Param

    import retention

    payload = result_dict(result)
    metrics = flatten_metrics(payload)
    main = main_metric(kind, metrics, payload)
    keep = list(metrics)[:_MAX_METRICS]
    if main is not None and main not in keep:
        keep[-1] = main
    cutoff = _cutoff(request, payload)
    tags = {
        "mlflow.runName": f"{kind} {_text(cutoff)}" if cutoff is not None else kind,
        "retention.kind": kind,
        "retention.store": str(store_path) if store_path is not None else "",
        "retention.cutoff": _text(cutoff) if cutoff is not None else "",
        "retention.fingerprint": data_fingerprint(store, cutoff, files),
        "retention.version": str(getattr(retention, "__version__", "")),
    }
    if main is not None:
        tags["retention.main_metric"] = main
    if files:
        tags["retention.files"] = ",".join(str(f) for f in files)[:_MAX_PARAM_CHARS]
    if art_dir is not None:
        art_dir.parent.mkdir(parents=True, exist_ok=True)
    client, experiment_id = _client(uri, art_dir, create=True)
    run = client.create_run(str(experiment_id), start_time=int(started * 1000), tags=tags)
    run_id = str(run.info.run_id)
    try:
        step_ms = int(ended * 1000)
        params = [Param(k, v) for k, v in request_params(request).items()]
        values = [Metric(k, metrics[k], step_ms, 0) for k in keep]
        for i in range(0, max(len(params), len(values)), 100):  # MLflow's batch limits
            client.log_batch(
                run_id, metrics=values[i : i + 100], params=params[i : i + 100], synchronous=True
            )
        if len(metrics) > len(keep):
            client.set_tag(run_id, "retention.metrics_left_out", str(len(metrics) - len(keep)))
        with tempfile.TemporaryDirectory(prefix="retention-run-") as tmp:
            path = Path(tmp) / "result.json"
            path.write_text(json.dumps(payload, indent=1, allow_nan=False, default=str))
            client.log_artifact(run_id, str(path))
        for folder, file in artifacts.items():
            if Path(file).is_file():
                client.log_artifact(run_id, str(file), artifact_path=folder or None)
        client.set_terminated(run_id, "FINISHED", end_time=int(ended * 1000))
    except Exception:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def track_artifact(path: str | os.PathLike[str], folder: str = "report") -> bool:
    """Add a file (the HTML report the CLI rendered) to the last run logged here.

    Returns whether it was logged; never raises (a failure warns once, as :func:`track`).
    """
    last = _LAST_RUN.get()
    if last is None or not tracking_enabled() or not Path(path).is_file():
        return False
    uri, run_id = last
    try:
        with _LOCK, _quiet():
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=uri).log_artifact(run_id, str(path), artifact_path=folder)
    except Exception as exc:
        _warn_failure(uri, exc)
        return False
    return True


def tracked(
    kind: str,
    *,
    artifacts: Callable[[Any, Any], Mapping[str, str | os.PathLike[str]]] | None = None,
    files: Callable[[Any], tuple[str | os.PathLike[str], ...]] | None = None,
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a workflow ``fn(store, request, ...)`` or ``fn(request, ...)``: when it returns,
    its run is logged with :func:`track`.

    ``artifacts(request, result)`` names the files to log (``{"model": result.path}``);
    ``files(request)`` the input files of a workflow without a store. A tracked workflow called
    inside another is logged only as part of the outer one.
    """

    def decorate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            outer = _DEPTH.get() == 0
            if outer:  # a report rendered after this call joins this run or none
                _LAST_RUN.set(None)
            token = _DEPTH.set(_DEPTH.get() + 1)
            started = time.time()
            try:
                result = fn(*args, **kwargs)
            finally:
                _DEPTH.reset(token)
            if outer and tracking_enabled():
                store, request = _store_and_request(args, kwargs)
                try:
                    extra = artifacts(request, result) if artifacts is not None else {}
                    inputs = files(request) if files is not None else ()
                except Exception:  # a result without the expected file: log without it
                    extra, inputs = {}, ()
                track(
                    kind,
                    request,
                    result,
                    store=store,
                    artifacts=extra,
                    files=inputs,
                    started=started,
                )
            return result

        return wrapper

    return decorate


def _store_and_request(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
    """The store (an object with ``con`` and ``path``) and the request among a call's arguments."""
    values = list(args) + list(kwargs.values())
    store = next((v for v in values if hasattr(v, "con") and hasattr(v, "path")), None)
    rest = [v for v in values if v is not store]
    request = kwargs.get("request", rest[0] if rest else None)
    return store, request


# -------------------------------------------------------------------------------- listing runs
@dataclass(frozen=True)
class TrackedRun:
    """One logged run, as ``retention runs`` lists it."""

    run_id: str
    kind: str
    status: str
    start_time: str
    cutoff: str
    main_metric: str | None
    value: float | None
    fingerprint: str
    store: str
    artifact_uri: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "start_time": self.start_time,
            "cutoff": self.cutoff,
            "main_metric": self.main_metric,
            "value": self.value,
            "fingerprint": self.fingerprint,
            "store": self.store,
            "artifact_uri": self.artifact_uri,
        }


@dataclass(frozen=True)
class TrackedRuns:
    """The runs logged at a tracking location, newest first."""

    tracking_uri: str
    enabled: bool
    runs: list[TrackedRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``retention runs --json``)."""
        return {
            "tracking_uri": self.tracking_uri,
            "enabled": self.enabled,
            "runs": [r.to_dict() for r in self.runs],
        }


def list_runs(store: Store, *, limit: int = 50, kind: str | None = None) -> TrackedRuns:
    """The runs logged for ``store`` (at its tracking location), newest first.

    Nothing is created: a location where nothing was logged yet lists no run.

    Raises
    ------
    ConfigError
        ``limit`` is not a whole number >= 1.
    StoreError
        The tracking location cannot be read.
    """
    from datetime import UTC, datetime

    from retention.exceptions import ConfigError, StoreError

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a whole number >= 1, such as 20; got {limit!r}.")
    if kind is not None and not re.fullmatch(r"[a-z_]+", kind):
        raise ConfigError(
            f"kind must be a run kind such as backtest, train, tune, uplift_evaluate, "
            f"uplift_train or experiment; got {kind!r}."
        )
    uri, _ = tracking_location(_store_path(store))
    enabled = tracking_enabled()
    file = _sqlite_file(uri)
    if file is not None and not file.exists():
        return TrackedRuns(uri, enabled)
    try:
        with _LOCK, _quiet():
            client, experiment_id = _client(uri, None, create=False)
            if experiment_id is None:
                return TrackedRuns(uri, enabled)
            query = f"tags.`retention.kind` = '{kind}'" if kind else ""
            found = client.search_runs(
                [experiment_id],
                filter_string=query,
                max_results=limit,
                order_by=["attributes.start_time DESC"],
            )
    except Exception as exc:
        first = next(iter(str(exc).strip().splitlines()), "") or type(exc).__name__
        raise StoreError(
            f"Cannot read the tracked runs at {uri} ({first[:200]}); check "
            "RETENTION_TRACKING_URI / MLFLOW_TRACKING_URI."
        ) from None
    runs = []
    for r in found:
        tags, values = r.data.tags, r.data.metrics
        main = tags.get("retention.main_metric")
        started = datetime.fromtimestamp((r.info.start_time or 0) / 1000, tz=UTC)
        runs.append(
            TrackedRun(
                run_id=str(r.info.run_id),
                kind=tags.get("retention.kind", ""),
                status=str(r.info.status),
                start_time=started.replace(tzinfo=None).isoformat(timespec="seconds"),
                cutoff=tags.get("retention.cutoff", ""),
                main_metric=main,
                value=float(values[main]) if main in values else None,
                fingerprint=tags.get("retention.fingerprint", ""),
                store=tags.get("retention.store", ""),
                artifact_uri=str(r.info.artifact_uri),
            )
        )
    return TrackedRuns(uri, enabled, runs)

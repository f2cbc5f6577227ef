"""Background jobs: long workflows (train, backtest, score) run one at a time on a worker thread
with its own store connection; ``GET /jobs/{id}`` reports their status and result.

Jobs live in memory: a restart forgets them (their results stay in the store: the model
registry, the scores table).
"""

from __future__ import annotations

import logging
import secrets
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from retention.exceptions import NotFoundError, RetentionError
from retention.serving.api._errors import internal_location, safe_message

if TYPE_CHECKING:  # pragma: no cover
    from retention.serving.api._state import ServiceState

__all__ = ["Job", "JobRunner"]

log = logging.getLogger("retention.api")

#: what a job runs: a function of the job thread's store returning a JSON-ready dict
JobFn = Callable[[Any], dict[str, Any]]


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("ms")


@dataclass
class Job:
    """One background job."""

    job_id: str
    kind: str
    params: dict[str, Any]
    status: str = "queued"
    created_at: pd.Timestamp = field(default_factory=_now)
    started_at: pd.Timestamp | None = None
    finished_at: pd.Timestamp | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""

        def iso(ts: pd.Timestamp | None) -> str | None:
            return None if ts is None else ts.isoformat()

        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "status": self.status,
            "params": self.params,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "result": self.result,
            "error": self.error,
        }


class JobRunner:
    """Runs jobs one at a time, keeps the last ``max_jobs_kept`` of them."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retention-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()

    def submit(self, kind: str, params: dict[str, Any], fn: JobFn) -> Job:
        """Queue a job; returns it at once (status ``queued``)."""
        job = Job(job_id=secrets.token_hex(6), kind=kind, params=params)
        with self._lock:
            self._jobs[job.job_id] = job
            keep = self.state.settings.max_jobs_kept
            done = [j for j in self._jobs.values() if j.status in ("succeeded", "failed")]
            for old in done[: max(0, len(self._jobs) - keep)]:
                self._jobs.pop(old.job_id, None)
        self._pool.submit(self._run, job, fn)
        return job

    def _store(self) -> Any:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self.state.handle.own()
            self._local.store = store
        return store

    def _run(self, job: Job, fn: JobFn) -> None:
        job.status, job.started_at = "running", _now()
        try:
            job.result = fn(self._store())
            job.status = "succeeded"
        except RetentionError as exc:
            job.status, job.error = "failed", safe_message(exc)
        except Exception as exc:  # a bug: say so without the trace, the SQL or the data
            job.status = "failed"
            job.error = f"internal error ({type(exc).__name__}); see the service log"
            log.error(
                "job %s (%s) failed: %s at %s",
                job.job_id,
                job.kind,
                type(exc).__name__,
                internal_location(traceback.extract_tb(exc.__traceback__)),
            )
        finally:
            job.finished_at = _now()
            self.state.changed()

    def get(self, job_id: str) -> Job:
        """The job ``job_id``.

        Raises
        ------
        NotFoundError
        """
        with self._lock:
            job = self._jobs.get(str(job_id))
        if job is None:
            raise NotFoundError(
                "No job of that id: jobs are kept in memory, the last "
                f"{self.state.settings.max_jobs_kept}, until the service restarts."
            )
        return job

    def list(self) -> list[Job]:
        """Every job kept, newest first."""
        with self._lock:
            return list(reversed(self._jobs.values()))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted job has finished (for tests and shutdown)."""
        done = threading.Event()
        self._pool.submit(done.set)
        return done.wait(timeout)

    def shutdown(self) -> None:
        """Stop taking jobs; wait for the running one."""
        self._pool.shutdown(wait=True, cancel_futures=True)

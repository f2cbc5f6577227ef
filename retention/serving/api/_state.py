"""What the service holds for its life: the store, the keys, the customer index, the jobs.

Concurrency (DuckDB allows one read-write process per file, and a connection is not to be used
by two threads at once):

* the process opens the store once, read-write (:class:`StoreHandle`); every write of a request
  (events, keys) goes through that main handle under one lock, so writes are serialised;
* reads never take that lock: each worker thread gets its own connection to the same open
  database (DuckDB shares one database instance among the connections of a process), marked
  read-only for our code, and sees every committed write (MVCC);
* a background job (train, backtest, score) runs on its own worker thread with its own
  connection, one job at a time; DuckDB keeps its writes (models, scores) apart from those of
  the requests (events, keys), which touch other tables;
* customer lookups answer from an in-memory :class:`~retention.workflows.CustomerIndex`, rebuilt
  after a write (at most every ``index_refresh_s``) by one thread while the others keep
  answering from the previous one.

Another process (a CLI ``retention ingest``) cannot open the store while the service runs: it
gets a one-line "in use by another process" error. Post events to ``POST /events`` instead, or
stop the service first.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from retention import workflows
from retention.exceptions import RetentionError
from retention.serving.api._settings import ApiSettings

__all__ = ["RateLimiter", "ServiceState", "StoreHandle"]

log = logging.getLogger("retention.api")

#: how often (seconds) the last use of each key is written to the store
USAGE_FLUSH_S = 60.0


class StoreHandle:
    """The service's one open store: a main read-write handle for writes (under a lock) and a
    read handle per thread on the same database.

    Parameters
    ----------
    path : Path
        The store file (it must exist: ``retention serve`` never creates one).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.main = workflows.Store.open(self.path, read_only=False, create=False)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._opened: list[Any] = []
        self._opened_lock = threading.Lock()
        self._closed = False

    @contextmanager
    def write(self) -> Iterator[Any]:
        """The main handle, held alone for the block (writes are serialised)."""
        with self._write_lock:
            yield self.main

    @contextmanager
    def try_write(self) -> Iterator[Any]:
        """Like :meth:`write` when the lock is free now; yields None when a write is running."""
        if not self._write_lock.acquire(blocking=False):
            yield None
            return
        try:
            yield self.main
        finally:
            self._write_lock.release()

    def read(self) -> Any:
        """This thread's read handle (a connection of its own on the same database)."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = workflows.Store(self.path, read_only=False, create=False)
            store.read_only = True  # our code may not write through it (check_writable)
            self._local.store = store
            with self._opened_lock:
                self._opened.append(store)
        return store

    def own(self) -> Any:
        """A new read-write handle for a job thread (closed by :meth:`close`)."""
        store = workflows.Store(self.path, read_only=False, create=False)
        with self._opened_lock:
            self._opened.append(store)
        return store

    def close(self) -> None:
        """Close every handle (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with self._opened_lock:
            for store in self._opened:
                store.close()
            self._opened.clear()
        self.main.close()


class RateLimiter:
    """A token bucket per API key: ``burst`` requests at once, refilled at ``per_minute``."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token of ``key``: 0.0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


class ServiceState:
    """Everything the routers reach through ``Depends``.

    Parameters
    ----------
    settings : ApiSettings
    handle : StoreHandle
    """

    def __init__(self, settings: ApiSettings, handle: StoreHandle) -> None:
        self.settings = settings
        self.handle = handle
        self.cache = workflows.ModelCache()
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.keyring = workflows.KeyRing.load(handle.main)
        self._generation = 0
        self._scores_generation = 0
        self._gen_lock = threading.Lock()
        self._usage: dict[str, pd.Timestamp] = {}
        self._usage_lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._index: Any = None
        self._index_at: tuple[int, int] = (-1, -1)
        self._index_lock = threading.Lock()
        self._parts: dict[str, tuple[int, float, Any]] = {}
        self._part_locks: dict[str, threading.Lock] = {}
        from retention.serving.api._jobs import JobRunner

        self.jobs = JobRunner(self)

    # ------------------------------------------------------------------ changes
    @property
    def generation(self) -> int:
        """Bumped after every write; caches built at an older generation are stale."""
        return self._generation

    def changed(self, *, scores: bool = True) -> None:
        """Record that the store changed: events only (``scores=False``: a batch of events), or
        anything (a finished job may have written scores, models, other stages' tables)."""
        with self._gen_lock:
            self._generation += 1
            if scores:
                self._scores_generation += 1

    def reload_keys(self) -> None:
        """Read the keys again after a change."""
        self.keyring = workflows.KeyRing.load(self.handle.read())

    # ------------------------------------------------------------------ key use
    def note_use(self, key_id: str) -> None:
        """Remember that ``key_id`` was used now; written to the store once a minute."""
        now = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
        with self._usage_lock:
            self._usage[key_id] = now
        if time.monotonic() - self._last_flush >= USAGE_FLUSH_S:
            self._last_flush = time.monotonic()  # one flush at a time, off the request's path
            threading.Thread(target=self.flush_usage, kwargs={"wait": False}, daemon=True).start()

    def flush_usage(self, *, wait: bool = True) -> None:
        """Write the remembered uses (skipped when ``not wait`` and a write is in progress)."""
        block = self.handle.write() if wait else self.handle.try_write()
        with block as store:
            if store is None:
                return
            with self._usage_lock:
                used, self._usage = self._usage, {}
                self._last_flush = time.monotonic()
            if not used:
                return
            try:
                workflows.touch_api_keys(store, used)
            except (RetentionError, OSError) as exc:  # never fail a request for bookkeeping
                log.warning("could not record key use: %s", type(exc).__name__)

    # ------------------------------------------------------------------ the customer index
    def index(self) -> Any:
        """The customer index for a lookup, or None (then the lookup queries the store).

        Up to date: the index. After a batch of events: the index with its activity marked
        stale (lookups read activity from the store), while one background rebuild at a time
        (at most every ``index_refresh_s``) brings it up to date. After any other write (a job):
        rebuilt by the first lookup; lookups meanwhile query the store.
        """
        current = self._index
        at = (self._generation, self._scores_generation)
        if current is None:
            with self._index_lock:
                if self._index is None:
                    self._build()
                return self._index
        if self._index_at == at:
            return current
        if self._index_at[1] == at[1]:  # only events changed
            self._rebuild_later()
            return current.stale_activity()
        if not self._index_lock.acquire(blocking=False):
            return None
        try:
            if self._index_at[1] != self._scores_generation:
                self._build()
            return self._index if self._index_at[1] == self._scores_generation else None
        finally:
            self._index_lock.release()

    def _build(self) -> None:
        at = (self._generation, self._scores_generation)
        self._index = workflows.CustomerIndex(self.handle.read())
        self._index_at = at

    def _rebuild_later(self) -> None:
        current = self._index
        if current is not None and (
            time.monotonic() - current.built_at < self.settings.index_refresh_s
        ):
            return
        if not self._index_lock.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self._build()
            except Exception as exc:  # the lookups go on with the old index
                log.error("customer index rebuild failed: %s", type(exc).__name__)
            finally:
                self._index_lock.release()

        threading.Thread(target=run, name="retention-index", daemon=True).start()

    # ------------------------------------------------------------------ dashboard parts
    def part(self, name: str, build: Callable[[Any], Any]) -> Any:
        """A dashboard part, computed again after a write, at most every ``stats_refresh_s``."""
        generation = self.generation
        held = self._parts.get(name)
        if held is not None and (
            held[0] == generation or time.monotonic() - held[1] < self.settings.stats_refresh_s
        ):
            return held[2]
        lock = self._part_locks.setdefault(name, threading.Lock())
        with lock:
            held = self._parts.get(name)
            if held is not None and held[0] == generation:
                return held[2]
            value = build(self.handle.read())
            self._parts[name] = (generation, time.monotonic(), value)
            return value

    def close(self) -> None:
        """Stop the jobs, write the key uses, close the store."""
        self.jobs.shutdown()
        try:
            self.flush_usage(wait=True)
        finally:
            self.handle.close()


def retry_after(seconds: float) -> str:
    """``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))

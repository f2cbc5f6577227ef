"""Data workflows: ingest a file into the store, describe the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retention._progress import Progress, as_progress
from retention.data import IngestReport, Mapping, Store, check_file, ingest, store_info
from retention.exceptions import ConfigError

__all__ = ["IngestRequest", "StoreInfo", "info", "ingest_file"]


@dataclass(frozen=True)
class IngestRequest:
    """What to ingest, and how.

    Attributes
    ----------
    path : Path
        CSV, Parquet or JSON Lines file (``.gz`` too).
    mapping : Mapping
        Column map, event-type value map and reader options (the CLI builds it from
        ``--mapping``, ``--map``, ``--event-type`` and the reader flags).
    table : str
        ``events``, ``items``, ``users``, ``assignments`` or ``outcomes``.
    strict : bool
        Fail, loading nothing, when any row would be quarantined.
    allow_all_quarantined : bool
        Accept an ingest whose every row is quarantined (by default it fails, after keeping the
        rows and their reasons in the quarantine).
    """

    path: Path
    mapping: Mapping = field(default_factory=Mapping)
    table: str = "events"
    strict: bool = False
    allow_all_quarantined: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if not isinstance(self.mapping, Mapping):
            raise ConfigError(
                f"IngestRequest.mapping must be a retention.data.Mapping; got "
                f"{type(self.mapping).__name__}. Build one with Mapping.from_cli([...]) or "
                "Mapping.from_toml(path)."
            )

    def check_path(self) -> None:
        """Refuse a missing, empty or unreadable file (:class:`~retention.exceptions.ReadError`).

        Call it before opening a store that may be created (the CLI does): a failed ingest
        then leaves no store file behind. :func:`ingest_file` checks again.
        """
        check_file(self.path)


def ingest_file(
    store: Store, request: IngestRequest, *, progress: Progress | None = None
) -> IngestReport:
    """Ingest one file into an open, writable store (one transaction).

    Parameters
    ----------
    store : Store
        Opened for writing.
    request : IngestRequest
        The file, its mapping, the table.
    progress : Progress, optional
        Where to report progress (default: nowhere).

    Returns
    -------
    IngestReport
        ``read == loaded + duplicates + quarantined``, the reasons, the file hash.
    """
    store.check_writable(f"ingest {request.path}")
    with as_progress(progress).stage(f"ingesting {request.path.name}"):
        return ingest(
            store,
            request.path,
            request.mapping,
            table=request.table,
            strict=request.strict,
            allow_all_quarantined=request.allow_all_quarantined,
        )


@dataclass(frozen=True)
class StoreInfo:
    """What a store holds (``retention info``).

    Attributes
    ----------
    path : str
    schema_version : int
    events : int
        Total events.
    events_by_type : dict of str to int
    users, items : int
        Distinct ids in ``events``.
    first_ts, last_ts : str or None
        ISO timestamps of the first and last event.
    tables : dict of str to int
        Rows per table.
    quarantine_by_reason : dict of str to int
    ingests : list of dict
        The ingest log, oldest first.
    """

    path: str
    schema_version: int
    events: int
    events_by_type: dict[str, int]
    users: int
    items: int
    first_ts: str | None
    last_ts: str | None
    tables: dict[str, int]
    quarantine_by_reason: dict[str, int]
    ingests: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "path": self.path,
            "schema_version": self.schema_version,
            "events": self.events,
            "events_by_type": dict(self.events_by_type),
            "users": self.users,
            "items": self.items,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "tables": dict(self.tables),
            "quarantine_by_reason": dict(self.quarantine_by_reason),
            "ingests": [dict(r) for r in self.ingests],
        }


def info(store: Store) -> StoreInfo:
    """What the store holds (see :func:`retention.data.store_info`)."""
    return StoreInfo(**store_info(store))

"""Data workflows: ingest a file into the store, describe the store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retention.data import IngestReport, Mapping, Store, ingest, store_info

__all__ = ["info", "ingest_file"]


def ingest_file(
    db: str | Path,
    path: str | Path,
    maps: Sequence[str] = (),
    event_types: Sequence[str] = (),
    mapping_file: str | Path | None = None,
    table: str = "events",
    strict: bool = False,
    **reader: Any,
) -> IngestReport:
    """Ingest ``path`` into the store ``db`` (created when missing).

    Parameters
    ----------
    db : str or Path
        The DuckDB store.
    path : str or Path
        CSV, Parquet or JSON Lines file.
    maps : sequence of str
        ``canonical=source`` pairs (``--map``), applied over ``mapping_file``.
    event_types : sequence of str
        ``source_value=event_type`` pairs (``--event-type``).
    mapping_file : str or Path, optional
        TOML mapping (``--mapping``).
    table : str
        ``events``, ``items``, ``users``, ``assignments`` or ``outcomes``.
    strict : bool
        Fail, loading nothing, when any row would be quarantined.
    **reader
        Reader options over the mapping file's (``format``, ``delimiter``, ``encoding``,
        ``header``, ``ts_format``); ``None`` values are ignored.

    Returns
    -------
    IngestReport
    """
    mapping = Mapping.from_toml(mapping_file) if mapping_file is not None else Mapping()
    mapping = mapping.merge(Mapping.from_cli(maps, event_types, **reader))
    with Store(db) as store:
        return ingest(store, path, mapping, table=table, strict=strict)


def info(db: str | Path) -> dict[str, Any]:
    """What the store ``db`` holds (see :func:`retention.data.store_info`)."""
    with Store(db, read_only=True) as store:
        return store_info(store)

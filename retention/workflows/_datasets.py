"""Workflows for the bundled datasets: list them, load one into a store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retention._progress import Progress, as_progress
from retention.data import DatasetInfo, IngestReport, Store, get_dataset
from retention.data import list_datasets as _list_datasets
from retention.data import load_dataset as _load_dataset

__all__ = ["DatasetLoad", "dataset_info", "list_datasets", "load_dataset"]


def list_datasets() -> list[DatasetInfo]:
    """The bundled datasets (name, description, rows, licence, source, citation).

    Returns
    -------
    list of DatasetInfo
        In a fixed order, ``online_retail`` first.
    """
    return _list_datasets()


def dataset_info(name: str) -> DatasetInfo:
    """The bundled dataset ``name`` (a :class:`ConfigError` listing the names when unknown).

    The CLI calls it before it opens the store, so that an unknown name creates no file.
    """
    return get_dataset(name)


@dataclass(frozen=True)
class DatasetLoad:
    """What :func:`load_dataset` loaded: one ingest report per table."""

    name: str
    reports: list[IngestReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"name": self.name, "reports": [r.to_dict() for r in self.reports]}


def load_dataset(store: Store, name: str, *, progress: Progress | None = None) -> DatasetLoad:
    """Load bundled dataset ``name`` into an open, writable store.

    Parameters
    ----------
    store : Store
        Opened for writing.
    name : str
        A name from :func:`list_datasets`.
    progress : Progress, optional
        Where to report progress (default: nowhere).

    Returns
    -------
    DatasetLoad
        One report per table loaded; loading twice adds nothing (everything is a duplicate).

    Raises
    ------
    ConfigError
        ``name`` is not a bundled dataset.
    """
    get_dataset(name)
    store.check_writable(f"load dataset {name}")
    with as_progress(progress).stage(f"loading {name}"):
        return DatasetLoad(name=name, reports=_load_dataset(name, store))

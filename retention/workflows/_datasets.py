"""Workflows for the bundled datasets: list them, load one into a store."""

from __future__ import annotations

from pathlib import Path

from retention.data import DatasetInfo, IngestReport, Store, get_dataset
from retention.data import list_datasets as _list_datasets
from retention.data import load_dataset as _load_dataset

__all__ = ["list_datasets", "load_dataset"]


def list_datasets() -> list[DatasetInfo]:
    """The bundled datasets (name, description, rows, licence, source, citation).

    Returns
    -------
    list of DatasetInfo
        In a fixed order, ``online_retail`` first.
    """
    return _list_datasets()


def load_dataset(name: str, db: Path | str | Store) -> list[IngestReport]:
    """Load bundled dataset ``name`` into the store at ``db`` (created when missing).

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets`.
    db : path or Store
        The DuckDB file, or an already open writable :class:`~retention.data.Store`.

    Returns
    -------
    list of IngestReport
        One report per table loaded; loading twice adds nothing (everything is a duplicate).

    Raises
    ------
    ConfigError
        ``name`` is not a bundled dataset.
    """
    get_dataset(name)  # an unknown name fails before a store file is created
    if isinstance(db, Store):
        return _load_dataset(name, db)
    with Store(Path(db)) as store:
        return _load_dataset(name, store)

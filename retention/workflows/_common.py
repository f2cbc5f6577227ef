"""Helpers every workflow shares: JSON cleaning, the store's purchase range, default cutoffs,
argument checks, and the model cache (so that no workflow module imports another's privates)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention.data import Store
from retention.exceptions import ConfigError, DataError, ModelError

__all__ = [
    "LoadedModel",
    "ModelCache",
    "check_model_ref",
    "check_output_path",
    "check_positive_int",
    "default_cutoff",
    "file_sha256",
    "json_clean",
    "purchase_range",
    "resolve_model",
    "write_json",
]


# ------------------------------------------------------------------------------------------ JSON
def json_clean(value: Any) -> Any:
    """``value`` with plain Python types only, so that ``json.dumps(..., allow_nan=False)`` works.

    Non-finite floats become None, numpy scalars Python numbers, timestamps ISO strings (a
    midnight timestamp as ``YYYY-MM-DD``), paths strings, tuples lists.
    """
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_clean(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, pd.Timestamp | dt.datetime):
        if pd.isna(value):
            return None
        ts = pd.Timestamp(value)
        return f"{ts:%Y-%m-%d}" if ts == ts.normalize() else ts.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(payload: Any, path: str | os.PathLike[str], *, flag: str = "--json") -> Path:
    """Write ``payload`` as indented JSON (non-finite numbers as null) and return the path."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(
            json.dumps(json_clean(payload), indent=2, allow_nan=False, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    except OSError as exc:
        raise ConfigError(f"Cannot write {p}: {exc.strerror or exc}. Pass another {flag}.") from exc
    return p


def check_output_path(path: str | os.PathLike[str], flag: str, example: str) -> Path:
    """``path`` as a Path when a file can be written there; call it before the work.

    The file must not be a folder or read-only, and its folder must exist and be writable or be
    creatable (its nearest existing parent a writable folder), so that a command fails before
    training or scoring rather than after.

    Parameters
    ----------
    path : path-like
        The output file.
    flag : str
        How the caller names it, for the message (``"--out"``, ``"out"``).
    example : str
        A file name to suggest inside a folder (``"model.retention"``).

    Raises
    ------
    ConfigError
        Naming ``flag``, what was wrong and what to pass instead.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p} is a folder: pass a file name, e.g. {flag} {p / example}.")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(
            f"{flag} {p} is read-only (permission denied): chmod u+w {p} or pass another {flag}."
        )
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(
            f"Cannot write {flag} {p}: {parent} is a file, not a folder. Pass another {flag}."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"Cannot write {flag} {p}: the folder {parent} is not writable (permission denied). "
            f"Pass another {flag}."
        )
    return p


# ----------------------------------------------------------------------------------- the store
def purchase_range(store: Store) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``(first, last)`` purchase timestamp in the store.

    Raises
    ------
    ConfigError
        The store holds no purchase.
    """
    found = store.event_range("purchase")
    if found is None:
        raise ConfigError(
            f"The store {store.path} holds no purchase events, so there is nothing to learn "
            "from. Ingest a purchase log first (`retention ingest`), or name the activity that "
            "counts as coming back (`--retained-by review`, `--retained-by any`)."
        )
    return found


def default_cutoff(
    store: Store, cutoff: pd.Timestamp | None, retained_by: str = "purchase"
) -> pd.Timestamp:
    """``cutoff``, or the date (midnight) of the store's last purchase when it is None (its last
    qualifying event with another ``retained_by``, see ``retention.features.to_retained_by``)."""
    if retained_by == "purchase":
        last = purchase_range(store)[1]
    else:
        from retention.features import check_activity, data_span

        last = check_activity(data_span(store, retained_by))
    return cutoff if cutoff is not None else last.normalize()


def latest_backtest_cutoff(
    store: Store, horizon_days: int, retained_by: str = "purchase"
) -> pd.Timestamp:
    """The latest cutoff whose label window the store has seen whole: the date of its last
    qualifying event (see :func:`default_cutoff`) minus ``horizon_days``."""
    from retention.features import check_activity, data_span

    horizon = check_positive_int(horizon_days, "horizon_days")
    span = data_span(store, retained_by)
    last = check_activity(span).normalize()
    cutoff = last - pd.Timedelta(days=horizon)
    first = span.first_qualifying
    if first is None or cutoff <= first:
        days = (last - (first or last).normalize()).days
        raise DataError(
            f"The store's {span.retained_by} history spans {days} days (to {last:%Y-%m-%d}), "
            f"too short for a backtest with a {horizon}-day horizon, which needs history before "
            "its cutoff and the whole horizon after it: pass a shorter --horizon, ingest more "
            "history, or name a --cutoff."
        )
    return cutoff


def check_positive_int(value: Any, name: str) -> int:
    """``value`` as an int when it is a positive whole number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class LoadedModel:
    """A model loaded from an artifact, with what its header says.

    Attributes
    ----------
    model : RetentionModel
        The fitted model.
    model_id : str
        The artifact's ``model_id`` (``"unknown"`` when the header has none).
    metadata : dict
        The artifact's header.
    sha256 : str
        SHA-256 of the artifact file that was loaded.
    path : Path
        The artifact file.
    """

    model: Any
    model_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: Path = Path()

    @property
    def horizon_days(self) -> int | None:
        """The horizon the model was trained for, when the header says."""
        h = self.metadata.get("horizon_days")
        return None if h is None else int(h)


class ModelCache:
    """Loaded models, keyed by model id: a second lookup of the same model loads nothing.

    A service keeps one for its life and looks models up in the store's own registry
    (:meth:`get`); the CLI's ``--model PATH`` goes through :meth:`from_path`, which also works
    for an artifact no store registered.

    Parameters
    ----------
    max_models : int
        How many models stay loaded (the least recently used goes first).

    Attributes
    ----------
    n_loaded : int
        Artifacts this cache has loaded from disk (hits do not count).

    Examples
    --------
    >>> cache = ModelCache()
    >>> with Store("retention.duckdb", read_only=True) as store:  # doctest: +SKIP
    ...     first = cache.get(store, "3f2a9c1b0d4e")
    ...     again = cache.get(store, "3f2a9c1b0d4e")  # no second load
    >>> first.model is again.model, cache.n_loaded  # doctest: +SKIP
    (True, 1)
    """

    def __init__(self, max_models: int = 8) -> None:
        self.max_models = check_positive_int(max_models, "max_models")
        self.n_loaded = 0
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def _hit(self, model_id: str) -> LoadedModel | None:
        found = self._models.get(model_id)
        if found is not None:
            self._models.move_to_end(model_id)
        return found

    def _load(self, path: Path, sha256: str) -> LoadedModel:
        from retention.models import load_model, read_metadata

        metadata = dict(read_metadata(path))
        model = load_model(path)
        self.n_loaded += 1
        loaded = LoadedModel(
            model=model,
            model_id=str(metadata.get("model_id", "unknown")),
            metadata=metadata,
            sha256=sha256,
            path=path,
        )
        self._models[loaded.model_id] = loaded
        self._models.move_to_end(loaded.model_id)
        while len(self._models) > self.max_models:
            self._models.popitem(last=False)
        return loaded

    def get(self, store: Store, model_id: str) -> LoadedModel:
        """The model ``model_id`` of the store's ``models`` registry (loaded once).

        The artifact's SHA-256 must still be the one ``retention train`` registered.

        Raises
        ------
        ConfigError
            No model of that id in the store's registry.
        ModelError
            The artifact is missing or was changed since it was registered.
        """
        mid = str(model_id).strip()
        found = self._hit(mid)
        if found is not None:
            return found
        record = store.model_record(mid)
        if record is None:
            raise ConfigError(
                f"No model {mid!r} in the registry of store {store.path}: train one with "
                f"`retention train --db {store.path}`, or pass the id of a registered model."
            )
        if not record.path.is_file():
            raise ModelError(
                f"Model {mid!r} is registered at {record.path}, but no file is there any more: "
                "retrain it with `retention train`."
            )
        sha = file_sha256(record.path)
        if sha != record.sha256:
            raise ModelError(
                f"The artifact of model {mid!r} at {record.path} changed since it was registered "
                f"(sha256 {sha[:12]}..., registered {record.sha256[:12]}...): it was not loaded. "
                "Retrain it with `retention train`."
            )
        loaded = self._load(record.path, sha)
        if loaded.model_id != mid:
            raise ModelError(
                f"The artifact at {record.path} holds model {loaded.model_id!r}, not {mid!r}: "
                "retrain it with `retention train`."
            )
        return loaded

    def from_path(self, path: str | os.PathLike[str]) -> LoadedModel:
        """The model in artifact ``path`` (registered or not); loaded once per id and content."""
        from retention.models import read_metadata

        p = Path(path)
        metadata = read_metadata(p)  # a clear error for a missing or foreign file
        mid = str(metadata.get("model_id", "unknown"))
        sha = file_sha256(p)
        found = self._models.get(mid)
        if found is not None and found.sha256 == sha:
            return self._hit(mid) or found
        return self._load(p, sha)


def resolve_model(
    store: Store,
    cache: ModelCache | None,
    *,
    model_path: Path | None,
    model_id: str | None,
) -> LoadedModel:
    """The model a request names: by registry id, or by artifact path."""
    cache = cache if cache is not None else ModelCache()
    if model_id is not None:
        return cache.get(store, model_id)
    if model_path is None:  # the request checked that one of them is set
        raise ConfigError("Name the model: pass --model PATH (or a model id of the registry).")
    return cache.from_path(model_path)


def check_model_ref(model_path: Any, model_id: Any) -> tuple[Path | None, str | None]:
    """Exactly one of an artifact path and a registry id, as ``(Path, None)`` or ``(None, id)``."""
    if (model_path is None) == (model_id is None):
        raise ConfigError(
            "Name the model once: pass model_path (an artifact, --model PATH) or model_id (a "
            f"model of the store's registry), not both or neither; got {model_path!r} and "
            f"{model_id!r}."
        )
    if model_id is not None:
        if not isinstance(model_id, str) or not model_id.strip():
            raise ConfigError(f"model_id must be a non-empty string; got {model_id!r}.")
        return None, model_id.strip()
    return Path(model_path), None

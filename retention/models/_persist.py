"""Save and load fitted models as versioned artifacts.

An artifact is one zip file holding ``metadata.json`` (a readable header: artifact format version,
retention version, library versions, model name and parameters, features, cutoffs, horizon,
metrics) and ``model.pkl`` (the fitted model, pickled). :func:`read_metadata` reads only the header;
:func:`load_model` checks it before unpickling and refuses an artifact made by an incompatible
version of retention with :class:`~retention.exceptions.IncompatibleModelError`.

Unpickling runs code: load only artifacts you made or trust.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import pickle
import platform
import zipfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention.exceptions import IncompatibleModelError, ModelError
from retention.models._base import RetentionModel

__all__ = ["FORMAT_VERSION", "load_model", "read_metadata", "save_model"]

#: version of the artifact layout; bump it when an old artifact can no longer be read
FORMAT_VERSION = 1

_META = "metadata.json"
_PAYLOAD = "model.pkl"
_LIBRARIES = ("numpy", "pandas", "scikit-learn", "scipy", "lightgbm", "duckdb", "torch")


def _retention_version() -> str:
    import retention

    return str(retention.__version__)


def _library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        f = float(value)
        return None if np.isnan(f) else f
    if isinstance(value, float):
        return None if np.isnan(value) else value
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, RetentionModel):
        return type(value).name or type(value).__name__
    return repr(value)


def _describe(model: RetentionModel) -> dict[str, Any]:
    """What the model itself knows about its training (features, cutoffs, horizon)."""
    info: dict[str, Any] = {
        "model_name": type(model).name or type(model).__name__,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "params": model.get_params(),
    }
    for attr, key in [
        ("feature_names_", "features"),
        ("train_cutoffs_", "train_cutoffs"),
        ("valid_cutoff_", "valid_cutoff"),
        ("horizon_days_", "horizon_days"),
        ("member_names_", "members"),
        ("weights_", "member_weights"),
    ]:
        value = getattr(model, attr, None)
        if value is not None:
            info[key] = value
    members = getattr(model, "members_", None)
    if members and "features" not in info:
        for m in members:
            names = getattr(m, "feature_names_", None)
            if names is not None:
                info["features"] = names
                break
    return info


def _compatible(saved: str, current: str) -> bool:
    """Same major version (and, before 1.0, the same minor version)."""
    try:
        s = [int(x) for x in saved.split(".")[:2]]
        c = [int(x) for x in current.split(".")[:2]]
    except ValueError:
        return saved == current
    if len(s) < 2 or len(c) < 2:
        return s[0] == c[0]
    if c[0] == 0:
        return s == c
    return s[0] == c[0]


def save_model(
    model: RetentionModel, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` and its metadata to one artifact file at ``path``.

    Parameters
    ----------
    model : RetentionModel
        A fitted model.
    path : path-like
        The file to write (conventionally ``*.retention``); parent folders are created.
    metadata : dict, optional
        Anything to record with it (cutoffs, horizon, metrics...); must be JSON-friendly
        (timestamps and numpy numbers are converted).

    Returns
    -------
    Path
        The written file.
    """
    from retention.models._ensemble import is_fitted

    if not isinstance(model, RetentionModel):
        raise ModelError(
            f"save_model saves RetentionModel objects; got {type(model).__name__}. "
            "Pass a model from retention.models.get_model(...)."
        )
    if not is_fitted(model):
        raise ModelError(
            f"This {type(model).__name__} is not fitted, so there is nothing to save. "
            "Call fit(...) first."
        )
    path = Path(path)
    try:
        payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise ModelError(f"The {type(model).__name__} cannot be saved: {exc}.") from exc
    header: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "retention_version": _retention_version(),
        "created_at": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "model_id": hashlib.sha256(payload).hexdigest()[:12],
        "libraries": _library_versions(),
        **_describe(model),
        **(metadata or {}),
    }
    header = _jsonable(header)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(_META, json.dumps(header, indent=2, sort_keys=True, allow_nan=False))
            zf.writestr(_PAYLOAD, payload)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"Cannot write the model to {path}: {exc.strerror or exc}.") from exc
    return path


def _open(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise ModelError(
            f"No model file at {path}. Train one with `retention train --out {path}` "
            "or pass the path of an existing artifact."
        )
    if path.is_dir():
        raise ModelError(f"{path} is a folder, not a model file. Pass the .retention file.")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(
            f"{path} is not a retention model artifact (corrupt or another kind of file: {exc}). "
            "Retrain it with `retention train`."
        ) from exc


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of an artifact, without loading (unpickling) the model."""
    p = Path(path)
    with _open(p) as zf:
        try:
            meta = json.loads(zf.read(_META).decode("utf-8"))
        except KeyError:
            raise ModelError(
                f"{p} has no {_META}: it is not a retention model artifact. "
                "Retrain it with `retention train`."
            ) from None
        except (ValueError, zipfile.BadZipFile, OSError) as exc:
            raise ModelError(
                f"The metadata of {p} is corrupt ({exc}). Retrain it with `retention train`."
            ) from exc
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise ModelError(
            f"The metadata of {p} has no format_version: not a retention model artifact. "
            "Retrain it with `retention train`."
        )
    return meta


def load_model(path: str | os.PathLike[str]) -> RetentionModel:
    """Load a model saved by :func:`save_model`.

    The header is checked before anything is unpickled; the loaded model carries it as
    ``artifact_metadata_``.

    Raises
    ------
    IncompatibleModelError
        When the artifact's format version or retention version cannot be read by this version.
    ModelError
        When the file is missing, corrupt or not an artifact.
    """
    p = Path(path)
    meta = read_metadata(p)
    current = _retention_version()
    saved_version = str(meta.get("retention_version", "unknown"))
    saved_format = meta.get("format_version")
    if saved_format != FORMAT_VERSION or not _compatible(saved_version, current):
        raise IncompatibleModelError(
            f"{p} was saved by retention {saved_version} (artifact format {saved_format}); this is "
            f"retention {current} (format {FORMAT_VERSION}), which cannot load it. Retrain the "
            "model with this version (`retention train`)."
        )
    with _open(p) as zf:
        try:
            payload = zf.read(_PAYLOAD)
            model = pickle.load(io.BytesIO(payload))  # trusted files only (see module doc)
        except KeyError:
            raise ModelError(f"{p} has no {_PAYLOAD}; retrain it with `retention train`.") from None
        except Exception as exc:  # unpickling can raise almost anything on a damaged file
            raise ModelError(
                f"The model in {p} cannot be loaded ({type(exc).__name__}: {exc}). "
                "The file is damaged or was made with other library versions; retrain it."
            ) from exc
    if not isinstance(model, RetentionModel):
        raise ModelError(f"{p} does not hold a retention model; retrain it with `retention train`.")
    model.artifact_metadata_ = meta  # type: ignore[attr-defined]
    return model

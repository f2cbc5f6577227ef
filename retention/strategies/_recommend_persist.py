"""Save and load fitted recommenders as artifacts that hold data, never code.

The same layout as the churn models' artifacts (:func:`retention.models.save_model`), in a
format of its own (``kind: "recommender"``), so that neither loader takes the other's files:

``metadata.json``
    Format and retention versions, library versions, the recommender's name, class and
    hyper-parameters, anything the caller adds (cutoff, data), and ``payload``: the SHA-256 of
    every other file and of their ``sha256sum``-style listing (the artifact's ``model_id`` is its
    first 12 digits).
``model.json``
    The tree: class name, hyper-parameters, learned state as JSON, and the files of the larger
    state.
``parts/...``
    numpy arrays as ``.npy`` (read with ``allow_pickle=False``), strings as JSON lists, torch
    weights as safetensors; a blend's members in folders of their own.

Loading checks the header (format, versions, the file list and every SHA-256) before it parses
``model.json``; classes come from a fixed table of this module by name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import io
import json
import os
import platform
import re
import zipfile
import zlib
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention.exceptions import IncompatibleModelError, ModelError

__all__ = [
    "RECOMMENDER_FORMAT_VERSION",
    "load_recommender",
    "read_recommender_metadata",
    "recommender_digest",
    "save_recommender",
]

#: version of the recommender artifact layout
RECOMMENDER_FORMAT_VERSION = 1
_KIND = "recommender"
_META = "metadata.json"
_TREE = "model.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_FILE = re.compile(
    r"model\.json|parts/(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/){0,8}[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
)

#: class name -> (module, attribute): the only classes an artifact may name
_CLASSES: dict[str, tuple[str, str]] = {
    "PopularityRecommender": ("retention.strategies._recommend", "PopularityRecommender"),
    "CoOccurrenceRecommender": ("retention.strategies._recommend", "CoOccurrenceRecommender"),
    "TransitionRecommender": ("retention.strategies._recommend", "TransitionRecommender"),
    "EASERecommender": ("retention.strategies._recommend", "EASERecommender"),
    "ALSRecommender": ("retention.strategies._recommend", "ALSRecommender"),
    "TextSimilarityRecommender": ("retention.strategies._recommend", "TextSimilarityRecommender"),
    "BlendRecommender": ("retention.strategies._recommend", "BlendRecommender"),
    "SASRecRecommender": ("retention.strategies._sasrec", "SASRecRecommender"),
}


def _class_for(name: Any, where: str) -> type:
    entry = _CLASSES.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ModelError(
            f"{where} names the class {name!r}, which a recommender artifact may not hold "
            f"(allowed: {', '.join(_CLASSES)}). Load only files written by save_recommender."
        )
    cls: type = getattr(importlib.import_module(entry[0]), entry[1])
    return cls


def _retention_version() -> str:
    import retention

    return str(retention.__version__)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in ("numpy", "pandas", "scipy", "torch", "implicit"):
        try:
            out[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------


def _encode(value: Any, where: str) -> Any:
    """JSON for hyper-parameters and state (tuples, timestamps, unfitted recommenders tagged)."""
    from retention.strategies._recommend import Recommender

    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, pd.Timestamp):
        return {"__timestamp__": value.isoformat()}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ModelError(f"{where} has keys that are not strings; cannot save it.")
        return {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, Recommender):
        name = type(value).__name__
        _class_for(name, where)
        return {"__recommender__": {"class": name, "params": _encode(_params(value), where)}}
    # a text encoder is saved by name; an embedding cache is a store connection, not state
    from retention import features

    if isinstance(value, features.EmbeddingCache):
        return None
    if isinstance(value, features.TextEncoder):
        return {"__encoder__": value.model_name}
    raise ModelError(
        f"{where} holds a {type(value).__name__}, which a recommender artifact cannot store."
    )


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        tag, inner = next(iter(value.items()))
        if tag == "__tuple__" and isinstance(inner, list):
            return tuple(_decode(v, where) for v in inner)
        if tag == "__timestamp__" and isinstance(inner, str):
            return pd.Timestamp(inner)
        if tag == "__encoder__" and isinstance(inner, str):
            from retention import features

            return features.TextEncoder(inner)
        if tag == "__recommender__" and isinstance(inner, dict):
            cls = _class_for(inner.get("class"), where)
            params = _decode(inner.get("params"), where)
            if not isinstance(params, dict):
                raise ModelError(f"{where} has no parameters for {cls.__name__}.")
            return cls(**params)
    return {k: _decode(v, f"{where}[{k!r}]") for k, v in value.items()}


def _params(obj: Any) -> dict[str, Any]:
    return dict(obj.get_params(deep=False))


def _part(value: Any, where: str) -> tuple[str, bytes]:
    if isinstance(value, bytes):
        return "bytes", value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            if not all(isinstance(v, str) for v in value.tolist()):
                raise ModelError(f"{where} is an object array of non-strings; cannot save it.")
            return "strings", json.dumps(value.tolist()).encode("utf-8")
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return "npy", buf.getvalue()
    raise ModelError(f"{where} holds a {type(value).__name__}; parts are arrays or bytes.")


def _dump(obj: Any, prefix: str, files: dict[str, bytes], where: str) -> dict[str, Any]:
    from retention.strategies._recommend import Recommender

    name = type(obj).__name__
    _class_for(name, where)
    state, parts = obj._get_state()
    refs: dict[str, Any] = {}
    for key, value in parts.items():
        if not _NAME.fullmatch(key):
            raise ModelError(f"{where} names a part {key!r}; use letters, digits, '_', '.', '-'.")
        if isinstance(value, Recommender):
            refs[key] = {"kind": "object", "node": _dump(value, f"{prefix}{key}/", files, where)}
            continue
        kind, data = _part(value, f"{where}.{key}")
        suffix = {"npy": ".npy", "strings": ".json", "bytes": ""}[kind]
        file = f"parts/{prefix}{key}" + ("" if "." in key else suffix)
        files[file] = data
        refs[key] = {"kind": kind, "file": file}
    return {
        "class": name,
        "params": _encode(_params(obj), where),
        "state": _encode(state, where),
        "parts": refs,
    }


def _load(node: Any, files: dict[str, bytes], where: str) -> Any:
    if not isinstance(node, dict) or set(node) != {"class", "params", "state", "parts"}:
        raise ModelError(f"{where} is not a recommender node (class, params, state, parts).")
    cls = _class_for(node["class"], where)
    params = _decode(node["params"], where)
    state = _decode(node["state"], where)
    refs = node["parts"]
    if not (isinstance(params, dict) and isinstance(state, dict) and isinstance(refs, dict)):
        raise ModelError(f"{where} has malformed params, state or parts.")
    parts: dict[str, Any] = {}
    for key, ref in refs.items():
        if not isinstance(ref, dict):
            raise ModelError(f"{where}.{key} is not a part reference.")
        if ref.get("kind") == "object":
            parts[key] = _load(ref.get("node"), files, f"{where}.{key}")
            continue
        file = ref.get("file")
        if not isinstance(file, str) or file not in files:
            raise ModelError(f"{where}.{key} refers to {file!r}, which the header does not list.")
        data = files[file]
        kind = ref.get("kind")
        if kind == "npy":
            parts[key] = np.load(io.BytesIO(data), allow_pickle=False)
        elif kind == "strings":
            items = json.loads(data.decode("utf-8"))
            if not (isinstance(items, list) and all(isinstance(v, str) for v in items)):
                raise ModelError(f"{where}.{key} should be a list of strings.")
            parts[key] = np.asarray(items, dtype=object)
        elif kind == "bytes":
            parts[key] = data
        else:
            raise ModelError(f"{where}.{key} has an unknown kind {kind!r}.")
    obj = cls(**params)
    obj._set_state(state, parts)
    return obj


def _digest(files: dict[str, str]) -> str:
    listing = "".join(f"{d}  {n}\n" for n, d in sorted(files.items()))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def _payload(model: Any) -> dict[str, bytes]:
    from retention.strategies._recommend import Recommender

    if not isinstance(model, Recommender):
        raise ModelError(
            f"save_recommender saves recommenders; got {type(model).__name__}. Pass one from "
            "retention.strategies.get_recommender(...)."
        )
    model._check_fitted()
    files: dict[str, bytes] = {}
    tree = _dump(model, "", files, type(model).__name__)
    files[_TREE] = json.dumps(tree, sort_keys=True, allow_nan=True).encode("utf-8")
    return files


def recommender_digest(model: Any) -> str:
    """The ``model_id`` :func:`save_recommender` would give ``model`` (its payload's digest)."""
    files = _payload(model)
    return _digest({n: hashlib.sha256(d).hexdigest() for n, d in files.items()})[:12]


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def save_recommender(
    model: Any, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write a fitted recommender and its metadata to one artifact file.

    Parameters
    ----------
    model : Recommender
        A fitted recommender.
    path : path-like
        The file to write (conventionally ``*.recommender``).
    metadata : dict, optional
        JSON-friendly values to record (cutoff, data); cannot set the keys save writes.

    Returns
    -------
    Path
    """
    files = _payload(model)
    digests = {n: hashlib.sha256(d).hexdigest() for n, d in sorted(files.items())}
    total = _digest(digests)
    reserved = {"kind", "format_version", "model_id", "payload"} & set(metadata or {})
    if reserved:
        raise ModelError(f"The metadata keys {sorted(reserved)} are written by save_recommender.")
    from retention.strategies._recommend import Recommender

    assert isinstance(model, Recommender)
    header = {
        "retention_version": _retention_version(),
        "created_at": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "libraries": _versions(),
        "recommender": model.name or type(model).__name__,
        "recommender_class": type(model).__name__,
        "n_items": len(model.items_),
        "n_users": len(model.users_),
        **json.loads(json.dumps(metadata or {}, default=str)),
        "kind": _KIND,
        "format_version": RECOMMENDER_FORMAT_VERSION,
        "model_id": total[:12],
        "payload": {"sha256": total, "files": digests},
    }
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(_META, json.dumps(header, indent=2, sort_keys=True))
            for name, data in sorted(files.items()):
                zf.writestr(name, data)
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"Cannot write the recommender to {p}: {exc.strerror or exc}.") from exc
    return p


def _open(p: Path) -> zipfile.ZipFile:
    if not p.is_file():
        raise ModelError(
            f"No recommender file at {p}: save one with `retention recommend --save-model {p}` "
            "or pass the path of an existing one."
        )
    try:
        return zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(
            f"{p} is not a recommender artifact (corrupt or another file: {exc})."
        ) from None


def read_recommender_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of a recommender artifact (nothing else is read)."""
    p = Path(path)
    with _open(p) as zf:
        return _header(zf, p)


def _header(zf: zipfile.ZipFile, p: Path) -> dict[str, Any]:
    try:
        meta = json.loads(zf.read(_META).decode("utf-8"))
    except KeyError:
        raise ModelError(f"{p} has no {_META}: it is not a recommender artifact.") from None
    except (ValueError, zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise ModelError(f"The metadata of {p} is corrupt ({exc}); save the model again.") from None
    if not isinstance(meta, dict) or meta.get("kind") != _KIND:
        raise ModelError(
            f"{p} is not a recommender artifact (a churn model? those load with "
            "`retention score --model`). Pass a file saved by `retention recommend --save-model`."
        )
    return meta


def load_recommender(path: str | os.PathLike[str]) -> Any:
    """Load a recommender saved by :func:`save_recommender`, after checking its header, its
    versions and the SHA-256 of every file.

    Raises
    ------
    IncompatibleModelError
        Another artifact format or an incompatible retention version.
    ModelError
        Missing, corrupt or changed files, unknown classes.
    """
    p = Path(path)
    with _open(p) as zf:
        meta = _header(zf, p)
        saved = str(meta.get("retention_version", "unknown"))
        current = _retention_version()
        if (
            meta.get("format_version") != RECOMMENDER_FORMAT_VERSION
            or saved.split(".")[:2] != current.split(".")[:2]
        ):
            raise IncompatibleModelError(
                f"{p} was saved by retention {saved} (recommender format "
                f"{meta.get('format_version')}); this is retention {current} (format "
                f"{RECOMMENDER_FORMAT_VERSION}), which cannot load it. Fit and save it again."
            )
        payload = meta.get("payload")
        if not isinstance(payload, dict):
            payload = {}
        listed = payload.get("files")
        if not isinstance(listed, dict) or not isinstance(payload.get("sha256"), str):
            raise ModelError(f"The header of {p} lists no payload hashes; save the model again.")
        names = set(zf.namelist()) - {_META}
        if (
            names != set(listed)
            or not all(_FILE.fullmatch(n) for n in listed)
            or _TREE not in listed
        ):
            raise ModelError(
                f"{p} holds other files than its header lists; refusing to load it. Save the "
                "model again."
            )
        if _digest(listed) != payload["sha256"]:
            raise ModelError(
                f"The payload SHA-256 in the header of {p} does not match; save again."
            )
        files: dict[str, bytes] = {}
        for name in sorted(listed):
            data = zf.read(name)
            if hashlib.sha256(data).hexdigest() != listed[name]:
                raise ModelError(
                    f"{name} in {p} does not match its SHA-256: the file was changed or damaged "
                    "after it was saved. Save the model again."
                )
            files[name] = data
    try:
        model = _load(json.loads(files[_TREE].decode("utf-8")), files, "recommender")
    except ModelError as exc:
        raise ModelError(f"{p} cannot be loaded: {exc}") from None
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelError(
            f"The recommender in {p} cannot be rebuilt ({type(exc).__name__}: {exc}); save it "
            "again."
        ) from None
    model.artifact_metadata_ = meta
    return model

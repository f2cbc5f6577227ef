"""Save and load fitted models as versioned artifacts that hold data, never code.

An artifact is one zip file:

``metadata.json``
    A readable header: artifact format version, retention version, library versions, model name
    and parameters, features, cutoffs, horizon, metrics, and ``payload``: the SHA-256 of every
    other file of the zip (``files``) and of the whole payload (``sha256``, the SHA-256 of the
    ``sha256sum``-style listing ``"<digest>  <name>\\n"`` of those files in name order).
``model.json``
    The model tree: for each object its class name, its hyper-parameters, what it learned (as
    JSON) and the files that hold its larger state.
``parts/...``
    Those files: LightGBM's own model text, torch weights as safetensors, numpy arrays as
    ``.npy`` (read with ``allow_pickle=False``), JSON lists. A nested object (an ensemble member,
    a calibrator, a text featuriser, a scikit-learn estimator) keeps its files in its own folder.

:func:`load_model` reads the header, checks the format and retention versions, checks that the
zip holds exactly the files the header lists and that each has the recorded SHA-256, and only then
parses ``model.json``. Classes are found by name in a fixed table of this module (:data:`_CLASSES`,
:data:`_SKLEARN`), never imported from a path the file names; each object is made from its
hyper-parameters and given back its learned state. Nothing in an artifact is unpickled or run.
Pretrained text encoders are not saved: an artifact names the encoder, which is loaded from the
package that carries its weights, offline, as at training time.

A class that can be saved implements two methods::

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        '''(state, parts): learned attributes as JSON-ready values, and larger ones by name
        (numpy arrays, bytes, str, JSON lists or dicts, or nested objects saved the same way).'''

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        '''Restore them on an object made with the saved hyper-parameters.'''

Besides JSON types, ``state`` and hyper-parameters may hold tuples, ``pd.Timestamp``, text
encoders (saved by name), embedding caches (saved as None: a store connection is not state) and
unfitted models (saved by class and hyper-parameters).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import inspect
import io
import json
import os
import platform
import re
import zipfile
import zlib
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from retention.exceptions import IncompatibleModelError, ModelError, RetentionError
from retention.models._base import RetentionModel

if TYPE_CHECKING:  # pragma: no cover
    from retention.features import EmbeddingCache, TextEncoder

__all__ = ["FORMAT_VERSION", "load_model", "read_metadata", "save_model"]

#: version of the artifact layout; bump it when an old artifact can no longer be read
#: (1: a pickle, refused since 2: data only)
FORMAT_VERSION = 2

_META = "metadata.json"
_TREE = "model.json"
_PARTS = "parts/"
_LIBRARIES = ("numpy", "pandas", "scikit-learn", "scipy", "lightgbm", "duckdb", "torch")
#: header keys save_model writes itself (a caller's metadata cannot replace them)
_RESERVED = ("format_version", "model_id", "payload")

#: a part's name (one path component; the extension is added from its kind when it has none)
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: a payload file's name in the zip
_FILE = re.compile(
    r"model\.json|parts/(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/){0,16}[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
)
_SUFFIX = {"npy": ".npy", "bytes": ".bin", "text": ".txt", "json": ".json", "strings": ".json"}

#: class name -> (module, attribute): the retention classes an artifact may name
_CLASSES: dict[str, tuple[str, str]] = {
    "BGNBDModel": ("retention.models._btyd_models", "BGNBDModel"),
    "ParetoNBDModel": ("retention.models._btyd_models", "ParetoNBDModel"),
    "MBGNBDModel": ("retention.models._btyd_models", "MBGNBDModel"),
    "ModifiedBetaGeo": ("retention.models._btyd", "ModifiedBetaGeo"),
    "GBDTModel": ("retention.models._gbdt", "GBDTModel"),
    "EnsembleModel": ("retention.models._ensemble", "EnsembleModel"),
    "SequenceTransformerModel": ("retention.models._sequence", "SequenceTransformerModel"),
    "TextLMModel": ("retention.models._text_lm", "TextLMModel"),
    "BetaGeo": ("retention.models._btyd", "BetaGeo"),
    "ParetoNBD": ("retention.models._btyd", "ParetoNBD"),
    "GammaGamma": ("retention.models._btyd", "GammaGamma"),
    "Calibrator": ("retention.models._calibration", "Calibrator"),
    "TextFeaturizer": ("retention.features", "TextFeaturizer"),
}

#: scikit-learn estimators saved by their hyper-parameters and fitted arrays
_SKLEARN: dict[str, tuple[str, str]] = {
    "LogisticRegression": ("sklearn.linear_model", "LogisticRegression"),
    "IsotonicRegression": ("sklearn.isotonic", "IsotonicRegression"),
    "PCA": ("sklearn.decomposition", "PCA"),
}

#: fitted attributes rebuilt from the others rather than saved (IsotonicRegression.f_)
_SKLEARN_DERIVED: dict[str, tuple[str, ...]] = {"IsotonicRegression": ("f_",)}

_TAGS = ("__tuple__", "__timestamp__", "__encoder__", "__model__")


# --------------------------------------------------------------------------------------------
# header
# --------------------------------------------------------------------------------------------


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
    """A readable JSON form of header values (lossy: for people, not for loading)."""
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


def _init_names(cls: type) -> list[str]:
    """The hyper-parameter names of ``cls``: the arguments of its ``__init__``."""
    signature = inspect.signature(cls.__init__)  # type: ignore[misc]
    return [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _init_params(obj: object) -> dict[str, Any]:
    """Hyper-parameters as given to ``__init__`` (scikit-learn stores them as attributes)."""
    return {n: getattr(obj, n) for n in _init_names(type(obj)) if hasattr(obj, n)}


def _describe(model: RetentionModel) -> dict[str, Any]:
    """What the model itself knows about its training (features, cutoffs, horizon)."""
    info: dict[str, Any] = {
        "model_name": type(model).name or type(model).__name__,
        "model_class": type(model).__name__,
        "params": _init_params(model),
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


def _payload_digest(files: dict[str, str]) -> str:
    """SHA-256 of the ``sha256sum``-style listing of the payload files, in name order."""
    listing = "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# classes by name
# --------------------------------------------------------------------------------------------


def _class_for(name: object, where: str) -> type:
    """The class an artifact names, from the fixed tables only."""
    entry = (_CLASSES.get(name) or _SKLEARN.get(name)) if isinstance(name, str) else None
    if entry is None:
        allowed = ", ".join([*_CLASSES, *_SKLEARN])
        raise ModelError(
            f"{where} names the class {name!r}, which is not one an artifact may hold "
            f"(allowed: {allowed}). Load only artifacts written by save_model; retrain it with "
            "`retention train`."
        )
    module, attr = entry
    cls: type = getattr(importlib.import_module(module), attr)
    return cls


def _saveable_name(obj: object, where: str) -> str:
    name = type(obj).__name__
    entry = _CLASSES.get(name) or _SKLEARN.get(name)
    if entry is None or getattr(importlib.import_module(entry[0]), entry[1]) is not type(obj):
        raise ModelError(
            f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which an artifact "
            f"cannot hold: artifacts store the models of retention.models.MODEL_NAMES (and "
            f"their parts: {', '.join([*_CLASSES, *_SKLEARN])}) as data. Use one of those."
        )
    return name


# --------------------------------------------------------------------------------------------
# JSON values
# --------------------------------------------------------------------------------------------


def _text_types() -> tuple[type[TextEncoder], type[EmbeddingCache]]:
    """The text classes, imported when first needed (saving a BTYD model does not need them)."""
    from retention import features

    return features.TextEncoder, features.EmbeddingCache


def _encode(value: Any, where: str) -> Any:
    """``value`` as JSON, with tags for tuples, timestamps, encoders and unfitted models."""
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
            raise ModelError(f"{where} is a dict with keys that are not strings; cannot save it.")
        if len(value) == 1 and next(iter(value)) in _TAGS:
            raise ModelError(f"{where} uses the reserved key {next(iter(value))!r}.")
        return {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, RetentionModel):
        return {
            "__model__": {
                "class": _saveable_name(value, where),
                "params": _encode(_init_params(value), f"{where}.params"),
            }
        }
    encoder_type, cache_type = _text_types()
    if isinstance(value, cache_type):
        return None  # a connection to a store, not learned state
    if isinstance(value, encoder_type):
        from retention import features

        spec = features.ENCODERS.get(value.name)
        return {
            "__encoder__": {
                "model_name": value.model_name,
                "name": value.name,
                "max_length": value.max_length,
                "device": value.device,
                "install": spec.install if spec is not None else None,
            }
        }
    raise ModelError(
        f"{where} holds a {type(value).__name__}, which an artifact cannot store as data. "
        "Pass hyper-parameters as numbers, strings, lists or model names."
    )


def _decode(value: Any, where: str) -> Any:
    """The inverse of :func:`_encode` (tagged values rebuilt from the fixed tables only)."""
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _TAGS:
        tag, inner = next(iter(value.items()))
        if tag == "__tuple__" and isinstance(inner, list):
            return tuple(_decode(v, where) for v in inner)
        if tag == "__timestamp__" and isinstance(inner, str):
            return pd.Timestamp(inner)
        if tag == "__encoder__" and isinstance(inner, dict):
            from retention import features

            name, max_length = inner.get("model_name"), inner.get("max_length")
            device = inner.get("device", "cpu")
            if not (
                isinstance(name, str)
                and isinstance(device, str)
                and (max_length is None or isinstance(max_length, int))
            ):
                raise ModelError(f"{where} describes a text encoder badly: {inner!r}.")
            return features.TextEncoder(name, max_length, device)
        if tag == "__model__" and isinstance(inner, dict):
            cls = _class_for(inner.get("class"), where)
            if not issubclass(cls, RetentionModel):
                raise ModelError(f"{where} names {cls.__name__}, which is not a model.")
            params = _decode(inner.get("params"), where)
            if not isinstance(params, dict):
                raise ModelError(f"{where} has no parameters for {cls.__name__}.")
            return cls(**params)
        raise ModelError(f"{where} holds a malformed {tag} value.")
    return {k: _decode(v, f"{where}[{k!r}]") for k, v in value.items()}


# --------------------------------------------------------------------------------------------
# saving the tree
# --------------------------------------------------------------------------------------------


def _sklearn_state(est: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fitted attributes of a scikit-learn estimator: scalars as JSON, arrays as parts."""
    derived = _SKLEARN_DERIVED.get(type(est).__name__, ())
    state: dict[str, Any] = {}
    parts: dict[str, Any] = {}
    scalars: list[str] = []
    for key, value in vars(est).items():
        if not key.endswith("_") or key.startswith("_") or key in derived:
            continue
        if isinstance(value, np.ndarray):
            parts[key] = value
        elif isinstance(value, np.generic):
            parts[key] = np.asarray(value)
            scalars.append(key)
        elif value is None or isinstance(value, bool | int | float | str):
            state[key] = value
        else:
            raise ModelError(
                f"{where}.{key} is a {type(value).__name__}; this scikit-learn estimator cannot "
                "be saved as data."
            )
    state["_scalars"] = sorted(scalars)
    return state, parts


def _sklearn_restore(est: Any, state: dict[str, Any], parts: dict[str, Any]) -> None:
    scalars = set(state.pop("_scalars", []))
    for key, value in {**state, **parts}.items():
        if not (isinstance(key, str) and key.endswith("_") and key.isidentifier()):
            raise ModelError(f"A scikit-learn attribute named {key!r} cannot be restored.")
        setattr(est, key, value[()] if key in scalars else value)
    if type(est).__name__ == "IsotonicRegression":
        est._build_f(est.X_thresholds_, est.y_thresholds_)


def _part_bytes(value: Any, where: str) -> tuple[str, bytes]:
    """(kind, file content) of one part."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            items = value.tolist()
            if value.ndim == 1 and all(isinstance(v, str) for v in items):
                return "strings", json.dumps(items).encode("utf-8")
            raise ModelError(f"{where} is an array of Python objects; it cannot be saved.")
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return "npy", buffer.getvalue()
    if isinstance(value, bytes | bytearray):
        return "bytes", bytes(value)
    if isinstance(value, str):
        return "text", value.encode("utf-8")
    if isinstance(value, list | dict):
        return "json", json.dumps(_encode(value, where), allow_nan=True).encode("utf-8")
    raise ModelError(
        f"{where} is a {type(value).__name__}; a part must be an array, bytes, text, a JSON "
        "list or dict, or an object saved the same way."
    )


def _is_node(value: Any) -> bool:
    cls = type(value)
    return (hasattr(cls, "_get_state") and hasattr(cls, "_set_state")) or cls.__name__ in _SKLEARN


def _dump(obj: Any, prefix: str, files: dict[str, bytes], where: str) -> dict[str, Any]:
    """The JSON node of ``obj``; its files are added to ``files`` under ``parts/<prefix>``."""
    name = _saveable_name(obj, where)
    params = _encode(_init_params(obj), f"{where}.params")
    if name in _SKLEARN:
        state, parts = _sklearn_state(obj, where)
    else:
        state, parts = obj._get_state()
    node_parts: dict[str, Any] = {}
    for key, value in parts.items():
        if not (isinstance(key, str) and _KEY.fullmatch(key)):
            raise ModelError(f"{where} names a part {key!r}; use letters, digits, '_', '.', '-'.")
        if _is_node(value):
            node = _dump(value, f"{prefix}{key}/", files, f"{where}.{key}")
            node_parts[key] = {"kind": "object", "node": node}
            continue
        kind, data = _part_bytes(value, f"{where}.{key}")
        file = f"{_PARTS}{prefix}{key}" + ("" if "." in key else _SUFFIX[kind])
        if file in files:
            raise ModelError(f"{where} writes {file} twice; give its parts distinct names.")
        files[file] = data
        node_parts[key] = {"kind": kind, "file": file}
    return {"class": name, "params": params, "state": _encode(state, where), "parts": node_parts}


# --------------------------------------------------------------------------------------------
# loading the tree
# --------------------------------------------------------------------------------------------


def _part_value(kind: str, data: bytes, where: str) -> Any:
    if kind == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if kind == "bytes":
        return data
    if kind == "text":
        return data.decode("utf-8")
    if kind == "json":
        return _decode(json.loads(data.decode("utf-8")), where)
    if kind == "strings":
        items = json.loads(data.decode("utf-8"))
        if not (isinstance(items, list) and all(isinstance(v, str) for v in items)):
            raise ModelError(f"{where} should be a list of strings.")
        return np.asarray(items, dtype=object)
    raise ModelError(f"{where} has an unknown kind {kind!r}.")


def _load(node: Any, files: dict[str, bytes], where: str) -> Any:
    """Rebuild the object of one node (and of its nested nodes)."""
    if not isinstance(node, dict) or set(node) != {"class", "params", "state", "parts"}:
        raise ModelError(f"{where} is not a model node (class, params, state, parts).")
    cls = _class_for(node["class"], where)
    params = _decode(node["params"], f"{where}.params")
    state = _decode(node["state"], f"{where}.state")
    refs = node["parts"]
    if not (isinstance(params, dict) and isinstance(state, dict) and isinstance(refs, dict)):
        raise ModelError(f"{where} has malformed params, state or parts.")
    parts: dict[str, Any] = {}
    for key, ref in refs.items():
        at = f"{where}.{key}"
        if not isinstance(ref, dict) or "kind" not in ref:
            raise ModelError(f"{at} is not a part reference.")
        if ref["kind"] == "object":
            parts[key] = _load(ref.get("node"), files, at)
            continue
        file = ref.get("file")
        if not isinstance(file, str) or file not in files:
            raise ModelError(f"{at} refers to {file!r}, which the header does not list.")
        parts[key] = _part_value(str(ref["kind"]), files[file], at)
    obj = cls(**params)
    if node["class"] in _SKLEARN:
        _sklearn_restore(obj, state, parts)
    else:
        obj._set_state(state, parts)
    return obj


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def save_model(
    model: RetentionModel, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` and its metadata to one artifact file at ``path``.

    What the model learned is written as data (see the module docstring); the header records the
    SHA-256 of every file, which :func:`load_model` checks before reading anything else.

    Parameters
    ----------
    model : RetentionModel
        A fitted model of :data:`retention.models.MODEL_NAMES`.
    path : path-like
        The file to write (conventionally ``*.retention``); parent folders are created.
    metadata : dict, optional
        Anything to record with it (cutoffs, horizon, metrics...); must be JSON-friendly
        (timestamps and numpy numbers are converted). It cannot set ``format_version``,
        ``model_id`` or ``payload``.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ModelError
        When the model is not fitted, is not a class an artifact can hold, or the file cannot be
        written.
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
    clash = sorted(set(metadata or {}) & set(_RESERVED))
    if clash:
        raise ModelError(
            f"The metadata keys {clash} are written by save_model itself; got them in "
            "metadata. Rename them."
        )
    path = Path(path)
    files: dict[str, bytes] = {}
    tree = _dump(model, "", files, type(model).__name__)
    files[_TREE] = json.dumps(tree, indent=1, sort_keys=True, allow_nan=True).encode("utf-8")
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    total = _payload_digest(digests)
    header: dict[str, Any] = {
        "retention_version": _retention_version(),
        "created_at": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "libraries": _library_versions(),
        **_describe(model),
        **(metadata or {}),
        "format_version": FORMAT_VERSION,
        "model_id": total[:12],
        "payload": {"sha256": total, "files": digests},
    }
    header = _jsonable(header)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(_META, json.dumps(header, indent=2, sort_keys=True, allow_nan=False))
            for name, data in sorted(files.items()):
                zf.writestr(name, data)
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


def _read_header(zf: zipfile.ZipFile, p: Path) -> dict[str, Any]:
    try:
        meta = json.loads(zf.read(_META).decode("utf-8"))
    except KeyError:
        raise ModelError(
            f"{p} has no {_META}: it is not a retention model artifact. "
            "Retrain it with `retention train`."
        ) from None
    except (ValueError, zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise ModelError(
            f"The metadata of {p} is corrupt ({exc}). Retrain it with `retention train`."
        ) from exc
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise ModelError(
            f"The metadata of {p} has no format_version: not a retention model artifact. "
            "Retrain it with `retention train`."
        )
    return meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of an artifact, without loading the model (nothing else is read)."""
    p = Path(path)
    with _open(p) as zf:
        return _read_header(zf, p)


def _check_versions(meta: dict[str, Any], p: Path) -> None:
    current = _retention_version()
    saved_version = str(meta.get("retention_version", "unknown"))
    saved_format = meta.get("format_version")
    if saved_format == FORMAT_VERSION and _compatible(saved_version, current):
        return
    why = (
        " (a pickle, which this version does not load: unpickling can run any code)"
        if saved_format == 1
        else ""
    )
    raise IncompatibleModelError(
        f"{p} was saved by retention {saved_version} (artifact format {saved_format}{why}); this "
        f"is retention {current} (format {FORMAT_VERSION}), which cannot load it. Retrain the "
        "model with this version (`retention train`)."
    )


def _verified_payload(zf: zipfile.ZipFile, meta: dict[str, Any], p: Path) -> dict[str, bytes]:
    """Every payload file, each checked against its SHA-256 in the header."""
    payload = meta.get("payload")
    listed = payload.get("files") if isinstance(payload, dict) else None
    if not (
        isinstance(payload, dict)
        and isinstance(payload.get("sha256"), str)
        and isinstance(listed, dict)
        and all(isinstance(n, str) and isinstance(d, str) for n, d in listed.items())
    ):
        raise ModelError(
            f"The header of {p} lists no payload hashes, so its content cannot be checked; "
            "it was not written by save_model. Retrain it with `retention train`."
        )
    names = zf.namelist()
    if len(names) != len(set(names)):
        raise ModelError(f"{p} holds two files of the same name; it was tampered with. Retrain.")
    unknown = sorted(set(names) - {_META} - set(listed))
    if unknown:
        raise ModelError(
            f"{p} holds file(s) its header does not list ({', '.join(unknown[:5])}); refusing "
            "to load it. Load only artifacts written by save_model, or retrain the model."
        )
    bad_names = sorted(n for n in listed if not _FILE.fullmatch(n))
    missing = sorted(set(listed) - set(names))
    if bad_names or missing or _TREE not in listed:
        raise ModelError(
            f"The header of {p} lists files that are not in it or not payload files "
            f"({', '.join([*missing, *bad_names][:5]) or _TREE}). Retrain it with "
            "`retention train`."
        )
    if _payload_digest(listed) != payload["sha256"]:
        raise ModelError(
            f"The payload SHA-256 in the header of {p} does not match its file hashes; the "
            "header was changed. Retrain the model or restore the original file."
        )
    files: dict[str, bytes] = {}
    for name in sorted(listed):
        try:
            data = zf.read(name)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
            raise ModelError(
                f"{name} in {p} cannot be read ({exc}): the file is damaged. Retrain it."
            ) from exc
        if hashlib.sha256(data).hexdigest() != listed[name]:
            raise ModelError(
                f"{name} in {p} does not match its SHA-256 in the header: it was changed or "
                "damaged after it was saved. Retrain the model or restore the original file."
            )
        files[name] = data
    return files


def load_model(path: str | os.PathLike[str]) -> RetentionModel:
    """Load a model saved by :func:`save_model`.

    The header is checked first (format and retention versions, the list and SHA-256 of every
    file); only then is the model rebuilt from data, with classes from a fixed table. The loaded
    model carries the header as ``artifact_metadata_``.

    Raises
    ------
    IncompatibleModelError
        When the artifact's format version or retention version cannot be read by this version
        (an artifact of format 1, a pickle, is always refused).
    ModelError
        When the file is missing, corrupt, changed after saving, holds unlisted files, names a
        class outside the table, or is not an artifact.
    """
    p = Path(path)
    with _open(p) as zf:
        meta = _read_header(zf, p)
        _check_versions(meta, p)
        files = _verified_payload(zf, meta, p)
    try:
        tree = json.loads(files[_TREE].decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"The {_TREE} of {p} is not valid JSON ({exc}); retrain it.") from None
    try:
        model = _load(tree, files, "model")
    except IncompatibleModelError:
        raise
    except ModelError as exc:
        raise ModelError(f"{p} cannot be loaded: {exc}") from exc
    except RetentionError:
        raise  # e.g. the package of the text encoder is missing: its message says what to install
    except Exception as exc:  # a damaged state raises whatever the library raises
        raise ModelError(
            f"The model in {p} cannot be rebuilt ({type(exc).__name__}: {exc}). The file is "
            "damaged or was made by another version; retrain it with `retention train`."
        ) from exc
    if not isinstance(model, RetentionModel):
        raise ModelError(
            f"{p} holds a {type(model).__name__}, not a retention model; retrain it with "
            "`retention train`."
        )
    model.artifact_metadata_ = meta  # type: ignore[attr-defined]
    return model

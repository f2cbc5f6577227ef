"""The one artifact container: versioned, data only, SHA-256 checked, written atomically.

Every object retention saves (churn models through :func:`retention.models.save_model`,
recommenders through :func:`retention.strategies.save_recommender`) is one zip file:

``metadata.json``
    A readable header: ``format_version`` (and ``kind``, for every kind but the churn models',
    which predate the key), retention and library versions, what the caller records, and
    ``payload``: the SHA-256 of every other file of the zip (``files``) and of the whole payload
    (``sha256``, the SHA-256 of the ``sha256sum``-style listing ``"<digest>  <name>\\n"`` of those
    files in name order). The artifact's ``model_id`` is the first 12 digits of the latter.
``model.json``
    The object tree: for each object its class name, its hyper-parameters, what it learned (as
    JSON) and the files that hold its larger state.
``parts/...``
    Those files: numpy arrays as ``.npy`` (read with ``allow_pickle=False``), strings as JSON
    lists, raw bytes (LightGBM's model text, torch weights as safetensors), JSON. A nested object
    keeps its files in a folder of its own.

An :class:`ArtifactFormat` describes one kind: its header ``kind`` and version, the fixed table of
classes it may hold (found by name, never imported from a path the file names), how its messages
name it and what they tell the user to do, and the values only it encodes (subclass hooks).
Loading reads the header, refuses another kind, format or incompatible retention version, checks
that the zip holds exactly the files the header lists, each with its recorded SHA-256, and only
then parses ``model.json``. Nothing in an artifact is unpickled or run.

A class that can be saved implements two methods::

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        '''(state, parts): learned attributes as JSON-ready values, and larger ones by name
        (numpy arrays, bytes, str, JSON lists or dicts, or nested objects saved the same way).'''

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        '''Restore them on an object made with the saved hyper-parameters.'''
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
from collections.abc import Callable, Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from retention.exceptions import IncompatibleModelError, ModelError, RetentionError

__all__ = ["ArtifactFormat", "payload_digest"]

META = "metadata.json"
TREE = "model.json"
PARTS = "parts/"
#: header keys the writer sets itself (a caller's metadata cannot replace them)
RESERVED = ("format_version", "kind", "model_id", "payload")
#: a part's name (one path component; the extension is added from its kind when it has none)
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: a payload file's name in the zip
_FILE = re.compile(
    r"model\.json|parts/(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/){0,16}[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
)
_SUFFIX = {"npy": ".npy", "bytes": ".bin", "text": ".txt", "json": ".json", "strings": ".json"}
#: the tags every format encodes; a format's own come from ``ArtifactFormat.tags``
_BASE_TAGS = ("__tuple__", "__timestamp__")
_NODE_KEYS = {"class", "params", "state", "parts"}


def payload_digest(files: Mapping[str, str]) -> str:
    """SHA-256 of the ``sha256sum``-style listing of the payload files (name -> digest), in name
    order: the ``payload.sha256`` of a header, whose first 12 digits are the ``model_id``."""
    listing = "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def _file_digests(files: Mapping[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}


def _retention_version() -> str:
    import retention

    return str(retention.__version__)


def compatible_versions(saved: str, current: str) -> bool:
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


def header_json(value: Any, other: Callable[[Any], Any] = repr) -> Any:
    """A readable JSON form of header values (lossy: for people, not for loading); ``other``
    describes a value of any other type."""
    if isinstance(value, dict):
        return {str(k): header_json(v, other) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [header_json(v, other) for v in value]
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
    return other(value)


class ArtifactFormat:
    """One kind of artifact: header tag and version, allowed classes, messages, own values.

    Subclasses set the class attributes and override the hooks (:meth:`params`,
    :meth:`encode_object`, :meth:`decode_tag`, and for objects saved without ``_get_state``,
    :meth:`is_node`, :meth:`node_state` and :meth:`restore`); the container (header, versions,
    digests, refusals, atomic write) and the object tree are the same for every kind.
    """

    #: the header's ``kind`` (None: no key, the churn models' artifacts)
    kind: ClassVar[str | None] = None
    format_version: ClassVar[int] = 1
    #: what the file is, in messages ("a retention model artifact")
    title: ClassVar[str] = "an artifact"
    #: "No {noun} file at ..."
    noun: ClassVar[str] = "artifact"
    #: the function that writes it (messages)
    writer: ClassVar[str] = "save"
    #: the fix of a refusal, one sentence ("Retrain it with `retention train`.")
    fix: ClassVar[str] = "Save it again."
    #: the fix of an incompatible version, one sentence
    refit: ClassVar[str] = "Save it again with this version."
    #: how to make one, for a missing file; ``{path}`` is filled in
    make_one: ClassVar[str] = "Save one at {path}"
    #: the name of the format version in messages
    format_label: ClassVar[str] = "artifact format"
    #: libraries whose versions the header records
    libraries: ClassVar[tuple[str, ...]] = ("numpy", "pandas")
    #: class name -> (module, attribute): the only classes an artifact may name
    classes: ClassVar[Mapping[str, tuple[str, str]]] = {}
    #: the format's own tags (handled by :meth:`encode_object` / :meth:`decode_tag`)
    tags: ClassVar[tuple[str, ...]] = ()
    #: indentation of model.json (part of the payload digest: never change it for a format)
    tree_indent: ClassVar[int | None] = None

    # -- hooks ---------------------------------------------------------------------------------
    def params(self, obj: Any) -> dict[str, Any]:
        """The hyper-parameters of ``obj`` to save (the arguments it is made with on loading)."""
        return dict(obj.get_params(deep=False))

    def encode_object(self, value: Any, where: str) -> Any:
        """JSON for a value that is not plain JSON, a tuple or a timestamp (raise if none)."""
        raise ModelError(
            f"{where} holds a {type(value).__name__}, which {self.title} cannot store as data. "
            "Pass hyper-parameters as numbers, strings, lists or model names."
        )

    def decode_tag(self, tag: str, inner: Any, where: str) -> Any:
        """The value of one of :attr:`tags` (raise when ``inner`` is malformed)."""
        raise ModelError(f"{where} holds a malformed {tag} value.")

    def is_node(self, value: Any) -> bool:
        """Whether a part is an object saved as a node of its own."""
        cls = type(value)
        return hasattr(cls, "_get_state") and hasattr(cls, "_set_state")

    def node_state(self, obj: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
        state, parts = obj._get_state()
        return state, parts

    def restore(self, obj: Any, state: dict[str, Any], parts: dict[str, Any]) -> None:
        obj._set_state(state, parts)

    def header_value(self, value: Any) -> Any:
        """How the header shows a value that is not JSON, a timestamp or a path."""
        return repr(value)

    def incompatible_reason(self, saved_format: Any) -> str:
        """Words after the saved format number in the refusal (e.g. why it is never loaded)."""
        return ""

    # -- classes by name -----------------------------------------------------------------------
    def class_for(self, name: object, where: str) -> type:
        """The class an artifact names, from the fixed table only."""
        entry = self.classes.get(name) if isinstance(name, str) else None
        if entry is None:
            raise ModelError(
                f"{where} names the class {name!r}, which is not one an artifact may hold "
                f"(allowed: {', '.join(self.classes)}). Load only files written by "
                f"{self.writer}; {self.fix[0].lower()}{self.fix[1:]}"
            )
        cls: type = getattr(importlib.import_module(entry[0]), entry[1])
        return cls

    def saveable_name(self, obj: object, where: str) -> str:
        """The table name of ``obj``'s class (refused when the class is not the table's own)."""
        name = type(obj).__name__
        entry = self.classes.get(name)
        if entry is None or getattr(importlib.import_module(entry[0]), entry[1]) is not type(obj):
            raise ModelError(
                f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which "
                f"{self.title} cannot hold: it stores these classes as data: "
                f"{', '.join(self.classes)}. Use one of those."
            )
        return name

    def encode_unfitted(self, value: Any, where: str) -> dict[str, Any]:
        """An object by its class name and hyper-parameters (the inner value of a format's tag
        for unfitted members: ``{"__model__": {"class": ..., "params": ...}}``)."""
        params = self.encode(self.params(value), f"{where}.params")
        return {"class": self.saveable_name(value, where), "params": params}

    def decode_unfitted(self, inner: Any, where: str, base: type) -> Any:
        """The object :meth:`encode_unfitted` described, of a class of the table that is a
        ``base``, made from its hyper-parameters."""
        if not isinstance(inner, dict):
            raise ModelError(f"{where} describes an object badly: {inner!r}.")
        cls = self.class_for(inner.get("class"), where)
        if not issubclass(cls, base):
            raise ModelError(f"{where} names {cls.__name__}, which is not a {base.__name__}.")
        params = self.decode(inner.get("params"), where)
        if not isinstance(params, dict):
            raise ModelError(f"{where} has no parameters for {cls.__name__}.")
        return cls(**params)

    # -- JSON values ---------------------------------------------------------------------------
    def encode(self, value: Any, where: str) -> Any:
        """``value`` as JSON, with tags for tuples, timestamps and the format's own values."""
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
            return {"__tuple__": [self.encode(v, where) for v in value]}
        if isinstance(value, list):
            return [self.encode(v, where) for v in value]
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise ModelError(
                    f"{where} is a dict with keys that are not strings; cannot save it."
                )
            if len(value) == 1 and next(iter(value)) in (*_BASE_TAGS, *self.tags):
                raise ModelError(f"{where} uses the reserved key {next(iter(value))!r}.")
            return {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return self.encode_object(value, where)

    def decode(self, value: Any, where: str) -> Any:
        """The inverse of :meth:`encode` (tagged values rebuilt from the fixed tables only)."""
        if isinstance(value, list):
            return [self.decode(v, where) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1 and next(iter(value)) in (*_BASE_TAGS, *self.tags):
            tag, inner = next(iter(value.items()))
            if tag == "__tuple__" and isinstance(inner, list):
                return tuple(self.decode(v, where) for v in inner)
            if tag == "__timestamp__" and isinstance(inner, str):
                return pd.Timestamp(inner)
            if tag in _BASE_TAGS:
                raise ModelError(f"{where} holds a malformed {tag} value.")
            return self.decode_tag(tag, inner, where)
        return {k: self.decode(v, f"{where}[{k!r}]") for k, v in value.items()}

    # -- the object tree -----------------------------------------------------------------------
    def _part_bytes(self, value: Any, where: str) -> tuple[str, bytes]:
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
            return "json", json.dumps(self.encode(value, where), allow_nan=True).encode("utf-8")
        raise ModelError(
            f"{where} is a {type(value).__name__}; a part must be an array, bytes, text, a JSON "
            "list or dict, or an object saved the same way."
        )

    def _part_value(self, kind: str, data: bytes, where: str) -> Any:
        if kind == "npy":
            return np.load(io.BytesIO(data), allow_pickle=False)
        if kind == "bytes":
            return data
        if kind == "text":
            return data.decode("utf-8")
        if kind == "json":
            return self.decode(json.loads(data.decode("utf-8")), where)
        if kind == "strings":
            items = json.loads(data.decode("utf-8"))
            if not (isinstance(items, list) and all(isinstance(v, str) for v in items)):
                raise ModelError(f"{where} should be a list of strings.")
            return np.asarray(items, dtype=object)
        raise ModelError(f"{where} has an unknown kind {kind!r}.")

    def _dump(self, obj: Any, prefix: str, files: dict[str, bytes], where: str) -> dict[str, Any]:
        """The JSON node of ``obj``; its files are added to ``files`` under ``parts/<prefix>``."""
        name = self.saveable_name(obj, where)
        params = self.encode(self.params(obj), f"{where}.params")
        state, parts = self.node_state(obj, where)
        refs: dict[str, Any] = {}
        for key, value in parts.items():
            if not (isinstance(key, str) and _KEY.fullmatch(key)):
                raise ModelError(
                    f"{where} names a part {key!r}; use letters, digits, '_', '.', '-'."
                )
            if self.is_node(value):
                node = self._dump(value, f"{prefix}{key}/", files, f"{where}.{key}")
                refs[key] = {"kind": "object", "node": node}
                continue
            kind, data = self._part_bytes(value, f"{where}.{key}")
            file = f"{PARTS}{prefix}{key}" + ("" if "." in key else _SUFFIX[kind])
            if file in files:
                raise ModelError(f"{where} writes {file} twice; give its parts distinct names.")
            files[file] = data
            refs[key] = {"kind": kind, "file": file}
        return {"class": name, "params": params, "state": self.encode(state, where), "parts": refs}

    def _load(self, node: Any, files: dict[str, bytes], where: str) -> Any:
        """Rebuild the object of one node (and of its nested nodes)."""
        if not isinstance(node, dict) or set(node) != _NODE_KEYS:
            raise ModelError(f"{where} is not a {self.noun} node (class, params, state, parts).")
        cls = self.class_for(node["class"], where)
        params = self.decode(node["params"], f"{where}.params")
        state = self.decode(node["state"], f"{where}.state")
        refs = node["parts"]
        if not (isinstance(params, dict) and isinstance(state, dict) and isinstance(refs, dict)):
            raise ModelError(f"{where} has malformed params, state or parts.")
        parts: dict[str, Any] = {}
        for key, ref in refs.items():
            at = f"{where}.{key}"
            if not isinstance(ref, dict) or "kind" not in ref:
                raise ModelError(f"{at} is not a part reference.")
            if ref["kind"] == "object":
                parts[key] = self._load(ref.get("node"), files, at)
                continue
            file = ref.get("file")
            if not isinstance(file, str) or file not in files:
                raise ModelError(f"{at} refers to {file!r}, which the header does not list.")
            parts[key] = self._part_value(str(ref["kind"]), files[file], at)
        obj = cls(**params)
        self.restore(obj, state, parts)
        return obj

    def payload(self, obj: Any) -> dict[str, bytes]:
        """The payload files of ``obj``: ``model.json`` and its parts (name -> content)."""
        files: dict[str, bytes] = {}
        tree = self._dump(obj, "", files, type(obj).__name__)
        files[TREE] = json.dumps(
            tree, indent=self.tree_indent, sort_keys=True, allow_nan=True
        ).encode("utf-8")
        return files

    def model_id(self, files: Mapping[str, bytes]) -> str:
        """The ``model_id`` of an artifact with these payload files."""
        return payload_digest(_file_digests(files))[:12]

    # -- writing -------------------------------------------------------------------------------
    def library_versions(self) -> dict[str, str]:
        out = {"python": platform.python_version()}
        for name in self.libraries:
            try:
                out[name] = importlib_metadata.version(name)
            except importlib_metadata.PackageNotFoundError:
                continue
        return out

    def write(
        self,
        path: str | os.PathLike[str],
        files: Mapping[str, bytes],
        fields: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write one artifact: the header (versions, ``fields``, the caller's ``metadata``, then
        the keys of :data:`RESERVED`) and ``files``, through a temporary file replaced at once.

        Raises
        ------
        ModelError
            When ``metadata`` sets a reserved key or the file cannot be written.
        """
        clash = sorted(set(metadata or {}) & set(RESERVED))
        if clash:
            raise ModelError(
                f"The metadata keys {clash} are written by {self.writer} itself; got them in "
                "metadata. Rename them."
            )
        digests = _file_digests(files)
        total = payload_digest(digests)
        header: dict[str, Any] = {
            "retention_version": _retention_version(),
            "created_at": dt.datetime.now(dt.UTC)
            .replace(tzinfo=None)
            .isoformat(timespec="seconds"),
            "libraries": self.library_versions(),
            **fields,
            **(metadata or {}),
            **({} if self.kind is None else {"kind": self.kind}),
            "format_version": self.format_version,
            "model_id": total[:12],
            "payload": {"sha256": total, "files": digests},
        }
        header = header_json(header, self.header_value)
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(META, json.dumps(header, indent=2, sort_keys=True, allow_nan=False))
                for name, data in sorted(files.items()):
                    zf.writestr(name, data)
            os.replace(tmp, p)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ModelError(
                f"Cannot write the {self.noun} to {p}: {exc.strerror or exc}."
            ) from exc
        return p

    # -- reading -------------------------------------------------------------------------------
    def _open(self, p: Path) -> zipfile.ZipFile:
        if not p.exists():
            raise ModelError(
                f"No {self.noun} file at {p}. {self.make_one.format(path=p)} or pass the path "
                "of an existing one."
            )
        if p.is_dir():
            raise ModelError(f"{p} is a folder, not a {self.noun} file. Pass the file itself.")
        try:
            return zipfile.ZipFile(p)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelError(
                f"{p} is not {self.title} (corrupt or another kind of file: {exc}). {self.fix}"
            ) from exc

    def _header(self, zf: zipfile.ZipFile, p: Path) -> dict[str, Any]:
        try:
            meta = json.loads(zf.read(META).decode("utf-8"))
        except KeyError:
            raise ModelError(f"{p} has no {META}: it is not {self.title}. {self.fix}") from None
        except (ValueError, zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise ModelError(f"The metadata of {p} is corrupt ({exc}). {self.fix}") from exc
        if not isinstance(meta, dict) or "format_version" not in meta:
            raise ModelError(
                f"The metadata of {p} has no format_version: not {self.title}. {self.fix}"
            )
        kind = meta.get("kind")
        if kind != self.kind:
            what = (
                f"a {kind} artifact"
                if isinstance(kind, str)
                else "a churn model artifact (those load with `retention score --model`)"
            )
            raise ModelError(
                f"{p} is {what}, not {self.title}. Pass a file written by {self.writer}."
            )
        return meta

    def read_header(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The JSON header of an artifact, without loading it (nothing else is read)."""
        p = Path(path)
        with self._open(p) as zf:
            return self._header(zf, p)

    def _check_versions(self, meta: dict[str, Any], p: Path) -> None:
        current = _retention_version()
        saved_version = str(meta.get("retention_version", "unknown"))
        saved_format = meta.get("format_version")
        if saved_format == self.format_version and compatible_versions(saved_version, current):
            return
        raise IncompatibleModelError(
            f"{p} was saved by retention {saved_version} ({self.format_label} {saved_format}"
            f"{self.incompatible_reason(saved_format)}); this is retention {current} (format "
            f"{self.format_version}), which cannot load it. {self.refit}"
        )

    def _verified_payload(
        self, zf: zipfile.ZipFile, meta: dict[str, Any], p: Path
    ) -> dict[str, bytes]:
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
                f"it was not written by {self.writer}. {self.fix}"
            )
        names = zf.namelist()
        if len(names) != len(set(names)):
            raise ModelError(
                f"{p} holds two files of the same name; it was tampered with. {self.fix}"
            )
        unknown = sorted(set(names) - {META} - set(listed))
        if unknown:
            raise ModelError(
                f"{p} holds file(s) its header does not list ({', '.join(unknown[:5])}); "
                f"refusing to load it. Load only files written by {self.writer}. {self.fix}"
            )
        bad_names = sorted(n for n in listed if not _FILE.fullmatch(n))
        missing = sorted(set(listed) - set(names))
        if bad_names or missing or TREE not in listed:
            raise ModelError(
                f"The header of {p} lists files that are not in it or not payload files "
                f"({', '.join([*missing, *bad_names][:5]) or TREE}). {self.fix}"
            )
        if payload_digest(listed) != payload["sha256"]:
            raise ModelError(
                f"The payload SHA-256 in the header of {p} does not match its file hashes; the "
                f"header was changed. {self.fix}"
            )
        files: dict[str, bytes] = {}
        for name in sorted(listed):
            try:
                data = zf.read(name)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
                raise ModelError(
                    f"{name} in {p} cannot be read ({exc}): the file is damaged. {self.fix}"
                ) from exc
            if hashlib.sha256(data).hexdigest() != listed[name]:
                raise ModelError(
                    f"{name} in {p} does not match its SHA-256 in the header: it was changed or "
                    f"damaged after it was saved. {self.fix}"
                )
            files[name] = data
        return files

    def load(self, path: str | os.PathLike[str], expect: type) -> Any:
        """The object of the artifact at ``path``, after every check of the module docstring;
        it must be an instance of ``expect``, and carries the header as ``artifact_metadata_``.

        Raises
        ------
        IncompatibleModelError
            Another format version or an incompatible retention version.
        ModelError
            A missing, corrupt or changed file, unlisted files, a class outside the table,
            another kind of artifact.
        """
        p = Path(path)
        with self._open(p) as zf:
            meta = self._header(zf, p)
            self._check_versions(meta, p)
            files = self._verified_payload(zf, meta, p)
        try:
            tree = json.loads(files[TREE].decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise ModelError(f"The {TREE} of {p} is not valid JSON ({exc}). {self.fix}") from None
        try:
            obj = self._load(tree, files, self.noun)
        except IncompatibleModelError:
            raise
        except ModelError as exc:
            raise ModelError(f"{p} cannot be loaded: {exc}") from exc
        except RetentionError:
            raise  # e.g. the package of a text encoder is missing: its message says what to do
        except Exception as exc:  # a damaged state raises whatever the library raises
            raise ModelError(
                f"The {self.noun} in {p} cannot be rebuilt ({type(exc).__name__}: {exc}). The "
                f"file is damaged or was made by another version. {self.fix}"
            ) from exc
        if not isinstance(obj, expect):
            raise ModelError(f"{p} holds a {type(obj).__name__}, not a {self.noun}. {self.fix}")
        obj.artifact_metadata_ = meta  # type: ignore[attr-defined]
        return obj

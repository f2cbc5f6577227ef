"""Save and load fitted models as versioned artifacts that hold data, never code.

An artifact is the container of :mod:`retention.models._artifact` (one zip file: a readable
``metadata.json`` header with every file's SHA-256, ``model.json``, ``parts/...``), of format
:data:`FORMAT_VERSION` and no ``kind`` key. Its header records, besides the versions and the
payload's hashes: the model name, class and parameters, features, cutoffs, horizon, and what the
caller adds (metrics...).

:func:`load_model` checks the header (format and retention versions, the list and SHA-256 of every
file) before it parses ``model.json``. Classes are found by name in a fixed table of this module
(:data:`_CLASSES`, :data:`_SKLEARN`), never imported from a path the file names; each object is
made from its hyper-parameters and given back its learned state (``_get_state`` /
``_set_state``; a scikit-learn estimator by its fitted arrays). Nothing in an artifact is
unpickled or run. Pretrained text encoders are not saved: an artifact names the encoder, which is
loaded from the package that carries its weights, offline, as at training time.

Besides JSON types, ``state`` and hyper-parameters may hold tuples, ``pd.Timestamp``, text
encoders (saved by name), embedding caches (saved as None: a store connection is not state) and
unfitted models (saved by class and hyper-parameters).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from retention.exceptions import ModelError
from retention.models._artifact import ArtifactFormat
from retention.models._base import RetentionModel

if TYPE_CHECKING:  # pragma: no cover
    from retention.features import EmbeddingCache, TextEncoder

__all__ = ["FORMAT_VERSION", "load_model", "read_metadata", "save_model"]

#: version of the artifact layout; bump it when an old artifact can no longer be read
#: (1: a pickle, refused since 2: data only)
FORMAT_VERSION = 2

_LIBRARIES = ("numpy", "pandas", "scikit-learn", "scipy", "lightgbm", "duckdb", "torch")

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


# --------------------------------------------------------------------------------------------
# what the header says of a model
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# scikit-learn estimators
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


# --------------------------------------------------------------------------------------------
# the format
# --------------------------------------------------------------------------------------------


def _text_types() -> tuple[type[TextEncoder], type[EmbeddingCache]]:
    """The text classes, imported when first needed (saving a BTYD model does not need them)."""
    from retention import features

    return features.TextEncoder, features.EmbeddingCache


class _ModelFormat(ArtifactFormat):
    """Churn models: retention models, their parts, and scikit-learn estimators by their arrays."""

    kind = None
    format_version = FORMAT_VERSION
    title = "a retention model artifact"
    noun = "model"
    writer = "save_model"
    fix = "Retrain it with `retention train`."
    refit = "Retrain the model with this version (`retention train`)."
    make_one = "Train one with `retention train --out {path}`"
    format_label = "artifact format"
    libraries = _LIBRARIES
    classes: ClassVar[Mapping[str, tuple[str, str]]] = {**_CLASSES, **_SKLEARN}
    tags = ("__encoder__", "__model__")
    tree_indent = 1

    def params(self, obj: Any) -> dict[str, Any]:
        return _init_params(obj)

    def header_value(self, value: Any) -> Any:
        if isinstance(value, RetentionModel):
            return type(value).name or type(value).__name__
        return repr(value)

    def incompatible_reason(self, saved_format: Any) -> str:
        if saved_format == 1:
            return " (a pickle, which this version does not load: unpickling can run any code)"
        return ""

    def is_node(self, value: Any) -> bool:
        return super().is_node(value) or type(value).__name__ in _SKLEARN

    def node_state(self, obj: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
        if type(obj).__name__ in _SKLEARN:
            return _sklearn_state(obj, where)
        return super().node_state(obj, where)

    def restore(self, obj: Any, state: dict[str, Any], parts: dict[str, Any]) -> None:
        if type(obj).__name__ in _SKLEARN:
            _sklearn_restore(obj, state, parts)
        else:
            super().restore(obj, state, parts)

    def encode_object(self, value: Any, where: str) -> Any:
        if isinstance(value, RetentionModel):
            return {"__model__": self.encode_unfitted(value, where)}
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
        return super().encode_object(value, where)

    def decode_tag(self, tag: str, inner: Any, where: str) -> Any:
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
            return self.decode_unfitted(inner, where, RetentionModel)
        return super().decode_tag(tag, inner, where)


_FORMAT = _ModelFormat()


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
        ``kind``, ``model_id`` or ``payload``.

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
    return _FORMAT.write(path, _FORMAT.payload(model), _describe(model), metadata)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of an artifact, without loading the model (nothing else is read)."""
    return _FORMAT.read_header(path)


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
    model: RetentionModel = _FORMAT.load(path, RetentionModel)
    return model

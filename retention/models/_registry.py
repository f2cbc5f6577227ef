"""Models by name, imported lazily (the transformer members import torch only when asked for)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from retention.exceptions import ConfigError
from retention.models._base import RetentionModel

__all__ = ["MODEL_NAMES", "get_model"]

#: name -> (module, class, fixed keyword arguments)
_REGISTRY: dict[str, tuple[str, str, dict[str, Any]]] = {
    "bgnbd": ("retention.models._btyd_models", "BGNBDModel", {}),
    "paretonbd": ("retention.models._btyd_models", "ParetoNBDModel", {}),
    "mbgnbd": ("retention.models._btyd_models", "MBGNBDModel", {}),
    "gbdt": ("retention.models._gbdt", "GBDTModel", {}),
    "gbdt_rfm": ("retention.models._gbdt", "GBDTModel", {"feature_set": "rfm"}),
    "gbdt_text": ("retention.models._gbdt", "GBDTModel", {"text_features": True}),
    "ensemble": ("retention.models._ensemble", "EnsembleModel", {}),
    "sequence": ("retention.models._sequence", "SequenceTransformerModel", {}),
    "text_lm": ("retention.models._text_lm", "TextLMModel", {"method": "full"}),
    "text_lm_lora": ("retention.models._text_lm", "TextLMModel", {"method": "lora"}),
}

MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_model(name: str, **params: Any) -> RetentionModel:
    """A new, unfitted model by its registry name.

    ``params`` are hyper-parameters of the model's class (``sklearn.base.clone`` and
    ``set_params`` work on the result); their values are checked in ``fit``.

    Raises
    ------
    ConfigError
        When ``name`` is not a known model, or a parameter is not one of the model's.
    """
    try:
        module, cls, fixed = _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"Unknown model {name!r}. Choose from: {', '.join(MODEL_NAMES)}."
        ) from None
    klass = getattr(importlib.import_module(module), cls)
    accepted = [p for p in inspect.signature(klass.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"Model {name!r} has no parameter {', '.join(map(repr, unknown))}. "
            f"Its parameters are: {', '.join(accepted)}."
        )
    model: RetentionModel = klass(**{**fixed, **params})
    return model

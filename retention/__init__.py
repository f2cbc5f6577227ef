"""retention: an engine for e-commerce customer retention.

Stages, imported one way down this list: ``data`` -> ``features`` -> ``models`` -> ``explain`` ->
``strategies`` -> ``experiments`` -> ``workflows`` -> ``serving``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_STAGES = (
    "data",
    "features",
    "models",
    "explain",
    "strategies",
    "experiments",
    "workflows",
    "serving",
)

__all__ = ["__version__", *_STAGES]

if TYPE_CHECKING:  # pragma: no cover
    from retention import (  # noqa: F401
        data,
        experiments,
        explain,
        features,
        models,
        serving,
        strategies,
        workflows,
    )


def __getattr__(name: str) -> Any:
    """Import a stage on first use, so ``import retention`` stays fast."""
    if name in _STAGES:
        return importlib.import_module(f"retention.{name}")
    raise AttributeError(f"module 'retention' has no attribute {name!r}")

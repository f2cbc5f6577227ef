"""Models: BTYD, gradient boosting, transformers, ensemble, calibration, save/load."""

from retention.features import CutoffFrame
from retention.models._base import RetentionModel, check_is_fitted
from retention.models._metrics import BacktestResult, classification_metrics, lift_at
from retention.models._registry import MODEL_NAMES, get_model

__all__ = [
    "MODEL_NAMES",
    "BacktestResult",
    "CutoffFrame",
    "RetentionModel",
    "check_is_fitted",
    "classification_metrics",
    "get_model",
    "lift_at",
]

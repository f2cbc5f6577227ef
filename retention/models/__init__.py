"""Models: BTYD, gradient boosting, transformers, ensemble, calibration, save/load."""

from retention._lazy import lazy_getattr
from retention.features import CutoffFrame
from retention.models._base import RetentionModel, check_is_fitted
from retention.models._btyd import BetaGeo, GammaGamma, ParetoNBD, rfm_summary
from retention.models._btyd_models import BGNBDModel, ParetoNBDModel
from retention.models._calibration import Calibrator
from retention.models._ensemble import DEFAULT_MEMBERS, EnsembleModel
from retention.models._gbdt import GBDTModel
from retention.models._metrics import BacktestResult, classification_metrics, lift_at
from retention.models._persist import load_model, read_metadata, save_model
from retention.models._registry import MODEL_NAMES, get_model

__all__ = [
    "DEFAULT_MEMBERS",
    "MODEL_NAMES",
    "BGNBDModel",
    "BacktestResult",
    "BetaGeo",
    "Calibrator",
    "CutoffFrame",
    "EnsembleModel",
    "GBDTModel",
    "GammaGamma",
    "ParetoNBD",
    "ParetoNBDModel",
    "RetentionModel",
    "check_is_fitted",
    "classification_metrics",
    "get_model",
    "lift_at",
    "load_model",
    "read_metadata",
    "rfm_summary",
    "save_model",
]

# Members that need torch: imported on first use, so `import retention.models` stays light.
_LAZY_EXPORTS = {"SequenceTransformerModel": "retention.models._sequence"}
_LAZY_EXPORTS["TextLMModel"] = "retention.models._text_lm"
__all__ += list(_LAZY_EXPORTS)


__getattr__ = lazy_getattr(__name__, _LAZY_EXPORTS)

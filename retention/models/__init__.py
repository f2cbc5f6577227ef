"""Models: BTYD, gradient boosting, transformers, ensemble, calibration, save/load."""

from retention._lazy import lazy_getattr
from retention.features import CutoffFrame
from retention.models._artifact import ArtifactFormat, payload_digest
from retention.models._base import RetentionModel, check_is_fitted
from retention.models._btyd import BetaGeo, GammaGamma, ModifiedBetaGeo, ParetoNBD, rfm_summary
from retention.models._btyd_models import (
    BGNBDModel,
    MBGNBDModel,
    ParetoNBDModel,
    net_value_per_purchase,
)
from retention.models._calibration import Calibrator
from retention.models._drift import DriftReport, data_drift, warn_if_drifted
from retention.models._ensemble import DEFAULT_MEMBERS, EnsembleModel
from retention.models._gbdt import GBDTModel
from retention.models._metrics import (
    BacktestResult,
    classification_metrics,
    lift_at,
    paired_auc_bootstrap,
)
from retention.models._oof import N_FOLDS, customer_folds, out_of_fold_proba, subset_frame
from retention.models._persist import load_model, read_metadata, save_model
from retention.models._registry import MODEL_NAMES, get_model

__all__ = [
    "DEFAULT_MEMBERS",
    "MODEL_NAMES",
    "N_FOLDS",
    "ArtifactFormat",
    "BGNBDModel",
    "BacktestResult",
    "BetaGeo",
    "Calibrator",
    "CutoffFrame",
    "DriftReport",
    "EnsembleModel",
    "GBDTModel",
    "GammaGamma",
    "MBGNBDModel",
    "ModifiedBetaGeo",
    "ParetoNBD",
    "ParetoNBDModel",
    "RetentionModel",
    "check_is_fitted",
    "classification_metrics",
    "customer_folds",
    "data_drift",
    "get_model",
    "lift_at",
    "load_model",
    "net_value_per_purchase",
    "out_of_fold_proba",
    "paired_auc_bootstrap",
    "payload_digest",
    "read_metadata",
    "rfm_summary",
    "save_model",
    "subset_frame",
    "warn_if_drifted",
]

# Members that need torch: imported on first use, so `import retention.models` stays light.
_LAZY_EXPORTS = {"SequenceTransformerModel": "retention.models._sequence"}
_LAZY_EXPORTS["TextLMModel"] = "retention.models._text_lm"
__all__ += list(_LAZY_EXPORTS)


__getattr__ = lazy_getattr(__name__, _LAZY_EXPORTS)

"""Explain: global importance, per-customer reasons, feature selection, fairness by segment."""

from retention.explain._fairness import (
    DEFAULT_DISPARITY_THRESHOLD,
    DEFAULT_HIGH_RISK_BELOW,
    TENURE_BANDS,
    FairnessReport,
    make_segments,
    segment_report,
)
from retention.explain._importance import (
    EVENT_FIELDS,
    Contributions,
    family_importance,
    permutation_importance,
    shap_contributions,
    supports_shap,
)
from retention.explain._reasons import REASON_COLUMNS, describe_feature, reasons, reasons_for
from retention.explain._selection import SelectionResult, select_features, subset_frame

__all__ = [
    "DEFAULT_DISPARITY_THRESHOLD",
    "DEFAULT_HIGH_RISK_BELOW",
    "EVENT_FIELDS",
    "REASON_COLUMNS",
    "TENURE_BANDS",
    "Contributions",
    "FairnessReport",
    "SelectionResult",
    "describe_feature",
    "family_importance",
    "make_segments",
    "permutation_importance",
    "reasons",
    "reasons_for",
    "segment_report",
    "select_features",
    "shap_contributions",
    "subset_frame",
    "supports_shap",
]

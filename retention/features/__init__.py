"""Features: point-in-time features and labels at a cutoff, cutoffs, sequences, text embeddings."""

from retention._lazy import lazy_getattr
from retention.features._cohorts import cohort_retention
from retention.features._families import FAMILIES, feature_family
from retention.features._frame import CutoffFrame
from retention.features._sequences import EventSequences, event_sequences

__all__ = ["FAMILIES", "CutoffFrame", "cohort_retention", "feature_family"]
__all__ += ["EventSequences", "event_sequences"]

# Text features: imported on first use (they pull in scikit-learn, and torch when encoding).
_LAZY_EXPORTS = {
    "ENCODERS": "retention.features._encoder",
    "EmbeddingCache": "retention.features._encoder",
    "TextEncoder": "retention.features._encoder",
    "text_hash": "retention.features._encoder",
    "TextFeaturizer": "retention.features._text",
    "item_embeddings": "retention.features._text",
    "item_texts": "retention.features._text",
    "serialise_history": "retention.features._text",
}
# Point-in-time features, labels and cutoffs: also imported on first use (they pull in Ibis).
_LAZY_EXPORTS.update(
    {
        "WINDOWS": "retention.features._aggregates",
        "build_features": "retention.features._aggregates",
        "build_labels": "retention.features._labels",
        "population": "retention.features._labels",
        "backtest_cutoffs": "retention.features._cutoffs",
        "to_cutoff": "retention.features._cutoffs",
        "DataSpan": "retention.features._tables",
        "data_span": "retention.features._tables",
        "make_frame": "retention.features._builder",
        "training_frames": "retention.features._builder",
    }
)
__all__ += list(_LAZY_EXPORTS)


__getattr__ = lazy_getattr(__name__, _LAZY_EXPORTS)

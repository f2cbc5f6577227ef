"""Features: point-in-time features and labels at a cutoff, cutoffs, sequences, text embeddings."""

from retention.features._families import FAMILIES, feature_family
from retention.features._frame import CutoffFrame

__all__ = ["FAMILIES", "CutoffFrame", "feature_family"]

"""Feature families, named by column prefix, so importance and selection can group features."""

from __future__ import annotations

__all__ = ["FAMILIES", "feature_family"]

#: family -> column-name prefixes; the first matching family wins
FAMILIES: dict[str, tuple[str, ...]] = {
    "recency": ("recency_",),
    "frequency": ("frequency_",),
    "monetary": ("monetary_",),
    "tenure": ("tenure_",),
    "windows": ("w7d_", "w30d_", "w90d_", "w180d_", "w365d_"),
    "gaps": ("gap_",),
    "trend": ("trend_",),
    "diversity": ("diversity_",),
    "returns": ("returns_",),
    "reviews": ("reviews_",),
    "habits": ("habit_",),
    "text": ("text_",),
    "user attributes": ("user_",),
    "btyd": ("btyd_",),
    "sequence": ("seq_",),
}


def feature_family(column: str) -> str:
    """The family of a feature column, or ``"other"``.

    Examples
    --------
    >>> feature_family("w30d_spend")
    'windows'
    >>> feature_family("gap_last_vs_mean")
    'gaps'
    """
    for family, prefixes in FAMILIES.items():
        if column.startswith(prefixes):
            return family
    return "other"

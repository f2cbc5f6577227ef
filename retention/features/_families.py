"""Feature families, named by column prefix, so importance and selection can group features;
and what a feature's values do over time, for monitoring (:func:`ages_with_calendar`,
:func:`encoded_category`)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "AGEING_FEATURES",
    "ENCODED_CATEGORIES",
    "FAMILIES",
    "ages_with_calendar",
    "encoded_category",
    "feature_family",
    "slug",
]

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


#: features whose values grow with the calendar by construction: days from a fixed moment of the
#: customer's past (the first order, the first event, the first qualifying event, the sign-up,
#: another timestamp of the ``users`` table) to the cutoff. On a store that keeps its history,
#: their distribution moves forward with every cutoff although nothing about the customers
#: changed, so monitoring measures them but leaves them out of its drift flags by default.
#: Names or glob patterns (``user_<column>_days`` is a timestamp column of ``users``).
AGEING_FEATURES: tuple[str, ...] = (
    "tenure_days",
    "tenure_first_event_days",
    "tenure_activity_days",
    "user_days_since_signup",
    "user_*_days",
)

#: features that encode a category of the ``users`` table as a number recomputed at each cutoff
#: (the share of the population in the customer's category): pattern -> the source column's
#: name, ``{}`` standing for the part the pattern's ``*`` matched (the column's slug). Their
#: values move when a share moves a little, so monitoring compares the categories themselves.
ENCODED_CATEGORIES: dict[str, str] = {
    "user_country_freq": "country",
    "user_*_freq": "{}",
}


def slug(name: Any) -> str:
    """``name`` made safe for a column name: ``"United Kingdom"`` -> ``united_kingdom``."""
    text = re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")
    return text or "unknown"


def ages_with_calendar(column: str) -> bool:
    """Whether a feature's values grow with the calendar by construction (see
    :data:`AGEING_FEATURES`).

    Examples
    --------
    >>> ages_with_calendar("tenure_days"), ages_with_calendar("recency_days")
    (True, False)
    """
    return any(fnmatch.fnmatchcase(column, p) for p in AGEING_FEATURES)


def encoded_category(column: str, columns: Iterable[str] | None = None) -> str | None:
    """The ``users`` column that a feature encodes as a number, or None (see
    :data:`ENCODED_CATEGORIES`).

    Without ``columns``, the column's slug (the name the feature was built from); with them
    (the ``users`` table's columns), the one whose slug that is, or None when none is.

    Examples
    --------
    >>> encoded_category("user_country_freq"), encoded_category("user_segment_freq")
    ('country', 'segment')
    >>> encoded_category("user_segment_freq", ["user_id", "Segment"])
    'Segment'
    >>> encoded_category("w30d_spend") is None
    True
    """
    for pattern, source in ENCODED_CATEGORIES.items():
        rx = "^" + re.escape(pattern).replace(r"\*", "(.+)") + "$"
        found = re.match(rx, column)
        if found:
            name = source.format(*found.groups()) if "{}" in source else source
            if columns is None:
                return name
            return next((str(c) for c in columns if slug(c) == name), None)
    return None

"""Features: point-in-time features and labels at a cutoff, cutoffs, sequences, text embeddings."""

from typing import TYPE_CHECKING

from retention._lazy import lazy_getattr
from retention.features._cohorts import cohort_retention
from retention.features._families import (
    AGEING_FEATURES,
    ENCODED_CATEGORIES,
    FAMILIES,
    ages_with_calendar,
    encoded_category,
    feature_family,
)
from retention.features._frame import CutoffFrame
from retention.features._sequences import (
    CONTEXT_COLUMNS,
    N_GAP_BUCKETS,
    ORDER_NUMERIC_COLUMNS,
    TOKEN_UNITS,
    EventSequences,
    event_sequences,
)

__all__ = ["FAMILIES", "CutoffFrame", "cohort_retention", "feature_family"]
__all__ += ["AGEING_FEATURES", "ENCODED_CATEGORIES", "ages_with_calendar", "encoded_category"]
__all__ += ["CONTEXT_COLUMNS", "N_GAP_BUCKETS", "EventSequences", "event_sequences"]
__all__ += ["ORDER_NUMERIC_COLUMNS", "TOKEN_UNITS"]

# Text features: imported on first use (they pull in scikit-learn, and torch when encoding).
_LAZY_EXPORTS = {
    "ENCODERS": "retention.features._encoder",
    "EmbeddingCache": "retention.features._encoder",
    "TextEncoder": "retention.features._encoder",
    "mean_pool": "retention.features._encoder",
    "text_hash": "retention.features._encoder",
    "history_text": "retention.features._history_text",
    "TextFeaturizer": "retention.features._text",
    "item_embeddings": "retention.features._text",
    "item_texts": "retention.features._text",
    "resolve_encoder": "retention.features._text",
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
        "check_activity": "retention.features._cutoffs",
        "to_cutoff": "retention.features._cutoffs",
        "to_horizon": "retention.features._cutoffs",
        "DataSpan": "retention.features._tables",
        "data_span": "retention.features._tables",
        "RETAINED_BY_DEFAULT": "retention.features._tables",
        "describe_retained_by": "retention.features._tables",
        "to_retained_by": "retention.features._tables",
        "MIN_CUSTOMERS": "retention.features._min_data",
        "MIN_RETAINED": "retention.features._min_data",
        "WARN_FACTORS": "retention.features._min_data",
        "DataSufficiency": "retention.features._min_data",
        "MinData": "retention.features._min_data",
        "check_min_data": "retention.features._min_data",
        "make_frame": "retention.features._builder",
        "training_frames": "retention.features._builder",
        # engines (issue 17): the definitions on DuckDB or Spark over a Parquet log
        "ENGINES": "retention.features._spark",
        "SPARK_INSTALL_HINT": "retention.features._spark",
        "events_backend": "retention.features._spark",
        "feature_table": "retention.features._spark",
        "model_history": "retention.features._spark",
        "spark_session": "retention.features._spark",
        "to_engine": "retention.features._spark",
        "write_feature_table": "retention.features._spark",
    }
)
__all__ += list(_LAZY_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from retention.features._aggregates import WINDOWS, build_features  # noqa: F401
    from retention.features._builder import make_frame, training_frames  # noqa: F401
    from retention.features._cutoffs import (  # noqa: F401
        backtest_cutoffs,
        check_activity,
        to_cutoff,
        to_horizon,
    )
    from retention.features._encoder import (  # noqa: F401
        ENCODERS,
        EmbeddingCache,
        TextEncoder,
        mean_pool,
        text_hash,
    )
    from retention.features._history_text import history_text  # noqa: F401
    from retention.features._labels import build_labels, population  # noqa: F401
    from retention.features._min_data import (  # noqa: F401
        MIN_CUSTOMERS,
        MIN_RETAINED,
        WARN_FACTORS,
        DataSufficiency,
        MinData,
        check_min_data,
    )
    from retention.features._spark import (  # noqa: F401
        ENGINES,
        SPARK_INSTALL_HINT,
        events_backend,
        feature_table,
        model_history,
        spark_session,
        to_engine,
        write_feature_table,
    )
    from retention.features._tables import (  # noqa: F401
        RETAINED_BY_DEFAULT,
        DataSpan,
        data_span,
        describe_retained_by,
        to_retained_by,
    )
    from retention.features._text import (  # noqa: F401
        TextFeaturizer,
        item_embeddings,
        item_texts,
        resolve_encoder,
        serialise_history,
    )


__getattr__ = lazy_getattr(__name__, _LAZY_EXPORTS)

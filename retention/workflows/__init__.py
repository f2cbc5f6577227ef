"""Workflows: ingest, train, score, backtest, explain. The only code the CLI and the API call.

(DESIGN.md drew this as one ``workflows.py``; it is a package with one private module per area so
that each area stays small. The public names are re-exported here, imported on first use so that
``retention info`` does not pay for importing the models.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retention._lazy import lazy_getattr

_EXPORTS: dict[str, str] = {
    # _data: ingest and info
    "info": "retention.workflows._data",
    "ingest_file": "retention.workflows._data",
    # _datasets: bundled datasets
    "list_datasets": "retention.workflows._datasets",
    "load_dataset": "retention.workflows._datasets",
    # _predict: backtest, train, score
    "DEFAULT_BACKTEST_MODELS": "retention.workflows._predict",
    "RISK_BANDS": "retention.workflows._predict",
    "ScoreReport": "retention.workflows._predict",
    "TrainReport": "retention.workflows._predict",
    "backtest": "retention.workflows._predict",
    "last_event_date": "retention.workflows._predict",
    "parse_cutoff": "retention.workflows._predict",
    "risk_band": "retention.workflows._predict",
    "score": "retention.workflows._predict",
    "train": "retention.workflows._predict",
    "write_backtest_json": "retention.workflows._predict",
    # _explain: importance, reasons, selection, fairness
    "REASONS_TABLE": "retention.workflows._explain",
    "ExplainReport": "retention.workflows._explain",
    "ReasonsReport": "retention.workflows._explain",
    "UserExplanation": "retention.workflows._explain",
    "explain_backtest": "retention.workflows._explain",
    "explain_user": "retention.workflows._explain",
    "reasons_table": "retention.workflows._explain",
    "store_reasons": "retention.workflows._explain",
    "write_explain_json": "retention.workflows._explain",
    "write_reasons": "retention.workflows._explain",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from retention.workflows._data import info, ingest_file  # noqa: F401
    from retention.workflows._datasets import list_datasets, load_dataset  # noqa: F401
    from retention.workflows._explain import (  # noqa: F401
        REASONS_TABLE,
        ExplainReport,
        ReasonsReport,
        UserExplanation,
        explain_backtest,
        explain_user,
        reasons_table,
        store_reasons,
        write_explain_json,
        write_reasons,
    )
    from retention.workflows._predict import (  # noqa: F401
        DEFAULT_BACKTEST_MODELS,
        RISK_BANDS,
        ScoreReport,
        TrainReport,
        backtest,
        last_event_date,
        parse_cutoff,
        risk_band,
        score,
        train,
        write_backtest_json,
    )


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__

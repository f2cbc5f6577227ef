"""Workflows: ingest, train, score, backtest, explain. The only code the CLI and the API call.

(DESIGN.md drew this as one ``workflows.py``; it is a package with one private module per area so
that each area stays small. The public names are re-exported here, imported on first use so that
``retention info`` does not pay for importing the models.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # _data: ingest and info
    "info": "_data",
    "ingest_file": "_data",
    # _datasets: bundled datasets
    "list_datasets": "_datasets",
    "load_dataset": "_datasets",
    # _predict: backtest, train, score
    "DEFAULT_BACKTEST_MODELS": "_predict",
    "RISK_BANDS": "_predict",
    "ScoreReport": "_predict",
    "TrainReport": "_predict",
    "backtest": "_predict",
    "last_event_date": "_predict",
    "parse_cutoff": "_predict",
    "risk_band": "_predict",
    "score": "_predict",
    "train": "_predict",
    "write_backtest_json": "_predict",
    # _explain: importance, reasons, selection, fairness
    "REASONS_TABLE": "_explain",
    "ExplainReport": "_explain",
    "ReasonsReport": "_explain",
    "UserExplanation": "_explain",
    "explain_backtest": "_explain",
    "explain_user": "_explain",
    "reasons_table": "_explain",
    "store_reasons": "_explain",
    "write_explain_json": "_explain",
    "write_reasons": "_explain",
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


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'retention.workflows' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"retention.workflows.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

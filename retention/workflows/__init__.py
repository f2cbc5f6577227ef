"""Workflows: ingest, info, datasets, backtest, train, score, explain. The only code the CLI and
the API call.

Every workflow takes an open :class:`~retention.data.Store` first (one per process: the CLI opens
it for the command, the API injects it) and typed arguments (a frozen request dataclass where
there are several), and returns a typed result whose ``to_dict()`` is JSON-ready. None opens the
DuckDB file itself or parses CLI strings. Progress goes to an optional
:class:`retention._progress.Progress`; models are looked up through a :class:`ModelCache`.

(DESIGN.md drew this as one ``workflows.py``; it is a package with one private module per area so
that each area stays small. The public names are re-exported here, imported on first use so that
``retention info`` does not pay for importing the models.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retention._lazy import lazy_getattr

_EXPORTS: dict[str, str] = {
    # _common: the model cache
    "LoadedModel": "retention.workflows._common",
    "ModelCache": "retention.workflows._common",
    # _data: ingest and info
    "IngestRequest": "retention.workflows._data",
    "StoreInfo": "retention.workflows._data",
    "info": "retention.workflows._data",
    "ingest_file": "retention.workflows._data",
    # _datasets: bundled datasets
    "DatasetLoad": "retention.workflows._datasets",
    "dataset_info": "retention.workflows._datasets",
    "list_datasets": "retention.workflows._datasets",
    "load_dataset": "retention.workflows._datasets",
    # _predict: backtest, train, score
    "DEFAULT_BACKTEST_MODELS": "retention.workflows._predict",
    "BacktestRequest": "retention.workflows._predict",
    "ScoreReport": "retention.workflows._predict",
    "ScoreRequest": "retention.workflows._predict",
    "TrainReport": "retention.workflows._predict",
    "TrainRequest": "retention.workflows._predict",
    "backtest": "retention.workflows._predict",
    "last_event_date": "retention.workflows._predict",
    "score": "retention.workflows._predict",
    "train": "retention.workflows._predict",
    "write_backtest_json": "retention.workflows._predict",
    # _explain: importance, reasons, selection, fairness
    "REASONS_TABLE": "retention.workflows._explain",
    "ExplainBacktestRequest": "retention.workflows._explain",
    "ExplainReport": "retention.workflows._explain",
    "ExplainUserRequest": "retention.workflows._explain",
    "ReasonsReport": "retention.workflows._explain",
    "StoreReasonsRequest": "retention.workflows._explain",
    "UserExplanation": "retention.workflows._explain",
    "explain_backtest": "retention.workflows._explain",
    "explain_user": "retention.workflows._explain",
    "reasons_table": "retention.workflows._explain",
    "store_reasons": "retention.workflows._explain",
    "write_explain_json": "retention.workflows._explain",
    # what serving needs from the lower stages, re-exported (serving imports workflows only)
    "Mapping": "retention.data",
    "Store": "retention.data",
    "BacktestResult": "retention.models",
    "RISK_BANDS": "retention.strategies",
    "cohort_retention": "retention.features",
    "to_cutoff": "retention.features",
    "to_horizon": "retention.features",
    "risk_band": "retention.strategies",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from retention.data import Mapping, Store  # noqa: F401
    from retention.features import cohort_retention, to_cutoff, to_horizon  # noqa: F401
    from retention.models import BacktestResult  # noqa: F401
    from retention.strategies import RISK_BANDS, risk_band  # noqa: F401
    from retention.workflows._common import LoadedModel, ModelCache  # noqa: F401
    from retention.workflows._data import IngestRequest, StoreInfo, info, ingest_file  # noqa: F401
    from retention.workflows._datasets import (  # noqa: F401
        DatasetLoad,
        dataset_info,
        list_datasets,
        load_dataset,
    )
    from retention.workflows._explain import (  # noqa: F401
        REASONS_TABLE,
        ExplainBacktestRequest,
        ExplainReport,
        ExplainUserRequest,
        ReasonsReport,
        StoreReasonsRequest,
        UserExplanation,
        explain_backtest,
        explain_user,
        reasons_table,
        store_reasons,
        write_explain_json,
    )
    from retention.workflows._predict import (  # noqa: F401
        DEFAULT_BACKTEST_MODELS,
        BacktestRequest,
        ScoreReport,
        ScoreRequest,
        TrainReport,
        TrainRequest,
        backtest,
        last_event_date,
        score,
        train,
        write_backtest_json,
    )


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__

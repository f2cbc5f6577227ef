"""Workflows: ingest, train, score, backtest, explain. The only code the CLI and the API call.

(DESIGN.md drew this as one ``workflows.py``; it is a package with one private module per area so
that each area stays small. The public names are re-exported here.)
"""

__all__: list[str] = []

from retention.workflows._predict import (
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

__all__ += [
    "DEFAULT_BACKTEST_MODELS",
    "RISK_BANDS",
    "ScoreReport",
    "TrainReport",
    "backtest",
    "last_event_date",
    "parse_cutoff",
    "risk_band",
    "score",
    "train",
    "write_backtest_json",
]

from retention.workflows._data import info, ingest_file  # noqa: E402

__all__ += ["info", "ingest_file"]

from retention.workflows._datasets import list_datasets, load_dataset  # noqa: E402

__all__ += ["list_datasets", "load_dataset"]

from retention.workflows._explain import (  # noqa: E402
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

__all__ += [
    "REASONS_TABLE",
    "ExplainReport",
    "ReasonsReport",
    "UserExplanation",
    "explain_backtest",
    "explain_user",
    "reasons_table",
    "store_reasons",
    "write_explain_json",
    "write_reasons",
]

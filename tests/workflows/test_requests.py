"""Typed requests: one cutoff rule and one horizon rule for every workflow, checked on creation."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention import workflows
from retention.exceptions import ConfigError
from retention.features import to_cutoff, to_horizon

MODEL = Path("m.retention")


def _requests(cutoff=None, horizon=None):
    """Every request that takes a cutoff or a horizon, built with these values."""
    c = "2011-09-10" if cutoff is None else cutoff
    h = 90 if horizon is None else horizon
    return [
        workflows.BacktestRequest(cutoff=c, horizon_days=h),
        workflows.ExplainBacktestRequest(cutoff=c, horizon_days=h),
        workflows.TrainRequest(out=MODEL, cutoff=c, horizon_days=h),
        workflows.ScoreRequest(model_path=MODEL, cutoff=c, horizon_days=h),
        workflows.ExplainUserRequest(user_id="u", model_path=MODEL, cutoff=c),
        workflows.StoreReasonsRequest(model_path=MODEL, cutoff=c),
    ]


@pytest.mark.parametrize(
    "value",
    [
        "2011-09-10",
        " 2011-09-10 ",
        "2011-09-10T00:00:00",
        dt.date(2011, 9, 10),
        dt.datetime(2011, 9, 10),
        pd.Timestamp("2011-09-10"),
        pd.Timestamp("2011-09-10 02:00", tz="Europe/Paris"),  # midnight in UTC
        np.datetime64("2011-09-10"),
    ],
)
def test_a_cutoff_is_a_date(value) -> None:
    assert to_cutoff(value) == pd.Timestamp("2011-09-10")
    for request in _requests(cutoff=value):
        assert request.cutoff == pd.Timestamp("2011-09-10")


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("2011-09-10 10:30", "time of day"),
        (pd.Timestamp("2011-09-10 00:00:01"), "time of day"),
        ("10/09/2011", "YYYY-MM-DD"),
        ("soon", "YYYY-MM-DD"),
        (20110910, "not a date"),
    ],
)
def test_a_time_of_day_or_a_non_date_is_refused_by_every_request(value, match) -> None:
    with pytest.raises(ConfigError, match=match):
        to_cutoff(value)
    for build in (
        lambda: workflows.BacktestRequest(cutoff=value),
        lambda: workflows.ExplainBacktestRequest(cutoff=value),
        lambda: workflows.TrainRequest(out=MODEL, cutoff=value),
        lambda: workflows.ScoreRequest(model_path=MODEL, cutoff=value),
        lambda: workflows.ExplainUserRequest(user_id="u", model_path=MODEL, cutoff=value),
        lambda: workflows.StoreReasonsRequest(model_path=MODEL, cutoff=value),
    ):
        with pytest.raises(ConfigError, match=match):
            build()


@pytest.mark.parametrize("value", [90, 90.0, np.int64(90), np.float64(90.0)])
def test_a_horizon_is_a_positive_whole_number_of_days(value) -> None:
    assert to_horizon(value) == 90
    for request in _requests(horizon=value)[:4]:
        assert request.horizon_days == 90 and type(request.horizon_days) is int


@pytest.mark.parametrize(
    ("value", "match"),
    [(90.5, "whole number"), (True, "whole number"), ("90", "whole number"), (0, "positive")],
)
def test_other_horizons_are_refused_by_every_request(value, match) -> None:
    for build in (
        lambda: workflows.BacktestRequest(cutoff="2011-09-10", horizon_days=value),
        lambda: workflows.ExplainBacktestRequest(cutoff="2011-09-10", horizon_days=value),
        lambda: workflows.TrainRequest(out=MODEL, horizon_days=value),
        lambda: workflows.ScoreRequest(model_path=MODEL, horizon_days=value),
    ):
        with pytest.raises(ConfigError, match=match):
            build()


def test_requests_are_frozen_and_check_their_fields() -> None:
    request = workflows.BacktestRequest(cutoff="2011-09-10", models="bgnbd, gbdt")
    assert request.models == ("bgnbd", "gbdt")
    with pytest.raises(AttributeError):
        request.horizon_days = 30  # type: ignore[misc]
    with pytest.raises(ConfigError, match="n_train"):
        workflows.TrainRequest(out=MODEL, n_train=0)
    with pytest.raises(ConfigError, match="listed twice"):
        workflows.BacktestRequest(cutoff="2011-09-10", models=("gbdt", "gbdt"))
    with pytest.raises(ConfigError, match="--user"):
        workflows.ExplainUserRequest(user_id="  ", model_path=MODEL)
    with pytest.raises(ConfigError, match="top"):
        workflows.ExplainUserRequest(user_id="u", model_path=MODEL, top=0)
    with pytest.raises(ConfigError, match="Mapping"):
        workflows.IngestRequest(path=Path("x.csv"), mapping=["user_id=CustomerID"])  # type: ignore[arg-type]


def test_the_old_parsers_are_gone_and_nothing_imports_a_private_module_across_stages() -> None:
    package = Path(workflows.__file__).parent
    assert not hasattr(workflows, "parse_cutoff")
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                assert node.name not in {"parse_cutoff", "_check_horizon"}, path.name
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] != ["retention", "workflows"]:
                    # root modules (retention._progress, ...) are for everyone
                    assert not any(p.startswith("_") for p in parts[2:]), (path.name, node.module)


def test_predict_and_explain_workflows_import_one_way() -> None:
    def imports(name: str) -> set[str]:
        tree = ast.parse((Path(workflows.__file__).parent / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert "retention.workflows._predict" not in imports("_explain")
    assert "retention.workflows._explain" in imports("_predict")
    assert "retention.workflows._predict" not in imports("_common")

"""The thin-data rule (issue 11, item 5): ``backtest`` and ``train`` refuse below the minimum with
one line naming what the store holds and what is needed, and warn near it."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from retention_synth import START, synthetic_store

from retention import workflows
from retention.data import Store
from retention.exceptions import ConfigError, InsufficientDataError, RetentionWarning
from retention.features import MIN_CUSTOMERS, MIN_RETAINED, WARN_FACTORS, MinData
from retention.serving.cli import main

H = 45
CUTOFF = (START + pd.Timedelta(days=480)).strftime("%Y-%m-%d")
#: a fast model that fits no BTYD model (whose own thin or degenerate warnings are not tested here)
MODELS = ("gbdt_rfm",)
FAST = {"gbdt_rfm": {"n_estimators": 50, "learning_rate": 0.1, "early_stopping_rounds": 10}}


def _request(cutoff: str = CUTOFF, **kw) -> workflows.BacktestRequest:
    return workflows.BacktestRequest(cutoff, H, models=MODELS, model_params=FAST, **kw)


@pytest.fixture(scope="module")
def five(tmp_path_factory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("thin") / "five.duckdb", n_users=5, seed=1)


@pytest.fixture(scope="module")
def near(tmp_path_factory) -> Path:
    """Between the minimum and the warning's end (150 customers, about 30 retained)."""
    return synthetic_store(tmp_path_factory.mktemp("near") / "near.duckdb", n_users=150, seed=3)


def test_the_defaults_are_what_the_docs_say() -> None:
    assert MinData() == MinData(customers=MIN_CUSTOMERS, retained=MIN_RETAINED, history_days=None)
    assert MinData().history_for(90) == 90 and MinData(history_days=30).history_for(90) == 30
    # README "How much data": refuse below 100 customers / 20 retained or churned, warn below 500
    assert (MIN_CUSTOMERS, MIN_RETAINED) == (100, 20)
    assert WARN_FACTORS["customers"] * MIN_CUSTOMERS == 500
    assert WARN_FACTORS["retained"] * MIN_RETAINED == WARN_FACTORS["churned"] * MIN_RETAINED == 50


def test_five_customers_are_refused_naming_what_is_held_and_needed(
    five: Path, tmp_path: Path
) -> None:
    with Store(five) as store, pytest.raises(InsufficientDataError) as info:
        workflows.train(store, workflows.TrainRequest(out=tmp_path / "m.retention", horizon_days=H))
    message = str(info.value)
    assert "\n" not in message and message.startswith("Too little data to train: ")
    assert "the store holds 5 customers with a purchase before the validation cutoff" in message
    assert f"it needs at least {MIN_CUSTOMERS} customers, {MIN_RETAINED} retained" in message
    assert "days of history" in message and "RETENTION_MIN_CUSTOMERS" in message
    assert not (tmp_path / "m.retention").exists()  # refused before anything was written
    with Store(five, read_only=True) as store:
        at = workflows.last_event_date(store) - pd.Timedelta(days=H)
        with pytest.raises(InsufficientDataError, match="holds 5 customers"):
            workflows.backtest(store, _request(f"{at:%Y-%m-%d}"))


def test_near_the_minimum_it_runs_and_warns(near: Path) -> None:
    request = _request()
    with (
        Store(near, read_only=True) as store,
        pytest.warns(RetentionWarning, match=r"^Thin data for backtest \(customers.*150 customers"),
    ):
        result = workflows.backtest(store, request)
    data = result.extra["data"]
    assert data["customers"] == 150 and "customers" in data["warned"] and not data["refused"]
    assert data["min_customers"] == MIN_CUSTOMERS
    assert result.to_dict()["models"]["gbdt_rfm"]["roc_auc"] > 0.5


def test_the_limits_are_set_by_the_request_or_the_settings(near: Path, monkeypatch) -> None:
    small = MinData(customers=20, retained=5)
    request = _request(min_data=small)
    with Store(near, read_only=True) as store, warnings.catch_warnings():
        warnings.simplefilter("error", RetentionWarning)  # not thin against these limits
        assert workflows.backtest(store, request).extra["data"]["warned"] == []
    monkeypatch.setenv("RETENTION_MIN_CUSTOMERS", "1000")
    strict = _request()
    with Store(near, read_only=True) as store:
        with pytest.raises(InsufficientDataError, match="needs at least 1,000 customers"):
            workflows.backtest(store, strict)
        # the request wins over the setting
        assert workflows.backtest(store, request).extra["data"]["min_customers"] == 20
    monkeypatch.setenv("RETENTION_MIN_CUSTOMERS", "many")
    bad = "RETENTION_MIN_CUSTOMERS must be a whole number"
    with Store(near, read_only=True) as store, pytest.raises(ConfigError, match=bad):
        workflows.backtest(store, strict)


def test_less_history_than_a_horizon_is_refused(near: Path) -> None:
    # test cutoff 75 days after the first purchase: the validation cutoff has 30 days behind it
    early = (START + pd.Timedelta(days=75)).strftime("%Y-%m-%d")
    no_counts = MinData(customers=0, retained=0)
    with Store(near, read_only=True) as store:
        request = _request(early, min_data=no_counts)
        with pytest.raises(InsufficientDataError, match=r"45 days of history \(one horizon\)"):
            workflows.backtest(store, request)
        enough = MinData(customers=0, retained=0, history_days=10)
        result = workflows.backtest(store, _request(early, min_data=enough))
        assert 0 < result.extra["data"]["history_days"] < H


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"customers": -1}, "min_data.customers must be a whole number"),
        ({"retained": 2.5}, "min_data.retained must be a whole number"),
        ({"history_days": True}, "min_data.history_days must be a whole number"),
    ],
)
def test_bad_limits_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MinData(**kwargs)


def test_a_request_takes_only_a_min_data() -> None:
    with pytest.raises(ConfigError, match=r"min_data must be a retention\.features\.MinData"):
        workflows.BacktestRequest(CUTOFF, H, min_data={"customers": 10})  # type: ignore[arg-type]


def test_the_cli_refuses_in_one_line_and_warns_in_one_line(five: Path, near: Path, capsys) -> None:
    out = str(Path(five).parent / "m.retention")
    assert main(["train", "--db", str(five), "--horizon", str(H), "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Too little data to train: "), err
    args = ["backtest", "--db", str(near), "--cutoff", CUTOFF, "--horizon", str(H)]
    assert main([*args, "--models", "gbdt_rfm"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "Thin data" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: Thin data for backtest")

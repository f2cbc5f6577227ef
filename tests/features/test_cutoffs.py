"""Backtest cutoffs: no label window used for learning reaches past the test cutoff."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.exceptions import ConfigError, DataError
from retention.features import DataSpan, backtest_cutoffs, to_cutoff


def test_default_design():
    train, valid = backtest_cutoffs("2011-09-10", 90)
    assert valid == pd.Timestamp("2011-06-12")  # test - horizon
    # step = 90 // 3 = 30 days, oldest first
    assert train == [pd.Timestamp(d) for d in ("2011-03-14", "2011-04-13", "2011-05-13")]


@given(
    test=st.dates(
        min_value=pd.Timestamp("2000-01-01").date(), max_value=pd.Timestamp("2030-01-01").date()
    ),
    horizon=st.integers(1, 400),
    n_train=st.integers(1, 8),
    step=st.one_of(st.none(), st.integers(1, 120)),
)
def test_no_learning_label_window_passes_the_test_cutoff(test, horizon, n_train, step):
    test_cutoff = pd.Timestamp(test)
    train, valid = backtest_cutoffs(test_cutoff, horizon, n_train=n_train, step_days=step)
    window = pd.Timedelta(days=horizon)
    assert valid + window == test_cutoff
    assert len(train) == n_train
    assert all(c + window <= test_cutoff for c in train)
    assert train == sorted(set(train)) and train[-1] < valid
    expected_step = step if step is not None else max(horizon // 3, 1)
    assert valid - train[-1] == pd.Timedelta(days=expected_step)


def test_span_drops_cutoffs_without_history():
    span = DataSpan(
        first_event=pd.Timestamp("2011-03-01"),
        last_event=pd.Timestamp("2011-12-09"),
        first_qualifying=pd.Timestamp("2011-04-01"),
        n_events=10,
    )
    train, _valid = backtest_cutoffs("2011-09-10", 90, span=span)
    assert train == [pd.Timestamp("2011-04-13"), pd.Timestamp("2011-05-13")]
    with pytest.raises(DataError, match=r"no training cutoff.*2011-03-01 to 2011-12-09"):
        backtest_cutoffs("2011-07-20", 90, n_train=2, step_days=30, span=span)
    with pytest.raises(DataError, match=r"validation cutoff 2011-03-22.*2011-03-01 to 2011-12-09"):
        backtest_cutoffs("2011-06-20", 90, span=span)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"horizon_days": 0}, "horizon_days must be positive"),
        ({"horizon_days": "90"}, "whole number"),
        ({"horizon_days": 90, "n_train": 0}, "n_train"),
        ({"horizon_days": 90, "step_days": 0}, "step_days must be positive"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        backtest_cutoffs("2011-09-10", **kwargs)


def test_to_cutoff():
    assert to_cutoff("2011-09-10") == pd.Timestamp("2011-09-10")
    assert to_cutoff(pd.Timestamp("2011-09-10 02:00", tz="Europe/Paris")) == pd.Timestamp(
        "2011-09-10 00:00"
    )
    with pytest.raises(ConfigError, match="not a date"):
        to_cutoff("tomorrow-ish")
    with pytest.raises(ConfigError, match="not a date"):
        to_cutoff(None)


def test_no_purchase_error_names_a_real_ingest_flag():
    """The message tells a CLI user how to map purchases, with a flag `retention ingest` has."""
    import re

    from typer.main import get_command

    from retention.features._cutoffs import check_cutoff
    from retention.serving.cli import app

    span = DataSpan(pd.Timestamp("2011-01-01"), pd.Timestamp("2011-06-01"), None, 10)
    with pytest.raises(DataError, match="no event of type 'purchase'") as info:
        check_cutoff(span, pd.Timestamp("2011-03-01"))
    flags = set(re.findall(r"--[a-z][a-z-]*", str(info.value)))
    commands = get_command(app).commands  # type: ignore[attr-defined]
    options = {
        opt for name in ("ingest", "backtest") for p in commands[name].params for opt in p.opts
    }
    # how to map purchases at ingest, and how to name another activity (issue 11)
    assert {"--event-type", "--retained-by"} <= flags <= options

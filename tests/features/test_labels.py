"""Population and labels: who is scored at a cutoff, and who came back within the horizon."""

from __future__ import annotations

import pandas as pd
import pytest
from pit_synth import CUTOFF, hand_events, load_duckdb

from retention.exceptions import ConfigError, DataError
from retention.features import build_features, build_labels, population


@pytest.fixture(scope="module")
def con():
    return load_duckdb(hand_events())


def test_population_is_the_customers_with_a_purchase_before_the_cutoff(con):
    pop = population(con, CUTOFF)
    # c only viewed before the cutoff; d bought exactly at it (and long before)
    assert list(pop) == ["a", "b", "d"]
    assert pop.name == "user_id"
    later = population(con, "2024-07-03")
    assert list(later) == ["a", "b", "c", "d"]  # c bought on 2024-07-02
    assert population(con, "2023-05-02").tolist() == ["d"]


def test_labels_window_is_half_open(con):
    y = build_labels(con, CUTOFF, 30)
    # a buys on 07-05; b on 07-31 00:00 = cutoff + 30 days (outside); d at the cutoff (inside)
    assert y.to_dict() == {"a": 1, "b": 0, "d": 1}
    assert y.dtype == "int64" and y.name == "retained"
    assert build_labels(con, CUTOFF, 31).to_dict() == {"a": 1, "b": 1, "d": 1}
    assert build_labels(con, CUTOFF, 1).to_dict() == {"a": 0, "b": 0, "d": 1}
    # c purchases in the window but had no purchase before: not in the population at all
    assert "c" not in y.index


def test_labels_share_the_features_index(con):
    y = build_labels(con, CUTOFF, 30)
    x = build_features(con, CUTOFF)
    pd.testing.assert_index_equal(y.index, x.index)


@pytest.mark.parametrize("horizon", [0, -5, 2.5, "30", True])
def test_bad_horizon(con, horizon):
    with pytest.raises(ConfigError, match="horizon_days"):
        build_labels(con, CUTOFF, horizon)


def test_label_window_past_the_data_is_refused(con):
    # the data ends on 2024-07-31 (a day counts whole): a 90-day window would be incomplete
    with pytest.raises(DataError, match=r"runs past the data.*2024-05-03.*at most 31 days"):
        build_labels(con, CUTOFF, 90)
    assert len(build_labels(con, CUTOFF, 31)) == 3  # ends 2024-08-01 00:00: covered


def test_bad_cutoffs(con):
    with pytest.raises(DataError, match="after the last event"):
        population(con, "2024-08-15")
    with pytest.raises(DataError, match="first purchase"):
        population(con, "2023-01-01")
    with pytest.raises(ConfigError, match="not a date"):
        population(con, "first of July")
    with pytest.raises(ConfigError, match="not a date"):
        population(con, 20240701)

"""The same feature definitions give the same features on DuckDB and on Spark.

Needs ``pip install retention[spark]`` (pyspark < 4.1) and Java 17; skipped otherwise.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from pit_synth import (
    CUTOFF,
    hand_events,
    hand_items,
    hand_users,
    load_duckdb,
    load_spark,
    random_events,
)

from retention.features import build_features

pyspark = pytest.importorskip("pyspark")
pytest.importorskip("ibis.backends.pyspark")

pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,
    # py4j leaves its gateway sockets to the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java"),
]


@pytest.fixture(scope="module")
def spark(spark_local):
    """The session every Spark test shares (tests/conftest.py)."""
    return spark_local


def test_duckdb_and_spark_give_the_same_features(spark):
    randoms = random_events(seed=7)
    events = pd.concat([hand_events(), randoms], ignore_index=True)
    users = pd.concat(
        [
            hand_users(),
            pd.DataFrame(
                {
                    "user_id": sorted(set(randoms["user_id"])),
                    "signup_ts": pd.Timestamp("2023-01-01"),
                    "country": "France",
                }
            ),
        ],
        ignore_index=True,
    )
    duck = build_features(load_duckdb(events, hand_items(), users), CUTOFF)
    on_spark = build_features(load_spark(spark, events, hand_items(), users), CUTOFF)
    assert len(duck) > 10 and duck.shape[1] > 60
    # the random data reaches every family and every optional event type
    assert {
        "reviews_rating_mean",
        "returns_value_rate",
        "w7d_carts",
        "diversity_categories",
    } <= set(duck.columns)
    pd.testing.assert_index_equal(duck.index, on_spark.index)
    assert list(duck.columns) == list(on_spark.columns)
    # the engines return integer counts, integer cents, dates and timestamps; every ratio is
    # taken in pandas afterwards, so the features agree to the last bit
    pd.testing.assert_frame_equal(duck, on_spark, check_exact=True)

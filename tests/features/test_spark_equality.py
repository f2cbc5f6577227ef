"""The same feature definitions give the same features on DuckDB and on Spark.

Needs ``pip install retention[spark]`` (pyspark < 4.1) and Java 17; skipped otherwise.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from pit_synth import CUTOFF, hand_events, hand_items, hand_users, load_duckdb, load_spark

from retention.features import build_features

pyspark = pytest.importorskip("pyspark")
pytest.importorskip("ibis.backends.pyspark")

pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java"),
]


def _random_events(seed: int, n_users: int = 12, n_events: int = 160) -> pd.DataFrame:
    """Random events of every type, around the cutoff, with fractional amounts."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["purchase", "purchase", "purchase", "view", "cart", "return", "review"])
    kind = rng.choice(kinds, n_events)
    seconds = rng.integers(-400 * 86400, 40 * 86400, n_events)
    ts = CUTOFF + pd.to_timedelta(seconds, unit="s")
    users = rng.integers(0, n_users, n_events)
    orders = rng.integers(0, 40, n_events)
    has_order = rng.random(n_events) < 0.8
    return pd.DataFrame(
        {
            "event_id": [f"r{i}" for i in range(n_events)],
            "user_id": [f"u{u:02d}" for u in users],
            "ts": ts,
            "event_type": kind,
            "item_id": [f"i{k}" for k in rng.integers(0, 6, n_events)],
            "order_id": [f"o{o}" if h else None for o, h in zip(orders, has_order, strict=True)],
            "quantity": rng.integers(1, 5, n_events).astype(float),
            "amount": np.where(
                np.isin(kind, ["purchase", "return"]), rng.integers(1, 99999, n_events) / 100, np.nan
            ),
            "rating": np.where(kind == "review", rng.integers(1, 6, n_events), np.nan),
            "text": None,
        }
    )


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("retention-equality")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "512m")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_duckdb_and_spark_give_the_same_features(spark):
    random_events = _random_events(seed=7)
    events = pd.concat([hand_events(), random_events], ignore_index=True)
    users = pd.concat(
        [
            hand_users(),
            pd.DataFrame(
                {
                    "user_id": sorted(set(random_events["user_id"])),
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
    assert {"reviews_rating_mean", "returns_value_rate", "w7d_carts", "diversity_categories"} <= set(
        duck.columns
    )
    pd.testing.assert_index_equal(duck.index, on_spark.index)
    assert list(duck.columns) == list(on_spark.columns)
    # counts, cents and times are exact on both engines; ratios may differ in the last bit
    pd.testing.assert_frame_equal(duck, on_spark, check_exact=False, rtol=1e-12, atol=0)

"""The recommendation workflow on the bundled Online Retail store: requests, a store round trip,
``to_dict()`` through ``json.dumps(allow_nan=False)``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from retention import workflows
from retention.data import Store
from retention.exceptions import ConfigError, StoreError

USER = "12748"


@pytest.fixture(scope="module")
def rw_db(retail_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable copy of the Online Retail store."""
    path = tmp_path_factory.mktemp("recommend") / "or.duckdb"
    shutil.copy(retail_db, path)
    return path


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "pass --user ID"),
        ({"users": ("a",), "all_users": True}, "not both"),
        ({"users": ("a",), "k": 0}, "k must be a positive integer"),
        ({"users": ("a",), "recommender": "magic"}, "Unknown recommender 'magic'"),
        ({"users": ("a",), "out": "x.txt"}, r"\.csv or \.parquet"),
        ({"users": ("",)}, "empty"),
        ({"users": ("a",), "cutoff": "2011-13-01"}, "cutoff"),
        ({"users": ("a",), "candidate_window_days": 0}, "candidate_window_days"),
    ],
)
def test_request_checks(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        workflows.RecommendRequest(**kwargs)


def test_one_customer_read_only(retail_store: Store) -> None:
    request = workflows.RecommendRequest(users=(USER, "nobody"), k=10, cutoff="2011-09-10")
    rep = workflows.recommend(retail_store, request)
    recs = rep.recommendations
    mine = recs[recs["user_id"] == USER]
    assert mine["rank"].tolist() == list(range(1, 11))
    assert mine["known"].all() and mine["reason"].str.len().gt(0).all()
    assert mine["title"].notna().all()
    # items the customer bought before the cutoff are not recommended again
    bought = retail_store.events_df(before=pd.Timestamp("2011-09-10"), users=[USER])
    assert not set(mine["item_id"]) & set(bought["item_id"].astype(str))
    # candidates: sold in the 90 days before the cutoff
    recent = retail_store.events_df(before=pd.Timestamp("2011-09-10"))
    recent = recent[recent["ts"] >= pd.Timestamp("2011-06-12")]
    assert set(recs["item_id"]) <= set(recent["item_id"].astype(str))
    unknown = recs[recs["user_id"] == "nobody"]
    assert len(unknown) == 10 and not unknown["known"].any()
    assert unknown["reason"].str.contains("new customer").all()
    payload = rep.to_dict()
    json.dumps(payload, allow_nan=False)
    assert payload["n_users"] == 2 and payload["n_new_users"] == 1
    assert len(payload["recommendations"]) == 20
    with pytest.raises(StoreError, match="read-only"):
        workflows.recommend(retail_store, workflows.RecommendRequest(all_users=True))


@pytest.mark.slow
def test_all_customers_into_the_table_then_replaced(rw_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.parquet"
    model = tmp_path / "t.recommender"
    request = workflows.RecommendRequest(
        all_users=True, k=5, cutoff="2011-09-10", out=out, save_model=model
    )
    with Store(rw_db) as store:
        first = workflows.recommend(store, request)
        again = workflows.recommend(store, request)
        table = store.table_df("recommendations")
        stored = workflows.stored_recommendations(store, USER)
    assert first.model_version == again.model_version  # the same data: the same recommender
    assert len(table) == len(again.recommendations)  # replaced, not appended
    assert table["user_id"].nunique() == again.n_users
    assert table.groupby("user_id")["rank"].max().max() == 5
    assert (table["cutoff"] == pd.Timestamp("2011-09-10")).all()
    assert set(table["recommender"]) == {"transition"}
    assert stored["rank"].tolist() == [1, 2, 3, 4, 5]
    assert len(pd.read_parquet(out)) == len(table)
    json.dumps(first.to_dict(), allow_nan=False)
    # the saved recommender gives the same lists without fitting again
    with Store(rw_db, read_only=True) as store:
        loaded = workflows.recommend(
            store,
            workflows.RecommendRequest(users=(USER,), k=5, cutoff="2011-09-10", model_path=model),
        )
        with pytest.raises(ConfigError, match="learned from events before 2011-09-10"):
            workflows.recommend(
                store,
                workflows.RecommendRequest(users=(USER,), cutoff="2011-10-01", model_path=model),
            )
    assert loaded.model_version == first.model_version
    assert loaded.recommendations["item_id"].tolist() == stored["item_id"].tolist()


def test_repeat_purchases_allowed_on_request(retail_store: Store) -> None:
    request = workflows.RecommendRequest(
        users=(USER,), k=10, cutoff="2011-09-10", exclude_seen=False, candidate_window_days=None
    )
    recs = workflows.recommend(retail_store, request).recommendations
    bought = retail_store.events_df(before=pd.Timestamp("2011-09-10"), users=[USER])
    assert set(recs["item_id"]) & set(bought["item_id"].astype(str))


@pytest.mark.slow
def test_sasrec_through_the_workflow_chooses_epochs_on_the_last_items(retail_store: Store) -> None:
    tiny = {"d_model": 8, "n_blocks": 1, "max_length": 10, "epochs": 2, "n_threads": 1}
    request = workflows.RecommendRequest(
        users=(USER,), k=5, cutoff="2011-09-10", recommender="sasrec", params=tiny
    )
    rep = workflows.recommend(retail_store, request)
    assert rep.recommendations["rank"].tolist() == [1, 2, 3, 4, 5]
    assert rep.recommendations["reason"].str.contains("went on to buy it").any()

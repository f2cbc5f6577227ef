"""Text features: item texts and embeddings, histories as text, the per-customer featurizer."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from retention.exceptions import ConfigError, DataError, NotFittedError
from retention.features import (
    CutoffFrame,
    TextEncoder,
    TextFeaturizer,
    item_embeddings,
    item_texts,
    serialise_history,
)

# one torch thread for every test here (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

CUT = pd.Timestamp("2011-09-01")

ITEMS = pd.DataFrame(
    {
        "item_id": ["85123A", "22423", "47566", "21212", "99999"],
        "title": [
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "REGENCY CAKESTAND 3 TIER",
            "PARTY BUNTING",
            "PACK OF 72 RETROSPOT CAKE CASES",
            None,
        ],
        "description": [
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "Three tiers of bone china",
            None,
            "",
            None,
        ],
    }
)


def _ev(rows: list[tuple]) -> pd.DataFrame:
    cols = [
        "user_id",
        "ts",
        "event_type",
        "item_id",
        "order_id",
        "quantity",
        "amount",
        "rating",
        "text",
    ]
    ev = pd.DataFrame(rows, columns=cols)
    ev["ts"] = pd.to_datetime(ev["ts"])
    return ev.sort_values(["user_id", "ts"], kind="mergesort").reset_index(drop=True)


EVENTS = _ev(
    [
        ("a", "2011-08-03 10:00", "purchase", "22423", "o1", 12.0, 153.0, None, None),
        ("a", "2011-05-01 09:00", "purchase", "47566", "o0", 2.0, 9.9, None, None),
        ("a", "2011-08-20 12:00", "review", "22423", None, None, None, 5.0, "Lovely, works great"),
        ("a", "2011-09-02 12:00", "purchase", "21212", "o9", 1.0, 0.55, None, None),  # after
        ("b", "2011-02-01 08:00", "purchase", "85123A", "o2", 6.0, 17.7, None, None),
        ("b", "2011-02-02 08:00", "review", "85123A", None, None, None, 1.0, "Broke at once"),
        ("b", "2011-02-03 08:00", "review", "85123A", None, None, None, 2.0, None),
        ("c", "2011-07-01 08:00", "purchase", "21212", "o3", 24.0, 13.2, None, None),
        ("c", "2011-07-01 08:00", "purchase", "99999", "o3", 1.0, 2.0, None, None),
    ]
)


def _frame(
    events: pd.DataFrame, cutoff: pd.Timestamp = CUT, items: pd.DataFrame = ITEMS
) -> CutoffFrame:
    users = pd.Index(sorted(events["user_id"].unique()), name="user_id")
    return CutoffFrame(cutoff, 90, pd.DataFrame(index=users), None, events, items)


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder("all-MiniLM-L6-v2")


# -- items ------------------------------------------------------------------------------------


def test_item_texts_join_title_and_a_different_description() -> None:
    texts = item_texts(ITEMS)
    assert texts["85123A"] == "WHITE HANGING HEART T-LIGHT HOLDER"  # same text once
    assert texts["22423"] == "REGENCY CAKESTAND 3 TIER. Three tiers of bone china"
    assert texts["47566"] == "PARTY BUNTING"
    assert "99999" not in texts.index  # nothing to read
    with pytest.raises(DataError, match="no item_id column"):
        item_texts(ITEMS.rename(columns={"item_id": "sku"}))


def test_item_embeddings_index_and_shape(encoder: TextEncoder) -> None:
    emb = item_embeddings(ITEMS, encoder)
    assert emb.index.tolist() == ["85123A", "22423", "47566", "21212"]
    assert emb.shape == (4, 384) and (emb.dtypes == np.float32).all()
    np.testing.assert_allclose(np.linalg.norm(emb.to_numpy(), axis=1), 1.0, atol=1e-5)


# -- histories as text ------------------------------------------------------------------------


def test_serialise_history_most_recent_first_and_before_the_cutoff() -> None:
    text = serialise_history(EVENTS, ITEMS, CUT, max_chars=1000)
    a = text["a"]
    assert a.startswith("as of 2011-09-01: 2 orders, last 28 days ago, first 122 days ago. ")
    assert (
        "2011-08-20 reviewed REGENCY CAKESTAND 3 TIER. Three tiers of bone china 5/5 "
        '"Lovely, works great"; 2011-08-03 bought 12 x REGENCY CAKESTAND 3 TIER. Three tiers of '
        "bone china for 153.00; 2011-05-01 bought 2 x PARTY BUNTING for 9.90"
    ) in a
    assert "2011-09-02" not in a and "RETROSPOT" not in a  # the purchase after the cutoff
    # an item without text is named by its id
    assert "bought 1 x 99999 for 2.00" in text["c"]


def test_serialise_history_cuts_at_whole_events() -> None:
    full = serialise_history(EVENTS, ITEMS, CUT, max_chars=1000, summary=False)["a"]
    short = serialise_history(EVENTS, ITEMS, CUT, max_chars=150, summary=False)["a"]
    assert len(short) <= 150 and full.startswith(short)
    assert short.count(";") == 0 and short.endswith('"Lovely, works great"')
    with pytest.raises(ConfigError, match="max_chars"):
        serialise_history(EVENTS, ITEMS, CUT, max_chars=5)


def test_serialise_history_follows_the_requested_users() -> None:
    text = serialise_history(EVENTS, None, CUT, users=["c", "zz", "a"])
    assert text.index.tolist() == ["c", "zz", "a"]
    assert text["zz"] == "no purchases"
    assert "bought 24 x 21212 for 13.20" in text["c"]  # no items table: ids
    with pytest.raises(DataError, match="event_type"):
        serialise_history(EVENTS.drop(columns="event_type"), None, CUT)


# -- the featurizer ----------------------------------------------------------------------------


def test_featurizer_columns_and_review_signals(encoder: TextEncoder) -> None:
    frame = _frame(EVENTS)
    feats = TextFeaturizer(encoder, n_components=2).fit([frame])
    out = feats.transform(frame)
    assert out.index.equals(frame.users)
    assert all(c.startswith("text_") for c in out.columns)
    assert out.columns.tolist() == feats.get_feature_names_out()
    assert [c for c in out.columns if c.startswith("text_pc")] == ["text_pc0", "text_pc1"]
    assert out.loc["a", "text_review_count"] == 1 and out.loc["b", "text_review_count"] == 2
    assert out.loc["c", "text_review_count"] == 0 and np.isnan(out.loc["c", "text_rating_mean"])
    assert out.loc["b", "text_rating_mean"] == 1.5 and out.loc["b", "text_low_rating_share"] == 1.0
    assert out.loc["a", "text_low_rating_share"] == 0.0
    # "Lovely, works great" reads more positive than "Broke at once"
    assert out.loc["a", "text_sentiment_mean"] > 0 > out.loc["b", "text_sentiment_mean"]
    # c bought one item with text and one without
    assert out.loc["c", "text_item_coverage"] == 0.5


def test_featurizer_ignores_events_at_or_after_the_cutoff(encoder: TextEncoder) -> None:
    frame = _frame(EVENTS)
    feats = TextFeaturizer(encoder, n_components=2).fit([frame])
    base = feats.transform(frame)
    later = _ev(
        [
            ("a", "2011-09-01 00:00", "purchase", "85123A", "o7", 1.0, 3.0, None, None),
            ("b", "2011-10-01 00:00", "review", "85123A", None, None, None, 5.0, "Great!"),
        ]
    )
    leaked = pd.concat([EVENTS, later]).sort_values(["user_id", "ts"], kind="mergesort")
    pd.testing.assert_frame_equal(feats.transform(_frame(leaked)), base)


def test_recency_weighting_pulls_towards_the_latest_purchase(encoder: TextEncoder) -> None:
    ev = _ev(
        [
            ("x", "2011-08-30", "purchase", "22423", "1", 1.0, 1.0, None, None),
            ("x", "2010-09-01", "purchase", "85123A", "2", 1.0, 1.0, None, None),
            ("y", "2011-08-30", "purchase", "85123A", "3", 1.0, 1.0, None, None),
            ("y", "2010-09-01", "purchase", "22423", "4", 1.0, 1.0, None, None),
            ("z", "2011-08-01", "purchase", "47566", "5", 1.0, 1.0, None, None),
        ]
    )
    frame = _frame(ev)
    feats = TextFeaturizer(encoder, n_components=2, half_life_days=30).fit([frame])
    out = feats.transform(frame)[["text_pc0", "text_pc1"]].to_numpy()
    cake = feats.item_coords_["22423"][:2]
    heart = feats.item_coords_["85123A"][:2]
    # x bought the cake stand recently: its profile is (almost) the cake stand's
    assert np.linalg.norm(out[0] - cake) < 0.01 * np.linalg.norm(cake - heart)
    assert np.linalg.norm(out[1] - heart) < 0.01 * np.linalg.norm(cake - heart)


def test_pca_is_fitted_on_training_frames_only(encoder: TextEncoder) -> None:
    train = _frame(EVENTS[EVENTS["user_id"].isin(["a", "b"])])
    feats = TextFeaturizer(encoder, n_components=2).fit([train])
    components = feats.pca_.components_.copy()
    assert set(feats.item_coords_) == {"22423", "47566", "85123A"}
    test = _frame(EVENTS)  # c bought an item never seen in training
    out = feats.transform(test)
    np.testing.assert_array_equal(feats.pca_.components_, components)
    # projected with the training PCA, for this call only: transform changes nothing
    assert np.isfinite(out.loc["c", "text_pc0"])
    assert set(feats.item_coords_) == {"22423", "47566", "85123A"}


def test_featurizer_pickles_and_gives_the_same_columns(encoder: TextEncoder) -> None:
    frame = _frame(EVENTS)
    feats = TextFeaturizer(encoder, n_components=2).fit([frame])
    again = pickle.loads(pickle.dumps(feats))
    pd.testing.assert_frame_equal(again.transform(frame), feats.transform(frame))


def test_featurizer_errors() -> None:
    with pytest.raises(NotFittedError, match="Call fit"):
        TextFeaturizer().transform(_frame(EVENTS))
    with pytest.raises(ConfigError, match="n_components"):
        TextFeaturizer(n_components=0).fit([_frame(EVENTS)])
    with pytest.raises(ConfigError, match="at least one"):
        TextFeaturizer().fit([])


def test_featurizer_uses_the_cache_a_frame_carries(encoder: TextEncoder) -> None:
    import duckdb

    from retention.features import EmbeddingCache

    cache = EmbeddingCache(duckdb.connect())
    frame = _frame(EVENTS)
    frame.extra["embedding_cache"] = cache
    TextFeaturizer(encoder, n_components=2).fit([frame]).transform(frame)
    # the bought items with text, the review texts and the sentiment anchors
    assert cache.count(encoder.name) >= 4 + 2 + 8

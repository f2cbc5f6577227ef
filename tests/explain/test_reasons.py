from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from explain_synth import FAST, synthetic_frames

from retention.exceptions import ConfigError
from retention.explain import (
    REASON_COLUMNS,
    Contributions,
    describe_feature,
    reasons,
    reasons_for,
    shap_contributions,
)
from retention.models import GBDTModel


@pytest.fixture(scope="module")
def frames():
    return synthetic_frames(n_users=300, seed=1)


def _fit(frames, seed: int) -> GBDTModel:
    train, valid, _ = frames
    params = {**FAST, "random_state": seed, "subsample": 0.7}
    return GBDTModel(btyd_features=False, **params).fit(train, valid)


def test_plain_words_against_the_typical_customer() -> None:
    assert (
        describe_feature("recency_days", 64, 30, {"gap_mean_days": 25.6})
        == "no purchase for 64 days, 2.5x their usual gap of 26 days"
    )
    assert (
        describe_feature("w90d_spend", 1240, 400, currency="£")
        == "spent £1,240 in the last 90 days, 3.1x the typical customer"
    )
    assert (
        describe_feature("recency_days", 64, 30) == "no purchase for 64 days (typical customer: 30)"
    )
    assert describe_feature("w30d_purchases", 1, 0).startswith("1 order in the last 30 days")
    assert describe_feature("gap_mean_days", float("nan"), 20).startswith("only one purchase day")
    assert describe_feature("user_country_germany", 1.0, 0.0) == "based in Germany"
    assert (
        describe_feature("returns_rate", 0.25, 0.05) == "returns 25% of what they buy (typical: 5%)"
    )
    # a feature without a template still reads as words with both numbers
    text = describe_feature("frequency_something_new", 7, 3)
    assert "7" in text and "3" in text


def test_top_three_each_way_and_signs(frames) -> None:
    model = _fit(frames, 0)
    c = shap_contributions(model, frames[2])
    table = reasons(c, top=3)
    assert list(table.columns) == list(REASON_COLUMNS)
    assert table.groupby(["user_id", "direction"]).size().max() <= 3
    assert (table.loc[table["direction"] == "churn", "contribution"] < 0).all()
    assert (table.loc[table["direction"] == "retention", "contribution"] > 0).all()
    # rank 1 is the strongest push in its direction, and matches the SHAP matrix
    user = table["user_id"].iloc[0]
    row = c.values.loc[user]
    mine = table[table["user_id"] == user]
    first_churn = mine[(mine["direction"] == "churn") & (mine["rank"] == 1)]
    if len(first_churn):
        assert first_churn["feature"].iloc[0] == row.idxmin()
        assert first_churn["contribution"].iloc[0] == pytest.approx(row.min())
    # the typical value is the population median
    feat = table["feature"].iloc[0]
    assert table["typical"].iloc[0] == pytest.approx(c.data[feat].median())
    assert table["text"].str.len().min() > 5


def test_reasons_are_stable_under_a_seed(frames) -> None:
    test = frames[2]
    a = reasons(shap_contributions(_fit(frames, 7), test))
    b = reasons(shap_contributions(_fit(frames, 7), test))
    pd.testing.assert_frame_equal(a, b)
    # and do not depend on the column order of the explanation
    c = shap_contributions(_fit(frames, 7), test)
    shuffled = Contributions(
        values=c.values[c.values.columns[::-1]],
        base_value=c.base_value,
        data=c.data[c.data.columns[::-1]],
        margin=c.margin,
    )
    pd.testing.assert_frame_equal(reasons(shuffled), a)


def test_ties_break_by_feature_name() -> None:
    idx = pd.Index(["u1"], name="user_id")
    values = pd.DataFrame({"tenure_days": [-0.5], "frequency_orders": [-0.5]}, index=idx)
    data = pd.DataFrame({"tenure_days": [10.0], "frequency_orders": [1.0]}, index=idx)
    c = Contributions(values=values, base_value=0.0, data=data, margin=np.array([-1.0]))
    table = reasons(c, top=1)
    assert table["feature"].tolist() == ["frequency_orders"]


def test_repeated_words_are_merged() -> None:
    idx = pd.Index(["u1"], name="user_id")
    cols = ["recency_days", "gap_current_days", "gap_mean_days", "frequency_orders"]
    values = pd.DataFrame([[-0.9, -0.4, 0.0, -0.1]], index=idx, columns=cols)
    data = pd.DataFrame([[64.0, 64.0, 25.6, 3.0]], index=idx, columns=cols)
    c = Contributions(values=values, base_value=0.0, data=data, margin=np.array([-1.4]))
    out = reasons_for(reasons(c), "u1")
    texts = [r["text"] for r in out["churn"]]
    assert texts[0] == "no purchase for 64 days, 2.5x their usual gap of 26 days"
    assert len(texts) == len(set(texts)) == 2
    assert out["retention"] == []


def test_bad_arguments(frames) -> None:
    c = shap_contributions(_fit(frames, 0), frames[2])
    with pytest.raises(ConfigError, match="top"):
        reasons(c, top=0)
    with pytest.raises(ConfigError, match="Contributions"):
        reasons(c.values)  # type: ignore[arg-type]

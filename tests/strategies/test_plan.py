"""Offers: the file's checks, the value and cost of each pair, the reasons in words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retention.exceptions import ConfigError
from retention.strategies import Offer, explain_actions, offer_economics, read_offers, top_items


def test_read_offers_and_its_errors(tmp_path) -> None:
    p = tmp_path / "offers.toml"
    p.write_text(
        '[[offers]]\nname = "mail"\nsend_cost = 0.1\n'
        '[[offers]]\nname = "c10"\ntreatment = "Womens E-Mail"\nredemption_cost = 10\ncap = 5\n'
        "margin = 0.3\n"
    )
    mail, c10 = read_offers(p)
    assert mail.arm == "mail" and mail.send_cost == 0.1 and mail.cap is None
    assert c10.arm == "Womens E-Mail" and c10.cap == 5 and c10.margin == 0.3
    bad = [
        ({"offers": [{"name": "a", "sendcost": 1}]}, "unknown key\\(s\\) sendcost"),
        ({"offers": [{"name": "a", "cap": -1}]}, "cap must be a whole number"),
        ({"offers": [{"name": "a", "margin": 2}]}, "margin must be a number >= 0 and <= 1"),
        ({"offers": [{"name": "none"}]}, "other than 'none'"),
        ({"offers": [{"name": "a"}, {"name": "a"}]}, "appear twice"),
        ({"offer": []}, "unknown section"),
        ({"offers": []}, "at least one offer"),
    ]
    for data, message in bad:
        with pytest.raises(ConfigError, match=message) as info:
            read_offers(data=data)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="No offers file"):
        read_offers(tmp_path / "missing.toml")


def test_offer_economics() -> None:
    offers = [Offer("a", send_cost=1.0), Offer("b", redemption_cost=10.0, value=5.0, margin=0.5)]
    uplift = np.array([[0.1, 0.2], [0.0, -0.1]])
    value, cost = offer_economics(
        uplift, offers, value_if_retained=np.array([100.0, 50.0]), base_rate=np.array([0.3, np.nan])
    )
    assert value[:, 0].tolist() == pytest.approx([10.0, 0.0])  # uplift x value if retained
    assert value[:, 1].tolist() == pytest.approx([1.0, -0.5])  # the offer's own value per outcome
    assert cost[:, 0].tolist() == pytest.approx([1.0, 1.0])
    # a coupon is redeemed by everyone who converts with it: P(base) + uplift; unknown: certain
    assert cost[:, 1].tolist() == pytest.approx([10 * 0.5, 10 * 1.0])


def test_explain_actions_says_why() -> None:
    offers = [Offer("a", cap=1), Offer("b")]
    uplift = np.array([[0.1, 0.05], [0.2, np.nan], [np.nan, np.nan], [0.01, 0.01], [0.3, 0.1]])
    value = np.nan_to_num(uplift) * 100
    cost = np.ones_like(value) * 2
    choice = np.array([0, -1, -1, -1, 1])
    sources = np.full(uplift.shape, "model", dtype=object)
    texts = explain_actions(choice, offers, uplift, value, cost, sources)
    assert texts[0].startswith("a: expected to raise the chance of coming back by +10.0% (model)")
    assert "cap of 1" in texts[1]
    assert texts[2] == "No offer: no uplift estimate for this customer."
    assert texts[3].startswith("No offer pays for itself")
    assert texts[4].startswith("b:")
    assert explain_actions(np.array([-1]), [], uplift[:1], value[:1], cost[:1], sources[:1])[
        0
    ].startswith("No offer is defined")


def test_top_items_by_rank() -> None:
    recs = pd.DataFrame(
        {"user_id": ["u", "u", "u", "v"], "rank": [3, 1, 2, 1], "item_id": list("cabz")}
    )
    assert top_items(recs, 2) == {"u": ["a", "b"], "v": ["z"]}

"""The loyalty programme file, tiers, thresholds, the holdout and the costs."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention.exceptions import ConfigError
from retention.strategies import (
    DEFAULT_PROGRAM_TOML,
    LoyaltyProgram,
    assign_tiers,
    holdout_assignment,
    member_costs,
    optimise_thresholds,
    programme_economics,
    tier_movement,
)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "loyalty.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_default_programme_reads_and_round_trips(tmp_path) -> None:
    prog = LoyaltyProgram.from_toml(_write(tmp_path, DEFAULT_PROGRAM_TOML))
    assert prog == LoyaltyProgram.default()
    assert prog.tier_names == ["Bronze", "Silver", "Gold", "Platinum"]
    assert prog.tier("Gold").points_multiplier == 1.5
    assert prog.coupons[1].min_tier == "Gold"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["points"].update(expiry=3), r"\[points\] has unknown key\(s\) expiry"),
        (lambda d: d["tiers"][1].update(share="lots"), r"tiers\[2\]\.share must be a number"),
        (lambda d: d["tiers"][0].update(share=0.9), "add up to 1"),
        (lambda d: d["program"].update(basis="vibes"), r"\[program\]\.basis must be one of"),
        (lambda d: d["tiers"][2].update(name="Silver"), "appear twice"),
        (lambda d: d["coupons"][0].update(min_tier="Diamond"), "not a tier"),
        (lambda d: d["program"].update(thresholds="optimise"), "needs \\[program\\].budget"),
        (lambda d: d.update(extras={}), "unknown key\\(s\\) extras"),
        (lambda d: d["holdout"].update(share=0.9), r"\[holdout\]\.share must be a number >= 0"),
        (lambda d: d.update(tiers=[]), "at least one tier"),
        (lambda d: d["points"].update(expiry_days=-1), "expiry_days must be a whole number"),
    ],
)
def test_malformed_programme_gives_one_line_error_naming_the_key(edit, message) -> None:
    data = tomllib.loads(DEFAULT_PROGRAM_TOML)
    edit(data)
    with pytest.raises(ConfigError, match=message) as info:
        LoyaltyProgram.from_dict(data, source="loyalty.toml")
    assert "\n" not in str(info.value) and "loyalty.toml" in str(info.value)


def test_bad_toml_syntax_and_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        LoyaltyProgram.from_toml(_write(tmp_path, "[program\nname = 1"))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="No loyalty programme file"):
        LoyaltyProgram.from_toml(tmp_path / "missing.toml")


@pytest.fixture
def scores() -> pd.Series:
    rng = np.random.default_rng(0)
    return pd.Series(rng.lognormal(4, 1, 2000), index=[f"u{i}" for i in range(2000)])


def test_tiers_by_shares_and_by_scores(scores) -> None:
    prog = LoyaltyProgram.default()
    tiers = assign_tiers(scores, prog)
    shares = tiers.value_counts(normalize=True)
    for t in prog.tiers:
        assert shares[t.name] == pytest.approx(t.share, abs=0.01)
    # higher scores never sit in a lower tier
    rank = tiers.map({n: i for i, n in enumerate(prog.tier_names)})
    assert (np.diff(rank[scores.sort_values().index].to_numpy()) >= 0).all()
    by_score = assign_tiers(scores, dataclasses.replace(prog, thresholds="scores"))
    assert (by_score[scores >= 2000] == "Platinum").all()
    assert (by_score[(scores >= 100) & (scores < 500)] == "Silver").all()


def test_optimised_thresholds_respect_the_budget_and_beat_shares(scores) -> None:
    prog = dataclasses.replace(LoyaltyProgram.default(), thresholds="optimise", budget=4000.0)
    value = scores * 3
    spend = scores
    cuts, net, cost = optimise_thresholds(scores, value, spend, prog)
    assert cost <= 4000.0
    tiers = assign_tiers(scores, prog, cuts)
    costs = member_costs(tiers, spend, prog)
    assert costs["expected_cost"].sum() == pytest.approx(cost, rel=1e-6)
    lift = tiers.map({t.name: t.expected_lift for t in prog.tiers})
    assert float((lift * value - costs["expected_cost"]).sum()) == pytest.approx(net, rel=1e-6)
    # the default shares, when within the budget, do no better
    share_tiers = assign_tiers(scores, LoyaltyProgram.default())
    share_costs = member_costs(share_tiers, spend, prog)["expected_cost"]
    share_lift = share_tiers.map({t.name: t.expected_lift for t in prog.tiers})
    if share_costs.sum() <= 4000:
        assert net >= float((share_lift * value - share_costs).sum()) - 1e-6
    tight = dataclasses.replace(prog, budget=0.0)
    with pytest.raises(ConfigError, match="budget"):
        optimise_thresholds(
            scores,
            value,
            spend * 0 + 1e6,
            dataclasses.replace(
                tight, tiers=tuple(dataclasses.replace(t, benefit_cost=1.0) for t in tight.tiers)
            ),
        )


def test_holdout_is_persistent_salted_and_of_the_right_size() -> None:
    ids = [str(i) for i in range(20000)]
    a = holdout_assignment(ids, 0.05, "s1")
    assert a.mean() == pytest.approx(0.05, abs=0.006)
    assert np.array_equal(a, holdout_assignment(ids, 0.05, "s1"))  # same salt, same holdout
    assert np.array_equal(a[::7], holdout_assignment(ids[::7], 0.05, "s1"))  # per id
    b = holdout_assignment(ids, 0.05, "s2")
    assert (a & b).mean() < 0.01  # another salt draws another holdout
    assert holdout_assignment(ids, 0.10, "s1")[a].all()  # a larger share keeps the smaller one


def test_movement_and_costs() -> None:
    prog = LoyaltyProgram.default()
    now = pd.Series(["Gold", "Bronze", None, "Silver"], index=list("abcd"), dtype=object)
    before = pd.Series(["Silver", "Gold", "Gold"], index=list("abc"), dtype=object)
    assert tier_movement(now, before, prog).tolist() == ["up", "down", "holdout", "new"]
    spend = pd.Series([100.0, 100.0, 100.0, 0.0], index=list("abcd"))
    c = member_costs(now, spend, prog, balance=pd.Series({"a": 1000}))
    gold = prog.tier("Gold")
    point_cost = prog.point_value * prog.redemption_rate
    assert c.loc["a", "discount"] == pytest.approx(gold.discount * 100)
    assert c.loc["a", "points"] == pytest.approx(100 * gold.points_multiplier * point_cost)
    assert c.loc["a", "liability"] == pytest.approx(1000 * point_cost)
    assert c.loc["c", "expected_cost"] == 0.0  # the holdout costs nothing
    econ = programme_economics(
        c, pd.Series(50.0, index=list("abcd")), pd.Series(0.5, index=list("abcd"))
    )
    horizon = c[["benefit", "discount", "points"]].sum().sum()
    assert econ["break_even_lift"] == pytest.approx(horizon / 400.0)
    assert econ["break_even_relative"] == pytest.approx(horizon / 200.0)

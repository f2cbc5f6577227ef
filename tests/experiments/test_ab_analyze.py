"""analyze_units: several variants and metrics, corrections, guardrails, SRM, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from retention.exceptions import ConfigError, DataError, RetentionError, SchemaError
from retention.experiments import (
    GroupSequential,
    MetricSpec,
    analyze_units,
    group_sequential_boundaries,
)


def test_cookie_cats_difference_is_the_difference_of_the_arm_rates(
    cookie_cats: pd.DataFrame,
) -> None:
    result = analyze_units(
        cookie_cats, variant="version", control="gate_30", metrics=["retention_7", "retention_1"]
    )
    rates = cookie_cats.groupby("version")["retention_7"].mean()
    c = result.comparison("gate_40", "retention_7")
    assert c.kind == "binary"
    assert c.difference == pytest.approx(rates["gate_40"] - rates["gate_30"], rel=1e-12)
    assert c.ci_low < c.difference < c.ci_high < 0
    assert c.chance_to_win < 0.01  # the gate at level 40 loses players
    payload = result.to_dict()
    json.dumps(payload, allow_nan=False)
    top = payload["variants"]["gate_40"]
    assert top["difference"] == c.difference and top["p_value"] == c.p_value
    assert top["interval"] == [c.ci_low, c.ci_high]
    assert not payload["srm"]["flagged"]  # 44,700 / 45,489: p about 0.009, above 0.001


def test_several_variants_and_metrics_get_holm_and_bh(hillstrom: pd.DataFrame) -> None:
    result = analyze_units(
        hillstrom,
        variant="segment",
        control="No E-Mail",
        metrics=["visit", "conversion", "spend"],
    )
    assert sorted(result.variants) == ["Mens E-Mail", "Womens E-Mail"]
    assert len(result.comparisons) == 6
    raw = [c.p_value for c in result.comparisons]
    holm = multipletests(raw, method="holm")[1]
    bh = multipletests(raw, method="fdr_bh")[1]
    assert [c.p_value_holm for c in result.comparisons] == pytest.approx(list(holm), rel=1e-12)
    assert [c.p_value_bh for c in result.comparisons] == pytest.approx(list(bh), rel=1e-12)
    spend = result.comparison("Mens E-Mail", "spend")
    assert spend.kind == "mean"


def test_cuped_with_a_pre_period_covariate_narrows_the_interval(hillstrom: pd.DataFrame) -> None:
    two = hillstrom[hillstrom["segment"] != "Mens E-Mail"]
    plain = analyze_units(two, variant="segment", control="No E-Mail", metrics=["spend"])
    cuped = analyze_units(
        two,
        variant="segment",
        control="No E-Mail",
        metrics=[MetricSpec("spend", covariate="history")],
    )
    p, c = plain.comparisons[0], cuped.comparisons[0]
    assert c.cuped_theta is not None and c.variance_reduction is not None
    assert 0 <= c.variance_reduction < 0.05  # history barely predicts two weeks of spend
    assert c.ci_high - c.ci_low <= p.ci_high - p.ci_low
    assert c.raw_mean_treatment == pytest.approx(p.mean_treatment, rel=1e-12)


def test_ratio_metric_and_guardrail_failure() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    units = pd.DataFrame(
        {
            "arm": np.where(np.arange(n) % 2 == 0, "a", "b"),
            "orders": rng.poisson(2, n) + 1,
        }
    )
    units["revenue"] = units["orders"] * rng.gamma(2, 10, n)
    units["returns"] = rng.random(n) < np.where(units["arm"] == "b", 0.3, 0.1)
    result = analyze_units(
        units,
        variant="arm",
        control="a",
        metrics=[
            MetricSpec("revenue", denominator="orders"),
            MetricSpec("kept", column="returns", guardrail=True, inverse=True),
        ],
    )
    ratio = result.comparison("b", "revenue")
    assert ratio.kind == "ratio"
    sums = units.groupby("arm")[["revenue", "orders"]].sum()
    per_order = sums["revenue"] / sums["orders"]
    assert ratio.difference == pytest.approx(per_order["b"] - per_order["a"], rel=1e-12)
    guard = result.comparison("b", "kept")
    assert guard.guardrail_status == "fail"
    assert guard.p_value_holm is None  # guardrails stay out of the corrected family
    assert any("guardrail" in note for note in result.notes)


def test_sequential_intervals_are_wider_and_flagged_in_the_output(
    cookie_cats: pd.DataFrame,
) -> None:
    fixed = analyze_units(
        cookie_cats, variant="version", control="gate_30", metrics=["retention_7"]
    )
    seq = analyze_units(
        cookie_cats, variant="version", control="gate_30", metrics=["retention_7"], sequential=True
    )
    f, s = fixed.comparisons[0], seq.comparisons[0]
    assert s.ci_high - s.ci_low > f.ci_high - f.ci_low
    assert s.p_value > f.p_value
    assert seq.to_dict()["comparisons"][0]["method"].startswith("sequential")


def test_group_sequential_look_gives_repeated_intervals_at_its_boundary(
    cookie_cats: pd.DataFrame,
) -> None:
    # 90,189 players as look 3 of 4 planned looks of 120,000: earlier looks at 30,000, 60,000
    design = GroupSequential(planned_n=120_000, looks=4)
    fixed = analyze_units(
        cookie_cats, variant="version", control="gate_30", metrics=["retention_7"]
    ).comparisons[0]
    result = analyze_units(
        cookie_cats,
        variant="version",
        control="gate_30",
        metrics=["retention_7"],
        sequential="group",
        design=design,
    )
    g = result.comparisons[0]
    c = group_sequential_boundaries([0.25, 0.5, len(cookie_cats) / 120_000])[-1]
    assert g.boundary_z == pytest.approx(c, rel=1e-9)
    assert g.difference == pytest.approx(fixed.difference, rel=1e-12)
    assert g.ci_low == pytest.approx(g.difference - c * g.se, rel=1e-9)
    assert g.ci_high == pytest.approx(g.difference + c * g.se, rel=1e-9)
    assert g.ci_low < fixed.ci_low and fixed.ci_high < g.ci_high
    crossed = abs(g.difference / g.se) >= c
    assert crossed == (g.p_value < 0.05)
    assert g.p_value > fixed.p_value
    payload = result.to_dict()
    json.dumps(payload, allow_nan=False)
    assert payload["sequential"] is True and payload["sequential_design"] == "group"
    assert payload["group_sequential"]["look"] == 3
    assert payload["comparisons"][0]["method"].startswith("group sequential")
    assert payload["comparisons"][0]["group_sequential"]["crossed"] == crossed
    with pytest.raises(ConfigError, match="needs the planned sample"):
        analyze_units(
            cookie_cats,
            variant="version",
            control="gate_30",
            metrics=["retention_7"],
            sequential="group",
        )
    with pytest.raises(ConfigError, match="group-sequential design only"):
        analyze_units(
            cookie_cats,
            variant="version",
            control="gate_30",
            metrics=["retention_7"],
            design=design,
        )


def test_srm_is_flagged_for_a_skewed_split() -> None:
    units = pd.DataFrame({"arm": ["a"] * 101_000 + ["b"] * 99_000, "y": 0.0})
    units.loc[::7, "y"] = 1.0
    result = analyze_units(units, variant="arm", control="a", metrics=["y"])
    assert result.srm.flagged and result.srm.p_value < 1e-3
    assert any("sample-ratio mismatch" in n for n in result.notes)


def _one_line(exc: pytest.ExceptionInfo[RetentionError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_bad_input_gives_one_line_errors() -> None:
    units = pd.DataFrame({"arm": ["a", "b", "a", "b"], "y": [1.0, 0.0, 1.0, 1.0]})
    with pytest.raises(DataError, match="at least two variants") as info:
        analyze_units(units[units["arm"] == "a"], variant="arm", control="a", metrics=["y"])
    _one_line(info)
    with pytest.raises(ConfigError, match="control value 'c' is not in") as info2:
        analyze_units(units, variant="arm", control="c", metrics=["y"])
    assert "'a', 'b'" in _one_line(info2)
    text = units.assign(y=["x", "y", "z", "w"])
    with pytest.raises(SchemaError, match="not numeric") as info3:
        analyze_units(text, variant="arm", control="a", metrics=["y"])
    _one_line(info3)
    holed = units.assign(x=[1.0, np.nan, 2.0, 3.0])
    with pytest.raises(DataError, match="covariate column 'x' has 1 missing") as info4:
        analyze_units(holed, variant="arm", control="a", metrics=[MetricSpec("y", covariate="x")])
    _one_line(info4)
    with pytest.raises(SchemaError, match="variant column 'nope'"):
        analyze_units(units, variant="nope", control="a", metrics=["y"])


def test_true_false_text_columns_count_as_binary() -> None:
    units = pd.DataFrame(
        {"arm": ["a", "b"] * 3, "y": ["TRUE", "FALSE", "true", "True", "False", "TRUE"]}
    )
    c = analyze_units(units, variant="arm", control="a", metrics=["y"]).comparisons[0]
    assert c.kind == "binary"
    assert c.mean_control == pytest.approx(2 / 3) and c.mean_treatment == pytest.approx(2 / 3)

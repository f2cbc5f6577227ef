"""Checks of a randomised campaign: one-line errors, the choice of covariates, the encoder."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from uplift_synth import campaign_frame

from retention.exceptions import DataError, RetentionWarning, SchemaError
from retention.strategies import (
    FeatureEncoder,
    balance_pvalues,
    check_uplift_frame,
    choose_features,
    design_propensity,
    estimate_propensity,
)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return campaign_frame(3000, seed=4)


def test_check_reads_arms_and_outcome(frame) -> None:
    d = check_uplift_frame(frame, treatment="segment", control="none", outcome="outcome")
    assert d.arms == ("none", "mail", "sms")
    assert d.binary
    assert set(np.unique(d.codes)) == {0, 1, 2}
    assert (d.codes == 0).sum() == (frame["segment"] == "none").sum()


def test_numeric_treatment_labels_read_as_text() -> None:
    df = pd.DataFrame({"t": [0.0, 1.0] * 30, "y": [0, 1, 1, 0] * 15, "x": range(60)})
    d = check_uplift_frame(df, treatment="t", control=0, outcome="y")
    assert d.control == "0" and d.treatments == ("1",)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda df: df.assign(segment="none"), "one value only"),
        (lambda df: df.assign(outcome=1.0), "constant"),
        (lambda df: df.assign(outcome="yes"), "not numeric"),
        (lambda df: df.drop(columns=["outcome"]), "no column 'outcome'"),
        (
            lambda df: df.assign(segment=np.where(df["segment"] == "none", "x", df["segment"])),
            "does not occur",
        ),
        (
            lambda df: df.assign(segment=np.where(np.arange(len(df)) < 5, "tiny", df["segment"])),
            "fewer than",
        ),
    ],
)
def test_bad_campaigns_give_one_line_errors(frame, change, message) -> None:
    with pytest.raises((DataError, SchemaError), match=message) as info:
        check_uplift_frame(change(frame), treatment="segment", control="none", outcome="outcome")
    assert "\n" not in str(info.value)


def test_missing_outcomes_are_dropped_with_a_warning(frame) -> None:
    df = frame.copy()
    df.loc[:9, "outcome"] = np.nan
    with pytest.warns(RetentionWarning, match="10 row"):
        d = check_uplift_frame(df, treatment="segment", control="none", outcome="outcome")
    assert len(d.frame) == len(df) - 10


def test_choose_features_leaves_out_ids_and_outcomes(frame) -> None:
    d = check_uplift_frame(frame, treatment="segment", control="none", outcome="outcome")
    with pytest.warns(RetentionWarning, match="later"):
        chosen, dropped = choose_features(d)
    assert chosen == ["x0", "x1", "x2", "x3", "grade"]
    assert "id" in dropped and "later" in dropped


def test_an_arm_dependent_column_is_left_out(frame) -> None:
    df = frame.copy()
    rng = np.random.default_rng(0)
    df["opened"] = (df["segment"] != "none") * rng.integers(0, 2, len(df))  # after treatment
    d = check_uplift_frame(df, treatment="segment", control="none", outcome="outcome")
    with pytest.warns(RetentionWarning, match="opened: differs between the arms"):
        chosen, _ = choose_features(d)
    assert "opened" not in chosen
    p = balance_pvalues(d.frame, ["x0", "grade", "opened"], d.frame["segment"])
    assert p["opened"] < 1e-6 and p["x0"] > 1e-3 and p["grade"] > 1e-3


def test_given_features_are_checked(frame) -> None:
    d = check_uplift_frame(frame, treatment="segment", control="none", outcome="outcome")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when the user chose
        assert choose_features(d, ["x0", "later"]) == (["x0", "later"], {})
    with pytest.raises(SchemaError, match="nope"):
        choose_features(d, ["nope"])
    with pytest.raises(Exception, match="treatment, outcome or id"):
        choose_features(d, ["outcome"])


def test_encoder_round_trip_and_unseen_categories(frame) -> None:
    enc = FeatureEncoder(["x0", "grade"], max_categories=3).fit(frame)
    assert enc.numeric_ == ["x0"]
    top2 = sorted(frame["grade"].value_counts().index[:2])
    assert enc.categories_["grade"] == top2  # the two most frequent of three
    again = FeatureEncoder.from_dict(enc.to_dict())
    new = pd.DataFrame({"x0": [1.0, "bad"], "grade": [top2[0], "zzz"]})
    out = again.transform(new)
    assert out["f1"].tolist()[0] == top2[0] and pd.isna(out["f1"].tolist()[1])
    assert np.isnan(out["f0"].iloc[1])
    with pytest.raises(SchemaError, match="grade"):
        enc.transform(frame[["x0"]])


def test_propensities(frame) -> None:
    d = check_uplift_frame(frame, treatment="segment", control="none", outcome="outcome")
    e = design_propensity(d.codes, 3)
    assert e.shape == (len(frame), 3) and np.allclose(e.sum(axis=1), 1)
    X = FeatureEncoder(["x0", "x1"]).fit(d.frame).transform(d.frame)
    est = estimate_propensity(X, d.codes, 3)
    assert np.allclose(est.sum(axis=1), 1) and abs(est.mean(axis=0) - e[0]).max() < 0.05
    # assignment that depends on x0 with little overlap: a warning
    codes = (d.frame["x0"].to_numpy() > 0).astype(np.int64)
    with pytest.warns(RetentionWarning, match="overlap"):
        estimate_propensity(X, codes, 2)

"""The ensemble is never below its best member on the out-of-fold predictions, and sets its level
the way that forecast the learning cutoffs best.

Members here are fixed scorers of known columns, so what the stack may choose from is known
exactly: a strong member, members that are pure noise (a stacker can only lose by weighing them),
and a level forecaster (like BTYD: it learns no label and says how many come back at each cutoff).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from retention.features import CutoffFrame
from retention.models import (
    EnsembleModel,
    RetentionModel,
    customer_folds,
    get_model,
    load_model,
    save_model,
)
from retention.models._ensemble import STACK, _per_cutoff_auc

CUTOFFS = pd.to_datetime(["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01", "2020-07-01"])


class Column(RetentionModel):
    """P(retained) = sigmoid of one feature column; learns labels (its out-of-fold predictions
    are its own, ``oof_``, like gradient boosting's)."""

    name: ClassVar[str] = "column"

    def __init__(self, column: str = "signal") -> None:
        self.column = column

    def fit(self, train, valid=None):  # type: ignore[no-untyped-def]
        frames = [*train, *([valid] if valid is not None else [])]
        self.oof_ = pd.concat(
            [
                pd.DataFrame(
                    {"cutoff": f.cutoff, "user_id": f.users.astype(str), "p": self.predict_proba(f)}
                )
                for f in frames
            ],
            ignore_index=True,
        )
        return self

    def predict_proba(self, frame: CutoffFrame) -> np.ndarray:
        return np.asarray(expit(frame.features[self.column].to_numpy(dtype=float)))


class Level(Column):
    """A model that learns no label (like BTYD): its predictions are out of fold as they are."""

    name: ClassVar[str] = "level"
    learns_labels: ClassVar[bool] = False


def make_frames(
    n: int, seed: int, offsets: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0), n_noise: int = 6
) -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    """Frames at ``CUTOFFS`` (3 train, valid, test): the label follows ``signal`` plus the
    cutoff's offset; ``level`` is the log-odds of the cutoff's expected base rate (a perfect level
    forecast, the same for every customer), ``low`` that minus 2 (a forecast far too low at every
    cutoff), ``noise0..`` are noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, (cutoff, offset) in enumerate(zip(CUTOFFS, offsets, strict=True)):
        users = pd.Index([f"u{i}_{j}" for j in range(n)], name="user_id")
        signal = rng.normal(0, 1.5, n)
        rate = float(np.mean(expit(signal + offset)))  # the cutoff's expected base rate
        level = np.log(rate / (1 - rate))
        feats = pd.DataFrame({"signal": signal, "level": level, "low": level - 2.0}, index=users)
        for k in range(n_noise):
            feats[f"noise{k}"] = rng.normal(0, 2.0, n)
        label = pd.Series((rng.uniform(size=n) < expit(signal + offset)).astype(int), index=users)
        frames.append(CutoffFrame(cutoff, 90, feats, label, pd.DataFrame()))
    return frames[:3], frames[3], frames[4]


def noisy_members(n_noise: int = 6) -> list[tuple[str, RetentionModel]]:
    members: list[tuple[str, RetentionModel]] = [("good", Column("signal"))]
    members += [(f"noise{k}", Column(f"noise{k}")) for k in range(n_noise)]
    return members


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_choice_is_never_below_the_best_member_out_of_fold(seed: int) -> None:
    train, valid, _ = make_frames(150, seed)
    ens = EnsembleModel(members=noisy_members(), anchor=None).fit(train, valid)
    members = list(ens.member_names_)
    assert set(ens.selection_) == {STACK, *members}
    chosen = ens.selection_[ens.chosen_]
    assert all(chosen >= ens.selection_[m] for m in members)
    assert chosen == max(ens.selection_.values())
    # the member scores are their own out-of-fold ranking, per cutoff
    learning = [*train, valid]
    y = np.concatenate([f.label.to_numpy() for f in learning])
    cut = np.concatenate([np.full(len(f), i) for i, f in enumerate(learning)])
    fold = np.concatenate([customer_folds(f.users) for f in learning])
    signal = np.concatenate([f.features["signal"].to_numpy() for f in learning])
    assert ens.selection_["good"] == pytest.approx(_per_cutoff_auc(y, signal, cut * 5 + fold))


def test_noise_members_make_the_stack_worse_and_the_best_member_is_chosen() -> None:
    train, valid, test = make_frames(150, seed=0)
    ens = EnsembleModel(members=noisy_members(), anchor=None).fit(train, valid)
    plain = EnsembleModel(members=noisy_members(), anchor=None, select=False).fit(train, valid)
    # without the choice the stack weighs the noise and ranks worse than its best member
    assert plain.chosen_ == STACK and plain.selection_[STACK] < ens.selection_["good"]
    assert any(abs(w) > 0.01 for n, w in plain.weights_.items() if n != "good")
    # with it, the ensemble is the good member, recalibrated: its ranking exactly
    assert ens.chosen_ == "good"
    assert all(w == 0.0 for n, w in ens.weights_.items() if n != "good")
    assert ens.weights_["good"] > 0.5
    p, q = ens.predict_proba(test), test.features["signal"].to_numpy()
    assert (np.argsort(p, kind="mergesort") == np.argsort(q, kind="mergesort")).all()


def test_the_stack_is_kept_when_it_ranks_better_than_every_member() -> None:
    # two members that each see half of the signal: together they see it all
    rng = np.random.default_rng(5)
    train, valid, test = make_frames(300, seed=5, n_noise=0)
    for f in [*train, valid, test]:
        part = rng.normal(0, 1.0, len(f))
        f.features["half_a"] = f.features["signal"] / 2 + part
        f.features["half_b"] = f.features["signal"] / 2 - part
    members = [("a", Column("half_a")), ("b", Column("half_b"))]
    ens = EnsembleModel(members=members, anchor=None).fit(train, valid)
    assert ens.chosen_ == STACK
    assert ens.selection_[STACK] > max(ens.selection_["a"], ens.selection_["b"]) + 0.05
    assert min(ens.weights_.values()) > 0.5


def test_the_level_comes_from_a_forecaster_only_where_it_forecast_the_learning_cutoffs() -> None:
    # the base rate moves from cutoff to cutoff: one level learned on the others misses it
    offsets = (-1.5, 0.0, 1.5, -0.5, 1.0)
    train, valid, test = make_frames(400, seed=1, offsets=offsets, n_noise=0)
    good = ("good", Column("signal"))
    tracking = EnsembleModel(members=[good, ("level", Level("level"))]).fit(train, valid)
    assert tracking.level_losses_["level"] < tracking.level_losses_["own"]
    assert tracking.anchor_ == tracking.member_names_.index("level")
    p = tracking.predict_proba(test)
    level = expit(test.features["level"].iloc[0])
    assert p.mean() == pytest.approx(level, abs=1e-6)  # the forecaster's level
    # a forecaster that is far too low at every learning cutoff does not set the level
    biased = EnsembleModel(members=[good, ("low", Level("low"))]).fit(train, valid)
    assert biased.level_losses_["low"] > biased.level_losses_["own"]
    assert biased.anchor_ is None
    # an anchor named explicitly is used whatever its record
    forced = EnsembleModel(members=[good, ("low", Level("low"))], anchor="low").fit(train, valid)
    assert forced.anchor_ == forced.member_names_.index("low")
    low = expit(test.features["low"].iloc[0])
    assert forced.predict_proba(test).mean() == pytest.approx(low, abs=1e-6)


def test_a_level_forecaster_with_no_ranking_power_gets_no_weight_but_may_set_the_level() -> None:
    offsets = (-1.5, 0.0, 1.5, -0.5, 1.0)
    train, valid, _ = make_frames(400, seed=2, offsets=offsets, n_noise=0)
    ens = EnsembleModel(members=[("good", Column("signal")), ("level", Level("level"))])
    ens.fit(train, valid)
    # constant within each cutoff, so it ranks no one: the per-cutoff intercepts absorb it
    assert ens.chosen_ == "good" or abs(ens.weights_["level"]) < 0.05
    assert ens.anchor_ == ens.member_names_.index("level")


def test_with_one_learning_cutoff_the_level_is_the_stacks_own() -> None:
    offsets = (-1.5, 0.0, 1.5, -0.5, 1.0)
    train, _, _ = make_frames(300, seed=3, offsets=offsets, n_noise=0)
    members = [("good", Column("signal")), ("level", Level("level"))]
    ens = EnsembleModel(members=members).fit([train[0]])
    # no other cutoff to judge the own level on: no record, so no forecaster is trusted
    assert "own" not in ens.level_losses_ and ens.anchor_ is None
    y0 = train[0].label.to_numpy()
    assert ens.predict_proba(train[0]).mean() == pytest.approx(y0.mean(), abs=1e-3)


def test_choice_and_level_survive_save_and_load(tmp_path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from retention_synth import synthetic_frames

    train, valid, test = synthetic_frames(n_users=300, seed=3)
    gbdt = get_model("gbdt_rfm", n_estimators=100, learning_rate=0.1, early_stopping_rounds=20)
    ens = EnsembleModel(members=[("bgnbd", get_model("bgnbd")), ("rfm", gbdt)]).fit(train, valid)
    assert ens.chosen_ in ens.selection_ and set(ens.level_losses_) == {"own", "bgnbd"}
    back = load_model(save_model(ens, tmp_path / "ens.retention"))
    assert back.chosen_ == ens.chosen_ and back.anchor_ == ens.anchor_
    assert back.selection_ == pytest.approx(ens.selection_)
    assert back.level_losses_ == pytest.approx(ens.level_losses_)
    np.testing.assert_allclose(back.predict_proba(test), ens.predict_proba(test))


def test_bad_options_are_refused() -> None:
    train, valid, _ = make_frames(50, seed=0, n_noise=0)
    from retention.exceptions import ConfigError

    with pytest.raises(ConfigError, match="select must be True or False"):
        EnsembleModel(members=[("good", Column())], select="yes").fit(train, valid)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="anchor must be a member's name"):
        EnsembleModel(members=[("good", Column())], anchor=3).fit(train, valid)  # type: ignore[arg-type]

"""Validation without customer leakage: out-of-fold predictions grouped by customer.

The learning cutoffs of a backtest hold the same customers with overlapping label windows, so a
model that recognises customers looks perfect on them. These tests build exactly that trap: a
member that memorises each customer's label, and a label that is the same for a customer at every
cutoff. A stacker that saw a customer's own labels through a member would trust the memoriser.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from retention_synth import synthetic_frames

from retention.features import CutoffFrame
from retention.models import (
    EnsembleModel,
    GBDTModel,
    RetentionModel,
    classification_metrics,
    customer_folds,
    out_of_fold_proba,
    subset_frame,
)

FAST = {"n_estimators": 200, "learning_rate": 0.08, "early_stopping_rounds": 30}

#: (users the memoriser was fitted on, users it was then asked about), one entry per call
CALLS: list[tuple[frozenset[str], frozenset[str]]] = []


class Memoriser(RetentionModel):
    """Predicts the label it saw for a customer (at any cutoff), 0.5 for a stranger."""

    name: ClassVar[str] = "memoriser"

    def __init__(self, tag: str = "m") -> None:
        self.tag = tag

    def fit(self, train, valid=None):  # type: ignore[no-untyped-def]
        frames = [*train, *([valid] if valid is not None else [])]
        seen: dict[str, int] = {}
        for f in frames:
            seen.update({str(u): int(v) for u, v in f.label.items()})
        self.seen_ = seen
        return self

    def predict_proba(self, frame: CutoffFrame) -> np.ndarray:
        CALLS.append((frozenset(self.seen_), frozenset(map(str, frame.users))))
        return np.array(
            [
                0.98 if self.seen_.get(str(u)) else 0.02 if str(u) in self.seen_ else 0.5
                for u in frame.users
            ]
        )


def _sticky_labels(frames: list[CutoffFrame], seed: int = 0) -> list[CutoffFrame]:
    """The same frames with a label fixed per customer (random, the same at every cutoff), and
    the synthetic features kept: only a model that remembers customers can predict it."""
    users = sorted({str(u) for f in frames for u in f.users})
    rng = np.random.default_rng(seed)
    sticky = pd.Series(rng.integers(0, 2, len(users)), index=users)
    out = []
    for f in frames:
        label = sticky.reindex(f.users.astype(str)).astype(int)
        label.index = f.users
        out.append(CutoffFrame(f.cutoff, f.horizon_days, f.features, label, f.events))
    return out


@pytest.fixture(scope="module")
def frames():
    return synthetic_frames(n_users=400, seed=4)


def test_folds_are_stable_and_keep_a_customer_in_one_fold(frames) -> None:
    train, valid, _ = frames
    users = ["12346", "12347", "u0001", "u0002"]
    assert customer_folds(users).tolist() == customer_folds(list(reversed(users)))[::-1].tolist()
    assert customer_folds(["12346", "12347", "12346"]).tolist() == [2, 2, 2]  # the docstring
    folds = {
        u: k for f in [*train, valid] for u, k in zip(f.users, customer_folds(f.users), strict=True)
    }
    for f in [*train, valid]:
        assert all(folds[u] == k for u, k in zip(f.users, customer_folds(f.users), strict=True))
    assert set(customer_folds([f"u{i}" for i in range(200)], 5)) == set(range(5))


def test_subset_frame_keeps_only_those_customers(frames) -> None:
    _, valid, _ = frames
    some = valid.users[::3]
    sub = subset_frame(valid, some)
    assert list(sub.users) == list(some)
    assert set(sub.events["user_id"]) <= set(some)
    assert sub.label.index.equals(sub.features.index)
    assert len(sub.events) == int(valid.events["user_id"].isin(some).sum())


def test_out_of_fold_predictions_never_come_from_a_fit_on_the_same_customer(frames) -> None:
    train, valid, _ = frames
    learning = _sticky_labels([*train, valid])
    CALLS.clear()
    oof = out_of_fold_proba(Memoriser(), learning, n_folds=5)
    assert len(CALLS) >= 5
    for fitted_on, asked in CALLS:
        assert not (fitted_on & asked)  # a fold is never predicted by a fit that saw it
    # so the memoriser knows nothing out of fold: every prediction is the stranger's 0.5
    assert all(np.allclose(p, 0.5) for p in oof)
    # while in sample it would look perfect: this is what the folds protect the stacker from
    memo = Memoriser().fit(learning[:-1], learning[-1])
    y = learning[-1].label.to_numpy()
    assert classification_metrics(y, memo.predict_proba(learning[-1]))["roc_auc"] == 1.0


def test_the_stacker_does_not_trust_a_member_that_memorises_customers(frames) -> None:
    train, valid, test = frames
    honest = GBDTModel(feature_set="rfm", btyd_features=False, **FAST).fit(train, valid)
    memo = Memoriser().fit(train, valid)
    ens = EnsembleModel(
        members=[("memoriser", memo), ("gbdt_rfm", honest)], prefit=True, anchor=None
    ).fit(train, valid)
    # in-sample, the memoriser's log-odds separate the valid labels perfectly and a stacker fed
    # them would put (almost) all its weight there; out of fold it is a constant: no weight
    assert abs(ens.weights_["memoriser"]) < 1e-6
    assert ens.weights_["gbdt_rfm"] > 0.3
    y = test.label.to_numpy()
    auc_ens = classification_metrics(y, ens.predict_proba(test))["roc_auc"]
    auc_honest = classification_metrics(y, honest.predict_proba(test))["roc_auc"]
    assert auc_ens == pytest.approx(auc_honest, abs=1e-9)


def test_gbdt_out_of_fold_predictions_ignore_the_customers_own_labels(frames) -> None:
    train, valid, _ = frames
    learning = [*train, valid]
    # one round, so that both fits keep the same number of rounds whatever the labels
    params = {
        "feature_set": "rfm",
        "btyd_features": False,
        "calibration": None,
        "n_estimators": 1,
        "learning_rate": 0.3,
    }
    base = GBDTModel(**params).fit(learning[:-1], learning[-1])
    # flip the labels of every customer of fold 0, at every cutoff
    flipped = []
    for f in learning:
        fold0 = customer_folds(f.users) == 0
        label = f.label.copy()
        label[fold0] = 1 - label[fold0]
        flipped.append(CutoffFrame(f.cutoff, f.horizon_days, f.features, label, f.events))
    other = GBDTModel(**params).fit(flipped[:-1], flipped[-1])
    assert base.best_iteration_ == other.best_iteration_ == 1
    a, b = base.oof_, other.oof_
    in0 = customer_folds(a["user_id"]) == 0
    # the held-out predictions of fold 0 come from boosters that never saw fold 0's labels
    np.testing.assert_allclose(a.loc[in0, "p"].to_numpy(), b.loc[in0, "p"].to_numpy())
    # the other folds' boosters did learn from fold 0, so their predictions move
    assert not np.allclose(a.loc[~in0, "p"].to_numpy(), b.loc[~in0, "p"].to_numpy())
    assert set(zip(a["cutoff"], a["user_id"], strict=True)) == {
        (f.cutoff, str(u)) for f in learning for u in f.users
    }


def test_ensemble_uses_gbdt_own_out_of_fold_predictions(frames, monkeypatch) -> None:
    train, valid, test = frames
    gbdt = GBDTModel(feature_set="rfm", btyd_features=False, **FAST).fit(train, valid)
    import retention.models._ensemble as ens_module

    def refuse(*args, **kwargs):  # the member kept its own: no refit on folds
        raise AssertionError("refitted on folds although the member kept oof_")

    monkeypatch.setattr(ens_module, "out_of_fold_proba", refuse)
    ens = EnsembleModel(members=[("gbdt_rfm", gbdt)], prefit=True).fit(train, valid)
    assert len(ens.predict_proba(test)) == len(test)

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from retention_synth import synthetic_frames

from retention.exceptions import ConfigError, NotFittedError
from retention.models import EnsembleModel, GBDTModel, classification_metrics, get_model
from retention.models._ensemble import is_fitted

FAST = {"n_estimators": 300, "learning_rate": 0.08, "early_stopping_rounds": 30}


@pytest.fixture(scope="module")
def frames():
    return synthetic_frames(n_users=400, seed=2)


@pytest.fixture(scope="module")
def fitted_members(frames):
    train, valid, _ = frames
    rfm = GBDTModel(feature_set="rfm", btyd_features=False, **FAST).fit(train, valid)
    full = GBDTModel(btyd_features=False, num_leaves=4, **FAST).fit(train, valid)
    return rfm, full


def test_stacks_prefitted_members_without_refitting(frames, fitted_members) -> None:
    train, valid, test = frames
    rfm, full = fitted_members
    booster = full.booster_
    ens = EnsembleModel(members=[("gbdt_rfm", rfm), ("gbdt", full)], prefit=True).fit(train, valid)
    assert full.booster_ is booster  # not refitted
    assert ens.members_[0] is rfm and ens.members_[1] is full  # used as they are
    assert ens.member_names_ == ["gbdt_rfm", "gbdt"]
    assert set(ens.weights_) == {"gbdt_rfm", "gbdt"}
    y = test.label.to_numpy()
    p = ens.predict_proba(test)
    assert p.shape == (len(test),) and ((p > 0) & (p < 1)).all()
    m_ens = classification_metrics(y, p)
    m_members = [classification_metrics(y, m.predict_proba(test)) for m in (rfm, full)]
    # the stack is not worse than the worse member and close to the best one
    assert m_ens["roc_auc"] >= min(m["roc_auc"] for m in m_members) - 1e-9
    assert m_ens["roc_auc"] >= max(m["roc_auc"] for m in m_members) - 0.02


def test_members_are_cloned_and_fitted_leaving_the_given_objects_alone(frames) -> None:
    train, valid, test = frames
    member = GBDTModel(feature_set="rfm", btyd_features=False, **FAST)
    assert not is_fitted(member)
    ens = EnsembleModel(members=[("a", member)]).fit(train, valid)
    assert not is_fitted(member)  # a clone was fitted, not the object given
    (fitted,) = ens.members_
    assert fitted is not member and is_fitted(fitted)
    assert fitted.get_params() == member.get_params()
    assert len(ens.predict_proba(test)) == len(test)


def test_a_refit_on_new_data_refits_the_members(frames, fitted_members) -> None:
    """Fitted members are not kept when the ensemble learns again (unless prefit=True)."""
    train, valid, test = frames
    given = fitted_members[0]
    booster = given.booster_
    # bgnbd scores with the parameters it learned (by default it refits on the scored frame)
    bg = get_model("bgnbd", refit_on_predict=False)
    ens = EnsembleModel(members=[("gbdt_rfm", given), ("bgnbd", bg)])
    first = ens.fit(train, valid).members_
    before = [m.predict_proba(test) for m in first]
    new_train, new_valid, _ = synthetic_frames(n_users=400, seed=9)
    second = ens.fit(new_train, new_valid).members_
    assert all(a is not b for a, b in zip(first, second, strict=True))
    for old, member in zip(before, second, strict=True):
        assert not np.allclose(old, member.predict_proba(test))
    assert given.booster_ is booster  # the fitted object given stayed as it was
    np.testing.assert_array_equal(given.predict_proba(test), before[0])  # its clone, same data


def test_details_carry_member_scores(frames, fitted_members) -> None:
    train, valid, test = frames
    rfm, full = fitted_members
    ens = EnsembleModel(members=[("gbdt_rfm", rfm), ("gbdt", full)]).fit(train, valid)
    details = ens.predict_details(test)
    assert details.index.equals(test.users)
    np.testing.assert_allclose(details["p_retained"].to_numpy(), ens.predict_proba(test))
    np.testing.assert_allclose(details["p_gbdt"].to_numpy(), full.predict_proba(test))


def test_user_errors(frames, fitted_members) -> None:
    train, valid, test = frames
    with pytest.raises(NotFittedError):
        EnsembleModel().predict_proba(test)
    with pytest.raises(ConfigError, match="cv_folds must be a whole number >= 2"):
        EnsembleModel(members=[("a", fitted_members[0])], cv_folds=1).fit(train, valid)
    with pytest.raises(ConfigError, match="itself"):
        EnsembleModel(members=["ensemble"]).fit(train, valid)
    with pytest.raises(ConfigError, match="Unknown model"):
        EnsembleModel(members=["nope"]).fit(train, valid)
    with pytest.raises(ConfigError, match="non-empty"):
        EnsembleModel(members=[]).fit(train, valid)
    with pytest.raises(ConfigError, match="unique"):
        EnsembleModel(members=[("a", fitted_members[0]), ("a", fitted_members[1])]).fit(
            train, valid
        )
    with pytest.raises(ConfigError, match=r"prefit=True .* 'bgnbd' is a model name"):
        EnsembleModel(members=["bgnbd"], prefit=True).fit(train, valid)
    unfitted = GBDTModel(feature_set="rfm", btyd_features=False, **FAST)
    with pytest.raises(ConfigError, match=r"prefit=True .* b is not fitted"):
        EnsembleModel(members=[("a", fitted_members[0]), ("b", unfitted)], prefit=True).fit(
            train, valid
        )
    with pytest.raises(ConfigError, match="prefit must be True or False; got 'yes'"):
        EnsembleModel(members=["bgnbd"], prefit="yes").fit(train, valid)  # type: ignore[arg-type]


def test_anchor_sets_the_level_and_keeps_the_ranking(frames, fitted_members) -> None:
    train, valid, test = frames
    bg = get_model("bgnbd").fit(train, valid)
    members = [("bgnbd", bg), ("gbdt", fitted_members[1])]
    anchored = EnsembleModel(members=members, anchor="bgnbd", prefit=True).fit(train, valid)
    free = EnsembleModel(members=members, anchor=None, prefit=True).fit(train, valid)
    p, q = anchored.predict_proba(test), free.predict_proba(test)
    assert anchored.anchor_ == 0 and free.anchor_ is None
    assert p.mean() == pytest.approx(bg.predict_proba(test).mean(), abs=1e-6)
    assert abs(p.mean() - q.mean()) > 1e-4  # the shift did something
    assert (np.argsort(p, kind="mergesort") == np.argsort(q, kind="mergesort")).all()
    details = anchored.predict_details(test)
    np.testing.assert_allclose(details["p_retained"].to_numpy(), p)
    assert {"p_alive", "expected_purchases", "clv"} <= set(details.columns)
    with pytest.raises(ConfigError, match="anchor"):
        EnsembleModel(members=members, anchor="paretonbd", prefit=True).fit(train, valid)


def test_without_valid_the_stack_learns_from_the_training_cutoffs(frames) -> None:
    train, _, test = frames
    member = GBDTModel(feature_set="rfm", btyd_features=False, **FAST)
    ens = EnsembleModel(members=[("gbdt_rfm", member), "bgnbd"]).fit(train)
    assert ens.valid_cutoff_ == train[-1].cutoff
    y = test.label.to_numpy()
    assert classification_metrics(y, ens.predict_proba(test))["roc_auc"] > 0.6


def test_p_alive_comes_from_a_member_whose_fit_is_not_degenerate(frames) -> None:
    train, valid, test = frames
    bg, mbg = get_model("bgnbd").fit(train, valid), get_model("mbgnbd").fit(train, valid)
    ens = EnsembleModel(members=[("bgnbd", bg), ("mbgnbd", mbg)], prefit=True).fit(train, valid)
    details = ens.predict_details(test)
    # MBG/NBD is preferred: BG/NBD gives every one-time buyer P(alive) = 1 by construction
    assert details.attrs["p_alive_source"] == "mbgnbd"
    np.testing.assert_allclose(details["p_alive"], mbg.predict_details(test)["p_alive"])
    np.testing.assert_allclose(details["clv"], mbg.predict_details(test)["clv"])

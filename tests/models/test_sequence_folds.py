"""The sequence transformer with one network per fold of customers (``cv_folds``).

Tiny synthetic data (the world of ``test_sequence.py``); each test runs in seconds.
"""

from __future__ import annotations

import dataclasses
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_sequence import TINY, _frame, _world

from retention.exceptions import ConfigError, ModelError
from retention.features import CutoffFrame
from retention.models import EnsembleModel, customer_folds, load_model, save_model
from retention.models._sequence import SequenceTransformerModel

# one torch thread for every test here (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

FOLDS = {**TINY, "cv_folds": 3, "epochs": 3}
START = pd.Timestamp("2011-01-01")


@pytest.fixture(scope="module")
def frames() -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    events = _world()
    built = [_frame(events, START + pd.Timedelta(days=d)) for d in (150, 180, 210, 240, 270)]
    return built[:3], built[3], built[4]


@pytest.fixture(scope="module")
def fitted(frames) -> SequenceTransformerModel:
    train, valid, _ = frames
    return SequenceTransformerModel(**FOLDS).fit(train, valid)


def _flip_labels(frame: CutoffFrame, fold: int, n_folds: int) -> CutoffFrame:
    """``frame`` with the label of every customer of ``fold`` reversed."""
    label = frame.label.copy()
    flip = customer_folds(label.index, n_folds) == fold
    label[flip] = 1 - label[flip]
    return dataclasses.replace(frame, label=label)


def test_one_network_per_fold_and_out_of_fold_rows_for_every_learning_row(
    fitted: SequenceTransformerModel, frames
) -> None:
    train, valid, test = frames
    assert len(fitted.nets_) == 3 and fitted.net_ is fitted.nets_[0]
    learning = [*train, valid]
    oof = fitted.oof_
    assert oof is not None and len(oof) == sum(len(f) for f in learning)
    assert not oof["p"].isna().any() and oof["p"].between(0, 1).all()
    # keyed as the ensemble reads it: (cutoff, user_id), every learning row once
    key = pd.MultiIndex.from_frame(oof[["cutoff", "user_id"]])
    assert key.is_unique
    assert set(oof["cutoff"]) == {np.datetime64(f.cutoff, "ns") for f in learning}
    # the prediction is the mean of the fold networks
    seq = fitted._sequences(test)
    each = np.array([fitted._score(net, seq) for net in fitted.nets_])
    np.testing.assert_allclose(fitted.predict_proba(test), each.mean(axis=0))
    assert np.abs(each[0] - each[1]).max() > 1e-4  # three different networks


def test_an_out_of_fold_prediction_never_comes_from_a_network_that_saw_the_customer(
    frames,
) -> None:
    """Reversing the labels of fold 0's customers changes nothing of fold 0's out-of-fold rows
    (their network never trained on them), and changes the other folds' rows (theirs did).
    One epoch, so that no epoch is chosen on the held-out labels."""
    train, valid, _ = frames
    params = {**FOLDS, "epochs": 1}
    base = SequenceTransformerModel(**params).fit(train, valid).oof_
    flipped = [_flip_labels(f, 0, 3) for f in [*train, valid]]
    again = SequenceTransformerModel(**params).fit(flipped[:-1], flipped[-1]).oof_
    assert base is not None and again is not None
    fold = customer_folds(base["user_id"], 3)
    np.testing.assert_array_equal(again["p"][fold == 0], base["p"][fold == 0])
    for k in (1, 2):
        assert np.abs(again["p"][fold == k] - base["p"][fold == k]).max() > 1e-3


def test_the_epoch_is_chosen_on_the_held_out_folds(frames) -> None:
    train, valid, _ = frames
    model = SequenceTransformerModel(**{**FOLDS, "epochs": 5, "patience": 10}).fit(train, valid)
    history = pd.DataFrame(model.history_)
    assert sorted(history["fold"].unique()) == [0.0, 1.0, 2.0]
    mean = history.groupby("epoch")["valid_roc_auc"].mean()
    assert model.best_epoch_ == int(mean.idxmax())
    # patience: stops once the mean held-out score has not improved for patience + 1 epochs
    quick = SequenceTransformerModel(**{**FOLDS, "epochs": 30, "patience": 0}).fit(train, valid)
    epochs = pd.DataFrame(quick.history_)["epoch"]
    assert epochs.max() == quick.best_epoch_ + 1 < 30


def test_determinism_with_a_seed(frames) -> None:
    train, valid, test = frames
    params = {**FOLDS, "epochs": 1}
    a = SequenceTransformerModel(**params, random_state=3).fit(train, valid)
    b = SequenceTransformerModel(**params, random_state=3).fit(train, valid)
    c = SequenceTransformerModel(**params, random_state=4).fit(train, valid)
    np.testing.assert_array_equal(a.predict_proba(test), b.predict_proba(test))
    np.testing.assert_array_equal(a.oof_["p"], b.oof_["p"])
    assert np.abs(a.predict_proba(test) - c.predict_proba(test)).max() > 1e-4


def test_save_load_and_pickle_carry_every_fold_network(
    fitted: SequenceTransformerModel, frames, tmp_path: Path
) -> None:
    _, _, test = frames
    before = fitted.predict_proba(test)
    loaded = load_model(save_model(fitted, tmp_path / "folds.retention"))
    assert len(loaded.nets_) == 3 and loaded.oof_ is None
    np.testing.assert_array_equal(loaded.predict_proba(test), before)
    again = pickle.loads(pickle.dumps(fitted))
    assert len(again.nets_) == 3
    np.testing.assert_array_equal(again.predict_proba(test), before)


def test_a_single_network_artifact_still_loads_and_a_damaged_one_is_refused(frames) -> None:
    train, valid, test = frames
    one = SequenceTransformerModel(**{**TINY, "epochs": 1}).fit(train, valid)
    state, parts = one._get_state()
    assert set(parts) >= {"net.safetensors"} and "n_nets_" not in state  # the old format
    again = SequenceTransformerModel(**{**TINY, "epochs": 1})
    again._set_state(state, parts)
    assert len(again.nets_) == 1
    np.testing.assert_array_equal(again.predict_proba(test), one.predict_proba(test))
    parts.pop("net.safetensors")
    with pytest.raises(ModelError, match=r"no network weights.*Train the model again"):
        SequenceTransformerModel()._set_state(state, parts)


def test_the_ensemble_stacks_on_the_fold_predictions_without_refitting(
    frames, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, valid, test = frames
    import retention.models._ensemble as ensemble_module

    def refit(*args: object, **kwargs: object) -> None:
        raise AssertionError("refitted on folds")

    monkeypatch.setattr(ensemble_module, "out_of_fold_proba", refit)
    seq = SequenceTransformerModel(**{**FOLDS, "epochs": 1})
    model = EnsembleModel(members=(("sequence", seq),)).fit(train, valid)
    assert model.chosen_ == "sequence"
    p = model.predict_proba(test)
    assert len(p) == len(test) and np.isfinite(p).all()
    # a single network keeps no out-of-fold predictions: the ensemble would refit it
    plain = SequenceTransformerModel(**{**TINY, "epochs": 1})
    with pytest.raises(AssertionError, match="refitted on folds"):
        EnsembleModel(members=(("sequence", plain),)).fit(train, valid)


def test_user_mistakes(frames) -> None:
    train, valid, _ = frames
    for bad in (1, True, 2.5):
        with pytest.raises(ConfigError, match="cv_folds"):
            SequenceTransformerModel(**{**FOLDS, "cv_folds": bad}).fit(train, valid)
    few = [
        dataclasses.replace(f, features=f.features.iloc[:4], label=f.label.iloc[:4]) for f in train
    ]
    with pytest.raises(ModelError, match="cv_folds"):
        SequenceTransformerModel(**{**FOLDS, "cv_folds": 20}).fit(few)

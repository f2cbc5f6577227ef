"""Model artifacts: data only (no pickle), hashes checked before anything is read, classes from a
fixed table; every registered model round trips with identical scores."""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from retention_synth import synthetic_frames, synthetic_store, tiny_bert

import retention
from retention.exceptions import IncompatibleModelError, ModelError
from retention.features import CutoffFrame, TextEncoder
from retention.models import (
    MODEL_NAMES,
    GBDTModel,
    RetentionModel,
    _artifact,
    _persist,
    get_model,
    load_model,
    read_metadata,
    save_model,
)

FAST_GBDT = {"n_estimators": 100, "learning_rate": 0.1, "early_stopping_rounds": 20}
TINY_SEQUENCE = {
    "max_events": 12,
    "d_model": 16,
    "n_heads": 2,
    "n_layers": 1,
    "epochs": 2,
    "batch_size": 64,
    "n_item_buckets": 64,
}
TINY_TEXT_LM = {
    "max_length": 32,
    "batch_size": 8,
    "max_train_examples": 32,
    "max_valid_examples": 16,
    "evals_per_epoch": 1,
}
ITEMS = pd.DataFrame(
    {
        "item_id": [f"i{k}" for k in range(7)],
        "title": [
            "REGENCY CAKESTAND 3 TIER",
            "JUMBO BAG RED RETROSPOT",
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "PARTY BUNTING",
            "LUNCH BAG BLACK SKULL",
            "SET OF 3 CAKE TINS PANTRY DESIGN",
            "PACK OF 72 RETROSPOT CAKE CASES",
        ],
    }
)


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One torch thread: tiny networks run faster so on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def frames() -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    return synthetic_frames(n_users=300, seed=5)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> TextEncoder:
    return TextEncoder(str(tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")))


@pytest.fixture(scope="module")
def fitted(frames) -> tuple[GBDTModel, CutoffFrame]:
    train, valid, test = frames
    model = GBDTModel(btyd_features=False, n_estimators=100, learning_rate=0.1).fit(train, valid)
    return model, test


def _with(
    frame: CutoffFrame, items: pd.DataFrame | None = None, extra: dict | None = None
) -> CutoffFrame:
    """A copy of ``frame`` with items and/or extras (the shared frames stay as they are)."""
    return CutoffFrame(
        frame.cutoff,
        frame.horizon_days,
        frame.features,
        frame.label,
        frame.events,
        items if items is not None else frame.items,
        dict(extra or {}),
    )


def _item_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(7, 8)).astype(np.float32), index=ITEMS["item_id"])


#: registry name -> (factory of an unfitted model with fast settings, frame transform)
Case = tuple[Callable[[TextEncoder], RetentionModel], Callable[[CutoffFrame], CutoffFrame]]
CASES: dict[str, Case] = {
    "bgnbd": (lambda enc: get_model("bgnbd"), lambda f: f),
    "paretonbd": (lambda enc: get_model("paretonbd"), lambda f: f),
    "mbgnbd": (lambda enc: get_model("mbgnbd"), lambda f: f),
    "gbdt": (lambda enc: get_model("gbdt", **FAST_GBDT), lambda f: f),
    "gbdt_rfm": (
        lambda enc: get_model("gbdt_rfm", calibration="isotonic", **FAST_GBDT),
        lambda f: f,
    ),
    # the default encoder (all-MiniLM-L6-v2) from its package, as in production
    "gbdt_text": (lambda enc: get_model("gbdt_text", **FAST_GBDT), lambda f: _with(f, ITEMS)),
    "ensemble": (
        lambda enc: get_model(
            "ensemble", members=("bgnbd", "paretonbd", ("rfm", get_model("gbdt_rfm", **FAST_GBDT)))
        ),
        lambda f: f,
    ),
    "sequence": (
        lambda enc: get_model("sequence", **TINY_SEQUENCE),
        lambda f: _with(f, extra={"item_embeddings": _item_table()}),
    ),
    "text_lm": (lambda enc: get_model("text_lm", encoder=enc, **TINY_TEXT_LM), lambda f: f),
    "text_lm_lora": (
        lambda enc: get_model("text_lm_lora", encoder=enc, **TINY_TEXT_LM),
        lambda f: f,
    ),
}


def test_every_registered_model_has_a_case() -> None:
    assert set(CASES) == set(MODEL_NAMES)


@pytest.fixture
def no_pickle(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to make any use of pickle or torch.load fail from then on."""

    def arm() -> None:
        import torch

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("loading an artifact must not unpickle anything")

        for module, name in [(pickle, "load"), (pickle, "loads"), (torch, "load")]:
            monkeypatch.setattr(module, name, refuse)
        monkeypatch.setattr(pickle, "Unpickler", refuse)

    return arm


@pytest.mark.parametrize("name", list(CASES))
def test_every_registered_model_round_trips_as_data(
    name: str, frames, tiny_encoder: TextEncoder, tmp_path: Path, no_pickle
) -> None:
    make, prepare = CASES[name]
    train, valid, test = frames
    train, valid, test = [prepare(f) for f in train], prepare(valid), prepare(test)
    model = make(tiny_encoder).fit(train, valid)
    p = model.predict_proba(test)
    details = model.predict_details(test)
    path = save_model(model, tmp_path / f"{name}.retention")
    with zipfile.ZipFile(path) as zf:
        members = zf.namelist()
        meta = json.loads(zf.read("metadata.json"))
    assert not [m for m in members if m.endswith((".pkl", ".pickle", ".pt", ".joblib"))]
    assert set(members) == {"metadata.json", *meta["payload"]["files"]}
    assert meta["model_id"] == meta["payload"]["sha256"][:12]

    no_pickle()
    loaded = load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict_proba(test), p)
    again = loaded.predict_details(test)
    pd.testing.assert_frame_equal(again, details)
    assert loaded.artifact_metadata_["model_name"] == type(model).name  # type: ignore[attr-defined]
    # a loaded model saves again to the same payload
    second = save_model(loaded, tmp_path / f"{name}-again.retention")
    assert read_metadata(second)["payload"] == meta["payload"]


def test_what_the_files_hold(frames, tmp_path: Path) -> None:
    """LightGBM's own text, JSON parameters, .npy arrays."""
    train, valid, _ = frames
    gbdt = save_model(get_model("gbdt_rfm", **FAST_GBDT).fit(train, valid), tmp_path / "g.rtn")
    with zipfile.ZipFile(gbdt) as zf:
        booster = zf.read("parts/booster.txt").decode()
        tree = json.loads(zf.read("model.json"))
    assert booster.startswith("tree\nversion=v")
    assert tree["class"] == "GBDTModel" and tree["params"]["feature_set"] == "rfm"
    assert tree["parts"]["calibrator"]["node"]["class"] == "Calibrator"

    bg = save_model(get_model("bgnbd").fit(train, valid), tmp_path / "b.rtn")
    with zipfile.ZipFile(bg) as zf:
        node = json.loads(zf.read("model.json"))["parts"]["model"]["node"]
        recency = np.load(zf.open("parts/summary_recency.npy"), allow_pickle=False)
    assert node["class"] == "BetaGeo" and set(node["state"]["params_"]) == {"r", "alpha", "a", "b"}
    assert recency.dtype == np.float64 and len(recency) > 0


def test_lora_saves_only_the_adapters_and_the_head(
    frames, tiny_encoder: TextEncoder, tmp_path: Path
) -> None:
    from safetensors.torch import load

    train, valid, _ = frames
    sizes = {}
    for name in ("text_lm", "text_lm_lora"):
        model = get_model(name, encoder=tiny_encoder, **TINY_TEXT_LM).fit(train[-1:], valid)
        path = save_model(model, tmp_path / f"{name}.retention")
        with zipfile.ZipFile(path) as zf:
            weights = load(zf.read("parts/weights.safetensors"))
            tree = json.loads(zf.read("model.json"))
        sizes[name] = sum(t.numel() for t in weights.values())
        encoder = tree["state"]["encoder_"]["__encoder__"]
        assert encoder["model_name"] == tiny_encoder.model_name
        if name == "text_lm_lora":
            # keys "{fold}.{name}": one network per fold of customers
            assert weights and all("lora_" in k or ".head." in f".{k}" for k in weights)
            assert sizes[name] == model.trainable_parameters_ * model.n_folds_
    assert sizes["text_lm_lora"] < sizes["text_lm"] / 5


# ------------------------------------------------------------------------------------ header


def test_round_trip_gives_identical_scores_and_metadata(tmp_path: Path, fitted) -> None:
    model, test = fitted
    path = save_model(model, tmp_path / "sub" / "m.retention", {"metrics": {"roc_auc": 0.7}})
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(test), model.predict_proba(test))
    meta = read_metadata(path)
    assert meta["format_version"] == _persist.FORMAT_VERSION == 2
    assert meta["retention_version"] == retention.__version__
    assert meta["features"] == model.feature_names_
    assert meta["horizon_days"] == test.horizon_days
    assert meta["valid_cutoff"].startswith(f"{model.valid_cutoff_:%Y-%m-%d}")
    assert meta["metrics"] == {"roc_auc": 0.7}
    assert "lightgbm" in meta["libraries"] and "python" in meta["libraries"]
    assert meta["model_name"] == "gbdt" and meta["model_class"] == "GBDTModel"
    assert loaded.artifact_metadata_["model_id"] == meta["model_id"]  # type: ignore[attr-defined]


def test_metadata_cannot_replace_the_hashes(tmp_path: Path, fitted) -> None:
    model, _ = fitted
    with pytest.raises(ModelError, match="payload"):
        save_model(model, tmp_path / "m.retention", {"payload": {}})


def _rewrite(
    src: Path,
    dst: Path,
    *,
    header: Callable[[dict], None] | None = None,
    files: Callable[[dict[str, bytes]], None] | None = None,
    rehash: bool = False,
) -> Path:
    """Copy an artifact, editing its header and/or its payload files; with ``rehash`` the header's
    hashes are recomputed so that only the edit itself can be refused."""
    with zipfile.ZipFile(src) as zin:
        meta = json.loads(zin.read("metadata.json"))
        payload = {n: zin.read(n) for n in zin.namelist() if n != "metadata.json"}
    if files is not None:
        files(payload)
    if rehash:
        digests = {n: hashlib.sha256(d).hexdigest() for n, d in sorted(payload.items())}
        listing = "".join(f"{d}  {n}\n" for n, d in sorted(digests.items()))
        meta["payload"] = {"sha256": hashlib.sha256(listing.encode()).hexdigest(), "files": digests}
    if header is not None:
        header(meta)
    with zipfile.ZipFile(dst, "w") as zout:
        zout.writestr("metadata.json", json.dumps(meta))
        for name, data in payload.items():
            zout.writestr(name, data)
    return dst


@pytest.mark.parametrize(
    "changes",
    [{"retention_version": "9.0.0"}, {"format_version": 99}, {"retention_version": "0.99.0"}],
)
def test_incompatible_versions_are_refused(tmp_path: Path, fitted, changes) -> None:
    model, _ = fitted
    good = save_model(model, tmp_path / "m.retention")
    bad = _rewrite(good, tmp_path / "old.retention", header=lambda m: m.update(changes))
    with pytest.raises(IncompatibleModelError) as info:
        load_model(bad)
    msg = str(info.value)
    assert retention.__version__ in msg and "Retrain" in msg and "\n" not in msg
    assert str(changes.get("retention_version", changes.get("format_version"))) in msg


def test_same_minor_other_patch_loads(tmp_path: Path, fitted) -> None:
    model, test = fitted
    good = save_model(model, tmp_path / "m.retention")
    major, minor, *_ = retention.__version__.split(".")
    patched = _rewrite(
        good,
        tmp_path / "patched.retention",
        header=lambda m: m.update(retention_version=f"{major}.{minor}.999"),
    )
    assert len(load_model(patched).predict_proba(test)) == len(test)


def test_missing_corrupt_and_unfitted(tmp_path: Path, fitted) -> None:
    model, _ = fitted
    with pytest.raises(ModelError, match="No model file"):
        load_model(tmp_path / "nope.retention")
    junk = tmp_path / "junk.retention"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ModelError, match="not a retention model artifact"):
        load_model(junk)
    good = save_model(model, tmp_path / "m.retention")
    truncated = tmp_path / "truncated.retention"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ModelError):
        load_model(truncated)
    with zipfile.ZipFile(tmp_path / "nometa.retention", "w") as zf:
        zf.writestr("other.txt", "x")
    with pytest.raises(ModelError, match="metadata"):
        load_model(tmp_path / "nometa.retention")
    with pytest.raises(ModelError, match="not fitted"):
        save_model(GBDTModel(), tmp_path / "x.retention")
    with pytest.raises(ModelError, match="RetentionModel"):
        save_model("model", tmp_path / "x.retention")  # type: ignore[arg-type]


def test_a_model_class_outside_the_table_cannot_be_saved(tmp_path: Path, fitted) -> None:
    class Custom(GBDTModel):
        pass

    model, _ = fitted
    custom = Custom()
    custom.__dict__.update(model.__dict__)
    with pytest.raises(ModelError, match="cannot hold"):
        save_model(custom, tmp_path / "custom.retention")
    assert not (tmp_path / "custom.retention").exists()


# ------------------------------------------------------------------------------------ hostile files


class _Touch:
    """Unpickling this creates ``marker``: the code a crafted model.pkl would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path: Path, fitted) -> None:
    model, _ = fitted
    # the payload is live: unpickling it does create its marker
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Touch(probe)))
    assert probe.exists()

    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Touch(marker))
    good = save_model(model, tmp_path / "m.retention")

    # genuine metadata.json + the genuine payload + a model.pkl the header does not list
    extra = _rewrite(
        good, tmp_path / "extra.retention", files=lambda f: f.update({"model.pkl": evil})
    )
    with pytest.raises(ModelError, match=r"does not list \(model\.pkl\)"):
        load_model(extra)

    # genuine metadata.json + only a model.pkl (the old layout)
    only = tmp_path / "only.retention"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(only, "w") as zout:
        zout.writestr("metadata.json", zin.read("metadata.json"))
        zout.writestr("model.pkl", evil)
    with pytest.raises(ModelError, match=r"model\.pkl"):
        load_model(only)

    # the pickle in place of model.json, with hashes that match it
    swapped = _rewrite(
        good,
        tmp_path / "swapped.retention",
        files=lambda f: f.update({"model.json": evil}),
        rehash=True,
    )
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(swapped)

    # an old (format 1) pickle artifact: refused with a message to retrain
    old = tmp_path / "old.retention"
    with zipfile.ZipFile(old, "w") as zf:
        header = {**read_metadata(good), "format_version": 1}
        header.pop("payload")
        zf.writestr("metadata.json", json.dumps(header))
        zf.writestr("model.pkl", evil)
    with pytest.raises(IncompatibleModelError, match=r"a pickle.*Retrain"):
        load_model(old)
    assert read_metadata(old)["format_version"] == 1  # the header alone can still be read

    assert not marker.exists()


def test_a_crafted_artifact_is_refused_by_the_cli(tmp_path: Path, fitted, capsys) -> None:
    from retention.serving.cli import main

    model, _ = fitted
    marker = tmp_path / "pwned"
    crafted = _rewrite(
        save_model(model, tmp_path / "m.retention"),
        tmp_path / "crafted.retention",
        files=lambda f: f.update({"model.pkl": pickle.dumps(_Touch(marker))}),
    )
    db = synthetic_store(tmp_path / "s.duckdb", n_users=40, seed=1)
    assert main(["score", "--db", str(db), "--model", str(crafted)]) == 2
    err = capsys.readouterr().err
    assert "model.pkl" in err and "Traceback" not in err
    assert not marker.exists()


def test_one_flipped_byte_in_any_payload_file_is_refused_by_hash(tmp_path: Path, fitted) -> None:
    model, test = fitted
    good = save_model(model, tmp_path / "m.retention")
    names = sorted(read_metadata(good)["payload"]["files"])
    assert "model.json" in names and "parts/booster.txt" in names and len(names) >= 4

    def flip(name: str) -> Callable[[dict[str, bytes]], None]:
        def edit(files: dict[str, bytes]) -> None:
            data = bytearray(files[name])
            data[len(data) // 2] ^= 0x01
            files[name] = bytes(data)

        return edit

    for name in names:
        bad = _rewrite(good, tmp_path / "flipped.retention", files=flip(name))
        with pytest.raises(ModelError, match="SHA-256") as info:
            load_model(bad)
        assert name in str(info.value) and "\n" not in str(info.value)
    # the original still loads (the edits above were the only difference)
    np.testing.assert_array_equal(load_model(good).predict_proba(test), model.predict_proba(test))

    # the whole-payload hash of the header is checked too
    header = _rewrite(
        good,
        tmp_path / "header.retention",
        header=lambda m: m["payload"].update(sha256="0" * 64),
    )
    with pytest.raises(ModelError, match="payload SHA-256"):
        load_model(header)
    # a byte flipped in the zip file itself (its own checksum or ours refuses it)
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info_ = zf.getinfo("parts/booster.txt")
    raw[info_.header_offset + 30 + len(info_.filename) + info_.compress_size // 2] ^= 0x01
    (tmp_path / "raw.retention").write_bytes(bytes(raw))
    with pytest.raises(ModelError):
        load_model(tmp_path / "raw.retention")


def _edit_tree(edit: Callable[[dict], None]) -> Callable[[dict[str, bytes]], None]:
    def files(payload: dict[str, bytes]) -> None:
        tree = json.loads(payload["model.json"])
        edit(tree)
        payload["model.json"] = json.dumps(tree).encode()

    return files


@pytest.mark.parametrize(
    ("where", "name"),
    [
        ("top", "subprocess.Popen"),
        ("top", "Popen"),
        ("nested", "os.system"),
        ("param", "builtins.eval"),
    ],
)
def test_a_class_outside_the_allowlist_is_refused(
    tmp_path: Path, frames, where: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, valid, _ = frames
    ens = get_model("ensemble", members=("bgnbd", ("rfm", get_model("gbdt_rfm", **FAST_GBDT))))
    good = save_model(ens.fit(train, valid), tmp_path / "ens.retention")

    def edit(tree: dict) -> None:
        if where == "top":
            tree["class"] = name
        elif where == "nested":
            tree["parts"]["member1"]["node"]["parts"]["calibrator"]["node"]["class"] = name
        else:
            spec = tree["params"]["members"]["__tuple__"][1]["__tuple__"][1]["__model__"]
            spec["class"] = name

    bad = _rewrite(good, tmp_path / "bad.retention", files=_edit_tree(edit), rehash=True)
    imported: list[str] = []
    real = _artifact.importlib.import_module
    monkeypatch.setattr(
        _artifact.importlib, "import_module", lambda m, *a: imported.append(m) or real(m, *a)
    )
    with pytest.raises(ModelError, match="not one an artifact may hold") as info:
        load_model(bad)
    assert repr(name) in str(info.value) and "\n" not in str(info.value)
    assert not [m for m in imported if not m.startswith(("retention.", "sklearn."))]


def test_a_tree_naming_files_outside_the_header_is_refused(tmp_path: Path, fitted) -> None:
    model, _ = fitted
    good = save_model(model, tmp_path / "m.retention")

    def edit(tree: dict) -> None:
        tree["parts"]["booster.txt"]["file"] = "/etc/passwd"

    bad = _rewrite(good, tmp_path / "bad.retention", files=_edit_tree(edit), rehash=True)
    with pytest.raises(ModelError, match="does not list"):
        load_model(bad)
    # header entries must name payload files of the zip
    odd = _rewrite(
        good,
        tmp_path / "odd.retention",
        files=lambda f: f.update({"../escape.txt": b"x"}),
        rehash=True,
    )
    with pytest.raises(ModelError, match="escape"):
        load_model(odd)

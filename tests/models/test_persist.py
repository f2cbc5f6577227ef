from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from retention_synth import synthetic_frames

import retention
from retention.exceptions import IncompatibleModelError, ModelError
from retention.models import (
    GBDTModel,
    _persist,
    load_model,
    read_metadata,
    save_model,
)


@pytest.fixture(scope="module")
def fitted():
    train, valid, test = synthetic_frames(n_users=300, seed=3)
    model = GBDTModel(btyd_features=False, n_estimators=100, learning_rate=0.1).fit(train, valid)
    return model, test


def test_round_trip_gives_identical_scores_and_metadata(tmp_path: Path, fitted) -> None:
    model, test = fitted
    path = save_model(model, tmp_path / "sub" / "m.retention", {"metrics": {"roc_auc": 0.7}})
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(test), model.predict_proba(test))
    meta = read_metadata(path)
    assert meta["format_version"] == _persist.FORMAT_VERSION
    assert meta["retention_version"] == retention.__version__
    assert meta["features"] == model.feature_names_
    assert meta["horizon_days"] == test.horizon_days
    assert meta["valid_cutoff"].startswith(f"{model.valid_cutoff_:%Y-%m-%d}")
    assert meta["metrics"] == {"roc_auc": 0.7}
    assert "lightgbm" in meta["libraries"] and "python" in meta["libraries"]
    assert meta["model_name"] == "gbdt"
    assert loaded.artifact_metadata_["model_id"] == meta["model_id"]  # type: ignore[attr-defined]


def _rewrite_header(src: Path, dst: Path, **changes) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "metadata.json":
                meta = json.loads(data)
                meta.update(changes)
                data = json.dumps(meta).encode()
            zout.writestr(item, data)


@pytest.mark.parametrize(
    "changes",
    [{"retention_version": "9.0.0"}, {"format_version": 99}, {"retention_version": "0.99.0"}],
)
def test_incompatible_versions_are_refused(tmp_path: Path, fitted, changes) -> None:
    model, _ = fitted
    good = save_model(model, tmp_path / "m.retention")
    bad = tmp_path / "old.retention"
    _rewrite_header(good, bad, **changes)
    with pytest.raises(IncompatibleModelError) as info:
        load_model(bad)
    msg = str(info.value)
    assert retention.__version__ in msg and "Retrain" in msg
    assert str(changes.get("retention_version", changes.get("format_version"))) in msg


def test_same_minor_other_patch_loads(tmp_path: Path, fitted) -> None:
    model, test = fitted
    good = save_model(model, tmp_path / "m.retention")
    major, minor, *_ = retention.__version__.split(".")
    patched = tmp_path / "patched.retention"
    _rewrite_header(good, patched, retention_version=f"{major}.{minor}.999")
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

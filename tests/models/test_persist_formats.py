"""The one artifact container (``retention.models.ArtifactFormat``) behind both kinds of artifact.

``data/artifacts/`` holds files written by the code before the two kinds shared it (retention
0.1.0, churn format 2, recommender format 1): a BG/NBD + LightGBM ensemble, a LightGBM model with
an isotonic calibrator (a scikit-learn node), a transition recommender, and what each predicted
then. They must keep loading, score the same, and save again to the same part files: never
regenerate them unless a format version is bumped (and then add the new files beside them).
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from retention_synth import synthetic_frames

import retention
from retention.exceptions import IncompatibleModelError, ModelError
from retention.models import (
    ArtifactFormat,
    EnsembleModel,
    GBDTModel,
    load_model,
    payload_digest,
    read_metadata,
    save_model,
)

DATA = Path(__file__).parent / "data" / "artifacts"


@pytest.fixture
def saved_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """These files are about the layout, not the version rule: read them as by their version."""
    monkeypatch.setattr(retention, "__version__", "0.1.0")


def _parts(header: dict[str, Any]) -> dict[str, str]:
    return {n: d for n, d in header["payload"]["files"].items() if n.startswith("parts/")}


@pytest.mark.parametrize(("name", "cls"), [("ensemble", EnsembleModel), ("gbdt_rfm", GBDTModel)])
def test_churn_artifacts_written_before_still_load_and_score_the_same(
    name: str, cls: type, saved_version: None, tmp_path: Path
) -> None:
    path = DATA / f"{name}_format2.zip"
    model = load_model(path)
    assert type(model) is cls
    _, _, test = synthetic_frames(n_users=300, seed=5)
    # BTYD members refit at the scoring cutoff: equal to the optimiser's last digits
    expected = np.load(DATA / f"{name}_proba.npy")
    np.testing.assert_allclose(model.predict_proba(test), expected, rtol=1e-9, atol=0)
    header = read_metadata(path)
    assert header["format_version"] == 2 and "kind" not in header
    assert header["model_id"] == payload_digest(header["payload"]["files"])[:12]
    again = read_metadata(save_model(model, tmp_path / "again.retention"))
    assert _parts(again) == _parts(header) and "kind" not in again


def test_a_recommender_written_before_still_loads_and_scores_the_same(
    saved_version: None,
) -> None:
    from retention.data import dataset_path
    from retention.strategies import (
        TransitionRecommender,
        leave_last_out,
        load_recommender,
        read_recommender_metadata,
        read_sequences,
    )

    path = DATA / "transition_recommender_format1.zip"
    rec = load_recommender(path)
    assert type(rec) is TransitionRecommender
    seqs = read_sequences(dataset_path("amazon_beauty", "amazon_beauty.txt.gz"))
    split = leave_last_out(seqs.take(np.arange(150)))
    hist = [split.refit.history(int(r)) for r in split.evaluated[:10]]
    expected = np.load(DATA / "transition_scores.npy")
    np.testing.assert_array_equal(rec.score_histories(hist)[:, :200], expected)
    header = read_recommender_metadata(path)
    assert header["kind"] == "recommender" and header["format_version"] == 1
    assert header["cutoff"] == "2011-01-01 00:00:00"  # recommender headers show str(value)


def test_neither_loader_takes_the_other_kind(saved_version: None) -> None:
    from retention.strategies import load_recommender, read_recommender_metadata

    with pytest.raises(ModelError, match="is a recommender artifact, not a retention model"):
        load_model(DATA / "transition_recommender_format1.zip")
    with pytest.raises(ModelError, match=r"is a churn model artifact.*not a recommender artifact"):
        read_recommender_metadata(DATA / "ensemble_format2.zip")
    with pytest.raises(ModelError, match="not a recommender artifact") as info:
        load_recommender(DATA / "gbdt_rfm_format2.zip")
    assert not isinstance(info.value, IncompatibleModelError) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------ a third kind


class Toy:
    """The smallest saveable object: one hyper-parameter, one array and one nested Toy."""

    def __init__(self, scale: float = 1.0, when: pd.Timestamp | None = None) -> None:
        self.scale = scale
        self.when = when

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {"scale": self.scale, "when": self.when}

    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        parts: dict[str, Any] = {"weights": self.weights_, "names": self.names_}
        if self.child_ is not None:
            parts["child"] = self.child_
        return {"shape": (len(self.weights_),)}, parts

    def _set_state(self, state: dict[str, Any], parts: dict[str, Any]) -> None:
        assert state["shape"] == (len(parts["weights"]),)
        self.weights_, self.names_ = parts["weights"], parts["names"]
        self.child_ = parts.get("child")


class ToyFormat(ArtifactFormat):
    kind = "toy"
    format_version = 3
    title = "a toy artifact"
    noun = "toy"
    writer = "save_toy"
    fix = "Save the toy again."
    classes = {"Toy": (__name__, "Toy")}  # noqa: RUF012


def _toy(scale: float, child: Toy | None = None) -> Toy:
    toy = Toy(scale, pd.Timestamp("2011-09-10"))
    toy.weights_ = np.arange(4, dtype=np.float64) * scale
    toy.names_ = np.asarray(["a", "b"], dtype=object)
    toy.child_ = child
    return toy


def test_any_kind_round_trips_with_the_same_checks(tmp_path: Path) -> None:
    fmt = ToyFormat()
    toy = _toy(2.0, child=_toy(0.5))
    files = fmt.payload(toy)
    assert set(files) == {
        "model.json",
        "parts/weights.npy",
        "parts/names.json",
        "parts/child/weights.npy",
        "parts/child/names.json",
    }
    path = fmt.write(tmp_path / "t.toy", files, {"what": "a toy"}, {"cutoff": pd.Timestamp(0)})
    header = fmt.read_header(path)
    assert header["kind"] == "toy" and header["format_version"] == 3
    assert header["model_id"] == fmt.model_id(files) and header["what"] == "a toy"
    assert header["cutoff"] == "1970-01-01T00:00:00"
    loaded = fmt.load(path, Toy)
    assert loaded.when == toy.when and loaded.scale == 2.0
    np.testing.assert_array_equal(loaded.child_.weights_, toy.child_.weights_)
    assert loaded.artifact_metadata_["model_id"] == header["model_id"]
    assert not (tmp_path / "t.toy.tmp").exists()

    with pytest.raises(ModelError, match=r"\['kind', 'payload'\] are written by save_toy"):
        fmt.write(tmp_path / "x.toy", files, {}, {"payload": 1, "kind": "x"})
    with pytest.raises(ModelError, match="not a toy artifact") as info:
        fmt.load(_kindless_zip(tmp_path), Toy)
    assert "Pass a file written by save_toy." in str(info.value)
    with pytest.raises(ModelError, match="No toy file at"):
        fmt.load(tmp_path / "missing.toy", Toy)


def _kindless_zip(tmp_path: Path) -> Path:
    """A zip with a header but no kind: what the churn models write."""
    path = tmp_path / "churn.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"format_version": 2}))
    return path


def test_another_version_or_a_changed_file_is_refused(tmp_path: Path) -> None:
    fmt = ToyFormat()
    files = fmt.payload(_toy(1.0))
    path = fmt.write(tmp_path / "t.toy", files, {})
    with zipfile.ZipFile(path) as zf:
        header = json.loads(zf.read("metadata.json"))
        payload = {n: zf.read(n) for n in zf.namelist() if n != "metadata.json"}

    def rewrite(name: str, head: dict[str, Any], body: dict[str, bytes]) -> Path:
        out = tmp_path / name
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr("metadata.json", json.dumps(head))
            for n, data in body.items():
                zf.writestr(n, data)
        return out

    old = rewrite("old.toy", {**header, "format_version": 2}, payload)
    with pytest.raises(IncompatibleModelError, match=r"artifact format 2.*cannot load it"):
        fmt.load(old, Toy)
    flipped = {**payload, "parts/weights.npy": payload["parts/weights.npy"][:-1] + b"\x01"}
    with pytest.raises(ModelError, match=r"parts/weights\.npy in .* does not match its SHA-256"):
        fmt.load(rewrite("flipped.toy", header, flipped), Toy)
    extra = {**payload, "run.pkl": b"x"}
    with pytest.raises(ModelError, match=r"does not list \(run\.pkl\)"):
        fmt.load(rewrite("extra.toy", header, extra), Toy)
    tree = json.loads(payload["model.json"])
    tree["class"] = "os.system"
    evil = {**payload, "model.json": json.dumps(tree).encode()}
    digests = {n: hashlib.sha256(d).hexdigest() for n, d in evil.items()}
    rehashed = {**header, "payload": {"sha256": payload_digest(digests), "files": digests}}
    with pytest.raises(ModelError, match=r"'os\.system', which is not one an artifact may hold"):
        fmt.load(rewrite("evil.toy", rehashed, evil), Toy)

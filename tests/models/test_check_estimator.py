"""The same checks on every model and raw estimator (DESIGN.md: a shared ``check_estimator``).

Every registered model (``retention.models.MODEL_NAMES``) and the estimators they are built of
(``BetaGeo``, ``ParetoNBD``, ``GammaGamma``, ``Calibrator``, ``TextFeaturizer``) go through
:func:`check_estimator`, which checks the scikit-learn contract the tuner and the API rely on:

- ``NotFittedError`` before ``fit``; ``fit`` returns the estimator; outputs of the right length
  (probabilities finite, in [0, 1] and not constant);
- ``sklearn.base.clone`` round trip: same parameters, nothing learned;
- ``set_params`` works, and an invalid value is accepted by ``__init__``/``set_params`` and
  refused by ``fit`` with a ``ConfigError`` that names the parameter and the value;
- idempotent refit (fitting twice on the same data gives the same outputs) and determinism (a
  new estimator with the same parameters gives them too);
- the data given to ``fit`` and ``predict`` is left unchanged (compared with deep copies);
- predicting writes nothing on the estimator (no hidden cache);
- for models: outputs follow ``frame.users``, ``predict_details`` agrees, save/load round trip.

The transformer models use tiny settings (a 16-wide transformer, a 32-wide random BERT) so that
each case runs in seconds.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone

sys.path.insert(0, str(Path(__file__).parent))
from retention_synth import synthetic_frames, tiny_bert

import retention.data
from retention.exceptions import ConfigError, NotFittedError
from retention.features import CutoffFrame, TextEncoder, TextFeaturizer
from retention.models import (
    MODEL_NAMES,
    BetaGeo,
    Calibrator,
    GammaGamma,
    ModifiedBetaGeo,
    ParetoNBD,
    RetentionModel,
    get_model,
    load_model,
    rfm_summary,
    save_model,
)
from retention.models._ensemble import is_fitted

# one torch thread for every test here (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST_GBDT = {"n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 20}
TINY_SEQUENCE = {
    "max_events": 12,
    "d_model": 16,
    "n_heads": 2,
    "n_layers": 1,
    "epochs": 2,
    "batch_size": 64,
    "item_embeddings": False,
    "n_item_buckets": 64,
}
TINY_TEXT_LM = {
    "max_length": 32,
    "batch_size": 8,
    "max_train_examples": 32,
    "max_valid_examples": 16,
    "evals_per_epoch": 1,
}
FILES = Path(retention.data.__file__).parent / "files"


# --------------------------------------------------------------------------------------------
# the check
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """How to drive one estimator through :func:`check_estimator`.

    ``make(**params)`` builds a new, unfitted estimator; ``fit(est)`` fits it on the case's data
    and returns what ``fit`` returned; ``predict(est)`` gives its outputs on the test data, of
    length ``n_out``; ``inputs()`` returns every data object ``fit`` and ``predict`` read;
    ``invalid`` is a hyper-parameter value ``fit`` must refuse; ``proba`` says the outputs are
    probabilities; ``frames`` is ``(train, valid, test)`` for a ``RetentionModel``.
    """

    make: Callable[..., Any]
    fit: Callable[[Any], Any]
    predict: Callable[[Any], Any]
    inputs: Callable[[], list[Any]]
    n_out: int
    invalid: dict[str, Any]
    proba: bool = True
    frames: tuple[list[CutoffFrame], CutoffFrame, CutoffFrame] | None = None


def _params_equal(a: Any, b: Any) -> bool:
    """Parameter values equal; estimators compare by class and parameters (clones are new
    objects), containers element by element."""
    if isinstance(a, BaseEstimator) or isinstance(b, BaseEstimator):
        return type(a) is type(b) and _params_equal(a.get_params(), b.get_params())
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_params_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_params_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    return bool(a is b or a == b)


def _assert_same(before: Any, after: Any, where: str) -> None:
    """``after`` holds the same data as the deep copy ``before``."""
    if isinstance(before, CutoffFrame):
        for f in dataclasses.fields(CutoffFrame):
            _assert_same(getattr(before, f.name), getattr(after, f.name), f"{where}.{f.name}")
    elif isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(after, before, obj=where)
    elif isinstance(before, pd.Series):
        pd.testing.assert_series_equal(after, before, obj=where)
    elif isinstance(before, pd.Index):
        pd.testing.assert_index_equal(after, before, obj=where)
    elif isinstance(before, np.ndarray):
        np.testing.assert_array_equal(after, before, err_msg=where)
    elif isinstance(before, dict):
        assert after.keys() == before.keys(), f"{where}: keys changed"
        for k in before:
            _assert_same(before[k], after[k], f"{where}[{k!r}]")
    elif isinstance(before, list | tuple):
        assert len(after) == len(before), f"{where}: length changed"
        for i, (x, y) in enumerate(zip(before, after, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert before is after or before == after, f"{where} changed"


def _fingerprint(est: Any, depth: int = 0) -> dict[str, Any]:
    """What the estimator holds: each attribute's identity and size (dict keys too), and the
    same for the estimators it holds, so that a cache written in place shows."""
    out: dict[str, Any] = {}
    for name, value in vars(est).items():
        try:
            size: Any = len(value)
        except TypeError:
            size = None
        keys = tuple(value) if isinstance(value, dict) else None
        out[name] = (id(value), type(value).__name__, size, keys)
        inner = value if isinstance(value, list | tuple) else [value]
        for i, item in enumerate(inner):
            if depth < 2 and isinstance(item, BaseEstimator):
                out[f"{name}[{i}]"] = _fingerprint(item, depth + 1)
    return out


def _outputs(est: Any, case: Case) -> dict[str, Any]:
    out = {"predict": case.predict(est)}
    if isinstance(est, RetentionModel):
        assert case.frames is not None
        out["details"] = est.predict_details(case.frames[2])
    return out


def _assert_outputs_equal(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    for key in a:
        if isinstance(a[key], pd.DataFrame):
            pd.testing.assert_frame_equal(b[key], a[key], obj=f"{what}: {key}")
        else:
            np.testing.assert_array_equal(b[key], a[key], err_msg=f"{what}: {key}")


def _shuffled(frame: CutoffFrame) -> CutoffFrame:
    feats = frame.features.sample(frac=1.0, random_state=7)
    return dataclasses.replace(frame, features=feats, label=None)


def check_estimator(case: Case, tmp_path: Path) -> None:
    """Run every check of the module docstring on ``case``; an AssertionError names the one that
    failed."""
    # before fit
    model = case.make()
    with pytest.raises(NotFittedError):
        case.predict(model)

    # clone round trip and set_params (on the unfitted estimator)
    twin = clone(model)
    assert twin is not model and _params_equal(twin.get_params(), model.get_params())
    ((param, bad),) = case.invalid.items()
    assert param in model.get_params(), f"{param} is not a parameter"
    tweaked = case.make()
    assert tweaked.set_params(**{param: bad}) is tweaked  # stored as given, not validated yet
    assert tweaked.get_params()[param] is bad
    case.make(**{param: bad})  # __init__ does not validate either
    with pytest.raises(ConfigError, match=rf"\b{param}\b") as refused:
        case.fit(tweaked)
    assert repr(bad) in str(refused.value), f"the error does not say what was received: {bad!r}"

    # fit and predict, on inputs that must stay as they were
    inputs = case.inputs()
    before = copy.deepcopy(inputs)
    assert case.fit(model) is model, "fit must return the estimator"
    fitted = _fingerprint(model)
    out = _outputs(model, case)
    again = _outputs(model, case)
    _assert_same(before, inputs, "the inputs of fit and predict")
    assert _fingerprint(model) == fitted, "predicting changed the estimator (a hidden cache?)"
    _assert_outputs_equal(out, again, "predicting twice")
    p = np.asarray(out["predict"])
    assert len(p) == case.n_out
    if case.proba:
        assert p.shape == (case.n_out,) and p.dtype.kind == "f"
        assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
        assert p.std() > 0, "it ranks nothing: the output is a constant"

    # a clone of the fitted estimator has learned nothing
    fresh = clone(model)
    assert not is_fitted(fresh) and _params_equal(fresh.get_params(), model.get_params())
    with pytest.raises(NotFittedError):
        case.predict(fresh)

    # idempotent refit, and a new estimator with the same parameters agrees
    _assert_outputs_equal(out, _outputs(case.fit(model), case), "a second fit on the same data")
    _assert_outputs_equal(out, _outputs(case.fit(fresh), case), "a clone fitted on the same data")

    if isinstance(model, RetentionModel):
        assert case.frames is not None
        test = case.frames[2]
        shuffled = _shuffled(test)
        q = pd.Series(model.predict_proba(shuffled), index=shuffled.users)
        # float32 networks may round differently in another batch: alignment is what counts
        np.testing.assert_allclose(q.reindex(test.users).to_numpy(), p, rtol=1e-6, atol=1e-9)
        details = out["details"]
        assert details.index.equals(test.users)
        np.testing.assert_allclose(details["p_retained"].to_numpy(), p, rtol=1e-9, atol=1e-12)
        if type(model).name in MODEL_NAMES:  # artifacts hold registered models only
            path = save_model(model, tmp_path / "model.retention")
            np.testing.assert_array_equal(load_model(path).predict_proba(test), p)


# --------------------------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------------------------


def _model_case(
    name: str, frames: tuple[list[CutoffFrame], CutoffFrame, CutoffFrame], **fast: Any
) -> Case:
    train, valid, test = frames
    return Case(
        make=lambda **kw: get_model(name, **{**fast, **kw}),
        fit=lambda m: m.fit(train, valid),
        predict=lambda m: m.predict_proba(test),
        inputs=lambda: [train, valid, test],
        n_out=len(test),
        invalid=_INVALID.get(name, {"learning_rate": 0}),
        frames=frames,
    )


#: a value ``fit`` must refuse, per registry name (gradient boosting: learning_rate=0)
_INVALID: dict[str, dict[str, Any]] = {
    "bgnbd": {"penalizer": -1},
    "paretonbd": {"penalizer": -1},
    "mbgnbd": {"penalizer": -1},
    "ensemble": {"C": -1.0},
    "sequence": {"d_model": 0},
    "text_lm": {"max_length": 0},
    "text_lm_lora": {"lora_r": 0},
}

ITEMS = pd.DataFrame(
    {
        "item_id": [f"i{k}" for k in range(8)],
        "title": [
            "white hanging heart t-light holder",
            "regency cakestand 3 tier",
            "party bunting",
            "pack of 72 retrospot cake cases",
            "jumbo bag red retrospot",
            "lunch bag black skull",
            "set of 3 cake tins pantry design",
            "assorted colour bird ornament",
        ],
    }
)


def _with_items(frames: tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]) -> tuple:
    """The frames with an items table; the test frame's customers also bought ``i7``, an item
    the training frames never saw (so the text features meet it first when scoring)."""
    train, valid, test = frames
    known = ITEMS[ITEMS["item_id"] != "i7"]
    events = test.events.copy()
    events.loc[events.index % 5 == 0, "item_id"] = "i7"
    return (
        [dataclasses.replace(f, items=known) for f in train],
        dataclasses.replace(valid, items=known),
        dataclasses.replace(test, events=events, items=ITEMS),
    )


@pytest.fixture(scope="module")
def frames() -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    return _with_items(synthetic_frames(n_users=300, seed=5))


@pytest.fixture(scope="module")
def text_frames() -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    train, valid, test = synthetic_frames(n_users=60, seed=3)
    return _with_items((train[-1:], valid, test))


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> TextEncoder:
    return TextEncoder(str(tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")))


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    raw = pd.read_csv(FILES / "cdnow_sample.csv.gz", dtype={"id": str, "date": str})
    ev = pd.DataFrame(
        {
            "user_id": raw["id"],
            "ts": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "event_type": "purchase",
            "amount": raw["dollars"].astype(float),
        }
    )
    return rfm_summary(ev, "1997-10-01", unit_days=7.0)


def _transaction_case(cls: type, s: pd.DataFrame) -> Case:
    cols = [s["frequency"], s["recency"], s["T"]]
    return Case(
        make=cls,
        fit=lambda m: m.fit(*cols),
        predict=lambda m: m.probability_of_purchase(13.0, *cols),
        inputs=lambda: cols,
        n_out=len(s),
        invalid={"penalizer": -1},
    )


def _calibrator_case() -> Case:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=600)
    y = (rng.uniform(size=600) < p**2).astype(int)
    p_test = rng.uniform(size=200)
    return Case(
        make=Calibrator,
        fit=lambda m: m.fit(p, y),
        predict=lambda m: m.transform(p_test),
        inputs=lambda: [p, y, p_test],
        n_out=len(p_test),
        invalid={"method": "sigmoid"},
    )


#: registered models checked on the synthetic frames (the transformers have their own tests below)
FRAME_MODELS = ("bgnbd", "paretonbd", "mbgnbd", "gbdt", "gbdt_rfm", "ensemble", "gbdt_text")


@pytest.mark.parametrize("name", FRAME_MODELS)
def test_registered_model(name: str, frames, tiny_encoder, monkeypatch, tmp_path: Path) -> None:
    fast: dict[str, Any] = {}
    if name.startswith("gbdt"):
        fast = FAST_GBDT
        # the text featurizer of gbdt_text uses the default encoder: the tiny one here
        monkeypatch.setenv("RETENTION_ENCODER", str(tiny_encoder.folder))
    elif name == "ensemble":
        fast = {"members": ("bgnbd", ("gbdt_rfm", get_model("gbdt_rfm", **FAST_GBDT)))}
    check_estimator(_model_case(name, frames, **fast), tmp_path)


@pytest.mark.parametrize("cv_folds", [None, 3])  # one network, or one per fold of customers
def test_sequence(cv_folds: int | None, frames, tmp_path: Path) -> None:
    case = _model_case("sequence", frames, **TINY_SEQUENCE, cv_folds=cv_folds)
    check_estimator(case, tmp_path)


@pytest.mark.parametrize("name", ["text_lm", "text_lm_lora"])
def test_text_lm(name: str, text_frames, tiny_encoder, tmp_path: Path) -> None:
    case = _model_case(name, text_frames, encoder=tiny_encoder, **TINY_TEXT_LM)
    check_estimator(case, tmp_path)


@pytest.mark.parametrize("cls", [BetaGeo, ModifiedBetaGeo, ParetoNBD])
def test_transaction_models(cls: type, cdnow: pd.DataFrame, tmp_path: Path) -> None:
    check_estimator(_transaction_case(cls, cdnow), tmp_path)


def test_gamma_gamma(cdnow: pd.DataFrame, tmp_path: Path) -> None:
    cols = [cdnow["frequency"], cdnow["monetary_value"]]
    case = Case(
        make=GammaGamma,
        fit=lambda m: m.fit(*cols),
        predict=lambda m: m.conditional_expected_average_profit(*cols),
        inputs=lambda: cols,
        n_out=len(cdnow),
        invalid={"penalizer": -1},
        proba=False,
    )
    check_estimator(case, tmp_path)


def test_calibrator(tmp_path: Path) -> None:
    check_estimator(_calibrator_case(), tmp_path)


def test_text_featurizer(frames, tiny_encoder: TextEncoder, tmp_path: Path) -> None:
    train, _, test = frames
    case = Case(
        make=lambda **kw: TextFeaturizer(**{"encoder": tiny_encoder, "n_components": 2, **kw}),
        fit=lambda m: m.fit(train),
        predict=lambda m: m.transform(test),
        inputs=lambda: [train, test],
        n_out=len(test),
        invalid={"n_components": 0},
        proba=False,
    )
    check_estimator(case, tmp_path)
    # the check saw items first met at scoring time: i7 is in the test frame only
    fitted = case.fit(case.make())
    assert "i7" not in fitted.item_coords_
    assert fitted.transform(test)["text_pc0"].notna().any()


def test_every_registered_model_is_checked() -> None:
    """A newly registered model must get a case here."""
    assert set(MODEL_NAMES) == {*FRAME_MODELS, "sequence", "text_lm", "text_lm_lora"}


# --------------------------------------------------------------------------------------------
# the check can fail
# --------------------------------------------------------------------------------------------


class _Toy(RetentionModel):
    """A model that ranks by recency; subclasses break one rule each."""

    name = "toy"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def fit(self, train, valid=None):  # type: ignore[no-untyped-def]
        if not self.scale > 0:
            raise ConfigError(f"scale must be positive; got {self.scale!r}.")
        self.mean_ = float(np.mean([f.features["recency_days"].mean() for f in train]))
        return self

    def predict_proba(self, frame):  # type: ignore[no-untyped-def]
        if getattr(self, "mean_", None) is None:
            raise NotFittedError("not fitted")
        r = frame.features["recency_days"].to_numpy(dtype=float)
        out: np.ndarray = 1.0 / (1.0 + np.exp((r - self.mean_) / (100.0 * self.scale)))
        return out


def _toy_case(cls: type, frames: tuple) -> Case:
    train, valid, test = frames
    return Case(
        make=cls,
        fit=lambda m: m.fit(train, valid),
        predict=lambda m: m.predict_proba(test),
        inputs=lambda: [train, valid, test],
        n_out=len(test),
        invalid={"scale": -1.0},
        frames=frames,
    )


class _Noisy(_Toy):
    def fit(self, train, valid=None):  # type: ignore[no-untyped-def]
        super().fit(train, valid)
        self.rng_ = np.random.default_rng()
        return self

    def predict_proba(self, frame):  # type: ignore[no-untyped-def]
        return super().predict_proba(frame) * self.rng_.uniform(0.9, 1.0, size=len(frame))


class _Caching(_Toy):
    def predict_proba(self, frame):  # type: ignore[no-untyped-def]
        out = super().predict_proba(frame)
        self.last_scored_ = frame
        return out


class _Mutating(_Toy):
    def predict_proba(self, frame):  # type: ignore[no-untyped-def]
        frame.features["recency_days"] = frame.features["recency_days"] + 1.0
        return super().predict_proba(frame)


class _ValidatingInInit(_Toy):
    def __init__(self, scale: float = 1.0) -> None:
        if not scale > 0:
            raise ConfigError(f"scale must be positive; got {scale!r}.")
        self.scale = scale


class _Rewiring(_Toy):
    def __init__(self, scale: float = 1.0) -> None:
        self.scale = [scale]  # type: ignore[assignment]  # not the value given


def test_the_well_behaved_toy_passes(frames, tmp_path: Path) -> None:
    check_estimator(_toy_case(_Toy, frames), tmp_path)


@pytest.mark.parametrize(
    ("cls", "error"),
    [
        (_Noisy, AssertionError),  # not deterministic
        (_Caching, AssertionError),  # predict writes on the model
        (_Mutating, AssertionError),  # predict changes its input
        (_ValidatingInInit, ConfigError),  # validates in __init__, not in fit
        (_Rewiring, RuntimeError),  # __init__ does not store the parameter as given
    ],
)
def test_the_check_catches_a_broken_estimator(cls: type, error: type, tmp_path: Path) -> None:
    # fresh frames: _Mutating changes them
    frames = synthetic_frames(n_users=120, seed=11)
    with pytest.raises(error):
        check_estimator(_toy_case(cls, frames), tmp_path)


def test_get_model_names_a_parameter_the_model_does_not_have() -> None:
    with pytest.raises(ConfigError, match=r"Model 'gbdt' has no parameter 'n_trees'.*n_estimators"):
        get_model("gbdt", n_trees=300)
    assert get_model("gbdt_rfm", n_estimators=10).get_params()["n_estimators"] == 10

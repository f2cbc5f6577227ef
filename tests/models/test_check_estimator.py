"""The same checks on every registered model that fits in seconds (DESIGN.md: check_estimator)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from retention_synth import synthetic_frames

from retention.exceptions import NotFittedError
from retention.features import CutoffFrame
from retention.models import (
    RetentionModel,
    get_model,
    load_model,
    save_model,
)

FAST_GBDT = {"n_estimators": 200, "learning_rate": 0.1, "early_stopping_rounds": 20}

#: registry name -> factory of a new, unfitted model with fast settings
MODELS: dict[str, Callable[[], RetentionModel]] = {
    "bgnbd": lambda: get_model("bgnbd"),
    "paretonbd": lambda: get_model("paretonbd"),
    "gbdt": lambda: get_model("gbdt", **FAST_GBDT),
    "gbdt_rfm": lambda: get_model("gbdt_rfm", **FAST_GBDT),
    "ensemble": lambda: get_model(
        "ensemble", members=("bgnbd", ("gbdt_rfm", get_model("gbdt_rfm", **FAST_GBDT)))
    ),
}


def _shuffled(frame: CutoffFrame) -> CutoffFrame:
    feats = frame.features.sample(frac=1.0, random_state=7)
    return CutoffFrame(frame.cutoff, frame.horizon_days, feats, None, frame.events, frame.items)


def check_estimator(
    make: Callable[[], RetentionModel],
    train: list[CutoffFrame],
    valid: CutoffFrame,
    test: CutoffFrame,
    tmp_path: Path,
) -> None:
    """Fit/predict contract, determinism and a save/load round trip."""
    model = make()
    with pytest.raises(NotFittedError):
        model.predict_proba(test)
    assert model.fit(train, valid) is model
    p = model.predict_proba(test)
    assert isinstance(p, np.ndarray) and p.shape == (len(test),)
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert p.std() > 0  # it ranks customers, not a constant

    # order and population follow the frame
    q = pd.Series(model.predict_proba(_shuffled(test)), index=_shuffled(test).users)
    np.testing.assert_allclose(q.reindex(test.users).to_numpy(), p, rtol=1e-9, atol=1e-12)

    details = model.predict_details(test)
    assert details.index.equals(test.users)
    np.testing.assert_allclose(details["p_retained"].to_numpy(), p, rtol=1e-9, atol=1e-12)

    # same seed, same data -> same scores
    again = make().fit(train, valid).predict_proba(test)
    np.testing.assert_array_equal(again, p)

    # save/load round trip
    path = save_model(model, tmp_path / "model.retention")
    np.testing.assert_array_equal(load_model(path).predict_proba(test), p)


@pytest.fixture(scope="module")
def frames() -> tuple[list[CutoffFrame], CutoffFrame, CutoffFrame]:
    return synthetic_frames(n_users=300, seed=5)


@pytest.mark.parametrize("name", list(MODELS))
def test_check_estimator(name: str, frames, tmp_path: Path) -> None:
    train, valid, test = frames
    check_estimator(MODELS[name], train, valid, test, tmp_path)


def test_the_check_catches_a_nondeterministic_model(frames, tmp_path: Path) -> None:
    class Noisy(RetentionModel):
        name = "noisy"

        def fit(self, train, valid=None):
            self.rng_ = np.random.default_rng()
            return self

        def predict_proba(self, frame):
            if getattr(self, "rng_", None) is None:
                raise NotFittedError("not fitted")
            return self.rng_.uniform(size=len(frame))

    train, valid, test = frames
    with pytest.raises(AssertionError):
        check_estimator(Noisy, train, valid, test, tmp_path)

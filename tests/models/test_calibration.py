from __future__ import annotations

import numpy as np
import pytest

from retention.exceptions import ConfigError, ModelError, NotFittedError
from retention.models import Calibrator
from retention.models._calibration import logit


def _miscalibrated(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p_true = rng.uniform(0.02, 0.98, size=n)
    y = (rng.uniform(size=n) < p_true).astype(int)
    p_model = p_true**3  # badly over-confident towards 0
    return p_model, y


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_lowers_the_brier_score_on_new_data(method: str) -> None:
    p_fit, y_fit = _miscalibrated(seed=0)
    p_new, y_new = _miscalibrated(seed=1)
    cal = Calibrator(method).fit(p_fit, y_fit)
    before = np.mean((p_new - y_new) ** 2)
    after = np.mean((cal.transform(p_new) - y_new) ** 2)
    assert after < before - 0.01
    out = cal.transform(p_new)
    assert out.min() >= 0 and out.max() <= 1
    # mean prediction matches the observed rate
    assert abs(out.mean() - y_new.mean()) < 0.03


def test_platt_keeps_the_ranking() -> None:
    p, y = _miscalibrated()
    out = Calibrator("platt").fit(p, y).transform(p)
    assert (np.argsort(out, kind="mergesort") == np.argsort(p, kind="mergesort")).all()


def test_isotonic_is_monotone() -> None:
    p, y = _miscalibrated()
    grid = np.linspace(0, 1, 101)
    out = Calibrator("isotonic").fit(p, y).transform(grid)
    assert (np.diff(out) >= 0).all()


def test_errors() -> None:
    with pytest.raises(NotFittedError):
        Calibrator().transform(np.array([0.5]))
    with pytest.raises(ConfigError, match="isotonic"):
        Calibrator("beta").fit(np.array([0.1, 0.9]), np.array([0, 1]))  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="both outcomes"):
        Calibrator().fit(np.array([0.1, 0.9]), np.array([1, 1]))


def test_logit_is_finite_at_the_edges() -> None:
    assert np.isfinite(logit(np.array([0.0, 1.0]))).all()

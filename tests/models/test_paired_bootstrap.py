"""The paired bootstrap of a ROC-AUC difference (`retention promote`, the benchmarks)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from retention.models import paired_auc_bootstrap


def _data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    good = y + rng.normal(0, 0.8, n)
    worse = y + rng.normal(0, 1.6, n)
    return y, good, worse


def test_the_interval_brackets_the_difference_and_separates_a_better_model() -> None:
    y, good, worse = _data()
    gain = paired_auc_bootstrap(y, good, worse, n=300, seed=1)
    assert gain["difference"] == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, worse))
    assert 0 < gain["low"] <= gain["difference"] <= gain["high"]
    assert gain["share_below_0"] < 0.025 and gain["resamples"] == 300
    # the other way round: the mirror image
    back = paired_auc_bootstrap(y, worse, good, n=300, seed=1)
    assert back["low"] == pytest.approx(-gain["high"]) and back["high"] == pytest.approx(
        -gain["low"]
    )


def test_paired_resampling_cancels_what_both_models_share() -> None:
    y, good, _ = _data()
    same = paired_auc_bootstrap(y, good, good.copy(), n=100)
    assert same["difference"] == same["low"] == same["high"] == 0.0
    # a tiny change of one model: a paired interval stays narrow around it
    nudged = good + np.random.default_rng(3).normal(0, 0.01, len(good))
    gain = paired_auc_bootstrap(y, nudged, good, n=200)
    assert gain["high"] - gain["low"] < 0.01


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="both classes"):
        paired_auc_bootstrap(np.ones(10), np.ones(10), np.ones(10))
    with pytest.raises(ValueError, match="same length"):
        paired_auc_bootstrap(np.array([0, 1, 0]), np.ones(3), np.ones(2))

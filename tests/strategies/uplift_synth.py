"""Small randomised campaigns with a known effect per unit, for the uplift tests (no store)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_campaign(
    n: int = 4000,
    *,
    arms: int = 2,
    binary: bool = True,
    seed: int = 0,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Covariates ``x0..x3`` and ``grade`` (text), the arm (0 = control), the outcome and the true
    effect of each treatment, shape ``(n, arms - 1)``.

    Treatment ``k`` helps units with high ``x0`` (and, for ``k = 2``, low ``x1``); the baseline
    depends on ``x2`` and on the grade.
    """
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"x{i}" for i in range(4)])
    X["grade"] = rng.choice(["a", "b", "c"], size=n)
    arm = rng.integers(0, arms, size=n)
    base = 0.25 + 0.1 * np.tanh(X["x2"].to_numpy()) + (X["grade"] == "a").to_numpy() * 0.05
    tau = np.zeros((n, arms - 1))
    for k in range(1, arms):
        signal = X["x0"].to_numpy() if k == 1 else -X["x1"].to_numpy()
        tau[:, k - 1] = 0.15 * (signal > 0) - 0.03
    p = base + np.where(arm > 0, tau[np.arange(n), np.maximum(arm - 1, 0)], 0.0)
    if binary:
        y = (rng.random(n) < np.clip(p, 0, 1)).astype(float)
    else:
        y = 10 * p + rng.normal(scale=1.0, size=n)
        tau = tau * 10
    return X, arm, y, tau


def campaign_frame(n: int = 4000, *, seed: int = 0, binary: bool = True) -> pd.DataFrame:
    """The campaign as one CSV-like frame: ``id, x0..x3, grade, segment, outcome, later``
    (``later`` is an outcome measured after the treatment: non-zero only where ``outcome`` is)."""
    X, arm, y, _ = synthetic_campaign(n, seed=seed, binary=binary, arms=3)
    rng = np.random.default_rng(seed + 1)
    df = X.copy()
    df.insert(0, "id", np.arange(n))
    df["segment"] = np.array(["none", "mail", "sms"])[arm]
    df["outcome"] = y
    df["later"] = np.where(y != 0, rng.integers(0, 2, size=n), 0)
    return df

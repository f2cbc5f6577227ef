"""Stores and clients for the API tests.

The base store is the bundled CDNOW sample (2,357 real customers, their real purchases) with a
score for every customer and reasons beside it. The scores are written directly, from each
customer's recency and frequency (a small stand-in for `retention score`, which takes ~15 s on
2 cores; the job tests run the real one, marked slow). A model row points at no artifact, so
that a score job with it fails cleanly. Each test gets its own copy of the file.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from api_helpers import CUTOFF, MODEL, Keys, make_client
from fastapi.testclient import TestClient

from retention import workflows
from retention.data import ModelRecord


def _scores_and_reasons(store: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    ev = store.events_df(before=CUTOFF, columns=("user_id", "ts", "amount"))
    g = ev.groupby("user_id").agg(last=("ts", "max"), n=("ts", "size"), spend=("amount", "sum"))
    recency = (CUTOFF - g["last"]).dt.days.to_numpy(dtype=float)
    z = 1.5 - recency / 90 + 0.3 * np.log(g["n"].to_numpy(dtype=float))
    p = 1 / (1 + np.exp(-z))
    scores = pd.DataFrame(
        {
            "user_id": g.index.astype(str),
            "p_retained": p,
            "p_alive": np.clip(p + 0.1, 0, 1),
            "expected_purchases": p * 2,
            "clv": p * g["spend"].to_numpy(dtype=float),
            "risk_band": workflows.risk_band(p),
            "cutoff": CUTOFF,
            "horizon_days": 90,
            "model_version": MODEL,
            "scored_at": pd.Timestamp("2024-01-01"),
        }
    )
    rows = []
    for uid, r, n in zip(g.index.astype(str), recency, g["n"], strict=True):
        rows.append(
            (
                uid,
                "churn",
                1,
                "recency_days",
                "recency",
                -r / 90,
                r,
                120.0,
                f"{r:.0f} days since the last purchase",
            )
        )
        rows.append(
            (
                uid,
                "retention",
                1,
                "frequency_orders",
                "frequency",
                0.3 * np.log(n),
                float(n),
                2.0,
                f"{n} orders",
            )
        )
    reasons = pd.DataFrame(
        rows,
        columns=[
            "user_id",
            "direction",
            "rank",
            "feature",
            "family",
            "contribution",
            "value",
            "typical",
            "text",
        ],
    )
    return scores, reasons


@pytest.fixture(scope="session")
def api_base(cdnow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Keys]:
    """A scored CDNOW-sample store with four keys (one revoked): the path and the keys."""
    path = tmp_path_factory.mktemp("api") / "api.duckdb"
    shutil.copy(cdnow_db, path)
    with workflows.Store.open(path) as store:
        scores, reasons = _scores_and_reasons(store)
        store.write_scores(scores, reasons)
        store.register_model(
            ModelRecord(
                model_id=MODEL,
                path=path.parent / "no-such-model.retention",
                sha256="0" * 64,
                registry_name="gbdt",
                cutoff=CUTOFF,
                horizon_days=90,
                metadata={"metrics": {"valid": {"roc_auc": 0.8}}},
            )
        )
        made = {
            s: workflows.create_api_key(store, workflows.ApiKeyRequest(s, f"test {s}")).key
            for s in ("read", "write", "admin")
        }
        gone = workflows.create_api_key(store, workflows.ApiKeyRequest("admin", "revoked"))
        workflows.revoke_api_key(store, gone.info.key_id)
    return path, Keys(revoked=gone.key, **made)


@pytest.fixture
def api_db(api_base: tuple[Path, Keys], tmp_path: Path) -> Path:
    """A copy of the base store for one test."""
    path = tmp_path / "api.duckdb"
    shutil.copy(api_base[0], path)
    return path


@pytest.fixture
def keys(api_base: tuple[Path, Keys]) -> Keys:
    return api_base[1]


@pytest.fixture
def client(api_db: Path) -> Iterator[TestClient]:
    """A started app over a copy of the base store (rate limit high enough not to matter)."""
    with make_client(api_db, rate_limit_per_minute=100_000, rate_limit_burst=10_000) as c:
        yield c


@pytest.fixture
def user_ids(api_base: tuple[Path, Keys]) -> list[str]:
    """Ids of scored customers of the base store."""
    with workflows.Store.open(api_base[0], read_only=True) as store:
        return sorted(store.read_scores()["user_id"].astype(str))[:50]

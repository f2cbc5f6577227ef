"""Background jobs: a train job and a score job end to end (slow), a failing job reported in
one line, requests checked when posted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from api_helpers import MODEL, Keys
from fastapi.testclient import TestClient


def _wait(client: TestClient, job_id: str, keys: Keys, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}", headers=keys.header()).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_a_failing_job_says_why_in_one_line(client: TestClient, keys: Keys) -> None:
    # the base store's model row points at no artifact: the score job fails cleanly
    r = client.post("/jobs/score", json={"model_id": MODEL}, headers=keys.header("write"))
    assert r.status_code == 202
    job = _wait(client, r.json()["job_id"], keys)
    assert job["status"] == "failed" and job["result"] is None
    assert "no file is there any more" in job["error"] and "\n" not in job["error"]
    assert "/tmp" not in job["error"] and "<path>" in job["error"]
    assert [j["job_id"] for j in client.get("/jobs", headers=keys.header()).json()] == [
        job["job_id"]
    ]


def test_job_requests_are_checked_when_posted(client: TestClient, keys: Keys) -> None:
    w = keys.header("write")
    r = client.post("/jobs/train", json={"model": "no-such-model"}, headers=w)
    assert r.status_code == 422 and "no-such-model" in r.json()["detail"]
    r = client.post("/jobs/train", json={"horizon_days": 0}, headers=w)
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "body.horizon_days"
    r = client.post("/jobs/backtest", json={"cutoff": "1998-13-01"}, headers=w)
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "body.cutoff"
    assert client.post("/jobs/score", json={"model_id": "nope"}, headers=w).status_code == 202
    assert client.get("/jobs/ffffffffffff", headers=keys.header()).status_code == 404
    assert client.get("/jobs", headers=keys.header()).status_code == 200


@pytest.mark.slow
# gradient boosting on the CDNOW sample may warn about a thin BTYD fit: expected, not the point
@pytest.mark.filterwarnings("ignore::retention.exceptions.RetentionWarning")
def test_train_then_score_jobs_feed_the_lookups(
    client: TestClient, keys: Keys, api_db: Path, user_ids: list[str]
) -> None:
    w = keys.header("write")
    r = client.post("/jobs/train", json={"model": "gbdt", "n_train": 1}, headers=w)
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running")
    job = _wait(client, r.json()["job_id"], keys)
    assert job["status"] == "succeeded", job["error"]
    model_id = job["result"]["model_id"]
    assert 0.5 < job["result"]["metrics"]["roc_auc"] <= 1
    artifacts = list((api_db.parent / "models").glob("gbdt-*.retention"))
    assert len(artifacts) == 1  # in the service's folder, under a name the service chose
    r = client.post("/jobs/score", json={}, headers=w)  # default: the newest model
    assert r.json()["params"]["model_id"] == model_id
    job = _wait(client, r.json()["job_id"], keys)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["n_users"] == 2357 and job["result"]["model_version"] == model_id
    c = client.get(f"/customers/{user_ids[0]}", headers=keys.header()).json()
    assert c["scores"]["model_version"] == model_id
    assert c["reasons"]["churn"] or c["reasons"]["retention"]
    models = client.get("/stats/models", headers=keys.header()).json()["data"]["models"]
    assert models[0]["model_id"] == model_id and models[0]["scored_customers"] == 2357

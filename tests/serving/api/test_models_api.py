"""The registry over HTTP: ``GET /models`` lists the versions and their stages, ``POST
/models/{id}/promote`` decides in a background job, ``POST /models/rollback`` gives production
back; read for the listing, admin for the changes; 401/403 like every other route.

The models here are registry rows over small files with their SHA-256 (they can "serve" as far
as the registry can tell) and no model name, so the registry cannot refit them: a promotion
against production then needs ``force``, and none of these tests fits a model. The refit itself
is tested in tests/workflows/test_registry.py."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import CUTOFF, MODEL, Keys, make_client
from fastapi.testclient import TestClient

from retention import workflows
from retention.data import ModelRecord

A, B = "aaaaaaaaaaaa", "bbbbbbbbbbbb"


def _register(db: Path, model_id: str) -> None:
    artifact = db.parent / f"{model_id}.retention"
    artifact.write_bytes(f"not a real model {model_id}".encode())
    with workflows.Store.open(db) as store:
        store.register_model(
            ModelRecord(
                model_id=model_id,
                path=artifact,
                sha256=hashlib.sha256(artifact.read_bytes()).hexdigest(),
                cutoff=CUTOFF,
                horizon_days=90,
                metadata={"horizon_days": 90},
            )
        )


@pytest.fixture
def registry(api_db: Path) -> Iterator[TestClient]:
    """A client over a store with the base model (no artifact) and two servable candidates."""
    _register(api_db, A)
    _register(api_db, B)
    with make_client(api_db, rate_limit_per_minute=100_000, rate_limit_burst=10_000) as c:
        yield c


def _wait(client: TestClient, job_id: str, keys: Keys, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}", headers=keys.header()).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def _promote(client: TestClient, keys: Keys, model_id: str, **body: object) -> dict:
    r = client.post(f"/models/{model_id}/promote", json=body, headers=keys.header("admin"))
    assert r.status_code == 202, r.text
    assert r.json()["kind"] == "promote" and r.json()["params"]["model_id"] == model_id
    return _wait(client, r.json()["job_id"], keys)


def test_the_registry_is_listed_with_stages(registry: TestClient, keys: Keys, api_db: Path) -> None:
    r = registry.get("/models", headers=keys.header("read"))
    assert r.status_code == 200
    body = r.json()
    assert body["production"] is None
    assert [m["model_id"] for m in body["models"]] == [B, A, MODEL]  # newest first
    by_id = {m["model_id"]: m for m in body["models"]}
    assert {m["stage"] for m in body["models"]} == {"candidate"}
    assert by_id[MODEL]["artifact"] == "missing" and by_id[A]["artifact"] == "ok"
    assert by_id[MODEL]["name"] == "gbdt" and by_id[A]["horizon_days"] == 90
    assert [h["action"] for h in body["history"]] == ["register"] * 3
    # the artifact's path stays on the server
    assert "path" not in by_id[A] and str(api_db.parent) not in r.text
    one = registry.get(f"/models/{A}", headers=keys.header("read"))
    assert one.status_code == 200 and one.json() == by_id[A]
    missing = registry.get("/models/ffffffffffff", headers=keys.header("read"))
    assert missing.status_code == 404 and "models endpoint lists" in missing.json()["detail"]
    assert registry.get("/models/a b", headers=keys.header("read")).status_code == 422


def test_promote_then_rollback(registry: TestClient, keys: Keys) -> None:
    # the first promotion needs no comparison
    job = _promote(registry, keys, A)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["promoted"] is True and job["result"]["decision"] == "first"
    listed = registry.get("/models", headers=keys.header()).json()
    assert listed["production"] == A
    assert {m["model_id"]: m["stage"] for m in listed["models"]}[A] == "production"
    # B cannot be compared with A (neither records a model name to refit): refused, one line
    job = _promote(registry, keys, B)
    assert job["status"] == "failed" and "Cannot compare candidate" in job["error"]
    assert "\n" not in job["error"] and "force" in job["error"]
    assert registry.get("/models", headers=keys.header()).json()["production"] == A
    # forced, it is promoted and recorded as forced; A is archived
    job = _promote(registry, keys, B, force=True, reason="the new feature set")
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["decision"] == "force" and job["result"]["forced"] is True
    listed = registry.get("/models", headers=keys.header()).json()
    stages = {m["model_id"]: m["stage"] for m in listed["models"]}
    assert listed["production"] == B and stages[A] == "archived"
    last = listed["history"][-1]
    assert last["model_id"] == B and last["forced"] and last["reason"] == "the new feature set"
    # rollback: back to A at once
    r = registry.post("/models/rollback", json={}, headers=keys.header("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["production"] == A and r.json()["rolled_back"] == B
    assert registry.get("/models", headers=keys.header()).json()["production"] == A
    # nothing earlier to go back to (B's rollback was a verdict): 422, one line
    r = registry.post("/models/rollback", json={}, headers=keys.header("admin"))
    assert r.status_code == 422 and "no earlier production model" in r.json()["detail"]
    # ... unless named
    r = registry.post("/models/rollback", json={"to": B}, headers=keys.header("admin"))
    assert r.status_code == 200 and r.json()["production"] == B
    r = registry.post("/models/rollback", json={"to": MODEL}, headers=keys.header("admin"))
    assert r.status_code == 422 and "never in production" in r.json()["detail"]


def test_promote_requests_are_checked_when_posted(registry: TestClient, keys: Keys) -> None:
    admin = keys.header("admin")
    # unknown model, a model whose artifact is gone, the production model: answered at once
    r = registry.post("/models/ffffffffffff/promote", json={}, headers=admin)
    assert r.status_code == 404
    r = registry.post(f"/models/{MODEL}/promote", json={}, headers=admin)
    assert r.status_code == 409 and "no file is there any more" in r.json()["detail"]
    assert _promote(registry, keys, A)["status"] == "succeeded"
    r = registry.post(f"/models/{A}/promote", json={}, headers=admin)
    assert r.status_code == 422 and "already the production model" in r.json()["detail"]
    # the body: strict, bounded, no unknown field
    for body, field in (
        ({"margin": 1.5}, "body.margin"),
        ({"margin": "0.01"}, "body.margin"),
        ({"force": 1}, "body.force"),
        ({"n_bootstrap": 5}, "body.n_bootstrap"),
        ({"model_path": "/tmp/x"}, "body.model_path"),
    ):
        r = registry.post(f"/models/{B}/promote", json=body, headers=admin)
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == field, body
    r = registry.post("/models/rollback", json={"to": ""}, headers=admin)
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "body.to"
    # no production model yet in a fresh copy is tested above; no job was queued by a refusal
    kinds = [j["kind"] for j in registry.get("/jobs", headers=keys.header()).json()]
    assert kinds == ["promote"]


def test_changes_need_an_admin_key(registry: TestClient, keys: Keys) -> None:
    for scope in ("read", "write"):
        h = keys.header(scope)
        r = registry.post(f"/models/{A}/promote", json={}, headers=h)
        assert r.status_code == 403 and "needs admin" in r.json()["detail"]
        r = registry.post("/models/rollback", json={}, headers=h)
        assert r.status_code == 403 and "needs admin" in r.json()["detail"]
    for headers in ({}, {"X-API-Key": keys.revoked}):
        assert registry.get("/models", headers=headers).status_code == 401
        assert registry.get(f"/models/{A}", headers=headers).status_code == 401
        assert registry.post(f"/models/{A}/promote", json={}, headers=headers).status_code == 401
        assert registry.post("/models/rollback", json={}, headers=headers).status_code == 401
    # nothing changed
    listed = registry.get("/models", headers=keys.header()).json()
    assert (
        listed["production"] is None and registry.get("/jobs", headers=keys.header()).json() == []
    )


def test_the_openapi_schema_documents_the_registry(registry: TestClient) -> None:
    spec = registry.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths["/models"]) == {"get"}
    assert set(paths["/models/{model_id}"]) == {"get"}
    promote = paths["/models/{model_id}/promote"]["post"]
    assert {"202", "401", "403", "404", "409", "422"} <= set(promote["responses"])
    assert "admin" in promote["summary"]
    assert "admin" in paths["/models/rollback"]["post"]["summary"]
    assert "PromoteIn" in spec["components"]["schemas"]


@pytest.mark.slow  # two BG/NBD trainings and two promotions that refit them: ~10 s on 2 cores
# BTYD fits on the CDNOW sample may warn about a thin fit: expected, not the point
@pytest.mark.filterwarnings("ignore::retention.exceptions.RetentionWarning")
def test_a_promotion_job_refits_both_models_on_the_latest_backtest(
    api_db: Path, keys: Keys
) -> None:
    trained = []
    with workflows.Store.open(api_db) as store:
        for params in ({"penalizer": 0.0}, {"penalizer": 0.5}):
            rep = workflows.train(
                store,
                workflows.TrainRequest(
                    out=api_db.parent / f"bgnbd-{params['penalizer']}.retention",
                    model="bgnbd",
                    n_train=1,
                    model_params=params,
                ),
            )
            trained.append(rep.model_id)
    first, second = trained
    with make_client(api_db, rate_limit_per_minute=100_000, rate_limit_burst=10_000) as client:
        job = _promote(client, keys, first)
        assert job["status"] == "succeeded", job["error"]
        assert job["result"]["decision"] == "first"
        assert job["result"]["evidence"]["candidate"]["metrics"]["roc_auc"] > 0.5  # refit there
        # the second: both refit at the latest cutoff whose labels are complete, same customers
        job = _promote(client, keys, second, margin=0.0, n_bootstrap=200)
        assert job["status"] == "succeeded", job["error"]
        ev = job["result"]["evidence"]
        assert ev["candidate"]["model_id"] == second and ev["production"]["model_id"] == first
        assert ev["ci_low"] <= ev["difference"] <= ev["ci_high"] and ev["n_bootstrap"] == 200
        assert job["result"]["promoted"] is (ev["difference"] >= 0.0)
        listed = client.get("/models", headers=keys.header()).json()
        expected = second if job["result"]["promoted"] else first
        assert listed["production"] == expected
        by_id = {m["model_id"]: m for m in listed["models"]}
        assert by_id[second]["backtest"]["roc_auc"] == pytest.approx(
            ev["candidate"]["metrics"]["roc_auc"]
        )

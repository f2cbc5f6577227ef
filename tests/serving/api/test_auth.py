"""API keys: 401 without a valid key, 403 with too small a scope, 429 past the rate, both
header forms, key management by an admin key, and the key's last use recorded."""

from __future__ import annotations

from pathlib import Path

from api_helpers import Keys, make_client
from fastapi.testclient import TestClient


def test_health_and_ready_need_no_key(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "schema_version": ready.json()["schema_version"],
        "scored": True,
        "models": 1,
    }


def test_no_key_bad_key_revoked_key_get_401(
    client: TestClient, keys: Keys, user_ids: list[str]
) -> None:
    url = f"/customers/{user_ids[0]}"
    for headers in (
        {},
        {"X-API-Key": "rk_000000000000_" + "x" * 43},
        {"X-API-Key": "nonsense"},
        {"X-API-Key": keys.revoked},
        {"Authorization": "Bearer " + keys.revoked},
        {"Authorization": "Basic " + keys.read},
    ):
        r = client.get(url, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert "API key" in r.json()["detail"]
    # a key whose secret is altered in its last character is refused too
    wrong = keys.read[:-1] + ("A" if keys.read[-1] != "A" else "B")
    assert client.get(url, headers={"X-API-Key": wrong}).status_code == 401


def test_both_header_forms_work(client: TestClient, keys: Keys, user_ids: list[str]) -> None:
    url = f"/customers/{user_ids[0]}"
    assert client.get(url, headers={"X-API-Key": keys.read}).status_code == 200
    assert client.get(url, headers={"Authorization": f"Bearer {keys.read}"}).status_code == 200


def test_scopes_are_ordered(client: TestClient, keys: Keys) -> None:
    batch = {"events": [{"user_id": "x1", "ts": "1998-01-02"}]}
    r = client.post("/events", json=batch, headers=keys.header("read"))
    assert r.status_code == 403 and "needs write" in r.json()["detail"]
    assert client.post("/events", json=batch, headers=keys.header("write")).status_code == 200
    assert client.post("/events", json=batch, headers=keys.header("admin")).status_code == 200
    for scope in ("read", "write"):
        assert client.get("/keys", headers=keys.header(scope)).status_code == 403
    assert client.get("/keys", headers=keys.header("admin")).status_code == 200
    assert client.post("/jobs/score", json={}, headers=keys.header("read")).status_code == 403


def test_admin_creates_and_revokes_keys(client: TestClient, keys: Keys) -> None:
    r = client.post("/keys", json={"scope": "read", "name": "shop"}, headers=keys.header("admin"))
    assert r.status_code == 201
    new = r.json()
    assert new["key"].startswith("rk_" + new["key_id"]) and new["scope"] == "read"
    assert (
        client.get("/auth/me", headers={"X-API-Key": new["key"]}).json()["key_id"] == new["key_id"]
    )
    listed = client.get("/keys", headers=keys.header("admin")).json()
    assert new["key_id"] in {k["key_id"] for k in listed}
    text = str(listed)
    assert "key_hash" not in text and "salt" not in text and new["key"] not in text
    assert keys.read not in text and keys.admin not in text
    gone = client.delete(f"/keys/{new['key_id']}", headers=keys.header("admin"))
    assert gone.status_code == 200 and gone.json()["active"] is False
    assert client.get("/auth/me", headers={"X-API-Key": new["key"]}).status_code == 401
    assert client.delete("/keys/ffffffffffff", headers=keys.header("admin")).status_code == 404
    r = client.delete("/keys/not-a-key-id", headers=keys.header("admin"))
    assert r.status_code == 422 and "key_id" in r.json()["detail"]


def test_rate_limit_per_key(api_db: Path, keys: Keys) -> None:
    with make_client(api_db, rate_limit_per_minute=1, rate_limit_burst=3) as c:
        codes = [c.get("/auth/me", headers=keys.header("read")).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = c.get("/auth/me", headers=keys.header("read"))
        assert int(r.headers["retry-after"]) >= 1
        # another key has its own bucket
        assert c.get("/auth/me", headers=keys.header("write")).status_code == 200


def test_last_use_is_recorded(client: TestClient, keys: Keys) -> None:
    before = {k["key_id"]: k for k in client.get("/keys", headers=keys.header("admin")).json()}
    read_id = keys.read.split("_")[1]
    assert before[read_id]["last_used_at"] is None
    assert client.get("/auth/me", headers=keys.header("read")).status_code == 200
    after = {k["key_id"]: k for k in client.get("/keys", headers=keys.header("admin")).json()}
    assert after[read_id]["last_used_at"] is not None

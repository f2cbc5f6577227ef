"""Security items, one test each: body size limit, 422 naming the field (and never echoing the
value), no trace, SQL or customer data in error answers or logs, CORS off by default, no path
taken from a request, security headers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import duckdb
import pytest
from api_helpers import Keys, make_client
from fastapi.testclient import TestClient

from retention import workflows
from retention.exceptions import ConfigError
from retention.serving.api import openapi_spec


def test_body_size_limit_413(api_db: Path, keys: Keys) -> None:
    with make_client(api_db, max_body_bytes=2048) as c:
        events = [{"user_id": f"u{i}", "ts": "1998-01-02"} for i in range(200)]
        r = c.post("/events", json={"events": events}, headers=keys.header("write"))
        assert r.status_code == 413
        assert "at most 2,048 bytes" in r.json()["detail"]

        def chunks() -> Any:  # no Content-Length: the limit still holds while reading
            body = json.dumps({"events": events}).encode()
            for i in range(0, len(body), 512):
                yield body[i : i + 512]

        r = c.post(
            "/events",
            content=chunks(),
            headers={**keys.header("write"), "content-type": "application/json"},
        )
        assert r.status_code == 413
        small = c.post("/events", json={"events": events[:2]}, headers=keys.header("write"))
        assert small.status_code == 200


def test_422_names_the_field_and_not_its_value(client: TestClient, keys: Keys) -> None:
    secret = "customer-secret-4711"
    bad = {"events": [{"user_id": "ok", "ts": "1998-01-02"}, {"ts": secret}]}
    r = client.post("/events", json=bad, headers=keys.header("write"))
    assert r.status_code == 422
    body = r.json()
    assert body["detail"].startswith("invalid body.events.1.user_id")
    assert {"field": "body.events.1.user_id", "message": "Field required"} in body["fields"]
    assert secret not in r.text
    r = client.post(
        "/events",
        json={"events": [{"user_id": "u", "ts": "1998-01-02", "amount": "12.5"}]},
        headers=keys.header("write"),
    )
    assert r.status_code == 422 and "body.events.0.amount" in r.json()["detail"]
    r = client.get("/customers/x?k=0", headers=keys.header("read"))
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "query.k"
    r = client.post("/events", content=b"{not json", headers=keys.header("write"))
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/jobs/train", {"model": "gbdt", "out": "/tmp/evil.retention"}, "body.out"),
        ("/jobs/score", {"model_path": "/etc/passwd"}, "body.model_path"),
        ("/jobs/backtest", {"cutoff": "1998-01-01", "path": "/tmp"}, "body.path"),
        ("/events", {"events": [{"user_id": "u", "ts": "1998-01-02"}], "file": "/x"}, "body.file"),
    ],
)
def test_no_path_is_taken_from_a_request(
    client: TestClient, keys: Keys, url: str, body: dict[str, Any], field: str
) -> None:
    r = client.post(url, json=body, headers=keys.header("admin"))
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == field


def test_the_spec_has_no_path_like_request_field() -> None:
    spec = openapi_spec()
    names: set[str] = set()
    for ops in spec["paths"].values():
        for op in ops.values():
            names |= {p["name"].lower() for p in op.get("parameters", [])}
    for schema in spec["components"]["schemas"].values():
        names |= {n.lower() for n in schema.get("properties", {})}
    suspicious = {n for n in names if any(w in n for w in ("path", "file", "dir", "url"))}
    suspicious.discard("model_version")
    assert suspicious == set()


def test_a_bug_answers_500_without_trace_sql_or_data(
    client: TestClient,
    keys: Keys,
    user_ids: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uid = user_ids[0]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise duckdb.BinderException(
            f"Binder Error: SELECT * FROM scores WHERE user_id = '{uid}' has no column secret"
        )

    monkeypatch.setattr(workflows, "customer_view", broken)
    with caplog.at_level(logging.INFO, logger="retention.api"):
        r = client.get(f"/customers/{uid}", headers=keys.header("read"))
    assert r.status_code == 500
    body = r.json()
    assert body["detail"].startswith("internal error (request ")
    assert body["detail"].split("request ")[1].split(")")[0] == r.headers["x-request-id"]
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    for text in (r.text, logged):
        assert "SELECT" not in text and "Binder Error" not in text and "secret" not in text
        assert uid not in text
        assert "Traceback" not in text
    assert "BinderException at" in logged  # the log says what and where, for the operator
    assert "/customers/{user_id} 500" in logged


def test_error_messages_lose_server_paths(
    client: TestClient, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: Any, **kwargs: Any) -> Any:
        raise ConfigError("No model 'x' in the registry of store /srv/data/shop.duckdb: train one.")

    monkeypatch.setattr(workflows, "stored_scores", fails)
    r = client.post("/score", json={"user_ids": ["a"]}, headers=keys.header("read"))
    assert r.status_code == 422
    assert "/srv" not in r.text and "<path>" in r.json()["detail"]


def test_request_logs_hold_route_templates_not_ids(
    client: TestClient, keys: Keys, user_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="retention.api"):
        client.get(f"/customers/{user_ids[3]}", headers=keys.header("read"))
        client.post(
            "/events",
            json={"events": [{"user_id": "private-77", "ts": "1998-01-02"}]},
            headers=keys.header("write"),
        )
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "GET /customers/{user_id} 200" in logged and "POST /events 200" in logged
    assert user_ids[3] not in logged and "private-77" not in logged
    assert keys.read not in logged and keys.read.split("_")[1] in logged  # the id, not the key


def test_cors_is_off_by_default(client: TestClient, keys: Keys) -> None:
    pre = client.options(
        "/auth/me",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in pre.headers
    r = client.get("/auth/me", headers={**keys.header(), "Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_when_configured(api_db: Path, keys: Keys) -> None:
    with make_client(api_db, cors_origins=["https://shop.example"]) as c:
        pre = c.options(
            "/auth/me",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"},
        )
        assert pre.headers["access-control-allow-origin"] == "https://shop.example"
        other = c.options(
            "/auth/me",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in other.headers


def test_security_headers_and_no_caching(client: TestClient, keys: Keys) -> None:
    r = client.get("/auth/me", headers=keys.header())
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    assert "server" not in r.headers or "uvicorn" not in r.headers["server"]


def test_static_files_come_from_a_fixed_list(client: TestClient) -> None:
    assert client.get("/dashboard/static/dashboard.js").status_code == 200
    for name in ("..%2F..%2Fpyproject.toml", "%2Fetc%2Fpasswd", "report.html.j2", "__init__.py"):
        assert client.get(f"/dashboard/static/{name}").status_code == 404

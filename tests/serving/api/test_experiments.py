"""/experiments: create, assign, results with intervals (the experiment workflows)."""

from __future__ import annotations

from api_helpers import Keys
from fastapi.testclient import TestClient


def test_create_assign_and_read_results(client: TestClient, keys: Keys) -> None:
    w, r = keys.header("write"), keys.header("read")
    body = {
        "experiment_id": "winback-1",
        "variants": ["control", "email"],
        "start": "1997-10-01",
        "metrics": ["retention_30"],
        "window_days": 90,
    }
    made = client.post("/experiments", json=body, headers=w)
    assert made.status_code == 201, made.text
    assert made.json()["control"] == "control"
    assert client.post("/experiments", json=body, headers=w).status_code == 422  # exists
    assert client.post("/experiments", json=body, headers=r).status_code == 403
    a = client.post("/experiments/winback-1/assign", json={}, headers=w)
    assert a.status_code == 200, a.text
    arms = a.json()["arms"]
    assert set(arms) == {"control", "email"} and sum(arms.values()) == a.json()["assigned"]
    again = client.post("/experiments/winback-1/assign", json={}, headers=w).json()
    assert again["assigned"] == 0 and again["already"] == a.json()["assigned"]
    listed = client.get("/experiments", headers=r).json()
    assert "winback-1" in {e["experiment_id"] for e in listed}
    res = client.get("/experiments/winback-1/results", headers=r)
    assert res.status_code == 200, res.text
    text = res.text
    assert "retention_30" in text and "p_value" in text and "ci_low" in text
    assert client.get("/experiments/nope/results", headers=r).status_code in (404, 422)
    bad = client.post("/experiments", json={**body, "experiment_id": "../x"}, headers=w)
    assert bad.status_code == 422 and "experiment_id" in bad.json()["detail"]

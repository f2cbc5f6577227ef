"""GET /customers/{id}, POST /score, GET /recommendations/{id}, GET /plan: what the store holds,
the notes for stages not built, and the tables of later stages once they exist."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from api_helpers import MODEL, Keys, make_client
from fastapi.testclient import TestClient

from retention import workflows


def test_customer_view_holds_scores_reasons_and_notes(
    client: TestClient, keys: Keys, user_ids: list[str], api_db: Path
) -> None:
    uid = user_ids[0]
    r = client.get(f"/customers/{uid}", headers=keys.header())
    assert r.status_code == 200
    c = r.json()
    assert c["user_id"] == uid
    assert c["scores"]["model_version"] == MODEL and 0 <= c["scores"]["p_retained"] <= 1
    assert c["scores"]["risk_band"] in {"high", "medium", "low"}
    assert c["reasons"]["churn"][0]["feature"] == "recency_days"
    assert c["reasons"]["retention"][0]["feature"] == "frequency_orders"
    assert c["activity"]["purchases"] > 0 and c["activity"]["revenue"] > 0
    # stages not built yet: empty, with a note saying what to run
    assert c["recommendations"] == [] and c["planned_action"] is None and c["tier"] is None
    assert "retention recommend" in c["notes"]["recommendations"]
    assert "retention plan" in c["notes"]["planned_action"]
    assert "loyalty" in c["notes"]["loyalty"]
    # the index answers what the store says (a second connection of this process: the app
    # holds the file read-write)
    with workflows.Store(api_db) as store:
        direct = workflows.customer_view(store, workflows.CustomerRequest(uid)).to_dict()
    assert json.loads(json.dumps(direct)) == c


def test_unknown_customer_is_404(client: TestClient, keys: Keys) -> None:
    r = client.get("/customers/no-such-customer", headers=keys.header())
    assert r.status_code == 404
    assert "no-such-customer" not in r.text


def test_score_batch_keeps_order_and_lists_missing(
    client: TestClient, keys: Keys, user_ids: list[str]
) -> None:
    ask = [user_ids[2], "ghost", user_ids[0], user_ids[2]]
    r = client.post("/score", json={"user_ids": ask}, headers=keys.header())
    assert r.status_code == 200
    body = r.json()
    assert [s["user_id"] for s in body["scores"]] == [user_ids[2], user_ids[0]]
    assert body["missing"] == ["ghost"] and body["model_version"] == MODEL
    assert client.post("/score", json={"user_ids": []}, headers=keys.header()).status_code == 422
    many = {"user_ids": [f"u{i}" for i in range(1001)]}
    r = client.post("/score", json=many, headers=keys.header())
    assert r.status_code == 422 and "body.user_ids" in r.json()["detail"]
    r = client.post(
        "/score", json={"user_ids": ["a"], "model_version": "zzz"}, headers=keys.header()
    )
    assert r.status_code == 200 and r.json()["missing"] == ["a"]


def _add_later_stages(db: Path, uid: str) -> None:
    """Rows of the recommendation, plan and loyalty stages in their tables (as the migrations
    declare them), with an older run of each that must not show."""
    con = duckdb.connect(str(db))
    for cutoff, version, created in (
        ("1997-12-01", "rec0", "2024-01-01"),
        ("1998-01-01", "rec1", "2024-02-01"),
        ("1998-01-01", "rec2", "2024-03-01"),  # the latest run
    ):
        con.executemany(
            "INSERT INTO recommendations (user_id, rank, item_id, score, reason, recommender, "
            "cutoff, model_version, created_at) VALUES (?, ?, ?, ?, 'because', 'als', ?, ?, ?)",
            [
                (uid, i, f"{version}-item{i}", 1.0 / i, cutoff, version, created)
                for i in range(1, 13)
            ],
        )
    for plan_id, created, action in (
        ("plan0", "2024-01-01", "old"),
        ("plan1", "2024-02-01", "coupon_10"),
    ):
        con.execute(
            "INSERT INTO plan (user_id, plan_id, cutoff, action, expected_value, expected_cost, "
            "created_at) VALUES (?, ?, '1998-01-01', ?, 7.0, 2.5, ?)",
            [uid, plan_id, action, created],
        )
        con.executemany(
            "INSERT INTO plan (user_id, plan_id, cutoff, action, expected_value, expected_cost, "
            "created_at) VALUES (?, ?, '1998-01-01', 'none', 0, 0, ?)",
            [(f"p{i:03d}", plan_id, created) for i in range(120)],
        )
    con.execute(
        "INSERT INTO loyalty (program, user_id, tier, points, holdout, as_of, run_id) "
        "VALUES ('main', ?, 'gold', 1250, false, '1998-01-01', 'r1')",
        [uid],
    )
    con.close()


def test_later_stages_show_once_their_tables_exist(
    api_db: Path, keys: Keys, user_ids: list[str]
) -> None:
    uid = user_ids[1]
    _add_later_stages(api_db, uid)
    with make_client(api_db) as c:
        v = c.get(f"/customers/{uid}?k=3", headers=keys.header()).json()
        assert [r["item_id"] for r in v["recommendations"]] == [
            "rec2-item1",
            "rec2-item2",
            "rec2-item3",
        ]
        assert v["recommendations"][0]["reason"] == "because"
        assert v["planned_action"]["action"] == "coupon_10"
        assert v["planned_action"]["expected_cost"] == 2.5
        assert v["tier"] == "gold" and v["points"] == 1250
        assert set(v["notes"]) == set()
        other = c.get(f"/customers/{user_ids[2]}", headers=keys.header()).json()
        assert other["recommendations"] == [] and other["planned_action"] is None
        assert other["notes"]["planned_action"] == "the plan has no action for this customer"
        recs = c.get(f"/recommendations/{uid}?k=5", headers=keys.header()).json()
        assert len(recs["items"]) == 5 and recs["note"] == ""
        assert recs["items"][0]["item_id"] == "rec2-item1"
        page = c.get("/plan?page=3&per_page=50", headers=keys.header()).json()
        assert page["total"] == 121 and page["pages"] == 3 and len(page["rows"]) == 21
        assert {r["plan_id"] for r in page["rows"]} == {"plan1"}
        stats = c.get("/stats/plan", headers=keys.header()).json()
        assert stats["data"]["rows"] == 121 and stats["data"]["by_action"]["coupon_10"] == 1


def test_recommendations_and_plan_before_their_stages(
    client: TestClient, keys: Keys, user_ids: list[str]
) -> None:
    r = client.get(f"/recommendations/{user_ids[0]}", headers=keys.header()).json()
    assert r["items"] == [] and "retention recommend" in r["note"]
    p = client.get("/plan", headers=keys.header()).json()
    assert p["rows"] == [] and p["total"] == 0 and "retention plan" in p["note"]
    assert client.get("/plan?per_page=501", headers=keys.header()).status_code == 422


@pytest.mark.parametrize(
    "name", ["overview", "cohorts", "risk", "drivers", "models", "plan", "experiments"]
)
def test_stats_parts(client: TestClient, keys: Keys, name: str) -> None:
    r = client.get(f"/stats/{name}", headers=keys.header())
    assert r.status_code == 200
    part = r.json()
    assert part["name"] == name
    if name == "overview":
        d = part["data"]
        assert d["customers"] == 2357 and d["purchasers"] == 2357
        assert 0 < d["retention"]["rate"] < 1 and len(d["monthly"]) == 18
    if name == "risk":
        d = part["data"]
        assert sum(d["histogram"]["counts"]) == d["customers"]
        assert sum(b["customers"] for b in d["bands"]) == d["customers"]
    if name == "cohorts":
        assert part["data"]["share"][0][0] == 1.0
    if name == "drivers":
        assert part["data"]["features"][0]["feature"] in {"recency_days", "frequency_orders"}
    if name == "models":
        assert part["data"]["models"][0]["model_id"] == MODEL
        assert part["data"]["models"][0]["valid_metrics"]["roc_auc"] == 0.8

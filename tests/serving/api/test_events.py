"""POST /events: the accounting of ingest, quarantine, idempotent retries, strict batches, and
concurrent batches beside reads losing nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from api_helpers import Keys, LiveServer, make_client
from fastapi.testclient import TestClient

from retention import workflows


def _batch(prefix: str, n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {
            "user_id": f"{prefix}{i % 7}",
            "ts": f"1998-02-{1 + i % 28:02d}T10:{i % 60:02d}:00",
            "item_id": f"item{i % 11}",
            "order_id": f"{prefix}-o{i}",
            "quantity": 1 + i % 3,
            "amount": round(2.5 + i % 9, 2),
        }
        for i in range(start, start + n)
    ]


def test_accounting_quarantine_and_idempotent_retry(client: TestClient, keys: Keys) -> None:
    events = [
        *_batch("new", 5),
        {"user_id": "new0", "ts": "not a time"},
        {"user_id": "new1", "ts": "1998-02-01", "amount": -3},
        {"user_id": "new2", "ts": "1998-02-01", "event_type": "teleport"},
        {"user_id": "new3", "ts": "1998-02-03", "event_type": "view", "item_id": "item1"},
    ]
    h = keys.header("write")
    r = client.post("/events", json={"events": events}, headers=h)
    assert r.status_code == 200
    a = r.json()
    assert a["read"] == 9 and a["loaded"] == 6 and a["duplicates"] == 0
    assert a["quarantined"] == 3 and sum(a["reasons"].values()) == 3
    assert a["read"] == a["loaded"] + a["duplicates"] + a["quarantined"]
    again = client.post("/events", json={"events": events}, headers=h).json()
    assert again["loaded"] == 0 and again["read"] == 9
    assert again["read"] == again["loaded"] + again["duplicates"] + again["quarantined"]
    # the new customer is there (a lookup of a customer without scores)
    v = client.get("/customers/new3", headers=keys.header()).json()
    assert v["scores"] is None and "retention score" in v["notes"]["scores"]
    assert v["activity"]["events"] >= 1


def test_strict_batch_loads_nothing(client: TestClient, keys: Keys) -> None:
    events = [*_batch("strict", 3), {"user_id": "strict9", "ts": "garbage"}]
    r = client.post(
        "/events", json={"events": events, "strict": True}, headers=keys.header("write")
    )
    assert r.status_code == 422 and "quarantine" in r.json()["detail"].lower()
    assert client.get("/customers/strict0", headers=keys.header()).status_code == 404


def test_batch_limit_of_the_service(api_db: Path, keys: Keys) -> None:
    with make_client(api_db, max_batch_events=10) as c:
        r = c.post("/events", json={"events": _batch("lim", 11)}, headers=keys.header("write"))
        assert r.status_code == 422 and "at most 10" in r.json()["detail"]
        ok = c.post("/events", json={"events": _batch("lim", 10)}, headers=keys.header("write"))
        assert ok.status_code == 200 and ok.json()["loaded"] == 10


@pytest.mark.slow
def test_concurrent_batches_and_reads_lose_nothing(
    api_db: Path, keys: Keys, user_ids: list[str]
) -> None:
    with workflows.Store(api_db) as store:
        before = store.count_rows("events")
    n_writers, n_batches, size = 4, 5, 200
    answers: list[dict[str, int]] = []
    statuses: list[int] = []
    lock = threading.Lock()
    with LiveServer(
        api_db, rate_limit_per_minute=100_000, rate_limit_burst=10_000, index_refresh_s=0.2
    ) as url:

        def write(w: int) -> None:
            with httpx.Client(base_url=url, headers=keys.header("write"), timeout=60) as c:
                for b in range(n_batches):
                    # every batch repeats its first 20 events from the batch before: duplicates
                    start = b * (size - 20)
                    r = c.post("/events", json={"events": _batch(f"w{w}-", size, start)})
                    with lock:
                        statuses.append(r.status_code)
                        answers.append(r.json())

        def read(n: int) -> None:
            with httpx.Client(base_url=url, headers=keys.header("read"), timeout=60) as c:
                for i in range(25):
                    r = c.get(f"/customers/{user_ids[(n * 25 + i) % len(user_ids)]}")
                    s = c.get("/stats/overview") if i % 10 == 0 else r
                    with lock:
                        statuses.extend([r.status_code, s.status_code])

        threads = [threading.Thread(target=write, args=(w,)) for w in range(n_writers)]
        threads += [threading.Thread(target=read, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert set(statuses) == {200}
    assert len(answers) == n_writers * n_batches
    for a in answers:
        assert a["read"] == a["loaded"] + a["duplicates"] + a["quarantined"]
        assert a["quarantined"] == 0
    loaded = sum(a["loaded"] for a in answers)
    assert loaded == n_writers * n_batches * size - n_writers * (n_batches - 1) * 20
    assert sum(a["duplicates"] for a in answers) == n_writers * (n_batches - 1) * 20
    with workflows.Store(api_db) as store:
        assert store.count_rows("events") == before + loaded
        ingests = store.read_rows("ingests")
        api = ingests[ingests["file"].str.startswith("api")]
        assert len(api) == n_writers * n_batches
        assert (api["read"] == api["loaded"] + api["duplicates"] + api["quarantined"]).all()

"""Data workflows: ingest with a Mapping (no CLI strings), info, datasets; all take a Store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retention import workflows
from retention.data import Mapping, Store
from retention.exceptions import ConfigError, StoreError

CSV = "Client;Date;Kind;Total\nc1;2023-03-01 10:00;sale;9.99\nc2;2023-03-02 11:00;refund;5\n"


def test_ingest_takes_a_mapping_and_info_is_json_ready(tmp_path: Path) -> None:
    path = tmp_path / "shop.csv"
    path.write_text(CSV, encoding="utf-8")
    mapping = Mapping(
        columns={"user_id": "Client", "ts": "Date", "event_type": "Kind", "amount": "Total"},
        event_types={"sale": "purchase", "refund": "return"},
        delimiter=";",
    )
    with Store(tmp_path / "s.duckdb") as store:
        report = workflows.ingest_file(store, workflows.IngestRequest(path=path, mapping=mapping))
        info = workflows.info(store)
    assert (report.read, report.loaded, report.quarantined) == (2, 2, 0)
    json.dumps(report.to_dict(), allow_nan=False)
    payload = json.loads(json.dumps(info.to_dict(), allow_nan=False))
    assert payload["events_by_type"] == {"purchase": 1, "return": 1}
    assert payload["tables"]["events"] == 2 and payload["ingests"][0]["loaded"] == 2


def test_ingest_needs_a_writable_store(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()
    request = workflows.IngestRequest(path=tmp_path / "x.csv")
    with Store(path, read_only=True) as store, pytest.raises(StoreError, match="read-only"):
        workflows.ingest_file(store, request)


def test_load_dataset_takes_the_store_first(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Unknown dataset"):
        workflows.dataset_info("online-retail")
    with Store(tmp_path / "c.duckdb") as store:
        loaded = workflows.load_dataset(store, "cdnow_sample")
        again = workflows.load_dataset(store, "cdnow_sample")
    payload = json.loads(json.dumps(loaded.to_dict(), allow_nan=False))
    assert payload["name"] == "cdnow_sample"
    events = next(r for r in payload["reports"] if r["table"] == "events")
    assert events["loaded"] == 6_919
    assert sum(r.loaded for r in again.reports) == 0  # everything is a duplicate
    assert workflows.list_datasets()[0].to_dict()["name"] == "online_retail"

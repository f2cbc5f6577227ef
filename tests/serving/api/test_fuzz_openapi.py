"""Schemathesis over the served OpenAPI spec: generated requests, valid and not, to every
operation (a bounded number each) against a live server on 127.0.0.1; none may get a 5xx, and
every answer must fit the spec's documented statuses and schemas, and a request the spec does
not allow must be refused.

Excluded: posting train and backtest jobs (each would start minutes of model fitting; their
request checks are tested in test_jobs.py) and creating keys (it would grow the key ring without
bound)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis (the dev extra)")
from api_helpers import Keys, LiveServer  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from retention.serving.api import openapi_spec  # noqa: E402

pytestmark = pytest.mark.slow

schema = (
    schemathesis.openapi.from_dict(openapi_spec())
    .exclude(path_regex=r"^/jobs/(train|backtest)$", method="POST")
    .exclude(path="/keys", method="POST")
)


@pytest.fixture(scope="module")
def live(
    api_base: tuple[Path, Keys], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Keys]]:
    db = tmp_path_factory.mktemp("fuzz") / "api.duckdb"
    shutil.copy(api_base[0], db)
    with LiveServer(
        db, rate_limit_per_minute=1_000_000, rate_limit_burst=100_000, max_body_bytes=1 << 25
    ) as url:
        yield url, api_base[1]


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error(case: Any, live: tuple[str, Keys]) -> None:
    url, keys = live
    response = case.call(base_url=url, headers={"X-API-Key": keys.admin}, timeout=60)
    assert response.status_code < 500, f"{case.as_curl_command()[:2000]}: {response.text[:300]}"
    # every check but "a schema-valid request is accepted": the spec cannot say that a model
    # name must be one the registry knows, or that a strict batch with a bad time is refused
    case.validate_response(response, excluded_checks=[positive_data_acceptance])

"""The app factory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

import retention
from retention.serving.api._errors import (
    BodyLimitMiddleware,
    RequestMiddleware,
    install_error_handlers,
)
from retention.serving.api._settings import ApiSettings
from retention.serving.api._state import ServiceState, StoreHandle

__all__ = ["create_app", "openapi_spec", "write_openapi"]

_DESCRIPTION = """\
The retention engine as a service: customers' scores, reasons and what to do, event ingest,
background training and scoring, and a dashboard at `/dashboard`.

Every endpoint but `/health`, `/ready`, the spec and the dashboard's page shells needs an API
key (`retention apikey create --db DB --scope read|write|admin`), sent as `X-API-Key: KEY` or
`Authorization: Bearer KEY`. Scopes: `read` (lookups, stats, jobs' status), `write` (also
events and jobs), `admin` (also keys). Errors are `{"detail": "...", "request_id": "..."}` with
the fields named for 422.
"""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The service: opens ``settings.db`` when it starts, closes it when it stops.

    Parameters
    ----------
    settings : ApiSettings, optional
        Default: read from the ``RETENTION_*`` environment.

    Returns
    -------
    FastAPI
        Run it with uvicorn (``retention serve``) or drive it with a test client.
    """
    settings = settings if settings is not None else ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState(settings, StoreHandle(settings.db))
        app.state.service = state
        try:
            state.index()  # built once before the first request
            yield
        finally:
            state.close()

    app = FastAPI(
        title="retention",
        version=retention.__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # the Swagger and ReDoc pages load scripts from a CDN: not offline
        redoc_url=None,
    )
    from retention.serving.api.routers import ROUTERS

    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    if settings.cors_origins:  # off by default: no CORS header, no other site reads the API
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    app.add_middleware(RequestMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI document of the service (no store is opened)."""
    spec: dict[str, Any] = create_app(ApiSettings(db=Path("unused.duckdb"))).openapi()
    return spec


def write_openapi(path: str | Path) -> Path:
    """Write :func:`openapi_spec` as indented JSON (``docs/openapi.json``)."""
    p = Path(path)
    p.write_text(json.dumps(openapi_spec(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return p

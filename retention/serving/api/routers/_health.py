"""``/health`` (no key: is the process up) and ``/ready`` (no key: can it answer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

import retention
from retention.exceptions import RetentionError
from retention.serving.api._deps import get_state
from retention.serving.api._schemas import HealthOut, ReadyOut
from retention.serving.api._state import ServiceState

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="The process is up (no key needed)")
def health() -> dict[str, Any]:
    """Answers as long as the process runs; reads nothing."""
    return {"status": "ok", "version": retention.__version__}


@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Not ready"}},
    summary="The store answers (no key needed; no customer data)",
)
def ready(state: Annotated[ServiceState, Depends(get_state)]) -> Any:
    """The store can be read; whether it holds scores and models (counts only)."""
    try:
        store = state.handle.read()
        body = {
            "ready": True,
            "schema_version": store.schema_version,
            "scored": store.count_rows("scores") > 0,
            "models": store.count_rows("models"),
        }
    except RetentionError:
        return JSONResponse(
            status_code=503,
            content={"ready": False, "schema_version": 0, "scored": False, "models": 0},
        )
    return body

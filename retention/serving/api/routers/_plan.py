"""``GET /plan``: the plan, paged (the plan stage writes it; until then, empty with a note)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from retention import workflows
from retention.serving.api._deps import ReadKey, get_store
from retention.serving.api._schemas import PlanPageOut
from retention.serving.api._state import StoreHandle
from retention.serving.api.routers._common import AUTH_ERRORS

router = APIRouter(tags=["plan"])


@router.get(
    "/plan", response_model=PlanPageOut, responses=AUTH_ERRORS, summary="The plan (scope read)"
)
def get_plan(
    _key: ReadKey,
    handle: Annotated[StoreHandle, Depends(get_store)],
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """One page of the `plan` table (one row per customer), by customer id."""
    return workflows.plan_page(handle.read(), page=page, per_page=per_page).to_dict()

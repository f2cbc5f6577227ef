"""``GET /recommendations/{user_id}?k=``: the items stored for a customer (the recommendation
stage writes them; until it has run, the list is empty with a note)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from retention import workflows
from retention.serving.api._deps import ReadKey, get_index, get_store
from retention.serving.api._schemas import RecommendationsOut
from retention.serving.api._state import StoreHandle
from retention.serving.api.routers._common import AUTH_ERRORS

router = APIRouter(tags=["recommendations"])


@router.get(
    "/recommendations/{user_id}",
    response_model=RecommendationsOut,
    responses=AUTH_ERRORS,
    summary="Recommended items of a customer (scope read)",
)
def get_recommendations(
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    _key: ReadKey,
    handle: Annotated[StoreHandle, Depends(get_store)],
    index: Annotated[Any, Depends(get_index)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """The top `k` items of the `recommendations` table for the customer, best first."""
    items, note = workflows.recommendations_for(handle.read(), user_id, k, index=index)
    return {"user_id": user_id, "k": k, "items": items, "note": note}

"""``GET /customers/{user_id}``: a customer's scores, reasons, tier, recommendations and plan."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from retention import workflows
from retention.serving.api._deps import ReadKey, get_index, get_store
from retention.serving.api._schemas import CustomerOut
from retention.serving.api._state import StoreHandle
from retention.serving.api.routers._common import AUTH_ERRORS, errors

router = APIRouter(tags=["customers"])

UserId = Annotated[str, Path(min_length=1, max_length=256, description="The customer's id.")]


@router.get(
    "/customers/{user_id}",
    response_model=CustomerOut,
    responses={**AUTH_ERRORS, **errors(404)},
    summary="One customer (scope read)",
)
def get_customer(
    user_id: UserId,
    _key: ReadKey,
    handle: Annotated[StoreHandle, Depends(get_store)],
    index: Annotated[Any, Depends(get_index)],
    k: Annotated[int, Query(ge=1, le=100, description="Recommendations to show.")] = 10,
    model_version: Annotated[
        str | None, Query(min_length=1, max_length=256, description="Default: latest model.")
    ] = None,
) -> dict[str, Any]:
    """The latest stored scores and reasons (`retention score`), activity, and the later
    stages: recommendations, the planned action, the loyalty tier and points. A stage that has
    not run yet leaves its part empty (null or []) and says what to run in `notes`."""
    request = workflows.CustomerRequest(user_id=user_id, model_version=model_version, k=k)
    return workflows.customer_view(handle.read(), request, index=index).to_dict()

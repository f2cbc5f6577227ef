"""``POST /score``: the stored scores of a batch of customers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from retention import workflows
from retention.serving.api._deps import ReadKey, get_index, get_store
from retention.serving.api._schemas import ScoreBatchIn, ScoreBatchOut
from retention.serving.api._state import StoreHandle
from retention.serving.api.routers._common import AUTH_ERRORS

router = APIRouter(tags=["scores"])


@router.post(
    "/score",
    response_model=ScoreBatchOut,
    responses=AUTH_ERRORS,
    summary="Stored scores of up to 1,000 customers (scope read)",
)
def post_score(
    body: ScoreBatchIn,
    _key: ReadKey,
    handle: Annotated[StoreHandle, Depends(get_store)],
    index: Annotated[Any, Depends(get_index)],
) -> dict[str, Any]:
    """The latest scores `retention score` (or `POST /jobs/score`) stored, in the order asked;
    ids without scores are listed in `missing`. No model runs: to score again, post a score
    job."""
    batch = workflows.stored_scores(
        handle.read(), body.user_ids, model_version=body.model_version, index=index
    )
    return batch.to_dict()

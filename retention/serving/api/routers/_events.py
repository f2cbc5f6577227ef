"""``POST /events``: a batch of events through the validation and quarantine of ingest."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from retention import workflows
from retention.serving.api._deps import WriteKey, get_settings, get_state, get_store
from retention.serving.api._schemas import EventBatchIn, IngestOut
from retention.serving.api._settings import ApiSettings
from retention.serving.api._state import ServiceState, StoreHandle
from retention.serving.api.routers._common import AUTH_ERRORS, errors

router = APIRouter(tags=["events"])


@router.post(
    "/events",
    response_model=IngestOut,
    responses={**AUTH_ERRORS, **errors(503)},
    summary="Ingest a batch of events (scope write)",
)
def post_events(
    body: EventBatchIn,
    key: WriteKey,
    handle: Annotated[StoreHandle, Depends(get_store)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    state: Annotated[ServiceState, Depends(get_state)],
) -> dict[str, Any]:
    """Validate each event like `retention ingest` does: bad ones go to the quarantine with
    their reason, events already stored count as duplicates (a retried batch adds nothing), the
    rest are appended, all in one transaction. The answer is the accounting:
    `read == loaded + duplicates + quarantined`. Batches are written one at a time."""
    if len(body.events) > settings.max_batch_events:
        raise HTTPException(
            422,
            f"invalid body.events: {len(body.events):,} events; this service takes at most "
            f"{settings.max_batch_events:,} per batch.",
        )
    request = workflows.EventBatchRequest(
        events=[e.model_dump(exclude_none=True) for e in body.events],
        strict=body.strict,
        source=f"api (key {key.key_id})",
    )
    with handle.write() as store:
        report = workflows.ingest_events(store, request)
    if report.loaded:
        state.changed(scores=False)
    out = report.to_dict()
    return {k: out[k] for k in IngestOut.model_fields}

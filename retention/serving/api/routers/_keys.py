"""``/keys``: create, list and revoke API keys (scope admin), and ``/auth/me``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from retention import workflows
from retention.serving.api._deps import AdminKey, ReadKey, get_state, get_store
from retention.serving.api._schemas import KeyCreateIn, KeyOut, NewKeyOut, WhoAmIOut
from retention.serving.api._state import ServiceState, StoreHandle
from retention.serving.api.routers._common import AUTH_ERRORS, errors

router = APIRouter(tags=["keys"])

StateDep = Annotated[ServiceState, Depends(get_state)]


@router.get(
    "/auth/me", response_model=WhoAmIOut, responses=AUTH_ERRORS, summary="The key used (read)"
)
def whoami(key: ReadKey) -> dict[str, Any]:
    """The id, scope and label of the key of this request (the dashboard's login checks it)."""
    return {"key_id": key.key_id, "scope": key.scope, "name": key.name}


@router.post(
    "/keys",
    status_code=201,
    response_model=NewKeyOut,
    responses=AUTH_ERRORS,
    summary="Create a key (scope admin)",
)
def create_key(body: KeyCreateIn, _key: AdminKey, state: StateDep) -> dict[str, Any]:
    """A new key; its secret is in this answer only (the store keeps a salted hash)."""
    with state.handle.write() as store:
        new = workflows.create_api_key(store, workflows.ApiKeyRequest(body.scope, body.name))
    state.reload_keys()
    return new.to_dict()


@router.get("/keys", response_model=list[KeyOut], responses=AUTH_ERRORS, summary="Keys (admin)")
def list_keys(
    _key: AdminKey, state: StateDep, handle: Annotated[StoreHandle, Depends(get_store)]
) -> list[dict[str, Any]]:
    """Every key, revoked ones too, without secrets."""
    state.flush_usage(wait=True)
    return [k.to_dict() for k in workflows.list_api_keys(handle.read())]


@router.delete(
    "/keys/{key_id}",
    response_model=KeyOut,
    responses={**AUTH_ERRORS, **errors(404)},
    summary="Revoke a key (scope admin)",
)
def revoke_key(
    key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="12 hex digits.")],
    _key: AdminKey,
    state: StateDep,
) -> dict[str, Any]:
    """Revoke at once: the next request with it gets 401."""
    with state.handle.write() as store:
        info = workflows.revoke_api_key(store, key_id)
    state.reload_keys()
    return info.to_dict()

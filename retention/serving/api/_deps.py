"""Dependencies the routers declare with ``Depends``: the service state, the settings, the store
(a read handle, or the write handle), the model cache, the customer index, and the API key of a
scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from retention import workflows
from retention.serving.api._settings import ApiSettings
from retention.serving.api._state import ServiceState, StoreHandle, retry_after

__all__ = [
    "get_cache",
    "get_index",
    "get_settings",
    "get_state",
    "get_store",
    "require",
]

_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (`retention apikey create`)."
)
_bearer = HTTPBearer(auto_error=False, description="The same key as `Authorization: Bearer KEY`.")


async def get_state(request: Request) -> ServiceState:
    """The service state of this app (the cheap dependencies are ``async``: FastAPI runs a
    plain ``def`` one in its thread pool, a hop per dependency and request)."""
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_settings(state: StateDep) -> ApiSettings:
    """The service settings."""
    return state.settings


async def get_store(state: StateDep) -> StoreHandle:
    """The service's store. A handler reads through ``handle.read()`` (its own thread's
    connection: called in the handler, since FastAPI may run a dependency in another thread of
    its pool) and writes in ``with handle.write() as store:`` (one writer at a time)."""
    return state.handle


async def get_cache(state: StateDep) -> workflows.ModelCache:
    """The service's model cache (models of the store's registry, loaded once)."""
    return state.cache


def get_index(state: StateDep) -> Any:
    """The in-memory customer index (rebuilt after writes)."""
    return state.index()


def require(scope: str) -> Callable[..., Awaitable[workflows.ApiKey]]:
    """A dependency admitting a valid key of at least ``scope``.

    401 without a key or with an unknown or revoked one; 429 when the key spent its rate; 403
    when its scope is too small.
    """

    async def dependency(
        request: Request,
        state: StateDep,
        header: Annotated[str | None, Security(_header)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    ) -> workflows.ApiKey:
        presented = header if header else (bearer.credentials if bearer else None)
        if not presented:
            raise HTTPException(
                401,
                "missing API key: send it as X-API-Key: KEY or Authorization: Bearer KEY "
                "(create one with `retention apikey create`).",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = state.keyring.verify(presented)
        if key is None:
            raise HTTPException(
                401,
                "invalid or revoked API key: check it, or create a new one with "
                "`retention apikey create`.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        request.state.key_id = key.key_id
        wait = state.limiter.take(key.key_id)
        if wait > 0:
            raise HTTPException(
                429,
                f"rate limit of this key exceeded ({state.settings.rate_limit_per_minute} "
                "requests a minute): retry after the Retry-After seconds.",
                headers={"Retry-After": retry_after(wait)},
            )
        state.note_use(key.key_id)
        if not workflows.scope_allows(key.scope, scope):
            raise HTTPException(
                403,
                f"this key's scope is {key.scope}; this needs {scope}: use a key created with "
                f"--scope {scope}.",
            )
        return key

    dependency.__name__ = f"require_{scope}"
    return dependency


ReadKey = Annotated[workflows.ApiKey, Depends(require("read"))]
WriteKey = Annotated[workflows.ApiKey, Depends(require("write"))]
AdminKey = Annotated[workflows.ApiKey, Depends(require("admin"))]

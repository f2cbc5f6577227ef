"""What the routers share: the error responses every operation documents."""

from __future__ import annotations

from typing import Any

from retention.serving.api._schemas import ErrorOut

__all__ = ["AUTH_ERRORS", "errors"]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these status codes, all in the :class:`ErrorOut` shape."""
    text = {
        400: "Bad request",
        401: "No key, or an unknown or revoked one",
        403: "The key's scope is too small",
        404: "Not found",
        409: "The model cannot be used (changed or missing artifact)",
        413: "Request body too large",
        422: "Invalid request: the fields are named",
        429: "Rate limit of the key exceeded (see Retry-After)",
        503: "The store cannot be written",
    }
    return {c: {"model": ErrorOut, "description": text.get(c, "Error")} for c in codes}


#: the answers of every operation that needs a key
AUTH_ERRORS = errors(400, 401, 403, 413, 422, 429)

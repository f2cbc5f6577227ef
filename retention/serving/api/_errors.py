"""Errors and the middleware around every request.

What a client or the log sees of a failure: one line saying what was wrong and how to fix it
(a :class:`~retention.exceptions.RetentionError`, with the server's paths taken out), the fields
of a request that did not validate (never their values: they may be customer data), or, for a
bug, ``internal error`` and a request id. No stack trace, SQL or customer data reaches a
response or the log: the log line of a bug names the exception's type and where it was raised.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from retention.exceptions import (
    ConfigError,
    DataError,
    ModelError,
    NotFittedError,
    NotFoundError,
    RetentionError,
    StoreError,
)

__all__ = [
    "BodyLimitMiddleware",
    "RequestMiddleware",
    "install_error_handlers",
    "internal_location",
    "safe_message",
    "status_of",
]

log = logging.getLogger("retention.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PATH = re.compile(r"(?<![\w.])(?:/[^\s'\"`:,;()]+)+")
_MAX_MESSAGE = 400

#: Content-Security-Policy of every response: scripts and data from this origin only
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def safe_message(exc: BaseException) -> str:
    """The first line of an error's message, with file system paths replaced by ``<path>``."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    text = _PATH.sub("<path>", text)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def status_of(exc: RetentionError) -> int:
    """The HTTP status of a :class:`RetentionError`."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConfigError | DataError):
        return 422
    if isinstance(exc, ModelError | NotFittedError):
        return 409
    if isinstance(exc, StoreError):
        return 503
    return 400


def internal_location(frames: traceback.StackSummary) -> str:
    """``file:line`` of the innermost frame of retention in a traceback (else the last)."""
    ours = [f for f in frames if "/retention/" in f.filename.replace("\\", "/")]
    candidates = ours or list(frames)
    if not candidates:
        return "?"
    frame = candidates[-1]
    name = frame.filename.replace("\\", "/")
    short = (
        name[name.rindex("/retention/") + 1 :] if "/retention/" in name else name.rsplit("/")[-1]
    )
    return f"{short}:{frame.lineno}"


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def install_error_handlers(app: FastAPI) -> None:
    """422 naming the fields, RetentionErrors by class, HTTP errors in the same shape."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        first = fields[0] if fields else {"field": "request", "message": "invalid"}
        more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
        return JSONResponse(
            status_code=422,
            content={
                "detail": f"invalid {first['field']}: {first['message']}{more}",
                "fields": fields,
                "request_id": _request_id(request),
            },
        )

    @app.exception_handler(RetentionError)
    async def _retention(request: Request, exc: RetentionError) -> JSONResponse:
        return JSONResponse(
            status_code=status_of(exc),
            content={"detail": safe_message(exc), "request_id": _request_id(request)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Starlette names the methods of one route of the path only
            allowed = _allowed_methods(request.app.routes, request.url.path)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        return JSONResponse(
            status_code=exc.status_code,
            content={"detail": str(exc.detail), "request_id": _request_id(request)},
            headers=headers or None,
        )


def _api_routes(routes: Any) -> list[Any]:
    out: list[Any] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        out.extend(_api_routes(inner.routes) if inner is not None else [route])
    return out


def _allowed_methods(routes: Any, path: str) -> list[str]:
    """The methods of the resource at ``path``: of the routes of its most specific template
    (``/jobs/score`` rather than ``/jobs/{job_id}``)."""
    found = [
        r
        for r in _api_routes(routes)
        if getattr(r, "path_regex", None) and r.path_regex.match(path)
    ]
    if not found:
        return []
    specific = min(str(r.path).count("{") for r in found)
    return sorted(
        {m for r in found if str(r.path).count("{") == specific for m in (r.methods or ())}
    )


class BodyLimitMiddleware:
    """Refuse a request body over ``max_bytes`` with 413: by its Content-Length before it is
    read, or as soon as a chunked body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0 or length > self.max_bytes:
                    await _send_json(send, 413 if length > 0 else 400, self._message(length))
                    return
        seen = 0
        limit = self.max_bytes

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise StarletteHTTPException(413, self._message(seen))
            return message

        await self.app(scope, limited, send)

    def _message(self, length: int) -> str:
        if length < 0:
            return "invalid Content-Length header: send the body's length in bytes."
        return f"request body too large: at most {self.max_bytes:,} bytes; send smaller batches."


async def _send_json(send: Send, status: int, detail: str, headers: Any = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *_SECURITY_HEADERS,
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", CSP.encode()),
]


class RequestMiddleware:
    """Per request: an id (``X-Request-ID``), security headers, ``Cache-Control: no-store`` on
    API answers, one log line (method, route template, status, time, key id: never the
    path's values or the body), and a 500 without a trace for a bug."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        started = False
        status = 500
        t0 = time.perf_counter()
        path = str(scope.get("path", ""))
        cacheable = path.startswith("/dashboard/static/")

        async def wrapped(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers += [(b"x-request-id", rid.encode()), *_SECURITY_HEADERS]
                if not cacheable:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        except Exception as exc:
            status = 500
            log.error(
                "internal error %s in %s %s: %s at %s",
                rid,
                scope.get("method", "?"),
                _route(scope),
                type(exc).__name__,
                internal_location(traceback.extract_tb(exc.__traceback__)),
            )
            if not started:
                await _send_json(
                    send,
                    500,
                    f"internal error (request {rid}): the service log has the details.",
                    [(b"x-request-id", rid.encode()), (b"cache-control", b"no-store")],
                )
        finally:
            state = scope.get("state", {})
            log.info(
                "%s %s %d %.1fms key=%s rid=%s",
                scope.get("method", "?"),
                _route(scope),
                status,
                (time.perf_counter() - t0) * 1000,
                state.get("key_id", "-"),
                rid,
            )


def _route(scope: Scope) -> str:
    """The route template (``/customers/{user_id}``), never the path with its values."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template:
        return str(template)
    return "(no route)"

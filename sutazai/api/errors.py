"""The one error shape for every route: {"error": {"code", "message", "request_id"}}.

Domain errors (`sutazai.errors`) are mapped to their HTTP status here, and only
here; so are validation failures, unknown routes and anything unexpected. A
stack trace never reaches a client; it goes to the log with the request id.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sutazai import metrics
from sutazai.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SutazaiError,
    Unauthenticated,
    Unavailable,
    UnsupportedMedia,
)
from sutazai.schemas.engine import EngineError

logger = logging.getLogger("sutazai.errors")

STATUS_OF: dict[type[SutazaiError], int] = {
    BadRequest: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMedia: 415,
    InvalidInput: 422,
    RateLimited: 429,
    Unavailable: 503,
}

_CODE_OF_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def status_of(exc: SutazaiError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


def headers_of(exc: SutazaiError) -> dict[str, str] | None:
    if isinstance(exc, Unauthenticated):
        challenge = 'Bearer realm="sutazai"'
        if exc.challenge_error:
            challenge += f', error="{exc.challenge_error}"'
        return {"WWW-Authenticate": challenge}
    if isinstance(exc, RateLimited):
        return exc.limit_headers
    if isinstance(exc, Unavailable):
        return {"Retry-After": str(exc.retry_after_s)}
    return None


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_body(code: str, message: str, request_id: str | None, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    details: Any = None,
) -> JSONResponse:
    body = error_body(code, message, request_id_of(request), jsonable_encoder(details) if details is not None else None)
    return JSONResponse(body, status_code=status_code, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


# A dependency (Postgres above all) that is down, restarting or out of connections: the
# request may succeed a moment later, so it is a 503 with Retry-After, never a 500.
DEPENDENCY_DOWN: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A pooled connection the server has just closed (its FATAL "terminating connection" read,
    # its EOF not yet): asyncpg refuses the next query with "cannot switch to state 12;
    # another operation (2) is in progress" (2: consuming that error). Seen when Postgres stops.
    asyncpg.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def install_error_handlers(app: FastAPI, *, retry_after_s: int) -> None:
    @app.exception_handler(SutazaiError)
    async def _domain(request: Request, exc: SutazaiError) -> JSONResponse:
        if isinstance(exc, RateLimited):  # every 429 passes here, whichever limit refused it
            metrics.RATE_LIMITED.record(1, code=exc.code)
        return error_response(
            request, status_of(exc), exc.code, exc.message, headers=headers_of(exc), details=exc.details
        )

    @app.exception_handler(EngineError)
    async def _engine(request: Request, exc: EngineError) -> JSONResponse:
        return error_response(request, 400, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return error_response(request, 422, "validation_error", f"{where}: {first['msg']}", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_OF_STATUS.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return error_response(request, exc.status_code, code, message, headers=getattr(exc, "headers", None))

    async def _dependency_down(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("dependency down request_id=%s path=%s: %r", request_id_of(request), request.url.path, exc)
        message = "a backing service (database) is unavailable; retry shortly"
        return error_response(request, 503, "unavailable", message, headers={"Retry-After": str(retry_after_s)})

    for exc_class in DEPENDENCY_DOWN:
        app.add_exception_handler(exc_class, _dependency_down)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error request_id=%s path=%s", request_id_of(request), request.url.path)
        return error_response(request, 500, "internal_error", "internal server error")

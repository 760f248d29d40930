"""HTTP hardening for the ingress: CORS, request body size limit, security headers.

`install_security(app, settings)` adds two pure ASGI middlewares (no
BaseHTTPMiddleware, so SSE streams pass through untouched):

* CORS (Starlette's) from `settings.cors_origins`. No origins configured means
  no CORS headers at all (same-origin only). A "*" entry is honoured only
  without credentials: wildcard + credentials is never sent.
* `SecurityMiddleware`: refuses bodies over `settings.max_body_bytes` with a 413
  in the project's error shape (declared Content-Length is refused before the
  app runs; chunked bodies are counted as they arrive), adds security headers,
  `Cache-Control: no-store` unless the app set its own (tokens and keys must not
  be cached), and the X-RateLimit-* headers of the rate-limit decision the auth
  dependency left on `request.state`.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sutazai.api.errors import error_body
from sutazai.settings import Settings

logger = logging.getLogger("sutazai.security")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"  # only on JSON: /docs needs its scripts
HSTS = "max-age=31536000; includeSubDomains"
CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "X-Request-ID"]
CORS_EXPOSE_HEADERS = [
    "X-Request-ID",
    "WWW-Authenticate",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Limit-Tokens",
    "X-RateLimit-Remaining-Tokens",
    "X-RateLimit-Reset-Tokens",
]


UPLOAD_OVERHEAD = 64 * 1024  # multipart boundaries and part headers around an uploaded file


class BodyTooLarge(StarletteHTTPException):
    """Raised from `receive`; FastAPI's body parsing re-raises HTTPExceptions, so the
    app's own error handler answers 413 in the usual shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, upload_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.upload_limits = upload_limits or {}  # POST path -> its own body limit (file uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # the same dict request.state writes into
        limit = self.max_body_bytes
        if scope.get("method") == "POST":
            limit = self.upload_limits.get(scope.get("path", ""), limit)
        https = scope.get("scheme") == "https"
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                _add_headers(MutableHeaders(scope=message), state, https)
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send_with_headers, limit, state)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLarge:
            if started:
                raise
            await _send_413(send_with_headers, limit, state)


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _send_413(send: Send, limit: int, state: dict) -> None:
    body = json.dumps(
        error_body("payload_too_large", f"request body larger than {limit} bytes", state.get("request_id"))
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _add_headers(headers: MutableHeaders, state: dict, https: bool) -> None:
    for name, value in SECURITY_HEADERS.items():
        if name not in headers:
            headers[name] = value
    if "cache-control" not in headers:
        headers["Cache-Control"] = "no-store"
    if headers.get("content-type", "").startswith("application/json") and "content-security-policy" not in headers:
        headers["Content-Security-Policy"] = JSON_CSP
    if https and "strict-transport-security" not in headers:
        headers["Strict-Transport-Security"] = HSTS
    for key, suffix in (("rate_limit", ""), ("token_rate_limit", "-Tokens")):
        decision = state.get(key)
        if decision is not None and decision.backend != "none":
            for name, value in decision.headers(suffix).items():
                if name not in headers:
                    headers[name] = value


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add CORS and SecurityMiddleware; call before the app starts serving."""
    uploads = {"/api/v1/documents": settings.documents_max_bytes + UPLOAD_OVERHEAD}
    app.add_middleware(SecurityMiddleware, max_body_bytes=settings.max_body_bytes, upload_limits=uploads)
    origins = list(settings.cors_origins)
    if not origins:
        return  # added last = outermost, so even 413/429 answers carry CORS headers
    wildcard = "*" in origins
    if wildcard:
        logger.warning("CORS allows any origin ('*'): credentials are disabled for cross-origin requests")
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"] if wildcard else origins,
        allow_credentials=not wildcard,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=600,
    )

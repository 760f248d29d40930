"""Per request, in one pure ASGI layer: the request id, the access log line and the HTTP metrics.

Under Serve the proxy already assigns a request id (from a client's `X-Request-ID` or a
new one) and echoes it; we reuse it. Outside Serve (plain ASGI) we do both here.
Metrics carry the matched path template (`/api/v1/users/{user_id}`), never the raw
path, so the number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sutazai import metrics

logger = logging.getLogger("sutazai.access")
_SANE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
UNMATCHED = "unmatched"


def _serve_request_id() -> str | None:
    try:
        from ray.serve.context import _get_serve_request_context

        return _get_serve_request_context().request_id or None
    except Exception:
        return None


def route_template(scope: Scope) -> str:
    """The path template of the route the router matched (set in the shared scope), or "unmatched"."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class AccessMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware) so streaming responses pass through untouched.
    Outermost, so every answer (even a 413) has an id and is counted; a stream's latency
    covers the whole stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        serve_id = _serve_request_id()
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = serve_id or (incoming if _SANE.match(incoming) else uuid.uuid4().hex)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if not serve_id:
                    message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route, method = route_template(scope), str(scope.get("method", ""))
            metrics.HTTP_REQUESTS.record(1, route=route, method=method, status=str(status))
            metrics.HTTP_REQUEST_DURATION.record(elapsed, route=route, method=method)
            if not serve_id:  # Serve's replica log already has an access line with the id
                logger.info("%s %s %s %.1fms request_id=%s", method, scope["path"], status, elapsed * 1000, request_id)

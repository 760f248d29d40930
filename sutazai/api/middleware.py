"""Per request, in one pure ASGI layer: the request id, the access log line and the HTTP metrics.

Under Serve the proxy already assigns a request id (from a client's `X-Request-ID` or a
new one) and echoes it; we reuse it. Outside Serve (plain ASGI) we do both here.
Metrics carry the matched path template (`/api/v1/users/{user_id}`), never the raw
path, so the number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import asyncio
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

    FLUSH_S = 1.0  # request counts are added up here and recorded at most this often

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Ray's Counter.inc cost ~10% of the replica's time on /health under load: count here,
        # record once a second per (route, method, status). The latency histogram stays per request.
        self._counts: dict[tuple[str, str, str], int] = {}
        self._flushed = 0.0
        self._flush_later: asyncio.TimerHandle | None = None

    def _count(self, route: str, method: str, status: str, now: float) -> None:
        key = (route, method, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        if now - self._flushed >= self.FLUSH_S:
            self._flush()
        elif self._flush_later is None:  # what the last second counted is recorded even if traffic stops
            self._flush_later = asyncio.get_running_loop().call_later(self.FLUSH_S, self._flush)

    def _flush(self) -> None:
        if self._flush_later is not None:
            self._flush_later.cancel()
            self._flush_later = None
        self._flushed = time.perf_counter()
        counts, self._counts = self._counts, {}
        for (route, method, status), n in counts.items():
            metrics.HTTP_REQUESTS.record(n, route=route, method=method, status=status)

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
            now = time.perf_counter()
            elapsed = now - started
            route, method = route_template(scope), str(scope.get("method", ""))
            self._count(route, method, str(status), now)
            metrics.HTTP_REQUEST_DURATION.record(elapsed, route=route, method=method)
            if not serve_id:  # Serve's replica log already has an access line with the id
                logger.info("%s %s %s %.1fms request_id=%s", method, scope["path"], status, elapsed * 1000, request_id)

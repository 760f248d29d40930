"""Request count and latency by route template.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses pass through untouched. The
route is the matched path template (`/api/v1/users/{user_id}`), never the raw path, so
the number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sutazai import metrics

UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The path template of the route the router matched (set in the shared scope), or "unmatched"."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route, method = route_template(scope), str(scope.get("method", ""))
            metrics.HTTP_REQUESTS.record(1, route=route, method=method, status=str(status))
            metrics.HTTP_REQUEST_DURATION.record(time.perf_counter() - started, route=route, method=method)

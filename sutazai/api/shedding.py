"""Load shedding at the door: while every served model is at capacity, a request to a route that
runs a model gets its 503 before anything else is done for it.

The exact check is per model and per caller (`ModelCaller.reserve`, `sutazai.admission`), but it
runs after the body is parsed and the caller authenticated (a Redis round trip): in a flood those
awaits interleave and every refusal waits its turn behind the others. Here, with no model able to
take a call, the answer needs no body, no credential and no await. A model with room sends the
request on to the exact check, so nothing that could be served is refused here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

from sutazai.api.errors import error_body
from sutazai.inference import InferenceService

F = TypeVar("F", bound=Callable[..., Any])


def runs_model(endpoint: F) -> F:
    """Marks a route that runs a model (shed by `SheddingMiddleware` while every model is full)."""
    endpoint.runs_model = True  # type: ignore[attr-defined]
    return endpoint


def model_paths(routes: list[Any]) -> frozenset[str]:
    """The paths of the routes marked with `runs_model` (included routers' routes too)."""
    from fastapi.routing import iter_route_contexts

    return frozenset(
        str(r.path) for r in iter_route_contexts(routes) if getattr(getattr(r, "endpoint", None), "runs_model", False)
    )


class SheddingMiddleware:
    """Pure ASGI, innermost: the 503 still gets the request id, security headers and metrics."""

    def __init__(self, app: ASGIApp, *, inference: InferenceService, paths: frozenset[str], retry_after_s: int):
        self.app = app
        self.inference = inference
        self.paths = paths
        self.retry_after = str(retry_after_s).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths or not self.inference.at_capacity():
            await self.app(scope, receive, send)
            return
        request_id = scope.get("state", {}).get("request_id")
        body = json.dumps(error_body("unavailable", "every model is at capacity; retry later", request_id)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", self.retry_after),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

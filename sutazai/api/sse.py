"""Server-sent events through sse-starlette: framing, keep-alive pings, disconnects.

A client that goes away cancels the event generator, whose `finally` frees the
model's sequence. Pings are SSE comments, which clients (the `openai` SDK too) skip.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

PING_INTERVAL_S = 15
SEPARATOR = "\n"


def event(data: BaseModel | dict[str, Any] | str, name: str | None = None) -> ServerSentEvent:
    """One event; models are sent as their JSON (unset fields left out, as OpenAI does)."""
    if isinstance(data, BaseModel):
        payload = data.model_dump_json(exclude_unset=True)
    elif isinstance(data, dict):
        payload = json.dumps(data, separators=(",", ":"), default=str)
    else:
        payload = data
    return ServerSentEvent(data=payload, event=name, sep=SEPARATOR)


def sse_response(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(events, sep=SEPARATOR, ping=PING_INTERVAL_S)


SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "a stream of server-sent events"}
}

"""Request and response models of the MCP routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sutazai.schemas.common import Text


class ExecuteRequest(BaseModel):
    """POST /api/v1/mcp/execute body: one tool call."""

    model_config = ConfigDict(extra="forbid")

    server: Text = Field(min_length=1, max_length=64)
    tool: Text = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ServerStatus(BaseModel):
    """A configured server as its actor reports it. A disabled one has only name and status; a caller
    whose role may not use it sees only name, status, roles and tools; a per_user one is the caller's own
    process, "idle" before their first call."""

    name: str
    status: str
    roles: list[str] = []
    scope: str | None = None
    pid: int | None = None
    actor_pid: int | None = None
    restarts: int | None = None
    tools: int | None = None
    last_error: str | None = None
    in_flight: int | None = None
    generation: int | None = None
    uptime_s: float | None = None
    server_info: dict[str, Any] | None = None
    fingerprint: str | None = None


class ToolInfo(BaseModel):
    name: str
    description: str = ""
    input_schema: dict[str, Any] = {}
    title: str | None = None
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None


class ToolResult(BaseModel):
    """A tool's answer; its own failure is `is_error: true`, not an HTTP error."""

    server: str
    tool: str
    is_error: bool
    content: list[dict[str, Any]]
    structured_content: Any = None
    text: str
    truncated: bool = False  # the result was over the server's max_result_bytes: a note ends the content
    latency_ms: float

"""Request and response models of the MCP routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExecuteRequest(BaseModel):
    """POST /api/v1/mcp/execute body: one tool call."""

    model_config = ConfigDict(extra="forbid")

    server: str = Field(min_length=1, max_length=64)
    tool: str = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ServerStatus(BaseModel):
    """A configured server as its actor reports it (a disabled one has only name and status)."""

    name: str
    status: str
    roles: list[str] = []
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
    latency_ms: float

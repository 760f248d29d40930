"""Response models of the system routes: liveness, health, status, the cache."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sutazai.schemas.common import Text


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class RootInfo(BaseModel):
    name: str
    version: str
    docs: str
    openapi: str
    health: str
    models: list[str]


class ComponentHealth(BaseModel):
    """One dependency: ok, down, disabled (MCP), with the latency of the check."""

    status: str
    latency_ms: float | None = None
    error: str | None = None
    detail: dict[str, object] | None = None
    # MCP servers also report these.
    server_status: str | None = None
    ping_ms: float | None = None
    pid: int | None = None
    restarts: int | None = None
    tools: int | None = None
    last_error: str | None = None
    lane: bool | None = None  # this replica calls the server over its actor's same-node socket, not Ray


class HealthReport(BaseModel):
    status: Literal["ok", "degraded", "down"]
    version: str
    components: dict[str, ComponentHealth]
    cluster: str = "/api/v1/cluster/status"  # nodes, replicas and actors, from Ray


class DeploymentState(BaseModel):
    status: str
    replicas: dict[str, int]


class StatusReport(BaseModel):
    version: str
    uptime_s: float
    models: list[str]
    default_model: str | None
    cache_enabled: bool
    mcp_enabled: bool
    deployments: dict[str, DeploymentState]
    deployments_error: str | None = None


class CacheStats(BaseModel):
    enabled: bool
    entries: int
    hits: int
    misses: int
    hit_rate: float
    ttl_s: int


class CacheInvalidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Text | None = Field(default=None, max_length=64)


class CacheInvalidated(BaseModel):
    deleted: int
    model: str | None

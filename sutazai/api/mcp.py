"""MCP tools over HTTP: list servers and their tools, call a tool, restart a server (admin).

The routes are thin: `MCPGateway` (sutazai/mcp/gateway.py) does the role
check, argument validation and error mapping; the actors run the servers.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from sutazai.errors import APIError

router = APIRouter(prefix="/api/v1/mcp", tags=["mcp"])


# ---- caller role: PLACEHOLDER until the auth issue wires the real principal ----
# The auth dependency will set the authenticated caller's role; until then a
# request without one is treated as admin. Replace these two functions (keep
# their names and signatures) when auth is wired in.
def caller_role(request: Request) -> str:
    """The caller's role (admin, user, viewer). PLACEHOLDER: defaults to admin."""
    return getattr(request.state, "role", "admin")


def require_admin(role: str = Depends(caller_role)) -> str:
    """Admin-only routes depend on this. PLACEHOLDER: same source of role as caller_role."""
    if role != "admin":
        raise APIError(403, "forbidden", "this action needs the admin role")
    return role
# ---- end of placeholder ------------------------------------------------------


class ExecuteRequest(BaseModel):
    """POST /api/v1/mcp/execute body: one tool call."""

    model_config = ConfigDict(extra="forbid")

    server: str = Field(min_length=1, max_length=64)
    tool: str = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict)


def get_gateway(request: Request):
    services = getattr(request.app.state, "services", None)
    gateway = getattr(services, "mcp", None)
    if gateway is None:
        raise APIError(503, "unavailable", "MCP is disabled")
    return gateway


@router.get("/servers")
async def list_servers(gateway=Depends(get_gateway)):
    """Every configured server with its status, process id, restarts and tool count."""
    return {"servers": await gateway.servers()}


@router.get("/servers/{name}/tools")
async def list_tools(name: str, gateway=Depends(get_gateway), role: str = Depends(caller_role)):
    """The server's tools with their input schemas (403 for a role that may not use the server)."""
    return {"server": name, "tools": await gateway.tools(name, role)}


@router.post("/execute")
async def execute(body: ExecuteRequest, gateway=Depends(get_gateway), role: str = Depends(caller_role)):
    """Call a tool. A tool's own failure is a 200 with `is_error: true`; a down server is a 503."""
    return await gateway.execute(body.server, body.tool, body.arguments, role)


@router.post("/servers/{name}/restart")
async def restart_server(name: str, gateway=Depends(get_gateway), role: str = Depends(require_admin)):
    """Admin: stop the server process and start it again; answers with its new status."""
    return await gateway.restart(name)

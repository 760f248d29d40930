"""MCP tools over HTTP: list servers and their tools, call a tool, restart a server (admin).

The routes are thin: `MCPGateway` (sutazai/mcp/gateway.py) does the role
check, argument validation and error mapping; the actors run the servers.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from sutazai.auth import audit
from sutazai.auth.principal import Principal, require_admin, require_user, require_viewer
from sutazai.errors import APIError

router = APIRouter(prefix="/api/v1/mcp", tags=["mcp"])




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


# Parameters in this order: authenticate first, so an anonymous caller gets 401 even when MCP is off.
@router.get("/servers", dependencies=[Depends(require_viewer)])
async def list_servers(gateway=Depends(get_gateway)):
    """Every configured server with its status, process id, restarts and tool count."""
    return {"servers": await gateway.servers()}


@router.get("/servers/{name}/tools")
async def list_tools(name: str, caller: Principal = Depends(require_viewer), gateway=Depends(get_gateway)):
    """The server's tools with their input schemas (403 for a role that may not use the server)."""
    return {"server": name, "tools": await gateway.tools(name, caller.role)}


@router.post("/execute")
async def execute(body: ExecuteRequest, caller: Principal = Depends(require_user), gateway=Depends(get_gateway)):
    """Call a tool. A tool's own failure is a 200 with `is_error: true`; a down server is a 503."""
    return await gateway.execute(body.server, body.tool, body.arguments, caller.role)


@router.post("/servers/{name}/restart")
async def restart_server(name: str, request: Request, caller: Principal = Depends(require_admin),
                         gateway=Depends(get_gateway)):
    """Admin: stop the server process and start it again; answers with its new status."""
    status = await gateway.restart(name)
    await audit.record_request(request, "mcp.restart", target=name)
    return status

"""MCP tools over HTTP: list servers and their tools, call a tool, restart a server (admin).

The routes are thin: `MCPGateway` does the role check, argument validation and
error mapping; the actors run the servers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from sutazai.api.deps import AdminDep, AuditDep, PageDep, ServicesDep, UserDep, ViewerDep
from sutazai.errors import Unavailable
from sutazai.mcp.gateway import MCPGateway
from sutazai.schemas.common import Page
from sutazai.schemas.mcp import ExecuteRequest, ServerStatus, ToolInfo, ToolResult

router = APIRouter(prefix="/api/v1/mcp", tags=["mcp"])


def get_gateway(services: ServicesDep) -> MCPGateway:
    if services.mcp is None:
        raise Unavailable("MCP is disabled", services.settings.retry_after_s)
    return services.mcp


# Callers are declared before the gateway: an anonymous caller gets 401 even when MCP is off.
GatewayDep = Annotated[MCPGateway, Depends(get_gateway)]


@router.get("/servers", response_model=Page[ServerStatus])
async def list_servers(caller: ViewerDep, gateway: GatewayDep, page: PageDep) -> Page[ServerStatus]:
    """Every configured server with its status, process id, restarts and tool count."""
    servers = [ServerStatus.model_validate(s) for s in await gateway.servers()]
    return Page.of_all(servers, page.limit, page.offset)


@router.get("/servers/{name}/tools", response_model=Page[ToolInfo])
async def list_tools(name: str, caller: ViewerDep, gateway: GatewayDep, page: PageDep) -> Page[ToolInfo]:
    """The server's tools with their input schemas (403 for a role that may not use the server)."""
    tools = [ToolInfo.model_validate(t) for t in await gateway.tools(name, caller.effective_role)]
    return Page.of_all(tools, page.limit, page.offset)


@router.post("/execute", response_model=ToolResult)
async def execute(body: ExecuteRequest, caller: UserDep, gateway: GatewayDep) -> ToolResult:
    """Call a tool. A tool's own failure is a 200 with `is_error: true`; a down server is a 503."""
    return ToolResult.model_validate(
        await gateway.execute(body.server, body.tool, body.arguments, caller.effective_role)
    )


@router.post("/servers/{name}/restart", response_model=ServerStatus)
async def restart_server(name: str, caller: AdminDep, gateway: GatewayDep, audit: AuditDep) -> ServerStatus:
    """Admin: stop the server process and start it again; answers with its new status."""
    status = await gateway.restart(name)
    await audit.record("mcp.restart", target=name)
    return ServerStatus.model_validate(status)

"""MCP tools over HTTP: list servers and their tools, call a tool, restart a server (admin).

The routes are thin: `MCPGateway` does the role check, argument validation and
error mapping; the actors run the servers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends

from sutazai.api.deps import AdminDep, AuditDep, PageDep, ServicesDep, UserDep, ViewerDep
from sutazai.errors import SutazaiError, Unavailable
from sutazai.mcp.gateway import MCPGateway
from sutazai.schemas.common import Page
from sutazai.schemas.mcp import ExecuteRequest, ServerStatus, ToolInfo, ToolResult

router = APIRouter(prefix="/api/v1/mcp", tags=["mcp"])

MAX_AUDITED_NAMES = 50  # argument names kept in an audit entry


async def get_gateway(services: ServicesDep) -> MCPGateway:
    if services.mcp is None:
        raise Unavailable("MCP is disabled", services.settings.retry_after_s)
    return services.mcp


# Callers are declared before the gateway: an anonymous caller gets 401 even when MCP is off.
GatewayDep = Annotated[MCPGateway, Depends(get_gateway)]


@router.get("/servers", response_model=Page[ServerStatus])
async def list_servers(caller: ViewerDep, gateway: GatewayDep, page: PageDep) -> Page[ServerStatus]:
    """Every configured server with its status and tool count; process ids, restarts and the last
    error only of servers the caller may use (a per_user server: the caller's own process)."""
    servers = await gateway.servers(caller.effective_role, caller.user_id.hex)
    return Page.of_all([ServerStatus.model_validate(s) for s in servers], page.limit, page.offset)


@router.get("/servers/{name}/tools", response_model=Page[ToolInfo])
async def list_tools(name: str, caller: ViewerDep, gateway: GatewayDep, page: PageDep) -> Page[ToolInfo]:
    """The server's tools with their input schemas (403 for a role that may not use the server)."""
    tools = await gateway.tools(name, caller.effective_role, caller.user_id.hex)
    return Page.of_all([ToolInfo.model_validate(t) for t in tools], page.limit, page.offset)


@router.post("/execute", response_model=ToolResult)
async def execute(
    body: ExecuteRequest, caller: UserDep, gateway: GatewayDep, audit: AuditDep, background: BackgroundTasks
) -> ToolResult:
    """Call a tool. A tool's own failure is a 200 with `is_error: true`; a down server is a 503.

    Every call is audited, refused ones too: server/tool, the argument names (never their values)
    and the outcome; a call that ran is written once its answer is sent.
    """
    target = f"{body.server}/{body.tool}"
    names = {"arguments": [_loggable(name) for name in list(body.arguments)[:MAX_AUDITED_NAMES]]}
    try:
        result = await gateway.execute(
            body.server, body.tool, body.arguments, caller.effective_role, user=caller.user_id.hex
        )
    except SutazaiError as exc:
        await audit.record("mcp.execute", target=target, details={**names, "error": exc.code})
        raise
    audit.record_after_response(
        background, "mcp.execute", target=target, details={**names, "is_error": result["is_error"]}
    )
    return ToolResult.model_validate(result)


@router.post("/servers/{name}/restart", response_model=ServerStatus)
async def restart_server(name: str, caller: AdminDep, gateway: GatewayDep, audit: AuditDep) -> ServerStatus:
    """Admin: stop the server process and start it again; answers with its new status.
    For a per_user server, the admin's own process (other users' restart when next used after idling)."""
    status = await gateway.restart(name, caller.user_id.hex)
    await audit.record("mcp.restart", target=name)
    return ServerStatus.model_validate(status)


def _loggable(name: str) -> str:
    """An argument name as the audit log can store it: no lone surrogate, no NUL, bounded."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")[:100]

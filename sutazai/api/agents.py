"""Agent definitions: anyone signed in reads them; admins create, replace and delete
the ones made here. Agents from files in the agents folder are read-only here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from sutazai.agents.definitions import check_tools
from sutazai.api.deps import AdminDep, AuditDep, PageDep, ServicesDep, ViewerDep
from sutazai.errors import InvalidInput, NotFound
from sutazai.schemas.agent_api import AgentOut, AgentSource
from sutazai.schemas.agents import AgentDefinition, AgentName
from sutazai.schemas.common import Page
from sutazai.services import Services
from sutazai.storage.agents import StoredAgent

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


def _out(agent: StoredAgent) -> AgentOut:
    return AgentOut.model_validate(agent.model_dump())


def _check(definition: AgentDefinition, services: Services) -> None:
    """422 unless the model is served here (or null: the default) and every tool is an allowed MCP tool."""
    if definition.model is not None and services.catalog.get(definition.model) is None:
        served = ", ".join(services.catalog.names()) or "none"
        raise InvalidInput(
            f"model {definition.model!r} is not served here (served: {served}; null means the default model)",
            code="unknown_model",
        )
    check_tools(definition, services.mcp_config)


def _audit_details(definition: AgentDefinition) -> dict[str, object]:
    return {"model": definition.model, "tools": definition.tools}


@router.get("", response_model=Page[AgentOut], summary="List agents")
async def list_agents(
    caller: ViewerDep,
    services: ServicesDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=200, description="a part of the name or description")] = None,
    source: Annotated[AgentSource | None, Query()] = None,
) -> Page[AgentOut]:
    items, total = await services.agents.page(limit=page.limit, offset=page.offset, q=q, source=source)
    return Page(items=[_out(a) for a in items], total=total, limit=page.limit, offset=page.offset)


@router.get("/{name}", response_model=AgentOut, summary="Get an agent")
async def get_agent(name: AgentName, caller: ViewerDep, services: ServicesDep) -> AgentOut:
    agent = await services.agents.get(name)
    if agent is None:
        raise NotFound(f"agent {name!r} not found")
    return _out(agent)


@router.post("", response_model=AgentOut, status_code=201, summary="Create an agent")
async def create_agent(body: AgentDefinition, caller: AdminDep, services: ServicesDep, audit: AuditDep) -> AgentOut:
    _check(body, services)
    agent = await services.agents.create(body)
    await audit.record("agent.create", target=agent.name, details=_audit_details(body))
    return _out(agent)


@router.put("/{name}", response_model=AgentOut, summary="Replace an agent made through the API")
async def replace_agent(
    name: AgentName, body: AgentDefinition, caller: AdminDep, services: ServicesDep, audit: AuditDep
) -> AgentOut:
    if body.name != name:
        raise InvalidInput(f"the body's name {body.name!r} differs from the path's {name!r}; agents cannot be renamed")
    _check(body, services)
    agent = await services.agents.replace(name, body)
    await audit.record("agent.replace", target=name, details=_audit_details(body))
    return _out(agent)


@router.delete("/{name}", status_code=204, response_class=Response, summary="Delete an agent made through the API")
async def delete_agent(name: AgentName, caller: AdminDep, services: ServicesDep, audit: AuditDep) -> Response:
    await services.agents.delete(name)
    await audit.record("agent.delete", target=name)
    return Response(status_code=204)

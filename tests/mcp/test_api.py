"""The /api/v1/mcp routes on a small FastAPI app, over the real gateway, actors and servers."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest_asyncio
from fastapi import FastAPI, Request

import uuid

from sutazai.api.mcp import router
from sutazai.auth.principal import Principal, require_admin, require_user, require_viewer
from sutazai.auth.roles import at_least
from sutazai.errors import APIError, install_error_handlers


def make_app(gateway) -> FastAPI:
    """The router over the real gateway; the caller's role comes from a test header
    (real authentication is covered end to end in tests/test_auth_wiring.py)."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.services = SimpleNamespace(mcp=gateway)

    def as_role(required: str):
        def caller(request: Request) -> Principal:
            role = request.headers.get("x-test-role", "admin")
            if not at_least(role, required):
                raise APIError(403, "forbidden", f"requires role {required}")
            return Principal(user_id=uuid.uuid4(), username="t", role=role, auth_method="jwt", scopes=("admin",))
        return caller

    for dependency, role in ((require_viewer, "viewer"), (require_user, "user"), (require_admin, "admin")):
        app.dependency_overrides[dependency] = as_role(role)
    return app


@pytest_asyncio.fixture(loop_scope="session")
async def client(gateway):
    transport = httpx.ASGITransport(app=make_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_get_servers_lists_every_configured_server(client):
    response = await client.get("/api/v1/mcp/servers")
    assert response.status_code == 200
    servers = {s["name"]: s for s in response.json()["servers"]}
    assert servers["time"]["status"] == "ready" and servers["time"]["roles"] == ["admin", "user"]
    assert servers["off"]["status"] == "disabled"


async def test_get_tools_returns_the_servers_tools_with_schemas(client):
    response = await client.get("/api/v1/mcp/servers/filesystem/tools")
    assert response.status_code == 200
    tools = {t["name"]: t for t in response.json()["tools"]}
    assert tools["write_file"]["input_schema"]["required"] == ["path", "content"]


async def test_post_execute_calls_the_tool(client):
    body = {"server": "time", "tool": "convert_time",
            "arguments": {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}}
    response = await client.post("/api/v1/mcp/execute", json=body)
    assert response.status_code == 200
    assert response.json()["is_error"] is False
    assert response.json()["structured_content"]["target"]["datetime"].endswith("T21:00:00+09:00")


async def test_a_tool_error_is_a_200_with_is_error(client):
    body = {"server": "time", "tool": "get_current_time", "arguments": {"timezone": "Nowhere/Land"}}
    response = await client.post("/api/v1/mcp/execute", json=body)
    assert response.status_code == 200 and response.json()["is_error"] is True


async def test_execute_refuses_unknown_body_fields(client):
    body = {"server": "time", "tool": "get_current_time", "arguments": {}, "timeout": 5}
    response = await client.post("/api/v1/mcp/execute", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_arguments_against_the_schema_are_a_422_in_the_error_shape(client):
    body = {"server": "time", "tool": "get_current_time", "arguments": {"timezone": ["UTC"]}}
    response = await client.post("/api/v1/mcp/execute", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error" and "timezone" in error["message"]
    assert error["details"][0]["loc"] == ["arguments", "timezone"]


async def test_an_unknown_server_is_a_404(client):
    response = await client.get("/api/v1/mcp/servers/weather/tools")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_a_role_without_access_is_a_403(client):
    body = {"server": "everything", "tool": "echo", "arguments": {"message": "hi"}}
    response = await client.post("/api/v1/mcp/execute", json=body, headers={"x-test-role": "user"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


async def test_the_tools_of_a_server_the_role_may_not_use_are_a_403(client):
    response = await client.get("/api/v1/mcp/servers/everything/tools", headers={"x-test-role": "user"})
    assert response.status_code == 403


async def test_a_server_that_is_down_is_a_503_with_retry_after(client):
    body = {"server": "broken", "tool": "anything", "arguments": {}}
    response = await client.post("/api/v1/mcp/execute", json=body)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert "broken" in response.json()["error"]["message"]


async def test_restart_is_refused_to_non_admins(client):
    response = await client.post("/api/v1/mcp/servers/time/restart", headers={"x-test-role": "user"})
    assert response.status_code == 403


async def test_every_route_is_a_503_when_mcp_is_disabled():
    transport = httpx.ASGITransport(app=make_app(None))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/api/v1/mcp/servers")
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "MCP is disabled"

"""The /api/v1/mcp routes on the real app, over the real gateway, actors and servers,
with real users of each role (a throwaway database, the test Redis)."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid

import httpx
import pytest_asyncio
from pydantic import SecretStr

from sutazai.settings import Settings
from tests.helpers import REDIS_URL, app_for, client_for, fresh_database, signed_in

PASSWORD = secrets.token_urlsafe(16)


def app_settings(database_url: str, mcp_settings: Settings) -> Settings:
    return mcp_settings.model_copy(
        update={
            "database_url": database_url,
            "redis_url": REDIS_URL,
            "jwt_secret": SecretStr(secrets.token_urlsafe(48)),
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mcp_app(gateway, mcp_settings):
    async with (
        fresh_database("sutazai_mcp_test") as database_url,
        app_for(app_settings(database_url, mcp_settings), mcp=gateway) as (app, services),
        client_for(app) as client,
    ):
        headers = {role: await signed_in(client, services, role, PASSWORD) for role in ("admin", "user", "viewer")}
        yield client, headers


class RoleClient:
    """The app's client, signed in as admin unless a request names another role."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, dict[str, str]]) -> None:
        self.client, self.headers = client, headers

    async def get(self, url: str, role: str = "admin") -> httpx.Response:
        return await self.client.get(url, headers=self.headers[role])

    async def post(self, url: str, json: dict | None = None, role: str = "admin") -> httpx.Response:
        return await self.client.post(url, json=json, headers=self.headers[role])


@pytest_asyncio.fixture(loop_scope="session")
async def client(mcp_app):
    return RoleClient(*mcp_app)


async def test_get_servers_lists_every_configured_server(client):
    response = await client.get("/api/v1/mcp/servers")
    assert response.status_code == 200
    servers = {s["name"]: s for s in response.json()["items"]}
    assert servers["time"]["status"] == "ready" and servers["time"]["roles"] == ["admin", "user"]
    assert servers["off"]["status"] == "disabled"


async def test_get_tools_returns_the_servers_tools_with_schemas(client):
    response = await client.get("/api/v1/mcp/servers/filesystem/tools")
    assert response.status_code == 200
    tools = {t["name"]: t for t in response.json()["items"]}
    assert tools["write_file"]["input_schema"]["required"] == ["path", "content"]


async def test_post_execute_calls_the_tool(client):
    body = {
        "server": "time",
        "tool": "convert_time",
        "arguments": {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
    }
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
    response = await client.post("/api/v1/mcp/execute", json=body, role="user")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


async def test_the_tools_of_a_server_the_role_may_not_use_are_a_403(client):
    response = await client.get("/api/v1/mcp/servers/everything/tools", role="user")
    assert response.status_code == 403


async def test_a_server_that_is_down_is_a_503_with_retry_after(client):
    body = {"server": "broken", "tool": "anything", "arguments": {}}
    response = await client.post("/api/v1/mcp/execute", json=body)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert "broken" in response.json()["error"]["message"]


async def test_restart_is_refused_to_non_admins(client):
    response = await client.post("/api/v1/mcp/servers/time/restart", role="user")
    assert response.status_code == 403


async def test_every_route_is_a_503_when_mcp_is_disabled(mcp_settings):
    async with (
        fresh_database("sutazai_mcp_test") as database_url,
        app_for(app_settings(database_url, mcp_settings)) as (app, services),
        client_for(app) as client,
    ):
        headers = await signed_in(client, services, "viewer", PASSWORD)
        response = await client.get("/api/v1/mcp/servers", headers=headers)
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "MCP is disabled"


async def test_arguments_that_are_not_valid_unicode_are_a_422_and_the_server_keeps_serving(client):
    bad = {"server": "time", "tool": "get_current_time", "arguments": {"timezone": "x\ud800"}}
    body = json.dumps(bad)  # ASCII-escaped: "\ud800" is valid JSON text that decodes to a lone surrogate
    headers = {**client.headers["user"], "content-type": "application/json"}
    response = await client.client.post("/api/v1/mcp/execute", content=body, headers=headers)
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
    good = {"server": "time", "tool": "get_current_time", "arguments": {"timezone": "UTC"}}
    assert (await client.post("/api/v1/mcp/execute", json=good, role="user")).status_code == 200


async def test_an_admins_read_write_api_key_cannot_reach_an_admin_only_server(client):
    created = await client.post("/api/v1/auth/keys", json={"name": "laptop", "scopes": ["read", "write"]})
    assert created.status_code == 201, created.text
    key_headers = {"Authorization": f"Bearer {created.json()['key']}"}
    body = {"server": "everything", "tool": "echo", "arguments": {"message": "hi"}}
    response = await client.client.post("/api/v1/mcp/execute", json=body, headers=key_headers)
    assert response.status_code == 403
    tools = await client.client.get("/api/v1/mcp/servers/everything/tools", headers=key_headers)
    assert tools.status_code == 403


async def audit_of(client: RoleClient, role: str) -> list[dict]:
    """The mcp.execute audit entries of the signed-in user of `role`, newest first."""
    me = (await client.get("/api/v1/auth/me", role=role)).json()
    params = f"action=mcp.execute&actor_id={me['id']}"
    return (await client.get(f"/api/v1/audit?{params}")).json()["items"]


async def test_every_execute_is_audited_with_the_argument_names_but_not_their_values(client):
    body = {"server": "time", "tool": "get_current_time", "arguments": {"timezone": "Pacific/Chatham"}}
    before = len(await audit_of(client, "user"))
    assert (await client.post("/api/v1/mcp/execute", json=body, role="user")).status_code == 200
    for _ in range(100):  # written by the replica right after the response
        entries = await audit_of(client, "user")
        if len(entries) > before:
            break
        await asyncio.sleep(0.02)
    entry = entries[0]
    assert entry["target"] == "time/get_current_time"
    assert entry["details"] == {"arguments": ["timezone"], "is_error": False}
    assert "Chatham" not in json.dumps(entry)


async def test_a_refused_execute_is_audited_with_its_error_code(client):
    body = {"server": "everything", "tool": "echo", "arguments": {"message": "hi"}}
    assert (await client.post("/api/v1/mcp/execute", json=body, role="user")).status_code == 403
    entry = (await audit_of(client, "user"))[0]
    assert (entry["target"], entry["details"]) == ("everything/echo", {"arguments": ["message"], "error": "forbidden"})


async def test_a_viewer_sees_only_name_status_roles_and_tools_of_servers_it_may_not_use(client):
    servers = {s["name"]: s for s in (await client.get("/api/v1/mcp/servers", role="viewer")).json()["items"]}
    hidden = {k: v for k, v in servers["broken"].items() if k not in ("name", "status", "roles", "tools")}
    assert servers["broken"]["status"] == "failed"
    assert all(v is None for v in hidden.values()), hidden
    assert servers["time"]["pid"] is None and servers["time"]["actor_pid"] is None


async def test_a_user_sees_the_last_error_of_a_server_they_may_use(client):
    servers = {s["name"]: s for s in (await client.get("/api/v1/mcp/servers", role="user")).json()["items"]}
    assert "broken on purpose" in servers["broken"]["last_error"]
    assert servers["everything"]["pid"] is None  # admin-only


async def test_each_signed_in_user_has_their_own_files(client, mcp_settings):
    me = (await client.get("/api/v1/auth/me", role="user")).json()
    path = str(mcp_settings.data_dir / "users" / uuid.UUID(me["id"]).hex / "files" / "diary.txt")
    write = {"server": "filesystem", "tool": "write_file", "arguments": {"path": path, "content": "dear diary"}}
    assert (await client.post("/api/v1/mcp/execute", json=write, role="user")).json()["is_error"] is False
    read = {"server": "filesystem", "tool": "read_text_file", "arguments": {"path": path}}
    assert (await client.post("/api/v1/mcp/execute", json=read, role="user")).json()["text"] == "dear diary"
    other = (await client.post("/api/v1/mcp/execute", json=read, role="admin")).json()
    assert other["is_error"] is True and "dear diary" not in other["text"]

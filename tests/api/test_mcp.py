"""MCP servers through the running Serve app: real stdio servers owned by Ray
actors, reached over HTTP with real credentials."""

import asyncio
import time

import httpx


def test_mcp_servers_are_listed_with_their_status(api):
    deadline = time.monotonic() + 60  # the servers start in the background with the app
    while True:
        servers = {s["name"]: s for s in api.get("/api/v1/mcp/servers").json()["items"]}
        if servers["time"]["status"] != "starting" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {"time", "git", "filesystem"} <= set(servers)
    assert servers["time"]["status"] == "ready" and servers["time"]["tools"] >= 1


def test_a_user_calls_the_time_server_through_serve(api):
    r = api.post(
        "/api/v1/mcp/execute",
        json={
            "server": "time",
            "tool": "convert_time",
            "arguments": {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["is_error"] is False and "21:00" in str(r.json()["structured_content"])


def test_a_user_may_not_use_an_admin_only_server(api):
    r = api.post("/api/v1/mcp/execute", json={"server": "git", "tool": "git_status", "arguments": {"repo_path": "."}})
    assert r.status_code == 403


def test_an_admin_restart_is_audited(admin_api):
    before = {s["name"]: s for s in admin_api.get("/api/v1/mcp/servers").json()["items"]}["time"]
    r = admin_api.post("/api/v1/mcp/servers/time/restart")
    assert r.status_code == 200 and r.json()["pid"] != before["pid"]
    actions = [e["action"] for e in admin_api.get("/api/v1/audit", params={"limit": 20}).json()["items"]]
    assert "mcp.restart" in actions


def test_detailed_health_includes_each_mcp_server(admin_api):
    components = admin_api.get("/api/v1/health/detailed").json()["components"]
    assert components["mcp:time"]["status"] == "ok" and components["mcp:filesystem"]["status"] == "ok"


async def test_fifty_concurrent_tool_calls_over_http_all_succeed(serve_app, user_headers):
    body = {"server": "time", "tool": "get_current_time", "arguments": {"timezone": "Europe/Paris"}}
    async with httpx.AsyncClient(base_url=serve_app, headers=user_headers, timeout=60) as client:
        responses = await asyncio.gather(*(client.post("/api/v1/mcp/execute", json=body) for _ in range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    assert all(r.json()["is_error"] is False for r in responses)


def test_arguments_violating_the_tools_schema_are_422_over_http(api):
    r = api.post(
        "/api/v1/mcp/execute", json={"server": "time", "tool": "get_current_time", "arguments": {"timezone": 5}}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_detailed_health_hides_pids_and_errors_of_servers_the_caller_may_not_use(serve_app, new_user_headers):
    import httpx

    viewer = new_user_headers("viewer")
    components = httpx.get(f"{serve_app}/api/v1/health/detailed", headers=viewer, timeout=30).json()["components"]
    time_server = components["mcp:time"]  # roles admin and user: a viewer may not use it
    assert time_server["status"] == "ok" and time_server["pid"] is None and time_server["last_error"] is None

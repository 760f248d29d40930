"""MCPGateway -> named Ray actor -> stdio MCP server, with real servers."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psutil
import pytest
import ray

from sutazai.api.errors import status_of
from sutazai.errors import SutazaiError
from tests.mcp.conftest import NAMESPACE


async def wait_until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# ---- listing -------------------------------------------------------------------------


async def test_each_running_server_reports_ready_with_its_process_id_and_tools(gateway, status):
    time_server = await status("time")
    assert time_server["status"] == "ready"
    assert time_server["pid"] and psutil.pid_exists(time_server["pid"])
    assert time_server["tools"] == 2
    assert time_server["server_info"]["name"] == "mcp-time"


async def test_a_disabled_server_is_listed_as_disabled(status):
    assert (await status("off"))["status"] == "disabled"


async def test_tools_come_with_their_input_schemas(gateway):
    tools = {t["name"]: t for t in await gateway.tools("time")}
    assert set(tools) == {"get_current_time", "convert_time"}
    assert "timezone" in tools["get_current_time"]["input_schema"]["properties"]


# ---- calls ---------------------------------------------------------------------------


async def test_the_python_time_server_answers_a_tool_call(gateway):
    result = await gateway.execute("time", "get_current_time", {"timezone": "Asia/Tokyo"}, "user")
    assert result["is_error"] is False
    assert result["structured_content"]["timezone"] == "Asia/Tokyo"
    assert "+09:00" in result["text"]


async def test_the_npm_filesystem_server_writes_and_reads_a_file_in_the_users_folder(gateway, mcp_settings, user):
    path = mcp_settings.data_dir / "users" / user / "files" / "note.txt"
    written = await gateway.execute(
        "filesystem", "write_file", {"path": str(path), "content": "hello from a test"}, "user", user=user
    )
    assert written["is_error"] is False
    assert path.read_text() == "hello from a test"
    read = await gateway.execute("filesystem", "read_text_file", {"path": str(path)}, "user", user=user)
    assert read["text"] == "hello from a test"


async def test_fifty_concurrent_calls_all_succeed(gateway):
    zones = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney"] * 10
    results = await asyncio.gather(
        *(gateway.execute("time", "get_current_time", {"timezone": z}, "user") for z in zones)
    )
    assert [r["structured_content"]["timezone"] for r in results] == zones


async def test_a_tool_that_fails_returns_is_error_with_the_servers_message(gateway):
    result = await gateway.execute("time", "get_current_time", {"timezone": "Mars/Olympus_Mons"}, "user")
    assert result["is_error"] is True
    assert "Mars/Olympus_Mons" in result["text"]


async def test_the_filesystem_server_refuses_paths_outside_its_data_folder(gateway, user):
    result = await gateway.execute("filesystem", "read_text_file", {"path": "/etc/passwd"}, "user", user=user)
    assert result["is_error"] is True
    assert "denied" in result["text"].lower()


# ---- refusals before the call ----------------------------------------------------------


async def test_arguments_that_violate_the_input_schema_are_a_422(gateway):
    with pytest.raises(SutazaiError) as err:
        await gateway.execute("time", "get_current_time", {"timezone": 42}, "user")
    assert (status_of(err.value), err.value.code) == (422, "validation_error")
    assert "timezone" in err.value.message
    assert err.value.details[0]["loc"] == ["arguments", "timezone"]


async def test_a_missing_required_argument_is_a_422(gateway):
    with pytest.raises(SutazaiError) as err:
        await gateway.execute("time", "convert_time", {"time": "12:00"}, "user")
    assert status_of(err.value) == 422
    assert "source_timezone" in err.value.message


async def test_a_role_not_listed_for_the_server_is_a_403(gateway):
    with pytest.raises(SutazaiError) as err:
        await gateway.execute("time", "get_current_time", {"timezone": "UTC"}, "viewer")
    assert (status_of(err.value), err.value.code) == (403, "forbidden")
    with pytest.raises(SutazaiError) as err:
        await gateway.execute("everything", "echo", {"message": "hi"}, "user")  # admin-only server
    assert status_of(err.value) == 403


async def test_an_unknown_server_is_a_404_that_names_the_known_ones(gateway):
    with pytest.raises(SutazaiError) as err:
        await gateway.execute("weather", "forecast", {}, "user")
    assert (status_of(err.value), err.value.code) == (404, "not_found")
    assert "'weather'" in err.value.message and "time" in err.value.message


async def test_an_unknown_tool_is_a_404_that_names_the_servers_tools(gateway):
    with pytest.raises(SutazaiError) as err:
        await gateway.execute("time", "set_time", {}, "user")
    assert status_of(err.value) == 404
    assert "set_time" in err.value.message and "get_current_time" in err.value.message


async def test_a_disabled_server_is_a_404_saying_so(gateway):
    with pytest.raises(SutazaiError) as err:
        await gateway.execute("off", "get_current_time", {"timezone": "UTC"}, "user")
    assert status_of(err.value) == 404 and "disabled" in err.value.message


# ---- failures of the server ---------------------------------------------------------------


async def test_killing_the_server_fails_the_in_flight_call_with_503_and_the_next_call_succeeds(gateway, status):
    before = await status("everything")
    slow = asyncio.create_task(
        gateway.execute("everything", "trigger-long-running-operation", {"duration": 30, "steps": 3}, "admin")
    )

    async def in_flight():
        return (await status("everything"))["in_flight"] == 1

    await wait_until(in_flight)
    os.kill(before["pid"], signal.SIGKILL)
    with pytest.raises(SutazaiError) as err:
        await asyncio.wait_for(slow, timeout=5)
    assert (status_of(err.value), err.value.code) == (503, "unavailable")
    assert "stopped while 'trigger-long-running-operation' was running" in err.value.message
    assert err.value.retry_after_s == 2

    echoed = await gateway.execute("everything", "echo", {"message": "back again"}, "admin")
    assert "back again" in echoed["text"]
    after = await status("everything")
    assert after["pid"] != before["pid"]
    assert after["restarts"] == before["restarts"] + 1
    assert f"server process {before['pid']} exited" in after["last_error"]


async def test_a_call_past_its_timeout_is_a_503_and_the_server_keeps_serving(gateway, status):
    with pytest.raises(SutazaiError) as err:
        await gateway.execute(
            "everything", "trigger-long-running-operation", {"duration": 5, "steps": 5}, "admin", timeout=0.3
        )
    assert status_of(err.value) == 503
    assert "did not finish within 0.3 s" in err.value.message
    assert (await status("everything"))["in_flight"] == 0
    assert (await gateway.execute("everything", "get-sum", {"a": 2, "b": 3}, "admin"))["is_error"] is False


async def test_a_server_that_cannot_start_is_failed_and_calls_get_a_503_with_its_last_error(gateway, status):
    broken = await status("broken")
    assert broken["status"] == "failed"
    assert broken["restarts"] == 1  # max_restarts: 1, then it gives up
    with pytest.raises(SutazaiError) as err:
        await gateway.execute("broken", "anything", {}, "user")
    assert status_of(err.value) == 503
    assert "failed" in err.value.message and "broken on purpose" in err.value.message


async def test_an_admin_restart_starts_a_new_process_that_serves_calls(gateway, status):
    before = await status("time")
    after = await gateway.restart("time")
    assert after["status"] == "ready"
    assert after["pid"] != before["pid"]
    assert gone(before["pid"])
    assert after["generation"] == before["generation"] + 1
    result = await gateway.execute("time", "get_current_time", {"timezone": "UTC"}, "user")
    assert result["is_error"] is False


async def test_when_the_actor_process_dies_ray_restarts_it_and_its_server_comes_back(gateway, status, user):
    await gateway.execute("filesystem", "list_allowed_directories", {}, "user", user=user)
    before = await status("filesystem", user)
    os.kill(before["actor_pid"], signal.SIGKILL)

    async def served_again():
        try:
            listed = await gateway.execute("filesystem", "list_allowed_directories", {}, "user", user=user)
            return not listed["is_error"]
        except SutazaiError as exc:
            assert status_of(exc) == 503  # while Ray restarts the actor
            return False

    await wait_until(served_again, timeout=30)
    after = await status("filesystem", user)
    assert after["actor_pid"] != before["actor_pid"] and after["pid"] != before["pid"]
    await wait_until(lambda: asyncio.sleep(0, gone(before["pid"])), timeout=5)  # the old server saw stdin close


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_calls_from_the_actors_node_take_its_socket_lane_not_ray(gateway):
    await gateway.execute("time", "get_current_time", {"timezone": "UTC"}, "user")
    assert (await gateway.health())["time"]["lane"] is True


async def test_after_the_actor_process_dies_calls_take_the_new_processes_lane(gateway, status):
    await gateway.execute("time", "get_current_time", {"timezone": "UTC"}, "user")
    before = await status("time")
    os.kill(before["actor_pid"], signal.SIGKILL)

    async def served_again():
        try:
            return not (await gateway.execute("time", "get_current_time", {"timezone": "UTC"}, "user"))["is_error"]
        except SutazaiError as exc:
            assert status_of(exc) == 503  # while Ray restarts the actor
            return False

    await wait_until(served_again, timeout=30)
    assert (await status("time"))["actor_pid"] != before["actor_pid"]
    assert (await gateway.health())["time"]["lane"] is True


async def test_health_reports_each_server_with_a_ping_latency(gateway):
    health = await gateway.health()
    assert health["time"]["status"] == "ready"
    assert 0 < health["time"]["latency_ms"] < 3000
    assert health["time"]["ping_ms"] is not None
    assert health["broken"]["status"] == "failed"


# ---- arguments that cannot cross the stdio transport -----------------------------------

NOT_UNICODE = "x\ud800"  # a lone surrogate: a Python str, but no UTF-8 encoding exists


async def test_arguments_that_cannot_be_encoded_as_utf8_json_are_a_422_naming_where(gateway):
    with pytest.raises(SutazaiError) as err:
        await gateway.execute("time", "get_current_time", {"timezone": NOT_UNICODE}, "user")
    assert (status_of(err.value), err.value.code) == (422, "validation_error")
    assert err.value.details[0]["loc"] == ["arguments", "timezone"]


async def test_a_call_the_transport_cannot_encode_fails_alone_and_the_server_keeps_its_process(gateway, status):
    """Straight to the actor, past the gateway's check: the other calls and the process survive."""
    before = await status("time")
    actor = gateway.actors["time"]
    slow = [actor.call_tool.remote("get_current_time", {"timezone": "UTC"}) for _ in range(20)]
    bad = await actor.call_tool.remote("get_current_time", {"timezone": NOT_UNICODE})
    assert bad["is_error"] is True and "JSON" in bad["text"]
    assert all(not r["is_error"] for r in await asyncio.gather(*slow))
    after = await status("time")
    assert (after["status"], after["pid"], after["restarts"]) == ("ready", before["pid"], before["restarts"])


# ---- one process per user ------------------------------------------------------------------

OTHER = "0" * 32  # a second user


async def test_each_user_gets_their_own_filesystem_process_rooted_in_their_own_folder(
    gateway, status, user, mcp_settings
):
    listed = {
        u: (await gateway.execute("filesystem", "list_allowed_directories", {}, "user", user=u))["text"]
        for u in (user, OTHER)
    }
    assert str(mcp_settings.data_dir / "users" / user / "files") in listed[user]
    assert str(mcp_settings.data_dir / "users" / OTHER / "files") in listed[OTHER]
    assert (await status("filesystem", user))["pid"] != (await status("filesystem", OTHER))["pid"]


async def test_a_user_cannot_read_a_file_another_user_wrote(gateway, mcp_settings, user):
    path = str(mcp_settings.data_dir / "users" / user / "files" / "secret.txt")
    await gateway.execute("filesystem", "write_file", {"path": path, "content": "mine"}, "user", user=user)
    read = await gateway.execute("filesystem", "read_text_file", {"path": path}, "user", user=OTHER)
    assert read["is_error"] is True and "denied" in read["text"].lower()


async def test_a_per_user_server_is_idle_until_the_users_first_call(status, user):
    assert (await status("filesystem", user))["status"] == "idle"


async def test_a_per_user_server_unused_for_its_idle_timeout_stops_and_the_next_call_starts_a_new_one(
    gateway, status, user
):
    await gateway.execute("scratch", "list_allowed_directories", {}, "user", user=user)
    first = await status("scratch", user)

    async def retired():
        try:
            ray.get_actor(f"mcp-scratch-{user}", namespace=NAMESPACE)
        except ValueError:
            return True
        return False

    await wait_until(retired, timeout=15)
    assert gone(first["pid"])
    again = await gateway.execute("scratch", "list_allowed_directories", {}, "user", user=user)
    assert again["is_error"] is False
    assert (await status("scratch", user))["pid"] != first["pid"]


async def test_a_per_user_server_needs_a_user(gateway):
    with pytest.raises(SutazaiError) as err:
        await gateway.execute("filesystem", "list_allowed_directories", {}, "user")
    assert status_of(err.value) == 403


# ---- results -------------------------------------------------------------------------------


async def test_a_result_over_the_servers_size_limit_is_truncated_with_a_note(gateway, mcp_settings, user):
    path = str(mcp_settings.data_dir / "users" / user / "files" / "big.txt")
    await gateway.execute("filesystem", "write_file", {"path": path, "content": "é" * 100_000}, "user", user=user)
    read = await gateway.execute("filesystem", "read_text_file", {"path": path}, "user", user=user)
    assert read["truncated"] is True
    assert sum(len(c["text"].encode()) for c in read["content"][:-1]) <= 64 * 1024
    assert "result truncated" in read["content"][-1]["text"] and "65536" in read["content"][-1]["text"]


# ---- the git server -----------------------------------------------------------------------


async def test_the_git_server_serves_a_clone_in_the_data_folder(gateway, mcp_settings):
    mirror = mcp_settings.data_dir / "git-mirror"
    log = await gateway.execute("git", "git_log", {"repo_path": str(mirror), "max_count": 1}, "admin")
    assert log["is_error"] is False and "Commit" in log["text"]
    assert (mirror / ".git").is_dir()


async def test_the_git_server_lists_only_its_allowed_tools(gateway):
    assert {t["name"] for t in await gateway.tools("git")} == {"git_status", "git_log"}


async def test_a_tool_outside_tools_allowed_is_a_403(gateway, mcp_settings):
    arguments = {"repo_path": str(mcp_settings.data_dir / "git-mirror"), "message": "x"}
    with pytest.raises(SutazaiError) as err:
        await gateway.execute("git", "git_commit", arguments, "admin")
    assert status_of(err.value) == 403 and "git_commit" in err.value.message


# ---- a command that is not there ------------------------------------------------------------


async def test_a_server_whose_command_is_missing_is_failed_at_once_saying_so(status):
    missing = await status("missing")
    assert (missing["status"], missing["restarts"]) == ("failed", 0)
    assert missing["last_error"] == "command 'uvx-is-not-installed-here' not found"

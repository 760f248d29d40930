"""The same-node lane between gateway and MCP actor, over a real Unix socket (no Ray, no server)."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from sutazai.mcp.errors import CallTimedOut, InstanceRetired, ServerUnavailable
from sutazai.mcp.lane import LaneClient, LaneLost, LaneRefused, LaneServer


class Tools:
    """What the actor's call_tool would do, scripted per tool name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict, float]] = []
        self.release = asyncio.Event()

    async def call_tool(self, tool: str, arguments: dict, timeout: float) -> dict:
        self.calls.append((tool, arguments, timeout))
        if tool == "echo":
            return {"is_error": False, "text": arguments["text"]}
        if tool == "slow":
            await self.release.wait()
            return {"is_error": False, "text": "slow"}
        if tool == "timeout":
            raise CallTimedOut("did not finish within 1 s")
        if tool == "retired":
            raise InstanceRetired("stopped for being idle")
        if tool == "hang":
            await asyncio.sleep(3600)
        raise RuntimeError("a bug in the actor")


@pytest.fixture
async def served():
    tools = Tools()
    server = LaneServer(tools.call_tool)
    await server.start()
    yield tools, server
    await server.close()


async def test_a_call_returns_the_actors_result_and_passes_arguments_and_timeout(served):
    tools, server = served
    client = await LaneClient.connect(server.endpoint())
    assert await client.call("echo", {"text": "héllo ✓"}, 7.5) == {"is_error": False, "text": "héllo ✓"}
    assert tools.calls == [("echo", {"text": "héllo ✓"}, 7.5)]
    client.abandon()


async def test_calls_on_one_connection_answer_out_of_order(served):
    tools, server = served
    client = await LaneClient.connect(server.endpoint())
    slow = asyncio.create_task(client.call("slow", {}, 5))
    await asyncio.sleep(0.05)
    assert (await client.call("echo", {"text": "fast"}, 5))["text"] == "fast"
    assert not slow.done()
    tools.release.set()
    assert (await slow)["text"] == "slow"
    client.abandon()


@pytest.mark.parametrize(("tool", "error"), [("timeout", CallTimedOut), ("retired", InstanceRetired)])
async def test_the_actors_unavailable_errors_arrive_as_their_own_class(served, tool, error):
    _, server = served
    client = await LaneClient.connect(server.endpoint())
    with pytest.raises(error):
        await client.call(tool, {}, 5)
    client.abandon()


async def test_an_unexpected_actor_failure_is_server_unavailable_naming_it(served):
    _, server = served
    client = await LaneClient.connect(server.endpoint())
    with pytest.raises(ServerUnavailable, match="RuntimeError: a bug in the actor"):
        await client.call("other", {}, 5)
    assert not client.closed  # the connection serves on
    assert (await client.call("echo", {"text": "x"}, 5))["text"] == "x"
    client.abandon()


async def test_a_wrong_secret_is_refused_and_nothing_runs(served):
    tools, server = served
    with pytest.raises(LaneRefused):
        await LaneClient.connect({**server.endpoint(), "secret": "0" * 32})
    assert tools.calls == []


async def test_the_socket_is_private_to_its_user(served):
    _, server = served
    path = server.endpoint()["path"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


async def test_a_call_in_flight_when_the_actor_side_closes_is_lane_lost(served):
    _, server = served
    client = await LaneClient.connect(server.endpoint())
    hanging = asyncio.create_task(client.call("hang", {}, 5))
    await asyncio.sleep(0.05)
    await server.close()
    with pytest.raises(LaneLost):
        await asyncio.wait_for(hanging, 5)
    assert client.closed
    with pytest.raises(LaneLost):
        await client.call("echo", {"text": "x"}, 5)


async def test_a_closed_server_refuses_new_connections_and_leaves_no_socket_file(served):
    _, server = served
    endpoint = server.endpoint()
    await server.close()
    assert server.endpoint() is None
    assert not os.path.exists(endpoint["path"])
    with pytest.raises(LaneRefused):
        await LaneClient.connect(endpoint)


async def test_abandoning_the_client_fails_its_waiting_calls(served):
    _, server = served
    client = await LaneClient.connect(server.endpoint())
    hanging = asyncio.create_task(client.call("hang", {}, 5))
    await asyncio.sleep(0.05)
    client.abandon()
    with pytest.raises(LaneLost):
        await hanging

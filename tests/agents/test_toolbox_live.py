"""The agent loop with its real adapters: the real time MCP server behind its Ray actor, and the
real CPU model deployment. Timings of one run are printed (`-s` shows them).

The model is the session's Serve app's when Ray already runs (`serve_app` started it); otherwise
this module starts Ray with the default model's deployment alone, and stops it when done (so that
a later `serve_app` can start its own), as tests/mcp does."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import pytest_asyncio

from sutazai.agents.loop import AgentModel, MaxStepsReached, ModelReply, run_agent
from sutazai.agents.toolbox import GatewayTools, ServeModel, discover_tools
from sutazai.errors import InvalidInput
from sutazai.schemas.agents import AgentDefinition, AgentSampling
from sutazai.schemas.engine import ChatMessage
from sutazai.settings import Settings

NAMESPACE = "sutazai-agent-tests"

ASSISTANT = {  # as cluster/agents/assistant.md, at temperature 0 so that a run repeats
    "name": "assistant",
    "description": "General assistant that answers short questions and can tell the current time in any time zone.",
    "system_prompt": (
        "You are a helpful assistant. Answer in one or two short sentences.\n\n"
        "When the question needs the current time or date, or converting a time between time zones,\n"
        'call a time tool first: get_current_time with an IANA time zone such as "Europe/London"\n'
        'or "UTC", or convert_time. Then answer from the tool\'s result. Do not guess the time.\n\n'
        "When the question needs no tool, answer it directly."
    ),
    "tools": ["time/*"],
    "max_steps": 4,
    "timeout_s": 60,
    "sampling": {"temperature": 0.0, "max_tokens": 256},
}


def assistant(**overrides: Any) -> AgentDefinition:
    return AgentDefinition.model_validate(ASSISTANT | overrides)


@pytest.fixture(scope="module")
def model_app():
    """The Serve application that serves the default model, and its spec."""
    import ray
    from ray import serve

    from deployments.cpu_model import CPUModelServer
    from sutazai.catalog import ModelCatalog

    catalog = ModelCatalog.load(Settings().models_dir)
    spec = catalog.specs[catalog.default_name()]
    if ray.is_initialized():  # the session's app runs: use its model deployment
        yield "sutazai", spec
        return
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        namespace=NAMESPACE,
        logging_level="WARNING",
        log_to_driver=False,
    )
    deployment = CPUModelServer.options(  # type: ignore[attr-defined]
        name=spec.deployment_name,
        max_ongoing_requests=spec.deployment.max_ongoing_requests,
        ray_actor_options=spec.ray_actor_options(),
    ).bind(spec.model_dump())
    serve.run(deployment, name=NAMESPACE, route_prefix=None)
    yield NAMESPACE, spec
    serve.shutdown()
    ray.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def time_gateway(model_app, tmp_path_factory):
    """A gateway to one real MCP server (time), its actor in this module's own namespace."""
    from deployments.mcp_process import connect_gateway

    data_dir = tmp_path_factory.mktemp("agent-mcp")
    config = data_dir / "servers.json"
    servers = {"time": {"command": "${PYTHON}", "args": ["-m", "mcp_server_time"], "call_timeout_s": 10}}
    config.write_text(json.dumps({"mcpServers": servers}))
    gateway = await connect_gateway(Settings(data_dir=data_dir, mcp_config=config), namespace=NAMESPACE)
    assert await gateway.wait_ready(timeout=60) == {"time": "ready"}
    yield gateway
    await gateway.shutdown()


@pytest.fixture(scope="module")
def model(model_app) -> ServeModel:
    from ray import serve

    from sutazai.inference import ModelClient

    app_name, spec = model_app
    handle = serve.get_deployment_handle(spec.deployment_name, app_name=app_name)
    return ServeModel(ModelClient(spec, handle), request_id=f"agent-test-{uuid.uuid4().hex[:8]}")


class Timed:
    """An AgentModel that times each turn of the one it wraps."""

    def __init__(self, inner: AgentModel) -> None:
        self.inner = inner
        self.turns: list[float] = []

    async def complete(
        self, messages: list[ChatMessage], json_schema: dict[str, Any] | None, sampling: AgentSampling
    ) -> ModelReply:
        started = time.perf_counter()
        try:
            return await self.inner.complete(messages, json_schema, sampling)
        finally:
            self.turns.append(time.perf_counter() - started)


async def test_discover_tools_lists_the_servers_tools(time_gateway):
    tools = await discover_tools(time_gateway, assistant(), role="user", user=uuid.uuid4().hex)
    names = {t.name for t in tools}
    assert {"get_current_time", "convert_time"} <= names
    get_time = next(t for t in tools if t.name == "get_current_time")
    assert get_time.server == "time" and get_time.tool == "get_current_time"
    assert "timezone" in get_time.parameters["properties"]

    only = await discover_tools(
        time_gateway, assistant(tools=["time/get_current_time"]), role="user", user=uuid.uuid4().hex
    )
    assert [t.name for t in only] == ["get_current_time"]


async def test_discover_tools_refuses_a_tool_or_server_that_is_not_there(time_gateway):
    user = uuid.uuid4().hex
    with pytest.raises(InvalidInput, match="time/no_such_tool"):
        await discover_tools(time_gateway, assistant(tools=["time/no_such_tool"]), role="user", user=user)
    with pytest.raises(InvalidInput, match="nowhere"):
        await discover_tools(time_gateway, assistant(tools=["nowhere/*"]), role="user", user=user)


async def test_gateway_tools_runs_a_call_and_returns_refusals_as_error_results(time_gateway):
    runner = GatewayTools(time_gateway, role="user", user=uuid.uuid4().hex)
    outcome = await runner.call("time", "get_current_time", {"timezone": "Asia/Tokyo"})
    assert not outcome.is_error and "Asia/Tokyo" in outcome.content
    refused = await runner.call("time", "get_current_time", {})  # schema: timezone is required
    assert refused.is_error and "timezone" in refused.content
    failed = await runner.call("time", "get_current_time", {"timezone": "Mars/Olympus"})  # the tool's own error
    assert failed.is_error


async def test_an_agent_calls_the_real_time_server_through_the_real_model(time_gateway, model):
    user = uuid.uuid4().hex
    definition = assistant(max_steps=2)  # the first turn is the one that must call; each turn takes seconds on CPU
    tools = await discover_tools(time_gateway, definition, role="user", user=user)
    events: list[tuple[str, dict[str, Any], float]] = []

    async def record(type: str, data: dict[str, Any]) -> None:
        json.dumps(data)
        events.append((type, data, time.perf_counter()))

    timed = Timed(model)
    started = time.perf_counter()
    try:
        result = await run_agent(
            definition,
            "What time is it in Tokyo? Use the tool.",
            tools,
            timed,
            GatewayTools(time_gateway, role="user", user=user),
            record,
        )
        outcome = f"answer {result.answer!r} after {result.steps} steps, usage {result.usage}"
    except MaxStepsReached as exc:
        outcome = f"no answer in {exc.steps} steps, usage {exc.usage}"
    total = time.perf_counter() - started

    calls = [d for t, d, _ in events if t == "tool_call"]
    results = {d["id"]: d for t, d, _ in events if t == "tool_result"}
    assert any(c["server"] == "time" and c["tool"] == "get_current_time" for c in calls), events
    good = [
        results[c["id"]]
        for c in calls
        if c["tool"] == "get_current_time" and c["id"] in results and not results[c["id"]]["is_error"]
    ]
    assert good, events
    assert '"datetime"' in good[0]["content"] and str(time.gmtime().tm_year) in good[0]["content"]
    assert events[0][0] == "model"
    tool_ms = [d["latency_ms"] for t, d, _ in events if t == "tool_result"]
    print(
        f"\nagent run: {total:.2f} s in all; {outcome}; model turns {[round(s, 2) for s in timed.turns]} s; "
        f"tool calls {tool_ms} ms"
    )
    for type, data, at in events:
        print(f"  +{at - started:6.2f}s {type}: {json.dumps(data)[:300]}")

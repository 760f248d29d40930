"""The agent loop's logic against a scripted model and a recording tool runner: answers, tool calls,
the events it records (the contract the runner stores), max steps, and replay of earlier attempts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sutazai.agents.loop import (
    MAX_RESULT_CHARS,
    AgentResult,
    AgentTool,
    MaxStepsReached,
    ModelReply,
    ToolOutcome,
    run_agent,
)
from sutazai.schemas.agents import AgentDefinition, AgentSampling
from sutazai.schemas.engine import ChatMessage, Usage
from sutazai.tools import call_text, result_text

TIME = AgentTool(
    name="get_current_time",
    server="time",
    tool="get_current_time",
    description="Get the current time in a timezone.",
    parameters={"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
)
ECHO = AgentTool("echo", "everything", "echo", "Echo a message.", {"type": "object", "properties": {}})


def definition(**overrides: Any) -> AgentDefinition:
    values: dict[str, Any] = {
        "name": "assistant",
        "description": "Answers questions.",
        "system_prompt": "You are a helpful assistant.",
        "tools": ["time/*"],
        "max_steps": 4,
        "sampling": {"max_tokens": 64, "temperature": 0.0},
    }
    return AgentDefinition.model_validate(values | overrides)


def call(name: str, **arguments: Any) -> str:
    return json.dumps({"tool": name, "arguments": arguments})


def answer(text: str) -> str:
    return json.dumps({"content": text})


class ScriptedModel:
    """Returns the given texts in order; remembers what it was asked."""

    def __init__(self, *texts: str, usage: tuple[int, int] = (10, 5)) -> None:
        self.texts = list(texts)
        self.usage = Usage(prompt_tokens=usage[0], completion_tokens=usage[1])
        self.asked: list[tuple[list[ChatMessage], dict[str, Any] | None, AgentSampling]] = []

    async def complete(
        self, messages: list[ChatMessage], json_schema: dict[str, Any] | None, sampling: AgentSampling
    ) -> ModelReply:
        self.asked.append((list(messages), json_schema, sampling))
        assert self.texts, "the model was asked more often than scripted"
        return ModelReply(self.texts.pop(0), self.usage, "stop")


class RecordingTools:
    def __init__(self, outcome: ToolOutcome | None = None) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.outcome = outcome

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((server, tool, arguments))
        return self.outcome or ToolOutcome(f"12:00 in {arguments.get('timezone')}", False)


class Events:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, type: str, data: dict[str, Any]) -> None:
        json.dumps(data)  # events are stored as JSON
        self.events.append((type, data))

    def types(self) -> list[str]:
        return [t for t, _ in self.events]


async def run(
    model: ScriptedModel,
    tools: list[AgentTool] | None = None,
    runner: RecordingTools | None = None,
    past: list[tuple[str, dict[str, Any]]] | None = None,
    **overrides: Any,
) -> tuple[AgentResult, Events, RecordingTools]:
    events, runner = Events(), runner or RecordingTools()
    result = await run_agent(
        definition(**overrides),
        "What time is it in Tokyo?",
        [TIME] if tools is None else tools,
        model,
        runner,
        events,
        past or [],
    )
    return result, events, runner


async def test_a_direct_answer_ends_the_loop():
    model = ScriptedModel(answer("It is noon."))
    result, events, runner = await run(model)
    assert result == AgentResult("It is noon.", Usage(prompt_tokens=10, completion_tokens=5), 1)
    assert runner.calls == []
    assert events.events == [
        (
            "model",
            {
                "step": 1,
                "text": answer("It is noon."),
                "tool_calls": [],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                "finish_reason": "stop",
            },
        )
    ]
    messages, schema, sampling = model.asked[0]
    assert [m.role for m in messages] == ["system", "user"]
    assert messages[0].content.startswith("You are a helpful assistant.\n\n")
    assert "get_current_time" in messages[0].content  # the tools prompt
    assert messages[1].content == "What time is it in Tokyo?"
    assert schema is not None and len(schema["anyOf"]) == 2  # the tool, and the answer
    assert sampling == AgentSampling(max_tokens=64, temperature=0.0)


async def test_one_tool_call_then_an_answer():
    model = ScriptedModel(call("get_current_time", timezone="Asia/Tokyo"), answer("It is 12:00 in Tokyo."))
    result, events, runner = await run(model)
    assert result.answer == "It is 12:00 in Tokyo."
    assert result.steps == 2
    assert result.usage == Usage(prompt_tokens=20, completion_tokens=10)
    assert runner.calls == [("time", "get_current_time", {"timezone": "Asia/Tokyo"})]

    assert events.types() == ["model", "tool_call", "tool_result", "model"]
    (_, first), (_, tool_call), (_, tool_result), (_, second) = events.events
    assert first["step"] == 1 and first["text"] == call("get_current_time", timezone="Asia/Tokyo")
    [recorded] = first["tool_calls"]
    assert set(recorded) == {"id", "name", "server", "tool", "arguments"}
    assert recorded["id"].startswith("call_")
    assert recorded | {"id": None} == {
        "id": None,
        "name": "get_current_time",
        "server": "time",
        "tool": "get_current_time",
        "arguments": {"timezone": "Asia/Tokyo"},
    }
    assert tool_call == {
        "step": 1,
        "id": recorded["id"],
        "server": "time",
        "tool": "get_current_time",
        "arguments": {"timezone": "Asia/Tokyo"},
    }
    assert set(tool_result) == {"step", "id", "content", "is_error", "latency_ms"}
    assert tool_result["step"] == 1 and tool_result["id"] == recorded["id"]
    assert tool_result["content"] == "12:00 in Asia/Tokyo" and tool_result["is_error"] is False
    assert isinstance(tool_result["latency_ms"], float) and tool_result["latency_ms"] >= 0
    assert second["step"] == 2 and second["tool_calls"] == []

    # The second turn sees the call as the model wrote it and the result as a user line (as /v1/chat does).
    messages, _, _ = model.asked[1]
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2].content == call_text("get_current_time", json.dumps({"timezone": "Asia/Tokyo"}))
    assert messages[3].content == result_text("get_current_time", "12:00 in Asia/Tokyo")


async def test_a_tools_error_result_goes_back_to_the_model():
    model = ScriptedModel(call("get_current_time", timezone="Mars/Base"), answer("I could not tell."))
    runner = RecordingTools(ToolOutcome("Invalid timezone: Mars/Base", True))
    result, events, _ = await run(model, runner=runner)
    assert result.answer == "I could not tell."
    tool_result = events.events[2][1]
    assert tool_result["is_error"] is True and tool_result["content"] == "Invalid timezone: Mars/Base"
    assert model.asked[1][0][-1].content == result_text("get_current_time", "Invalid timezone: Mars/Base")


async def test_long_results_are_capped_before_the_model_sees_them():
    model = ScriptedModel(call("get_current_time", timezone="UTC"), answer("done"))
    _, events, _ = await run(model, runner=RecordingTools(ToolOutcome("x" * 50_000, False)))
    content = events.events[2][1]["content"]
    assert len(content) == MAX_RESULT_CHARS and content.endswith("…[truncated]")
    assert model.asked[1][0][-1].content == result_text("get_current_time", content)


async def test_max_steps_without_an_answer_raises_with_the_usage_so_far():
    model = ScriptedModel(*[call("get_current_time", timezone="UTC")] * 3)
    with pytest.raises(MaxStepsReached) as caught:
        await run(model, max_steps=3)
    assert caught.value.usage == Usage(prompt_tokens=30, completion_tokens=15)
    assert caught.value.last_text == call("get_current_time", timezone="UTC")
    assert caught.value.steps == 3
    assert len(model.asked) == 3


async def test_an_agent_without_tools_decodes_free_text():
    model = ScriptedModel('Plain words, even {"tool": "x"} in them.')
    result, events, _ = await run(model, tools=[])
    assert result.answer == 'Plain words, even {"tool": "x"} in them.'
    messages, schema, _ = model.asked[0]
    assert schema is None
    assert messages[0].content == "You are a helpful assistant."  # no tools prompt
    assert events.events[0][1]["tool_calls"] == []


async def test_output_cut_inside_the_json_is_a_text_answer():
    cut = '{"tool": "get_current_time", "arguments": {"timez'
    result, _, runner = await run(ScriptedModel(cut))
    assert result.answer == cut and runner.calls == []


async def test_tools_of_two_servers_keep_their_server():
    other = AgentTool("time__get_current_time", "time", "get_current_time", "", {"type": "object"})
    clock = AgentTool("clock__get_current_time", "clock", "get_current_time", "", {"type": "object"})
    model = ScriptedModel(call("clock__get_current_time"), answer("ok"))
    _, events, runner = await run(model, tools=[other, clock])
    assert runner.calls == [("clock", "get_current_time", {})]
    assert events.events[1][1]["server"] == "clock"


# ---- replay ----------------------------------------------------------------


async def first_attempt(*texts: str) -> list[tuple[str, dict[str, Any]]]:
    _, events, _ = await run(ScriptedModel(*texts))
    return events.events


async def test_replay_of_a_recorded_turn_and_result_runs_neither_again():
    past = await first_attempt(call("get_current_time", timezone="Asia/Tokyo"), answer("noon"))
    cut = past[:3]  # the attempt was cut off after the tool's result, before the second model turn
    model = ScriptedModel(answer("It is noon in Tokyo."), usage=(100, 7))
    runner = RecordingTools()
    result, events, _ = await run(model, runner=runner, past=cut)
    assert runner.calls == []  # the recorded result is used
    assert len(model.asked) == 1  # only the second turn is new
    assert result == AgentResult("It is noon in Tokyo.", Usage(prompt_tokens=110, completion_tokens=12), 2)
    assert events.types() == ["model"] and events.events[0][1]["step"] == 2  # replayed events are not recorded again
    # The new turn sees the recorded call and its recorded result.
    messages = model.asked[0][0]
    assert messages[3].content == result_text("get_current_time", "12:00 in Asia/Tokyo")


async def test_replay_of_a_whole_run_asks_nothing():
    past = await first_attempt(call("get_current_time", timezone="Asia/Tokyo"), answer("noon"))
    model, runner = ScriptedModel(), RecordingTools()
    result, events, _ = await run(model, runner=runner, past=past)
    assert result == AgentResult("noon", Usage(prompt_tokens=20, completion_tokens=10), 2)
    assert model.asked == [] and runner.calls == [] and events.events == []


async def test_replay_of_a_call_without_a_result_runs_it_once():
    past = await first_attempt(call("get_current_time", timezone="Asia/Tokyo"), answer("noon"))
    cut = past[:2]  # model turn and tool_call recorded; the attempt died during the call
    call_id = cut[1][1]["id"]
    model, runner = ScriptedModel(answer("noon")), RecordingTools()
    result, events, _ = await run(model, runner=runner, past=cut)
    assert runner.calls == [("time", "get_current_time", {"timezone": "Asia/Tokyo"})]
    assert result.answer == "noon" and result.usage == Usage(prompt_tokens=20, completion_tokens=10)
    assert events.types() == ["tool_result", "model"]  # the tool_call is not recorded again
    assert events.events[0][1]["id"] == call_id and events.events[0][1]["step"] == 1


async def test_replay_of_a_turn_whose_calls_never_started_runs_them_with_the_recorded_ids():
    past = await first_attempt(call("get_current_time", timezone="Asia/Tokyo"), answer("noon"))
    cut = past[:1]  # only the model turn
    call_id = cut[0][1]["tool_calls"][0]["id"]
    model, runner = ScriptedModel(answer("noon")), RecordingTools()
    _, events, _ = await run(model, runner=runner, past=cut)
    assert len(runner.calls) == 1
    assert events.types() == ["tool_call", "tool_result", "model"]
    assert events.events[0][1]["id"] == call_id == events.events[1][1]["id"]


async def test_replay_then_max_steps_counts_replayed_usage():
    past = await first_attempt(call("get_current_time", timezone="UTC"), answer("x"))
    with pytest.raises(MaxStepsReached) as caught:
        await run(ScriptedModel(call("get_current_time", timezone="UTC")), past=past[:3], max_steps=2)
    assert caught.value.usage == Usage(prompt_tokens=20, completion_tokens=10)


async def test_replay_of_a_call_to_a_tool_the_agent_no_longer_has_is_an_error_result():
    past = await first_attempt(call("get_current_time", timezone="UTC"), answer("x"))
    model, runner = ScriptedModel(answer("sorry")), RecordingTools()
    result, events, _ = await run(model, tools=[ECHO], runner=runner, past=past[:1])
    assert runner.calls == [] and result.answer == "sorry"
    tool_result = events.events[1][1]
    assert tool_result["is_error"] is True and "get_current_time" in tool_result["content"]


async def test_a_second_retry_replays_the_events_of_both_earlier_attempts():
    first = (await first_attempt(call("get_current_time", timezone="UTC"), answer("x")))[:2]  # died mid-call
    _, second, runner = await run(ScriptedModel(answer("y")), past=first)
    assert len(runner.calls) == 1 and second.types() == ["tool_result", "model"]
    del second.events[-1]  # died before its last model turn was stored
    model, runner = ScriptedModel(answer("done")), RecordingTools()
    result, third, _ = await run(model, runner=runner, past=first + second.events)
    assert runner.calls == [] and len(model.asked) == 1 and result.steps == 2
    assert third.types() == ["model"]


async def test_the_last_step_may_only_answer():
    model = ScriptedModel(call("get_current_time", timezone="UTC"), answer("It is noon."))
    result = await run_agent(definition(max_steps=2), "Time?", [TIME], model, RecordingTools(), Events())
    first_schema, last_schema = model.asked[0][1], model.asked[1][1]
    assert "anyOf" in first_schema  # a tool call or an answer
    assert last_schema == {
        "type": "object",
        "properties": {"content": {"type": "string"}},
        "required": ["content"],
        "additionalProperties": False,
    }
    assert result.answer == "It is noon."


async def test_a_constrained_turn_cut_by_max_tokens_is_not_taken_for_an_answer():
    from sutazai.agents.loop import OutputTruncated

    class Cut(ScriptedModel):
        async def complete(self, messages, json_schema, sampling):
            reply = await super().complete(messages, json_schema, sampling)
            return ModelReply(reply.text, reply.usage, "length")

    model = Cut('{"tool": "get_current_time", "arguments": {"timezone": "Europe/Par')
    with pytest.raises(OutputTruncated):
        await run_agent(definition(), "Time?", [TIME], model, RecordingTools(), Events())


async def test_an_answer_cut_by_max_tokens_is_the_answer_so_far():
    class Cut(ScriptedModel):
        async def complete(self, messages, json_schema, sampling):
            reply = await super().complete(messages, json_schema, sampling)
            return ModelReply(reply.text, reply.usage, "length")

    result = await run_agent(
        definition(), "Time?", [TIME], Cut('{"content": "It is noon in Par'), RecordingTools(), Events()
    )
    assert result.answer == "It is noon in Par"

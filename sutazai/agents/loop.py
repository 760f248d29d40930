"""The agent loop, engine- and transport-neutral: model turn -> tool calls -> results -> model turn ...

Pure logic: the model, the tools and the event store come in as small protocols
(`AgentModel`, `ToolRunner`, `EventSink`), so the same loop runs in a Ray actor against
the Serve model and the MCP gateway (`sutazai.agents.toolbox`), or in a unit test
against scripted doubles.

Tool calls are constrained decoding, as on `/v1/chat/completions` (`sutazai.tools`): each
turn's output must be `{"tool", "arguments"}` for one of the agent's tools or
`{"content"}`, an answer; the last step allows only the answer, so the agent ends with what its tools told it.
An agent without tools decodes free text (no schema, full speed).

Events (what the runner stores and SSE clients read), recorded through `record(type, data)`:

- `model` after each model turn: `{"step", "text", "tool_calls": [{"id", "name", "server",
  "tool", "arguments"}], "usage": {"prompt_tokens", "completion_tokens"}, "finish_reason"}`
- `tool_call` before a call runs: `{"step", "id", "server", "tool", "arguments"}`
- `tool_result` after it: `{"step", "id", "content", "is_error", "latency_ms"}` (content as
  the model saw it: capped at `MAX_RESULT_CHARS`)

Replay (durability): a retried task passes the events of its earlier attempts as `past`.
A recorded model turn is reused instead of asking the model again (same call ids); a call
with a recorded result is not run again; a call recorded without a result (cut off) is run.
Replayed events are not recorded again. The usage of the result sums every model turn,
replayed or new.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from sutazai.schemas.agents import AgentDefinition, AgentSampling
from sutazai.schemas.engine import ChatMessage, Usage
from sutazai.tools import (
    ANSWER,
    ContentDelta,
    ToolOutputStream,
    ToolSpec,
    call_text,
    new_call_id,
    parse_tool_output,
    result_text,
    tools_prompt,
    tools_schema,
)

MAX_RESULT_CHARS = 8_000  # of one tool result, as the model sees it
TRUNCATED = "…[truncated]"


class AgentTool(NamedTuple):
    """One MCP tool the agent may call, as the model sees it."""

    name: str  # shown to the model: the MCP tool name, or "<server>__<tool>" when two servers share a name
    server: str
    tool: str
    description: str
    parameters: dict[str, Any]  # the tool's input JSON schema


class ToolOutcome(NamedTuple):
    content: str
    is_error: bool


class ModelReply(NamedTuple):
    text: str
    usage: Usage
    finish_reason: str


class AgentModel(Protocol):
    async def complete(
        self, messages: list[ChatMessage], json_schema: dict[str, Any] | None, sampling: AgentSampling
    ) -> ModelReply: ...


class ToolRunner(Protocol):
    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> ToolOutcome: ...


class EventSink(Protocol):
    async def __call__(self, type: str, data: dict[str, Any]) -> None: ...


class AgentResult(NamedTuple):
    answer: str
    usage: Usage
    steps: int  # model turns taken, the answering one included


class MaxStepsReached(Exception):
    """The agent used all its steps without answering; carries the usage so far and the last model text."""

    def __init__(self, steps: int, usage: Usage, last_text: str) -> None:
        super().__init__(f"the agent did not answer within {steps} steps")
        self.steps = steps
        self.usage = usage
        self.last_text = last_text


class OutputTruncated(Exception):
    """The model's constrained output (a tool call or an answer) was cut by max_tokens before its
    JSON closed: it is neither, and retrying at the same settings would cut it again."""

    def __init__(self, step: int, usage: Usage, text: str) -> None:
        super().__init__(f"step {step}: the model's output reached max_tokens before its JSON was complete")
        self.step = step
        self.usage = usage
        self.last_text = text


class _Past:
    """The events of earlier attempts, indexed for replay."""

    def __init__(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        self.models: dict[int, dict[str, Any]] = {}
        self.calls: set[str] = set()
        self.results: dict[str, dict[str, Any]] = {}
        for kind, data in events:
            if kind == "model":
                self.models.setdefault(int(data["step"]), data)
            elif kind == "tool_call":
                self.calls.add(data["id"])
            elif kind == "tool_result":
                self.results.setdefault(data["id"], data)


def capped(content: str, limit: int = MAX_RESULT_CHARS) -> str:
    """A tool result cut to `limit` characters, saying so."""
    if len(content) <= limit:
        return content
    return content[: limit - len(TRUNCATED)] + TRUNCATED


def _system_prompt(definition: AgentDefinition, specs: list[ToolSpec]) -> str:
    if not specs:
        return definition.system_prompt
    return f"{definition.system_prompt}\n\n{tools_prompt(specs)}"


def _usage(data: dict[str, Any]) -> Usage:
    usage = data.get("usage") or {}
    return Usage(prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0))


async def run_agent(
    definition: AgentDefinition,
    task_input: str,
    tools: list[AgentTool],
    model: AgentModel,
    runner: ToolRunner,
    record: EventSink,
    past: Sequence[tuple[str, dict[str, Any]]] = (),
) -> AgentResult:
    """Run the agent on `task_input` until it answers (or `MaxStepsReached`); see the module docstring.

    Errors of the model or of the runner (other than a tool's own failure) propagate: the caller
    decides whether the task is retried (with this attempt's events as `past`) or failed.
    """
    by_name = {t.name: t for t in tools}
    by_target = {(t.server, t.tool): t for t in tools}
    specs = [ToolSpec(t.name, t.description, t.parameters) for t in tools]
    replay = _Past(past)

    messages = [
        ChatMessage(role="system", content=_system_prompt(definition, specs)),
        ChatMessage(role="user", content=task_input),
    ]
    usage = Usage()
    last_text = ""
    for step in range(1, definition.max_steps + 1):
        schema = _turn_schema(specs, final=step == definition.max_steps)
        recorded = replay.models.get(step)
        if recorded is not None:
            text = recorded.get("text", "")
            usage = usage + _usage(recorded)
            calls = list(recorded.get("tool_calls") or [])
            answer = None if calls else _answer(text, by_name, schema)
        else:
            reply = await model.complete(list(messages), schema, definition.sampling)
            text = reply.text
            usage = usage + reply.usage
            answer, calls = _parse(text, by_name, schema)
            await record(
                "model",
                {
                    "step": step,
                    "text": text,
                    "tool_calls": calls,
                    "usage": {
                        "prompt_tokens": reply.usage.prompt_tokens,
                        "completion_tokens": reply.usage.completion_tokens,
                    },
                    "finish_reason": reply.finish_reason,
                },
            )
            if schema is not None and not calls and reply.finish_reason == "length" and not _is_json(text):
                answer = _cut_answer(text, by_name)  # an answer cut short is still an answer, as on the API
                if answer is None:  # a tool call cut short is nothing
                    raise OutputTruncated(step, usage, text)
        last_text = text
        if answer is not None:
            return AgentResult(answer, usage, step)

        messages.append(
            ChatMessage(
                role="assistant",
                content="\n".join(call_text(c["name"], json.dumps(c["arguments"], ensure_ascii=False)) for c in calls),
            )
        )
        for call in calls:
            content = await _run_call(step, call, by_target, runner, record, replay)
            messages.append(ChatMessage(role="user", content=result_text(call["name"], content)))
    raise MaxStepsReached(definition.max_steps, usage, last_text)


def _cut_answer(text: str, by_name: dict[str, AgentTool]) -> str | None:
    """The decoded `content` of an answer whose JSON max_tokens cut, or None when the output
    was a tool call (or nothing readable)."""
    stream = ToolOutputStream(set(by_name))
    events = stream.feed(text)
    if text.lstrip().startswith("{") and events and all(isinstance(e, ContentDelta) for e in events):
        return "".join(e.text for e in events if isinstance(e, ContentDelta))
    return None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _turn_schema(specs: list[ToolSpec], *, final: bool) -> dict[str, Any] | None:
    """A tool call or an answer; on the last step an answer only, so that an agent whose
    model would call tools forever still ends with what it learned."""
    if not specs:
        return None
    return ANSWER if final else tools_schema(specs, allow_answer=True)


def _answer(text: str, by_name: dict[str, AgentTool], schema: dict[str, Any] | None) -> str:
    """A turn without tool calls as the answer: the `content` of constrained output, else the text."""
    if schema is None:
        return text
    parsed = parse_tool_output(text, set(by_name))
    return parsed.content if parsed.content is not None else text


def _parse(
    text: str, by_name: dict[str, AgentTool], schema: dict[str, Any] | None
) -> tuple[str | None, list[dict[str, Any]]]:
    """A new model turn: (answer, []) or (None, the tool calls as the `model` event lists them)."""
    if schema is None:
        return text, []
    parsed = parse_tool_output(text, set(by_name))
    if not parsed.tool_calls:
        return (parsed.content if parsed.content is not None else text), []
    calls = []
    for parsed_call in parsed.tool_calls:
        tool = by_name.get(parsed_call.name)
        calls.append(
            {
                "id": new_call_id(),
                "name": parsed_call.name,
                "server": tool.server if tool else "",
                "tool": tool.tool if tool else parsed_call.name,
                "arguments": json.loads(parsed_call.arguments),
            }
        )
    return None, calls


async def _run_call(
    step: int,
    call: dict[str, Any],
    by_target: dict[tuple[str, str], AgentTool],
    runner: ToolRunner,
    record: EventSink,
    replay: _Past,
) -> str:
    """One tool call's result as the model sees it: replayed when recorded, run (and recorded) otherwise."""
    call_id = call["id"]
    done = replay.results.get(call_id)
    if done is not None:
        return str(done.get("content", ""))
    server, tool, arguments = call["server"], call["tool"], call["arguments"]
    if call_id not in replay.calls:
        await record("tool_call", {"step": step, "id": call_id, "server": server, "tool": tool, "arguments": arguments})
    started = time.perf_counter()
    if (server, tool) not in by_target:  # impossible under the schema; a replayed turn may name a tool now gone
        outcome = ToolOutcome(f"unknown tool {call['name']!r}: this agent has no such tool", True)
    else:
        outcome = await runner.call(server, tool, arguments)
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    content = capped(outcome.content)
    await record(
        "tool_result",
        {"step": step, "id": call_id, "content": content, "is_error": outcome.is_error, "latency_ms": latency_ms},
    )
    return content

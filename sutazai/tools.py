"""Tool calls and structured output, engine-neutral: the ingress turns OpenAI's `tools` /
`tool_choice` / `response_format` into one JSON schema that the engine constrains its output
to (llama.cpp grammar, vLLM structured outputs), and parses that output back.

Tools are asked for as `{"tool": <name>, "arguments": {...}}`, one `anyOf` branch per allowed
tool so that the arguments match the tool named. With `tool_choice: "auto"` one more branch,
`{"content": "<text>"}`, is a plain answer. Constraining is what makes even a small base model
call tools correctly; a model never sees a schema it is not held to.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, NamedTuple

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from sutazai.errors import BadRequest, InvalidInput

ANSWER = {
    "type": "object",
    "properties": {"content": {"type": "string"}},
    "required": ["content"],
    "additionalProperties": False,
}


class ToolSpec(NamedTuple):
    name: str
    description: str
    parameters: dict[str, Any]


class ParsedCall(NamedTuple):
    name: str
    arguments: str  # a JSON string, as OpenAI sends it


class ParsedOutput(NamedTuple):
    """Either `content` (a plain answer) or `tool_calls`."""

    content: str | None
    tool_calls: list[ParsedCall]


def check_schema(schema: Any, where: str) -> dict[str, Any]:
    """A JSON schema the caller sent, checked against the 2020-12 meta-schema (400 if it is not one)."""
    if not isinstance(schema, dict):
        raise BadRequest(f"{where}: a JSON schema must be an object", code="invalid_schema")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise BadRequest(f"{where}: invalid JSON schema: {exc.message}", code="invalid_schema") from None
    return schema


def tool_specs(tools: list[dict[str, Any]]) -> list[ToolSpec]:
    """The function tools of a request, checked: unique names, object parameters (422 otherwise)."""
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools):
        function = tool.get("function")
        if tool.get("type") != "function" or not isinstance(function, dict):
            raise InvalidInput(f"tools[{i}]: only tools of type 'function' with a 'function' object are served")
        name = function.get("name")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise InvalidInput(f"tools[{i}].function.name must be a string of 1-64 characters")
        if any(s.name == name for s in specs):
            raise InvalidInput(f"tools[{i}]: the tool name {name!r} is given twice")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise InvalidInput(f"tools[{i}].function.parameters must be a JSON schema of type 'object'")
        check_schema(parameters, f"tools[{i}].function.parameters")
        description = function.get("description")
        specs.append(ToolSpec(name, description if isinstance(description, str) else "", parameters))
    return specs


def allowed_tools(specs: list[ToolSpec], tool_choice: Any) -> tuple[list[ToolSpec], bool]:
    """The tools the model may call and whether it may answer in text instead."""
    if tool_choice is None or tool_choice == "auto":
        return specs, True
    if tool_choice == "none":
        return [], True
    if tool_choice == "required":
        return specs, False
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        chosen = [s for s in specs if s.name == name]
        if not chosen:
            raise InvalidInput(f"tool_choice: no tool named {name!r} in tools")
        return chosen, False
    raise InvalidInput("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name'}}")


def tools_schema(specs: list[ToolSpec], allow_answer: bool) -> dict[str, Any]:
    """`{"tool", "arguments"}` with one branch per tool (and `{"content"}` when a text answer is allowed)."""
    branches: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": s.name}, "arguments": s.parameters},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for s in specs
    ]
    if allow_answer:
        branches.append(ANSWER)
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def response_format_schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The schema of a `response_format` (None for text)."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = (response_format or {}).get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidInput("response_format.json_schema must be an object with a name and a schema")
        return check_schema(spec.get("schema", {"type": "object"}), "response_format.json_schema.schema")
    raise InvalidInput("response_format.type must be 'text', 'json_object' or 'json_schema'")


def tools_prompt(specs: list[ToolSpec]) -> str:
    """System lines telling the model which tools it has (the schema holds it to them; this says what they do).
    The `{"content"}` answer of `auto` is left out on purpose: measured on the base 270M model, naming it
    makes the model answer in text even when a tool fits; the schema still allows it."""
    lines = ['You can call these tools by answering with JSON {"tool": <name>, "arguments": {...}}:']
    for s in specs:
        lines.append(f"- {s.name}: {s.description} Parameters: {json.dumps(s.parameters, separators=(',', ':'))}")
    return "\n".join(lines)


def call_text(name: str, arguments: str) -> str:
    """An earlier assistant tool call as the model writes one, for the transcript."""
    try:
        args = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        args = arguments
    return json.dumps({"tool": name, "arguments": args}, ensure_ascii=False)


def result_text(name: str | None, content: str) -> str:
    """A tool's result as a line the model can read."""
    return f"Tool result ({name}): {content}" if name else f"Tool result: {content}"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_tool_output(text: str, names: set[str]) -> ParsedOutput:
    """The constrained output as a tool call or a text answer. Output that is not what the schema
    asked for (cut by max_tokens) is returned as text, so the caller still sees it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return ParsedOutput(text, [])
    if isinstance(value, dict) and value.get("tool") in names and isinstance(value.get("arguments"), dict):
        arguments = json.dumps(value["arguments"], ensure_ascii=False)
        return ParsedOutput(None, [ParsedCall(value["tool"], arguments)])
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return ParsedOutput(value["content"], [])
    return ParsedOutput(text, [])

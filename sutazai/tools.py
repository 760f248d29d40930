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
import re
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


# -- streaming: the constrained output parsed as it arrives -----------------------------------


class ToolCallStart(NamedTuple):
    """A tool call begins: its name is known (its arguments follow as `ArgumentsDelta`s)."""

    name: str


class ArgumentsDelta(NamedTuple):
    """Raw JSON text of the call's `arguments`: all of them together are the arguments JSON."""

    text: str


class ContentDelta(NamedTuple):
    """Text of a plain answer (the decoded `content` string), or output that is not the asked-for shape."""

    text: str


ToolEvent = ToolCallStart | ArgumentsDelta | ContentDelta

_WHITESPACE = " \t\n\r"
_LOW_SURROGATE_PREFIX = re.compile(r"\\(u([dD]([c-fC-F][0-9a-fA-F]{0,2})?)?)?")


class _Wait(Exception):
    """The text so far ends inside a token: parsing resumes when more arrives."""


class _Unexpected(Exception):
    """The text is not the shape the schema asks for."""


class ToolOutputStream:
    """`parse_tool_output`, fed the output chunk by chunk: `feed` returns what can be sent so far,
    `finish` the rest and the parsed whole (always what `parse_tool_output` returns for the whole text).

    `{"tool": <name>, "arguments": {...}}` streams as `ToolCallStart` once the name's string is whole,
    then `ArgumentsDelta`s of the arguments' raw JSON text as it arrives; `{"content": "..."}` streams
    as `ContentDelta`s of the decoded string (escapes split across chunks wait for their end).
    Whitespace between tokens may be anything; the keys are read in the schema's order.

    Output that turns out to be another shape falls back: before anything was sent, the whole is
    sent at the end as `parse_tool_output` reads it (text that does not start as an object is sent as
    content at once); after a call or an answer began, the text from the unexpected point on is sent
    as content. Output that merely stops (cut by max_tokens) sends nothing more once something was
    sent: the caller's finish_reason says it was cut.
    """

    def __init__(self, names: set[str]) -> None:
        self._names = names
        self._text = ""
        self._pos = 0  # what the parser has read of _text
        self._state = "start"
        self._mode = "scan"  # scan | tool | content | deferred | rest
        self._depth = 0  # arguments: nesting depth
        self._in_string = False  # arguments: inside a string
        self._escaped = False  # arguments: after a backslash in a string

    def feed(self, text: str) -> list[ToolEvent]:
        self._text += text
        events: list[ToolEvent] = []
        if self._mode == "rest":
            if text:
                events.append(ContentDelta(text))
        elif self._mode != "deferred":
            self._advance(events)
        return _merged(events)

    def finish(self) -> tuple[list[ToolEvent], ParsedOutput]:
        parsed = parse_tool_output(self._text, self._names)
        events: list[ToolEvent] = []
        if self._mode in ("scan", "deferred"):  # nothing sent yet: the whole, as parsed
            for call in parsed.tool_calls:
                events += [ToolCallStart(call.name), ArgumentsDelta(call.arguments)]
            if parsed.content:
                events.append(ContentDelta(parsed.content))
        return events, parsed

    def _advance(self, events: list[ToolEvent]) -> None:
        try:
            while self._step(events):
                pass
        except _Wait:
            pass
        except _Unexpected:
            if self._mode == "scan":
                starts_as_object = self._text.lstrip(_WHITESPACE)[:1] == "{"
                if starts_as_object:  # parse_tool_output may still read it (keys in another order)
                    self._mode = "deferred"
                    return
                self._pos = 0
            self._mode = "rest"
            if self._pos < len(self._text):
                events.append(ContentDelta(self._text[self._pos :]))

    def _step(self, events: list[ToolEvent]) -> bool:
        """One token of the expected shape; False (or `_Wait`) when it needs more text."""
        state = self._state
        if state == "content":
            return self._content(events)
        if state == "arguments":
            return self._arguments(events)
        start = self._pos
        try:
            return self._token(state, events)
        except (_Wait, _Unexpected):
            self._pos = start  # read again with more text, or sent as it is
            raise

    def _token(self, state: str, events: list[ToolEvent]) -> bool:
        self._skip_whitespace()
        if self._pos >= len(self._text):
            raise _Wait
        if state == "start":
            self._expect("{", "key")
        elif state == "key":
            key = self._string()
            if key == "tool":
                self._state = "tool_colon"
            elif key == "content":
                self._state = "content_colon"
            else:
                raise _Unexpected
        elif state == "tool_colon":
            self._expect(":", "tool_name")
        elif state == "tool_name":
            name = self._string()
            if name not in self._names:
                raise _Unexpected
            self._mode = "tool"
            events.append(ToolCallStart(name))
            self._state = "tool_comma"
        elif state == "tool_comma":
            self._expect(",", "arguments_key")
        elif state == "arguments_key":
            if self._string() != "arguments":
                raise _Unexpected
            self._state = "arguments_colon"
        elif state == "arguments_colon":
            self._expect(":", "arguments_value")
        elif state == "arguments_value":
            if self._text[self._pos] != "{":
                raise _Unexpected
            self._state = "arguments"
        elif state == "content_colon":
            self._expect(":", "content_value")
        elif state == "content_value":
            self._expect('"', "content")
        elif state == "close":
            self._expect("}", "end")
        else:  # end: only whitespace may follow the object
            raise _Unexpected
        return True

    def _skip_whitespace(self) -> None:
        while self._pos < len(self._text) and self._text[self._pos] in _WHITESPACE:
            self._pos += 1

    def _expect(self, char: str, then: str) -> None:
        if self._text[self._pos] != char:
            raise _Unexpected
        self._pos += 1
        self._state = then

    def _string(self) -> str:
        """A whole JSON string at the position (a key or the tool's name), decoded."""
        if self._text[self._pos] != '"':
            raise _Unexpected
        end, escaped = self._pos + 1, False
        while end < len(self._text):
            char = self._text[end]
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                try:
                    value = json.loads(self._text[self._pos : end + 1])
                except json.JSONDecodeError:
                    raise _Unexpected from None
                self._pos = end + 1
                return str(value)
            end += 1
        raise _Wait

    def _arguments(self, events: list[ToolEvent]) -> bool:
        """The arguments object's raw text, as far as it has arrived; its closing brace ends it."""
        start, text = self._pos, self._text
        while self._pos < len(text):
            char = text[self._pos]
            self._pos += 1
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._state = "close"
                    break
        if self._pos > start:
            events.append(ArgumentsDelta(text[start : self._pos]))
        return self._state == "close"

    def _content(self, events: list[ToolEvent]) -> bool:
        """The answer's string decoded as far as it has arrived; an escape waits until it is whole."""
        text, out = self._text, []
        try:
            while self._pos < len(text):
                char = text[self._pos]
                if char == '"':
                    self._pos += 1
                    self._state = "close"
                    break
                if char != "\\":
                    out.append(char)
                    self._pos += 1
                    continue
                length = self._escape_length()
                try:
                    out.append(json.loads(f'"{text[self._pos : self._pos + length]}"'))
                except json.JSONDecodeError:
                    raise _Unexpected from None
                self._pos += length
        finally:
            if out:
                self._mode = "content"
                events.append(ContentDelta("".join(out)))
        return self._state == "close"

    def _escape_length(self) -> int:
        """How many characters the escape at the position takes: 2, 6, or 12 for a surrogate pair."""
        text, pos = self._text, self._pos
        if pos + 1 >= len(text):
            raise _Wait
        if text[pos + 1] != "u":
            return 2
        if pos + 6 > len(text):
            raise _Wait
        if text[pos + 2 : pos + 4].lower() not in ("d8", "d9", "da", "db"):
            return 6
        following = text[pos + 6 : pos + 12]  # a high surrogate: is a low one next?
        if len(following) == 6:
            return 12 if _LOW_SURROGATE_PREFIX.fullmatch(following) else 6
        if not following or _LOW_SURROGATE_PREFIX.fullmatch(following):
            raise _Wait
        return 6


def _merged(events: list[ToolEvent]) -> list[ToolEvent]:
    """Consecutive deltas of one kind as one."""
    merged: list[ToolEvent] = []
    for e in events:
        last = merged[-1] if merged else None
        if isinstance(e, ArgumentsDelta) and isinstance(last, ArgumentsDelta):
            merged[-1] = ArgumentsDelta(last.text + e.text)
        elif isinstance(e, ContentDelta) and isinstance(last, ContentDelta):
            merged[-1] = ContentDelta(last.text + e.text)
        else:
            merged.append(e)
    return merged

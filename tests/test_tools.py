"""Tool calls and structured output as schemas, and the constrained output parsed back."""

import json

import pytest
from jsonschema import Draft202012Validator

from sutazai.errors import BadRequest, InvalidInput
from sutazai.tools import (
    ArgumentsDelta,
    ContentDelta,
    ParsedOutput,
    ToolCallStart,
    ToolOutputStream,
    allowed_tools,
    call_text,
    parse_tool_output,
    response_format_schema,
    result_text,
    tool_specs,
    tools_schema,
)
from tests.helpers import function_tool

TIME = function_tool("get_current_time", "The time in a timezone.", "timezone")
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def valid(schema: dict, value: object) -> bool:
    return Draft202012Validator(schema).is_valid(value)


def test_each_tool_branch_holds_the_arguments_to_that_tools_parameters():
    schema = tools_schema(tool_specs([TIME, WEATHER]), allow_answer=False)
    assert valid(schema, {"tool": "get_current_time", "arguments": {"timezone": "Europe/Paris"}})
    assert not valid(schema, {"tool": "get_current_time", "arguments": {}})
    assert valid(schema, {"tool": "get_weather", "arguments": {}})
    assert not valid(schema, {"tool": "get_date", "arguments": {}})


def test_auto_also_allows_a_text_answer_but_required_does_not():
    specs = tool_specs([TIME])
    assert valid(tools_schema(*allowed_tools(specs, "auto")), {"content": "hello"})
    assert not valid(tools_schema(*allowed_tools(specs, "required")), {"content": "hello"})


def test_a_named_tool_choice_allows_only_that_tool():
    allowed, answer = allowed_tools(
        tool_specs([TIME, WEATHER]), {"type": "function", "function": {"name": "get_weather"}}
    )
    assert [s.name for s in allowed] == ["get_weather"] and not answer


def test_tool_choice_none_offers_no_tools():
    assert allowed_tools(tool_specs([TIME]), "none") == ([], True)


def test_an_unknown_tool_choice_name_is_invalid_input():
    with pytest.raises(InvalidInput):
        allowed_tools(tool_specs([TIME]), {"type": "function", "function": {"name": "nope"}})


def test_parameters_that_are_not_an_object_schema_are_invalid_input():
    with pytest.raises(InvalidInput):
        tool_specs([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}])


def test_a_schema_the_meta_schema_refuses_is_a_bad_request():
    with pytest.raises(BadRequest) as refused:
        response_format_schema({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}})
    assert refused.value.code == "invalid_schema"


def test_response_formats_map_to_schemas():
    assert response_format_schema(None) is None and response_format_schema({"type": "text"}) is None
    assert response_format_schema({"type": "json_object"}) == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert response_format_schema({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}) == schema


def test_a_tool_output_parses_to_a_call_with_json_arguments():
    parsed = parse_tool_output('{"tool": "get_current_time", "arguments": {"timezone": "UTC"}}', {"get_current_time"})
    assert parsed.content is None
    assert [(c.name, json.loads(c.arguments)) for c in parsed.tool_calls] == [("get_current_time", {"timezone": "UTC"})]


def test_a_content_output_parses_to_text():
    assert parse_tool_output('{"content": "hi"}', {"f"}) == ("hi", [])


def test_output_cut_short_is_returned_as_text():
    assert parse_tool_output('{"tool": "f", "argu', {"f"}) == ('{"tool": "f", "argu', [])


def test_history_renders_calls_as_the_models_json_and_results_as_a_line():
    assert json.loads(call_text("f", '{"a": 1}')) == {"tool": "f", "arguments": {"a": 1}}
    assert result_text("f", "42") == "Tool result (f): 42"


# -- the output parsed as it streams (ToolOutputStream) ------------------------------------------

NAMES = {"get_current_time", "get_weather"}


def streamed(text: str, cuts: list[int]) -> tuple[list, ParsedOutput]:
    """Feed `text` cut at `cuts`; every event sent and the final parse."""
    stream, events, start = ToolOutputStream(NAMES), [], 0
    for end in [*cuts, len(text)]:
        events += stream.feed(text[start:end])
        start = end
    rest, parsed = stream.finish()
    return events + rest, parsed


def arguments(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, ArgumentsDelta))


def content(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, ContentDelta))


def every_cut(text: str) -> list[int]:
    return list(range(1, len(text)))


def test_a_streamed_call_starts_once_the_name_is_whole_even_when_a_chunk_ends_inside_it():
    text = '{"tool": "get_weather", "arguments": {"city": "Paris"}}'
    stream = ToolOutputStream(NAMES)
    assert stream.feed('{"tool": "get_w') == []
    assert stream.feed("eather") == []
    assert stream.feed('", "arguments": {"ci') == [ToolCallStart("get_weather"), ArgumentsDelta('{"ci')]
    assert stream.feed('ty": "Paris"}}') == [ArgumentsDelta('ty": "Paris"}')]
    assert stream.finish() == ([], parse_tool_output(text, NAMES))


def test_streamed_arguments_join_to_the_arguments_json_whatever_the_chunks():
    text = '{"tool": "get_weather", "arguments": {"city": "Pa\\"ris}", "days": [1, {"n": 2}]}}'
    events, parsed = streamed(text, every_cut(text))
    assert [e for e in events if isinstance(e, ToolCallStart)] == [ToolCallStart("get_weather")]
    assert len([e for e in events if isinstance(e, ArgumentsDelta)]) > 1
    assert json.loads(arguments(events)) == json.loads(parsed.tool_calls[0].arguments)
    assert parsed == parse_tool_output(text, NAMES)


def test_any_whitespace_between_tokens_streams_the_same_call():
    text = '\n{ "tool" :\t"get_current_time" ,\n  "arguments" : { "timezone" : "UTC" }\n}\n'
    events, parsed = streamed(text, every_cut(text))
    assert events[0] == ToolCallStart("get_current_time")
    assert arguments(events) == '{ "timezone" : "UTC" }'
    assert parsed == parse_tool_output(text, NAMES) and parsed.tool_calls


def test_a_content_answer_streams_as_its_decoded_text_with_escapes_split_across_chunks():
    text = '{"content": "caf\\u00e9 \\"ok\\" \\ud83d\\ude00\\nend\\\\"}'
    events, parsed = streamed(text, every_cut(text))
    assert all(isinstance(e, ContentDelta) for e in events) and len(events) > 1
    assert content(events) == parsed.content == 'café "ok" 😀\nend\\'


def test_an_escape_waits_for_its_last_character_before_it_is_sent():
    stream = ToolOutputStream(NAMES)
    assert stream.feed('{"content": "caf\\u00') == [ContentDelta("caf")]
    assert stream.feed("e9 au \\") == [ContentDelta("é au ")]
    assert stream.feed('"lait\\"') == [ContentDelta('"lait"')]


def test_output_cut_inside_the_arguments_keeps_what_was_sent_and_parses_as_text():
    text = '{"tool": "get_weather", "arguments": {"city": "Pa'
    events, parsed = streamed(text, every_cut(text))
    assert events[0] == ToolCallStart("get_weather") and arguments(events) == '{"city": "Pa'
    assert parsed == parse_tool_output(text, NAMES) == (text, [])


def test_output_cut_before_anything_could_be_sent_is_sent_as_text_at_the_end():
    events, parsed = streamed('{"to', [2])
    assert events == [ContentDelta('{"to')] and parsed == ('{"to', [])


def test_text_that_is_not_an_object_is_sent_as_content_as_it_arrives():
    stream = ToolOutputStream(NAMES)
    assert stream.feed("Hello") == [ContentDelta("Hello")]
    assert stream.feed(" there") == [ContentDelta(" there")]
    assert stream.finish() == ([], ("Hello there", []))


def test_an_unknown_tool_name_falls_back_to_the_whole_text_as_content():
    text = '{"tool": "rm_rf", "arguments": {}}'
    events, parsed = streamed(text, every_cut(text))
    assert events == [ContentDelta(text)] and parsed == (text, [])


def test_keys_in_another_order_are_sent_whole_at_the_end_as_parse_tool_output_reads_them():
    text = '{"arguments": {"city": "Paris"}, "tool": "get_weather"}'
    events, parsed = streamed(text, every_cut(text))
    assert events == [ToolCallStart("get_weather"), ArgumentsDelta(parsed.tool_calls[0].arguments)]


def test_text_after_a_streamed_answer_is_sent_as_content_from_where_it_stops_fitting():
    events, parsed = streamed('{"content": "hi"} and more', [6, 17, 20])
    assert content(events) == "hi and more" and parsed == parse_tool_output('{"content": "hi"} and more', NAMES)

"""Tool calls and structured output as schemas, and the constrained output parsed back."""

import json

import pytest
from jsonschema import Draft202012Validator

from sutazai.errors import BadRequest, InvalidInput
from sutazai.tools import (
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

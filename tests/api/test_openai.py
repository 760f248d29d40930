"""The official `openai` client works against /v1 unchanged."""

import json

import jsonschema
import openai
import pydantic
import pytest

from tests.helpers import function_tool


@pytest.fixture(scope="module")
def api_key(api) -> str:
    """An API key of the test user: the way programs authenticate."""
    r = api.post("/api/v1/auth/keys", json={"name": "openai-client"})
    assert r.status_code == 201, r.text
    return r.json()["key"]


@pytest.fixture(scope="module")
def client(serve_app, api_key):
    return openai.OpenAI(base_url=f"{serve_app}/v1", api_key=api_key, max_retries=0, timeout=120)


def test_models_lists_the_served_models(client):
    assert "gemma3-270m" in [m.id for m in client.models.list().data]


def test_chat_completion_returns_text_and_usage(client):
    r = client.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "What is 2+2?"}], max_tokens=12, temperature=0
    )
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_chat_completion_arrives_in_chunks_with_usage(client):
    stream = client.chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "Tell me about the sea."}],
        max_tokens=16,
        seed=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) >= 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens >= len(texts)


def test_completion_continues_each_prompt(client):
    r = client.completions.create(model="gemma3-270m", prompt=["Once upon a time", "The sky is"], max_tokens=5, seed=1)
    assert [c.index for c in r.choices] == [0, 1] and all(c.text for c in r.choices)
    assert r.usage.completion_tokens <= 10


def test_streamed_completion_yields_text(client):
    parts = [
        c.choices[0].text
        for c in client.completions.create(
            model="gemma3-270m", prompt="Once upon a time", max_tokens=8, seed=2, stream=True
        )
        if c.choices
    ]
    assert len("".join(parts)) > 0


def test_unknown_model_is_a_404_not_found_error(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


def test_unsupported_n_is_a_422(client):
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="gemma3-270m", messages=[{"role": "user", "content": "hi"}], n=2)


def test_a_request_without_a_key_is_refused_with_401(serve_app):
    anonymous = openai.OpenAI(base_url=f"{serve_app}/v1", api_key="sk-not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()


# -- tools and structured output (constrained decoding; the base model calls tools with it) ---

TIME_TOOL = function_tool("get_current_time", "The current time in a timezone.", "timezone")
WEATHER_TOOL = function_tool("get_weather", "The weather in a city.", "city")
PARIS = [{"role": "user", "content": "What time is it in Paris?"}]


def test_tools_return_a_tool_call_whose_arguments_validate(client):
    r = client.chat.completions.create(
        model="gemma3-270m", messages=PARIS, tools=[TIME_TOOL], max_tokens=40, temperature=0
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "get_current_time"
    jsonschema.validate(json.loads(call.function.arguments), TIME_TOOL["function"]["parameters"])


def test_a_named_tool_choice_forces_that_tool(client):
    r = client.chat.completions.create(
        model="gemma3-270m",
        messages=PARIS,
        tools=[TIME_TOOL, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40,
        temperature=0,
    )
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_tool_choice_none_answers_text(client):
    r = client.chat.completions.create(
        model="gemma3-270m", messages=PARIS, tools=[TIME_TOOL], tool_choice="none", max_tokens=12, temperature=0
    )
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason in ("stop", "length")


def test_streamed_tool_calls_work_with_the_clients_stream_helper(client):
    with client.chat.completions.stream(
        model="gemma3-270m", messages=PARIS, tools=[TIME_TOOL], tool_choice="required", max_tokens=40, temperature=0
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls" and call.function.name == "get_current_time"
    jsonschema.validate(json.loads(call.function.arguments), TIME_TOOL["function"]["parameters"])


def test_a_streamed_tool_call_arrives_as_a_named_head_then_pieces_of_its_arguments(client):
    request = {
        "model": "gemma3-270m",
        "messages": [{"role": "user", "content": "What is the weather like in San Francisco today?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "max_tokens": 40,
        "temperature": 0,
    }
    deltas, finishes = [], []  # streamed first: a cached answer would replay as one chunk
    for chunk in client.chat.completions.create(**request, stream=True):
        deltas += chunk.choices[0].delta.tool_calls or []
        finishes.append(chunk.choices[0].finish_reason)
    whole = client.chat.completions.create(**request).choices[0].message.tool_calls[0]
    head, pieces = deltas[0], deltas[1:]
    assert head.id.startswith("call_") and head.type == "function" and head.index == 0
    assert (head.function.name, head.function.arguments) == ("get_weather", "")
    assert len(pieces) > 1 and all(p.id is None and p.function.name is None and p.index == 0 for p in pieces)
    arguments = "".join(p.function.arguments for p in pieces)
    assert json.loads(arguments) == json.loads(whole.function.arguments)
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}


def test_a_json_schema_response_format_answers_json_that_validates(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    r = client.chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "Name a city in France."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
        max_tokens=30,
        temperature=0,
    )
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


class City(pydantic.BaseModel):
    name: str
    country: str


def test_parse_with_a_pydantic_response_format_returns_the_model(client):
    r = client.chat.completions.parse(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "Name a city and its country."}],
        response_format=City,
        max_tokens=40,
        temperature=0,
    )
    assert isinstance(r.choices[0].message.parsed, City)


def test_an_invalid_response_schema_is_a_400(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gemma3-270m",
            messages=PARIS,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}},
            max_tokens=4,
        )


def test_a_schema_the_grammar_builder_refuses_is_a_400(client):
    bad = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(("}}}
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gemma3-270m",
            messages=PARIS,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": bad}},
            max_tokens=4,
        )


def test_a_tool_choice_naming_an_unknown_tool_is_a_422(client):
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(
            model="gemma3-270m",
            messages=PARIS,
            tools=[TIME_TOOL],
            tool_choice={"type": "function", "function": {"name": "nope"}},
            max_tokens=4,
        )


CALLED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_current_time", "arguments": '{"timezone": "Europe/Paris"}'},
        }
    ],
}


def test_a_tool_result_message_is_accepted(client):
    messages = [*PARIS, CALLED, {"role": "tool", "tool_call_id": "call_1", "content": "14:05"}]
    r = client.chat.completions.create(
        model="gemma3-270m", messages=messages, tools=[TIME_TOOL], tool_choice="none", max_tokens=12, temperature=0
    )
    assert r.choices[0].message.content is not None


def test_the_clients_stream_helper_reads_a_text_stream(client):
    with client.chat.completions.stream(
        model="gemma3-270m", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, seed=3
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason in ("stop", "length")

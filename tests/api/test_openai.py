"""The official `openai` client works against /v1 unchanged."""

import openai
import pytest


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

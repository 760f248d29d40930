"""Inputs that once answered 5xx, sent to the real app through Serve: each is a 4xx in the
JSON error shape now, and nothing is stored for them."""

from __future__ import annotations

import json


def assert_422(response) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


def raw_json(text: str) -> dict:
    """Send a body exactly as written (json.dumps would refuse or escape a lone surrogate)."""
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


def test_a_nul_in_the_login_username_is_a_422(serve_app, api):
    assert_422(api.post("/api/v1/auth/login", json={"username": "ad\u0000min", "password": "whatever123"}))


def test_a_nul_in_a_chat_message_is_a_422_before_the_model_runs(api):
    before = api.get("/api/v1/conversations").json()["total"]
    assert_422(api.post("/api/v1/chat", json={"message": "hello\u0000there", "max_tokens": 4}))
    assert api.get("/api/v1/conversations").json()["total"] == before


def test_an_offset_beyond_a_database_integer_is_a_422(api):
    assert_422(api.get("/api/v1/conversations", params={"offset": "99999999999999999999"}))


def test_a_lone_surrogate_in_an_openai_message_is_a_422(api):
    body = '{"model": "gemma3-270m", "messages": [{"role": "user", "content": "hi \\ud800"}]}'
    assert_422(api.post("/v1/chat/completions", **raw_json(body)))


def test_a_lone_surrogate_in_a_content_part_is_a_422(api):
    body = '{"model": "gemma3-270m", "messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}'
    assert_422(api.post("/v1/chat/completions", **raw_json(body)))


def test_a_key_limit_beyond_a_database_integer_is_a_422(serve_app, user_headers):
    import httpx

    response = httpx.post(
        f"{serve_app}/api/v1/auth/keys",
        headers=user_headers,
        json={"name": "big", "requests_per_minute": 2**31},
        timeout=30,
    )
    assert_422(response)


def test_an_overlong_stop_string_is_a_422(api):
    assert_422(api.post("/api/v1/generate", json={"prompt": "Once", "stop": ["x" * 65]}))


def test_errors_never_carry_a_stack_trace(api):
    response = api.post("/api/v1/chat", **raw_json('{"message": "\\ud800"}'))
    assert response.status_code == 422 and "Traceback" not in response.text
    assert set(json.loads(response.text)["error"]) >= {"code", "message", "request_id"}

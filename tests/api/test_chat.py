"""Chat with the real CPU model, stored conversations, streaming, generate, batch."""

import json
import uuid


def sse_events(response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
            name = None
    return events


def test_chat_answers_with_text_and_counted_usage(api):
    r = api.post("/api/v1/chat", json={"message": "What is 2+2?", "temperature": 0, "max_tokens": 16})
    body = r.json()
    assert r.status_code == 200, body
    assert body["message"]["content"].strip()
    assert body["usage"]["prompt_tokens"] > 5 and 0 < body["usage"]["completion_tokens"] <= 16
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert body["cached"] is False and body["model"] == "gemma3-270m"


def test_conversation_history_is_stored_and_sent_as_context(api):
    first = api.post("/api/v1/chat", json={"message": "My name is Ada.", "max_tokens": 12, "seed": 1}).json()
    cid = first["conversation_id"]
    second = api.post(
        "/api/v1/chat", json={"message": "What is my name?", "conversation_id": cid, "max_tokens": 12, "seed": 1}
    ).json()
    assert second["conversation_id"] == cid
    # the second prompt contains the whole first turn
    assert second["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    stored = api.get(f"/api/v1/conversations/{cid}").json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "user", "assistant"]
    assert stored["messages"][0]["content"] == "My name is Ada."
    assert stored["messages"][3]["content"] == second["message"]["content"]


def test_chat_in_an_unknown_conversation_is_404_and_stores_nothing(api):
    cid = str(uuid.uuid4())
    r = api.post("/api/v1/chat", json={"message": "hi", "conversation_id": cid})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert api.get(f"/api/v1/conversations/{cid}").status_code == 404


def test_chat_with_an_unknown_model_is_404(api):
    r = api.post("/api/v1/chat", json={"message": "hi", "model": "no-such-model"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_chat_validation_errors_are_422_with_the_error_shape(api):
    for bad in (
        {"message": ""},
        {"message": "hi", "temperature": 5},
        {"message": "hi", "max_tokens": 0},
        {"message": "hi", "surprise": 1},
        {"message": "hi", "conversation_id": "not-a-uuid"},
        {},
    ):
        r = api.post("/api/v1/chat", json=bad)
        assert r.status_code == 422, bad
        error = r.json()["error"]
        assert error["code"] == "validation_error" and error["message"] and error["request_id"]


def test_malformed_json_is_422_not_500(api):
    r = api.post("/api/v1/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_stream_sends_several_token_events_then_done_with_usage(api):
    with api.stream(
        "POST", "/api/v1/chat/stream", json={"message": "Tell me a story about a cat.", "max_tokens": 24, "seed": 3}
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    tokens = [e for e in events if e[0] == "token"]
    assert len(tokens) >= 3
    assert events[-1][0] == "done"
    done = events[-1][1]
    assert done["usage"]["completion_tokens"] >= len(tokens) > 0
    stored = api.get(f"/api/v1/conversations/{done['conversation_id']}").json()
    assert stored["messages"][-1]["content"] == "".join(e[1]["text"] for e in tokens)


def test_stream_validation_error_is_an_http_422(api):
    r = api.post("/api/v1/chat/stream", json={"message": ""})
    assert r.status_code == 422


def test_same_seed_gives_the_same_answer(api, admin_api):
    payload = {"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0.9, "seed": 42}
    admin_api.post("/api/v1/cache/invalidate")
    a = api.post("/api/v1/generate", json=payload).json()
    admin_api.post("/api/v1/cache/invalidate")
    b = api.post("/api/v1/generate", json=payload).json()
    assert a["text"] and a["text"] == b["text"] and b["cached"] is False


def test_generate_continues_raw_text(api):
    r = api.post("/api/v1/generate", json={"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0})
    body = r.json()
    assert r.status_code == 200 and body["text"] and body["usage"]["completion_tokens"] <= 8


def test_max_tokens_ends_with_finish_reason_length(api):
    body = api.post("/api/v1/generate", json={"prompt": "Once upon a time", "max_tokens": 3, "seed": 5}).json()
    assert body["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 3


def test_stop_sequence_is_honoured_and_not_returned(api):
    body = api.post(
        "/api/v1/generate", json={"prompt": "1, 2, 3, 4,", "max_tokens": 20, "temperature": 0, "stop": ["7"]}
    ).json()
    assert "7" not in body["text"] and body["finish_reason"] == "stop"


def test_batch_runs_every_prompt(api):
    prompts = ["Once upon a time", "The sky is", "In 1492,"]
    body = api.post("/api/v1/batch", json={"prompts": prompts, "max_tokens": 6, "seed": 9}).json()
    assert body["succeeded"] == 3 and body["failed"] == 0
    assert [i["index"] for i in body["results"]] == [0, 1, 2]
    assert all(i["text"] for i in body["results"])
    assert body["usage"]["completion_tokens"] == sum(i["usage"]["completion_tokens"] for i in body["results"])


def test_batch_refuses_an_empty_list(api):
    assert api.post("/api/v1/batch", json={"prompts": []}).status_code == 422


def test_conversations_list_and_delete(api):
    cid = api.post("/api/v1/chat", json={"message": "hello", "max_tokens": 4}).json()["conversation_id"]
    listed = api.get("/api/v1/conversations", params={"limit": 100}).json()
    assert cid in [c["id"] for c in listed["items"]]
    assert api.delete(f"/api/v1/conversations/{cid}").status_code == 204
    assert api.get(f"/api/v1/conversations/{cid}").status_code == 404
    assert api.delete(f"/api/v1/conversations/{cid}").status_code == 404


def test_a_user_cannot_see_another_users_conversation(api, new_user_headers):
    cid = api.post("/api/v1/chat", json={"message": "secret plans", "max_tokens": 4}).json()["conversation_id"]
    other = new_user_headers("user")
    assert api.get(f"/api/v1/conversations/{cid}", headers=other).status_code == 404
    assert cid not in [c["id"] for c in api.get("/api/v1/conversations", headers=other).json()["items"]]
    r = api.post("/api/v1/chat", headers=other, json={"message": "hi", "conversation_id": cid, "max_tokens": 4})
    assert r.status_code == 404
    assert api.delete(f"/api/v1/conversations/{cid}", headers=other).status_code == 404
    assert api.get(f"/api/v1/conversations/{cid}").status_code == 200


def test_a_viewer_may_read_but_not_chat(api, new_user_headers):
    viewer = new_user_headers("viewer")
    assert api.get("/api/v1/conversations", headers=viewer).status_code == 200
    r = api.post("/api/v1/chat", headers=viewer, json={"message": "hi"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_batch_refuses_an_empty_prompt_inside_the_list(api):
    r = api.post("/api/v1/batch", json={"prompts": ["fine", ""]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_one_users_cached_answer_is_not_served_to_another(api, new_user_headers):
    payload = {"prompt": "A cached secret:", "max_tokens": 4, "temperature": 0}
    first = api.post("/api/v1/generate", json=payload).json()
    again = api.post("/api/v1/generate", json=payload).json()
    other = api.post("/api/v1/generate", json=payload, headers=new_user_headers("user")).json()
    assert again["cached"] is True and other["cached"] is False
    assert other["text"] == first["text"]  # the same greedy answer, computed afresh for the other user

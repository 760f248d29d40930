"""The Redis response cache for deterministic requests."""


def test_repeat_of_a_deterministic_request_is_answered_from_cache(api):
    payload = {"prompt": "A cache test: the quick brown fox", "max_tokens": 8, "temperature": 0}
    before = api.get("/api/v1/cache/stats").json()
    first = api.post("/api/v1/generate", json=payload).json()
    second = api.post("/api/v1/generate", json=payload).json()
    after = api.get("/api/v1/cache/stats").json()
    assert first["cached"] is False and second["cached"] is True
    assert second["text"] == first["text"] and second["usage"] == first["usage"]
    assert after["hits"] >= before["hits"] + 1 and after["misses"] >= before["misses"] + 1


def test_sampled_requests_without_a_seed_are_never_cached(api):
    payload = {"prompt": "Random words:", "max_tokens": 4, "temperature": 0.8}
    api.post("/api/v1/generate", json=payload)
    assert api.post("/api/v1/generate", json=payload).json()["cached"] is False


def test_invalidate_empties_the_cache(api, admin_api):
    payload = {"prompt": "Invalidate me", "max_tokens": 4, "temperature": 0}
    api.post("/api/v1/generate", json=payload)
    r = admin_api.post("/api/v1/cache/invalidate", json={"model": "gemma3-270m"})
    assert r.status_code == 200 and r.json()["deleted"] >= 1
    assert api.post("/api/v1/generate", json=payload).json()["cached"] is False


def test_streamed_chat_repeat_is_replayed_from_cache(api):
    payload = {"message": "Say hello.", "max_tokens": 8, "temperature": 0, "system_prompt": "cache-stream"}
    api.post("/api/v1/chat", json=payload)
    with api.stream("POST", "/api/v1/chat/stream", json=payload) as r:
        done = [line for line in r.iter_lines() if line.startswith("data: ") and '"cached"' in line]
    assert '"cached":true' in done[-1]


def test_invalidating_the_cache_is_for_admins_only(api):
    r = api.post("/api/v1/cache/invalidate")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"

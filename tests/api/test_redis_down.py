"""Redis is not critical: with it unreachable the cache is bypassed, chat works,
and detailed health says degraded. The app runs in-process here (same factory
as the ingress) against a closed Redis port, the real Postgres and the real
model deployment reached through its Serve handle."""

import httpx
import pytest

from tests.conftest import app_in_process
from tests.helpers import free_port


@pytest.fixture(scope="module")
async def redis_down_api(serve_app, replica_settings, user_headers):
    settings = replica_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with (
        app_in_process(settings) as app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=120, headers=user_headers
        ) as client,
    ):
        yield client


async def test_health_reports_redis_down_as_degraded_not_failed(redis_down_api):
    r = await redis_down_api.get("/api/v1/health/detailed")
    body = r.json()
    assert r.status_code == 200
    assert body["status"] == "degraded" and body["components"]["redis"]["status"] == "down"
    assert body["components"]["postgres"]["status"] == "ok"


async def test_chat_still_works_with_the_cache_bypassed(redis_down_api):
    payload = {"message": "What is 2+2?", "max_tokens": 8, "temperature": 0}
    first = (await redis_down_api.post("/api/v1/chat", json=payload)).json()
    second = (await redis_down_api.post("/api/v1/chat", json=payload)).json()
    assert first["message"]["content"] and first["cached"] is False and second["cached"] is False


async def test_cache_stats_answer_503_when_redis_is_down(redis_down_api):
    r = await redis_down_api.get("/api/v1/cache/stats")
    assert r.status_code == 503 and r.headers["retry-after"] and r.json()["error"]["code"] == "unavailable"

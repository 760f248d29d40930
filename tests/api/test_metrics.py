"""Our metrics: the middleware's route templates, and every metric exported by Ray after real traffic."""

import time
import uuid

import httpx
import pytest
from fastapi import FastAPI

from sutazai import metrics
from sutazai.api.middleware import AccessMiddleware


class Recorded:
    def __init__(self) -> None:
        self.calls: list[tuple[float, dict]] = []

    def record(self, value: float = 1.0, **tags: str) -> None:
        self.calls.append((value, tags))


async def test_the_middleware_counts_a_request_by_its_route_template(monkeypatch):
    recorded = Recorded()
    monkeypatch.setattr(metrics, "HTTP_REQUESTS", recorded)
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict:
        return {"id": item_id}

    app.add_middleware(AccessMiddleware)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/items/42")).status_code == 200
    assert recorded.calls == [(1, {"route": "/items/{item_id}", "method": "GET", "status": "200"})]


def test_recording_outside_ray_does_nothing_and_never_raises():
    metrics.Metric("counter", "sutazai_test_unused", "never made outside Ray", ("k",)).record(1, k="v")


def _traffic(api: httpx.Client, serve_app: str) -> None:
    """A chat, a cached repeat, a stream, MCP calls (one failing in the tool), an agent task, a 429."""
    payload = {"prompt": f"Metrics {uuid.uuid4().hex[:6]}:", "max_tokens": 4, "temperature": 0}
    for _ in range(2):
        assert api.post("/api/v1/generate", json=payload).status_code == 200
    assert api.post("/api/v1/chat", json={"message": "What is 2+2?", "max_tokens": 8, "seed": 1}).status_code == 200
    with api.stream("POST", "/api/v1/chat/stream", json={"message": "A story.", "max_tokens": 16, "seed": 2}) as r:
        assert r.status_code == 200
        r.read()
    for timezone in ("Europe/Paris", "Not/AZone"):
        body = {"server": "time", "tool": "get_current_time", "arguments": {"timezone": timezone}}
        assert api.post("/api/v1/mcp/execute", json=body).status_code == 200
    task = {"input": "What time is it in UTC?", "wait": True, "wait_timeout_s": 120}
    assert api.post("/api/v1/agents/assistant/run", json=task).status_code == 200
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    codes = [
        httpx.post(
            f"{serve_app}/api/v1/auth/login", json={"username": name, "password": "wrong"}, timeout=30
        ).status_code
        for _ in range(11)
    ]
    assert codes[-1] == 429


def _samples(text: str) -> dict[str, float]:
    """Metric name (labels dropped) -> the sum of its samples."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ray_sutazai_"):
            name, value = line.split("{", 1)[0], line.rsplit(" ", 1)[1]
            out[name] = out.get(name, 0.0) + float(value)
    return out


COUNTERS = [
    "http_requests",
    "prompt_tokens",
    "generation_tokens",
    "cache_hits",
    "cache_misses",
    "mcp_call_errors",
    "rate_limited_requests",
    "tasks_started",
    "tasks_finished",
]
HISTOGRAMS = [
    "http_request_duration_seconds",
    "time_to_first_token_seconds",
    "inter_token_latency_seconds",
    "mcp_call_duration_seconds",
    "task_queue_wait_seconds",
    "task_run_duration_seconds",
]
GAUGES = ["num_requests_running", "num_requests_waiting"]
EXPECTED = (
    [f"ray_sutazai_{n}_total" for n in COUNTERS]
    + [f"ray_sutazai_{n}_{part}" for n in HISTOGRAMS for part in ("sum", "count")]
    + [f"ray_sutazai_{n}" for n in GAUGES]
)


@pytest.fixture(scope="module")
def exported(api, serve_app) -> dict[str, float]:
    """The session's Ray metrics after traffic; Ray exports them some seconds later."""
    import ray

    _traffic(api, serve_app)
    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    deadline = time.monotonic() + 40
    while True:
        samples = _samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
        if all(name in samples for name in EXPECTED) or time.monotonic() > deadline:
            return samples
        time.sleep(2)


@pytest.mark.parametrize("name", [n for n in EXPECTED if not n.removeprefix("ray_sutazai_").startswith("num_")])
def test_metric_is_exported_with_a_positive_value(exported, name):
    assert exported.get(name, 0.0) > 0, sorted(exported)


@pytest.mark.parametrize("gauge", [f"ray_sutazai_{n}" for n in GAUGES])
def test_gauge_is_exported(exported, gauge):
    assert exported.get(gauge, -1.0) >= 0, sorted(exported)

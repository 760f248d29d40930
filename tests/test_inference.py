"""An overloaded model answers 503 with Retry-After instead of hanging.

A second, deliberately tiny deployment of the real model (one request running,
one queued) is hit concurrently through the same API factory as the ingress."""

import asyncio
from pathlib import Path

import httpx
import pytest
from ray import serve

from deployments.cpu_model import CPUModelServer
from sutazai.catalog import ModelCatalog, ModelSpec
from sutazai.settings import Settings
from tests.conftest import app_in_process


@pytest.fixture(scope="module")
async def tiny_model_api(serve_app, app_env, replica_settings, user_headers):
    base = ModelCatalog.load(Settings().models_dir).get("gemma3-270m").model_dump()
    gguf = Path(app_env["SUTAZAI_DATA_DIR"]) / "models" / "gemma3-270m.gguf"
    spec = ModelSpec.model_validate(
        base | {"name": "tiny", "source": {"path": str(gguf)}, "cpu": {"slots": 1, "threads_per_slot": 1}}
    )
    handle = serve.run(
        CPUModelServer.options(
            name="llm-tiny",
            num_replicas=1,
            max_ongoing_requests=1,
            max_queued_requests=1,
            ray_actor_options={"num_cpus": 0.5},
        ).bind(spec.model_dump()),
        name="backpressure",
        route_prefix=None,
    )
    settings = replica_settings(cache_enabled=False)
    async with (
        app_in_process(settings, ModelCatalog([spec]), {"tiny": handle}) as app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=120, headers=user_headers
        ) as client,
    ):
        yield client
    serve.delete("backpressure")


async def test_requests_beyond_the_queue_get_503_with_retry_after(tiny_model_api):
    payload = {"prompt": "Once upon a time", "max_tokens": 48, "seed": 1}
    responses = await asyncio.gather(*(tiny_model_api.post("/api/v1/generate", json=payload) for _ in range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses, statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "2"
    assert refused.json()["error"]["code"] == "unavailable" and "capacity" in refused.json()["error"]["message"]

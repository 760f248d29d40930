"""Overload stays fast: flooding the real default model deployment (as the app builder
sizes it: `max_ongoing_requests` + `max_queued_requests` per replica) gets the excess a
503 with Retry-After in milliseconds, not a long wait; the accepted requests still finish.

tests/test_inference.py shows the 503 on a deliberately tiny second deployment; this one
floods the deployment the session app really runs, with more concurrent requests than it
can hold at its largest (every replica it may scale to, full), and times the refusals.
The app is built in this process (`app_in_process`) with no per-user concurrency cap, so
the model's own back-pressure, not the rate limiter, is what answers."""

from __future__ import annotations

import asyncio
import time

import httpx

from sutazai.auth.rate_limit import TOKENS
from sutazai.catalog import Autoscaling, DeploymentOptions, ModelCatalog
from tests.conftest import app_in_process


async def test_a_flood_beyond_the_models_queue_is_refused_in_milliseconds(serve_app, replica_settings, user_headers):
    settings = replica_settings(cache_enabled=False, max_concurrent_model_requests=10_000)
    catalog = ModelCatalog.load(settings.models_dir)
    spec = catalog.get(settings.default_model or catalog.names()[0])
    capacity = (spec.deployment.max_ongoing_requests + spec.deployment.max_queued_requests) * max(
        spec.autoscaling.max_replicas, 1
    )
    flood = capacity + 24
    payload = {"prompt": "Once upon a time", "max_tokens": 4, "seed": 1, "model": spec.name}

    async with (
        app_in_process(settings, catalog) as app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=300, headers=user_headers
        ) as client,
    ):

        async def timed() -> tuple[httpx.Response, float]:
            started = time.perf_counter()
            response = await client.post("/api/v1/generate", json=payload)
            return response, time.perf_counter() - started

        answers = await asyncio.gather(*(timed() for _ in range(flood)))

    statuses = [r.status_code for r, _ in answers]
    refused = [(r, took) for r, took in answers if r.status_code == 503]
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and refused, f"capacity {capacity}, flood {flood}: {sorted(statuses)}"
    for response, _ in refused:
        assert response.headers["retry-after"].isdigit()
        assert response.json()["error"]["code"] == "unavailable"
    fastest_refusals = sorted(took for _, took in refused)[: max(1, len(refused) // 2)]
    slowest_ok = max(took for r, took in answers if r.status_code == 200)
    print(
        f"capacity {capacity}, flood {flood}: {statuses.count(200)} x 200, {len(refused)} x 503; "
        f"median refusal {fastest_refusals[-1] * 1000:.0f} ms, slowest 200 {slowest_ok * 1000:.0f} ms"
    )
    # The refusals do not wait for the model: half of them come back within a second (on two
    # busy cores, with the flood's own requests queued in the same event loop), long before
    # the accepted requests are through.
    assert fastest_refusals[-1] < 1.0, fastest_refusals
    assert fastest_refusals[-1] < slowest_ok, (fastest_refusals, slowest_ok)


async def test_a_call_beyond_this_replicas_share_is_refused_before_it_is_charged(
    serve_app, replica_settings, user_headers
):
    """The model deployment has room (Serve would queue it), but this ingress replica's share
    of it (here one call) is taken: the next call gets a 503 at once, charged nothing (no
    token budget was reserved: no X-RateLimit-*-Tokens headers), and the place comes back
    when the call holding it ends."""
    settings = replica_settings(cache_enabled=False, max_concurrent_model_requests=10_000, ingress_min_replicas=1)
    catalog = ModelCatalog.load(settings.models_dir)
    name = settings.default_model or catalog.names()[0]
    catalog.specs[name] = catalog.specs[name].model_copy(
        update={
            "deployment": DeploymentOptions(max_ongoing_requests=1, max_queued_requests=0),
            "autoscaling": Autoscaling(min_replicas=1, max_replicas=1),
        }
    )
    slow = {"prompt": "Once upon a time", "max_tokens": 48, "seed": 7, "model": name}
    quick = slow | {"max_tokens": 2}

    async with (
        app_in_process(settings, catalog) as app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=300, headers=user_headers
        ) as client,
    ):
        admission = app.state.services.inference.clients[name].admission
        assert admission.limit == 1
        holding = asyncio.create_task(client.post("/api/v1/generate", json=slow))
        while admission.in_flight == 0:
            await asyncio.sleep(0.005)

        refused = await client.post("/api/v1/generate", json=quick)
        assert not holding.done()
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"].isdigit()
        assert refused.json()["error"]["code"] == "unavailable"
        assert "at capacity" in refused.json()["error"]["message"]
        assert not any(h.lower().endswith("-tokens") for h in refused.headers), dict(refused.headers)

        assert (await holding).status_code == 200
        assert admission.in_flight == 0
        again = await client.post("/api/v1/generate", json=quick)
        assert again.status_code == 200, again.text
        assert "x-ratelimit-remaining-tokens" in again.headers  # what a charged call carries
        assert admission.in_flight == 0


async def test_while_every_model_is_full_a_model_route_is_shed_before_authentication(serve_app, replica_settings):
    """No model can take a call: a model route answers 503 + Retry-After at the door, even to a
    request with no credential (nothing is parsed or looked up for it); other routes are not
    affected, and once a place is free the same request is authenticated as usual (401)."""
    settings = replica_settings(cache_enabled=False, ingress_min_replicas=1)
    catalog = ModelCatalog.load(settings.models_dir)
    body = {"prompt": "Once upon a time", "max_tokens": 2, "model": catalog.names()[0]}
    async with (
        app_in_process(settings, catalog) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=60) as client,
    ):
        admissions = [c.admission for c in app.state.services.inference.clients.values()]
        tickets = [a.take(a.limit or 1) for a in admissions]  # every place of every model taken
        assert all(a.full for a in admissions)

        shed = await client.post("/v1/completions", json=body)
        assert shed.status_code == 503
        assert shed.headers["retry-after"].isdigit()
        error = shed.json()["error"]
        assert error["code"] == "unavailable" and "at capacity" in error["message"]
        assert error["request_id"] == shed.headers["x-request-id"]
        assert shed.headers["x-content-type-options"] == "nosniff"  # the security headers still apply
        assert (await client.post("/api/v1/chat", content=b"not json")).status_code == 503
        assert (await client.get("/api/v1/models")).status_code == 401  # not a model route: as usual

        tickets[0].release()
        assert (await client.post("/v1/completions", json=body)).status_code == 401


def test_the_shed_routes_are_the_ones_that_run_a_model():
    from sutazai.api import chat, embeddings, openai
    from sutazai.api.shedding import model_paths

    routes = [*chat.router.routes, *openai.router.routes, *embeddings.router.routes]
    assert model_paths(routes) == {
        "/api/v1/chat",
        "/api/v1/chat/stream",
        "/api/v1/generate",
        "/api/v1/batch",
        "/v1/chat/completions",
        "/v1/completions",
    }


async def test_a_cached_answer_is_served_to_a_caller_at_its_concurrency_cap_and_charged_its_tokens(
    serve_app, replica_settings, user_headers
):
    """A cached answer runs nothing, so it takes none of the caller's concurrent model calls:
    with its one call running, a new call is refused (429) but a cached answer is served, and
    it costs the caller the tokens it reports."""
    settings = replica_settings(cache_enabled=True, max_concurrent_model_requests=1)
    catalog = ModelCatalog.load(settings.models_dir)
    name = settings.default_model or catalog.names()[0]
    body = {"prompt": "The cache keeps", "max_tokens": 3, "seed": 4242, "model": name}
    slow = {"prompt": "Once upon a time", "max_tokens": 48, "temperature": 0.9, "model": name}  # never cached

    async with (
        app_in_process(settings, catalog) as app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=300, headers=user_headers
        ) as client,
    ):
        await app.state.services.cache.invalidate(name)
        first = await client.post("/api/v1/generate", json=body)
        assert first.status_code == 200 and first.json()["cached"] is False, first.text
        cached = [await client.post("/api/v1/generate", json=body) for _ in range(2)]
        admission = app.state.services.inference.clients[name].admission
        holding = asyncio.create_task(client.post("/api/v1/generate", json=slow))
        while admission.in_flight == 0:
            await asyncio.sleep(0.005)
        refused = await client.post("/api/v1/generate", json=body | {"max_tokens": 4})  # not cached
        again = await client.post("/api/v1/generate", json=body)
        assert not holding.done()
        assert (await holding).status_code == 200

    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "too_many_concurrent_requests"
    assert again.status_code == 200, again.text
    assert again.json()["cached"] is True
    assert again.json()["text"] == first.json()["text"]
    assert [r.json()["cached"] for r in cached] == [True, True]
    remaining = [int(r.headers["x-ratelimit-remaining-tokens"]) for r in cached]
    assert remaining[0] - remaining[1] == cached[1].json()["usage"]["total_tokens"] > 0


async def test_a_cached_answer_is_refused_once_the_callers_token_budget_is_spent(
    serve_app, replica_settings, user_headers
):
    settings = replica_settings(cache_enabled=True, max_concurrent_model_requests=10_000, ingress_min_replicas=1)
    catalog = ModelCatalog.load(settings.models_dir)
    name = settings.default_model or catalog.names()[0]
    body = {"prompt": "The budget keeps", "max_tokens": 3, "seed": 4343, "model": name}

    async with (
        app_in_process(settings, catalog) as app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=300, headers=user_headers
        ) as client,
    ):
        services = app.state.services
        await services.cache.invalidate(name)
        first = await client.post("/api/v1/generate", json=body)
        assert first.status_code == 200 and first.json()["cached"] is False, first.text
        principal = services.authenticator.cached(user_headers["Authorization"].removeprefix("Bearer "))
        assert principal is not None
        limits = principal.token_limits(settings)
        for limit in limits:  # the whole minute's budget spent
            await services.limiter.add(TOKENS, [limit], limit.limit)
        refused = await client.post("/api/v1/generate", json=body)
        for limit in limits:
            await services.limiter.add(TOKENS, [limit], -limit.limit)

    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "token_rate_limited"
    assert refused.headers["retry-after"].isdigit()
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"

"""The security middleware: headers, body size limit, CORS; streaming untouched."""

from __future__ import annotations

import httpx

from tests.auth.helpers import build_app, make_settings
from tests.helpers import client_for

ALLOWED = "https://app.example"


async def test_json_responses_carry_security_headers_and_no_store(client):
    response = await client.get("/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_token_responses_are_not_cacheable(client, new_user):
    user = await new_user("user")
    response = await client.post(
        "/api/v1/auth/login", json={"username": user.username, "password": "correct horse battery staple"}
    )
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"


async def test_hsts_only_over_https(app):
    async with client_for(app) as plain:
        assert "strict-transport-security" not in (await plain.get("/health")).headers
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as secure:
        assert (await secure.get("/health")).headers["strict-transport-security"].startswith("max-age=")


async def test_a_stream_passes_through_with_its_own_cache_control(client, auth_headers):
    async with client.stream("GET", "/test/stream", headers=await auth_headers("viewer")) as response:
        chunks = [chunk async for chunk in response.aiter_text()]
    assert "".join(chunks) == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert response.headers["cache-control"] == "no-store" and response.headers["x-content-type-options"] == "nosniff"


async def test_a_declared_oversized_body_is_413_in_the_error_shape(client):
    response = await client.post(
        "/api/v1/auth/login", content=b"x" * 5000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large" and "4096" in response.json()["error"]["message"]


async def test_a_chunked_oversized_body_is_413_too(client):
    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    response = await client.post("/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


async def test_a_body_within_the_limit_is_accepted(client):
    response = await client.post("/api/v1/auth/login", json={"username": "nobody_here", "password": "x" * 1000})
    assert response.status_code == 401


async def test_cors_preflight_from_a_configured_origin_is_allowed_with_credentials(client):
    response = await client.options(
        "/test/things",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_cors_ignores_an_unknown_origin(client):
    response = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_headers_are_on_error_answers_too(client):
    response = await client.get("/api/v1/auth/me", headers={"Origin": ALLOWED})
    assert response.status_code == 401 and response.headers["access-control-allow-origin"] == ALLOWED
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "www-authenticate" in exposed and "retry-after" in exposed and "x-ratelimit-remaining" in exposed


async def test_a_wildcard_origin_never_comes_with_credentials(database_url, pool, redis_client):
    async with build_app(make_settings(database_url, cors_origins=["*"])) as app, client_for(app) as client:
        response = await client.get("/health", headers={"Origin": "https://anything.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


async def test_no_configured_origins_means_no_cors_headers(database_url, pool, redis_client):
    async with build_app(make_settings(database_url, cors_origins=[])) as app, client_for(app) as client:
        response = await client.get("/health", headers={"Origin": ALLOWED})
    assert "access-control-allow-origin" not in response.headers

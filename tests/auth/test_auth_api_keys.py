"""API keys: shown once, stored hashed, scoped, revocable at once, usable by the openai client."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx2
import openai

from tests.auth.helpers import assert_401, bearer, login


async def create_key(client, headers, **body) -> dict:
    response = await client.post("/api/v1/auth/keys", headers=headers, json={"name": "ci", **body})
    assert response.status_code == 201, response.text
    return response.json()


async def test_key_is_shown_once_and_stored_only_as_a_hash(client, auth_headers, pool):
    headers = await auth_headers("user")
    created = await create_key(client, headers)
    assert created["key"].startswith("sk-") and created["key"].startswith(created["prefix"])
    row = await pool.fetchrow("SELECT * FROM api_keys WHERE id = $1", created["id"])
    assert row["key_hash"] == hashlib.sha256(created["key"].encode()).hexdigest()
    assert created["key"] not in str(dict(row))
    listed = (await client.get("/api/v1/auth/keys", headers=headers)).json()["items"]
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]


async def test_key_authenticates_its_owner(client, auth_headers):
    created = await create_key(client, await auth_headers("user"))
    me = (await client.get("/api/v1/auth/me", headers=bearer(created["key"]))).json()
    assert me["auth_method"] == "api_key" and me["key_id"] == created["id"] and me["scopes"] == ["read", "write"]


async def test_revoked_key_is_refused_at_once(client, auth_headers, pool):
    headers = await auth_headers("user")
    created = await create_key(client, headers)
    assert (await client.get("/test/things", headers=bearer(created["key"]))).status_code == 200
    assert (await client.delete(f"/api/v1/auth/keys/{created['id']}", headers=headers)).status_code == 204
    assert_401(await client.get("/test/things", headers=bearer(created["key"])))
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'api_key.revoke' AND target = $1", created["id"]
        )
        == 1
    )


async def test_expired_key_is_refused(client, auth_headers, pool):
    created = await create_key(
        client, await auth_headers("user"), expires_at=(datetime.now(UTC) + timedelta(days=1)).isoformat()
    )
    await pool.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", created["id"])
    response = await client.get("/test/things", headers=bearer(created["key"]))
    assert_401(response)
    assert "expired" in response.json()["error"]["message"]


async def test_expiry_in_the_past_is_rejected_at_creation(client, auth_headers):
    response = await client.post(
        "/api/v1/auth/keys",
        headers=await auth_headers("user"),
        json={"name": "x", "expires_at": "2000-01-01T00:00:00Z"},
    )
    assert response.status_code == 422


async def test_unknown_key_is_refused(client):
    assert_401(await client.get("/test/things", headers=bearer("sk-" + "A" * 43)))


async def test_read_scoped_key_cannot_call_a_write_route(client, auth_headers):
    created = await create_key(client, await auth_headers("user"), scopes=["read"])
    response = await client.post("/test/things", headers=bearer(created["key"]), json={})
    assert response.status_code == 403 and "scope" in response.json()["error"]["message"]
    assert (await client.get("/test/things", headers=bearer(created["key"]))).status_code == 200


async def test_key_of_an_admin_has_no_admin_power_unless_asked_for(client, auth_headers):
    headers = await auth_headers("admin")
    plain = await create_key(client, headers)
    powerful = await create_key(client, headers, scopes=["admin"])
    assert (await client.post("/api/v1/cache/invalidate", headers=bearer(plain["key"]))).status_code == 403
    assert (await client.post("/api/v1/cache/invalidate", headers=bearer(powerful["key"]))).status_code == 200


async def test_key_scopes_cannot_exceed_the_owners_role(client, auth_headers):
    response = await client.post(
        "/api/v1/auth/keys", headers=await auth_headers("viewer"), json={"name": "x", "scopes": ["write"]}
    )
    assert response.status_code == 403


async def test_key_loses_power_when_its_owner_is_demoted(client, new_user, pool):
    user = await new_user("user")
    headers = bearer((await login(client, user.username))["access_token"])
    created = await create_key(client, headers)
    await pool.execute("UPDATE users SET role = 'viewer' WHERE id = $1", user.id)
    assert (await client.post("/test/things", headers=bearer(created["key"]), json={})).status_code == 403


async def test_a_key_cannot_create_keys(client, auth_headers):
    created = await create_key(client, await auth_headers("user"))
    response = await client.post("/api/v1/auth/keys", headers=bearer(created["key"]), json={"name": "child"})
    assert response.status_code == 403


async def test_another_users_key_cannot_be_revoked_or_seen(client, auth_headers):
    owner, other = await auth_headers("user"), await auth_headers("user")
    created = await create_key(client, owner)
    assert (await client.get("/api/v1/auth/keys", headers=other)).json()["items"] == []
    response = await client.delete(f"/api/v1/auth/keys/{created['id']}", headers=other)
    assert response.status_code == 404
    assert (await client.get("/test/things", headers=bearer(created["key"]))).status_code == 200


async def test_admin_can_revoke_anyones_key(client, auth_headers):
    created = await create_key(client, await auth_headers("user"))
    response = await client.delete(f"/api/v1/auth/keys/{created['id']}", headers=await auth_headers("admin"))
    assert response.status_code == 204
    assert_401(await client.get("/test/things", headers=bearer(created["key"])))


async def test_key_use_is_recorded_as_last_used(client, auth_headers, pool):
    created = await create_key(client, await auth_headers("user"))
    await client.get("/test/things", headers=bearer(created["key"]))
    assert await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", created["id"]) is not None


async def test_key_creation_is_audited_without_the_key(client, auth_headers, pool):
    created = await create_key(client, await auth_headers("user"))
    details = await pool.fetchval(
        "SELECT details::text FROM audit_log WHERE action = 'api_key.create' AND target = $1", created["id"]
    )
    assert created["prefix"] in details and created["key"] not in details


async def test_the_official_openai_client_works_with_an_api_key(app, client, auth_headers):
    created = await create_key(client, await auth_headers("user"))
    http_client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))
    async with openai.AsyncOpenAI(
        base_url="http://testserver/v1", api_key=created["key"], http_client=http_client, max_retries=0
    ) as ai:
        models = await ai.models.list()
    assert models.object == "list" and models.data == []  # this test app serves no model


async def test_the_openai_client_gets_an_authentication_error_for_a_revoked_key(app, client, auth_headers):
    headers = await auth_headers("user")
    created = await create_key(client, headers)
    await client.delete(f"/api/v1/auth/keys/{created['id']}", headers=headers)
    http_client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))
    async with openai.AsyncOpenAI(
        base_url="http://testserver/v1", api_key=created["key"], http_client=http_client, max_retries=0
    ) as ai:
        try:
            await ai.models.list()
        except openai.AuthenticationError as exc:
            assert exc.status_code == 401
        else:
            raise AssertionError("a revoked key was accepted")

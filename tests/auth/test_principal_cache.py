"""The per-replica principal cache: a repeat request skips Postgres, and every revocation
still applies on the very next request, on this replica and on the others."""

from __future__ import annotations

import asyncio

from sutazai.storage.users import UserStore
from tests.auth.helpers import assert_401, bearer, build_app, login, make_settings
from tests.helpers import client_for


async def create_key(client, headers) -> dict:
    response = await client.post("/api/v1/auth/keys", headers=headers, json={"name": "cache"})
    assert response.status_code == 201, response.text
    return response.json()


def services_of(app):
    return app.state.services


def count_lookups(monkeypatch, services) -> dict[str, int]:
    calls = {"keys": 0, "sessions": 0}
    lookup, session_user = services.api_keys.lookup, services.sessions.session_user

    async def counting_lookup(key_hash):
        calls["keys"] += 1
        return await lookup(key_hash)

    async def counting_session_user(user_id, family_id):
        calls["sessions"] += 1
        return await session_user(user_id, family_id)

    monkeypatch.setattr(services.api_keys, "lookup", counting_lookup)
    monkeypatch.setattr(services.sessions, "session_user", counting_session_user)
    return calls


async def test_a_repeat_request_does_not_look_the_credential_up_again(app, client, auth_headers, monkeypatch):
    headers = await auth_headers("user")
    created = await create_key(client, headers)
    calls = count_lookups(monkeypatch, services_of(app))
    for _ in range(3):
        assert (await client.get("/test/things", headers=bearer(created["key"]))).status_code == 200
        assert (await client.get("/test/things", headers=headers)).status_code == 200
    assert calls == {"keys": 1, "sessions": 0}  # the JWT was resolved (and cached) by create_key
    assert services_of(app).authenticator.cache.hits >= 4


async def test_concurrent_requests_with_one_new_credential_share_one_lookup(app, client, auth_headers, monkeypatch):
    headers = await auth_headers("user")
    created = await create_key(client, headers)
    calls = count_lookups(monkeypatch, services_of(app))
    key = bearer(created["key"])
    responses = await asyncio.gather(*(client.get("/test/things", headers=key) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert calls == {"keys": 1, "sessions": 0}


async def test_a_request_after_a_revocation_does_not_share_a_lookup_begun_before_it(
    app, client, auth_headers, monkeypatch
):
    headers = await auth_headers("user")
    created = await create_key(client, headers)
    services = services_of(app)
    lookup, reads = services.api_keys.lookup, []
    read_before_revocation, revoked = asyncio.Event(), asyncio.Event()

    async def lookup_held_after_the_first_read(key_hash):
        found = await lookup(key_hash)
        reads.append(found)
        if len(reads) == 1:
            read_before_revocation.set()
            await revoked.wait()
        return found

    monkeypatch.setattr(services.api_keys, "lookup", lookup_held_after_the_first_read)
    key = bearer(created["key"])
    first = asyncio.create_task(client.get("/test/things", headers=key))
    await read_before_revocation.wait()
    assert (await client.delete(f"/api/v1/auth/keys/{created['id']}", headers=headers)).status_code == 204
    try:  # joined to the held lookup it would wait for ever: the timeout turns that into a failure
        after = await asyncio.wait_for(client.get("/test/things", headers=key), 10)
    finally:
        revoked.set()
    await first
    assert_401(after)
    assert len(reads) == 2


async def test_a_revoked_key_is_refused_on_the_next_request_while_cached(app, client, auth_headers):
    headers = await auth_headers("user")
    created = await create_key(client, headers)
    key = bearer(created["key"])
    assert (await client.get("/test/things", headers=key)).status_code == 200
    assert (await client.get("/test/things", headers=key)).status_code == 200  # served from the cache
    assert services_of(app).authenticator.cached(created["key"]) is not None
    assert (await client.delete(f"/api/v1/auth/keys/{created['id']}", headers=headers)).status_code == 204
    response = await client.get("/test/things", headers=key)
    assert_401(response)
    assert "revoked" in response.json()["error"]["message"]


async def test_logout_and_role_changes_apply_while_cached(client, new_user, pool):
    user = await new_user("user")
    tokens = await login(client, user.username)
    headers = bearer(tokens["access_token"])
    assert (await client.get("/test/things", headers=headers)).status_code == 200
    assert (await client.post("/test/things", headers=headers, json={})).status_code == 201
    await UserStore(pool).update(user.id, role="viewer")  # a store built elsewhere (another process) announces too
    assert (await client.post("/test/things", headers=headers, json={})).status_code == 403
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    assert_401(await client.get("/test/things", headers=headers))


async def test_a_revocation_reaches_another_replica(database_url, new_user):
    """Replica B cached the key; it is revoked through replica A; B refuses it (by Postgres NOTIFY)."""
    user = await new_user("user")
    settings = make_settings(database_url)
    async with (
        build_app(settings) as replica_a,
        build_app(settings) as replica_b,
        client_for(replica_a) as a,
        client_for(replica_b) as b,
    ):
        headers = bearer((await login(a, user.username))["access_token"])
        created = await create_key(a, headers)
        key = bearer(created["key"])
        assert (await b.get("/test/things", headers=key)).status_code == 200
        assert (await b.get("/test/things", headers=key)).status_code == 200
        assert services_of(replica_b).authenticator.cached(created["key"]) is not None
        # Simulate a replica in another process: only the notification reaches B's cache.
        from sutazai.auth import principal_cache

        principal_cache._caches.discard(services_of(replica_b).authenticator.cache)
        assert (await a.delete(f"/api/v1/auth/keys/{created['id']}", headers=headers)).status_code == 204
        for _ in range(100):  # delivered within milliseconds
            if services_of(replica_b).authenticator.cached(created["key"]) is None:
                break
            await asyncio.sleep(0.01)
        assert_401(await b.get("/test/things", headers=key))


async def test_nothing_is_cached_while_revocations_cannot_arrive(app, client, auth_headers, monkeypatch):
    headers = await auth_headers("user")
    cache = services_of(app).authenticator.cache
    assert (await client.get("/test/things", headers=headers)).status_code == 200
    assert cache.enabled
    await cache._conn.close()  # the LISTEN connection is lost
    assert not cache.enabled
    calls = count_lookups(monkeypatch, services_of(app))
    for _ in range(2):
        assert (await client.get("/test/things", headers=headers)).status_code == 200
    assert calls["sessions"] == 2

"""Login, me, refresh rotation with reuse detection, logout: against real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sutazai.auth.tokens import ACCESS, TokenSigner
from sutazai.storage.users import UserStore
from tests.auth.helpers import JWT_SECRET, PASSWORD, assert_401, bearer, build_app, login, make_settings
from tests.helpers import client_for


async def audit_rows(pool, action: str, **where):
    rows = await pool.fetch("SELECT * FROM audit_log WHERE action = $1 ORDER BY id", action)
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


async def test_login_returns_an_access_and_a_refresh_token(client, new_user):
    user = await new_user("user")
    tokens = await login(client, user.username)
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    assert tokens["access_token"] != tokens["refresh_token"]


async def test_login_is_case_insensitive_on_the_username(client, new_user):
    user = await new_user("user")
    await login(client, user.username.upper())


async def test_successful_login_is_audited(client, new_user, pool):
    user = await new_user("user")
    await login(client, user.username)
    rows = await audit_rows(pool, "auth.login", actor_id=user.id)
    assert len(rows) == 1 and rows[0]["client_ip"] == "127.0.0.1" and rows[0]["actor_name"] == user.username


async def test_wrong_password_is_401_and_audited(client, new_user, pool):
    user = await new_user("user")
    response = await client.post("/api/v1/auth/login", json={"username": user.username, "password": "wrong password!"})
    assert_401(response)
    assert response.json()["error"]["code"] == "invalid_credentials"
    rows = await audit_rows(pool, "auth.login_failed", actor_id=user.id)
    assert len(rows) == 1 and '"bad_password"' in rows[0]["details"]


async def test_unknown_username_fails_like_a_wrong_password_and_is_not_stored(client, pool):
    typed = "hunter2-typed-into-the-username-field"
    response = await client.post("/api/v1/auth/login", json={"username": typed, "password": "whatever123"})
    assert_401(response)
    assert response.json()["error"]["message"] == "invalid username or password"
    dump = await pool.fetchval("SELECT string_agg(audit_log::text, '\n') FROM audit_log")
    assert typed not in dump


async def test_disabled_user_cannot_log_in(client, new_user, pool):
    user = await new_user("user")
    await UserStore(pool).update(user.id, disabled=True)
    response = await client.post("/api/v1/auth/login", json={"username": user.username, "password": PASSWORD})
    assert_401(response)


async def test_me_describes_the_caller(client, new_user):
    user = await new_user("viewer")
    tokens = await login(client, user.username)
    me = (await client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).json()
    assert me == {
        "id": str(user.id),
        "username": user.username,
        "role": "viewer",
        "auth_method": "jwt",
        "scopes": ["read"],
        "key_id": None,
    }


async def test_protected_route_without_credentials_is_401(client):
    assert_401(await client.get("/api/v1/auth/me"))


async def test_basic_auth_is_not_accepted(client):
    assert_401(await client.get("/api/v1/auth/me", headers={"Authorization": "Basic dXNlcjpwYXNz"}))


async def test_refresh_returns_a_new_pair_and_the_new_refresh_token_works(client, new_user):
    user = await new_user("user")
    first = await login(client, user.username)
    second = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/api/v1/auth/me", headers=bearer(second["access_token"]))).status_code == 200
    third = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200


async def test_reusing_a_spent_refresh_token_revokes_the_whole_family(client, new_user, pool):
    user = await new_user("user")
    first = await login(client, user.username)
    second = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()

    assert_401(await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}))  # the thief
    # The legitimate holder's newer tokens die with the family, access token included.
    assert_401(await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}))
    assert_401(await client.get("/api/v1/auth/me", headers=bearer(second["access_token"])))
    assert len(await audit_rows(pool, "auth.refresh_reuse", actor_id=user.id)) == 1


async def test_reuse_in_one_session_leaves_other_sessions_alone(client, new_user):
    user = await new_user("user")
    phone, laptop = await login(client, user.username), await login(client, user.username)
    await client.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    await client.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})  # reuse
    assert (await client.get("/api/v1/auth/me", headers=bearer(laptop["access_token"]))).status_code == 200


async def test_concurrent_refreshes_of_one_token_succeed_at_most_once(client, new_user):
    user = await new_user("user")
    tokens = await login(client, user.username)
    body = {"refresh_token": tokens["refresh_token"]}
    results = await asyncio.gather(*(client.post("/api/v1/auth/refresh", json=body) for _ in range(3)))
    assert sorted(r.status_code for r in results)[0] in (200, 401)
    assert sum(r.status_code == 200 for r in results) <= 1


async def test_refresh_token_is_refused_as_an_access_token(client, new_user):
    user = await new_user("user")
    tokens = await login(client, user.username)
    assert_401(await client.get("/api/v1/auth/me", headers=bearer(tokens["refresh_token"])))


async def test_access_token_is_refused_at_the_refresh_route(client, new_user):
    user = await new_user("user")
    tokens = await login(client, user.username)
    assert_401(await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["access_token"]}))


async def test_logout_ends_the_access_and_the_refresh_token(client, new_user, pool):
    user = await new_user("user")
    tokens = await login(client, user.username)
    headers = bearer(tokens["access_token"])
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    assert_401(await client.get("/api/v1/auth/me", headers=headers))
    assert_401(await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}))
    assert len(await audit_rows(pool, "auth.logout", actor_id=user.id)) == 1


async def test_disabling_a_user_ends_their_access_at_once(client, new_user, pool):
    user = await new_user("user")
    tokens = await login(client, user.username)
    await UserStore(pool).update(user.id, disabled=True)
    assert_401(await client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])))


async def test_a_role_change_applies_to_existing_tokens_at_once(client, new_user, pool):
    user = await new_user("user")
    headers = bearer((await login(client, user.username))["access_token"])
    assert (await client.post("/api/v1/cache/invalidate", headers=headers)).status_code == 403
    await UserStore(pool).update(user.id, role="admin")
    assert (await client.post("/api/v1/cache/invalidate", headers=headers)).status_code == 200


async def test_unknown_fields_in_the_login_body_are_rejected(client, new_user):
    user = await new_user("user")
    response = await client.post(
        "/api/v1/auth/login", json={"username": user.username, "password": PASSWORD, "role": "admin"}
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


async def test_a_replica_purges_refresh_tokens_long_expired(database_url, pool, new_user):
    user = await new_user("user")
    old, fresh = uuid.uuid4(), uuid.uuid4()
    await pool.executemany(
        "INSERT INTO refresh_tokens (jti, family_id, user_id, expires_at) VALUES ($1, $1, $2, now() + $3)",
        [(old, user.id, timedelta(days=-2)), (fresh, user.id, timedelta(days=1))],
    )
    async with build_app(make_settings(database_url, purge_interval_s=0.05)):
        for _ in range(100):
            if not await pool.fetchval("SELECT count(*) FROM refresh_tokens WHERE jti = $1", old):
                break
            await asyncio.sleep(0.05)
    remaining = {r["jti"] for r in await pool.fetch("SELECT jti FROM refresh_tokens WHERE jti = ANY($1)", [old, fresh])}
    assert remaining == {fresh}


async def test_an_access_token_of_a_session_never_recorded_is_refused(client, settings, new_user):
    user = await new_user("user")
    signer = TokenSigner.from_settings(settings, JWT_SECRET)
    token = signer.issue(user_id=user.id, role="user", token_type=ACCESS, family_id=uuid.uuid4()).token
    assert_401(await client.get("/api/v1/auth/me", headers=bearer(token)))


async def test_a_session_ends_at_its_absolute_lifetime_however_often_refreshed(database_url, new_user):
    user = await new_user("user")
    async with build_app(make_settings(database_url, session_max_s=1)) as app, client_for(app) as client:
        tokens = await login(client, user.username)
        await asyncio.sleep(1.2)
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_401(refreshed)
    assert "expired" in refreshed.json()["error"]["message"]


async def test_a_user_cannot_hold_more_api_keys_than_the_cap(database_url, new_user):
    user = await new_user("user")
    async with build_app(make_settings(database_url, max_api_keys_per_user=2)) as app, client_for(app) as client:
        headers = bearer((await login(client, user.username))["access_token"])
        codes = [
            (await client.post("/api/v1/auth/keys", headers=headers, json={"name": f"k{i}"})).status_code
            for i in range(3)
        ]
    assert codes == [201, 201, 409]


async def test_docs_are_off_outside_the_embedded_default_unless_asked(database_url):
    async with build_app(make_settings(database_url)) as app, client_for(app) as client:
        assert (await client.get("/openapi.json")).status_code == 404
        assert (await client.get("/docs")).status_code == 404
    async with build_app(make_settings(database_url, docs_enabled=True)) as app, client_for(app) as client:
        assert (await client.get("/openapi.json")).status_code == 200

"""Roles: every route's protection, viewer read-only, admin-only user management and audit log."""

from __future__ import annotations

import pytest

from sutazai.api.deps import ViewerDep
from sutazai.errors import LastAdmin
from sutazai.storage.users import UserStore
from tests.auth.helpers import PASSWORD, bearer, login
from tests.route_protection import check_route_protection

PUBLIC_ROUTES = {("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh"), ("GET", "/health")}


async def test_every_route_in_the_openapi_schema_is_protected_as_declared(app, client, auth_headers):
    counts = await check_route_protection(
        app,
        client,
        public=PUBLIC_ROUTES,
        user_headers=await auth_headers("user"),
        viewer_headers=await auth_headers("viewer"),
    )
    assert counts["public"] == 3 and counts["admin"] >= 5 and counts["viewer_forbidden"] >= 3


async def test_viewer_may_read(client, auth_headers):
    assert (await client.get("/test/things", headers=await auth_headers("viewer"))).status_code == 200


async def test_viewer_is_forbidden_on_a_write_route(client, auth_headers):
    response = await client.post("/test/things", headers=await auth_headers("viewer"), json={"a": 1})
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


async def test_user_may_write(client, auth_headers):
    assert (await client.post("/test/things", headers=await auth_headers("user"), json={"a": 1})).status_code == 201


async def test_user_is_forbidden_on_admin_routes(client, auth_headers):
    headers = await auth_headers("user")
    for method, path in [("GET", "/api/v1/users"), ("GET", "/api/v1/audit"), ("POST", "/api/v1/cache/invalidate")]:
        assert (await client.request(method, path, headers=headers)).status_code == 403, path


async def test_admin_creates_a_user_who_can_log_in(client, auth_headers, pool):
    admin = await auth_headers("admin")
    response = await client.post(
        "/api/v1/users", headers=admin, json={"username": "made_by_admin", "password": PASSWORD, "role": "viewer"}
    )
    assert response.status_code == 201 and response.json()["role"] == "viewer"
    assert "password" not in response.text
    await login(client, "made_by_admin")
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'user.create' AND target = $1", response.json()["id"]
        )
        == 1
    )


async def test_duplicate_username_is_a_conflict(client, auth_headers, new_user):
    existing = await new_user("user")
    response = await client.post(
        "/api/v1/users",
        headers=await auth_headers("admin"),
        json={"username": existing.username.upper(), "password": PASSWORD},
    )
    assert response.status_code == 409


async def test_short_password_is_rejected(client, auth_headers):
    response = await client.post(
        "/api/v1/users", headers=await auth_headers("admin"), json={"username": "shorty", "password": "abc"}
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "weak_password"


async def test_admin_lists_users_paginated(client, auth_headers, new_user):
    admin = await auth_headers("admin")
    for _ in range(3):
        await new_user("viewer")
    page = (await client.get("/api/v1/users?limit=2&offset=1", headers=admin)).json()
    assert len(page["items"]) == 2 and page["total"] >= 4 and (page["limit"], page["offset"]) == (2, 1)
    assert all("password" not in str(item) for item in page["items"])


async def test_admin_changes_a_role_and_it_is_audited(client, auth_headers, new_user, pool):
    user = await new_user("user")
    response = await client.patch(
        f"/api/v1/users/{user.id}", headers=await auth_headers("admin"), json={"role": "viewer"}
    )
    assert response.status_code == 200 and response.json()["role"] == "viewer"
    row = await pool.fetchrow("SELECT * FROM audit_log WHERE action = 'user.role_change' AND target = $1", str(user.id))
    assert '"from": "user"' in row["details"] and '"to": "viewer"' in row["details"]


async def test_admin_disables_a_user_whose_sessions_end(client, auth_headers, new_user):
    user = await new_user("user")
    tokens = await login(client, user.username)
    response = await client.patch(
        f"/api/v1/users/{user.id}", headers=await auth_headers("admin"), json={"disabled": True}
    )
    assert response.status_code == 200 and response.json()["disabled"] is True
    assert (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 401
    assert (await client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).status_code == 401


async def test_admin_resets_a_password(client, auth_headers, new_user):
    user = await new_user("user")
    new_password = "a brand new passphrase"
    response = await client.patch(
        f"/api/v1/users/{user.id}", headers=await auth_headers("admin"), json={"password": new_password}
    )
    assert response.status_code == 200
    await login(client, user.username, new_password)


async def test_patch_of_an_unknown_user_is_404(client, auth_headers):
    response = await client.patch(
        "/api/v1/users/00000000-0000-0000-0000-000000000000", headers=await auth_headers("admin"), json={"role": "user"}
    )
    assert response.status_code == 404


async def test_the_last_enabled_admin_cannot_be_demoted(pool, new_user):
    # A private view of the rule: demote every admin but one, then try the last.
    admin = await new_user("admin")
    others = [
        r["id"]
        for r in await pool.fetch("SELECT id FROM users WHERE role = 'admin' AND NOT disabled AND id <> $1", admin.id)
    ]
    async with pool.acquire() as conn:
        await conn.execute("UPDATE users SET disabled = true WHERE id = ANY($1::uuid[])", others)
    try:
        with pytest.raises(LastAdmin):
            await UserStore(pool).update(admin.id, role="user")
    finally:
        await pool.execute("UPDATE users SET disabled = false WHERE id = ANY($1::uuid[])", others)


async def test_audit_log_is_paginated_newest_first(client, auth_headers):
    admin = await auth_headers("admin")
    first = (await client.get("/api/v1/audit?limit=3", headers=admin)).json()
    second = (await client.get("/api/v1/audit?limit=3&offset=3", headers=admin)).json()
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert len(ids) == 6 and ids == sorted(ids, reverse=True) and first["total"] >= 6


async def test_audit_log_filters_by_action(client, auth_headers):
    admin = await auth_headers("admin")
    page = (await client.get("/api/v1/audit?action=auth.login", headers=admin)).json()
    assert page["items"] and {e["action"] for e in page["items"]} == {"auth.login"}


async def test_the_route_check_catches_a_forgotten_dependency_and_a_viewer_write(app, client, auth_headers):
    @app.delete("/api/v1/forgotten")
    async def forgotten():
        return {}

    @app.post("/api/v1/viewer-can-write")
    async def viewer_can_write(caller: ViewerDep):
        return {}

    try:
        await check_route_protection(
            app,
            client,
            public=PUBLIC_ROUTES,
            user_headers=await auth_headers("user"),
            viewer_headers=await auth_headers("viewer"),
        )
    except AssertionError as exc:
        assert "DELETE /api/v1/forgotten has no auth dependency" in str(exc)
        assert "write route POST /api/v1/viewer-can-write answered 200 to a viewer" in str(exc)
    else:
        raise AssertionError("the route check missed both problems")

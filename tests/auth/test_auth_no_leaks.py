"""Passwords (and API keys) never appear in responses, logs or the audit log."""

from __future__ import annotations

import logging

from tests.auth.helpers import bearer, login

SECRET_PASSWORD = "Leak-Canary-Passw0rd-7f3a"
WRONG_PASSWORD = "Wrong-Canary-Passw0rd-91bd"
RESET_PASSWORD = "Reset-Canary-Passw0rd-c40e"


async def test_passwords_and_keys_never_reach_responses_logs_or_the_audit_log(client, auth_headers, pool, caplog):
    caplog.set_level(logging.DEBUG)
    admin = await auth_headers("admin")
    bodies: list[str] = []

    async def call(method, path, **kwargs):
        response = await client.request(method, path, **kwargs)
        bodies.append(response.text + str(response.headers))
        return response

    created = await call(
        "POST", "/api/v1/users", headers=admin, json={"username": "canary_user", "password": SECRET_PASSWORD}
    )
    user_id = created.json()["id"]
    await call("POST", "/api/v1/auth/login", json={"username": "canary_user", "password": WRONG_PASSWORD})
    await call(
        "POST", "/api/v1/auth/login", json={"username": "canary_user", "password": SECRET_PASSWORD, "extra": 1}
    )  # 422
    await call(
        "POST", "/api/v1/auth/login", json={"username": SECRET_PASSWORD, "password": SECRET_PASSWORD}
    )  # name typo'd as password
    await call(
        "POST", "/api/v1/users", headers=admin, json={"username": "too_short", "password": SECRET_PASSWORD[:5]}
    )  # 422
    tokens = await login(client, "canary_user", SECRET_PASSWORD)
    key = (await call("POST", "/api/v1/auth/keys", headers=bearer(tokens["access_token"]), json={"name": "k"})).json()[
        "key"
    ]
    await call("GET", "/api/v1/auth/me", headers=bearer(key))
    await call("PATCH", f"/api/v1/users/{user_id}", headers=admin, json={"password": RESET_PASSWORD, "role": "viewer"})
    await call("PATCH", f"/api/v1/users/{user_id}", headers=admin, json={"password": "short"})  # 422

    audit_dump = await pool.fetchval("SELECT string_agg(audit_log::text, '\n') FROM audit_log")
    users_dump = await pool.fetchval("SELECT string_agg(users::text, '\n') FROM users")
    for secret in (SECRET_PASSWORD, WRONG_PASSWORD, RESET_PASSWORD, SECRET_PASSWORD[:5]):
        assert not any(secret in body for body in bodies), f"{secret!r} in a response"
        assert secret not in caplog.text, f"{secret!r} in the logs"
        assert secret not in audit_dump, f"{secret!r} in the audit log"
        assert secret not in users_dump, f"{secret!r} stored in clear"
    assert key not in caplog.text and key not in audit_dump
    assert "auth.login_failed" in audit_dump and "user.password_reset" in audit_dump

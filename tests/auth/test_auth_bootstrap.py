"""The first admin (environment or CLI), startup wiring, and the migration's ownership column."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sutazai.auth import cli
from sutazai.auth.accounts import ensure_admin
from sutazai.auth.secret import SecretConfigError
from sutazai.settings import Settings
from sutazai.storage.users import UserStore
from tests.auth.helpers import PASSWORD, build_app, login, make_settings
from tests.helpers import client_for


@pytest.fixture(autouse=True)
def _no_database_url_in_env(monkeypatch):
    """These tests build Settings from the environment, where CI exports DATABASE_URL."""
    monkeypatch.delenv("DATABASE_URL", raising=False)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def test_ensure_admin_creates_the_admin_from_the_environment_once(database_url, pool, client):
    name = unique("envadmin")
    settings = make_settings(database_url, admin_username=name, admin_password="an admin passphrase")
    assert await ensure_admin(UserStore(pool), settings) == "created"
    assert await ensure_admin(UserStore(pool), settings) == "exists"
    assert (await UserStore(pool).get_by_username(name)).role == "admin"
    await login(client, name, "an admin passphrase")


async def test_ensure_admin_keeps_a_changed_password(database_url, pool, client):
    name = unique("envadmin")
    await ensure_admin(
        UserStore(pool), make_settings(database_url, admin_username=name, admin_password="first passphrase")
    )
    await asyncio.to_thread(cli.set_password, make_settings(database_url), name, "second passphrase", dsn=database_url)
    await ensure_admin(
        UserStore(pool), make_settings(database_url, admin_username=name, admin_password="first passphrase")
    )
    await login(client, name, "second passphrase")


async def test_ensure_admin_without_a_password_creates_nobody(database_url, pool):
    name = unique("nopass")
    assert await ensure_admin(UserStore(pool), make_settings(database_url, admin_username=name)) == "no_password"
    assert await UserStore(pool).get_by_username(name) is None


async def test_concurrent_replicas_create_the_admin_exactly_once(database_url, pool):
    settings = make_settings(database_url, admin_username=unique("raceadmin"), admin_password="an admin passphrase")
    results = await asyncio.gather(*(ensure_admin(UserStore(pool), settings) for _ in range(4)))
    assert sorted(results) == ["created", "exists", "exists", "exists"]


async def test_cli_creates_a_user_who_can_log_in(database_url, client):
    name = unique("cliadmin")
    user = await asyncio.to_thread(
        cli.create_user, make_settings(database_url), name, PASSWORD, "admin", dsn=database_url
    )
    assert user.role == "admin"
    await login(client, name)


async def test_cli_reports_a_taken_name_readably(database_url, new_user):
    existing = await new_user("user")
    with pytest.raises(cli.CLIError, match="taken"):
        await asyncio.to_thread(
            cli.create_user, make_settings(database_url), existing.username, PASSWORD, "user", dsn=database_url
        )


async def test_cli_without_a_database_says_so():
    with pytest.raises(cli.CLIError, match="DATABASE_URL"):
        cli.create_user(Settings(_env_file=None), "x", PASSWORD, "admin")


async def test_the_app_refuses_to_start_without_a_secret_outside_embedded_mode(database_url):
    with pytest.raises(SecretConfigError):
        async with build_app(make_settings(database_url, jwt_secret=None)):
            pass


async def test_the_built_app_is_ready_to_log_in(database_url, new_user):
    user = await new_user("user")
    async with build_app(make_settings(database_url)) as app, client_for(app) as client:
        await login(client, user.username)


async def test_cli_resets_a_password_and_ends_the_sessions(database_url, client, new_user):
    user = await new_user("user")
    tokens = await login(client, user.username)
    new_password = "another long passphrase"
    await asyncio.to_thread(
        cli.set_password, make_settings(database_url), user.username, new_password, dsn=database_url
    )
    await login(client, user.username, new_password)
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401


async def test_conversations_gain_an_owner_column(pool, new_user):
    user = await new_user("user")
    conversation = uuid.uuid4()
    await pool.execute(
        "INSERT INTO conversations (id, title, model, user_id) VALUES ($1, 't', 'm', $2)", conversation, user.id
    )
    await pool.execute("DELETE FROM users WHERE id = $1", user.id)
    assert await pool.fetchval("SELECT count(*) FROM conversations WHERE id = $1", conversation) == 0

"""Fixtures for the auth tests: a throwaway database in the real Postgres
(dropped at the end), a private key namespace in the real Redis, and a fresh
app per test (see helpers.build_app)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher

from sutazai.auth import accounts, passwords
from sutazai.storage.db import apply_migrations
from sutazai.storage.users import User, UserStore
from tests.auth.helpers import PASSWORD, REDIS_PREFIX, RUN_ID, bearer, build_app, login, make_settings
from tests.helpers import BASE_DATABASE_URL, REDIS_URL, client_for, database_url_named


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing():
    """Cheap argon2 parameters keep the suite fast; production keeps the library defaults."""
    original = passwords._hasher
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    passwords._dummy_hash = None
    yield
    passwords._hasher = original
    passwords._dummy_hash = None


@pytest.fixture(scope="session")
async def database_url():
    name = f"sutazai_auth_test_{RUN_ID}"
    conn = await asyncpg.connect(BASE_DATABASE_URL)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    yield database_url_named(BASE_DATABASE_URL, name)
    conn = await asyncpg.connect(BASE_DATABASE_URL)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


@pytest.fixture(scope="session")
async def pool(database_url):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def redis_client():
    client = aioredis.from_url(REDIS_URL)
    yield client
    async for key in client.scan_iter(match=f"{REDIS_PREFIX}*", count=500):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def settings(database_url):
    return make_settings(database_url)


@pytest.fixture
async def app(settings, redis_client):
    async with build_app(settings) as app:
        yield app


@pytest.fixture
async def client(app):
    async with client_for(app) as c:
        yield c


@pytest.fixture
def new_user(pool):
    """Factory: a fresh user of the given role with a unique name."""

    async def make(role: str = "user", password: str = PASSWORD) -> User:
        return await accounts.create_user(UserStore(pool), f"{role}_{uuid.uuid4().hex[:10]}", password, role)

    return make


@pytest.fixture
def auth_headers(client, new_user):
    """Factory: Authorization headers of a freshly logged-in user of the given role."""

    async def make(role: str = "user") -> dict[str, str]:
        user = await new_user(role)
        return bearer((await login(client, user.username))["access_token"])

    return make

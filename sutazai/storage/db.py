"""PostgreSQL pool and versioned schema migrations.

Migrations are the files `migrations/NNNN_name.sql`, applied in order, each in
its own transaction, recorded in `schema_migrations`. An advisory lock makes
concurrent starts (several replicas at once) apply each file exactly once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

logger = logging.getLogger("sutazai.db")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_ID = 0x5A7A1  # any constant shared by every SutazAI process
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name must be NNNN_name.sql: {path.name}")
        migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {directory}")
    return migrations


async def apply_migrations(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply pending migrations; returns the versions applied now (empty when up to date)."""
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version INTEGER PRIMARY KEY,
                   name TEXT NOT NULL,
                   applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            logger.info("applied migration %04d_%s", migration.version, migration.name)
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied_now


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection's reset on its way back to the pool, beyond asyncpg's own (which rolls back
    an open transaction and drops listeners): nothing. asyncpg's default also runs
    `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`, a second round trip after
    every query, undoing what this app never leaves on a connection: its settings are
    transaction-local (`set_config(..., true)`), its locks `pg_advisory_xact_lock` (the
    migration lock is released before its connection returns), and its LISTENs hold connections
    of their own (task_events, principal_cache), never pooled ones."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 5.0) -> asyncpg.Pool:
    """Connect, migrate, and return a pool."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        command_timeout=timeout_s * 6,
        reset=_keep_session,
    )
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    return pool

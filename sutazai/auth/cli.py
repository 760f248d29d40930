"""Account commands for the project CLI (`sutazai create-user`, `sutazai set-password`).

The other way, besides SUTAZAI_ADMIN_PASSWORD, to get a first admin, and the
way back in when every admin password is lost. They connect to the database
directly (`dsn`, else settings.database_url) and apply pending migrations
first, so they work on a fresh database.
"""

from __future__ import annotations

import asyncio
import getpass

import asyncpg

from sutazai.auth import passwords, refresh, users
from sutazai.errors import APIError
from sutazai.settings import Settings
from sutazai.storage.db import apply_migrations


class CLIError(Exception):
    """A message for the person at the terminal (no traceback needed)."""


def prompt_password(prompt: str = "Password: ") -> str:
    """Ask twice without echo; the password never appears in shell history or ps."""
    first = getpass.getpass(prompt)
    if first != getpass.getpass("Repeat password: "):
        raise CLIError("passwords do not match")
    return first


def _dsn(settings: Settings, dsn: str | None) -> str:
    dsn = dsn or settings.database_url
    if not dsn:
        raise CLIError("no database: set DATABASE_URL, or pass the embedded server's DSN")
    return dsn


async def _with_pool(dsn: str, fn):
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        return await fn(pool)
    finally:
        await pool.close()


def create_user(settings: Settings, username: str, password: str, role: str, *, dsn: str | None = None) -> users.User:
    """Create a user (any role, e.g. the first admin). Raises CLIError with a readable reason."""
    try:
        return asyncio.run(_with_pool(_dsn(settings, dsn), lambda pool: users.create(pool, username, password, role)))
    except APIError as exc:
        raise CLIError(exc.message) from None


def set_password(settings: Settings, username: str, password: str, *, dsn: str | None = None) -> users.User:
    """Reset a password and end the user's sessions."""

    async def run(pool):
        user = await users.get_by_username(pool, username)
        if user is None:
            raise CLIError(f"no user named {username!r}")
        passwords.check_policy(password)
        await users.set_password_hash(pool, user.id, await passwords.hash_password_async(password))
        await refresh.revoke_user(pool, user.id)
        return user

    try:
        return asyncio.run(_with_pool(_dsn(settings, dsn), run))
    except APIError as exc:
        raise CLIError(exc.message) from None

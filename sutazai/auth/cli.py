"""Account commands for the project CLI (`sutazai create-user`, `sutazai set-password`).

The other way, besides SUTAZAI_ADMIN_PASSWORD, to get a first admin, and the
way back in when every admin password is lost. They connect to the database
directly (`dsn`, else settings.database_url) and apply pending migrations
first, so they work on a fresh database.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from sutazai.auth import accounts
from sutazai.errors import SutazaiError
from sutazai.settings import Settings
from sutazai.storage.db import apply_migrations
from sutazai.storage.refresh_tokens import RefreshTokenStore
from sutazai.storage.users import User, UserStore

T = TypeVar("T")


class CLIError(Exception):
    """A message for the person at the terminal (no traceback needed)."""


def prompt_password(prompt: str = "Password: ") -> str:
    """Ask twice without echo; the password never appears in shell history or ps."""
    first = getpass.getpass(prompt)
    if first != getpass.getpass("Repeat password: "):
        raise CLIError("passwords do not match")
    return first


def _run(settings: Settings, dsn: str | None, fn: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    dsn = dsn or settings.database_url
    if not dsn:
        raise CLIError("no database: set DATABASE_URL, or pass the embedded server's DSN")

    async def run() -> T:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await apply_migrations(conn)
            return await fn(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(run())
    except SutazaiError as exc:
        raise CLIError(exc.message) from None


def create_user(settings: Settings, username: str, password: str, role: str, *, dsn: str | None = None) -> User:
    """Create a user (any role, e.g. the first admin). Raises CLIError with a readable reason."""
    return _run(settings, dsn, lambda pool: accounts.create_user(UserStore(pool), username, password, role))


def set_password(settings: Settings, username: str, password: str, *, dsn: str | None = None) -> User:
    """Reset a password and end the user's sessions."""

    async def run(pool: asyncpg.Pool) -> User:
        users = UserStore(pool)
        user = await users.get_by_username(username)
        if user is None:
            raise CLIError(f"no user named {username!r}")
        await accounts.set_password(users, RefreshTokenStore(pool), user, password)
        return user

    return _run(settings, dsn, run)

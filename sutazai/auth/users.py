"""SQL for the `users` table, and the first-admin bootstrap.

No default password exists anywhere: the first admin comes from
`SUTAZAI_ADMIN_PASSWORD` (see `ensure_admin`) or from the CLI (`sutazai.auth.cli`).
Password hashes never leave this module except to the login check.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from sutazai.auth import passwords
from sutazai.auth.roles import ADMIN, ROLES
from sutazai.errors import APIError
from sutazai.settings import Settings

logger = logging.getLogger("sutazai.auth.users")

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
_USERNAME = re.compile(USERNAME_PATTERN)
_COLUMNS = "id, username, role, disabled, created_at, updated_at"


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    username: str
    role: str
    disabled: bool
    created_at: datetime
    updated_at: datetime


def _user(row) -> User:
    return User(**{k: row[k] for k in ("id", "username", "role", "disabled", "created_at", "updated_at")})


def check_username(username: str) -> None:
    if not _USERNAME.match(username):
        raise APIError(422, "invalid_username", "username must be 1-64 characters: letters, digits and _ . @ - (starting with a letter or digit)")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise APIError(422, "invalid_role", f"role must be one of {', '.join(ROLES)}")


async def create(pool: asyncpg.Pool, username: str, password: str, role: str) -> User:
    """Create a user; 409 when the name (case-insensitively) is taken."""
    check_username(username)
    check_role(role)
    passwords.check_policy(password)
    password_hash = await passwords.hash_password_async(password)
    try:
        row = await pool.fetchrow(
            f"INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
            uuid.uuid4(),
            username,
            password_hash,
            role,
        )
    except asyncpg.UniqueViolationError:
        raise APIError(409, "conflict", f"username {username!r} is taken") from None
    return _user(row)


async def get(pool: asyncpg.Pool, user_id: uuid.UUID) -> User | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
    return _user(row) if row else None


async def get_by_username(pool: asyncpg.Pool, username: str) -> User | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE lower(username) = lower($1)", username)
    return _user(row) if row else None


async def get_for_login(pool: asyncpg.Pool, username: str) -> tuple[User, str] | None:
    """The user and their password hash, for the login check only."""
    row = await pool.fetchrow(f"SELECT {_COLUMNS}, password_hash FROM users WHERE lower(username) = lower($1)", username)
    return (_user(row), row["password_hash"]) if row else None


async def list_users(pool: asyncpg.Pool, *, limit: int, offset: int) -> tuple[list[User], int]:
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2", limit, offset)
    total = await pool.fetchval("SELECT count(*) FROM users")
    return [_user(r) for r in rows], total


async def set_password_hash(pool: asyncpg.Pool, user_id: uuid.UUID, password_hash: str) -> None:
    await pool.execute("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, password_hash)


async def update(
    pool: asyncpg.Pool,
    user_id: uuid.UUID,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    password_hash: str | None = None,
) -> tuple[User, User] | None:
    """Change role / disabled / password; returns (before, after), None if no such user.

    Refuses (409) to demote or disable the last enabled admin, so the system
    can never be left without anyone able to manage it.
    """
    if role is not None:
        check_role(role)
    async with pool.acquire() as conn, conn.transaction():
        # Lock every enabled admin so two concurrent demotions cannot both pass the check.
        admins = {r["id"] for r in await conn.fetch("SELECT id FROM users WHERE role = 'admin' AND NOT disabled FOR UPDATE")}
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1 FOR UPDATE", user_id)
        if row is None:
            return None
        before = _user(row)
        loses_admin = before.id in admins and ((role is not None and role != ADMIN) or disabled is True)
        if loses_admin and len(admins) == 1:
            raise APIError(409, "last_admin", "cannot demote or disable the last enabled admin")
        row = await conn.fetchrow(
            f"""UPDATE users SET role = COALESCE($2, role),
                                 disabled = COALESCE($3, disabled),
                                 password_hash = COALESCE($4, password_hash),
                                 updated_at = now()
                WHERE id = $1 RETURNING {_COLUMNS}""",
            user_id,
            role,
            disabled,
            password_hash,
        )
        return before, _user(row)


async def ensure_admin(pool: asyncpg.Pool, settings: Settings) -> str:
    """Create the first admin from SUTAZAI_ADMIN_USERNAME / SUTAZAI_ADMIN_PASSWORD.

    Returns "created", "exists" (an account of that name is already there; its
    password is left alone so later changes are not overwritten at each start),
    or "no_password" (nothing to do; a warning says how to create an admin).
    Safe to call from several replicas at once.
    """
    username = settings.admin_username
    if settings.admin_password is None:
        if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')"):
            logger.warning(
                "no admin user exists: set SUTAZAI_ADMIN_PASSWORD (and optionally SUTAZAI_ADMIN_USERNAME) "
                "or run `sutazai create-user --role admin`"
            )
        return "no_password"
    if await get_by_username(pool, username) is not None:
        return "exists"
    try:
        await create(pool, username, settings.admin_password.get_secret_value(), ADMIN)
    except APIError as exc:
        if exc.status_code == 409:  # another replica won the race
            return "exists"
        raise RuntimeError(f"cannot create the admin user {username!r}: {exc.message}") from None
    logger.info("created admin user %r from SUTAZAI_ADMIN_PASSWORD", username)
    return "created"

"""SQL for the `users` table. Password hashes leave this store only for the login check."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from sutazai.auth.principal_cache import announce, user_tag
from sutazai.auth.roles import Role
from sutazai.errors import LastAdmin, UsernameTaken
from sutazai.storage.records import Record

_COLUMNS = "id, username, role, disabled, created_at, updated_at"


class User(Record):
    id: uuid.UUID
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    updated_at: datetime


class UserStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, username: str, password_hash: str, role: str) -> User:
        """Insert a user; `UsernameTaken` when the name (case-insensitively) exists."""
        try:
            row = await self.pool.fetchrow(
                f"INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
                uuid.uuid4(),
                username,
                password_hash,
                role,
            )
        except asyncpg.UniqueViolationError:
            raise UsernameTaken(username) from None
        return User.from_row(row)

    async def get(self, user_id: uuid.UUID) -> User | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
        return User.from_row(row) if row else None

    async def get_by_username(self, username: str) -> User | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE lower(username) = lower($1)", username)
        return User.from_row(row) if row else None

    async def get_for_login(self, username: str) -> tuple[User, str] | None:
        """The user and their password hash, for the login check only."""
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS}, password_hash FROM users WHERE lower(username) = lower($1)", username
        )
        return (User.from_row(row), row["password_hash"]) if row else None

    async def any_admin(self) -> bool:
        return bool(await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')"))

    async def page(self, *, limit: int, offset: int) -> tuple[list[User], int]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2", limit, offset
        )
        total = await self.pool.fetchval("SELECT count(*) FROM users")
        return [User.from_row(r) for r in rows], total

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        await self.pool.execute(
            "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, password_hash
        )
        await announce(self.pool, user_tag(user_id))

    async def update(
        self,
        user_id: uuid.UUID,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> tuple[User, User] | None:
        """Change role / disabled / password; returns (before, after), None if no such user.

        Raises `LastAdmin` rather than demote or disable the last enabled admin, so
        the system can never be left without anyone able to manage it.
        """
        changed = await self._update(user_id, role=role, disabled=disabled, password_hash=password_hash)
        if changed is not None:  # after the commit: replicas drop the user's cached principals
            await announce(self.pool, user_tag(user_id))
        return changed

    async def _update(
        self, user_id: uuid.UUID, *, role: str | None, disabled: bool | None, password_hash: str | None
    ) -> tuple[User, User] | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # Lock every enabled admin so two concurrent demotions cannot both pass the check.
            admins = {
                r["id"]
                for r in await conn.fetch("SELECT id FROM users WHERE role = 'admin' AND NOT disabled FOR UPDATE")
            }
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1 FOR UPDATE", user_id)
            if row is None:
                return None
            before = User.from_row(row)
            loses_admin = before.id in admins and ((role is not None and role != "admin") or disabled is True)
            if loses_admin and len(admins) == 1:
                raise LastAdmin()
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
            return before, User.from_row(row)

"""SQL for the `refresh_tokens` table: rotation, reuse detection, revocation, purging.

A login starts a *family* (one session). Every refresh marks the presented
token used and stores its successor in the same family. A used token presented
again means someone kept a copy: the whole family is revoked, which also ends
the access tokens carrying that family id (checked on every request by
`session_user`). Logout revokes the family; disabling a user or resetting a
password revokes all of that user's families.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from sutazai.auth.principal_cache import announce, session_tag, user_tag
from sutazai.storage.users import User


class Outcome(enum.Enum):
    ROTATED = "rotated"
    REUSED = "reused"  # a used token came back: family revoked now
    REVOKED = "revoked"  # family was already revoked (logout, reuse, user disabled)
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Rotation:
    outcome: Outcome
    family_id: uuid.UUID | None = None


def _ts(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def _count(status: str) -> int:
    """Rows touched, from asyncpg's command status ("UPDATE 3")."""
    return int(status.split()[-1])


class RefreshTokenStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, *, jti: uuid.UUID, family_id: uuid.UUID, user_id: uuid.UUID, expires_at: int) -> None:
        """Store a newly issued refresh token (the first of a family at login)."""
        await self.pool.execute(
            "INSERT INTO refresh_tokens (jti, family_id, user_id, expires_at) VALUES ($1, $2, $3, $4)",
            jti,
            family_id,
            user_id,
            _ts(expires_at),
        )

    async def rotate(
        self,
        *,
        old_jti: uuid.UUID,
        user_id: uuid.UUID,
        new_jti: uuid.UUID,
        new_expires_at: int,
        session_max_s: float,
    ) -> Rotation:
        """Swap `old_jti` for `new_jti` atomically, or say why not.

        The row lock serialises concurrent refreshes of the same token: the second
        one sees it used and is treated as reuse. A session older than `session_max_s`
        (from its login) is expired however often it was refreshed.
        """
        rotation = await self._rotate(
            old_jti=old_jti,
            user_id=user_id,
            new_jti=new_jti,
            new_expires_at=new_expires_at,
            session_max_s=session_max_s,
        )
        if rotation.outcome is Outcome.REUSED and rotation.family_id is not None:
            await announce(self.pool, session_tag(rotation.family_id))
        return rotation

    async def _rotate(
        self,
        *,
        old_jti: uuid.UUID,
        user_id: uuid.UUID,
        new_jti: uuid.UUID,
        new_expires_at: int,
        session_max_s: float,
    ) -> Rotation:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT family_id, user_id, expires_at, used_at, revoked_at FROM refresh_tokens "
                "WHERE jti = $1 FOR UPDATE",
                old_jti,
            )
            if row is None or row["user_id"] != user_id:
                return Rotation(Outcome.UNKNOWN)
            family_id = row["family_id"]
            if row["revoked_at"] is not None:
                return Rotation(Outcome.REVOKED, family_id)
            if row["used_at"] is not None:
                await conn.execute(
                    "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
                    family_id,
                )
                return Rotation(Outcome.REUSED, family_id)
            now = datetime.now(UTC)
            started = await conn.fetchval("SELECT min(issued_at) FROM refresh_tokens WHERE family_id = $1", family_id)
            if row["expires_at"] <= now or (now - started).total_seconds() > session_max_s:
                return Rotation(Outcome.EXPIRED, family_id)
            await conn.execute(
                "UPDATE refresh_tokens SET used_at = now(), replaced_by = $2 WHERE jti = $1", old_jti, new_jti
            )
            await conn.execute(
                "INSERT INTO refresh_tokens (jti, family_id, user_id, expires_at) VALUES ($1, $2, $3, $4)",
                new_jti,
                family_id,
                user_id,
                _ts(new_expires_at),
            )
            return Rotation(Outcome.ROTATED, family_id)

    async def revoke_family(self, family_id: uuid.UUID, *, user_id: uuid.UUID) -> int:
        """Logout: end one session of this user. Returns how many tokens were revoked."""
        revoked = _count(
            await self.pool.execute(
                "UPDATE refresh_tokens SET revoked_at = now() "
                "WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL",
                family_id,
                user_id,
            )
        )
        await announce(self.pool, session_tag(family_id))
        return revoked

    async def revoke_user(self, user_id: uuid.UUID) -> int:
        """End every session of a user (disabled, password reset)."""
        revoked = _count(
            await self.pool.execute(
                "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", user_id
            )
        )
        await announce(self.pool, user_tag(user_id))
        return revoked

    async def session_user(self, user_id: uuid.UUID, family_id: uuid.UUID) -> tuple[User | None, bool]:
        """The user behind an access token, and whether its session (family) was revoked.

        One indexed query per authentication a replica has not cached; role changes,
        disabling and logout announce themselves (`principal_cache.announce`), so they
        take effect at once on every replica. A session with no stored token
        left unrevoked (revoked, purged, or never recorded) counts as revoked.
        """
        row = await self.pool.fetchrow(
            """SELECT u.id, u.username, u.role, u.disabled, u.created_at, u.updated_at,
                      NOT EXISTS (SELECT 1 FROM refresh_tokens r
                                  WHERE r.family_id = $2 AND r.revoked_at IS NULL) AS revoked
               FROM users u WHERE u.id = $1""",
            user_id,
            family_id,
        )
        if row is None:
            return None, True
        return User.from_row(row), row["revoked"]

    async def purge_expired(self, *, older_than_s: float = 86400) -> int:
        """Housekeeping: drop tokens that expired more than `older_than_s` ago."""
        return _count(
            await self.pool.execute(
                "DELETE FROM refresh_tokens WHERE expires_at < now() - make_interval(secs => $1)", float(older_than_s)
            )
        )

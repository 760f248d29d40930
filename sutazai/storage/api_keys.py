"""SQL for the `api_keys` table. Only a key's SHA-256 is stored, plus a display prefix."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from sutazai.auth.principal_cache import announce, key_tag
from sutazai.auth.roles import Role
from sutazai.storage.records import Record

TOUCH_INTERVAL_S = 60  # last_used_at is refreshed at most this often (one write a minute, not per request)
_FIELDS = (
    "id",
    "user_id",
    "name",
    "prefix",
    "scopes",
    "requests_per_minute",
    "tokens_per_minute",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
)
_COLUMNS = ", ".join(_FIELDS)


class ApiKey(Record):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    scopes: tuple[str, ...]
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def unusable_reason(self, now: datetime | None = None) -> str | None:
        now = now or datetime.now(UTC)
        if self.revoked_at is not None:
            return "API key revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "API key expired"
        return None


class KeyOwner(Record):
    """A key found by lookup, with what is needed to authorise its owner."""

    key: ApiKey
    username: str
    role: Role
    disabled: bool


class ApiKeyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self,
        *,
        user_id: uuid.UUID,
        name: str,
        prefix: str,
        key_hash: str,
        scopes: tuple[str, ...],
        expires_at: datetime | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> ApiKey:
        row = await self.pool.fetchrow(
            f"""INSERT INTO api_keys (id, user_id, name, prefix, key_hash, scopes, expires_at,
                                      requests_per_minute, tokens_per_minute)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_COLUMNS}""",
            uuid.uuid4(),
            user_id,
            name,
            prefix,
            key_hash,
            list(scopes),
            expires_at,
            requests_per_minute,
            tokens_per_minute,
        )
        return ApiKey.from_row(row)

    async def page_for_user(self, user_id: uuid.UUID, *, limit: int, offset: int) -> tuple[list[ApiKey], int]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
            user_id,
            limit,
            offset,
        )
        total = await self.pool.fetchval("SELECT count(*) FROM api_keys WHERE user_id = $1", user_id)
        return [ApiKey.from_row(r) for r in rows], total

    async def count_usable(self, user_id: uuid.UUID) -> int:
        return await self.pool.fetchval(
            "SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > now())",
            user_id,
        )

    async def get(self, key_id: uuid.UUID) -> ApiKey | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id)
        return ApiKey.from_row(row) if row else None

    async def revoke(self, key_id: uuid.UUID) -> ApiKey | None:
        """Revoke a key (idempotent: an already revoked key keeps its first revocation time)."""
        row = await self.pool.fetchrow(
            f"UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING {_COLUMNS}", key_id
        )
        if row is None:
            return None
        await announce(self.pool, key_tag(key_id))  # replicas drop the key's cached principal now
        return ApiKey.from_row(row)

    async def lookup(self, key_hash: str) -> KeyOwner | None:
        """Find a key by its hash, with its owner. Callers still check `unusable_reason` and `disabled`."""
        row = await self.pool.fetchrow(
            f"""SELECT {", ".join("k." + c for c in _FIELDS)}, u.username, u.role, u.disabled
                FROM api_keys k JOIN users u ON u.id = k.user_id
                WHERE k.key_hash = $1""",
            key_hash,
        )
        if row is None:
            return None
        return KeyOwner(key=ApiKey.from_row(row), username=row["username"], role=row["role"], disabled=row["disabled"])

    async def touch(self, key: ApiKey) -> None:
        """Record use, at most once per TOUCH_INTERVAL_S per key."""
        now = datetime.now(UTC)
        if key.last_used_at is not None and (now - key.last_used_at).total_seconds() < TOUCH_INTERVAL_S:
            return
        await self.pool.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", key.id)

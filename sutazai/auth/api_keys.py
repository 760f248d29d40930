"""API keys for programs: `Authorization: Bearer sk-...` (the OpenAI client's api_key).

A key is `sk-` + 32 random bytes (url-safe base64). It is shown once at creation;
only its SHA-256 is stored (a salt adds nothing for 256 random bits) plus a short
display prefix. Every request looks the key up by hash, so a revoked or expired
key, or one whose owner was disabled, is refused at once on every replica.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg

from sutazai.auth.roles import DEFAULT_KEY_SCOPES, SCOPES, scopes_allowed_for
from sutazai.errors import APIError

KEY_PREFIX = "sk-"
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 8
TOUCH_INTERVAL_S = 60  # last_used_at is refreshed at most this often (one write a minute, not per request)
_COLUMNS = (
    "id, user_id, name, prefix, scopes, requests_per_minute, tokens_per_minute, "
    "created_at, expires_at, last_used_at, revoked_at"
)


@dataclass(frozen=True)
class ApiKey:
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
        now = now or datetime.now(timezone.utc)
        if self.revoked_at is not None:
            return "API key revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "API key expired"
        return None


@dataclass(frozen=True)
class KeyOwner:
    """A key found by lookup, with what is needed to authorise its owner."""

    key: ApiKey
    username: str
    role: str
    disabled: bool


def _key(row) -> ApiKey:
    data = {k: row[k] for k in ApiKey.__dataclass_fields__}
    data["scopes"] = tuple(data["scopes"])
    return ApiKey(**data)


def generate() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def check_scopes(role: str, scopes: list[str] | None) -> tuple[str, ...]:
    """Scopes for a new key: default read+write (within the role); never beyond the role."""
    allowed = scopes_allowed_for(role)
    if scopes is None:
        return tuple(s for s in DEFAULT_KEY_SCOPES if s in allowed)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise APIError(422, "invalid_scope", f"unknown scopes {unknown}; known: {', '.join(SCOPES)}")
    beyond = [s for s in scopes if s not in allowed]
    if beyond:
        raise APIError(403, "forbidden", f"a {role} cannot create a key with scopes {beyond}")
    if not scopes:
        raise APIError(422, "invalid_scope", "a key needs at least one scope")
    return tuple(dict.fromkeys(scopes))


async def create(
    pool: asyncpg.Pool,
    *,
    user_id: uuid.UUID,
    name: str,
    scopes: tuple[str, ...],
    expires_at: datetime | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key; returns it and the plaintext, which is never retrievable again."""
    plaintext = generate()
    row = await pool.fetchrow(
        f"""INSERT INTO api_keys (id, user_id, name, prefix, key_hash, scopes, expires_at,
                                  requests_per_minute, tokens_per_minute)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_COLUMNS}""",
        uuid.uuid4(),
        user_id,
        name,
        plaintext[:DISPLAY_PREFIX_LENGTH],
        hash_key(plaintext),
        list(scopes),
        expires_at,
        requests_per_minute,
        tokens_per_minute,
    )
    return _key(row), plaintext


async def list_for_user(pool: asyncpg.Pool, user_id: uuid.UUID) -> list[ApiKey]:
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id", user_id)
    return [_key(r) for r in rows]


async def get(pool: asyncpg.Pool, key_id: uuid.UUID) -> ApiKey | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id)
    return _key(row) if row else None


async def revoke(pool: asyncpg.Pool, key_id: uuid.UUID) -> ApiKey | None:
    """Revoke a key (idempotent: an already revoked key keeps its first revocation time)."""
    row = await pool.fetchrow(
        f"UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING {_COLUMNS}", key_id
    )
    return _key(row) if row else None


async def lookup(pool: asyncpg.Pool, plaintext: str) -> KeyOwner | None:
    """Find a key by its hash, with its owner. Callers still check `unusable_reason` and `disabled`."""
    row = await pool.fetchrow(
        f"""SELECT {", ".join("k." + c.strip() for c in _COLUMNS.split(","))},
                   u.username, u.role, u.disabled
            FROM api_keys k JOIN users u ON u.id = k.user_id
            WHERE k.key_hash = $1""",
        hash_key(plaintext),
    )
    if row is None:
        return None
    return KeyOwner(_key(row), row["username"], row["role"], row["disabled"])


async def touch(pool: asyncpg.Pool, key: ApiKey) -> None:
    """Record use, at most once per TOUCH_INTERVAL_S per key."""
    now = datetime.now(timezone.utc)
    if key.last_used_at is not None and (now - key.last_used_at).total_seconds() < TOUCH_INTERVAL_S:
        return
    await pool.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", key.id)

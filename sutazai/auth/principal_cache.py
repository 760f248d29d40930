"""Resolved principals, cached per replica for a few seconds and dropped the moment they are revoked.

Authenticating a request costs a Postgres query (the key or the session, with the
user). A replica remembers the principal a credential resolved to, keyed by the
credential's SHA-256, for `auth_cache_ttl_s` (never past an API key's expiry). Revocation
stays immediate because every change that can take power away announces itself
(`announce`), from the stores that make the change:

  key:<id>       an API key was revoked
  user:<id>      a user was disabled, had their role changed, their password set,
                 or every session ended
  session:<id>   one login session (refresh-token family) was revoked (logout, reuse)

`announce` runs `pg_notify` on the revocations channel (every replica `LISTEN`s on one
connection) and drops the entries in this process's caches at once. The channel is
Postgres's, not Redis's: the stores hold only a database pool, so every writer (a
replica, the `sutazai set-password` CLI, a test's `UserStore(pool)`) announces, and a
notification is delivered only after its transaction commits.

Correctness first: while the `LISTEN` connection is down nothing is cached (every
request goes to Postgres), and everything cached is dropped when it comes back.
A lookup that raced with a revocation (read before, stored after) is not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from sutazai.auth.principal import Principal

logger = logging.getLogger("sutazai.auth.principal_cache")

REVOCATIONS_CHANNEL = "sutazai_auth_revoked"
RECONNECT_S = 2.0

_caches: weakref.WeakSet[PrincipalCache] = weakref.WeakSet()  # this process's caches


def user_tag(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


def key_tag(key_id: uuid.UUID) -> str:
    return f"key:{key_id}"


def session_tag(family_id: uuid.UUID) -> str:
    return f"session:{family_id}"


def credential_hash(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()


async def announce(db: asyncpg.Pool | asyncpg.Connection, *tags: str) -> None:
    """Tell every replica that these principals lost something. Call after the change committed."""
    if not tags:
        return
    for cache in list(_caches):
        cache.invalidate(tags)
    try:
        await db.execute("SELECT pg_notify($1, $2)", REVOCATIONS_CHANNEL, " ".join(tags))
    except (asyncpg.PostgresError, OSError) as exc:  # the change itself committed; caches expire by TTL
        logger.warning("could not announce revocation of %s: %s", " ".join(tags), exc)


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    expires_at: float  # time.time()
    tags: tuple[str, ...]


class PrincipalCache:
    def __init__(
        self,
        dsn: str | None,
        *,
        ttl_s: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dsn = dsn
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._by_tag: dict[str, set[str]] = {}
        self._generation = 0  # bumped by every invalidation
        self._conn: asyncpg.Connection | None = None
        self._keeper: asyncio.Task[None] | None = None
        self.hits = 0
        self.misses = 0
        _caches.add(self)

    @property
    def enabled(self) -> bool:
        """Caching only while revocations can reach us."""
        return self.ttl_s > 0 and self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        if self.ttl_s <= 0 or not self.dsn:
            return
        await self._connect()
        self._keeper = asyncio.create_task(self._keep_connected())

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close()
        self.clear()

    # -- lookups ------------------------------------------------------------------

    def generation(self) -> int:
        """Take before a database lookup; pass to `put` so a lookup that raced a revocation is not kept."""
        return self._generation

    def get(self, key: str) -> Principal | None:
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry.expires_at <= self._clock():
            self._drop(key)
            self.misses += 1
            return None
        self.hits += 1
        return entry.principal

    def put(self, key: str, principal: Principal, generation: int, *, not_after: float | None = None) -> None:
        if not self.enabled or generation != self._generation:
            return
        expires_at = self._clock() + self.ttl_s
        if not_after is not None:
            expires_at = min(expires_at, not_after)
        tags = [user_tag(principal.user_id)]
        if principal.key_id is not None:
            tags.append(key_tag(principal.key_id))
        if principal.session_id is not None:
            tags.append(session_tag(principal.session_id))
        if len(self._entries) >= self.max_entries:
            self.clear()
        self._drop(key)
        self._entries[key] = _Entry(principal, expires_at, tuple(tags))
        for tag in tags:
            self._by_tag.setdefault(tag, set()).add(key)

    # -- invalidation ------------------------------------------------------------------

    def invalidate(self, tags: tuple[str, ...] | list[str]) -> None:
        self._generation += 1
        for tag in tags:
            for key in self._by_tag.pop(tag, ()):
                self._drop(key)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._by_tag.clear()

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for tag in entry.tags:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]

    # -- the LISTEN connection ------------------------------------------------------------

    async def _connect(self) -> None:
        assert self.dsn is not None
        try:
            conn = await asyncpg.connect(self.dsn)
            await conn.add_listener(REVOCATIONS_CHANNEL, self._notified)
            conn.add_termination_listener(self._lost)
        except (asyncpg.PostgresError, OSError) as exc:
            logger.warning("cannot listen for revocations, principals are not cached: %s", exc)
            self._conn = None
            return
        self.clear()  # whatever was revoked while deaf
        self._conn = conn

    def _lost(self, conn: Any) -> None:
        if conn is self._conn:
            self._conn = None
            self.clear()

    async def _keep_connected(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_S)
            if self._conn is None or self._conn.is_closed():
                self._conn = None
                self.clear()
                await self._connect()

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.invalidate(payload.split())

"""Response cache in Redis for deterministic requests (temperature 0 or a seed).

Redis is not critical: every operation degrades to a miss (or a no-op) when it
is unreachable, so chat keeps working and health reports Redis as degraded.
"""

from __future__ import annotations

import hashlib
import json
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sutazai import metrics
from sutazai.schemas.engine import GenerationRequest, GenerationResult
from sutazai.schemas.system import CacheStats

logger = logging.getLogger("sutazai.cache")

PREFIX = "sutazai:cache:"
HITS = "sutazai:cache-stats:hits"
MISSES = "sutazai:cache-stats:misses"


# KEYS: the entry, the hits counter, the misses counter. The entry (or nil), counted: one round trip.
GET_SCRIPT = """
local raw = redis.call('GET', KEYS[1])
if raw then redis.call('INCR', KEYS[2]) else redis.call('INCR', KEYS[3]) end
return raw
"""


def is_deterministic(request: GenerationRequest) -> bool:
    return request.temperature == 0.0 or request.seed is not None


SHARED = "shared"


def cache_key(model: str, request: GenerationRequest, scope: str = SHARED) -> str:
    """Keys are per scope (a user, unless the cache is shared): a hit must not tell one
    user that another sent exactly this prompt."""
    material = request.model_dump(exclude={"request_id"}, mode="json")
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return f"{PREFIX}{model}:{scope}:{digest}"


class ResponseCache:
    def __init__(self, client: aioredis.Redis, *, ttl_s: int, enabled: bool = True) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.enabled = enabled
        self._get_script = client.register_script(GET_SCRIPT)

    async def get(self, model: str, request: GenerationRequest, scope: str = SHARED) -> GenerationResult | None:
        if not (self.enabled and is_deterministic(request)):
            return None
        try:
            raw = await self._get_script(keys=[cache_key(model, request, scope), HITS, MISSES])
        except (RedisError, OSError) as exc:
            logger.warning("cache bypassed (redis unavailable): %s", exc)
            return None
        (metrics.CACHE_HITS if raw is not None else metrics.CACHE_MISSES).record(1, model=model)
        return GenerationResult.model_validate_json(raw) if raw is not None else None

    async def put(self, model: str, request: GenerationRequest, result: GenerationResult, scope: str = SHARED) -> None:
        if not (self.enabled and is_deterministic(request)) or result.finish_reason == "cancelled":
            return
        try:
            await self.client.set(cache_key(model, request, scope), result.model_dump_json(), ex=self.ttl_s)
        except (RedisError, OSError) as exc:
            logger.warning("cache write skipped (redis unavailable): %s", exc)

    async def stats(self) -> CacheStats:
        raw_hits, raw_misses = await self.client.mget(HITS, MISSES)
        hits, misses = int(raw_hits or 0), int(raw_misses or 0)
        entries = 0
        async for _ in self.client.scan_iter(match=f"{PREFIX}*", count=500):
            entries += 1
        lookups = hits + misses
        return CacheStats(
            enabled=self.enabled,
            entries=entries,
            hits=hits,
            misses=misses,
            hit_rate=round(hits / lookups, 4) if lookups else 0.0,
            ttl_s=self.ttl_s,
        )

    async def invalidate(self, model: str | None = None) -> int:
        """Delete cached responses (of one model, or all); returns how many."""
        pattern = f"{PREFIX}{model}:*" if model else f"{PREFIX}*"
        deleted = 0
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await self.client.delete(*batch)
                batch = []
        if batch:
            deleted += await self.client.delete(*batch)
        return deleted

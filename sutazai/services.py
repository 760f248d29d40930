"""What a route needs, built once per ingress replica and kept on `app.state.services`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from sutazai.cache import ResponseCache
from sutazai.catalog import ModelCatalog
from sutazai.inference import InferenceService, model_client
from sutazai.settings import Settings
from sutazai.storage.conversations import ConversationStore
from sutazai.storage.db import create_pool


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    catalog: ModelCatalog
    inference: InferenceService
    cache: ResponseCache
    conversations: ConversationStore
    mcp: Any = None  # sutazai.mcp.gateway.MCPGateway, None when MCP is disabled
    started_at: float = field(default_factory=time.time)

    async def close(self) -> None:
        await self.pool.close()
        await self.redis.aclose()


def redis_client(settings: Settings) -> aioredis.Redis:
    """Short timeouts: a dead Redis must cost a request milliseconds, not seconds."""
    return aioredis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
    )


async def build_services(settings: Settings, catalog: ModelCatalog, handles: dict[str, Any]) -> Services:
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError(
            "DATABASE_URL and REDIS_URL must be set in the replicas' environment "
            "(`sutazai run` sets them to its embedded servers)"
        )
    pool = await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max, timeout_s=settings.db_timeout_s
    )
    redis = redis_client(settings)
    cache = ResponseCache(redis, ttl_s=settings.cache_ttl_s, enabled=settings.cache_enabled)
    clients = {name: model_client(catalog.get(name), handle) for name, handle in handles.items()}
    inference = InferenceService(
        catalog, clients, cache, default_model=settings.default_model, retry_after_s=settings.retry_after_s
    )
    return Services(
        settings=settings,
        pool=pool,
        redis=redis,
        catalog=catalog,
        inference=inference,
        cache=cache,
        conversations=ConversationStore(pool),
    )

"""Response cache statistics and invalidation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from redis.exceptions import RedisError

from sutazai.api.deps import AdminDep, AuditDep, ServicesDep, ViewerDep
from sutazai.errors import Unavailable
from sutazai.schemas.system import CacheInvalidated, CacheInvalidateRequest, CacheStats

router = APIRouter(prefix="/api/v1/cache", tags=["cache"])


@router.get("/stats", response_model=CacheStats)
async def cache_stats(caller: ViewerDep, services: ServicesDep) -> CacheStats:
    try:
        return await services.cache.stats()
    except (RedisError, OSError):
        raise Unavailable("the cache (Redis) is unreachable", services.settings.retry_after_s) from None


@router.post("/invalidate", response_model=CacheInvalidated)
async def cache_invalidate(
    caller: AdminDep,
    services: ServicesDep,
    audit: AuditDep,
    body: Annotated[CacheInvalidateRequest | None, Body()] = None,
) -> CacheInvalidated:
    model = body.model if body else None
    try:
        deleted = await services.cache.invalidate(model)
    except (RedisError, OSError):
        raise Unavailable("the cache (Redis) is unreachable", services.settings.retry_after_s) from None
    await audit.record("cache.invalidate", target=model or "*", details={"deleted": deleted})
    return CacheInvalidated(deleted=deleted, model=model)

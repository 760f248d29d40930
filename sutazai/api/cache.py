"""Response cache statistics and invalidation."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends
from redis.exceptions import RedisError

from sutazai.api.deps import get_services
from sutazai.errors import unavailable
from sutazai.schemas.api import CacheInvalidateRequest
from sutazai.services import Services

router = APIRouter(prefix="/api/v1/cache", tags=["cache"])


@router.get("/stats")
async def cache_stats(services: Services = Depends(get_services)):
    try:
        return await services.cache.stats()
    except (RedisError, OSError):
        raise unavailable("the cache (Redis) is unreachable", services.settings.retry_after_s) from None


@router.post("/invalidate")
async def cache_invalidate(body: CacheInvalidateRequest | None = Body(default=None), services: Services = Depends(get_services)):
    model = body.model if body else None
    try:
        deleted = await services.cache.invalidate(model)
    except (RedisError, OSError):
        raise unavailable("the cache (Redis) is unreachable", services.settings.retry_after_s) from None
    return {"deleted": deleted, "model": model}

"""Response cache statistics and invalidation."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Request
from redis.exceptions import RedisError

from sutazai.api.deps import get_services
from sutazai.auth import audit
from sutazai.auth.principal import require_admin, require_viewer
from sutazai.errors import unavailable
from sutazai.schemas.api import CacheInvalidateRequest
from sutazai.services import Services

router = APIRouter(prefix="/api/v1/cache", tags=["cache"])


@router.get("/stats", dependencies=[Depends(require_viewer)])
async def cache_stats(services: Services = Depends(get_services)):
    try:
        return await services.cache.stats()
    except (RedisError, OSError):
        raise unavailable("the cache (Redis) is unreachable", services.settings.retry_after_s) from None


@router.post("/invalidate", dependencies=[Depends(require_admin)])
async def cache_invalidate(request: Request, body: CacheInvalidateRequest | None = Body(default=None),
                           services: Services = Depends(get_services)):
    model = body.model if body else None
    try:
        deleted = await services.cache.invalidate(model)
    except (RedisError, OSError):
        raise unavailable("the cache (Redis) is unreachable", services.settings.retry_after_s) from None
    await audit.record_request(request, "cache.invalidate", target=model or "*", details={"deleted": deleted})
    return {"deleted": deleted, "model": model}

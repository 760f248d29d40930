"""Liveness, detailed health, status and the model list."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from sutazai import __version__
from sutazai.api.deps import get_services
from sutazai.auth.principal import require_viewer
from sutazai.schemas.api import ModelInfo
from sutazai.services import Services

router = APIRouter(tags=["system"])


@router.get("/health")
async def health():
    """Liveness: answers without touching any dependency (and without credentials)."""
    return {"status": "ok"}


@router.get("/", dependencies=[Depends(require_viewer)])
async def root(services: Services = Depends(get_services)):
    return {
        "name": "SutazAI",
        "version": __version__,
        "docs": "/docs",
        "openapi": "/openapi.json",
        "health": "/api/v1/health/detailed",
        "models": services.catalog.names(),
    }


async def _timed(check, timeout_s: float) -> dict:
    """Awaits `check` (an awaitable) with a timeout; returns status, latency and any error."""
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check, timeout_s)
        status = "ok"
        error = None
    except Exception as exc:  # a failing dependency is a reading, not an error of this route
        detail, status, error = None, "down", f"{type(exc).__name__}: {exc}"[:300]
    result = {"status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    if detail:
        result["detail"] = detail
    if error:
        result["error"] = error
    return result


_MCP_STATUS = {"ready": "ok", "disabled": "disabled"}


@router.get("/api/v1/health/detailed", dependencies=[Depends(require_viewer)])
async def health_detailed(services: Services = Depends(get_services)):
    """Every dependency with status and latency. Postgres and the models are
    critical (503 when down); Redis only degrades the service (cache bypassed)."""
    timeout = services.settings.health_timeout_s

    async def postgres():
        await services.pool.fetchval("SELECT 1")

    async def redis():
        await services.redis.ping()

    checks = {"postgres": postgres(), "redis": redis()}
    for name, client in services.inference.clients.items():
        checks[f"model:{name}"] = client.info()
    names = list(checks)
    results = await asyncio.gather(*(_timed(c, timeout) for c in checks.values()))
    components = dict(zip(names, results))
    if services.mcp is not None:
        try:
            for name, server in (await asyncio.wait_for(services.mcp.health(), timeout)).items():
                # a ready server is "ok"; a disabled one is neither up nor a problem
                components[f"mcp:{name}"] = server | {"status": _MCP_STATUS.get(server["status"], "down"),
                                                      "server_status": server["status"]}
        except Exception as exc:
            components["mcp"] = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
    critical_down = [n for n, r in components.items() if r["status"] != "ok" and (n == "postgres" or n.startswith("model:"))]
    any_down = [n for n, r in components.items() if r["status"] not in ("ok", "disabled")]
    status = "down" if critical_down else ("degraded" if any_down else "ok")
    body = {"status": status, "version": __version__, "components": components}
    return JSONResponse(body, status_code=503 if critical_down else 200)


@router.get("/api/v1/status", dependencies=[Depends(require_viewer)])
async def status(services: Services = Depends(get_services)):
    from ray import serve

    deployments: dict = {}
    try:
        serve_status = await asyncio.to_thread(serve.status)
        app = serve_status.applications.get(services.settings.app_name)
        if app is not None:
            for name, dep in app.deployments.items():
                deployments[name] = {
                    "status": str(dep.status.value if hasattr(dep.status, "value") else dep.status),
                    "replicas": {str(k.value if hasattr(k, "value") else k): v for k, v in dep.replica_states.items()},
                }
    except Exception as exc:
        deployments = {"error": f"serve status unavailable: {type(exc).__name__}"}
    return {
        "version": __version__,
        "uptime_s": round(time.time() - services.started_at, 1),
        "models": services.catalog.names(),
        "default_model": services.inference.default_model,
        "cache_enabled": services.cache.enabled,
        "mcp_enabled": services.mcp is not None,
        "deployments": deployments,
    }


def model_info(services: Services) -> list[ModelInfo]:
    return [
        ModelInfo(
            name=spec.name, engine=spec.engine, context_length=spec.context_length,
            default_sampling=spec.sampling.model_dump(), autoscaling=spec.autoscaling.model_dump(),
            default=spec.name == services.inference.default_model,
        )
        for spec in services.catalog.specs.values()
    ]


@router.get("/api/v1/models", response_model=list[ModelInfo], dependencies=[Depends(require_viewer)])
async def models(services: Services = Depends(get_services)):
    return model_info(services)

"""Liveness, detailed health, status and the model list."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sutazai import __version__
from sutazai.api.deps import PageDep, ServicesDep, ViewerDep
from sutazai.schemas.api import ModelInfo
from sutazai.schemas.common import Page
from sutazai.schemas.system import ComponentHealth, DeploymentState, HealthReport, Liveness, RootInfo, StatusReport

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Liveness)
async def health() -> Liveness:
    """Liveness: answers without touching any dependency (and without credentials)."""
    return Liveness()


@router.get("/", response_model=RootInfo)
async def root(caller: ViewerDep, services: ServicesDep) -> RootInfo:
    return RootInfo(
        name="SutazAI",
        version=__version__,
        docs="/docs",
        openapi="/openapi.json",
        health="/api/v1/health/detailed",
        models=services.catalog.names(),
    )


async def _timed(check: Awaitable[Any], timeout_s: float) -> ComponentHealth:
    """Awaits `check` with a timeout; returns status, latency and any error."""
    started = time.perf_counter()
    detail = error = None
    try:
        result = await asyncio.wait_for(check, timeout_s)
        detail = result.model_dump() if hasattr(result, "model_dump") else result if isinstance(result, dict) else None
        status = "ok"
    except Exception as exc:  # a failing dependency is a reading, not an error of this route
        status, error = "down", f"{type(exc).__name__}: {exc}"[:300]
    latency = round((time.perf_counter() - started) * 1000, 2)
    return ComponentHealth(status=status, latency_ms=latency, detail=detail, error=error)


_MCP_STATUS = {"ready": "ok", "disabled": "disabled"}
_MCP_PUBLIC = ("status", "server_status", "latency_ms", "tools")


@router.get(
    "/api/v1/health/detailed",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "a critical dependency is down"}},
)
async def health_detailed(caller: ViewerDep, services: ServicesDep) -> JSONResponse:
    """Every dependency with status and latency. Postgres and the models are
    critical (503 when down); Redis only degrades the service (cache bypassed)."""
    timeout = services.settings.health_timeout_s
    checks: dict[str, Awaitable[Any]] = {
        "postgres": services.pool.fetchval("SELECT 1"),
        "redis": services.redis.ping(),
    }
    for name, client in services.inference.clients.items():
        checks[f"model:{name}"] = client.info()
    for name, embedder in services.embeddings.items():
        checks[f"embedder:{name}"] = embedder.info()
    if services.vectors is not None:  # documents' chunk vectors (the embedded store's actor, or Qdrant)
        checks["vector_store"] = services.vectors.count()
    if services.dispatcher is not None:  # agents' tasks: the dispatch loop, its runners, the queue
        checks["task_dispatcher"] = services.dispatcher.stats.remote()
    results = await asyncio.gather(*(_timed(c, timeout) for c in checks.values()))
    components = dict(zip(checks, results, strict=True))
    if services.mcp is not None:
        try:
            for name, server in (await asyncio.wait_for(services.mcp.health(), timeout)).items():
                # a ready server is "ok"; a disabled one is neither up nor a problem
                status = _MCP_STATUS.get(server["status"], "down")
                shown = server | {"status": status, "server_status": server["status"]}
                if caller.effective_role not in services.mcp.config.mcp_servers[name].roles:
                    shown = {k: v for k, v in shown.items() if k in _MCP_PUBLIC}  # no pids or stderr tails
                components[f"mcp:{name}"] = ComponentHealth(**shown)
        except Exception as exc:
            components["mcp"] = ComponentHealth(status="down", error=f"{type(exc).__name__}: {exc}"[:300])
    critical = [n for n, c in components.items() if c.status != "ok" and (n == "postgres" or n.startswith("model:"))]
    any_down = [n for n, c in components.items() if c.status not in ("ok", "disabled")]
    status = "down" if critical else ("degraded" if any_down else "ok")
    report = HealthReport(status=status, version=__version__, components=components)
    return JSONResponse(report.model_dump(mode="json"), status_code=503 if critical else 200)


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))


@router.get("/api/v1/status", response_model=StatusReport)
async def status(caller: ViewerDep, services: ServicesDep) -> StatusReport:
    import ray
    from ray import serve

    deployments: dict[str, DeploymentState] = {}
    error = None
    try:
        if not ray.is_initialized():  # serve.status() would start a Ray instance of its own
            raise RuntimeError("not running on Ray")
        serve_status = await asyncio.to_thread(serve.status)
        app = serve_status.applications.get(services.settings.app_name)
        if app is not None:
            for name, dep in app.deployments.items():
                replicas = {_name(k): v for k, v in dep.replica_states.items()}
                deployments[name] = DeploymentState(status=_name(dep.status), replicas=replicas)
    except Exception as exc:
        error = f"serve status unavailable: {type(exc).__name__}"
    return StatusReport(
        version=__version__,
        uptime_s=round(time.time() - services.started_at, 1),
        models=services.catalog.names(),
        default_model=services.inference.default_model,
        cache_enabled=services.cache.enabled,
        mcp_enabled=services.mcp is not None,
        deployments=deployments,
        deployments_error=error,
    )


@router.get("/api/v1/models", response_model=Page[ModelInfo])
async def models(caller: ViewerDep, services: ServicesDep, page: PageDep) -> Page[ModelInfo]:
    infos = [
        ModelInfo(
            name=spec.name,
            engine=spec.engine,
            context_length=spec.context_length,
            default_sampling=spec.sampling.model_dump(),
            autoscaling=spec.autoscaling.model_dump(),
            default=spec.name == services.inference.default_model,
        )
        for spec in services.catalog.specs.values()
    ]
    return Page.of_all(infos, page.limit, page.offset)

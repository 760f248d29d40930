"""The HTTP ingress: FastAPI on Serve, built per replica from its `Services`."""

from __future__ import annotations

import logging
from typing import Any

from ray import serve

from sutazai.api.app import create_app
from sutazai.catalog import ModelCatalog
from sutazai.services import Services, build_services
from sutazai.settings import get_settings

logger = logging.getLogger("ray.serve")


@serve.deployment
@serve.ingress()
class Ingress:
    async def __init__(self, models: dict[str, Any], catalog_specs: list[dict]) -> None:
        from sutazai.catalog import ModelSpec

        settings = get_settings()
        catalog = ModelCatalog([ModelSpec.model_validate(s) for s in catalog_specs])
        self.services: Services = await build_services(settings, catalog, models)
        if settings.mcp_enabled:
            self.services.mcp = await _connect_mcp(settings)

    async def __serve_build_asgi_app__(self):
        return await create_app(self.services)

    async def check_health(self) -> None:
        """Unhealthy when Postgres is unreachable: Serve replaces the replica."""
        await self.services.pool.fetchval("SELECT 1")


async def _connect_mcp(settings):
    try:
        from sutazai.mcp.gateway import MCPGateway
    except ModuleNotFoundError:
        return None
    try:
        return await MCPGateway.connect(settings)
    except Exception:
        logger.exception("MCP gateway failed to start; MCP routes answer 503")
        return None

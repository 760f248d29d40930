"""The HTTP ingress: FastAPI on Serve, built per replica from its `Services`.

This is where a replica's parts come together: the model deployments' handles
(from the application builder) and the MCP actors (found or created by name).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from ray import serve

from deployments.mcp_process import connect_gateway
from deployments.vector_store import connect_vector_store
from sutazai.api.app import create_app
from sutazai.catalog import EmbedderSpec, ModelCatalog, ModelSpec
from sutazai.mcp.gateway import MCPGateway
from sutazai.services import Services, build_services
from sutazai.settings import Settings, get_settings
from sutazai.vectors.store import VectorStore

logger = logging.getLogger("ray.serve")


@serve.deployment
@serve.ingress()
class Ingress:
    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self,
        models: dict[str, Any],
        catalog_specs: list[dict[str, Any]],
        dispatcher: Any = None,
        *,
        embedders: dict[str, Any] | None = None,  # embedding model name -> its deployment's handle
        embedder_specs: list[dict[str, Any]] | None = None,
    ) -> None:
        settings = get_settings()
        catalog = ModelCatalog(
            [ModelSpec.model_validate(s) for s in catalog_specs],
            [EmbedderSpec.model_validate(s) for s in embedder_specs or []],
        )
        mcp = await _connect_mcp(settings) if settings.mcp_enabled else None
        vectors = await _connect_vectors(settings) if catalog.embedders else None
        self.services: Services = await build_services(
            settings, catalog, models, mcp=mcp, dispatcher=dispatcher, embedders=embedders, vectors=vectors
        )

    async def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.services)

    async def check_health(self) -> None:
        """Unhealthy when Postgres is unreachable: Serve replaces the replica."""
        await self.services.pool.fetchval("SELECT 1")


async def _connect_mcp(settings: Settings) -> MCPGateway | None:
    try:
        return await connect_gateway(settings)
    except Exception:
        logger.exception("MCP gateway failed to start; MCP routes answer 503")
        return None


async def _connect_vectors(settings: Settings) -> VectorStore | None:
    try:
        return await asyncio.to_thread(connect_vector_store, settings)
    except Exception:
        logger.exception("vector store unreachable; document indexing and search answer 503")
        return None

"""What a route needs, built once per ingress replica and kept on `app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from sutazai.settings import Settings


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    # model name -> DeploymentHandle of its LLM deployment
    models: dict[str, Any]
    catalog: Any  # sutazai.catalog.ModelCatalog
    mcp: Any = None  # sutazai.mcp.gateway.MCPGateway, None when MCP is disabled

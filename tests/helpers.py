"""Helpers every test folder shares: ports, database URLs, and the one way tests build the app."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from fastapi import FastAPI

from sutazai.api.app import create_app
from sutazai.auth import accounts
from sutazai.catalog import ModelCatalog
from sutazai.mcp.gateway import MCPGateway
from sutazai.services import Services, build_services
from sutazai.settings import Settings

BASE_DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    """A port nothing listens on (for a server to start on, or for "Redis is down")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url_named(base_url: str, name: str) -> str:
    """`base_url` pointed at another database of the same server (TCP or the embedded socket)."""
    if "host=" in base_url:  # embedded: unix socket in the query string
        return base_url.replace("/postgres?", f"/{name}?")
    return urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))


@asynccontextmanager
async def app_for(
    settings: Settings,
    *,
    catalog: ModelCatalog | None = None,
    handles: dict[str, Any] | None = None,
    mcp: MCPGateway | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[tuple[FastAPI, Services]]:
    """The ingress's app, built by the same factories as a replica's, in this process."""
    services = await build_services(settings, catalog or ModelCatalog([]), handles or {}, mcp=mcp, clock=clock)
    try:
        yield create_app(services), services
    finally:
        await services.close()


def client_for(app: FastAPI, client_ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@asynccontextmanager
async def fresh_database(prefix: str) -> AsyncIterator[str]:
    """A new, empty database on the test Postgres (dropped afterwards); yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(BASE_DATABASE_URL)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield database_url_named(BASE_DATABASE_URL, name)
    finally:
        conn = await asyncpg.connect(BASE_DATABASE_URL)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def signed_in(client: httpx.AsyncClient, services: Services, role: str, password: str) -> dict[str, str]:
    """Authorization headers of a new user of `role`, logged in through the API."""
    user = await accounts.create_user(services.users, f"{role}-{uuid.uuid4().hex[:8]}", password, role)
    response = await client.post("/api/v1/auth/login", json={"username": user.username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def function_tool(name: str, description: str, *required: str) -> dict[str, Any]:
    """An OpenAI function tool whose `required` arguments are strings."""
    properties = {argument: {"type": "string"} for argument in required}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(required)},
        },
    }

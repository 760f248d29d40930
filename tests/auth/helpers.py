"""Building blocks of the auth tests: settings, the small test app, login helpers.

The app is the auth router + the security middleware + a few dummy routes
(read, write, admin, SSE stream, an OpenAI-style completion that spends tokens),
driven in-process through httpx.ASGITransport.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse

from sutazai.api.auth import router as auth_router
from sutazai.api.security import install_security
from sutazai.auth.principal import (
    Principal,
    enforce_token_budget,
    record_token_usage,
    require_admin,
    require_user,
    require_viewer,
)
from sutazai.auth.rate_limit import RateLimiter
from sutazai.auth.state import AuthState
from sutazai.auth.tokens import TokenSigner
from sutazai.errors import install_error_handlers
from sutazai.settings import Settings

BASE_DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
JWT_SECRET = "test-secret-" + "x" * 40
RUN_ID = uuid.uuid4().hex[:10]
REDIS_PREFIX = f"authtest-{RUN_ID}-"
PASSWORD = "correct horse battery staple"  # every test user's password; the leak tests search for it


def free_port() -> int:
    """A port nothing listens on (for "Redis is down")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url_named(name: str) -> str:
    return urlunsplit(urlsplit(BASE_DATABASE_URL)._replace(path=f"/{name}"))


def make_settings(database_url: str, **overrides) -> Settings:
    values = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "jwt_secret": JWT_SECRET,
        "rate_limit_requests_per_minute": {"admin": 1000, "user": 1000, "viewer": 1000},
        "rate_limit_tokens_per_minute": {"admin": 10**6, "user": 10**6, "viewer": 10**6},
        "login_attempts_per_minute": 1000,
        "cors_origins": ["https://app.example"],
        "max_body_bytes": 4096,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def mid_window_clock() -> Callable[[], float]:
    """A frozen clock 30 s into a minute, so a rate-limit test never straddles a window boundary."""
    frozen = (time.time() // 60) * 60 + 30
    return lambda: frozen


def build_app(settings: Settings, pool, redis, *, clock: Callable[[], float] | None = None) -> FastAPI:
    app = FastAPI()
    app.state.services = SimpleNamespace(settings=settings, pool=pool, redis=redis)  # the part of Services auth uses
    limiter = RateLimiter(
        redis,
        prefix=f"{REDIS_PREFIX}{uuid.uuid4().hex[:8]}:",  # a fresh namespace per app: tests never share buckets
        timeout_s=settings.redis_timeout_s,
        clock=clock or mid_window_clock(),
    )
    app.state.auth = AuthState(settings=settings, signer=TokenSigner.from_settings(settings, JWT_SECRET), limiter=limiter)
    install_error_handlers(app)
    app.include_router(auth_router)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/api/v1/things")
    async def list_things(principal: Principal = Depends(require_viewer)):
        return {"items": [], "owner": principal.username}

    @app.post("/api/v1/things", status_code=201)
    async def create_thing(body: dict, principal: Principal = Depends(require_user)):
        return {"created": body, "owner": principal.username}

    @app.post("/api/v1/cache/invalidate")
    async def invalidate(_: Principal = Depends(require_admin)):
        return {"invalidated": 0}

    @app.get("/api/v1/stream")
    async def stream(_: Principal = Depends(require_viewer)):
        async def events():
            for i in range(3):
                yield f"data: {i}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/v1/chat/completions")
    async def chat_completions(
        body: dict,
        request: Request,
        principal: Principal = Depends(require_user),
        _budget: Principal = Depends(enforce_token_budget),
    ):
        prompt_tokens, completion_tokens = 7, 5
        await record_token_usage(request, prompt_tokens, completion_tokens)
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "test"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": f"hello {principal.username}"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": 12},
        }

    install_security(app, settings)
    return app


def client_for(app: FastAPI, client_ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> dict:
    response = await client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert set(response.json()["error"]) >= {"code", "message", "request_id"}

"""Building blocks of the auth tests: settings, the app with a few test routes, login helpers.

The app is the real one (`tests.helpers.app_for`: the ingress's factories, real
Postgres and Redis, no model) plus test routes under /test (read, write, SSE
stream, a completion that spends tokens), driven in-process through httpx.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI

from sutazai.api.deps import ModelCallerDep, UserDep, ViewerDep
from sutazai.api.sse import event, sse_response
from sutazai.schemas.engine import GenerationRequest, Usage
from sutazai.settings import Settings
from tests.helpers import REDIS_URL, app_for

JWT_SECRET = "test-secret-" + "x" * 40
RUN_ID = uuid.uuid4().hex[:10]
REDIS_PREFIX = f"authtest-{RUN_ID}-"
PASSWORD = "correct horse battery staple"  # every test user's password; the leak tests search for it


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


test_routes = APIRouter(prefix="/test")


@test_routes.get("/things")
async def list_things(caller: ViewerDep) -> dict:
    return {"items": [], "owner": caller.username}


@test_routes.post("/things", status_code=201)
async def create_thing(body: dict, caller: UserDep) -> dict:
    return {"created": body, "owner": caller.username}


@test_routes.get("/stream")
async def stream(caller: ViewerDep):
    async def events():
        for i in range(3):
            yield event(str(i))

    return sse_response(events())


@test_routes.post("/completions")
async def spend_tokens(body: dict, caller: ModelCallerDep) -> dict:
    """Answers like a model that used 7 prompt and 5 completion tokens (reserving 7 first)."""
    usage = Usage(prompt_tokens=7, completion_tokens=5)
    request = GenerationRequest(prompt="hi", max_tokens=6, temperature=0.0, top_p=1.0)
    async with await caller.reserve([request]) as reservation:
        reservation.used = usage
    return {
        "id": "cmpl-test",
        "created": int(time.time()),
        "text": f"hello {caller.principal.username}",
        "usage": usage.model_dump(),
    }


@test_routes.post("/generate")
async def reserve_and_generate(body: dict, caller: ModelCallerDep) -> dict:
    """Like a model route: reserves prompt + max_tokens, holds it `hold_s`, then uses `used` tokens."""
    request = GenerationRequest(prompt="x" * 3, max_tokens=body.get("max_tokens", 10), temperature=0.0, top_p=1.0)
    async with await caller.reserve([request]) as reservation:
        await asyncio.sleep(body.get("hold_s", 0))
        reservation.used = Usage(prompt_tokens=1, completion_tokens=body.get("used", 1))
    return {"used": reservation.used.total_tokens}


@asynccontextmanager
async def build_app(
    settings: Settings, *, clock: Callable[[], float] | None = None, namespace: str | None = None
) -> AsyncIterator[FastAPI]:
    """The real app with the test routes; rate limits in a fresh Redis namespace (the app name
    prefixes its keys; apps given the same `namespace` share counts, like replicas), on a frozen clock."""
    name = f"{REDIS_PREFIX}{namespace or uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"app_name": name})
    async with app_for(settings, clock=clock or mid_window_clock()) as (app, _):
        app.include_router(test_routes)
        yield app


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

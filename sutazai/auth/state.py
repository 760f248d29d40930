"""What the auth dependencies need, built once per ingress replica: `app.state.auth`.

The dependencies use only `.settings`, `.pool` and `.redis` of `app.state.services`.

Call `await init_auth(app, services)` at startup (after `app.state.services` is
set): it resolves the JWT secret, so a missing secret fails the start rather
than the first request, and creates the first admin from the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request

from sutazai.auth.rate_limit import RateLimiter
from sutazai.auth.secret import resolve_jwt_secret
from sutazai.auth.tokens import TokenSigner
from sutazai.auth.users import ensure_admin
from sutazai.settings import Settings

if TYPE_CHECKING:
    from sutazai.services import Services


@dataclass
class AuthState:
    settings: Settings
    signer: TokenSigner
    limiter: RateLimiter


def build_auth_state(settings: Settings, redis, *, rate_limit_prefix: str | None = None) -> AuthState:
    """Raises `SecretConfigError` when no usable JWT secret is configured."""
    signer = TokenSigner.from_settings(settings, resolve_jwt_secret(settings))
    limiter = RateLimiter(
        redis,
        prefix=rate_limit_prefix or f"{settings.app_name}:rl:",
        timeout_s=settings.redis_timeout_s,
    )
    return AuthState(settings=settings, signer=signer, limiter=limiter)


async def init_auth(app: FastAPI, services: "Services") -> AuthState:
    state = build_auth_state(services.settings, services.redis)
    app.state.auth = state
    await ensure_admin(services.pool, services.settings)
    return state


def get_auth(request: Request) -> AuthState:
    """The replica's AuthState; built on first use if `init_auth` was not called."""
    state = getattr(request.app.state, "auth", None)
    if state is None:
        services = request.app.state.services
        state = build_auth_state(services.settings, services.redis)
        request.app.state.auth = state
    return state

"""Who is calling, and the FastAPI dependencies that decide what they may do.

`Authorization: Bearer <access JWT>` or `Authorization: Bearer sk-...` (API key).
`current_principal` authenticates (401 otherwise), stores the result on
`request.state.principal`, and counts the request against the caller's rate
limit (429 when over). `require_role(r)` adds the role check (403): a route says
`Depends(require_role("user"))`; admin > user > viewer, and an API key must also
carry the matching scope. Viewers are read-only: give every route that changes
something at least "user".
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sutazai.auth import api_keys, refresh
from sutazai.auth.errors import forbidden, invalid_token, unauthorized
from sutazai.auth.rate_limit import rate_limited
from sutazai.auth.roles import ADMIN, ROLE_FOR_SCOPE, ROLES, SCOPE_FOR_ROLE, at_least, rank, scopes_allowed_for
from sutazai.auth.state import get_auth
from sutazai.auth.tokens import ACCESS

JWT = "jwt"
API_KEY = "api_key"

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An access token from POST /api/v1/auth/login, or an API key (sk-...).",
)


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    username: str
    role: str
    auth_method: str  # JWT or API_KEY
    scopes: tuple[str, ...]
    key_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None  # the refresh-token family of a JWT
    key_requests_per_minute: int | None = field(default=None, repr=False)
    key_tokens_per_minute: int | None = field(default=None, repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def denial(self, required: str) -> str | None:
        """Why this principal may not act at the `required` role level, or None if it may."""
        if not at_least(self.role, required):
            return f"requires role {required} (you are {self.role})"
        if not any(at_least(ROLE_FOR_SCOPE[s], required) for s in self.scopes if s in ROLE_FOR_SCOPE):
            return f"this API key lacks the {SCOPE_FOR_ROLE[required]!r} scope"
        return None

    def owns(self, owner_id: uuid.UUID | None) -> bool:
        """Resource ownership: only the owner sees its conversations, tasks, documents, keys."""
        return owner_id is not None and owner_id == self.user_id


async def _from_jwt(request: Request, token: str) -> Principal:
    claims = get_auth(request).signer.decode(token, ACCESS)
    user, revoked = await refresh.session_user(request.app.state.services.pool, claims.user_id, claims.family_id)
    if user is None or user.disabled:
        raise invalid_token("account disabled or removed")
    if revoked:
        raise invalid_token("session ended; log in again")
    # The role comes from the database, not the token: a role change applies at once.
    return Principal(user.id, user.username, user.role, JWT, scopes_allowed_for(user.role), session_id=claims.family_id)


async def _from_api_key(request: Request, token: str) -> Principal:
    pool = request.app.state.services.pool
    found = await api_keys.lookup(pool, token)
    if found is None:
        raise invalid_token("invalid API key")
    reason = found.key.unusable_reason()
    if reason:
        raise invalid_token(reason)
    if found.disabled:
        raise invalid_token("account disabled")
    await api_keys.touch(pool, found.key)
    # A key never exceeds its owner's current role, whatever scopes it was given.
    scopes = tuple(s for s in found.key.scopes if s in scopes_allowed_for(found.role))
    return Principal(
        found.key.user_id,
        found.username,
        found.role,
        API_KEY,
        scopes,
        key_id=found.key.id,
        key_requests_per_minute=found.key.requests_per_minute,
        key_tokens_per_minute=found.key.tokens_per_minute,
    )


async def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """Who the bearer credentials belong to; 401 for missing or bad ones. No rate limiting."""
    if credentials is None or not credentials.credentials:
        raise unauthorized("authentication required: send Authorization: Bearer <token or API key>")
    token = credentials.credentials.strip()
    if api_keys.looks_like_key(token):
        return await _from_api_key(request, token)
    return await _from_jwt(request, token)


async def current_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> Principal:
    """Authenticate, remember on request.state.principal, count against the request rate limit."""
    principal = await authenticate(request, credentials)
    request.state.principal = principal
    auth = get_auth(request)
    decision = await auth.limiter.hit_request(auth.settings, principal)
    request.state.rate_limit = decision  # the security middleware turns it into X-RateLimit-* headers
    if not decision.allowed:
        raise rate_limited(decision, f"rate limit of {decision.limit} requests per minute exceeded")
    return principal


@functools.cache
def require_role(role: str):
    """Dependency factory: `Depends(require_role("user"))` -> the Principal, or 401/403/429."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {ROLES}")

    async def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        reason = principal.denial(role)
        if reason:
            raise forbidden(reason)
        return principal

    dependency.__name__ = f"require_{role}"
    dependency.required_role = role  # read by route_requirements()
    return dependency


require_admin = require_role("admin")
require_user = require_role("user")
require_viewer = require_role("viewer")


async def enforce_token_budget(request: Request, principal: Principal = Depends(current_principal)) -> Principal:
    """For LLM routes: 429 when the caller's tokens-per-minute budget is already spent.

    Tokens are only known after generation, so call `record_token_usage` when the
    answer (or the stream) is done; a request in flight may overshoot a little.
    """
    auth = get_auth(request)
    decision = await auth.limiter.check_tokens(auth.settings, principal)
    request.state.token_rate_limit = decision
    if not decision.allowed:
        raise rate_limited(
            decision, f"token limit of {decision.limit} tokens per minute exceeded", code="token_rate_limited", suffix="-Tokens"
        )
    return principal


async def record_token_usage(request: Request, prompt_tokens: int, completion_tokens: int) -> None:
    """Count an LLM call's prompt + completion tokens against the caller's budget."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return
    auth = get_auth(request)
    await auth.limiter.add_tokens(auth.settings, principal, max(0, prompt_tokens) + max(0, completion_tokens))


# -- introspection, for tests that walk every route ------------------------------

PUBLIC = "public"
AUTHENTICATED = "authenticated"


def _requirement(dependant) -> str:
    found = PUBLIC
    stack = [dependant]
    while stack:
        dep = stack.pop()
        role = getattr(dep.call, "required_role", None)
        if role is not None and (found in (PUBLIC, AUTHENTICATED) or rank(role) > rank(found)):
            found = role
        elif dep.call is current_principal and found == PUBLIC:
            found = AUTHENTICATED
        stack.extend(dep.dependencies)
    return found


def route_requirements(app: FastAPI) -> dict[tuple[str, str], str]:
    """(method, path) -> "public", "authenticated", or the least role each route requires."""
    try:  # FastAPI >= 0.16x keeps included routers lazy; this resolves them with their dependencies
        from fastapi.routing import iter_route_contexts

        routes = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = list(app.routes)
    out = {}
    for route in routes:
        if not isinstance(getattr(route, "original_route", route), APIRoute):
            continue
        requirement = _requirement(route.dependant)
        for method in route.methods:
            out[(method, route.path)] = requirement
    return out

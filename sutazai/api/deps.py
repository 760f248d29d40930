"""The dependency vocabulary of every route: the only way a route reaches state.

`request.app.state` is read here and nowhere else. A route declares who may call
it with exactly one caller parameter:

    caller: ViewerDep       # read-only, any signed-in role
    caller: UserDep         # changes something
    caller: AdminDep        # administration
    caller: ModelCallerDep  # runs a model; `async with await caller.reserve(requests, client) as reservation`

and reaches the replica's services with `services: ServicesDep`. Public routes
(liveness, login, refresh) declare no caller.

Every dependency is `async def`, even those that do no I/O: FastAPI runs a plain `def`
dependency in anyio's thread pool (40 threads), whose every call walks all the event loop's
tasks (`find_root_task`): with 1,000 requests in flight that was most of the replica's time.
"""

from __future__ import annotations

import functools
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, FastAPI, Query, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sutazai.admission import Ticket
from sutazai.auth.principal import Principal
from sutazai.auth.rate_limit import AUTH_FAILURES, REQUESTS, TOKENS, Decision, Limit, rate_limited
from sutazai.auth.roles import ROLES, rank
from sutazai.cache import SHARED
from sutazai.errors import Forbidden, RateLimited, Unauthenticated
from sutazai.inference import ModelClient
from sutazai.schemas.common import INT32_MAX
from sutazai.schemas.engine import GenerationChunk, GenerationRequest, GenerationResult, Usage
from sutazai.services import Services

MAX_OFFSET = INT32_MAX

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An access token from POST /api/v1/auth/login, or an API key (sk-...).",
)


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


RequestIdDep = Annotated[str | None, Depends(get_request_id)]


async def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


ClientIpDep = Annotated[str | None, Depends(client_ip)]


async def current_principal(
    request: Request,
    services: ServicesDep,
    ip: ClientIpDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """Authenticate (401), remember the principal for audit and headers, count the request (429).

    Failed authentications are counted per client address: past the limit, that address
    gets 429s without a database lookup, so guessing keys costs the guesser, not us.
    A credential this replica resolved recently (`Authenticator.cached`) costs one Redis
    round trip (both limits at once) and no Postgres query."""
    settings, limiter = services.settings, services.limiter
    failures = [Limit(f"ip:{ip or 'unknown'}", settings.auth_failures_per_minute)]
    credential = credentials.credentials if credentials else None
    principal = services.authenticator.cached(credential)
    if principal is not None:
        refused, decision = await limiter.gate(AUTH_FAILURES, failures, REQUESTS, principal.request_limits(settings))
    else:
        refused = await limiter.check(AUTH_FAILURES, failures)
        if refused.allowed:
            try:
                principal = await services.authenticator.principal(credential)
            except Unauthenticated:
                if credentials is not None:  # a missing header is not a guess
                    await limiter.hit(AUTH_FAILURES, failures)
                raise
            decision = await limiter.hit(REQUESTS, principal.request_limits(settings))
    if not refused.allowed:
        raise rate_limited(refused, "too many failed authentications from this address", code="too_many_auth_failures")
    assert principal is not None
    request.state.principal = principal
    request.state.rate_limit = decision  # the security middleware turns it into X-RateLimit-* headers
    if not decision.allowed:
        raise rate_limited(decision, f"rate limit of {decision.limit} requests per minute exceeded")
    return principal


CallerDep = Annotated[Principal, Depends(current_principal)]


@functools.cache
def require_role(role: str) -> Callable[..., Awaitable[Principal]]:
    """The dependency behind ViewerDep / UserDep / AdminDep: the Principal, or 401/403/429."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {ROLES}")

    async def dependency(principal: CallerDep) -> Principal:
        reason = principal.denial(role)
        if reason:
            raise Forbidden(reason)
        return principal

    dependency.__name__ = f"require_{role}"
    dependency.required_role = role  # type: ignore[attr-defined]  # read by route_requirements()
    return dependency


ViewerDep = Annotated[Principal, Depends(require_role("viewer"))]
UserDep = Annotated[Principal, Depends(require_role("user"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]


def token_limited(decision: Decision, message: str) -> RateLimited:
    """A 429 for the tokens-per-minute budget, with its X-RateLimit-*-Tokens headers."""
    return rate_limited(decision, message, code="token_rate_limited", suffix="-Tokens")


@dataclass
class Reservation:
    """Places in the model's share of this replica, tokens and a concurrency slot held for one
    model call; settled exactly once, with what was really used (a stream cut short pays for
    what it was sent)."""

    caller: ModelCaller
    prompt_tokens: int  # estimated
    tokens: int  # reserved: estimated prompt + max_tokens
    ticket: Ticket | None = None  # the places taken in this replica's admission of the model
    used: Usage = field(default_factory=Usage)  # what `settle` charges: nothing until output arrives
    settled: bool = False

    def __post_init__(self) -> None:
        # A stream whose client left before its generator first ran never reaches `settle`: its
        # places would be lost to this replica for good (the Redis slot at least expires).
        if self.ticket is not None:
            weakref.finalize(self, self.ticket.release)

    def saw(self, chunk: GenerationChunk) -> None:
        """Follow a stream: its final usage when it comes, else the prompt and a token per chunk sent."""
        if chunk.usage is not None:
            self.used = chunk.usage
        elif chunk.text:
            self.used = Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.used.completion_tokens + 1)

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.settle()

    async def settle(self) -> None:
        """Charge what was used, give the rest of the reservation back, free the slot."""
        if self.settled:
            return
        self.settled = True
        if self.ticket is not None:
            self.ticket.release()
        limiter, limits = self.caller.services.limiter, self.caller.token_limits()
        await limiter.settle(self.caller.slot_bucket(), TOKENS, limits, self.used.total_tokens - self.tokens)


@dataclass(frozen=True)
class ModelCaller:
    """A caller allowed to run a model: reserve before the call, settle after it."""

    principal: Principal
    services: Services
    state: Any  # the request's state: the token decision goes there, for the X-RateLimit-*-Tokens headers

    def token_limits(self) -> list[Limit]:
        return self.principal.token_limits(self.services.settings)

    @property
    def cache_scope(self) -> str:
        """Whose cached answers this caller may get: its own, unless the operator shares them."""
        return SHARED if self.services.settings.cache_shared else f"user-{self.principal.user_id}"

    def slot_bucket(self) -> str:
        return f"user:{self.principal.user_id}"

    async def check_budget(self) -> None:
        """429 when the tokens-per-minute budget is spent (for work that reserves nothing here)."""
        decision = await self.services.limiter.check(TOKENS, self.token_limits())
        self.state.token_rate_limit = decision
        if not decision.allowed:
            raise token_limited(decision, f"token limit of {decision.limit} tokens per minute exceeded")

    async def complete(self, client: ModelClient, request: GenerationRequest) -> tuple[GenerationResult, bool]:
        """One request's answer and whether it was cached. A cached answer runs nothing, so it takes
        no concurrency slot and no place in this replica's share of the model (it is served to a
        caller at its cap), and is charged its tokens; otherwise the call is reserved, run and
        settled with what it used. (While every model is full, `SheddingMiddleware` answers 503
        before the body is read, cached or not.)"""
        result = await self.services.inference.cached(client, request, cache_scope=self.cache_scope)
        if result is not None:
            await self.charge(result.usage.total_tokens)
            return result, True
        async with await self.reserve([request], client) as reservation:
            result = await self.services.inference.generate(client, request, cache_scope=self.cache_scope)
            reservation.used = result.usage
        return result, False

    async def charge(self, tokens: int) -> None:
        """Count tokens used without a model call (a cached answer); 429 when the budget is already
        spent, as `check_budget`. One round trip to Redis."""
        limits = self.token_limits()
        if not limits:
            return
        refused, decision = await self.services.limiter.gate(TOKENS, limits, TOKENS, limits, tokens)
        self.state.token_rate_limit = decision if refused.allowed else refused
        if not refused.allowed:
            raise token_limited(refused, f"token limit of {refused.limit} tokens per minute exceeded")

    async def reserve(self, requests: list[GenerationRequest], client: ModelClient | None = None) -> Reservation:
        """Hold places in `client`'s model (503 at once when this replica's share is taken: see
        `sutazai.admission`), then a concurrency slot and prompt + max_tokens of the budget (429
        when either is exhausted), so parallel requests cannot all pass a check that only one
        can afford. One round trip to Redis; taken all or nothing."""
        ticket = None
        if client is not None:
            ticket = client.admission.take(min(len(requests), self.services.settings.batch_concurrency))
        try:
            return await self._reserve(requests, ticket)
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise

    async def _reserve(self, requests: list[GenerationRequest], ticket: Ticket | None) -> Reservation:
        limiter, settings = self.services.limiter, self.services.settings
        prompt = sum(r.estimated_prompt_tokens() for r in requests)
        tokens = prompt + sum(r.max_tokens for r in requests)
        cap = settings.max_concurrent_model_requests
        decision = await limiter.reserve(self.slot_bucket(), cap, TOKENS, self.token_limits(), tokens)
        if decision is None:
            raise RateLimited(
                f"at most {cap} model requests at once; wait for one to finish",
                {"Retry-After": "1"},
                code="too_many_concurrent_requests",
            )
        self.state.token_rate_limit = decision
        if not decision.allowed:
            limit = decision.limit
            raise token_limited(decision, f"token limit of {limit} tokens per minute: this request may need {tokens}")
        return Reservation(self, prompt, tokens, ticket)

    async def open_stream(
        self, client: ModelClient, request: GenerationRequest
    ) -> tuple[AsyncIterator[GenerationChunk], bool, Reservation]:
        """Reserve, then start the stream (a refusal is an HTTP status, and gives the reservation
        back); the caller's event generator settles the reservation when the stream ends."""
        reservation = await self.reserve([request], client)
        try:
            chunks, cached = await self.services.inference.open_stream(client, request, cache_scope=self.cache_scope)
        except BaseException:
            await reservation.settle()
            raise
        return chunks, cached, reservation


async def model_caller(request: Request, services: ServicesDep, principal: UserDep) -> ModelCaller:
    """A user who may run models. The budget is checked by `reserve` (or `check_budget`), in
    the same round trip to Redis that takes the tokens."""
    return ModelCaller(principal, services, request.state)


model_caller.required_role = "user"  # type: ignore[attr-defined]
ModelCallerDep = Annotated[ModelCaller, Depends(model_caller)]


@dataclass(frozen=True)
class Auditor:
    """Records actions in the audit log with the request's actor, address and id."""

    services: Services
    principal: Principal | None
    client_ip: str | None
    request_id: str | None

    async def record(
        self,
        action: str,
        *,
        target: str | None = None,
        details: dict[str, Any] | None = None,
        actor_id: uuid.UUID | None = None,
        actor_name: str | None = None,
    ) -> None:
        """An action of the request's principal (or of the given actor, e.g. at login)."""
        await self.services.audit.record(action, **self._entry(target, details, actor_id, actor_name))

    def _entry(
        self,
        target: str | None,
        details: dict[str, Any] | None,
        actor_id: uuid.UUID | None = None,
        actor_name: str | None = None,
    ) -> dict[str, Any]:
        """The store's fields of an entry: the request's principal unless an actor is given."""
        if self.principal is not None and actor_id is None and actor_name is None:
            actor_id, actor_name = self.principal.user_id, self.principal.username
            if self.principal.key_id is not None:
                details = {**(details or {}), "via_api_key": str(self.principal.key_id)}
        return {
            "actor_id": actor_id,
            "actor_name": actor_name,
            "target": target,
            "client_ip": self.client_ip,
            "details": details,
            "request_id": self.request_id,
        }

    def record_after_response(
        self,
        background: BackgroundTasks,
        action: str,
        *,
        target: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """`record`, once the response is sent: for a hot route whose caller should not wait on
        the log's round trip (measured: ~0.8 ms of an MCP call), nor its connection's next
        request (`AuditStore.record_soon`). Written by this replica right after; lost only if
        the replica dies in between, and a failed write is logged, not the caller's error (the
        action itself succeeded)."""
        # a coroutine: Starlette would run a plain function in a thread
        background.add_task(self._record_soon, action, **self._entry(target, details))

    async def _record_soon(self, action: str, **entry: Any) -> None:
        self.services.audit.record_soon(action, **entry)


async def auditor(request: Request, services: ServicesDep, ip: ClientIpDep, request_id: RequestIdDep) -> Auditor:
    return Auditor(services, getattr(request.state, "principal", None), ip, request_id)


AuditDep = Annotated[Auditor, Depends(auditor)]


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


async def page_params(
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> PageParams:
    return PageParams(limit, offset)


PageDep = Annotated[PageParams, Depends(page_params)]


# -- introspection, for the test that walks every route ------------------------------

PUBLIC = "public"
AUTHENTICATED = "authenticated"


def _requirement(dependant: Any) -> str:
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
    from fastapi.routing import iter_route_contexts

    out: dict[tuple[str, str], str] = {}
    for route in iter_route_contexts(app.routes):
        if not isinstance(getattr(route, "original_route", route), APIRoute):
            continue
        requirement = _requirement(route.dependant)
        for method in route.methods or ():
            out[(str(method), str(route.path))] = requirement
    return out

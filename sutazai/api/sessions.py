"""Sessions: log in, refresh (rotation with reuse detection), log out, who am I.

Login and refresh are public; the rest needs a bearer credential.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

from fastapi import APIRouter, Response

from sutazai.api.deps import AuditDep, ClientIpDep, ServicesDep, ViewerDep
from sutazai.auth import passwords
from sutazai.auth.principal import JWT
from sutazai.auth.rate_limit import LOGIN, login_limits, rate_limited
from sutazai.auth.tokens import ACCESS, REFRESH, TokenClaims
from sutazai.errors import BadRequest, InvalidToken, Unauthenticated
from sutazai.schemas.auth import LoginRequest, Me, RefreshRequest, TokenPair
from sutazai.services import Services
from sutazai.storage.refresh_tokens import Outcome
from sutazai.storage.users import User

logger = logging.getLogger("sutazai.auth")

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def _issue_pair(services: Services, user: User, family_id: uuid.UUID) -> tuple[TokenPair, TokenClaims]:
    signer = services.signer
    refresh_token = signer.issue(user_id=user.id, role=user.role, token_type=REFRESH, family_id=family_id)
    access_token = signer.issue(user_id=user.id, role=user.role, token_type=ACCESS, family_id=family_id)
    pair = TokenPair(
        access_token=access_token.token,
        refresh_token=refresh_token.token,
        expires_in=signer.access_ttl_s,
        refresh_expires_in=signer.refresh_ttl_s,
    )
    return pair, refresh_token.claims


@router.post("/login", response_model=TokenPair, summary="Log in with username and password")
async def login(body: LoginRequest, services: ServicesDep, audit: AuditDep, ip: ClientIpDep) -> TokenPair:
    # Attempted names are stored only when they match an account (people type passwords into
    # the username field); otherwise a hash is enough to correlate attempts.
    name_hash = hashlib.sha256(body.username.lower().encode()).hexdigest()[:16]
    limits = login_limits(services.settings.login_attempts_per_minute, body.username, ip)
    decision = await services.limiter.hit(LOGIN, limits)
    if not decision.allowed:
        if decision.used == decision.limit + 1:  # audit the first refusal of the window, not every one
            await audit.record("auth.login_rate_limited", details={"username_sha256": name_hash})
        raise rate_limited(decision, "too many login attempts; try again later", code="too_many_login_attempts")

    found = await services.users.get_for_login(body.username)
    password = body.password.get_secret_value()
    ok = await passwords.verify_password_async(found[1] if found else None, password)
    user = found[0] if found else None
    if found is None or user is None or not ok or user.disabled:
        reason = "unknown_user" if user is None else ("bad_password" if not ok else "disabled")
        await audit.record(
            "auth.login_failed",
            actor_id=user.id if user else None,
            actor_name=user.username if user else None,
            target=str(user.id) if user else None,
            details={"reason": reason} if user else {"reason": reason, "username_sha256": name_hash},
        )
        logger.info("login failed reason=%s user_id=%s ip=%s", reason, user.id if user else None, ip)
        raise Unauthenticated("invalid username or password", code="invalid_credentials")

    if passwords.needs_rehash(found[1]):
        await services.users.set_password_hash(user.id, await passwords.hash_password_async(password))
    pair, refresh_claims = _issue_pair(services, user, uuid.uuid4())
    await services.sessions.record(
        jti=refresh_claims.jti,
        family_id=refresh_claims.family_id,
        user_id=user.id,
        expires_at=refresh_claims.expires_at,
    )
    await audit.record(
        "auth.login",
        actor_id=user.id,
        actor_name=user.username,
        target=str(user.id),
        details={"session": str(refresh_claims.family_id)},
    )
    return pair


@router.post("/refresh", response_model=TokenPair, summary="Swap a refresh token for a new pair")
async def refresh_tokens(body: RefreshRequest, services: ServicesDep, audit: AuditDep) -> TokenPair:
    """Rotation: the presented refresh token is spent. Presenting a spent one again ends the session."""
    claims = services.signer.decode(body.refresh_token, REFRESH)
    user = await services.users.get(claims.user_id)
    if user is None or user.disabled:
        raise InvalidToken("account disabled or removed")
    pair, new_claims = _issue_pair(services, user, claims.family_id)
    rotation = await services.sessions.rotate(
        old_jti=claims.jti,
        user_id=user.id,
        new_jti=new_claims.jti,
        new_expires_at=new_claims.expires_at,
        session_max_s=services.settings.session_max_s,
    )
    if rotation.outcome is Outcome.REUSED:
        logger.warning("refresh token reuse user_id=%s session=%s: session revoked", user.id, rotation.family_id)
        await audit.record(
            "auth.refresh_reuse",
            actor_id=user.id,
            actor_name=user.username,
            target=str(user.id),
            details={"session": str(rotation.family_id), "jti": str(claims.jti)},
        )
        raise InvalidToken("refresh token already used: the session has been revoked, log in again")
    if rotation.outcome is not Outcome.ROTATED:
        raise InvalidToken(f"refresh token {rotation.outcome.value}")
    return pair


@router.post("/logout", status_code=204, response_class=Response, summary="End the current session")
async def logout(caller: ViewerDep, services: ServicesDep, audit: AuditDep) -> Response:
    """Revokes the session's refresh tokens and, with them, its access tokens."""
    if caller.auth_method != JWT or caller.session_id is None:
        raise BadRequest("logout ends a login session; revoke API keys with DELETE /api/v1/auth/keys/{id}")
    await services.sessions.revoke_family(caller.session_id, user_id=caller.user_id)
    await audit.record("auth.logout", target=str(caller.user_id), details={"session": str(caller.session_id)})
    return Response(status_code=204)


@router.get("/me", response_model=Me, summary="Who am I")
async def me(caller: ViewerDep) -> Me:
    return Me(
        id=caller.user_id,
        username=caller.username,
        role=caller.role,
        auth_method=caller.auth_method,
        scopes=list(caller.scopes),
        key_id=caller.key_id,
    )

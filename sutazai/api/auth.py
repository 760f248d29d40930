"""Auth routes: login / refresh / logout / me, API keys, user admin, audit log.

Public: login and refresh. Everything else needs a bearer credential; user
management and the audit log need the admin role. Passwords arrive as
`SecretStr` so they never show up in a repr, a log line or an error.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from sutazai.auth import api_keys, audit, passwords, refresh, users
from sutazai.auth.errors import invalid_token, unauthorized
from sutazai.auth.principal import JWT, Principal, require_admin, require_viewer
from sutazai.auth.rate_limit import rate_limited
from sutazai.auth.state import get_auth
from sutazai.auth.tokens import ACCESS, REFRESH
from sutazai.errors import APIError, not_found

logger = logging.getLogger("sutazai.auth")

router = APIRouter(tags=["auth"])

Role = Literal["admin", "user", "viewer"]
Scope = Literal["read", "write", "admin"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- models --------------------------------------------------------------------


class LoginRequest(_In):
    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(max_length=passwords.MAX_LENGTH)


class RefreshRequest(_In):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_expires_in: int


class Me(BaseModel):
    id: uuid.UUID
    username: str
    role: Role
    auth_method: Literal["jwt", "api_key"]
    scopes: list[str]
    key_id: uuid.UUID | None = None


class CreateKeyRequest(_In):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] | None = Field(default=None, description='default ["read", "write"] within your role')
    expires_at: datetime | None = None
    requests_per_minute: int | None = Field(default=None, gt=0, description="narrows your role's limit for this key")
    tokens_per_minute: int | None = Field(default=None, gt=0)


class KeyInfo(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class CreatedKey(KeyInfo):
    key: str = Field(description="the API key itself: shown this once, store it now")


class KeyList(BaseModel):
    items: list[KeyInfo]


class CreateUserRequest(_In):
    username: str = Field(pattern=users.USERNAME_PATTERN)
    password: SecretStr = Field(max_length=passwords.MAX_LENGTH)
    role: Role = "user"


class UpdateUserRequest(_In):
    role: Role | None = None
    disabled: bool | None = None
    password: SecretStr | None = Field(default=None, max_length=passwords.MAX_LENGTH)


class UserInfo(BaseModel):
    id: uuid.UUID
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    updated_at: datetime


class UserList(BaseModel):
    items: list[UserInfo]
    total: int
    limit: int
    offset: int


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor_id: uuid.UUID | None
    actor_name: str | None
    action: str
    target: str | None
    client_ip: str | None
    details: dict[str, Any]
    request_id: str | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    total: int
    limit: int
    offset: int


def _pool(request: Request):
    return request.app.state.services.pool


def _key_info(key: api_keys.ApiKey) -> dict:
    """The key's fields for a response model (which drops what it does not show, e.g. user_id)."""
    return key.__dict__


def _user_info(user: users.User) -> UserInfo:
    return UserInfo(**user.__dict__)


# -- login, refresh, logout, me ----------------------------------------------------


def _issue_pair(request: Request, user: users.User, family_id: uuid.UUID) -> tuple[TokenPair, Any]:
    signer = get_auth(request).signer
    refresh_token = signer.issue(user_id=user.id, role=user.role, token_type=REFRESH, family_id=family_id)
    access_token = signer.issue(user_id=user.id, role=user.role, token_type=ACCESS, family_id=family_id)
    pair = TokenPair(
        access_token=access_token.token,
        refresh_token=refresh_token.token,
        expires_in=signer.access_ttl_s,
        refresh_expires_in=signer.refresh_ttl_s,
    )
    return pair, refresh_token.claims


@router.post("/api/v1/auth/login", response_model=TokenPair, summary="Log in with username and password")
async def login(body: LoginRequest, request: Request) -> TokenPair:
    auth = get_auth(request)
    pool = _pool(request)
    ip = audit.client_ip(request)
    # Attempted names are stored only when they match an account (people type passwords into
    # the username field); otherwise a hash is enough to correlate attempts.
    name_hash = hashlib.sha256(body.username.lower().encode()).hexdigest()[:16]

    decision = await auth.limiter.hit_login(auth.settings, body.username, ip)
    if not decision.allowed:
        if decision.used == decision.limit + 1:  # audit the first refusal of the window, not every one
            await audit.record_request(request, "auth.login_rate_limited", details={"username_sha256": name_hash})
        raise rate_limited(decision, "too many login attempts; try again later", code="too_many_login_attempts")

    found = await users.get_for_login(pool, body.username)
    password = body.password.get_secret_value()
    ok = await passwords.verify_password_async(found[1] if found else None, password)
    user = found[0] if found else None
    if not ok or user is None or user.disabled:
        reason = "unknown_user" if user is None else ("bad_password" if not ok else "disabled")
        await audit.record_request(
            request,
            "auth.login_failed",
            actor_id=user.id if user else None,
            actor_name=user.username if user else None,
            target=str(user.id) if user else None,
            details={"reason": reason} if user else {"reason": reason, "username_sha256": name_hash},
        )
        logger.info("login failed reason=%s user_id=%s ip=%s", reason, user.id if user else None, ip)
        raise unauthorized("invalid username or password", code="invalid_credentials")

    if passwords.needs_rehash(found[1]):
        await users.set_password_hash(pool, user.id, await passwords.hash_password_async(password))
    pair, refresh_claims = _issue_pair(request, user, uuid.uuid4())
    await refresh.record(
        pool,
        jti=refresh_claims.jti,
        family_id=refresh_claims.family_id,
        user_id=user.id,
        expires_at=refresh_claims.expires_at,
    )
    await audit.record_request(
        request, "auth.login", actor_id=user.id, actor_name=user.username, target=str(user.id),
        details={"session": str(refresh_claims.family_id)},
    )
    return pair


@router.post("/api/v1/auth/refresh", response_model=TokenPair, summary="Swap a refresh token for a new pair")
async def refresh_tokens(body: RefreshRequest, request: Request) -> TokenPair:
    """Rotation: the presented refresh token is spent. Presenting a spent one again ends the session."""
    pool = _pool(request)
    signer = get_auth(request).signer
    claims = signer.decode(body.refresh_token, REFRESH)
    user = await users.get(pool, claims.user_id)
    if user is None or user.disabled:
        raise invalid_token("account disabled or removed")
    pair, new_claims = _issue_pair(request, user, claims.family_id)
    rotation = await refresh.rotate(
        pool, old_jti=claims.jti, user_id=user.id, new_jti=new_claims.jti, new_expires_at=new_claims.expires_at
    )
    if rotation.outcome is refresh.Outcome.REUSED:
        logger.warning("refresh token reuse user_id=%s session=%s: session revoked", user.id, rotation.family_id)
        await audit.record_request(
            request, "auth.refresh_reuse", actor_id=user.id, actor_name=user.username, target=str(user.id),
            details={"session": str(rotation.family_id), "jti": str(claims.jti)},
        )
        raise invalid_token("refresh token already used: the session has been revoked, log in again")
    if rotation.outcome is not refresh.Outcome.ROTATED:
        raise invalid_token(f"refresh token {rotation.outcome.value}")
    return pair


@router.post("/api/v1/auth/logout", status_code=204, summary="End the current session")
async def logout(request: Request, principal: Principal = Depends(require_viewer)) -> Response:
    """Revokes the session's refresh tokens and, with them, its access tokens."""
    if principal.auth_method != JWT or principal.session_id is None:
        raise APIError(400, "bad_request", "logout ends a login session; revoke API keys with DELETE /api/v1/auth/keys/{id}")
    await refresh.revoke_family(_pool(request), principal.session_id, user_id=principal.user_id)
    await audit.record_request(request, "auth.logout", target=str(principal.user_id), details={"session": str(principal.session_id)})
    return Response(status_code=204)


@router.get("/api/v1/auth/me", response_model=Me, summary="Who am I")
async def me(principal: Principal = Depends(require_viewer)) -> Me:
    return Me(
        id=principal.user_id,
        username=principal.username,
        role=principal.role,
        auth_method=principal.auth_method,
        scopes=list(principal.scopes),
        key_id=principal.key_id,
    )


# -- API keys ------------------------------------------------------------------------


@router.post("/api/v1/auth/keys", response_model=CreatedKey, status_code=201, summary="Create an API key (shown once)")
async def create_key(body: CreateKeyRequest, request: Request, principal: Principal = Depends(require_viewer)) -> CreatedKey:
    if principal.auth_method != JWT:
        raise APIError(403, "forbidden", "API keys cannot create API keys; log in to create one")
    scopes = api_keys.check_scopes(principal.role, body.scopes)
    expires_at = body.expires_at
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=timezone.utc)
        if expires_at <= datetime.now(timezone.utc):
            raise APIError(422, "validation_error", "expires_at must be in the future")
    key, plaintext = await api_keys.create(
        _pool(request),
        user_id=principal.user_id,
        name=body.name,
        scopes=scopes,
        expires_at=expires_at,
        requests_per_minute=body.requests_per_minute,
        tokens_per_minute=body.tokens_per_minute,
    )
    await audit.record_request(
        request, "api_key.create", target=str(key.id),
        details={"name": key.name, "prefix": key.prefix, "scopes": list(key.scopes), "expires_at": key.expires_at},
    )
    return CreatedKey(**_key_info(key), key=plaintext)


@router.get("/api/v1/auth/keys", response_model=KeyList, summary="List your API keys")
async def list_keys(request: Request, principal: Principal = Depends(require_viewer)) -> KeyList:
    keys = await api_keys.list_for_user(_pool(request), principal.user_id)
    return KeyList(items=[KeyInfo(**_key_info(k)) for k in keys])


@router.delete("/api/v1/auth/keys/{key_id}", status_code=204, summary="Revoke an API key (effective at once)")
async def revoke_key(key_id: uuid.UUID, request: Request, principal: Principal = Depends(require_viewer)) -> Response:
    """Your own keys; an admin may revoke anyone's (e.g. a leaked key)."""
    pool = _pool(request)
    key = await api_keys.get(pool, key_id)
    if key is None or not (principal.owns(key.user_id) or principal.denial("admin") is None):
        raise not_found("API key")
    await api_keys.revoke(pool, key_id)
    await audit.record_request(request, "api_key.revoke", target=str(key_id), details={"owner": str(key.user_id), "prefix": key.prefix})
    return Response(status_code=204)


# -- users (admin) ---------------------------------------------------------------------


@router.post("/api/v1/users", response_model=UserInfo, status_code=201, tags=["admin"], summary="Create a user")
async def create_user(body: CreateUserRequest, request: Request, _: Principal = Depends(require_admin)) -> UserInfo:
    user = await users.create(_pool(request), body.username, body.password.get_secret_value(), body.role)
    await audit.record_request(request, "user.create", target=str(user.id), details={"username": user.username, "role": user.role})
    return _user_info(user)


@router.get("/api/v1/users", response_model=UserList, tags=["admin"], summary="List users")
async def list_users(
    request: Request,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    _: Principal = Depends(require_admin),
) -> UserList:
    items, total = await users.list_users(_pool(request), limit=limit, offset=offset)
    return UserList(items=[_user_info(u) for u in items], total=total, limit=limit, offset=offset)


@router.patch("/api/v1/users/{user_id}", response_model=UserInfo, tags=["admin"], summary="Change role, disable/enable, reset password")
async def update_user(user_id: uuid.UUID, body: UpdateUserRequest, request: Request, _: Principal = Depends(require_admin)) -> UserInfo:
    if body.role is None and body.disabled is None and body.password is None:
        raise APIError(422, "validation_error", "nothing to change: give role, disabled and/or password")
    password_hash = None
    if body.password is not None:
        password = body.password.get_secret_value()
        passwords.check_policy(password)
        password_hash = await passwords.hash_password_async(password)
    pool = _pool(request)
    changed = await users.update(pool, user_id, role=body.role, disabled=body.disabled, password_hash=password_hash)
    if changed is None:
        raise not_found("user")
    before, after = changed
    if after.disabled or password_hash is not None:
        await refresh.revoke_user(pool, user_id)  # end their sessions now
    target = str(user_id)
    if before.role != after.role:
        await audit.record_request(request, "user.role_change", target=target, details={"username": after.username, "from": before.role, "to": after.role})
    if before.disabled != after.disabled:
        action = "user.disable" if after.disabled else "user.enable"
        await audit.record_request(request, action, target=target, details={"username": after.username})
    if password_hash is not None:
        await audit.record_request(request, "user.password_reset", target=target, details={"username": after.username})
    return _user_info(after)


# -- audit log (admin) -------------------------------------------------------------------


@router.get("/api/v1/audit", response_model=AuditPage, tags=["admin"], summary="The audit log, newest first")
async def list_audit(
    request: Request,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    action: str | None = Query(None, max_length=100, description="only this action, e.g. auth.login_failed"),
    actor_id: uuid.UUID | None = Query(None),
    _: Principal = Depends(require_admin),
) -> AuditPage:
    items, total = await audit.list_entries(_pool(request), limit=limit, offset=offset, action=action, actor_id=actor_id)
    return AuditPage(items=[AuditEntryOut(**e.__dict__) for e in items], total=total, limit=limit, offset=offset)

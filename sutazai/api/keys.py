"""API keys: create (shown once), list, revoke (effective at once on every replica)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Response

from sutazai.api.deps import AuditDep, PageDep, ServicesDep, ViewerDep
from sutazai.auth import api_keys
from sutazai.auth.principal import JWT
from sutazai.errors import Conflict, Forbidden, InvalidInput, NotFound
from sutazai.schemas.auth import CreatedKey, CreateKeyRequest
from sutazai.schemas.common import Page
from sutazai.storage.api_keys import ApiKey

router = APIRouter(prefix="/api/v1/auth/keys", tags=["auth"])


@router.post("", response_model=CreatedKey, status_code=201, summary="Create an API key (shown once)")
async def create_key(body: CreateKeyRequest, caller: ViewerDep, services: ServicesDep, audit: AuditDep) -> CreatedKey:
    if caller.auth_method != JWT:
        raise Forbidden("API keys cannot create API keys; log in to create one")
    scopes = api_keys.check_scopes(caller.role, body.scopes)
    expires_at = body.expires_at
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= datetime.now(UTC):
            raise InvalidInput("expires_at must be in the future")
    limit = services.settings.max_api_keys_per_user
    if await services.api_keys.count_usable(caller.user_id) >= limit:
        raise Conflict(f"you have {limit} usable API keys, the most allowed: revoke one first", code="too_many_keys")
    plaintext = api_keys.generate()
    key = await services.api_keys.create(
        user_id=caller.user_id,
        name=body.name,
        prefix=api_keys.display_prefix(plaintext),
        key_hash=api_keys.hash_key(plaintext),
        scopes=scopes,
        expires_at=expires_at,
        requests_per_minute=body.requests_per_minute,
        tokens_per_minute=body.tokens_per_minute,
    )
    await audit.record(
        "api_key.create",
        target=str(key.id),
        details={"name": key.name, "prefix": key.prefix, "scopes": list(key.scopes), "expires_at": key.expires_at},
    )
    return CreatedKey(**key.model_dump(), key=plaintext)


@router.get("", response_model=Page[ApiKey], summary="List your API keys")
async def list_keys(caller: ViewerDep, services: ServicesDep, page: PageDep) -> Page[ApiKey]:
    items, total = await services.api_keys.page_for_user(caller.user_id, limit=page.limit, offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.delete("/{key_id}", status_code=204, response_class=Response, summary="Revoke an API key")
async def revoke_key(key_id: uuid.UUID, caller: ViewerDep, services: ServicesDep, audit: AuditDep) -> Response:
    """Your own keys; an admin may revoke anyone's (e.g. a leaked key)."""
    key = await services.api_keys.get(key_id)
    if key is None or not (caller.owns(key.user_id) or caller.denial("admin") is None):
        raise NotFound.of("API key")
    await services.api_keys.revoke(key_id)
    await audit.record("api_key.revoke", target=str(key_id), details={"owner": str(key.user_id), "prefix": key.prefix})
    return Response(status_code=204)

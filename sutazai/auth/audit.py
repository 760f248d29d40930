"""SQL for the `audit_log` table: who did what, from where, when.

Recorded: logins (success and failure), refresh-token reuse, logout, API keys
created or revoked, user creation, role and disabled changes, password resets,
and any admin action a route chooses to record (`record_request`).
Never stored: passwords, tokens, keys or hashes. `details` is scrubbed of any
field whose name suggests a credential, as a second line of defence.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import Request

_SENSITIVE_NAMES = {"token", "access_token", "refresh_token", "api_key", "key", "authorization", "key_hash", "hash"}
_SENSITIVE_PARTS = ("password", "secret", "credential")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor_id: uuid.UUID | None
    actor_name: str | None
    action: str
    target: str | None
    client_ip: str | None
    details: dict[str, Any]
    request_id: str | None


def scrub(value: Any) -> Any:
    """Drop credential-looking fields, recursively."""
    if isinstance(value, dict):
        return {
            k: scrub(v)
            for k, v in value.items()
            if str(k).lower() not in _SENSITIVE_NAMES and not any(p in str(k).lower() for p in _SENSITIVE_PARTS)
        }
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


async def record(
    pool: asyncpg.Pool,
    action: str,
    *,
    actor_id: uuid.UUID | None = None,
    actor_name: str | None = None,
    target: str | None = None,
    client_ip: str | None = None,
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> None:
    await pool.execute(
        """INSERT INTO audit_log (actor_id, actor_name, action, target, client_ip, details, request_id)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)""",
        actor_id,
        actor_name,
        action,
        target,
        client_ip,
        json.dumps(scrub(details or {}), default=str),
        request_id,
    )


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def record_request(
    request: Request,
    action: str,
    *,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    actor_id: uuid.UUID | None = None,
    actor_name: str | None = None,
) -> None:
    """Record an action of the request's principal (or of the given actor), with its address and request id."""
    principal = getattr(request.state, "principal", None)
    if principal is not None and actor_id is None and actor_name is None:
        actor_id, actor_name = principal.user_id, principal.username
        if principal.key_id is not None:
            details = {**(details or {}), "via_api_key": str(principal.key_id)}
    await record(
        request.app.state.services.pool,
        action,
        actor_id=actor_id,
        actor_name=actor_name,
        target=target,
        client_ip=client_ip(request),
        details=details,
        request_id=getattr(request.state, "request_id", None),
    )


def _entry(row) -> AuditEntry:
    data = dict(row)
    data["details"] = json.loads(data["details"]) if isinstance(data["details"], str) else data["details"]
    return AuditEntry(**data)


async def list_entries(
    pool: asyncpg.Pool,
    *,
    limit: int,
    offset: int,
    action: str | None = None,
    actor_id: uuid.UUID | None = None,
) -> tuple[list[AuditEntry], int]:
    """Newest first, optionally filtered by action and/or actor."""
    where = "WHERE ($1::text IS NULL OR action = $1) AND ($2::uuid IS NULL OR actor_id = $2)"
    rows = await pool.fetch(
        f"""SELECT id, at, actor_id, actor_name, action, target, client_ip, details, request_id
            FROM audit_log {where} ORDER BY id DESC LIMIT $3 OFFSET $4""",
        action,
        actor_id,
        limit,
        offset,
    )
    total = await pool.fetchval(f"SELECT count(*) FROM audit_log {where}", action, actor_id)
    return [_entry(r) for r in rows], total

"""SQL for the `audit_log` table: who did what, from where, when.

Never stored: passwords, tokens, keys or hashes. `details` is scrubbed of any
field whose name suggests a credential, as a second line of defence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import field_validator

from sutazai.storage.records import Record

_SENSITIVE_NAMES = {"token", "access_token", "refresh_token", "api_key", "key", "authorization", "key_hash", "hash"}
_SENSITIVE_PARTS = ("password", "secret", "credential")
_COLUMNS = "id, at, actor_id, actor_name, action, target, client_ip, details, request_id"
_INSERT_ONE = """WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true))
   INSERT INTO audit_log (actor_id, actor_name, action, target, client_ip, details, request_id)
   SELECT $1, $2, $3, $4, $5, $6::jsonb, $7 FROM async_commit"""
_INSERT_MANY = """WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true))
   INSERT INTO audit_log (actor_id, actor_name, action, target, client_ip, details, request_id)
   SELECT e.* FROM async_commit,
     unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[]) AS e"""

logger = logging.getLogger("sutazai.audit")

# record_soon's entries wait this long for company before their INSERT (sequential MCP calls, a
# few ms apart, then share one): the write's client-side cost is paid once per batch.
WRITE_DELAY_S = 0.05


class AuditEntry(Record):
    id: int
    at: datetime
    actor_id: uuid.UUID | None
    actor_name: str | None
    action: str
    target: str | None
    client_ip: str | None
    details: dict[str, Any]
    request_id: str | None

    @field_validator("details", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


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


def _row(
    action: str,
    actor_id: uuid.UUID | None,
    actor_name: str | None,
    target: str | None,
    client_ip: str | None,
    details: dict[str, Any] | None,
    request_id: str | None,
) -> tuple[Any, ...]:
    """An entry's values in the INSERTs' column order, its details scrubbed and as JSON."""
    details_json = json.dumps(scrub(details or {}), default=str)
    return (actor_id, actor_name, action, target, client_ip, details_json, request_id)


class AuditStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._backlog: list[tuple[Any, ...]] = []  # entries of record_soon not written yet
        self._writing: asyncio.Task[None] | None = None

    async def record(
        self,
        action: str,
        *,
        actor_id: uuid.UUID | None = None,
        actor_name: str | None = None,
        target: str | None = None,
        client_ip: str | None = None,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        """Committed without waiting for the WAL flush (`synchronous_commit` off for this one
        statement's transaction, set inside it: one round trip): the entry is visible to every
        replica at once, and a crash of the Postgres server (not of ours) can lose its last
        fraction of a second of entries, never half of one. Measured here (pgbench, one client,
        while a build ran): 3.5 ms a flushed commit, 0.12 ms not."""
        row = _row(action, actor_id, actor_name, target, client_ip, details, request_id)
        await self.pool.execute(_INSERT_ONE, *row)

    def record_soon(
        self,
        action: str,
        *,
        actor_id: uuid.UUID | None = None,
        actor_name: str | None = None,
        target: str | None = None,
        client_ip: str | None = None,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        """`record` without waiting: queued in this process and written by one task, after
        WRITE_DELAY_S, whatever queued meanwhile in one INSERT. Sequential MCP calls over HTTP,
        same app, alternating 3 runs each: p50 4.38-4.63 ms vs 4.58-5.05 written at once (a
        direct session 1.35-1.62). Visible to readers ~50 ms later; lost only if the process dies
        before the write (`drain` on shutdown); a failed write is logged."""
        self._backlog.append(_row(action, actor_id, actor_name, target, client_ip, details, request_id))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.get_running_loop().create_task(self._write_backlog())

    async def _write_backlog(self) -> None:
        await asyncio.sleep(WRITE_DELAY_S)
        while self._backlog:
            rows, self._backlog = self._backlog, []
            try:
                await self.pool.execute(_INSERT_MANY, *(list(column) for column in zip(*rows, strict=True)))
            except Exception:  # one bad entry (e.g. its actor deleted meanwhile) must not take the others
                for row in rows:
                    try:
                        await self.pool.execute(_INSERT_ONE, *row)
                    except Exception as exc:
                        logger.error("audit entry %s %s not written: %s: %s", row[2], row[3], type(exc).__name__, exc)

    async def drain(self) -> None:
        """Waits until every entry of record_soon is written (or logged as not)."""
        while self._writing is not None and not self._writing.done():
            await self._writing

    async def page(
        self, *, limit: int, offset: int, action: str | None = None, actor_id: uuid.UUID | None = None
    ) -> tuple[list[AuditEntry], int]:
        """Newest first, optionally filtered by action and/or actor."""
        where = "WHERE ($1::text IS NULL OR action = $1) AND ($2::uuid IS NULL OR actor_id = $2)"
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM audit_log {where} ORDER BY id DESC LIMIT $3 OFFSET $4",
            action,
            actor_id,
            limit,
            offset,
        )
        total = await self.pool.fetchval(f"SELECT count(*) FROM audit_log {where}", action, actor_id)
        return [AuditEntry.from_row(r) for r in rows], total

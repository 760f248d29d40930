"""SQL for the `agents` table.

An agent comes from a Markdown file (source 'file': written only by `sync_files` at start,
read-only through the API) or from the admin API (source 'api'). A file never overwrites
an API agent of the same name: the sync reports it as a conflict instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import asyncpg
from pydantic import field_validator

from sutazai.agents.definitions import LoadedAgent
from sutazai.errors import Conflict, NotFound
from sutazai.schemas.agents import AgentDefinition, AgentSampling
from sutazai.storage.records import Record

Source = Literal["file", "api"]

_DEFINITION_COLUMNS = "name, description, system_prompt, model, tools, max_steps, timeout_s, sampling"
_COLUMNS = f"{_DEFINITION_COLUMNS}, source, path, created_at, updated_at"
_SYNC_LOCK_ID = 0x5A7A2  # one file sync at a time over every replica (0x5A7A1 is the migrations')


class StoredAgent(Record):
    name: str
    description: str
    system_prompt: str
    model: str | None
    tools: list[str]
    max_steps: int
    timeout_s: float
    sampling: AgentSampling
    source: Source
    path: str | None
    created_at: datetime
    updated_at: datetime

    @field_validator("sampling", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def definition(self) -> AgentDefinition:
        return AgentDefinition.model_validate(self.model_dump(include=set(AgentDefinition.model_fields)))


@dataclass
class SyncReport:
    """What `sync_files` did, by agent name; `conflicts` are files shadowed by an API agent."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def _values(definition: AgentDefinition) -> tuple[Any, ...]:
    """The definition as the parameters $1..$8 of `_DEFINITION_COLUMNS`."""
    return (
        definition.name,
        definition.description,
        definition.system_prompt,
        definition.model,
        definition.tools,
        definition.max_steps,
        definition.timeout_s,
        json.dumps(definition.sampling.model_dump(exclude_none=True)),
    )


_INSERT = f"""INSERT INTO agents ({_DEFINITION_COLUMNS}, source, path)
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10) RETURNING {_COLUMNS}"""
_UPDATE = f"""UPDATE agents SET description = $2, system_prompt = $3, model = $4, tools = $5, max_steps = $6,
                  timeout_s = $7, sampling = $8::jsonb, path = $9, updated_at = now()
              WHERE name = $1 RETURNING {_COLUMNS}"""


def _read_only(agent: StoredAgent) -> Conflict:
    return Conflict(f"agent {agent.name!r} is defined in {agent.path}; edit the file", code="agent_defined_in_file")


def _not_found(name: str) -> NotFound:
    return NotFound(f"agent {name!r} not found")


class AgentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def sync_files(self, loaded: list[LoadedAgent]) -> SyncReport:
        """Make the 'file' agents those of `loaded`, in one transaction: insert new ones, update
        changed ones, delete those whose file is gone (one that failed to load keeps its last good
        version). An 'api' agent of a file's name stays."""
        report = SyncReport()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SYNC_LOCK_ID)
            existing = {
                r["name"]: StoredAgent.from_row(r)
                for r in await conn.fetch(f"SELECT {_COLUMNS} FROM agents FOR UPDATE")
            }
            names = {agent.definition.name for agent in loaded}
            for agent in loaded:
                definition, path = agent.definition, str(agent.path)
                stored = existing.get(definition.name)
                if stored is None:
                    await conn.execute(_INSERT, *_values(definition), "file", path)
                    report.created.append(definition.name)
                elif stored.source == "api":
                    report.conflicts.append(definition.name)
                elif stored.definition() == definition and stored.path == path:
                    report.unchanged.append(definition.name)
                else:
                    await conn.execute(_UPDATE, *_values(definition), path)
                    report.updated.append(definition.name)
            # A file that is still there but did not load this time (a typo, MCP down at start) keeps
            # its last good definition: only agents whose file is gone are deleted.
            gone = [
                name
                for name, stored in existing.items()
                if stored.source == "file" and name not in names and not (stored.path and Path(stored.path).exists())
            ]
            if gone:
                await conn.execute("DELETE FROM agents WHERE name = ANY($1::text[]) AND source = 'file'", gone)
                report.deleted.extend(sorted(gone))
        return report

    async def get(self, name: str) -> StoredAgent | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM agents WHERE name = $1", name)
        return StoredAgent.from_row(row) if row else None

    async def page(
        self, *, limit: int, offset: int, q: str | None = None, source: str | None = None
    ) -> tuple[list[StoredAgent], int]:
        """Agents by name; `q` matches a part of the name or description (any case), `source` the origin."""
        where = """($1::text IS NULL OR strpos(lower(name), lower($1)) > 0 OR strpos(lower(description), lower($1)) > 0)
                   AND ($2::text IS NULL OR source = $2)"""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM agents WHERE {where} ORDER BY name LIMIT $3 OFFSET $4", q, source, limit, offset
        )
        total = await self.pool.fetchval(f"SELECT count(*) FROM agents WHERE {where}", q, source)
        return [StoredAgent.from_row(r) for r in rows], total

    async def create(self, definition: AgentDefinition) -> StoredAgent:
        """A new 'api' agent; `Conflict` when the name is taken (by a file or the API)."""
        try:
            row = await self.pool.fetchrow(_INSERT, *_values(definition), "api", None)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"agent {definition.name!r} exists", code="agent_exists") from None
        return StoredAgent.from_row(row)

    async def replace(self, name: str, definition: AgentDefinition) -> StoredAgent:
        """An 'api' agent with its new definition; `NotFound`, or `Conflict` for a file's agent."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM agents WHERE name = $1 FOR UPDATE", name)
            if row is None:
                raise _not_found(name)
            stored = StoredAgent.from_row(row)
            if stored.source == "file":
                raise _read_only(stored)
            row = await conn.fetchrow(_UPDATE, name, *_values(definition)[1:], None)
            return StoredAgent.from_row(row)

    async def delete(self, name: str) -> None:
        """Delete an 'api' agent; `NotFound`, or `Conflict` for a file's agent."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM agents WHERE name = $1 FOR UPDATE", name)
            if row is None:
                raise _not_found(name)
            agent = StoredAgent.from_row(row)
            if agent.source == "file":
                raise _read_only(agent)
            await conn.execute("DELETE FROM agents WHERE name = $1", name)

"""SQL for the `batch_jobs` table: who submitted a Ray batch job, and where its files are.
Queries a route makes take the caller's user id (None for an admin), so one user never
reads another's jobs."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from sutazai.storage.records import Record


class BatchJob(Record):
    id: str
    owner_id: uuid.UUID
    model: str
    input_path: str
    output_path: str
    lines: int
    max_tokens: int | None
    created_at: datetime


class BatchJobStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self,
        job_id: str,
        owner_id: uuid.UUID,
        *,
        model: str,
        input_path: str,
        output_path: str,
        lines: int,
        max_tokens: int | None,
    ) -> BatchJob:
        row = await self.pool.fetchrow(
            """INSERT INTO batch_jobs (id, owner_id, model, input_path, output_path, lines, max_tokens)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *""",
            job_id,
            owner_id,
            model,
            input_path,
            output_path,
            lines,
            max_tokens,
        )
        return BatchJob.from_row(row)

    async def get(self, job_id: str, owner_id: uuid.UUID | None = None) -> BatchJob | None:
        """The job, if it exists and (unless `owner_id` is None) belongs to `owner_id`."""
        row = await self.pool.fetchrow(
            "SELECT * FROM batch_jobs WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2)", job_id, owner_id
        )
        return BatchJob.from_row(row) if row else None

    async def list(self, owner_id: uuid.UUID | None, limit: int, offset: int) -> tuple[list[BatchJob], int]:
        """Newest first; every owner's when `owner_id` is None."""
        rows = await self.pool.fetch(
            """SELECT *, count(*) OVER () AS total FROM batch_jobs
               WHERE $1::uuid IS NULL OR owner_id = $1
               ORDER BY created_at DESC, id LIMIT $2 OFFSET $3""",
            owner_id,
            limit,
            offset,
        )
        if rows:
            return [BatchJob.from_row(r) for r in rows], rows[0]["total"]
        total = await self.pool.fetchval(
            "SELECT count(*) FROM batch_jobs WHERE $1::uuid IS NULL OR owner_id = $1", owner_id
        )
        return [], total

    async def delete(self, job_id: str) -> None:
        await self.pool.execute("DELETE FROM batch_jobs WHERE id = $1", job_id)

"""SQL for the `tasks` and `task_events` tables: the durable task queue.

The table is the queue. A dispatcher leases queued rows (`FOR UPDATE SKIP LOCKED`,
so any number of dispatchers share it) and a runner keeps its lease by heartbeats.
Every write a runner makes is fenced by the attempt it was given: once a lease is
lost (expired, retried, cancelled) the old attempt can neither record an event nor
store a result, so a task has exactly one result however often it is retried.

Events are numbered per task (`seq`, the SSE event id) by bumping `tasks.event_seq`
in the same statement, and each insert notifies `EVENTS_CHANNEL` on commit, so a
listener never sees a notification for a row it cannot read yet.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import Field, field_validator

from sutazai.errors import Conflict, NotFound
from sutazai.storage.records import Record

TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TaskKind = Literal["agent", "orchestrate", "index"]
TERMINAL: tuple[TaskStatus, ...] = ("succeeded", "failed", "cancelled")

QUEUE_CHANNEL = "sutazai_task_queue"  # payload "queued:<kind>", or "cancel:<task id>"
EVENTS_CHANNEL = "sutazai_task_events"  # payload "<task id>"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class Task(Record):
    id: uuid.UUID
    owner_id: uuid.UUID
    kind: TaskKind
    agent: str | None
    definition: dict[str, Any] | None
    input: str
    params: dict[str, Any]
    idempotency_key: str | None
    priority: int
    status: TaskStatus
    attempts: int
    max_attempts: int
    run_after: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    parent_id: uuid.UUID | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    usage: dict[str, Any]
    event_seq: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    _decode = field_validator("definition", "params", "result", "error", "usage", mode="before")(_json)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class TaskEvent(Record):
    task_id: uuid.UUID
    seq: int
    attempt: int
    type: str
    data: dict[str, Any]
    created_at: datetime

    _decode = field_validator("data", mode="before")(_json)


class NewTask(Record):
    """What a submission stores (a task of `kind` for `owner_id`)."""

    owner_id: uuid.UUID
    kind: TaskKind
    agent: str | None
    definition: dict[str, Any] | None
    input: str
    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    priority: int = 0
    max_attempts: int = 3


class LeaseLost(Exception):
    """The attempt no longer holds its task (expired, retried or ended): stop without writing."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# Appends one event to each task the CTE `t` (id, event_seq, attempt) returns, notifying listeners.
_APPEND = f"""INSERT INTO task_events (task_id, seq, attempt, type, data)
    SELECT t.id, t.event_seq, t.attempt, {{type}}, {{data}} FROM t
    RETURNING task_id, seq, pg_notify('{EVENTS_CHANNEL}', task_id::text)"""

_FINAL_DATA = "jsonb_build_object('result', $4::jsonb, 'error', $5::jsonb, 'usage', t.usage)"
_CANCELLED_DATA = "jsonb_build_object('reason', 'cancelled by request')"

# What ends an attempt that failed (runner died, lease expired, retryable error): queued again
# after a backoff doubling per attempt while attempts remain, else failed (or cancelled when asked).
_END_ATTEMPT = """UPDATE tasks SET
        status = CASE WHEN cancel_requested THEN 'cancelled'
                      WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
        run_after = now() + make_interval(secs => $1 * power(2, greatest(attempts - 1, 0))),
        error = $2::jsonb,
        lease_owner = NULL, lease_expires_at = NULL,
        finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN now() END,
        event_seq = event_seq + 1, updated_at = now()
    WHERE {where}
    RETURNING id, event_seq, attempts AS attempt, status, run_after"""


class TaskStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ---- submitting ------------------------------------------------------

    async def submit(self, new: NewTask, *, parent_id: uuid.UUID | None = None) -> tuple[Task, bool]:
        """Stores a queued task (and its `queued` event); with an idempotency key already used by
        this owner, returns that task instead. Returns (task, created)."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await self._submit(conn, new, parent_id)

    async def submit_family(self, parent: NewTask, children: list[NewTask]) -> tuple[Task, list[Task], bool]:
        """A parent task and its children in one transaction (an orchestration known up front)."""
        async with self.pool.acquire() as conn, conn.transaction():
            task, created = await self._submit(conn, parent, None)
            if not created:
                return task, await self.children(task.id, conn=conn), False
            kids = [(await self._submit(conn, child, task.id))[0] for child in children]
            return task, kids, True

    async def add_child(self, parent_id: uuid.UUID, child: NewTask) -> Task:
        """A child of a running parent (planned by a coordinator); idempotent by the child's key."""
        async with self.pool.acquire() as conn, conn.transaction():
            return (await self._submit(conn, child, parent_id))[0]

    async def _submit(self, conn: asyncpg.Connection, new: NewTask, parent_id: uuid.UUID | None) -> tuple[Task, bool]:
        """One statement: the row, its `queued` event, and the notifications (sent on commit)."""
        row = await conn.fetchrow(
            f"""WITH t AS (
                    INSERT INTO tasks (id, owner_id, kind, agent, definition, input, params, idempotency_key,
                                       priority, max_attempts, parent_id, status, event_seq)
                    VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb, $8, $9, $10, $11, 'queued', 1)
                    ON CONFLICT (owner_id, idempotency_key) DO NOTHING
                    RETURNING *),
                e AS (
                    INSERT INTO task_events (task_id, seq, attempt, type, data)
                    SELECT id, 1, 0, 'queued', jsonb_build_object('agent', agent, 'kind', kind, 'priority', priority)
                    FROM t)
                SELECT t.*, pg_notify('{QUEUE_CHANNEL}', 'queued:' || t.kind),
                       pg_notify('{EVENTS_CHANNEL}', t.id::text)
                FROM t""",
            uuid.uuid4(),
            new.owner_id,
            new.kind,
            new.agent,
            _dumps(new.definition) if new.definition is not None else None,
            new.input,
            _dumps(new.params),
            new.idempotency_key,
            new.priority,
            new.max_attempts,
            parent_id,
        )
        if row is not None:
            return Task.from_row(row), True
        existing = await conn.fetchrow(
            "SELECT * FROM tasks WHERE owner_id = $1 AND idempotency_key = $2", new.owner_id, new.idempotency_key
        )
        assert existing is not None  # the conflict was on this very key
        return Task.from_row(existing), False

    # ---- reading ---------------------------------------------------------

    async def get(self, task_id: uuid.UUID, owner_id: uuid.UUID | None = None) -> Task | None:
        """The task; with `owner_id`, only if it is theirs (someone else's is as good as missing)."""
        row = await self.pool.fetchrow(
            "SELECT * FROM tasks WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2)", task_id, owner_id
        )
        return Task.from_row(row) if row else None

    async def page(
        self, owner_id: uuid.UUID | None, *, status: str | None, limit: int, offset: int
    ) -> tuple[list[Task], int]:
        """Newest first; `owner_id` None is every owner's (admins)."""
        where = "($1::uuid IS NULL OR owner_id = $1) AND ($2::text IS NULL OR status = $2)"
        rows = await self.pool.fetch(
            f"SELECT * FROM tasks WHERE {where} ORDER BY created_at DESC, id LIMIT $3 OFFSET $4",
            owner_id,
            status,
            limit,
            offset,
        )
        total = await self.pool.fetchval(f"SELECT count(*) FROM tasks WHERE {where}", owner_id, status)
        return [Task.from_row(r) for r in rows], total

    async def children(self, parent_id: uuid.UUID, *, conn: asyncpg.Connection | None = None) -> list[Task]:
        rows = await (conn or self.pool).fetch(
            "SELECT * FROM tasks WHERE parent_id = $1 ORDER BY created_at, id", parent_id
        )
        return [Task.from_row(r) for r in rows]

    async def events(self, task_id: uuid.UUID, *, after: int = 0, limit: int = 1000) -> list[TaskEvent]:
        rows = await self.pool.fetch(
            "SELECT * FROM task_events WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3", task_id, after, limit
        )
        return [TaskEvent.from_row(r) for r in rows]

    async def events_of(self, task_ids: list[uuid.UUID], after: dict[uuid.UUID, int]) -> list[TaskEvent]:
        """New events of several tasks (an orchestration's children), each after its own seq."""
        rows = await self.pool.fetch(
            """SELECT e.* FROM task_events e JOIN unnest($1::uuid[], $2::bigint[]) AS a(id, seq)
               ON e.task_id = a.id AND e.seq > a.seq ORDER BY e.created_at, e.seq""",
            task_ids,
            [after.get(i, 0) for i in task_ids],
        )
        return [TaskEvent.from_row(r) for r in rows]

    async def backlog(self) -> dict[str, int]:
        """Queued (due or backing off) and running tasks, over every owner."""
        rows = await self.pool.fetch(
            "SELECT status, count(*) AS n FROM tasks WHERE status IN ('queued', 'running') GROUP BY status"
        )
        return {"queued": 0, "running": 0} | {r["status"]: r["n"] for r in rows}

    async def owner_role(self, task: Task) -> str | None:
        """The role the task runs with: its owner's role now (a demoted owner's tasks lose rights too)."""
        return await self.pool.fetchval("SELECT role FROM users WHERE id = $1 AND NOT disabled", task.owner_id)

    # ---- dispatching -----------------------------------------------------

    async def claim(self, worker: str, *, limit: int, kinds: list[str], lease_s: float, per_agent: int) -> list[Task]:
        """Leases up to `limit` queued tasks that are due, highest priority first, keeping each
        agent under `per_agent` running tasks; each gets a `started` event."""
        rows = await self.pool.fetch(
            f"""WITH candidates AS (
                    SELECT id, agent, priority, created_at FROM tasks
                    WHERE status = 'queued' AND run_after <= now() AND kind = ANY($2::text[])
                    ORDER BY priority DESC, created_at LIMIT $1 * 4),
                running AS (
                    SELECT agent, count(*) AS n FROM tasks WHERE status = 'running' GROUP BY agent),
                ranked AS (
                    SELECT c.id, c.priority, c.created_at,
                           row_number() OVER (PARTITION BY c.agent ORDER BY c.priority DESC, c.created_at)
                             + coalesce(r.n, 0) AS slot
                    FROM candidates c LEFT JOIN running r ON r.agent IS NOT DISTINCT FROM c.agent),
                chosen AS (
                    SELECT id FROM ranked WHERE slot <= $5 ORDER BY priority DESC, created_at LIMIT $1),
                picked AS (  -- locked only now: another claim holding one of them just means fewer here
                    SELECT id FROM tasks WHERE id IN (SELECT id FROM chosen) AND status = 'queued'
                    FOR UPDATE SKIP LOCKED),
                t AS (
                    UPDATE tasks SET status = 'running', attempts = attempts + 1, lease_owner = $3,
                        lease_expires_at = now() + make_interval(secs => $4), started_at = coalesce(started_at, now()),
                        event_seq = event_seq + 1, updated_at = now()
                    FROM picked WHERE tasks.id = picked.id
                    RETURNING tasks.*, tasks.attempts AS attempt),
                e AS ({_APPEND.format(type="'started'", data="jsonb_build_object('worker', $3::text)")})
                SELECT * FROM t ORDER BY priority DESC, created_at""",
            limit,
            kinds,
            worker,
            lease_s,
            per_agent,
        )
        return [Task.from_row(r) for r in rows]

    async def heartbeat(self, task_id: uuid.UUID, attempt: int, lease_s: float) -> bool:
        """Extends the lease; returns whether cancellation was asked. Raises LeaseLost."""
        cancel = await self.pool.fetchval(
            """UPDATE tasks SET lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
               WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING cancel_requested""",
            task_id,
            attempt,
            lease_s,
        )
        if cancel is None:
            raise LeaseLost(str(task_id))
        return bool(cancel)

    async def record(self, task_id: uuid.UUID, attempt: int, type: str, data: dict[str, Any]) -> int:
        """Appends an event of the running attempt; returns its seq. Raises LeaseLost."""
        seq = await self.pool.fetchval(
            f"""WITH t AS (UPDATE tasks SET event_seq = event_seq + 1, updated_at = now()
                           WHERE id = $1 AND attempts = $2 AND status = 'running'
                           RETURNING id, event_seq, attempts AS attempt)
                {_APPEND.format(type="$3", data="$4::jsonb")}""",
            task_id,
            attempt,
            type,
            _dumps(data),
        )
        if seq is None:
            raise LeaseLost(str(task_id))
        return int(seq)

    async def finish(
        self,
        task_id: uuid.UUID,
        attempt: int,
        status: TaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> bool:
        """Ends the running attempt with its outcome and a final event named after the status.
        False when the attempt no longer holds the task (nothing is written)."""
        assert status in TERMINAL
        seq = await self.pool.fetchval(
            f"""WITH t AS (UPDATE tasks SET status = $3, result = $4::jsonb, error = $5::jsonb,
                               usage = coalesce($6::jsonb, usage), finished_at = now(),
                               lease_owner = NULL, lease_expires_at = NULL,
                               event_seq = event_seq + 1, updated_at = now()
                           WHERE id = $1 AND attempts = $2 AND status = 'running'
                           RETURNING id, event_seq, attempts AS attempt, usage)
                {_APPEND.format(type="$3", data=_FINAL_DATA)}""",
            task_id,
            attempt,
            status,
            _dumps(result) if result is not None else None,
            _dumps(error) if error is not None else None,
            _dumps(usage) if usage is not None else None,
        )
        return seq is not None

    async def end_attempt(
        self, task_id: uuid.UUID, attempt: int, error: dict[str, Any], *, backoff_s: float
    ) -> Task | None:
        """A failed attempt: queued again after a backoff while attempts remain, else failed.
        None when the attempt had already ended (its runner finished or another path ended it)."""
        rows = await self._end_attempts(
            "id = $3 AND attempts = $4 AND status = 'running'", backoff_s, error, task_id, attempt
        )
        return rows[0] if rows else None

    async def requeue_expired(self, *, backoff_s: float) -> list[Task]:
        """Ends every attempt whose lease expired (its runner or node died, or hung)."""
        return await self._end_attempts(
            "status = 'running' AND lease_expires_at < now()",
            backoff_s,
            {"code": "lease_expired", "message": "the runner stopped renewing its lease (it died or hung)"},
        )

    async def _end_attempts(self, where: str, backoff_s: float, error: dict[str, Any], *args: Any) -> list[Task]:
        async with self.pool.acquire() as conn, conn.transaction():
            ended = await conn.fetch(
                f"""WITH t AS ({_END_ATTEMPT.format(where=where)}),
                    e AS ({
                    _APPEND.format(
                        type="CASE WHEN t.status = 'queued' THEN 'retry' ELSE t.status END",
                        data="jsonb_build_object('error', $2::jsonb, 'attempt', t.attempt, "
                        "'retry_at', CASE WHEN t.status = 'queued' THEN t.run_after END)",
                    )
                })
                    SELECT id FROM t""",
                backoff_s,
                _dumps(error),
                *args,
            )
            if not ended:
                return []
            rows = await conn.fetch("SELECT * FROM tasks WHERE id = ANY($1::uuid[])", [r["id"] for r in ended])
            for kind in {r["kind"] for r in rows}:
                await conn.execute(f"SELECT pg_notify('{QUEUE_CHANNEL}', 'queued:' || $1::text)", kind)
        return [Task.from_row(r) for r in rows]

    async def cancel(self, task_id: uuid.UUID, owner_id: uuid.UUID | None) -> Task:
        """Cancels the task and its unfinished children: queued ones at once, running ones by
        asking their runners (through `QUEUE_CHANNEL`). Raises NotFound, or Conflict when it already ended."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM tasks WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2) FOR UPDATE",
                task_id,
                owner_id,
            )
            if row is None:
                raise NotFound.of("task")
            task = Task.from_row(row)
            if task.terminal:
                raise Conflict(f"task already {task.status}", code="task_ended")
            await conn.fetch(
                f"""WITH t AS (UPDATE tasks SET status = 'cancelled', cancel_requested = true, finished_at = now(),
                                   event_seq = event_seq + 1, updated_at = now()
                               WHERE (id = $1 OR parent_id = $1) AND status = 'queued'
                               RETURNING id, event_seq, attempts AS attempt)
                    {_APPEND.format(type="'cancelled'", data=_CANCELLED_DATA)}""",
                task_id,
            )
            running = await conn.fetch(
                """UPDATE tasks SET cancel_requested = true, updated_at = now()
                   WHERE (id = $1 OR parent_id = $1) AND status = 'running' RETURNING id""",
                task_id,
            )
            for r in running:
                await conn.execute(f"SELECT pg_notify('{QUEUE_CHANNEL}', 'cancel:' || $1::uuid::text)", r["id"])
            row = await conn.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
        return Task.from_row(row)

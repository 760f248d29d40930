"""The task dispatcher: leases due tasks from Postgres and hands them to runners.

It is woken by `NOTIFY` when a task is queued (and polls besides, for retries whose
backoff ends and for a lost notification), ends the attempts whose leases expired,
and watches every attempt it started: when a runner dies mid-task the attempt ends
at once (queued again with backoff, or failed after the last attempt) instead of
waiting for the lease. A request to cancel a running task reaches its runner
through the same channel. Runners write their own events and results; the
dispatcher only writes when an attempt ends without its runner.

Any number of dispatchers can share the queue (`SKIP LOCKED`); each keeps its own
limits, so the overall limits are per dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import asyncpg

from sutazai import metrics
from sutazai.storage.tasks import QUEUE_CHANNEL, Task, TaskStore

logger = logging.getLogger("sutazai.dispatch")

KINDS = ("agent", "orchestrate", "index")  # each has its own pool of slots


class RunnerDied(Exception):
    """The runner of an attempt died (its actor or node is gone)."""


class Runners(Protocol):
    """Where attempts run (Ray actors in production)."""

    def start(self, task: Task) -> Awaitable[Any]:
        """Runs the attempt; resolves when the runner is done with it (it wrote the outcome),
        raises RunnerDied when the runner died, any other exception when the attempt crashed."""
        ...

    async def cancel(self, task: Task) -> None:
        """Asks the runner of a running attempt to stop it (it records the cancellation)."""
        ...

    async def ready(self) -> None:
        """Returns when the runners that are starting (new, or replacing dead ones) can take an
        attempt at once, or have had long enough: a claimed task's lease must not run out while
        a runner's process starts and connects."""
        ...


@dataclass(frozen=True)
class DispatchLimits:
    max_running: int = 16  # agent tasks
    per_agent: int = 8
    orchestrations: int = 16  # parent tasks, a pool of their own: they wait on their children
    indexing: int = 2  # documents being indexed (parse, embed, upsert)
    lease_s: float = 30.0
    backoff_s: float = 1.0
    poll_s: float = 0.5  # without a notification, look again this often
    claim_batch: int = 64


@dataclass
class _Attempt:
    task: Task
    job: asyncio.Task[None]
    claimed_at: float


class Dispatcher:
    def __init__(
        self,
        store: TaskStore,
        runners: Runners,
        limits: DispatchLimits,
        *,
        dsn: str,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.runners = runners
        self.limits = limits
        self.dsn = dsn
        self.worker_id = worker_id or f"dispatcher-{uuid.uuid4().hex[:8]}"
        self._running: dict[uuid.UUID, _Attempt] = {}
        self._wake = asyncio.Event()
        self._queued: set[str] = set(KINDS)  # kinds that may have due tasks: look at these
        self._heard = 0  # notifications of queued tasks so far
        self._stopping = False
        self.started = 0
        self.ended_without_runner = 0
        self.requeued_expired = 0

    # ---- the loop --------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled. Attempts still running when it stops keep their leases: if their
        runners die with this process, the leases expire and another dispatcher retries them."""
        listener = await self._listen()
        next_sweep = 0.0
        try:
            while True:
                if time.monotonic() >= next_sweep:
                    await self._sweep_expired()
                    next_sweep = time.monotonic() + self.limits.lease_s / 3
                try:
                    await self._fill()
                except (asyncpg.PostgresError, OSError) as exc:
                    logger.warning("claiming tasks failed: %s", exc)
                if listener is None or listener.is_closed():
                    listener = await self._listen()
                try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that
                    # lands as the wait ends, and this loop then never stops (a test hung on it)
                    async with asyncio.timeout(self.limits.poll_s):
                        await self._wake.wait()
                except TimeoutError:  # retries whose backoff ended, a lost notification: look at every kind
                    self._queued.update(KINDS)
                self._wake.clear()
        finally:
            self._stopping = True
            if listener is not None and not listener.is_closed():
                await listener.close()

    async def _listen(self) -> asyncpg.Connection | None:
        try:
            conn = await asyncpg.connect(self.dsn)
            await conn.add_listener(QUEUE_CHANNEL, self._notified)
            return conn
        except (asyncpg.PostgresError, OSError) as exc:
            logger.warning("cannot listen for queued tasks (polling only): %s", exc)
            return None

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload.startswith("cancel:"):
            attempt = self._running.get(uuid.UUID(payload.removeprefix("cancel:")))
            if attempt is not None:
                asyncio.get_running_loop().create_task(self._cancel(attempt.task))
        else:
            self._queued.add(payload.removeprefix("queued:"))
            self._heard += 1
            self._wake.set()

    async def _cancel(self, task: Task) -> None:
        try:
            await self.runners.cancel(task)
        except Exception as exc:  # the runner is gone: its lease expires and the sweep cancels the task
            logger.warning("could not reach the runner of task %s to cancel it: %s", task.id, exc)

    async def _sweep_expired(self) -> None:
        try:
            ended = await self.store.requeue_expired(backoff_s=self.limits.backoff_s)
        except (asyncpg.PostgresError, OSError) as exc:
            logger.warning("requeueing expired leases failed: %s", exc)
            return
        for task in ended:
            logger.warning("task %s lost its lease (attempt %d): now %s", task.id, task.attempts, task.status)
        self.requeued_expired += len(ended)

    async def _fill(self) -> None:
        """Claims while there are free slots and due tasks; a kind found empty is not looked at
        again until a notification (or the poll) says it may have some."""
        pools = {
            "agent": self.limits.max_running,
            "orchestrate": self.limits.orchestrations,
            "index": self.limits.indexing,
        }
        if self._queued:
            await self.runners.ready()
        for kind, limit in pools.items():
            while kind in self._queued:
                free = limit - sum(1 for a in self._running.values() if a.task.kind == kind)
                if free <= 0:
                    break
                want = min(free, self.limits.claim_batch)
                heard = self._heard
                claimed = await self.store.claim(
                    self.worker_id,
                    limit=want,
                    kinds=[kind],
                    lease_s=self.limits.lease_s,
                    per_agent=self.limits.per_agent,
                )
                for task in claimed:
                    self._start(task)
                if len(claimed) < want and self._heard == heard:  # nothing new arrived meanwhile
                    self._queued.discard(kind)

    def _start(self, task: Task) -> None:
        self.started += 1
        metrics.TASKS_STARTED.record(1, kind=task.kind)
        if task.lease_expires_at is not None:  # claimed at lease_expires_at - lease_s, by Postgres's clock
            claimed_at = task.lease_expires_at - timedelta(seconds=self.limits.lease_s)
            metrics.TASK_QUEUE_WAIT.record(max((claimed_at - task.run_after).total_seconds(), 0.0), kind=task.kind)
        job = asyncio.get_running_loop().create_task(self._watch(task))
        self._running[task.id] = _Attempt(task, job, time.monotonic())

    async def _watch(self, task: Task) -> None:
        outcome = "lease_lost"
        try:
            outcome = await self.runners.start(task) or outcome
        except asyncio.CancelledError:
            raise
        except RunnerDied as exc:
            outcome = "runner_died"
            await self._end_attempt(task, outcome, str(exc))
        except Exception as exc:
            outcome = "runner_error"
            await self._end_attempt(task, outcome, f"{type(exc).__name__}: {exc}")
        finally:
            attempt = self._running.pop(task.id, None)
            metrics.TASKS_FINISHED.record(1, kind=task.kind, status=str(outcome))
            if attempt is not None:
                metrics.TASK_RUN_DURATION.record(time.monotonic() - attempt.claimed_at, kind=task.kind)
            self._queued.add(task.kind)  # a slot (and maybe an agent's limit) freed up
            self._wake.set()

    async def _end_attempt(self, task: Task, code: str, message: str) -> None:
        try:
            ended = await self.store.end_attempt(
                task.id, task.attempts, {"code": code, "message": message[:2000]}, backoff_s=self.limits.backoff_s
            )
        except (asyncpg.PostgresError, OSError) as exc:
            logger.warning(
                "could not end attempt %d of task %s (its lease will expire): %s", task.attempts, task.id, exc
            )
            return
        if ended is not None:
            self.ended_without_runner += 1
            logger.warning(
                "task %s attempt %d ended without its runner (%s): now %s", task.id, task.attempts, code, ended.status
            )

    # ---- reporting -------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """This dispatcher's attempts and counters, and the queue as Postgres has it."""
        by_kind: dict[str, int] = {}
        for attempt in self._running.values():
            by_kind[attempt.task.kind] = by_kind.get(attempt.task.kind, 0) + 1
        return {
            "worker_id": self.worker_id,
            "running": by_kind,
            "started": self.started,
            "ended_without_runner": self.ended_without_runner,
            "requeued_expired": self.requeued_expired,
            "queue": await self.store.backlog(),
            "limits": {
                "max_running": self.limits.max_running,
                "per_agent": self.limits.per_agent,
                "orchestrations": self.limits.orchestrations,
                "indexing": self.limits.indexing,
                "lease_s": self.limits.lease_s,
            },
        }

"""Wakes whoever waits on a task (an SSE stream, a `wait: true` request) when it has new events.

One `LISTEN` connection per ingress replica fans Postgres notifications out to local
waiters. Notifications only wake; the rows are the truth: a waiter always re-reads
events after the last seq it sent, and also wakes on a timeout, so a notification lost
to a dropped connection costs latency, never an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import asyncpg

from sutazai.storage.tasks import EVENTS_CHANNEL

logger = logging.getLogger("sutazai.task_events")

RECONNECT_S = 2.0


class TaskEventHub:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._conn: asyncpg.Connection | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._connect()
        self._keeper = asyncio.create_task(self._keep_connected())

    async def _connect(self) -> None:
        try:
            conn = await asyncpg.connect(self.dsn)
            await conn.add_listener(EVENTS_CHANNEL, self._notified)
            self._conn = conn
        except (asyncpg.PostgresError, OSError) as exc:
            logger.warning("cannot listen for task events (waiters poll): %s", exc)
            self._conn = None

    async def _keep_connected(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_S)
            if self._conn is None or self._conn.is_closed():
                await self._connect()
                self._wake_all()  # whatever happened while deaf: look again

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        for event in self._waiters.get(payload, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    @contextlib.contextmanager
    def watch(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `task_id` has something new (clear it before re-reading)."""
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]

    @staticmethod
    async def wait(event: asyncio.Event, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for can swallow a cancel
            async with asyncio.timeout(timeout_s):
                await event.wait()
        event.clear()

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

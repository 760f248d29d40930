"""The dispatcher's queue logic on the real Postgres, with runners in this process
(the Ray runner actors are covered in tests/agents/test_tasks_live.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from sutazai.dispatch import Dispatcher, DispatchLimits, RunnerDied
from sutazai.storage.db import create_pool
from sutazai.storage.tasks import NewTask, Task, TaskStore
from tests.helpers import fresh_database


class LocalRunners:
    """Runs each attempt by a script: `behaviour(task)` is awaited; it may raise."""

    def __init__(self, store: TaskStore, behaviour) -> None:
        self.store = store
        self.behaviour = behaviour
        self.running = 0
        self.most = 0
        self.cancelled: list[uuid.UUID] = []
        self.jobs: dict[uuid.UUID, asyncio.Event] = {}

    async def start(self, task: Task) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.behaviour(self, task)
        finally:
            self.running -= 1

    async def cancel(self, task: Task) -> None:
        self.cancelled.append(task.id)
        if task.id in self.jobs:
            self.jobs[task.id].set()

    async def ready(self) -> None:
        return None


async def succeed(runners: LocalRunners, task: Task) -> None:
    await runners.store.finish(task.id, task.attempts, "succeeded", result={"answer": "ok"})


@pytest.fixture
async def db():
    async with fresh_database("sutazai_dispatch_test") as url:
        pool = await create_pool(url, min_size=1, max_size=8)
        try:
            yield url, TaskStore(pool)
        finally:
            await pool.close()


@contextlib.asynccontextmanager
async def dispatching(db, behaviour, **limits):
    url, store = db
    runners = LocalRunners(store, behaviour)
    dispatcher = Dispatcher(store, runners, DispatchLimits(**({"poll_s": 5.0} | limits)), dsn=url)
    loop = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0.2)  # listening
    try:
        yield store, runners, dispatcher
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def owner(store: TaskStore) -> uuid.UUID:
    user = uuid.uuid4()
    await store.pool.execute(
        "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, 'x', 'user')", user, user.hex
    )
    return user


async def submit(store: TaskStore, user: uuid.UUID, agent: str = "a", **values) -> Task:
    new = NewTask(owner_id=user, kind="agent", agent=agent, definition={"name": agent}, input="x", **values)
    return (await store.submit(new))[0]


async def ended(store: TaskStore, task: Task, timeout: float = 10.0) -> Task:
    async with asyncio.timeout(timeout):
        while not (current := await store.get(task.id)).terminal:
            await asyncio.sleep(0.02)
    return current


async def test_a_queued_task_starts_on_the_notification_not_the_poll(db):
    async with dispatching(db, succeed, poll_s=30.0) as (store, _, _):
        task = await submit(store, await owner(store))
        done = await ended(store, task, timeout=3.0)  # far below the 30 s poll
        assert done.status == "succeeded" and done.result == {"answer": "ok"}


async def test_a_dead_runner_ends_the_attempt_and_the_retry_completes(db):
    async def die_once(runners: LocalRunners, task: Task) -> None:
        if task.attempts == 1:
            raise RunnerDied("actor killed")
        await succeed(runners, task)

    async with dispatching(db, die_once, backoff_s=0.0, poll_s=0.1) as (store, _, dispatcher):
        task = await submit(store, await owner(store))
        done = await ended(store, task)
        assert done.status == "succeeded" and done.attempts == 2
        types = [e.type for e in await store.events(task.id)]
        assert types == ["queued", "started", "retry", "started", "succeeded"]
        assert dispatcher.ended_without_runner == 1


async def test_a_crashing_attempt_fails_after_max_attempts(db):
    async def crash(runners: LocalRunners, task: Task) -> None:
        raise RuntimeError("model unavailable")

    async with dispatching(db, crash, backoff_s=0.0, poll_s=0.1) as (store, _, _):
        task = await submit(store, await owner(store), max_attempts=2)
        done = await ended(store, task)
        assert done.status == "failed" and done.attempts == 2
        assert done.error == {"code": "runner_error", "message": "RuntimeError: model unavailable"}


async def test_running_tasks_never_exceed_the_limits(db):
    async def slow(runners: LocalRunners, task: Task) -> None:
        await asyncio.sleep(0.05)
        await succeed(runners, task)

    async with dispatching(db, slow, max_running=3, per_agent=2, poll_s=0.1) as (store, runners, _):
        user = await owner(store)
        tasks = [await submit(store, user, agent=f"a{i % 2}") for i in range(12)]
        for task in tasks:
            assert (await ended(store, task)).status == "succeeded"
        assert runners.most == 3


async def test_cancelling_a_running_task_reaches_its_runner(db):
    async def until_cancelled(runners: LocalRunners, task: Task) -> None:
        stop = runners.jobs.setdefault(task.id, asyncio.Event())
        await stop.wait()
        await runners.store.finish(task.id, task.attempts, "cancelled", error={"code": "cancelled", "message": "x"})

    async with dispatching(db, until_cancelled) as (store, runners, _):
        user = await owner(store)
        task = await submit(store, user)
        async with asyncio.timeout(5):
            while (await store.get(task.id)).status != "running":
                await asyncio.sleep(0.02)
        await store.cancel(task.id, user)
        done = await ended(store, task, timeout=2.0)
        assert done.status == "cancelled" and runners.cancelled == [task.id]


async def test_an_expired_lease_of_another_dispatcher_is_retried_here(db):
    _, store = db
    user = await owner(store)
    task = await submit(store, user)
    [orphan] = await store.claim("gone", limit=1, kinds=["agent"], lease_s=0.2, per_agent=10)
    assert orphan.id == task.id
    async with dispatching(db, succeed, lease_s=0.3, backoff_s=0.0, poll_s=0.05):
        done = await ended(store, task)
        assert done.status == "succeeded" and done.attempts == 2
        assert done.error is None or done.error["code"] == "lease_expired"

"""The durable queue (`tasks`, `task_events`) through TaskStore, on the real Postgres."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from sutazai.errors import Conflict, NotFound
from sutazai.storage.db import create_pool
from sutazai.storage.tasks import LeaseLost, NewTask, TaskStore
from tests.helpers import fresh_database


@pytest.fixture
async def store():
    async with fresh_database("sutazai_tasks_test") as url:
        pool = await create_pool(url, min_size=1, max_size=6)
        tasks = TaskStore(pool)
        tasks.dsn = url  # for a LISTEN connection of its own
        try:
            yield tasks
        finally:
            await pool.close()


async def new_owner(store: TaskStore, role: str = "user") -> uuid.UUID:
    owner = uuid.uuid4()
    await store.pool.execute(
        "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, 'x', $3)", owner, owner.hex, role
    )
    return owner


def new_task(owner: uuid.UUID, agent: str = "a", **values) -> NewTask:
    return NewTask(owner_id=owner, kind="agent", agent=agent, definition={"name": agent}, input="hi", **values)


async def claim(store: TaskStore, limit: int = 10, per_agent: int = 10, lease_s: float = 30.0):
    return await store.claim("w1", limit=limit, kinds=["agent"], lease_s=lease_s, per_agent=per_agent)


async def test_submit_stores_a_queued_task_with_a_queued_event(store):
    task, created = await store.submit(new_task(await new_owner(store)))
    assert created and task.status == "queued" and task.attempts == 0
    events = await store.events(task.id)
    assert [(e.seq, e.type) for e in events] == [(1, "queued")]


async def test_the_same_idempotency_key_returns_the_same_task(store):
    owner = await new_owner(store)
    first, created = await store.submit(new_task(owner, idempotency_key="k1"))
    again, created_again = await store.submit(new_task(owner, idempotency_key="k1"))
    assert created and not created_again and again.id == first.id
    other, _ = await store.submit(new_task(await new_owner(store), idempotency_key="k1"))
    assert other.id != first.id  # keys are per owner


async def test_claim_takes_the_highest_priority_first_and_records_started(store):
    owner = await new_owner(store)
    low, _ = await store.submit(new_task(owner, priority=0))
    high, _ = await store.submit(new_task(owner, priority=5))
    claimed = await claim(store, limit=1)
    assert [t.id for t in claimed] == [high.id]
    assert claimed[0].status == "running" and claimed[0].attempts == 1 and claimed[0].lease_owner == "w1"
    assert [e.type for e in await store.events(high.id)] == ["queued", "started"]
    assert (await store.get(low.id)).status == "queued"


async def test_concurrent_claims_never_take_the_same_task(store):
    owner = await new_owner(store)
    for _ in range(40):
        await store.submit(new_task(owner, agent=f"a{_ % 5}"))
    ids: list[uuid.UUID] = []
    for _ in range(20):  # rounds of six concurrent claims, until the queue is empty
        batches = await asyncio.gather(*(claim(store, limit=4) for _ in range(6)))
        ids += [t.id for batch in batches for t in batch]
        if len(ids) >= 40:
            break
    assert len(ids) == len(set(ids)) == 40


async def test_claim_keeps_each_agent_under_its_running_limit(store):
    owner = await new_owner(store)
    for _ in range(5):
        await store.submit(new_task(owner, agent="busy"))
    await store.submit(new_task(owner, agent="other"))
    first = await claim(store, per_agent=2)
    assert sorted(t.agent for t in first) == ["busy", "busy", "other"]
    assert await claim(store, per_agent=2) == []  # "busy" already runs two


async def test_claim_leaves_tasks_whose_backoff_has_not_ended(store):
    owner = await new_owner(store)
    task, _ = await store.submit(new_task(owner))
    [running] = await claim(store)
    await store.end_attempt(task.id, running.attempts, {"code": "x", "message": "boom"}, backoff_s=60)
    assert await claim(store) == []


async def test_a_stale_attempt_can_neither_record_nor_finish(store):
    task, _ = await store.submit(new_task(await new_owner(store)))
    [first] = await claim(store)
    await store.end_attempt(task.id, first.attempts, {"code": "x", "message": "died"}, backoff_s=0)
    [second] = await claim(store)
    assert second.attempts == 2
    with pytest.raises(LeaseLost):
        await store.record(task.id, first.attempts, "model", {"text": "late"})
    assert not await store.finish(task.id, first.attempts, "succeeded", result={"answer": "late"})
    assert await store.finish(task.id, second.attempts, "succeeded", result={"answer": "on time"})
    done = await store.get(task.id)
    assert done.status == "succeeded" and done.result == {"answer": "on time"}


async def test_finish_stores_exactly_one_result(store):
    task, _ = await store.submit(new_task(await new_owner(store)))
    [running] = await claim(store)
    assert await store.finish(task.id, running.attempts, "succeeded", result={"answer": "1"}, usage={"x": 1})
    assert not await store.finish(task.id, running.attempts, "failed", error={"code": "late", "message": "no"})
    events = await store.events(task.id)
    assert [e.type for e in events] == ["queued", "started", "succeeded"]
    assert events[-1].data["result"] == {"answer": "1"}


async def test_a_failed_attempt_is_retried_until_max_attempts_then_fails(store):
    task, _ = await store.submit(new_task(await new_owner(store), max_attempts=2))
    [first] = await claim(store)
    retried = await store.end_attempt(task.id, first.attempts, {"code": "x", "message": "one"}, backoff_s=0)
    assert retried.status == "queued" and retried.error == {"code": "x", "message": "one"}
    [second] = await claim(store)
    failed = await store.end_attempt(task.id, second.attempts, {"code": "x", "message": "two"}, backoff_s=0)
    assert failed.status == "failed" and failed.finished_at is not None
    types = [e.type for e in await store.events(task.id)]
    assert types == ["queued", "started", "retry", "started", "failed"]


async def test_the_backoff_doubles_with_each_attempt(store):
    task, _ = await store.submit(new_task(await new_owner(store), max_attempts=5))
    delays = []
    for _ in range(3):
        await store.pool.execute("UPDATE tasks SET run_after = now() WHERE id = $1", task.id)
        [running] = await claim(store)
        ended = await store.end_attempt(task.id, running.attempts, {"code": "x", "message": "m"}, backoff_s=10)
        delays.append(
            await store.pool.fetchval("SELECT extract(epoch FROM run_after - now()) FROM tasks WHERE id = $1", task.id)
        )
        assert ended.status == "queued"
    assert 9 < delays[0] <= 10 and 19 < delays[1] <= 20 and 39 < delays[2] <= 40


async def test_expired_leases_are_requeued(store):
    task, _ = await store.submit(new_task(await new_owner(store)))
    await claim(store, lease_s=0.01)
    await asyncio.sleep(0.05)
    [requeued] = await store.requeue_expired(backoff_s=0)
    assert requeued.id == task.id and requeued.status == "queued"
    assert requeued.error["code"] == "lease_expired"


async def test_a_heartbeat_extends_the_lease_and_reports_cancellation(store):
    owner = await new_owner(store)
    task, _ = await store.submit(new_task(owner))
    [running] = await claim(store, lease_s=0.05)
    assert await store.heartbeat(task.id, running.attempts, 30) is False
    await asyncio.sleep(0.1)
    assert await store.requeue_expired(backoff_s=0) == []
    await store.cancel(task.id, owner)
    assert await store.heartbeat(task.id, running.attempts, 30) is True


async def test_cancel_ends_a_queued_task_at_once(store):
    owner = await new_owner(store)
    task, _ = await store.submit(new_task(owner))
    cancelled = await store.cancel(task.id, owner)
    assert cancelled.status == "cancelled"
    assert [e.type for e in await store.events(task.id)] == ["queued", "cancelled"]
    assert await claim(store) == []


async def test_cancel_asks_the_runner_of_a_running_task_through_a_notification(store):
    owner = await new_owner(store)
    task, _ = await store.submit(new_task(owner))
    await claim(store)
    conn = await asyncpg.connect(store.dsn)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await conn.add_listener("sutazai_task_queue", lambda *args: heard.put_nowait(args[-1]))
    try:
        asked = await store.cancel(task.id, owner)
        assert asked.status == "running" and asked.cancel_requested
        assert await asyncio.wait_for(heard.get(), 5) == f"cancel:{task.id}"
    finally:
        await conn.close()


async def test_cancel_of_an_ended_task_is_a_conflict_and_of_anothers_task_not_found(store):
    owner = await new_owner(store)
    task, _ = await store.submit(new_task(owner))
    with pytest.raises(NotFound):
        await store.cancel(task.id, await new_owner(store))
    await store.cancel(task.id, owner)
    with pytest.raises(Conflict):
        await store.cancel(task.id, owner)


async def test_cancelling_a_parent_cancels_its_children(store):
    owner = await new_owner(store)
    parent = NewTask(owner_id=owner, kind="orchestrate", agent=None, definition=None, input="x")
    task, children, created = await store.submit_family(parent, [new_task(owner, "a"), new_task(owner, "b")])
    assert created and len(children) == 2 and all(c.parent_id == task.id for c in children)
    await store.cancel(task.id, owner)
    assert {c.status for c in await store.children(task.id)} == {"cancelled"}


async def test_events_resume_after_a_seq(store):
    task, _ = await store.submit(new_task(await new_owner(store)))
    [running] = await claim(store)
    for i in range(5):
        await store.record(task.id, running.attempts, "model", {"i": i})
    after = await store.events(task.id, after=4)
    assert [e.seq for e in after] == [5, 6, 7]
    assert [e.data["i"] for e in after] == [2, 3, 4]

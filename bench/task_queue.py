"""Durable task queue: no-op agent tasks through Postgres, the dispatcher and Ray runner actors.

What runs is the production path minus the agent loop: TaskStore.submit (row + queued
event + NOTIFY), the Dispatcher (LISTEN wake-up, SKIP LOCKED claim with a started event),
RayRunners sending each attempt to a Ray actor, and the actor storing the result with
its fenced finish (row + final event). The runner actor does nothing else (no model, no
tools): that is the "no-op agent".

Two measurements per concurrency (the number of attempts that may run at once):
  burst    N tasks submitted by 16 submitters (submitted/s), then drained by the dispatcher (completed/s)
  paced    tasks submitted one at a time, each after the previous one started:
           queue-to-start latency (the started event's time minus the queued event's)

    .venv/bin/python bench/task_queue.py [--tasks 2000] [--paced 200] [--concurrency 1 8]
Uses DATABASE_URL's server (a fresh database, dropped afterwards) or an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import asyncpg
import ray

from deployments.agent_runner import RayRunners
from sutazai.dispatch import Dispatcher, DispatchLimits
from sutazai.storage.db import create_pool
from sutazai.storage.tasks import NewTask, Task, TaskStore


@ray.remote
class NoopRunner:
    """An agent runner whose agent does nothing: it stores the result and returns."""

    def __init__(self, runner_id: str, app_name: str) -> None:
        self.store: TaskStore | None = None

    async def warm(self) -> None:
        return None

    async def run(self, task: Task) -> str:
        if self.store is None:
            self.store = TaskStore(await create_pool(os.environ["BENCH_DATABASE_URL"], min_size=1, max_size=8))
        await self.store.finish(task.id, task.attempts, "succeeded", result={"answer": ""})
        return "succeeded"

    async def cancel(self, task_id: str) -> bool:
        return False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def queue_to_start_ms(store: TaskStore, ids: list[uuid.UUID]) -> list[float]:
    rows = await store.pool.fetch(
        """SELECT extract(epoch FROM s.created_at - q.created_at) * 1000 AS ms
           FROM task_events q JOIN task_events s ON s.task_id = q.task_id AND s.type = 'started' AND s.attempt = 1
           WHERE q.type = 'queued' AND q.task_id = ANY($1::uuid[])""",
        ids,
    )
    return [float(r["ms"]) for r in rows]


async def wait_all_ended(store: TaskStore, ids: list[uuid.UUID]) -> None:
    while await store.pool.fetchval(
        "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status <> 'succeeded'", ids
    ):
        await asyncio.sleep(0.01)


async def run_one(url: str, concurrency: int, tasks: int, paced: int, owner: uuid.UUID) -> dict:
    pool = await create_pool(url, min_size=2, max_size=20)
    store = TaskStore(pool)
    runners = RayRunners(
        max(1, min(concurrency, 2)),
        concurrency + 2,
        num_cpus=0,
        app_name="bench",
        prefix=f"bench-{concurrency}",
        runner_class=NoopRunner,
    )
    limits = DispatchLimits(max_running=concurrency, per_agent=concurrency, lease_s=30, poll_s=0.5)
    dispatcher = Dispatcher(store, runners, limits, dsn=url)
    loop = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0.5)

    def new() -> NewTask:
        return NewTask(owner_id=owner, kind="agent", agent="noop", definition={"name": "noop"}, input="x")

    for _ in range(20):  # warm-up: actors up, pools connected
        await store.submit(new())
    await asyncio.sleep(2)

    # burst: a backlog submitted by 16 submitters while the dispatcher is held back, then drained
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    ids: list[uuid.UUID] = []
    remaining = tasks
    started = time.perf_counter()

    async def submitter() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            ids.append((await store.submit(new()))[0].id)

    await asyncio.gather(*(submitter() for _ in range(16)))
    submitted_s = time.perf_counter() - started
    started = time.perf_counter()
    loop = asyncio.create_task(dispatcher.run())
    await wait_all_ended(store, ids)
    completed_s = time.perf_counter() - started

    # paced
    paced_ids = []
    for _ in range(paced):
        task: Task = (await store.submit(new()))[0]
        paced_ids.append(task.id)
        while (await store.get(task.id)).status == "queued":  # type: ignore[union-attr]
            await asyncio.sleep(0.002)
    await wait_all_ended(store, paced_ids)
    latencies = await queue_to_start_ms(store, paced_ids)
    burst_latencies = await queue_to_start_ms(store, ids)  # mostly time spent waiting behind the backlog

    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    runners.shutdown()
    await pool.close()
    return {
        "concurrency": concurrency,
        "submitted/s": tasks / submitted_s,
        "completed/s": tasks / completed_s,
        "p50 ms": statistics.median(latencies),
        "p99 ms": percentile(latencies, 0.99),
        "backlog p50 ms": statistics.median(burst_latencies),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--paced", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL")
    servers = None
    if base is None:
        from sutazai.embedded import start_missing

        servers = start_missing(Path(tempfile.mkdtemp(prefix="bench-tasks-")), None, "redis://unused")
        base = servers.database_url
    name = f"bench_tasks_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + f"/{name}"
    os.environ["BENCH_DATABASE_URL"] = url
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": {"BENCH_DATABASE_URL": url}},
    )
    try:
        pool = await create_pool(url)
        owner = uuid.uuid4()
        await pool.execute(
            "INSERT INTO users (id, username, password_hash, role) VALUES ($1, 'bench', 'x', 'user')", owner
        )
        await pool.close()
        rows = [await run_one(url, c, args.tasks, args.paced, owner) for c in args.concurrency]
    finally:
        ray.shutdown()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        if servers is not None:
            servers.stop()

    print(f"\nno-op agent tasks: {args.tasks} in a burst, {args.paced} paced, per concurrency (attempts at once)\n")
    header = list(rows[0])
    print(" | ".join(f"{h:>13}" for h in header))
    print(" | ".join("-" * 13 for _ in header))
    for row in rows:
        print(" | ".join(f"{v:>13.1f}" if isinstance(v, float) else f"{v:>13}" for v in row.values()))


if __name__ == "__main__":
    asyncio.run(main())

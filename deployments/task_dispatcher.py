"""The task dispatcher as a Serve deployment: it starts and stops with the application, Serve
restarts it when its health check fails, and the ingress reaches it by handle for its stats.

Its replica owns the agent runner actors; if the replica dies they die with it, their
leases expire, and the next dispatcher retries those tasks from their recorded steps.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from deployments.agent_runner import RayRunners
from sutazai.dispatch import Dispatcher, DispatchLimits
from sutazai.settings import Settings, get_settings
from sutazai.storage.db import create_pool
from sutazai.storage.tasks import TaskStore

logger = logging.getLogger("ray.serve")


def dispatch_limits(settings: Settings) -> DispatchLimits:
    return DispatchLimits(
        max_running=settings.tasks_max_running,
        per_agent=settings.tasks_max_running_per_agent,
        orchestrations=settings.orchestrations_max_running,
        indexing=settings.indexing_max_running,
        lease_s=settings.task_lease_s,
        backoff_s=settings.task_retry_backoff_s,
    )


@serve.deployment(num_replicas=1, max_ongoing_requests=100, health_check_period_s=5)
class TaskDispatcher:
    async def __init__(self) -> None:  # type: ignore[misc]  # Serve awaits an async constructor
        settings = get_settings()
        assert settings.database_url, "DATABASE_URL must be set in the replicas' environment"
        self.pool = await create_pool(settings.database_url, min_size=1, max_size=4, timeout_s=settings.db_timeout_s)
        context = serve.get_replica_context()
        limits = dispatch_limits(settings)
        per_runner = -(-(limits.max_running + limits.orchestrations + limits.indexing) // max(settings.task_runners, 1))
        self.runners = RayRunners(
            settings.task_runners,
            per_runner + 2,  # + cancel and status calls while full
            num_cpus=settings.task_runner_num_cpus,
            app_name=context.app_name,
            prefix=f"agent-runner-{context.replica_tag}",
        )
        self.dispatcher = Dispatcher(
            TaskStore(self.pool), self.runners, limits, dsn=settings.database_url, worker_id=context.replica_tag
        )
        self.loop = asyncio.create_task(self.dispatcher.run())

    async def check_health(self) -> None:
        if self.loop.done():
            raise RuntimeError(f"the dispatch loop stopped: {self.loop.exception()!r}")

    async def stats(self) -> dict[str, Any]:
        return await self.dispatcher.stats() | {"runners": len(self.runners.actors)}

    async def __del__(self) -> None:
        self.loop.cancel()
        self.runners.shutdown()
        await self.pool.close()

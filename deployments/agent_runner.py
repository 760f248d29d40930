"""Agent runner actors: where agent loops run, on whichever nodes Ray places them.

Each runner is an async Ray actor that runs many attempts at once (`max_concurrency`).
It connects on first use to Postgres, the model deployments (Serve handles) and the
MCP actors (the same gateway the ingress uses), and runs each attempt with
`sutazai.agents.attempt.run_attempt`. The dispatcher owns its runners: when one
dies, `RayRunners` reports the attempt's runner dead and puts a new actor in its place.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.exceptions import RayActorError

from deployments.mcp_process import NAMESPACE, connect_gateway
from deployments.vector_store import connect_vector_store
from sutazai.agents.attempt import AttemptContext, DocumentIndexing, run_attempt
from sutazai.catalog import ModelCatalog
from sutazai.dispatch import RunnerDied
from sutazai.documents.files import DocumentFiles
from sutazai.embeddings import EmbeddingClient
from sutazai.inference import ModelClient
from sutazai.settings import Settings, get_settings
from sutazai.storage.agents import AgentStore
from sutazai.storage.db import create_pool
from sutazai.storage.documents import DocumentStore
from sutazai.storage.tasks import Task, TaskStore

logger = logging.getLogger("sutazai.agent_runner")

PING_TIMEOUT_S = 2.0
READY_TIMEOUT_S = 30.0  # the dispatcher waits at most this long for runners that are starting


@ray.remote(max_restarts=0)
class AgentRunner:
    def __init__(self, runner_id: str, app_name: str) -> None:
        self.runner_id = runner_id
        self.app_name = app_name
        self.settings: Settings = get_settings()
        self._ctx: AttemptContext | None = None
        self._setup = asyncio.Lock()

    async def _context(self) -> AttemptContext:
        async with self._setup:
            if self._ctx is None:
                self._ctx = await self._connect()
        return self._ctx

    async def _connect(self) -> AttemptContext:
        settings = self.settings
        assert settings.database_url, "DATABASE_URL must be set in the runners' environment"
        pool = await create_pool(settings.database_url, min_size=1, max_size=4, timeout_s=settings.db_timeout_s)
        catalog = ModelCatalog.load(Path(settings.models_dir))
        models = {
            name: ModelClient(spec, serve.get_deployment_handle(spec.deployment_name, app_name=self.app_name))
            for name, spec in catalog.specs.items()
        }
        gateway = None
        if settings.mcp_enabled:
            try:
                gateway = await connect_gateway(settings, namespace=NAMESPACE)
            except Exception:
                logger.exception("MCP gateway failed to start in runner %s; agents with tools fail", self.runner_id)
        indexing = None
        if catalog.embedders:
            spec = catalog.embedders[catalog.default_embedder() or ""]
            handle = serve.get_deployment_handle(spec.deployment_name, app_name=self.app_name)
            indexing = DocumentIndexing(
                documents=DocumentStore(pool),
                files=DocumentFiles(settings.documents_dir),
                embedder=EmbeddingClient(spec, handle, retry_after_s=settings.retry_after_s),
                vectors=await asyncio.to_thread(connect_vector_store, settings),
                settings=settings,
            )
        return AttemptContext(
            store=TaskStore(pool),
            agents=AgentStore(pool),
            models=models,
            default_model=catalog.default_name(settings.default_model) if catalog.specs else None,
            gateway=gateway,
            lease_s=settings.task_lease_s,
            max_attempts=settings.task_max_attempts,
            retry_after_s=settings.retry_after_s,
            indexing=indexing,
        )

    async def warm(self) -> None:
        """Connects now (Postgres, model handles, MCP gateway), before any attempt is sent here."""
        await self._context()

    async def run(self, task: Task) -> str | None:
        """Runs one attempt to its end; returns the status it stored (None: its lease was lost)."""
        ctx = await self._context()
        job = asyncio.create_task(run_attempt(ctx, task))
        ctx.jobs[str(task.id)] = job
        try:
            return await job
        finally:
            ctx.jobs.pop(str(task.id), None)

    async def cancel(self, task_id: str) -> bool:
        ctx = self._ctx
        job = ctx.jobs.get(task_id) if ctx is not None else None
        if job is None:
            return False
        job.cancel()
        return True

    def running(self) -> int:
        return len(self._ctx.jobs) if self._ctx is not None else 0


class RayRunners:
    """The dispatcher's pool of runner actors: attempts go to the least busy one, spread
    over the cluster by Ray's SPREAD strategy; a dead runner is replaced."""

    def __init__(
        self,
        count: int,
        concurrency: int,
        *,
        num_cpus: float,
        app_name: str,
        prefix: str,
        runner_class: Any = AgentRunner,  # any actor with run(task) and cancel(task_id) (bench/ has a no-op one)
    ) -> None:
        self.runner_class = runner_class
        self.concurrency = concurrency
        self.num_cpus = num_cpus
        self.app_name = app_name
        self.prefix = prefix
        self._serial = itertools.count()
        self._starting: dict[int, tuple[Any, Any]] = {}  # id(actor) -> (actor, its warm() call) until it answers
        self.actors: list[Any] = [self._new() for _ in range(count)]
        self._load: dict[int, int] = {}  # id(actor) -> attempts running on it
        self._where: dict[str, Any] = {}  # task id -> its runner

    def _new(self) -> Any:
        name = f"{self.prefix}-{next(self._serial)}"
        actor = self.runner_class.options(
            name=name,
            namespace=NAMESPACE,
            max_concurrency=self.concurrency,
            num_cpus=self.num_cpus,
            scheduling_strategy="SPREAD",
        ).remote(name, self.app_name)
        self._starting[id(actor)] = (actor, actor.warm.remote())
        return actor

    async def ready(self) -> None:
        """Waits for the runners still starting (process, connections), at most READY_TIMEOUT_S:
        a retry sent to a runner that replaced a dead one would otherwise spend its lease on the
        new process's start (seen on a loaded machine: every attempt of a task lost so)."""
        if not self._starting:
            return
        starting, self._starting = self._starting, {}
        calls = {asyncio.wrap_future(ref.future()): actor for actor, ref in starting.values()}
        done, late = await asyncio.wait(calls, timeout=READY_TIMEOUT_S)
        for call in done:
            error = call.exception()
            if isinstance(error, RayActorError):
                self._replace(calls[call])
            elif error is not None:  # Postgres down, say: its attempts will fail and retry
                logger.warning("an agent runner could not connect: %s", error)
        if late:
            logger.warning("%d agent runner(s) not up within %g s; they get work anyway", len(late), READY_TIMEOUT_S)

    async def start(self, task: Task) -> Any:
        actor = min(self.actors, key=lambda a: self._load.get(id(a), 0))
        self._load[id(actor)] = self._load.get(id(actor), 0) + 1
        self._where[str(task.id)] = actor
        try:
            return await actor.run.remote(task)
        except RayActorError as exc:
            self._replace(actor)
            await self._replace_dead()  # a node going down takes several runners: find them all now
            raise RunnerDied(f"runner actor died: {type(exc).__name__}") from None
        finally:
            self._load[id(actor)] = self._load.get(id(actor), 1) - 1
            self._where.pop(str(task.id), None)

    async def cancel(self, task: Task) -> None:
        actor = self._where.get(str(task.id))
        if actor is not None:
            await actor.cancel.remote(str(task.id))

    async def _replace_dead(self) -> None:
        """Replaces every runner that does not answer a ping, so that the retry of the attempt
        that just died is not sent to another dead runner (and its attempts are not spent)."""

        async def alive(actor: Any) -> bool:
            try:
                await asyncio.wait_for(asyncio.wrap_future(actor.running.remote().future()), PING_TIMEOUT_S)
            except RayActorError:
                return False
            except TimeoutError:
                return True  # busy or starting, not known dead: its own attempts will tell
            return True

        actors = list(self.actors)
        for actor, ok in zip(actors, await asyncio.gather(*(alive(a) for a in actors)), strict=True):
            if not ok:
                self._replace(actor)

    def _replace(self, actor: Any) -> None:
        if actor in self.actors:
            self.actors[self.actors.index(actor)] = self._new()
            self._load.pop(id(actor), None)
            logger.warning("replaced a dead agent runner")

    def shutdown(self) -> None:
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass

"""The composition root: everything an ingress replica uses, built once, in one place.

`build_services` connects to Postgres and Redis, builds the stores, the auth
pieces, the cache and the model clients, takes the MCP gateway the deployment
connected, and starts the replica's housekeeping. Nothing is attached later and
nothing is built lazily; routes reach all of it through `sutazai.api.deps`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from sutazai.admission import replica_share
from sutazai.agents.definitions import load_agent_files
from sutazai.auth.accounts import ensure_admin
from sutazai.auth.authenticate import Authenticator
from sutazai.auth.principal_cache import PrincipalCache
from sutazai.auth.rate_limit import RateLimiter
from sutazai.auth.secret import resolve_jwt_secret
from sutazai.auth.tokens import TokenSigner
from sutazai.cache import ResponseCache
from sutazai.catalog import ModelCatalog
from sutazai.documents.files import DocumentFiles
from sutazai.embeddings import EmbeddingClient
from sutazai.inference import InferenceService, ModelClient
from sutazai.mcp.config import MCPConfig, load_config
from sutazai.mcp.gateway import MCPGateway
from sutazai.settings import Settings
from sutazai.storage.agents import AgentStore
from sutazai.storage.api_keys import ApiKeyStore
from sutazai.storage.audit import AuditStore
from sutazai.storage.conversations import ConversationStore
from sutazai.storage.db import create_pool
from sutazai.storage.documents import Document, DocumentStore
from sutazai.storage.refresh_tokens import RefreshTokenStore
from sutazai.storage.tasks import NewTask, TaskStore
from sutazai.storage.users import UserStore
from sutazai.task_events import TaskEventHub
from sutazai.vectors.store import VectorStore

logger = logging.getLogger("sutazai.services")


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    catalog: ModelCatalog
    inference: InferenceService
    cache: ResponseCache
    users: UserStore
    sessions: RefreshTokenStore
    api_keys: ApiKeyStore
    audit: AuditStore
    conversations: ConversationStore
    signer: TokenSigner
    limiter: RateLimiter
    authenticator: Authenticator
    mcp: MCPGateway | None  # None when MCP is disabled or failed to start
    agents: AgentStore
    mcp_config: MCPConfig | None  # the servers file, even when the gateway failed; None when MCP is disabled
    tasks: TaskStore
    task_events: TaskEventHub
    dispatcher: Any  # the task dispatcher deployment's handle (None when built without one, in tests)
    documents: DocumentStore
    document_files: DocumentFiles
    embeddings: dict[str, EmbeddingClient] = field(default_factory=dict)  # embedding model name -> client
    vectors: VectorStore | None = None  # None: this replica cannot index or search documents
    started_at: float = field(default_factory=time.time)
    _housekeeping: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await self.task_events.close()
        await self.audit.drain()
        if self.authenticator.cache is not None:
            await self.authenticator.cache.close()
        await self.pool.close()
        await self.redis.aclose()

    async def documents_indexer(self, document: Document) -> None:
        """Indexing runs as a durable task (kind 'index') on the agent runners: it survives a
        restart, is retried when the embedder is busy, and its progress is the document's."""
        await self.tasks.submit(
            NewTask(
                owner_id=document.owner_id,
                kind="index",
                agent=None,
                definition=None,
                input=document.filename,
                params={"document_id": str(document.id)},
                idempotency_key=f"index:{document.id}",
                max_attempts=self.settings.task_max_attempts,
            )
        )

    async def _purge_expired_sessions(self) -> None:
        """Refresh tokens past their expiry are useless: delete them so the table stays small."""
        while True:
            try:
                purged = await self.sessions.purge_expired()
                if purged:
                    logger.info("purged %d expired refresh tokens", purged)
            except (asyncpg.PostgresError, OSError) as exc:
                logger.warning("purging expired refresh tokens failed: %s", exc)
            await asyncio.sleep(self.settings.purge_interval_s)


def redis_client(settings: Settings) -> aioredis.Redis:
    """Short timeouts: a dead Redis must cost a request milliseconds, not seconds."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL must be set in the replicas' environment (`sutazai run` sets it)")
    return aioredis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
    )


def mcp_config_of(settings: Settings) -> MCPConfig | None:
    """The MCP servers file, for validating agents' tools; None when MCP is off or the file is unusable."""
    if not settings.mcp_enabled:
        return None
    try:
        return load_config(settings.mcp_config)
    except (ValueError, OSError) as exc:
        logger.warning("MCP config %s unusable, agents get no tools: %s", settings.mcp_config, exc)
        return None


async def sync_agent_files(services: Services) -> None:
    """Load the agents folder and make the 'file' agents in Postgres match it (a bad file is
    logged and skipped; replicas starting together sync one at a time)."""
    folder = services.settings.agents_dir
    loaded, errors = load_agent_files(folder, services.mcp_config, set(services.catalog.names()))
    for error in errors:
        logger.warning("agent file %s not loaded: %s", error.path, error.message)
    report = await services.agents.sync_files(loaded)
    for name in report.conflicts:
        logger.warning("agent file for %r ignored: an agent of that name was made through the API", name)
    logger.info(
        "agents from %s: %d created, %d updated, %d unchanged, %d deleted",
        folder,
        len(report.created),
        len(report.updated),
        len(report.unchanged),
        len(report.deleted),
    )


async def build_services(
    settings: Settings,
    catalog: ModelCatalog,
    handles: dict[str, Any],
    *,
    mcp: MCPGateway | None = None,
    dispatcher: Any = None,
    embedders: dict[str, Any] | None = None,
    vectors: VectorStore | None = None,
    clock: Callable[[], float] = time.time,
) -> Services:
    """Raises `SecretConfigError` when no usable JWT secret is configured, so a
    misconfigured replica fails at start rather than at its first request.
    `clock` is the rate limiter's (tests freeze it inside a window)."""
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL must be set in the replicas' environment (`sutazai run` sets it)")
    signer = TokenSigner.from_settings(settings, resolve_jwt_secret(settings))
    pool = await create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout_s=settings.db_timeout_s,
    )
    redis = redis_client(settings)
    cache = ResponseCache(redis, ttl_s=settings.cache_ttl_s, enabled=settings.cache_enabled)
    clients = {
        name: ModelClient(
            catalog.specs[name],
            handle,
            share=replica_share(catalog.specs[name], settings.ingress_min_replicas),
            retry_after_s=settings.retry_after_s,
        )
        for name, handle in handles.items()
    }
    embeddings = {
        name: EmbeddingClient(catalog.embedders[name], handle, retry_after_s=settings.retry_after_s)
        for name, handle in (embedders or {}).items()
    }
    sessions, keys, users = RefreshTokenStore(pool), ApiKeyStore(pool), UserStore(pool)
    services = Services(
        settings=settings,
        pool=pool,
        redis=redis,
        catalog=catalog,
        inference=InferenceService(
            catalog, clients, cache, default_model=settings.default_model, retry_after_s=settings.retry_after_s
        ),
        cache=cache,
        users=users,
        sessions=sessions,
        api_keys=keys,
        audit=AuditStore(pool),
        conversations=ConversationStore(pool),
        signer=signer,
        limiter=RateLimiter(redis, prefix=f"{settings.app_name}:rl:", timeout_s=settings.redis_timeout_s, clock=clock),
        authenticator=Authenticator(
            signer, sessions, keys, PrincipalCache(settings.database_url, ttl_s=settings.auth_cache_ttl_s)
        ),
        mcp=mcp,
        agents=AgentStore(pool),
        mcp_config=mcp.config if mcp is not None else mcp_config_of(settings),
        tasks=TaskStore(pool),
        task_events=TaskEventHub(settings.database_url),
        dispatcher=dispatcher,
        embeddings=embeddings,
        documents=DocumentStore(pool),
        document_files=DocumentFiles(settings.documents_dir),
        vectors=vectors,
    )
    await services.task_events.start()
    if services.authenticator.cache is not None:
        await services.authenticator.cache.start()
    await ensure_admin(users, settings)
    await sync_agent_files(services)
    services._housekeeping = asyncio.create_task(services._purge_expired_sessions())
    return services

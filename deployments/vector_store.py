"""The embedded vector store: ONE named, detached Ray actor that owns the qdrant-edge shard.

Why an actor: qdrant-edge locks its folder to one process, and every ingress replica and agent
runner, on every node, must see the same vectors. So one process owns the shard
(`settings.data_dir / "vectors"`) and everyone calls it: `vector-store` in namespace "sutazai",
got or created race-free with `get_if_exists`. It is pinned to the head node (where the data folder
is) and has `max_restarts`: after a crash Ray starts it again there and it reloads the shard from
disk (WAL + a flush per write, so every write that returned is there). Calls that were in flight
when it died are retried once it is back (`max_task_retries`): upserts and deletes are idempotent.

`ActorVectorStore` is the `VectorStore` a replica uses: each method is one actor call. With
`QDRANT_URL` set none of this runs (sutazai/vectors/qdrant_server.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sutazai.settings import Settings
from sutazai.vectors.edge import OPTIMIZE_THRESHOLD, EdgeShardStore
from sutazai.vectors.qdrant_server import QdrantServerStore
from sutazai.vectors.store import ChunkVector, VectorHit, VectorStore

NAMESPACE = "sutazai"
ACTOR_NAME = "vector-store"
ACTOR_MAX_RESTARTS = -1  # the store is needed for every document call: always bring it back
ACTOR_MAX_TASK_RETRIES = 3  # calls caught by a crash run again on the restarted actor (all idempotent)
LOCK_WAIT_S = 30.0  # a restarted actor waits this long for the dead process's folder lock to go

logger = logging.getLogger("sutazai.vectors.actor")


@ray.remote
class VectorStoreActor:
    """Owns one `EdgeShardStore`. Calls run one at a time: qdrant-edge keeps the GIL while it works,
    so concurrency inside the process would only interleave, not overlap."""

    def __init__(self, path: str, optimize_threshold: int = OPTIMIZE_THRESHOLD) -> None:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                self.store = EdgeShardStore(path, optimize_threshold=optimize_threshold)
                break
            except Exception as exc:  # the folder lock of a process that is still going away
                if "WouldBlock" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.path = path

    def ensure(self, dimension: int) -> None:
        self.store.ensure(dimension)

    def upsert(self, points: list[ChunkVector]) -> None:
        self.store.upsert([ChunkVector(*p) for p in points])

    def search(self, vector: list[float], owner_id: str, top_k: int, document_ids: list[str] | None) -> list[VectorHit]:
        return self.store.search(vector, owner_id=owner_id, top_k=top_k, document_ids=document_ids)

    def delete_document(self, document_id: str) -> int:
        return self.store.delete_document(document_id)

    def count(self, document_id: str | None = None) -> int:
        return self.store.count(document_id=document_id)

    def optimize(self) -> bool:
        return self.store.optimize()

    def status(self) -> dict[str, Any]:
        import os

        return {
            "path": self.path,
            "pid": os.getpid(),
            "dimension": self.store.dimension,
            "points": self.store.count(),
            "unindexed": self.store.unindexed(),
        }


def _head_node_id() -> str:
    """The head node (the embedded data folder lives there); this node when none says it is head."""
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return str(node["NodeID"])
    return str(ray.get_runtime_context().get_node_id())


def get_or_create(settings: Settings, namespace: str = NAMESPACE) -> Any:
    """The named detached actor (created on first use, pinned to the head node; `get_if_exists` makes
    it race-free when replicas start together)."""
    return VectorStoreActor.options(  # type: ignore[attr-defined]
        name=ACTOR_NAME,
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=ACTOR_MAX_RESTARTS,
        max_task_retries=ACTOR_MAX_TASK_RETRIES,
        num_cpus=0.1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(_head_node_id(), soft=False),
    ).remote(str(settings.data_dir / "vectors"))


class ActorVectorStore:
    """The `VectorStore` of a replica in the embedded default: every call goes to the actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    @classmethod
    def connect(cls, settings: Settings, *, namespace: str = NAMESPACE) -> ActorVectorStore:
        return cls(get_or_create(settings, namespace))

    async def ensure(self, dimension: int) -> None:
        await self.actor.ensure.remote(dimension)

    async def upsert(self, points: list[ChunkVector]) -> None:
        if points:
            await self.actor.upsert.remote([tuple(p) for p in points])

    async def search(
        self, vector: list[float], *, owner_id: str, top_k: int, document_ids: list[str] | None = None
    ) -> list[VectorHit]:
        hits = await self.actor.search.remote(list(vector), owner_id, top_k, document_ids)
        return [VectorHit(*h) for h in hits]

    async def delete_document(self, document_id: str) -> int:
        return int(await self.actor.delete_document.remote(document_id))

    async def count(self, *, document_id: str | None = None) -> int:
        return int(await self.actor.count.remote(document_id))

    async def status(self) -> dict[str, Any]:
        return dict(await self.actor.status.remote())

    async def close(self) -> None:
        """Nothing to release: the actor and its shard outlive this client."""


def shutdown(namespace: str = NAMESPACE) -> bool:
    """End the actor for good (tests, `sutazai stop`); its data stays on disk. False if none ran."""
    try:
        actor = ray.get_actor(ACTOR_NAME, namespace=namespace)
    except ValueError:
        return False
    ray.kill(actor, no_restart=True)
    return True


def connect_vector_store(settings: Settings, *, namespace: str = NAMESPACE) -> VectorStore:
    """The store this process uses: the Qdrant server when `QDRANT_URL` is set, else the
    client of the embedded store's actor (got or created: `get_if_exists` makes it race-free)."""
    if settings.qdrant_url:
        return QdrantServerStore.from_settings(settings)
    return ActorVectorStore.connect(settings, namespace=namespace)

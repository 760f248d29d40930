"""The vector store interface: document chunk vectors, searched per owner.

Two implementations, one interface (`VectorStore`), picked by `deployments.vector_store.connect_vector_store(settings)`:

- `QDRANT_URL` set: `QdrantServerStore`, one collection on a Qdrant server through
  `qdrant_client.AsyncQdrantClient` (any number of ingress replicas talk to it).
- unset (the embedded default): `ActorVectorStore`, a client of ONE named, detached Ray
  actor (`vector-store`) that owns a qdrant-edge shard under `settings.data_dir / "vectors"`.
  Every replica and runner on every node reaches the same shard through the actor; the
  shard's WAL plus a flush per write makes it persistent, and `max_restarts` makes Ray
  bring the actor back (reloading the shard from disk) after a crash.

Points are chunk vectors: the point id is the chunk's UUID, the payload carries
`owner_id`, `document_id` (both keyword-indexed) and `chunk_index`. Distance is cosine.
Every search is filtered by owner: a user never sees another user's chunks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    pass

OWNER_FIELD = "owner_id"
DOCUMENT_FIELD = "document_id"
CHUNK_INDEX_FIELD = "chunk_index"


class ChunkVector(NamedTuple):
    id: str  # the chunk's UUID as a string (point id)
    vector: list[float]
    document_id: str  # UUID string
    owner_id: str  # UUID string, canonical form: str(uuid)
    chunk_index: int


class VectorHit(NamedTuple):
    id: str
    score: float
    document_id: str
    chunk_index: int


class VectorStore(Protocol):
    async def ensure(self, dimension: int) -> None:
        """Create the collection/shard if missing (idempotent); ValueError if it stores another dimension."""
        ...

    async def upsert(self, points: list[ChunkVector]) -> None:
        """Insert or replace a batch of points; durable when it returns."""
        ...

    async def search(
        self, vector: list[float], *, owner_id: str, top_k: int, document_ids: list[str] | None = None
    ) -> list[VectorHit]:
        """Cosine search, best first, over ONLY the points of `owner_id` (and of `document_ids` when given)."""
        ...

    async def delete_document(self, document_id: str) -> int:
        """Remove every point of the document; return how many were removed. Durable when it returns."""
        ...

    async def count(self, *, document_id: str | None = None) -> int:
        """How many points are stored (of one document when given)."""
        ...

    async def close(self) -> None:
        """Release this client's resources (the store's data stays)."""
        ...

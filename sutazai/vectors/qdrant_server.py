"""The vector store on a Qdrant server (`QDRANT_URL`): one collection, cosine, through
`qdrant_client.AsyncQdrantClient`. Any number of replicas share it; the server does the rest.

The class also accepts an already-built client. The tests hand it
`AsyncQdrantClient(location=":memory:")`: qdrant-client's local mode implements the same client
API, so they exercise this code path exactly, except the network (and local mode ignores payload
indexes, which the server uses to keep filtered search fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qdrant_client import AsyncQdrantClient, models

from sutazai.vectors.store import CHUNK_INDEX_FIELD, DOCUMENT_FIELD, OWNER_FIELD, ChunkVector, VectorHit

if TYPE_CHECKING:
    from sutazai.settings import Settings


class QdrantServerStore:
    def __init__(self, client: AsyncQdrantClient, collection: str, *, owns_client: bool = True) -> None:
        self.client = client
        self.collection = collection
        self._owns_client = owns_client
        self._dimension: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> QdrantServerStore:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        # No version check: it is a blocking HTTP call in the constructor (and a warning when the
        # server is not up yet); the first real call reports an unreachable server.
        client = AsyncQdrantClient(
            url=settings.qdrant_url,
            api_key=api_key,
            timeout=max(1, round(settings.db_timeout_s)),
            check_compatibility=False,
        )
        return cls(client, settings.vector_collection)

    async def _stored_dimension(self) -> int | None:
        if not await self.client.collection_exists(self.collection):
            return None
        info = await self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        if isinstance(vectors, models.VectorParams):
            return vectors.size
        raise ValueError(f"collection {self.collection!r} has named vectors, not one unnamed vector")

    async def ensure(self, dimension: int) -> None:
        stored = self._dimension or await self._stored_dimension()
        if stored is None:
            try:
                await self.client.create_collection(
                    self.collection,
                    vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                )
            except Exception:
                # Another replica may have created it first: that is fine if it has our dimension.
                stored = await self._stored_dimension()
                if stored is None:
                    raise
            else:
                stored = dimension
            for field, schema in (
                (OWNER_FIELD, models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)),
                (DOCUMENT_FIELD, models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD)),
            ):
                await self.client.create_payload_index(self.collection, field, field_schema=schema, wait=True)
        if stored != dimension:
            raise ValueError(f"collection {self.collection!r} holds {stored}-d vectors, not {dimension}-d")
        self._dimension = stored

    async def upsert(self, points: list[ChunkVector]) -> None:
        if not points:
            return
        await self.client.upsert(
            self.collection,
            points=[
                models.PointStruct(
                    id=p.id,
                    vector=list(p.vector),
                    payload={OWNER_FIELD: p.owner_id, DOCUMENT_FIELD: p.document_id, CHUNK_INDEX_FIELD: p.chunk_index},
                )
                for p in points
            ],
            wait=True,
        )

    async def search(
        self, vector: list[float], *, owner_id: str, top_k: int, document_ids: list[str] | None = None
    ) -> list[VectorHit]:
        if top_k <= 0 or document_ids == []:
            return []
        must: list[models.Condition] = [models.FieldCondition(key=OWNER_FIELD, match=models.MatchValue(value=owner_id))]
        if document_ids is not None:
            must.append(models.FieldCondition(key=DOCUMENT_FIELD, match=models.MatchAny(any=list(document_ids))))
        response = await self.client.query_points(
            self.collection,
            query=list(vector),
            query_filter=models.Filter(must=must),
            limit=top_k,
            with_payload=[DOCUMENT_FIELD, CHUNK_INDEX_FIELD],
        )
        return [
            VectorHit(
                str(p.id),
                float(p.score),
                str((p.payload or {})[DOCUMENT_FIELD]),
                int((p.payload or {})[CHUNK_INDEX_FIELD]),
            )
            for p in response.points
        ]

    def _document_filter(self, document_id: str) -> models.Filter:
        return models.Filter(
            must=[models.FieldCondition(key=DOCUMENT_FIELD, match=models.MatchValue(value=document_id))]
        )

    async def delete_document(self, document_id: str) -> int:
        if not await self.client.collection_exists(self.collection):
            return 0
        flt = self._document_filter(document_id)
        n = (await self.client.count(self.collection, count_filter=flt, exact=True)).count
        if n:
            await self.client.delete(self.collection, points_selector=models.FilterSelector(filter=flt), wait=True)
        return n

    async def count(self, *, document_id: str | None = None) -> int:
        if not await self.client.collection_exists(self.collection):
            return 0
        flt = self._document_filter(document_id) if document_id is not None else None
        return (await self.client.count(self.collection, count_filter=flt, exact=True)).count

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()

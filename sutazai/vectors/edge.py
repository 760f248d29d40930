"""The embedded vector store's engine: one qdrant-edge shard (Qdrant's engine in-process: HNSW, payload
indexes, WAL) in a folder, in plain Python.

`EdgeShardStore` is synchronous and single-process: qdrant-edge locks the shard's WAL, so exactly one
process may open a folder. In the app that process is the `vector-store` Ray actor
(deployments/vector_store.py), which every replica calls; tests and the bench use it in-process,
through `EdgeVectorStore` (the async `VectorStore` over it).

Layout under the folder: `shard/` (qdrant-edge's segments and WAL) and `meta.json` (the dimension,
written once the shard exists: qdrant-edge 0.9 does not report a shard's vector size).

Durability: each write goes to the WAL and is flushed before it returns, so a write that returned
survives a crash of the process. Indexing: qdrant-edge has no background optimizer: new points sit
in an appendable segment searched exactly (filtered by the keyword payload index); `optimize()`
builds HNSW segments and blocks the process (it holds the GIL) while it runs, so it is run only when
the unindexed points pass `optimize_threshold` (and on open, when the folder already has that many).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import qdrant_edge as qe

from sutazai.vectors.store import CHUNK_INDEX_FIELD, DOCUMENT_FIELD, OWNER_FIELD, ChunkVector, VectorHit

logger = logging.getLogger("sutazai.vectors.edge")

OPTIMIZE_THRESHOLD = 50_000  # unindexed points (exact search over them stays a few ms below this)


class EdgeShardStore:
    """One qdrant-edge shard in `path`, opened at construction when it exists."""

    def __init__(self, path: str | Path, *, optimize_threshold: int = OPTIMIZE_THRESHOLD) -> None:
        self.path = Path(path)
        self.optimize_threshold = optimize_threshold
        self._shard: qe.EdgeShard | None = None
        self.dimension: int | None = None
        self.optimizations = 0
        # Unindexed points left by the last optimize (segments under qdrant's indexing threshold stay
        # plain): the next one runs once `optimize_threshold` more have come, not on every write.
        self._unindexed_baseline = 0
        meta = self._meta_path()
        if meta.exists() and (self.path / "shard").exists():
            self.dimension = int(json.loads(meta.read_text())["dimension"])
            self._shard = qe.EdgeShard.load(str(self.path / "shard"), self._config(self.dimension))
            self._maybe_optimize()

    def _meta_path(self) -> Path:
        return self.path / "meta.json"

    @staticmethod
    def _config(dimension: int) -> qe.EdgeConfig:
        return qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine))

    def ensure(self, dimension: int) -> None:
        if self.dimension is not None:
            if dimension != self.dimension:
                raise ValueError(f"the vector store holds {self.dimension}-d vectors, not {dimension}-d")
            return
        shard_dir = self.path / "shard"
        self.path.mkdir(parents=True, exist_ok=True)
        if shard_dir.exists() and any(shard_dir.iterdir()):
            # A shard without meta.json (meta written after create, so a crash between them): loading with
            # the config checks the dimension against the stored segments.
            try:
                shard = qe.EdgeShard.load(str(shard_dir), self._config(dimension))
            except Exception as exc:
                raise ValueError(f"the vector store at {shard_dir} does not hold {dimension}-d vectors: {exc}") from exc
        else:
            shard = qe.EdgeShard.create(str(shard_dir), self._config(dimension))
        for field in (OWNER_FIELD, DOCUMENT_FIELD):
            shard.update(qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword))
        shard.flush()
        tmp = self._meta_path().with_suffix(".tmp")
        tmp.write_text(json.dumps({"dimension": dimension, "distance": "cosine"}))
        os.replace(tmp, self._meta_path())
        self._shard, self.dimension = shard, dimension

    def _open(self) -> qe.EdgeShard:
        if self._shard is None:
            raise RuntimeError("the vector store has no shard yet: call ensure(dimension) first")
        return self._shard

    def upsert(self, points: list[ChunkVector]) -> None:
        if not points:
            return
        shard = self._open()
        for p in points:
            if len(p.vector) != self.dimension:
                raise ValueError(f"point {p.id} has {len(p.vector)} dimensions, the store {self.dimension}")
        shard.update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(
                        p.id,
                        list(p.vector),
                        {OWNER_FIELD: p.owner_id, DOCUMENT_FIELD: p.document_id, CHUNK_INDEX_FIELD: p.chunk_index},
                    )
                    for p in points
                ]
            )
        )
        shard.flush()
        self._maybe_optimize()

    def search(
        self, vector: list[float], *, owner_id: str, top_k: int, document_ids: list[str] | None = None
    ) -> list[VectorHit]:
        if self._shard is None or top_k <= 0 or document_ids == []:
            return []
        if len(vector) != self.dimension:
            raise ValueError(f"the query has {len(vector)} dimensions, the store {self.dimension}")
        must: list[qe.FieldCondition] = [qe.FieldCondition(OWNER_FIELD, match=qe.MatchValue(owner_id))]
        if document_ids is not None:
            must.append(qe.FieldCondition(DOCUMENT_FIELD, match=qe.MatchAny(list(document_ids))))
        found = self._shard.query(
            qe.QueryRequest(
                limit=top_k,
                query=qe.Query.Nearest(list(vector)),
                filter=qe.Filter(must=list(must)),
                with_payload=qe.PayloadSelector.Include([DOCUMENT_FIELD, CHUNK_INDEX_FIELD]),
            )
        )
        return [
            VectorHit(
                str(hit.id),
                float(hit.score),
                str((hit.payload or {})[DOCUMENT_FIELD]),
                int((hit.payload or {})[CHUNK_INDEX_FIELD]),
            )
            for hit in found
        ]

    def delete_document(self, document_id: str) -> int:
        if self._shard is None:
            return 0
        doc = qe.Filter(must=[qe.FieldCondition(DOCUMENT_FIELD, match=qe.MatchValue(document_id))])
        n = self._shard.count(qe.CountRequest(exact=True, filter=doc))
        if n:
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(doc))
            self._shard.flush()
        return n

    def count(self, *, document_id: str | None = None) -> int:
        if self._shard is None:
            return 0
        flt = None
        if document_id is not None:
            flt = qe.Filter(must=[qe.FieldCondition(DOCUMENT_FIELD, match=qe.MatchValue(document_id))])
        return self._shard.count(qe.CountRequest(exact=True, filter=flt))

    def unindexed(self) -> int:
        if self._shard is None:
            return 0
        info = self._shard.info()
        return max(0, info.points_count - info.indexed_vectors_count)

    def optimize(self) -> bool:
        """Build HNSW segments out of the appendable ones (blocks this process while it runs)."""
        if self._shard is None:
            return False
        started = time.monotonic()
        changed = self._shard.optimize()
        self._shard.flush()
        self.optimizations += 1
        self._unindexed_baseline = self.unindexed()
        logger.info("vector shard optimized in %.1f s", time.monotonic() - started)
        return changed

    def _maybe_optimize(self) -> None:
        if self.optimize_threshold > 0 and self.unindexed() - self._unindexed_baseline >= self.optimize_threshold:
            self.optimize()

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None


class EdgeVectorStore:
    """The `VectorStore` over an in-process `EdgeShardStore` (tests, bench, a single-process tool).
    Calls run inline: qdrant-edge keeps the GIL while it works, so a thread would not help."""

    def __init__(self, path: str | Path, *, optimize_threshold: int = OPTIMIZE_THRESHOLD) -> None:
        self.shard = EdgeShardStore(path, optimize_threshold=optimize_threshold)

    async def ensure(self, dimension: int) -> None:
        self.shard.ensure(dimension)

    async def upsert(self, points: list[ChunkVector]) -> None:
        self.shard.upsert(points)

    async def search(
        self, vector: list[float], *, owner_id: str, top_k: int, document_ids: list[str] | None = None
    ) -> list[VectorHit]:
        return self.shard.search(vector, owner_id=owner_id, top_k=top_k, document_ids=document_ids)

    async def delete_document(self, document_id: str) -> int:
        return self.shard.delete_document(document_id)

    async def count(self, *, document_id: str | None = None) -> int:
        return self.shard.count(document_id=document_id)

    async def close(self) -> None:
        self.shard.close()

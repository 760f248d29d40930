"""Document chunk vectors: one interface (`VectorStore`), a Qdrant server or the embedded edge shard."""

from sutazai.vectors.store import ChunkVector, VectorHit, VectorStore

__all__ = ["ChunkVector", "VectorHit", "VectorStore"]

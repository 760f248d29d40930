"""Index one document: parse, chunk, store the chunks, embed them in batches, upsert the
vectors, report progress after each batch, and end 'ready' (or 'failed' with the error).

`index_document` depends only on its arguments, so the agent runner actor can run it as
a task of kind 'index' (and the ingress inline while no runner takes that kind). It is
idempotent: indexing again deletes the document's vectors first and replaces its chunks;
chunk ids (the vectors' point ids) are the same for the same positions.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from sutazai.documents.chunking import Chunk, chunk
from sutazai.documents.parsing import parse
from sutazai.errors import NotFound, SutazaiError
from sutazai.schemas.embeddings import EmbeddingResult
from sutazai.settings import Settings
from sutazai.storage.documents import Document, DocumentStore
from sutazai.vectors.store import ChunkVector, VectorStore

logger = logging.getLogger("sutazai.documents")

EMBED_BATCH = 32

Progress = Callable[[int, int], Awaitable[None]]
"""Called after each batch with (chunks indexed, chunks in all): a task's heartbeat and event."""


class Embedder(Protocol):
    """`sutazai.embeddings.EmbeddingClient` is one."""

    async def embed(self, texts: list[str]) -> EmbeddingResult: ...


def error_of(exc: BaseException) -> dict[str, str]:
    """The {"code", "message"} stored on a failed document (no stack trace, no internals)."""
    if isinstance(exc, SutazaiError):
        return {"code": exc.code, "message": exc.message}
    return {"code": "indexing_failed", "message": f"indexing failed ({type(exc).__name__})"}


async def index_document(
    document: Document,
    data: bytes,
    *,
    store: DocumentStore,
    embedder: Embedder,
    vectors: VectorStore,
    settings: Settings,
    progress: Progress | None = None,
) -> int:
    """Index `document` (whose original is `data`); returns how many chunks it has.

    Any failure marks the document 'failed' with `error_of(exc)` and is raised again, so the
    caller (a task runner) can retry what may pass next time (`Unavailable`). A document
    deleted meanwhile raises `NotFound` and leaves no vectors behind."""
    document_id, owner = str(document.id), str(document.owner_id)
    try:
        await store.set_status(document.id, "indexing")
        parsed = await asyncio.to_thread(parse, data, document.filename, document.media_type)
        chunks = await asyncio.to_thread(
            chunk,
            parsed.text,
            tokens=settings.chunk_tokens,
            overlap=settings.chunk_overlap_tokens,
            media_type=parsed.media_type,
            pages=[(p.start, p.end, p.number) for p in parsed.pages] or None,
        )
        await vectors.delete_document(document_id)  # a re-index starts clean
        ids = await store.replace_chunks(document.id, chunks)
        indexed = 0
        for start in range(0, len(chunks), EMBED_BATCH):
            batch, batch_ids = chunks[start : start + EMBED_BATCH], ids[start : start + EMBED_BATCH]
            result = await embedder.embed([c.text for c in batch])
            if start == 0:
                await vectors.ensure(len(result.vectors[0]))
            await vectors.upsert(_points(batch, batch_ids, result, document_id, owner))
            indexed += len(batch)
            await store.set_progress(document.id, indexed)
            if progress is not None:
                await progress(indexed, len(chunks))
        await store.set_status(document.id, "ready", pages=len(parsed.pages) or None)
    except NotFound:
        # Deleted while indexing: the delete may have run before our upserts; take them back.
        if await store.find(document.id) is None:
            await vectors.delete_document(document_id)
        raise
    except Exception as exc:  # a cancelled run is not a failure: the task runs it again
        if not isinstance(exc, SutazaiError):
            logger.exception("indexing document %s failed", document_id)
        try:
            await store.set_status(document.id, "failed", error=error_of(exc))
        except NotFound:
            await vectors.delete_document(document_id)
        except Exception as again:  # the database is what failed: the task's retry will tell
            logger.warning("could not mark document %s failed: %r", document_id, again)
        raise
    logger.info("indexed document %s: %d chunks", document_id, len(chunks))
    return len(chunks)


def _points(
    batch: Sequence[Chunk], ids: Sequence[uuid.UUID], result: EmbeddingResult, document_id: str, owner: str
) -> list[ChunkVector]:
    if len(result.vectors) != len(batch):
        raise RuntimeError(f"the embedder returned {len(result.vectors)} vectors for {len(batch)} texts")
    return [
        ChunkVector(str(point), vector, document_id, owner, c.index)
        for c, point, vector in zip(batch, ids, result.vectors, strict=True)
    ]

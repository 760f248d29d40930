"""SQL for the `documents` and `document_chunks` tables. Every document has an owner;
queries that a route makes take the caller's user id, so one user never reads another's
documents. Chunk ids are derived from (document id, chunk index) and are the chunks'
point ids in the vector store, so indexing again overwrites instead of duplicating."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

import asyncpg
from pydantic import field_validator

from sutazai.errors import NotFound
from sutazai.storage.records import Record

DocumentStatus = Literal["queued", "indexing", "ready", "failed"]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class Document(Record):
    id: uuid.UUID
    owner_id: uuid.UUID
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    status: DocumentStatus
    error: dict[str, Any] | None
    chunks_total: int
    chunks_indexed: int
    pages: int | None
    created_at: datetime
    updated_at: datetime
    indexed_at: datetime | None

    _decode = field_validator("error", mode="before")(_json)


class StoredChunk(Record):
    """A chunk as stored, with its document's name (for citations)."""

    id: uuid.UUID
    document_id: uuid.UUID
    chunk_index: int
    text: str
    start_char: int
    end_char: int
    page: int | None
    tokens: int
    filename: str
    media_type: str


class KeywordHit(StoredChunk):
    score: float  # ts_rank_cd normalised to [0, 1)


class NewChunk(Protocol):
    """What `replace_chunks` stores: `sutazai.documents.chunking.Chunk` is one."""

    @property
    def index(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def page(self) -> int | None: ...
    @property
    def tokens(self) -> int: ...


def chunk_id(document_id: uuid.UUID, chunk_index: int) -> uuid.UUID:
    """The chunk's id, also its point id in the vector store: the same for the same chunk position."""
    return uuid.uuid5(document_id, str(chunk_index))


_DOCUMENT_COLUMNS = """id, owner_id, filename, media_type, size_bytes, sha256, status, error, chunks_total,
    chunks_indexed, pages, created_at, updated_at, indexed_at"""
_CHUNK_COLUMNS = """c.id, c.document_id, c.chunk_index, c.text, c.start_char, c.end_char, c.page, c.tokens,
    d.filename, d.media_type"""


class DocumentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self,
        document_id: uuid.UUID,
        owner_id: uuid.UUID,
        *,
        filename: str,
        media_type: str,
        size_bytes: int,
        sha256: str,
    ) -> Document:
        """A new document, status 'queued'."""
        row = await self.pool.fetchrow(
            f"""INSERT INTO documents (id, owner_id, filename, media_type, size_bytes, sha256, status)
                VALUES ($1, $2, $3, $4, $5, $6, 'queued') RETURNING {_DOCUMENT_COLUMNS}""",
            document_id,
            owner_id,
            filename,
            media_type,
            size_bytes,
            sha256,
        )
        return Document.from_row(row)

    async def get(self, document_id: uuid.UUID, owner_id: uuid.UUID) -> Document:
        """The document if it belongs to `owner_id`; `NotFound` otherwise (someone else's is missing)."""
        row = await self.pool.fetchrow(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE id = $1 AND owner_id = $2", document_id, owner_id
        )
        if row is None:
            raise NotFound.of("document")
        return Document.from_row(row)

    async def find(self, document_id: uuid.UUID) -> Document | None:
        """The document whoever owns it: for the indexer, which has only the id. Never for a route."""
        row = await self.pool.fetchrow(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE id = $1", document_id)
        return Document.from_row(row) if row else None

    async def page(self, owner_id: uuid.UUID, *, limit: int, offset: int) -> tuple[list[Document], int]:
        """One page of the owner's documents, newest first, and how many there are."""
        rows = await self.pool.fetch(
            f"""SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE owner_id = $1
                ORDER BY created_at DESC, id LIMIT $2 OFFSET $3""",
            owner_id,
            limit,
            offset,
        )
        total = await self.pool.fetchval("SELECT count(*) FROM documents WHERE owner_id = $1", owner_id)
        return [Document.from_row(r) for r in rows], total

    async def set_status(
        self,
        document_id: uuid.UUID,
        status: DocumentStatus,
        *,
        error: dict[str, Any] | None = None,
        pages: int | None = None,
    ) -> Document:
        """Move the document to `status` (the error is kept only for 'failed'; 'ready' stamps
        `indexed_at`); `NotFound` when it was deleted meanwhile."""
        row = await self.pool.fetchrow(
            f"""UPDATE documents SET status = $2, error = $3::jsonb, pages = coalesce($4, pages),
                       indexed_at = CASE WHEN $2 = 'ready' THEN now() ELSE indexed_at END, updated_at = now()
                WHERE id = $1 RETURNING {_DOCUMENT_COLUMNS}""",
            document_id,
            status,
            json.dumps(error, ensure_ascii=False, default=str) if error is not None and status == "failed" else None,
            pages,
        )
        if row is None:
            raise NotFound.of("document")
        return Document.from_row(row)

    async def set_progress(self, document_id: uuid.UUID, chunks_indexed: int) -> None:
        """How many chunks have their vectors stored so far; `NotFound` when the document was deleted."""
        updated = await self.pool.execute(
            "UPDATE documents SET chunks_indexed = $2, updated_at = now() WHERE id = $1", document_id, chunks_indexed
        )
        if updated == "UPDATE 0":
            raise NotFound.of("document")

    async def replace_chunks(self, document_id: uuid.UUID, chunks: Sequence[NewChunk]) -> list[uuid.UUID]:
        """The document's chunks become `chunks`, in one transaction; progress resets to 0 of
        len(chunks). Returns the chunk ids, in order; `NotFound` when the document is gone."""
        ids = [chunk_id(document_id, c.index) for c in chunks]
        records = [
            (document_id, c.index, cid, c.text, c.start, c.end, c.page, c.tokens)
            for c, cid in zip(chunks, ids, strict=True)
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            updated = await conn.execute(
                """UPDATE documents SET chunks_total = $2, chunks_indexed = 0, updated_at = now()
                   WHERE id = $1""",
                document_id,
                len(records),
            )
            if updated == "UPDATE 0":
                raise NotFound.of("document")
            await conn.execute("DELETE FROM document_chunks WHERE document_id = $1", document_id)
            if records:
                await conn.copy_records_to_table(
                    "document_chunks",
                    records=records,
                    columns=["document_id", "chunk_index", "id", "text", "start_char", "end_char", "page", "tokens"],
                )
        return ids

    async def chunks_by_ids(
        self, keys: Sequence[tuple[uuid.UUID, int]], *, owner_id: uuid.UUID | None = None
    ) -> list[StoredChunk]:
        """The chunks at these (document id, chunk index) positions, in the order asked (a key
        with no chunk, or of another owner when `owner_id` is given, is left out)."""
        if not keys:
            return []
        rows = await self.pool.fetch(
            f"""SELECT {_CHUNK_COLUMNS}
                FROM unnest($1::uuid[], $2::int[]) WITH ORDINALITY AS k(document_id, chunk_index, n)
                JOIN document_chunks c ON c.document_id = k.document_id AND c.chunk_index = k.chunk_index
                JOIN documents d ON d.id = c.document_id
                WHERE $3::uuid IS NULL OR d.owner_id = $3
                ORDER BY k.n""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            owner_id,
        )
        return [StoredChunk.from_row(r) for r in rows]

    async def keyword_search(
        self,
        owner_id: uuid.UUID,
        query: str,
        *,
        top_k: int,
        document_ids: Sequence[uuid.UUID] | None = None,
    ) -> list[KeywordHit]:
        """The owner's ready chunks that match `query` (web-search syntax: words, "a phrase",
        -not, or), best first by cover density."""
        rows = await self.pool.fetch(
            f"""SELECT {_CHUNK_COLUMNS}, ts_rank_cd(c.tsv, q, 32) AS score
                FROM websearch_to_tsquery('english', $2) AS q, document_chunks c
                JOIN documents d ON d.id = c.document_id
                WHERE d.owner_id = $1 AND d.status = 'ready' AND c.tsv @@ q
                  AND ($4::uuid[] IS NULL OR c.document_id = ANY($4::uuid[]))
                ORDER BY score DESC, c.document_id, c.chunk_index
                LIMIT $3""",
            owner_id,
            query,
            top_k,
            list(document_ids) if document_ids is not None else None,
        )
        return [KeywordHit.from_row(r) for r in rows]

    async def delete(self, document_id: uuid.UUID, owner_id: uuid.UUID) -> Document:
        """Delete the document and its chunks (one statement: the chunks cascade); returns the
        row so the caller can delete the file. `NotFound` when missing or someone else's."""
        row = await self.pool.fetchrow(
            f"DELETE FROM documents WHERE id = $1 AND owner_id = $2 RETURNING {_DOCUMENT_COLUMNS}",
            document_id,
            owner_id,
        )
        if row is None:
            raise NotFound.of("document")
        return Document.from_row(row)

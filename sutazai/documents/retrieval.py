"""Retrieval over a user's documents: hybrid search and the context a model answers from.

Search ranks chunks two ways — by meaning (the query's embedding against the vector store)
and by words (Postgres full-text search over the same chunks) — and fuses the two rankings
with reciprocal rank fusion (RRF, k=60), so an exact term the embedding misses (a name, a
code) still surfaces, and a paraphrase with no shared word does too. Only the caller's own
documents are ever searched: the vector store filters by owner, and the chunks are read
back from Postgres with the owner checked again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

from sutazai.schemas.embeddings import EmbeddingResult
from sutazai.schemas.retrieval import Citation, SearchHit
from sutazai.storage.documents import DocumentStore, StoredChunk
from sutazai.vectors.store import VectorStore

RRF_K = 60  # the usual constant: rank 1 scores 1/61, rank 10 1/70
CANDIDATES = 3  # each ranking contributes top_k * CANDIDATES candidates to the fusion


class QueryEmbedder(Protocol):
    async def embed(self, texts: list[str]) -> EmbeddingResult: ...


async def search_documents(
    *,
    store: DocumentStore,
    embedder: QueryEmbedder,
    vectors: VectorStore,
    owner_id: uuid.UUID,
    query: str,
    top_k: int,
    document_ids: Sequence[uuid.UUID] | None = None,
) -> list[SearchHit]:
    """The `top_k` best chunks of the owner's documents for `query`, best first."""
    embedded = await embedder.embed([query])
    wanted = top_k * CANDIDATES
    by_vector = await vectors.search(
        embedded.vectors[0],
        owner_id=str(owner_id),
        top_k=wanted,
        document_ids=[str(d) for d in document_ids] if document_ids is not None else None,
    )
    by_keyword = await store.keyword_search(owner_id, query, top_k=wanted, document_ids=document_ids)

    fused: dict[tuple[uuid.UUID, int], float] = {}
    vector_scores: dict[tuple[uuid.UUID, int], float] = {}
    keyword_scores: dict[tuple[uuid.UUID, int], float] = {}
    for rank, hit in enumerate(by_vector, start=1):
        key = (uuid.UUID(hit.document_id), hit.chunk_index)
        fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
        vector_scores[key] = hit.score
    for rank, kw in enumerate(by_keyword, start=1):
        key = (kw.document_id, kw.chunk_index)
        fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
        keyword_scores[key] = kw.score
    best = sorted(fused, key=lambda k: (-fused[k], str(k[0]), k[1]))[:top_k]
    chunks = await store.chunks_by_ids(best, owner_id=owner_id)  # the owner checked again, in Postgres
    return [
        _hit(c, fused[key], vector_scores.get(key), keyword_scores.get(key))
        for c in chunks
        if (key := (c.document_id, c.chunk_index)) in fused
    ]


def _hit(chunk: StoredChunk, score: float, vector: float | None, keyword: float | None) -> SearchHit:
    return SearchHit(
        document_id=chunk.document_id,
        filename=chunk.filename,
        chunk_index=chunk.chunk_index,
        page=chunk.page,
        start_char=chunk.start_char,
        end_char=chunk.end_char,
        score=round(score, 6),
        text=chunk.text,
        vector_score=vector,
        keyword_score=keyword,
        tokens=chunk.tokens,
    )


def within_budget(hits: Sequence[SearchHit], budget_tokens: int) -> list[SearchHit]:
    """The best hits whose chunks fit in `budget_tokens` together (a chunk never goes in cut)."""
    chosen, used = [], 0
    for hit in hits:
        if used + hit.tokens > budget_tokens:
            continue
        chosen.append(hit)
        used += hit.tokens
    return chosen


def context_prompt(hits: Sequence[SearchHit]) -> str:
    """A system message with the excerpts, numbered as the citations are."""
    lines = [
        "Answer from these excerpts of the user's documents when they are relevant, and cite them by number like [1]."
    ]
    for n, hit in enumerate(hits, start=1):
        where = f"{hit.filename}, page {hit.page}" if hit.page else hit.filename
        lines.append(f"[{n}] ({where}) {' '.join(hit.text.split())}")
    return "\n".join(lines)


def citations(hits: Sequence[SearchHit]) -> list[Citation]:
    return [Citation.model_validate(h.model_dump(include=set(Citation.model_fields))) for h in hits]

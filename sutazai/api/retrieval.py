"""Search over the caller's own documents (hybrid: meaning and words, fused)."""

from __future__ import annotations

from fastapi import APIRouter

from sutazai.api.deps import ServicesDep, ViewerDep
from sutazai.documents.retrieval import search_documents
from sutazai.embeddings import resolve_embedder
from sutazai.errors import Unavailable
from sutazai.schemas.retrieval import DocumentSearch, SearchResults
from sutazai.services import Services
from sutazai.vectors.store import VectorStore

router = APIRouter(prefix="/api/v1/documents", tags=["documents"])


def retrieval_parts(services: Services) -> VectorStore:
    """The vector store; 503 when this replica cannot search (no embedder deployed, no vector store)."""
    if not services.embeddings or services.vectors is None:
        message = "document search needs an embedding model and a vector store"
        raise Unavailable(message, services.settings.retry_after_s)
    return services.vectors


@router.post("/search", response_model=SearchResults)
async def search(body: DocumentSearch, caller: ViewerDep, services: ServicesDep) -> SearchResults:
    """The chunks of your documents that best match `query`, best first, with scores and spans."""
    vectors = retrieval_parts(services)
    hits = await search_documents(
        store=services.documents,
        embedder=resolve_embedder(services.embeddings, None),
        vectors=vectors,
        owner_id=caller.user_id,
        query=body.query,
        top_k=body.top_k,
        document_ids=body.document_ids,
    )
    return SearchResults(query=body.query, items=hits)

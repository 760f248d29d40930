"""Search over the caller's own documents (hybrid: meaning and words, fused)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from sutazai.api.deps import ServicesDep, ViewerDep
from sutazai.documents.retrieval import citations, context_prompt, search_documents, within_budget
from sutazai.embeddings import resolve_embedder
from sutazai.errors import Unavailable
from sutazai.schemas.engine import ChatMessage, GenerationRequest
from sutazai.schemas.retrieval import Citation, DocumentSearch, DocumentsOption, SearchResults
from sutazai.services import Services
from sutazai.vectors.store import VectorStore

router = APIRouter(prefix="/api/v1/documents", tags=["documents"])

CONTEXT_MARGIN = 64  # tokens kept free: the template's own tokens, the estimate's error


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


async def grounding(
    services: Services,
    owner_id: uuid.UUID,
    option: DocumentsOption,
    query: str,
    request: GenerationRequest,
    context_length: int,
) -> tuple[ChatMessage | None, list[Citation]]:
    """The system message of excerpts for a chat turn that asked for documents, and their
    citations: the best chunks for `query` that fit in what the model's context has left
    after the prompt and the answer's `max_tokens`."""
    if not option.use_documents:
        return None, []
    vectors = retrieval_parts(services)
    budget = context_length - request.estimated_prompt_tokens() - request.max_tokens - CONTEXT_MARGIN
    if budget <= 0:
        return None, []
    hits = await search_documents(
        store=services.documents,
        embedder=resolve_embedder(services.embeddings, None),
        vectors=vectors,
        owner_id=owner_id,
        query=query,
        top_k=option.documents_top_k,
        document_ids=option.document_ids,
    )
    chosen = within_budget(hits, budget)
    if not chosen:
        return None, []
    return ChatMessage(role="system", content=context_prompt(chosen)), citations(chosen)


def with_context(messages: list[ChatMessage], context: ChatMessage | None) -> list[ChatMessage]:
    """The excerpts go right after the leading system messages, before the conversation."""
    if context is None:
        return messages
    at = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    return [*messages[:at], context, *messages[at:]]

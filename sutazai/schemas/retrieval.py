"""Searching documents, and citations: what an answer grounded in documents points at."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from sutazai.schemas.common import Text


class Citation(BaseModel):
    """Where a piece of an answer came from: a chunk of one of the caller's documents."""

    document_id: uuid.UUID
    filename: str
    chunk_index: int
    page: int | None
    start_char: int  # the chunk's span in the document's extracted text
    end_char: int
    score: float  # the fused (RRF) score; higher is better
    text: str


class SearchHit(Citation):
    vector_score: float | None  # cosine similarity, when the vector search found it
    keyword_score: float | None  # full-text rank, when the keyword search found it
    tokens: int


class DocumentSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Text = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=5, ge=1, le=50)
    document_ids: list[uuid.UUID] | None = Field(default=None, max_length=100)  # only these (of yours)


class SearchResults(BaseModel):
    query: str
    items: list[SearchHit]


class DocumentsOption(BaseModel):
    """Retrieval as an option of a chat request: the best chunks of your documents go into the
    prompt (within the model's context) and the answer lists them as citations."""

    use_documents: bool = False
    document_ids: list[uuid.UUID] | None = Field(default=None, max_length=100)  # only these (of yours)
    documents_top_k: int = Field(default=4, ge=1, le=20)

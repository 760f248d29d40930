"""Searching documents, and retrieval as an option of chat."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from sutazai.documents.retrieval import Citation, SearchHit
from sutazai.schemas.common import Text

__all__ = ["Citation", "DocumentSearch", "SearchHit", "SearchResults"]


class DocumentSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Text = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=5, ge=1, le=50)
    document_ids: list[uuid.UUID] | None = Field(default=None, max_length=100)  # only these (of yours)


class SearchResults(BaseModel):
    query: str
    items: list[SearchHit]

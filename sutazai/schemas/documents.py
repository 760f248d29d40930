"""Documents as the API shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from sutazai.storage.documents import Document, DocumentStatus


class DocumentOut(BaseModel):
    id: uuid.UUID
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    status: DocumentStatus
    error: dict[str, Any] | None  # {"code", "message"} when failed
    chunks_total: int
    chunks_indexed: int
    progress: float  # chunks_indexed / chunks_total; 1.0 once ready
    pages: int | None
    created_at: datetime
    updated_at: datetime
    indexed_at: datetime | None

    @classmethod
    def of(cls, document: Document) -> DocumentOut:
        if document.status == "ready":
            progress = 1.0
        elif document.chunks_total:
            progress = min(1.0, document.chunks_indexed / document.chunks_total)
        else:
            progress = 0.0
        return cls(**document.model_dump(exclude={"owner_id"}), progress=round(progress, 4))

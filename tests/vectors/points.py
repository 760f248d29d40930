"""Test points for the vector stores: one distinct direction per index."""

from __future__ import annotations

import uuid

from sutazai.vectors.store import ChunkVector

DIM = 8


def unit(i: int, dim: int = DIM) -> list[float]:
    """A distinct direction per i: cosine 1 with itself, lower with the others."""
    v = [0.01] * dim
    v[i % dim] = 1.0
    return v


def chunks(document_id: str, owner_id: str, n: int, start: int = 0) -> list[ChunkVector]:
    return [ChunkVector(str(uuid.uuid4()), unit(start + i), document_id, owner_id, i) for i in range(n)]


def new_id() -> str:
    return str(uuid.uuid4())

"""Shapes shared by every router: the list envelope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """Every list answers this envelope: one page of `items` out of `total`."""

    items: list[T]
    total: int
    limit: int
    offset: int

    @classmethod
    def of_all(cls, everything: Sequence[T], limit: int, offset: int) -> Page[T]:
        """A page of a list that is already in memory (config, catalog)."""
        return cls(items=list(everything[offset : offset + limit]), total=len(everything), limit=limit, offset=offset)

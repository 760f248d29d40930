"""The base of every stored record: a frozen pydantic model that responses can reuse."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """The record from a database row (extra columns of a join are ignored)."""
        return cls.model_validate({name: row[name] for name in cls.model_fields if name in row})

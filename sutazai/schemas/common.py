"""Shapes shared by every router: the list envelope and the text type of every user-supplied string."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, SecretStr

INT32_MAX = 2**31 - 1  # the largest INTEGER Postgres stores
MAX_TEXT = 32_000  # characters of one message or prompt
MAX_STOP = 64  # characters of one stop string: the engine checks every stop at every token


def clean_text(value: str) -> str:
    """Text that Postgres, JSON and the tokenizer all accept: no NUL, no lone surrogate."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (it has a lone surrogate)") from None
    return value


def _clean_secret(value: SecretStr) -> SecretStr:
    clean_text(value.get_secret_value())
    return value


Text = Annotated[str, AfterValidator(clean_text)]
"""Every user-supplied string: constrain its length with Field(...) where it is declared."""

SecretText = Annotated[SecretStr, AfterValidator(_clean_secret)]

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

"""Embeddings: what the embedder deployment answers, and OpenAI's `/v1/embeddings` shapes.

`EmbeddingResult` crosses Ray between the ingress and the embedder deployment
(`deployments/embedder.py`). The request and response are OpenAI's, field for field, so the
official client works unchanged; it asks for `encoding_format="base64"` unless told otherwise
and decodes little-endian float32 bytes (`encode_base64` / `decode_base64`).
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sutazai.errors import BadRequest
from sutazai.schemas.common import MAX_TEXT, Text

MAX_INPUTS = 2048  # OpenAI's limit on inputs per request


class EmbeddingResult(BaseModel):
    """One vector per input text, in order, and the tokens each input has (special tokens included)."""

    vectors: list[list[float]]
    tokens: list[int]


class EmbedderInfo(BaseModel):
    name: str
    dimension: int
    max_input_tokens: int


def encode_base64(vector: list[float]) -> str:
    """A vector as OpenAI sends it with `encoding_format="base64"`: little-endian float32 bytes."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_base64(data: str) -> list[float]:
    return np.frombuffer(base64.b64decode(data), dtype="<f4").tolist()


class EmbeddingRequest(BaseModel):
    """OpenAI's request. Unknown fields are ignored (clients send many); token arrays as input are refused."""

    model_config = ConfigDict(extra="ignore")

    input: Text | list[Text] = Field(description="A text or a list of texts (token arrays are not supported).")
    model: str | None = Field(default=None, max_length=256, description="An embedding model; default: the first.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, max_length=256)

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("input must not be empty")
            if len(value) > MAX_INPUTS:
                raise ValueError(f"at most {MAX_INPUTS} inputs per request")
            if any(isinstance(v, int | list) for v in value):
                raise ValueError("token arrays are not supported; send text")
            if any(isinstance(v, str) and len(v) > MAX_TEXT for v in value):
                raise ValueError(f"an input is longer than {MAX_TEXT} characters")
        elif isinstance(value, str) and len(value) > MAX_TEXT:
            raise ValueError(f"input is longer than {MAX_TEXT} characters")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)

    def check_dimensions(self, model: str, native: int) -> None:
        """`dimensions` other than the model's own size is a 400 (this model cannot shorten its vectors)."""
        if self.dimensions is not None and self.dimensions != native:
            raise BadRequest(
                f"dimensions is not supported by {model}: its vectors have {native} dimensions",
                code="unsupported_dimensions",
            )


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # a base64 string with encoding_format="base64"


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage

    @classmethod
    def of(cls, model: str, result: EmbeddingResult, encoding_format: str) -> EmbeddingResponse:
        as_base64 = encoding_format == "base64"
        data = [
            Embedding(index=i, embedding=encode_base64(v) if as_base64 else v) for i, v in enumerate(result.vectors)
        ]
        tokens = sum(result.tokens)
        return cls(data=data, model=model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))

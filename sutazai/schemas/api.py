"""Request and response models of the /api/v1 chat, conversation and model routes."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from sutazai.schemas.common import INT32_MAX, MAX_STOP, MAX_TEXT, Text
from sutazai.schemas.engine import FinishReason, Usage
from sutazai.schemas.retrieval import Citation, DocumentsOption
from sutazai.storage.conversations import Conversation, StoredMessage


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampling(_Request):
    """Optional sampling overrides; unset fields take the model file's defaults."""

    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: list[Annotated[Text, Field(min_length=1, max_length=MAX_STOP)]] = Field(default_factory=list, max_length=4)
    seed: int | None = Field(default=None, ge=0, le=INT32_MAX)


class ChatRequest(Sampling, DocumentsOption):
    message: Text = Field(min_length=1, max_length=MAX_TEXT)
    conversation_id: uuid.UUID | None = None
    model: Text | None = Field(default=None, max_length=64)
    system_prompt: Text | None = Field(default=None, max_length=MAX_TEXT)


class GenerateRequest(Sampling):
    prompt: Text = Field(min_length=1, max_length=MAX_TEXT)
    model: Text | None = Field(default=None, max_length=64)


class BatchRequest(Sampling):
    prompts: list[Annotated[Text, Field(min_length=1, max_length=MAX_TEXT)]] = Field(min_length=1, max_length=256)
    model: Text | None = Field(default=None, max_length=64)


class MessageOut(BaseModel):
    role: str
    content: str


class ChatResponse(BaseModel):
    conversation_id: uuid.UUID
    model: str
    message: MessageOut
    finish_reason: FinishReason
    usage: Usage
    cached: bool
    request_id: str | None
    citations: list[Citation] | None = None  # when use_documents found excerpts


class TokenEvent(BaseModel):
    """`token` event of /chat/stream."""

    text: str


class ChatDone(BaseModel):
    """`done` event of /chat/stream: the turn is stored."""

    conversation_id: uuid.UUID
    model: str
    finish_reason: FinishReason
    usage: Usage
    cached: bool
    request_id: str | None
    citations: list[Citation] | None = None


class GenerateResponse(BaseModel):
    model: str
    text: str
    finish_reason: FinishReason
    usage: Usage
    cached: bool
    request_id: str | None


class ErrorInfo(BaseModel):
    code: str
    message: str


class BatchItem(BaseModel):
    index: int
    text: str | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    cached: bool = False
    error: ErrorInfo | None = None


class BatchResponse(BaseModel):
    model: str
    results: list[BatchItem]
    usage: Usage
    succeeded: int
    failed: int
    request_id: str | None


class ConversationDetail(Conversation):
    messages: list[StoredMessage]


class ModelInfo(BaseModel):
    name: str
    engine: Literal["cpu", "vllm"]
    context_length: int
    default_sampling: dict[str, float | int]
    autoscaling: dict[str, float | int]
    default: bool

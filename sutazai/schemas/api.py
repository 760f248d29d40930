"""Request and response models of the /api/v1 routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TEXT = 32_000


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampling(_Request):
    """Optional sampling overrides; unset fields take the model file's defaults."""

    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=4)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class ChatRequest(Sampling):
    message: str = Field(min_length=1, max_length=MAX_TEXT)
    conversation_id: uuid.UUID | None = None
    model: str | None = Field(default=None, max_length=64)
    system_prompt: str | None = Field(default=None, max_length=MAX_TEXT)


class GenerateRequest(Sampling):
    prompt: str = Field(min_length=1, max_length=MAX_TEXT)
    model: str | None = Field(default=None, max_length=64)


class BatchRequest(Sampling):
    prompts: list[Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]] = Field(min_length=1, max_length=256)
    model: str | None = Field(default=None, max_length=64)


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class MessageOut(BaseModel):
    role: str
    content: str


class ChatResponse(BaseModel):
    conversation_id: uuid.UUID
    model: str
    message: MessageOut
    finish_reason: str
    usage: UsageOut
    cached: bool
    request_id: str | None


class GenerateResponse(BaseModel):
    model: str
    text: str
    finish_reason: str
    usage: UsageOut
    cached: bool
    request_id: str | None


class BatchItem(BaseModel):
    index: int
    text: str | None = None
    finish_reason: str | None = None
    usage: UsageOut | None = None
    cached: bool = False
    error: dict | None = None


class BatchResponse(BaseModel):
    model: str
    results: list[BatchItem]
    usage: UsageOut
    succeeded: int
    failed: int
    request_id: str | None


class ConversationSummary(BaseModel):
    id: uuid.UUID
    title: str
    model: str
    message_count: int
    created_at: datetime
    updated_at: datetime


class ConversationList(BaseModel):
    conversations: list[ConversationSummary]
    total: int
    limit: int
    offset: int


class StoredMessageOut(BaseModel):
    role: str
    content: str
    tokens: int
    created_at: datetime


class ConversationDetail(ConversationSummary):
    messages: list[StoredMessageOut]


class ModelInfo(BaseModel):
    name: str
    engine: Literal["cpu", "vllm"]
    context_length: int
    default_sampling: dict
    autoscaling: dict
    default: bool


class CacheInvalidateRequest(_Request):
    model: str | None = Field(default=None, max_length=64)

"""The OpenAI protocol subset we serve: chat completions, completions, models.

Requests: unknown fields are accepted and ignored (clients send many), but the
ones we read are validated; features we do not serve (n > 1, tools other than
functions) are refused with a clear 4xx rather than silently ignored. Responses and stream chunks are
typed here too, field for field as OpenAI sends them (vLLM's
`entrypoints/openai/protocol.py` is the model).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sutazai.schemas.common import INT32_MAX, MAX_STOP, MAX_TEXT, Text, clean_text
from sutazai.schemas.engine import Usage
from sutazai.schemas.retrieval import Citation, DocumentsOption


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionCall(BaseModel):
    name: str
    arguments: str  # a JSON string


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class OpenAIMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=64)
    tool_call_id: Text | None = Field(default=None, max_length=256)
    name: Text | None = Field(default=None, max_length=64)

    def text(self) -> str:
        """The message's text; content parts other than text are refused (ValueError)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("only text content parts are supported")
            parts.append(clean_text(part["text"]))
        return "".join(parts)


class StreamOptions(_Lenient):
    include_usage: bool = False


class _SamplingFields(_Lenient):
    model: Text = Field(min_length=1, max_length=64)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(default_factory=list)
    seed: int | None = Field(default=None, ge=0, le=INT32_MAX)
    n: int = Field(default=1, ge=1, le=1, description="only n=1 is served")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Text | None = Field(default=None, max_length=256)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        if value is None:
            return []
        value = [value] if isinstance(value, str) else value
        if len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not 0 < len(stop) <= MAX_STOP for stop in value):
            raise ValueError(f"each stop sequence must have 1-{MAX_STOP} characters")
        return [clean_text(stop) for stop in value]


class ChatCompletionRequest(_SamplingFields, DocumentsOption):
    """OpenAI's request; `use_documents`, `document_ids` and `documents_top_k` are ours (the
    official client sends them with `extra_body`): the answer then carries `citations`."""

    messages: list[OpenAIMessage] = Field(min_length=1, max_length=512)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _newer_name_wins(self) -> ChatCompletionRequest:
        """`max_completion_tokens` is the current name of `max_tokens`; when given, it is the limit."""
        if self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        return self


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] = Field(min_length=1)
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, value: str | list[str]) -> str | list[str]:
        prompts = [value] if isinstance(value, str) else value
        if not prompts or len(prompts) > 64 or any(not p for p in prompts):
            raise ValueError("prompt must be a non-empty string or 1-64 non-empty strings")
        if any(len(p) > MAX_TEXT for p in prompts):
            raise ValueError(f"each prompt may have at most {MAX_TEXT} characters")
        for p in prompts:
            clean_text(p)
        return value


# -- responses --------------------------------------------------------------------------

OpenAIFinishReason = Literal["stop", "length", "tool_calls"]


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class _AlwaysSent(BaseModel):
    """Stream events leave unset fields out; the fields named in `_always` are sent even at their
    defaults, because clients read them (the SDK's stream helpers skip a chunk without `object`)."""

    _always: ClassVar[tuple[str, ...]] = ()

    def model_post_init(self, context: Any, /) -> None:
        self.__pydantic_fields_set__.update(self._always)


class _Response(_AlwaysSent):
    """What every completion object and chunk starts with."""

    _always = ("object", "created")

    id: str
    created: int = Field(default_factory=now)
    model: str


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: OpenAIFinishReason
    logprobs: None = None


class ChatCompletionResponse(_Response):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: Usage
    citations: list[Citation] | None = None  # ours: the excerpts `use_documents` put in the prompt


class DeltaFunctionCall(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    """One piece of a streamed tool call: the first has index, id, type and name."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunctionCall


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChatChunkChoice(_AlwaysSent):
    _always = ("index", "finish_reason")

    index: int = 0
    delta: DeltaMessage
    finish_reason: OpenAIFinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(_Response):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    citations: list[Citation] | None = None  # ours, on the chunk with the finish reason


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: OpenAIFinishReason | None
    logprobs: None = None


class CompletionChunk(_Response):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: Usage | None = None


class CompletionResponse(CompletionChunk):
    """The whole completion: OpenAI sends the same object as its stream chunks, with usage."""

    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "sutazai"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]

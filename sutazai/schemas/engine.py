"""The protocol between the ingress and every model deployment, whatever its engine.

Every model deployment (CPU llama.cpp, vLLM) answers the same methods with these
types, pickled over Ray: `generate(GenerationRequest) -> GenerationResult`,
`generate_stream(GenerationRequest)` yielding `GenerationChunk`s (the last one
carries `finish_reason` and `usage`), and `info() -> ModelServerInfo`. Errors the
caller caused are `EngineError` (mapped to 400).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field, model_validator

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "cancelled"]


class ChatMessage(BaseModel):
    role: Role
    content: str


class GenerationRequest(BaseModel):
    """Exactly one of `messages` (chat, rendered with the model's template) or `prompt` (raw).

    `json_schema`, when set, constrains the output to JSON valid for it (tool calls, response_format);
    unset, decoding is free (no grammar, full speed). It is part of the request, hence of its cache key."""

    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    max_tokens: int = Field(ge=1)
    temperature: float = Field(ge=0.0, le=2.0)
    top_p: float = Field(gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    request_id: str | None = None
    json_schema: dict[str, Any] | None = None

    def estimated_prompt_tokens(self) -> int:
        """An upper-side guess before tokenizing (about 3 characters per token of text)."""
        chars = sum(len(m.content) for m in self.messages) if self.messages is not None else len(self.prompt or "")
        return chars // 3 + 1

    @model_validator(mode="after")
    def _one_input(self) -> GenerationRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of messages or prompt")
        return self


class PromptTokensDetails(BaseModel):
    """OpenAI's `usage.prompt_tokens_details`: how many prompt tokens came from the engine's cache."""

    cached_tokens: int = 0


class Usage(BaseModel):
    """Token counts; the same shape in our responses and OpenAI's. `prompt_tokens_details` is
    set by engines that reuse a cached prompt prefix (the CPU engine), as vLLM's server does."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        details = None
        if self.prompt_tokens_details is not None or other.prompt_tokens_details is not None:
            cached = sum(u.prompt_tokens_details.cached_tokens for u in (self, other) if u.prompt_tokens_details)
            details = PromptTokensDetails(cached_tokens=cached)
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            prompt_tokens_details=details,
        )


class GenerationChunk(BaseModel):
    """One piece of a stream; the last one has `finish_reason` and `usage`."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


class GenerationResult(BaseModel):
    text: str
    finish_reason: FinishReason
    usage: Usage


class ModelServerInfo(BaseModel):
    """What a model replica reports about itself (health and status pages)."""

    name: str
    engine: Literal["cpu", "vllm"]
    context_length: int
    slots: int | None = None  # sequences it decodes at once, when the engine says
    free_slots: int | None = None


class EngineError(Exception):
    """A request the engine cannot serve (e.g. prompt longer than the context); maps to 400."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(
        self,
    ) -> tuple[type[EngineError], tuple[str, str]]:  # keep code/message when Ray pickles it across processes
        return (EngineError, (self.code, self.message))

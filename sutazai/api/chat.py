"""Chat (with stored conversations), streaming chat, generation and batch."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from sutazai.api.deps import get_request_id, get_services
from sutazai.api.sse import SSE_HEADERS, sse_event
from sutazai.auth.principal import Principal, enforce_token_budget, record_token_usage, require_user
from sutazai.errors import APIError, error_body, not_found
from sutazai.inference import ModelClient
from sutazai.schemas.api import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    ChatRequest,
    ChatResponse,
    GenerateRequest,
    GenerateResponse,
    MessageOut,
    UsageOut,
)
from sutazai.schemas.engine import ChatMessage, GenerationRequest, GenerationResult, Usage
from sutazai.services import Services

# Every route here runs the model: a user (not a viewer) with token budget left.
router = APIRouter(prefix="/api/v1", tags=["chat"],
                   dependencies=[Depends(require_user), Depends(enforce_token_budget)])


class _Turn:
    """A chat turn being answered: where it goes and what the model is asked."""

    def __init__(self, client: ModelClient, request: GenerationRequest, conversation_id: uuid.UUID, create: bool,
                 text: str, user_id: uuid.UUID):
        self.user_id = user_id
        self.client = client
        self.request = request
        self.conversation_id = conversation_id
        self.create = create
        self.text = text

    async def store(self, services: Services, result: GenerationResult) -> None:
        try:
            await services.conversations.append_turn(
                self.conversation_id,
                user_id=self.user_id,
                model=self.client.spec.name,
                user_text=self.text,
                user_tokens=result.usage.prompt_tokens,
                assistant_text=result.text,
                assistant_tokens=result.usage.completion_tokens,
                create=self.create,
            )
        except LookupError:
            raise not_found("conversation") from None


async def _prepare_turn(body: ChatRequest, services: Services, request_id: str | None, caller: Principal) -> _Turn:
    client = services.inference.resolve(body.model)
    create = body.conversation_id is None
    conversation_id = body.conversation_id or uuid.uuid4()
    history: list[ChatMessage] = []
    if not create:
        if await services.conversations.get(conversation_id, caller.user_id) is None:
            raise not_found("conversation")
        stored = await services.conversations.recent_messages(conversation_id, services.settings.history_messages)
        history = [ChatMessage(role=m.role, content=m.content) for m in stored]
    system = body.system_prompt if body.system_prompt is not None else services.settings.system_prompt
    messages = ([ChatMessage(role="system", content=system)] if system else []) + history
    messages.append(ChatMessage(role="user", content=body.message))
    request = services.inference.build_request(client.spec, body, messages=messages, request_id=request_id)
    return _Turn(client, request, conversation_id, create, body.message, caller.user_id)


def _usage(usage: Usage) -> UsageOut:
    return UsageOut(**usage.as_dict())


@router.post("/chat", response_model=ChatResponse)
async def chat(body: ChatRequest, request: Request, services: Services = Depends(get_services),
               request_id: str | None = Depends(get_request_id), caller: Principal = Depends(require_user)):
    turn = await _prepare_turn(body, services, request_id, caller)
    result, cached = await services.inference.complete(turn.client, turn.request)
    await record_token_usage(request, result.usage.prompt_tokens, result.usage.completion_tokens)
    await turn.store(services, result)
    return ChatResponse(
        conversation_id=turn.conversation_id, model=turn.client.spec.name,
        message=MessageOut(role="assistant", content=result.text), finish_reason=result.finish_reason,
        usage=_usage(result.usage), cached=cached, request_id=request_id,
    )


@router.post("/chat/stream", response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}, "description": "token events, then a done event"}})
async def chat_stream(body: ChatRequest, request: Request, services: Services = Depends(get_services),
                      request_id: str | None = Depends(get_request_id), caller: Principal = Depends(require_user)):
    """SSE: `token` events with text deltas, then one `done` event with usage.
    The turn is stored only once the answer is complete."""
    turn = await _prepare_turn(body, services, request_id, caller)
    chunks, cached = await services.inference.open_stream(turn.client, turn.request)

    async def events() -> AsyncIterator[str]:
        parts: list[str] = []
        try:
            async for chunk in chunks:
                if chunk.text:
                    parts.append(chunk.text)
                    yield sse_event({"text": chunk.text}, event="token")
                if chunk.usage is not None:
                    result = GenerationResult(text="".join(parts), finish_reason=chunk.finish_reason, usage=chunk.usage)
                    await record_token_usage(request, chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    await turn.store(services, result)
                    yield sse_event({
                        "conversation_id": str(turn.conversation_id), "model": turn.client.spec.name,
                        "finish_reason": chunk.finish_reason, "usage": chunk.usage.as_dict(), "cached": cached,
                        "request_id": request_id,
                    }, event="done")
        except APIError as exc:
            yield sse_event(error_body(exc.code, exc.message, request_id), event="error")

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/generate", response_model=GenerateResponse)
async def generate(body: GenerateRequest, request: Request, services: Services = Depends(get_services),
                   request_id: str | None = Depends(get_request_id)):
    """Raw text continuation, no chat template."""
    client = services.inference.resolve(body.model)
    generation = services.inference.build_request(client.spec, body, prompt=body.prompt, request_id=request_id)
    result, cached = await services.inference.complete(client, generation)
    await record_token_usage(request, result.usage.prompt_tokens, result.usage.completion_tokens)
    return GenerateResponse(model=client.spec.name, text=result.text, finish_reason=result.finish_reason,
                            usage=_usage(result.usage), cached=cached, request_id=request_id)


@router.post("/batch", response_model=BatchResponse)
async def batch(body: BatchRequest, request: Request, services: Services = Depends(get_services),
                request_id: str | None = Depends(get_request_id)):
    """Many prompts at once, run concurrently (bounded); each item succeeds or fails on its own."""
    settings = services.settings
    if len(body.prompts) > settings.batch_max_prompts:
        raise APIError(422, "validation_error", f"prompts: at most {settings.batch_max_prompts} prompts per batch")
    client = services.inference.resolve(body.model)
    generations = [services.inference.build_request(client.spec, body, prompt=p, request_id=request_id)
                   for p in body.prompts]
    outcomes = await services.inference.batch(client, generations, settings.batch_concurrency)
    items, total = [], Usage()
    for index, (result, cached, error) in enumerate(outcomes):
        if error is not None:
            items.append(BatchItem(index=index, error={"code": error.code, "message": error.message}))
            continue
        total = Usage(prompt_tokens=total.prompt_tokens + result.usage.prompt_tokens,
                      completion_tokens=total.completion_tokens + result.usage.completion_tokens)
        items.append(BatchItem(index=index, text=result.text, finish_reason=result.finish_reason,
                               usage=_usage(result.usage), cached=cached))
    await record_token_usage(request, total.prompt_tokens, total.completion_tokens)
    failed = sum(1 for i in items if i.error is not None)
    return BatchResponse(model=client.spec.name, results=items, usage=_usage(total), succeeded=len(items) - failed,
                         failed=failed, request_id=request_id)

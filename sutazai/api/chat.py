"""Chat (with stored conversations), streaming chat, generation and batch.

Every route here runs a model: the caller is a user with token budget left.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter
from sse_starlette import EventSourceResponse, ServerSentEvent

from sutazai.api.deps import ModelCallerDep, RequestIdDep, ServicesDep
from sutazai.api.errors import error_body
from sutazai.api.retrieval import grounding, with_context
from sutazai.api.shedding import runs_model
from sutazai.api.sse import SSE_RESPONSES, event, sse_response
from sutazai.errors import InvalidInput, NotFound, SutazaiError
from sutazai.inference import ModelClient
from sutazai.schemas.api import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    ChatDone,
    ChatRequest,
    ChatResponse,
    ErrorInfo,
    GenerateRequest,
    GenerateResponse,
    MessageOut,
    TokenEvent,
)
from sutazai.schemas.engine import ChatMessage, GenerationRequest, GenerationResult, Usage
from sutazai.schemas.retrieval import Citation
from sutazai.services import Services

router = APIRouter(prefix="/api/v1", tags=["chat"])


@dataclass(frozen=True)
class _Turn:
    """A chat turn being answered: where it goes and what the model is asked."""

    client: ModelClient
    request: GenerationRequest
    conversation_id: uuid.UUID
    create: bool
    text: str
    user_id: uuid.UUID
    citations: list[Citation] | None

    async def store(self, services: Services, result: GenerationResult) -> None:
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


async def _prepare_turn(body: ChatRequest, services: Services, request_id: str | None, user_id: uuid.UUID) -> _Turn:
    client = services.inference.resolve(body.model)
    create = body.conversation_id is None
    conversation_id = body.conversation_id or uuid.uuid4()
    history: list[ChatMessage] = []
    if not create:
        if await services.conversations.get(conversation_id, user_id) is None:
            raise NotFound.of("conversation")
        stored = await services.conversations.recent_messages(conversation_id, services.settings.history_messages)
        history = [ChatMessage(role=m.role, content=m.content) for m in stored]
    system = body.system_prompt if body.system_prompt is not None else services.settings.system_prompt
    messages = ([ChatMessage(role="system", content=system)] if system else []) + history
    messages.append(ChatMessage(role="user", content=body.message))
    request = services.inference.build_request(client.spec, body, messages=messages, request_id=request_id)
    context, cited = await grounding(services, user_id, body, body.message, request, client.spec.context_length)
    if context is not None:
        messages = with_context(messages, context)
        request = services.inference.build_request(client.spec, body, messages=messages, request_id=request_id)
    return _Turn(client, request, conversation_id, create, body.message, user_id, cited if body.use_documents else None)


@router.post("/chat", response_model=ChatResponse)
@runs_model
async def chat(
    body: ChatRequest, caller: ModelCallerDep, services: ServicesDep, request_id: RequestIdDep
) -> ChatResponse:
    turn = await _prepare_turn(body, services, request_id, caller.principal.user_id)
    result, cached = await caller.complete(turn.client, turn.request)
    await turn.store(services, result)
    return ChatResponse(
        conversation_id=turn.conversation_id,
        model=turn.client.spec.name,
        message=MessageOut(role="assistant", content=result.text),
        finish_reason=result.finish_reason,
        usage=result.usage,
        cached=cached,
        request_id=request_id,
        citations=turn.citations,
    )


@router.post("/chat/stream", response_class=EventSourceResponse, responses=SSE_RESPONSES)
@runs_model
async def chat_stream(
    body: ChatRequest, caller: ModelCallerDep, services: ServicesDep, request_id: RequestIdDep
) -> EventSourceResponse:
    """SSE: `token` events with text deltas, then one `done` event with usage.
    The turn is stored only once the answer is complete."""
    turn = await _prepare_turn(body, services, request_id, caller.principal.user_id)
    chunks, cached, reservation = await caller.open_stream(turn.client, turn.request)

    async def events() -> AsyncIterator[ServerSentEvent]:
        parts: list[str] = []
        try:
            async for chunk in chunks:
                reservation.saw(chunk)
                if chunk.text:
                    parts.append(chunk.text)
                    yield event(TokenEvent(text=chunk.text), "token")
                if chunk.usage is not None and chunk.finish_reason is not None:
                    result = GenerationResult(text="".join(parts), finish_reason=chunk.finish_reason, usage=chunk.usage)
                    await reservation.settle()
                    await turn.store(services, result)
                    done = ChatDone(
                        conversation_id=turn.conversation_id,
                        model=turn.client.spec.name,
                        finish_reason=chunk.finish_reason,
                        usage=chunk.usage,
                        cached=cached,
                        request_id=request_id,
                        citations=turn.citations,
                    )
                    yield event(done, "done")
        except SutazaiError as exc:
            yield event(error_body(exc.code, exc.message, request_id), "error")
        finally:
            await reservation.settle()

    return sse_response(events())


@router.post("/generate", response_model=GenerateResponse)
@runs_model
async def generate(
    body: GenerateRequest, caller: ModelCallerDep, services: ServicesDep, request_id: RequestIdDep
) -> GenerateResponse:
    """Raw text continuation, no chat template."""
    client = services.inference.resolve(body.model)
    generation = services.inference.build_request(client.spec, body, prompt=body.prompt, request_id=request_id)
    result, cached = await caller.complete(client, generation)
    return GenerateResponse(
        model=client.spec.name,
        text=result.text,
        finish_reason=result.finish_reason,
        usage=result.usage,
        cached=cached,
        request_id=request_id,
    )


@router.post("/batch", response_model=BatchResponse)
@runs_model
async def batch(
    body: BatchRequest, caller: ModelCallerDep, services: ServicesDep, request_id: RequestIdDep
) -> BatchResponse:
    """Many prompts at once, run concurrently (bounded); each item succeeds or fails on its own."""
    settings = services.settings
    if len(body.prompts) > settings.batch_max_prompts:
        raise InvalidInput(f"prompts: at most {settings.batch_max_prompts} prompts per batch")
    client = services.inference.resolve(body.model)
    generations = [
        services.inference.build_request(client.spec, body, prompt=p, request_id=request_id) for p in body.prompts
    ]
    async with await caller.reserve(generations, client) as reservation:
        outcomes = await services.inference.batch(
            client, generations, settings.batch_concurrency, cache_scope=caller.cache_scope
        )
        reservation.used = sum((o.result.usage for o in outcomes if o.result is not None), Usage())
    items, total = [], Usage()
    for index, outcome in enumerate(outcomes):
        if outcome.result is None:
            error = outcome.error
            items.append(
                BatchItem(index=index, error=ErrorInfo(code=error.code, message=error.message) if error else None)
            )
            continue
        total += outcome.result.usage
        items.append(
            BatchItem(
                index=index,
                text=outcome.result.text,
                finish_reason=outcome.result.finish_reason,
                usage=outcome.result.usage,
                cached=outcome.cached,
            )
        )
    failed = sum(1 for i in items if i.error is not None)
    return BatchResponse(
        model=client.spec.name,
        results=items,
        usage=total,
        succeeded=len(items) - failed,
        failed=failed,
        request_id=request_id,
    )

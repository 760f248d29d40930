"""OpenAI-compatible routes: the official `openai` client works against these unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter
from sse_starlette import EventSourceResponse, ServerSentEvent

from sutazai.api.deps import ModelCaller, ModelCallerDep, RequestIdDep, Reservation, ServicesDep, ViewerDep
from sutazai.api.errors import error_body
from sutazai.api.sse import SSE_RESPONSES, event, sse_response
from sutazai.errors import InvalidInput, SutazaiError
from sutazai.inference import ModelClient
from sutazai.schemas.engine import ChatMessage, FinishReason, GenerationChunk, GenerationRequest, Usage
from sutazai.schemas.openai import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    DeltaMessage,
    ModelCard,
    ModelList,
    OpenAIFinishReason,
    completion_id,
)
from sutazai.services import Services

router = APIRouter(prefix="/v1", tags=["openai"])

_FINISH: dict[FinishReason, OpenAIFinishReason] = {"stop": "stop", "length": "length", "cancelled": "stop"}


def _messages(body: ChatCompletionRequest) -> list[ChatMessage]:
    messages = []
    for m in body.messages:
        try:
            text = m.text()
        except ValueError as exc:
            raise InvalidInput(f"messages: {exc}") from None
        messages.append(ChatMessage(role="system" if m.role == "developer" else m.role, content=text))
    return messages


@router.get("/models", response_model=ModelList)
async def list_models(caller: ViewerDep, services: ServicesDep) -> ModelList:
    created = int(services.started_at)
    return ModelList(data=[ModelCard(id=name, created=created) for name in services.catalog.names()])


async def _events(
    reservation: Reservation,
    chunks: AsyncIterator[GenerationChunk],
    text_chunk: Callable[[str], ChatCompletionChunk | CompletionChunk],
    final_chunk: Callable[[OpenAIFinishReason], ChatCompletionChunk | CompletionChunk],
    usage_chunk: Callable[[Usage], ChatCompletionChunk | CompletionChunk] | None,
    request_id: str | None,
) -> AsyncIterator[ServerSentEvent]:
    try:
        async for chunk in chunks:
            reservation.saw(chunk)
            if chunk.text:
                yield event(text_chunk(chunk.text))
            if chunk.usage is not None and chunk.finish_reason is not None:
                await reservation.settle()
                yield event(final_chunk(_FINISH[chunk.finish_reason]))
                if usage_chunk is not None:
                    yield event(usage_chunk(chunk.usage))
        yield event("[DONE]")
    except SutazaiError as exc:
        yield event(error_body(exc.code, exc.message, request_id))
    finally:
        await reservation.settle()


async def _open_stream(
    services: Services, client: ModelClient, request: GenerationRequest, caller: ModelCaller
) -> tuple[AsyncIterator[GenerationChunk], Reservation]:
    reservation = await caller.reserve([request])
    try:
        chunks, _ = await services.inference.open_stream(client, request, cache_scope=caller.cache_scope)
    except BaseException:
        await reservation.settle()
        raise
    return chunks, reservation


@router.post("/chat/completions", response_model=ChatCompletionResponse, responses=SSE_RESPONSES)
async def chat_completions(
    body: ChatCompletionRequest, caller: ModelCallerDep, services: ServicesDep, request_id: RequestIdDep
) -> ChatCompletionResponse | EventSourceResponse:
    client = services.inference.resolve(body.model)
    request = services.inference.build_request(client.spec, body, messages=_messages(body), request_id=request_id)
    cid, model = completion_id("chatcmpl"), client.spec.name

    if not body.stream:
        async with await caller.reserve([request]) as reservation:
            result, _ = await services.inference.complete(client, request, cache_scope=caller.cache_scope)
            reservation.used = result.usage
        return ChatCompletionResponse(
            id=cid,
            model=model,
            choices=[
                ChatChoice(
                    index=0, message=AssistantMessage(content=result.text), finish_reason=_FINISH[result.finish_reason]
                )
            ],
            usage=result.usage,
        )

    chunks, reservation = await _open_stream(services, client, request, caller)
    first = True

    def text_chunk(text: str) -> ChatCompletionChunk:
        nonlocal first
        delta = DeltaMessage(role="assistant", content=text) if first else DeltaMessage(content=text)
        first = False
        return ChatCompletionChunk(id=cid, model=model, choices=[ChatChunkChoice(delta=delta, finish_reason=None)])

    def final_chunk(finish: OpenAIFinishReason) -> ChatCompletionChunk:
        delta = DeltaMessage(role="assistant") if first else DeltaMessage()
        return ChatCompletionChunk(id=cid, model=model, choices=[ChatChunkChoice(delta=delta, finish_reason=finish)])

    def usage_chunk(usage: Usage) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=cid, model=model, choices=[], usage=usage)

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return sse_response(
        _events(reservation, chunks, text_chunk, final_chunk, usage_chunk if include_usage else None, request_id)
    )


@router.post("/completions", response_model=CompletionResponse, responses=SSE_RESPONSES)
async def completions(
    body: CompletionRequest, caller: ModelCallerDep, services: ServicesDep, request_id: RequestIdDep
) -> CompletionResponse | EventSourceResponse:
    client = services.inference.resolve(body.model)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    requests = [services.inference.build_request(client.spec, body, prompt=p, request_id=request_id) for p in prompts]
    cid, model = completion_id("cmpl"), client.spec.name

    if body.stream:
        if len(requests) != 1:
            raise InvalidInput("prompt: streaming takes a single prompt")
        chunks, reservation = await _open_stream(services, client, requests[0], caller)
        echo = prompts[0] if body.echo else ""

        def text_chunk(text: str) -> CompletionChunk:
            nonlocal echo
            text, echo = echo + text, ""
            choice = CompletionChoice(index=0, text=text, finish_reason=None)
            return CompletionChunk(id=cid, model=model, choices=[choice])

        def final_chunk(finish: OpenAIFinishReason) -> CompletionChunk:
            choice = CompletionChoice(index=0, text=echo, finish_reason=finish)
            return CompletionChunk(id=cid, model=model, choices=[choice])

        def usage_chunk(usage: Usage) -> CompletionChunk:
            return CompletionChunk(id=cid, model=model, choices=[], usage=usage)

        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse_response(
            _events(reservation, chunks, text_chunk, final_chunk, usage_chunk if include_usage else None, request_id)
        )

    async with await caller.reserve(requests) as reservation:
        outcomes = await services.inference.batch(
            client, requests, services.settings.batch_concurrency, cache_scope=caller.cache_scope
        )
        reservation.used = sum((o.result.usage for o in outcomes if o.result is not None), Usage())
    choices, usage = [], Usage()
    for index, outcome in enumerate(outcomes):
        if outcome.error is not None:
            raise outcome.error
        assert outcome.result is not None
        usage += outcome.result.usage
        text = (prompts[index] if body.echo else "") + outcome.result.text
        choices.append(CompletionChoice(index=index, text=text, finish_reason=_FINISH[outcome.result.finish_reason]))
    return CompletionResponse(id=cid, model=model, choices=choices, usage=usage)

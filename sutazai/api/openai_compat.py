"""OpenAI-compatible routes: the official `openai` client works against these unchanged."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from sutazai.api.deps import get_request_id, get_services
from sutazai.api.sse import SSE_HEADERS, sse_event
from sutazai.auth.principal import enforce_token_budget, record_token_usage, require_user, require_viewer
from sutazai.errors import APIError, error_body
from sutazai.schemas.engine import ChatMessage, GenerationChunk
from sutazai.schemas.openai import ChatCompletionRequest, CompletionRequest
from sutazai.services import Services

router = APIRouter(prefix="/v1", tags=["openai"])

_FINISH = {"stop": "stop", "length": "length", "cancelled": "stop"}


def _messages(body: ChatCompletionRequest) -> list[ChatMessage]:
    messages = []
    for m in body.messages:
        try:
            text = m.text()
        except ValueError as exc:
            raise APIError(422, "validation_error", f"messages: {exc}") from None
        messages.append(ChatMessage(role="system" if m.role == "developer" else m.role, content=text))
    return messages


_LLM = [Depends(require_user), Depends(enforce_token_budget)]


@router.get("/models", dependencies=[Depends(require_viewer)])
async def list_models(services: Services = Depends(get_services)):
    created = int(services.started_at)
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": created, "owned_by": "sutazai"} for name in services.catalog.names()],
    }


async def _sse(request: Request, chunks: AsyncIterator[GenerationChunk], make_chunk, include_usage: bool,
               request_id: str | None) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            if chunk.text:
                yield sse_event(make_chunk(text=chunk.text))
            if chunk.usage is not None:
                await record_token_usage(request, chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                yield sse_event(make_chunk(finish_reason=_FINISH[chunk.finish_reason]))
                if include_usage:
                    yield sse_event(make_chunk(usage=chunk.usage.as_dict()))
        yield sse_event("[DONE]")
    except APIError as exc:
        yield sse_event(error_body(exc.code, exc.message, request_id))


@router.post("/chat/completions", dependencies=_LLM)
async def chat_completions(body: ChatCompletionRequest, http_request: Request, services: Services = Depends(get_services),
                           request_id: str | None = Depends(get_request_id)):
    client = services.inference.resolve(body.model)
    request = services.inference.build_request(client.spec, body, messages=_messages(body), request_id=request_id)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = client.spec.name

    if not body.stream:
        result, _ = await services.inference.complete(client, request)
        await record_token_usage(http_request, result.usage.prompt_tokens, result.usage.completion_tokens)
        return {
            "id": completion_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "finish_reason": _FINISH[result.finish_reason], "logprobs": None}],
            "usage": result.usage.as_dict(),
        }

    chunks, _ = await services.inference.open_stream(client, request)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    first = True

    def make_chunk(text: str | None = None, finish_reason: str | None = None, usage: dict | None = None) -> dict:
        nonlocal first
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        if usage is not None:
            return base | {"choices": [], "usage": usage}
        delta: dict = {}
        if first:
            delta["role"] = "assistant"
            first = False
        if text:
            delta["content"] = text
        return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    return StreamingResponse(_sse(http_request, chunks, make_chunk, include_usage, request_id),
                             media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/completions", dependencies=_LLM)
async def completions(body: CompletionRequest, http_request: Request, services: Services = Depends(get_services),
                      request_id: str | None = Depends(get_request_id)):
    client = services.inference.resolve(body.model)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    requests = [services.inference.build_request(client.spec, body, prompt=p, request_id=request_id) for p in prompts]
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = client.spec.name

    if body.stream:
        if len(requests) != 1:
            raise APIError(422, "validation_error", "prompt: streaming takes a single prompt")
        chunks, _ = await services.inference.open_stream(client, requests[0])
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        echo_text = prompts[0] if body.echo else ""

        def make_chunk(text: str | None = None, finish_reason: str | None = None, usage: dict | None = None) -> dict:
            nonlocal echo_text
            base = {"id": completion_id, "object": "text_completion", "created": created, "model": model}
            if usage is not None:
                return base | {"choices": [], "usage": usage}
            text, echo_text = echo_text + (text or ""), ""
            return base | {"choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}]}

        return StreamingResponse(_sse(http_request, chunks, make_chunk, include_usage, request_id),
                                 media_type="text/event-stream", headers=SSE_HEADERS)

    outcomes = await services.inference.batch(client, requests, services.settings.batch_concurrency)
    choices, prompt_tokens, completion_tokens = [], 0, 0
    for index, (result, _, error) in enumerate(outcomes):
        if error is not None:
            raise error
        prompt_tokens += result.usage.prompt_tokens
        completion_tokens += result.usage.completion_tokens
        text = (prompts[index] if body.echo else "") + result.text
        choices.append({"index": index, "text": text, "finish_reason": _FINISH[result.finish_reason], "logprobs": None})
    await record_token_usage(http_request, prompt_tokens, completion_tokens)
    return {
        "id": completion_id, "object": "text_completion", "created": created, "model": model, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }

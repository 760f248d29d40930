"""OpenAI-compatible routes: the official `openai` client works against these unchanged.

Tool calls and `response_format` are constrained decoding (`sutazai.tools`): the request carries a
JSON schema to the engine, and the JSON it returns is parsed into `tool_calls` or `content`. A
stream is parsed as it arrives (`sutazai.tools.ToolOutputStream`) and sent as OpenAI streams: a tool
call as a first delta with id, type, name and empty arguments, then deltas of its arguments' JSON
text as the model writes it; a text answer (`{"content": ...}`) as content deltas of the decoded
text. `response_format` streams stay content deltas of the raw JSON text.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter
from sse_starlette import EventSourceResponse, ServerSentEvent

from sutazai.api.deps import ModelCallerDep, RequestIdDep, Reservation, ServicesDep, ViewerDep
from sutazai.api.errors import error_body
from sutazai.api.retrieval import grounding, with_context
from sutazai.api.shedding import runs_model
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
    DeltaFunctionCall,
    DeltaMessage,
    DeltaToolCall,
    FunctionCall,
    ModelCard,
    ModelList,
    OpenAIFinishReason,
    ToolCall,
    completion_id,
)
from sutazai.services import Services
from sutazai.tools import (
    ArgumentsDelta,
    ParsedOutput,
    ToolCallStart,
    ToolEvent,
    ToolOutputStream,
    allowed_tools,
    call_text,
    new_call_id,
    parse_tool_output,
    response_format_schema,
    result_text,
    tool_specs,
    tools_prompt,
    tools_schema,
)

router = APIRouter(prefix="/v1", tags=["openai"])

_FINISH: dict[FinishReason, OpenAIFinishReason] = {"stop": "stop", "length": "length", "cancelled": "stop"}


def _messages(body: ChatCompletionRequest) -> list[ChatMessage]:
    """The chat as the engine's messages. Earlier tool calls are written as the JSON the model emits,
    tool results as a user line naming the tool: every template renders user and assistant turns."""
    messages = []
    names: dict[str, str] = {}  # tool_call_id -> tool name, from the assistant turns
    for m in body.messages:
        try:
            text = m.text()
        except ValueError as exc:
            raise InvalidInput(f"messages: {exc}") from None
        if m.role == "assistant" and m.tool_calls:
            names |= {call.id: call.function.name for call in m.tool_calls}
            calls = [call_text(call.function.name, call.function.arguments) for call in m.tool_calls]
            text = "\n".join([text, *calls] if text else calls)
        if m.role == "tool":
            tool_name = m.name or names.get(m.tool_call_id or "")
            messages.append(ChatMessage(role="user", content=result_text(tool_name, text)))
            continue
        messages.append(ChatMessage(role="system" if m.role == "developer" else m.role, content=text))
    return messages


def _constraint(body: ChatCompletionRequest) -> tuple[dict | None, set[str] | None, str | None]:
    """The output schema, the tool names it allows (None when it asks for no tool call), and a system
    line for the model; all None for free text."""
    specs = tool_specs(body.tools) if body.tools else []
    if body.tool_choice not in (None, "auto", "none") and not specs:
        raise InvalidInput("tool_choice: needs tools")
    allowed, allow_answer = allowed_tools(specs, body.tool_choice)
    if allowed:
        return tools_schema(allowed, allow_answer), {s.name for s in allowed}, tools_prompt(allowed)
    schema = response_format_schema(body.response_format)
    if schema is None or schema == {"type": "object"}:
        return schema, None, "Answer with a JSON object." if schema else None
    return schema, None, f"Answer with JSON matching this schema: {json.dumps(schema, separators=(',', ':'))}"


def _chat_request(
    services: Services, client: ModelClient, body: ChatCompletionRequest, request_id: str | None
) -> tuple[GenerationRequest, set[str] | None]:
    schema, names, hint = _constraint(body)
    messages = _messages(body)
    if hint:
        messages.insert(0, ChatMessage(role="system", content=hint))
    request = services.inference.build_request(
        client.spec, body, messages=messages, request_id=request_id, json_schema=schema
    )
    return request, names


def _tool_calls(parsed: ParsedOutput) -> list[ToolCall]:
    return [
        ToolCall(id=new_call_id(), type="function", function=FunctionCall(name=c.name, arguments=c.arguments))
        for c in parsed.tool_calls
    ]


@router.get("/models", response_model=ModelList)
async def list_models(caller: ViewerDep, services: ServicesDep) -> ModelList:
    created = int(services.started_at)
    names = services.catalog.names() + services.catalog.embedder_names()
    return ModelList(data=[ModelCard(id=name, created=created) for name in names])


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


@router.post("/chat/completions", response_model=ChatCompletionResponse, responses=SSE_RESPONSES)
@runs_model
async def chat_completions(
    body: ChatCompletionRequest, caller: ModelCallerDep, services: ServicesDep, request_id: RequestIdDep
) -> ChatCompletionResponse | EventSourceResponse:
    client = services.inference.resolve(body.model)
    request, names = _chat_request(services, client, body, request_id)
    cid, model = completion_id("chatcmpl"), client.spec.name
    cited = None
    if body.use_documents:
        query = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
        owner = caller.principal.user_id
        context, cited = await grounding(services, owner, body, query, request, client.spec.context_length)
        if context is not None and request.messages is not None:
            messages = with_context(request.messages, context)
            request = GenerationRequest.model_validate(request.model_dump() | {"messages": messages})

    if not body.stream:
        result, _ = await caller.complete(client, request)
        message = AssistantMessage(content=result.text)
        finish = _FINISH[result.finish_reason]
        if names is not None:
            parsed = parse_tool_output(result.text, names)
            calls = _tool_calls(parsed)
            message = AssistantMessage(content=parsed.content, tool_calls=calls or None)
            finish = "tool_calls" if calls else finish
        return ChatCompletionResponse(
            id=cid,
            model=model,
            choices=[ChatChoice(index=0, message=message, finish_reason=finish)],
            usage=result.usage,
            citations=cited,
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks, _, reservation = await caller.open_stream(client, request)
    if names is not None:
        return sse_response(_tool_events(reservation, chunks, names, cid, model, include_usage, request_id))
    first = True

    def text_chunk(text: str) -> ChatCompletionChunk:
        nonlocal first
        delta = DeltaMessage(role="assistant", content=text) if first else DeltaMessage(content=text)
        first = False
        return ChatCompletionChunk(id=cid, model=model, choices=[ChatChunkChoice(delta=delta, finish_reason=None)])

    def final_chunk(finish: OpenAIFinishReason) -> ChatCompletionChunk:
        delta = DeltaMessage(role="assistant") if first else DeltaMessage()
        choices = [ChatChunkChoice(delta=delta, finish_reason=finish)]
        if cited is None:
            return ChatCompletionChunk(id=cid, model=model, choices=choices)
        return ChatCompletionChunk(id=cid, model=model, choices=choices, citations=cited)

    def usage_chunk(usage: Usage) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=cid, model=model, choices=[], usage=usage)

    return sse_response(
        _events(reservation, chunks, text_chunk, final_chunk, usage_chunk if include_usage else None, request_id)
    )


async def _tool_events(
    reservation: Reservation,
    chunks: AsyncIterator[GenerationChunk],
    names: set[str],
    cid: str,
    model: str,
    include_usage: bool,
    request_id: str | None,
) -> AsyncIterator[ServerSentEvent]:
    """A stream that may call tools, sent as OpenAI sends one while the output is parsed
    (`ToolOutputStream`): a tool call's first delta has its id, type, name and empty arguments, the
    next ones pieces of its arguments' JSON; a text answer arrives as content deltas. The finish
    reason is "tool_calls" when the whole output parses as a call."""
    first = True

    def chunk(delta: DeltaMessage, finish: OpenAIFinishReason | None = None) -> ServerSentEvent:
        nonlocal first
        if first:
            delta.role = "assistant"
            first = False
        choice = ChatChunkChoice(index=0, delta=delta, finish_reason=finish)
        return event(ChatCompletionChunk(id=cid, model=model, choices=[choice]))

    def sent(events: list[ToolEvent]) -> list[ServerSentEvent]:
        out = []
        for e in events:
            if isinstance(e, ToolCallStart):
                function = DeltaFunctionCall(name=e.name, arguments="")
                head = DeltaToolCall(index=0, id=new_call_id(), type="function", function=function)
                out.append(chunk(DeltaMessage(tool_calls=[head])))
            elif isinstance(e, ArgumentsDelta):
                piece = DeltaToolCall(index=0, function=DeltaFunctionCall(arguments=e.text))
                out.append(chunk(DeltaMessage(tool_calls=[piece])))
            else:
                out.append(chunk(DeltaMessage(content=e.text)))
        return out

    output = ToolOutputStream(names)
    try:
        async for piece in chunks:
            reservation.saw(piece)
            for sse in sent(output.feed(piece.text)):
                yield sse
            if piece.usage is None or piece.finish_reason is None:
                continue
            await reservation.settle()
            rest, parsed = output.finish()
            for sse in sent(rest):
                yield sse
            yield chunk(DeltaMessage(), "tool_calls" if parsed.tool_calls else _FINISH[piece.finish_reason])
            if include_usage:
                yield event(ChatCompletionChunk(id=cid, model=model, choices=[], usage=piece.usage))
        yield event("[DONE]")
    except SutazaiError as exc:
        yield event(error_body(exc.code, exc.message, request_id))
    finally:
        await reservation.settle()


@router.post("/completions", response_model=CompletionResponse, responses=SSE_RESPONSES)
@runs_model
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
        chunks, _, reservation = await caller.open_stream(client, requests[0])
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

    async with await caller.reserve(requests, client) as reservation:
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

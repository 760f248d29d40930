"""GPU engine: the pure half of the vLLM model deployment (`deployments/vllm_model.py`).

The deployment drives vLLM's async engine client directly; this module holds what
needs no vLLM: the `LLMConfig` arguments for a model file, prompt preparation (given
the engine's tokenizer), `SamplingParams` arguments, and the conversion of vLLM's
DELTA `RequestOutput`s into our `GenerationChunk`s. It never imports vLLM, so it
loads and is tested on CPU machines.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, Protocol

from jinja2 import TemplateError

from sutazai.catalog import ModelSpec
from sutazai.schemas.engine import (
    ChatMessage,
    EngineError,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    Usage,
)


def llm_config_dict(spec: ModelSpec, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments of `ray.serve.llm.LLMConfig` for a vLLM model file."""
    if spec.engine != "vllm":
        raise ValueError(f"model {spec.name} is not a vllm model")
    opts = spec.vllm
    engine_kwargs = {
        "max_model_len": spec.context_length,
        "tensor_parallel_size": opts.tensor_parallel_size,
        "pipeline_parallel_size": opts.pipeline_parallel_size,
        **opts.engine_kwargs,
    }
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": spec.name, "model_source": spec.source.path},
        "engine_kwargs": engine_kwargs,
        "deployment_config": {
            "name": spec.deployment_name,
            "autoscaling_config": spec.autoscaling.to_serve(),
            "max_ongoing_requests": spec.deployment.max_ongoing_requests,
            "max_queued_requests": spec.deployment.max_queued_requests,
        },
    }
    if opts.accelerator_type:
        config["accelerator_type"] = opts.accelerator_type
    if env:
        config["runtime_env"] = {"env_vars": dict(env)}
    return config


class Tokenizer(Protocol):
    """The part of vLLM's tokenizer (a Hugging Face tokenizer) that prompt preparation uses."""

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]: ...

    def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> Any: ...


def render_chat(tokenizer: Tokenizer, messages: list[dict[str, str]], chat_template: str | None) -> list[int]:
    """Chat messages as prompt tokens: the model's template (or the model file's override), with the
    assistant's turn opened. The template writes the special tokens, so encoding adds none. A template
    that refuses the messages (e.g. roles that do not alternate) refuses the caller's request."""
    try:
        text = tokenizer.apply_chat_template(
            messages, chat_template=chat_template, add_generation_prompt=True, tokenize=False
        )
    except TemplateError as exc:
        raise EngineError("invalid_messages", f"the model's chat template refused the messages: {exc}") from None
    return tokenizer.encode(text, add_special_tokens=False)


def fit_chat(
    messages: list[ChatMessage],
    max_tokens: int,
    context_length: int,
    render: Callable[[list[dict[str, str]]], list[int]],
) -> list[int]:
    """Prompt tokens of a chat, dropping the oldest turns (never a system message or the last one)
    until the prompt and `max_tokens` fit the context, as the CPU engine does."""
    turns = [m.model_dump() for m in messages]
    tokens = render(turns)
    while len(tokens) + max_tokens > context_length:
        droppable = [i for i, m in enumerate(turns[:-1]) if m["role"] != "system"]
        if not droppable:
            break
        del turns[droppable[0]]
        tokens = render(turns)
    return tokens


def prompt_token_ids(
    request: GenerationRequest, tokenizer: Tokenizer, *, chat_template: str | None, context_length: int
) -> list[int]:
    """The prompt tokens of a request: a chat rendered and fitted to the context, or raw text
    encoded with the tokenizer's special tokens (as vLLM's completions do)."""
    if request.messages is not None:
        return fit_chat(
            request.messages,
            request.max_tokens,
            context_length,
            lambda turns: render_chat(tokenizer, turns, chat_template),
        )
    return tokenizer.encode(request.prompt or "", add_special_tokens=True)


def completion_budget(prompt_tokens: int, requested: int, context_length: int, model: str) -> int:
    """The max_tokens that fit after the prompt; a prompt that leaves no room is the caller's error."""
    room = context_length - prompt_tokens
    if room < 1:
        raise EngineError(
            "context_length_exceeded",
            f"the prompt has {prompt_tokens} tokens; model {model} has a context of {context_length}",
        )
    return min(requested, room)


def stop_strings(request: GenerationRequest, chat_stop: list[str]) -> list[str]:
    """The request's stop strings, plus the model file's chat stops for free chat requests
    (constrained JSON ends where its schema does: a chat stop such as a blank line would cut it)."""
    stops = list(request.stop)
    if request.messages is not None and request.json_schema is None:
        stops += [s for s in chat_stop if s not in stops]
    return stops


def structured_output_kwargs(json_schema: dict[str, Any] | None, sampling_module: Any) -> dict[str, Any]:
    """The `SamplingParams` argument that constrains output to a JSON schema, from vLLM's
    `vllm.sampling_params` module: `structured_outputs=StructuredOutputsParams(json=...)` in current
    releases, `guided_decoding=GuidedDecodingParams(json=...)` in the ones before it. Nothing when free."""
    if json_schema is None:
        return {}
    params = getattr(sampling_module, "StructuredOutputsParams", None)
    if params is not None:
        return {"structured_outputs": params(json=json_schema)}
    return {"guided_decoding": sampling_module.GuidedDecodingParams(json=json_schema)}


def sampling_params_kwargs(
    request: GenerationRequest, max_tokens: int, chat_stop: list[str] | None = None, sampling_module: Any = None
) -> dict[str, Any]:
    """Keyword arguments of vLLM's `SamplingParams` (its field names) for one request.
    `output_kind` is left to the caller: it is a vLLM enum. `sampling_module` (vLLM's
    `vllm.sampling_params`) is needed only for requests with a `json_schema`."""
    return {
        "max_tokens": max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": stop_strings(request, chat_stop or []),
        "seed": request.seed,
        **structured_output_kwargs(request.json_schema, sampling_module),
    }


def vllm_request_id(request: GenerationRequest) -> str:
    """A request id unique in the engine: vLLM refuses (or mixes up) two running requests with one id,
    and our ids come from callers, so each gets a random suffix."""
    suffix = uuid.uuid4().hex[:12]
    return f"{request.request_id}-{suffix}" if request.request_id else suffix


def finish_reason(vllm_reason: str | None) -> FinishReason:
    """vLLM's finish reason as ours: "length" stays, "abort" (the request was aborted) is "cancelled",
    "stop" and "repetition" (the engine ended it) are "stop". "error" is vLLM's own failure."""
    if vllm_reason == "length":
        return "length"
    if vllm_reason == "abort":
        return "cancelled"
    if vllm_reason == "error":
        raise RuntimeError("vLLM failed the request (finish reason 'error')")
    return "stop"


def chunks_from_output(output: Any, prompt_tokens: int, completion_tokens: int) -> tuple[list[GenerationChunk], int]:
    """The chunks for one DELTA `RequestOutput` and the completion tokens counted so far.

    Its new text (if any) is one chunk; when the request finished, the final chunk with
    finish_reason and usage follows. In DELTA mode `token_ids` holds only the new tokens.
    """
    completion = output.outputs[0] if output.outputs else None
    chunks: list[GenerationChunk] = []
    if completion is not None:
        completion_tokens += len(completion.token_ids)
        if completion.text:
            chunks.append(GenerationChunk(text=completion.text))
    if output.finished:
        reason = finish_reason(completion.finish_reason if completion is not None else None)
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        chunks.append(GenerationChunk(finish_reason=reason, usage=usage))
    return chunks, completion_tokens


async def stream_chunks(
    outputs: AsyncGenerator[Any, None], prompt_tokens: int
) -> AsyncGenerator[GenerationChunk, None]:
    """Our chunks from vLLM's DELTA `RequestOutput` stream; nothing follows the final chunk.

    `outputs` is closed however this stream ends: when the consumer stops early, closing
    vLLM's `generate()` generator is what aborts the request in the engine.
    """
    completion_tokens = 0
    async with aclosing(outputs):
        async for output in outputs:
            chunks, completion_tokens = chunks_from_output(output, prompt_tokens, completion_tokens)
            for chunk in chunks:
                yield chunk
                if chunk.finish_reason is not None:
                    return
    raise RuntimeError("vLLM's output stream ended before the request finished")


async def collect(chunks: AsyncIterator[GenerationChunk]) -> GenerationResult:
    """A whole result from a chunk stream: its text, and the final chunk's finish_reason and usage."""
    parts: list[str] = []
    final: GenerationChunk | None = None
    async for chunk in chunks:
        parts.append(chunk.text)
        final = chunk
    if final is None or final.finish_reason is None or final.usage is None:
        raise RuntimeError("the chunk stream ended without a final chunk")
    return GenerationResult(text="".join(parts), finish_reason=final.finish_reason, usage=final.usage)

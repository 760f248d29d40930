"""GPU engine: vLLM through `ray.serve.llm` (LLMConfig / LLMServer).

The model file supplies the accelerator type, tensor/pipeline parallelism,
autoscaling and vLLM's engine arguments. `ray.serve.llm` imports vLLM, so this
module imports it lazily: on a CPU machine only `llm_config_dict` (pure) runs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sutazai.catalog import ModelSpec
from sutazai.schemas.engine import EngineError, GenerationChunk, GenerationRequest, GenerationResult, Usage


def llm_config_dict(spec: ModelSpec, env: dict[str, str] | None = None) -> dict:
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


def build_vllm_deployment(spec: ModelSpec, env: dict[str, str] | None = None):
    from ray.serve.llm import LLMConfig, build_llm_deployment

    return build_llm_deployment(LLMConfig(**llm_config_dict(spec, env)))


def _openai_body(spec: ModelSpec, request: GenerationRequest, stream: bool) -> dict:
    body: dict[str, Any] = {
        "model": spec.name, "max_tokens": request.max_tokens, "temperature": request.temperature,
        "top_p": request.top_p, "stop": request.stop or None, "seed": request.seed, "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if request.messages is not None:
        body["messages"] = [m.model_dump() for m in request.messages]
    else:
        body["prompt"] = request.prompt
    return body


class VLLMModelClient:
    """Talks to an `LLMServer` deployment with vLLM's OpenAI protocol models."""

    def __init__(self, spec: ModelSpec, handle: Any) -> None:
        self.spec = spec
        self.handle = handle
        self.stream_handle = handle.options(stream=True)

    def _request(self, request: GenerationRequest, stream: bool):
        from ray.serve.llm.openai_api_models import ChatCompletionRequest, CompletionRequest

        body = _openai_body(self.spec, request, stream)
        return ChatCompletionRequest(**body) if request.messages is not None else CompletionRequest(**body)

    def _method(self, request: GenerationRequest, handle: Any):
        return handle.chat if request.messages is not None else handle.completions

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        text, finish, usage = "", "stop", Usage()
        async for chunk in self.stream(request):
            text += chunk.text
            if chunk.usage is not None:
                finish, usage = chunk.finish_reason, chunk.usage
        return GenerationResult(text=text, finish_reason=finish, usage=usage)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        finish = "stop"
        usage = None
        async for item in self._method(request, self.stream_handle).remote(self._request(request, True)):
            for line in item if isinstance(item, list) else [item]:
                if not isinstance(line, str):  # an ErrorResponse object
                    raise EngineError("engine_error", str(getattr(line, "message", line)))
                payload = line.removeprefix("data: ").strip()
                if not payload or payload == "[DONE]":
                    continue
                data = json.loads(payload)
                if "error" in data:
                    raise EngineError("engine_error", str(data["error"].get("message", data["error"])))
                for choice in data.get("choices", []):
                    text = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
                    if text:
                        yield GenerationChunk(text=text)
                    if choice.get("finish_reason"):
                        finish = "length" if choice["finish_reason"] == "length" else "stop"
                if data.get("usage"):
                    usage = Usage(prompt_tokens=data["usage"]["prompt_tokens"],
                                  completion_tokens=data["usage"]["completion_tokens"])
        yield GenerationChunk(finish_reason=finish, usage=usage or Usage())

    async def info(self) -> dict:
        await self.handle.check_health.remote()
        return {"name": self.spec.name, "engine": "vllm"}
